//! Reading yt-dlp's JSON info into [`Track`]s: one entry from `-j`, a flat playlist from
//! `-J`, and the `pre_process` line that says why `--match-filters` rejected an entry.
//!
//! yt-dlp's output is not trusted: every field is optional and a field of the wrong type
//! reads as absent ([`lenient`]), and the stream URL it returns is checked against the
//! same [`UrlPolicy`](crate::sources::UrlPolicy) as the user's input before it is used.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use url::Url;

use super::args::PRE_MARK;
use super::client::YtDlp;
use super::run::map_failure;
use crate::sources::egress::policy::check_url_static;
use crate::sources::egress::resolve::check_url;
use crate::sources::error::ResolveError;
use crate::sources::process::RunOutput;
use crate::sources::track::{parse_stream_expiry, Track};

impl YtDlp {
    /// Parses a `-j` run (the optional pre-process line, then one JSON object).
    pub(super) async fn single_from_output(
        &self,
        out: &RunOutput,
        input_url: Option<&Url>,
    ) -> Result<(Track, serde_json::Value), ResolveError> {
        if !out.status.success() {
            return Err(map_failure(out));
        }
        self.single_from_stdout(&out.stdout, input_url).await
    }

    /// What a successful `-j` run printed, read into a track. Pure but for the stream URL's
    /// DNS check (none when private hosts are allowed); public so that `fuzz/` can feed it
    /// any bytes.
    pub async fn single_from_stdout(
        &self,
        stdout: &[u8],
        input_url: Option<&Url>,
    ) -> Result<(Track, serde_json::Value), ResolveError> {
        let (pre, json) = split_stdout(stdout);
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
            match pre.duration.and_then(secs_to_duration) {
                Some(actual) if actual >= limit => return ResolveError::TooLong { limit, actual },
                Some(_) => {}
                None => return ResolveError::UnknownLength { limit },
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
        check_url(&parsed, self.policy())
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
        if raw
            .protocol
            .as_deref()
            .is_some_and(|p| !matches!(p, "http" | "https"))
        {
            return Err(ResolveError::Segmented);
        }
        let is_live = raw.is_live();
        if let Some(limit) = self.inner.cfg.max_duration {
            if is_live {
                return Err(ResolveError::Live);
            }
            // Unknown length counts as live: it may never end, and nothing bounds it then.
            match raw.duration.and_then(secs_to_duration) {
                Some(actual) if actual >= limit => {
                    return Err(ResolveError::TooLong { limit, actual })
                }
                Some(_) => {}
                None => return Err(ResolveError::UnknownLength { limit }),
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
        // A blank id would be the whole cache key's id: every such track of the extractor
        // would share one entry, and with no title the track would show blank.
        let id = raw
            .id
            .filter(|i| !i.trim().is_empty())
            .unwrap_or_else(|| page_url.clone());
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

    pub(super) async fn playlist_from_output(
        &self,
        out: &RunOutput,
        url: &Url,
        limit: usize,
    ) -> Result<(String, Vec<Track>), ResolveError> {
        if !out.status.success() {
            return Err(map_failure(out));
        }
        self.playlist_from_stdout(&out.stdout, url, limit).await
    }

    /// What a successful `-J` run printed: the playlist's title and at most `limit`
    /// unresolved entries (or the one resolved track of a plain URL). Public so that
    /// `fuzz/` can feed it any bytes.
    pub async fn playlist_from_stdout(
        &self,
        stdout: &[u8],
        url: &Url,
        limit: usize,
    ) -> Result<(String, Vec<Track>), ResolveError> {
        let (pre, json) = split_stdout(stdout);
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
            .find(|u| check_url_static(u, self.policy()).is_ok())?;
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
        let id =
            e.id.filter(|i| !i.trim().is_empty())
                .unwrap_or_else(|| page_url.clone());
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
    /// How the chosen format is fetched: `http`/`https` for one file, `m3u8_native`,
    /// `http_dash_segments`, ... for a playlist of segments.
    #[serde(deserialize_with = "lenient")]
    protocol: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::egress::policy::UrlPolicy;
    use crate::sources::ytdlp::tests::ytdlp;

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
        // No length at all: refused as "no known length", never "not found".
        assert_eq!(
            y.rejected(Some(&PreInfo::default())),
            ResolveError::UnknownLength {
                limit: Duration::from_secs(600)
            }
        );
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
        let y2 = YtDlp::new(y.inner.cfg.clone(), UrlPolicy::ALLOW_PRIVATE);
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
        // A format in segments (HLS, DASH) cannot be streamed with range requests.
        for protocol in ["m3u8_native", "m3u8", "http_dash_segments"] {
            let v = serde_json::json!({"url": "http://8.8.8.8/a.m3u8", "ext": "mp4", "protocol": protocol});
            assert_eq!(
                y2.resolved_track(RawInfo::deserialize(&v).unwrap(), None)
                    .await,
                Err(ResolveError::Segmented),
                "{protocol}"
            );
        }
        let v = serde_json::json!({"url": "https://8.8.8.8/a.mp3", "ext": "mp3", "protocol": "https", "duration": 3});
        assert!(y2
            .resolved_track(RawInfo::deserialize(&v).unwrap(), None)
            .await
            .is_ok());
        // Too long / live under a limit.
        let y3 = YtDlp::new(
            ytdlp(Some(Duration::from_secs(60))).inner.cfg.clone(),
            UrlPolicy::ALLOW_PRIVATE,
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
        // A stream of unknown length (a radio not flagged live) is refused under a limit.
        let v: serde_json::Value =
            serde_json::from_str(r#"{"url":"http://8.8.8.8/radio.mp3","ext":"mp3"}"#).unwrap();
        assert_eq!(
            y3.resolved_track(RawInfo::deserialize(&v).unwrap(), None)
                .await,
            Err(ResolveError::UnknownLength {
                limit: Duration::from_secs(60)
            })
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
        // A blank id (found by fuzz/ytdlp_info) is no id: the page URL keys the cache and
        // names the track, instead of one blank key and a blank title for all such tracks.
        let v: serde_json::Value =
            serde_json::from_str(r#"{"url":"http://8.8.8.8/a.mp3","ext":"mp3","id":" "}"#).unwrap();
        let t = y2
            .resolved_track(RawInfo::deserialize(&v).unwrap(), None)
            .await
            .unwrap();
        assert_eq!(t.id, "http://8.8.8.8/a.mp3");
        assert_eq!(t.title, "http://8.8.8.8/a.mp3");
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
        let v: serde_json::Value =
            serde_json::from_str(r#"{"url":"https://www.youtube.com/watch?v=a5","id":""}"#)
                .unwrap();
        let t = y.entry_track(RawInfo::deserialize(&v).unwrap()).unwrap();
        assert_eq!(t.title, "https://www.youtube.com/watch?v=a5");
        assert_eq!(t.cache_key(), "unknown:https://www.youtube.com/watch?v=a5");
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
}
