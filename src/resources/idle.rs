//! When a call should be left: nothing playing for the idle timeout, paused for the pause
//! timeout, or no human in the channel for the alone timeout. Pure: the player feeds it
//! the moments things changed and sleeps until the deadline it returns.

use std::time::Duration;

use tokio::time::Instant;

use super::registry::CleanupReason;

/// Timeouts; `None` disables one (24/7 mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdlePolicy {
    pub idle: Option<Duration>,
    pub alone: Option<Duration>,
    pub paused: Option<Duration>,
}

impl IdlePolicy {
    /// A zero duration means "never".
    pub fn from_config(idle: Duration, alone: Duration, paused: Duration) -> Self {
        let nz = |d: Duration| (!d.is_zero()).then_some(d);
        Self {
            idle: nz(idle),
            alone: nz(alone),
            paused: nz(paused),
        }
    }
}

/// Since when each leave condition has held; `None` when it does not hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Connected with nothing playing.
    pub idle_since: Option<Instant>,
    /// The current track is paused.
    pub paused_since: Option<Instant>,
    /// No human is in the bot's channel.
    pub alone_since: Option<Instant>,
}

impl IdlePolicy {
    /// The earliest moment a leave condition expires, and which one.
    pub fn next_deadline(&self, a: &Activity) -> Option<(Instant, CleanupReason)> {
        let candidates = [
            (a.alone_since, self.alone, CleanupReason::Alone),
            (a.idle_since, self.idle, CleanupReason::Idle),
            (a.paused_since, self.paused, CleanupReason::Idle),
        ];
        candidates
            .into_iter()
            .filter_map(|(since, limit, why)| Some((since? + limit?, why)))
            .min_by_key(|(at, _)| *at)
    }

    /// The reason to leave now, if one has expired.
    pub fn due(&self, a: &Activity, now: Instant) -> Option<CleanupReason> {
        self.next_deadline(a)
            .filter(|(at, _)| *at <= now)
            .map(|(_, why)| why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> IdlePolicy {
        IdlePolicy::from_config(
            Duration::from_secs(300),
            Duration::from_secs(60),
            Duration::from_secs(600),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn idle_expires_after_its_timeout() {
        let p = policy();
        let t0 = Instant::now();
        let a = Activity {
            idle_since: Some(t0),
            ..Default::default()
        };
        assert_eq!(p.due(&a, Instant::now()), None);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(p.due(&a, Instant::now()), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(p.due(&a, Instant::now()), Some(CleanupReason::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn alone_wins_when_earlier_and_clears_when_someone_returns() {
        let p = policy();
        let t0 = Instant::now();
        let mut a = Activity {
            idle_since: Some(t0),
            alone_since: Some(t0),
            ..Default::default()
        };
        assert_eq!(
            p.next_deadline(&a),
            Some((t0 + Duration::from_secs(60), CleanupReason::Alone))
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        a.alone_since = None; // someone came back
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(p.due(&a, Instant::now()), None);
        assert_eq!(p.next_deadline(&a).unwrap().1, CleanupReason::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn paused_counts_as_idle_after_its_own_timeout() {
        let p = policy();
        let a = Activity {
            paused_since: Some(Instant::now()),
            ..Default::default()
        };
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(p.due(&a, Instant::now()), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(p.due(&a, Instant::now()), Some(CleanupReason::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_disables_a_timeout() {
        let p = IdlePolicy::from_config(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let t0 = Instant::now();
        let a = Activity {
            idle_since: Some(t0),
            alone_since: Some(t0),
            paused_since: Some(t0),
        };
        tokio::time::advance(Duration::from_secs(86_400 * 30)).await;
        assert_eq!(p.next_deadline(&a), None);
        assert_eq!(p.due(&a, Instant::now()), None);
    }
}
