//! Caps on yt-dlp lookups: how many run at once across the bot, and how many one member may
//! have running.
//!
//! Each lookup is one yt-dlp process of about 48 MB of RSS and a second of CPU, and nothing
//! else bounded them: one member firing `/play` twenty times started twenty processes. The
//! caps are plain counters with guards that give their slot back on drop, so a lookup that
//! is cancelled (the member's command dropped, `/skip`), times out or fails frees its slot
//! on every path.
//!
//! * **Global** ([`Lookups::global`]): a lookup past the cap waits its turn, for at most
//!   `wait` (the lookup timeout), then fails with [`ResolveError::Busy`]. Taken by the
//!   yt-dlp wrapper itself around every metadata run, so single tracks, playlists, the
//!   entries of a playlist and the lookup before a download all count.
//! * **Per member** ([`Lookups::member`]): never waits. A member at the cap is told at once
//!   to slow down (queueing their extra requests would only hide the flood).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::sources::error::ResolveError;

/// The lookup caps of one bot. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Lookups {
    global: Arc<Semaphore>,
    max_global: usize,
    wait: Duration,
    per_member: usize,
    members: Arc<Mutex<HashMap<u64, usize>>>,
}

/// A member already has `running` lookups going, the most allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberBusy {
    pub running: usize,
}

/// One running lookup of one member; frees the member's slot on drop.
#[derive(Debug)]
pub struct MemberSlot {
    members: Arc<Mutex<HashMap<u64, usize>>>,
    member: u64,
}

/// One of the global slots; freed on drop.
#[derive(Debug)]
pub struct LookupPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Lookups {
    /// At most `max_global` lookups at once (a lookup waits up to `wait` for a slot), and
    /// at most `per_member` for any one member. Both are at least 1.
    pub fn new(max_global: usize, per_member: usize, wait: Duration) -> Self {
        let max_global = max_global.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            global: Arc::new(Semaphore::new(max_global)),
            max_global,
            wait,
            per_member: per_member.max(1),
            members: Arc::default(),
        }
    }

    /// No caps at all: what a wrapper built without a configuration (tests, tools) uses.
    pub fn unbounded() -> Self {
        Self::new(Semaphore::MAX_PERMITS, usize::MAX, Duration::ZERO)
    }

    /// A global slot: at once when one is free, else after waiting at most `wait`;
    /// [`ResolveError::Busy`] when none came free in that time.
    pub async fn global(&self) -> Result<LookupPermit, ResolveError> {
        if let Ok(p) = self.global.clone().try_acquire_owned() {
            return Ok(LookupPermit(p));
        }
        tracing::debug!(max = self.max_global, "all lookup slots taken; waiting");
        match tokio::time::timeout(self.wait, self.global.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(LookupPermit(p)),
            _ => {
                tracing::warn!(
                    max = self.max_global,
                    waited = ?self.wait,
                    "lookup refused: every lookup slot stayed taken (limits.max_lookups)"
                );
                Err(ResolveError::Busy)
            }
        }
    }

    /// A slot for one of `member`'s lookups, or how many they already have running.
    pub fn member(&self, member: u64) -> Result<MemberSlot, MemberBusy> {
        let mut m = self.members.lock().expect("lookup counts");
        let running = m.entry(member).or_insert(0);
        if *running >= self.per_member {
            return Err(MemberBusy { running: *running });
        }
        *running += 1;
        Ok(MemberSlot {
            members: self.members.clone(),
            member,
        })
    }

    /// Global slots in use now.
    pub fn running(&self) -> usize {
        self.max_global - self.global.available_permits()
    }
}

impl Drop for MemberSlot {
    fn drop(&mut self) {
        let mut m = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.member) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.member);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_past_the_cap_is_refused_at_once_and_slots_come_back_on_drop() {
        let l = Lookups::new(8, 2, Duration::from_secs(20));
        let a = l.member(1).unwrap();
        let b = l.member(1).unwrap();
        assert_eq!(l.member(1).unwrap_err(), MemberBusy { running: 2 });
        // Another member is not affected.
        let _c = l.member(2).unwrap();
        drop(a);
        let again = l.member(1).unwrap();
        drop((b, again));
        assert!(l.members.lock().unwrap().get(&1).is_none(), "no entry left");
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_global_cap_a_lookup_waits_its_turn_then_is_busy() {
        let l = Arc::new(Lookups::new(2, 2, Duration::from_secs(20)));
        let a = l.global().await.unwrap();
        let _b = l.global().await.unwrap();
        assert_eq!(l.running(), 2);

        // A third waits, and gets the slot a finished lookup frees.
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.global().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "it waits while both slots are taken");
        drop(a);
        assert_eq!(waiter.await.unwrap(), Ok(()));

        // Nothing frees within the wait: busy, after exactly the wait.
        let _c = l.global().await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(l.global().await.unwrap_err(), ResolveError::Busy);
        assert_eq!(started.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_or_lookup_frees_its_slot() {
        let l = Arc::new(Lookups::new(1, 1, Duration::from_secs(20)));
        // A lookup holding the slot is cancelled (its task aborted): the slot is free again.
        let holder = {
            let l = l.clone();
            tokio::spawn(async move {
                let _p = l.global().await.unwrap();
                std::future::pending::<()>().await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(l.running(), 1);
        holder.abort();
        let _ = holder.await;
        assert_eq!(l.running(), 0);
        let _p = tokio::time::timeout(Duration::from_millis(1), l.global())
            .await
            .expect("the slot is free at once")
            .unwrap();
    }
}
