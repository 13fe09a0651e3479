//! The one health probe that the systemd watchdog, `/healthz` and `/readyz` all ask, so a
//! host's load balancer and systemd never disagree about what "healthy" means.
//!
//! * live: the bot's async runtime still starts and finishes a new task, within
//!   [`LIVE_BUDGET`]. A runtime whose threads are all stuck (a blocking call on a worker,
//!   a deadlock) fails it, while the process is still there for `ps` to see.
//! * watchdog: live, and the database answers (what systemd restarts the bot for).
//! * ready: the gateway came up and the commands are registered, the database answers, and
//!   every gateway shard this process owns is connected: the bot can take a `/play` now.
//!
//! The probe is handed the runtime to check rather than using whichever runtime calls it:
//! the metrics listener runs on a thread of its own precisely so that it can still answer
//! "unhealthy" when the bot's runtime cannot answer at all.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::db::Db;
use crate::discord::gateway::Gateway;

/// How long the runtime (and the database) may take to answer before the check fails.
pub const LIVE_BUDGET: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Probe {
    runtime: Handle,
    db: Db,
    gateway: Arc<Gateway>,
    ready: watch::Receiver<bool>,
}

impl Probe {
    /// Checks `runtime` (the bot's), `db`, the shards `gateway` knows, and `ready` (the
    /// bot's "gateway up, commands registered").
    pub fn new(
        runtime: Handle,
        db: Db,
        gateway: Arc<Gateway>,
        ready: watch::Receiver<bool>,
    ) -> Probe {
        Probe {
            runtime,
            db,
            gateway,
            ready,
        }
    }

    /// The probe of a built bot, checking the runtime this is called on.
    pub fn of(bot: &crate::discord::Bot) -> Probe {
        Probe::new(
            Handle::current(),
            bot.stores.db.clone(),
            bot.gateway.clone(),
            bot.ready.subscribe(),
        )
    }

    /// The runtime the probe checks (where `/metrics` gathers its figures too).
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// The runtime starts and finishes a new task within [`LIVE_BUDGET`].
    pub async fn live(&self) -> Result<(), String> {
        match tokio::time::timeout(LIVE_BUDGET, self.runtime.spawn(async {})).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the runtime cannot run tasks: {e}")),
            Err(_) => Err(format!(
                "the runtime did not run a new task within {LIVE_BUDGET:?}"
            )),
        }
    }

    /// The database answers a query, asked on the bot's runtime (its connections live
    /// there), within [`LIVE_BUDGET`].
    async fn database(&self) -> Result<(), String> {
        let db = self.db.clone();
        let ask = self.runtime.spawn(async move { db.ping().await });
        match tokio::time::timeout(LIVE_BUDGET, ask).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("database: {e}")),
            Ok(Err(e)) => Err(format!("the runtime cannot run tasks: {e}")),
            Err(_) => Err(format!("database: no answer within {LIVE_BUDGET:?}")),
        }
    }

    /// What the systemd watchdog pings for: live, and the database answers.
    pub async fn watchdog(&self) -> Result<(), String> {
        self.live().await?;
        self.database().await
    }

    /// Ready for users: connected and registered, the database answers, every owned shard
    /// connected.
    pub async fn ready(&self) -> Result<(), String> {
        if !*self.ready.borrow() {
            return Err("not connected to Discord yet".into());
        }
        self.database().await?;
        let shards = self.gateway.shards().await;
        if shards.is_empty() {
            return Err("this process owns no gateway shard".into());
        }
        let down: Vec<String> = shards
            .iter()
            .filter(|s| !s.connected())
            .map(|s| format!("shard {} is {}", s.id, s.stage))
            .collect();
        if !down.is_empty() {
            return Err(down.join(", "));
        }
        Ok(())
    }
}
