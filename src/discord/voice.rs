//! The player's voice call, implemented over songbird.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serenity::all::{ChannelId, GuildId};
use songbird::events::{Event, EventContext, EventHandler, TrackEvent};
use songbird::input::{HttpRequest, Input};
use songbird::tracks::{PlayMode, TrackHandle};
use songbird::Songbird;

use crate::player::voice::{
    PlayOptions, TrackEnded, TrackEvents, TrackOutcome, VoiceCall, VoiceError, VoiceFactory,
};
use crate::sources::Track;

pub struct SongbirdCall {
    manager: Arc<Songbird>,
    guild: GuildId,
    http: reqwest::Client,
    track: Option<TrackHandle>,
}

/// Makes a [`SongbirdCall`] per guild, all sharing one HTTP client for streaming.
pub fn factory(manager: Arc<Songbird>, http: reqwest::Client) -> VoiceFactory {
    Arc::new(move |guild| {
        Box::new(SongbirdCall {
            manager: manager.clone(),
            guild: GuildId::new(guild),
            http: http.clone(),
            track: None,
        }) as Box<dyn VoiceCall>
    })
}

/// songbird calls this when a track ends or fails; it forwards that to the player task.
struct ForwardEnd {
    token: u64,
    events: TrackEvents,
}

#[async_trait]
impl EventHandler for ForwardEnd {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        if let EventContext::Track(tracks) = ctx {
            let outcome = match tracks.first().map(|(state, _)| &state.playing) {
                Some(PlayMode::Errored(e)) => {
                    TrackOutcome::Failed(short_play_error(&e.to_string()))
                }
                _ => TrackOutcome::Finished,
            };
            let _ = self.events.send(TrackEnded {
                token: self.token,
                outcome,
            });
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
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(guild = %self.guild, channel, error = %e, "voice join failed");
                // A failed join can leave a half-made call behind; drop it.
                let _ = self.manager.remove(self.guild).await;
                Err(VoiceError::Join(e.to_string()))
            }
        }
    }

    async fn play(
        &mut self,
        track: &Track,
        opts: PlayOptions,
        token: u64,
        events: TrackEvents,
    ) -> Result<(), VoiceError> {
        let call = self
            .manager
            .get(self.guild)
            .ok_or(VoiceError::NotConnected)?;
        let input: Input = stream_input(&self.http, track).into();
        let t = songbird::tracks::Track::new(input).volume(opts.volume);
        let handle = call.lock().await.play_only(t);
        if let Some(at) = opts.start_at {
            // Resuming mid-track: the seek completes once the input is ready.
            let _ = handle.seek(at);
        }
        for ev in [TrackEvent::End, TrackEvent::Error] {
            let forward = ForwardEnd {
                token,
                events: events.clone(),
            };
            handle
                .add_event(Event::Track(ev), forward)
                .map_err(|e| VoiceError::Play(e.to_string()))?;
        }
        self.track = Some(handle);
        Ok(())
    }

    async fn pause(&mut self) {
        if let Some(t) = &self.track {
            let _ = t.pause();
        }
    }

    async fn resume(&mut self) {
        if let Some(t) = &self.track {
            let _ = t.play();
        }
    }

    async fn stop(&mut self) {
        if let Some(t) = self.track.take() {
            let _ = t.stop();
        }
    }

    async fn set_volume(&mut self, volume: f32) {
        if let Some(t) = &self.track {
            let _ = t.set_volume(volume);
        }
    }

    async fn seek(&mut self, to: Duration) -> Result<(), VoiceError> {
        let t = self.track.as_ref().ok_or(VoiceError::NotConnected)?;
        t.seek_async(to)
            .await
            .map(|_| ())
            .map_err(|_| VoiceError::NotSeekable)
    }

    async fn position(&mut self) -> Option<Duration> {
        let t = self.track.as_ref()?;
        t.get_info().await.ok().map(|s| s.position)
    }

    async fn leave(&mut self) {
        self.track = None;
        if self.manager.get(self.guild).is_some() {
            if let Err(e) = self.manager.remove(self.guild).await {
                tracing::debug!(guild = %self.guild, error = %e, "leaving voice");
            }
        }
    }
}

/// An HTTP stream of the track's media URL with the headers yt-dlp said it needs.
fn stream_input(http: &reqwest::Client, track: &Track) -> HttpRequest {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &track.http_headers {
        if let (Ok(k), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    HttpRequest::new_with_headers(http.clone(), track.stream_url.clone(), headers)
}
