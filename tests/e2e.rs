//! End-to-end: the real bot (the same `App` the binary runs) against the Discord emulator,
//! with the real yt-dlp resolving tone files served on 127.0.0.1.

mod support;

use std::sync::atomic::Ordering;

use serde_json::json;
use support::world::*;
use support::*;

fn near(f: f32, want: f32) -> bool {
    (f - want).abs() <= 15.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_url_joins_the_callers_channel_and_the_tone_is_heard() {
    let w = World::start().await;
    let r = w.play(ANN, &w.files.url("low.wav")).await;
    assert!(!r.ephemeral, "{r:?}");
    assert!(r.text().contains("Playing"), "{}", r.text());
    assert!(r.text().contains("low"), "{}", r.text());
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;

    let f = w.hear(60).await;
    assert!(near(f, 440.0), "heard {f} Hz, want 440");
    let frames = non_silent(&w.emu.audio(GUILD));
    assert_contiguous(&frames);
    assert!(w
        .emu
        .messages(TEXT)
        .iter()
        .any(|m| m.text().contains("Now playing")));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plays_queue_in_order_skip_stop_and_leave() {
    let w = World::start().await;
    let first = w.play(ANN, &w.files.url("long.wav")).await;
    assert!(first.text().contains("Playing"), "{}", first.text());
    let second = w.play(ANN, &w.files.url("high.wav")).await;
    assert!(second.text().contains("position 1"), "{}", second.text());

    let q = w.cmd(ANN, "queue", json!([])).await.text();
    let (low, high) = (q.find("long").unwrap(), q.find("high").unwrap());
    assert!(low < high, "now playing first, then the queued one:\n{q}");
    assert!(near(w.hear(25).await, 330.0));

    let skip = w.cmd(ANN, "skip", json!([])).await;
    assert!(skip.text().contains("Skipped"), "{}", skip.text());
    w.emu.clear_audio(GUILD);
    let f = w.hear(40).await;
    assert!(near(f, 880.0), "after /skip heard {f} Hz, want 880");

    let stop = w.cmd(ANN, "stop", json!([])).await;
    assert!(stop.text().contains("Stopped"), "{}", stop.text());
    let np = w.cmd(ANN, "nowplaying", json!([])).await;
    assert!(
        np.ephemeral && np.text().contains("Nothing is playing"),
        "{}",
        np.text()
    );

    let leave = w.cmd(ANN, "leave", json!([])).await;
    assert!(leave.text().contains("Left"), "{}", leave.text());
    w.emu.wait_bot_voice(GUILD, None, T).await;
    assert_eq!(w.emu.voice_state_updates(GUILD).last(), Some(&None));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_private_and_silent() {
    let w = World::start().await;
    let marker = w.dir.path().join("pwned");

    // not in a voice channel
    let r = w.play(BEN, &w.files.url("low.wav")).await;
    assert!(
        r.ephemeral && r.text().contains("Join a voice channel"),
        "{r:?}"
    );

    // a file: URL never reaches yt-dlp
    let stats = w.bot.resolver.ytdlp().stats();
    let spawned = stats.spawned.load(Ordering::SeqCst);
    let r = w.play(ANN, "file:///etc/passwd").await;
    assert_eq!(
        stats.spawned.load(Ordering::SeqCst),
        spawned,
        "refused before yt-dlp ran"
    );
    assert!(r.ephemeral && r.text().contains("file"), "{}", r.text());
    assert!(!r.text().contains("root:"), "{}", r.text());

    // An option-looking query is a search term, not an option. Each payload acts if yt-dlp
    // reads it as one (see `option_injection_payloads_fire_when_given_as_options` in
    // tests/ytdlp.rs): a command run for every entry, or more URLs read from a file.
    let batch = w.dir.path().join("batch.txt");
    std::fs::write(&batch, format!("{}\n", w.files.url("batch-hit.wav"))).unwrap();
    for q in [
        format!("--exec=pre_process:touch {}", marker.display()),
        format!("-a{}", batch.display()),
    ] {
        let r = w.play(ANN, &q).await;
        assert!(r.ephemeral, "{r:?}");
        assert!(
            !marker.exists(),
            "user text must never become a yt-dlp option"
        );
        assert!(
            !w.files
                .request_log()
                .iter()
                .any(|r| r.path.contains("batch-hit")),
            "{q:?} made yt-dlp read the batch file"
        );
    }

    // a URL that 404s
    let r = w.play(ANN, &w.files.url("missing.wav")).await;
    assert!(r.ephemeral, "{r:?}");
    assert!(r.text().contains("Nothing was found"), "{}", r.text());

    assert!(
        w.emu.voice_state_updates(GUILD).is_empty(),
        "no join for refused plays"
    );
    assert!(w.emu.audio(GUILD).is_empty());
    assert_eq!(
        stats.running.load(Ordering::SeqCst),
        0,
        "no yt-dlp outlives its lookup"
    );
    // the bot still works afterwards
    let r = w.play(ANN, &w.files.url("low.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_play_comes_from_the_cache_without_ytdlp() {
    let w = World::start().await;
    let url = w.files.url("high.wav");
    let first = w.play(ANN, &url).await;
    assert!(!first.text().contains("from cache"), "{}", first.text());
    assert!(near(w.hear(25).await, 880.0));
    let stats = w.bot.resolver.ytdlp().stats();
    let spawned = stats.spawned.load(Ordering::SeqCst);

    w.cmd(ANN, "stop", json!([])).await;
    w.emu.clear_audio(GUILD);
    let again = w.play(ANN, &url).await;
    assert!(again.text().contains("from cache"), "{}", again.text());
    assert!(near(w.hear(25).await, 880.0), "the cached answer plays");
    // metadata came from SQLite and audio from the cached file (or the stream): no yt-dlp
    // for the lookup itself; a background download of the first play may have run.
    let after = stats.spawned.load(Ordering::SeqCst);
    assert!(after <= spawned + 1, "spawned {spawned} -> {after}");
    let s = w.bot.resolver.stats().await;
    assert!(s.counters.hits >= 1 && s.counters.misses >= 1, "{s:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webm_opus_link_streams_and_is_heard() {
    let w = World::start_with(|c| c.cache.audio = false).await;
    let path = w.media_dir().join("tone.webm");
    write_tone_webm(&path, 660.0, 4.0);
    let r = w.play(ANN, &w.files.url("tone.webm")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    assert!(near(w.hear(40).await, 660.0));
    w.stop().await;
}
