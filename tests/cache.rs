//! Integration tests of `encore::cache` with the real yt-dlp against a tiny HTTP server on
//! 127.0.0.1 serving a WebM/Opus tone made with ffmpeg (no network needed).
//!
//! yt-dlp is found via `ENCORE_YTDLP` (used alone when set), else `.venv/bin/yt-dlp` in
//! the crate directory, else `yt-dlp` on `PATH`; ffmpeg on `PATH`. When either is missing
//! the tests fail with how to install it (never skip).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use encore::cache::{
    CacheOutcome, CacheSettings, Clock, DownloadOutcome, ManualClock, Playable, PrefetchStatus,
    Resolved, Resolver,
};
use encore::sources::{parse_query, Query, UrlPolicy, YtDlp, YtDlpConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const ALLOW: UrlPolicy = UrlPolicy::ALLOW_PRIVATE;

// ---------- tools ----------

fn ytdlp_path() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("ENCORE_YTDLP") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/yt-dlp"),
            PathBuf::from("yt-dlp"),
        ],
    };
    for c in &candidates {
        let ok = std::process::Command::new(c)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return c.clone();
        }
    }
    panic!(
        "yt-dlp is needed for these tests and was not found (tried: {}). Install it with \
         `python3 -m venv .venv && .venv/bin/pip install yt-dlp` in the crate directory, \
         or set ENCORE_YTDLP to its path.",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// 2 s of a 440 Hz sine as WebM/Opus.
fn write_tone_webm(path: &Path) {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=2",
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-f",
            "webm",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "ffmpeg is needed for these tests ({e}): install it with `apt-get install ffmpeg`"
            )
        });
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------- a tiny static file server (query strings ignored, Range supported) ----------

struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn requests(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve(dir: PathBuf) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let dir = dir.clone();
            let hits = h2.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&req).into_owned();
                let mut first = head.lines().next().unwrap_or("").split_whitespace();
                let method = first.next().unwrap_or("").to_owned();
                let target = first.next().unwrap_or("/");
                let path = target.split('?').next().unwrap_or("/");
                let name = path.trim_start_matches('/');
                let range = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("range")
                        .then(|| v.trim().to_owned())
                });
                let body = if name.contains('/') || name.contains("..") {
                    None
                } else {
                    std::fs::read(dir.join(name)).ok()
                };
                let (status, extra, body) = match body {
                    None => ("404 Not Found", String::new(), b"not found".to_vec()),
                    Some(data) => {
                        let len = data.len();
                        let parsed = range.as_deref().and_then(|r| {
                            let r = r.strip_prefix("bytes=")?;
                            let (a, b) = r.split_once('-')?;
                            let start: usize = a.parse().ok()?;
                            let end: usize = if b.is_empty() {
                                len - 1
                            } else {
                                b.parse::<usize>().ok()?.min(len - 1)
                            };
                            (start <= end).then_some((start, end))
                        });
                        match parsed {
                            Some((s, e)) => (
                                "206 Partial Content",
                                format!("Content-Range: bytes {s}-{e}/{len}\r\n"),
                                data[s..=e].to_vec(),
                            ),
                            None => ("200 OK", String::new(), data),
                        }
                    }
                };
                let header = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: audio/webm\r\nAccept-Ranges: bytes\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if sock.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                if method != "HEAD" {
                    let _ = sock.write_all(&body).await;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    Server { base, hits }
}

// ---------- fixture ----------

struct World {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    source: Vec<u8>,
    srv: Server,
    clock: ManualClock,
    tasks: TaskTracker,
    cancel: CancellationToken,
    r: Resolver,
    pool: sqlx::SqlitePool,
}

impl World {
    async fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let www = tmp.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        write_tone_webm(&www.join("tone.webm"));
        let source = std::fs::read(www.join("tone.webm")).unwrap();
        let srv = serve(www).await;
        let data = tmp.path().join("data");
        let clock = ManualClock::starting_now();
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let (r, pool) = Self::open(&data, &clock, &tasks, &cancel).await;
        World {
            _tmp: tmp,
            data,
            source,
            srv,
            clock,
            tasks,
            cancel,
            r,
            pool,
        }
    }

    /// A resolver over `<data>/encore.db` and `<data>/audio`, as `App::build` would make it.
    async fn open(
        data: &Path,
        clock: &ManualClock,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> (Resolver, sqlx::SqlitePool) {
        let pool = encore::db::open_sqlite(&data.join("encore.db"))
            .await
            .unwrap();
        let ytdlp = YtDlp::new(
            YtDlpConfig {
                path: ytdlp_path(),
                timeout: Duration::from_secs(30),
                max_duration: None,
                cookies: None,
                proxy: None,
                work_dir: data.join("work"),
            },
            ALLOW,
        );
        let settings = CacheSettings::with_dir(data.join("audio"));
        let r = Resolver::with_clock(
            &encore::db::Stores::single(pool.clone()),
            ytdlp,
            settings,
            tasks.clone(),
            cancel.clone(),
            Arc::new(clock.clone()),
        );
        (r, pool)
    }

    /// Drops the resolver and the pool and opens them again on the same files.
    async fn restart(&mut self) {
        let (r, pool) = Self::open(&self.data, &self.clock, &self.tasks, &self.cancel).await;
        let old = std::mem::replace(&mut self.r, r);
        drop(old);
        std::mem::replace(&mut self.pool, pool).close().await;
    }

    fn spawned(&self) -> u64 {
        self.r.ytdlp().stats().spawned.load(Ordering::SeqCst)
    }

    async fn query(&self, text: &str) -> Query {
        parse_query(text, &ALLOW).await.unwrap()
    }

    /// Resolves and returns how many yt-dlp processes it took.
    async fn resolve(&self, text: &str) -> (Resolved, u64) {
        let q = self.query(text).await;
        let before = self.spawned();
        let r = self.r.resolve(&q).await.unwrap();
        (r, self.spawned() - before)
    }

    fn audio_files(&self) -> Vec<String> {
        let dir = self.data.join("audio");
        let mut v: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    async fn prefetch(&self, r: &Resolved) -> DownloadOutcome {
        match self.r.prefetch(&r.track) {
            PrefetchStatus::Started(h) => tokio::time::timeout(Duration::from_secs(120), h)
                .await
                .expect("download finishes")
                .unwrap(),
            other => panic!("prefetch did not start: {other:?}"),
        }
    }
}

/// What songbird will see: symphonia's demuxer finds an Opus track (passthrough-eligible).
fn assert_opus_in_webm(path: &Path) {
    use symphonia::core::codecs::CODEC_TYPE_OPUS;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;
    let file = std::fs::File::open(path).unwrap();
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("webm");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .expect("symphonia reads the cached file");
    let track = probed.format.default_track().expect("an audio track");
    assert_eq!(track.codec_params.codec, CODEC_TYPE_OPUS);
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------- tests ----------

#[tokio::test]
async fn second_resolve_is_a_hit_without_spawning() {
    let w = World::new().await;
    let url = w.srv.url("/tone.webm");
    let (first, n) = w.resolve(&url).await;
    assert_eq!((first.cache, n), (CacheOutcome::Miss, 1));
    assert_eq!(first.track.cache_key(), "generic:tone");
    let served = w.srv.requests();

    let (second, n) = w.resolve(&url).await;
    assert_eq!((second.cache, n), (CacheOutcome::Hit, 0));
    assert_eq!(second.track, first.track);
    // Other spellings of the same URL hit too: tracking parameters and fragments are
    // dropped, scheme and host case ignored.
    let variant = url.replace("http://", "HTTP://") + "?utm_source=share#t=3";
    let (third, n) = w.resolve(&variant).await;
    assert_eq!((third.cache, n), (CacheOutcome::Hit, 0));
    assert_eq!(
        w.srv.requests(),
        served,
        "no request reached the server on hits"
    );

    let s = w.r.stats().await;
    assert_eq!((s.counters.hits, s.counters.misses, s.entries), (2, 1, 1));
    assert!((s.counters.hit_rate().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    // Autocomplete sees the cached title.
    assert_eq!(
        w.r.search_titles(None, "ton", 5).await,
        vec![("tone".to_owned(), url.clone())]
    );
}

#[tokio::test]
async fn ytdlp_runs_again_after_the_ttl_or_the_stream_expiry() {
    let w = World::new().await;
    let url = w.srv.url("/tone.webm");
    assert_eq!(w.resolve(&url).await.0.cache, CacheOutcome::Miss);
    w.clock.advance(Duration::from_secs(7 * 86400 - 60));
    assert_eq!(w.resolve(&url).await.1, 0, "still fresh");
    w.clock.advance(Duration::from_secs(60));
    let (r, n) = w.resolve(&url).await;
    assert_eq!((r.cache, n), (CacheOutcome::Refreshed, 1));
    assert_eq!(w.resolve(&url).await.0.cache, CacheOutcome::Hit);

    // A stream URL with an expiry (like YouTube's `expire=`) is not trusted past it.
    let expires = unix(w.clock.now()) + 3600;
    let signed = w.srv.url(&format!("/tone.webm?expire={expires}"));
    let (r, n) = w.resolve(&signed).await;
    assert_eq!((r.cache, n), (CacheOutcome::Miss, 1));
    assert_eq!(r.track.stream_expires.map(unix), Some(expires));
    w.clock.advance(Duration::from_secs(30 * 60));
    assert_eq!(w.resolve(&signed).await.1, 0, "not expired yet");
    w.clock.advance(Duration::from_secs(30 * 60));
    let (r, n) = w.resolve(&signed).await;
    assert_eq!((r.cache, n), (CacheOutcome::Refreshed, 1));
    let s = w.r.stats().await;
    assert_eq!((s.counters.misses, s.counters.refreshes), (4, 2));
}

#[tokio::test]
async fn prefetch_downloads_and_the_next_resolve_plays_the_file_without_ytdlp() {
    let w = World::new().await;
    let url = w.srv.url("/tone.webm");
    let (r, _) = w.resolve(&url).await;
    let out = w.prefetch(&r).await;
    let DownloadOutcome::Stored { path, size } = out else {
        panic!("download failed: {out:?}");
    };
    assert_eq!(path.parent().unwrap(), w.data.join("audio"));
    assert!(path.extension().is_some_and(|e| e == "webm"), "{path:?}");
    assert_eq!(size, w.source.len() as u64);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes, w.source, "the file as served");
    assert_eq!(&bytes[..4], [0x1a, 0x45, 0xdf, 0xa3], "WebM (EBML) magic");
    assert_eq!(w.audio_files().len(), 1, "no temporary files left");
    assert_opus_in_webm(&path);

    let served = w.srv.requests();
    let (hit, n) = w.resolve(&url).await;
    assert_eq!((hit.cache, n), (CacheOutcome::Hit, 0));
    // The player's path: right before playing, the cache says the file plays (pinned
    // against eviction while it does).
    let Playable::File(file) = w.r.playable(&hit.track).await.unwrap() else {
        panic!("a cached track plays from its file");
    };
    assert_eq!(file.path, path);
    assert_eq!(w.r.audio().in_use(), 1, "the file is pinned while it plays");
    drop(file);
    assert_eq!(w.srv.requests(), served, "played from disk");
    // Asking again finds it cached, and the same key never downloads twice at once.
    assert_eq!(w.prefetch(&r).await, DownloadOutcome::AlreadyCached);
    let s = w.r.stats().await;
    assert_eq!(
        (
            s.audio_files,
            s.audio_bytes,
            s.counters.downloads,
            s.counters.file_hits
        ),
        (1, size, 1, 1)
    );
}

#[tokio::test]
async fn a_restart_keeps_counters_entries_and_files() {
    let mut w = World::new().await;
    let url = w.srv.url("/tone.webm");
    let (r, _) = w.resolve(&url).await;
    w.resolve(&url).await;
    let DownloadOutcome::Stored { path, .. } = w.prefetch(&r).await else {
        panic!("download failed");
    };
    // Junk a crash could leave: a temporary download and an unrecorded file of ours.
    let dir = w.data.join("audio");
    std::fs::write(dir.join(".x.0011223344556677.encore-dl"), b"partial").unwrap();
    let before = w.r.stats().await;

    w.restart().await;
    let scan = w.r.startup_scan().await;
    assert_eq!(
        (scan.files, scan.temp_files, scan.rows_without_file),
        (1, 1, 0)
    );
    assert_eq!(
        w.audio_files(),
        vec![path.file_name().unwrap().to_string_lossy().into_owned()]
    );
    let after = w.r.stats().await;
    assert_eq!(
        (
            after.counters.hits,
            after.counters.misses,
            after.entries,
            after.audio_files,
            after.audio_bytes
        ),
        (
            before.counters.hits,
            before.counters.misses,
            before.entries,
            before.audio_files,
            before.audio_bytes
        )
    );
    assert_eq!((after.counters.hits, after.counters.misses), (1, 1));

    let served = w.srv.requests();
    let (hit, n) = w.resolve(&url).await;
    assert_eq!((hit.cache, n), (CacheOutcome::Hit, 0));
    let Playable::File(file) = w.r.playable(&hit.track).await.unwrap() else {
        panic!("the file survived the restart");
    };
    assert_eq!(file.path, path);
    assert_eq!(w.srv.requests(), served);
    assert_eq!(w.r.stats().await.counters.hits, 2);
}

#[tokio::test]
async fn a_cancelled_prefetch_leaves_nothing_behind() {
    let w = World::new().await;
    let url = w.srv.url("/tone.webm");
    let (r, _) = w.resolve(&url).await;
    let PrefetchStatus::Started(handle) = w.r.prefetch(&r.track) else {
        panic!("prefetch did not start");
    };
    assert!(matches!(w.r.prefetch(&r.track), PrefetchStatus::InProgress));
    // Cancel while the download's yt-dlp is running, not before it starts.
    let stats = w.r.ytdlp().stats();
    tokio::time::timeout(Duration::from_secs(10), async {
        while stats.running.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the download starts");
    w.cancel.cancel();
    let out = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("cancellation is prompt")
        .unwrap();
    assert_eq!(out, DownloadOutcome::Cancelled);
    w.tasks.close();
    tokio::time::timeout(Duration::from_secs(10), w.tasks.wait())
        .await
        .unwrap();
    // The yt-dlp process group is gone and nothing was kept.
    for _ in 0..50 {
        if stats.running.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats.running.load(Ordering::SeqCst), 0);
    assert!(w.audio_files().is_empty(), "{:?}", w.audio_files());
    assert!(matches!(
        w.r.prefetch(&r.track),
        PrefetchStatus::Skipped("shutting down")
    ));
    assert_eq!(w.r.stats().await.audio_files, 0);
}
