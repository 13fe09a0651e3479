//! The audio cache: finished tracks on disk, least recently used out past a byte budget.
//!
//! * Files live in one directory that holds nothing else, named
//!   `<key with unsafe characters as _>.<16 hex digits of a hash of the key>.<ext>`
//!   (see [`file_name_for`]). Only names of that shape and `YtDlp::download`'s temporary
//!   names (`.<name>.<hex>.encore-dl`) are ever deleted by a scan; anything else found
//!   there is left alone with a warning.
//! * Downloads ([`AudioCache::prefetch`]) run on the caller's `TaskTracker`, stop when the
//!   caller's `CancellationToken` fires (dropping `YtDlp::download` kills yt-dlp's process
//!   group and removes its temporary file), at most `download_concurrency` at once, and
//!   never twice at once for one key.
//! * A file whose key is held by an [`InUseGuard`] is never evicted nor deleted as
//!   corrupt; a key being evicted can't be opened ([`AudioCache::open`] answers `None`).
//!   One eviction pass runs at a time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::clock::{unix_secs, Clock};
use super::error::CacheError;
use super::metadata::{Counter, MetadataCache};
use super::settings::CacheSettings;
use crate::sources::{ResolveError, Track, YtDlp};

// The names of the files this cache owns, kept at this path for its callers.
pub use super::names::{file_name_for, is_cache_file_name, is_temp_name};

/// What [`AudioCache::prefetch`] did.
#[derive(Debug)]
pub enum PrefetchStatus {
    /// A download task was started (or will find the file already cached); awaiting the
    /// handle is optional.
    Started(tokio::task::JoinHandle<DownloadOutcome>),
    /// The same key is downloading already.
    InProgress,
    /// The audio cache is switched off.
    Disabled,
    /// This track is never cached (live, too long, shutting down, no page URL).
    Skipped(&'static str),
}

/// How one download task ended.
#[derive(Debug, PartialEq)]
pub enum DownloadOutcome {
    Stored {
        path: PathBuf,
        size: u64,
    },
    AlreadyCached,
    /// Larger than the whole byte budget: deleted again.
    TooBig(u64),
    /// The cancellation token fired; nothing was kept.
    Cancelled,
    Failed(ResolveError),
    /// Downloaded but could not be recorded (database error); deleted again.
    NotRecorded,
}

/// A cached file, opened for playing. Keep `guard` alive while the file is played (or
/// queued): the file is not evicted until it is dropped.
#[derive(Debug)]
pub struct CachedFile {
    pub path: PathBuf,
    pub size: u64,
    pub guard: InUseGuard,
}

/// Keeps a key's file from being evicted while alive. Cheap; not `Clone` (take another
/// with [`AudioCache::pin`]).
pub struct InUseGuard {
    inner: Arc<Inner>,
    key: String,
}

impl InUseGuard {
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl std::fmt::Debug for InUseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InUseGuard").field(&self.key).finish()
    }
}

impl Drop for InUseGuard {
    fn drop(&mut self) {
        let mut keys = self.inner.keys();
        if let Some(n) = keys.in_use.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                keys.in_use.remove(&self.key);
            }
        }
    }
}

/// What [`AudioCache::scan`] found and fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Rows whose file was gone (rows deleted).
    pub rows_without_file: u64,
    /// Files of our naming with no row (deleted).
    pub files_without_row: u64,
    /// Leftover download temporaries (deleted).
    pub temp_files: u64,
    /// Files whose size differed from their row (file and row deleted).
    pub corrupt: u64,
    /// Files that are not the cache's (left alone).
    pub foreign: u64,
    /// Files evicted afterwards to get within the byte budget.
    pub evicted: u64,
    /// Files and bytes kept.
    pub files: u64,
    pub bytes: u64,
    /// Operations that failed (logged).
    pub errors: u64,
}

/// What one eviction pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrimReport {
    pub evicted: u64,
    pub freed: u64,
    /// Files over the budget that were skipped because they are in use.
    pub skipped_in_use: u64,
    /// Bytes recorded after the pass.
    pub total: u64,
}

#[derive(Default)]
struct Keys {
    in_use: HashMap<String, usize>,
    evicting: HashSet<String>,
    /// key → file name being downloaded.
    downloading: HashMap<String, String>,
}

struct Inner {
    pool: SqlitePool,
    settings: Arc<CacheSettings>,
    clock: Arc<dyn Clock>,
    ytdlp: YtDlp,
    meta: MetadataCache,
    keys: Mutex<Keys>,
    evict_lock: tokio::sync::Mutex<()>,
    permits: Semaphore,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Inner {
    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The audio cache. Cheap to clone.
#[derive(Clone)]
pub struct AudioCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AudioCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioCache")
            .field("dir", &self.inner.settings.dir)
            .finish_non_exhaustive()
    }
}

/// Removes the key from `downloading` when the download task ends (or is dropped).
struct Downloading {
    inner: Arc<Inner>,
    key: String,
}

impl Drop for Downloading {
    fn drop(&mut self) {
        self.inner.keys().downloading.remove(&self.key);
    }
}

/// Removes the key from `evicting` when the eviction of one file is over.
struct Evicting<'a> {
    inner: &'a Inner,
    key: String,
}

impl Drop for Evicting<'_> {
    fn drop(&mut self) {
        self.inner.keys().evicting.remove(&self.key);
    }
}

impl AudioCache {
    /// `pool` is this machine's own database (the files are on its disk); `meta` counts
    /// downloads in the shared one.
    pub fn new(
        pool: SqlitePool,
        meta: MetadataCache,
        ytdlp: YtDlp,
        settings: Arc<CacheSettings>,
        clock: Arc<dyn Clock>,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let permits = Semaphore::new(settings.download_concurrency.max(1));
        AudioCache {
            inner: Arc::new(Inner {
                pool,
                settings,
                clock,
                ytdlp,
                meta,
                keys: Mutex::new(Keys::default()),
                evict_lock: tokio::sync::Mutex::new(()),
                permits,
                tasks,
                cancel,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.settings.enabled && self.inner.settings.audio
    }

    pub fn dir(&self) -> &Path {
        &self.inner.settings.dir
    }

    /// Downloads running or waiting for a slot.
    pub fn downloading(&self) -> usize {
        self.inner.keys().downloading.len()
    }

    /// Keys currently held by an [`InUseGuard`].
    pub fn in_use(&self) -> usize {
        self.inner.keys().in_use.len()
    }

    /// Marks `key` in use (whether or not its file exists yet). `None` while the key's
    /// file is being evicted.
    pub fn pin(&self, key: &str) -> Option<InUseGuard> {
        let mut keys = self.inner.keys();
        if keys.evicting.contains(key) {
            return None;
        }
        *keys.in_use.entry(key.to_owned()).or_insert(0) += 1;
        Some(InUseGuard {
            inner: self.inner.clone(),
            key: key.to_owned(),
        })
    }

    /// The cached file of `key`, pinned and marked as just used; `None` when not cached
    /// (a row whose file is missing or has the wrong size is cleaned up on the way).
    /// Errors are logged and answer `None`.
    pub async fn open(&self, key: &str) -> Option<CachedFile> {
        if !self.enabled() {
            return None;
        }
        let guard = self.pin(key)?;
        match self.open_pinned(key).await {
            Ok(Some((path, size))) => Some(CachedFile { path, size, guard }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(key, error = %e, "audio cache lookup failed");
                None
            }
        }
    }

    async fn open_pinned(&self, key: &str) -> Result<Option<(PathBuf, u64)>, CacheError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT file_name, size FROM cache_audio WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.inner.pool)
                .await?;
        let Some((name, size)) = row else {
            return Ok(None);
        };
        let path = self.dir().join(&name);
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() && m.len() == size as u64 => {}
            Ok(m) => {
                // Nobody else can be playing a file of the wrong size for long: a fresh
                // download replaces it.
                tracing::warn!(
                    key,
                    expected = size,
                    found = m.len(),
                    "cached audio file has the wrong size; dropping it"
                );
                let _ = tokio::fs::remove_file(&path).await;
                self.delete_row(key).await?;
                return Ok(None);
            }
            Err(_) => {
                tracing::info!(key, "cached audio file disappeared; forgetting it");
                self.delete_row(key).await?;
                return Ok(None);
            }
        }
        sqlx::query(
            "UPDATE cache_audio SET last_access = ?,
                 lru = (SELECT COALESCE(MAX(lru), 0) + 1 FROM cache_audio)
             WHERE key = ?",
        )
        .bind(unix_secs(self.inner.clock.now()))
        .bind(key)
        .execute(&self.inner.pool)
        .await?;
        Ok(Some((path, size as u64)))
    }

    async fn delete_row(&self, key: &str) -> Result<(), CacheError> {
        sqlx::query("DELETE FROM cache_audio WHERE key = ?")
            .bind(key)
            .execute(&self.inner.pool)
            .await?;
        Ok(())
    }

    /// Why `track` is never cached, if it isn't.
    pub fn refuse_reason(&self, track: &Track) -> Option<&'static str> {
        if track.is_live {
            return Some("live stream");
        }
        if let (Some(limit), Some(d)) = (self.inner.settings.max_track_duration, track.duration) {
            if d > limit {
                return Some("longer than cache.max_track_duration");
            }
        }
        if !(track.page_url.starts_with("http://") || track.page_url.starts_with("https://")) {
            return Some("no page URL");
        }
        None
    }

    /// Downloads `track` into the cache in the background, unless it is cached already,
    /// downloading already, or never cached. Never blocks.
    pub fn prefetch(&self, track: &Track) -> PrefetchStatus {
        if !self.enabled() {
            return PrefetchStatus::Disabled;
        }
        if let Some(why) = self.refuse_reason(track) {
            return PrefetchStatus::Skipped(why);
        }
        if self.inner.cancel.is_cancelled() {
            return PrefetchStatus::Skipped("shutting down");
        }
        let key = track.cache_key();
        let file_name = file_name_for(&key, track.ext.as_deref());
        {
            let mut keys = self.inner.keys();
            if keys.downloading.contains_key(&key) {
                return PrefetchStatus::InProgress;
            }
            keys.downloading.insert(key.clone(), file_name.clone());
        }
        let marker = Downloading {
            inner: self.inner.clone(),
            key: key.clone(),
        };
        let this = self.clone();
        let cancel = self.inner.cancel.clone();
        let page = track.page_url.clone();
        let handle = self.inner.tasks.spawn(async move {
            let _marker = marker;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    tracing::debug!(key, "download cancelled");
                    DownloadOutcome::Cancelled
                }
                out = this.download(&key, &file_name, &page) => out,
            }
        });
        PrefetchStatus::Started(handle)
    }

    async fn download(&self, key: &str, file_name: &str, page: &str) -> DownloadOutcome {
        match self.open_pinned(key).await {
            Ok(Some(_)) => return DownloadOutcome::AlreadyCached,
            Ok(None) => {}
            Err(e) => tracing::warn!(key, error = %e, "audio cache lookup failed"),
        }
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let dest = self.dir().join(file_name);
        let started = std::time::Instant::now();
        let cap = self.inner.settings.download_cap();
        let size = match self.inner.ytdlp.download(page, &dest, Some(cap)).await {
            Ok(n) => n,
            Err(e) => {
                if e.is_user_error() {
                    tracing::info!(key, error = %e, "not caching this track");
                } else {
                    tracing::warn!(key, error = %e, "audio download failed");
                }
                self.inner.meta.count(Counter::DownloadFailures).await;
                return DownloadOutcome::Failed(e);
            }
        };
        if size > self.inner.settings.max_bytes {
            tracing::info!(
                key,
                size,
                "downloaded file is larger than the whole cache budget; not keeping it"
            );
            let _ = tokio::fs::remove_file(&dest).await;
            return DownloadOutcome::TooBig(size);
        }
        if let Err(e) = self.record(key, file_name, size).await {
            tracing::warn!(key, error = %e, "could not record a downloaded audio file; deleting it");
            let _ = tokio::fs::remove_file(&dest).await;
            return DownloadOutcome::NotRecorded;
        }
        tracing::info!(key, size, elapsed = ?started.elapsed(), "cached audio file");
        self.inner.meta.count(Counter::Downloads).await;
        if let Err(e) = self.trim().await {
            tracing::warn!(error = %e, "audio cache eviction failed");
        }
        DownloadOutcome::Stored { path: dest, size }
    }

    /// Records `file_name` (already in the cache directory) as `key`'s file.
    pub(crate) async fn record(
        &self,
        key: &str,
        file_name: &str,
        size: u64,
    ) -> Result<(), CacheError> {
        let now = unix_secs(self.inner.clock.now());
        let mut tx = self.inner.pool.begin().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT file_name FROM cache_audio WHERE key = ?")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO cache_audio (key, file_name, size, created_at, last_access, lru)
             VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(lru), 0) + 1 FROM cache_audio))
             ON CONFLICT (key) DO UPDATE SET
                 file_name = excluded.file_name, size = excluded.size,
                 created_at = excluded.created_at, last_access = excluded.last_access,
                 lru = excluded.lru",
        )
        .bind(key)
        .bind(file_name)
        .bind(size as i64)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(old) = old.filter(|o| o != file_name) {
            let _ = tokio::fs::remove_file(self.dir().join(old)).await;
        }
        Ok(())
    }

    /// Number of files and bytes recorded.
    pub async fn totals(&self) -> Result<(u64, u64), CacheError> {
        let (n, bytes): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache_audio")
                .fetch_one(&self.inner.pool)
                .await?;
        Ok((n as u64, bytes as u64))
    }

    fn start_evicting(&self, key: &str) -> Option<Evicting<'_>> {
        let mut keys = self.inner.keys();
        if keys.in_use.contains_key(key) || keys.evicting.contains(key) {
            return None;
        }
        keys.evicting.insert(key.to_owned());
        Some(Evicting {
            inner: &self.inner,
            key: key.to_owned(),
        })
    }

    /// Deletes `key`'s file and row unless it is in use (e.g. after it failed to play).
    /// Returns whether it was removed.
    pub async fn remove(&self, key: &str) -> Result<bool, CacheError> {
        let Some(_evicting) = self.start_evicting(key) else {
            return Ok(false);
        };
        let name: Option<String> =
            sqlx::query_scalar("SELECT file_name FROM cache_audio WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.inner.pool)
                .await?;
        let Some(name) = name else {
            return Ok(false);
        };
        remove_file_if_present(&self.dir().join(name)).await?;
        self.delete_row(key).await?;
        Ok(true)
    }

    /// Evicts least recently used files until the recorded total is within `max_bytes`,
    /// skipping files in use. One pass at a time.
    pub async fn trim(&self) -> Result<TrimReport, CacheError> {
        self.trim_to(self.inner.settings.max_bytes).await
    }

    async fn trim_to(&self, budget: u64) -> Result<TrimReport, CacheError> {
        let _one_at_a_time = self.inner.evict_lock.lock().await;
        let (_, mut total) = self.totals().await?;
        let mut report = TrimReport::default();
        if total > budget {
            let rows: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT key, file_name, size FROM cache_audio ORDER BY lru ASC")
                    .fetch_all(&self.inner.pool)
                    .await?;
            for (key, name, size) in rows {
                if total <= budget {
                    break;
                }
                let Some(_evicting) = self.start_evicting(&key) else {
                    report.skipped_in_use += 1;
                    continue;
                };
                if let Err(e) = remove_file_if_present(&self.dir().join(&name)).await {
                    tracing::warn!(key, error = %e, "cannot delete a cached audio file");
                    continue;
                }
                self.delete_row(&key).await?;
                total = total.saturating_sub(size as u64);
                report.evicted += 1;
                report.freed += size as u64;
                tracing::debug!(key, size, "evicted cached audio file");
            }
            if report.evicted > 0 {
                let _ = self
                    .inner
                    .meta
                    .bump(Counter::Evictions, report.evicted)
                    .await;
            }
            if total > budget {
                tracing::info!(
                    total,
                    budget,
                    in_use = report.skipped_in_use,
                    "audio cache over budget: the rest is in use"
                );
            }
        }
        report.total = total;
        Ok(report)
    }

    /// Reconciles the directory with the table (run at start-up, before playing anything):
    /// rows without files, files without rows, leftover temporaries and files whose size
    /// differs from their row are deleted; then the cache is trimmed to its budget.
    pub async fn scan(&self) -> Result<ScanReport, CacheError> {
        let dir = self.dir().to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        let mut report = ScanReport::default();
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT key, file_name, size FROM cache_audio")
                .fetch_all(&self.inner.pool)
                .await?;
        let mut files: HashMap<String, u64> = HashMap::new();
        let mut rd = tokio::fs::read_dir(&dir).await?;
        while let Some(entry) = rd.next_entry().await? {
            let Ok(ft) = entry.file_type().await else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if !ft.is_file() {
                if !ft.is_dir() || !name.starts_with('.') {
                    report.foreign += 1;
                }
                continue;
            }
            let len = entry.metadata().await.map(|m| m.len()).unwrap_or(0);
            files.insert(name, len);
        }

        for (key, name, size) in rows {
            match files.remove(&name) {
                None => {
                    self.delete_row(&key).await?;
                    report.rows_without_file += 1;
                }
                Some(len) if len != size as u64 => {
                    let Some(_evicting) = self.start_evicting(&key) else {
                        continue;
                    };
                    tracing::warn!(
                        key,
                        expected = size,
                        found = len,
                        "removing a cached audio file of the wrong size"
                    );
                    match remove_file_if_present(&dir.join(&name)).await {
                        Ok(()) => {
                            self.delete_row(&key).await?;
                            report.corrupt += 1;
                        }
                        Err(e) => {
                            tracing::warn!(key, error = %e, "cannot delete a cached audio file");
                            report.errors += 1;
                        }
                    }
                }
                Some(_) => {}
            }
        }

        let busy: Vec<String> = self.inner.keys().downloading.values().cloned().collect();
        for name in files.keys() {
            let kind = if is_temp_name(name) {
                if busy.iter().any(|b| name.starts_with(&format!(".{b}."))) {
                    continue;
                }
                &mut report.temp_files
            } else if is_cache_file_name(name) {
                if busy.iter().any(|b| b == name) {
                    continue;
                }
                &mut report.files_without_row
            } else {
                tracing::warn!(file = %name, dir = %dir.display(), "a file that is not the cache's is in the audio cache directory; leaving it");
                report.foreign += 1;
                continue;
            };
            match remove_file_if_present(&dir.join(name)).await {
                Ok(()) => *kind += 1,
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot delete a stray file");
                    report.errors += 1;
                }
            }
        }

        let trim = self.trim().await?;
        report.evicted = trim.evicted;
        let (n, bytes) = self.totals().await?;
        report.files = n;
        report.bytes = bytes;
        Ok(report)
    }
}

async fn remove_file_if_present(path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::clock::SystemClock;
    use crate::cache::testutil::{pool, track, ytdlp};
    use crate::db::Db;

    struct Fixture {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        pool: SqlitePool,
        cache: AudioCache,
        cancel: CancellationToken,
        tasks: TaskTracker,
    }

    async fn fixture_with(max_bytes: u64, program: Option<&Path>) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audio");
        std::fs::create_dir_all(&dir).unwrap();
        let pool = pool(tmp.path()).await;
        let mut s = CacheSettings::with_dir(&dir);
        s.max_bytes = max_bytes;
        s.max_track_duration = Some(Duration::from_secs(1800));
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let program = program
            .map(Path::to_path_buf)
            .unwrap_or_else(|| tmp.path().join("no-such-yt-dlp"));
        let s = Arc::new(s);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let meta = MetadataCache::new(Db::Sqlite(pool.clone()), s.clone(), clock.clone());
        let cache = AudioCache::new(
            pool.clone(),
            meta,
            ytdlp(&program, &tmp.path().join("work")),
            s,
            clock,
            tasks.clone(),
            cancel.clone(),
        );
        Fixture {
            _tmp: tmp,
            dir,
            pool,
            cache,
            cancel,
            tasks,
        }
    }

    async fn fixture(max_bytes: u64) -> Fixture {
        fixture_with(max_bytes, None).await
    }

    impl Fixture {
        /// A fake downloaded file of `size` bytes for `id`, recorded.
        async fn put(&self, id: &str, size: usize) -> String {
            let key = format!("generic:{id}");
            let name = file_name_for(&key, Some("webm"));
            std::fs::write(self.dir.join(&name), vec![7u8; size]).unwrap();
            self.cache.record(&key, &name, size as u64).await.unwrap();
            key
        }

        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&self.dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    #[tokio::test]
    async fn byte_budget_evicts_least_recently_used() {
        let f = fixture(10_000).await;
        let mut keys = Vec::new();
        for i in 0..30 {
            keys.push(f.put(&format!("t{i}"), 1000).await);
            // Keep "t0" warm: it must survive every pass.
            drop(f.cache.open(&keys[0]).await.unwrap());
            let r = f.cache.trim().await.unwrap();
            assert!(r.total <= 10_000, "{r:?}");
        }
        let (n, bytes) = f.cache.totals().await.unwrap();
        assert_eq!((n, bytes), (10, 10_000));
        assert_eq!(f.names().len(), 10, "files follow rows");
        assert!(f.cache.open(&keys[0]).await.is_some(), "recently used kept");
        for k in &keys[21..] {
            assert!(f.cache.open(k).await.is_some(), "{k} is among the newest");
        }
        for k in &keys[1..21] {
            assert!(
                f.cache.open(k).await.is_none(),
                "{k} was least recently used"
            );
        }
        let c = f.cache.inner.meta.counters().await.unwrap();
        assert_eq!(c.evictions, 20);
    }

    #[tokio::test]
    async fn in_use_files_are_never_evicted() {
        let f = fixture(3_000).await;
        let a = f.put("a", 1000).await;
        let playing = f.cache.open(&a).await.unwrap();
        assert_eq!(playing.size, 1000);
        let b = f.put("b", 1000).await;
        let pinned = f.cache.pin(&b).unwrap();
        // "a" and "b" are the least recently used, but both are in use.
        f.put("c", 1000).await;
        f.put("d", 1000).await;
        let r = f.cache.trim().await.unwrap();
        assert_eq!((r.evicted, r.skipped_in_use), (1, 2), "{r:?}");
        assert!(playing.path.exists());
        assert!(f.cache.open(&b).await.is_some());
        assert!(f.cache.open("generic:c").await.is_none(), "c went instead");
        // Released: now they can go.
        drop(playing);
        drop(pinned);
        f.put("e", 1000).await;
        let r = f.cache.trim().await.unwrap();
        assert!(r.total <= 3_000, "{r:?}");
        assert!(f.cache.open(&a).await.is_none());
        // A key being evicted cannot be opened meanwhile.
        let _e = f.cache.start_evicting("generic:e").unwrap();
        assert!(f.cache.open("generic:e").await.is_none());
        assert!(f.cache.pin("generic:e").is_none());
    }

    #[tokio::test]
    async fn startup_scan_removes_orphans_temps_and_wrong_sizes() {
        let f = fixture(1 << 20).await;
        let good = f.put("good", 100).await;
        // A row whose file is gone.
        let gone = f.put("gone", 100).await;
        std::fs::remove_file(f.dir.join(file_name_for(&gone, Some("webm")))).unwrap();
        // A file whose size doesn't match its row (truncated).
        let bad = f.put("bad", 100).await;
        std::fs::write(f.dir.join(file_name_for(&bad, Some("webm"))), [1u8; 40]).unwrap();
        // A file of ours without a row, a leftover temporary, and somebody else's file.
        let orphan = file_name_for("generic:orphan", Some("webm"));
        std::fs::write(f.dir.join(&orphan), [1u8; 10]).unwrap();
        let temp = format!(".{orphan}.0011223344556677.encore-dl");
        std::fs::write(f.dir.join(&temp), [1u8; 10]).unwrap();
        std::fs::write(f.dir.join("README.txt"), b"mine").unwrap();

        let r = f.cache.scan().await.unwrap();
        assert_eq!(
            r,
            ScanReport {
                rows_without_file: 1,
                files_without_row: 1,
                temp_files: 1,
                corrupt: 1,
                foreign: 1,
                evicted: 0,
                files: 1,
                bytes: 100,
                errors: 0,
            }
        );
        assert_eq!(
            f.names(),
            vec!["README.txt".to_owned(), file_name_for(&good, Some("webm"))]
        );
        assert!(f.cache.open(&good).await.is_some());
        // A second scan finds nothing to do.
        let r = f.cache.scan().await.unwrap();
        assert_eq!((r.files, r.foreign, r.files_without_row), (1, 1, 0));
        // The scan also trims to the budget.
        let f = fixture(150).await;
        f.put("x", 100).await;
        f.put("y", 100).await;
        let r = f.cache.scan().await.unwrap();
        assert_eq!((r.evicted, r.files, r.bytes), (1, 1, 100));
    }

    #[tokio::test]
    async fn open_cleans_up_missing_and_wrong_size_files() {
        let f = fixture(1 << 20).await;
        let k = f.put("k", 10).await;
        std::fs::write(f.dir.join(file_name_for(&k, Some("webm"))), [0u8; 3]).unwrap();
        assert!(f.cache.open(&k).await.is_none());
        assert!(f.names().is_empty());
        assert_eq!(f.cache.totals().await.unwrap(), (0, 0));
        let k = f.put("k", 10).await;
        assert!(f.cache.remove(&k).await.unwrap());
        assert!(f.names().is_empty());
        let k = f.put("k", 10).await;
        let _g = f.cache.pin(&k).unwrap();
        assert!(!f.cache.remove(&k).await.unwrap(), "in use");
        let _ = &f.pool;
    }

    #[tokio::test]
    async fn prefetch_refuses_live_and_long_tracks() {
        let f = fixture(1 << 20).await;
        let mut t = track("live");
        t.is_live = true;
        assert!(matches!(f.cache.prefetch(&t), PrefetchStatus::Skipped(_)));
        let mut t = track("long");
        t.duration = Some(Duration::from_secs(1801));
        assert!(matches!(f.cache.prefetch(&t), PrefetchStatus::Skipped(_)));
        f.cancel.cancel();
        assert!(matches!(
            f.cache.prefetch(&track("ok")),
            PrefetchStatus::Skipped("shutting down")
        ));
        assert_eq!(f.cache.downloading(), 0);
        assert!(f.tasks.is_empty());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn prefetch_dedupes_keys_and_stops_on_cancel() {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().unwrap();
        let script = bin.path().join("slow-yt-dlp");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = fixture_with(1 << 20, Some(&script)).await;
        let t = track("same");
        let PrefetchStatus::Started(handle) = f.cache.prefetch(&t) else {
            panic!("first prefetch starts");
        };
        assert!(matches!(f.cache.prefetch(&t), PrefetchStatus::InProgress));
        assert!(matches!(
            f.cache.prefetch(&track("other")),
            PrefetchStatus::Started(_)
        ));
        assert_eq!(f.cache.downloading(), 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        f.cancel.cancel();
        let out = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("cancel stops the download promptly")
            .unwrap();
        assert_eq!(out, DownloadOutcome::Cancelled);
        f.tasks.close();
        tokio::time::timeout(Duration::from_secs(10), f.tasks.wait())
            .await
            .unwrap();
        assert_eq!(f.cache.downloading(), 0);
        assert!(f.names().is_empty(), "nothing left behind: {:?}", f.names());
    }
}
