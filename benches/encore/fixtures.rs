//! Test media served on 127.0.0.1 and an audio cache filled before any bot starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use encore::cache::{
    CacheOutcome, CacheSettings, DownloadOutcome, Playable, PrefetchStatus, Resolver,
};
use encore::config::Config;
use encore::sources::parse_query;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{write_tone_ffmpeg, FileServer};

/// Bytes per 20 ms frame of the cached tracks: 160 kb/s CBR Opus, what YouTube's best audio
/// format (251) averages. Frames of exactly this size at the emulator prove passthrough
/// (songbird re-encodes at 128 kb/s VBR).
pub const FRAME_BYTES: usize = 400;

/// A WebM/Opus sine of `secs`, 160 kb/s CBR, 20 ms frames (ffmpeg).
pub fn write_webm(path: &Path, freq: f32, secs: f32) {
    write_tone_ffmpeg(
        path,
        freq,
        secs,
        &[
            "-c:a",
            "libopus",
            "-b:a",
            "160k",
            "-vbr",
            "off",
            "-frame_duration",
            "20",
            "-f",
            "webm",
        ],
    );
}

pub struct Media {
    pub server: FileServer,
    pub dir: PathBuf,
    /// URLs of the tracks that are in the audio cache.
    pub cached: Vec<String>,
    /// A short file copied (hard-linked) under fresh names for cache misses.
    miss_source: PathBuf,
    next_miss: std::sync::atomic::AtomicUsize,
}

impl Media {
    /// `tracks` long tracks (long enough to outlast a measurement) and a short miss source.
    pub async fn create(dir: &Path, tracks: usize, secs: f32) -> Media {
        std::fs::create_dir_all(dir).unwrap();
        let handles: Vec<_> = (0..tracks)
            .map(|k| {
                let path = dir.join(format!("track-{k}.webm"));
                std::thread::spawn(move || write_webm(&path, 220.0 + 110.0 * k as f32, secs))
            })
            .collect();
        let miss_source = dir.join("miss-source.webm");
        write_webm(&miss_source, 660.0, 20.0);
        for h in handles {
            h.join().expect("ffmpeg");
        }
        let server = FileServer::start(dir).await;
        let cached = (0..tracks)
            .map(|k| server.url(&format!("track-{k}.webm")))
            .collect();
        Media {
            server,
            dir: dir.to_path_buf(),
            cached,
            miss_source,
            next_miss: Default::default(),
        }
    }

    /// A URL no cache has seen: a new name for the short file (its own yt-dlp id too).
    pub fn fresh_miss_url(&self) -> String {
        let k = self
            .next_miss
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("miss-{k}-{}.webm", std::process::id());
        let path = self.dir.join(&name);
        if std::fs::hard_link(&self.miss_source, &path).is_err() {
            std::fs::copy(&self.miss_source, &path).unwrap();
        }
        self.server.url(&name)
    }
}

/// The config the bots get (what matters here: data dir, yt-dlp, private hosts allowed, no
/// length limit: the tones are plain files whose length yt-dlp cannot tell, refused as
/// "no known length" under one; and no per-member lookup cap: one synthetic member plays
/// for every call).
pub fn config(data_dir: &Path, ytdlp: &Path) -> Config {
    let mut c = Config::default();
    c.data.dir = data_dir.to_path_buf();
    c.ytdlp.path = ytdlp.to_path_buf();
    c.ytdlp.allow_private_hosts = true;
    c.ytdlp.max_duration = std::time::Duration::ZERO;
    c.limits.max_lookups_per_member = 100_000;
    c
}

/// Resolves and downloads `urls` into the cache of `data_dir` with the bot's own code
/// (`Resolver`, the same yt-dlp calls), so the bots started later find them as cache hits
/// with an audio file. Returns the time it took.
pub async fn fill_audio_cache(config: &Config, urls: &[String]) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let stores = encore::db::Stores::open(&config.data).await?;
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    let resolver = Resolver::new(
        &stores,
        encore::app::ytdlp(config),
        CacheSettings::from_config(config),
        tasks.clone(),
        cancel.clone(),
    );
    let policy = encore::app::policy(config);
    let mut jobs = Vec::new();
    for url in urls {
        let q = parse_query(url, &policy).await?;
        let r = resolver.resolve(&q).await?;
        match resolver.prefetch(&r.track) {
            PrefetchStatus::Started(h) => jobs.push((url.clone(), h)),
            PrefetchStatus::InProgress => {}
            other => anyhow::bail!("{url} cannot be cached: {other:?}"),
        }
    }
    for (url, h) in jobs {
        let out = tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .map_err(|_| anyhow::anyhow!("download of {url} took over 2 minutes"))??;
        anyhow::ensure!(
            matches!(
                out,
                DownloadOutcome::Stored { .. } | DownloadOutcome::AlreadyCached
            ),
            "download of {url}: {out:?}"
        );
    }
    // Every track must now be a hit with a file.
    for url in urls {
        let q = parse_query(url, &policy).await?;
        let r = resolver.resolve(&q).await?;
        let playable = resolver.playable(&r.track).await?;
        anyhow::ensure!(
            r.cache == CacheOutcome::Hit && matches!(playable, Playable::File(_)),
            "{url} is not a cached file after the download: {:?} {:?}",
            r.cache,
            playable
        );
    }
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    stores.close().await;
    Ok(t0.elapsed())
}
