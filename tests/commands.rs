//! End to end, command by command: the real bot against the Discord emulator. What the
//! listeners hear (the dominant frequency of the decoded audio, its RMS) or the queue's
//! state shows each command's effect; refusals are private one-liners.
//!
//! Most tests put tone files straight into the queue (known lengths, no yt-dlp run) and
//! keep the audio cache off, so that parallel tests stay light; `/play` itself is covered
//! with real yt-dlp lookups (playlists, `next`, limits, autocomplete, seek).

mod support;

use std::sync::Arc;
use std::time::Duration;

use encore::player::{Requester, Snapshot};
use encore::settings::Change;
use encore::sources::Track;
use serde_json::json;
use support::world::*;
use support::*;

const CAT: u64 = 1_000_000_000_000_303;
const BOSS: u64 = 1_000_000_000_000_399;
const DJ_ROLE: u64 = 1_000_000_000_000_501;

fn near(f: f32, want: f32) -> bool {
    (f - want).abs() <= 15.0
}

/// A bot without the audio cache (no background downloads), `tweak` applied after.
async fn world(tweak: impl FnOnce(&mut encore::config::Config)) -> World {
    World::start_with(|c| {
        c.cache.audio = false;
        tweak(c);
    })
    .await
}

/// A `freq` Hz tone of `secs` seconds, as a queue-ready track (see [`World::tone`]).
fn tone(w: &World, name: &str, freq: f32, secs: f32) -> Arc<Track> {
    w.tone(name, freq, secs)
}

fn who(id: u64) -> Requester {
    let name = match id {
        ANN => "ann",
        BEN => "ben",
        CAT => "cat",
        _ => "someone",
    };
    Requester {
        id,
        name: name.into(),
    }
}

/// Queues `tracks` for `user` straight into the player (as `/play` would after a lookup).
async fn enqueue(w: &World, user: u64, tracks: Vec<Arc<Track>>) {
    w.enqueue(who(user), tracks).await;
}

async fn snapshot(w: &World) -> Snapshot {
    w.snapshot().await
}

fn titles(s: &Snapshot) -> Vec<String> {
    s.upcoming.iter().map(|e| e.track.title.clone()).collect()
}

fn playing(s: &Snapshot) -> String {
    s.current
        .as_ref()
        .map(|e| e.track.title.clone())
        .unwrap_or_default()
}

/// The frequency heard from now on (older frames dropped first).
async fn hear_now(w: &World, frames: usize) -> f32 {
    w.emu.clear_audio(GUILD);
    w.hear(frames).await
}

/// RMS of the last `n` audible frames once `wait` frames arrived.
async fn last_rms(w: &World, wait: usize, n: usize) -> f32 {
    w.emu.wait_audio_frames(GUILD, wait, T).await;
    let frames = non_silent(&w.emu.audio(GUILD));
    rms(&frames[frames.len().saturating_sub(n)..])
}

/// A public, one-line success containing `want`.
fn assert_ok(r: &Reply, want: &str) {
    assert!(
        !r.ephemeral,
        "expected a public reply, got a private one: {}",
        r.text()
    );
    assert!(r.text().contains(want), "want {want:?} in {:?}", r.text());
    assert!(!r.text().contains('\n'), "one line: {:?}", r.text());
}

/// A private refusal containing `want`.
fn assert_refused(r: &Reply, want: &str) {
    assert!(r.ephemeral, "expected a private refusal, got: {}", r.text());
    assert!(r.text().contains(want), "want {want:?} in {:?}", r.text());
    assert!(
        !r.text().contains("Something went wrong"),
        "an unhandled error: {}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_3_1_makes_the_third_tone_play_next() {
    let w = world(|_| {}).await;
    let bed = tone(&w, "bed", 330.0, 60.0);
    let (a, b, c) = (
        tone(&w, "a", 440.0, 20.0),
        tone(&w, "b", 550.0, 20.0),
        tone(&w, "c", 660.0, 20.0),
    );
    enqueue(&w, ANN, vec![bed, a, b, c]).await;
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;
    assert!(near(w.hear(25).await, 330.0));

    let r = w
        .cmd(ANN, "move", opts(&[("from", json!(3)), ("to", json!(1))]))
        .await;
    assert_ok(&r, "Moved **c** from position 3 to 1");
    assert_eq!(titles(&snapshot(&w).await), ["c", "a", "b"]);

    // wrong positions are explained, privately
    let r = w
        .cmd(ANN, "move", opts(&[("from", json!(9)), ("to", json!(1))]))
        .await;
    assert_refused(
        &r,
        "There is no track at position 9; the queue has 3 tracks.",
    );
    let r = w
        .cmd(ANN, "move", opts(&[("from", json!(0)), ("to", json!(1))]))
        .await;
    assert_refused(&r, "Positions start at 1");
    let r = w
        .cmd(ANN, "move", opts(&[("from", json!(2)), ("to", json!(2))]))
        .await;
    assert_refused(&r, "already at position 2");

    let r = w.cmd(ANN, "skip", json!([])).await;
    assert_ok(&r, "now playing **c**");
    let f = hear_now(&w, 40).await;
    assert!(
        near(f, 660.0),
        "after /move 3 1 and /skip heard {f} Hz, want 660"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_positions_and_ranges_shuffle_and_clear_keep_the_current_track() {
    let w = world(|_| {}).await;
    let bed = tone(&w, "bed", 330.0, 60.0);
    let rest: Vec<_> = (1..=7)
        .map(|i| tone(&w, &format!("t{i}"), 400.0 + 50.0 * i as f32, 5.0))
        .collect();
    enqueue(&w, ANN, std::iter::once(bed).chain(rest).collect()).await;
    w.emu.wait_audio_frames(GUILD, 10, T).await;

    let r = w
        .cmd(ANN, "remove", opts(&[("position", json!("2"))]))
        .await;
    assert_ok(&r, "Removed **t2** (position 2)");
    assert_eq!(
        titles(&snapshot(&w).await),
        ["t1", "t3", "t4", "t5", "t6", "t7"]
    );
    let r = w
        .cmd(
            ANN,
            "remove",
            opts(&[("position", json!("2")), ("to", json!(3))]),
        )
        .await;
    assert_ok(&r, "Removed 2 tracks (positions 2-3)");
    let r = w
        .cmd(ANN, "remove", opts(&[("position", json!("last"))]))
        .await;
    assert_ok(&r, "Removed **t7**");
    assert_eq!(titles(&snapshot(&w).await), ["t1", "t5", "t6"]);

    for (bad, why) in [
        (
            "9",
            "There is no track at position 9; the queue has 3 tracks.",
        ),
        ("0", "Positions start at 1"),
        ("abc", "can't read `abc`"),
        ("2-7", "no track at position 7"),
    ] {
        let r = w
            .cmd(ANN, "remove", opts(&[("position", json!(bad))]))
            .await;
        assert_refused(&r, why);
    }

    let r = w.cmd(ANN, "shuffle", json!([])).await;
    assert_ok(&r, "Shuffled 3 tracks");
    let mut after = titles(&snapshot(&w).await);
    after.sort();
    assert_eq!(after, ["t1", "t5", "t6"], "shuffling keeps every track");

    let r = w.cmd(ANN, "clear", json!([])).await;
    assert_ok(&r, "Cleared 3 tracks from the queue; **bed** keeps playing");
    let s = snapshot(&w).await;
    assert_eq!((playing(&s).as_str(), s.upcoming.len()), ("bed", 0));
    assert!(
        near(hear_now(&w, 25).await, 330.0),
        "the current track goes on"
    );

    let r = w.cmd(ANN, "clear", json!([])).await;
    assert_refused(&r, "already empty");
    let r = w.cmd(ANN, "shuffle", json!([])).await;
    assert_refused(&r, "nothing to shuffle");
    let r = w
        .cmd(ANN, "remove", opts(&[("position", json!("1"))]))
        .await;
    assert_refused(&r, "Nothing is waiting");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_n_jumps_ahead_and_back_returns_to_the_previous_tone() {
    let w = world(|_| {}).await;
    let tracks = vec![
        tone(&w, "bed", 330.0, 30.0),
        tone(&w, "a", 440.0, 30.0),
        tone(&w, "b", 550.0, 30.0),
        tone(&w, "c", 660.0, 30.0),
    ];
    enqueue(&w, ANN, tracks).await;
    assert!(near(w.hear(25).await, 330.0));

    let r = w.cmd(ANN, "skip", opts(&[("count", json!(2))])).await;
    assert_ok(
        &r,
        "Skipped 2 tracks (**bed** and 1 more); now playing **b**",
    );
    let f = hear_now(&w, 40).await;
    assert!(near(f, 550.0), "after /skip 2 heard {f} Hz, want 550");

    let r = w.cmd(ANN, "back", json!([])).await;
    assert_ok(&r, "Back to **a**");
    let f = hear_now(&w, 40).await;
    assert!(near(f, 440.0), "after /back heard {f} Hz, want 440");
    assert_eq!(titles(&snapshot(&w).await), ["b", "c"]);

    let r = w.cmd(ANN, "skip", opts(&[("count", json!(99))])).await;
    assert_ok(&r, "Skipped 3 tracks");
    assert!(r.text().contains("the queue is empty"), "{}", r.text());
    let r = w.cmd(ANN, "skip", json!([])).await;
    assert_refused(&r, "Nothing is playing");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_track_plays_the_same_tone_again_and_loop_off_moves_on() {
    // Each start is counted by its plain "Now playing" notice; the panel, which edits one
    // message instead, is tests/panel.rs's.
    let w = world(|c| c.player.panel = false).await;
    enqueue(
        &w,
        ANN,
        vec![tone(&w, "x", 440.0, 6.0), tone(&w, "y", 880.0, 6.0)],
    )
    .await;
    let r = w.cmd(ANN, "loop", opts(&[("mode", json!("track"))])).await;
    assert_ok(&r, "Looping **x**");
    assert!(near(w.hear(25).await, 440.0));

    let started = |name: &'static str, times: usize| {
        move |e: &Emulator| {
            e.messages(TEXT)
                .iter()
                .filter(|m| {
                    m.text().contains("Now playing") && m.text().contains(&format!("[{name}]"))
                })
                .count()
                >= times
        }
    };
    w.emu
        .wait_for("x to start a second time", T, started("x", 2))
        .await;
    let f = hear_now(&w, 25).await;
    assert!(
        near(f, 440.0),
        "with /loop track heard {f} Hz again, want 440"
    );
    assert_eq!(playing(&snapshot(&w).await), "x");
    assert!(
        !w.emu
            .messages(TEXT)
            .iter()
            .any(|m| m.text().contains("[y]")),
        "y must wait while x loops"
    );

    let r = w.cmd(ANN, "loop", opts(&[("mode", json!("off"))])).await;
    assert_ok(&r, "Loop is off");
    w.emu.wait_for("y to start", T, started("y", 1)).await;
    let f = hear_now(&w, 25).await;
    assert!(near(f, 880.0), "after /loop off heard {f} Hz, want 880");

    let r = w.cmd(ANN, "loop", opts(&[("mode", json!("queue"))])).await;
    assert_ok(&r, "Looping the queue");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_50_halves_the_amplitude() {
    let w = world(|_| {}).await;
    enqueue(&w, ANN, vec![tone(&w, "steady", 440.0, 30.0)]).await;
    let full = last_rms(&w, 60, 50).await;
    assert!(full > 0.2, "a 0.5 sine has an RMS near 0.35, got {full}");

    let r = w.cmd(ANN, "volume", opts(&[("level", json!(50))])).await;
    assert_ok(&r, "Volume set to 50% (was 100%) for **steady**");
    assert!(
        r.text().contains("100% keeps Opus passthrough"),
        "{}",
        r.text()
    );
    w.emu.clear_audio(GUILD);
    let half = last_rms(&w, 100, 50).await;
    let ratio = half / full;
    assert!(
        (0.4..=0.6).contains(&ratio),
        "at 50% the RMS went {full} -> {half} (ratio {ratio}), want about 0.5"
    );

    let r = w.cmd(ANN, "volume", json!([])).await;
    assert_ok(&r, "Volume is 50% (this server's default is 100%)");
    let r = w.cmd(ANN, "volume", opts(&[("level", json!(300))])).await;
    assert_refused(&r, "from 0 to 200");
    assert_eq!(snapshot(&w).await.volume, 50);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_jumps_to_the_second_tone_and_refuses_what_cannot_seek() {
    let w = world(|_| {}).await;
    write_two_tone_wav(&w.media_dir().join("two.wav"), 440.0, 880.0, 10.0);
    let r = w.play(ANN, &w.files.url("two.wav")).await;
    assert_ok(&r, "Playing");
    assert!(near(w.hear(25).await, 440.0));

    let r = w.cmd(ANN, "seek", opts(&[("time", json!("0:12"))])).await;
    assert_ok(&r, "Jumped to 0:12 in **two**");
    let f = hear_now(&w, 25).await;
    assert!(
        near(f, 880.0),
        "after /seek 0:12 heard {f} Hz, want 880 (second tone)"
    );
    assert!(
        w.files
            .request_log()
            .iter()
            .any(|r| r.path.ends_with("two.wav") && r.range.is_some() && r.status == 206),
        "the stream seeks with a Range request: {:?}",
        w.files.request_log()
    );

    // relative, backwards (a new range request on the same stream)
    let r = w.cmd(ANN, "seek", opts(&[("time", json!("-10"))])).await;
    assert_ok(&r, "Jumped to 0:0");
    let f = hear_now(&w, 25).await;
    assert!(near(f, 440.0), "after /seek -10 heard {f} Hz, want 440");

    // past the end of a track whose length yt-dlp did not know: refused, and it goes on
    let r = w.cmd(ANN, "seek", opts(&[("time", json!("5:00"))])).await;
    assert_refused(&r, "Couldn't jump to 5:00");
    assert_eq!(
        playing(&snapshot(&w).await),
        "two",
        "a failed seek never skips"
    );
    let f = hear_now(&w, 25).await;
    assert!(
        near(f, 440.0),
        "after a failed seek heard {f} Hz, want 440 (where it was)"
    );
    assert!(
        !w.emu
            .messages(TEXT)
            .iter()
            .any(|m| m.text().contains("Couldn't play")),
        "no failure notice"
    );

    // bad input
    let r = w.cmd(ANN, "seek", opts(&[("time", json!("soon"))])).await;
    assert_refused(&r, "can't read `soon` as a time");

    // a known length: refused before trying
    let mut short = (*tone(&w, "short", 660.0, 20.0)).clone();
    short.title = "short".into();
    enqueue(&w, ANN, vec![Arc::new(short)]).await;
    let r = w.cmd(ANN, "skip", json!([])).await;
    assert_ok(&r, "now playing **short**");
    let r = w.cmd(ANN, "seek", opts(&[("time", json!("1m"))])).await;
    assert_refused(&r, "**short** is 0:20 long");

    // a live stream cannot seek
    let mut live = (*tone(&w, "radio", 550.0, 20.0)).clone();
    live.is_live = true;
    live.duration = None;
    enqueue(&w, ANN, vec![Arc::new(live)]).await;
    w.cmd(ANN, "skip", json!([])).await;
    let r = w.cmd(ANN, "seek", opts(&[("time", json!("5"))])).await;
    assert_refused(&r, "live stream");

    // WebM/Opus (what YouTube serves): the demuxer jumps by its cues, with Range requests
    let webm = two_tone_webm(&w, "two-opus", 440.0, 880.0, 10.0);
    enqueue(&w, ANN, vec![webm]).await;
    let r = w.cmd(ANN, "skip", json!([])).await;
    assert_ok(&r, "now playing **two-opus**");
    assert!(near(hear_now(&w, 25).await, 440.0));
    let r = w.cmd(ANN, "seek", opts(&[("time", json!("14"))])).await;
    assert_ok(&r, "Jumped to 0:14 / 0:20 in **two-opus**");
    let f = hear_now(&w, 25).await;
    assert!(
        near(f, 880.0),
        "after /seek 14 in WebM heard {f} Hz, want 880"
    );
    let r = w.cmd(ANN, "seek", opts(&[("time", json!("0:02"))])).await;
    assert_ok(&r, "Jumped to 0:02");
    let f = hear_now(&w, 25).await;
    assert!(
        near(f, 440.0),
        "after /seek 0:02 in WebM heard {f} Hz, want 440"
    );

    // At once after a track starts, while songbird may still be opening it: it lands too.
    let again = two_tone_webm(&w, "two-again", 440.0, 880.0, 10.0);
    enqueue(&w, ANN, vec![again]).await;
    let r = w.cmd(ANN, "skip", json!([])).await;
    assert_ok(&r, "now playing **two-again**");
    let r = w.cmd(ANN, "seek", opts(&[("time", json!("12"))])).await;
    assert_ok(&r, "Jumped to 0:12");
    let f = hear_now(&w, 25).await;
    assert!(
        near(f, 880.0),
        "a /seek 12 right after the start heard {f} Hz, want 880"
    );
    w.stop().await;
}

/// `f1` then `f2`, `secs_each` each, as WebM/Opus (ffmpeg), queue-ready.
fn two_tone_webm(w: &World, name: &str, f1: f32, f2: f32, secs_each: f32) -> Arc<Track> {
    let file = format!("{name}.webm");
    let path = w.media_dir().join(&file);
    let sine = |f: f32| format!("sine=frequency={f}:sample_rate=48000:duration={secs_each}");
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(sine(f1))
        .args(["-f", "lavfi", "-i"])
        .arg(sine(f2))
        .args([
            "-filter_complex",
            "[0:a][1:a]concat=n=2:v=0:a=1",
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-b:a",
            "96k",
            "-f",
            "webm",
        ])
        .arg(&path)
        .output()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = w.files.url(&file);
    Arc::new(Track {
        title: name.into(),
        page_url: url.clone(),
        stream_url: url,
        http_headers: Vec::new(),
        duration: Some(Duration::from_secs_f32(2.0 * secs_each)),
        extractor: "generic".into(),
        id: name.into(),
        is_live: false,
        uploader: None,
        thumbnail: None,
        ext: Some("webm".into()),
        acodec: Some("opus".into()),
        stream_expires: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nowplaying_and_the_queue_pages_with_buttons_only_the_caller_can_press() {
    let w = world(|c| c.player.page_size = 5).await;
    let mut tracks = vec![tone(&w, "bed", 330.0, 60.0)];
    tracks.extend((1..=7).map(|i| tone(&w, &format!("t{i}"), 500.0, 30.0)));
    enqueue(&w, ANN, tracks).await;
    w.emu.wait_audio_frames(GUILD, 10, T).await;

    let np = w.cmd(BEN, "nowplaying", json!([])).await;
    let t = np.text();
    assert!(!np.ephemeral);
    for want in [
        "[bed](",
        "🔘",
        "/ 1:00",
        "Requested by ann",
        &w.files.url("bed.wav"),
    ] {
        assert!(t.contains(want), "want {want:?} in /nowplaying: {t}");
    }

    let q = w.cmd(ANN, "queue", json!([])).await;
    let t = q.text();
    assert!(t.contains("Page 1/2") && t.contains("7 queued"), "{t}");
    assert!(
        t.contains("`1.` [t1]") && t.contains("`5.` [t5]") && !t.contains("`6.`"),
        "{t}"
    );
    assert!(t.contains("· in 0:"), "time until t1 plays: {t}");
    assert!(t.contains("· in 1:"), "time until t2 plays: {t}");
    assert!(
        t.contains("total 4:"),
        "60 s + 7 × 30 s, minus what played: {t}"
    );
    let ids = q.custom_ids();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let id = |key: &str| ids.iter().find(|i| i.ends_with(key)).unwrap().clone();

    // someone else's press is refused privately and changes nothing
    let other = w
        .emu
        .component(&q, BEN, &id("next"))
        .await
        .response(T)
        .await;
    assert_refused(&other, "Only <@");
    // the caller turns pages
    let p2 = w
        .emu
        .component(&q, ANN, &id("next"))
        .await
        .response(T)
        .await;
    let t = p2.text();
    assert!(
        t.contains("Page 2/2") && t.contains("`6.` [t6]") && t.contains("`7.` [t7]"),
        "{t}"
    );
    let p1 = w
        .emu
        .component(&q, ANN, &id("first"))
        .await
        .response(T)
        .await;
    assert!(p1.text().contains("Page 1/2"), "{}", p1.text());
    let last = w
        .emu
        .component(&q, ANN, &id("last"))
        .await
        .response(T)
        .await;
    assert!(last.text().contains("Page 2/2"), "{}", last.text());

    // a page past the end shows the last one
    let q = w.cmd(ANN, "queue", opts(&[("page", json!(9))])).await;
    assert!(q.text().contains("Page 2/2"), "{}", q.text());
    w.stop().await;
}

/// A bot whose yt-dlp takes 3 s a call, and the URL of a page listing two 30 s tones, titled
/// "`name` list" (`name`a.wav and `name`b.wav); the temporary folder holds the slow yt-dlp.
async fn slow_playlist(name: &str) -> (World, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let slow = slow_ytdlp(tmp.path(), 3);
    let w = world(|c| {
        c.ytdlp.path = slow.clone();
        c.cache.audio = false;
    })
    .await;
    let media = w.media_dir();
    write_tone_wav(&media.join(format!("{name}a.wav")), 440.0, 30.0, 0.5);
    write_tone_wav(&media.join(format!("{name}b.wav")), 550.0, 30.0, 0.5);
    std::fs::write(
        media.join(format!("playlist-{name}.html")),
        format!(
            r#"<html><head><title>{name} list</title></head><body><audio src="/{name}a.wav"></audio><audio src="/{name}b.wav"></audio></body></html>"#
        ),
    )
    .unwrap();
    let query = w.files.url(&format!("playlist-{name}.html"));
    (w, query, tmp)
}

/// A playlist whose lookups take a while says how far they have come in the reply itself,
/// and the answer then replaces that line: one message, never a stale "Loading…" left in
/// the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_playlist_shows_its_progress_then_its_answer_in_place() {
    let (w, query, _tmp) = slow_playlist("slow").await;
    let i = w
        .emu
        .command(GUILD, TEXT, ANN, "play", opts(&[("query", json!(query))]))
        .await;
    let r = i.response(Duration::from_secs(60)).await;
    assert_ok(&r, "Queued 2 tracks from [slow list]");
    let replies = i.replies();
    assert!(
        replies
            .iter()
            .any(|r| r.text() == "Loading the tracks… 0 of 2"),
        "no progress shown: {:?}",
        replies.iter().map(|r| r.text()).collect::<Vec<_>>()
    );
    assert!(
        replies.iter().all(|x| x.id == r.id),
        "the answer is a second message: {replies:?}"
    );
    let visible = w.emu.all_messages(TEXT);
    assert!(
        visible.iter().all(|m| !m.is_progress()),
        "a progress line was left in the channel: {visible:?}"
    );
    w.stop().await;
}

/// Discord's interaction tokens work for 15 minutes (here 4 s): a playlist that takes longer
/// to load than that cannot be answered in its reply any more, so the answer is posted in
/// the channel, naming who asked, and the tracks are queued all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_after_the_interaction_expired_is_posted_in_the_channel() {
    let (w, query, _tmp) = slow_playlist("late").await;
    w.emu.set_interaction_token_lifetime(Duration::from_secs(4));
    w.emu
        .command(GUILD, TEXT, ANN, "play", opts(&[("query", json!(query))]))
        .await;
    let emu = &w.emu;
    let answer = |e: &support::Emulator| {
        e.messages(TEXT)
            .iter()
            .any(|m| m.text().contains("Queued 2 tracks from [late list]"))
    };
    emu.wait_for("the answer in the channel", Duration::from_secs(60), answer)
        .await;
    let posted = emu
        .messages(TEXT)
        .into_iter()
        .find(|m| m.text().contains("Queued 2 tracks"))
        .unwrap();
    assert!(
        posted.text().contains(&format!("<@{ANN}>")),
        "names who asked: {}",
        posted.text()
    );
    assert!(!emu.expired_token_uses().is_empty(), "the token did expire");
    w.emu.wait_audio_frames(GUILD, 10, T).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_are_expanded_up_to_the_cap_and_failures_are_counted() {
    let w = world(|c| c.player.max_playlist = 3).await;
    let media = w.media_dir();
    write_tone_wav(&media.join("pa.wav"), 440.0, 30.0, 0.5);
    write_tone_wav(&media.join("pb.wav"), 550.0, 30.0, 0.5);
    write_tone_wav(&media.join("pc.wav"), 660.0, 30.0, 0.5);
    std::fs::write(
        media.join("playlist-mix.html"),
        r#"<html><head><title>mix tape</title></head><body><audio src="/pa.wav"></audio><audio src="/gone.wav"></audio><audio src="/pb.wav"></audio></body></html>"#,
    )
    .unwrap();
    std::fs::write(
        media.join("playlist-long.html"),
        r#"<html><head><title>long list</title></head><body><audio src="/pc.wav"></audio><audio src="/pb.wav"></audio><audio src="/pa.wav"></audio><audio src="/pc.wav?again"></audio></body></html>"#,
    )
    .unwrap();

    let r = w.play(ANN, &w.files.url("playlist-mix.html")).await;
    assert_ok(&r, "Queued 2 tracks from [mix tape]");
    assert!(r.text().contains("playing **pa** now"), "{}", r.text());
    assert!(
        r.text().contains("1 skipped (could not be loaded)"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("only the first"), "{}", r.text());
    assert!(near(w.hear(25).await, 440.0));
    let s = snapshot(&w).await;
    assert_eq!(
        (playing(&s), titles(&s)),
        ("pa".into(), vec!["pb".to_string()])
    );

    let r = w.play(ANN, &w.files.url("playlist-long.html")).await;
    assert_ok(&r, "Queued 3 tracks from [long list]");
    assert!(r.text().contains("starting at position 2"), "{}", r.text());
    assert!(
        r.text().contains("only the first 3 are taken"),
        "{}",
        r.text()
    );
    assert_eq!(titles(&snapshot(&w).await), ["pb", "pc", "pb", "pa"]);

    // `next`: in front of everything
    let r = w
        .cmd(
            ANN,
            "play",
            opts(&[
                ("query", json!(w.files.url("pc.wav"))),
                ("next", json!(true)),
            ]),
        )
        .await;
    assert_ok(&r, "at position 1: it plays next");
    assert_eq!(titles(&snapshot(&w).await)[0], "pc");
    let r = w.cmd(ANN, "skip", json!([])).await;
    assert_ok(&r, "now playing **pc**");
    assert!(near(hear_now(&w, 30).await, 660.0));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_length_and_track_duration_limits_come_from_the_settings() {
    let w = world(|_| {}).await;
    w.bot
        .settings
        .apply(GUILD, Change::MaxTrackDuration(Duration::from_secs(5)))
        .await
        .unwrap();
    w.bot
        .settings
        .apply(GUILD, Change::MaxQueue(2))
        .await
        .unwrap();
    let wav = w.files.url("low.wav");
    std::fs::write(
        w.media_dir().join("ten.html"),
        format!(
            r#"<html><head><title>ld</title><script type="application/ld+json">{{"@context":"https://schema.org","@type":"AudioObject","name":"ten seconds","contentUrl":"{wav}","duration":"PT10S","uploadDate":"2020-01-01"}}</script></head><body>hi</body></html>"#
        ),
    )
    .unwrap();
    let r = w.play(ANN, &w.files.url("ten.html")).await;
    assert_refused(
        &r,
        "**ten seconds** is 0:10 long; this server's limit is 0:05.",
    );
    assert!(w.emu.audio(GUILD).is_empty());

    enqueue(&w, ANN, vec![tone(&w, "bed", 330.0, 30.0)]).await;
    enqueue(
        &w,
        ANN,
        vec![tone(&w, "q1", 440.0, 3.0), tone(&w, "q2", 440.0, 3.0)],
    )
    .await;
    let r = w.play(ANN, &wav).await;
    assert_refused(&r, "The queue is full (2 tracks, this server's limit)");
    assert_eq!(snapshot(&w).await.upcoming.len(), 2);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_dj_role_only_djs_admins_and_the_requester_control_and_others_vote() {
    let w = world(|_| {}).await;
    w.bot
        .settings
        .apply(GUILD, Change::DjRole(Some(DJ_ROLE)))
        .await
        .unwrap();
    w.emu.add_member(GUILD, CAT, "cat", false, false);
    w.emu.user_join_voice(GUILD, BEN, MUSIC).await;
    w.emu.user_join_voice(GUILD, CAT, MUSIC).await;
    enqueue(
        &w,
        ANN,
        vec![tone(&w, "bed", 330.0, 60.0), tone(&w, "nxt", 550.0, 60.0)],
    )
    .await;
    assert!(near(w.hear(25).await, 330.0));

    // a listener without the role
    let r = w.cmd(BEN, "stop", json!([])).await;
    assert_refused(&r, &format!("Only DJs (<@&{DJ_ROLE}>), administrators and whoever asked for the current track can stop the music."));
    for (cmd, o, what) in [
        ("volume", opts(&[("level", json!(50))]), "change the volume"),
        ("clear", json!([]), "clear the queue"),
        (
            "loop",
            opts(&[("mode", json!("track"))]),
            "change the loop mode",
        ),
        (
            "remove",
            opts(&[("position", json!("1"))]),
            "remove other people's tracks",
        ),
        ("seek", opts(&[("time", json!("0:30"))]), "seek"),
    ] {
        let r = w.cmd(BEN, cmd, o).await;
        assert_refused(&r, what);
    }
    let s = snapshot(&w).await;
    assert_eq!(
        (playing(&s).as_str(), s.upcoming.len(), s.volume),
        ("bed", 1, 100)
    );

    // /skip counts votes: three listeners, two needed
    let r = w.cmd(BEN, "skip", json!([])).await;
    assert_ok(&r, "ben voted to skip **bed**: 1/2 votes, 1 more needed");
    let r = w.cmd(BEN, "skip", json!([])).await;
    assert_refused(&r, "You already voted");
    assert_eq!(playing(&snapshot(&w).await), "bed");
    let r = w.cmd(CAT, "skip", json!([])).await;
    assert_ok(
        &r,
        "Vote passed (2/3): Skipped **bed**; now playing **nxt**",
    );
    let f = hear_now(&w, 40).await;
    assert!(near(f, 550.0), "after the vote heard {f} Hz, want 550");

    // the requester of the current track may, a DJ may, an administrator may
    let r = w.cmd(ANN, "pause", json!([])).await;
    assert_ok(&r, "Paused **nxt**");
    let r = w.cmd(ANN, "resume", json!([])).await;
    assert_ok(&r, "Resumed **nxt**");
    w.emu.set_member_roles(GUILD, BEN, &[DJ_ROLE]);
    let r = w.cmd(BEN, "loop", opts(&[("mode", json!("queue"))])).await;
    assert_ok(&r, "Looping the queue");
    w.emu.add_member(GUILD, BOSS, "boss", false, true);
    w.emu.user_join_voice(GUILD, BOSS, MUSIC).await;
    let r = w.cmd(BOSS, "volume", opts(&[("level", json!(80))])).await;
    assert_ok(&r, "Volume set to 80%");

    // everyone may remove their own tracks
    enqueue(&w, CAT, vec![tone(&w, "mine", 660.0, 5.0)]).await;
    let r = w
        .cmd(CAT, "remove", opts(&[("position", json!("last"))]))
        .await;
    assert_ok(&r, "Removed **mine**");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_autocomplete_suggests_what_this_server_played() {
    let w = world(|_| {}).await;
    let url = w.files.url("low.wav");
    let r = w.play(ANN, &url).await;
    assert_ok(&r, "Playing");

    let ask = |text: &str| {
        let text = text.to_string();
        let emu = w.emu.clone();
        async move {
            emu.autocomplete(
                GUILD,
                TEXT,
                BEN,
                "play",
                json!([{"name": "query", "type": 3, "value": text, "focused": true}]),
            )
            .await
            .autocomplete_choices(T)
            .await
        }
    };
    let choices = ask("lo").await;
    assert!(
        choices
            .iter()
            .any(|c| c["name"] == "low" && c["value"] == url.as_str()),
        "{choices:?}"
    );
    assert!(ask("").await.iter().any(|c| c["name"] == "low"));
    assert!(ask("zzz").await.is_empty());
    assert!(ask("https://example.com/x").await.is_empty());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_user_types_ends_in_an_unhandled_error() {
    let w = world(|_| {}).await;
    // nothing plays yet
    for (cmd, o) in [
        ("skip", json!([])),
        ("back", json!([])),
        ("pause", json!([])),
        ("resume", json!([])),
        ("stop", json!([])),
        ("leave", json!([])),
        ("shuffle", json!([])),
        ("clear", json!([])),
        ("queue", json!([])),
        ("nowplaying", json!([])),
        ("seek", opts(&[("time", json!("1:23"))])),
        ("volume", opts(&[("level", json!(50))])),
        ("loop", opts(&[("mode", json!("track"))])),
        ("remove", opts(&[("position", json!("1"))])),
        ("move", opts(&[("from", json!(1)), ("to", json!(2))])),
    ] {
        let r = w.cmd(ANN, cmd, o).await;
        assert_refused(&r, "Nothing is playing");
    }

    enqueue(&w, ANN, vec![tone(&w, "bed", 330.0, 60.0)]).await;
    w.emu.wait_audio_frames(GUILD, 10, T).await;
    // empty queue and odd input
    for (cmd, o, want) in [
        ("back", json!([]), "no previous track"),
        (
            "remove",
            opts(&[("position", json!("1"))]),
            "Nothing is waiting",
        ),
        (
            "move",
            opts(&[("from", json!(-4)), ("to", json!(1))]),
            "Nothing is waiting",
        ),
        ("seek", opts(&[("time", json!("1:99"))]), "can't read"),
        ("volume", opts(&[("level", json!(-5))]), "from 0 to 200"),
        (
            "skip",
            opts(&[("count", json!(0))]),
            "Skip at least 1 track",
        ),
        (
            "loop",
            opts(&[("mode", json!("sideways"))]),
            "off, track or queue",
        ),
        (
            "play",
            opts(&[("query", json!("   "))]),
            "something to search for",
        ),
    ] {
        let r = w.cmd(ANN, cmd, o).await;
        assert_refused(&r, want);
    }

    let q = w.cmd(ANN, "queue", opts(&[("page", json!(-2))])).await;
    assert!(
        !q.ephemeral && q.text().contains("Page 1/1"),
        "{}",
        q.text()
    );

    // not in the bot's channel
    w.emu.user_join_voice(GUILD, BEN, LOBBY).await;
    for (cmd, o) in [
        ("skip", json!([])),
        ("stop", json!([])),
        ("volume", opts(&[("level", json!(10))])),
        ("seek", opts(&[("time", json!("5"))])),
    ] {
        let r = w.cmd(BEN, cmd, o).await;
        assert_refused(&r, &format!("Join <#{MUSIC}>"));
    }
    let r = w.play(BEN, &w.files.url("high.wav")).await;
    assert_refused(&r, &format!("I'm already playing in <#{MUSIC}>"));
    // and not in voice at all
    w.emu.user_leave_voice(GUILD, BEN).await;
    let r = w.play(BEN, &w.files.url("high.wav")).await;
    assert_refused(&r, "Join a voice channel");

    assert!(
        near(hear_now(&w, 25).await, 330.0),
        "the music never stopped"
    );
    assert!(
        w.emu.protocol_errors().is_empty(),
        "{:?}",
        w.emu.protocol_errors()
    );
    w.stop().await;
}
