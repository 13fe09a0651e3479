//! What the player needs from a voice connection, and what it tells the text channel.
//! songbird and serenity implement these at the edge (`crate::discord`); unit tests
//! implement them with recorders, so the queue service runs without a gateway.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::player::queue::Entry;
use crate::sources::Track;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VoiceError {
    #[error("could not join the voice channel: {0}")]
    Join(String),
    #[error("not connected to voice")]
    NotConnected,
    #[error("could not start the track: {0}")]
    Play(String),
    #[error("this source cannot seek")]
    NotSeekable,
}

/// How a started track ended, as reported by the voice driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackOutcome {
    Finished,
    Failed(String),
}

/// What the voice connection reports to its player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceEvent {
    /// The track started with `token` ended. Tokens let the player ignore the late "ended"
    /// of a track it already replaced.
    TrackEnded { token: u64, outcome: TrackOutcome },
    /// The voice connection is up (first connect or a reconnect).
    Connected,
    /// The voice connection dropped; `code` is Discord's close code when it closed one.
    Disconnected { code: Option<u16>, reason: String },
}

/// Where a voice implementation reports what happens to it.
pub type VoiceEvents = mpsc::UnboundedSender<VoiceEvent>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayOptions {
    /// 1.0 is unity gain (and keeps Opus passthrough).
    pub volume: f32,
    pub start_at: Option<Duration>,
}

/// One guild's voice connection.
#[async_trait]
pub trait VoiceCall: Send + Sync {
    /// Joins `channel`, or moves there if connected elsewhere.
    async fn join(&mut self, channel: u64) -> Result<(), VoiceError>;
    /// Replaces whatever plays with `track`; its end is reported as `TrackEnded { token }`.
    async fn play(
        &mut self,
        track: &Track,
        opts: PlayOptions,
        token: u64,
    ) -> Result<(), VoiceError>;
    async fn pause(&mut self);
    async fn resume(&mut self);
    /// Stops the current track without reporting it as ended.
    async fn stop(&mut self);
    async fn set_volume(&mut self, volume: f32);
    async fn seek(&mut self, to: Duration) -> Result<(), VoiceError>;
    /// Playback position of the current track, if the driver knows it.
    async fn position(&mut self) -> Option<Duration>;
    /// The channel the voice layer believes it is in (None once disconnected by anyone).
    async fn current_channel(&mut self) -> Option<u64>;
    /// Disconnects; safe to call when not connected.
    async fn leave(&mut self);
}

/// Makes the voice connection for a guild; it reports to the given sender.
pub type VoiceFactory = Arc<dyn Fn(u64, VoiceEvents) -> Box<dyn VoiceCall> + Send + Sync>;

/// Something worth telling the channel the music was requested from.
#[derive(Debug, Clone)]
pub enum Notice {
    NowPlaying(Entry),
    TrackFailed { title: String, reason: String },
    QueueFinished,
    Left { reason: String },
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, text_channel: u64, notice: Notice);
}
