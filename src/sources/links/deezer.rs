//! Deezer's public API (`https://api.deezer.com`, no key): `GET /track/{id}`,
//! `/album/{id}` and `/playlist/{id}`. A track is `{title, duration (s), artist: {name}}`;
//! an album and a playlist carry `tracks: {data: [track…]}`, and a long playlist's list
//! goes on at `tracks.next` (pages of `{data, next}`). An unknown id is answered `200` with
//! `{"error": {"type": "DataException", "code": 800, …}}`.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::fetch::{Fetcher, LinkError};
use super::wanted::{Listing, Service, WantedTrack};

/// Most further pages of a playlist followed.
const MAX_PAGES: usize = 40;

/// Reads `url` (a track, album or playlist) and follows a playlist's pages until `want`
/// tracks are listed. A `next` page elsewhere than the API's own origin is not followed.
pub(super) async fn read(
    fetcher: &Fetcher<'_>,
    url: Url,
    kind: &str,
    want: usize,
) -> Result<Listing, LinkError> {
    let malformed = |why: String| LinkError::Malformed(Service::Deezer, why);
    let origin = url.origin();
    let body = fetcher.text(url).await?;
    let (mut listing, mut next) = parse(&body, kind).map_err(|e| match e {
        Parsed::Missing => LinkError::NotFound(Service::Deezer),
        Parsed::Bad(why) => malformed(why),
    })?;
    let mut pages = 0;
    while let Some(page) = next.take() {
        if listing.tracks.len() >= want || pages >= MAX_PAGES {
            break;
        }
        let Some(page) = same_origin(&origin, &page) else {
            tracing::warn!(next = %page, "Deezer's next page is elsewhere; not followed");
            break;
        };
        pages += 1;
        let body = fetcher.text(page).await?;
        let (more, after) = parse_page(&body).map_err(malformed)?;
        listing.tracks.extend(more);
        next = after;
    }
    listing.tracks.truncate(want);
    Ok(listing)
}

/// `next` as a URL, when it is on the API's own `origin` (scheme, host and port).
fn same_origin(origin: &url::Origin, next: &str) -> Option<Url> {
    Url::parse(next).ok().filter(|u| u.origin() == *origin)
}

#[derive(Debug, PartialEq)]
pub(super) enum Parsed {
    /// Deezer's `DataException`: no such track, album or playlist.
    Missing,
    Bad(String),
}

fn json(body: &str) -> Result<Value, Parsed> {
    let v: Value =
        serde_json::from_str(body).map_err(|_| Parsed::Bad("the answer is not JSON".into()))?;
    if let Some(err) = v.get("error") {
        let code = err.get("code").and_then(Value::as_i64);
        return Err(match code {
            Some(800) => Parsed::Missing,
            _ => Parsed::Bad(format!(
                "Deezer said: {}",
                err.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("an error")
            )),
        });
    }
    Ok(v)
}

fn track(t: &Value) -> Option<WantedTrack> {
    let title = t.get("title").and_then(Value::as_str)?.trim();
    if title.is_empty() {
        return None;
    }
    let artist = t
        .pointer("/artist/name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|a| !a.is_empty());
    Some(WantedTrack {
        title: title.to_owned(),
        artists: artist.into_iter().map(str::to_owned).collect(),
        duration: t
            .get("duration")
            .and_then(Value::as_u64)
            .map(Duration::from_secs),
    })
}

/// A track, album or playlist object: its listing and the next page of its tracks.
pub(super) fn parse(body: &str, kind: &str) -> Result<(Listing, Option<String>), Parsed> {
    let v = json(body)?;
    let title = v
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("Deezer")
        .to_owned();
    if kind == "track" {
        let t = track(&v).ok_or_else(|| Parsed::Bad("the track has no title".into()))?;
        return Ok((
            Listing {
                title,
                tracks: vec![t],
            },
            None,
        ));
    }
    let tracks = v
        .get("tracks")
        .ok_or_else(|| Parsed::Bad(format!("the {kind} has no track list")))?;
    let (tracks, next) = page(tracks).map_err(Parsed::Bad)?;
    Ok((Listing { title, tracks }, next))
}

/// One page of tracks (`{data: [...], next}`).
pub(super) fn parse_page(body: &str) -> Result<(Vec<WantedTrack>, Option<String>), String> {
    match json(body) {
        Ok(v) => page(&v),
        Err(Parsed::Missing) => Err("a page of the list is missing".into()),
        Err(Parsed::Bad(why)) => Err(why),
    }
}

fn page(v: &Value) -> Result<(Vec<WantedTrack>, Option<String>), String> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("the track list has no data")?;
    let next = v.get("next").and_then(Value::as_str).map(str::to_owned);
    Ok((data.iter().filter_map(track).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn an_album_lists_its_tracks() {
        let (l, next) = parse(&fixture("deezer-album.json"), "album").unwrap();
        assert_eq!(l.title, "Tone Album");
        assert_eq!(next, None);
        let got: Vec<(&str, &str, Option<Duration>)> = l
            .tracks
            .iter()
            .map(|t| (t.title.as_str(), t.artists[0].as_str(), t.duration))
            .collect();
        assert_eq!(
            got,
            [
                ("Zeta", "Test Artist", Some(Duration::from_secs(4))),
                ("Eta", "Test Artist", Some(Duration::from_secs(5))),
            ]
        );
    }

    #[test]
    fn a_playlist_goes_on_at_next() {
        let (l, next) = parse(&fixture("deezer-playlist.json"), "playlist").unwrap();
        assert_eq!(l.tracks.len(), 2);
        assert_eq!(
            next.as_deref(),
            Some("{base}/playlist/908622995/tracks?index=2")
        );
        let (more, after) = parse_page(&fixture("deezer-playlist-tracks.json")).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].title, "Iota");
        assert_eq!(after, None);
    }

    #[test]
    fn only_next_pages_on_the_api_itself_are_followed() {
        let api = Url::parse("https://api.deezer.com/playlist/1")
            .unwrap()
            .origin();
        let next = "https://api.deezer.com/playlist/1/tracks?index=25";
        assert_eq!(same_origin(&api, next).unwrap().as_str(), next);
        for elsewhere in [
            "http://api.deezer.com/playlist/1/tracks?index=25",
            "https://api.deezer.com:8443/playlist/1/tracks",
            "https://169.254.169.254/latest/meta-data/",
            "https://api.deezer.com.evil.example/x",
            "/playlist/1/tracks?index=25",
        ] {
            assert_eq!(same_origin(&api, elsewhere), None, "{elsewhere}");
        }
    }

    #[test]
    fn a_track_and_the_errors() {
        let (l, _) = parse(&fixture("deezer-track.json"), "track").unwrap();
        assert_eq!(l.tracks[0].title, "Zeta");
        assert_eq!(l.tracks[0].duration, Some(Duration::from_secs(4)));
        let missing = r#"{"error":{"type":"DataException","message":"no data","code":800}}"#;
        assert_eq!(parse(missing, "album").unwrap_err(), Parsed::Missing);
        assert!(matches!(parse("<html>", "album"), Err(Parsed::Bad(_))));
        assert!(matches!(
            parse(r#"{"title":"x"}"#, "album"),
            Err(Parsed::Bad(_))
        ));
    }
}
