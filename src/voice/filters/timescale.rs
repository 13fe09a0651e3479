//! Timescale: `rate` and `pitch` by resampling, `speed` (and pitch's tempo correction) by
//! WSOLA time-stretching, on interleaved stereo.
//!
//! Why our own: the maintained time-stretch crates are bindings to C++ libraries
//! (signalsmith-stretch, rubberband) that need a C++ toolchain and bindgen at build time,
//! and a music bot needs only a clean tempo change of a few tenths; WSOLA (overlap-add
//! with the next grain aligned on the waveform) does that in a few dozen lines. The
//! resampler is a streaming linear interpolator: its ratio changes at any sample, which
//! rubato's fixed-chunk resamplers cannot do without a chunk of latency, and for the
//! 0.5-2× shifts here its images are far below the music.
//!
//! Resampling by `pitch · rate` changes pitch and tempo together; stretching by
//! `speed / pitch` then fixes the tempo: speed × rate faster, pitch × rate higher.

use crate::player::filters::Timescale;

/// A streaming resampler that reads `ratio` input frames per output frame.
pub struct Resampler {
    ratio: f64,
    buf: Vec<f32>,
    /// Read position (in frames) into `buf`.
    pos: f64,
}

impl Resampler {
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio,
            buf: Vec::new(),
            pos: 0.0,
        }
    }

    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.buf.extend_from_slice(input);
        let frames = self.buf.len() / 2;
        while self.pos + 1.0 < frames as f64 {
            let i = self.pos as usize;
            let t = (self.pos - i as f64) as f32;
            for c in 0..2 {
                let a = self.buf[i * 2 + c];
                let b = self.buf[i * 2 + 2 + c];
                out.push(a + (b - a) * t);
            }
            self.pos += self.ratio;
        }
        let used = (self.pos as usize).min(frames);
        self.buf.drain(..used * 2);
        self.pos -= used as f64;
    }
}

/// WSOLA time-stretch by `tempo` (> 1 plays faster), keeping pitch.
pub struct Stretch {
    tempo: f64,
    /// Output hop (frames); a grain is two hops, Hann-windowed, so grains sum to one.
    hop: usize,
    /// How far a grain may move from its ideal place to line up with the waveform.
    search: usize,
    window: Vec<f32>,
    /// Input not consumed yet; frame 0 is `base` in input time.
    input: Vec<f32>,
    /// Where the next grain would ideally start, relative to `input`.
    ideal: f64,
    /// Where the previous grain goes on in the input (its start plus a hop), relative to
    /// `input`: what the next grain should look like.
    natural: Option<usize>,
    /// The second half of the previous windowed grain, waiting to be overlapped.
    tail: Vec<f32>,
}

impl Stretch {
    pub fn new(tempo: f64, rate: f32) -> Self {
        let hop = ((rate * 0.02) as usize).max(64);
        let n = hop * 2;
        let window = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos())
            .collect();
        let search = hop / 2;
        Self {
            tempo,
            hop,
            search,
            window,
            input: Vec::new(),
            ideal: search as f64,
            natural: None,
            tail: vec![0.0; hop * 2],
        }
    }

    /// Cross-correlation (mono sum, every 4th frame) of `input` at `a` and `b` over a hop.
    fn similarity(&self, a: usize, b: usize) -> f32 {
        let mut s = 0.0;
        let mut i = 0;
        while i < self.hop {
            let x = self.input[(a + i) * 2] + self.input[(a + i) * 2 + 1];
            let y = self.input[(b + i) * 2] + self.input[(b + i) * 2 + 1];
            s += x * y;
            i += 4;
        }
        s
    }

    /// The grain start near `ideal` that best continues the previous grain.
    fn best_start(&self, ideal: usize) -> usize {
        let Some(natural) = self.natural else {
            return ideal;
        };
        let lo = ideal.saturating_sub(self.search);
        let hi = ideal + self.search;
        let mut best = (ideal, f32::MIN);
        // Coarse, then fine around the best.
        for cand in (lo..=hi).step_by(8) {
            let s = self.similarity(natural, cand);
            if s > best.1 {
                best = (cand, s);
            }
        }
        let (c, _) = best;
        for cand in c.saturating_sub(7).max(lo)..=(c + 7).min(hi) {
            let s = self.similarity(natural, cand);
            if s > best.1 {
                best = (cand, s);
            }
        }
        best.0
    }

    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.input.extend_from_slice(input);
        let n = self.hop * 2;
        loop {
            let ideal = self.ideal.round() as usize;
            let frames = self.input.len() / 2;
            // The grain, its search range and the previous grain's continuation must be in.
            let need = (ideal + self.search + n).max(self.natural.map_or(0, |p| p + self.hop));
            if frames < need {
                break;
            }
            let start = self.best_start(ideal);
            for i in 0..n {
                let w = self.window[i];
                let l = self.input[(start + i) * 2] * w;
                let r = self.input[(start + i) * 2 + 1] * w;
                if i < self.hop {
                    out.push(self.tail[i * 2] + l);
                    out.push(self.tail[i * 2 + 1] + r);
                } else {
                    self.tail[(i - self.hop) * 2] = l;
                    self.tail[(i - self.hop) * 2 + 1] = r;
                }
            }
            let natural = start + self.hop;
            self.natural = Some(natural);
            self.ideal += self.hop as f64 * self.tempo;
            // Drop input no later grain can reach.
            let keep_from = (self.ideal as usize)
                .saturating_sub(self.search)
                .min(natural);
            if keep_from > 0 {
                self.input.drain(..keep_from * 2);
                self.ideal -= keep_from as f64;
                self.natural = Some(natural - keep_from);
            }
        }
    }
}

/// The timescale stage: a resampler and a stretch, each only when it changes something.
pub struct Timescaler {
    resample: Option<Resampler>,
    stretch: Option<Stretch>,
    scratch: Vec<f32>,
}

impl Timescaler {
    pub fn new(t: &Timescale, rate: f32) -> Self {
        let shift = (t.pitch * t.rate) as f64;
        let tempo = (t.speed / t.pitch) as f64;
        Self {
            resample: ((shift - 1.0).abs() > 1e-6).then(|| Resampler::new(shift)),
            stretch: ((tempo - 1.0).abs() > 1e-6).then(|| Stretch::new(tempo, rate)),
            scratch: Vec::new(),
        }
    }

    /// Processes `buf` in place (its length changes).
    pub fn process(&mut self, buf: &mut Vec<f32>) {
        if let Some(r) = &mut self.resample {
            self.scratch.clear();
            r.process(buf, &mut self.scratch);
            std::mem::swap(buf, &mut self.scratch);
        }
        if let Some(s) = &mut self.stretch {
            self.scratch.clear();
            s.process(buf, &mut self.scratch);
            std::mem::swap(buf, &mut self.scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::filters::testutil::{dominant, sine};

    fn run(t: Timescale, secs: usize) -> Vec<f32> {
        let mut ts = Timescaler::new(&t, 48_000.0);
        let input = sine(440.0, 0.3, 48_000 * secs);
        let mut out = Vec::new();
        // In decoder-sized pieces, as it runs.
        for chunk in input.chunks(1920) {
            let mut b = chunk.to_vec();
            ts.process(&mut b);
            out.extend_from_slice(&b);
        }
        out
    }

    fn ts(speed: f32, pitch: f32, rate: f32) -> Timescale {
        Timescale { speed, pitch, rate }
    }

    #[test]
    fn rate_raises_pitch_and_shortens() {
        let out = run(ts(1.0, 1.0, 1.25), 5);
        let secs = out.len() as f32 / 2.0 / 48_000.0;
        assert!((secs - 4.0).abs() < 0.05, "{secs}");
        let f = dominant(&out[48_000..]);
        assert!((f - 550.0).abs() < 5.0, "{f}");
    }

    #[test]
    fn speed_shortens_and_keeps_pitch() {
        let out = run(ts(1.25, 1.0, 1.0), 5);
        let secs = out.len() as f32 / 2.0 / 48_000.0;
        assert!((secs - 4.0).abs() < 0.1, "{secs}");
        let f = dominant(&out[48_000..]);
        assert!((f - 440.0).abs() < 5.0, "{f}");
    }

    #[test]
    fn pitch_raises_pitch_and_keeps_length() {
        let out = run(ts(1.0, 1.25, 1.0), 4);
        let secs = out.len() as f32 / 2.0 / 48_000.0;
        assert!((secs - 4.0).abs() < 0.1, "{secs}");
        let f = dominant(&out[48_000..]);
        assert!((f - 550.0).abs() < 5.0, "{f}");
    }

    #[test]
    fn slowing_down_lengthens() {
        let out = run(ts(0.8, 1.0, 1.0), 4);
        let secs = out.len() as f32 / 2.0 / 48_000.0;
        assert!((secs - 5.0).abs() < 0.1, "{secs}");
    }
}
