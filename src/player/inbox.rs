//! What the player's own tasks (opening a track, waiting for a seek) report back to its
//! loop, and the track being opened meanwhile. Apart from `guild.rs` so that the loop and
//! the playback code (`playback.rs`) share these without importing each other.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::DropGuard;

use super::autoplay::Pick;
use super::handle::PlayerError;
use super::voice::{Ready, SeekOutcome, VoiceError};

/// What the player's own tasks report back.
pub(super) enum Internal {
    /// The track started with `token` was opened (or could not be).
    Opened {
        token: u64,
        result: Result<Ready, VoiceError>,
    },
    /// A seek of the track `token` ended; `before` is where it was, to go back on failure.
    Seeked {
        token: u64,
        to: Duration,
        before: Option<Duration>,
        outcome: SeekOutcome,
        reply: oneshot::Sender<Result<String, PlayerError>>,
    },
    /// Autoplay's lookup for queue entry `entry` (the last queued track) ended.
    Picked {
        entry: u64,
        result: Result<Pick, String>,
    },
}

/// The current entry is being opened; it plays when [`Internal::Opened`] with this token
/// arrives.
pub(super) struct Starting {
    pub token: u64,
    pub start_at: Option<Duration>,
    /// Post "Now playing" once it plays (not for a quiet re-open after a seek).
    pub announce: bool,
    /// When the track's turn came: time to first audio runs from here.
    pub since: tokio::time::Instant,
    /// Dropping it (the track was replaced, the player left) stops the opening task.
    pub _cancel: DropGuard,
}
