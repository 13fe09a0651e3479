//! Audio filters end to end: the real bot against the emulator, judged by what a listener
//! hears (the decoded audio the emulator receives).

mod support;

use std::f32::consts::TAU;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::world::*;
use support::*;

/// A preset as Discord sends a choice of `/filter preset:` (its index; `off` is the first).
fn preset(name: &str) -> Value {
    let i = encore::player::filters::PRESETS
        .iter()
        .position(|p| *p == name)
        .map_or(0, |i| i + 1);
    json!(i)
}

async fn filter(w: &World, pairs: &[(&str, Value)]) -> String {
    let r = w.cmd(ANN, "filter", opts(pairs)).await;
    assert!(!r.ephemeral, "refused: {}", r.text());
    r.text().to_string()
}

/// The left channel of `frames`, as frames (both sides the left one).
fn left(frames: &[AudioFrame]) -> Vec<AudioFrame> {
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            for lr in f.pcm.chunks_exact_mut(2) {
                lr[1] = lr[0];
            }
            f
        })
        .collect()
}

/// How much stronger `a` Hz is than `b` Hz in the frames, in dB.
fn db_over(frames: &[AudioFrame], a: f32, b: f32) -> f32 {
    10.0 * (tone_strength(frames, a).max(1e-12) / tone_strength(frames, b).max(1e-12)).log10()
}

/// The last `n` audible frames once `n` more arrived.
async fn listen(w: &World, n: usize) -> Vec<AudioFrame> {
    w.emu.clear_audio(GUILD);
    w.emu.wait_audio_frames(GUILD, n, T).await;
    let frames = non_silent(&w.emu.audio(GUILD));
    frames[frames.len().saturating_sub(n)..].to_vec()
}

/// 60 Hz, 1 kHz and 5 kHz in the centre and 660 Hz on the left only, for 40 s.
fn write_mix(w: &World) -> String {
    let n = 48_000 * 40;
    write_stereo_wav(
        &w.media_dir().join("mix.wav"),
        (0..n).map(|i| {
            let t = i as f32 / 48_000.0;
            let c = [60.0, 1000.0, 5000.0]
                .iter()
                .map(|f| (TAU * f * t).sin() * 0.08)
                .sum::<f32>();
            (c + (TAU * 660.0 * t).sin() * 0.08, c)
        }),
    );
    w.files.url("mix.wav")
}

/// Bassboost (heard within 300 ms, the track going on), lowpass, karaoke, 8d, and the DJ
/// rule, on one playing track.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_are_heard_on_the_playing_track() {
    let w = World::start_with(|c| c.cache.audio = false).await;
    let url = write_mix(&w);
    assert!(w.play(ANN, &url).await.text().contains("Playing"));
    let plain = listen(&w, 25).await;
    let base = db_over(&plain, 60.0, 1000.0);
    assert!(base.abs() < 3.0, "60 Hz vs 1 kHz before: {base} dB");
    let before = w.snapshot().await;

    w.emu.clear_audio(GUILD);
    let asked = Instant::now();
    let text = filter(&w, &[("preset", preset("bassboost-high"))]).await;
    assert!(text.contains("Filters set on **mix**"), "{text}");
    // The first 100 ms in which 60 Hz stands out is heard within 300 ms of the command.
    let heard = loop {
        w.emu.wait_audio_frames(GUILD, 5, T).await;
        let frames = non_silent(&w.emu.audio(GUILD));
        let hit = frames
            .windows(5)
            .find(|win| db_over(win, 60.0, 1000.0) - base >= 10.0)
            .map(|win| win[0].at);
        if let Some(at) = hit {
            break at;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "bassboost never heard"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lag = heard.saturating_duration_since(asked);
    assert!(lag <= Duration::from_millis(300), "heard after {lag:?}");
    let boosted = listen(&w, 25).await;
    let raised = db_over(&boosted, 60.0, 1000.0) - base;
    assert!(
        raised >= 12.0 - 1.0,
        "bassboost-high raised 60 Hz by {raised} dB, want 12"
    );
    let after = w.snapshot().await;
    assert_eq!(
        after.current.as_ref().unwrap().id,
        before.current.as_ref().unwrap().id
    );
    assert!(
        after.position > before.position,
        "the track did not restart"
    );

    filter(&w, &[("preset", preset("soft"))]).await;
    let soft = listen(&w, 25).await;
    let cut = db_over(&soft, 5000.0, 60.0) - db_over(&plain, 5000.0, 60.0);
    assert!(
        cut <= -30.0,
        "lowpass changed 5 kHz by {cut} dB against 60 Hz"
    );

    filter(&w, &[("preset", preset("karaoke"))]).await;
    let k = left(&listen(&w, 25).await);
    let centre = db_over(&k, 1000.0, 660.0) - db_over(&left(&plain), 1000.0, 660.0);
    assert!(
        centre <= -20.0,
        "karaoke moved the centre by {centre} dB against the side"
    );
    // The side tone stays (at half: its centre share goes), like the centre's bass.
    let side = db_over(&k, 660.0, 60.0) - db_over(&left(&plain), 660.0, 60.0);
    assert!(
        side >= -9.0,
        "karaoke moved the side tone by {side} dB against the bass"
    );

    filter(&w, &[("preset", preset("8d"))]).await;
    let turning = listen(&w, 150).await;
    let balance: Vec<f32> = turning
        .chunks(10)
        .map(|c| {
            let (l, r) = c
                .iter()
                .flat_map(|f| f.pcm.chunks_exact(2))
                .fold((0.0, 0.0), |(l, r), s| (l + s[0] * s[0], r + s[1] * s[1]));
            10.0 * (l / r.max(1e-9_f32)).max(1e-9).log10()
        })
        .collect();
    let (lo, hi) = balance
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    assert!(hi - lo >= 10.0, "8d balance only went {lo}..{hi} dB");

    let r = w.cmd(ANN, "filters", json!([])).await;
    assert!(r.text().contains("rotation 0.2 Hz"), "{}", r.text());
    let r = w.cmd(ANN, "filter", opts(&[("speed", json!(9.5))])).await;
    assert!(
        r.ephemeral && r.text().contains("Speed must be between 0.5 and 2"),
        "{}",
        r.text()
    );
    w.stop().await;
}

/// Frames whose 5-frame window is dominated by `freq`.
fn frames_at(frames: &[AudioFrame], freq: f32) -> usize {
    frames
        .chunks(5)
        .filter(|c| c.len() == 5 && (dominant_frequency(c) - freq).abs() <= 15.0)
        .count()
        * 5
}

/// rate and speed (pitch and length), the position under speed, and `/filter off` back to
/// the file's own Opus frames; the filters survive a restart with the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_and_passthrough() {
    let mut w = World::start_with(|c| c.cache.audio = false).await;
    let hold = w.tone("hold", 880.0, 60.0);
    w.enqueue(
        encore::player::Requester {
            id: ANN,
            name: "ann".into(),
        },
        vec![hold],
    )
    .await;
    w.emu.wait_audio_frames(GUILD, 5, T).await;

    // rate 1.25: a 5 s 440 Hz tone is heard as 550 Hz for 4 s.
    filter(&w, &[("rate", json!(1.25))]).await;
    let five = w.tone("five", 440.0, 5.0);
    let end = w.tone("end", 300.0, 60.0);
    w.enqueue(
        encore::player::Requester {
            id: ANN,
            name: "ann".into(),
        },
        vec![five, end.clone()],
    )
    .await;
    w.cmd(ANN, "skip", json!([])).await;
    w.emu.clear_audio(GUILD);
    w.emu
        .wait_for("the end tone", T, |e| {
            let f = non_silent(&e.audio(GUILD));
            f.len() > 260 && (dominant_frequency(&f[f.len() - 5..]) - 375.0).abs() < 15.0
        })
        .await;
    let heard = non_silent(&w.emu.audio(GUILD));
    let secs = frames_at(&heard, 550.0) as f32 * 0.02;
    assert!(
        (secs - 4.0).abs() <= 0.3,
        "rate 1.25 played 5 s of 440 Hz as {secs} s of 550 Hz"
    );

    // speed 1.25 (rate back to 1): 440 Hz stays, 4 s; the position runs 1.25× the clock.
    filter(&w, &[("rate", json!(1.0)), ("speed", json!(1.25))]).await;
    let again = w.tone("again", 440.0, 5.0);
    w.enqueue(
        encore::player::Requester {
            id: ANN,
            name: "ann".into(),
        },
        vec![again, end],
    )
    .await;
    w.cmd(ANN, "skip", json!([])).await;
    w.emu.clear_audio(GUILD);
    w.emu
        .wait_for("half of it", T, |e| {
            frames_at(&non_silent(&e.audio(GUILD)), 440.0) >= 100
        })
        .await;
    let p = w.snapshot().await.position.unwrap();
    assert!(
        p >= Duration::from_millis(2300),
        "2 s heard at speed 1.25 shows {p:?}"
    );
    w.emu
        .wait_for("the end tone", T, |e| {
            let f = non_silent(&e.audio(GUILD));
            (dominant_frequency(&f[f.len().saturating_sub(5)..]) - 300.0).abs() < 15.0
                && frames_at(&f, 300.0) > 20
        })
        .await;
    let secs = frames_at(&non_silent(&w.emu.audio(GUILD)), 440.0) as f32 * 0.02;
    assert!(
        (secs - 4.0).abs() <= 0.3,
        "speed 1.25 played 5 s of 440 Hz in {secs} s"
    );

    // Saved with the queue: a restart comes back with them.
    w.restart().await;
    let restored = Instant::now();
    while w.bot.players.get(GUILD).is_none() {
        assert!(restored.elapsed() < T, "the queue was not restored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.snapshot().await.filters.tempo(), 1.25);

    // Off: back to the file's own Opus frames.
    let path = w.media_dir().join("opus.webm");
    write_tone_webm(&path, 660.0, 20.0);
    let text = filter(&w, &[("preset", preset("bassboost-low"))]).await;
    assert!(text.contains("Filters set"), "{text}");
    w.play(ANN, &w.files.url("opus.webm")).await;
    w.cmd(ANN, "skip", json!([])).await;
    let sizes = packet_sizes(&path);
    let filtered = listen(&w, 40).await;
    assert!(
        !is_run_of(&filtered, &sizes),
        "a filtered track is re-encoded"
    );
    let text = filter(&w, &[("preset", preset("off"))]).await;
    assert!(text.contains("back to Opus passthrough"), "{text}");
    let plain = listen(&w, 40).await;
    assert!(
        is_run_of(&plain, &sizes),
        "after /filter off the frames are the file's"
    );
    w.stop().await;
}

fn is_run_of(frames: &[AudioFrame], sizes: &[usize]) -> bool {
    let got: Vec<usize> = frames.iter().map(|f| f.opus_len).collect();
    let run = &got[got.len() - 20..];
    sizes.windows(run.len()).any(|w| w == run)
}

/// A filter stays on across `/seek` (songbird opens the decoder again) and a voice
/// connection that drops and resumes (close 4015).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_survives_a_seek_and_a_voice_reconnect() {
    let w = World::start_with(|c| c.cache.audio = false).await;
    let url = write_mix(&w);
    assert!(w.play(ANN, &url).await.text().contains("Playing"));
    let base = db_over(&listen(&w, 25).await, 60.0, 1000.0);
    filter(&w, &[("preset", preset("bassboost-high"))]).await;
    let boosted = |frames: &[AudioFrame]| db_over(frames, 60.0, 1000.0) - base >= 11.0;
    assert!(boosted(&listen(&w, 25).await), "bassboost heard");

    let r = w.cmd(ANN, "seek", opts(&[("time", json!("0:20"))])).await;
    assert!(!r.ephemeral, "{}", r.text());
    let s = w.snapshot().await;
    assert!(
        s.position.unwrap() >= Duration::from_secs(20),
        "{:?}",
        s.position
    );
    let after_seek = listen(&w, 25).await;
    assert!(
        boosted(&after_seek),
        "after /seek: 60 Hz {} dB over 1 kHz",
        db_over(&after_seek, 60.0, 1000.0)
    );

    w.emu.close_voice(GUILD, 4015).await;
    w.emu.wait_voice_connected(GUILD, T).await;
    let after_resume = listen(&w, 25).await;
    assert!(
        boosted(&after_resume),
        "after a voice reconnect: 60 Hz {} dB over 1 kHz",
        db_over(&after_resume, 60.0, 1000.0)
    );
    let r = w.cmd(ANN, "filters", json!([])).await;
    assert!(r.text().to_lowercase().contains("bass"), "{}", r.text());
    w.stop().await;
}
