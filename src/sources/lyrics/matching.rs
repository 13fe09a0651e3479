//! What song a track is (artist, title, length) and which of LRCLIB's answers fits it.
//!
//! Video titles carry noise LRCLIB's records do not: "Artist - Title (Official Video)",
//! "[Lyrics]", "ft. Someone". The artist comes from "Artist - Title" when the title has
//! that shape, else from the uploader (YouTube's "Artist - Topic" channels included).

use std::time::Duration;

use super::lrclib::Record;

/// What `/lyrics` looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A track: matched by artist, title and length.
    Song {
        artist: Option<String>,
        title: String,
        duration: Option<Duration>,
    },
    /// Words a member typed: LRCLIB's search, best answer first.
    Query(String),
}

/// Records whose length differs from the track's by more than this are another recording.
pub const DURATION_SLACK: Duration = Duration::from_secs(3);

impl Wanted {
    /// The song `title` (by `uploader`, `duration` long) most likely is.
    pub fn from_track(title: &str, uploader: Option<&str>, duration: Option<Duration>) -> Wanted {
        let (artist, title) = match title.split_once(" - ").or_else(|| title.split_once(" – ")) {
            Some((a, t)) if !a.trim().is_empty() && !clean(t).is_empty() => {
                (Some(a.trim().to_string()), clean(t))
            }
            _ => (
                uploader
                    .map(|u| u.trim_end_matches(" - Topic").trim().to_string())
                    .filter(|u| !u.is_empty()),
                clean(title),
            ),
        };
        Wanted::Song {
            artist,
            title,
            duration,
        }
    }

    /// The key its answer is cached under: the same song asked twice is one key.
    pub fn cache_key(&self) -> String {
        match self {
            Wanted::Song {
                artist,
                title,
                duration,
            } => format!(
                "song\u{1f}{}\u{1f}{}\u{1f}{}",
                artist.as_deref().unwrap_or("").to_lowercase(),
                title.to_lowercase(),
                duration.map(|d| d.as_secs()).unwrap_or(0)
            ),
            // Spacing and case do not make another question.
            Wanted::Query(q) => format!(
                "query\u{1f}{}",
                q.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase()
            ),
        }
    }
}

/// `title` without the bracketed and "ft." parts video titles add.
fn clean(title: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in title.chars() {
        match c {
            '(' | '[' | '{' | '【' => depth += 1,
            ')' | ']' | '}' | '】' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    // ASCII lower case keeps byte offsets, so a cut found in it applies to `out`.
    let lower = out.to_ascii_lowercase();
    let cut = [" ft. ", " feat. ", " ft ", " feat ", " | "]
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(out.len());
    out[..cut].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The record among `found` that fits: with lyrics (or marked instrumental), within
/// [`DURATION_SLACK`] of `duration` when it is known; synced ones before plain ones.
pub fn best(found: Vec<Record>, duration: Option<Duration>) -> Option<Record> {
    let fits = |r: &Record| match (duration, r.duration) {
        (Some(want), Some(have)) => {
            (want.as_secs_f64() - have).abs() <= DURATION_SLACK.as_secs_f64()
        }
        _ => true,
    };
    let rank = |r: &Record| {
        if r.synced_lyrics.is_some() {
            0
        } else if r.plain_lyrics.is_some() {
            1
        } else {
            2
        }
    };
    found
        .into_iter()
        .filter(|r| r.has_words() || r.instrumental)
        .filter(|r| fits(r))
        .enumerate()
        .min_by_key(|(i, r)| (rank(r), *i))
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song(title: &str, uploader: Option<&str>) -> (Option<String>, String) {
        match Wanted::from_track(title, uploader, None) {
            Wanted::Song { artist, title, .. } => (artist, title),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn video_titles_become_artist_and_title() {
        assert_eq!(
            song(
                "Rick Astley - Never Gonna Give You Up (Official Video) [4K]",
                Some("Rick Astley")
            ),
            (Some("Rick Astley".into()), "Never Gonna Give You Up".into())
        );
        assert_eq!(
            song("Blue Monday", Some("New Order - Topic")),
            (Some("New Order".into()), "Blue Monday".into())
        );
        assert_eq!(
            song("Daft Punk - Get Lucky ft. Pharrell Williams", None),
            (Some("Daft Punk".into()), "Get Lucky".into())
        );
        assert_eq!(song("tone", None), (None, "tone".into()));
        assert_eq!(
            Wanted::from_track("A - B", None, Some(Duration::from_secs(61))).cache_key(),
            Wanted::from_track("a - b [Lyrics]", None, Some(Duration::from_millis(61_900)))
                .cache_key()
        );
    }

    fn record(id: i64, secs: f64, synced: bool) -> Record {
        Record {
            id,
            track_name: "t".into(),
            artist_name: "a".into(),
            album_name: None,
            duration: Some(secs),
            instrumental: false,
            plain_lyrics: Some("words".into()),
            synced_lyrics: synced.then(|| "[00:01.00] words".into()),
        }
    }

    #[test]
    fn the_best_record_fits_the_length_and_is_synced() {
        let d = Some(Duration::from_secs(200));
        let found = vec![
            record(1, 200.0, false),
            record(2, 230.0, true),
            record(3, 201.5, true),
        ];
        assert_eq!(best(found.clone(), d).unwrap().id, 3);
        assert_eq!(
            best(found.clone(), None).unwrap().id,
            2,
            "no length: first synced"
        );
        assert!(
            best(vec![record(2, 230.0, true)], d).is_none(),
            "another recording"
        );
        let mut empty = record(4, 200.0, false);
        empty.plain_lyrics = None;
        assert!(best(vec![empty.clone()], d).is_none());
        empty.instrumental = true;
        assert_eq!(best(vec![empty], d).unwrap().id, 4);
    }
}
