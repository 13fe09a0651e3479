//! `/autoplay` end to end: the real bot against the Discord emulator, the real yt-dlp
//! listing a loopback XSPF playlist the way it lists a YouTube mix (the generic extractor
//! reads it flat: one entry per track, with its title and length), and the tones on
//! loopback. When the queue runs out the pick follows with no more silence than between
//! two queued tracks, it is never one of the tracks just played, the server's history
//! stands in when the mix fails, and nothing more plays once everyone left.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::state::AudioFrame;
use support::world::*;
use support::*;

/// What the gap before the pick may exceed the gap between two queued tracks by.
const GAP_TOLERANCE: Duration = Duration::from_millis(250);

/// A loopback server for the mixes, and the bot told to ask it for every track's mix.
async fn world_with_mixes(
    mix_file: &str,
    tweak: impl FnOnce(&mut encore::config::Config),
) -> (World, FileServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mixes = FileServer::start(dir.path()).await;
    let template = mixes.url(mix_file);
    let w = World::start_with(|c| {
        c.autoplay.mix = template;
        // The tones are "generic" tracks: give them a mix, as YouTube tracks have.
        c.autoplay.mix_sources = vec!["generic".into()];
        tweak(c);
    })
    .await;
    // Discord sends a choice's index: "on" is the first.
    let r = w.cmd(ANN, "autoplay", opts(&[("mode", json!(0))])).await;
    assert!(r.text().contains("Autoplay is on"), "{}", r.text());
    assert!(w.bot.settings.get(GUILD).autoplay, "saved for the server");
    (w, mixes, dir)
}

/// An XSPF playlist of `(url, title, seconds)`, as a mix page would list them.
fn write_mix(path: &Path, entries: &[(String, &str, u32)]) {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<playlist version=\"1\" xmlns=\"http://xspf.org/ns/0/\">\n<title>Mix</title>\n<trackList>\n",
    );
    for (url, title, secs) in entries {
        x.push_str(&format!(
            "<track><location>{url}</location><title>{title}</title><duration>{}</duration></track>\n",
            secs * 1000
        ));
    }
    x.push_str("</trackList>\n</playlist>\n");
    std::fs::write(path, x).unwrap();
}

fn ann() -> encore::player::Requester {
    encore::player::Requester {
        id: ANN,
        name: "ann".into(),
    }
}

/// Waits for the channel notice saying autoplay queued something; returns its text.
async fn autoplay_notice(w: &World) -> String {
    w.emu
        .wait_message(
            TEXT,
            |m| m.text().contains("Autoplay:"),
            Duration::from_secs(60),
        )
        .await
        .text()
}

/// Which of `tones` each audible frame is, with when it arrived.
fn classify(frames: &[AudioFrame], tones: &[f32]) -> Vec<(Instant, f32)> {
    non_silent(frames)
        .iter()
        .map(|f| {
            let one = std::slice::from_ref(f);
            let best = tones
                .iter()
                .copied()
                .max_by(|a, b| tone_strength(one, *a).total_cmp(&tone_strength(one, *b)))
                .unwrap();
            (f.at, best)
        })
        .collect()
}

/// Waits (polling, at most 60 s) until the last half second heard is tone `want` of `tones`.
async fn wait_tone(w: &World, tones: &[f32], want: f32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let frames = w.emu.audio(GUILD);
        let last = &frames[frames.len().saturating_sub(25)..];
        let heard = classify(last, tones);
        if heard.len() == 25 && heard.iter().all(|(_, t)| *t == want) {
            return;
        }
        assert!(Instant::now() < deadline, "{want} Hz was never heard");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The silence between the last frame of tone `from` and the first of tone `to` after it.
fn gap_between(heard: &[(Instant, f32)], from: f32, to: f32) -> Duration {
    let first_to = heard
        .iter()
        .position(|(_, t)| *t == to)
        .unwrap_or_else(|| panic!("{to} Hz never heard"));
    let last_from = heard[..first_to]
        .iter()
        .rposition(|(_, t)| *t == from)
        .unwrap_or_else(|| panic!("{from} Hz not heard before {to} Hz"));
    heard[first_to].0.duration_since(heard[last_from].0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mix_pick_follows_the_queue_without_a_longer_gap_and_is_not_a_track_just_played() {
    let (w, _mixes, dir) = world_with_mixes("mix-{id}.xspf", |_| {}).await;
    let one = w.tone("one", 440.0, 3.0);
    // Long enough for the mix to be listed and the pick resolved while it plays.
    let two = w.tone("two", 660.0, 12.0);
    w.tone("pick", 990.0, 4.0);
    w.tone("other", 330.0, 4.0);
    // The mix of "two" starts with the two tracks just played, as a YouTube mix starts
    // with its seed.
    write_mix(
        &dir.path().join("mix-two.xspf"),
        &[
            (w.files.url("one.wav"), "one", 3),
            (w.files.url("two.wav"), "two", 12),
            (w.files.url("pick.wav"), "pick", 4),
            (w.files.url("other.wav"), "other", 4),
        ],
    );
    w.enqueue(ann(), vec![one, two]).await;

    let notice = autoplay_notice(&w).await;
    assert!(
        notice.contains("Autoplay: **pick** (from the mix of two)")
            || notice.contains("Autoplay: pick (from the mix of two)"),
        "{notice}"
    );
    wait_tone(&w, &[440.0, 660.0, 990.0], 990.0).await;
    let heard = classify(&w.emu.audio(GUILD), &[440.0, 660.0, 990.0, 330.0]);
    assert!(
        !heard.iter().any(|(_, t)| *t == 330.0),
        "only the first playable entry of the mix is taken"
    );
    let queued = gap_between(&heard, 440.0, 660.0);
    let picked = gap_between(&heard, 660.0, 990.0);
    eprintln!("gap between queued tracks {queued:?}, before the autoplay pick {picked:?}");
    assert!(
        picked <= queued + GAP_TOLERANCE,
        "the pick came after {picked:?} of silence; two queued tracks are {queued:?} apart"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_mix_fails_the_pick_is_what_the_listeners_played_most_but_not_lately() {
    // No such mix: yt-dlp gets a 404.
    let (w, _mixes, _dir) = world_with_mixes("missing-{id}.xspf", |_| {}).await;
    let db = &w.bot.stores.db;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let two_hours_ago = now - 7200;
    let ten_minutes_ago = now - 600;
    let plays = [
        // ANN (listening): her favourite, long ago
        ("fav", 990.0, ANN, 3, two_hours_ago),
        ("rare", 550.0, ANN, 1, two_hours_ago),
        // BEN is not in the channel: his favourites do not count
        ("bens", 330.0, BEN, 9, two_hours_ago),
        // played often, but within the hour
        ("lately", 770.0, ANN, 5, ten_minutes_ago),
    ];
    for (name, freq, by, times, at) in plays {
        // The favourite plays long enough for the next pick to be back before it ends.
        let secs = if name == "fav" { 10.0 } else { 4.0 };
        let t = w.tone(name, freq, secs);
        for _ in 0..times {
            encore::db::history::record_at(db, GUILD, &t, by, at)
                .await
                .unwrap();
        }
    }
    let seed = w.tone("seed", 440.0, 10.0);
    w.enqueue(ann(), vec![seed]).await;

    let notice = autoplay_notice(&w).await;
    assert!(
        notice.contains("fav") && notice.contains("from this server's history"),
        "{notice}"
    );
    // The seed, then the favourite: no other tone of the history.
    wait_tone(&w, &[440.0, 990.0, 550.0, 330.0, 770.0], 990.0).await;
    let heard = classify(&w.emu.audio(GUILD), &[440.0, 990.0, 550.0, 330.0, 770.0]);
    let mut order: Vec<f32> = heard.iter().map(|(_, t)| *t).collect();
    order.dedup();
    assert_eq!(order, [440.0, 990.0], "the seed then the favourite");

    // Off: the favourite is the last track; the queue then finishes.
    let r = w.cmd(ANN, "autoplay", opts(&[("mode", json!(1))])).await;
    assert!(r.text().contains("Autoplay is off"), "{}", r.text());
    assert!(!w.bot.settings.get(GUILD).autoplay);
    w.emu
        .wait_message(
            TEXT,
            |m| m.text().contains("The queue is finished"),
            Duration::from_secs(30),
        )
        .await;
    let autoplayed = w
        .emu
        .messages(TEXT)
        .iter()
        .filter(|m| m.text().contains("Autoplay:"))
        .count();
    assert_eq!(autoplayed, 1, "nothing more after autoplay went off");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_more_plays_once_everyone_left() {
    let (w, _mixes, dir) = world_with_mixes("mix-{id}.xspf", |c| {
        // Well past the track and the pick's lookup: the queue runs out, and the pick
        // is back, while nobody listens and the bot is still there.
        c.lifecycle.alone_timeout = Duration::from_secs(15);
    })
    .await;
    let solo = w.tone("solo", 440.0, 3.0);
    w.tone("pick", 990.0, 4.0);
    write_mix(
        &dir.path().join("mix-solo.xspf"),
        &[(w.files.url("pick.wav"), "pick", 4)],
    );
    w.enqueue(ann(), vec![solo]).await;
    w.hear(25).await;
    w.emu.user_leave_voice(GUILD, ANN).await;
    w.emu
        .wait_message(
            TEXT,
            |m| m.text().contains("nobody was listening"),
            Duration::from_secs(45),
        )
        .await;
    let texts: Vec<String> = w.emu.messages(TEXT).iter().map(|m| m.text()).collect();
    assert!(
        !texts.iter().any(|t| t.contains("Autoplay:")),
        "autoplay went on with nobody listening: {texts:#?}"
    );
    let heard = classify(&w.emu.audio(GUILD), &[440.0, 990.0]);
    assert!(
        !heard.iter().any(|(_, t)| *t == 990.0),
        "the pick was heard with nobody listening"
    );
    w.stop().await;
}
