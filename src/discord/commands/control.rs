//! Playback control: skip (and skip votes), back, pause, resume, stop, leave, seek,
//! volume, loop.

use poise::serenity_prelude as serenity;

use super::actions::{self, caller, say};
use super::checks::{listening, listening_to_something, sentence};
use super::dj;
use super::parse;
use crate::discord::bot::{Context, Error};
use crate::discord::format::{self, bold};
use crate::discord::presence::humans_in;
use crate::discord::reply;
use crate::player::voice::VoiceError;
use crate::player::{LoopMode, PlayerError, Request};

/// How long `/seek` waits for the player's answer (a seek waits on the media server).
const SEEK_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Skip the track that is playing (or several); without DJ rights, vote to skip it
#[poise::command(slash_command, guild_only)]
pub async fn skip(
    ctx: Context<'_>,
    #[description = "How many tracks to skip, counting the one playing (default 1)"]
    #[min = 1]
    #[max = 10000]
    count: Option<i64>,
) -> Result<(), Error> {
    let Some(l) = listening_to_something(ctx).await? else {
        return Ok(());
    };
    let Some(n) = usize::try_from(count.unwrap_or(1)).ok().filter(|n| *n >= 1) else {
        return reply::error(ctx, "Skip at least 1 track (the one playing counts).").await;
    };
    let listeners = humans_in(ctx.serenity_context(), l.guild.into(), l.channel.into());
    say(ctx, actions::skip(&l, &caller(ctx, &l), n, listeners).await).await
}

/// Go back to the previous track
#[poise::command(slash_command, guild_only)]
pub async fn back(ctx: Context<'_>) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    say(ctx, actions::back(&l, &caller(ctx, &l)).await).await
}

/// Pause the music
#[poise::command(slash_command, guild_only)]
pub async fn pause(ctx: Context<'_>) -> Result<(), Error> {
    let Some(l) = listening_to_something(ctx).await? else {
        return Ok(());
    };
    say(ctx, actions::pause(&l, &caller(ctx, &l)).await).await
}

/// Resume paused music
#[poise::command(slash_command, guild_only)]
pub async fn resume(ctx: Context<'_>) -> Result<(), Error> {
    let Some(l) = listening_to_something(ctx).await? else {
        return Ok(());
    };
    say(ctx, actions::resume(&l, &caller(ctx, &l)).await).await
}

/// Stop the music and clear the queue
#[poise::command(slash_command, guild_only)]
pub async fn stop(ctx: Context<'_>) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    say(ctx, actions::stop(&l, &caller(ctx, &l)).await).await
}

/// Clear the queue and leave the voice channel
#[poise::command(slash_command, guild_only)]
pub async fn leave(ctx: Context<'_>) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    if !dj::require(ctx, Some(&l.snapshot), "make me leave").await? {
        return Ok(());
    }
    match l
        .player
        .call(|reply| Request::Leave {
            reason: crate::resources::CleanupReason::User,
            reply,
        })
        .await
    {
        Ok(()) => reply::ok(ctx, format!("Left <#{}>. Bye!", l.channel)).await,
        Err(e) => reply::error(ctx, sentence(&e)).await,
    }
}

/// Jump to a time in the track that is playing
#[poise::command(slash_command, guild_only)]
pub async fn seek(
    ctx: Context<'_>,
    #[description = "Where to go: 1:23, 83 (seconds) or 1m23s; +30 or -10 jump from here"]
    #[max_length = 30]
    time: String,
) -> Result<(), Error> {
    let target = match parse::parse_time(&time) {
        Ok(t) => t,
        Err(e) => return reply::error(ctx, e).await,
    };
    let Some(l) = listening_to_something(ctx).await? else {
        return Ok(());
    };
    if !dj::require(ctx, Some(&l.snapshot), "seek").await? {
        return Ok(());
    }
    let cur = l.snapshot.current.as_ref().expect("checked");
    let title = bold(&cur.track.title, 80);
    if cur.track.is_live {
        return reply::error(ctx, format!("{title} is a live stream: it can't seek.")).await;
    }
    let to = target.resolve(l.snapshot.position.unwrap_or_default());
    if let Some(total) = cur.track.duration.filter(|d| !d.is_zero()) {
        if to >= total {
            return reply::error(
                ctx,
                format!(
                    "{title} is {} long; pick a time before that.",
                    format::clock(total)
                ),
            )
            .await;
        }
    }
    // Opening a stream at the new position can take a moment.
    ctx.defer().await?;
    let at = format::clock(to);
    // It answers once the seek landed: that waits on the media server.
    let seek = |reply| Request::Seek { to, reply };
    match l.player.call_within(SEEK_ANSWER_WAIT, seek).await {
        Ok(_) => {
            let of = cur
                .track
                .duration
                .map(|d| format!(" / {}", format::clock(d)))
                .unwrap_or_default();
            reply::ok(ctx, format!("Jumped to {at}{of} in {title}.")).await
        }
        Err(PlayerError::Voice(VoiceError::NotSeekable)) => {
            reply::error_after_defer(
                ctx,
                format!(
                    "{title} can't jump to a time: its source doesn't allow seeking (a live stream, or a server that only streams from the start)."
                ),
            )
            .await
        }
        Err(PlayerError::Voice(VoiceError::Play(reason))) => {
            reply::error_after_defer(
                ctx,
                format!("Couldn't jump to {at}: {reason}. {title} goes on from where it was."),
            )
            .await
        }
        Err(e) => reply::error_after_defer(ctx, sentence(&e)).await,
    }
}

const PASSTHROUGH: &str =
    "100% keeps Opus passthrough (the source's audio untouched: best quality, least CPU)";

/// Show or change the volume, in percent (100 keeps the best quality)
#[poise::command(slash_command, guild_only)]
pub async fn volume(
    ctx: Context<'_>,
    #[description = "Percent, 0-200 (100 keeps Opus passthrough: best quality)"]
    #[min = 0]
    #[max = 200]
    level: Option<i64>,
) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    let default = ctx.data().settings.get(l.guild).default_volume;
    let old = l.snapshot.volume;
    let Some(level) = level else {
        return reply::ok(
            ctx,
            format!("Volume is {old}% (this server's default is {default}%). {PASSTHROUGH}."),
        )
        .await;
    };
    let Some(level) = u16::try_from(level).ok().filter(|v| *v <= 200) else {
        return reply::error(
            ctx,
            format!("Volume goes from 0 to 200 (percent); it is {old}% now."),
        )
        .await;
    };
    if !dj::require(ctx, Some(&l.snapshot), "change the volume").await? {
        return Ok(());
    }
    match l
        .player
        .call(|reply| Request::SetVolume {
            percent: level,
            reply,
        })
        .await
    {
        Ok(v) => {
            let on = l
                .current_title()
                .map(|t| format!(" for {t}"))
                .unwrap_or_default();
            reply::ok(
                ctx,
                format!("Volume set to {v}% (was {old}%){on}. {PASSTHROUGH}."),
            )
            .await
        }
        Err(e) => reply::error(ctx, sentence(&e)).await,
    }
}

/// `/loop` modes, offered as choices with string values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopArg(pub LoopMode);

impl LoopArg {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "no" => Some(Self(LoopMode::Off)),
            "track" | "song" | "one" => Some(Self(LoopMode::Track)),
            "queue" | "all" => Some(Self(LoopMode::Queue)),
            _ => None,
        }
    }
}

#[poise::async_trait]
impl poise::SlashArgument for LoopArg {
    async fn extract(
        _: &serenity::Context,
        _: &serenity::CommandInteraction,
        value: &serenity::ResolvedValue<'_>,
    ) -> Result<Self, poise::SlashArgError> {
        let text = match value {
            serenity::ResolvedValue::String(s) => *s,
            _ => {
                return Err(poise::SlashArgError::new_command_structure_mismatch(
                    "expected off, track or queue",
                ))
            }
        };
        Self::parse(text).ok_or_else(|| {
            poise::SlashArgError::new_parse(
                "choose off, track or queue".into(),
                text.chars().take(30).collect(),
            )
        })
    }

    fn create(builder: serenity::CreateCommandOption) -> serenity::CreateCommandOption {
        builder
            .kind(serenity::CommandOptionType::String)
            .add_string_choice("off: play the queue once", "off")
            .add_string_choice("track: repeat the song that is playing", "track")
            .add_string_choice("queue: repeat the whole queue", "queue")
    }
}

/// Repeat the current track or the whole queue, or stop repeating
#[poise::command(slash_command, guild_only, rename = "loop")]
pub async fn loop_(
    ctx: Context<'_>,
    #[description = "off, track (repeat this song) or queue (repeat everything)"] mode: LoopArg,
) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    say(ctx, actions::set_loop(&l, &caller(ctx, &l), mode.0).await).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_modes_read_forgivingly() {
        assert_eq!(LoopArg::parse("Track"), Some(LoopArg(LoopMode::Track)));
        assert_eq!(LoopArg::parse(" queue "), Some(LoopArg(LoopMode::Queue)));
        assert_eq!(LoopArg::parse("off"), Some(LoopArg(LoopMode::Off)));
        assert_eq!(LoopArg::parse("sideways"), None);
    }
}
