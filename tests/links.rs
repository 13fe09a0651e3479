//! `/play` with Spotify, Apple Music and Deezer links, end to end: the real bot against the
//! Discord emulator, a loopback server serving the services' pages and API answers in their
//! real shapes (`tests/fixtures/links/`), and a loopback search the real yt-dlp lists. Each
//! track is found by its length (an audio upload before a music video), queued in order
//! and heard; a track with no close match is counted as skipped; a page that cannot be read
//! gets a short, clear answer.

mod support;

use support::streaming::{hit, Hit, Streaming};
use support::world::*;
use support::*;

const PLAYLIST: &str = "https://open.spotify.com/playlist/37i9dQZF1DX0000000000AAA?si=x1";

fn near(f: f32, want: f32) -> bool {
    (f - want).abs() <= 15.0
}

fn order(s: &encore::player::Snapshot) -> Vec<String> {
    s.current
        .iter()
        .chain(s.upcoming.iter())
        .map(|e| e.track.title.clone())
        .collect()
}

/// Tones on the test file server, `(name, Hz, seconds)`; returns their URLs by name.
fn tones(w: &World, list: &[(&str, f32, f32)]) -> std::collections::HashMap<String, String> {
    list.iter()
        .map(|(name, hz, secs)| {
            let file = format!("{name}.wav");
            fixtures::write_tone_wav(&w.media_dir().join(&file), *hz, *secs, 0.5);
            (name.to_string(), w.files.url(&file))
        })
        .collect()
}

async fn world(s: &Streaming) -> World {
    let base = s.base();
    World::start_with(move |c| {
        c.cache.audio = false;
        c.links.spotify_base = base.clone();
        c.links.apple_music_base = base.clone();
        c.links.deezer_api_base = base.clone();
        c.links.search = format!("{base}/search.rss?q={{query}}");
    })
    .await
}

/// The results each search gets: for every track, a music video of the right length
/// (another tone) listed first, and the audio upload of it second.
fn results(urls: &std::collections::HashMap<String, String>) -> Vec<(&'static str, Vec<Hit>)> {
    let audio = |name: &str, title: &str, secs: u64| {
        vec![
            hit(
                &format!("Test Artist - {title} (Official Video)"),
                urls["video"].clone(),
                secs,
                "The official video.",
            ),
            hit(
                title,
                urls[name].clone(),
                secs + 1,
                &format!("Provided to YouTube by Test Label\n\n{title} · Test Artist"),
            ),
        ]
    };
    vec![
        ("alpha", audio("alpha", "Alpha", 4)),
        ("beta", audio("beta", "Beta", 5)),
        ("gamma", audio("gamma", "Gamma", 6)),
        ("delta", audio("delta", "Delta", 4)),
        ("epsilon", audio("epsilon", "Epsilon", 5)),
        ("zeta", audio("zeta", "Zeta", 4)),
        ("eta", audio("eta", "Eta", 5)),
        ("iota", audio("iota", "Iota", 6)),
        // Omega is 7 s long: the only result is 30 s.
        (
            "omega",
            vec![hit("Omega (Extended Mix)", urls["video"].clone(), 30, "")],
        ),
    ]
}

const TONES: &[(&str, f32, f32)] = &[
    ("alpha", 440.0, 20.0),
    ("beta", 550.0, 20.0),
    ("gamma", 660.0, 20.0),
    ("delta", 330.0, 20.0),
    ("epsilon", 770.0, 20.0),
    ("zeta", 390.0, 20.0),
    ("eta", 720.0, 20.0),
    ("iota", 500.0, 20.0),
    ("video", 1200.0, 20.0),
];

fn pages() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "/embed/playlist/37i9dQZF1DX0000000000AAA",
            "spotify-embed-playlist.html",
        ),
        (
            "/embed/album/4444444444444444444444",
            "spotify-embed-album.html",
        ),
        (
            "/embed/playlist/0000000000000000BROKEN",
            "<html><body><h1>Something went wrong</h1></body></html>",
        ),
        ("/us/album/tone-album/1000000000", "apple-album.html"),
        ("/album/302127", "deezer-album.json"),
        ("/playlist/908622995", "deezer-playlist.json"),
        ("/playlist/908622995/tracks", "deezer-playlist-tracks.json"),
        (
            "/album/999",
            r#"{"error":{"type":"DataException","message":"no data","code":800}}"#,
        ),
    ]
}

/// The services, and a bot reading links from them; the search results point at tones on
/// the bot's test file server.
async fn setup() -> (World, Streaming) {
    let s = Streaming::start(pages()).await;
    let w = world(&s).await;
    s.set_results(results(&tones(&w, TONES)));
    (w, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spotify_playlist_of_three_queues_three_tones_in_order() {
    let (w, s) = setup().await;
    let r = w.play(ANN, PLAYLIST).await;
    assert!(!r.ephemeral, "{}", r.text());
    assert!(
        r.text().contains("Queued 3 tracks from [Tone Mix]("),
        "{}",
        r.text()
    );
    assert!(r.text().contains("playing **alpha** now"), "{}", r.text());
    assert!(!r.text().contains("skipped"), "{}", r.text());
    // The audio uploads, not the videos listed first, in the playlist's order.
    assert_eq!(order(&w.snapshot().await), ["alpha", "beta", "gamma"]);
    let heard = w.hear(25).await;
    assert!(near(heard, 440.0), "heard {heard} Hz");
    // Each track was searched as "artists - title", the query kept whole.
    let mut asked = s.searches();
    asked.sort();
    assert_eq!(
        asked,
        [
            "Test Artist - Alpha",
            "Test Artist - Gamma",
            "Test Artist, Guest - Beta"
        ]
    );
    // On to the next: the second tone.
    let r = w.cmd(ANN, "skip", serde_json::json!([])).await;
    assert!(!r.ephemeral, "{}", r.text());
    w.emu.clear_audio(GUILD);
    let heard = w.hear(25).await;
    assert!(near(heard, 550.0), "heard {heard} Hz");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_tracks_are_skipped_other_services_queue_and_bad_pages_are_said() {
    let (w, _s) = setup().await;

    // A Spotify album whose second track has no result of its length.
    let r = w
        .play(ANN, "https://open.spotify.com/album/4444444444444444444444")
        .await;
    assert!(!r.ephemeral, "{}", r.text());
    assert!(
        r.text().contains("Queued 1 track from [Half Found]("),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("1 skipped (no match found)"),
        "{}",
        r.text()
    );
    assert_eq!(order(&w.snapshot().await), ["alpha"]);

    // A Deezer album and an Apple Music album queue their tracks, in order.
    let r = w.play(ANN, "https://www.deezer.com/en/album/302127").await;
    assert!(
        r.text().contains("Queued 2 tracks from [Tone Album]("),
        "{}",
        r.text()
    );
    let r = w
        .play(
            ANN,
            "https://music.apple.com/us/album/tone-album/1000000000",
        )
        .await;
    assert!(
        r.text().contains("Queued 2 tracks from [Tone Album]("),
        "{}",
        r.text()
    );
    assert_eq!(
        order(&w.snapshot().await),
        ["alpha", "zeta", "eta", "delta", "epsilon"]
    );
    // A Deezer playlist goes on at its `next` page.
    let r = w
        .play(ANN, "https://www.deezer.com/playlist/908622995")
        .await;
    assert!(
        r.text().contains("Queued 3 tracks from [Tone Playlist]("),
        "{}",
        r.text()
    );
    assert_eq!(order(&w.snapshot().await)[5..], ["zeta", "eta", "iota"]);

    // A page without its track data, an id the service does not know: short, clear answers.
    let r = w
        .play(
            ANN,
            "https://open.spotify.com/playlist/0000000000000000BROKEN",
        )
        .await;
    assert!(r.ephemeral, "{}", r.text());
    assert!(
        r.text()
            .contains("Spotify's page for that link could not be read: it has no track data"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains('\n'), "{}", r.text());
    let r = w.play(ANN, "https://www.deezer.com/album/999").await;
    assert!(r.ephemeral, "{}", r.text());
    assert!(
        r.text().contains("Deezer has nothing at that link"),
        "{}",
        r.text()
    );
    // Nothing was added by them, and the bot still plays.
    assert_eq!(order(&w.snapshot().await).len(), 8);
    let heard = w.hear(25).await;
    assert!(near(heard, 440.0), "heard {heard} Hz");
    w.stop().await;
}
