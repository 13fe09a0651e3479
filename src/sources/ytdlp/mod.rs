//! The yt-dlp wrapper. The rules it follows, and why, are in `docs/ytdlp.md`; the module
//! docs of `sources/mod.rs` sum them up.
//!
//! * `args.rs`: the argument lists (hardening options first, user text last after `--`);
//! * `run.rs`: running yt-dlp (working directory, cookies copy, deadlines, counters) and
//!   mapping a failed run's stderr to a [`ResolveError`];
//! * `info.rs`: yt-dlp's JSON info to [`Track`]s and playlist entries;
//! * `download.rs`: [`YtDlp::download`], audio files for the cache.

use std::ffi::OsString;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use url::Url;

use super::egress::policy::UrlPolicy;
use super::egress::resolve::check_url;
use super::egress::Egress;
use super::error::ResolveError;
use super::lookups::Lookups;
use super::process::ProcessStats;
use super::query::Query;
use super::track::Track;

mod args;
mod client;
mod download;
mod info;
mod run;

use args::Mode;
pub use args::FORMAT;
use client::Inner;
pub use client::{YtDlp, YtDlpConfig};
use run::{map_failure, STDOUT_CAP_PLAYLIST, STDOUT_CAP_SINGLE, STDOUT_CAP_SMALL};

/// What [`YtDlp::list_flat`] lists: a site search yt-dlp knows (`ytsearch5:<text>`, the
/// whole argument), or the URL of a results page (an RSS feed, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlatTarget {
    Search(String),
    Url(Url),
}

/// The most playlist entries ever requested.
pub const MAX_PLAYLIST_ITEMS: usize = 1000;

impl YtDlp {
    /// A wrapper with no lookup caps (tests, tools); the bot uses
    /// [`with_lookups`](Self::with_lookups). `egress`: the policy and proxy shared with
    /// the bot (a bare [`UrlPolicy`] makes one without a proxy, for tests).
    pub fn new(cfg: YtDlpConfig, egress: impl Into<Arc<Egress>>) -> Self {
        Self::with_lookups(cfg, egress, Arc::new(Lookups::unbounded()))
    }

    /// A wrapper whose metadata runs (single tracks, playlists, the lookup before a
    /// download) share the global cap of `lookups`.
    pub fn with_lookups(
        cfg: YtDlpConfig,
        egress: impl Into<Arc<Egress>>,
        lookups: Arc<Lookups>,
    ) -> Self {
        YtDlp {
            inner: Arc::new(Inner {
                cfg,
                egress: egress.into(),
                stats: Arc::new(ProcessStats::default()),
                lookups,
            }),
        }
    }

    /// The lookup caps: `/play` takes a member slot here before it resolves anything.
    pub fn lookups(&self) -> &Arc<Lookups> {
        &self.inner.lookups
    }

    pub fn stats(&self) -> Arc<ProcessStats> {
        self.inner.stats.clone()
    }

    pub fn config(&self) -> &YtDlpConfig {
        &self.inner.cfg
    }

    pub fn policy(&self) -> &UrlPolicy {
        self.inner.egress.policy()
    }

    pub fn egress(&self) -> &Arc<Egress> {
        &self.inner.egress
    }

    /// yt-dlp's `--proxy`: the egress proxy when it runs, else the operator's proxy.
    pub(super) fn proxy_arg(&self) -> Option<String> {
        self.inner
            .egress
            .proxy_url()
            .or_else(|| self.inner.cfg.proxy.clone())
    }

    /// The argv (without the program) used by [`resolve`](Self::resolve). Pure.
    /// The query is always the single last element, right after `--`.
    pub fn build_args(&self, q: &Query) -> Vec<OsString> {
        self.args_for(Mode::Single(q), self.inner.cfg.cookies.as_deref())
    }

    /// Resolves one track (`--no-playlist`). URLs are re-checked against the policy (a
    /// `Query` may have been built without [`parse_query`](super::parse_query)), and so is
    /// the stream URL yt-dlp returns.
    pub async fn resolve(&self, q: &Query) -> Result<Track, ResolveError> {
        self.resolve_full(q).await.map(|(t, _)| t)
    }

    async fn resolve_full(&self, q: &Query) -> Result<(Track, serde_json::Value), ResolveError> {
        let input_url = match q {
            Query::Url(u) => {
                check_url(u, self.policy()).await?;
                Some(u)
            }
            Query::Search(s) if s.trim().is_empty() => return Err(ResolveError::EmptyQuery),
            Query::Search(_) => None,
        };
        let _slot = self.inner.lookups.global().await?;
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
        check_url(url, self.policy()).await?;
        let limit = limit.clamp(1, MAX_PLAYLIST_ITEMS);
        let _slot = self.inner.lookups.global().await?;
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

    /// Lists a search's results flat (`--flat-playlist -J`, no entry looked up), at most
    /// `limit` of them, and returns yt-dlp's JSON as it is: the caller reads the entries. A
    /// URL is checked against the policy first; the argument always comes after `--`.
    pub async fn list_flat(
        &self,
        target: &FlatTarget,
        limit: usize,
    ) -> Result<serde_json::Value, ResolveError> {
        let arg = match target {
            FlatTarget::Url(u) => {
                check_url(u, self.policy()).await?;
                u.as_str().to_owned()
            }
            FlatTarget::Search(s) if s.trim().is_empty() => return Err(ResolveError::EmptyQuery),
            FlatTarget::Search(s) => s.clone(),
        };
        let limit = limit.clamp(1, MAX_PLAYLIST_ITEMS);
        let _slot = self.inner.lookups.global().await?;
        let args = self.args_for(Mode::Flat(&arg, limit), None);
        let out = self
            .run(&args, self.inner.cfg.timeout, STDOUT_CAP_PLAYLIST)
            .await?;
        let result = if out.status.success() {
            serde_json::from_slice(&out.stdout)
                .map_err(|_| ResolveError::Failed("yt-dlp returned unreadable output".into()))
        } else {
            Err(map_failure(&out))
        };
        self.note_outcome(&out, &result, &arg);
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
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::sources::query::parse_query;

    /// A wrapper for unit tests. Nothing here runs it, so the program and the working
    /// directory need not exist.
    pub(super) fn ytdlp(max: Option<Duration>) -> YtDlp {
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
        assert_send(&y.download("https://example.com/", &dest, None));
        assert_send(&y.version());
        assert_send(&parse_query("x", &policy));
        fn assert_sync<T: Send + Sync + Clone>(_: &T) {}
        assert_sync(&y);
    }
}
