//! Slash commands, one file per group. Shared checks live here.

mod control;
mod play;
mod queue;

use poise::serenity_prelude as serenity;

use super::{reply, Context, Data, Error};
use crate::player::{PlayerError, PlayerHandle};

pub fn all() -> Vec<poise::Command<Data, Error>> {
    vec![
        play::play(),
        queue::queue(),
        queue::nowplaying(),
        control::skip(),
        control::pause(),
        control::resume(),
        control::stop(),
        control::leave(),
    ]
}

/// The voice channel the caller is in, from the gateway cache.
fn caller_channel(ctx: Context<'_>) -> Option<u64> {
    let guild = ctx.guild()?;
    guild
        .voice_states
        .get(&ctx.author().id)
        .and_then(|vs| vs.channel_id)
        .map(serenity::ChannelId::get)
}

/// The guild's player for a command that controls playback: refuses (privately) when
/// nothing runs or when the caller is not listening in the bot's channel.
async fn listening_player(ctx: Context<'_>) -> Result<Option<PlayerHandle>, Error> {
    let Some(guild) = ctx.guild_id() else {
        reply::error(ctx, "This command only works in a server.").await?;
        return Ok(None);
    };
    let Some(player) = ctx.data().players.get(guild.get()) else {
        reply::error(ctx, "Nothing is playing. Start something with /play.").await?;
        return Ok(None);
    };
    let snapshot = player
        .ask(|reply| crate::player::Request::Snapshot { reply })
        .await;
    let bot_channel = snapshot.ok().and_then(|s| s.voice_channel);
    match (bot_channel, caller_channel(ctx)) {
        (Some(b), Some(c)) if b == c => Ok(Some(player)),
        (Some(b), _) => {
            reply::error(ctx, format!("Join <#{b}> to control the music.")).await?;
            Ok(None)
        }
        (None, _) => {
            reply::error(
                ctx,
                "I'm not in a voice channel. Start something with /play.",
            )
            .await?;
            Ok(None)
        }
    }
}

/// The sentence a player refusal becomes, capitalised.
fn sentence(e: &PlayerError) -> String {
    let s = e.to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + ".",
        None => s,
    }
}
