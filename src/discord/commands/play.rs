use std::sync::Arc;

use super::{caller_channel, reply, sentence, Context, Error};
use crate::discord::format;
use crate::player::{Enqueued, PlayerError, Request, Requester};
use crate::sources::{self, Track};

/// Play a song from a URL, or search for it by name
#[poise::command(slash_command, guild_only)]
pub async fn play(
    ctx: Context<'_>,
    #[description = "A link (YouTube, SoundCloud, a file...) or words to search for"]
    #[max_length = 500]
    query: String,
) -> Result<(), Error> {
    let bot = ctx.data().clone();
    let guild = ctx.guild_id().expect("guild_only").get();
    let Some(voice_channel) = caller_channel(ctx) else {
        return reply::error(ctx, "Join a voice channel first, then use /play.").await;
    };
    // Refuse bad input before spending a yt-dlp run on it.
    let query = match sources::parse_query(&query, &bot.policy).await {
        Ok(q) => q,
        Err(e) => return reply::error(ctx, e.to_string()).await,
    };
    // Resolving takes about a second: past Discord's three-second answer window.
    ctx.defer().await?;
    let track = match bot.ytdlp.resolve(&query).await {
        Ok(t) => Arc::new(t),
        Err(e) => {
            tracing::info!(guild, error = %e, "could not resolve a /play query");
            return reply::error_after_defer(ctx, e.to_string()).await;
        }
    };
    let requester = Requester {
        id: ctx.author().id.get(),
        name: ctx.author().display_name().to_string(),
    };
    let result = enqueue(ctx, guild, voice_channel, &track, &requester).await;
    match result {
        Ok(done) => {
            if let Err(e) = crate::db::history::record(&bot.db, guild, &track, requester.id).await {
                tracing::warn!(error = %e, "could not record play history");
            }
            reply::ok(ctx, added_line(&track, &done)).await
        }
        Err(e) => reply::error_after_defer(ctx, sentence(&e)).await,
    }
}

async fn enqueue(
    ctx: Context<'_>,
    guild: u64,
    voice_channel: u64,
    track: &Arc<Track>,
    requester: &Requester,
) -> Result<Enqueued, PlayerError> {
    let players = &ctx.data().players;
    // A player that is just leaving answers `Gone`: a fresh one takes over.
    for _ in 0..2 {
        let player = players.get_or_start(guild);
        let r = player
            .call(|reply| Request::Enqueue {
                tracks: vec![track.clone()],
                requester: requester.clone(),
                voice_channel,
                text_channel: ctx.channel_id().get(),
                front: false,
                reply,
            })
            .await;
        if r != Err(PlayerError::Gone) {
            return r;
        }
    }
    Err(PlayerError::Gone)
}

fn added_line(track: &Track, done: &Enqueued) -> String {
    let what = format!("{} ({})", format::link(track, 80), format::length(track));
    match done.position {
        0 => format!("Playing {what}"),
        n => format!("Queued {what} at position {n}"),
    }
}
