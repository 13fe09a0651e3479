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

/// Sent by the driver when the track started with `token` ends. Tokens let the player
/// ignore the late "ended" of a track it already replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackEnded {
    pub token: u64,
    pub outcome: TrackOutcome,
}

/// Where a voice implementation reports track ends.
pub type TrackEvents = mpsc::UnboundedSender<TrackEnded>;

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
    /// Replaces whatever plays with `track`; its end is reported on `events` with `token`.
    async fn play(
        &mut self,
        track: &Track,
        opts: PlayOptions,
        token: u64,
        events: TrackEvents,
    ) -> Result<(), VoiceError>;
    async fn pause(&mut self);
    async fn resume(&mut self);
    /// Stops the current track without reporting it as ended.
    async fn stop(&mut self);
    async fn set_volume(&mut self, volume: f32);
    async fn seek(&mut self, to: Duration) -> Result<(), VoiceError>;
    /// Playback position of the current track, if the driver knows it.
    async fn position(&mut self) -> Option<Duration>;
    /// Disconnects; safe to call when not connected.
    async fn leave(&mut self);
}

/// Makes the voice connection for a guild.
pub type VoiceFactory = Arc<dyn Fn(u64) -> Box<dyn VoiceCall> + Send + Sync>;

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
