//! Analysis of received audio.

use super::state::AudioFrame;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Frames whose RMS is above this count as non-silent.
pub const SILENCE_RMS: f32 = 0.01;

fn frame_rms(f: &AudioFrame) -> f32 {
    if f.pcm.is_empty() {
        return 0.0;
    }
    (f.pcm.iter().map(|x| x * x).sum::<f32>() / f.pcm.len() as f32).sqrt()
}

/// RMS over every sample of every frame.
pub fn rms(frames: &[AudioFrame]) -> f32 {
    let (mut sum, mut n) = (0f64, 0usize);
    for f in frames {
        for x in &f.pcm {
            sum += (*x as f64) * (*x as f64);
        }
        n += f.pcm.len();
    }
    if n == 0 {
        0.0
    } else {
        (sum / n as f64).sqrt() as f32
    }
}

/// Frames with RMS > 0.01.
pub fn non_silent(frames: &[AudioFrame]) -> Vec<AudioFrame> {
    frames
        .iter()
        .filter(|f| frame_rms(f) > SILENCE_RMS)
        .cloned()
        .collect()
}

/// Mono mix (average of L and R) of the frames, concatenated.
pub fn mono(frames: &[AudioFrame]) -> Vec<f32> {
    let mut out = Vec::with_capacity(frames.iter().map(|f| f.pcm.len() / 2).sum());
    for f in frames {
        for lr in f.pcm.chunks_exact(2) {
            out.push((lr[0] + lr[1]) * 0.5);
        }
    }
    out
}

/// Goertzel power at `freq` over `samples` (48 kHz), Hann-windowed, normalised by length.
fn goertzel(samples: &[f32], window: &[f32], freq: f32) -> f32 {
    let w = 2.0 * std::f64::consts::PI * freq as f64 / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    for (x, h) in samples.iter().zip(window) {
        let s0 = (*x as f64) * (*h as f64) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    (p / (samples.len() as f64).powi(2)) as f32
}

/// At most 1 s from the middle of the mono mix, plus its Hann window.
fn analysis_window(frames: &[AudioFrame]) -> (Vec<f32>, Vec<f32>) {
    let m = mono(frames);
    let max = 48_000;
    let slice = if m.len() > max {
        let start = (m.len() - max) / 2;
        m[start..start + max].to_vec()
    } else {
        m
    };
    let n = slice.len().max(2);
    let window = (0..slice.len())
        .map(|i| {
            let x = (std::f32::consts::PI * 2.0 * i as f32 / (n - 1) as f32).cos();
            0.5 - 0.5 * x
        })
        .collect();
    (slice, window)
}

/// The strongest frequency between 50 and 2000 Hz (mono mix): a Goertzel scan in 5 Hz steps,
/// refined in 0.5 Hz steps around the peak. Accurate to well under ±10 Hz for a pure sine.
/// Returns 0.0 for empty input.
pub fn dominant_frequency(frames: &[AudioFrame]) -> f32 {
    let (samples, window) = analysis_window(frames);
    if samples.len() < 480 {
        return 0.0;
    }
    let mut best = (0f32, -1f32);
    let mut f = 50.0f32;
    while f <= 2000.0 {
        let p = goertzel(&samples, &window, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 5.0;
    }
    let center = best.0;
    let mut f = (center - 5.0).max(45.0);
    while f <= center + 5.0 {
        let p = goertzel(&samples, &window, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 0.5;
    }
    best.0
}

/// Relative strength of `freq` in the frames: Goertzel power at `freq` divided by the mean
/// power of the signal (≈ 1/4 for a pure sine at that frequency with a Hann window; near 0 otherwise).
pub fn tone_strength(frames: &[AudioFrame], freq: f32) -> f32 {
    let (samples, window) = analysis_window(frames);
    if samples.is_empty() {
        return 0.0;
    }
    let mean_power = samples.iter().map(|x| x * x).sum::<f32>() / samples.len() as f32;
    if mean_power <= 1e-12 {
        return 0.0;
    }
    goertzel(&samples, &window, freq) / mean_power
}

/// Checks that consecutive frames of the same SSRC have seq +1 and timestamp +960 (both
/// wrapping). Panics describing the first gap.
pub fn assert_contiguous(frames: &[AudioFrame]) {
    let mut last: HashMap<u32, (usize, u16, u32)> = HashMap::new();
    for (i, f) in frames.iter().enumerate() {
        if let Some((j, seq, ts)) = last.get(&f.ssrc).copied() {
            let want_seq = seq.wrapping_add(1);
            let want_ts = ts.wrapping_add(960);
            if f.seq != want_seq || f.timestamp != want_ts {
                panic!(
                    "audio not contiguous at frame {i} (ssrc {}): previous frame {j} had seq {seq} ts {ts}, \
                     expected seq {want_seq} ts {want_ts}, got seq {} ts {} (seq gap {}, ts gap {}); {} frames total",
                    f.ssrc,
                    f.seq,
                    f.timestamp,
                    f.seq.wrapping_sub(seq),
                    f.timestamp.wrapping_sub(ts),
                    frames.len()
                );
            }
        }
        last.insert(f.ssrc, (i, f.seq, f.timestamp));
    }
}

/// Builds synthetic frames of a sine (for tests of the analysis functions).
pub fn synth_frames(freq: f32, n_frames: usize, amplitude: f32) -> Vec<AudioFrame> {
    let now = std::time::Instant::now();
    (0..n_frames)
        .map(|k| {
            let mut pcm = Vec::with_capacity(1920);
            for i in 0..960 {
                let t = (k * 960 + i) as f32 / 48_000.0;
                let s = (2.0 * std::f32::consts::PI * freq * t).sin() * amplitude;
                pcm.push(s);
                pcm.push(s);
            }
            AudioFrame {
                seq: 100u16.wrapping_add(k as u16),
                timestamp: 5000u32.wrapping_add(960 * k as u32),
                ssrc: 1,
                pcm,
                opus_len: 0,
                at: now,
                dave: false,
            }
        })
        .collect()
}

/// The tones heard in order: the dominant frequency of each half second of audio, with
/// runs of the same tone collapsed into one entry. A tone heard for a single half second
/// (the boundary between two tracks, a click) is not counted.
pub fn tone_sequence(frames: &[AudioFrame]) -> Vec<f32> {
    let audible = non_silent(frames);
    let mut runs: Vec<(f32, usize)> = Vec::new();
    for chunk in audible.chunks(25).filter(|c| c.len() == 25) {
        let f = dominant_frequency(chunk);
        match runs.last_mut() {
            Some((last, n)) if (*last - f).abs() <= 30.0 => *n += 1,
            _ => runs.push((f, 1)),
        }
    }
    let mut seq: Vec<f32> = Vec::new();
    for (f, _) in runs.into_iter().filter(|(_, n)| *n >= 2) {
        if seq.last().is_none_or(|last| (last - f).abs() > 30.0) {
            seq.push(f);
        }
    }
    seq
}

/// Audio heard again after a break: see [`heard_again`].
#[derive(Clone, Copy, Debug)]
pub struct Resumed {
    /// The first audible frame after the break.
    pub at: Instant,
    /// The last audible frame before it (`since` when there was none).
    pub last_before: Instant,
    /// Audible frames from `at` on.
    pub frames_after: usize,
}

/// Where the audio came back after the first silence of at least `gap` that began after
/// `since` (a node stopping and another taking over, say).
pub fn heard_again(frames: &[AudioFrame], since: Instant, gap: Duration) -> Option<Resumed> {
    let heard: Vec<Instant> = non_silent(frames)
        .iter()
        .map(|f| f.at)
        .filter(|at| *at > since)
        .collect();
    let mut last = since;
    for (i, at) in heard.iter().enumerate() {
        if *at - last >= gap {
            return Some(Resumed {
                at: *at,
                last_before: last,
                frames_after: heard.len() - i,
            });
        }
        last = *at;
    }
    None
}

/// The longest stretch without audible frames between `from` and `to` (both ends count).
pub fn longest_silence(frames: &[AudioFrame], from: Instant, to: Instant) -> Duration {
    let mut heard: Vec<Instant> = vec![from];
    heard.extend(
        non_silent(frames)
            .iter()
            .map(|f| f.at)
            .filter(|at| *at >= from && *at <= to),
    );
    heard.push(to);
    heard
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default()
}
