//! What of a player survives a restart: its queue, where it played, how. The player hands
//! its state to a [`QueueStore`] after every change; the store (SQLite at the edge) owns
//! the writing, so a slow or failed write never holds up the music.

use std::time::Duration;

use crate::player::filters::FilterSpec;
use crate::player::queue::{LoopMode, Queue, Requester};
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
    /// The filters that were on.
    pub filters: FilterSpec,
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

/// What of a player's state is saved, borrowed from it: enough to tell whether anything
/// worth saving changed ([`fingerprint`](Self::fingerprint)) and to build the saved state.
pub struct Shape<'a> {
    pub queue: &'a Queue,
    pub voice_channel: Option<u64>,
    pub text_channel: Option<u64>,
    pub paused: bool,
    pub volume: u16,
    pub filters: &'a FilterSpec,
}

impl Shape<'_> {
    /// The channels a saved queue names; `None` when there is nothing worth resuming.
    fn channels(&self) -> Option<(u64, u64)> {
        let channels = (self.voice_channel?, self.text_channel?);
        (!self.queue.is_idle()).then_some(channels)
    }

    /// A hash of what [`state`](Self::state) holds apart from the position, computed
    /// without copying the tracks (the player asks after every request).
    pub fn fingerprint(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let (voice_channel, text_channel) = self.channels()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            voice_channel,
            text_channel,
            self.queue.loop_mode().label(),
            self.paused,
            self.volume,
            serde_json::to_string(self.filters).unwrap_or_default(),
        )
            .hash(&mut h);
        for e in self
            .queue
            .current()
            .into_iter()
            .chain(self.queue.upcoming())
        {
            e.id.hash(&mut h);
        }
        Some(h.finish())
    }

    /// The queue as the store keeps it; `None` when there is nothing worth resuming.
    pub fn state(&self, position: Option<Duration>) -> Option<SavedQueue> {
        let (voice_channel, text_channel) = self.channels()?;
        Some(SavedQueue {
            voice_channel,
            text_channel,
            loop_mode: self.queue.loop_mode(),
            paused: self.paused,
            volume: self.volume,
            position: position.unwrap_or_default(),
            playing: self.queue.current().is_some(),
            tracks: self
                .queue
                .current()
                .into_iter()
                .chain(self.queue.upcoming())
                .map(|e| ((*e.track).clone(), e.requester.clone()))
                .collect(),
            filters: self.filters.clone(),
        })
    }
}
