//! Editing what waits in the queue: remove, move, shuffle, clear.

use super::checks::{listening, sentence};
use super::dj;
use super::parse::{check_position, parse_positions};
use crate::discord::bot::{Context, Error};
use crate::discord::format::{self, bold};
use crate::discord::reply;
use crate::player::queue::QueueError;
use crate::player::{PlayerError, Request};

/// Remove a track, or a range like 3-5, from the queue
#[poise::command(slash_command, guild_only)]
pub async fn remove(
    ctx: Context<'_>,
    #[description = "Position from /queue, or a range like 3-5 (`last` works too)"]
    #[max_length = 30]
    position: String,
    #[description = "Remove everything from `position` up to this position"]
    #[min = 1]
    to: Option<i64>,
) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    let len = l.snapshot.upcoming.len();
    let text = match to {
        Some(t) => format!("{}-{t}", position.trim()),
        None => position,
    };
    let (from, to) = match parse_positions(&text, len) {
        Ok(r) => r,
        Err(e) => return reply::error(ctx, e).await,
    };
    let me = ctx.author().id.get();
    let only_mine = l.snapshot.upcoming[from - 1..to]
        .iter()
        .all(|e| e.requester.id == me);
    if !only_mine && !dj::require(ctx, Some(&l.snapshot), "remove other people's tracks").await? {
        return Ok(());
    }
    match l
        .player
        .call(|reply| Request::Remove {
            from,
            to,
            ids: l.snapshot.upcoming[from - 1..to]
                .iter()
                .map(|e| e.id)
                .collect(),
            reply,
        })
        .await
    {
        Ok(gone) => {
            let text = match gone.as_slice() {
                [one] => format!(
                    "Removed {} (position {from}) from the queue.",
                    bold(&one.track.title, 80)
                ),
                [first, rest @ ..] => format!(
                    "Removed {} (positions {from}-{to}): {} and {} more.",
                    format::tracks(gone.len()),
                    bold(&first.track.title, 60),
                    rest.len()
                ),
                [] => "Nothing was removed.".into(),
            };
            reply::ok(ctx, text).await
        }
        Err(e) => reply::error(ctx, queue_sentence(&e, len)).await,
    }
}

/// Move a track to another position in the queue
#[poise::command(slash_command, guild_only, rename = "move")]
pub async fn move_(
    ctx: Context<'_>,
    #[description = "The track's position now (from /queue)"]
    #[min = 1]
    from: i64,
    #[description = "Where it should go (1 = next)"]
    #[min = 1]
    to: i64,
) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    let len = l.snapshot.upcoming.len();
    let pos = |p: i64| usize::try_from(p).unwrap_or(0);
    let (from, to) = (pos(from), pos(to));
    if let Err(e) = check_position(from, len).and_then(|()| check_position(to, len)) {
        return reply::error(ctx, e).await;
    }
    if !dj::require(ctx, Some(&l.snapshot), "move tracks").await? {
        return Ok(());
    }
    let seen = &l.snapshot.upcoming[from - 1];
    let title = bold(&seen.track.title, 80);
    if from == to {
        return reply::error(ctx, format!("{title} is already at position {to}.")).await;
    }
    let id = seen.id;
    match l
        .player
        .call(|reply| Request::Move {
            from,
            to,
            id,
            reply,
        })
        .await
    {
        Ok(e) => {
            reply::ok(
                ctx,
                format!(
                    "Moved {} from position {from} to {to}.",
                    bold(&e.track.title, 80)
                ),
            )
            .await
        }
        Err(e) => reply::error(ctx, queue_sentence(&e, len)).await,
    }
}

/// Shuffle the tracks waiting in the queue
#[poise::command(slash_command, guild_only)]
pub async fn shuffle(ctx: Context<'_>) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    let said = super::actions::shuffle(&l, &super::actions::caller(ctx, &l)).await;
    super::actions::say(ctx, said).await
}

/// Remove everything waiting in the queue (the track playing goes on)
#[poise::command(slash_command, guild_only)]
pub async fn clear(ctx: Context<'_>) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    if l.snapshot.upcoming.is_empty() {
        return reply::error(ctx, "The queue is already empty.").await;
    }
    if !dj::require(ctx, Some(&l.snapshot), "clear the queue").await? {
        return Ok(());
    }
    match l.player.call(|reply| Request::Clear { reply }).await {
        Ok(n) => {
            let keeps = l
                .current_title()
                .map(|t| format!("; {t} keeps playing"))
                .unwrap_or_default();
            reply::ok(
                ctx,
                format!("Cleared {} from the queue{keeps}.", format::tracks(n)),
            )
            .await
        }
        Err(e) => reply::error(ctx, sentence(&e)).await,
    }
}

/// A queue refusal, worded with the queue's length.
fn queue_sentence(e: &PlayerError, len: usize) -> String {
    match e {
        PlayerError::Queue(QueueError::NoSuchPosition(p)) => check_position(*p, len)
            .err()
            .unwrap_or_else(|| "The queue changed meanwhile; check /queue and try again.".into()),
        PlayerError::Queue(QueueError::Empty) => {
            "There is nothing to shuffle: fewer than two tracks are waiting.".into()
        }
        other => sentence(other),
    }
}
