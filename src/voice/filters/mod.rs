//! Audio filters on decoded PCM: symphonia decodes, this chain runs, songbird encodes.
//!
//! - `eq.rs`: the 15-band equaliser and lowpass (biquads from the `biquad` crate);
//! - `timescale.rs`: speed, pitch and rate (resampling and WSOLA time-stretch);
//! - `modulation.rs`: tremolo, vibrato, rotation;
//! - `stereo.rs`: channel mix, karaoke;
//! - `decoder.rs`: the symphonia decoder and format reader every track plays through, which
//!   run the chain when filters are on and otherwise get out of the way so songbird passes
//!   the source's Opus frames through untouched.
//!
//! One [`FilterControl`] per guild holds what is on; every track of the guild reads it
//! before each packet, so a change is heard within a packet (20 ms for Opus) without
//! reopening the track.

mod chain;
mod decoder;
mod eq;
mod modulation;
mod stereo;
mod timescale;

pub use chain::{Chain, FilterControl, TrackClock};
pub use decoder::{filtered, FilteredDecoder};

#[cfg(test)]
pub(crate) mod testutil {
    /// `n` frames of a sine, interleaved stereo (both channels the same).
    pub fn sine(freq: f32, amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|i| {
                let v = (std::f32::consts::TAU * freq * i as f32 / 48_000.0).sin() * amp;
                [v, v]
            })
            .collect()
    }

    /// RMS level in dBFS.
    pub fn level_db(x: &[f32]) -> f32 {
        let p = x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32;
        10.0 * p.max(1e-12).log10()
    }

    /// The zero-crossing frequency of the left channel.
    pub fn dominant(x: &[f32]) -> f32 {
        let left: Vec<f32> = x.chunks_exact(2).map(|f| f[0]).collect();
        let ups = left
            .windows(2)
            .filter(|w| w[0] <= 0.0 && w[1] > 0.0)
            .count();
        ups as f32 * 48_000.0 / left.len() as f32
    }
}
