//! What the player does when its voice connection drops, as a pure state machine that
//! `guild.rs` drives: wait a grace period (songbird resumes a 4015 itself, and a move
//! arrives as a new voice state), then re-join the same channel with exponential backoff,
//! or give up and clean up so a later `/play` starts fresh. A 4014 (kicked, channel gone)
//! is never undone by a re-join. A re-join leaves first (a new voice session needs new
//! credentials from Discord) and joins only once Discord has echoed that leave: songbird
//! reads a leave's echo that arrives after the new join as a disconnect, and drops the join.

use std::time::Duration;

use tokio::time::Instant;

use crate::resources::CleanupReason;

/// How often a lost voice connection is re-joined before giving up, and the first wait.
const REJOIN_ATTEMPTS: u32 = 3;
const REJOIN_BASE: Duration = Duration::from_secs(1);
/// How long a dropped connection may take to come back on its own before the player acts.
const RECONNECT_GRACE: Duration = Duration::from_secs(2);
/// How long a re-join waits for Discord's echo of its leave before joining anyway.
const LEAVE_SETTLE: Duration = Duration::from_secs(1);

/// A dropped voice connection the player is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// When to act next.
    pub at: Instant,
    attempts: u32,
    /// Discord closed with 4014 (kicked, channel gone, or moved): unless a move arrives
    /// within the grace period, the call is over; re-joining would undo a moderator.
    kicked: bool,
    /// The dead session was left; the join waits for Discord's echo of that leave.
    left: bool,
    /// Where the track was when the session was left (resumed there after the join).
    position: Option<Duration>,
}

/// What to do once a [`Reconnect`] is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Moved to another channel meanwhile: songbird connects there itself; stop waiting.
    Moved,
    /// Leave and clean up for this reason.
    Leave(CleanupReason),
    /// Drop the dead session (then [`Reconnect::left`]), to join the channel again
    /// (attempt number, from 1).
    Rejoin(u32),
    /// The leave went through: join now, and play on from `position`.
    Join {
        attempt: u32,
        position: Option<Duration>,
    },
}

impl Reconnect {
    /// The connection dropped now, with Discord's close `code` if it sent one.
    pub fn after_drop(code: Option<u16>, now: Instant) -> Self {
        Self {
            at: now + RECONNECT_GRACE,
            attempts: 0,
            kicked: code == Some(4014),
            left: false,
            position: None,
        }
    }

    /// The dead session was left (the track at `position`): join once Discord has echoed
    /// the leave ([`leave_seen`](Self::leave_seen)), or after [`LEAVE_SETTLE`] at the latest.
    pub fn left(&self, position: Option<Duration>, now: Instant) -> Self {
        Self {
            at: now + LEAVE_SETTLE,
            left: true,
            position,
            ..*self
        }
    }

    /// Whether a voice state without a channel is the echo of this re-join's own leave.
    pub fn awaiting_leave(&self) -> bool {
        self.left
    }

    /// Discord echoed the leave: the join is due now.
    pub fn leave_seen(&self, now: Instant) -> Self {
        Self { at: now, ..*self }
    }

    /// Whether [`next`](Self::next) needs the voice layer's view of its channel: only
    /// before the first attempt (after one, we disconnected it ourselves).
    pub fn needs_view(&self) -> bool {
        self.attempts == 0 && !self.left
    }

    /// The step for a player in `channel`, given the channel the voice layer says it is in
    /// (`seen`; pass `Some(channel)` when [`needs_view`](Self::needs_view) is false).
    pub fn next(&self, channel: u64, seen: Option<u64>) -> Step {
        if self.left {
            return Step::Join {
                attempt: self.attempts + 1,
                position: self.position,
            };
        }
        match seen {
            // Disconnected by someone (kick, channel gone): nothing to re-join.
            None => Step::Leave(CleanupReason::BotDisconnected),
            Some(c) if c != channel => Step::Moved,
            // 4014 without a move: Discord ended this session (kicked, channel gone).
            Some(_) if self.kicked => Step::Leave(CleanupReason::BotDisconnected),
            Some(_) if self.attempts >= REJOIN_ATTEMPTS => Step::Leave(CleanupReason::Error),
            Some(_) => Step::Rejoin(self.attempts + 1),
        }
    }

    /// After a failed re-join: wait twice as long as the last time.
    pub fn retry(&self, now: Instant) -> Self {
        Self {
            at: now + REJOIN_BASE * 2u32.pow(self.attempts),
            attempts: self.attempts + 1,
            kicked: false,
            left: false,
            position: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_waits_then_rejoins_with_backoff_and_gives_up() {
        let t0 = Instant::now();
        let r = Reconnect::after_drop(Some(4006), t0);
        assert_eq!(r.at, t0 + RECONNECT_GRACE);
        assert!(r.needs_view());
        assert_eq!(r.next(10, Some(10)), Step::Rejoin(1));
        // Left: the join waits for the leave's echo, at most LEAVE_SETTLE.
        let pos = Some(Duration::from_secs(5));
        let l = r.left(pos, t0);
        assert!(l.awaiting_leave() && !l.needs_view());
        assert_eq!(l.at, t0 + LEAVE_SETTLE);
        assert_eq!(l.leave_seen(t0).at, t0);
        let join = Step::Join {
            attempt: 1,
            position: pos,
        };
        assert_eq!(l.next(10, None), join);
        let r1 = l.retry(t0);
        assert!(!r1.needs_view());
        assert_eq!(r1.at, t0 + Duration::from_secs(1));
        let r2 = r1.retry(t0);
        assert_eq!(r2.at, t0 + Duration::from_secs(2));
        let r3 = r2.retry(t0);
        assert_eq!(r3.at, t0 + Duration::from_secs(4));
        assert_eq!(r3.next(10, Some(10)), Step::Leave(CleanupReason::Error));
    }

    #[test]
    fn a_kick_a_disconnect_and_a_move_are_not_undone() {
        let t0 = Instant::now();
        let kicked = Reconnect::after_drop(Some(4014), t0);
        assert_eq!(
            kicked.next(10, Some(10)),
            Step::Leave(CleanupReason::BotDisconnected)
        );
        assert_eq!(kicked.next(10, Some(11)), Step::Moved);
        let dropped = Reconnect::after_drop(None, t0);
        assert_eq!(
            dropped.next(10, None),
            Step::Leave(CleanupReason::BotDisconnected)
        );
    }
}
