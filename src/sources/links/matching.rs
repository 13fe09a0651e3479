//! Finding a wanted track on a source yt-dlp plays: one search listed flat
//! ([`YtDlp::list_flat`](crate::sources::YtDlp::list_flat)), then the bot's own choice
//! among the results ([`choose`]): only a result whose length is within the tolerance of
//! the track's, and among those an audio upload (a YouTube " - Topic" channel, "Official
//! Audio", "Provided to YouTube by …") before anything else, a music video last; then the
//! closest length, then the search's own order.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::wanted::WantedTrack;
use crate::sources::egress::policy::{check_url_static, UrlPolicy};
use crate::sources::error::ResolveError;
use crate::sources::track::Track;
use crate::sources::ytdlp::FlatTarget;

/// Results listed per search.
pub const RESULTS: usize = 5;

/// `links.search`: a yt-dlp search prefix (`ytsearch5:{query}`), or an http(s) URL template
/// whose results page yt-dlp lists (`https://host/search.rss?q={query}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchTemplate {
    /// The prefix before `{query}` (`ytsearch5:`).
    Prefix(String),
    /// The URL text around `{query}`.
    Url(String, String),
}

const PLACEHOLDER: &str = "{query}";

impl SearchTemplate {
    pub fn parse(s: &str) -> Result<SearchTemplate, String> {
        let s = s.trim();
        let Some((before, after)) = s.split_once(PLACEHOLDER) else {
            return Err(format!("must contain {PLACEHOLDER}"));
        };
        if after.contains(PLACEHOLDER) {
            return Err(format!("must contain {PLACEHOLDER} once"));
        }
        if before.starts_with("http://") || before.starts_with("https://") {
            let sample = format!("{before}x{after}");
            let u = Url::parse(&sample).map_err(|e| format!("not a URL: {e}"))?;
            if u.cannot_be_a_base() || u.username() != "" || u.password().is_some() {
                return Err("must be a plain http(s) URL".into());
            }
            return Ok(SearchTemplate::Url(before.to_owned(), after.to_owned()));
        }
        // `ytsearch5:`, `scsearch3:`: letters, digits, then a colon, and nothing after.
        let prefix_ok = before.ends_with(':')
            && before.len() > 1
            && before[..before.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
            && before.contains("search");
        if !prefix_ok || !after.is_empty() {
            return Err(
                "must be a yt-dlp search prefix (ytsearch5:{query}) or an http(s) URL".into(),
            );
        }
        Ok(SearchTemplate::Prefix(before.to_owned()))
    }

    /// What yt-dlp lists for `query`. In a URL the query is percent-encoded whole, so it
    /// can never become another parameter, path or host; a prefix search keeps it as the
    /// one argument after `--`.
    pub fn target(&self, query: &str) -> Result<FlatTarget, ResolveError> {
        let query: String = query
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let query = query.trim();
        if query.is_empty() {
            return Err(ResolveError::EmptyQuery);
        }
        match self {
            SearchTemplate::Prefix(p) => Ok(FlatTarget::Search(format!("{p}{query}"))),
            SearchTemplate::Url(before, after) => {
                let encoded: String =
                    url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
                let url = Url::parse(&format!("{before}{encoded}{after}"))
                    .map_err(|_| ResolveError::InvalidUrl)?;
                Ok(FlatTarget::Url(url))
            }
        }
    }
}

/// One search result, as the flat listing gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub url: Url,
    pub title: String,
    pub duration: Option<Duration>,
    /// `channel` or `uploader`.
    pub channel: String,
    pub description: String,
    pub extractor: String,
    pub id: String,
}

impl Candidate {
    /// Where it is played from: an entry not looked up yet, resolved when it is queued.
    pub fn to_track(&self) -> Track {
        Track {
            title: self.title.clone(),
            page_url: self.url.to_string(),
            stream_url: String::new(),
            http_headers: Vec::new(),
            duration: self.duration,
            extractor: self.extractor.clone(),
            id: self.id.clone(),
            is_live: false,
            uploader: (!self.channel.is_empty()).then(|| self.channel.clone()),
            thumbnail: None,
            ext: None,
            acodec: None,
            stream_expires: None,
        }
    }

    /// 2: an audio upload, 1: anything else, 0: a music video.
    fn kind_rank(&self) -> u8 {
        let title = self.title.to_lowercase();
        let audio = self.channel.ends_with(" - Topic")
            || title.contains("official audio")
            || title.contains("(audio)")
            || title.contains("[audio]")
            || self.description.contains("Provided to YouTube by");
        let video = title.contains("official video")
            || title.contains("music video")
            || title.contains("(video)")
            || title.contains("[video]")
            || title.contains("official mv");
        match (audio, video) {
            (true, _) => 2,
            (false, true) => 0,
            _ => 1,
        }
    }
}

/// The entries of yt-dlp's flat JSON that can be played: an http(s) URL the policy
/// accepts (a fragment, such as yt-dlp's smuggled data, is dropped), and a title.
pub fn candidates(listed: &Value, policy: &UrlPolicy) -> Vec<Candidate> {
    let entries = listed
        .get("entries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let text = |e: &Value, k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    entries
        .iter()
        .filter(|e| e.get("_type").and_then(Value::as_str) != Some("playlist"))
        .filter_map(|e| {
            let mut url = ["url", "webpage_url"]
                .iter()
                .filter_map(|k| e.get(*k).and_then(Value::as_str))
                .filter_map(|u| Url::parse(u).ok())
                .find(|u| check_url_static(u, policy).is_ok())?;
            url.set_fragment(None);
            let title = text(e, "title");
            if title.is_empty() || e.get("is_live").and_then(Value::as_bool) == Some(true) {
                return None;
            }
            let channel = [text(e, "channel"), text(e, "uploader")]
                .into_iter()
                .find(|c| !c.is_empty())
                .unwrap_or_default();
            let extractor = [text(e, "ie_key"), text(e, "extractor_key")]
                .into_iter()
                .find(|c| !c.is_empty())
                .unwrap_or_else(|| "generic".into())
                .to_lowercase();
            let id = Some(text(e, "id"))
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| url.to_string());
            Some(Candidate {
                duration: e
                    .get("duration")
                    .and_then(Value::as_f64)
                    .filter(|d| d.is_finite() && *d > 0.0 && *d < 1e7)
                    .map(Duration::from_secs_f64),
                title,
                channel,
                description: text(e, "description"),
                extractor,
                id,
                url,
            })
        })
        .collect()
}

/// The index of the result that plays `wanted`, `None` when none is close enough. A track
/// of unknown length takes the first audio upload, else the first result.
pub fn choose(wanted: &WantedTrack, found: &[Candidate], tolerance: Duration) -> Option<usize> {
    let gap = |c: &Candidate| match (wanted.duration, c.duration) {
        (Some(w), Some(d)) => Some(w.abs_diff(d)),
        (None, _) => Some(Duration::ZERO),
        (Some(_), None) => None,
    };
    found
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            gap(c)
                .filter(|g| *g <= tolerance)
                .map(|g| (i, g, c.kind_rank()))
        })
        .max_by(|a, b| a.2.cmp(&b.2).then(b.1.cmp(&a.1)).then(b.0.cmp(&a.0)))
        .map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(secs: u64) -> WantedTrack {
        WantedTrack {
            title: "Song".into(),
            artists: vec!["Artist".into()],
            duration: Some(Duration::from_secs(secs)),
        }
    }

    fn cand(title: &str, channel: &str, secs: u64) -> Candidate {
        Candidate {
            url: Url::parse(&format!("https://www.youtube.com/watch?v={}", title.len())).unwrap(),
            title: title.into(),
            duration: Some(Duration::from_secs(secs)),
            channel: channel.into(),
            description: String::new(),
            extractor: "youtube".into(),
            id: title.into(),
        }
    }

    const TOL: Duration = Duration::from_secs(3);

    #[test]
    fn an_audio_upload_within_tolerance_is_preferred_over_a_video() {
        let found = [
            cand("Artist - Song (Official Music Video)", "ArtistVEVO", 213),
            cand("Song", "Artist - Topic", 211),
            cand("Song (Live at Wembley)", "Fan", 300),
        ];
        assert_eq!(choose(&wanted(213), &found, TOL), Some(1));
        // The audio upload 5 s off is out: the video within tolerance is taken.
        let found = [
            cand("Artist - Song (Official Video)", "ArtistVEVO", 214),
            cand("Song", "Artist - Topic", 218),
        ];
        assert_eq!(choose(&wanted(213), &found, TOL), Some(0));
        // Among plain results, the closest length.
        let found = [cand("Song a", "x", 215), cand("Song b", "y", 213)];
        assert_eq!(choose(&wanted(213), &found, TOL), Some(1));
        // "Provided to YouTube by" in the description is an audio upload too.
        let mut provided = cand("Song", "Label", 212);
        provided.description = "Provided to YouTube by Label\n\nSong · Artist".into();
        let found = [cand("Artist - Song", "x", 213), provided];
        assert_eq!(choose(&wanted(213), &found, TOL), Some(1));
    }

    #[test]
    fn nothing_within_tolerance_is_no_match() {
        let found = [
            cand("Song (Official Audio)", "x", 220),
            cand("Song", "Artist - Topic", 100),
        ];
        assert_eq!(choose(&wanted(213), &found, TOL), None);
        assert_eq!(choose(&wanted(213), &[], TOL), None);
        let mut unknown = cand("Song", "Artist - Topic", 0);
        unknown.duration = None;
        assert_eq!(
            choose(&wanted(213), &[unknown], TOL),
            None,
            "a length is needed"
        );
    }

    #[test]
    fn the_query_never_escapes_its_place() {
        let t = SearchTemplate::parse("http://127.0.0.1:9/search.rss?q={query}&n=5").unwrap();
        let FlatTarget::Url(u) = t.target("AC/DC - Back & Forth?x=1#frag").unwrap() else {
            panic!("a URL")
        };
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:9/search.rss?q=AC%2FDC+-+Back+%26+Forth%3Fx%3D1%23frag&n=5"
        );
        assert_eq!(u.query_pairs().count(), 2);
        let t = SearchTemplate::parse("ytsearch5:{query}").unwrap();
        assert_eq!(
            t.target("--exec x").unwrap(),
            FlatTarget::Search("ytsearch5:--exec x".into())
        );
        for bad in [
            "ytsearch5:",
            "file:///{query}",
            "{query}",
            "--exec {query}",
            "ytsearch5:{query} x",
        ] {
            assert!(SearchTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rss_results_as_yt_dlp_lists_them() {
        // What the real yt-dlp printed (`--flat-playlist -J`) for an RSS results page.
        let listed: Value = serde_json::from_str(
            r#"{"_type":"playlist","title":"Search results","entries":[
              {"_type":"url_transparent","url":"http://127.0.0.1:8765/a.wav#__youtubedl_smuggle=%7B%22force_videoid%22%3A+%22a%22%7D","title":"Artist - Song (Official Video)","description":null,"duration":215},
              {"_type":"url_transparent","url":"http://127.0.0.1:8765/b.wav","title":"Song","description":"Provided to YouTube by Label","duration":213},
              {"_type":"url_transparent","url":"file:///etc/passwd","title":"x","duration":213}]}"#,
        )
        .unwrap();
        let c = candidates(&listed, &UrlPolicy::ALLOW_PRIVATE);
        assert_eq!(c.len(), 2, "the file: entry is dropped");
        assert_eq!(c[0].url.as_str(), "http://127.0.0.1:8765/a.wav");
        assert_eq!(choose(&wanted(213), &c, TOL), Some(1));
        assert!(candidates(&listed, &UrlPolicy::DENY_PRIVATE).is_empty());
    }
}
