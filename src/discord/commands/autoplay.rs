//! `/autoplay on|off`: when the queue runs out, queue a related track (saved per server;
//! the player does the rest: `crate::player::autoplay`).

use super::dj;
use crate::discord::bot::{Context, Error};
use crate::discord::reply;
use crate::settings::Change;

/// When the queue runs out, keep playing related tracks (on) or stop (off)
#[poise::command(slash_command, guild_only)]
pub async fn autoplay(
    ctx: Context<'_>,
    #[description = "on: play related tracks when the queue runs out; off: stop there"]
    #[choices("on", "off")]
    mode: &'static str,
) -> Result<(), Error> {
    let on = mode == "on";
    if !dj::require(ctx, None, "turn autoplay on or off").await? {
        return Ok(());
    }
    let bot = ctx.data().clone();
    let guild = ctx.guild_id().expect("guild_only").get();
    if let Err(e) = bot.settings.apply(guild, Change::Autoplay(on)).await {
        tracing::warn!(guild, error = %e, "could not save the autoplay setting");
        return reply::error(ctx, e.to_string()).await;
    }
    tracing::info!(guild, user = %ctx.author().id, on, "autoplay set");
    bot.players.reconfigure(guild).await;
    let text = match on {
        true => "Autoplay is on: when the queue runs out, I'll play related tracks (from the song's mix, or what this server plays most).",
        false => "Autoplay is off: the music stops when the queue runs out.",
    };
    reply::ok(ctx, text).await
}
