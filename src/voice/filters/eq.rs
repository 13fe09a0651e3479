//! The equaliser (Lavalink's 15 bands as peaking biquads) and the lowpass, on the `biquad`
//! crate's filters: per-channel state, so a change of gains keeps the music continuous.

use biquad::{Biquad, Coefficients, DirectForm2Transposed, ToHertz, Type};

use crate::player::filters::{eq_gain_db, EQ_BANDS};

/// Q of each band: about one octave wide, so neighbouring bands overlap smoothly.
const BAND_Q: f32 = 1.1;

/// One biquad per channel.
struct Stereo([DirectForm2Transposed<f32>; 2]);

impl Stereo {
    fn new(c: Coefficients<f32>) -> Self {
        Self([DirectForm2Transposed::new(c), DirectForm2Transposed::new(c)])
    }

    #[inline]
    fn run(&mut self, frame: &mut [f32]) {
        frame[0] = self.0[0].run(frame[0]);
        frame[1] = self.0[1].run(frame[1]);
    }
}

/// A cascade of biquads over interleaved stereo.
pub struct Cascade(Vec<Stereo>);

impl Cascade {
    /// The equaliser for Lavalink `gains` at `rate` Hz; bands at 0 (and above Nyquist) are
    /// left out, so an all-zero curve costs nothing.
    pub fn equalizer(gains: &[f32; 15], rate: f32) -> Self {
        let mut filters = Vec::new();
        for (g, f0) in gains.iter().zip(EQ_BANDS) {
            if *g == 0.0 || f0 >= rate * 0.45 {
                continue;
            }
            let c = Coefficients::<f32>::from_params(
                Type::PeakingEQ(eq_gain_db(*g)),
                rate.hz(),
                f0.hz(),
                BAND_Q,
            );
            if let Ok(c) = c {
                filters.push(Stereo::new(c));
            }
        }
        Self(filters)
    }

    /// A 12 dB/octave lowpass for Lavalink's `smoothing`: its one-pole smoother cuts from
    /// about rate / (2π · smoothing), which is the corner used here.
    pub fn lowpass(smoothing: f32, rate: f32) -> Self {
        let corner = (rate / (2.0 * std::f32::consts::PI * smoothing)).min(rate * 0.45);
        let c = Coefficients::<f32>::from_params(
            Type::LowPass,
            rate.hz(),
            corner.hz(),
            biquad::Q_BUTTERWORTH_F32,
        );
        Self(c.ok().map(Stereo::new).into_iter().collect())
    }

    /// A 24 dB/octave lowpass (two Butterworth sections) with its corner at `corner` Hz.
    pub fn steep_lowpass(corner: f32, rate: f32) -> Self {
        let c = Coefficients::<f32>::from_params(
            Type::LowPass,
            rate.hz(),
            corner.min(rate * 0.45).hz(),
            biquad::Q_BUTTERWORTH_F32,
        );
        Self(
            c.ok()
                .into_iter()
                .flat_map(|c| [Stereo::new(c), Stereo::new(c)])
                .collect(),
        )
    }

    pub fn process(&mut self, buf: &mut [f32]) {
        if self.0.is_empty() {
            return;
        }
        for frame in buf.chunks_exact_mut(2) {
            for f in &mut self.0 {
                f.run(frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::filters::testutil::{level_db, sine};

    #[test]
    fn a_boosted_band_comes_out_louder_by_its_gain() {
        let mut gains = [0.0; 15];
        gains[8] = 0.25; // 1 kHz doubled: +6 dB
        let mut eq = Cascade::equalizer(&gains, 48_000.0);
        let mut x = sine(1000.0, 0.1, 48_000);
        let before = level_db(&x);
        eq.process(&mut x);
        let gained = level_db(&x[24_000..]) - before;
        assert!((gained - 6.0).abs() < 0.5, "{gained}");
    }

    #[test]
    fn the_lowpass_cuts_5khz_and_keeps_200hz() {
        let mut lp = Cascade::lowpass(20.0, 48_000.0);
        let mut hi = sine(5000.0, 0.1, 48_000);
        let mut lo = sine(200.0, 0.1, 48_000);
        let (hi0, lo0) = (level_db(&hi), level_db(&lo));
        lp.process(&mut hi);
        let mut lp = Cascade::lowpass(20.0, 48_000.0);
        lp.process(&mut lo);
        assert!(level_db(&hi[24_000..]) - hi0 < -20.0);
        assert!((level_db(&lo[24_000..]) - lo0).abs() < 3.0);
    }
}
