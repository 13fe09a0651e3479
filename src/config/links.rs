//! `[links]`: Spotify, Apple Music and Deezer links, read from the services' public pages
//! and API (no credentials) and matched to something yt-dlp plays.

use std::time::Duration;

use serde::Deserialize;

/// Where streaming-service links are read, and how their tracks are found.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// Where Spotify's embed pages are read (`{base}/embed/{kind}/{id}`).
    pub spotify_base: String,
    /// Where Apple Music's public pages are read (the link's own path under it).
    pub apple_music_base: String,
    /// Deezer's public API (`{base}/{track|album|playlist}/{id}`), which needs no key.
    pub deezer_api_base: String,
    /// What each track is searched with: a yt-dlp search prefix (`ytsearch5:{query}`), or an
    /// http(s) URL template whose results yt-dlp lists (`{query}` is percent-encoded).
    pub search: String,
    /// How far a result's length may be from the track's and still be taken.
    #[serde(with = "humantime_serde")]
    pub tolerance: Duration,
    /// Searches run at once for one link.
    pub concurrency: usize,
    /// Most tracks taken from one link (`player.max_playlist` applies too).
    pub max_tracks: usize,
    /// Whole-request limit for one page or API call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for LinksConfig {
    fn default() -> Self {
        Self {
            spotify_base: "https://open.spotify.com".into(),
            apple_music_base: "https://music.apple.com".into(),
            deezer_api_base: "https://api.deezer.com".into(),
            search: "ytsearch5:{query}".into(),
            tolerance: Duration::from_secs(3),
            concurrency: 3,
            max_tracks: 50,
            timeout: Duration::from_secs(10),
        }
    }
}

impl LinksConfig {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, base) in [
            ("links.spotify_base", &self.spotify_base),
            ("links.apple_music_base", &self.apple_music_base),
            ("links.deezer_api_base", &self.deezer_api_base),
        ] {
            let parsed = url::Url::parse(base).map_err(|e| (key, e.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
                return Err((key, "must be an http:// or https:// URL".into()));
            }
        }
        crate::sources::links::matching::SearchTemplate::parse(&self.search)
            .map_err(|e| ("links.search", e))?;
        if self.tolerance > Duration::from_secs(60) {
            return Err(("links.tolerance", "must be at most 60s".into()));
        }
        if !(1..=16).contains(&self.concurrency) {
            return Err(("links.concurrency", "must be between 1 and 16".into()));
        }
        if !(1..=1000).contains(&self.max_tracks) {
            return Err(("links.max_tracks", "must be between 1 and 1000".into()));
        }
        if self.timeout.is_zero() {
            return Err(("links.timeout", "must be more than 0s".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused() {
        let mut l = LinksConfig::default();
        assert!(l.check().is_ok());
        l.deezer_api_base = "ftp://x".into();
        assert_eq!(l.check().unwrap_err().0, "links.deezer_api_base");
        let mut l = LinksConfig {
            search: "ytsearch5:no placeholder".into(),
            ..LinksConfig::default()
        };
        assert_eq!(l.check().unwrap_err().0, "links.search");
        l.search = "http://127.0.0.1:1/s.rss?q={query}".into();
        assert!(l.check().is_ok());
        l.concurrency = 0;
        assert_eq!(l.check().unwrap_err().0, "links.concurrency");
    }
}
