//! What the player does when its voice connection drops: wait a grace period (songbird
//! resumes a 4015 itself, and a move arrives as a new voice state), then re-join the same
//! channel with exponential backoff, or give up and clean up so a later `/play` starts
//! fresh. A 4014 (kicked, channel gone) is never undone by a re-join.

use std::time::Duration;

use tokio::time::Instant;

use super::guild::{Flow, GuildPlayer};
use crate::resources::CleanupReason;

/// How often a lost voice connection is re-joined before giving up, and the first wait.
const REJOIN_ATTEMPTS: u32 = 3;
const REJOIN_BASE: Duration = Duration::from_secs(1);
/// How long a dropped connection may take to come back on its own before the player acts.
const RECONNECT_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub(super) struct Reconnect {
    pub at: Instant,
    attempts: u32,
    /// Discord closed with 4014 (kicked, channel gone, or moved): unless a move arrives
    /// within the grace period, the call is over; re-joining would undo a moderator.
    kicked: bool,
}

impl GuildPlayer {
    /// The driver reports the connection is up again (first connect or a resume).
    pub(super) fn on_connected(&mut self) {
        if self.reconnect.take().is_some() {
            tracing::info!(guild = self.guild, "voice connection restored");
        }
    }

    /// The driver reports the connection dropped, with Discord's close `code` if any.
    pub(super) fn on_disconnected(&mut self, code: Option<u16>, reason: String) {
        if self.voice_channel.is_none() {
            return; // our own leave
        }
        tracing::warn!(
            guild = self.guild,
            ?code,
            reason,
            "voice connection dropped"
        );
        self.registry.record_error("voice disconnect");
        if self.reconnect.is_none() {
            self.reconnect = Some(Reconnect {
                at: Instant::now() + RECONNECT_GRACE,
                attempts: 0,
                kicked: code == Some(4014),
            });
        }
    }

    /// The connection did not come back by itself: re-join the same channel with
    /// exponential backoff, or give up and clean up so a later `/play` starts fresh.
    pub(super) async fn try_rejoin(&mut self, r: Reconnect) -> Flow {
        let Some(channel) = self.voice_channel else {
            self.reconnect = None;
            return Flow::Continue;
        };
        // After a failed attempt we are disconnected by our own hand; before the first,
        // the voice layer's view says what happened meanwhile.
        let seen = if r.attempts == 0 {
            self.voice.current_channel().await
        } else {
            Some(channel)
        };
        match seen {
            // Disconnected by someone (kick, channel gone): nothing to re-join.
            None => return Flow::Leave(CleanupReason::BotDisconnected),
            // Moved: a new voice state will follow; songbird connects there itself.
            Some(c) if c != channel => {
                self.reconnect = None;
                return Flow::Continue;
            }
            // 4014 without a move: Discord ended this session (kicked, channel gone).
            Some(_) if r.kicked => return Flow::Leave(CleanupReason::BotDisconnected),
            Some(_) => {}
        }
        if r.attempts >= REJOIN_ATTEMPTS {
            tracing::warn!(guild = self.guild, "voice connection lost for good");
            return Flow::Leave(CleanupReason::Error);
        }
        let position = self.voice.position().await;
        tracing::info!(
            guild = self.guild,
            attempt = r.attempts + 1,
            "re-joining voice"
        );
        // songbird treats a join of the channel it thinks it is in as done: drop the dead
        // session first so the join opens a new one.
        self.voice.leave().await;
        self.handed = false;
        match self.voice.join(channel).await {
            Ok(()) => {
                self.reconnect = None;
                if self.queue.current().is_some() {
                    let paused = self.paused;
                    self.start_current_at(position, true).await;
                    self.paused = paused;
                }
            }
            Err(e) => {
                tracing::warn!(guild = self.guild, error = %e, "re-join failed");
                self.reconnect = Some(Reconnect {
                    at: Instant::now() + REJOIN_BASE * 2u32.pow(r.attempts),
                    attempts: r.attempts + 1,
                    kicked: false,
                });
            }
        }
        Flow::Continue
    }
}
