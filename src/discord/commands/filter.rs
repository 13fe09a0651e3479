//! `/filter` (set audio filters: a preset, or parts of Lavalink's set) and `/filters`
//! (what is on). The values are parsed and checked here, once; the player keeps them and
//! the voice call runs them.

use super::checks::{listening, sentence};
use super::dj;
use crate::discord::bot::{Context, Error};
use crate::discord::reply;
use crate::player::filters::{ChannelMix, FilterSpec, Karaoke, Timescale, Wave, EQ_BANDS};
use crate::player::Request;

/// What `/filter` says when the filters are off.
const OFF: &str =
    "Filters off: back to Opus passthrough (the source's audio untouched: best quality, least CPU)";

/// Set audio filters: a preset, or parts (they add to what is on); preset off clears them
#[allow(clippy::too_many_arguments)]
#[poise::command(slash_command, guild_only)]
pub async fn filter(
    ctx: Context<'_>,
    #[description = "A preset (replaces what is on), or off"]
    #[choices(
        "off",
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
        "classical"
    )]
    preset: Option<&'static str>,
    #[description = "Tempo without changing pitch, 0.5-2"] speed: Option<f64>,
    #[description = "Pitch without changing tempo, 0.5-2"] pitch: Option<f64>,
    #[description = "Tempo and pitch together, 0.5-2"] rate: Option<f64>,
    #[description = "Equaliser: band:gain pairs, bands 0 (25 Hz)-14 (16 kHz), gains -0.25-1, e.g. 0:0.3 1:0.2"]
    equalizer: Option<String>,
    #[description = "Lowpass smoothing, 1-100 (20 is soft)"] lowpass: Option<f64>,
    #[description = "Rotation around your head, Hz (0.2 is 8D)"] rotation: Option<f64>,
    #[description = "Tremolo frequency, Hz (depth 0.5 unless given)"] tremolo: Option<f64>,
    #[description = "Tremolo depth, 0-1"] tremolo_depth: Option<f64>,
    #[description = "Vibrato frequency, Hz, up to 14 (depth 0.5 unless given)"] vibrato: Option<
        f64,
    >,
    #[description = "Vibrato depth, 0-1"] vibrato_depth: Option<f64>,
    #[description = "Karaoke: how much of the centre (the voice) goes, 0-1"] karaoke: Option<f64>,
    #[description = "Channel mix: four weights 0-1, L→L L→R R→L R→R (e.g. 0.5 0.5 0.5 0.5 is mono)"]
    channel_mix: Option<String>,
) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    let parts = Parts {
        speed,
        pitch,
        rate,
        equalizer,
        lowpass,
        rotation,
        tremolo,
        tremolo_depth,
        vibrato,
        vibrato_depth,
        karaoke,
        channel_mix,
    };
    if preset.is_none() && parts.is_empty() {
        return reply::error(
            ctx,
            "Give a preset (or `off`) or a part to set, like `speed:1.25`. /filters shows what is on.",
        )
        .await;
    }
    let base = match preset {
        Some("off") => FilterSpec::default(),
        Some(name) => FilterSpec::preset(name).unwrap_or_default(),
        None => l.snapshot.filters.clone(),
    };
    let spec = match parts.apply(base).and_then(|s| s.validate().map(|()| s)) {
        Ok(s) => s,
        Err(why) => return reply::error(ctx, capitalised(&why)).await,
    };
    if !dj::require(ctx, Some(&l.snapshot), "change the filters").await? {
        return Ok(());
    }
    let empty = spec.is_empty();
    let lines = spec.describe();
    match l
        .player
        .call(|reply| Request::SetFilters { spec, reply })
        .await
    {
        Ok(_) if empty => reply::ok(ctx, format!("{OFF}.")).await,
        Ok(_) => {
            let on = l
                .current_title()
                .map(|t| format!(" on {t} and what comes next"))
                .unwrap_or_default();
            reply::ok(
                ctx,
                format!(
                    "Filters set{on}: {}. `/filter preset:off` goes back to Opus passthrough.",
                    lines.join("; ")
                ),
            )
            .await
        }
        Err(e) => reply::error(ctx, sentence(&e)).await,
    }
}

/// Show the audio filters that are on
#[poise::command(slash_command, guild_only)]
pub async fn filters(ctx: Context<'_>) -> Result<(), Error> {
    let Some(l) = listening(ctx).await? else {
        return Ok(());
    };
    let f = &l.snapshot.filters;
    if f.is_empty() {
        return reply::ok(
            ctx,
            "No filters are on: Opus passthrough (the source's audio untouched).",
        )
        .await;
    }
    let lines: Vec<String> = f.describe().iter().map(|s| format!("- {s}")).collect();
    reply::ok(ctx, format!("Filters on:\n{}", lines.join("\n"))).await
}

/// The parts a `/filter` sets, as typed.
struct Parts {
    speed: Option<f64>,
    pitch: Option<f64>,
    rate: Option<f64>,
    equalizer: Option<String>,
    lowpass: Option<f64>,
    rotation: Option<f64>,
    tremolo: Option<f64>,
    tremolo_depth: Option<f64>,
    vibrato: Option<f64>,
    vibrato_depth: Option<f64>,
    karaoke: Option<f64>,
    channel_mix: Option<String>,
}

impl Parts {
    fn is_empty(&self) -> bool {
        [
            self.speed,
            self.pitch,
            self.rate,
            self.lowpass,
            self.rotation,
            self.tremolo,
            self.tremolo_depth,
            self.vibrato,
            self.vibrato_depth,
            self.karaoke,
        ]
        .iter()
        .all(Option::is_none)
            && self.equalizer.is_none()
            && self.channel_mix.is_none()
    }

    /// `base` with these parts set on it; a part's text that cannot be read says why.
    fn apply(&self, mut s: FilterSpec) -> Result<FilterSpec, String> {
        let f = |v: f64| v as f32;
        if self.speed.is_some() || self.pitch.is_some() || self.rate.is_some() {
            let t = s.timescale.unwrap_or_default();
            s.timescale = Some(Timescale {
                speed: self.speed.map_or(t.speed, f),
                pitch: self.pitch.map_or(t.pitch, f),
                rate: self.rate.map_or(t.rate, f),
            });
        }
        if let Some(eq) = &self.equalizer {
            for (band, gain) in parse_bands(eq)? {
                s.equalizer[band] = gain;
            }
        }
        if let Some(v) = self.lowpass {
            s.lowpass = Some(f(v));
        }
        if let Some(v) = self.rotation {
            s.rotation = Some(f(v));
        }
        if self.tremolo.is_some() || self.tremolo_depth.is_some() {
            s.tremolo = Some(wave(s.tremolo, self.tremolo, self.tremolo_depth, 4.0));
        }
        if self.vibrato.is_some() || self.vibrato_depth.is_some() {
            s.vibrato = Some(wave(s.vibrato, self.vibrato, self.vibrato_depth, 5.0));
        }
        if let Some(level) = self.karaoke {
            s.karaoke = Some(Karaoke {
                level: f(level),
                ..s.karaoke.unwrap_or_default()
            });
        }
        if let Some(m) = &self.channel_mix {
            s.channel_mix = Some(parse_mix(m)?);
        }
        Ok(s)
    }
}

fn wave(old: Option<Wave>, hz: Option<f64>, depth: Option<f64>, default_hz: f32) -> Wave {
    let old = old.unwrap_or(Wave {
        frequency: default_hz,
        depth: 0.5,
    });
    Wave {
        frequency: hz.map_or(old.frequency, |v| v as f32),
        depth: depth.map_or(old.depth, |v| v as f32),
    }
}

/// `0:0.3 1:0.2` (or `0=0.3, 1=0.2`) into (band, gain) pairs.
fn parse_bands(text: &str) -> Result<Vec<(usize, f32)>, String> {
    let bad = || {
        format!(
            "I can't read `{}` as equaliser bands. Give band:gain pairs like `0:0.3 1:0.2`: bands 0-{} ({} Hz to {} Hz), gains -0.25 to 1",
            text.chars().take(60).collect::<String>(),
            EQ_BANDS.len() - 1,
            EQ_BANDS[0],
            EQ_BANDS[EQ_BANDS.len() - 1]
        )
    };
    let mut out = Vec::new();
    for pair in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
    {
        let (b, g) = pair.split_once([':', '=']).ok_or_else(bad)?;
        let band: usize = b.trim().parse().map_err(|_| bad())?;
        let gain: f32 = g.trim().parse().map_err(|_| bad())?;
        if band >= EQ_BANDS.len() || !gain.is_finite() {
            return Err(bad());
        }
        out.push((band, gain));
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Four weights: L→L L→R R→L R→R.
fn parse_mix(text: &str) -> Result<ChannelMix, String> {
    let v: Vec<f32> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| "channel mix is four numbers 0-1: L→L L→R R→L R→R".to_string())?;
    match v[..] {
        [ll, lr, rl, rr] => Ok(ChannelMix {
            left_to_left: ll,
            left_to_right: lr,
            right_to_left: rl,
            right_to_right: rr,
        }),
        _ => Err("channel mix is four numbers 0-1: L→L L→R R→L R→R".into()),
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + ".",
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_and_mixes_are_read_or_refused_with_the_form() {
        assert_eq!(
            parse_bands("0:0.3 1=0.2,14:-0.25").unwrap(),
            vec![(0, 0.3), (1, 0.2), (14, -0.25)]
        );
        assert!(parse_bands("15:0.1").unwrap_err().contains("band:gain"));
        assert!(parse_bands("loud").is_err());
        assert!(parse_bands("").is_err());
        assert_eq!(parse_mix("0 1 1 0").unwrap().left_to_right, 1.0);
        assert!(parse_mix("0 1").is_err());
    }

    #[test]
    fn parts_add_to_what_is_on() {
        let parts = Parts {
            speed: Some(1.25),
            pitch: None,
            rate: None,
            equalizer: None,
            lowpass: None,
            rotation: None,
            tremolo: None,
            tremolo_depth: Some(0.3),
            vibrato: None,
            vibrato_depth: None,
            karaoke: None,
            channel_mix: None,
        };
        let s = parts.apply(FilterSpec::preset("8d").unwrap()).unwrap();
        assert_eq!(s.rotation, Some(0.2));
        assert_eq!(s.timescale.unwrap().speed, 1.25);
        assert_eq!(s.tremolo.unwrap().depth, 0.3);
        s.validate().unwrap();
    }

    /// Discord sends a choice as its index: the command's choices must be `off` and then
    /// `PRESETS` in order (poise needs them as literals, so they are written twice).
    #[test]
    fn the_preset_choices_are_off_then_the_presets_in_order() {
        let cmd = filter();
        let preset = cmd
            .parameters
            .iter()
            .find(|p| p.name == "preset")
            .expect("a preset option");
        let names: Vec<String> = preset.choices.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(names[0], "off");
        assert_eq!(
            names[1..],
            crate::player::filters::PRESETS.map(String::from)
        );
    }
}
