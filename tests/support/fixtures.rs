//! Audio fixture files and a static HTTP file server.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

use super::http::{HttpRequest, HttpResponse};
use super::media_faults::{self, Fault, Faults};

fn write_wav(path: &Path, samples: impl Iterator<Item = f32>) {
    write_stereo_wav(path, samples.map(|s| (s, s)));
}

/// 48 kHz stereo 16-bit PCM WAV of (left, right) samples.
pub fn write_stereo_wav(path: &Path, samples: impl Iterator<Item = (f32, f32)>) {
    let mut data = Vec::new();
    for (l, r) in samples {
        for s in [l, r] {
            let v = (s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16;
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let (channels, rate, bits) = (2u16, 48_000u32, 16u16);
    let block_align = channels * bits / 8;
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * block_align as u32).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn sine(freq: f32, amplitude: f32, n: usize, offset: usize) -> impl Iterator<Item = f32> {
    (0..n).map(move |i| {
        let t = (offset + i) as f32 / 48_000.0;
        (2.0 * std::f32::consts::PI * freq * t).sin() * amplitude
    })
}

/// 48 kHz stereo 16-bit PCM WAV of a sine.
pub fn write_tone_wav(path: &Path, freq_hz: f32, secs: f32, amplitude: f32) {
    let n = (secs * 48_000.0) as usize;
    write_wav(path, sine(freq_hz, amplitude, n, 0));
}

/// `secs_each` of `f1` followed by `secs_each` of `f2` (amplitude 0.5), 48 kHz stereo 16-bit WAV.
pub fn write_two_tone_wav(path: &Path, f1: f32, f2: f32, secs_each: f32) {
    write_tone_pair_wav(path, (f1, secs_each), (f2, secs_each));
}

/// `first.1` seconds of `first.0` Hz, then `second.1` seconds of `second.0` Hz (amplitude
/// 0.5), 48 kHz stereo 16-bit WAV.
pub fn write_tone_pair_wav(path: &Path, first: (f32, f32), second: (f32, f32)) {
    let n1 = (first.1 * 48_000.0) as usize;
    let n2 = (second.1 * 48_000.0) as usize;
    write_wav(
        path,
        sine(first.0, 0.5, n1, 0).chain(sine(second.0, 0.5, n2, n1)),
    );
}

/// Runs ffmpeg to render a sine with the given output arguments.
pub fn write_tone_ffmpeg(path: &Path, freq_hz: f32, secs: f32, codec_args: &[&str]) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let src = format!("sine=frequency={freq_hz}:sample_rate=48000:duration={secs}");
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        &src,
        "-ac",
        "2",
    ])
    .args(codec_args)
    .arg(path);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("ffmpeg not found: install ffmpeg (apt-get install ffmpeg)")
        }
        Err(e) => panic!("running ffmpeg failed: {e}"),
    };
    assert!(
        out.status.success(),
        "ffmpeg failed for {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// WebM/Opus sine via `ffmpeg -f lavfi -i sine=... -ac 2 -c:a libopus -b:a 96k`.
pub fn write_tone_webm(path: &Path, freq_hz: f32, secs: f32) {
    write_tone_ffmpeg(
        path,
        freq_hz,
        secs,
        &["-c:a", "libopus", "-b:a", "96k", "-f", "webm"],
    );
}

/// Ogg/Opus sine.
pub fn write_tone_ogg(path: &Path, freq_hz: f32, secs: f32) {
    write_tone_ffmpeg(
        path,
        freq_hz,
        secs,
        &["-c:a", "libopus", "-b:a", "96k", "-f", "ogg"],
    );
}

/// MP3 sine (needs ffmpeg built with libmp3lame).
pub fn write_tone_mp3(path: &Path, freq_hz: f32, secs: f32) {
    write_tone_ffmpeg(
        path,
        freq_hz,
        secs,
        &["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"],
    );
}

pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "wav" => "audio/wav",
        "webm" => "audio/webm",
        "ogg" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "m4a" | "mp4" => "audio/mp4",
        "flac" => "audio/flac",
        "json" => "application/json",
        "txt" => "text/plain",
        "html" => "text/html",
        _ => "application/octet-stream",
    }
}

/// One request the [`FileServer`] answered.
#[derive(Clone, Debug)]
pub struct FileRequest {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

/// Static HTTP server for a directory on 127.0.0.1: GET and HEAD, Content-Length, Range
/// (`bytes=N-`, `bytes=N-M`, `bytes=-N` → 206; unsatisfiable → 416), Content-Type by extension,
/// 404 for missing files; a file may be served with a fault ([`FileServer::fault`]).
#[derive(Clone)]
pub struct FileServer {
    addr: std::net::SocketAddr,
    count: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<FileRequest>>>,
    faults: Arc<Faults>,
    task: Arc<AbortOnDrop>,
}

/// Aborts the server task when the last handle goes.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FileServer {
    pub async fn start(dir: &Path) -> FileServer {
        Self::start_on("127.0.0.1", dir).await
    }

    /// [`start`](Self::start) on another loopback address (`127.0.0.2` is the egress
    /// tests' "private network").
    pub async fn start_on(ip: &str, dir: &Path) -> FileServer {
        let listener = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("bind file server on {ip}: {e}"));
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let dir: PathBuf = dir.to_path_buf();
        let (c2, l2) = (count.clone(), log.clone());
        let handler = Arc::new(move |req: HttpRequest| {
            c2.fetch_add(1, Ordering::SeqCst);
            let resp = serve_file(&dir, &req);
            l2.lock().unwrap().push(FileRequest {
                method: req.method.clone(),
                path: req.path.clone(),
                range: req.header("range").map(String::from),
                status: resp.status,
            });
            resp
        });
        let faults = Arc::new(Faults::default());
        let task = tokio::spawn(media_faults::serve(listener, handler, faults.clone()));
        FileServer {
            addr,
            count,
            log,
            faults,
            task: Arc::new(AbortOnDrop(task)),
        }
    }

    /// `http://127.0.0.1:PORT/name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{}", self.addr, name.trim_start_matches('/'))
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Number of requests served so far.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Every request served so far.
    pub fn request_log(&self) -> Vec<FileRequest> {
        self.log.lock().unwrap().clone()
    }

    /// Serves `name` with `fault` from now on (see `media_faults.rs`).
    pub fn fault(&self, name: &str, fault: Fault) {
        self.faults.set(name, fault);
    }

    /// Serves `name` without byte ranges (`Range` ignored, no `Accept-Ranges`).
    pub fn no_ranges(&self, name: &str) {
        self.faults.no_ranges(name);
    }

    /// Stalled connections the client has not closed yet.
    pub fn stalled_open(&self) -> usize {
        self.faults.stalled_open()
    }

    /// Answers a fault cut short so far.
    pub fn faults_met(&self) -> usize {
        self.faults.cut()
    }
}

pub fn serve_file(dir: &Path, req: &HttpRequest) -> HttpResponse {
    if req.method != "GET" && req.method != "HEAD" {
        return HttpResponse::new(405).header("Allow", "GET, HEAD");
    }
    let rel = req.path.trim_start_matches('/');
    if rel.split('/').any(|s| s == "..") {
        return HttpResponse::new(404);
    }
    let path = dir.join(rel);
    let Ok(data) = std::fs::read(&path) else {
        let mut r = HttpResponse::new(404).header("Content-Type", "text/plain");
        r.body = b"not found".to_vec();
        r.head_only = req.method == "HEAD";
        return r;
    };
    let len = data.len() as u64;
    let ctype = content_type(rel);
    let mut resp = match req.header("range").map(str::trim) {
        Some(range) => match parse_range(range, len) {
            Some((start, end)) => {
                let mut r = HttpResponse::new(206)
                    .header("Content-Range", format!("bytes {start}-{end}/{len}"));
                r.body = data[start as usize..=end as usize].to_vec();
                r
            }
            None => {
                return HttpResponse::new(416).header("Content-Range", format!("bytes */{len}"));
            }
        },
        None => {
            let mut r = HttpResponse::new(200);
            r.body = data;
            r
        }
    };
    let body_len = resp.body.len().to_string();
    resp = resp
        .header("Content-Type", ctype)
        .header("Accept-Ranges", "bytes")
        .header("Content-Length", body_len);
    resp.head_only = req.method == "HEAD";
    resp
}

/// Parses a single `bytes=` range into an inclusive (start, end) within `len`.
pub fn parse_range(range: &str, len: u64) -> Option<(u64, u64)> {
    let spec = range.strip_prefix("bytes=")?.split(',').next()?.trim();
    let (a, b) = spec.split_once('-')?;
    if len == 0 {
        return None;
    }
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        return Some((len.saturating_sub(n), len - 1));
    }
    let start: u64 = a.parse().ok()?;
    if start >= len {
        return None;
    }
    let end = if b.is_empty() {
        len - 1
    } else {
        b.parse::<u64>().ok()?.min(len - 1)
    };
    (end >= start).then_some((start, end))
}

/// The size of every packet of the file's first audio stream, read by ffprobe: a run of
/// received Opus sizes found among them shows the frames were passed through, not re-encoded.
pub fn packet_sizes(path: &Path) -> Vec<usize> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "packet=size",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (installed with ffmpeg)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}
