//! `/lyrics` end to end: the real bot against the Discord emulator and a loopback LRCLIB
//! that answers in LRCLIB's documented format. Synced lyrics follow the playing track
//! (and a `/seek`), plain ones are shown whole, a miss says so, and a second ask for the
//! same song is answered from the database without asking LRCLIB again.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::lrclib::{param, Lrclib, Song};
use support::world::*;
use support::*;

/// Two-second lines over a 40 s song, one at 20 s that only a seek reaches quickly, and
/// one at 34 s that a faster speed reaches sooner.
fn synced() -> String {
    let mut lrc = String::from("[00:00.50] first line\n");
    for (s, text) in [(2, "second line"), (4, "third line"), (6, "fourth line")] {
        lrc.push_str(&format!("[00:{s:02}.00] {text}\n"));
    }
    lrc.push_str("[00:08.00] \n[00:20.00] line at twenty\n[00:22.00] line after twenty\n");
    lrc.push_str("[00:34.00] last line\n");
    lrc
}

fn songs() -> Vec<Song> {
    vec![
        Song {
            id: 1,
            artist: "Test Artist".into(),
            title: "Tone Song".into(),
            album: "Tones".into(),
            duration: 40.0,
            plain: Some("first line\nsecond line".into()),
            synced: Some(synced()),
        },
        Song {
            id: 2,
            artist: "Plain Band".into(),
            title: "Words Only".into(),
            album: "Paper".into(),
            duration: 180.0,
            plain: Some("roses are red\nviolets are blue".into()),
            synced: None,
        },
    ]
}

async fn world(lrclib: &Lrclib) -> World {
    let base = lrclib.base();
    World::start_with(move |c| {
        c.cache.audio = false;
        c.lyrics.api_base = base;
        c.lyrics.edit_every = Duration::from_secs(1);
    })
    .await
}

/// The last text the interaction's message shows (its first answer, then its edits).
fn latest(i: &Interaction) -> String {
    i.replies().last().map(|r| r.text()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_lyrics_follow_the_track_and_a_seek() {
    let lrclib = Lrclib::start(songs()).await;
    let w = world(&lrclib).await;
    // Discord's limit on editing one interaction's messages, enforced: the bot's edit
    // rate must stay under it without a single 429.
    w.emu
        .limit_route("PATCH", "/webhooks/", 5, Duration::from_secs(5));
    let mut song = (*w.tone("song", 440.0, 40.0)).clone();
    song.title = "Test Artist - Tone Song (Official Video)".into();
    let next = w.tone("next", 660.0, 30.0);
    w.enqueue(
        encore::player::Requester {
            id: ANN,
            name: "ann".into(),
        },
        vec![Arc::new(song), next],
    )
    .await;
    w.emu.wait_audio_frames(GUILD, 10, T).await;

    let lyrics = w.emu.command(GUILD, TEXT, ANN, "lyrics", json!([])).await;
    let first = lyrics.response(T).await;
    assert!(!first.ephemeral, "{}", first.text());
    assert!(
        first.text().contains("Test Artist – Tone Song"),
        "{}",
        first.text()
    );
    // The exact match was asked by artist, title (without the video's noise) and length.
    let asked = &lrclib.requests()[0];
    assert_eq!(asked.path, "/api/get");
    assert_eq!(param(asked, "artist_name").as_deref(), Some("Test Artist"));
    assert_eq!(param(asked, "track_name").as_deref(), Some("Tone Song"));
    assert_eq!(param(asked, "duration").as_deref(), Some("40"));

    // It moves with the song: the third line (at 4 s) is sung and shown in bold.
    let l = &lyrics;
    w.emu
        .wait_for("the third line highlighted", T, |_| {
            latest(l).contains("▶ **third line**")
        })
        .await;
    let shown = latest(&lyrics);
    assert!(
        !shown.contains("**second line**"),
        "one line at a time: {shown}"
    );

    // After a seek to 0:20 it jumps there.
    let r = w
        .cmd(
            ANN,
            "seek",
            json!([{"name": "time", "type": 3, "value": "0:20"}]),
        )
        .await;
    assert!(!r.ephemeral, "{}", r.text());
    w.emu
        .wait_for("the line at 0:20 highlighted", T, |_| {
            latest(l).contains("▶ **line at twenty**")
        })
        .await;

    // At double speed the song's time runs twice as fast, and the lyrics with it: the line
    // at 0:34 comes in about 7 s of listening, where at normal speed it is 12.5 s or more away
    // (the speed is set while the line at 0:20 shows, before 0:22).
    let r = w.cmd(ANN, "filter", opts(&[("speed", json!(2.0))])).await;
    assert!(!r.ephemeral, "{}", r.text());
    let faster = std::time::Instant::now();
    w.emu
        .wait_for("the last line highlighted", T, |_| {
            latest(l).contains("▶ **last line**")
        })
        .await;
    assert!(
        faster.elapsed() < Duration::from_millis(10_500),
        "the lyrics did not speed up with the song: the line at 0:34 came {:?} after the \
         speed was doubled at about 0:20",
        faster.elapsed()
    );

    // The next track ends the follow: no task is left editing.
    let r = w.cmd(ANN, "skip", json!([])).await;
    assert!(!r.ephemeral, "{}", r.text());
    let bot = w.bot.clone();
    w.emu
        .wait_for("the follow to stop", T, move |_| {
            bot.lyrics_follows.lock().unwrap().is_empty()
        })
        .await;
    let edits = lyrics.replies().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        lyrics.replies().len(),
        edits,
        "no edit after the track changed"
    );
    assert_eq!(w.emu.rate_limited(), Vec::<String>::new(), "429s were hit");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_lyrics_a_miss_and_the_cache() {
    let lrclib = Lrclib::start(songs()).await;
    let w = world(&lrclib).await;
    let ask = |q: &'static str| {
        w.cmd(
            BEN,
            "lyrics",
            json!([{"name": "query", "type": 3, "value": q}]),
        )
    };
    let r = ask("plain band words only").await;
    assert!(!r.ephemeral, "{}: {:#?}", r.text(), lrclib.requests());
    let text = r.text();
    assert!(text.contains("Plain Band – Words Only"), "{text}");
    assert!(text.contains("roses are red\nviolets are blue"), "{text}");
    assert_eq!(lrclib.requests().len(), 1);
    assert_eq!(lrclib.requests()[0].path, "/api/search");

    // Asked again: the same words, from the database; LRCLIB hears nothing.
    let again = ask("Plain Band  words only ").await;
    assert_eq!(again.text(), text);
    assert_eq!(
        lrclib.requests().len(),
        1,
        "the second ask was served from the cache"
    );

    // A song LRCLIB does not know: a clear, private answer; the miss is cached too.
    let miss = ask("nobody knows this").await;
    assert!(miss.ephemeral);
    assert!(
        miss.text()
            .contains("No lyrics found for **nobody knows this**"),
        "{}",
        miss.text()
    );
    let _ = ask("nobody knows this").await;
    assert_eq!(lrclib.requests().len(), 2, "the miss was cached");

    // Nothing playing and no query: it says how to ask.
    let idle = w.cmd(BEN, "lyrics", json!([])).await;
    assert!(
        idle.ephemeral && idle.text().contains("Nothing is playing"),
        "{}",
        idle.text()
    );
    w.stop().await;
}

/// Discord lets an interaction's answer be edited for 15 minutes (here 3 s): the first
/// edit refused for an expired token ends the following, instead of one refused edit per
/// sung line until the song ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_lyrics_stops_at_the_first_edit_after_the_token_expired() {
    let lrclib = Lrclib::start(songs()).await;
    let w = world(&lrclib).await;
    w.emu.set_interaction_token_lifetime(Duration::from_secs(3));
    let mut song = (*w.tone("song", 440.0, 40.0)).clone();
    song.title = "Test Artist - Tone Song (Official Video)".into();
    w.enqueue(
        encore::player::Requester {
            id: ANN,
            name: "ann".into(),
        },
        vec![Arc::new(song)],
    )
    .await;
    w.emu.wait_audio_frames(GUILD, 10, T).await;
    let lyrics = w.emu.command(GUILD, TEXT, ANN, "lyrics", json!([])).await;
    let first = lyrics.response(T).await;
    assert!(first.text().contains("Tone Song"), "{}", first.text());
    // Lines change at 4, 6 and 8 s, all after the token's 3 s: past the last of them.
    w.emu.wait_audio_frames(GUILD, 9 * 50, T).await;
    let refused = w.emu.expired_token_uses();
    assert_eq!(
        refused.len(),
        1,
        "edits after the token expired: {refused:#?}"
    );
    w.stop().await;
}
