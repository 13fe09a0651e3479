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
//!
//! What every cache file shares has a file of its own (`clock.rs`, `error.rs`,
//! `settings.rs`), so no file here imports this one; `expiry.rs` is the sweeper's view.

pub mod audio;
pub mod clock;
pub mod error;
pub mod expiry;
pub mod metadata;
pub mod names;
pub mod playlist;
pub mod related;
pub mod resolver;
pub mod settings;
pub mod size;
#[cfg(test)]
pub(crate) mod testutil;

pub use audio::{
    AudioCache, CachedFile, DownloadOutcome, InUseGuard, PrefetchStatus, ScanReport, TrimReport,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::CacheError;
pub use expiry::Expiry;
pub use metadata::{
    alias_for, normalise_search, normalise_url, Counter, Counters, Lookup, MetadataCache,
    STREAM_MARGIN, UNKNOWN_EXPIRY_TRUST,
};
pub use playlist::{PlaylistLimits, PlaylistOutcome, PlaylistReport};
pub use resolver::{CacheOutcome, CacheStats, ExpireReport, Playable, Resolved, Resolver};
pub use settings::CacheSettings;

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::str::FromStr;

    use sqlx::migrate::Migrator;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::testutil;

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
        let pool = crate::db::open_sqlite(&dir.path().join("empty.db"))
            .await
            .unwrap();
        assert_eq!(tables(&pool).await, CACHE_TABLES);
        pool.close().await;

        // A database left at migration 0001 by an older encore, with data in it.
        let path = dir.path().join("old.db");
        let all = sqlx::migrate!("./migrations/sqlite");
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
        crate::db::history::record(
            &crate::db::Db::Sqlite(old.clone()),
            1,
            &testutil::track("kept"),
            2,
        )
        .await
        .unwrap();
        old.close().await;

        let pool = crate::db::open_sqlite(&path).await.unwrap();
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
}
