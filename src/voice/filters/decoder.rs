//! The symphonia decoder and format reader every track plays through.
//!
//! songbird passes a track's Opus packets straight through (no decode, no re-encode) when
//! the decoder says its codec is Opus, the volume is 1 and one track plays; it asks before
//! every 20 ms frame. [`FilteredDecoder`] answers "Opus" while no filter is on, so the
//! music stays untouched, and "PCM" once one is, so songbird decodes through it, the
//! chain runs on the samples and songbird encodes the result. The switch is one atomic
//! load: a `/filter` is heard on the next packet, without reopening the track.
//!
//! [`ClockedReader`] notes the source time of every packet read ([`TrackClock`]), the
//! position the player shows once the tempo changed.

use std::sync::Arc;
use std::time::Duration;

use songbird::input::Parsed;
use symphonia::core::audio::{AsAudioBufferRef, AudioBuffer, AudioBufferRef, SampleBuffer, Signal};
use symphonia::core::codecs::{
    CodecDescriptor, CodecParameters, Decoder, DecoderOptions, FinalizeResult, CODEC_TYPE_PCM_F32LE,
};
use symphonia::core::errors::{Error, Result};
use symphonia::core::formats::{
    Cue, FormatOptions, FormatReader, Packet, SeekMode, SeekTo, SeekedTo, Track,
};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::Metadata;
use symphonia::core::units::TimeBase;

use super::chain::{Chain, FilterControl, TrackClock};

/// Wraps a parsed input so it plays through the guild's filters and keeps `clock`.
pub fn filtered(parsed: Parsed, control: Arc<FilterControl>, clock: Arc<TrackClock>) -> Parsed {
    let Parsed {
        format,
        decoder,
        track_id,
        meta,
        supports_backseek,
    } = parsed;
    let time_base = format
        .tracks()
        .iter()
        .find(|t| t.id == track_id)
        .and_then(|t| {
            t.codec_params
                .time_base
                .or(t.codec_params.sample_rate.map(|r| TimeBase::new(1, r)))
        });
    let mut pcm_params = decoder.codec_params().clone();
    pcm_params.codec = CODEC_TYPE_PCM_F32LE;
    Parsed {
        format: Box::new(ClockedReader {
            inner: format,
            track_id,
            time_base,
            clock: clock.clone(),
        }),
        decoder: Box::new(FilteredDecoder {
            inner: decoder,
            control,
            clock,
            generation: u64::MAX,
            chain: None,
            pcm_params,
            samples: None,
            work: Vec::new(),
            out: None,
            last_filtered: false,
        }),
        track_id,
        meta,
        supports_backseek,
    }
}

pub struct FilteredDecoder {
    inner: Box<dyn Decoder>,
    control: Arc<FilterControl>,
    clock: Arc<TrackClock>,
    /// The control's generation the chain was built for.
    generation: u64,
    chain: Option<Chain>,
    /// The inner decoder's parameters under a PCM codec: what songbird sees while filters
    /// are on, so it never passes the source's Opus frames through.
    pcm_params: CodecParameters,
    samples: Option<SampleBuffer<f32>>,
    work: Vec<f32>,
    out: Option<AudioBuffer<f32>>,
    /// Whether the last `decode` returned `out` (else the inner decoder's buffer).
    last_filtered: bool,
}

impl FilteredDecoder {
    /// Picks up a change of filters: a new chain (its state starts clean) or none.
    fn refresh(&mut self, rate: u32) {
        let generation = self.control.generation();
        let stale = self.chain.as_ref().is_some_and(|c| c.rate() != rate);
        if generation == self.generation && !stale {
            return;
        }
        self.generation = generation;
        self.chain = self.control.current().map(|spec| {
            if (spec.tempo() - 1.0).abs() > 1e-6 {
                self.clock
                    .stretched
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            Chain::new(&spec, rate)
        });
    }
}

impl Decoder for FilteredDecoder {
    fn try_new(_: &CodecParameters, _: &DecoderOptions) -> Result<Self> {
        Err(Error::Unsupported(
            "a filtered decoder wraps another decoder",
        ))
    }

    fn supported_codecs() -> &'static [CodecDescriptor] {
        &[]
    }

    fn reset(&mut self) {
        self.inner.reset();
        // After a seek: no sound from before it may come out.
        self.generation = u64::MAX;
        self.chain = None;
    }

    fn codec_params(&self) -> &CodecParameters {
        if self.control.is_active() {
            &self.pcm_params
        } else {
            self.inner.codec_params()
        }
    }

    fn decode(&mut self, packet: &Packet) -> Result<AudioBufferRef<'_>> {
        let rate = self.inner.codec_params().sample_rate.unwrap_or(48_000);
        self.refresh(rate);
        let Some(chain) = self.chain.as_mut() else {
            self.last_filtered = false;
            return self.inner.decode(packet);
        };
        let decoded = self.inner.decode(packet)?;
        let spec = *decoded.spec();
        let frames = decoded.frames();
        let channels = spec.channels.count();
        if self
            .samples
            .as_ref()
            .is_none_or(|s| s.capacity() < frames * channels)
        {
            self.samples = Some(SampleBuffer::new(frames as u64, spec));
        }
        let samples = self.samples.as_mut().expect("just made");
        samples.copy_interleaved_ref(decoded);
        // The chain runs on stereo: mono is doubled, channels past two are left out.
        self.work.clear();
        for f in samples.samples().chunks_exact(channels) {
            let (l, r) = (f[0], f.get(1).copied().unwrap_or(f[0]));
            self.work.extend_from_slice(&[l, r]);
        }
        chain.process(&mut self.work);
        let n = self.work.len() / 2;
        if self
            .out
            .as_ref()
            .is_none_or(|o| o.capacity() < n || *o.spec() != spec)
        {
            self.out = Some(AudioBuffer::new(n.max(frames) as u64 * 2, spec));
        }
        let out = self.out.as_mut().expect("just made");
        out.clear();
        out.render_reserved(Some(n));
        for ch in 0..channels {
            let plane = out.chan_mut(ch);
            for (i, s) in plane.iter_mut().enumerate() {
                let (l, r) = (self.work[i * 2], self.work[i * 2 + 1]);
                *s = match (channels, ch) {
                    (1, _) => (l + r) * 0.5,
                    (_, 0) => l,
                    (_, 1) => r,
                    _ => 0.0,
                };
            }
        }
        self.last_filtered = true;
        Ok(out.as_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        self.inner.finalize()
    }

    fn last_decoded(&self) -> AudioBufferRef<'_> {
        match (&self.out, self.last_filtered) {
            (Some(out), true) => out.as_audio_buffer_ref(),
            _ => self.inner.last_decoded(),
        }
    }
}

/// A format reader that notes where in the source each packet of its track is.
struct ClockedReader {
    inner: Box<dyn FormatReader>,
    track_id: u32,
    time_base: Option<TimeBase>,
    clock: Arc<TrackClock>,
}

impl ClockedReader {
    fn note(&self, ts: u64) {
        if let Some(tb) = self.time_base {
            let t = tb.calc_time(ts);
            self.clock
                .set(Duration::from_secs(t.seconds) + Duration::from_secs_f64(t.frac));
        }
    }
}

impl FormatReader for ClockedReader {
    fn try_new(_: MediaSourceStream, _: &FormatOptions) -> Result<Self> {
        Err(Error::Unsupported("a clocked reader wraps another reader"))
    }

    fn cues(&self) -> &[Cue] {
        self.inner.cues()
    }

    fn metadata(&mut self) -> Metadata<'_> {
        self.inner.metadata()
    }

    fn seek(&mut self, mode: SeekMode, to: SeekTo) -> Result<SeekedTo> {
        let seeked = self.inner.seek(mode, to)?;
        if seeked.track_id == self.track_id {
            self.note(seeked.required_ts);
        }
        Ok(seeked)
    }

    fn tracks(&self) -> &[Track] {
        self.inner.tracks()
    }

    fn next_packet(&mut self) -> Result<Packet> {
        let p = self.inner.next_packet()?;
        if p.track_id() == self.track_id {
            self.note(p.ts());
        }
        Ok(p)
    }

    fn into_inner(self: Box<Self>) -> MediaSourceStream {
        self.inner.into_inner()
    }
}
