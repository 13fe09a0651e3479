//! After a restart: rejoin the channels that had music and resume where it was, unless
//! the channel is gone or empty, in which case the saved queue is dropped silently.

use std::sync::Arc;

use poise::serenity_prelude as serenity;

use super::bot::Bot;
use super::presence::humans_in;
use crate::player::persist::QueueStore;
use crate::player::Request;

/// Starts the restore on the app's task tracker (it stops with the app).
pub fn spawn(ctx: serenity::Context, bot: Arc<Bot>) {
    let tasks = bot.tasks.clone();
    let shutdown = bot.shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = restore(&ctx, &bot) => {}
            _ = shutdown.cancelled() => {}
        }
    });
}

async fn restore(ctx: &serenity::Context, bot: &Bot) {
    let saved = match crate::db::queues::load_all(&bot.stores.db).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot read saved queues; nothing resumed");
            return;
        }
    };
    for (guild, queue) in saved {
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
            continue;
        }
        let player = bot.players.get_or_start(guild);
        match player
            .call_within(crate::player::JOIN_WAIT, |reply| Request::Restore {
                saved: queue,
                reply,
            })
            .await
        {
            Ok(()) => tracing::info!(guild, "resumed the queue saved before the restart"),
            Err(e) => {
                tracing::warn!(guild, error = %e, "could not resume a saved queue");
                bot.queue_writer.save(guild, None);
            }
        }
    }
}
