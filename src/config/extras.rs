//! `[lyrics]` (`/lyrics`, from LRCLIB), `[playlists]` (`/playlist`, saved per member) and
//! `[autoplay]` (`/autoplay`: where related tracks come from).

use std::time::Duration;

use serde::Deserialize;

/// Where `/lyrics` asks, and how long answers are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LyricsConfig {
    /// LRCLIB's base URL (its open API needs no key): a mirror, or a test server. The
    /// requests go through the bot's egress policy like every other.
    pub api_base: String,
    /// Whole-request limit for one LRCLIB call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long lyrics that were found are kept in the database.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long "LRCLIB has nothing for this" is remembered (briefly: it may be added).
    #[serde(with = "humantime_serde")]
    pub miss_ttl: Duration,
    /// Shortest time between two edits of a following (synced) lyrics message: Discord
    /// limits edits, and a line shown a moment late is better than a 429.
    #[serde(with = "humantime_serde")]
    pub edit_every: Duration,
}

impl Default for LyricsConfig {
    fn default() -> Self {
        Self {
            api_base: "https://lrclib.net".into(),
            timeout: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(30 * 86400),
            miss_ttl: Duration::from_secs(3600),
            edit_every: Duration::from_secs(2),
        }
    }
}

/// Limits on saved playlists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaylistsConfig {
    /// Most playlists one member keeps in one server.
    pub max_per_member: usize,
    /// Most tracks in one playlist.
    pub max_tracks: usize,
}

impl Default for PlaylistsConfig {
    fn default() -> Self {
        Self {
            max_per_member: 25,
            max_tracks: 200,
        }
    }
}

/// Where `/autoplay` finds related tracks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoplayConfig {
    /// The mix of a track, as a URL yt-dlp lists flat; `{id}` is replaced by the track's
    /// id. YouTube's own mix by default; a test points it at a loopback playlist.
    pub mix: String,
    /// Tracks of these yt-dlp extractors (lowercase) have a mix; the others go straight to
    /// the server's history.
    pub mix_sources: Vec<String>,
}

impl Default for AutoplayConfig {
    fn default() -> Self {
        Self {
            mix: "https://www.youtube.com/watch?v={id}&list=RD{id}".into(),
            mix_sources: vec!["youtube".into()],
        }
    }
}

impl AutoplayConfig {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.mix.contains("{id}") {
            return Err(("autoplay.mix", "must contain {id}".into()));
        }
        let parsed = url::Url::parse(&self.mix.replace("{id}", "x"))
            .map_err(|e| ("autoplay.mix", e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(("autoplay.mix", "must be an http:// or https:// URL".into()));
        }
        Ok(())
    }

    /// Whether a track of `extractor` has a mix.
    pub fn has_mix(&self, extractor: &str) -> bool {
        self.mix_sources
            .iter()
            .any(|s| s.eq_ignore_ascii_case(extractor))
    }
}

impl LyricsConfig {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let parsed =
            url::Url::parse(&self.api_base).map_err(|e| ("lyrics.api_base", e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err((
                "lyrics.api_base",
                "must be an http:// or https:// URL".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(("lyrics.timeout", "must be more than 0s".into()));
        }
        if self.edit_every < Duration::from_secs(1) {
            return Err(("lyrics.edit_every", "must be at least 1s".into()));
        }
        Ok(())
    }
}

impl PlaylistsConfig {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=1000).contains(&self.max_per_member) {
            return Err((
                "playlists.max_per_member",
                "must be between 1 and 1000".into(),
            ));
        }
        if !(1..=5000).contains(&self.max_tracks) {
            return Err(("playlists.max_tracks", "must be between 1 and 5000".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused() {
        let mut l = LyricsConfig::default();
        assert!(l.check().is_ok());
        l.api_base = "file:///etc".into();
        assert_eq!(l.check().unwrap_err().0, "lyrics.api_base");
        let mut p = PlaylistsConfig::default();
        assert!(p.check().is_ok());
        p.max_tracks = 0;
        assert_eq!(p.check().unwrap_err().0, "playlists.max_tracks");
        let mut a = AutoplayConfig::default();
        assert!(a.check().is_ok());
        assert!(a.has_mix("youtube") && !a.has_mix("generic"));
        a.mix = "https://example.com/mix".into();
        assert_eq!(a.check().unwrap_err().0, "autoplay.mix");
        a.mix = "file:///tmp/{id}".into();
        assert_eq!(a.check().unwrap_err().0, "autoplay.mix");
    }
}
