//! The checks all command groups share; apart so no command imports the mod.rs that lists it.

use poise::serenity_prelude as serenity;

use crate::discord::bot::{Context, Error};
use crate::discord::reply;
use crate::player::{PlayerError, PlayerHandle, Snapshot};

/// The voice channel `user` is in, from the gateway cache.
pub(crate) fn channel_of(cache: &serenity::Cache, guild: u64, user: u64) -> Option<u64> {
    let guild = cache.guild(serenity::GuildId::new(guild))?;
    guild
        .voice_states
        .get(&serenity::UserId::new(user))
        .and_then(|vs| vs.channel_id)
        .map(serenity::ChannelId::get)
}

/// The voice channel the caller is in, from the gateway cache.
pub(super) fn caller_channel(ctx: Context<'_>) -> Option<u64> {
    let guild = ctx.guild_id()?;
    channel_of(
        &ctx.serenity_context().cache,
        guild.get(),
        ctx.author().id.get(),
    )
}

/// A caller who listens in the bot's channel, with the player and its state.
pub(crate) struct Listening {
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

const NOTHING: &str = "Nothing is playing. Start something with /play.";

/// The guild's player for whoever is in voice `caller` (a command or a panel button):
/// the refusal to show instead when nothing runs or they are not in the bot's channel.
pub(crate) async fn listening_in(
    players: &crate::player::Players,
    guild: u64,
    caller: Option<u64>,
) -> Result<Listening, String> {
    let player = players.get(guild).ok_or(NOTHING)?;
    let snapshot = player
        .ask(|reply| crate::player::Request::Snapshot { reply })
        .await
        .map_err(|_| NOTHING)?;
    match (snapshot.voice_channel, caller) {
        (Some(b), Some(c)) if b == c => Ok(Listening {
            guild,
            player,
            snapshot,
            channel: b,
        }),
        (Some(b), _) => Err(format!("Join <#{b}> to control the music.")),
        (None, _) => Err("I'm not in a voice channel. Start something with /play.".into()),
    }
}

/// [`listening_in`], also refusing when nothing is playing.
pub(crate) async fn listening_to_something_in(
    players: &crate::player::Players,
    guild: u64,
    caller: Option<u64>,
) -> Result<Listening, String> {
    let l = listening_in(players, guild, caller).await?;
    match l.snapshot.current {
        Some(_) => Ok(l),
        None => Err(NOTHING.into()),
    }
}

/// The guild's player for a command that controls playback: refuses (privately) when
/// nothing runs or when the caller is not listening in the bot's channel.
pub(super) async fn listening(ctx: Context<'_>) -> Result<Option<Listening>, Error> {
    let Some(guild) = ctx.guild_id() else {
        reply::error(ctx, "This command only works in a server.").await?;
        return Ok(None);
    };
    match listening_in(&ctx.data().players, guild.get(), caller_channel(ctx)).await {
        Ok(l) => Ok(Some(l)),
        Err(why) => {
            reply::error(ctx, why).await?;
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
        reply::error(ctx, NOTHING).await?;
        return Ok(None);
    }
    Ok(Some(l))
}

/// The sentence a player refusal becomes, capitalised; the player's data becomes Discord
/// markup here (a channel id becomes a mention).
pub(crate) fn sentence(e: &PlayerError) -> String {
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
