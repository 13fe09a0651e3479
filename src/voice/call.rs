//! The player's voice call, implemented over songbird.
//!
//! Seeking: songbird can only seek what its input can seek, and a seek that fails *kills*
//! the track (it ends as errored). So this adapter
//! - streams over HTTP with [`http::RangeSource`], which seeks with `Range` requests when the
//!   server supports them (songbird's own `HttpRequest` never seeks: it can only read
//!   forward, which fails for WebM with cues, i.e. YouTube);
//! - refuses a seek up front ([`VoiceError::NotSeekable`]) for live tracks and for streams
//!   whose server does not serve byte ranges;
//! - if songbird still fails a seek (a position past the end of a track of unknown length,
//!   a broken container), hides that failure from the player's end events and says
//!   [`SeekOutcome::Failed`], and the player opens the track again where it was, so a bad
//!   `/seek` never skips the song.
//!
//! Opening (a lookup for an expired link, the first request to the media server) happens
//! in the future [`VoiceCall::open`] returns, which the player runs apart from its loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serenity::all::{ChannelId, GuildId};
use songbird::events::{Event, EventContext, EventHandler, TrackEvent};
use songbird::input::{AudioStream, Input, LiveInput, Parsed};
use songbird::tracks::{ControlError, PlayMode, TrackHandle, TrackResult, TrackState};
use songbird::Songbird;
use symphonia::core::io::MediaSource;
use tokio_util::sync::DropGuard;

use super::filters::{self, FilterControl, TrackClock};
use super::http;
use crate::cache::{InUseGuard, Playable, Resolver};
use crate::player::filters::FilterSpec;
use crate::player::voice::{
    Opening, PlayOptions, Ready, SeekOutcome, Seeking, TrackOutcome, VoiceCall, VoiceError,
    VoiceEvent, VoiceEvents, VoiceFactory,
};
use crate::sources::egress::client::GuardedClient;
use crate::sources::Track;

/// Longest a `/seek` waits for songbird before answering (it keeps going after that).
const SEEK_WAIT: Duration = Duration::from_secs(15);
/// Longest a track's state may take to arrive. songbird answers only from a live mixer:
/// while the voice connection is down the mixer is parked and never answers, and an
/// unbounded wait would stall the guild's player (and every command after it).
const STATE_WAIT: Duration = Duration::from_millis(500);

/// A track's state, or `None` when songbird did not answer in [`STATE_WAIT`].
async fn track_state(handle: &TrackHandle) -> Option<TrackResult<TrackState>> {
    tokio::time::timeout(STATE_WAIT, handle.get_info())
        .await
        .ok()
}

pub struct SongbirdCall {
    manager: Arc<Songbird>,
    guild: GuildId,
    http: GuardedClient,
    playing: Option<Playing>,
    events: VoiceEvents,
    resolver: Resolver,
    /// The guild's filters, read by every track it opens.
    filters: Arc<FilterControl>,
    /// How long a media server may keep a stream waiting (`player.stream_timeout`).
    stall: Duration,
}

/// What [`VoiceCall::open`] makes ready (inside a [`Ready`]).
struct Opened {
    input: Input,
    /// Whether the input can jump to any position (a file, or HTTP with byte ranges).
    seekable: bool,
    /// The track as it plays (re-resolved if its link had expired).
    track: Track,
    /// Keeps a cached file from eviction while it plays.
    file: Option<InUseGuard>,
    end: StreamEnd,
    clock: Arc<TrackClock>,
    /// Stops the stream's reads when dropped (a stopped or replaced track).
    stop: Option<DropGuard>,
}

/// The track songbird is playing for us.
struct Playing {
    handle: TrackHandle,
    token: u64,
    track: Track,
    /// Whether the input can jump to any position (a file, or HTTP with byte ranges).
    seekable: bool,
    /// Cleared to keep this handle's end from being reported (while a seek is under way,
    /// or once it has been replaced).
    report: Arc<AtomicBool>,
    /// The last position songbird reported (or where the track was asked to start): the
    /// answer while songbird cannot say, since a parked track does not move either.
    last_position: Duration,
    /// Keeps the cached file being played from eviction.
    _file: Option<InUseGuard>,
    end: StreamEnd,
    /// Stops the stream's reads when this track is stopped or replaced, so songbird's
    /// mixer never waits on a stalled server for a track nobody hears.
    _stop: Option<DropGuard>,
    /// Where the track is in its source (right under `speed`, unlike songbird's count).
    clock: Arc<TrackClock>,
}

/// Makes a [`SongbirdCall`] per guild, all sharing one HTTP client for streaming; a media
/// server silent for `stall` counts as gone (see [`http::STALL_WAIT`]).
pub fn factory(
    manager: Arc<Songbird>,
    http: GuardedClient,
    resolver: Resolver,
    stall: Duration,
) -> VoiceFactory {
    Arc::new(move |guild, events| {
        Box::new(SongbirdCall {
            manager: manager.clone(),
            guild: GuildId::new(guild),
            http: http.clone(),
            playing: None,
            events,
            resolver: resolver.clone(),
            filters: Arc::default(),
            stall,
        }) as Box<dyn VoiceCall>
    })
}

/// songbird calls this when a track ends or fails; it forwards that to the player task,
/// once, unless `report` was cleared.
struct ForwardEnd {
    token: u64,
    events: VoiceEvents,
    report: Arc<AtomicBool>,
    end: StreamEnd,
}

/// How a stream can stop short of its end, both `None` for a cached file.
#[derive(Clone, Default)]
struct StreamEnd {
    /// Its byte cap and the flag its reader sets when it hit it (see [`http::byte_cap`]).
    cap: Option<(u64, Arc<AtomicBool>)>,
    /// Why it ended early, once the server stopped sending it or cut it short and a
    /// re-open did not help (see [`http::RangeSource::ended_early`]).
    early: Option<Arc<Mutex<Option<String>>>>,
}

/// How a track ended: songbird's play mode, unless the stream was cut at its byte cap or
/// ended early (songbird sees both as a plain end; the listeners are told why it stopped).
fn outcome(mode: Option<&PlayMode>, end: &StreamEnd) -> TrackOutcome {
    let early = end.early.as_ref().and_then(|e| e.lock().ok()?.clone());
    if let Some(why) = early {
        return TrackOutcome::EndedEarly(why);
    }
    match (mode, &end.cap) {
        (Some(PlayMode::Errored(e)), _) => TrackOutcome::Failed(short_play_error(&e.to_string())),
        (_, Some((max, hit))) if hit.load(Ordering::SeqCst) => TrackOutcome::Failed(format!(
            "stopped after {} MiB: the source sent more than a track of this length needs",
            max >> 20
        )),
        _ => TrackOutcome::Finished,
    }
}

/// Forwards the driver's connect, reconnect and disconnect events to the player task.
struct ForwardLink {
    events: VoiceEvents,
}

#[async_trait]
impl EventHandler for ForwardLink {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        let ev = match ctx {
            EventContext::DriverConnect(_) | EventContext::DriverReconnect(_) => {
                VoiceEvent::Connected
            }
            EventContext::DriverDisconnect(d) => {
                let code = match &d.reason {
                    Some(songbird::events::context_data::DisconnectReason::WsClosed(Some(c))) => {
                        Some(close_code(c))
                    }
                    _ => None,
                };
                VoiceEvent::Disconnected {
                    code,
                    reason: format!("{:?}", d.reason),
                }
            }
            _ => return None,
        };
        let _ = self.events.send(ev);
        None
    }
}

/// Discord's numeric close code for songbird's enum (its discriminants are the codes).
fn close_code(c: &songbird::model::CloseCode) -> u16 {
    *c as u16
}

#[async_trait]
impl EventHandler for ForwardEnd {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        if let EventContext::Track(tracks) = ctx {
            if self.report.swap(false, Ordering::SeqCst) {
                let mode = tracks.first().map(|(state, _)| &state.playing);
                let outcome = outcome(mode, &self.end);
                let _ = self.events.send(VoiceEvent::TrackEnded {
                    token: self.token,
                    outcome,
                });
            }
        }
        // One report per track: remove this handler.
        Some(Event::Cancel)
    }
}

/// songbird's errors can embed whole HTTP bodies; keep the first line, short.
fn short_play_error(e: &str) -> String {
    let line = e.lines().next().unwrap_or("playback failed");
    let mut s: String = line.chars().take(160).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    s
}

#[async_trait]
impl VoiceCall for SongbirdCall {
    async fn join(&mut self, channel: u64) -> Result<(), VoiceError> {
        match self.manager.join(self.guild, ChannelId::new(channel)).await {
            Ok(call) => {
                let mut call = call.lock().await;
                // One set of link handlers per call: a re-join must not add a second.
                call.remove_all_global_events();
                for ev in [
                    songbird::CoreEvent::DriverConnect,
                    songbird::CoreEvent::DriverReconnect,
                    songbird::CoreEvent::DriverDisconnect,
                ] {
                    let forward = ForwardLink {
                        events: self.events.clone(),
                    };
                    call.add_global_event(Event::Core(ev), forward);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(guild = %self.guild, channel, error = %e, "voice join failed");
                // A failed join can leave a half-made call behind; drop it.
                let _ = self.manager.remove(self.guild).await;
                Err(VoiceError::Join(e.to_string()))
            }
        }
    }

    fn open(&self, track: Arc<Track>) -> Opening {
        let (resolver, client) = (self.resolver.clone(), self.http.clone());
        let (filters, stall) = (self.filters.clone(), self.stall);
        Box::pin(async move {
            open(&resolver, &client, &track, filters, stall)
                .await
                .map(Ready::new)
        })
    }

    async fn play(
        &mut self,
        ready: Ready,
        opts: PlayOptions,
        token: u64,
    ) -> Result<(), VoiceError> {
        self.silence_current();
        let opened = ready
            .take::<Opened>()
            .ok_or_else(|| VoiceError::Play("not opened by this call".into()))?;
        self.start(opened, opts, token).await
    }

    async fn pause(&mut self) {
        if let Some(p) = &self.playing {
            let _ = p.handle.pause();
        }
    }

    async fn resume(&mut self) {
        if let Some(p) = &self.playing {
            let _ = p.handle.play();
        }
    }

    async fn stop(&mut self) {
        if let Some(p) = self.playing.take() {
            p.report.store(false, Ordering::SeqCst);
            let _ = p.handle.stop();
        }
    }

    async fn set_volume(&mut self, volume: f32) {
        if let Some(p) = &self.playing {
            let _ = p.handle.set_volume(volume);
        }
    }

    async fn seek(&mut self, to: Duration) -> Result<Seeking, VoiceError> {
        let p = self.playing.as_ref().ok_or(VoiceError::NotConnected)?;
        if p.track.is_live || !p.seekable {
            return Err(VoiceError::NotSeekable);
        }
        // A failed seek ends the track as errored: keep that from the player until we know.
        p.report.store(false, Ordering::SeqCst);
        let handle = p.handle.clone();
        Ok(Box::pin(async move {
            match tokio::time::timeout(SEEK_WAIT, handle.seek_async(to)).await {
                // Past the wait the seek still lands by itself.
                Ok(Ok(_)) | Err(_) => SeekOutcome::Done,
                // songbird 0.6.1 drops a seek that arrives while it is still opening the
                // track: the player opens it again at the wanted position.
                Ok(Err(ControlError::Dropped)) => SeekOutcome::Dropped,
                Ok(Err(e)) => SeekOutcome::Failed(seek_failure(&e.to_string())),
            }
        }))
    }

    async fn seek_settled(&mut self) {
        self.resume_reports().await;
    }

    async fn position(&mut self) -> Option<Duration> {
        let p = self.playing.as_mut()?;
        match track_state(&p.handle).await {
            Some(Ok(state)) => {
                p.last_position = p.clock.position().unwrap_or(state.position);
                Some(p.last_position)
            }
            Some(Err(_)) => None,
            None => Some(p.last_position),
        }
    }

    async fn current_channel(&mut self) -> Option<u64> {
        let call = self.manager.get(self.guild)?;
        let call = call.lock().await;
        call.current_channel().map(|c| c.0.get())
    }

    async fn set_filters(&mut self, spec: &FilterSpec) {
        self.filters.set(spec);
    }

    async fn leave(&mut self) {
        self.silence_current();
        self.playing = None;
        if self.manager.get(self.guild).is_some() {
            if let Err(e) = self.manager.remove(self.guild).await {
                tracing::debug!(guild = %self.guild, error = %e, "leaving voice");
            }
        }
    }
}

/// What a user reads when songbird could not seek (an out-of-range position is the usual
/// cause when the length is unknown).
fn seek_failure(e: &str) -> String {
    let lower = e.to_ascii_lowercase();
    if ["out-of-range", "out of range", "outofrange"]
        .iter()
        .any(|k| lower.contains(k))
    {
        "that position is past the end of the track".into()
    } else {
        "the source would not jump there".into()
    }
}

impl SongbirdCall {
    /// The track being replaced must not report its end: the player already moved on.
    fn silence_current(&mut self) {
        if let Some(p) = &self.playing {
            p.report.store(false, Ordering::SeqCst);
        }
    }

    /// Hands `input` to songbird (replacing whatever played) and wires its end to the player.
    async fn start(
        &mut self,
        opened: Opened,
        opts: PlayOptions,
        token: u64,
    ) -> Result<(), VoiceError> {
        let Opened {
            input,
            seekable,
            track,
            file,
            end,
            clock,
            stop,
        } = opened;
        let call = self
            .manager
            .get(self.guild)
            .ok_or(VoiceError::NotConnected)?;
        let start_at = opts.start_at.filter(|at| !at.is_zero());
        let resume_at = match start_at {
            Some(at) if seekable && !track.is_live => Some(at),
            Some(_) => {
                tracing::info!(guild = %self.guild, "the source cannot seek; starting from the beginning");
                None
            }
            None => None,
        };
        let t = songbird::tracks::Track::new(input).volume(opts.volume);
        let handle = match resume_at {
            None if opts.paused => call.lock().await.play_only(t.pause()),
            None => call.lock().await.play_only(t),
            Some(at) => {
                // Added paused, the track stays unopened until the seek arrives, so it is
                // opened at `at`. A seek sent while songbird is still opening a track is
                // dropped (songbird 0.6.1 takes the queued seek and loses it while it waits),
                // and the track would play from its start.
                let handle = call.lock().await.play_only(t.pause());
                let _ = handle.seek(at);
                if !opts.paused {
                    let _ = handle.play();
                }
                handle
            }
        };
        let report = Arc::new(AtomicBool::new(true));
        for ev in [TrackEvent::End, TrackEvent::Error] {
            let forward = ForwardEnd {
                token,
                events: self.events.clone(),
                report: report.clone(),
                end: end.clone(),
            };
            handle
                .add_event(Event::Track(ev), forward)
                .map_err(|e| VoiceError::Play(e.to_string()))?;
        }
        self.playing = Some(Playing {
            handle,
            token,
            track,
            seekable,
            report,
            last_position: resume_at.unwrap_or_default(),
            _file: file,
            end,
            _stop: stop,
            clock,
        });
        Ok(())
    }

    /// After a successful (or still running) seek: report this track's end again, and report
    /// it now if it ended while we were not listening.
    async fn resume_reports(&mut self) {
        let Some(p) = &self.playing else { return };
        p.report.store(true, Ordering::SeqCst);
        let done = match track_state(&p.handle).await {
            Some(Ok(state)) => state.playing.is_done().then_some(state.playing),
            Some(Err(_)) => Some(PlayMode::End),
            // No answer: the end event still fires when it ends.
            None => None,
        };
        if let Some(mode) = done {
            if p.report.swap(false, Ordering::SeqCst) {
                let outcome = outcome(Some(&mode), &p.end);
                let _ = self.events.send(VoiceEvent::TrackEnded {
                    token: p.token,
                    outcome,
                });
            }
        }
    }
}

/// Makes `track` ready: what the cache says plays ([`Resolver::playable`]), opened and its
/// headers parsed, wrapped to play through the guild's `filters`. A stream is requested
/// here, so a dead link fails before the track is handed to songbird; it is seekable when
/// the server serves byte ranges of a known length.
async fn open(
    resolver: &Resolver,
    client: &GuardedClient,
    track: &Track,
    filters: Arc<FilterControl>,
    stall: Duration,
) -> Result<Opened, VoiceError> {
    let playable = resolver
        .playable(track)
        .await
        .map_err(|e| VoiceError::Play(e.to_string()))?;
    let clock = Arc::new(TrackClock::new());
    match playable {
        Playable::File(f) => {
            let file = std::fs::File::open(&f.path).map_err(|e| VoiceError::Play(e.to_string()))?;
            let parsed = parse(Box::new(file), filters, clock.clone()).await?;
            Ok(Opened {
                input: Input::Live(LiveInput::Parsed(parsed), None),
                seekable: true,
                track: track.clone(),
                file: Some(f.guard),
                end: StreamEnd::default(),
                clock,
                stop: None,
            })
        }
        Playable::Stream(track) => {
            let track = *track;
            // Bounded by the track's length, or the longest one allowed; a stream with
            // neither (live, under no length limit) is what the operator allowed to run.
            let length = track.duration.or(resolver.ytdlp().config().max_duration);
            let max = length.map(http::byte_cap);
            let source = http::RangeSource::new(client, &track)
                .with_max_bytes(max)
                .with_stall_wait(stall);
            let end = StreamEnd {
                cap: max.map(|m| (m, source.capped())),
                early: Some(source.ended_early()),
            };
            // Dropped with an open that is given up (the track was skipped meanwhile) or
            // with the track it made, it stops the stream's reads.
            let stop = source.stopper().drop_guard();
            let body = source
                .open(0)
                .await
                .map_err(|e| VoiceError::Play(e.to_string()))?;
            let seekable = body.is_seekable_stream();
            let parsed = parse(Box::new(body), filters, clock.clone()).await?;
            // songbird re-creates the stream from `source` for a backward seek on a server
            // without byte ranges (the player refuses those seeks; this is songbird's own).
            let input = Input::Live(LiveInput::Parsed(parsed), Some(Box::new(source)));
            Ok(Opened {
                input,
                seekable,
                track,
                file: None,
                end,
                clock,
                stop: Some(stop),
            })
        }
    }
}

/// Reads the media's headers (blocking I/O, so on the blocking pool) with songbird's
/// codecs, and wraps the result in the guild's filters.
async fn parse(
    media: Box<dyn MediaSource>,
    filters: Arc<FilterControl>,
    clock: Arc<TrackClock>,
) -> Result<Parsed, VoiceError> {
    let raw = LiveInput::Raw(AudioStream { input: media });
    let promoted = tokio::task::spawn_blocking(move || {
        raw.promote(
            songbird::input::codecs::get_codec_registry(),
            songbird::input::codecs::get_probe(),
        )
    })
    .await
    .map_err(|e| VoiceError::Play(e.to_string()))?
    .map_err(|e| VoiceError::Play(format!("could not read the media: {e}")))?;
    match promoted {
        LiveInput::Parsed(p) => Ok(filters::filtered(p, filters, clock)),
        _ => Err(VoiceError::Play("could not read the media".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use songbird::tracks::PlayMode;

    use crate::player::voice::TrackOutcome;

    #[test]
    fn a_stream_cut_at_its_cap_is_reported_as_failed_with_why() {
        let hit = Arc::new(AtomicBool::new(false));
        let end = super::StreamEnd {
            cap: Some((40u64 << 20, hit.clone())),
            early: Some(Arc::default()),
        };
        assert_eq!(
            super::outcome(Some(&PlayMode::End), &end),
            TrackOutcome::Finished
        );
        hit.store(true, Ordering::SeqCst);
        match super::outcome(Some(&PlayMode::End), &end) {
            TrackOutcome::Failed(why) => {
                assert!(why.contains("stopped after 40 MiB"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            super::outcome(None, &super::StreamEnd::default()),
            TrackOutcome::Finished
        );
        // A stream given up on says why, whatever songbird made of its end.
        *end.early.as_ref().unwrap().lock().unwrap() = Some("cut short".into());
        assert_eq!(
            super::outcome(Some(&PlayMode::End), &end),
            TrackOutcome::EndedEarly("cut short".into())
        );
    }
    #[test]
    fn seek_failures_read_well() {
        assert_eq!(
            super::seek_failure("seeking along input [seek error: requested seek timestamp is out-of-range for stream]"),
            "that position is past the end of the track"
        );
        assert_eq!(
            super::seek_failure("anything else"),
            "the source would not jump there"
        );
    }
}
