//! Gateway events that change what the bot holds: its own voice state, who is in its
//! channel, channels and guilds going away. Each becomes a message to the guild's player;
//! so does a press of a now-playing panel's button (`buttons.rs`).

use poise::serenity_prelude as serenity;

use super::bot::{Data, Error};
use super::presence::humans_in;
use crate::player::Request;
use crate::resources::CleanupReason;

pub async fn on_event(
    framework: poise::FrameworkContext<'_, Data, Error>,
    event: &serenity::FullEvent,
) -> Result<(), Error> {
    let bot = framework.user_data().await;
    let ctx = framework.serenity_context;
    match event {
        // With `discord.shards = "auto"` the total is first known here. A static plan
        // says which shards it owns when it starts them, and so does a cluster node (a
        // PostgreSQL store without a static plan: `App::run`) when it wins one.
        serenity::FullEvent::Ready { data_about_bot } => {
            let clustered = matches!(bot.stores.db, crate::db::Db::Postgres(_));
            if let (Some(info), false, crate::config::ShardPlan::Auto) =
                (data_about_bot.shard, clustered, bot.config.discord.shards)
            {
                bot.gateway.own(0..info.total);
            }
        }
        // A guild (and who is in which of its channels) is known only now, not at READY.
        serenity::FullEvent::GuildCreate { guild, .. } => {
            super::restore::guild_available(ctx, bot, guild.id.get());
        }
        serenity::FullEvent::VoiceStateUpdate { old, new } => {
            let Some(guild) = new.guild_id else {
                return Ok(());
            };
            let players = &bot.players;
            let Some(player) = players.get(guild.get()) else {
                return Ok(());
            };
            let me = ctx.cache.current_user().id;
            if new.user_id == me {
                // Only the bot's own state says whether it was moved or disconnected.
                player
                    .send(Request::BotVoiceState {
                        channel: new.channel_id.map(|c| c.get()),
                    })
                    .await;
                if let Some(c) = new.channel_id {
                    let listeners = humans_in(ctx, guild, c);
                    player
                        .send(Request::Presence {
                            channel: c.get(),
                            listeners,
                        })
                        .await;
                }
                return Ok(());
            }
            // Someone else: only the channels they left and joined matter.
            let left = old.as_ref().and_then(|o| o.channel_id);
            for channel in [left, new.channel_id].into_iter().flatten() {
                let listeners = humans_in(ctx, guild, channel);
                player
                    .send(Request::Presence {
                        channel: channel.get(),
                        listeners,
                    })
                    .await;
            }
        }
        // `unavailable` means an outage, not a removal: keep the call, Discord resumes it.
        serenity::FullEvent::GuildDelete { incomplete, .. } if !incomplete.unavailable => {
            bot.players
                .cleanup(incomplete.id.get(), CleanupReason::GuildRemoved, false)
                .await;
        }
        // The now-playing panel's buttons (other components have their own collectors).
        serenity::FullEvent::InteractionCreate {
            interaction: serenity::Interaction::Component(press),
        } if press.data.custom_id.starts_with(super::panel::PREFIX) => {
            super::buttons::pressed(ctx, bot, press).await;
        }
        serenity::FullEvent::ChannelDelete { channel, .. } => {
            let guild = channel.guild_id.get();
            if let Some(player) = bot.players.get(guild) {
                let snap = player.ask(|reply| Request::Snapshot { reply }).await.ok();
                if snap.and_then(|s| s.voice_channel) == Some(channel.id.get()) {
                    bot.players
                        .cleanup(guild, CleanupReason::ChannelDeleted, false)
                        .await;
                }
            }
        }
        _ => {}
    }
    Ok(())
}
