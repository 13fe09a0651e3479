//! Links from the streaming services: Spotify (track, album, playlist, an artist's top
//! tracks), Apple Music (song, album, playlist) and Deezer (track, album, playlist).
//!
//! Nothing here needs credentials. A link is read from the service's public pages or API
//! into [`WantedTrack`]s (title, artists, length), and each is then looked for on a source
//! yt-dlp plays ([`Links::find`]): a search listed flat, the closest result by length,
//! an audio upload before a music video (`matching.rs`).
//!
//! - `spotify.rs`: the embed page's `__NEXT_DATA__` JSON;
//! - `apple.rs`: the page's schema.org JSON-LD;
//! - `deezer.rs`: the public API's JSON;
//! - `fetch.rs`: the HTTP side (the guarded client, time and size limits);
//! - `matching.rs`: the search and the choice of a result;
//! - `wanted.rs`: what a link lists.
//!
//! Every request goes through the bot's guarded client, so the egress policy holds; the
//! bases are configurable (`[links]`), which is how the tests serve the pages.

mod apple;
mod deezer;
mod fetch;
pub mod matching;
mod spotify;
mod wanted;

/// A file of `tests/fixtures/links/`, for the readers' unit tests.
#[cfg(test)]
fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/links/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

use std::time::Duration;

use url::Url;

pub use fetch::LinkError;
pub use matching::SearchTemplate;
pub use wanted::{Listing, Service, WantedTrack};

use crate::sources::egress::client::GuardedClient;
use crate::sources::error::ResolveError;
use crate::sources::track::Track;
use crate::sources::ytdlp::YtDlp;

/// A streaming-service link the bot reads itself (it is never handed to yt-dlp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub service: Service,
    /// `track`, `album`, `playlist`, `artist` (Spotify), `song` (Apple Music).
    pub kind: String,
    pub id: String,
    /// The link as given (without a fragment), for replies.
    pub url: Url,
    /// Apple Music: the page path (`/us/album/name/123`) and the song picked with `?i=`.
    path: String,
    song: Option<String>,
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Link {
    /// The link in `text`, if it is one of the services' (by host and path; the host is
    /// never contacted: the configured bases are).
    pub fn detect(text: &str) -> Option<Link> {
        let mut url = Url::parse(text.trim()).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        url.set_fragment(None);
        let host = url.host_str()?.to_ascii_lowercase();
        let segs: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
        let link = |service, kind: &str, id: &str| Link {
            service,
            kind: kind.to_owned(),
            id: id.to_owned(),
            url: url.clone(),
            path: String::new(),
            song: None,
        };
        match host.as_str() {
            "open.spotify.com" => {
                // `/intl-de/track/ID` and `/embed/track/ID` are the same track.
                let segs: Vec<&str> = segs
                    .into_iter()
                    .skip_while(|s| s.starts_with("intl-") || *s == "embed")
                    .collect();
                match segs.as_slice() {
                    [kind @ ("track" | "album" | "playlist" | "artist"), id, ..] if is_id(id) => {
                        Some(link(Service::Spotify, kind, id))
                    }
                    _ => None,
                }
            }
            "music.apple.com" => match segs.as_slice() {
                [cc, kind @ ("album" | "playlist" | "song"), rest @ ..]
                    if cc.len() == 2 && !rest.is_empty() && rest.len() <= 2 =>
                {
                    let id = rest[rest.len() - 1];
                    let id_ok = id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
                    if id.is_empty() || id.len() > 64 || !id_ok {
                        return None;
                    }
                    let mut l = link(Service::AppleMusic, kind, id);
                    l.path = url.path().to_owned();
                    l.song = url
                        .query_pairs()
                        .find(|(k, _)| k == "i")
                        .map(|(_, v)| v.into_owned())
                        .filter(|v| is_id(v));
                    Some(l)
                }
                _ => None,
            },
            "deezer.com" | "www.deezer.com" => {
                let segs: Vec<&str> = segs.into_iter().skip_while(|s| s.len() == 2).collect();
                match segs.as_slice() {
                    [kind @ ("track" | "album" | "playlist"), id]
                        if !id.is_empty()
                            && id.len() <= 20
                            && id.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        Some(link(Service::Deezer, kind, id))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// `a Spotify playlist`, for replies.
    pub fn describe(&self) -> String {
        let kind = match self.kind.as_str() {
            "artist" => "artist's top tracks",
            k => k,
        };
        format!("{} {kind}", self.service.name())
    }
}

/// Reads links and finds their tracks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Links {
    http: GuardedClient,
    ytdlp: YtDlp,
    spotify: Url,
    apple: Url,
    deezer: Url,
    search: SearchTemplate,
    tolerance: Duration,
    pub concurrency: usize,
    pub max_tracks: usize,
    timeout: Duration,
}

impl Links {
    /// From `[links]` (checked at start-up, so the bases parse).
    pub fn new(
        http: GuardedClient,
        ytdlp: YtDlp,
        cfg: &crate::config::LinksConfig,
    ) -> Result<Links, String> {
        let base = |s: &str| Url::parse(s).map_err(|e| format!("{s}: {e}"));
        Ok(Links {
            http,
            ytdlp,
            spotify: base(&cfg.spotify_base)?,
            apple: base(&cfg.apple_music_base)?,
            deezer: base(&cfg.deezer_api_base)?,
            search: SearchTemplate::parse(&cfg.search)?,
            tolerance: cfg.tolerance,
            concurrency: cfg.concurrency.max(1),
            max_tracks: cfg.max_tracks.max(1),
            timeout: cfg.timeout,
        })
    }

    /// What `link` lists, at most `max` tracks plus one (to know whether there were more).
    pub async fn read(&self, link: &Link, max: usize) -> Result<Listing, LinkError> {
        let fetcher = fetch::Fetcher {
            http: &self.http,
            service: link.service,
            timeout: self.timeout,
        };
        let malformed = |why: String| LinkError::Malformed(link.service, why);
        let listing = match link.service {
            Service::Spotify => {
                let url = fetch::join(&self.spotify, &["embed", &link.kind, &link.id]);
                spotify::parse_embed(&fetcher.text(url).await?).map_err(malformed)?
            }
            Service::AppleMusic => {
                let mut url = self.apple.clone();
                let base = url.path().trim_end_matches('/').to_owned();
                url.set_path(&format!("{base}{}", link.path));
                apple::parse_page(&fetcher.text(url).await?, link.song.as_deref())
                    .map_err(malformed)?
            }
            Service::Deezer => {
                let url = fetch::join(&self.deezer, &[&link.kind, &link.id]);
                deezer::read(&fetcher, url, &link.kind, max + 1).await?
            }
        };
        if listing.tracks.is_empty() {
            return Err(LinkError::Empty(link.service));
        }
        Ok(listing)
    }

    /// The result that plays `wanted`, unresolved (its page URL is looked up when queued);
    /// `None` when no result is close enough.
    pub async fn find(&self, wanted: &WantedTrack) -> Result<Option<Track>, ResolveError> {
        let target = self.search.target(&wanted.query())?;
        let listed = self.ytdlp.list_flat(&target, matching::RESULTS).await?;
        let candidates = matching::candidates(&listed, self.ytdlp.policy());
        let Some(pick) = matching::choose(wanted, &candidates, self.tolerance) else {
            tracing::info!(wanted = %wanted.query(), results = candidates.len(), "no close match");
            return Ok(None);
        };
        Ok(Some(candidates[pick].to_track()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_recognised_by_service_kind_and_id() {
        let l = Link::detect("https://open.spotify.com/playlist/37i9dQZF1DXcBWIGoYBM5M?si=abc")
            .unwrap();
        assert_eq!(
            (l.service, l.kind.as_str(), l.id.as_str()),
            (Service::Spotify, "playlist", "37i9dQZF1DXcBWIGoYBM5M")
        );
        let l =
            Link::detect("https://open.spotify.com/intl-de/artist/0OdUWJ0sBjDrqHygGUXeCF").unwrap();
        assert_eq!(
            (l.kind.as_str(), l.describe().as_str()),
            ("artist", "Spotify artist's top tracks")
        );
        let l = Link::detect("https://music.apple.com/us/album/abbey-road/1441164426?i=1441164430")
            .unwrap();
        assert_eq!(
            (l.service, l.kind.as_str(), l.id.as_str(), l.song.as_deref()),
            (
                Service::AppleMusic,
                "album",
                "1441164426",
                Some("1441164430")
            )
        );
        assert_eq!(l.path, "/us/album/abbey-road/1441164426");
        let l = Link::detect(
            "https://music.apple.com/gb/playlist/todays-hits/pl.f4d106fed2bd41149aaacabb233eb5eb",
        )
        .unwrap();
        assert_eq!(l.id, "pl.f4d106fed2bd41149aaacabb233eb5eb");
        let l = Link::detect("https://www.deezer.com/en/album/302127").unwrap();
        assert_eq!(
            (l.service, l.kind.as_str(), l.id.as_str()),
            (Service::Deezer, "album", "302127")
        );
        for no in [
            "https://www.youtube.com/watch?v=abc",
            "https://open.spotify.com/user/someone",
            "https://open.spotify.com/track/../../admin",
            "https://www.deezer.com/en/track/12a",
            "https://music.apple.com/us/artist/x/1",
            "spotify:track:abc",
            "some words",
        ] {
            assert_eq!(Link::detect(no), None, "{no}");
        }
    }

    #[test]
    fn every_cut_short_page_is_read_or_refused_without_a_panic() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/links");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let page = std::fs::read_to_string(&path).unwrap();
            let parse = |text: &str| -> Option<usize> {
                let tracks = if name.starts_with("spotify") {
                    spotify::parse_embed(text).ok()?.tracks
                } else if name.starts_with("apple") {
                    apple::parse_page(text, None).ok()?.tracks
                } else if name == "deezer-playlist-tracks.json" {
                    deezer::parse_page(text).ok()?.0
                } else if name.starts_with("deezer") {
                    let kind = name.trim_start_matches("deezer-").trim_end_matches(".json");
                    deezer::parse(text, kind).ok()?.0.tracks
                } else {
                    return None;
                };
                assert!(tracks.iter().all(|t| !t.title.trim().is_empty()), "{name}");
                Some(tracks.len())
            };
            if name.ends_with(".md") {
                continue;
            }
            assert!(parse(&page).is_some_and(|n| n > 0), "{name} is read whole");
            for cut in (0..page.len()).step_by(5) {
                if page.is_char_boundary(cut) {
                    parse(&page[..cut]);
                }
            }
        }
    }

    #[test]
    fn a_wanted_track_is_searched_as_artists_and_title() {
        let w = WantedTrack {
            title: "Song".into(),
            artists: vec!["A".into(), "B".into()],
            duration: None,
        };
        assert_eq!(w.query(), "A, B - Song");
    }
}
