//! Fixtures the cache's unit tests share; apart so no test imports cache/mod.rs for them.

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;

use crate::db::Stores;
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

/// This machine's SQLite database in `dir` (the audio cache's).
pub async fn pool(dir: &Path) -> SqlitePool {
    crate::db::open_sqlite(&dir.join("encore.db"))
        .await
        .unwrap()
}

/// The single-machine setup: one SQLite file in `dir` for everything.
pub async fn stores(dir: &Path) -> Stores {
    Stores::single(pool(dir).await)
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
        UrlPolicy::ALLOW_PRIVATE,
    )
}
