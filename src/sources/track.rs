//! A resolved (or, for playlist entries, not yet resolved) track.

use std::time::{Duration, SystemTime};

use url::Url;

/// One playable item as yt-dlp described it.
///
/// Tracks returned by [`YtDlp::resolve`](super::YtDlp::resolve) are *resolved*: `stream_url`
/// has been checked against the URL policy and can be streamed with `http_headers`.
/// Tracks returned by [`YtDlp::resolve_playlist`](super::YtDlp::resolve_playlist) for
/// playlist entries are *unresolved* (`stream_url` is empty, see [`Track::is_resolved`]):
/// resolve `Query::Url(page_url)` right before playing them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Track {
    pub title: String,
    /// `webpage_url` (what users click); falls back to the input URL.
    pub page_url: String,
    /// The media URL to stream (yt-dlp `url`). Empty for unresolved playlist entries.
    pub stream_url: String,
    /// yt-dlp `http_headers` to send when streaming.
    pub http_headers: Vec<(String, String)>,
    pub duration: Option<Duration>,
    /// `extractor_key`, lowercased (e.g. "generic", "youtube").
    pub extractor: String,
    /// yt-dlp id.
    pub id: String,
    pub is_live: bool,
    pub uploader: Option<String>,
    pub thumbnail: Option<String>,
    pub ext: Option<String>,
    pub acodec: Option<String>,
    /// From the stream URL's `expire=` query parameter (or `/expire/<n>/` path segment)
    /// when present (YouTube); `None` otherwise.
    pub stream_expires: Option<SystemTime>,
}

impl Track {
    /// `"{extractor}:{id}"`, stable across re-resolutions of the same item.
    pub fn cache_key(&self) -> String {
        format!("{}:{}", self.extractor, self.id)
    }

    /// Whether seeking is likely to work: not live and with a known duration.
    /// (A hint only: an HTTP stream that ignores `Range` can still refuse.)
    pub fn seekable_hint(&self) -> bool {
        !self.is_live && self.duration.is_some_and(|d| !d.is_zero())
    }

    /// False for playlist entries whose stream URL has not been resolved yet.
    pub fn is_resolved(&self) -> bool {
        !self.stream_url.is_empty()
    }

    /// True when the stream URL is missing or expires within `margin` of `now`.
    pub fn needs_refresh(&self, now: SystemTime, margin: Duration) -> bool {
        if !self.is_resolved() {
            return true;
        }
        match self.stream_expires {
            Some(exp) => now + margin >= exp,
            None => false,
        }
    }
}

/// Parses the expiry of a signed stream URL: the `expire=<unix seconds>` query parameter
/// (YouTube's googlevideo URLs), or an `/expire/<unix seconds>/` path segment (YouTube
/// manifest URLs). Returns `None` when absent or not a plausible number.
pub fn parse_stream_expiry(stream_url: &str) -> Option<SystemTime> {
    let url = Url::parse(stream_url).ok()?;
    let from_query = url
        .query_pairs()
        .find(|(k, _)| k == "expire")
        .map(|(_, v)| v.into_owned());
    let raw = from_query.or_else(|| {
        let mut segs = url.path_segments()?;
        segs.by_ref().find(|s| *s == "expire")?;
        segs.next().map(str::to_owned)
    })?;
    let secs: u64 = raw.trim().parse().ok()?;
    // Reject absurd values (beyond year ~2500) instead of overflowing.
    if secs > 16_725_225_600 {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track() -> Track {
        Track {
            title: "t".into(),
            page_url: "https://example.com/p".into(),
            stream_url: "https://example.com/s".into(),
            http_headers: vec![],
            duration: Some(Duration::from_secs(10)),
            extractor: "youtube".into(),
            id: "abc".into(),
            is_live: false,
            uploader: None,
            thumbnail: None,
            ext: None,
            acodec: None,
            stream_expires: None,
        }
    }

    #[test]
    fn expire_query_param() {
        let t = parse_stream_expiry(
            "https://rr1---sn-x.googlevideo.com/videoplayback?expire=1700000000&ei=x&ip=1.2.3.4",
        );
        assert_eq!(
            t,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }

    #[test]
    fn expire_path_segment() {
        let t = parse_stream_expiry(
            "https://manifest.googlevideo.com/api/manifest/hls_playlist/expire/1700000123/ei/x/index.m3u8",
        );
        assert_eq!(
            t,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_123))
        );
    }

    #[test]
    fn expire_absent_or_bad() {
        assert_eq!(parse_stream_expiry("http://127.0.0.1:8000/tone.wav"), None);
        assert_eq!(parse_stream_expiry("https://x/v?expire=soon"), None);
        assert_eq!(parse_stream_expiry("https://x/v?expire=-5"), None);
        assert_eq!(
            parse_stream_expiry("https://x/v?expire=99999999999999999999"),
            None
        );
        assert_eq!(parse_stream_expiry("https://x/v?noexpire=5"), None);
        assert_eq!(parse_stream_expiry("not a url"), None);
        assert_eq!(parse_stream_expiry(""), None);
    }

    #[test]
    fn cache_key_and_hints() {
        let mut t = track();
        assert_eq!(t.cache_key(), "youtube:abc");
        assert!(t.seekable_hint());
        assert!(t.is_resolved());
        assert!(!t.needs_refresh(SystemTime::now(), Duration::from_secs(60)));
        t.is_live = true;
        assert!(!t.seekable_hint());
        t.is_live = false;
        t.duration = None;
        assert!(!t.seekable_hint());
        t.stream_expires = Some(SystemTime::now() + Duration::from_secs(30));
        assert!(t.needs_refresh(SystemTime::now(), Duration::from_secs(60)));
        t.stream_url.clear();
        assert!(!t.is_resolved());
        assert!(t.needs_refresh(SystemTime::now(), Duration::ZERO));
    }

    #[test]
    fn serde_round_trip() {
        let mut t = track();
        t.http_headers = vec![("User-Agent".into(), "x".into())];
        t.stream_expires = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(5));
        let s = serde_json::to_string(&t).unwrap();
        let back: Track = serde_json::from_str(&s).unwrap();
        assert_eq!(back, t);
    }
}
