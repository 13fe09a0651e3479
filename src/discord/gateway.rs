//! Which gateway shards this process owns and how each is doing, for `/readyz` and
//! `/metrics`.
//!
//! serenity's shard manager knows each running shard's stage and heartbeat latency; it does
//! not know which shards this process is *meant* to run: a shard that failed and waits in
//! serenity's queue to start again has no entry there. So the owned set is kept here: the
//! static plan's shards when the gateway starts, every shard of the total a READY reports
//! (`discord.shards = "auto"`), and in a cluster the shards this node won, until it hands
//! them off.
//!
//! serenity records a stage change it sees between two gateway reads; a close that it
//! resumes at once passes unrecorded (nothing was unready for long), while one it cannot
//! resume shows as `Connecting` or as a shard with no runner until it is back.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use poise::serenity_prelude as serenity;

#[derive(Default)]
pub struct Gateway {
    /// Weak: the manager holds the framework, which holds the bot, which holds this. A
    /// strong reference would keep the manager (and its shards, reconnecting) alive after
    /// the client is dropped, since its `Drop` is what stops them.
    manager: OnceLock<Weak<serenity::ShardManager>>,
    owned: Mutex<BTreeSet<u32>>,
}

/// One owned shard as serenity last reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardState {
    pub id: u32,
    /// `connected`, `connecting`, `handshake`, `identifying`, `resuming`,
    /// `disconnected`, or `stopped` (no runner: waiting to start again).
    pub stage: &'static str,
    /// Between the last heartbeat and its acknowledgement.
    pub latency: Option<Duration>,
}

impl ShardState {
    pub fn connected(&self) -> bool {
        self.stage == "connected"
    }
}

/// Every stage [`ShardState::stage`] can name, for a complete state set in `/metrics`.
pub const STAGES: [&str; 7] = [
    "connected",
    "connecting",
    "handshake",
    "identifying",
    "resuming",
    "disconnected",
    "stopped",
];

fn stage_name(stage: serenity::ConnectionStage) -> &'static str {
    use serenity::ConnectionStage as S;
    match stage {
        S::Connected => "connected",
        S::Connecting => "connecting",
        S::Handshake => "handshake",
        S::Identifying => "identifying",
        S::Resuming => "resuming",
        _ => "disconnected",
    }
}

impl Gateway {
    /// The client's shard manager, once it exists (it is built after the bot).
    pub fn attach(&self, manager: &Arc<serenity::ShardManager>) {
        let _ = self.manager.set(Arc::downgrade(manager));
    }

    /// This process runs these shards from now on.
    pub fn own(&self, shards: impl IntoIterator<Item = u32>) {
        self.owned.lock().expect("owned lock").extend(shards);
    }

    /// The shard was handed to another node.
    pub fn disown(&self, shard: u32) {
        self.owned.lock().expect("owned lock").remove(&shard);
    }

    /// Each owned shard's stage and latency (none before the gateway starts).
    pub async fn shards(&self) -> Vec<ShardState> {
        let owned: Vec<u32> = self
            .owned
            .lock()
            .expect("owned lock")
            .iter()
            .copied()
            .collect();
        let Some(manager) = self.manager.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        let runners = manager.runners.lock().await;
        owned
            .into_iter()
            .map(|id| match runners.get(&serenity::ShardId(id)) {
                Some(r) => ShardState {
                    id,
                    stage: stage_name(r.stage),
                    latency: r.latency,
                },
                None => ShardState {
                    id,
                    stage: "stopped",
                    latency: None,
                },
            })
            .collect()
    }
}
