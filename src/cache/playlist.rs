//! [`Resolver::resolve_playlist`]: a playlist link becomes the tracks to queue, every
//! entry looked up through the cache like any other `/play`.
//!
//! The listing (one yt-dlp run) is capped; entries are then resolved a few at a time, in
//! order, within a time budget, so a long playlist answers in bounded time: entries not
//! reached in time are queued as listed and resolved when their turn comes (see
//! [`Resolver::playable`]). What was left out, and why, is counted for the reply.

use std::time::Duration;

use futures::StreamExt;
use url::Url;

use super::resolver::Resolver;
use crate::sources::links::{Links, Listing};
use crate::sources::{Query, ResolveError, Track};

/// Playlist entries resolved at once.
const CONCURRENCY: usize = 4;
/// How long the entries are resolved up front; the rest are queued as listed.
pub const PLAYLIST_BUDGET: Duration = Duration::from_secs(60);

/// How far a playlist's lookups have come, for the reply while they run: a long
/// playlist, or a streaming-service link whose every track is searched for, takes a while.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub step: Step,
    pub done: usize,
    pub of: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A streaming-service link's tracks are being searched for.
    Matching,
    /// The entries are being looked up.
    #[default]
    Resolving,
}

/// Where [`Resolver::resolve_playlist`] and [`Resolver::resolve_link`] report progress.
pub type ProgressTx = tokio::sync::watch::Sender<Progress>;

/// What a guild takes from a playlist.
pub struct PlaylistLimits<'a> {
    /// Most entries listed (`player.max_playlist`).
    pub max: usize,
    /// Free places in the queue.
    pub room: usize,
    /// Whether the guild takes a track (its length limit); checked on the listing and again
    /// once an entry is resolved (a listing may not know the length).
    pub fits: &'a (dyn Fn(&Track) -> bool + Sync),
    /// Told after every lookup, if someone shows it.
    pub progress: Option<&'a ProgressTx>,
}

impl PlaylistLimits<'_> {
    fn report(&self, step: Step, done: usize, of: usize) {
        if let Some(tx) = self.progress {
            tx.send_replace(Progress { step, done, of });
        }
    }
}

/// What happened to a playlist's entries besides being queued.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlaylistReport {
    pub listed: usize,
    /// The listing stopped at [`PlaylistLimits::max`].
    pub capped: bool,
    /// Could not be looked up.
    pub failed: usize,
    /// Too long for the guild, or live.
    pub too_long: usize,
    /// Left out because the queue had no room.
    pub no_room: usize,
    /// A streaming-service track with no close match.
    pub unmatched: usize,
}

/// A resolved playlist link.
#[derive(Debug)]
pub enum PlaylistOutcome {
    /// The link was one track after all (already checked against the limits by the caller).
    Single(Track),
    List {
        title: String,
        tracks: Vec<Track>,
        report: PlaylistReport,
    },
}

impl Resolver {
    /// Lists `url` and resolves its entries within `limits` (see the module docs).
    pub async fn resolve_playlist(
        &self,
        url: &Url,
        limits: PlaylistLimits<'_>,
    ) -> Result<PlaylistOutcome, ResolveError> {
        // One more than the cap, to know whether the cap cut anything.
        let (title, mut entries) = self.ytdlp().resolve_playlist(url, limits.max + 1).await?;
        if entries.len() == 1 && entries[0].is_resolved() {
            let track = entries.pop().expect("one");
            self.remember(Some(&Query::Url(url.clone())), &track).await;
            return Ok(PlaylistOutcome::Single(track));
        }
        let mut report = PlaylistReport {
            capped: entries.len() > limits.max,
            ..PlaylistReport::default()
        };
        entries.truncate(limits.max);
        report.listed = entries.len();
        Ok(self.finish(title, entries, report, &limits).await)
    }

    /// A streaming-service link ([`Links::read`]'s listing): each track is looked for
    /// ([`Links::find`]), a few at a time and in order; those found are then taken like a
    /// playlist's entries. A track with no close match counts as `unmatched`, one whose
    /// search failed as `failed`.
    pub async fn resolve_link(
        &self,
        links: &Links,
        mut listing: Listing,
        limits: PlaylistLimits<'_>,
    ) -> Result<PlaylistOutcome, ResolveError> {
        let max = limits.max.min(links.max_tracks);
        let mut report = PlaylistReport {
            capped: listing.tracks.len() > max,
            ..PlaylistReport::default()
        };
        listing.tracks.truncate(max);
        report.listed = listing.tracks.len();
        // No search for what the queue has no room for.
        if listing.tracks.len() > limits.room {
            report.no_room = listing.tracks.len() - limits.room;
            listing.tracks.truncate(limits.room);
        }
        let deadline = tokio::time::Instant::now() + PLAYLIST_BUDGET;
        let searches = listing.tracks.iter().cloned().map(|w| {
            let links = links.clone();
            async move { links.find(&w).await }
        });
        let mut stream = futures::stream::iter(searches).buffered(links.concurrency);
        let mut entries = Vec::new();
        let of = listing.tracks.len();
        loop {
            let done = entries.len() + report.unmatched + report.failed;
            limits.report(Step::Matching, done, of);
            let next = tokio::select! {
                n = tokio::time::timeout_at(deadline, stream.next()) => n.ok(),
                _ = self.cancelled() => None,
            };
            match next {
                Some(Some(Ok(Some(track)))) => entries.push(track),
                Some(Some(Ok(None))) => report.unmatched += 1,
                Some(Some(Err(e))) => {
                    tracing::info!(error = %e, "a link's track could not be searched for");
                    report.failed += 1;
                }
                Some(None) => break,
                None => {
                    let left = (report.listed - report.no_room)
                        .saturating_sub(entries.len() + report.unmatched + report.failed);
                    tracing::info!(left, "a link's tracks not searched for in time");
                    report.failed += left;
                    break;
                }
            }
        }
        Ok(self.finish(listing.title, entries, report, &limits).await)
    }

    /// Takes listed `entries` as far as `limits` allow, resolves them, and counts what was
    /// left out in `report`.
    async fn finish(
        &self,
        title: String,
        entries: Vec<Track>,
        mut report: PlaylistReport,
        limits: &PlaylistLimits<'_>,
    ) -> PlaylistOutcome {
        let mut wanted: Vec<Track> = Vec::new();
        for e in entries {
            match (limits.fits)(&e) {
                true => wanted.push(e),
                false => report.too_long += 1,
            }
        }
        if wanted.len() > limits.room {
            report.no_room += wanted.len() - limits.room;
            wanted.truncate(limits.room);
        }
        let (resolved, failed) = self.resolve_entries(wanted, PLAYLIST_BUDGET, limits).await;
        report.failed += failed;
        let mut tracks = Vec::new();
        for t in resolved {
            match (limits.fits)(&t) {
                true => tracks.push(t),
                false => report.too_long += 1,
            }
        }
        PlaylistOutcome::List {
            title,
            tracks,
            report,
        }
    }

    /// Resolves entries [`CONCURRENCY`] at a time, in order, within `budget`; entries not
    /// reached in time (or when the app shuts down) are returned as listed. Returns the
    /// tracks and how many failed.
    async fn resolve_entries(
        &self,
        entries: Vec<Track>,
        budget: Duration,
        limits: &PlaylistLimits<'_>,
    ) -> (Vec<Track>, usize) {
        let deadline = tokio::time::Instant::now() + budget;
        // Each lookup owns what it needs: a stream of futures borrowing `self` is not `Send`
        // for every lifetime, which poise's command futures require.
        let lookups = entries.clone().into_iter().map(|e| {
            let resolver = self.clone();
            async move {
                let url = Url::parse(&e.page_url).map_err(|_| ResolveError::InvalidUrl)?;
                resolver.resolve(&Query::Url(url)).await.map(|r| r.track)
            }
        });
        let mut stream = futures::stream::iter(lookups).buffered(CONCURRENCY);
        let (mut out, mut failed, mut done) = (Vec::new(), 0, 0);
        loop {
            limits.report(Step::Resolving, done, entries.len());
            // `None`: out of time (or shutting down).
            let next = tokio::select! {
                n = tokio::time::timeout_at(deadline, stream.next()) => n.ok(),
                _ = self.cancelled() => None,
            };
            match next {
                Some(Some(Ok(track))) => out.push(track),
                Some(Some(Err(e))) => {
                    tracing::info!(url = %entries[done].page_url, error = %e, "playlist entry skipped");
                    failed += 1;
                }
                Some(None) => break,
                None => {
                    tracing::info!(
                        left = entries.len() - done,
                        "playlist entries queued unresolved (out of time)"
                    );
                    out.extend(entries[done..].iter().cloned());
                    break;
                }
            }
            done += 1;
        }
        (out, failed)
    }
}
