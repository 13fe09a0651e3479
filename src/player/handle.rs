//! The player's messages, apart from its loop (`guild.rs`): what a caller may ask
//! ([`Request`]), what it gets back, and [`PlayerHandle`], the cheap address that sends them.
//!
//! Every answer is data (ids, titles, counts). How it reads in Discord, `<#channel>`
//! mentions included, is `crate::discord`'s business.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::player::filters::FilterSpec;
use crate::player::persist::SavedQueue;
use crate::player::queue::{Entry, LoopMode, QueueError, Requester};
use crate::player::voice::VoiceError;
use crate::player::votes::Tally;
use crate::resources::{CleanupReason, IdlePolicy};
use crate::sources::Track;

/// Longest a caller waits for the player's answer by default. The player never waits on
/// the network, so it answers in well under this; the bound is there so that a command
/// still answers inside Discord's three-second window if it somehow does not.
pub const ASK_WAIT: Duration = Duration::from_secs(2);

/// Longest a request that joins a voice channel (an enqueue, a restore) or leaves one may
/// take: joining waits on Discord's gateway. Callers defer before they ask.
pub const JOIN_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlayerError {
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Voice(#[from] VoiceError),
    /// Playing in this other voice channel.
    #[error("I'm already playing in another voice channel ({0})")]
    OtherChannel(u64),
    #[error("I'm not in a voice channel")]
    NotConnected,
    #[error("the player is shutting down; try again in a moment")]
    Gone,
    /// The player did not answer within the caller's deadline.
    #[error("the player is busy; try again in a moment")]
    Slow,
    #[error("volume must be between 0 and 200")]
    BadVolume,
    #[error("I'm playing in as many channels as I'm allowed to right now ({0}); try again later")]
    Busy(usize),
    #[error("I'm reconnecting to the voice channel; try again in a moment")]
    Reconnecting,
}

/// What `/queue` and `/nowplaying` show.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub current: Option<Entry>,
    pub position: Option<Duration>,
    /// The current track is still being looked up or opened (it has not started yet).
    pub starting: bool,
    pub upcoming: Vec<Entry>,
    pub loop_mode: LoopMode,
    pub paused: bool,
    pub volume: u16,
    pub voice_channel: Option<u64>,
    /// The filters on (empty: Opus passthrough).
    pub filters: FilterSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// Position of the first added track: 0 = playing now.
    pub position: usize,
    pub added: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub skipped: usize,
    pub skipped_title: String,
    pub next: Option<String>,
}

/// A skip vote, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voted {
    pub tally: Tally,
    /// Set when this vote passed and the track was skipped.
    pub skipped: Option<Skipped>,
}

/// A request to the player task; each carries its own reply channel.
pub enum Request {
    Enqueue {
        tracks: Vec<Arc<Track>>,
        requester: Requester,
        voice_channel: u64,
        text_channel: u64,
        front: bool,
        reply: oneshot::Sender<Result<Enqueued, PlayerError>>,
    },
    /// Skips `n` tracks counting the current one, which must still be entry `current`
    /// (the one the caller saw, voted on or was allowed to skip).
    Skip {
        n: usize,
        current: u64,
        reply: oneshot::Sender<Result<Skipped, PlayerError>>,
    },
    /// `voter` votes to skip entry `current`; only votes of `listeners` (the humans in the
    /// channel now) count, and half of them skip it.
    VoteSkip {
        current: u64,
        voter: u64,
        listeners: Vec<u64>,
        reply: oneshot::Sender<Result<Voted, PlayerError>>,
    },
    Back {
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
    Pause {
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
    Resume {
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
    /// Clears the queue and stops playback; stays in the channel.
    Stop {
        reply: oneshot::Sender<Result<usize, PlayerError>>,
    },
    /// Clears everything and disconnects; the task ends.
    Leave {
        reason: CleanupReason,
        reply: oneshot::Sender<Result<(), PlayerError>>,
    },
    /// Leaves for `reason` unless `only_if_idle` and something is playing; answers
    /// whether it left.
    Cleanup {
        reason: CleanupReason,
        only_if_idle: bool,
        reply: oneshot::Sender<bool>,
    },
    /// The people in `channel` now, by user id (sent by the gateway edge on voice
    /// changes).
    Presence {
        channel: u64,
        listeners: Vec<u64>,
    },
    /// The bot's own voice state changed: moved to `Some(channel)` or disconnected.
    BotVoiceState {
        channel: Option<u64>,
    },
    /// Brings back a queue saved before a restart: joins its channel and resumes.
    Restore {
        saved: SavedQueue,
        reply: oneshot::Sender<Result<(), PlayerError>>,
    },
    /// The guild's settings changed (`/settings`).
    Configure {
        settings: PlayerSettings,
    },
    /// Removes upcoming `from..=to`, which must still hold the entries `ids`.
    Remove {
        from: usize,
        to: usize,
        ids: Vec<u64>,
        reply: oneshot::Sender<Result<Vec<Entry>, PlayerError>>,
    },
    /// Moves upcoming `from` (still entry `id`) to `to`.
    Move {
        from: usize,
        to: usize,
        id: u64,
        reply: oneshot::Sender<Result<Entry, PlayerError>>,
    },
    Shuffle {
        reply: oneshot::Sender<Result<usize, PlayerError>>,
    },
    Clear {
        reply: oneshot::Sender<Result<usize, PlayerError>>,
    },
    SetLoop {
        mode: LoopMode,
        reply: oneshot::Sender<Result<LoopMode, PlayerError>>,
    },
    SetVolume {
        percent: u16,
        reply: oneshot::Sender<Result<u16, PlayerError>>,
    },
    /// Answers once the seek landed (or failed): it waits on the media, so ask it with a
    /// longer deadline, after deferring.
    Seek {
        to: Duration,
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    /// Replaces the guild's filters (checked by the caller with `FilterSpec::validate`);
    /// answers the ones that were on.
    SetFilters {
        spec: FilterSpec,
        reply: oneshot::Sender<Result<FilterSpec, PlayerError>>,
    },
}

/// Limits and defaults a player starts with.
#[derive(Debug, Clone)]
pub struct PlayerSettings {
    pub volume: u16,
    pub max_queue: usize,
    pub idle: IdlePolicy,
    /// Most voice calls across all guilds.
    pub max_calls: usize,
    /// How often a playing track's position is saved between queue changes, so a crash or
    /// a SIGKILL resumes near where it was instead of from the track's start.
    pub save_position_every: Option<Duration>,
    /// Show the now-playing panel (instead of a "Now playing" notice per track).
    pub panel: bool,
    /// How often the panel's progress bar moves while a track plays.
    pub panel_every: Duration,
    /// When the queue runs out, queue a related track (`/autoplay`).
    pub autoplay: bool,
    /// The server's longest track (`/settings max_track_duration`), which autoplay's
    /// picks obey as `/play` does; `None`: no limit.
    pub max_track: Option<Duration>,
}

/// The cheap, clonable address of a guild's player task.
#[derive(Clone, Debug)]
pub struct PlayerHandle {
    tx: mpsc::Sender<Request>,
    /// `/play`s still looking up what to queue here (shared with the player).
    resolving: Arc<AtomicUsize>,
}

/// Held by a `/play` while it looks its query up: the player does not leave for being
/// idle meanwhile, so a slow lookup does not end in a leave and an immediate re-join.
/// Dropping it (queued, failed or cancelled) lets the idle clock run again.
#[must_use]
pub struct Resolving(Arc<AtomicUsize>);

impl Drop for Resolving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PlayerHandle {
    pub(super) fn new(tx: mpsc::Sender<Request>, resolving: Arc<AtomicUsize>) -> Self {
        Self { tx, resolving }
    }

    /// Marks a `/play` for this guild as under way until the guard is dropped.
    pub fn resolving(&self) -> Resolving {
        self.resolving.fetch_add(1, Ordering::Relaxed);
        Resolving(self.resolving.clone())
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends a request that carries no reply; a gone player is fine.
    pub async fn send(&self, req: Request) {
        let _ = self.tx.send(req).await;
    }

    /// Sends a request and waits for its answer, at most [`ASK_WAIT`]: `Gone` if the task
    /// has ended, `Slow` past the deadline.
    pub async fn ask<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Request,
    ) -> Result<R, PlayerError> {
        self.ask_within(ASK_WAIT, make).await
    }

    /// [`ask`](Self::ask) with another deadline. A request that timed out may still be
    /// carried out afterwards; only its answer is lost.
    pub async fn ask_within<R>(
        &self,
        wait: Duration,
        make: impl FnOnce(oneshot::Sender<R>) -> Request,
    ) -> Result<R, PlayerError> {
        let (reply, rx) = oneshot::channel();
        let exchange = async {
            self.tx
                .send(make(reply))
                .await
                .map_err(|_| PlayerError::Gone)?;
            rx.await.map_err(|_| PlayerError::Gone)
        };
        tokio::time::timeout(wait, exchange)
            .await
            .unwrap_or(Err(PlayerError::Slow))
    }

    /// Like `ask` for requests whose answer is itself a `Result`.
    pub async fn call<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<R, PlayerError>>) -> Request,
    ) -> Result<R, PlayerError> {
        self.ask(make).await?
    }

    /// Like `ask_within` for requests whose answer is itself a `Result`.
    pub async fn call_within<R>(
        &self,
        wait: Duration,
        make: impl FnOnce(oneshot::Sender<Result<R, PlayerError>>) -> Request,
    ) -> Result<R, PlayerError> {
        self.ask_within(wait, make).await?
    }
}
