//! What the bot can say about itself: how long it has run, how much CPU it uses, how busy
//! songbird's mixers are, and how yt-dlp is doing.
//!
//! These are the figures `/resources` shows next to what the bot holds (calls, queues,
//! cache). Some of them must be taken exactly once — the start time, the CPU baseline,
//! the yt-dlp version (a process spawn) — so they have one owner, built by `app`, and the
//! command only formats what this returns. Nothing here knows about Discord: the
//! dependencies point down, `discord` → `status` → `resources` / `sources`.

use std::time::{Duration, Instant};

use songbird::driver::Scheduler;
use tokio::sync::OnceCell;

use crate::resources::system;
use crate::sources::managed::ManagedYtDlp;
use crate::sources::YtDlp;

/// The bot's own figures, from start to shutdown.
pub struct Status {
    started: Instant,
    /// (wall clock, CPU time) when the bot started: where every [`ProcessMeter`] begins.
    baseline: (Instant, Duration),
    /// The app's songbird scheduler (not songbird's process-wide default, which would
    /// also count other apps' mixers in tests).
    scheduler: Scheduler,
    /// Asked for its version, and for its process counters, which all its clones share.
    ytdlp: YtDlp,
    /// When the bot manages its own yt-dlp, that install knows its version (and it changes
    /// on update), so nothing needs to be spawned to ask.
    managed: Option<ManagedYtDlp>,
    /// `yt-dlp --version` of an unmanaged install, asked on first use: it is a process
    /// spawn, and the binary only changes when the operator restarts the bot anyway.
    version: OnceCell<String>,
}

/// yt-dlp's process counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct YtDlpProcesses {
    /// Processes alive now.
    pub running: usize,
    /// Processes started since the bot started.
    pub spawned: u64,
    /// Calls killed at their timeout.
    pub timed_out: u64,
}

/// How busy songbird's mixer threads are.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MixerLoad {
    /// Calls being mixed now. (Not the scheduler's `total_tasks`: songbird 0.6.1 never
    /// subtracts a mixer that ends while parked, so that count only grows.)
    pub live: u64,
    pub threads: u64,
    /// Mean compute cost of the mixer threads' last cycle, in microseconds (0 when no
    /// thread runs).
    pub cost_us: f64,
}

/// This process as the OS sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessFigures {
    pub rss_bytes: u64,
    /// Percent of one core, since the meter's previous reading.
    pub cpu_percent: f64,
    pub threads: u64,
    pub open_fds: u64,
}

/// Reads this process's usage, remembering the previous CPU reading so that CPU% covers
/// the time since then.
///
/// Each live `/resources` message keeps its own meter, so two administrators refreshing
/// at once do not shorten each other's interval. A new meter starts at the bot's start
/// baseline: its first figure is the average since start.
#[derive(Clone, Copy, Debug)]
pub struct ProcessMeter {
    last: (Instant, Duration),
}

impl Status {
    /// Takes the start time and the CPU baseline now, so call it when the bot starts.
    pub fn new(scheduler: Scheduler, ytdlp: YtDlp, managed: Option<ManagedYtDlp>) -> Status {
        Status {
            started: Instant::now(),
            baseline: (Instant::now(), system::usage().cpu_time),
            scheduler,
            ytdlp,
            managed,
            version: OnceCell::new(),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A meter whose first reading gives the CPU% since start.
    pub fn process_meter(&self) -> ProcessMeter {
        ProcessMeter {
            last: self.baseline,
        }
    }

    pub fn ytdlp_processes(&self) -> YtDlpProcesses {
        let stats = self.ytdlp.stats();
        YtDlpProcesses {
            running: stats.live_count(),
            spawned: stats.spawned.load(std::sync::atomic::Ordering::SeqCst),
            timed_out: stats.timed_out.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// The version of the yt-dlp in use: the managed install's, marked so, or what
    /// `yt-dlp --version` answered the first time. A failure is kept too (as
    /// `unavailable (why)`): asking again on every refresh would spawn a process each time
    /// for an answer that is not going to change.
    pub async fn ytdlp_version(&self) -> String {
        if let Some(v) = self.managed.as_ref().and_then(|m| m.version()) {
            return format!("{v} (managed)");
        }
        self.version
            .get_or_init(|| async {
                self.ytdlp
                    .version()
                    .await
                    .unwrap_or_else(|e| format!("unavailable ({e})"))
            })
            .await
            .clone()
    }

    /// The mixer threads' load. Waits for the scheduler to answer with its threads'
    /// statistics; if it cannot (it is shutting down), the cost stays 0.
    pub async fn mixer(&self) -> MixerLoad {
        let mut load = MixerLoad {
            live: self.scheduler.live_tasks(),
            threads: self.scheduler.worker_threads(),
            cost_us: 0.0,
        };
        if let Ok(stats) = self.scheduler.worker_thread_stats().await {
            let costs: Vec<f64> = stats
                .iter()
                .map(|s| s.last_compute_cost_ns() as f64 / 1000.0)
                .collect();
            if !costs.is_empty() {
                load.cost_us = costs.iter().sum::<f64>() / costs.len() as f64;
            }
        }
        load
    }
}

impl ProcessMeter {
    /// Reads /proc once: memory, threads, descriptors, and CPU% since the last reading.
    pub fn read(&mut self) -> ProcessFigures {
        let usage = system::usage();
        ProcessFigures {
            rss_bytes: usage.rss_bytes,
            cpu_percent: self.advance(Instant::now(), usage.cpu_time),
            threads: usage.threads,
            open_fds: usage.open_fds,
        }
    }

    /// CPU% between the last reading and `(now, cpu_time)`, which becomes the last reading.
    fn advance(&mut self, now: Instant, cpu_time: Duration) -> f64 {
        let percent = system::cpu_percent(self.last, (now, cpu_time));
        self.last = (now, cpu_time);
        percent
    }
}

/// Days since a yt-dlp version like `2026.10.26` (or `2026.10.26.1`) was released.
/// A release date in the future (a clock that is behind) counts as 0 days.
pub fn version_age_days(version: &str, now: std::time::SystemTime) -> Option<u64> {
    let mut parts = version.split('.').map(|p| p.parse::<u16>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    if !(2000..=9999).contains(&y) {
        return None;
    }
    // humantime checks the month and the day against the calendar (no 30 February).
    let released = humantime::parse_rfc3339(&format!("{y:04}-{m:02}-{d:02}T00:00:00Z")).ok()?;
    let age = now.duration_since(released).unwrap_or_default();
    Some(age.as_secs() / 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{UrlPolicy, YtDlpConfig};

    fn status_with(ytdlp: std::path::PathBuf, work_dir: &std::path::Path) -> Status {
        let ytdlp = YtDlp::new(
            YtDlpConfig {
                path: ytdlp,
                work_dir: work_dir.to_path_buf(),
                ..Default::default()
            },
            UrlPolicy::default(),
        );
        Status::new(Scheduler::new(Default::default()), ytdlp, None)
    }

    #[test]
    fn cpu_is_measured_from_the_previous_reading() {
        let t0 = Instant::now();
        let mut meter = ProcessMeter {
            last: (t0, Duration::from_secs(1)),
        };
        // Half a core for 2 s, then idle for 1 s: the idle second is not averaged with
        // the busy ones.
        let busy = meter.advance(t0 + Duration::from_secs(2), Duration::from_secs(2));
        assert!((busy - 50.0).abs() < 1e-9, "{busy}");
        let idle = meter.advance(t0 + Duration::from_secs(3), Duration::from_secs(2));
        assert_eq!(idle, 0.0);
    }

    // songbird's scheduler spawns its idle task on the runtime, so this needs one.
    #[tokio::test]
    async fn a_new_meter_starts_at_the_start_baseline() {
        let tmp = tempfile::tempdir().unwrap();
        let s = status_with("yt-dlp".into(), tmp.path());
        let mut first = s.process_meter();
        assert_eq!(first.last, s.baseline);
        let figures = first.read();
        assert!(figures.rss_bytes > 0 && figures.threads >= 1);
        assert!(first.last.0 > s.baseline.0);
        assert_eq!(
            s.process_meter().last,
            s.baseline,
            "a reading moves only its own meter"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn asks_ytdlp_for_its_version_once() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let calls = tmp.path().join("calls");
        let script = tmp.path().join("fake-yt-dlp");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho run >> '{}'\necho 2099.01.02\n",
                calls.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = status_with(script, tmp.path());
        assert_eq!(s.ytdlp_version().await, "2099.01.02");
        assert_eq!(s.ytdlp_version().await, "2099.01.02");
        let runs = std::fs::read_to_string(&calls).unwrap();
        assert_eq!(runs.lines().count(), 1, "asked once");
        assert_eq!(
            s.ytdlp_processes(),
            YtDlpProcesses {
                running: 0,
                spawned: 1,
                timed_out: 0,
            }
        );
    }

    #[tokio::test]
    async fn a_missing_ytdlp_is_reported_not_retried() {
        let tmp = tempfile::tempdir().unwrap();
        let s = status_with(tmp.path().join("no-such-yt-dlp"), tmp.path());
        let first = s.ytdlp_version().await;
        assert!(first.starts_with("unavailable ("), "{first}");
        let spawned = s.ytdlp_processes().spawned;
        assert_eq!(s.ytdlp_version().await, first);
        assert_eq!(s.ytdlp_processes().spawned, spawned, "not asked again");
    }

    #[tokio::test]
    async fn an_idle_scheduler_has_no_load() {
        let tmp = tempfile::tempdir().unwrap();
        let s = status_with("yt-dlp".into(), tmp.path());
        let load = s.mixer().await;
        assert_eq!(load.live, 0);
        assert_eq!(load.cost_us, 0.0);
    }
}
