//! The yt-dlp wrapper: argument building, running, output parsing and error mapping.
//!
//! See `/work/shared/notes/ytdlp.md` and the module docs in `mod.rs` for the reasoning.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use url::Url;

use super::error::ResolveError;
use super::process::{self, ProcessStats, RunError, RunOutput};
use super::query::{check_url, check_url_static, parse_query, Query, UrlPolicy};
use super::track::{parse_stream_expiry, Track};

/// Still reachable at this path because `src/discord/format.rs` calls
/// `crate::sources::ytdlp::fmt_hms`; new code should name `crate::sources::fmt_hms`.
pub use super::error::fmt_hms;

/// Format selector: Opus audio (passthrough-friendly), else any audio-only, else the best
/// combined format (needed for direct files whose codecs yt-dlp cannot tell).
pub const FORMAT: &str = "bestaudio[acodec=opus]/bestaudio/best";

/// stdout cap for `-j` (one entry).
const STDOUT_CAP_SINGLE: usize = 2 * 1024 * 1024;
/// stdout cap for `-J` (a flat playlist).
const STDOUT_CAP_PLAYLIST: usize = 8 * 1024 * 1024;
/// stdout cap for `--version` and downloads (which print nothing with `--quiet`).
const STDOUT_CAP_SMALL: usize = 64 * 1024;
/// The most playlist entries ever requested.
pub const MAX_PLAYLIST_ITEMS: usize = 1000;
/// Marker of the `--print pre_process:` line that reports duration / liveness even when
/// `--match-filters` then rejects the entry (with `-j`, a rejection is otherwise silent).
const PRE_MARK: &str = "encore-pre ";
const PRE_TEMPLATE: &str = "pre_process:encore-pre %(.{duration,is_live,live_status})j";

/// Longest `Failed` reason shown to users, in characters.
const MAX_REASON_CHARS: usize = 150;

/// Operator configuration for yt-dlp.
#[derive(Clone, Debug)]
pub struct YtDlpConfig {
    /// The yt-dlp executable (a bare name is looked up on `PATH`).
    pub path: PathBuf,
    /// Whole-call timeout of one metadata call (about 20 s is sensible). Downloads get
    /// `max(6 × timeout, 60 s)`.
    pub timeout: Duration,
    /// Longest accepted track. When set, live streams are refused too ([`ResolveError::Live`]),
    /// since they have no end; when `None`, live streams are accepted and marked `is_live`.
    pub max_duration: Option<Duration>,
    /// A Netscape cookies file. yt-dlp rewrites its cookie file on exit, so each call gets a
    /// private copy (0600, in `work_dir`, removed afterwards); the original is only read.
    pub cookies: Option<PathBuf>,
    /// `--proxy` URL.
    pub proxy: Option<String>,
    /// Working directory of every yt-dlp process (created if missing).
    pub work_dir: PathBuf,
}

impl Default for YtDlpConfig {
    fn default() -> Self {
        YtDlpConfig {
            path: PathBuf::from("yt-dlp"),
            timeout: Duration::from_secs(20),
            max_duration: None,
            cookies: None,
            proxy: None,
            work_dir: std::env::temp_dir().join("encore-ytdlp"),
        }
    }
}

struct Inner {
    cfg: YtDlpConfig,
    policy: UrlPolicy,
    stats: Arc<ProcessStats>,
}

/// Resolves queries with yt-dlp. Cheap to clone.
#[derive(Clone)]
pub struct YtDlp {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for YtDlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YtDlp")
            .field("cfg", &self.inner.cfg)
            .field("policy", &self.inner.policy)
            .finish()
    }
}

/// What one call is for; decides the arguments.
enum Mode<'a> {
    Single(&'a Query),
    Playlist(&'a Url, usize),
}

impl YtDlp {
    pub fn new(cfg: YtDlpConfig, policy: UrlPolicy) -> Self {
        YtDlp {
            inner: Arc::new(Inner {
                cfg,
                policy,
                stats: Arc::new(ProcessStats::default()),
            }),
        }
    }

    pub fn stats(&self) -> Arc<ProcessStats> {
        self.inner.stats.clone()
    }

    pub fn config(&self) -> &YtDlpConfig {
        &self.inner.cfg
    }

    pub fn policy(&self) -> &UrlPolicy {
        &self.inner.policy
    }

    /// The argv (without the program) used by [`resolve`](Self::resolve). Pure.
    /// The query is always the single last element, right after `--`.
    pub fn build_args(&self, q: &Query) -> Vec<OsString> {
        self.args_for(Mode::Single(q), self.inner.cfg.cookies.as_deref())
    }

    fn common_args(&self, cookies: Option<&Path>) -> Vec<OsString> {
        let mut a: Vec<OsString> = [
            "--ignore-config",
            "--no-plugin-dirs",
            "--no-warnings",
            "--no-progress",
            "--socket-timeout",
            "10",
            "--retries",
            "2",
            "--extractor-retries",
            "1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        if let Some(c) = cookies {
            a.push("--cookies".into());
            a.push(c.as_os_str().to_owned());
        }
        if let Some(p) = &self.inner.cfg.proxy {
            a.push("--proxy".into());
            a.push(p.into());
        }
        a
    }

    fn filter_args(&self, a: &mut Vec<OsString>) {
        if let Some(limit) = self.inner.cfg.max_duration {
            a.push("--match-filters".into());
            a.push(format!("!is_live & duration<?{}", limit.as_secs_f64()).into());
            a.push("--print".into());
            a.push(PRE_TEMPLATE.into());
        }
    }

    fn args_for(&self, mode: Mode<'_>, cookies: Option<&Path>) -> Vec<OsString> {
        let mut a = self.common_args(cookies);
        let target = match mode {
            Mode::Single(q) => {
                a.push("--no-playlist".into());
                a.extend(["-f", FORMAT].map(OsString::from));
                self.filter_args(&mut a);
                a.push("-j".into());
                q.to_ytdlp_arg()
            }
            Mode::Playlist(url, limit) => {
                a.extend(
                    ["--yes-playlist", "--flat-playlist", "--playlist-items"].map(OsString::from),
                );
                a.push(format!("1:{limit}").into());
                a.extend(["-f", FORMAT].map(OsString::from));
                self.filter_args(&mut a);
                a.push("-J".into());
                url.as_str().to_owned()
            }
        };
        a.push("--".into());
        a.push(target.into());
        a
    }

    /// Resolves one track (`--no-playlist`). URLs are re-checked against the policy (a
    /// `Query` may have been built without [`parse_query`]), and so is the stream URL yt-dlp
    /// returns.
    pub async fn resolve(&self, q: &Query) -> Result<Track, ResolveError> {
        self.resolve_full(q).await.map(|(t, _)| t)
    }

    async fn resolve_full(&self, q: &Query) -> Result<(Track, serde_json::Value), ResolveError> {
        let input_url = match q {
            Query::Url(u) => {
                check_url(u, &self.inner.policy).await?;
                Some(u)
            }
            Query::Search(s) if s.trim().is_empty() => return Err(ResolveError::EmptyQuery),
            Query::Search(_) => None,
        };
        let cookies = self.private_cookies().await?;
        let args = self.args_for(Mode::Single(q), cookies.as_ref().map(|c| c.path()));
        let out = self
            .run(&args, self.inner.cfg.timeout, STDOUT_CAP_SINGLE)
            .await?;
        drop(cookies);
        let result = self.single_from_output(&out, input_url).await;
        self.note_outcome(&out, &result, &q.to_string());
        result
    }

    /// Lists a playlist, bounded to its first `limit` entries (clamped to
    /// 1..=[`MAX_PLAYLIST_ITEMS`]).
    ///
    /// Uses `--flat-playlist -J --playlist-items 1:<limit>`: one fast call that does not
    /// extract each entry. The returned entries are therefore **unresolved**
    /// (`stream_url` empty, `Track::is_resolved() == false`): resolve
    /// `Query::Url(track.page_url)` just before playing each one (stream URLs expire anyway,
    /// YouTube's after ~6 h, so resolving a whole playlist up front would be wasted work).
    /// Entries whose URL is not http(s), has credentials, or is a private IP literal (unless
    /// allowed) are dropped; so are entries known to be too long or live when
    /// `max_duration` is set.
    ///
    /// If the URL is not a playlist, the single resolved track is returned (with its
    /// title as the playlist title). No usable entries → [`ResolveError::NotFound`].
    pub async fn resolve_playlist(
        &self,
        url: &Url,
        limit: usize,
    ) -> Result<(String, Vec<Track>), ResolveError> {
        check_url(url, &self.inner.policy).await?;
        let limit = limit.clamp(1, MAX_PLAYLIST_ITEMS);
        let cookies = self.private_cookies().await?;
        let args = self.args_for(
            Mode::Playlist(url, limit),
            cookies.as_ref().map(|c| c.path()),
        );
        let out = self
            .run(&args, self.inner.cfg.timeout, STDOUT_CAP_PLAYLIST)
            .await?;
        drop(cookies);
        let result = self.playlist_from_output(&out, url, limit).await;
        self.note_outcome(&out, &result, url.as_str());
        result
    }

    /// `yt-dlp --version`, trimmed.
    pub async fn version(&self) -> Result<String, ResolveError> {
        let args: Vec<OsString> = vec!["--ignore-config".into(), "--version".into()];
        let out = self
            .run(&args, self.inner.cfg.timeout, STDOUT_CAP_SMALL)
            .await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v = text.lines().next().unwrap_or("").trim().to_owned();
        if !out.status.success() || v.is_empty() {
            self.inner.stats.failed.fetch_add(1, Ordering::SeqCst);
            let err = map_failure(&out);
            tracing::warn!(stderr = %String::from_utf8_lossy(&out.stderr), "yt-dlp --version failed");
            return Err(err);
        }
        Ok(v)
    }

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
    pub async fn download(&self, track_url: &str, dest: &Path) -> Result<u64, ResolveError> {
        let q = parse_query(track_url, &self.inner.policy).await?;
        if !matches!(q, Query::Url(_)) {
            return Err(ResolveError::InvalidUrl);
        }
        let (track, mut info) = self.resolve_full(&q).await?;
        if track.is_live {
            return Err(ResolveError::Live);
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

        let mut args = self.common_args(cookies.as_ref().map(|c| c.path()));
        args.extend(
            [
                "--no-playlist",
                "-f",
                FORMAT,
                "--quiet",
                "--no-part",
                "--no-mtime",
                "--force-overwrites",
                "-o",
            ]
            .map(OsString::from),
        );
        // `%` starts an output-template field: escape it. The path is absolute, so it can't
        // be taken for a `TYPE:` prefix.
        args.push(tmp.to_string_lossy().replace('%', "%%").into());
        args.push("--load-info-json".into());
        args.push(info_file.path().as_os_str().to_owned());

        let timeout = self
            .inner
            .cfg
            .timeout
            .saturating_mul(6)
            .max(Duration::from_secs(60));
        let out = self.run(&args, timeout, STDOUT_CAP_SMALL).await?;
        drop(cookies);
        drop(info_file);
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

    // ----- internals -----

    async fn ensure_work_dir(&self) -> Result<(), ResolveError> {
        tokio::fs::create_dir_all(&self.inner.cfg.work_dir)
            .await
            .map_err(|e| io_failed("could not create yt-dlp's working directory", &e))
    }

    /// A per-call copy of the cookies file (yt-dlp writes its cookie jar back on exit, and
    /// concurrent calls must not clobber the operator's file).
    async fn private_cookies(&self) -> Result<Option<TempFile>, ResolveError> {
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

    async fn run(
        &self,
        args: &[OsString],
        timeout: Duration,
        cap: usize,
    ) -> Result<RunOutput, ResolveError> {
        self.ensure_work_dir().await?;
        let cfg = &self.inner.cfg;
        let stats = &self.inner.stats;
        tracing::debug!(program = %cfg.path.display(), ?args, "running yt-dlp");
        match process::run(&cfg.path, args, &cfg.work_dir, timeout, cap, stats).await {
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

    fn note_outcome<T>(&self, out: &RunOutput, result: &Result<T, ResolveError>, what: &str) {
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

    /// Parses a `-j` run (the optional pre-process line, then one JSON object).
    async fn single_from_output(
        &self,
        out: &RunOutput,
        input_url: Option<&Url>,
    ) -> Result<(Track, serde_json::Value), ResolveError> {
        if !out.status.success() {
            return Err(map_failure(out));
        }
        let (pre, json) = split_stdout(&out.stdout);
        let Some(json) = json else {
            return Err(self.rejected(pre.as_ref()));
        };
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|_| ResolveError::Failed("yt-dlp returned unreadable output".into()))?;
        let raw = RawInfo::deserialize(&value)
            .map_err(|_| ResolveError::Failed("yt-dlp returned unreadable output".into()))?;
        let track = self.resolved_track(raw, input_url).await?;
        Ok((track, value))
    }

    /// Empty output with exit 0: `--match-filters` rejected the entry, or a search found
    /// nothing. The pre-process line, when present, tells which.
    fn rejected(&self, pre: Option<&PreInfo>) -> ResolveError {
        if let (Some(pre), Some(limit)) = (pre, self.inner.cfg.max_duration) {
            if pre.is_live() {
                return ResolveError::Live;
            }
            if let Some(actual) = pre.duration.and_then(secs_to_duration) {
                if actual >= limit {
                    return ResolveError::TooLong { limit, actual };
                }
            }
        }
        ResolveError::NotFound
    }

    async fn resolved_track(
        &self,
        raw: RawInfo,
        input_url: Option<&Url>,
    ) -> Result<Track, ResolveError> {
        let Some(stream_url) = raw.url.clone().filter(|u| !u.is_empty()) else {
            // e.g. a format needing a merge of separate streams
            return Err(ResolveError::Unsupported);
        };
        let parsed = Url::parse(&stream_url).map_err(|_| ResolveError::Unsupported)?;
        check_url(&parsed, &self.inner.policy)
            .await
            .map_err(|e| match e {
                ResolveError::UnsupportedScheme(_) | ResolveError::InvalidUrl => {
                    ResolveError::Unsupported
                }
                other => other,
            })?;
        // The generic extractor returns any non-HTML response as a "direct" link; without
        // a media type or extension it is most likely not media (a text page, say).
        if raw.direct == Some(true) && matches!(raw.ext.as_deref(), None | Some("unknown_video")) {
            return Err(ResolveError::Unsupported);
        }
        if raw.acodec.as_deref() == Some("none") {
            return Err(ResolveError::Unsupported);
        }
        let is_live = raw.is_live();
        if let Some(limit) = self.inner.cfg.max_duration {
            if is_live {
                return Err(ResolveError::Live);
            }
            if let Some(actual) = raw.duration.and_then(secs_to_duration) {
                if actual >= limit {
                    return Err(ResolveError::TooLong { limit, actual });
                }
            }
        }
        let page_url = raw
            .webpage_url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| input_url.map(|u| u.as_str().to_owned()))
            .or_else(|| raw.original_url.clone())
            .unwrap_or_else(|| stream_url.clone());
        let headers = raw
            .http_headers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect();
        let extractor = raw
            .extractor_key
            .or(raw.extractor)
            .unwrap_or_else(|| "unknown".into())
            .to_lowercase();
        let id = raw.id.unwrap_or_else(|| page_url.clone());
        let title = raw
            .title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| id.clone());
        Ok(Track {
            title,
            stream_expires: parse_stream_expiry(&stream_url),
            page_url,
            stream_url,
            http_headers: headers,
            duration: raw.duration.and_then(secs_to_duration),
            extractor,
            id,
            is_live,
            uploader: raw.uploader.or(raw.channel),
            thumbnail: raw.thumbnail,
            ext: raw.ext,
            acodec: raw.acodec,
        })
    }

    async fn playlist_from_output(
        &self,
        out: &RunOutput,
        url: &Url,
        limit: usize,
    ) -> Result<(String, Vec<Track>), ResolveError> {
        if !out.status.success() {
            return Err(map_failure(out));
        }
        let (pre, json) = split_stdout(&out.stdout);
        let Some(json) = json else {
            return Err(self.rejected(pre.as_ref()));
        };
        let raw: RawInfo = serde_json::from_str(json)
            .map_err(|_| ResolveError::Failed("yt-dlp returned unreadable output".into()))?;
        let is_playlist = raw.kind.as_deref() == Some("playlist") || raw.entries.is_some();
        if !is_playlist {
            let track = self.resolved_track(raw, Some(url)).await?;
            return Ok((track.title.clone(), vec![track]));
        }
        let title = raw
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| url.as_str().to_owned());
        let tracks: Vec<Track> = raw
            .entries
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| RawInfo::deserialize(&v).ok())
            .filter_map(|e| self.entry_track(e))
            .take(limit)
            .collect();
        if tracks.is_empty() {
            return Err(ResolveError::NotFound);
        }
        Ok((title, tracks))
    }

    /// An unresolved playlist entry, or `None` when it is unusable or filtered out.
    fn entry_track(&self, e: RawInfo) -> Option<Track> {
        if e.kind.as_deref() == Some("playlist") {
            return None;
        }
        let page_url = [e.url.as_deref(), e.webpage_url.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|u| Url::parse(u).ok())
            .find(|u| check_url_static(u, &self.inner.policy).is_ok())?;
        let is_live = e.is_live();
        let duration = e.duration.and_then(secs_to_duration);
        if let Some(limit) = self.inner.cfg.max_duration {
            if is_live || duration.is_some_and(|d| d >= limit) {
                return None;
            }
        }
        let page_url = page_url.as_str().to_owned();
        let extractor = e
            .ie_key
            .or(e.extractor_key)
            .or(e.extractor)
            .unwrap_or_else(|| "unknown".into())
            .to_lowercase();
        let id = e.id.unwrap_or_else(|| page_url.clone());
        let thumbnail = e.thumbnail.or_else(|| {
            e.thumbnails
                .unwrap_or_default()
                .into_iter()
                .rev()
                .find_map(|t| t.get("url").and_then(|u| u.as_str()).map(str::to_owned))
        });
        Some(Track {
            title: e
                .title
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| page_url.clone()),
            page_url,
            stream_url: String::new(),
            http_headers: Vec::new(),
            duration,
            extractor,
            id,
            is_live,
            uploader: e.uploader.or(e.channel),
            thumbnail,
            ext: None,
            acodec: None,
            stream_expires: None,
        })
    }
}

fn secs_to_duration(s: f64) -> Option<Duration> {
    (0.0..1e9).contains(&s).then(|| Duration::from_secs_f64(s))
}

fn io_failed(what: &str, e: &std::io::Error) -> ResolveError {
    tracing::warn!(error = %e, "{what}");
    ResolveError::Failed(what.to_owned())
}

fn log_stderr(out: &RunOutput, err: &ResolveError, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if err.is_user_error() {
        tracing::debug!(query = what, status = %out.status, %stderr, error = %err, "yt-dlp: user error");
    } else {
        tracing::warn!(query = what, status = %out.status, %stderr, error = %err, "yt-dlp failed");
    }
}

// ----- output parsing -----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PreInfo {
    #[serde(deserialize_with = "lenient")]
    duration: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    is_live: Option<bool>,
    #[serde(deserialize_with = "lenient")]
    live_status: Option<String>,
}

impl PreInfo {
    fn is_live(&self) -> bool {
        self.is_live == Some(true) || self.live_status.as_deref() == Some("is_live")
    }
}

/// Splits stdout into the last pre-process line and the last JSON object line.
fn split_stdout(stdout: &[u8]) -> (Option<PreInfo>, Option<&str>) {
    let text = std::str::from_utf8(stdout).unwrap_or("");
    let mut pre = None;
    let mut json = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix(PRE_MARK) {
            pre = serde_json::from_str::<PreInfo>(rest).ok();
        } else if line.starts_with('{') {
            json = Some(line);
        }
    }
    if json.is_none() && text.trim_start().starts_with('{') && !text.contains(PRE_MARK) {
        // Not line-delimited (should not happen with -j/-J, but be lenient).
        json = Some(text.trim());
    }
    (pre, json)
}

fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

/// The fields of yt-dlp's info JSON that are used; all optional, wrong types read as absent.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawInfo {
    #[serde(rename = "_type", deserialize_with = "lenient")]
    kind: Option<String>,
    #[serde(deserialize_with = "lenient")]
    url: Option<String>,
    #[serde(deserialize_with = "lenient")]
    webpage_url: Option<String>,
    #[serde(deserialize_with = "lenient")]
    original_url: Option<String>,
    #[serde(deserialize_with = "lenient")]
    title: Option<String>,
    #[serde(deserialize_with = "lenient")]
    id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    duration: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    extractor_key: Option<String>,
    #[serde(deserialize_with = "lenient")]
    extractor: Option<String>,
    #[serde(deserialize_with = "lenient")]
    ie_key: Option<String>,
    #[serde(deserialize_with = "lenient")]
    is_live: Option<bool>,
    #[serde(deserialize_with = "lenient")]
    live_status: Option<String>,
    #[serde(deserialize_with = "lenient")]
    uploader: Option<String>,
    #[serde(deserialize_with = "lenient")]
    channel: Option<String>,
    #[serde(deserialize_with = "lenient")]
    thumbnail: Option<String>,
    #[serde(deserialize_with = "lenient")]
    thumbnails: Option<Vec<serde_json::Value>>,
    #[serde(deserialize_with = "lenient")]
    ext: Option<String>,
    #[serde(deserialize_with = "lenient")]
    acodec: Option<String>,
    #[serde(deserialize_with = "lenient")]
    direct: Option<bool>,
    #[serde(deserialize_with = "lenient")]
    http_headers: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(deserialize_with = "lenient")]
    entries: Option<Vec<serde_json::Value>>,
}

impl RawInfo {
    fn is_live(&self) -> bool {
        self.is_live == Some(true) || self.live_status.as_deref() == Some("is_live")
    }
}

// ----- error mapping -----

/// Maps a failed run (non-zero exit or killed) to an error, from its stderr.
fn map_failure(out: &RunOutput) -> ResolveError {
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
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    async fn create(dir: &Path, kind: &str, data: &[u8]) -> std::io::Result<TempFile> {
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

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ytdlp(max: Option<Duration>) -> YtDlp {
        YtDlp::new(
            YtDlpConfig {
                path: "/usr/bin/yt-dlp".into(),
                timeout: Duration::from_secs(20),
                max_duration: max,
                cookies: None,
                proxy: None,
                work_dir: "/tmp/encore-test".into(),
            },
            UrlPolicy::default(),
        )
    }

    fn strs(a: &[OsString]) -> Vec<String> {
        a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    fn assert_safe_tail(args: &[String], expected_last: &str) {
        assert_eq!(args.last().unwrap(), expected_last);
        assert_eq!(args[args.len() - 2], "--");
        assert_eq!(args.iter().filter(|a| *a == "--").count(), 1);
        assert!(args.contains(&"--ignore-config".to_owned()));
        assert!(args.contains(&"--no-playlist".to_owned()));
        assert!(args.contains(&"--no-plugin-dirs".to_owned()));
        assert!(args.contains(&"-j".to_owned()));
        assert!(!args
            .iter()
            .any(|a| a == "--enable-file-urls" || a == "--no-check-certificates"));
        // Only the last element carries user text.
        assert!(!args[..args.len() - 1]
            .iter()
            .any(|a| a.contains("passwd") || a.contains("touch")));
    }

    #[test]
    fn build_args_url() {
        let y = ytdlp(None);
        let q = Query::Url(Url::parse("https://www.youtube.com/watch?v=abc").unwrap());
        let a = strs(&y.build_args(&q));
        assert_safe_tail(&a, "https://www.youtube.com/watch?v=abc");
        assert_eq!(a[0], "--ignore-config");
        let f = a.iter().position(|x| x == "-f").unwrap();
        assert_eq!(a[f + 1], FORMAT);
        assert!(!a.contains(&"--match-filters".to_owned()));
        assert!(!a.contains(&"--cookies".to_owned()));
        assert!(!a.contains(&"--proxy".to_owned()));
    }

    #[test]
    fn build_args_search_is_never_an_option() {
        let y = ytdlp(None);
        for text in ["--exec=touch /tmp/x", "-a/etc/passwd", "--exec foo"] {
            let a = strs(&y.build_args(&Query::Search(text.into())));
            assert_safe_tail(&a, &format!("ytsearch1:{text}"));
        }
    }

    #[test]
    fn build_args_filters_and_config() {
        let mut cfg = ytdlp(Some(Duration::from_secs(600))).inner.cfg.clone();
        cfg.cookies = Some("/srv/cookies.txt".into());
        cfg.proxy = Some("socks5://127.0.0.1:9050".into());
        let y = YtDlp::new(cfg, UrlPolicy::default());
        let a = strs(&y.build_args(&Query::Search("x".into())));
        assert_safe_tail(&a, "ytsearch1:x");
        let m = a.iter().position(|x| x == "--match-filters").unwrap();
        assert_eq!(a[m + 1], "!is_live & duration<?600");
        let p = a.iter().position(|x| x == "--print").unwrap();
        assert_eq!(a[p + 1], PRE_TEMPLATE);
        let c = a.iter().position(|x| x == "--cookies").unwrap();
        assert_eq!(a[c + 1], "/srv/cookies.txt");
        let p = a.iter().position(|x| x == "--proxy").unwrap();
        assert_eq!(a[p + 1], "socks5://127.0.0.1:9050");
        let b = a.iter().position(|x| x == "--socket-timeout").unwrap();
        assert_eq!(a[b + 1], "10");
    }

    #[test]
    fn playlist_args() {
        let y = ytdlp(None);
        let u = Url::parse("https://www.youtube.com/playlist?list=PL1").unwrap();
        let a = strs(&y.args_for(Mode::Playlist(&u, 25), None));
        assert_eq!(a.last().unwrap(), u.as_str());
        assert_eq!(a[a.len() - 2], "--");
        assert!(a.contains(&"--flat-playlist".to_owned()));
        assert!(a.contains(&"--yes-playlist".to_owned()));
        assert!(a.contains(&"-J".to_owned()));
        assert!(!a.contains(&"--no-playlist".to_owned()));
        let i = a.iter().position(|x| x == "--playlist-items").unwrap();
        assert_eq!(a[i + 1], "1:25");
    }

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

    #[test]
    fn stdout_split() {
        let s = b"encore-pre {\"duration\": 700.5}\n";
        let (pre, json) = split_stdout(s);
        assert_eq!(pre.unwrap().duration, Some(700.5));
        assert!(json.is_none());
        let s = b"encore-pre {\"is_live\": true, \"live_status\": \"is_live\"}\n";
        assert!(split_stdout(s).0.unwrap().is_live());
        let s = b"encore-pre {}\n{\"url\": \"http://x/\", \"title\": \"t\"}\n";
        let (pre, json) = split_stdout(s);
        assert!(pre.is_some());
        assert_eq!(json, Some("{\"url\": \"http://x/\", \"title\": \"t\"}"));
        assert!(split_stdout(b"").1.is_none());
    }

    #[test]
    fn rejection_reasons() {
        let y = ytdlp(Some(Duration::from_secs(600)));
        let pre = PreInfo {
            duration: Some(700.0),
            ..Default::default()
        };
        assert_eq!(
            y.rejected(Some(&pre)),
            ResolveError::TooLong {
                limit: Duration::from_secs(600),
                actual: Duration::from_secs(700)
            }
        );
        let pre = PreInfo {
            is_live: Some(true),
            ..Default::default()
        };
        assert_eq!(y.rejected(Some(&pre)), ResolveError::Live);
        assert_eq!(y.rejected(None), ResolveError::NotFound);
        assert_eq!(ytdlp(None).rejected(Some(&pre)), ResolveError::NotFound);
    }

    #[test]
    fn lenient_json() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"url":"http://a/b","duration":"oops","is_live":null,"title":5,"http_headers":{"A":"b","N":1},"id":"x"}"#,
        )
        .unwrap();
        let r = RawInfo::deserialize(&v).unwrap();
        assert_eq!(r.url.as_deref(), Some("http://a/b"));
        assert_eq!(r.duration, None);
        assert_eq!(r.title, None);
        assert_eq!(r.http_headers.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn track_from_info() {
        let y = ytdlp(None);
        let v: serde_json::Value = serde_json::from_str(
            r#"{"url":"https://rr1.googlevideo.com/videoplayback?expire=1700000000&x=1","webpage_url":"https://www.youtube.com/watch?v=abc","title":"Song","id":"abc","duration":212.4,"extractor_key":"Youtube","ext":"webm","acodec":"opus","http_headers":{"User-Agent":"UA"},"uploader":"Someone","is_live":false}"#,
        )
        .unwrap();
        let raw = RawInfo::deserialize(&v).unwrap();
        // Allow private hosts so that no DNS lookup happens in unit tests.
        let y2 = YtDlp::new(
            y.inner.cfg.clone(),
            UrlPolicy {
                allow_private_hosts: true,
            },
        );
        let t = y2.resolved_track(raw, None).await.unwrap();
        assert_eq!(t.title, "Song");
        assert_eq!(t.extractor, "youtube");
        assert_eq!(t.cache_key(), "youtube:abc");
        assert_eq!(t.duration, Some(Duration::from_secs_f64(212.4)));
        assert_eq!(
            t.http_headers,
            vec![("User-Agent".to_owned(), "UA".to_owned())]
        );
        assert_eq!(
            t.stream_expires,
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert!(t.seekable_hint());

        // A stream URL on a private address is refused under the default policy.
        let v: serde_json::Value =
            serde_json::from_str(r#"{"url":"http://192.168.1.10/a.mp3","ext":"mp3"}"#).unwrap();
        let raw = RawInfo::deserialize(&v).unwrap();
        assert_eq!(
            y.resolved_track(raw, None).await,
            Err(ResolveError::PrivateHost)
        );
        // A non-http stream URL is unsupported.
        let v: serde_json::Value =
            serde_json::from_str(r#"{"url":"file:///etc/passwd","ext":"mp3"}"#).unwrap();
        let raw = RawInfo::deserialize(&v).unwrap();
        assert_eq!(
            y2.resolved_track(raw, None).await,
            Err(ResolveError::Unsupported)
        );
        // Too long / live under a limit.
        let y3 = YtDlp::new(
            ytdlp(Some(Duration::from_secs(60))).inner.cfg.clone(),
            UrlPolicy {
                allow_private_hosts: true,
            },
        );
        let v: serde_json::Value =
            serde_json::from_str(r#"{"url":"http://8.8.8.8/a.mp3","duration":61}"#).unwrap();
        assert_eq!(
            y3.resolved_track(RawInfo::deserialize(&v).unwrap(), None)
                .await,
            Err(ResolveError::TooLong {
                limit: Duration::from_secs(60),
                actual: Duration::from_secs(61)
            })
        );
        let v: serde_json::Value =
            serde_json::from_str(r#"{"url":"http://8.8.8.8/a.m3u8","live_status":"is_live"}"#)
                .unwrap();
        assert_eq!(
            y3.resolved_track(RawInfo::deserialize(&v).unwrap(), None)
                .await,
            Err(ResolveError::Live)
        );
        // Without a limit, live is accepted and marked.
        let v: serde_json::Value =
            serde_json::from_str(r#"{"url":"http://8.8.8.8/a.m3u8","is_live":true,"ext":"mp4"}"#)
                .unwrap();
        let t = y2
            .resolved_track(RawInfo::deserialize(&v).unwrap(), None)
            .await
            .unwrap();
        assert!(t.is_live);
        assert!(!t.seekable_hint());
        // Direct link of unknown type (e.g. a text page).
        let v: serde_json::Value = serde_json::from_str(
            r#"{"url":"http://8.8.8.8/note.txt","direct":true,"ext":"unknown_video"}"#,
        )
        .unwrap();
        assert_eq!(
            y2.resolved_track(RawInfo::deserialize(&v).unwrap(), None)
                .await,
            Err(ResolveError::Unsupported)
        );
    }

    #[test]
    fn playlist_entries() {
        let y = YtDlp::new(
            ytdlp(Some(Duration::from_secs(600))).inner.cfg.clone(),
            UrlPolicy::default(),
        );
        let v: serde_json::Value = serde_json::from_str(
            r#"{"_type":"url","ie_key":"Youtube","id":"a1","url":"https://www.youtube.com/watch?v=a1","title":"One","duration":100,"thumbnails":[{"url":"https://i/1.jpg"},{"url":"https://i/2.jpg"}]}"#,
        )
        .unwrap();
        let t = y.entry_track(RawInfo::deserialize(&v).unwrap()).unwrap();
        assert_eq!(t.cache_key(), "youtube:a1");
        assert!(!t.is_resolved());
        assert_eq!(t.thumbnail.as_deref(), Some("https://i/2.jpg"));
        for bad in [
            r#"{"url":"https://www.youtube.com/watch?v=a2","duration":900}"#,
            r#"{"url":"https://www.youtube.com/watch?v=a3","live_status":"is_live"}"#,
            r#"{"url":"http://127.0.0.1/x"}"#,
            r#"{"url":"file:///etc/passwd"}"#,
            r#"{"url":"a4"}"#,
        ] {
            let v: serde_json::Value = serde_json::from_str(bad).unwrap();
            assert!(
                y.entry_track(RawInfo::deserialize(&v).unwrap()).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let y = ytdlp(None);
        let q = Query::Search("x".into());
        let u = Url::parse("https://example.com/").unwrap();
        let dest = PathBuf::from("/tmp/x");
        let policy = UrlPolicy::default();
        assert_send(&y.resolve(&q));
        assert_send(&y.resolve_playlist(&u, 5));
        assert_send(&y.download("https://example.com/", &dest));
        assert_send(&y.version());
        assert_send(&parse_query("x", &policy));
        fn assert_sync<T: Send + Sync + Clone>(_: &T) {}
        assert_sync(&y);
    }
}
