//! One node's part in the cluster: a loop that renews this node's leases, takes free
//! shards up to its fair share, gives back its surplus, starts each new shard only when
//! its identify slot is free, and stops every shard it can no longer prove it owns.
//!
//! The loop knows nothing of Discord: it drives a [`ShardControl`] (serenity's shard
//! manager in the bot, a recorder in the tests), so the rules below are tested with a
//! real database and no gateway.
//!
//! The one rule that must never break: no guild is served by two nodes. A node renews at
//! `R` (the database stamps `now() + lease`, and `now()` there is after `R`), so nobody
//! else may take the shard before `R + lease`. This node stops the shard at
//! `R + fence_after`, two renewals earlier, whether or not the database answers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::leases::{Leases, NodeInfo, NodeStats};

/// What the loop asks of the gateway side.
#[async_trait]
pub trait ShardControl: Send + Sync + 'static {
    /// Connects `shard` now: its identify slot has been claimed.
    async fn start(&self, shard: u32);
    /// Every player of the shard's guilds leaves, its queue saved where it was, then the
    /// shard disconnects. Another node resumes those queues when it takes the shard.
    async fn stop(&self, shard: u32);
    /// What this node reports with its heartbeat (`shards` is filled in by the loop).
    async fn stats(&self) -> NodeStats;
}

/// The loop's timings; [`Timing::new`] derives them from the lease.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub renew_every: Duration,
    pub fence_after: Duration,
    /// Between two shard starts on this node: serenity's shard queuer waits 6 s between
    /// boots (`vendor/serenity`), so a start sooner than that would identify later than
    /// its claimed slot, inside the next one's.
    pub boot_spacing: Duration,
    /// Between two identifies in one bucket, cluster-wide: Discord's 5 s, plus a margin for
    /// the time a shard takes from its start to its IDENTIFY.
    pub identify_spacing: Duration,
}

impl Timing {
    pub fn new(cluster: &crate::config::ClusterConfig) -> Timing {
        Timing {
            renew_every: cluster.renew_every(),
            fence_after: cluster.fence_after(),
            boot_spacing: Duration::from_millis(6_100),
            identify_spacing: Duration::from_millis(5_500),
        }
    }
}

/// The shards one [`Member::tick`] gave up: `lost` (another node holds the lease now),
/// `running` and `idle` (this node's surplus, started or not, to give back).
#[derive(Debug, Default)]
pub struct HandOver {
    lost: Vec<u32>,
    running: Vec<u32>,
    idle: Vec<u32>,
}

impl HandOver {
    fn is_empty(&self) -> bool {
        self.lost.is_empty() && self.running.is_empty() && self.idle.is_empty()
    }
}

/// This node's membership: what it holds and what it has started.
pub struct Member {
    me: NodeInfo,
    leases: Leases,
    control: Arc<dyn ShardControl>,
    timing: Timing,
    total: u32,
    max_concurrency: u32,
    /// Leased (renewed at the last tick).
    held: BTreeSet<u32>,
    /// Connected by this node; always within `held` after a successful tick.
    started: BTreeSet<u32>,
    last_renewal: Option<Instant>,
    last_boot: Option<Instant>,
    /// When the loop should look again, if sooner than the next renewal.
    soon: Option<Duration>,
}

impl Member {
    pub fn new(
        me: NodeInfo,
        leases: Leases,
        control: Arc<dyn ShardControl>,
        timing: Timing,
        total: u32,
        max_concurrency: u32,
    ) -> Member {
        Member {
            me,
            leases,
            control,
            timing,
            total,
            max_concurrency: max_concurrency.max(1),
            held: BTreeSet::new(),
            started: BTreeSet::new(),
            last_renewal: None,
            last_boot: None,
            soon: None,
        }
    }

    pub fn started(&self) -> &BTreeSet<u32> {
        &self.started
    }

    /// Runs until `stop` fires, then hands every shard over ([`Member::drain`]). The
    /// caller's [`Leases::leave`] afterwards clears whatever the drain could not.
    pub async fn run(mut self, wake: Arc<Notify>, stop: CancellationToken) {
        self.serve(wake, &stop).await;
        self.drain().await;
    }

    async fn serve(&mut self, wake: Arc<Notify>, stop: &CancellationToken) {
        loop {
            let fence_at = self.fence_at();
            // Only the database round is bounded by a renewal: a hand-over it decides is
            // finished below, never cut off halfway (a stop cut short would skip saving the
            // shard's queues and keep its lease until it ran out).
            let tick = tokio::time::timeout(self.timing.renew_every, self.tick());
            let mut handover = HandOver::default();
            tokio::select! {
                _ = stop.cancelled() => return,
                r = tick => match r {
                    Ok(Ok(h)) => handover = h,
                    Ok(Err(e)) => tracing::warn!(error = %e, "cluster: the database did not answer"),
                    Err(_) => tracing::warn!("cluster: the database is too slow to answer"),
                },
                _ = sleep_until(fence_at) => {}
            }
            if !handover.is_empty() {
                self.hand_over(handover).await;
            }
            if self.fence_at().is_some_and(|at| at <= Instant::now()) {
                self.fence().await;
            }
            let pause = self
                .soon
                .take()
                .map_or(self.timing.renew_every, |s| s.min(self.timing.renew_every));
            let fence_at = self.fence_at();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = sleep_until(fence_at) => {}
            }
        }
    }

    /// On the way out: the node stops counting as live (the others' fair share grows
    /// now), each shard is stopped (its players leave, its queues are saved) and its lease
    /// released the moment it is, so its next owner starts it then. Meanwhile the leases
    /// are renewed, so however long a stop takes on a busy machine, nobody starts a shard
    /// this node still runs.
    async fn drain(&mut self) {
        if let Err(e) = self.leases.retire(&self.me.id).await {
            tracing::warn!(error = %e, "cluster: could not announce leaving");
        }
        let started = std::mem::take(&mut self.started);
        let idle: Vec<u32> = self.held.difference(&started).copied().collect();
        self.held.clear();
        let (control, leases, me) = (
            self.control.clone(),
            self.leases.clone(),
            self.me.id.clone(),
        );
        let wait = self.timing.renew_every;
        for shard in idle {
            release_within(&leases, &me, shard, wait).await;
        }
        let (l, m) = (&leases, &me);
        let stops = futures::future::join_all(started.into_iter().map(|shard| {
            let control = control.clone();
            async move {
                control.stop(shard).await;
                release_within(l, m, shard, wait).await;
            }
        }));
        self.while_renewing(stops).await;
    }

    /// Runs `work` (stopping shards: their players save their queues first, which takes
    /// a while on a busy machine) while renewing this node's leases every renewal, so no
    /// lease runs out under a shard still running here. Gives `work` up only when no
    /// renewal succeeded before this node's fence (the loop then fences).
    async fn while_renewing<T>(&mut self, work: impl std::future::Future<Output = T>) {
        tokio::pin!(work);
        loop {
            let fence_at = self.fence_at();
            tokio::select! {
                _ = &mut work => return,
                _ = tokio::time::sleep(self.timing.renew_every) => {
                    let began = Instant::now();
                    let renew = self.leases.renew(&self.me.id);
                    match tokio::time::timeout(self.timing.renew_every, renew).await {
                        Ok(Ok(_)) => self.last_renewal = Some(began),
                        _ => tracing::warn!("cluster: could not renew the leases during a hand-over"),
                    }
                }
                _ = sleep_until(fence_at) => return,
            }
        }
    }

    /// When this node must stop its shards if no renewal succeeds before then.
    fn fence_at(&self) -> Option<Instant> {
        if self.started.is_empty() {
            return None;
        }
        Some(self.last_renewal? + self.timing.fence_after)
    }

    /// No renewal for too long: whoever can reach the database may take these shards
    /// soon, so they stop here first.
    async fn fence(&mut self) {
        tracing::error!(
            shards = ?self.started,
            "cluster: no lease renewal for {:?}; stopping this node's shards",
            self.timing.fence_after
        );
        // All at once: each stop may wait on the unreachable database for its queues.
        let control = &self.control;
        futures::future::join_all(
            std::mem::take(&mut self.started)
                .into_iter()
                .map(|shard| control.stop(shard)),
        )
        .await;
        self.held.clear();
    }

    /// One round on the database: heartbeat, renew, rebalance, and maybe start one
    /// shard. The shards it lost or gives back are no longer this node's to run: it
    /// returns them for [`Member::hand_over`].
    pub async fn tick(&mut self) -> Result<HandOver, sqlx::Error> {
        let began = Instant::now();
        let mut stats = self.control.stats().await;
        stats.shards = self.started.iter().copied().collect();
        self.leases.heartbeat(&self.me, &stats).await?;
        let renewed = self.leases.renew(&self.me.id).await?;
        self.last_renewal = Some(began);
        let mut handover = HandOver::default();
        for shard in self
            .started
            .difference(&renewed)
            .copied()
            .collect::<Vec<_>>()
        {
            tracing::error!(
                shard,
                "cluster: lost the lease of a running shard; stopping it"
            );
            self.started.remove(&shard);
            handover.lost.push(shard);
        }
        self.held = renewed;

        let live = self.leases.live_nodes().await?.max(1);
        let fair = self.total.div_ceil(live) as usize;
        while self.held.len() > fair {
            // Shards not yet started go first: giving those back interrupts nobody.
            let shard = self
                .held
                .difference(&self.started)
                .last()
                .or_else(|| self.held.iter().next_back())
                .copied()
                .expect("held is not empty");
            if self.started.remove(&shard) {
                tracing::info!(shard, live, "cluster: handing a shard to a new node");
                handover.running.push(shard);
            } else {
                handover.idle.push(shard);
            }
            self.held.remove(&shard);
        }
        if self.held.len() < fair {
            if let Some(shard) = self.leases.acquire(&self.me.id).await? {
                tracing::info!(shard, "cluster: took a shard");
                self.held.insert(shard);
            }
            if self.held.len() < fair {
                // More may be free: look again shortly rather than a renewal later.
                self.soon = Some(Duration::from_millis(200));
            }
        }
        self.boot_next().await?;
        Ok(handover)
    }

    /// Stops the shards [`Member::tick`] gave up (each saves its queues first) and
    /// releases the leases of those given back, so their next owner starts them now, all
    /// while renewing the rest. A release the database does not take in time is left to
    /// run out.
    async fn hand_over(&mut self, handover: HandOver) {
        let (control, leases, me) = (
            self.control.clone(),
            self.leases.clone(),
            self.me.id.clone(),
        );
        let wait = self.timing.renew_every;
        let work = async move {
            for shard in handover.lost {
                control.stop(shard).await;
            }
            for shard in handover.running {
                control.stop(shard).await;
                release_within(&leases, &me, shard, wait).await;
            }
            for shard in handover.idle {
                release_within(&leases, &me, shard, wait).await;
            }
        };
        self.while_renewing(work).await;
    }

    /// Starts the lowest held shard not yet started, if this node's queuer and the
    /// shard's identify bucket both allow it now; otherwise notes when to look again.
    async fn boot_next(&mut self) -> Result<(), sqlx::Error> {
        let Some(&shard) = self.held.difference(&self.started).next() else {
            return Ok(());
        };
        if let Some(wait) = self
            .last_boot
            .map(|t| self.timing.boot_spacing.saturating_sub(t.elapsed()))
            .filter(|w| !w.is_zero())
        {
            self.soon = Some(self.soon.map_or(wait, |s| s.min(wait)));
            return Ok(());
        }
        let bucket = shard % self.max_concurrency;
        match self
            .leases
            .reserve_identify(bucket, self.timing.identify_spacing)
            .await?
        {
            Ok(()) => {
                tracing::info!(shard, total = self.total, "cluster: starting a shard");
                self.control.start(shard).await;
                self.started.insert(shard);
                self.last_boot = Some(Instant::now());
                if self.held.len() > self.started.len() {
                    self.soon = Some(self.timing.boot_spacing);
                }
            }
            Err(wait) => {
                let wait = wait + Duration::from_millis(20);
                self.soon = Some(self.soon.map_or(wait, |s| s.min(wait)));
            }
        }
        Ok(())
    }
}

/// Gives `shard` back, waiting at most `wait` on the database; otherwise it runs out.
async fn release_within(leases: &Leases, me: &str, shard: u32, wait: Duration) {
    if !matches!(
        tokio::time::timeout(wait, leases.release(me, shard)).await,
        Ok(Ok(()))
    ) {
        tracing::warn!(shard, "cluster: could not release a lease; it runs out");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records what the loop asked for, in order.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<(Instant, &'static str, u32)>>,
        /// How long a stop takes (saving the queues, closing the shard): recorded when done.
        stop_takes: Duration,
    }

    #[async_trait]
    impl ShardControl for Recorder {
        async fn start(&self, shard: u32) {
            self.log
                .lock()
                .unwrap()
                .push((Instant::now(), "start", shard));
        }
        async fn stop(&self, shard: u32) {
            tokio::time::sleep(self.stop_takes).await;
            self.log
                .lock()
                .unwrap()
                .push((Instant::now(), "stop", shard));
        }
        async fn stats(&self) -> NodeStats {
            NodeStats::default()
        }
    }

    impl Recorder {
        fn running(&self) -> BTreeSet<u32> {
            let mut on = BTreeSet::new();
            for (_, what, shard) in self.log.lock().unwrap().iter() {
                if *what == "start" {
                    on.insert(*shard);
                } else {
                    on.remove(shard);
                }
            }
            on
        }
    }

    fn timing(lease: Duration) -> Timing {
        let c = crate::config::ClusterConfig {
            lease,
            node_name: None,
        };
        Timing {
            boot_spacing: Duration::from_millis(50),
            identify_spacing: Duration::from_millis(100),
            ..Timing::new(&c)
        }
    }

    /// A fresh cluster of `shards` shards whose leases last `lease`.
    async fn cluster(lease: Duration, shards: u32) -> Leases {
        let l = Leases::on_fresh_database(lease).await;
        l.ensure_shards(shards).await.unwrap();
        l
    }

    struct Running {
        control: Arc<Recorder>,
        id: String,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        async fn stop(self) {
            self.stop.cancel();
            self.task.await.unwrap();
        }
    }

    fn spawn(leases: &Leases, name: &str, lease: Duration, total: u32) -> Running {
        spawn_with(leases, name, lease, total, Recorder::default())
    }

    fn spawn_with(
        leases: &Leases,
        name: &str,
        lease: Duration,
        total: u32,
        control: Recorder,
    ) -> Running {
        let control = Arc::new(control);
        let me = NodeInfo::this_process(name);
        let id = me.id.clone();
        let member = Member::new(me, leases.clone(), control.clone(), timing(lease), total, 1);
        let stop = CancellationToken::new();
        let task = tokio::spawn(member.run(Arc::new(Notify::new()), stop.clone()));
        Running {
            control,
            id,
            stop,
            task,
        }
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_split_the_shards_and_the_survivor_takes_them_all() {
        let lease = Duration::from_secs(2);
        let l = cluster(lease, 4).await;
        let a = spawn(&l, "a", lease, 4);
        until("a runs all four", || a.control.running().len() == 4).await;
        let b = spawn(&l, "b", lease, 4);
        until("an even split", || {
            a.control.running().len() == 2 && b.control.running().len() == 2
        })
        .await;
        assert!(a.control.running().is_disjoint(&b.control.running()));
        // b disappears without a word (as on SIGKILL): its leases expire, a takes them.
        b.task.abort();
        let b_shards = b.control.running();
        until("a runs all four again", || a.control.running().len() == 4).await;
        for shard in b_shards {
            assert_eq!(l.owner_of(shard).await.unwrap(), Some(a.id.clone()));
        }
        a.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_that_leaves_hands_its_shards_over_at_once() {
        let lease = Duration::from_secs(30);
        let l = cluster(lease, 2).await;
        let a = spawn(&l, "a", lease, 2);
        until("a runs both", || a.control.running().len() == 2).await;
        let b = spawn(&l, "b", lease, 2);
        until("one each", || b.control.running().len() == 1).await;
        let b_id = b.id.clone();
        b.stop().await;
        let left = Instant::now();
        l.leave(&b_id).await.unwrap();
        // Far sooner than the 30 s lease: a is told (here by its next look) and takes it.
        until("a runs both again", || a.control.running().len() == 2).await;
        assert!(left.elapsed() < lease / 2, "{:?}", left.elapsed());
        a.stop().await;
    }

    /// A hand-over whose stop takes longer than a renewal (saving queues on a busy
    /// machine) is finished, not cut off: the shard is closed here, its lease released,
    /// and the new node runs it long before the lease would have run out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_hand_over_is_finished_and_released() {
        let lease = Duration::from_secs(10);
        let l = cluster(lease, 2).await;
        let slow = Recorder {
            stop_takes: timing(lease).renew_every * 3 / 2,
            ..Recorder::default()
        };
        let a = spawn_with(&l, "a", lease, 2, slow);
        until("a runs both", || a.control.running().len() == 2).await;
        let joined = Instant::now();
        let b = spawn(&l, "b", lease, 2);
        until("a hands one over", || a.control.running().len() == 1).await;
        until("b runs it", || b.control.running().len() == 1).await;
        // A look (one renewal) and the stop: well short of the lease.
        assert!(
            joined.elapsed() < lease * 3 / 4,
            "the hand-over waited for the lease: {:?}",
            joined.elapsed()
        );
        let moved = *b.control.running().first().unwrap();
        assert_eq!(l.owner_of(moved).await.unwrap(), Some(b.id.clone()));
        b.stop().await;
        a.stop().await;
    }

    /// A node that stops (SIGTERM) keeps its leases while its shards stop, however long
    /// that takes, and gives each back as soon as it stopped: the other node starts it
    /// after the stop, never during it, and without waiting for the lease.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopping_node_holds_its_shards_until_they_stopped_then_hands_them_over() {
        let lease = Duration::from_secs(2);
        let l = cluster(lease, 2).await;
        let slow = Recorder {
            stop_takes: lease * 3 / 2,
            ..Recorder::default()
        };
        let a = spawn_with(&l, "a", lease, 2, slow);
        until("a runs both", || a.control.running().len() == 2).await;
        let b = spawn(&l, "b", lease, 2);
        until("one each", || {
            a.control.running().len() == 1 && b.control.running().len() == 1
        })
        .await;
        let shard = *a.control.running().first().unwrap();
        let control = a.control.clone();
        a.stop().await;
        let log = control.log.lock().unwrap().clone();
        let stopped = log
            .iter()
            .rev()
            .find(|(_, what, s)| *what == "stop" && *s == shard)
            .map(|(at, _, _)| *at)
            .unwrap_or_else(|| panic!("a never stopped shard {shard}: {log:?}"));
        until("b runs both", || b.control.running().len() == 2).await;
        let started = b
            .control
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|(_, what, s)| *what == "start" && *s == shard)
            .map(|(at, _, _)| *at)
            .unwrap();
        assert!(
            started >= stopped,
            "b started the shard while a still ran it"
        );
        assert!(
            started - stopped < lease,
            "b waited for the lease: {:?}",
            started - stopped
        );
        b.stop().await;
    }

    /// Cut off from the database, a node stops its shards before its lease runs out,
    /// and so before any other node may start them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_cut_off_from_the_database_stops_before_its_lease_ends() {
        let lease = Duration::from_secs(2);
        let l = cluster(lease, 1).await;
        let a = spawn(&l, "a", lease, 1);
        until("a runs the shard", || a.control.running().len() == 1).await;
        // Close a's pool under it: every query fails from now on.
        let cut = Instant::now();
        l.pool().close().await;
        until("a stops the shard", || a.control.running().is_empty()).await;
        let stopped = a.control.log.lock().unwrap().last().unwrap().0;
        assert!(
            stopped.duration_since(cut) < lease,
            "stopped only after {:?}",
            stopped.duration_since(cut)
        );
        a.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_in_one_bucket_are_spaced_across_nodes() {
        let lease = Duration::from_secs(10);
        let l = cluster(lease, 4).await;
        let a = spawn(&l, "a", lease, 4);
        let b = spawn(&l, "b", lease, 4);
        until("all four started", || {
            a.control.running().len() + b.control.running().len() == 4
        })
        .await;
        let mut starts: Vec<Instant> = [&a, &b]
            .iter()
            .flat_map(|n| n.control.log.lock().unwrap().clone())
            .filter(|(_, what, _)| *what == "start")
            .map(|(at, _, _)| at)
            .collect();
        starts.sort();
        for pair in starts.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(90), "two starts {gap:?} apart");
        }
        for n in [a, b] {
            n.stop().await;
        }
    }
}
