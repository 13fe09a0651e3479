//! Apple Music's public pages (`https://music.apple.com/{country}/{album|playlist|song}/…`):
//! no login, and each carries schema.org JSON-LD in `<script type="application/ld+json">`:
//! a `MusicAlbum` with `tracks`, a `MusicPlaylist` with `track`, or a song's
//! `MusicRecording` (on its own, or as the `audio` of a `MusicComposition`). A recording has
//! `name`, `duration` (ISO 8601, `PT3M33S`), `url` and often `byArtist`; an album's
//! artists stand for its tracks' when a track names none.

use std::time::Duration;

use scraper::{Html, Selector};
use serde_json::Value;

use super::wanted::{Listing, WantedTrack};

/// The tracks of a page; `song`: only the recording whose URL ends in that id (an album
/// link with `?i=`).
pub fn parse_page(html: &str, song: Option<&str>) -> Result<Listing, String> {
    let doc = Html::parse_document(html);
    let select =
        Selector::parse(r#"script[type="application/ld+json"]"#).expect("a valid selector");
    let mut blocks = 0;
    for script in doc.select(&select) {
        blocks += 1;
        let Ok(data) = serde_json::from_str::<Value>(&script.text().collect::<String>()) else {
            continue;
        };
        if let Some(listing) = listing(&data, song) {
            return Ok(listing);
        }
    }
    Err(match blocks {
        0 => "it has no track data (no JSON-LD)".into(),
        _ => "its track data names no album, playlist or song".into(),
    })
}

fn kind(v: &Value) -> &str {
    v.get("@type").and_then(Value::as_str).unwrap_or("")
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("")
}

/// One object or an array of them, as schema.org allows.
fn many(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => Vec::new(),
    }
}

fn artists(v: &Value) -> Vec<String> {
    many(v.get("byArtist"))
        .into_iter()
        .map(|a| text(a, "name").to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

fn listing(data: &Value, song: Option<&str>) -> Option<Listing> {
    let (title, recordings, fallback) = match kind(data) {
        "MusicAlbum" | "MusicPlaylist" => {
            let mut r = many(data.get("tracks"));
            r.extend(many(data.get("track")));
            (text(data, "name"), r, artists(data))
        }
        "MusicRecording" => (text(data, "name"), vec![data], Vec::new()),
        "MusicComposition" => {
            let audio = data.get("audio").filter(|a| kind(a) == "MusicRecording")?;
            (text(data, "name"), vec![audio], Vec::new())
        }
        _ => return None,
    };
    let tracks = recordings
        .into_iter()
        .filter(|r| match song {
            Some(id) => {
                let url = text(r, "url");
                url.ends_with(&format!("/{id}")) || url.ends_with(&format!("i={id}"))
            }
            None => true,
        })
        .filter_map(|r| {
            let name = text(r, "name");
            if name.is_empty() {
                return None;
            }
            let mut by = artists(r);
            if by.is_empty() {
                by = fallback.clone();
            }
            Some(WantedTrack {
                title: name.to_owned(),
                artists: by,
                duration: iso_duration(text(r, "duration")),
            })
        })
        .collect();
    Some(Listing {
        title: if title.is_empty() {
            "Apple Music"
        } else {
            title
        }
        .to_owned(),
        tracks,
    })
}

/// `PT3M33S` → 213 s; `None` when absent or unreadable.
fn iso_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    iso8601::duration(s).ok().map(Duration::from)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn an_album_page_lists_its_recordings_with_the_album_artist() {
        let l = parse_page(&fixture("apple-album.html"), None).unwrap();
        assert_eq!(l.title, "Tone Album");
        let got: Vec<(&str, &[String], Option<Duration>)> = l
            .tracks
            .iter()
            .map(|t| (t.title.as_str(), t.artists.as_slice(), t.duration))
            .collect();
        let artist = ["Test Artist".to_string()];
        assert_eq!(
            got,
            [
                ("Delta", &artist[..], Some(Duration::from_secs(4))),
                ("Epsilon", &artist[..], Some(Duration::from_secs(5))),
            ]
        );
        // `?i=`: the one song.
        let one = parse_page(&fixture("apple-album.html"), Some("1000000002")).unwrap();
        assert_eq!(one.tracks.len(), 1);
        assert_eq!(one.tracks[0].title, "Epsilon");
    }

    #[test]
    fn a_playlist_and_a_song_page() {
        let l = parse_page(&fixture("apple-playlist.html"), None).unwrap();
        assert_eq!(l.title, "Tone Favourites");
        assert_eq!(l.tracks.len(), 2);
        assert_eq!(l.tracks[1].artists, ["Other Artist"]);
        assert_eq!(l.tracks[1].duration, Some(Duration::from_secs(3 * 60 + 33)));
        let s = parse_page(&fixture("apple-song.html"), None).unwrap();
        assert_eq!(
            s.tracks,
            [WantedTrack {
                title: "Delta".into(),
                artists: vec!["Test Artist".into()],
                duration: Some(Duration::from_secs(4)),
            }]
        );
    }

    #[test]
    fn unreadable_pages_are_errors() {
        assert!(parse_page("<html></html>", None)
            .unwrap_err()
            .contains("no JSON-LD"));
        let e = parse_page(
            r#"<script type="application/ld+json">{"@type": "Organization"}</script><script type="application/ld+json">{not json</script>"#,
            None,
        )
        .unwrap_err();
        assert!(e.contains("names no album"), "{e}");
        assert_eq!(iso_duration("PT1H2M3S"), Some(Duration::from_secs(3723)));
        assert_eq!(iso_duration("three minutes"), None);
    }
}
