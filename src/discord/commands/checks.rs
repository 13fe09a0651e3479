//! The checks all command groups share; apart so no command imports the mod.rs that lists it.

use poise::serenity_prelude as serenity;

use crate::discord::bot::{Context, Error};
use crate::discord::reply;
use crate::player::{PlayerError, PlayerHandle, Snapshot};

/// The voice channel the caller is in, from the gateway cache.
pub(super) fn caller_channel(ctx: Context<'_>) -> Option<u64> {
    let guild = ctx.guild()?;
    guild
        .voice_states
        .get(&ctx.author().id)
        .and_then(|vs| vs.channel_id)
        .map(serenity::ChannelId::get)
}

/// A caller who listens in the bot's channel, with the player and its state.
pub(super) struct Listening {
    pub guild: u64,
    pub player: PlayerHandle,
    pub snapshot: Snapshot,
    /// The bot's (and the caller's) voice channel.
    pub channel: u64,
}

impl Listening {
    /// The title of the current track, bold and escaped, or "nothing".
    pub fn current_title(&self) -> Option<String> {
        self.snapshot
            .current
            .as_ref()
            .map(|e| crate::discord::format::bold(&e.track.title, 80))
    }
}

/// The guild's player for a command that controls playback: refuses (privately) when
/// nothing runs or when the caller is not listening in the bot's channel.
pub(super) async fn listening(ctx: Context<'_>) -> Result<Option<Listening>, Error> {
    let Some(guild) = ctx.guild_id() else {
        reply::error(ctx, "This command only works in a server.").await?;
        return Ok(None);
    };
    let Some(player) = ctx.data().players.get(guild.get()) else {
        reply::error(ctx, "Nothing is playing. Start something with /play.").await?;
        return Ok(None);
    };
    let snapshot = match player
        .ask(|reply| crate::player::Request::Snapshot { reply })
        .await
    {
        Ok(s) => s,
        Err(_) => {
            reply::error(ctx, "Nothing is playing. Start something with /play.").await?;
            return Ok(None);
        }
    };
    match (snapshot.voice_channel, caller_channel(ctx)) {
        (Some(b), Some(c)) if b == c => Ok(Some(Listening {
            guild: guild.get(),
            player,
            snapshot,
            channel: b,
        })),
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

/// [`listening`], also refusing when nothing is playing.
pub(super) async fn listening_to_something(ctx: Context<'_>) -> Result<Option<Listening>, Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(None);
    };
    if l.snapshot.current.is_none() {
        reply::error(ctx, "Nothing is playing. Start something with /play.").await?;
        return Ok(None);
    }
    Ok(Some(l))
}

/// The sentence a player refusal becomes, capitalised; the player's data becomes Discord
/// markup here (a channel id becomes a mention).
pub(super) fn sentence(e: &PlayerError) -> String {
    let s = match e {
        PlayerError::OtherChannel(c) => {
            format!("I'm already playing in <#{c}>; join that channel to control the music")
        }
        other => other.to_string(),
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + ".",
        None => s,
    }
}
