//! The [`YtDlp`] handle and its configuration, apart from `mod.rs` so that the files
//! implementing it (`args.rs`, `run.rs`, `info.rs`, `download.rs`) import the type from
//! here and `mod.rs`, which uses them, never imports back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::sources::egress::Egress;
use crate::sources::lookups::Lookups;
use crate::sources::process::ProcessStats;

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
    /// The operator's proxy. yt-dlp is given the egress proxy, which chains to this one;
    /// only a wrapper without an egress proxy (tests, tools) gives it this directly.
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

pub(super) struct Inner {
    pub(super) cfg: YtDlpConfig,
    /// The policy, and the egress proxy yt-dlp goes through (shared with the bot).
    pub(super) egress: Arc<Egress>,
    pub(super) stats: Arc<ProcessStats>,
    /// Every metadata run takes one of its global slots first.
    pub(super) lookups: Arc<Lookups>,
}

/// Resolves queries with yt-dlp. Cheap to clone.
#[derive(Clone)]
pub struct YtDlp {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for YtDlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YtDlp")
            .field("cfg", &self.inner.cfg)
            .field("egress", &self.inner.egress)
            .finish()
    }
}
