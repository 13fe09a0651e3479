//! Effects driven by a low-frequency oscillator, on interleaved stereo: tremolo (volume),
//! vibrato (pitch, through a swept delay) and rotation (the "8D" pan around the head).

use std::f32::consts::{FRAC_PI_4, TAU};

use crate::player::filters::Wave;

/// A sine oscillator that keeps its phase across blocks.
struct Lfo {
    phase: f32,
    step: f32,
}

impl Lfo {
    fn new(hz: f32, rate: f32) -> Self {
        Self {
            phase: 0.0,
            step: TAU * hz / rate,
        }
    }

    #[inline]
    fn next(&mut self) -> f32 {
        let v = self.phase.sin();
        self.phase = (self.phase + self.step) % TAU;
        v
    }
}

/// Volume swinging between 1 and `1 - depth`.
pub struct Tremolo {
    lfo: Lfo,
    depth: f32,
}

impl Tremolo {
    pub fn new(w: Wave, rate: f32) -> Self {
        Self {
            lfo: Lfo::new(w.frequency, rate),
            depth: w.depth,
        }
    }

    pub fn process(&mut self, buf: &mut [f32]) {
        for frame in buf.chunks_exact_mut(2) {
            let g = 1.0 - self.depth * (0.5 + 0.5 * self.lfo.next());
            frame[0] *= g;
            frame[1] *= g;
        }
    }
}

/// Pitch wobble: the signal read through a delay swept by the oscillator (up to 2 ms deep
/// at depth 1), interpolated linearly.
pub struct Vibrato {
    lfo: Lfo,
    /// Sweep half-width in frames.
    width: f32,
    ring: Vec<f32>,
    at: usize,
}

impl Vibrato {
    pub fn new(w: Wave, rate: f32) -> Self {
        let width = w.depth * rate * 0.002;
        let len = (width * 2.0) as usize + 4;
        Self {
            lfo: Lfo::new(w.frequency, rate),
            width,
            ring: vec![0.0; len * 2],
            at: 0,
        }
    }

    pub fn process(&mut self, buf: &mut [f32]) {
        let len = self.ring.len() / 2;
        for frame in buf.chunks_exact_mut(2) {
            self.ring[self.at * 2] = frame[0];
            self.ring[self.at * 2 + 1] = frame[1];
            let delay = 1.0 + self.width * (1.0 + self.lfo.next());
            let back = delay.floor() as usize;
            let t = delay - back as f32;
            let i = (self.at + len - back) % len;
            let j = (i + len - 1) % len;
            for (c, out) in frame.iter_mut().enumerate() {
                let (a, b) = (self.ring[i * 2 + c], self.ring[j * 2 + c]);
                *out = a + (b - a) * t;
            }
            self.at = (self.at + 1) % len;
        }
    }
}

/// The sound circling the listener: an equal-power pan swept by the oscillator, so the
/// loudness stays put while the side moves.
pub struct Rotation {
    lfo: Lfo,
}

impl Rotation {
    pub fn new(hz: f32, rate: f32) -> Self {
        Self {
            lfo: Lfo::new(hz, rate),
        }
    }

    pub fn process(&mut self, buf: &mut [f32]) {
        for frame in buf.chunks_exact_mut(2) {
            let angle = FRAC_PI_4 * (1.0 + self.lfo.next());
            let mid = (frame[0] + frame[1]) * std::f32::consts::FRAC_1_SQRT_2;
            frame[0] = mid * angle.cos();
            frame[1] = mid * angle.sin();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::filters::testutil::{dominant, sine};

    #[test]
    fn tremolo_swings_the_volume_by_its_depth() {
        let mut t = Tremolo::new(
            Wave {
                frequency: 4.0,
                depth: 0.5,
            },
            48_000.0,
        );
        let mut x = vec![0.5; 96_000];
        t.process(&mut x);
        let (lo, hi) = x
            .iter()
            .fold((1f32, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        assert!(
            (hi - 0.5).abs() < 0.01 && (lo - 0.25).abs() < 0.01,
            "{lo} {hi}"
        );
    }

    #[test]
    fn vibrato_keeps_the_tone_near_its_pitch() {
        let mut v = Vibrato::new(
            Wave {
                frequency: 5.0,
                depth: 0.5,
            },
            48_000.0,
        );
        let mut x = sine(440.0, 0.3, 96_000);
        let orig = x.clone();
        v.process(&mut x);
        assert!((dominant(&x[..]) - 440.0).abs() < 10.0);
        assert!(x != orig);
    }

    #[test]
    fn rotation_moves_the_sound_from_side_to_side() {
        let mut r = Rotation::new(0.5, 48_000.0);
        let mut x = vec![0.5; 48_000 * 2 * 2];
        r.process(&mut x);
        // A quarter of a turn in, the sound is on one side; three quarters in, the other.
        let at = |s: f32| {
            let i = (s * 48_000.0) as usize * 2;
            (x[i], x[i + 1])
        };
        let (l1, r1) = at(0.5);
        let (l2, r2) = at(1.5);
        assert!(r1 > 0.65 && l1 < 0.05, "{l1} {r1}");
        assert!(l2 > 0.65 && r2 < 0.05, "{l2} {r2}");
    }
}
