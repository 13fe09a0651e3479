//! 5: cache lookups with many entries in the SQLite cache (in process, the bot's own
//! `MetadataCache` and `Resolver` over a database opened like the bot opens it); part 6 runs
//! the same on PostgreSQL, the store of a cluster.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use encore::cache::{CacheOutcome, CacheSettings, MetadataCache, Resolver, SystemClock};
use encore::sources::{Query, Track};
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Debug, Default)]
pub struct Results {
    /// "SQLite" or "PostgreSQL".
    pub engine: &'static str,
    pub entries: usize,
    pub fill: Duration,
    /// Microseconds.
    pub lookup_hit: Vec<f64>,
    pub lookup_miss: Vec<f64>,
    /// `Resolver::resolve` of a cached entry: what `/play` does on a hit (lookup, touch,
    /// counters).
    pub resolve_hit: Vec<f64>,
    /// `MetadataCache::store` of a new entry with the cache full.
    pub store: Vec<f64>,
    /// Store latency over the first and last 1 000 inserts of the fill.
    pub store_first: Vec<f64>,
    pub store_last: Vec<f64>,
    pub db_bytes: u64,
}

fn track(i: usize, now: SystemTime) -> Track {
    let id = format!("v{i:010}");
    Track {
        title: format!("Benchmark song number {i} (official audio)"),
        page_url: format!("https://www.youtube.com/watch?v={id}"),
        stream_url: format!(
            "https://rr1---sn-bench.googlevideo.com/videoplayback?expire={}&id={id}&itag=251&mime=audio%2Fwebm&sig=AOq0QJ8wRQIhAK{i:020}",
            (now + Duration::from_secs(6 * 3600))
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        ),
        http_headers: vec![("User-Agent".into(), "Mozilla/5.0 (bench)".into())],
        duration: Some(Duration::from_secs(180 + (i % 120) as u64)),
        extractor: "youtube".into(),
        id,
        is_live: false,
        uploader: Some(format!("Channel {}", i % 997)),
        thumbnail: Some(format!("https://i.ytimg.com/vi/v{i:010}/hqdefault.jpg")),
        ext: Some("webm".into()),
        acodec: Some("opus".into()),
        stream_expires: Some(now + Duration::from_secs(6 * 3600)),
    }
}

fn query(i: usize) -> Query {
    Query::Url(url::Url::parse(&format!("https://www.youtube.com/watch?v=v{i:010}")).unwrap())
}

/// On SQLite, a database file in `dir`, as a single bot opens it.
pub async fn run(dir: &std::path::Path, entries: usize, lookups: usize) -> anyhow::Result<Results> {
    run_on(dir, entries, lookups, None).await
}

/// `database`: `None` for SQLite (a file in `dir`), else the URL of an empty PostgreSQL
/// database, opened as a node of a cluster opens it (the metadata cache there, the audio
/// cache's index in a SQLite file of this machine's own).
pub async fn run_on(
    dir: &std::path::Path,
    entries: usize,
    lookups: usize,
    database: Option<&str>,
) -> anyhow::Result<Results> {
    anyhow::ensure!(
        entries > 0,
        "the cache measurement needs at least one entry"
    );
    let mut res = Results {
        entries,
        ..Default::default()
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join("cache-bench.db");
    let stores = match database {
        None => encore::db::Stores::single(encore::db::open_sqlite(&path).await?),
        Some(url) => encore::db::Stores {
            db: encore::db::open_postgres(url).await?,
            local: encore::db::open_sqlite(&dir.join("node.db")).await?,
        },
    };
    let pool = stores.db.clone();
    res.engine = pool.engine().name();
    let mut settings = CacheSettings::with_dir(dir.join("cache-bench-audio"));
    // Full: the stores measured at the end each evict the least recently used entry.
    settings.max_entries = entries as u64;
    std::fs::create_dir_all(settings.dir())?;
    let meta = MetadataCache::new(
        pool.clone(),
        Arc::new(settings.clone()),
        Arc::new(SystemClock),
    );
    let now = SystemTime::now();
    let t0 = Instant::now();
    for i in 0..entries {
        let t = track(i, now);
        let s = Instant::now();
        meta.store(Some(&query(i)), &t).await?;
        let us = s.elapsed().as_secs_f64() * 1e6;
        if i < 1000 {
            res.store_first.push(us);
        } else if i >= entries.saturating_sub(1000) {
            res.store_last.push(us);
        }
        if i > 0 && i % 20_000 == 0 {
            eprintln!(
                "[cache] {}: {i} entries stored ({:.0} s)",
                res.engine,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    res.fill = t0.elapsed();

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..lookups {
        let i = rng.gen_range(0..entries);
        let s = Instant::now();
        let l = meta.lookup(&query(i)).await?;
        res.lookup_hit.push(s.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            matches!(l, encore::cache::Lookup::Fresh(_)),
            "entry {i} is not fresh: {l:?}"
        );
        let s = Instant::now();
        let l = meta.lookup(&query(entries + i)).await?;
        res.lookup_miss.push(s.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(matches!(l, encore::cache::Lookup::Missing));
    }

    // The whole hit path of /play, yt-dlp never runs (a path that does not exist proves it).
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    let ytdlp = encore::sources::YtDlp::new(
        encore::sources::YtDlpConfig {
            path: dir.join("no-yt-dlp-here"),
            timeout: Duration::from_secs(5),
            max_duration: None,
            cookies: None,
            proxy: None,
            work_dir: dir.to_path_buf(),
        },
        encore::sources::UrlPolicy::DENY_PRIVATE,
    );
    let resolver = Resolver::new(&stores, ytdlp, settings, tasks.clone(), cancel.clone());
    for _ in 0..lookups.min(5000) {
        let i = rng.gen_range(0..entries);
        let s = Instant::now();
        let r = resolver.resolve(&query(i)).await?;
        res.resolve_hit.push(s.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(r.cache == CacheOutcome::Hit);
    }
    for k in 0..lookups.min(2000) {
        let i = entries * 2 + k;
        let t = track(i, now);
        let s = Instant::now();
        meta.store(Some(&query(i)), &t).await?;
        res.store.push(s.elapsed().as_secs_f64() * 1e6);
    }
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    res.db_bytes = match &pool {
        encore::db::Db::Postgres(pg) => {
            sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                .fetch_one(pg)
                .await
                .map(|b| b.max(0) as u64)
                .unwrap_or(0)
        }
        encore::db::Db::Sqlite(_) => 0,
    };
    stores.close().await;
    if database.is_none() {
        res.db_bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
            .map(|m| m.len())
            .sum();
    }
    Ok(res)
}
