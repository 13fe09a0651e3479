//! How the bot behaves when the media server lets a playing track down: it stops sending
//! (the connection stays open), resets the connection, or serves a file shorter than the
//! length it announced. The real bot plays from the loopback file server, which injects
//! the fault (`tests/support/media_faults.rs`); each test asserts what a listener hears and
//! reads, and prints what it measured.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use encore::player::Requester;
use encore::sources::Track;
use support::world::*;
use support::*;

fn ann() -> Requester {
    Requester {
        id: ANN,
        name: "ann".into(),
    }
}

/// A world whose notices are lines (not the panel), with no audio cache (its download
/// would read the same file past the fault and play that instead), and a media server
/// that may keep a stream waiting for `stream_timeout`.
async fn world(stream_timeout: Duration) -> World {
    World::start_with(|c| {
        c.player.panel = false;
        c.cache.audio = false;
        c.player.stream_timeout = stream_timeout;
    })
    .await
}

fn notices(w: &World) -> Vec<String> {
    w.emu.messages(TEXT).iter().map(|m| m.text()).collect()
}

/// 48 kHz stereo 16-bit: the byte of the WAV (after its 44-byte header) `secs` in.
fn byte_at(secs: f32) -> u64 {
    44 + (secs * 48_000.0) as u64 * 4
}

/// Waits until `what` holds, re-checked every 20 ms; panics after `timeout`. Not
/// `Emulator::wait_for`: most of these conditions are the file server's, which does not
/// wake it, and the times measured after them want finer steps than its 100 ms.
async fn until(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !pred() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The audible frames heard at `freq` (each frame's own dominant frequency, ±30 Hz).
fn frames_at(w: &World, freq: f32) -> Vec<AudioFrame> {
    non_silent(&w.emu.audio(GUILD))
        .into_iter()
        .filter(|f| (dominant_frequency(std::slice::from_ref(f)) - freq).abs() <= 30.0)
        .collect()
}

/// Waits for the "queue is finished" notice: every track played or ended.
async fn queue_finished(w: &World) {
    until("the queue to finish", T, || {
        notices(w)
            .iter()
            .any(|n| n.contains("The queue is finished"))
    })
    .await;
}

async fn play(w: &World, tracks: Vec<Arc<Track>>) {
    w.enqueue(ann(), tracks).await;
}

/// A bot with `stream_timeout`, playing a 3 s 440 Hz "stall" whose server stops sending
/// after its first second (the connection left open), then a 1 s 660 Hz "next".
async fn playing_a_stall(stream_timeout: Duration) -> World {
    let w = world(stream_timeout).await;
    let stall = w.tone("stall", 440.0, 3.0);
    let next = w.tone("next", 660.0, 1.0);
    w.files
        .fault("stall.wav", Fault::Stall { at: byte_at(1.0) });
    play(&w, vec![stall, next]).await;
    w
}

/// The media server sends the headers and a second of a 3 s track, then nothing, with the
/// connection open. The bot waits `stream_timeout` (1 s here), asks again from where it
/// was (the server stalls again, twice), then tells the channel the track ended early and
/// plays the next one; no stalled connection is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_media_server_ends_the_track_early_and_the_next_one_plays() {
    let w = playing_a_stall(Duration::from_secs(1)).await;

    let w2 = &w;
    until("the next track heard", T, || {
        frames_at(w2, 660.0).len() >= 25
    })
    .await;
    // The decoder reads ahead: the silence falls inside the track, before what it had.
    let (first_440, first_660) = (
        frames_at(&w, 440.0).first().expect("the first second").at,
        frames_at(&w, 660.0)[0].at,
    );
    let silence = longest_silence(&w.emu.audio(GUILD), first_440, first_660);
    let heard = frames_at(&w, 440.0).len() as f32 * 0.02;
    support::recovered("media stall (silence before the next track)", silence);
    println!(
        "stall: {heard:.2} s of the track heard, the longest silence before the next track {:.2} s \
         ({} requests cut by the stall)",
        silence.as_secs_f32(),
        w.files.faults_met()
    );
    assert!(
        (0.8..=1.1).contains(&heard),
        "heard {heard} s of the stalled track"
    );
    // One wait for the first answer, one for each of the two re-opens, and slack.
    assert!(
        silence > Duration::from_millis(1500) && silence < Duration::from_secs(6),
        "silent for {silence:?}"
    );
    assert_eq!(w.files.faults_met(), 3, "the first answer and two re-opens");
    let ranges: Vec<_> = w
        .files
        .request_log()
        .into_iter()
        .filter(|r| r.path == "/stall.wav" && r.range.is_some())
        .collect();
    assert_eq!(ranges.len(), 2, "re-opened where it was: {ranges:?}");

    until("the notice", T, || {
        notices(w2).iter().any(|n| n.contains("ended early"))
    })
    .await;
    let notes = notices(&w);
    let note = notes.iter().find(|n| n.contains("ended early")).unwrap();
    assert!(
        note.contains("**stall** ended early: the media server stopped sending it (")
            && note.contains("% of it arrived)"),
        "{notes:#?}"
    );
    until("every stalled connection closed", T, || {
        w2.files.stalled_open() == 0
    })
    .await;
    w.stop().await;
}

/// `/skip` while the media server stalls: the next track is heard at once, not after the
/// 10 s `stream_timeout` (songbird's mixer reads the stream on its own thread, and used to
/// wait there for the stalled server), the stalled connection is closed, and a track the
/// user skipped gets no "ended early" notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_during_a_stall_plays_the_next_track_at_once() {
    let w = playing_a_stall(Duration::from_secs(10)).await;

    let w2 = &w;
    until("the stall", T, || w2.files.stalled_open() == 1).await;
    until("the stalled track to go quiet", T, || {
        frames_at(w2, 440.0)
            .last()
            .is_some_and(|f| f.at.elapsed() > Duration::from_millis(300))
    })
    .await;
    let asked = Instant::now();
    let r = w.cmd(ANN, "skip", serde_json::json!([])).await;
    assert!(r.text().contains("Skipped"), "{}", r.text());
    until("the next track heard", Duration::from_secs(5), || {
        !frames_at(w2, 660.0).is_empty()
    })
    .await;
    let heard = frames_at(&w, 660.0)[0].at - asked;
    until(
        "the stalled connection closed",
        Duration::from_secs(5),
        || w2.files.stalled_open() == 0,
    )
    .await;
    let closed = asked.elapsed();
    support::recovered("skip during a media stall", heard);
    println!(
        "skip during a stall: next track heard {:.2} s after /skip (stream_timeout 10 s); \
         stalled connection closed within {:.2} s",
        heard.as_secs_f32(),
        closed.as_secs_f32()
    );
    assert!(heard < Duration::from_secs(2), "{heard:?}");
    w.emu
        .wait_audio_frames(GUILD, frames_at(&w, 440.0).len() + 45, T)
        .await;
    assert!(
        !notices(&w).iter().any(|n| n.contains("ended early")),
        "{:#?}",
        notices(&w)
    );
    w.stop().await;
}

/// The connection is reset (TCP RST) a second into a track of 1.5 s at 440 Hz then 1.5 s
/// at 660 Hz. The server keeps serving: the bot asks for the rest with a `Range` from
/// where it was, the track goes on from there (not from its start, and with no notice),
/// and the next track plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_resumes_the_track_where_it_was() {
    let (w, again) = reset_mid_track(true).await;
    assert_eq!(again.status, 206);
    let from: u64 = again
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.split('-').next()?.parse().ok())
        .expect("a byte range");
    println!("reset: resumed from byte {from} of {} sent", byte_at(1.0));
    assert!(from > 0 && from <= byte_at(1.0), "resumed from byte {from}");
    w.stop().await;
}

/// The same reset from a server that does not serve byte ranges: the bot cannot ask for
/// the rest, so it reads the file again from its start and drops what it already played;
/// the track goes on from where it was, with no notice, and the next track plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_without_byte_ranges_reads_the_file_again_and_goes_on() {
    let (w, again) = reset_mid_track(false).await;
    assert_eq!((again.status, again.range), (200, None));
    w.stop().await;
}

/// Plays the two-tone track reset a second in (served with byte ranges or without), then
/// a 880 Hz one; checks both halves were heard in full, once, with no notice; returns the
/// world and the request that picked the track up again.
async fn reset_mid_track(ranges: bool) -> (World, FileRequest) {
    let w = world(Duration::from_secs(10)).await;
    write_tone_pair_wav(&w.media_dir().join("reset.wav"), (440.0, 1.5), (660.0, 1.5));
    let reset = w.tone("reset", 440.0, 3.0); // the file above, with its length
    let next = w.tone("next", 880.0, 1.0);
    w.files
        .fault("reset.wav", Fault::Reset { at: byte_at(1.0) });
    if !ranges {
        w.files.no_ranges("reset.wav");
    }
    play(&w, vec![reset, next]).await;

    queue_finished(&w).await;
    let asked: Vec<_> = w
        .files
        .request_log()
        .into_iter()
        .filter(|r| r.path == "/reset.wav" && r.method == "GET")
        .collect();
    assert_eq!(asked.len(), 2, "the first answer and one more: {asked:?}");

    let (low, mid, high) = (
        frames_at(&w, 440.0),
        frames_at(&w, 660.0),
        frames_at(&w, 880.0),
    );
    let gap = longest_silence(
        &w.emu.audio(GUILD),
        low[0].at,
        mid.last().expect("the second half").at,
    );
    let what = if ranges {
        "connection reset (longest silence)"
    } else {
        "connection reset, no byte ranges (longest silence)"
    };
    support::recovered(what, gap);
    println!(
        "reset ({}): {:.2} s + {:.2} s of the track heard (1.5 + 1.5 expected), longest \
         silence in it {:.2} s; next track {:.2} s",
        if ranges {
            "byte ranges"
        } else {
            "no byte ranges"
        },
        low.len() as f32 * 0.02,
        mid.len() as f32 * 0.02,
        gap.as_secs_f32(),
        high.len() as f32 * 0.02
    );
    // Started again from the top, the 440 Hz half would be heard for 2.5 s.
    assert!(
        (65..=80).contains(&low.len()),
        "440 Hz frames: {}",
        low.len()
    );
    assert!(
        (65..=80).contains(&mid.len()),
        "660 Hz frames: {}",
        mid.len()
    );
    assert!(high.len() >= 40, "the next track: {} frames", high.len());
    let notes = notices(&w);
    assert!(
        !notes
            .iter()
            .any(|n| n.contains("ended early") || n.contains("Couldn't")),
        "{notes:#?}"
    );
    assert_eq!(
        notes.iter().filter(|n| n.contains("Now playing")).count(),
        2,
        "{notes:#?}"
    );
    let again = asked[1].clone();
    (w, again)
}

/// A file cut short: the server announces 3 s of audio and closes after 1.5 s, every time
/// it is asked (a re-open from there gets the headers and nothing). What arrived plays,
/// the channel is told the track ended early and how much of it arrived (the bytes read
/// against the announced length), and the next track plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_plays_what_arrived_then_the_next_track() {
    let w = world(Duration::from_secs(10)).await;
    let cut = w.tone("cut", 440.0, 3.0);
    let next = w.tone("next", 660.0, 1.0);
    let at = byte_at(1.5);
    w.files.fault("cut.wav", Fault::Truncate { at });
    play(&w, vec![cut, next]).await;

    queue_finished(&w).await;
    let (low, high) = (frames_at(&w, 440.0), frames_at(&w, 660.0));
    let silence = longest_silence(&w.emu.audio(GUILD), low[0].at, high[0].at);
    let notes = notices(&w);
    let note = notes
        .iter()
        .find(|n| n.contains("ended early"))
        .unwrap_or_else(|| panic!("no notice: {notes:#?}"));
    let len = byte_at(3.0);
    let percent = at * 100 / len;
    support::recovered("truncated file (silence before the next track)", silence);
    println!(
        "truncated: {:.2} s of 1.5 s sent heard, next track after {:.2} s of silence; \
         {} requests cut; notice: {note}",
        low.len() as f32 * 0.02,
        silence.as_secs_f32(),
        w.files.faults_met()
    );
    assert!(
        (65..=80).contains(&low.len()),
        "440 Hz frames: {}",
        low.len()
    );
    assert!(high.len() >= 40, "the next track: {} frames", high.len());
    assert!(silence < Duration::from_secs(2), "{silence:?}");
    assert!(
        note.contains(&format!(
            "**cut** ended early: the media server cut it short ({percent}% of it arrived)"
        )),
        "{note}"
    );
    w.stop().await;
}
