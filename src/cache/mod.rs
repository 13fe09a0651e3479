//! What the bot remembers between lookups, kept in SQLite so that it survives restarts.
//!
//! yt-dlp costs about a second and ~50 MB for every lookup, and the same songs are asked
//! for again and again in a server. Two caches sit in front of it:
//!
//! * **Metadata** ([`MetadataCache`], tables `cache_tracks` + `cache_aliases`): resolved
//!   [`Track`](crate::sources::Track)s keyed by [`Track::cache_key`](crate::sources::Track::cache_key)
//!   (`"{extractor}:{id}"`), and aliases from each normalised query or URL to that key.
//!   Entries live `metadata_ttl` (7 days) from their last resolution; aliases of search
//!   text live `search_ttl` (1 hour: search results drift), URL aliases `metadata_ttl`.
//!   Past `max_entries`, least recently used entries go. A stream URL that expires
//!   ([`Track::stream_expires`](crate::sources::Track::stream_expires)) is never trusted
//!   past its expiry (minus [`STREAM_MARGIN`]); one whose expiry can't be read is used for
//!   [`UNKNOWN_EXPIRY_TRUST`] only (except the generic extractor's: those are plain files).
//! * **Audio** ([`AudioCache`], table `cache_audio`): finished files as yt-dlp downloaded
//!   them (Opus in WebM for YouTube: played from `songbird::input::File` as Opus
//!   passthrough, seekable) under `cache.dir` (default `<data.dir>/audio`), evicted least
//!   recently used down to `max_bytes`. Files in use (an [`InUseGuard`] is alive) are never
//!   evicted. Live streams and tracks longer than `max_track_duration` are never stored.
//!
//! [`Resolver`] is the façade `/play` calls instead of `YtDlp::resolve`. Hit and miss
//! counters live in `cache_counters`, so the hit rate means something across restarts.
//!
//! Every cache failure is logged (`tracing::warn!`) and treated as a miss: a broken cache
//! never stops a track from playing.
//!
//! Time comes from a [`Clock`] so that expiry is tested without sleeping.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod audio;
pub mod metadata;
pub mod playlist;
pub mod resolver;
pub mod size;

pub use audio::{
    AudioCache, CachedFile, DownloadOutcome, InUseGuard, PrefetchStatus, ScanReport, TrimReport,
};
pub use metadata::{
    alias_for, normalise_search, normalise_url, Counter, Counters, Lookup, MetadataCache,
    UNKNOWN_EXPIRY_TRUST,
};
pub use playlist::{PlaylistLimits, PlaylistOutcome, PlaylistReport};
pub use resolver::{CacheOutcome, CacheStats, ExpireReport, Playable, Resolved, Resolver};

/// A stream URL expiring within this margin counts as expired (the track may wait in a
/// queue for a while before it plays).
pub const STREAM_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    /// Starts at the real current time.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }

    pub fn set(&self, to: SystemTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A cache operation failed (callers log it and carry on without the cache).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("cache I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The run-time form of the `[cache]` configuration section.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Master switch: off means every lookup runs yt-dlp and nothing is stored.
    pub enabled: bool,
    /// Keep finished audio files on disk (needs `enabled`).
    pub audio: bool,
    /// Audio file directory (only cache files live here).
    pub dir: PathBuf,
    /// How long a resolved entry (and a URL alias) is trusted.
    pub metadata_ttl: Duration,
    /// How long an alias from search text is trusted.
    pub search_ttl: Duration,
    /// Most metadata entries kept (least recently used go first).
    pub max_entries: u64,
    /// Audio byte budget (least recently used files go first).
    pub max_bytes: u64,
    /// Longest track whose audio is stored; `None`: no limit.
    pub max_track_duration: Option<Duration>,
    /// Most downloads at once.
    pub download_concurrency: usize,
}

impl CacheSettings {
    /// Defaults (as in `config.toml.example`) with audio files under `dir`.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        let c = crate::config::CacheConfig::default();
        CacheSettings {
            enabled: c.enabled,
            audio: c.audio,
            dir: dir.into(),
            metadata_ttl: c.metadata_ttl,
            search_ttl: c.search_ttl,
            max_entries: c.max_entries,
            max_bytes: c.max_bytes,
            max_track_duration: (!c.max_track_duration.is_zero()).then_some(c.max_track_duration),
            download_concurrency: c.download_concurrency,
        }
    }

    pub fn from_config(config: &crate::config::Config) -> Self {
        let c = &config.cache;
        CacheSettings {
            enabled: c.enabled,
            audio: c.enabled && c.audio,
            dir: c.audio_dir(&config.data),
            metadata_ttl: c.metadata_ttl,
            search_ttl: c.search_ttl,
            max_entries: c.max_entries.max(1),
            max_bytes: c.max_bytes,
            max_track_duration: (!c.max_track_duration.is_zero()).then_some(c.max_track_duration),
            download_concurrency: c.download_concurrency.max(1),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Seconds since the Unix epoch (the database's time unit), saturating.
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

pub(crate) fn from_unix_secs(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s.max(0) as u64)
}

pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::Path;
    use std::time::Duration;

    use sqlx::SqlitePool;

    use crate::sources::{Track, UrlPolicy, YtDlp, YtDlpConfig};

    pub fn track(id: &str) -> Track {
        Track {
            title: format!("Song {id}"),
            page_url: format!("https://example.com/watch/{id}"),
            stream_url: format!("https://cdn.example.com/{id}.webm"),
            duration: Some(Duration::from_secs(180)),
            id: id.into(),
            ..crate::player::test_track(id)
        }
    }

    pub async fn pool(dir: &Path) -> SqlitePool {
        crate::db::open(&dir.join("encore.db")).await.unwrap()
    }

    /// A YtDlp pointing at `program` (never run unless a test means it to).
    pub fn ytdlp(program: &Path, work: &Path) -> YtDlp {
        YtDlp::new(
            YtDlpConfig {
                path: program.to_path_buf(),
                timeout: Duration::from_secs(10),
                max_duration: None,
                cookies: None,
                proxy: None,
                work_dir: work.to_path_buf(),
            },
            UrlPolicy {
                allow_private_hosts: true,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::migrate::Migrator;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;
    use crate::config::Config;

    const CACHE_TABLES: [&str; 4] = [
        "cache_aliases",
        "cache_audio",
        "cache_counters",
        "cache_tracks",
    ];

    async fn tables(pool: &sqlx::SqlitePool) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'cache_%' ORDER BY name",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn migrations_apply_on_an_empty_db_and_on_one_at_0001() {
        let dir = tempfile::tempdir().unwrap();
        // Empty database.
        let pool = crate::db::open(&dir.path().join("empty.db")).await.unwrap();
        assert_eq!(tables(&pool).await, CACHE_TABLES);
        pool.close().await;

        // A database left at migration 0001 by an older encore, with data in it.
        let path = dir.path().join("old.db");
        let all = sqlx::migrate!("./migrations");
        let first = Migrator {
            migrations: Cow::Owned(all.iter().filter(|m| m.version == 1).cloned().collect()),
            ..Migrator::DEFAULT
        };
        let old = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::from_str("sqlite:")
                    .unwrap()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        first.run(&old).await.unwrap();
        assert!(tables(&old).await.is_empty());
        crate::db::history::record(&old, 1, &testutil::track("kept"), 2)
            .await
            .unwrap();
        old.close().await;

        let pool = crate::db::open(&path).await.unwrap();
        assert_eq!(tables(&pool).await, CACHE_TABLES);
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(applied as usize, all.iter().count());
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM play_history")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(kept, 1, "0001's data survives");
    }

    #[test]
    fn cache_config_section() {
        let c = Config::from_toml("").unwrap();
        let s = CacheSettings::from_config(&c);
        assert!(s.enabled && s.audio);
        assert_eq!(s.dir, PathBuf::from("data/audio"));
        assert_eq!(s.metadata_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(s.search_ttl, Duration::from_secs(3600));
        assert_eq!(s.max_bytes, 2 << 30);
        assert_eq!(s.max_track_duration, Some(Duration::from_secs(1800)));
        assert_eq!((s.max_entries, s.download_concurrency), (10_000, 2));

        let c = Config::from_toml(
            "[data]\ndir = \"/srv/encore\"\n[cache]\naudio = false\nmax_bytes = \"500 MB\"\n\
             metadata_ttl = \"2d\"\nmax_track_duration = \"0s\"\n",
        )
        .unwrap();
        let s = CacheSettings::from_config(&c);
        assert!(s.enabled && !s.audio);
        assert_eq!(s.dir, PathBuf::from("/srv/encore/audio"));
        assert_eq!(s.max_bytes, 500_000_000);
        assert_eq!(s.metadata_ttl, Duration::from_secs(2 * 86400));
        assert_eq!(s.max_track_duration, None);

        let err = Config::from_toml("[cache]\nmax_bytes = \"lots\"\n").unwrap_err();
        assert!(err.contains("lots") || err.contains("number"), "{err}");
        assert!(Config::from_toml("[cache]\nsize = 1\n").is_err());
    }

    #[test]
    fn cache_config_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), |_| None)
        };
        assert!(load("[cache]\nmax_entries = 5\n").is_ok());
        let err = load("[data]\ndir = \"/srv/x\"\n[cache]\ndir = \"/srv/x\"\n").unwrap_err();
        assert!(err.to_string().contains("cache.dir"), "{err}");
        // Fine when the audio cache is off.
        assert!(
            load("[data]\ndir = \"/srv/x\"\n[cache]\naudio = false\ndir = \"/srv/x\"\n").is_ok()
        );
        let err = load("[cache]\nmax_entries = 0\n").unwrap_err();
        assert!(err.to_string().contains("cache.max_entries"), "{err}");
        let err = load("[cache]\ndownload_concurrency = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("cache.download_concurrency"),
            "{err}"
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(UNIX_EPOCH + Duration::from_secs(100));
        assert_eq!(unix_secs(c.now()), 100);
        c.advance(Duration::from_secs(5));
        assert_eq!(unix_secs(c.clone().now()), 105);
        c.set(UNIX_EPOCH);
        assert_eq!(unix_secs(c.now()), 0);
        assert_eq!(from_unix_secs(-5), UNIX_EPOCH);
    }
}

/// The cache as the sweeper sees it: expired entries out, audio trimmed to its budget.
pub struct Expiry(pub Resolver);

#[async_trait::async_trait]
impl crate::resources::sweeper::Expiring for Expiry {
    async fn expire(&self) -> u64 {
        match self.0.expire().await {
            Ok(r) => r.entries_removed + r.files_evicted,
            Err(e) => {
                tracing::warn!(error = %e, "cache expiry failed");
                0
            }
        }
    }
}
