//! A guild's filter settings as its tracks read them ([`FilterControl`]), the source-time
//! clock that keeps positions right under `speed` ([`TrackClock`]), and the effects of one
//! setting run in order over interleaved stereo ([`Chain`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::eq;
use super::modulation;
use super::stereo;
use super::timescale;

use crate::player::filters::FilterSpec;

/// A guild's filters as its tracks read them.
#[derive(Default)]
pub struct FilterControl {
    spec: Mutex<Option<Arc<FilterSpec>>>,
    /// Bumped on every change; decoders compare it before each packet (one atomic load).
    generation: AtomicU64,
    /// Whether anything is on: songbird asks before every frame whether it may pass Opus
    /// through, and the answer must not take a lock.
    active: AtomicBool,
}

impl FilterControl {
    pub fn set(&self, spec: &FilterSpec) {
        let on = !spec.is_empty();
        *self.spec.lock().expect("filter lock") = on.then(|| Arc::new(spec.clone()));
        self.active.store(on, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn current(&self) -> Option<Arc<FilterSpec>> {
        self.spec.lock().expect("filter lock").clone()
    }
}

/// Where a track is in its source, from the packets it reads: under `speed` the time
/// songbird counts (frames sent) drifts from the music's, and this is the music's.
#[derive(Default)]
pub struct TrackClock {
    /// Microseconds into the source of the latest packet read; `u64::MAX` before any.
    micros: AtomicU64,
    /// Set once the track played at another tempo: from then on only this clock is right.
    pub(super) stretched: AtomicBool,
}

impl TrackClock {
    pub fn new() -> Self {
        Self {
            micros: AtomicU64::new(u64::MAX),
            stretched: AtomicBool::new(false),
        }
    }

    pub(super) fn set(&self, at: Duration) {
        self.micros.store(at.as_micros() as u64, Ordering::Release);
    }

    /// The source position, when the track played at another tempo (songbird's own count
    /// is right otherwise, and is used then).
    pub fn position(&self) -> Option<Duration> {
        if !self.stretched.load(Ordering::Acquire) {
            return None;
        }
        match self.micros.load(Ordering::Acquire) {
            u64::MAX => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// The effects of one [`FilterSpec`] at one sample rate, with their running state, over
/// interleaved stereo.
pub struct Chain {
    rate: u32,
    timescale: Option<timescale::Timescaler>,
    eq: eq::Cascade,
    karaoke: Option<stereo::KaraokeFilter>,
    channel_mix: Option<crate::player::filters::ChannelMix>,
    lowpass: Option<eq::Cascade>,
    tremolo: Option<modulation::Tremolo>,
    vibrato: Option<modulation::Vibrato>,
    rotation: Option<modulation::Rotation>,
}

impl Chain {
    pub fn new(spec: &FilterSpec, rate: u32) -> Self {
        let r = rate as f32;
        Self {
            rate,
            timescale: spec
                .timescale
                .filter(|t| !t.is_identity())
                .map(|t| timescale::Timescaler::new(&t, r)),
            eq: eq::Cascade::equalizer(&spec.equalizer, r),
            karaoke: spec.karaoke.map(|k| stereo::KaraokeFilter::new(k, r)),
            channel_mix: spec.channel_mix,
            lowpass: spec.lowpass.map(|s| eq::Cascade::lowpass(s, r)),
            tremolo: spec.tremolo.map(|w| modulation::Tremolo::new(w, r)),
            vibrato: spec.vibrato.map(|w| modulation::Vibrato::new(w, r)),
            rotation: spec.rotation.map(|hz| modulation::Rotation::new(hz, r)),
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Runs every effect on `buf` (interleaved stereo); the timescale changes its length.
    pub fn process(&mut self, buf: &mut Vec<f32>) {
        if let Some(t) = &mut self.timescale {
            t.process(buf);
        }
        self.eq.process(buf);
        if let Some(k) = &mut self.karaoke {
            k.process(buf);
        }
        if let Some(m) = &self.channel_mix {
            stereo::channel_mix(m, buf);
        }
        if let Some(l) = &mut self.lowpass {
            l.process(buf);
        }
        if let Some(t) = &mut self.tremolo {
            t.process(buf);
        }
        if let Some(v) = &mut self.vibrato {
            v.process(buf);
        }
        if let Some(r) = &mut self.rotation {
            r.process(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::filters::testutil::{dominant, level_db, sine};

    fn run(spec: &FilterSpec, input: &[f32]) -> Vec<f32> {
        let mut chain = Chain::new(spec, 48_000);
        let mut out = Vec::new();
        for c in input.chunks(1920) {
            let mut b = c.to_vec();
            chain.process(&mut b);
            out.extend(b);
        }
        out
    }

    #[test]
    fn bassboost_presets_raise_60hz_over_1khz_by_their_gain() {
        for name in ["bassboost-low", "bassboost-medium", "bassboost-high"] {
            let spec = FilterSpec::preset(name).unwrap();
            let want = crate::player::filters::bassboost_db(name).unwrap();
            let low = run(&spec, &sine(60.0, 0.05, 96_000));
            let mid = run(&spec, &sine(1000.0, 0.05, 96_000));
            let raised = level_db(&low[96_000..]) - level_db(&mid[96_000..]);
            assert!(raised >= want, "{name}: {raised} dB < {want} dB");
            assert!(raised < want + 10.0, "{name}: {raised} dB");
        }
    }

    #[test]
    fn nightcore_plays_faster_and_higher() {
        let out = run(
            &FilterSpec::preset("nightcore").unwrap(),
            &sine(440.0, 0.3, 48_000 * 2),
        );
        assert!((dominant(&out) - 550.0).abs() < 5.0);
    }

    #[test]
    fn a_control_change_is_seen_by_its_generation() {
        let c = FilterControl::default();
        let g = c.generation();
        c.set(&FilterSpec::preset("8d").unwrap());
        assert!(c.is_active() && c.generation() > g);
        c.set(&FilterSpec::default());
        assert!(!c.is_active() && c.current().is_none());
    }
}
