//! Effects that mix the two channels: Lavalink's channel mix, and karaoke (the centre of
//! the stereo image, where the voice usually sits, taken out; the centre below `band +
//! width / 2` Hz kept at `mono_level`, so the bass and kick, also centred, stay).

use super::eq::Cascade;
use crate::player::filters::{ChannelMix, Karaoke};

pub fn channel_mix(m: &ChannelMix, buf: &mut [f32]) {
    for frame in buf.chunks_exact_mut(2) {
        let (l, r) = (frame[0], frame[1]);
        frame[0] = l * m.left_to_left + r * m.right_to_left;
        frame[1] = l * m.left_to_right + r * m.right_to_right;
    }
}

pub struct KaraokeFilter {
    k: Karaoke,
    /// The centre's low band that is kept (a steep lowpass: a voice's 1 kHz must go).
    keep: Cascade,
    scratch: Vec<f32>,
}

impl KaraokeFilter {
    pub fn new(k: Karaoke, rate: f32) -> Self {
        Self {
            k,
            keep: Cascade::steep_lowpass(k.band + k.width / 2.0, rate),
            scratch: Vec::new(),
        }
    }

    pub fn process(&mut self, buf: &mut [f32]) {
        // The centre (mid) of each frame, duplicated so the stereo band-pass can run on it.
        self.scratch.clear();
        for frame in buf.chunks_exact(2) {
            let mid = (frame[0] + frame[1]) * 0.5;
            self.scratch.extend_from_slice(&[mid, mid]);
        }
        self.keep.process(&mut self.scratch);
        for (frame, kept) in buf.chunks_exact_mut(2).zip(self.scratch.chunks_exact(2)) {
            let mid = (frame[0] + frame[1]) * 0.5;
            let put_back = self.k.level * self.k.mono_level * kept[0];
            let off = self.k.level * mid - put_back;
            frame[0] -= off;
            frame[1] -= off;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::filters::testutil::level_db;

    #[test]
    fn karaoke_removes_the_centre_and_keeps_a_side() {
        let mut k = KaraokeFilter::new(Karaoke::default(), 48_000.0);
        // 1 kHz in both channels (centred), 660 Hz only on the left.
        let mut x = Vec::new();
        for i in 0..48_000 {
            let t = i as f32 / 48_000.0;
            let c = (std::f32::consts::TAU * 1000.0 * t).sin() * 0.2;
            let s = (std::f32::consts::TAU * 660.0 * t).sin() * 0.2;
            x.extend_from_slice(&[c + s, c]);
        }
        k.process(&mut x);
        let left: Vec<f32> = x.chunks(2).flat_map(|f| [f[0], f[0]]).collect();
        let mid: Vec<f32> = x.chunks(2).flat_map(|f| [(f[0] + f[1]) / 2.0; 2]).collect();
        // What is left is the side tone: half of it on each side, opposite in phase.
        assert!(level_db(&mid[24_000..]) < -40.0, "{}", level_db(&mid));
        assert!(level_db(&left[24_000..]) > -25.0, "{}", level_db(&left));
    }

    #[test]
    fn channel_mix_can_swap_the_sides() {
        let mut x = vec![1.0, 0.0, 1.0, 0.0];
        let swap = ChannelMix {
            left_to_left: 0.0,
            left_to_right: 1.0,
            right_to_left: 1.0,
            right_to_right: 0.0,
        };
        channel_mix(&swap, &mut x);
        assert_eq!(x, vec![0.0, 1.0, 0.0, 1.0]);
    }
}
