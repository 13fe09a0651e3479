//! The periodic sweep: a second line of defence behind the event-driven cleanup. It
//! reconciles the registry with the voice layer both ways, tells players to re-check their
//! timers, reaps yt-dlp processes past their deadline, and expires cache entries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::registry::{CleanupReason, Registry};
use crate::sources::ProcessStats;

/// The voice layer as the sweeper sees it: which guilds it holds a call for, and how to
/// drop one nobody owns. songbird implements it at the edge.
#[async_trait]
pub trait CallInventory: Send + Sync {
    fn guilds(&self) -> Vec<u64>;
    async fn drop_call(&self, guild: u64);
}

/// The players as the sweeper sees them.
#[async_trait]
pub trait PlayerInventory: Send + Sync {
    /// Guilds with a live player task.
    fn guilds(&self) -> Vec<u64>;
    /// Asks a player to clean up for `reason`; `only_if_idle` spares one that plays.
    async fn cleanup(&self, guild: u64, reason: CleanupReason, only_if_idle: bool) -> bool;
}

/// Something with entries that expire (the cache); returns how many it removed.
#[async_trait]
pub trait Expiring: Send + Sync {
    async fn expire(&self) -> u64;
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Calls the voice layer held that no player owned (dropped).
    pub orphan_calls: u64,
    /// Calls the registry listed that the voice layer did not hold (their players cleaned up).
    pub ghost_calls: u64,
    /// yt-dlp process groups killed past their deadline.
    pub killed_processes: u64,
    pub expired_cache_entries: u64,
}

/// How far past its deadline a process may run before it counts as a stray: the process
/// wrapper kills on timeout itself, so anything still there is a leak.
const PROCESS_GRACE: Duration = Duration::from_secs(5);

pub struct Sweeper {
    pub registry: Arc<Registry>,
    pub calls: Arc<dyn CallInventory>,
    pub players: Arc<dyn PlayerInventory>,
    pub processes: Arc<ProcessStats>,
    /// Stores with entries that expire: the metadata and audio cache, the lyrics cache.
    pub cache: Vec<Arc<dyn Expiring>>,
}

impl Sweeper {
    /// Kills every running yt-dlp process group (shutdown); returns how many.
    pub fn kill_all_processes(&self) -> u64 {
        let live: Vec<_> = self
            .processes
            .live
            .lock()
            .expect("process table")
            .values()
            .copied()
            .collect();
        live.iter()
            .filter(|p| crate::sources::kill_group(p.pgid))
            .count() as u64
    }

    /// One pass. `forced` (an admin's `/cleanup`) reaps processes as soon as they pass their
    /// deadline instead of after a grace period.
    pub async fn sweep(&self, forced: bool) -> SweepReport {
        let mut report = SweepReport::default();
        let players: std::collections::HashSet<u64> = self.players.guilds().into_iter().collect();

        // A call songbird holds that no player owns: nobody will ever leave it.
        for guild in self.calls.guilds() {
            if !players.contains(&guild) || !self.registry.has_call(guild) {
                tracing::warn!(guild, "leak: a voice call nobody owns; dropping it");
                self.registry.record_leak("orphan call");
                self.calls.drop_call(guild).await;
                report.orphan_calls += 1;
            }
        }
        // A call the registry lists that songbird does not hold: the player thinks it is
        // connected and is not.
        let held: std::collections::HashSet<u64> = self.calls.guilds().into_iter().collect();
        for call in self.registry.calls() {
            if !held.contains(&call.guild) {
                tracing::warn!(
                    guild = call.guild,
                    "leak: a registered call has no connection"
                );
                self.registry.record_leak("ghost call");
                self.players
                    .cleanup(call.guild, CleanupReason::Leak, false)
                    .await;
                report.ghost_calls += 1;
            }
        }
        let now = Instant::now();
        let grace = if forced {
            Duration::ZERO
        } else {
            PROCESS_GRACE
        };
        let strays = self.processes.overdue(now, grace);
        for p in strays {
            tracing::warn!(pgid = p.pgid, age = ?now - p.started, "killing a yt-dlp process group");
            if crate::sources::kill_group(p.pgid) {
                report.killed_processes += 1;
            }
            self.registry.record_leak("overdue process");
        }
        for cache in &self.cache {
            report.expired_cache_entries += cache.expire().await;
        }
        report
    }

    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(&self, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; start after one interval
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let r = self.sweep(false).await;
                    if r != SweepReport::default() {
                        tracing::info!(?r, "sweep reclaimed resources");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeCalls(Mutex<Vec<u64>>);

    #[async_trait]
    impl CallInventory for FakeCalls {
        fn guilds(&self) -> Vec<u64> {
            self.0.lock().unwrap().clone()
        }
        async fn drop_call(&self, guild: u64) {
            self.0.lock().unwrap().retain(|g| *g != guild);
        }
    }

    #[derive(Default)]
    struct FakePlayers {
        guilds: Vec<u64>,
        cleaned: Mutex<Vec<(u64, CleanupReason)>>,
    }

    #[async_trait]
    impl PlayerInventory for FakePlayers {
        fn guilds(&self) -> Vec<u64> {
            self.guilds.clone()
        }
        async fn cleanup(&self, guild: u64, reason: CleanupReason, _: bool) -> bool {
            self.cleaned.lock().unwrap().push((guild, reason));
            true
        }
    }

    #[tokio::test]
    async fn reconciles_calls_both_ways() {
        let registry = Registry::new();
        let _owned = registry.call(1, 10); // player 1 owns its call
        let _ghost = registry.call(2, 20); // player 2 thinks it is connected
        let calls = Arc::new(FakeCalls(Mutex::new(vec![1, 3]))); // 3: nobody owns it
        let players = Arc::new(FakePlayers {
            guilds: vec![1, 2],
            ..Default::default()
        });
        let sweeper = Sweeper {
            registry: registry.clone(),
            calls: calls.clone(),
            players: players.clone(),
            processes: Arc::new(ProcessStats::default()),
            cache: Vec::new(),
        };
        let r = sweeper.sweep(false).await;
        assert_eq!((r.orphan_calls, r.ghost_calls), (1, 1));
        assert_eq!(calls.guilds(), vec![1]);
        assert_eq!(
            *players.cleaned.lock().unwrap(),
            vec![(2, CleanupReason::Leak)]
        );
        assert_eq!(registry.leaks().values().sum::<u64>(), 2);
        // a second pass finds nothing new once the ghost's player cleaned up
        drop(_ghost);
        assert_eq!(sweeper.sweep(false).await, SweepReport::default());
    }

    #[tokio::test]
    async fn kills_processes_past_their_deadline() {
        let stats = Arc::new(ProcessStats::default());
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let long_ago = Instant::now() - Duration::from_secs(60);
        stats.live.lock().unwrap().insert(
            pid,
            crate::sources::LiveProcess {
                pgid: pid,
                started: long_ago,
                deadline: long_ago + Duration::from_secs(1),
            },
        );
        let sweeper = Sweeper {
            registry: Registry::new(),
            calls: Arc::new(FakeCalls::default()),
            players: Arc::new(FakePlayers::default()),
            processes: stats,
            cache: Vec::new(),
        };
        assert_eq!(sweeper.sweep(false).await.killed_processes, 1);
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(!status.success(), "the stray was killed");
    }
}
