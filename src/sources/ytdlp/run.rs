//! Running yt-dlp and reading how it ended.
//!
//! [`YtDlp::run`] wraps [`process::run`] (own process group, no stdin, capped stdout, the
//! tail of stderr, a whole-call deadline, the group killed on every unclean exit) with what
//! is specific to yt-dlp: a fixed working directory, a private copy of the cookies file per
//! call, the failure counters in [`ProcessStats`](crate::sources::ProcessStats), and the
//! mapping of a failed run's stderr to a [`ResolveError`] that is fit to show users (short,
//! with no host paths).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::client::YtDlp;
use crate::sources::error::ResolveError;
use crate::sources::process::{self, ChildKind, RunError, RunOutput};

/// stdout cap for `-j` (one entry).
pub(super) const STDOUT_CAP_SINGLE: usize = 2 * 1024 * 1024;
/// stdout cap for `-J` (a flat playlist).
pub(super) const STDOUT_CAP_PLAYLIST: usize = 8 * 1024 * 1024;
/// stdout cap for `--version` and downloads (which print nothing with `--quiet`).
pub(super) const STDOUT_CAP_SMALL: usize = 64 * 1024;

/// Longest `Failed` reason shown to users, in characters.
const MAX_REASON_CHARS: usize = 150;

impl YtDlp {
    pub(super) async fn ensure_work_dir(&self) -> Result<(), ResolveError> {
        tokio::fs::create_dir_all(&self.inner.cfg.work_dir)
            .await
            .map_err(|e| io_failed("could not create yt-dlp's working directory", &e))
    }

    /// A per-call copy of the cookies file (yt-dlp writes its cookie jar back on exit, and
    /// concurrent calls must not clobber the operator's file).
    pub(super) async fn private_cookies(&self) -> Result<Option<TempFile>, ResolveError> {
        let Some(src) = &self.inner.cfg.cookies else {
            return Ok(None);
        };
        self.ensure_work_dir().await?;
        let data = tokio::fs::read(src).await.map_err(|e| {
            tracing::warn!(path = %src.display(), error = %e, "cannot read the yt-dlp cookies file");
            ResolveError::Failed("the configured cookies file can't be read".into())
        })?;
        TempFile::create(&self.inner.cfg.work_dir, "cookies", &data)
            .await
            .map(Some)
            .map_err(|e| io_failed("could not write a temporary file", &e))
    }

    pub(super) async fn run(
        &self,
        args: &[OsString],
        timeout: Duration,
        cap: usize,
    ) -> Result<RunOutput, ResolveError> {
        self.ensure_work_dir().await?;
        let cfg = &self.inner.cfg;
        let stats = &self.inner.stats;
        tracing::debug!(program = %cfg.path.display(), ?args, "running yt-dlp");
        match process::run(
            &cfg.path,
            args,
            ChildKind::YtDlp,
            &cfg.work_dir,
            timeout,
            cap,
            stats,
        )
        .await
        {
            Ok(out) => Ok(out),
            Err(RunError::TimedOut) => {
                tracing::warn!(?timeout, "yt-dlp timed out; its process group was killed");
                Err(ResolveError::TimedOut(timeout))
            }
            Err(RunError::Spawn(e)) => {
                stats.failed.fetch_add(1, Ordering::SeqCst);
                if e.kind() == std::io::ErrorKind::NotFound {
                    tracing::warn!(program = %cfg.path.display(), "yt-dlp not found");
                    Err(ResolveError::Missing(cfg.path.display().to_string()))
                } else {
                    tracing::warn!(program = %cfg.path.display(), error = %e, "yt-dlp could not be started");
                    Err(ResolveError::Failed(format!(
                        "yt-dlp could not be started ({})",
                        e.kind()
                    )))
                }
            }
            Err(RunError::StdoutTooLarge) => {
                stats.failed.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(cap, "yt-dlp output exceeded its cap; killed");
                Err(ResolveError::Failed("yt-dlp returned too much data".into()))
            }
            Err(RunError::Io(e)) => {
                stats.failed.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(error = %e, "I/O error talking to yt-dlp");
                Err(ResolveError::Failed("I/O error talking to yt-dlp".into()))
            }
        }
    }

    pub(super) fn note_outcome<T>(
        &self,
        out: &RunOutput,
        result: &Result<T, ResolveError>,
        what: &str,
    ) {
        match result {
            Ok(_) => {
                if !out.stderr.is_empty() {
                    tracing::debug!(query = what, stderr = %String::from_utf8_lossy(&out.stderr), "yt-dlp stderr");
                }
            }
            Err(e) => {
                self.inner.stats.failed.fetch_add(1, Ordering::SeqCst);
                log_stderr(out, e, what);
            }
        }
    }
}

pub(super) fn io_failed(what: &str, e: &std::io::Error) -> ResolveError {
    tracing::warn!(error = %e, "{what}");
    ResolveError::Failed(what.to_owned())
}

pub(super) fn log_stderr(out: &RunOutput, err: &ResolveError, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if err.is_user_error() {
        tracing::debug!(query = what, status = %out.status, %stderr, error = %err, "yt-dlp: user error");
    } else {
        tracing::warn!(query = what, status = %out.status, %stderr, error = %err, "yt-dlp failed");
    }
}

// ----- error mapping -----

/// Maps a failed run (non-zero exit or killed) to an error, from its stderr.
pub(super) fn map_failure(out: &RunOutput) -> ResolveError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.trim().is_empty() {
        use std::os::unix::process::ExitStatusExt;
        return match (out.status.code(), out.status.signal()) {
            (_, Some(sig)) => ResolveError::Failed(format!("yt-dlp was killed (signal {sig})")),
            (Some(code), _) => ResolveError::Failed(format!("yt-dlp exited with status {code}")),
            _ => ResolveError::Failed("yt-dlp failed".into()),
        };
    }
    map_stderr(&stderr)
}

/// Maps yt-dlp's stderr to an error. Patterns are matched case-insensitively against the
/// `ERROR:` lines (or, when there are none, the whole text), first match wins:
///
/// | # | pattern (any of) | error |
/// |---|---|---|
/// | 1 | `file:// URLs are disabled` | `UnsupportedScheme("file")` |
/// | 2 | `is not a valid URL` | `InvalidUrl` |
/// | 3 | `Unsupported URL` | `Unsupported` |
/// | 4 | `rate-limited`, `rate limited`, `try again later`, `HTTP Error 429`, `Too Many Requests` | `Blocked` |
/// | 5 | `Private video`, `Video unavailable`, `HTTP Error 404`, `HTTP Error 410`, `No video results`, `This video has been removed`, `This video does not exist`, `has been terminated`, `Unable to find any entries` | `NotFound` |
/// | 6 | `Sign in to confirm you` (bot check; also matches the age check), `confirm your age`, `HTTP Error 403`, `available in your country`, `available from your location`, `geo restrict`, `geo-restrict`, `--cookies` (yt-dlp's "use cookies" hint) | `Blocked` |
/// | 7 | `Requested format is not available`, `DRM protected`, `no video formats found` | `Unsupported` |
/// | 8 | anything else | `Failed(first ERROR line, cleaned)` |
///
/// "Cleaned": `ERROR:` and the `[extractor] id:` prefix removed, the ` (caused by …)` and
/// `; please report this issue …` tails removed, absolute paths replaced by `<path>`,
/// at most 150 characters. With no `ERROR:` line (a Python traceback), the last non-empty
/// line is used. An empty stderr gives `Failed("yt-dlp exited with status N")` or
/// `Failed("yt-dlp was killed (signal N)")`.
pub(crate) fn map_stderr(stderr: &str) -> ResolveError {
    let error_lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ERROR:"))
        .collect();
    let hay = if error_lines.is_empty() {
        stderr.to_lowercase()
    } else {
        error_lines.join("\n").to_lowercase()
    };
    let has = |pats: &[&str]| pats.iter().any(|p| hay.contains(p));

    // A hop the egress proxy refused (its 403 carries this reason phrase): the same
    // refusal as a private link given directly.
    if has(&["refused by encore egress policy"]) {
        return ResolveError::PrivateHost;
    }
    if has(&["file:// urls are disabled"]) {
        return ResolveError::UnsupportedScheme("file".into());
    }
    if has(&["is not a valid url"]) {
        return ResolveError::InvalidUrl;
    }
    if has(&["unsupported url"]) {
        return ResolveError::Unsupported;
    }
    // Rate limiting is phrased like "Video unavailable. This content isn't available, try
    // again later": check it before the not-found patterns.
    if has(&[
        "rate-limited",
        "rate limited",
        "try again later",
        "http error 429",
        "too many requests",
    ]) {
        return ResolveError::Blocked;
    }
    if has(&[
        "private video",
        "video unavailable",
        "http error 404",
        "http error 410",
        "no video results",
        "this video has been removed",
        "this video does not exist",
        "has been terminated",
        "unable to find any entries",
    ]) {
        return ResolveError::NotFound;
    }
    if has(&[
        "sign in to confirm you",
        "confirm your age",
        "http error 403",
        "available in your country",
        "available from your location",
        "geo restrict",
        "geo-restrict",
        "--cookies",
    ]) {
        return ResolveError::Blocked;
    }
    if has(&[
        "requested format is not available",
        "drm protected",
        "no video formats found",
    ]) {
        return ResolveError::Unsupported;
    }
    let line = error_lines.first().copied().unwrap_or_else(|| {
        stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("yt-dlp failed")
    });
    ResolveError::Failed(clean_reason(line))
}

/// A short, host-path-free version of one stderr line.
pub(crate) fn clean_reason(line: &str) -> String {
    let mut s = line.trim();
    s = s.strip_prefix("ERROR:").unwrap_or(s).trim();
    // "[extractor] id: message" → "message"
    if s.starts_with('[') {
        if let Some(close) = s.find("] ") {
            let rest = &s[close + 2..];
            if let Some(colon) = rest.find(": ") {
                s = &rest[colon + 2..];
            } else {
                s = rest;
            }
        }
    }
    for tail in [
        "; please report this issue",
        " (caused by ",
        " Confirm you are on the latest",
    ] {
        if let Some(i) = s.find(tail) {
            s = &s[..i];
        }
    }
    let cleaned: Vec<String> = s
        .split_whitespace()
        .map(|w| {
            let bare = w.trim_start_matches(['\'', '"', '(', '<', '`']);
            if bare.starts_with('/') || bare.starts_with("~/") || bare.starts_with("file:") {
                let lead = &w[..w.len() - bare.len()];
                let body = bare.trim_end_matches(['\'', '"', ')', '>', '`', ',', ';', ':']);
                let trail = &bare[body.len()..];
                format!("{lead}<path>{trail}")
            } else {
                w.to_owned()
            }
        })
        .collect();
    let mut out = cleaned.join(" ");
    out = out.trim_end_matches(['.', ' ']).to_owned();
    if out.is_empty() {
        out = "yt-dlp failed".into();
    }
    if out.chars().count() > MAX_REASON_CHARS {
        out = out.chars().take(MAX_REASON_CHARS - 1).collect::<String>() + "…";
    }
    out
}

// ----- temporary files -----

/// A private temporary file (0600) removed on drop.
pub(super) struct TempFile {
    path: PathBuf,
}

impl TempFile {
    pub(super) async fn create(dir: &Path, kind: &str, data: &[u8]) -> std::io::Result<TempFile> {
        let path = dir.join(format!(".encore-{kind}-{:016x}.tmp", rand::random::<u64>()));
        let f = TempFile { path };
        let p = f.path.clone();
        let data = data.to_vec();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)?;
            file.write_all(&data)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(f)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_mapping_table() {
        use ResolveError::*;
        let cases: &[(&str, ResolveError)] = &[
            ("ERROR: [generic] nope: Unable to download webpage: HTTP Error 404: File not found (caused by <HTTPError 404: File not found>)", NotFound),
            ("ERROR: Unsupported URL: http://127.0.0.1:8000/", Unsupported),
            ("ERROR: [youtube] abc: Sign in to confirm you\u{2019}re not a bot. Use --cookies-from-browser or --cookies for the authentication.", Blocked),
            ("ERROR: [youtube] abc: Sign in to confirm you're not a bot.", Blocked),
            ("ERROR: [youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.", Blocked),
            ("ERROR: [youtube] abc: Video unavailable. This content isn\u{2019}t available, try again later.", Blocked),
            ("ERROR: [youtube] abc: Video unavailable", NotFound),
            ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video. Use --cookies-from-browser or --cookies for the authentication.", NotFound),
            ("ERROR: [youtube:search] x: No video results", NotFound),
            ("ERROR: [generic] x: Unable to download webpage: HTTP Error 410: Gone", NotFound),
            ("ERROR: [soundcloud] x: Unable to download JSON metadata: HTTP Error 429: Too Many Requests", Blocked),
            ("ERROR: [vimeo] 1: Unable to download webpage: HTTP Error 403: Forbidden", Blocked),
            ("ERROR: [youtube] abc: The uploader has not made this video available in your country", Blocked),
            ("ERROR: [generic] x: Requested format is not available. Use --list-formats for a list of available formats", Unsupported),
            ("ERROR: [generic] 'notaurl' is not a valid URL. Set --default-search \"ytsearch\" (or run  yt-dlp \"ytsearch:notaurl\" ) to search YouTube", InvalidUrl),
            ("ERROR: file:// URLs are disabled by default in yt-dlp for security reasons. Use --enable-file-urls to enable at your own risk.", UnsupportedScheme("file".into())),
            ("ERROR: [generic] x: Unable to download webpage: [Errno 111] Connection refused (caused by TransportError('[Errno 111] Connection refused'))", Failed("Unable to download webpage: [Errno 111] Connection refused".into())),
            ("ERROR: query \"--exec=touch /tmp/x\" page 1: Unable to download API page: [Errno -2] Name or service not known (caused by TransportError('[Errno -2] Name or service not known'))", Failed("query \"--exec=touch <path>\" page 1: Unable to download API page: [Errno -2] Name or service not known".into())),
            ("Traceback (most recent call last):\n  File \"/opt/venv/lib/python3.12/site-packages/yt_dlp/YoutubeDL.py\", line 1, in x\nKeyError: 'formats'", Failed("KeyError: 'formats'".into())),
            ("ERROR: [youtube] abc: Unable to extract player response; please report this issue on  https://github.com/yt-dlp/yt-dlp/issues?q= , filling out the appropriate issue template. Confirm you are on the latest version using  yt-dlp -U", Failed("Unable to extract player response".into())),
        ];
        for (stderr, want) in cases {
            assert_eq!(&map_stderr(stderr), want, "stderr: {stderr}");
        }
    }

    #[test]
    fn reasons_are_short_and_pathless() {
        let long = format!("ERROR: {}", "word ".repeat(100));
        let r = clean_reason(&long);
        assert!(r.chars().count() <= MAX_REASON_CHARS);
        assert!(r.ends_with('…'));
        let r = clean_reason("ERROR: could not open '/home/bot/data/cookies.txt' for reading");
        assert_eq!(r, "could not open '<path>' for reading");
        assert!(!r.contains("/home"));
    }
}
