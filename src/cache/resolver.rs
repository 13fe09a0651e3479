//! [`Resolver`]: what `/play` calls instead of `YtDlp::resolve`.
//!
//! Order of one [`Resolver::resolve`]:
//! 1. the query's alias → its entry (see [`Lookup`]);
//! 2. a fresh entry → no yt-dlp (hit);
//! 3. an entry whose stream URL expired but whose audio file is cached → no yt-dlp (hit);
//! 4. otherwise yt-dlp resolves it ([`CacheOutcome::Miss`], or
//!    [`CacheOutcome::Refreshed`] when a stale entry or an expired stream URL was
//!    replaced); the entry and aliases are stored, and the audio file is used if the key
//!    has one.
//!
//! When yt-dlp fails with a host-side error (timeout, blocked, …) for a stale entry whose
//! audio file is cached, the file is played anyway. Cache failures are logged and never
//! fail a resolution.

use std::sync::Arc;

use crate::db::Stores;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::audio::{AudioCache, CachedFile, PrefetchStatus, ScanReport};
use super::clock::{Clock, SystemClock};
use super::error::CacheError;
use super::metadata::{Counter, Counters, Lookup, MetadataCache, STREAM_MARGIN};
use super::settings::CacheSettings;
use crate::sources::{Query, ResolveError, Track, YtDlp};

/// What to play for a track, decided in one place ([`Resolver::playable`]).
#[derive(Debug)]
pub enum Playable {
    /// A cached file, pinned against eviction while this lives: play it with
    /// `songbird::input::File` (seekable; Opus passthrough for webm/opus at volume 100%).
    File(CachedFile),
    /// Stream this track's `stream_url` with its `http_headers` (fresh: re-resolved when the
    /// queued one had expired).
    Stream(Box<Track>),
}

/// How the cache took part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Answered from the cache; yt-dlp did not run.
    Hit,
    /// Not cached: yt-dlp ran and the answer was stored.
    Miss,
    /// Cached but stale, or its stream URL expired (and no audio file): yt-dlp ran and the
    /// entry was refreshed.
    Refreshed,
}

/// A resolution. What plays for it is decided later, right before it plays, by
/// [`Resolver::playable`] (the file may be downloaded, or evicted, meanwhile).
#[derive(Debug)]
pub struct Resolved {
    pub track: Track,
    pub cache: CacheOutcome,
}

/// What [`Resolver::expire`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpireReport {
    pub entries_removed: u64,
    pub aliases_removed: u64,
    pub files_evicted: u64,
    pub bytes_freed: u64,
    /// Audio bytes recorded afterwards.
    pub audio_bytes: u64,
}

/// For `/resources`. Counters persist across restarts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheStats {
    pub enabled: bool,
    pub entries: u64,
    pub aliases: u64,
    pub audio_files: u64,
    pub audio_bytes: u64,
    /// The byte budget (`cache.max_bytes`).
    pub max_bytes: u64,
    /// Persisted counters: hits (lookups answered without yt-dlp), misses (lookups that
    /// ran it, refreshes included), file hits, downloads, evictions...
    pub counters: Counters,
    /// Downloads running or waiting now.
    pub downloading: usize,
}

struct Inner {
    ytdlp: YtDlp,
    settings: Arc<CacheSettings>,
    meta: MetadataCache,
    audio: AudioCache,
    clock: Arc<dyn Clock>,
    /// The app's shutdown: long lookups (a playlist's entries) stop when it fires.
    cancel: CancellationToken,
}

/// The caching resolver. Cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// `stores` must have been opened (migrations applied): the metadata cache lives in
    /// the database, the audio files' index in this machine's own file.
    /// Downloads are spawned on `tasks` and stop when `cancel` fires.
    pub fn new(
        stores: &Stores,
        ytdlp: YtDlp,
        settings: CacheSettings,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Self::with_clock(
            stores,
            ytdlp,
            settings,
            tasks,
            cancel,
            Arc::new(SystemClock),
        )
    }

    /// [`new`](Self::new) with another clock (tests).
    pub fn with_clock(
        stores: &Stores,
        ytdlp: YtDlp,
        settings: CacheSettings,
        tasks: TaskTracker,
        cancel: CancellationToken,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let settings = Arc::new(settings);
        let meta = MetadataCache::new(stores.db.clone(), settings.clone(), clock.clone());
        let audio = AudioCache::new(
            stores.local.clone(),
            meta.clone(),
            ytdlp.clone(),
            settings.clone(),
            clock.clone(),
            tasks,
            cancel.clone(),
        );
        Resolver {
            inner: Arc::new(Inner {
                ytdlp,
                settings,
                meta,
                audio,
                clock,
                cancel,
            }),
        }
    }

    pub fn ytdlp(&self) -> &YtDlp {
        &self.inner.ytdlp
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.inner.settings
    }

    pub fn metadata(&self) -> &MetadataCache {
        &self.inner.meta
    }

    pub fn audio(&self) -> &AudioCache {
        &self.inner.audio
    }

    /// Resolves once the app shuts down.
    pub(super) async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Resolves `q`, from the cache when it can. See the module docs for the order.
    pub async fn resolve(&self, q: &Query) -> Result<Resolved, ResolveError> {
        let meta = &self.inner.meta;
        if !self.inner.settings.enabled {
            let track = self.inner.ytdlp.resolve(q).await?;
            return Ok(Resolved {
                track,
                cache: CacheOutcome::Miss,
            });
        }
        let lookup = meta.lookup(q).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "metadata cache lookup failed; resolving with yt-dlp");
            Lookup::Missing
        });
        let previous = match lookup {
            Lookup::Fresh(track) => return Ok(self.hit(track).await),
            Lookup::StreamExpired(track) if self.has_file(&track).await => {
                return Ok(self.hit(track).await)
            }
            Lookup::StreamExpired(track) => Some(track),
            Lookup::Stale(track) => Some(track),
            Lookup::Missing => None,
        };

        meta.count(Counter::Misses).await;
        if previous.is_some() {
            meta.count(Counter::Refreshes).await;
        }
        let track = match self.inner.ytdlp.resolve(q).await {
            Ok(t) => t,
            Err(e) => {
                if let Some(prev) = previous.filter(|_| !e.is_user_error()) {
                    if self.has_file(&prev).await {
                        tracing::warn!(key = %prev.cache_key(), error = %e, "yt-dlp failed; playing the cached file of a stale entry");
                        return Ok(Resolved {
                            track: prev,
                            cache: CacheOutcome::Hit,
                        });
                    }
                }
                return Err(e);
            }
        };
        if let Err(e) = meta.store(Some(q), &track).await {
            tracing::warn!(key = %track.cache_key(), error = %e, "could not store a resolved track in the cache");
        }
        let cache = if previous.is_some() {
            CacheOutcome::Refreshed
        } else {
            CacheOutcome::Miss
        };
        Ok(Resolved { track, cache })
    }

    async fn hit(&self, track: Track) -> Resolved {
        let meta = &self.inner.meta;
        if let Err(e) = meta.touch(&track.cache_key()).await {
            tracing::warn!(error = %e, "could not update a cache entry's last use");
        }
        meta.count(Counter::Hits).await;
        Resolved {
            track,
            cache: CacheOutcome::Hit,
        }
    }

    /// Whether `track`'s audio is cached on disk.
    async fn has_file(&self, track: &Track) -> bool {
        self.inner.audio.open(&track.cache_key()).await.is_some()
    }

    /// What to play for `track`, right before it plays: its cached file when there is one
    /// (pinned, so it is not evicted while it plays), else its stream, re-resolved first
    /// when the queued URL is missing (a playlist entry) or expires within a minute. A
    /// stream also starts a background download, so the next play comes from disk.
    pub async fn playable(&self, track: &Track) -> Result<Playable, ResolveError> {
        if let Some(file) = self.inner.audio.open(&track.cache_key()).await {
            self.inner.meta.count(Counter::FileHits).await;
            return Ok(Playable::File(file));
        }
        if !track.needs_refresh(self.inner.clock.now(), STREAM_MARGIN) {
            let _ = self.prefetch(track);
            return Ok(Playable::Stream(Box::new(track.clone())));
        }
        let url = url::Url::parse(&track.page_url).map_err(|_| ResolveError::InvalidUrl)?;
        let fresh = self.resolve(&Query::Url(url)).await?.track;
        if let Some(file) = self.inner.audio.open(&fresh.cache_key()).await {
            self.inner.meta.count(Counter::FileHits).await;
            return Ok(Playable::File(file));
        }
        let _ = self.prefetch(&fresh);
        Ok(Playable::Stream(Box::new(fresh)))
    }

    /// Stores a track resolved some other way (with an alias for `q`). Logs failures.
    pub async fn remember(&self, q: Option<&Query>, track: &Track) {
        if !self.inner.settings.enabled {
            return;
        }
        if let Err(e) = self.inner.meta.store(q, track).await {
            tracing::warn!(key = %track.cache_key(), error = %e, "could not store a track in the cache");
        }
    }

    /// Starts downloading `track`'s audio into the cache in the background (no-op when
    /// cached, downloading, live, too long or switched off). Never blocks.
    pub fn prefetch(&self, track: &Track) -> PrefetchStatus {
        self.inner.audio.prefetch(track)
    }

    /// Deletes expired metadata and trims the audio cache to its budget (for a periodic
    /// sweeper and `/cleanup`).
    pub async fn expire(&self) -> Result<ExpireReport, CacheError> {
        let (entries_removed, aliases_removed) = self.inner.meta.expire().await?;
        let trim = self.inner.audio.trim().await?;
        Ok(ExpireReport {
            entries_removed,
            aliases_removed,
            files_evicted: trim.evicted,
            bytes_freed: trim.freed,
            audio_bytes: trim.total,
        })
    }

    /// Sizes and counters. Failures are logged and read as zeros.
    pub async fn stats(&self) -> CacheStats {
        let (entries, aliases) = self.inner.meta.len().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot count cache entries");
            (0, 0)
        });
        let (audio_files, audio_bytes) = self.inner.audio.totals().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot count cached audio");
            (0, 0)
        });
        let c = self.inner.meta.counters().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read cache counters");
            Default::default()
        });
        CacheStats {
            enabled: self.inner.settings.enabled,
            entries,
            aliases,
            audio_files,
            audio_bytes,
            max_bytes: self.inner.settings.max_bytes,
            counters: c,
            downloading: self.inner.audio.downloading(),
        }
    }

    /// Reconciles the audio directory with the database (run once at start-up, before
    /// anything plays). Failures are logged.
    pub async fn startup_scan(&self) -> ScanReport {
        if !self.inner.audio.enabled() {
            return ScanReport::default();
        }
        match self.inner.audio.scan().await {
            Ok(r) => {
                tracing::info!(
                    files = r.files,
                    bytes = r.bytes,
                    removed_rows = r.rows_without_file,
                    removed_orphans = r.files_without_row,
                    removed_temps = r.temp_files,
                    removed_corrupt = r.corrupt,
                    evicted = r.evicted,
                    "audio cache checked"
                );
                r
            }
            Err(e) => {
                tracing::warn!(dir = %self.inner.audio.dir().display(), error = %e, "audio cache scan failed");
                ScanReport {
                    errors: 1,
                    ..Default::default()
                }
            }
        }
    }

    /// Cached titles (and page URLs) matching `text`, for `/play` autocomplete; with
    /// `guild`, only tracks that guild played. Failures are logged and give nothing.
    pub async fn search_titles(
        &self,
        guild: Option<u64>,
        text: &str,
        limit: u32,
    ) -> Vec<(String, String)> {
        self.inner
            .meta
            .search_titles(guild, text, limit)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cache title search failed");
                Vec::new()
            })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use url::Url;

    use super::*;
    use crate::cache::clock::ManualClock;
    use crate::cache::metadata::STREAM_MARGIN;
    use crate::cache::testutil::{stores, ytdlp};

    /// A fake yt-dlp answering `-j` for any query: id = the query with non-alphanumerics
    /// as `_` (for its own page URLs `https://example.com/watch/<id>`: that id); the stream URL carries `<dir>/expire` (e.g. `?expire=123`) when present;
    /// exits 1 when `<dir>/fail` exists.
    fn fake_ytdlp(dir: &Path) -> PathBuf {
        let script = dir.join("fake-yt-dlp");
        let d = dir.display();
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
for a; do last="$a"; done
if [ -e "{d}/fail" ]; then echo "ERROR: Unable to download webpage: timed out" >&2; exit 1; fi
exp=$(cat "{d}/expire" 2>/dev/null)
case "$last" in
  https://example.com/watch/*) id="${{last#https://example.com/watch/}}" ;;
  *) id=$(printf %s "$last" | sed 's/[^A-Za-z0-9]/_/g') ;;
esac
printf '{{"url":"http://127.0.0.1:9/a.webm%s","webpage_url":"https://example.com/watch/%s","title":"Title %s","id":"%s","extractor_key":"Generic","ext":"webm","acodec":"opus","duration":100}}\n' "$exp" "$id" "$id" "$id"
"#
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    struct Fx {
        tmp: tempfile::TempDir,
        clock: ManualClock,
        r: Resolver,
    }

    impl Fx {
        async fn new() -> Fx {
            let tmp = tempfile::tempdir().unwrap();
            let clock = ManualClock::starting_now();
            let r = Self::resolver(tmp.path(), &clock).await;
            Fx { tmp, clock, r }
        }

        async fn resolver(dir: &Path, clock: &ManualClock) -> Resolver {
            let program = fake_ytdlp(dir);
            let settings = CacheSettings::with_dir(dir.join("audio"));
            Resolver::with_clock(
                &stores(dir).await,
                ytdlp(&program, &dir.join("work")),
                settings,
                TaskTracker::new(),
                CancellationToken::new(),
                Arc::new(clock.clone()),
            )
        }

        fn spawned(&self) -> u64 {
            self.r.ytdlp().stats().spawned.load(Ordering::SeqCst)
        }

        async fn resolve(&self, q: &Query) -> (Resolved, u64) {
            let before = self.spawned();
            let r = self.r.resolve(q).await.unwrap();
            (r, self.spawned() - before)
        }

        /// The cached file `playable` picks for `track`, if it picks one.
        async fn played_file(&self, track: &Track) -> Option<PathBuf> {
            match self.r.playable(track).await.unwrap() {
                Playable::File(f) => Some(f.path),
                Playable::Stream(_) => None,
            }
        }

        /// Puts a fake audio file in the cache for `track`.
        async fn cache_file(&self, track: &Track) -> PathBuf {
            let key = track.cache_key();
            let name = crate::cache::audio::file_name_for(&key, Some("webm"));
            let path = self.r.audio().dir().join(&name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, [1u8; 64]).unwrap();
            self.r.audio().record(&key, &name, 64).await.unwrap();
            path
        }
    }

    fn search(s: &str) -> Query {
        Query::Search(s.into())
    }

    #[tokio::test]
    async fn hits_misses_and_search_ttl() {
        let f = Fx::new().await;
        let (r, n) = f.resolve(&search("Blue Monday")).await;
        assert_eq!((r.cache, n), (CacheOutcome::Miss, 1));
        assert_eq!(r.track.title, "Title ytsearch1_Blue_Monday");
        // Same text, other spelling: a hit, no yt-dlp.
        let (r2, n) = f.resolve(&search("  blue   monday ")).await;
        assert_eq!((r2.cache, n), (CacheOutcome::Hit, 0));
        assert_eq!(r2.track, r.track);
        // Its page URL is an alias too.
        let page = Query::Url(Url::parse(&r.track.page_url).unwrap());
        assert_eq!(f.resolve(&page).await.0.cache, CacheOutcome::Hit);
        // After search_ttl the search text runs yt-dlp again (the entry itself is fresh,
        // so the URL alias still hits).
        f.clock.advance(Duration::from_secs(3600));
        let (r3, n) = f.resolve(&search("Blue Monday")).await;
        assert_eq!((r3.cache, n), (CacheOutcome::Miss, 1));
        assert_eq!(f.resolve(&page).await.1, 0);
        let s = f.r.stats().await;
        assert_eq!(
            (
                s.counters.hits,
                s.counters.misses,
                s.counters.refreshes,
                s.entries
            ),
            (3, 2, 0, 1)
        );
        let rate = s.counters.hit_rate().unwrap();
        assert!((rate - 0.6).abs() < 1e-9, "{rate}");
        // After metadata_ttl: refreshed.
        f.clock.advance(Duration::from_secs(7 * 86400));
        let (r4, n) = f.resolve(&page).await;
        assert_eq!((r4.cache, n), (CacheOutcome::Refreshed, 1));
        assert_eq!(f.resolve(&page).await.0.cache, CacheOutcome::Hit);
        assert_eq!(f.r.stats().await.counters.refreshes, 1);
        let _ = &f.tmp;
    }

    #[tokio::test]
    async fn expired_stream_urls_are_refreshed_unless_the_file_is_cached() {
        let f = Fx::new().await;
        let exp = f.clock.now() + Duration::from_secs(3600);
        let secs = exp.duration_since(UNIX_EPOCH).unwrap().as_secs();
        std::fs::write(f.tmp.path().join("expire"), format!("?expire={secs}")).unwrap();
        let q = Query::Url(Url::parse("https://example.com/song").unwrap());
        let (r, n) = f.resolve(&q).await;
        assert_eq!((r.cache, n), (CacheOutcome::Miss, 1));
        assert_eq!(
            r.track.stream_expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        );
        assert_eq!(f.resolve(&q).await.0.cache, CacheOutcome::Hit);
        // Within the margin of expiry: yt-dlp again.
        f.clock.advance(Duration::from_secs(3600) - STREAM_MARGIN);
        let (r, n) = f.resolve(&q).await;
        assert_eq!((r.cache, n), (CacheOutcome::Refreshed, 1));
        // The refreshed URL has the same expiry (the script's) → expired again; but with an
        // audio file cached, the file is played and yt-dlp is not needed.
        let path = f.cache_file(&r.track).await;
        let (r, n) = f.resolve(&q).await;
        assert_eq!((r.cache, n), (CacheOutcome::Hit, 0));
        assert_eq!(f.played_file(&r.track).await, Some(path));
        assert_eq!(f.r.stats().await.counters.file_hits, 1);
    }

    #[tokio::test]
    async fn cached_files_are_used_and_survive_a_host_side_failure() {
        let f = Fx::new().await;
        let q = search("something");
        let (r, _) = f.resolve(&q).await;
        let path = f.cache_file(&r.track).await;
        let (r, n) = f.resolve(&q).await;
        assert_eq!(n, 0);
        assert_eq!(f.played_file(&r.track).await, Some(path.clone()));
        // Stale entry, yt-dlp failing with a host-side error: the file still plays.
        f.clock.advance(Duration::from_secs(8 * 86400));
        std::fs::write(f.tmp.path().join("fail"), "").unwrap();
        let page = Query::Url(Url::parse(&r.track.page_url).unwrap());
        let (r, n) = f.resolve(&page).await;
        assert_eq!((r.cache, n), (CacheOutcome::Hit, 1));
        assert_eq!(f.played_file(&r.track).await, Some(path.clone()));
        // Without a cached file the error comes through.
        assert!(f.r.resolve(&search("uncached")).await.is_err());
        // A miss whose key has a file plays the file (after yt-dlp ran).
        std::fs::remove_file(f.tmp.path().join("fail")).unwrap();
        let (r, n) = f.resolve(&page).await;
        assert_eq!((r.cache, n), (CacheOutcome::Refreshed, 1));
        assert_eq!(f.played_file(&r.track).await, Some(path));
    }

    #[tokio::test]
    async fn counters_and_entries_survive_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::starting_now();
        {
            let r = Fx::resolver(tmp.path(), &clock).await;
            r.resolve(&search("a")).await.unwrap();
            r.resolve(&search("a")).await.unwrap();
            r.resolve(&search("b")).await.unwrap();
        }
        let r = Fx::resolver(tmp.path(), &clock).await;
        let s = r.stats().await;
        assert_eq!((s.counters.hits, s.counters.misses, s.entries), (1, 2, 2));
        let before = r.ytdlp().stats().spawned.load(Ordering::SeqCst);
        assert_eq!(
            r.resolve(&search("b")).await.unwrap().cache,
            CacheOutcome::Hit
        );
        assert_eq!(r.ytdlp().stats().spawned.load(Ordering::SeqCst), before);
        assert_eq!(r.search_titles(None, "title yts", 5).await.len(), 2);
    }

    #[tokio::test]
    async fn futures_are_send_and_the_resolver_is_shareable() {
        fn send<T: Send>(_: &T) {}
        fn shareable<T: Send + Sync + Clone + 'static>(_: &T) {}
        let f = Fx::new().await;
        let q = search("x");
        let t = crate::cache::testutil::track("x");
        send(&f.r.resolve(&q));
        send(&f.r.expire());
        send(&f.r.stats());
        send(&f.r.startup_scan());
        send(&f.r.search_titles(Some(1), "x", 5));
        send(&f.r.playable(&t));
        send(&f.r.remember(Some(&q), &t));
        shareable(&f.r);
        let guard = f.r.audio().pin("k").unwrap();
        send(&guard);
        fn sync<T: Sync>(_: &T) {}
        sync(&guard);
    }

    #[tokio::test]
    async fn disabled_cache_always_runs_ytdlp() {
        let tmp = tempfile::tempdir().unwrap();
        let program = fake_ytdlp(tmp.path());
        let mut settings = CacheSettings::with_dir(tmp.path().join("audio"));
        settings.enabled = false;
        let r = Resolver::new(
            &stores(tmp.path()).await,
            ytdlp(&program, &tmp.path().join("work")),
            settings,
            TaskTracker::new(),
            CancellationToken::new(),
        );
        for _ in 0..2 {
            assert_eq!(
                r.resolve(&search("x")).await.unwrap().cache,
                CacheOutcome::Miss
            );
        }
        assert_eq!(r.ytdlp().stats().spawned.load(Ordering::SeqCst), 2);
        let s = r.stats().await;
        assert_eq!((s.entries, s.counters.hits, s.counters.misses), (0, 0, 0));
        assert!(matches!(
            r.prefetch(&crate::cache::testutil::track("x")),
            PrefetchStatus::Disabled
        ));
    }
}
