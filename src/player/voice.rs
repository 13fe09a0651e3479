//! What the player needs from a voice connection, and what it tells the text channel.
//! songbird and serenity implement these at the edge (`crate::discord`); unit tests
//! implement them with recorders, so the queue service runs without a gateway.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::player::autoplay::Origin;
use crate::player::filters::FilterSpec;
use crate::player::queue::{Entry, LoopMode};
use crate::resources::CleanupReason;
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
    /// Part of it played, then its source gave out (the media server stopped sending
    /// it, or cut it short): why, for the listeners.
    EndedEarly(String),
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
    /// Start paused (a restored queue that was paused, or a `/pause` sent while the track
    /// was still being opened).
    pub paused: bool,
}

/// A track made ready by [`VoiceCall::open`]: resolved, its media opened. Opaque to the
/// player, which only hands it back to [`VoiceCall::play`] of the same call; dropping it
/// closes what was opened.
pub struct Ready(Box<dyn Any + Send>);

impl Ready {
    pub fn new<T: Any + Send>(inner: T) -> Self {
        Self(Box::new(inner))
    }

    /// What the implementation put in, if it is a `T`.
    pub fn take<T: Any>(self) -> Option<T> {
        self.0.downcast().ok().map(|b| *b)
    }
}

/// Opening a track: borrows nothing from the call, so the player runs it in a task of its
/// own and keeps answering meanwhile (a yt-dlp lookup can take 20 s, a media server 30 s).
pub type Opening = BoxFuture<'static, Result<Ready, VoiceError>>;

/// How a seek ended, as the voice driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeekOutcome {
    /// Done (or still going after the wait: it lands by itself).
    Done,
    /// The driver dropped the seek (it arrived while the track was still opening): open the
    /// track again at the wanted position.
    Dropped,
    /// The driver could not seek there; the track was killed by it. The text says why, for
    /// the user.
    Failed(String),
}

/// A seek under way: waits on the driver (which may wait on the media server), borrowing
/// nothing, so the player awaits it in a task of its own.
pub type Seeking = BoxFuture<'static, SeekOutcome>;

/// One guild's voice connection.
#[async_trait]
pub trait VoiceCall: Send + Sync {
    /// Joins `channel`, or moves there if connected elsewhere.
    async fn join(&mut self, channel: u64) -> Result<(), VoiceError>;
    /// Makes `track` ready to play: resolves it again if its media URL expired, picks the
    /// cached file or the stream, and opens it, so a dead link fails here. All the network
    /// work of starting a track happens in the returned future, never in `play`.
    fn open(&self, track: Arc<Track>) -> Opening;
    /// Replaces whatever plays with what [`open`](Self::open) made ready; its end is
    /// reported as `TrackEnded { token }`. Quick: hands the input to the driver.
    async fn play(&mut self, ready: Ready, opts: PlayOptions, token: u64)
        -> Result<(), VoiceError>;
    async fn pause(&mut self);
    async fn resume(&mut self);
    /// Stops the current track without reporting it as ended.
    async fn stop(&mut self);
    async fn set_volume(&mut self, volume: f32);
    /// Starts a seek of the current track; the end of that track is not reported until
    /// [`seek_settled`](Self::seek_settled). Refuses at once what cannot seek.
    async fn seek(&mut self, to: Duration) -> Result<Seeking, VoiceError>;
    /// After a seek that ended [`SeekOutcome::Done`]: report the track's end again (now,
    /// if it ended meanwhile).
    async fn seek_settled(&mut self);
    /// Playback position of the current track, if the driver knows it.
    async fn position(&mut self) -> Option<Duration>;
    /// The channel the voice layer believes it is in (None once disconnected by anyone).
    async fn current_channel(&mut self) -> Option<u64>;
    /// Disconnects; safe to call when not connected.
    async fn leave(&mut self);
    /// Sets the filters for the playing track (heard within a packet, without reopening
    /// it) and the ones after; an empty spec goes back to Opus passthrough. Test doubles
    /// that play nothing may ignore it.
    async fn set_filters(&mut self, _spec: &FilterSpec) {}
}

/// Makes the voice connection for a guild; it reports to the given sender.
pub type VoiceFactory = Arc<dyn Fn(u64, VoiceEvents) -> Box<dyn VoiceCall> + Send + Sync>;

/// Something worth telling the channel the music was requested from.
#[derive(Debug, Clone)]
pub enum Notice {
    NowPlaying(Entry),
    TrackFailed {
        title: String,
        reason: String,
    },
    /// `title` played in part, then its source gave out for `reason`.
    EndedEarly {
        title: String,
        reason: String,
    },
    QueueFinished,
    /// Autoplay queued `title`, found through `origin`.
    Autoplay {
        title: String,
        origin: Origin,
    },
    /// Left `channel` for `reason`; `after` is the timeout that ran out (idle, paused or
    /// alone), for the reasons that have one.
    Left {
        reason: CleanupReason,
        channel: u64,
        after: Option<Duration>,
    },
}

/// What the now-playing panel shows (`panel.rs`): data, rendered at the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelView {
    /// The text channel it lives in (where the music was last asked for).
    pub channel: u64,
    /// `None` once the queue ran out.
    pub current: Option<Entry>,
    pub position: Option<Duration>,
    pub paused: bool,
    /// The first few upcoming entries (`panel::PANEL_NEXT`).
    pub upcoming: Vec<Entry>,
    /// How many wait in all.
    pub waiting: usize,
    pub loop_mode: LoopMode,
    /// The bot left the channel: the last look, without buttons.
    pub ended: bool,
}

impl PanelView {
    /// Everything the view shows except the position, which moves by itself: a change
    /// here is published at once, the position only every `panel_every`.
    pub fn shape(&self, started: u64) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.channel.hash(&mut h);
        self.current.as_ref().map(|e| e.id).hash(&mut h);
        // A track that starts again (a loop, a seek) moves its bar back at once.
        started.hash(&mut h);
        self.paused.hash(&mut h);
        self.upcoming
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
            .hash(&mut h);
        self.waiting.hash(&mut h);
        format!("{:?}", self.loop_mode).hash(&mut h);
        self.ended.hash(&mut h);
        h.finish()
    }

    /// Whether the bar moves by itself (playing, not paused).
    pub fn moving(&self) -> bool {
        self.current.is_some() && !self.paused && !self.ended
    }
}

/// Why a panel request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PanelError {
    /// The message is gone (someone deleted it).
    Gone,
    Failed(String),
}

/// Where the player's notices and its now-playing panel go: a text channel.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, text_channel: u64, notice: Notice);
    /// Posts the now-playing panel in `text_channel`; answers its message id.
    async fn post_panel(&self, text_channel: u64, view: &PanelView) -> Result<u64, PanelError> {
        let _ = (text_channel, view);
        Err(PanelError::Failed("this notifier shows no panel".into()))
    }
    /// Edits the panel `message` to show `view`; [`PanelError::Gone`] if it was deleted.
    async fn edit_panel(
        &self,
        text_channel: u64,
        message: u64,
        view: &PanelView,
    ) -> Result<(), PanelError> {
        let _ = (text_channel, message, view);
        Err(PanelError::Failed("this notifier shows no panel".into()))
    }
}
