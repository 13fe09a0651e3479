//! The cache's run-time settings (`[cache]`); apart so no cache file imports cache/mod.rs for them.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The run-time form of the `[cache]` configuration section.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Master switch: off means every lookup runs yt-dlp and nothing is stored.
    pub enabled: bool,
    /// Keep finished audio files on disk (needs `enabled`).
    pub audio: bool,
    /// Audio file directory (only cache files live here).
    pub dir: PathBuf,
    /// How long a resolved entry (and a URL alias) is trusted.
    pub metadata_ttl: Duration,
    /// How long an alias from search text is trusted.
    pub search_ttl: Duration,
    /// Most metadata entries kept (least recently used go first).
    pub max_entries: u64,
    /// Audio byte budget (least recently used files go first).
    pub max_bytes: u64,
    /// Longest track whose audio is stored; `None`: no limit.
    pub max_track_duration: Option<Duration>,
    /// Most downloads at once.
    pub download_concurrency: usize,
    /// Largest file one download may write; `0`: only `max_bytes` bounds it.
    pub max_file_size: u64,
}

impl CacheSettings {
    /// Defaults (as in `config.toml.example`) with audio files under `dir`.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        let c = crate::config::CacheConfig::default();
        CacheSettings {
            enabled: c.enabled,
            audio: c.audio,
            dir: dir.into(),
            metadata_ttl: c.metadata_ttl,
            search_ttl: c.search_ttl,
            max_entries: c.max_entries,
            max_bytes: c.max_bytes,
            max_track_duration: (!c.max_track_duration.is_zero()).then_some(c.max_track_duration),
            download_concurrency: c.download_concurrency,
            max_file_size: c.max_file_size,
        }
    }

    pub fn from_config(config: &crate::config::Config) -> Self {
        let c = &config.cache;
        CacheSettings {
            enabled: c.enabled,
            audio: c.enabled && c.audio,
            dir: c.audio_dir(&config.data),
            metadata_ttl: c.metadata_ttl,
            search_ttl: c.search_ttl,
            max_entries: c.max_entries.max(1),
            max_bytes: c.max_bytes,
            max_track_duration: (!c.max_track_duration.is_zero()).then_some(c.max_track_duration),
            download_concurrency: c.download_concurrency.max(1),
            max_file_size: c.max_file_size,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most one download may write: `max_file_size`, and never more than the whole
    /// budget (a larger file would be deleted again anyway, after filling the disk).
    pub fn download_cap(&self) -> u64 {
        match self.max_file_size {
            0 => self.max_bytes,
            n => n.min(self.max_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn cache_config_section() {
        let c = Config::from_toml("").unwrap();
        let s = CacheSettings::from_config(&c);
        assert!(s.enabled && s.audio);
        assert_eq!(s.dir, PathBuf::from("data/audio"));
        assert_eq!(s.metadata_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(s.search_ttl, Duration::from_secs(3600));
        assert_eq!(s.max_bytes, 2 << 30);
        assert_eq!(s.max_track_duration, Some(Duration::from_secs(1800)));
        assert_eq!((s.max_entries, s.download_concurrency), (10_000, 2));

        let c = Config::from_toml(
            "[data]\ndir = \"/srv/encore\"\n[cache]\naudio = false\nmax_bytes = \"500 MB\"\n\
             metadata_ttl = \"2d\"\nmax_track_duration = \"0s\"\n",
        )
        .unwrap();
        let s = CacheSettings::from_config(&c);
        assert!(s.enabled && !s.audio);
        assert_eq!(s.dir, PathBuf::from("/srv/encore/audio"));
        assert_eq!(s.max_bytes, 500_000_000);
        assert_eq!(s.metadata_ttl, Duration::from_secs(2 * 86400));
        assert_eq!(s.max_track_duration, None);

        let err = Config::from_toml("[cache]\nmax_bytes = \"lots\"\n").unwrap_err();
        assert!(err.contains("lots") || err.contains("number"), "{err}");
        assert!(Config::from_toml("[cache]\nsize = 1\n").is_err());
    }

    #[test]
    fn cache_config_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), |_| None)
        };
        assert!(load("[cache]\nmax_entries = 5\n").is_ok());
        let err = load("[data]\ndir = \"/srv/x\"\n[cache]\ndir = \"/srv/x\"\n").unwrap_err();
        assert!(err.to_string().contains("cache.dir"), "{err}");
        // Fine when the audio cache is off.
        assert!(
            load("[data]\ndir = \"/srv/x\"\n[cache]\naudio = false\ndir = \"/srv/x\"\n").is_ok()
        );
        let err = load("[cache]\nmax_entries = 0\n").unwrap_err();
        assert!(err.to_string().contains("cache.max_entries"), "{err}");
        let err = load("[cache]\ndownload_concurrency = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("cache.download_concurrency"),
            "{err}"
        );
    }
}
