//! One registry of what the bot holds. Everything is registered by taking a guard and
//! released when the guard drops, so every exit path (return, error, panic, cancellation)
//! releases it without anyone remembering to.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// The kinds of thing the bot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A voice connection.
    Call,
    /// A guild's player task and its queue.
    Player,
    /// A background task (sweeper, updater, downloads, live `/resources` views).
    Task,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Call, Kind::Player, Kind::Task];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Call => "calls",
            Kind::Player => "players",
            Kind::Task => "tasks",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why something was cleaned up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CleanupReason {
    /// Nothing played for the idle timeout (or stayed paused past the pause timeout).
    Idle,
    /// No human listened for the alone timeout.
    Alone,
    /// Someone disconnected the bot, or Discord closed the voice session for good.
    BotDisconnected,
    ChannelDeleted,
    GuildRemoved,
    Shutdown,
    /// The guild's shard moved to another node of the cluster, which resumes the queue.
    HandOff,
    /// An administrator's `/cleanup`.
    Admin,
    /// The voice connection failed and could not be restored.
    Error,
    /// A user's `/leave`.
    User,
    /// The sweeper found something nobody owned.
    Leak,
}

impl CleanupReason {
    pub fn label(self) -> &'static str {
        match self {
            CleanupReason::Idle => "idle",
            CleanupReason::Alone => "alone",
            CleanupReason::BotDisconnected => "bot disconnected",
            CleanupReason::ChannelDeleted => "channel deleted",
            CleanupReason::GuildRemoved => "guild removed",
            CleanupReason::Shutdown => "shutdown",
            CleanupReason::HandOff => "handed off",
            CleanupReason::Admin => "admin",
            CleanupReason::Error => "error",
            CleanupReason::User => "user",
            CleanupReason::Leak => "leak",
        }
    }

    /// Whether the queue is saved where it was, for this node's next start or for the
    /// node that takes the guild over, rather than forgotten.
    pub fn keeps_queue(self) -> bool {
        matches!(self, CleanupReason::Shutdown | CleanupReason::HandOff)
    }

    /// Forced by a person rather than decided by the bot.
    pub fn is_forced(self) -> bool {
        matches!(self, CleanupReason::Admin | CleanupReason::User)
    }
}

#[derive(Default)]
struct KindCounters {
    acquired: AtomicU64,
    released: AtomicU64,
    current: AtomicU64,
    peak: AtomicU64,
}

/// A copy of one kind's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    pub acquired: u64,
    pub released: u64,
    pub current: u64,
    pub peak: u64,
}

/// What the registry knows about a voice call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    pub guild: u64,
    pub channel: u64,
    pub joined_at: SystemTime,
    pub last_activity: Instant,
}

#[derive(Default)]
pub struct Registry {
    kinds: [KindCounters; 3],
    calls: Mutex<HashMap<u64, CallInfo>>,
    cleanups: Mutex<BTreeMap<CleanupReason, u64>>,
    cleanup_failures: AtomicU64,
    leaks: Mutex<BTreeMap<&'static str, u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Histograms for `/metrics`; `None` (nothing recorded) when its listener is off.
    timings: Option<super::timings::Timings>,
}

/// Holds one unit of a kind; releases it on drop.
#[must_use = "the resource is released when the guard drops"]
pub struct Guard {
    registry: Arc<Registry>,
    kind: Kind,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guard({:?})", self.kind)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.registry.release(self.kind);
    }
}

/// Holds a registered voice call; unregisters it on drop.
#[must_use = "the call is unregistered when the guard drops"]
pub struct CallGuard {
    guild: u64,
    _unit: Guard,
}

impl std::fmt::Debug for CallGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallGuard({})", self.guild)
    }
}

impl CallGuard {
    pub fn guild(&self) -> u64 {
        self.guild
    }

    /// Playback happened: resets the call's idle clock.
    pub fn touch(&self) {
        let mut calls = self._unit.registry.calls.lock().expect("calls lock");
        if let Some(c) = calls.get_mut(&self.guild) {
            c.last_activity = Instant::now();
        }
    }

    /// The call moved to another channel.
    pub fn set_channel(&self, channel: u64) {
        let mut calls = self._unit.registry.calls.lock().expect("calls lock");
        if let Some(c) = calls.get_mut(&self.guild) {
            c.channel = channel;
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut calls = self._unit.registry.calls.lock().expect("calls lock");
        calls.remove(&self.guild);
    }
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A registry that also keeps the [`Timings`](super::timings::Timings) histograms.
    pub fn with_timings() -> Arc<Self> {
        Arc::new(Self {
            timings: Some(Default::default()),
            ..Self::default()
        })
    }

    /// The histograms to record into, when `/metrics` is served.
    pub fn timings(&self) -> Option<&super::timings::Timings> {
        self.timings.as_ref()
    }

    pub fn acquire(self: &Arc<Self>, kind: Kind) -> Guard {
        let c = &self.kinds[kind.index()];
        c.acquired.fetch_add(1, Ordering::SeqCst);
        let now = c.current.fetch_add(1, Ordering::SeqCst) + 1;
        c.peak.fetch_max(now, Ordering::SeqCst);
        Guard {
            registry: self.clone(),
            kind,
        }
    }

    fn release(&self, kind: Kind) {
        let c = &self.kinds[kind.index()];
        c.released.fetch_add(1, Ordering::SeqCst);
        c.current.fetch_sub(1, Ordering::SeqCst);
    }

    /// Registers a voice call unless `max` calls are already registered: checked and
    /// taken under one lock, so two guilds cannot both take the last slot.
    pub fn try_call(self: &Arc<Self>, guild: u64, channel: u64, max: usize) -> Option<CallGuard> {
        let mut calls = self.calls.lock().expect("calls lock");
        if calls.len() >= max && !calls.contains_key(&guild) {
            return None;
        }
        Some(self.insert_call(&mut calls, guild, channel))
    }

    /// Registers a voice call of `guild` in `channel`.
    pub fn call(self: &Arc<Self>, guild: u64, channel: u64) -> CallGuard {
        let mut calls = self.calls.lock().expect("calls lock");
        self.insert_call(&mut calls, guild, channel)
    }

    fn insert_call(
        self: &Arc<Self>,
        calls: &mut HashMap<u64, CallInfo>,
        guild: u64,
        channel: u64,
    ) -> CallGuard {
        let unit = self.acquire(Kind::Call);
        let info = CallInfo {
            guild,
            channel,
            joined_at: SystemTime::now(),
            last_activity: Instant::now(),
        };
        if calls.insert(guild, info).is_some() {
            // Two guards for one guild would make the second's drop forget the first.
            tracing::warn!(guild, "a call was registered twice");
            *self
                .leaks
                .lock()
                .expect("leaks lock")
                .entry("call registered twice")
                .or_default() += 1;
        }
        CallGuard { guild, _unit: unit }
    }

    pub fn calls(&self) -> Vec<CallInfo> {
        let mut v: Vec<_> = self
            .calls
            .lock()
            .expect("calls lock")
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|c| c.guild);
        v
    }

    pub fn has_call(&self, guild: u64) -> bool {
        self.calls.lock().expect("calls lock").contains_key(&guild)
    }

    pub fn stats(&self, kind: Kind) -> KindStats {
        let c = &self.kinds[kind.index()];
        KindStats {
            acquired: c.acquired.load(Ordering::SeqCst),
            released: c.released.load(Ordering::SeqCst),
            current: c.current.load(Ordering::SeqCst),
            peak: c.peak.load(Ordering::SeqCst),
        }
    }

    pub fn record_cleanup(&self, reason: CleanupReason) {
        tracing::info!(reason = reason.label(), "cleanup");
        *self
            .cleanups
            .lock()
            .expect("cleanups lock")
            .entry(reason)
            .or_default() += 1;
    }

    pub fn record_cleanup_failure(&self) {
        self.cleanup_failures.fetch_add(1, Ordering::SeqCst);
    }

    pub fn record_leak(&self, what: &'static str) {
        *self
            .leaks
            .lock()
            .expect("leaks lock")
            .entry(what)
            .or_default() += 1;
    }

    pub fn record_error(&self, class: &'static str) {
        *self
            .errors
            .lock()
            .expect("errors lock")
            .entry(class)
            .or_default() += 1;
    }

    pub fn cleanups(&self) -> Cleanups {
        let by_reason = self.cleanups.lock().expect("cleanups lock").clone();
        let total = by_reason.values().sum();
        let forced = by_reason
            .iter()
            .filter(|(r, _)| r.is_forced())
            .map(|(_, n)| n)
            .sum();
        Cleanups {
            total,
            automatic: total - forced,
            forced,
            failed: self.cleanup_failures.load(Ordering::SeqCst),
            by_reason,
        }
    }

    pub fn leaks(&self) -> BTreeMap<&'static str, u64> {
        self.leaks.lock().expect("leaks lock").clone()
    }

    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        self.errors.lock().expect("errors lock").clone()
    }
}

/// Cleanup counters: total = automatic + forced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleanups {
    pub total: u64,
    pub automatic: u64,
    pub forced: u64,
    pub failed: u64,
    pub by_reason: BTreeMap<CleanupReason, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_and_release_on_every_path() {
        let r = Registry::new();
        let a = r.acquire(Kind::Task);
        let b = r.acquire(Kind::Task);
        assert_eq!(r.stats(Kind::Task).current, 2);
        drop(a);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _c = r.acquire(Kind::Task);
            panic!("boom");
        }));
        assert!(result.is_err());
        drop(b);
        assert_eq!(
            r.stats(Kind::Task),
            KindStats {
                acquired: 3,
                released: 3,
                current: 0,
                peak: 2
            }
        );
    }

    #[test]
    fn calls_are_listed_touched_and_forgotten() {
        let r = Registry::new();
        let g = r.call(1, 10);
        let before = r.calls()[0].last_activity;
        g.set_channel(11);
        g.touch();
        let c = &r.calls()[0];
        assert_eq!((c.guild, c.channel), (1, 11));
        assert!(c.last_activity >= before);
        assert!(r.has_call(1));
        drop(g);
        assert!(r.calls().is_empty());
        assert_eq!(r.stats(Kind::Call).current, 0);
        assert_eq!(r.stats(Kind::Call).released, 1);
    }

    #[test]
    fn the_call_limit_is_never_exceeded() {
        let r = Registry::new();
        let a = r.try_call(1, 10, 2).unwrap();
        let _b = r.try_call(2, 20, 2).unwrap();
        assert!(r.try_call(3, 30, 2).is_none());
        assert_eq!(r.stats(Kind::Call).current, 2);
        drop(a);
        assert!(r.try_call(3, 30, 2).is_some());
        // racing threads never end above the limit
        let r = Registry::new();
        let held: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|g| {
                    let r = r.clone();
                    s.spawn(move || r.try_call(g, g, 3))
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.len(), 3);
    }

    #[test]
    fn cleanups_split_automatic_and_forced() {
        let r = Registry::new();
        r.record_cleanup(CleanupReason::Idle);
        r.record_cleanup(CleanupReason::Idle);
        r.record_cleanup(CleanupReason::Admin);
        r.record_cleanup_failure();
        let c = r.cleanups();
        assert_eq!((c.total, c.automatic, c.forced, c.failed), (3, 2, 1, 1));
        assert_eq!(c.by_reason[&CleanupReason::Idle], 2);
    }
}
