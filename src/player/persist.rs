//! What of a player survives a restart: its queue, where it played, how. The player hands
//! its state to a [`QueueStore`] after every change; the store (SQLite at the edge) owns
//! the writing, so a slow or failed write never holds up the music.

use std::time::Duration;

use crate::player::queue::{LoopMode, Requester};
use crate::sources::Track;

#[derive(Debug, Clone, PartialEq)]
pub struct SavedQueue {
    pub voice_channel: u64,
    pub text_channel: u64,
    pub loop_mode: LoopMode,
    pub paused: bool,
    pub volume: u16,
    /// Position in the first track when saved (0 when it had just started).
    pub position: Duration,
    /// True when the first track was playing (a restart resumes it); false when the queue
    /// only waited.
    pub playing: bool,
    /// The current track first, then the upcoming ones in order.
    pub tracks: Vec<(Track, Requester)>,
}

/// Where a player's state goes. `save` never blocks: implementations queue the write.
pub trait QueueStore: Send + Sync {
    /// `None` forgets the guild's queue (it left for good).
    fn save(&self, guild: u64, state: Option<SavedQueue>);

    /// How far the playing track got since the last `save`: only the position changes, so
    /// a store can write it cheaply. A restart after a crash resumes from the latest one.
    fn checkpoint(&self, guild: u64, position: Duration);
}

/// A store that keeps nothing (tests, or persistence turned off).
pub struct NoStore;

impl QueueStore for NoStore {
    fn save(&self, _: u64, _: Option<SavedQueue>) {}
    fn checkpoint(&self, _: u64, _: Duration) {}
}
