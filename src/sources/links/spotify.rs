//! Spotify's embed pages (`https://open.spotify.com/embed/{kind}/{id}`): public, no login,
//! and rendered with the whole track list in a Next.js `<script id="__NEXT_DATA__">` JSON.
//! The entity is at `props.pageProps.state.data.entity`: a `trackList` of
//! `{title, subtitle (the artists, comma-separated), duration (ms)}` for playlists, albums
//! and an artist's top tracks; `{name, artists: [{name}], duration}` for a track.

use std::time::Duration;

use scraper::{Html, Selector};
use serde_json::Value;

use super::wanted::{Listing, WantedTrack};

/// The tracks of an embed page, or why it has none readable.
pub fn parse_embed(html: &str) -> Result<Listing, String> {
    let doc = Html::parse_document(html);
    let select = Selector::parse(r#"script#__NEXT_DATA__"#).expect("a valid selector");
    let script = doc
        .select(&select)
        .next()
        .ok_or("it has no track data (no __NEXT_DATA__)")?;
    let data: Value = serde_json::from_str(&script.text().collect::<String>())
        .map_err(|_| "its track data is not JSON".to_string())?;
    let entity = data
        .pointer("/props/pageProps/state/data/entity")
        .filter(|e| e.is_object())
        .ok_or("its track data has no entity")?;
    let title = [str_of(entity, "name"), str_of(entity, "title")]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("Spotify")
        .to_owned();
    let ms = |v: &Value| {
        v.get("duration")
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
    };
    let tracks = match entity.get("trackList").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(|t| {
                let name = str_of(t, "title");
                (!name.is_empty()).then(|| WantedTrack {
                    title: name.to_owned(),
                    artists: split_artists(str_of(t, "subtitle")),
                    duration: ms(t),
                })
            })
            .collect(),
        None if str_of(entity, "type") == "track" && !title.is_empty() => {
            let artists: Vec<String> = match entity.get("artists").and_then(Value::as_array) {
                Some(a) => a
                    .iter()
                    .map(|a| str_of(a, "name").to_owned())
                    .filter(|n| !n.is_empty())
                    .collect(),
                None => split_artists(str_of(entity, "subtitle")),
            };
            vec![WantedTrack {
                title: title.clone(),
                artists,
                duration: ms(entity),
            }]
        }
        None => return Err("its track data has no track list".into()),
    };
    Ok(Listing { title, tracks })
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("")
}

/// `"A, B"` → `["A", "B"]` (Spotify joins a track's artists with a comma and a space).
fn split_artists(s: &str) -> Vec<String> {
    s.split(", ")
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn a_playlist_embed_lists_its_tracks_in_order() {
        let l = parse_embed(&fixture("spotify-embed-playlist.html")).unwrap();
        assert_eq!(l.title, "Tone Mix");
        let got: Vec<(&str, Vec<String>, Option<Duration>)> = l
            .tracks
            .iter()
            .map(|t| (t.title.as_str(), t.artists.clone(), t.duration))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Alpha",
                    vec!["Test Artist".to_string()],
                    Some(Duration::from_millis(4000))
                ),
                (
                    "Beta",
                    vec!["Test Artist".to_string(), "Guest".to_string()],
                    Some(Duration::from_millis(5000))
                ),
                (
                    "Gamma",
                    vec!["Test Artist".to_string()],
                    Some(Duration::from_millis(6000))
                ),
            ]
        );
    }

    #[test]
    fn a_track_embed_is_one_track() {
        let l = parse_embed(&fixture("spotify-embed-track.html")).unwrap();
        assert_eq!(
            l.tracks,
            [WantedTrack {
                title: "Alpha".into(),
                artists: vec!["Test Artist".into()],
                duration: Some(Duration::from_millis(4000)),
            }]
        );
    }

    #[test]
    fn a_page_without_the_data_is_an_error_not_a_panic() {
        for (page, why) in [
            (
                "<html><body>Page not found</body></html>",
                "no __NEXT_DATA__",
            ),
            (
                r#"<script id="__NEXT_DATA__">{"props": </script>"#,
                "not JSON",
            ),
            (
                r#"<script id="__NEXT_DATA__">{"props": {}}</script>"#,
                "no entity",
            ),
            (
                r#"<script id="__NEXT_DATA__">{"props":{"pageProps":{"state":{"data":{"entity":{"type":"album"}}}}}}</script>"#,
                "no track list",
            ),
        ] {
            let e = parse_embed(page).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
