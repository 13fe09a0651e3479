//! The cluster's hands on the gateway: starting and stopping single shards of serenity's
//! shard manager, and handing a stopped shard's guilds to whichever node takes it next.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use poise::serenity_prelude as serenity;
use serenity::ShardId;

use super::Bot;
use crate::cluster::{
    shard_of, Leases, Member, Membership, NodeInfo, NodeStats, ShardControl, Timing,
};
use crate::config::ShardPlan;
use crate::resources::CleanupReason;

/// How long the queues of a handed-off shard may take to reach the database.
const SAVE_WAIT: Duration = Duration::from_secs(10);

/// Starts and stops shards of `total` on this process's shard manager.
pub struct SerenityShards {
    pub manager: Arc<serenity::ShardManager>,
    pub bot: Arc<Bot>,
    pub total: u32,
    meter: std::sync::Mutex<crate::status::ProcessMeter>,
}

impl SerenityShards {
    pub fn new(manager: Arc<serenity::ShardManager>, bot: Arc<Bot>, total: u32) -> Self {
        let meter = std::sync::Mutex::new(bot.status.process_meter());
        SerenityShards {
            manager,
            bot,
            total,
            meter,
        }
    }
}

#[async_trait]
impl ShardControl for SerenityShards {
    async fn start(&self, shard: u32) {
        // `restart` first stops the shard and waits up to 5 s to hear that it stopped; a
        // shard that never ran will not say so, so say it on its behalf.
        self.manager.shutdown_finished(ShardId(shard));
        self.bot.gateway.own([shard]);
        self.manager.restart(ShardId(shard)).await;
    }

    async fn stop(&self, shard: u32) {
        let guilds: Vec<u64> = self
            .bot
            .players
            .guilds()
            .into_iter()
            .filter(|g| shard_of(*g, self.total) == shard)
            .collect();
        let players = &self.bot.players;
        futures::future::join_all(
            guilds
                .iter()
                .map(|g| players.cleanup(*g, CleanupReason::HandOff, false)),
        )
        .await;
        // Off the gateway before waiting on the database: a fenced node (one that cannot
        // reach the database) must not still hold the shard when its lease runs out.
        self.manager.shutdown(ShardId(shard), 1000).await;
        self.bot.gateway.disown(shard);
        // The next owner reads these queues as soon as it has the shard (the lease is
        // released after this returns). What cannot be saved in time is dropped, never
        // written over the new owner's queue later.
        if !self.bot.queue_writer.flush(SAVE_WAIT).await {
            tracing::warn!(
                shard,
                "the database did not take the hand-off's queues in time; the next owner \
                 resumes from the last saved state"
            );
            self.bot.queue_writer.forget(guilds.clone());
        }
        tracing::info!(shard, guilds = guilds.len(), "shard stopped and handed off");
    }

    async fn stats(&self) -> NodeStats {
        let figures = self.meter.lock().expect("meter lock").read();
        NodeStats {
            shards: Vec::new(),
            calls: self.bot.players.len() as u64,
            rss_bytes: figures.rss_bytes,
            cpu_percent: figures.cpu_percent,
        }
    }
}

/// Joins the cluster that shares `pool`: fixes (or learns) the shard count, prepares the
/// shard manager and songbird for it without starting any shard, and starts the node's
/// loop, which starts the shards this node wins. Both tasks stop with the bot.
pub async fn join_cluster(
    client: &serenity::Client,
    songbird: &Arc<songbird::Songbird>,
    bot: &Arc<Bot>,
    pool: sqlx::PgPool,
) -> anyhow::Result<()> {
    let config = &bot.config;
    let gateway = client
        .http
        .get_bot_gateway()
        .await
        .context("cannot ask Discord how many shards the bot needs")?;
    let wanted = match config.discord.shards {
        ShardPlan::Total(n) => n,
        ShardPlan::Auto | ShardPlan::Range { .. } => gateway.shards.max(1),
    };
    let leases = Leases::new(pool.clone(), config.cluster.lease);
    let total = leases
        .ensure_shards(wanted)
        .await
        .context("cannot set up the cluster's shards")?;
    if total != wanted {
        tracing::warn!(
            total,
            wanted,
            "the cluster already runs a different shard count; using the cluster's"
        );
    }
    let user = client
        .http
        .get_current_user()
        .await
        .context("cannot read the bot's own user")?;
    serenity::VoiceGatewayManager::initialise(&**songbird, total, user.id).await;
    // Every shard is this manager's to start, but none starts until the node's loop says.
    client.shard_manager.set_shards(0, 0, total).await;
    let name = config.cluster.node_name.clone().unwrap_or_else(host_name);
    let me = NodeInfo::this_process(&name);
    tracing::info!(node = %me.id, total, max_concurrency = gateway.session_start_limit.max_concurrency, "joined the cluster");
    let control = Arc::new(SerenityShards::new(
        client.shard_manager.clone(),
        bot.clone(),
        total,
    ));
    let member = Member::new(
        me.clone(),
        leases.clone(),
        control,
        Timing::new(&config.cluster),
        total,
        gateway.session_start_limit.max_concurrency as u32,
    );
    let wake = Arc::new(tokio::sync::Notify::new());
    let on_message = {
        let bot = Arc::downgrade(bot);
        let me = me.id.clone();
        let wake = wake.clone();
        move |message: &str| {
            if let (Some(from), Some(bot)) = (Membership::cleanup_from(message), bot.upgrade()) {
                if from != me {
                    let from = from.to_string();
                    let tasks = bot.tasks.clone();
                    tasks.spawn(async move {
                        let (left, swept) = super::commands::admin::cleanup_node(&bot, true).await;
                        tracing::info!(left, ?swept, from, "cleanup asked by another node");
                    });
                }
            }
            wake.notify_one();
        }
    };
    bot.tasks.spawn(crate::cluster::leases::listen(
        pool,
        Arc::new(on_message),
        bot.shutdown.child_token(),
    ));
    bot.tasks
        .spawn(member.run(wake, bot.shutdown.child_token()));
    let _ = bot.cluster.set(Membership::new(leases, me));
    Ok(())
}

/// This machine's name, for `/resources` when `cluster.node_name` is unset.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "encore".into())
}
