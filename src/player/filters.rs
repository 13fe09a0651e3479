//! What a guild's audio filters are (`/filter`): plain data the player owns, saves with the
//! queue and hands to the voice call, which runs the DSP (`crate::voice::filters`).
//!
//! The parts follow Lavalink's filters (what bot users know from other bots): a 15-band
//! equaliser, timescale (speed, pitch, rate), tremolo, vibrato, lowpass (smoothing),
//! rotation, channel mix and karaoke. Values are checked once here, at construction, so
//! the DSP never sees a value it cannot run.

use serde::{Deserialize, Serialize};

/// Centre frequencies of the equaliser's bands (Lavalink's 15, in Hz).
pub const EQ_BANDS: [f32; 15] = [
    25.0, 40.0, 63.0, 100.0, 160.0, 250.0, 400.0, 630.0, 1000.0, 1600.0, 2500.0, 4000.0, 6300.0,
    10000.0, 16000.0,
];

/// Lavalink's band gain range: -0.25 mutes a band, 0 leaves it, 0.25 doubles it, 1.0 is the
/// most (×5 in amplitude).
pub const EQ_GAIN: (f32, f32) = (-0.25, 1.0);

/// A band's gain in decibels: Lavalink's gain `g` multiplies the band's amplitude by
/// `1 + 4g` (muted bands are held at -40 dB so the curve stays a filter).
pub fn eq_gain_db(g: f32) -> f32 {
    20.0 * (1.0 + 4.0 * g).max(0.01).log10()
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timescale {
    /// Tempo without changing pitch (time-stretch).
    pub speed: f32,
    /// Pitch without changing tempo.
    pub pitch: f32,
    /// Both at once, like playing a record faster.
    pub rate: f32,
}

impl Default for Timescale {
    fn default() -> Self {
        Self {
            speed: 1.0,
            pitch: 1.0,
            rate: 1.0,
        }
    }
}

impl Timescale {
    /// How much faster the source is consumed than played out.
    pub fn tempo(&self) -> f32 {
        self.speed * self.rate
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }
}

/// A periodic effect: `frequency` in Hz, `depth` 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wave {
    pub frequency: f32,
    pub depth: f32,
}

/// Lavalink's channel mix: each output channel as a weighted sum of the inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChannelMix {
    pub left_to_left: f32,
    pub left_to_right: f32,
    pub right_to_left: f32,
    pub right_to_right: f32,
}

/// Centre-channel removal: `level` of the centre goes, except what lies below `band +
/// width / 2` Hz, kept at `mono_level` so the bass line stays.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Karaoke {
    pub level: f32,
    pub mono_level: f32,
    pub band: f32,
    pub width: f32,
}

impl Default for Karaoke {
    fn default() -> Self {
        Self {
            level: 1.0,
            mono_level: 1.0,
            band: 220.0,
            width: 100.0,
        }
    }
}

/// A guild's filters. The default is "none": the call goes back to Opus passthrough.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterSpec {
    /// The preset this started from, shown by `/filters`.
    pub preset: Option<String>,
    /// Lavalink gains per band of [`EQ_BANDS`].
    pub equalizer: [f32; 15],
    pub timescale: Option<Timescale>,
    pub tremolo: Option<Wave>,
    pub vibrato: Option<Wave>,
    /// Lavalink's smoothing factor (> 1; 20 is strong).
    pub lowpass: Option<f32>,
    /// Rotation around the listener, in Hz.
    pub rotation: Option<f32>,
    pub channel_mix: Option<ChannelMix>,
    pub karaoke: Option<Karaoke>,
}

/// The presets `/filter preset:` offers.
pub const PRESETS: [&str; 12] = [
    "bassboost-low",
    "bassboost-medium",
    "bassboost-high",
    "nightcore",
    "vaporwave",
    "8d",
    "karaoke",
    "soft",
    "treble",
    "pop",
    "rock",
    "classical",
];

/// How many decibels a bassboost preset raises 60 Hz above 1 kHz at least (tests hold it).
pub fn bassboost_db(preset: &str) -> Option<f32> {
    match preset {
        "bassboost-low" => Some(6.0),
        "bassboost-medium" => Some(9.0),
        "bassboost-high" => Some(12.0),
        _ => None,
    }
}

impl FilterSpec {
    /// A named preset, or `None` for a name that is not one.
    pub fn preset(name: &str) -> Option<Self> {
        let mut s = Self {
            preset: Some(name.to_string()),
            ..Self::default()
        };
        let eq = |gains: &[f32]| {
            let mut e = [0.0; 15];
            e[..gains.len()].copy_from_slice(gains);
            e
        };
        match name {
            // Gains chosen so 60 Hz stands `bassboost_db` above 1 kHz.
            "bassboost-low" => s.equalizer = eq(&[0.2, 0.2, 0.15, 0.1, 0.05]),
            "bassboost-medium" => s.equalizer = eq(&[0.35, 0.35, 0.28, 0.18, 0.08]),
            "bassboost-high" => s.equalizer = eq(&[0.55, 0.55, 0.45, 0.3, 0.12, 0.04]),
            "nightcore" => {
                s.timescale = Some(Timescale {
                    speed: 1.0,
                    pitch: 1.0,
                    rate: 1.25,
                })
            }
            "vaporwave" => {
                s.timescale = Some(Timescale {
                    speed: 1.0,
                    pitch: 1.0,
                    rate: 0.8,
                });
                s.equalizer = eq(&[0.1, 0.1, 0.05]);
            }
            "8d" => s.rotation = Some(0.2),
            "karaoke" => s.karaoke = Some(Karaoke::default()),
            "soft" => s.lowpass = Some(20.0),
            "treble" => {
                s.equalizer = eq(&[
                    -0.1, -0.1, -0.05, 0.0, 0.0, 0.0, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.3,
                    0.3,
                ])
            }
            "pop" => {
                s.equalizer = eq(&[
                    -0.05, 0.0, 0.05, 0.1, 0.15, 0.15, 0.1, 0.05, 0.0, -0.02, -0.02, 0.0, 0.05,
                    0.05, 0.05,
                ])
            }
            "rock" => {
                s.equalizer = eq(&[
                    0.2, 0.15, 0.1, 0.05, -0.05, -0.08, -0.05, 0.0, 0.05, 0.1, 0.15, 0.18, 0.2,
                    0.2, 0.2,
                ])
            }
            "classical" => {
                s.equalizer = eq(&[
                    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.05, -0.08, -0.1, -0.12, -0.12,
                    -0.15,
                ])
            }
            _ => return None,
        }
        Some(s)
    }

    /// True when nothing changes the sound (the call plays Opus passthrough).
    pub fn is_empty(&self) -> bool {
        self.equalizer.iter().all(|g| *g == 0.0)
            && self.timescale.is_none_or(|t| t.is_identity())
            && self.tremolo.is_none()
            && self.vibrato.is_none()
            && self.lowpass.is_none()
            && self.rotation.is_none()
            && self.channel_mix.is_none()
            && self.karaoke.is_none()
    }

    /// The factor the source's time runs at against the listener's (speed × rate).
    pub fn tempo(&self) -> f32 {
        self.timescale.map_or(1.0, |t| t.tempo())
    }

    /// Checks every value against the ranges the DSP runs; the error says which and why.
    pub fn validate(&self) -> Result<(), String> {
        for (i, g) in self.equalizer.iter().enumerate() {
            if !(EQ_GAIN.0..=EQ_GAIN.1).contains(g) {
                return Err(format!(
                    "equaliser band {i} gain must be between {} and {}",
                    EQ_GAIN.0, EQ_GAIN.1
                ));
            }
        }
        if let Some(t) = self.timescale {
            for (name, v) in [("speed", t.speed), ("pitch", t.pitch), ("rate", t.rate)] {
                if !(0.5..=2.0).contains(&v) {
                    return Err(format!("{name} must be between 0.5 and 2"));
                }
            }
        }
        for (name, w, max_hz) in [
            ("tremolo", self.tremolo, 20.0),
            ("vibrato", self.vibrato, 14.0),
        ] {
            if let Some(w) = w {
                if !(w.frequency > 0.0 && w.frequency <= max_hz) {
                    return Err(format!(
                        "{name} frequency must be above 0 and at most {max_hz} Hz"
                    ));
                }
                if !(w.depth > 0.0 && w.depth <= 1.0) {
                    return Err(format!("{name} depth must be above 0 and at most 1"));
                }
            }
        }
        if let Some(s) = self.lowpass {
            if !(1.0..=100.0).contains(&s) {
                return Err("lowpass smoothing must be between 1 and 100".into());
            }
        }
        if let Some(r) = self.rotation {
            if !(r > 0.0 && r <= 5.0) {
                return Err("rotation must be above 0 and at most 5 Hz".into());
            }
        }
        if let Some(m) = self.channel_mix {
            let all = [
                m.left_to_left,
                m.left_to_right,
                m.right_to_left,
                m.right_to_right,
            ];
            if all.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return Err("channel mix weights must be between 0 and 1".into());
            }
        }
        if let Some(k) = self.karaoke {
            if !(0.0..=1.0).contains(&k.level) || !(0.0..=1.0).contains(&k.mono_level) {
                return Err("karaoke levels must be between 0 and 1".into());
            }
            if !(20.0..=2000.0).contains(&k.band) || !(10.0..=1000.0).contains(&k.width) {
                return Err("karaoke band must be 20-2000 Hz and its width 10-1000 Hz".into());
            }
        }
        Ok(())
    }

    /// One line per part that is on, for `/filters` and the `/filter` reply.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.preset {
            out.push(format!("preset {p}"));
        }
        let bands: Vec<String> = self
            .equalizer
            .iter()
            .zip(EQ_BANDS)
            .filter(|(g, _)| **g != 0.0)
            .map(|(g, f)| format!("{} {:+.1} dB", hz(f), eq_gain_db(*g)))
            .collect();
        if !bands.is_empty() {
            out.push(format!("equaliser: {}", bands.join(", ")));
        }
        if let Some(t) = self.timescale.filter(|t| !t.is_identity()) {
            out.push(format!(
                "speed ×{} · pitch ×{} · rate ×{}",
                t.speed, t.pitch, t.rate
            ));
        }
        if let Some(w) = self.tremolo {
            out.push(format!("tremolo {} Hz, depth {}", w.frequency, w.depth));
        }
        if let Some(w) = self.vibrato {
            out.push(format!("vibrato {} Hz, depth {}", w.frequency, w.depth));
        }
        if let Some(s) = self.lowpass {
            out.push(format!("lowpass (smoothing {s})"));
        }
        if let Some(r) = self.rotation {
            out.push(format!("rotation {r} Hz"));
        }
        if let Some(m) = self.channel_mix {
            out.push(format!(
                "channel mix L→L {} L→R {} R→L {} R→R {}",
                m.left_to_left, m.left_to_right, m.right_to_left, m.right_to_right
            ));
        }
        if let Some(k) = self.karaoke {
            out.push(format!(
                "karaoke level {} (keeps the centre below {} Hz)",
                k.level,
                k.band + k.width / 2.0
            ));
        }
        out
    }
}

fn hz(f: f32) -> String {
    if f >= 1000.0 {
        format!("{}k", f / 1000.0)
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_changes_the_sound() {
        for name in PRESETS {
            let p = FilterSpec::preset(name).expect(name);
            p.validate().expect(name);
            assert!(!p.is_empty(), "{name}");
            assert!(!p.describe().is_empty(), "{name}");
        }
        assert!(FilterSpec::preset("loud").is_none());
        assert!(FilterSpec::default().is_empty());
    }

    #[test]
    fn values_out_of_range_are_refused_with_the_part_named() {
        let mut s = FilterSpec {
            timescale: Some(Timescale {
                speed: 3.0,
                ..Timescale::default()
            }),
            ..FilterSpec::default()
        };
        assert!(s.validate().unwrap_err().contains("speed"));
        s.timescale = None;
        s.equalizer[3] = 2.0;
        assert!(s.validate().unwrap_err().contains("band 3"));
    }

    #[test]
    fn a_spec_survives_json() {
        let s = FilterSpec::preset("nightcore").unwrap();
        let back: FilterSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(s, back);
        assert_eq!(back.tempo(), 1.25);
    }
}
