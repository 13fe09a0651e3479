//! Downloading a track's audio to a file, for the audio cache.
//!
//! A download never hands yt-dlp a URL that was not checked: the track is resolved first
//! (with the same checks as for playing), and yt-dlp then downloads from that checked info.
//! The file appears at its destination only once complete (a temporary file, renamed), so
//! the cache never serves half a download.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::client::YtDlp;
use super::run::{io_failed, log_stderr, map_failure, TempFile, STDOUT_CAP_SMALL};
use crate::sources::error::ResolveError;
use crate::sources::query::{parse_query, Query};

impl YtDlp {
    /// Downloads the audio of `track_url` (an http(s) page URL) to `dest`, returning its
    /// size in bytes.
    ///
    /// Two steps, so that yt-dlp only ever downloads a URL that was checked:
    /// 1. `resolve` (`-j`): the page URL and the returned stream URL are checked against
    ///    the policy; live streams are refused ([`ResolveError::Live`]); `max_duration`
    ///    applies.
    /// 2. the checked info (with the format list reduced to the selected format) is written
    ///    to a private file in `work_dir` and downloaded with
    ///    `--load-info-json <file> -f FORMAT -o <tmp> --no-part`, where `<tmp>` is a
    ///    hidden, unique file next to `dest`; on success it is renamed to `dest`. On any
    ///    failure or cancellation the temporary files are removed.
    ///
    /// No ffmpeg is needed: the file is the selected format as served (webm/opus for
    /// YouTube). Timeout: `max(6 × timeout, 60 s)`.
    ///
    /// `max_bytes` bounds the file: a size known up front (the info's `filesize`, or the
    /// server's `Content-Length` through `--max-filesize`) is refused before anything is
    /// written, and a stream sent without a length is watched while it is written and
    /// stopped (the process group killed, the partial file removed) once it passes the cap.
    /// Either way the error is [`ResolveError::FileTooLarge`].
    pub async fn download(
        &self,
        track_url: &str,
        dest: &Path,
        max_bytes: Option<u64>,
    ) -> Result<u64, ResolveError> {
        let q = parse_query(track_url, self.policy()).await?;
        if !matches!(q, Query::Url(_)) {
            return Err(ResolveError::InvalidUrl);
        }
        let (track, mut info) = self.resolve_full(&q).await?;
        if track.is_live {
            return Err(ResolveError::Live);
        }
        if let Some(limit) = max_bytes {
            let announced = ["filesize", "filesize_approx"]
                .iter()
                .find_map(|k| info.get(*k).and_then(serde_json::Value::as_f64));
            if announced.is_some_and(|n| n > limit as f64) {
                return Err(ResolveError::FileTooLarge { limit });
            }
        }
        if let Some(obj) = info.as_object_mut() {
            for k in [
                "formats",
                "requested_formats",
                "requested_downloads",
                "_filename",
                "filename",
                "__files_to_move",
                "__postprocessors",
            ] {
                obj.remove(k);
            }
            obj.insert(
                "url".into(),
                serde_json::Value::String(track.stream_url.clone()),
            );
        }

        let dest = std::path::absolute(dest)
            .map_err(|e| ResolveError::Failed(format!("bad destination: {}", e.kind())))?;
        let file_name = dest
            .file_name()
            .ok_or_else(|| ResolveError::Failed("bad destination".into()))?
            .to_string_lossy()
            .into_owned();
        let parent = dest
            .parent()
            .ok_or_else(|| ResolveError::Failed("bad destination".into()))?
            .to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| io_failed("could not create the cache directory", &e))?;
        let tmp_prefix = format!(".{file_name}.{:016x}.encore-dl", rand::random::<u64>());
        let tmp = parent.join(&tmp_prefix);
        let cleanup = PrefixCleanup {
            dir: parent.clone(),
            prefix: tmp_prefix.clone(),
            armed: true,
        };

        self.ensure_work_dir().await?;
        let info_file = TempFile::create(
            &self.inner.cfg.work_dir,
            "info",
            &serde_json::to_vec(&info).expect("a Value serialises"),
        )
        .await
        .map_err(|e| io_failed("could not write a temporary file", &e))?;
        let cookies = self.private_cookies().await?;

        let args = self.download_args(
            cookies.as_ref().map(|c| c.path()),
            &tmp,
            info_file.path(),
            max_bytes,
        );

        let timeout = self
            .inner
            .cfg
            .timeout
            .saturating_mul(6)
            .max(Duration::from_secs(60));
        let run = self.run(&args, timeout, STDOUT_CAP_SMALL);
        let out = match max_bytes {
            None => run.await?,
            Some(limit) => tokio::select! {
                out = run => out?,
                written = grows_past(&parent, &tmp_prefix, limit) => {
                    // `run` is dropped here: its guard kills the whole process group, and
                    // `cleanup` removes what it wrote when this returns.
                    self.inner.stats.failed.fetch_add(1, Ordering::SeqCst);
                    tracing::info!(track = track_url, written, limit, "download passed the size cap; stopped");
                    return Err(ResolveError::FileTooLarge { limit });
                }
            },
        };
        drop(cookies);
        drop(info_file);
        let said = String::from_utf8_lossy(&out.stdout);
        if let Some(limit) = max_bytes.filter(|_| said.contains("larger than max-filesize")) {
            self.inner.stats.failed.fetch_add(1, Ordering::SeqCst);
            tracing::info!(
                track = track_url,
                limit,
                "yt-dlp refused a file over the size cap"
            );
            return Err(ResolveError::FileTooLarge { limit });
        }
        if !out.status.success() {
            self.inner.stats.failed.fetch_add(1, Ordering::SeqCst);
            let err = map_failure(&out);
            log_stderr(&out, &err, track_url);
            return Err(err);
        }
        let meta = match tokio::fs::metadata(&tmp).await {
            Ok(m) if m.is_file() && m.len() > 0 => m,
            _ => {
                self.inner.stats.failed.fetch_add(1, Ordering::SeqCst);
                let err = ResolveError::Failed("the download produced no file".into());
                log_stderr(&out, &err, track_url);
                return Err(err);
            }
        };
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(|e| io_failed("could not move the downloaded file into place", &e))?;
        cleanup.run_now();
        Ok(meta.len())
    }
}

/// How often a download's file is measured against its cap. At loopback speed a file can
/// pass the cap by a few megabytes in this time; it is removed anyway.
const SIZE_CHECK_EVERY: Duration = Duration::from_millis(100);

/// Resolves (with the bytes written) once the files in `dir` whose name starts with `prefix`
/// (a download's temporary file and any fragments) hold more than `limit` bytes together.
/// Never resolves otherwise: race it against the download.
async fn grows_past(dir: &Path, prefix: &str, limit: u64) -> u64 {
    loop {
        tokio::time::sleep(SIZE_CHECK_EVERY).await;
        let mut written = 0;
        if let Ok(mut rd) = tokio::fs::read_dir(dir).await {
            while let Ok(Some(entry)) = rd.next_entry().await {
                if entry.file_name().to_string_lossy().starts_with(prefix) {
                    written += entry.metadata().await.map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        if written > limit {
            return written;
        }
    }
}

/// Removes every file in `dir` whose name starts with `prefix` (a download's temporary
/// file and any fragments) on drop, unless `run_now` already did the work.
struct PrefixCleanup {
    dir: PathBuf,
    prefix: String,
    armed: bool,
}

impl PrefixCleanup {
    fn clean(&self) {
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for entry in rd.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&self.prefix)
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// After a successful rename: remove leftovers (if any) and disarm.
    fn run_now(mut self) {
        self.clean();
        self.armed = false;
    }
}

impl Drop for PrefixCleanup {
    fn drop(&mut self) {
        if self.armed {
            self.clean();
        }
    }
}
