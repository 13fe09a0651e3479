//! `/play`: a link, a search, or a playlist (expanded up to `player.max_playlist`), at the
//! end of the queue or, with `next`, at the front.

use std::sync::Arc;

use poise::serenity_prelude as serenity;
use url::Url;

use super::checks::{caller_channel, sentence};
use super::dj;
use crate::cache::playlist::{Progress, Step};
use crate::cache::{CacheOutcome, PlaylistLimits, PlaylistOutcome, PlaylistReport};
use crate::discord::access;
use crate::discord::bot::{Context, Error};
use crate::discord::format::{self, bold};
use crate::discord::reply;
use crate::player::{Enqueued, PlayerError, Request, Requester, Snapshot};
use crate::resources::timings::LookupResult;
use crate::settings::GuildSettings;
use crate::sources::links::Link;
use crate::sources::{self, Query, Track};

/// Play a song or a playlist from a link, or search for a song by name
#[poise::command(slash_command, guild_only)]
pub async fn play(
    ctx: Context<'_>,
    #[description = "A link (YouTube, SoundCloud, a playlist, a file...) or words to search for"]
    #[max_length = 500]
    #[autocomplete = "super::autocomplete::play_query"]
    query: String,
    #[description = "Put it at the front of the queue, to play next"] next: Option<bool>,
) -> Result<(), Error> {
    let bot = ctx.data().clone();
    let guild = ctx.guild_id().expect("guild_only").get();
    let front = next.unwrap_or(false);
    let Some(voice_channel) = caller_channel(ctx) else {
        return reply::error(ctx, "Join a voice channel first, then use /play.").await;
    };
    let max = bot.config.limits.max_calls;
    if !bot.registry.has_call(guild) && bot.registry.calls().len() >= max {
        return reply::error(ctx, sentence(&PlayerError::Busy(max))).await;
    }
    let settings = bot.settings.get(guild);
    let player = bot.players.get(guild);
    // A bot idle in the channel stays while this is looked up.
    let _resolving = player.as_ref().map(|p| p.resolving());
    let snapshot = match &player {
        Some(p) => match p.ask(|reply| Request::Snapshot { reply }).await {
            Ok(s) => Some(s),
            Err(PlayerError::Slow) => return reply::error(ctx, sentence(&PlayerError::Slow)).await,
            Err(_) => None,
        },
        None => None,
    };
    if let Some(s) = &snapshot {
        if let Err(text) = precheck(s, voice_channel, settings.max_queue) {
            return reply::error(ctx, text).await;
        }
    }
    let joined = snapshot.as_ref().and_then(|s| s.voice_channel) == Some(voice_channel);
    if !joined {
        let (g, c) = (
            serenity::GuildId::new(guild),
            serenity::ChannelId::new(voice_channel),
        );
        if let Some(text) = access::voice_refusal(ctx.serenity_context(), g, c) {
            return reply::error(ctx, text).await;
        }
    }
    if front && !dj::standing(ctx, snapshot.as_ref()).may_control() {
        let dj = settings.dj_role;
        return reply::error(
            ctx,
            dj::refusal(
                dj,
                "put a track first; /play without `next` queues it at the end",
            ),
        )
        .await;
    }
    // Held until this command ends: the member's lookups (a playlist's entries too) count
    // against their cap until then.
    let _lookup = match bot.resolver.ytdlp().lookups().member(ctx.author().id.get()) {
        Ok(slot) => slot,
        Err(busy) => return reply::error(ctx, slow_down(busy.running)).await,
    };
    // Checking a link resolves its host name, and resolving the query takes about a
    // second: both past Discord's three-second answer window.
    ctx.defer().await?;
    let requester = Requester {
        id: ctx.author().id.get(),
        name: ctx.author().display_name().to_string(),
    };
    let target = Target {
        guild,
        voice_channel,
        front,
        requester,
    };
    // A Spotify, Apple Music or Deezer link is read by the bot itself (from the configured
    // bases), never handed to yt-dlp; its tracks are searched for and queued like a
    // playlist's.
    if let Some(link) = Link::detect(&query) {
        let room = room(snapshot.as_ref(), &settings);
        return play_link(ctx, &target, &settings, &link, room).await;
    }
    // Refuse bad input before spending a yt-dlp run on it.
    let query = match sources::parse_query(&query, bot.resolver.ytdlp().policy()).await {
        Ok(q) => q,
        Err(e) => {
            bot.registry.record_error(e.class());
            return reply::error_after_defer(ctx, e.to_string()).await;
        }
    };
    match &query {
        Query::Url(url) if looks_like_playlist(url) => {
            play_playlist(
                ctx,
                &target,
                &settings,
                url,
                room(snapshot.as_ref(), &settings),
            )
            .await
        }
        _ => play_one(ctx, &target, &settings, &query).await,
    }
}

/// The answer to a member at `limits.max_lookups_per_member`: at once, never queued.
fn slow_down(running: usize) -> String {
    let lookups = if running == 1 { "lookup" } else { "lookups" };
    format!("Slow down: you already have {running} {lookups} running; wait for them to finish.")
}

/// Where and for whom tracks are queued.
pub(super) struct Target {
    pub guild: u64,
    pub voice_channel: u64,
    pub front: bool,
    pub requester: Requester,
}

/// Refusals that need no lookup: the bot plays elsewhere, or the queue is full.
pub(super) fn precheck(s: &Snapshot, voice_channel: u64, max_queue: usize) -> Result<(), String> {
    let busy = s.current.is_some() || !s.upcoming.is_empty();
    if let Some(c) = s.voice_channel.filter(|c| *c != voice_channel && busy) {
        return Err(format!(
            "I'm already playing in <#{c}>; join that channel to add music."
        ));
    }
    if busy && s.upcoming.len() >= max_queue {
        return Err(full(max_queue));
    }
    Ok(())
}

pub(super) fn full(max_queue: usize) -> String {
    format!(
        "The queue is full ({}, this server's limit). Remove something or wait for it to play.",
        format::tracks(max_queue)
    )
}

/// Free places in the queue.
pub(super) fn room(s: Option<&Snapshot>, settings: &GuildSettings) -> usize {
    let waiting = s.map(|s| s.upcoming.len()).unwrap_or(0);
    settings.max_queue.saturating_sub(waiting)
}

/// Playlist links: YouTube `list=`, `/playlist`, SoundCloud `/sets/`, Bandcamp `/album/`,
/// and any path part starting with "playlist".
pub fn looks_like_playlist(url: &Url) -> bool {
    if url.query_pairs().any(|(k, v)| k == "list" && !v.is_empty()) {
        return true;
    }
    url.path_segments().into_iter().flatten().any(|seg| {
        let seg = seg.to_ascii_lowercase();
        seg.starts_with("playlist") || seg == "sets" || seg == "album"
    })
}

/// Why this server does not take `track`, if it doesn't (its maximum track duration).
pub(super) fn too_long(track: &Track, settings: &GuildSettings) -> Option<String> {
    let limit = settings.max_track_duration;
    if limit.is_zero() {
        return None;
    }
    if track.is_live {
        return Some(format!(
            "{} is a live stream; this server only plays tracks up to {}.",
            bold(&track.title, 80),
            format::clock(limit)
        ));
    }
    match track.duration {
        Some(d) if d > limit => Some(format!(
            "{} is {} long; this server's limit is {}.",
            bold(&track.title, 80),
            format::clock(d),
            format::clock(limit)
        )),
        // Treated like a live stream: it may never end. A playlist entry not looked up yet
        // has no length either; it is judged once it is.
        None if track.is_resolved() => Some(format!(
            "{} has no known length; this server only plays tracks up to {}.",
            bold(&track.title, 80),
            format::clock(limit)
        )),
        _ => None,
    }
}

async fn play_one(
    ctx: Context<'_>,
    target: &Target,
    settings: &GuildSettings,
    query: &Query,
) -> Result<(), Error> {
    let bot = ctx.data();
    let began = std::time::Instant::now();
    let resolved = bot.resolver.resolve(query).await;
    if let Some(t) = bot.registry.timings() {
        t.lookup(
            match &resolved {
                Ok(r) if r.cache == CacheOutcome::Hit => LookupResult::hit,
                Ok(_) => LookupResult::miss,
                Err(_) => LookupResult::failed,
            },
            began.elapsed(),
        );
    }
    let (track, cached) = match resolved {
        Ok(r) => (Arc::new(r.track), r.cache == CacheOutcome::Hit),
        Err(e) => {
            tracing::info!(guild = target.guild, error = %e, "could not resolve a /play query");
            bot.registry.record_error(e.class());
            return reply::error_after_defer(ctx, e.to_string()).await;
        }
    };
    if let Some(why) = too_long(&track, settings) {
        return reply::error_after_defer(ctx, why).await;
    }
    match enqueue(ctx, target, vec![track.clone()]).await {
        Ok(done) => {
            record(ctx, target, std::slice::from_ref(&track)).await;
            let mut line = added_line(&track, &done, target.front);
            if cached {
                line.push_str(" · from cache");
            }
            reply::ok(ctx, line).await
        }
        Err(e) => reply::error_after_defer(ctx, refusal(&e, settings)).await,
    }
}

async fn play_playlist(
    ctx: Context<'_>,
    target: &Target,
    settings: &GuildSettings,
    url: &Url,
    room: usize,
) -> Result<(), Error> {
    let bot = ctx.data();
    let fits = |t: &Track| too_long(t, settings).is_none();
    let (tx, rx) = tokio::sync::watch::channel(Progress::default());
    let limits = PlaylistLimits {
        max: bot.config.player.max_playlist,
        room,
        fits: &fits,
        progress: Some(&tx),
    };
    let began = std::time::Instant::now();
    let (resolved, shown) =
        with_progress(ctx, rx, bot.resolver.resolve_playlist(url, limits)).await;
    time_lookup(ctx, began, resolved.is_ok());
    answer_playlist(ctx, target, settings, url, room, resolved, shown).await
}

/// A streaming-service link: its page or API read, each track searched for, then queued
/// with a playlist's limits and reply.
async fn play_link(
    ctx: Context<'_>,
    target: &Target,
    settings: &GuildSettings,
    link: &Link,
    room: usize,
) -> Result<(), Error> {
    let bot = ctx.data();
    let fits = |t: &Track| too_long(t, settings).is_none();
    let (tx, rx) = tokio::sync::watch::channel(Progress::default());
    let limits = PlaylistLimits {
        max: bot.config.player.max_playlist,
        room,
        fits: &fits,
        progress: Some(&tx),
    };
    let began = std::time::Instant::now();
    let listing = match bot
        .links
        .read(link, limits.max.min(bot.links.max_tracks))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::info!(guild = target.guild, link = %link.url, error = %e, "could not read a {}", link.describe());
            time_lookup(ctx, began, false);
            return reply::error_after_defer(ctx, e.to_string()).await;
        }
    };
    let (resolved, shown) = with_progress(
        ctx,
        rx,
        bot.resolver.resolve_link(&bot.links, listing, limits),
    )
    .await;
    time_lookup(ctx, began, resolved.is_ok());
    answer_playlist(ctx, target, settings, &link.url, room, resolved, shown).await
}

/// Counts a playlist's (or a link's) lookups in `/resources`' timings.
fn time_lookup(ctx: Context<'_>, began: std::time::Instant, ok: bool) {
    if let Some(t) = ctx.data().registry.timings() {
        let result = match ok {
            true => LookupResult::miss,
            false => LookupResult::failed,
        };
        t.lookup(result, began.elapsed());
    }
}

/// How long a playlist's lookups run before the reply shows how far they have come, and
/// how often it is edited after that (edits are rate-limited like any message edit).
const PROGRESS_AFTER: std::time::Duration = std::time::Duration::from_secs(2);
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs a playlist's lookups; past [`PROGRESS_AFTER`] the deferred reply shows how far
/// they have come. Returns their result and whether the reply was edited (the answer then
/// replaces it). Each edit finishes before the lookups are polled again, so a late edit
/// can never land over the answer.
async fn with_progress<T>(
    ctx: Context<'_>,
    mut rx: tokio::sync::watch::Receiver<Progress>,
    work: impl std::future::Future<Output = T>,
) -> (T, bool) {
    let mut work = std::pin::pin!(work);
    let mut next = tokio::time::Instant::now() + PROGRESS_AFTER;
    let mut shown = false;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return (out, shown),
            _ = tokio::time::sleep_until(next) => {
                next += PROGRESS_EVERY;
                let p = *rx.borrow_and_update();
                if p.of > 0 {
                    reply::progress(ctx, progress_line(p)).await;
                    shown = true;
                }
            }
        }
    }
}

fn progress_line(p: Progress) -> String {
    match p.step {
        Step::Matching => format!("Finding the tracks… {} of {}", p.done, p.of),
        Step::Resolving => format!("Loading the tracks… {} of {}", p.done, p.of),
    }
}

/// Queues what a playlist (or a streaming-service link) resolved to, and says what was
/// queued and what was left out.
async fn answer_playlist(
    ctx: Context<'_>,
    target: &Target,
    settings: &GuildSettings,
    url: &Url,
    room: usize,
    resolved: Result<PlaylistOutcome, sources::ResolveError>,
    shown: bool,
) -> Result<(), Error> {
    let (title, tracks, mut report) = match resolved {
        Ok(PlaylistOutcome::List {
            title,
            tracks,
            report,
        }) => (title, tracks, report),
        // Not a playlist after all: one resolved track.
        Ok(PlaylistOutcome::Single(track)) => {
            if let Some(why) = too_long(&track, settings) {
                return reply::error_after_defer(ctx, why).await;
            }
            let track = Arc::new(track);
            return match enqueue(ctx, target, vec![track.clone()]).await {
                Ok(done) => {
                    record(ctx, target, std::slice::from_ref(&track)).await;
                    reply::ok(ctx, added_line(&track, &done, target.front)).await
                }
                Err(e) => reply::error_after_defer(ctx, refusal(&e, settings)).await,
            };
        }
        Err(e) => {
            tracing::info!(guild = target.guild, error = %e, "could not list a playlist");
            return reply::error_after_defer(ctx, e.to_string()).await;
        }
    };
    if tracks.is_empty() {
        let why = if report.no_room > 0 && room == 0 {
            full(settings.max_queue)
        } else {
            format!(
                "Nothing from that playlist could be queued{}.",
                skipped_note(&report)
            )
        };
        return reply::error_after_defer(ctx, why).await;
    }
    let tracks: Vec<Arc<Track>> = tracks.into_iter().map(Arc::new).collect();
    let wanted = tracks.len();
    match enqueue(ctx, target, tracks.clone()).await {
        Ok(done) => {
            report.no_room += wanted.saturating_sub(done.added);
            record(ctx, target, &tracks[..done.added.min(tracks.len())]).await;
            let name = format!("[{}]({})", format::escape(&format::trim(&title, 60)), url);
            let start = match (done.position, target.front) {
                (0, _) => format!("; playing {} now", bold(&tracks[0].title, 60)),
                (_, true) => "; they play next".to_string(),
                (p, false) => format!(", starting at position {p}"),
            };
            let text = format!(
                "Queued {} from {name}{start}{}.",
                format::tracks(done.added),
                skipped_note(&report)
            );
            match shown {
                true => reply::ok_replacing(ctx, text).await,
                false => reply::ok(ctx, text).await,
            }
        }
        Err(e) => reply::error_after_defer(ctx, refusal(&e, settings)).await,
    }
}

/// ` · 2 skipped (could not be loaded) · ...`, empty when nothing was left out.
fn skipped_note(r: &PlaylistReport) -> String {
    let mut out = String::new();
    if r.failed > 0 {
        out.push_str(&format!(" · {} skipped (could not be loaded)", r.failed));
    }
    if r.unmatched > 0 {
        out.push_str(&format!(" · {} skipped (no match found)", r.unmatched));
    }
    if r.too_long > 0 {
        out.push_str(&format!(" · {} skipped (too long or live)", r.too_long));
    }
    if r.no_room > 0 {
        out.push_str(&format!(" · {} left out (the queue is full)", r.no_room));
    }
    if r.capped {
        out.push_str(&format!(" · only the first {} are taken", r.listed));
    }
    out
}

/// Records what was queued in the guild's history (autocomplete suggests from it).
async fn record(ctx: Context<'_>, target: &Target, tracks: &[Arc<Track>]) {
    for t in tracks {
        if let Err(e) =
            crate::db::history::record(&ctx.data().stores.db, target.guild, t, target.requester.id)
                .await
        {
            tracing::warn!(error = %e, "could not record play history");
            return;
        }
    }
}

pub(super) async fn enqueue(
    ctx: Context<'_>,
    target: &Target,
    tracks: Vec<Arc<Track>>,
) -> Result<Enqueued, PlayerError> {
    let players = &ctx.data().players;
    // A player that is just leaving answers `Gone`: a fresh one takes over.
    for _ in 0..2 {
        let player = players.get_or_start(target.guild);
        let r = player
            .call_within(crate::player::JOIN_WAIT, |reply| Request::Enqueue {
                tracks: tracks.clone(),
                requester: target.requester.clone(),
                voice_channel: target.voice_channel,
                text_channel: ctx.channel_id().get(),
                front: target.front,
                reply,
            })
            .await;
        if r != Err(PlayerError::Gone) {
            return r;
        }
    }
    Err(PlayerError::Gone)
}

/// A player refusal, worded for `/play`.
pub(super) fn refusal(e: &PlayerError, settings: &GuildSettings) -> String {
    match e {
        PlayerError::Queue(crate::player::queue::QueueError::Full(n)) => {
            full((*n).min(settings.max_queue))
        }
        PlayerError::OtherChannel(c) => {
            format!("I'm already playing in <#{c}>; join that channel to add music.")
        }
        other => sentence(other),
    }
}

fn added_line(track: &Track, done: &Enqueued, front: bool) -> String {
    let what = format!("{} ({})", format::link(track, 80), format::length(track));
    match (done.position, front) {
        (0, _) => format!("Playing {what}"),
        (n, true) => format!("Queued {what} at position {n}: it plays next"),
        (n, false) => format!("Queued {what} at position {n}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn playlist_links_are_recognised() {
        for yes in [
            "https://www.youtube.com/playlist?list=PL123",
            "https://www.youtube.com/watch?v=abc&list=PL123",
            "https://music.youtube.com/playlist?list=OLAK",
            "https://soundcloud.com/artist/sets/an-album",
            "https://artist.bandcamp.com/album/record",
            "http://127.0.0.1:8080/playlist.html",
        ] {
            assert!(looks_like_playlist(&url(yes)), "{yes}");
        }
        for no in [
            "https://www.youtube.com/watch?v=abc",
            "https://youtu.be/abc",
            "https://soundcloud.com/artist/track",
            "https://example.com/song.webm",
            "https://example.com/a?list=",
        ] {
            assert!(!looks_like_playlist(&url(no)), "{no}");
        }
    }

    #[test]
    fn the_guild_duration_limit_applies() {
        let config = crate::config::Config::default();
        let mut s = GuildSettings::defaults(&config);
        s.max_track_duration = Duration::from_secs(60);
        let mut t = crate::player::test_track("x");
        t.duration = Some(Duration::from_secs(61));
        assert!(too_long(&t, &s)
            .unwrap()
            .contains("1:01 long; this server's limit is 1:00"));
        t.duration = Some(Duration::from_secs(60));
        assert!(too_long(&t, &s).is_none());
        t.duration = None;
        assert!(too_long(&t, &s).unwrap().contains("no known length"));
        t.stream_url = String::new();
        assert!(too_long(&t, &s).is_none(), "entries not looked up yet pass");
        t.is_live = true;
        assert!(too_long(&t, &s).unwrap().contains("live"));
        s.max_track_duration = Duration::ZERO;
        assert!(too_long(&t, &s).is_none(), "0 means no limit");
    }

    #[test]
    fn playlist_reports_say_what_was_left_out() {
        assert_eq!(skipped_note(&PlaylistReport::default()), "");
        let r = PlaylistReport {
            listed: 100,
            capped: true,
            failed: 2,
            too_long: 1,
            no_room: 3,
            unmatched: 4,
        };
        let n = skipped_note(&r);
        assert!(n.contains("2 skipped (could not be loaded)"), "{n}");
        assert!(n.contains("1 skipped (too long or live)"), "{n}");
        assert!(n.contains("3 left out"), "{n}");
        assert!(n.contains("4 skipped (no match found)"), "{n}");
        assert!(n.contains("first 100"), "{n}");
    }

    #[test]
    fn the_queue_check_needs_no_lookup() {
        let mut s = Snapshot {
            current: None,
            position: None,
            starting: false,
            upcoming: Vec::new(),
            loop_mode: crate::player::LoopMode::Off,
            paused: false,
            volume: 100,
            voice_channel: Some(5),
            filters: Default::default(),
        };
        assert!(
            precheck(&s, 6, 10).is_ok(),
            "idle elsewhere: it follows you"
        );
        s.current = Some(crate::player::Entry {
            id: 1,
            track: Arc::new(crate::player::test_track("a")),
            requester: Requester {
                id: 1,
                name: "a".into(),
            },
        });
        assert!(precheck(&s, 6, 10).unwrap_err().contains("<#5>"));
        assert!(precheck(&s, 5, 10).is_ok());
        s.upcoming = vec![s.current.clone().unwrap(); 2];
        assert!(precheck(&s, 5, 2).unwrap_err().contains("full (2 tracks"));
    }
}
