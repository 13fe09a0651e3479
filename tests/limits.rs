//! Limits against exhaustion, end to end (the real bot against the emulator, the real
//! yt-dlp): a stream with no end is refused, a download past the size cap is stopped and
//! leaves nothing on disk, one member's flood of `/play` is capped without the bot's memory
//! growing with it, and `/settings` cannot lift the operator's limits.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::world::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The most one served connection lives: every server loop here is bounded by it.
const CONN_LIFE: Duration = Duration::from_secs(60);

/// A loopback server whose every GET answers `audio/wav` without a `Content-Length`:
/// `total` bytes (`None`: never ending) in 64 KiB chunks, one every `every`.
struct Streamer {
    url: String,
    /// Connections that got the whole body.
    completed: Arc<AtomicUsize>,
    /// Bytes sent, over all connections.
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn wav_header(data_len: u32) -> Vec<u8> {
    let rate = 48_000u32;
    let mut v = Vec::with_capacity(44);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&2u16.to_le_bytes()); // stereo
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 4).to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v
}

async fn stream_wav(name: &str, total: Option<u64>, every: Duration) -> Streamer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/{name}", listener.local_addr().unwrap());
    let completed = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let (c, s) = (completed.clone(), sent.clone());
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let (c, s) = (c.clone(), s.clone());
            tokio::spawn(tokio::time::timeout(
                CONN_LIFE,
                serve_one(conn, total, every, c, s),
            ));
        }
    });
    Streamer {
        url,
        completed,
        sent,
        task,
    }
}

async fn serve_one(
    mut conn: TcpStream,
    total: Option<u64>,
    every: Duration,
    completed: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
) {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
        if req.len() > 64 * 1024 {
            return;
        }
    }
    let head = "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nConnection: close\r\n\r\n";
    if conn.write_all(head.as_bytes()).await.is_err() || req.starts_with(b"HEAD") {
        return;
    }
    let data_len = total.map_or(u32::MAX, |t| (t - 44).min(u32::MAX as u64) as u32);
    let mut header = Some(wav_header(data_len));
    // Silence, in data bytes after the header.
    let mut left = total.map_or(u64::MAX, |t| t - 44);
    while left > 0 {
        let n = left.min(64 * 1024);
        let mut out = header.take().unwrap_or_default();
        out.resize(out.len() + n as usize, 0);
        if conn.write_all(&out).await.is_err() {
            return;
        }
        sent.fetch_add(out.len() as u64, Ordering::SeqCst);
        left -= n;
        tokio::time::sleep(every).await;
    }
    completed.fetch_add(1, Ordering::SeqCst);
}

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_no_end_is_refused_under_a_length_limit() {
    let w = World::start_with(|c| c.ytdlp.max_duration = Duration::from_secs(3 * 3600)).await;
    let radio = stream_wav("radio.wav", None, Duration::from_millis(20)).await;
    let r = w.play(ANN, &radio.url).await;
    assert!(r.ephemeral, "{r:?}");
    assert!(r.text().contains("no known length"), "{}", r.text());
    assert!(r.text().contains("3:00:00"), "says the limit: {}", r.text());
    assert!(w.emu.voice_state_updates(GUILD).is_empty(), "no join");
    let files = w.bot.resolver.settings().dir().to_path_buf();
    assert!(files_in(&files).is_empty(), "nothing of it was cached");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_past_the_size_cap_is_stopped_and_leaves_no_file() {
    // No length limit (so the stream is accepted) and a 1 MiB cap on one download; the
    // server sends 16 MiB without a Content-Length, at 6.4 MB/s.
    let w = World::start_with(|c| c.cache.max_file_size = 1 << 20).await;
    let big = stream_wav("big.wav", Some(16 << 20), Duration::from_millis(10)).await;
    let r = w.play(ANN, &big.url).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    // The play starts a background download of the track into the cache.
    let deadline = Instant::now() + T;
    let counters = loop {
        let c = w.bot.resolver.stats().await.counters;
        if c.downloads + c.download_failures > 0 {
            break c;
        }
        assert!(Instant::now() < deadline, "the download never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (counters.downloads, counters.download_failures),
        (0, 1),
        "the download failed"
    );
    let dir = w.bot.resolver.settings().dir().to_path_buf();
    until("the download's files to be gone", || {
        files_in(&dir).is_empty()
    })
    .await;
    assert_eq!(
        big.completed.load(Ordering::SeqCst),
        0,
        "no connection read the whole 16 MiB (sent {} bytes)",
        big.sent.load(Ordering::SeqCst)
    );
    let stats = w.bot.resolver.ytdlp().stats();
    until("yt-dlp to be gone", || {
        stats.running.load(Ordering::SeqCst) == 0
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_outlasts_its_length_is_cut_off_and_the_channel_told_why() {
    let w = World::start_with(|c| c.cache.audio = false).await;
    // The track says it lasts 1 s; its server never stops sending (at the pace of a
    // 48 kHz stereo WAV, read as it plays).
    let endless = stream_wav("liar.wav", None, Duration::from_millis(300)).await;
    let mut liar = (*w.tone("liar", 440.0, 1.0)).clone();
    liar.stream_url = endless.url.clone();
    liar.page_url = endless.url.clone();
    let ann = encore::player::Requester {
        id: ANN,
        name: "ann".into(),
    };
    w.enqueue(ann, vec![Arc::new(liar)]).await;
    let deadline = Instant::now() + T;
    let told = loop {
        let found = w
            .emu
            .messages(TEXT)
            .into_iter()
            .map(|m| m.text())
            .find(|t| t.contains("liar") && t.contains("stopped after"));
        if let Some(t) = found {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no notice; sent {} bytes",
            endless.sent.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(told.contains("Couldn't play"), "{told}");
    // 1 s of length may take (1 + 1) s × 200 KiB + 1 MiB: the stream was cut near there.
    let sent = endless.sent.load(Ordering::SeqCst);
    assert!(sent < 8 << 20, "read {sent} bytes of an endless stream");
    w.stop().await;
}

/// `VmRSS` of a process, in bytes (0 once it is gone).
fn rss(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_flooding_play_is_capped_and_memory_stays_bounded() {
    // A server that accepts and never answers: every lookup (the real yt-dlp) hangs
    // until the bot's lookup timeout, so all of them overlap.
    let hang = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow.wav", hang.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok(Ok((c, _))) = tokio::time::timeout(CONN_LIFE, hang.accept()).await {
            conns.push(c);
        }
    });
    let w = World::start_with(|c| {
        c.ytdlp.timeout = Duration::from_secs(6);
        c.limits.max_lookups = 4;
        c.limits.max_lookups_per_member = 2;
    })
    .await;
    let stats = w.bot.resolver.ytdlp().stats();
    let before = rss("self");

    let done = std::sync::atomic::AtomicBool::new(false);
    let plays = async {
        let replies = futures::future::join_all((0..20).map(|_| w.play(ANN, &url))).await;
        done.store(true, Ordering::SeqCst);
        replies
    };
    let watch = async {
        // The peak of yt-dlp processes alive at once, and of the memory of the bot plus
        // theirs, sampled until every play has its answer.
        let (mut procs, mut peak) = (0usize, 0u64);
        loop {
            let live: Vec<u32> = stats.live.lock().unwrap().keys().copied().collect();
            procs = procs.max(live.len());
            let children: u64 = live.iter().map(|p| rss(&p.to_string())).sum();
            peak = peak.max(rss("self").saturating_sub(before) + children);
            if done.load(Ordering::SeqCst) {
                return (procs, peak);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (replies, (procs, peak)) = tokio::join!(plays, watch);
    held.abort();

    let slow: Vec<_> = replies
        .iter()
        .filter(|r| {
            r.text()
                .contains("Slow down: you already have 2 lookups running")
        })
        .collect();
    assert_eq!(slow.len(), 18, "all but two were told to slow down");
    assert!(slow.iter().all(|r| r.ephemeral));
    assert_eq!(procs, 2, "yt-dlp processes alive at once for one member");
    assert_eq!(stats.spawned.load(Ordering::SeqCst), 2);
    // Two lookups of the real yt-dlp are about 2 × 48 MB; the bot itself grows by a few
    // MB answering 20 commands. Twenty uncapped lookups would be near 1 GB.
    let mib = peak as f64 / (1 << 20) as f64;
    println!("peak growth of the bot plus its yt-dlp processes: {mib:.1} MiB");
    assert!(mib < 150.0, "memory grew by {mib:.1} MiB");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_cannot_lift_the_operators_limits() {
    let w = World::start_with(|c| {
        c.player.max_queue = 50;
        c.ytdlp.max_duration = Duration::from_secs(3600);
    })
    .await;
    let boss = 1_000_000_000_000_398;
    w.emu.add_member(GUILD, boss, "boss", false, true);
    let set = |name: &str, kind: u8, value: serde_json::Value| {
        w.cmd(
            boss,
            "settings",
            json!([{"name": name, "type": kind, "value": value}]),
        )
    };
    let r = set("max_queue", 4, json!(51)).await;
    assert!(r.ephemeral, "{r:?}");
    assert!(r.text().contains("at most 50 tracks"), "{}", r.text());
    let r = set("max_track_duration", 3, json!("2h")).await;
    assert!(
        r.ephemeral && r.text().contains("at most 1h"),
        "{}",
        r.text()
    );
    let r = set("max_track_duration", 3, json!("0")).await;
    assert!(
        r.ephemeral && r.text().contains("at most 1h"),
        "{}",
        r.text()
    );
    // Within the limits, the change is saved.
    let r = set("max_queue", 4, json!(50)).await;
    assert!(r.text().contains("Max queue: **50**"), "{}", r.text());
    let r = set("max_track_duration", 3, json!("20m")).await;
    assert!(
        r.text().contains("Max track length: **20m**"),
        "{}",
        r.text()
    );
    w.stop().await;
}
