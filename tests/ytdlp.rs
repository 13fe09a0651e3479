//! Integration tests of `encore::sources` against the real yt-dlp and a tiny HTTP server
//! on 127.0.0.1 (no network needed), plus fake "yt-dlp" scripts for process hygiene.
//!
//! yt-dlp is found via `ENCORE_YTDLP` (used alone when set), else `.venv/bin/yt-dlp` in the
//! crate directory, else `yt-dlp` on `PATH`. When none works the tests fail (never skip).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use encore::sources::lookups::Lookups;
use encore::sources::{parse_query, Query, ResolveError, UrlPolicy, YtDlp, YtDlpConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ALLOW: UrlPolicy = UrlPolicy::ALLOW_PRIVATE;

// ---------- locating yt-dlp ----------

fn ytdlp_path() -> PathBuf {
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    match std::env::var_os("ENCORE_YTDLP") {
        // An explicit choice is the only candidate: a broken one fails loudly.
        Some(p) => candidates.push(PathBuf::from(p)),
        None => {
            candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/yt-dlp"));
            candidates.push(PathBuf::from("yt-dlp"));
        }
    }
    for c in candidates {
        let ok = std::process::Command::new(&c)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return c;
        }
        tried.push(c.display().to_string());
    }
    panic!(
        "yt-dlp is needed for these tests and was not found (tried: {}). Install it with \
         `python3 -m venv .venv && .venv/bin/pip install yt-dlp` in the crate directory, \
         or set ENCORE_YTDLP to its path.",
        tried.join(", ")
    );
}

fn config(path: PathBuf, work_dir: &Path) -> YtDlpConfig {
    YtDlpConfig {
        path,
        timeout: Duration::from_secs(30),
        max_duration: None,
        cookies: None,
        proxy: None,
        work_dir: work_dir.to_path_buf(),
    }
}

// ---------- a tiny HTTP file server ----------

/// 2 s of a 440 Hz sine, 48 kHz mono 16-bit PCM WAV.
fn tone_wav() -> Vec<u8> {
    let rate = 48_000u32;
    let samples = rate * 2;
    let data_len = samples * 2;
    let mut v = Vec::with_capacity(44 + data_len as usize);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes()); // byte rate
    v.extend_from_slice(&2u16.to_le_bytes()); // block align
    v.extend_from_slice(&16u16.to_le_bytes()); // bits
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let t = i as f64 / rate as f64;
        let s = (t * 440.0 * std::f64::consts::TAU).sin() * 0.3 * i16::MAX as f64;
        v.extend_from_slice(&(s as i16).to_le_bytes());
    }
    v
}

struct Server {
    base: String,
    wav: Arc<Vec<u8>>,
    /// Every request line's path, in order.
    hits: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn requested(&self, path: &str) -> bool {
        self.hits.lock().unwrap().iter().any(|p| p == path)
    }
}

async fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let wav = Arc::new(tone_wav());
    let ld_page = format!(
        r#"<html><head><title>ld page</title>
<script type="application/ld+json">{{"@context":"https://schema.org","@type":"AudioObject","name":"long one","contentUrl":"{base}/tone.wav","duration":"PT2H","uploadDate":"2020-01-01"}}</script>
</head><body>hi</body></html>"#
    );
    let two_page = r#"<html><head><title>two tones</title></head><body><audio src="/tone.wav"></audio><audio src="/tone2.wav"></audio></body></html>"#.to_owned();
    let wav2 = wav.clone();
    let hits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hits2 = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let wav = wav2.clone();
            let hits = hits2.clone();
            let ld_page = ld_page.clone();
            let two_page = two_page.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req);
                let mut first = head.lines().next().unwrap_or("").split_whitespace();
                let method = first.next().unwrap_or("").to_owned();
                let path = first.next().unwrap_or("/").to_owned();
                hits.lock().unwrap().push(path.clone());
                let (status, ctype, body): (&str, &str, Vec<u8>) = match path.as_str() {
                    "/tone.wav" | "/tone2.wav" => ("200 OK", "audio/wav", wav.to_vec()),
                    "/note.txt" => (
                        "200 OK",
                        "text/plain",
                        b"just some text, no media here\n".to_vec(),
                    ),
                    "/page.html" => (
                        "200 OK",
                        "text/html; charset=utf-8",
                        b"<html><head><title>nothing</title></head><body><p>no media</p></body></html>"
                            .to_vec(),
                    ),
                    "/ld.html" => ("200 OK", "text/html; charset=utf-8", ld_page.into_bytes()),
                    "/two.html" => ("200 OK", "text/html; charset=utf-8", two_page.into_bytes()),
                    _ => (
                        "404 Not Found",
                        "text/html",
                        b"<html><body>not found</body></html>".to_vec(),
                    ),
                };
                let header = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
    Server { base, wav, hits }
}

fn assert_idle(y: &YtDlp) {
    assert_eq!(
        y.stats().running.load(Ordering::SeqCst),
        0,
        "stats.running must be back to 0"
    );
}

// ---------- process helpers ----------

/// True when `pid` no longer exists or is a zombie (dead, waiting to be reaped by an
/// init that may not reap in a container).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // "pid (comm) S ..." — comm may contain spaces; the state follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("");
            state == "Z" || state == "X"
        }
    }
}

async fn wait_gone(pid: i32, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        if is_gone(pid) {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn read_pid(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Writes an executable fake "yt-dlp" that records its pid and a background child's pid,
/// then waits forever (60 s).
fn sleeping_script(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = dir.join("fake-yt-dlp");
    let me = dir.join("script.pid");
    let child = dir.join("child.pid");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\necho $$ > '{me}.tmp' && mv '{me}.tmp' '{me}'\nsleep 60 &\necho $! > '{child}.tmp' && mv '{child}.tmp' '{child}'\nwait\n",
            me = me.display(),
            child = child.display()
        ),
    );
    (script, me, child)
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ---------- tests with the real yt-dlp ----------

#[tokio::test]
async fn resolves_a_local_wav() {
    let srv = serve().await;
    let work = tempfile::tempdir().unwrap();
    let y = YtDlp::new(config(ytdlp_path(), work.path()), ALLOW);
    let url = srv.url("/tone.wav");
    let q = parse_query(&url, &ALLOW).await.unwrap();
    let t = y.resolve(&q).await.expect("resolves");
    assert_eq!(t.title, "tone");
    assert_eq!(t.page_url, url);
    assert_eq!(t.stream_url, url);
    assert!(t.stream_url.starts_with("http://127.0.0.1:"));
    assert_eq!(t.extractor, "generic");
    assert_eq!(t.id, "tone");
    assert_eq!(t.cache_key(), "generic:tone");
    assert_eq!(t.ext.as_deref(), Some("wav"));
    assert!(!t.is_live);
    assert!(t.is_resolved());
    assert_eq!(t.stream_expires, None);
    assert!(t.http_headers.iter().any(|(k, _)| k == "User-Agent"));
    assert_eq!(y.stats().spawned.load(Ordering::SeqCst), 1);
    assert_eq!(y.stats().failed.load(Ordering::SeqCst), 0);
    assert_idle(&y);
}

#[tokio::test]
async fn missing_page_is_not_found() {
    let srv = serve().await;
    let work = tempfile::tempdir().unwrap();
    let y = YtDlp::new(config(ytdlp_path(), work.path()), ALLOW);
    let q = parse_query(&srv.url("/nope.wav"), &ALLOW).await.unwrap();
    assert_eq!(y.resolve(&q).await, Err(ResolveError::NotFound));
    assert_eq!(y.stats().failed.load(Ordering::SeqCst), 1);
    assert_idle(&y);
}

#[tokio::test]
async fn pages_without_media_are_unsupported() {
    let srv = serve().await;
    let work = tempfile::tempdir().unwrap();
    let y = YtDlp::new(config(ytdlp_path(), work.path()), ALLOW);
    // yt-dlp itself says "Unsupported URL" for an HTML page without media…
    let q = parse_query(&srv.url("/page.html"), &ALLOW).await.unwrap();
    assert_eq!(y.resolve(&q).await, Err(ResolveError::Unsupported));
    // …and calls a text/plain page a "direct" link of unknown type, which we refuse.
    let q = parse_query(&srv.url("/note.txt"), &ALLOW).await.unwrap();
    assert_eq!(y.resolve(&q).await, Err(ResolveError::Unsupported));
    assert_idle(&y);
}

#[tokio::test]
async fn duration_limit_reports_the_real_length() {
    let srv = serve().await;
    let work = tempfile::tempdir().unwrap();
    let mut cfg = config(ytdlp_path(), work.path());
    cfg.max_duration = Some(Duration::from_secs(60));
    let y = YtDlp::new(cfg.clone(), ALLOW);
    let q = parse_query(&srv.url("/ld.html"), &ALLOW).await.unwrap();
    assert_eq!(
        y.resolve(&q).await,
        Err(ResolveError::TooLong {
            limit: Duration::from_secs(60),
            actual: Duration::from_secs(7200)
        })
    );
    // An unknown duration does not pass the filter: it could be a stream that never ends.
    let q = parse_query(&srv.url("/tone.wav"), &ALLOW).await.unwrap();
    assert_eq!(
        y.resolve(&q).await,
        Err(ResolveError::UnknownLength {
            limit: Duration::from_secs(60)
        })
    );
    // Within the limit, the duration is reported.
    cfg.max_duration = Some(Duration::from_secs(3 * 3600));
    let y = YtDlp::new(cfg, ALLOW);
    let q = parse_query(&srv.url("/ld.html"), &ALLOW).await.unwrap();
    let t = y.resolve(&q).await.unwrap();
    assert_eq!(t.title, "long one");
    assert_eq!(t.duration, Some(Duration::from_secs(7200)));
    assert_idle(&y);
}

#[tokio::test]
async fn playlists_are_listed_unresolved_and_bounded() {
    let srv = serve().await;
    let work = tempfile::tempdir().unwrap();
    let y = YtDlp::new(config(ytdlp_path(), work.path()), ALLOW);
    let url = url::Url::parse(&srv.url("/two.html")).unwrap();
    let (title, tracks) = y.resolve_playlist(&url, 10).await.unwrap();
    assert_eq!(title, "two tones");
    assert_eq!(tracks.len(), 2);
    assert_eq!(tracks[0].page_url, srv.url("/tone.wav"));
    assert_eq!(tracks[1].page_url, srv.url("/tone2.wav"));
    assert!(tracks.iter().all(|t| !t.is_resolved()));
    let (_, one) = y.resolve_playlist(&url, 1).await.unwrap();
    assert_eq!(one.len(), 1);
    // An entry resolves on demand.
    let t = y
        .resolve(&Query::Url(url::Url::parse(&tracks[1].page_url).unwrap()))
        .await
        .unwrap();
    assert_eq!(t.title, "tone2");
    // With a duration limit (filter + pre-process print), entries of unknown length stay.
    let mut cfg = config(ytdlp_path(), work.path());
    cfg.max_duration = Some(Duration::from_secs(3600));
    let limited = YtDlp::new(cfg, ALLOW);
    let (_, both) = limited.resolve_playlist(&url, 10).await.unwrap();
    assert_eq!(both.len(), 2);
    // Not a playlist: the single, resolved track.
    let single = url::Url::parse(&srv.url("/tone.wav")).unwrap();
    let (title, tracks) = y.resolve_playlist(&single, 10).await.unwrap();
    assert_eq!(title, "tone");
    assert_eq!(tracks.len(), 1);
    assert!(tracks[0].is_resolved());
    assert_idle(&y);
}

#[tokio::test]
async fn private_hosts_are_refused_before_spawning() {
    let srv = serve().await;
    let work = tempfile::tempdir().unwrap();
    let deny = UrlPolicy::default();
    let y = YtDlp::new(config(ytdlp_path(), work.path()), deny.clone());
    let url = srv.url("/tone.wav");
    assert_eq!(
        parse_query(&url, &deny).await,
        Err(ResolveError::PrivateHost)
    );
    // A Query::Url built without parse_query is checked again.
    let q = Query::Url(url::Url::parse(&url).unwrap());
    assert_eq!(y.resolve(&q).await, Err(ResolveError::PrivateHost));
    assert_eq!(
        y.resolve_playlist(&url::Url::parse(&url).unwrap(), 5).await,
        Err(ResolveError::PrivateHost)
    );
    assert_eq!(
        y.download(&url, &work.path().join("x.wav"), None).await,
        Err(ResolveError::PrivateHost)
    );
    assert_eq!(y.stats().spawned.load(Ordering::SeqCst), 0);
}

/// Option-looking text, each payload one that really acts when yt-dlp reads it as an
/// option: `--exec=pre_process:…` runs a command for every extracted entry (even with
/// `-j`), and `-a FILE` reads more URLs from a file that exists (here pointing at
/// `/batch-hit.wav` on the test server, so a fired payload shows as a request).
fn injection_payloads(marker: &Path, batch: &Path) -> Vec<String> {
    vec![
        format!("--exec=pre_process:touch {}", marker.display()),
        format!("-a{}", batch.display()),
        format!("--batch-file={}", batch.display()),
    ]
}

#[tokio::test]
async fn option_injection_payloads_fire_when_given_as_options() {
    // The control for the test below: with the bot's own arguments for a real URL, each
    // payload placed among the options (before `--`) does act. If yt-dlp stopped honouring
    // one of them, the guard test would prove nothing, and this one says so.
    let srv = serve().await;
    let work = tempfile::tempdir().unwrap();
    let batch = work.path().join("batch.txt");
    std::fs::write(&batch, format!("{}\n", srv.url("/batch-hit.wav"))).unwrap();
    let y = YtDlp::new(config(ytdlp_path(), work.path()), ALLOW);
    let q = Query::Url(url::Url::parse(&srv.url("/tone.wav")).unwrap());
    for (i, payload) in injection_payloads(&work.path().join("fired"), &batch)
        .into_iter()
        .enumerate()
    {
        let marker = work.path().join("fired");
        let _ = std::fs::remove_file(&marker);
        srv.hits.lock().unwrap().clear();
        let mut args = y.build_args(&q);
        let dashdash = args.iter().position(|a| a == "--").unwrap();
        args.insert(dashdash, payload.clone().into());
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(ytdlp_path())
                .args(&args)
                .current_dir(work.path())
                .output(),
        )
        .await
        .expect("yt-dlp finishes")
        .unwrap();
        let fired = if i == 0 {
            marker.exists()
        } else {
            srv.requested("/batch-hit.wav")
        };
        assert!(
            fired,
            "{payload:?} did not act as an option: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn option_injection_does_not_execute() {
    let srv = serve().await;
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().join("pwned");
    let batch = work.path().join("batch.txt");
    std::fs::write(&batch, format!("{}\n", srv.url("/batch-hit.wav"))).unwrap();
    let mut cfg = config(ytdlp_path(), work.path());
    cfg.timeout = Duration::from_secs(40);
    let y = YtDlp::new(cfg, ALLOW);
    for text in injection_payloads(&marker, &batch) {
        let q = parse_query(&text, &ALLOW).await.unwrap();
        assert_eq!(q, Query::Search(text.clone()));
        let args = y.build_args(&q);
        assert_eq!(args[args.len() - 2], "--");
        assert_eq!(
            args.last().unwrap().to_string_lossy(),
            format!("ytsearch1:{text}")
        );
        // Offline this is a failed search; online it may even find something. Either way
        // it must come back as a value (no panic) and must not act as an option.
        let r = y.resolve(&q).await;
        eprintln!("{text:?} -> {r:?}");
        assert!(!marker.exists(), "{text:?} ran the command");
        assert!(
            !srv.requested("/batch-hit.wav"),
            "{text:?} read the batch file"
        );
    }
    assert_idle(&y);
}

#[tokio::test]
async fn download_writes_the_file_atomically() {
    let srv = serve().await;
    let work = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let y = YtDlp::new(config(ytdlp_path(), work.path()), ALLOW);
    let dest = cache.path().join("sub dir").join("generic 100% tone.wav");
    let n = y
        .download(&srv.url("/tone.wav"), &dest, None)
        .await
        .unwrap();
    assert_eq!(n, srv.wav.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), *srv.wav);
    let names: Vec<String> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["generic 100% tone.wav".to_owned()],
        "no partial files"
    );
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "work dir left {leftovers:?}");
    // A failed download leaves nothing behind either.
    let dest2 = cache.path().join("missing.wav");
    assert_eq!(
        y.download(&srv.url("/missing.wav"), &dest2, None).await,
        Err(ResolveError::NotFound)
    );
    assert!(!dest2.exists());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
    assert_idle(&y);
}

#[tokio::test]
async fn version_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let y = YtDlp::new(config(ytdlp_path(), work.path()), ALLOW);
    let v = y.version().await.unwrap();
    assert!(v.starts_with(|c: char| c.is_ascii_digit()), "{v}");
    assert!(!v.contains('\n'));
}

// ---------- process hygiene with fake executables ----------

#[tokio::test]
async fn missing_executable() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("no-such-yt-dlp");
    let y = YtDlp::new(config(path.clone(), work.path()), ALLOW);
    let err = y.resolve(&Query::Search("x".into())).await.unwrap_err();
    assert_eq!(err, ResolveError::Missing(path.display().to_string()));
    assert!(err.to_string().contains("yt-dlp is not installed"));
    assert!(!err.is_user_error());
    assert_eq!(
        y.version().await,
        Err(ResolveError::Missing(path.display().to_string()))
    );
    assert_idle(&y);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let (script, me, child) = sleeping_script(dir.path());
    let mut cfg = config(script, &dir.path().join("work"));
    cfg.timeout = Duration::from_secs(1);
    let y = YtDlp::new(cfg, ALLOW);
    let start = Instant::now();
    let r = y.resolve(&Query::Search("anything".into())).await;
    let took = start.elapsed();
    assert_eq!(r, Err(ResolveError::TimedOut(Duration::from_secs(1))));
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
        "took {took:?}"
    );
    let me = read_pid(&me).expect("script wrote its pid");
    let child = read_pid(&child).expect("script wrote its child's pid");
    assert!(
        wait_gone(me, Duration::from_secs(2)).await,
        "script {me} survived"
    );
    assert!(
        wait_gone(child, Duration::from_secs(2)).await,
        "grandchild {child} survived"
    );
    let stats = y.stats();
    assert_eq!(stats.timed_out.load(Ordering::SeqCst), 1);
    assert_eq!(stats.spawned.load(Ordering::SeqCst), 1);
    assert_idle(&y);
}

#[tokio::test]
async fn lookups_past_the_global_cap_wait_then_are_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (script, _, _) = sleeping_script(dir.path());
    let mut cfg = config(script, &dir.path().join("work"));
    cfg.timeout = Duration::from_secs(30);
    let lookups = Arc::new(Lookups::new(1, 4, Duration::from_secs(1)));
    let y = YtDlp::with_lookups(cfg, ALLOW, lookups);
    let spawned = || y.stats().spawned.load(Ordering::SeqCst);
    // One lookup hangs in the only slot.
    let first = {
        let y = y.clone();
        tokio::spawn(async move { y.resolve(&Query::Search("hangs".into())).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while spawned() == 0 {
        assert!(Instant::now() < deadline, "the first lookup never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A playlist lookup waits its turn for the wait (1 s), then is told the bot is busy,
    // without starting a process.
    let started = Instant::now();
    let list = url::Url::parse("http://127.0.0.1:9/playlist").unwrap();
    assert_eq!(y.resolve_playlist(&list, 5).await, Err(ResolveError::Busy));
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(spawned(), 1);
    // The hanging lookup is cancelled: its slot comes back and the next one runs.
    first.abort();
    let _ = first.await;
    let next = {
        let y = y.clone();
        tokio::spawn(async move { y.resolve(&Query::Search("next".into())).await })
    };
    while spawned() < 2 {
        assert!(Instant::now() < deadline, "the slot was not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    next.abort();
    let _ = next.await;
    assert_idle(&y);
}

#[tokio::test]
async fn dropping_the_future_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let (script, me_file, child_file) = sleeping_script(dir.path());
    let mut cfg = config(script, &dir.path().join("work"));
    cfg.timeout = Duration::from_secs(30);
    let y = YtDlp::new(cfg, ALLOW);
    let q = Query::Search("anything".into());
    let mut fut = Box::pin(y.resolve(&q));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (me, child) = loop {
        tokio::select! {
            r = &mut fut => panic!("resolve finished early: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(25)) => {}
        }
        if let (Some(a), Some(b)) = (read_pid(&me_file), read_pid(&child_file)) {
            break (a, b);
        }
        assert!(Instant::now() < deadline, "the fake yt-dlp never started");
    };
    assert_eq!(y.stats().running.load(Ordering::SeqCst), 1);
    assert!(!is_gone(me) && !is_gone(child));
    drop(fut);
    assert_idle(&y);
    assert!(
        wait_gone(me, Duration::from_secs(2)).await,
        "script {me} survived"
    );
    assert!(
        wait_gone(child, Duration::from_secs(2)).await,
        "grandchild {child} survived"
    );
    assert_eq!(y.stats().timed_out.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn argv_and_output_checks_with_a_fake_ytdlp() {
    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("args");
    let script = dir.path().join("fake");
    // Records its argv (one per line) and its cwd, then prints a JSON whose stream URL
    // is chosen by the query.
    write_script(
        &script,
        &format!(
            r#"#!/bin/sh
for a in "$@"; do printf '%s\n' "$a"; done > '{args}'
pwd > '{args}.cwd'
for last in "$@"; do :; done
case "$last" in
  *file-stream*) echo '{{"url":"file:///etc/passwd","title":"x","id":"1","extractor_key":"Generic"}}' ;;
  *private-stream*) echo '{{"url":"http://192.168.0.10/a.mp3","title":"x","id":"1","ext":"mp3"}}' ;;
  *blocked*) echo "ERROR: [youtube] abc: Sign in to confirm you’re not a bot. Use --cookies-from-browser or --cookies for the authentication." >&2; exit 1 ;;
  *crash*) echo 'Traceback (most recent call last):' >&2; echo '  File "/home/someone/.venv/lib/yt_dlp/x.py", line 1' >&2; echo 'KeyError: secret' >&2; exit 1 ;;
  *) echo '{{"url":"http://8.8.8.8/ok.mp3","webpage_url":"http://8.8.8.8/page","title":"Fine","id":"f1","extractor_key":"Generic","ext":"mp3","acodec":"mp3","duration":12.5}}' ;;
esac
"#,
            args = args_file.display()
        ),
    );
    let work = dir.path().join("work dir");
    let mut cfg = config(script, &work);
    cfg.proxy = Some("http://proxy.invalid:3128".into());
    let deny = UrlPolicy::default();
    let y = YtDlp::new(cfg, deny.clone());

    let q = Query::Url(url::Url::parse("http://8.8.8.8/-a/etc/passwd?x=--exec").unwrap());
    let t = y.resolve(&q).await.unwrap();
    assert_eq!(t.title, "Fine");
    assert_eq!(t.page_url, "http://8.8.8.8/page");
    assert_eq!(t.duration, Some(Duration::from_secs_f64(12.5)));
    let argv: Vec<String> = std::fs::read_to_string(&args_file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = y
        .build_args(&q)
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(argv, expected);
    assert_eq!(
        argv.last().unwrap(),
        "http://8.8.8.8/-a/etc/passwd?x=--exec"
    );
    assert_eq!(argv[argv.len() - 2], "--");
    assert_eq!(argv[0], "--ignore-config");
    assert!(argv
        .windows(2)
        .any(|w| w[0] == "--proxy" && w[1] == "http://proxy.invalid:3128"));
    let cwd = std::fs::read_to_string(format!("{}.cwd", args_file.display())).unwrap();
    assert_eq!(
        Path::new(cwd.trim()).canonicalize().unwrap(),
        work.canonicalize().unwrap(),
        "runs in work_dir (created on demand)"
    );

    let search = |s: &str| Query::Search(s.to_owned());
    assert_eq!(
        y.resolve(&search("file-stream")).await,
        Err(ResolveError::Unsupported)
    );
    assert_eq!(
        y.resolve(&search("private-stream")).await,
        Err(ResolveError::PrivateHost)
    );
    assert_eq!(
        y.resolve(&search("blocked")).await,
        Err(ResolveError::Blocked)
    );
    match y.resolve(&search("crash")).await {
        Err(ResolveError::Failed(reason)) => {
            assert_eq!(reason, "KeyError: secret");
        }
        other => panic!("unexpected {other:?}"),
    }
    let stats = y.stats();
    assert_eq!(stats.spawned.load(Ordering::SeqCst), 5);
    assert_eq!(stats.failed.load(Ordering::SeqCst), 4);
    assert_idle(&y);
}

#[tokio::test]
async fn cookies_are_copied_per_call_and_never_modified() {
    let dir = tempfile::tempdir().unwrap();
    let cookies = dir.path().join("cookies.txt");
    std::fs::write(&cookies, "# Netscape HTTP Cookie File\n").unwrap();
    let script = dir.path().join("fake");
    let seen = dir.path().join("seen");
    // Finds the --cookies argument, records it, and scribbles on it like yt-dlp does.
    write_script(
        &script,
        &format!(
            r#"#!/bin/sh
while [ $# -gt 0 ]; do
  if [ "$1" = "--cookies" ]; then echo "$2" > '{seen}'; echo "rewritten" > "$2"; fi
  shift
done
echo '{{"url":"http://8.8.8.8/ok.mp3","title":"Fine","id":"f1","ext":"mp3"}}'
"#,
            seen = seen.display()
        ),
    );
    let work = dir.path().join("work");
    let mut cfg = config(script, &work);
    cfg.cookies = Some(cookies.clone());
    let y = YtDlp::new(cfg, UrlPolicy::default());
    // build_args (pure) shows the configured file…
    let a = y.build_args(&Query::Search("x".into()));
    assert!(a
        .windows(2)
        .any(|w| w[0] == "--cookies" && Path::new(&w[1]) == cookies));
    // …but the process gets a private copy, removed afterwards.
    y.resolve(&Query::Search("x".into())).await.unwrap();
    let used = PathBuf::from(std::fs::read_to_string(&seen).unwrap().trim());
    assert_ne!(used, cookies);
    assert!(used.starts_with(&work));
    assert!(!used.exists());
    assert_eq!(
        std::fs::read_to_string(&cookies).unwrap(),
        "# Netscape HTTP Cookie File\n"
    );
}

#[tokio::test]
async fn no_secret_of_the_bot_reaches_yt_dlp() {
    // What an operator puts in `.env` or the unit ends up in the bot's environment.
    std::env::set_var("DISCORD_TOKEN", "the-bot-token-must-stay-home");
    std::env::set_var("ENCORE_DISCORD__DEV_GUILD", "123");
    std::env::set_var("HTTPS_PROXY", "http://127.0.0.1:3128");
    std::env::set_var("NO_PROXY", "*");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fake");
    let seen = dir.path().join("env");
    // Records its whole environment, as any code yt-dlp runs (a plugin, deno) could.
    write_script(
        &script,
        &format!(
            "#!/bin/sh\nenv > '{}'\necho '{{\"url\":\"http://8.8.8.8/ok.mp3\",\"title\":\"Fine\",\"id\":\"f1\",\"ext\":\"mp3\"}}'\n",
            seen.display()
        ),
    );
    let y = YtDlp::new(
        config(script, &dir.path().join("work")),
        UrlPolicy::default(),
    );
    y.resolve(&Query::Search("x".into())).await.unwrap();
    let env = std::fs::read_to_string(&seen).unwrap();
    assert!(!env.contains("the-bot-token-must-stay-home"), "{env}");
    assert!(!env.contains("ENCORE_"), "{env}");
    assert!(!env.contains("DISCORD_"), "{env}");
    // What it needs to run is still there; proxy variables are not: yt-dlp goes out
    // through the bot's egress proxy (`--proxy`), and `NO_PROXY=*` must not let it around.
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    assert!(!env.contains("HTTPS_PROXY"), "{env}");
    assert!(!env.contains("NO_PROXY"), "{env}");
}

/// The children of this process whose command line mentions `needle`, with their
/// environments (`/proc/PID/environ`).
fn children_environ(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .unwrap_or("");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid != me || !String::from_utf8_lossy(&cmdline).contains(needle) {
            continue;
        }
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            found.push((pid, String::from_utf8_lossy(&env).replace('\0', "\n")));
        }
    }
    found
}

#[tokio::test]
async fn the_real_yt_dlp_runs_without_the_bots_secrets() {
    std::env::set_var("DISCORD_TOKEN", "the-bot-token-must-stay-home");
    std::env::set_var("ENCORE_DATABASE", "sqlite:/must/not/leak.db");
    // A media server that accepts and never answers keeps the real yt-dlp running while
    // its environment is read from /proc.
    let hang = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow.wav", hang.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut socks = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            socks.push(s);
        }
    });
    let work = tempfile::tempdir().unwrap();
    let y = YtDlp::new(config(ytdlp_path(), work.path()), ALLOW);
    let lookup = {
        let y = y.clone();
        tokio::spawn(async move { y.resolve(&Query::Url(url::Url::parse(&url).unwrap())).await })
    };
    let marker = work.path().to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let env = loop {
        // yt-dlp is identified by its working directory being this test's own, which
        // tells it from the other tests' children.
        let mine: Vec<_> = children_environ("yt-dlp")
            .into_iter()
            .filter(|(pid, _)| {
                std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .map(|p| p.to_string_lossy() == marker)
                    .unwrap_or(false)
            })
            .collect();
        if let Some((_, env)) = mine.into_iter().next() {
            if env.contains("PATH=") {
                break env;
            }
        }
        assert!(Instant::now() < deadline, "yt-dlp never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    lookup.abort();
    held.abort();
    assert!(!env.contains("the-bot-token-must-stay-home"), "{env}");
    assert!(!env.contains("/must/not/leak.db"), "{env}");
    assert!(
        !env.lines()
            .any(|l| l.starts_with("ENCORE_") || l.starts_with("DISCORD_")),
        "{env}"
    );
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
}
