//! When a guild becomes available to this node (its GUILD_CREATE: after a start, after a
//! new gateway session, or when this node takes over the guild's shard in a cluster):
//! rejoin the channel that had music and resume where it was, unless the channel is gone
//! or empty, in which case the saved queue is dropped silently.
//!
//! Why per guild and not once at start-up: with several shards, or several nodes, the
//! guilds arrive shard by shard, and a node must only ever touch the queues of guilds it
//! serves. Deciding at the first "cache ready" would see half the guilds missing and drop
//! their queues, or (in a cluster) drop the queues another node is playing.

use std::sync::Arc;

use poise::serenity_prelude as serenity;

use super::bot::Bot;
use super::presence::humans_in;
use crate::player::persist::QueueStore;
use crate::player::Request;

/// Starts `guild`'s restore on the app's task tracker (it stops with the app), unless a
/// player already runs there (a new session of a guild still playing) or a restore of it
/// is under way.
pub fn guild_available(ctx: &serenity::Context, bot: &Arc<Bot>, guild: u64) {
    if bot.players.get(guild).is_some() {
        return;
    }
    if !bot.restoring.lock().expect("restoring lock").insert(guild) {
        return;
    }
    let (ctx, bot) = (ctx.clone(), bot.clone());
    let tasks = bot.tasks.clone();
    let shutdown = bot.shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = restore(&ctx, &bot, guild) => {}
            _ = shutdown.cancelled() => {}
        }
        bot.restoring.lock().expect("restoring lock").remove(&guild);
    });
}

async fn restore(ctx: &serenity::Context, bot: &Bot, guild: u64) {
    let queue = match crate::db::queues::load(&bot.stores.db, guild).await {
        Ok(Some(q)) => q,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(guild, error = %e, "cannot read the saved queue; nothing resumed");
            return;
        }
    };
    let g = serenity::GuildId::new(guild);
    let channel = serenity::ChannelId::new(queue.voice_channel);
    let exists = ctx
        .cache
        .guild(g)
        .is_some_and(|gd| gd.channels.contains_key(&channel));
    if !queue.playing || !exists || humans_in(ctx, g, channel).is_empty() {
        tracing::info!(
            guild,
            "dropping a saved queue: nothing to resume or nobody to hear it"
        );
        bot.queue_writer.save(guild, None);
        return;
    }
    let player = bot.players.get_or_start(guild);
    match player
        .call_within(crate::player::JOIN_WAIT, |reply| Request::Restore {
            saved: queue,
            reply,
        })
        .await
    {
        Ok(()) => tracing::info!(guild, "resumed the saved queue"),
        Err(e) => {
            tracing::warn!(guild, error = %e, "could not resume a saved queue");
            bot.queue_writer.save(guild, None);
        }
    }
}
