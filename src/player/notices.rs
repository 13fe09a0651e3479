//! Posting the player's notices ("Now playing", "Couldn't play", "Left") off its loop.
//!
//! Posting is a Discord request, and a slow or rate-limited Discord must not hold up the
//! music or the commands queued behind it. The player hands each notice to a task of its
//! own that posts them in order, each bounded by [`NOTICE_WAIT`]; the task ends once the
//! player is gone and what it was handed is posted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::voice::{Notice, Notifier};

/// Longest one notice may take to post before it is given up.
pub const NOTICE_WAIT: Duration = Duration::from_secs(5);

/// Where the player drops its notices; dropping it lets the posting task finish.
pub struct Notices {
    tx: mpsc::UnboundedSender<(u64, Notice)>,
}

impl Notices {
    /// Starts the posting task of `guild`'s player on `tasks`.
    pub fn start(guild: u64, notifier: Arc<dyn Notifier>, tasks: &TaskTracker) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Notice)>();
        tasks.spawn(async move {
            while let Some((channel, notice)) = rx.recv().await {
                let post = notifier.notify(channel, notice);
                if tokio::time::timeout(NOTICE_WAIT, post).await.is_err() {
                    tracing::warn!(guild, channel, "gave up posting a notice (too slow)");
                }
            }
        });
        Self { tx }
    }

    /// Queues `notice` for `channel`; never waits.
    pub fn post(&self, channel: u64, notice: Notice) {
        let _ = self.tx.send((channel, notice));
    }
}
