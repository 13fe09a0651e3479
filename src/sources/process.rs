//! Running a child process safely: own process group, no stdin, capped output, a whole-call
//! timeout, and a guard that kills the whole group on every exit path that did not finish
//! cleanly (timeout, output too large, I/O error, or the future being dropped).
//!
//! A child gets an allow-listed environment ([`child_env`]), never the bot's own: the
//! Discord token (and anything else an operator put in `.env` or the unit) stays in the
//! bot. yt-dlp, deno, pip and the build backends pip runs are code the bot does not
//! control.
//!
//! The counters of those runs ([`ProcessStats`]) live here as well: [`run`] is what keeps
//! them right on every path, and the yt-dlp wrapper, the managed installer and `/resources`
//! only read or share them.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Counters over all yt-dlp invocations of one [`YtDlp`](super::YtDlp) (and its clones).
#[derive(Default, Debug)]
pub struct ProcessStats {
    /// Processes started.
    pub spawned: AtomicU64,
    /// Processes started and not yet finished (or killed).
    pub running: AtomicU64,
    /// Calls that hit the timeout (their process group was killed).
    pub timed_out: AtomicU64,
    /// Calls that ended in an error other than a timeout: spawn failures, non-zero exits,
    /// unusable output (user errors such as "not found" included).
    pub failed: AtomicU64,
    /// Every process running now, by pid: what `/resources` lists and the sweeper checks.
    pub live: std::sync::Mutex<std::collections::HashMap<u32, LiveProcess>>,
    /// Process group ids of the most recent runs (newest last), so a check can ask the OS
    /// whether any of them is still alive.
    pub recent: std::sync::Mutex<std::collections::VecDeque<u32>>,
}

/// How many recent process group ids [`ProcessStats::recent`] keeps.
pub const RECENT_PROCESSES: usize = 64;

/// One running yt-dlp process.
#[derive(Clone, Copy, Debug)]
pub struct LiveProcess {
    /// Its process group (the pid of the leader).
    pub pgid: u32,
    pub started: std::time::Instant,
    /// When its call times out; a process still alive well past this is a stray.
    pub deadline: std::time::Instant,
}

impl ProcessStats {
    /// Processes alive past their deadline by more than `grace`.
    pub fn overdue(&self, now: std::time::Instant, grace: Duration) -> Vec<LiveProcess> {
        let live = self.live.lock().expect("process table");
        live.values()
            .filter(|p| now > p.deadline + grace)
            .copied()
            .collect()
    }

    pub fn live_count(&self) -> usize {
        self.live.lock().expect("process table").len()
    }
}

/// How much of stderr is kept (the tail: yt-dlp's `ERROR:` line comes last).
pub(crate) const STDERR_CAP: usize = 64 * 1024;

/// How long to wait for a killed leader to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct RunOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The last [`STDERR_CAP`] bytes of stderr.
    pub stderr: Vec<u8>,
}

#[derive(Debug)]
pub(crate) enum RunError {
    /// The program could not be started.
    Spawn(io::Error),
    /// The whole call took longer than the timeout; the group was killed.
    TimedOut,
    /// stdout exceeded its cap; the group was killed.
    StdoutTooLarge,
    /// Reading the pipes or waiting failed; the group was killed.
    Io(io::Error),
}

/// Kills the child's process group on drop unless disarmed, and keeps
/// [`ProcessStats::running`] right on every path.
struct GroupGuard {
    pgid: libc::pid_t,
    armed: bool,
    stats: Arc<ProcessStats>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if self.armed && self.pgid > 0 {
            // SAFETY: plain syscall. The group leader has not been reaped yet (we only reap
            // after this call), so the pgid cannot have been reused.
            unsafe {
                libc::killpg(self.pgid, libc::SIGKILL);
            }
        }
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
        self.stats.running.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut live) = self.stats.live.lock() {
            live.remove(&(self.pgid as u32));
        }
    }
}

/// Kills a whole process group now (the sweeper's and `/cleanup`'s way to end a stray).
pub fn kill_group(pgid: u32) -> bool {
    if pgid == 0 || pgid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: plain syscall on a group id we started; no memory is touched.
    unsafe { libc::killpg(pgid as libc::pid_t, libc::SIGKILL) == 0 }
}

/// Variables a child keeps from the bot's environment: what programs need to run (where
/// to find programs, a home and a locale, temporary files) and the operator's CA settings
/// (yt-dlp and pip honour them). The proxy settings are [`PROXY_ENV`].
const CHILD_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "DENO_DIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
];

/// The environment a child gets from `vars` (the bot's): only [`CHILD_ENV`], the
/// operator's proxy settings ([`PROXY_ENV`]), `LC_*` and `PIP_*` variables, and never one
/// named for the bot (`ENCORE_*`, `DISCORD_*`) whatever else it matches.
pub fn child_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(k, _)| {
            let Some(k) = k.to_str() else { return false };
            let bots = ["ENCORE_", "DISCORD_"];
            let upper = k.to_ascii_uppercase();
            if bots.iter().any(|p| upper.starts_with(p)) {
                return false;
            }
            CHILD_ENV.contains(&k)
                || PROXY_ENV.contains(&k)
                || k.starts_with("LC_")
                || k.starts_with("PIP_")
        })
        .collect()
}

/// The operator's proxy settings: pip uses them, yt-dlp must not ([`ytdlp_env`]).
const PROXY_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// The environment yt-dlp gets: [`child_env`] without any proxy variable. yt-dlp is given
/// the egress proxy with `--proxy`, which then overrides the environment's proxies and
/// `NO_PROXY` (yt-dlp reads `NO_PROXY` only without `--proxy`: `YoutubeDL.proxies`), and
/// the egress proxy chains to the operator's `ytdlp.proxy`; dropping them too means no
/// helper yt-dlp starts finds a way around it in its environment.
pub fn ytdlp_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    child_env(vars)
        .into_iter()
        .filter(|(k, _)| !k.to_str().is_some_and(|k| PROXY_ENV.contains(&k)))
        .collect()
}

/// Which environment a child gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildKind {
    /// yt-dlp: [`ytdlp_env`].
    YtDlp,
    /// pip, python, deno for the managed install: [`child_env`].
    Tool,
}

/// Runs `program args...` in `cwd` with a new process group, stdin from /dev/null, the
/// allow-listed environment ([`child_env`], or [`ytdlp_env`] for yt-dlp), and the given
/// whole-call timeout. stdout beyond `stdout_cap` bytes is an error.
pub(crate) async fn run(
    program: &Path,
    args: &[OsString],
    kind: ChildKind,
    cwd: &Path,
    timeout: Duration,
    stdout_cap: usize,
    stats: &Arc<ProcessStats>,
) -> Result<RunOutput, RunError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(match kind {
            ChildKind::YtDlp => ytdlp_env(std::env::vars_os()),
            ChildKind::Tool => child_env(std::env::vars_os()),
        })
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    stats.spawned.fetch_add(1, Ordering::SeqCst);
    stats.running.fetch_add(1, Ordering::SeqCst);
    // Declared after `child`, so on drop it runs first: the group is killed while the
    // leader is still unreaped, then tokio's kill_on_drop reaps the leader.
    let mut guard = GroupGuard {
        pgid: child.id().map(|p| p as libc::pid_t).unwrap_or(0),
        armed: true,
        stats: stats.clone(),
    };
    if guard.pgid > 0 {
        let started = std::time::Instant::now();
        let entry = LiveProcess {
            pgid: guard.pgid as u32,
            started,
            deadline: started + timeout,
        };
        stats
            .live
            .lock()
            .expect("process table")
            .insert(guard.pgid as u32, entry);
        let mut recent = stats.recent.lock().expect("process table");
        if recent.len() == RECENT_PROCESSES {
            recent.pop_front();
        }
        recent.push_back(guard.pgid as u32);
    }

    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let result = {
        let work = async {
            tokio::try_join!(
                read_capped(stdout, stdout_cap),
                async { Ok(read_tail(stderr, STDERR_CAP).await) },
                async { child.wait().await.map_err(RunError::Io) },
            )
        };
        tokio::time::timeout(timeout, work).await
    };

    match result {
        Ok(Ok((stdout, stderr, status))) => {
            // The leader has exited and both pipes reached EOF.
            guard.armed = false;
            Ok(RunOutput {
                status,
                stdout,
                stderr,
            })
        }
        Ok(Err(e)) => {
            guard.kill();
            reap(&mut child).await;
            Err(e)
        }
        Err(_elapsed) => {
            stats.timed_out.fetch_add(1, Ordering::SeqCst);
            guard.kill();
            reap(&mut child).await;
            Err(RunError::TimedOut)
        }
    }
}

async fn reap(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
}

async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> Result<Vec<u8>, RunError> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut chunk).await.map_err(RunError::Io)?;
        if n == 0 {
            return Ok(buf);
        }
        if buf.len() + n > cap {
            return Err(RunError::StdoutTooLarge);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Drains `r` to EOF, keeping only the last `cap` bytes. Read errors end the read.
async fn read_tail<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 2 * cap {
                    let cut = buf.len() - cap;
                    buf.drain(..cut);
                }
            }
        }
    }
    if buf.len() > cap {
        let cut = buf.len() - cap;
        buf.drain(..cut);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_keeps_what_it_needs_and_none_of_the_bots_settings() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("HOME", "/var/lib/encore"),
            ("LC_ALL", "C.UTF-8"),
            ("https_proxy", "http://proxy:3128"),
            ("PIP_INDEX_URL", "https://mirror/simple"),
            ("DISCORD_TOKEN", "secret"),
            ("ENCORE_YTDLP__COOKIES", "/etc/encore/cookies.txt"),
            ("Discord_Token", "secret"),
            ("AWS_SECRET_ACCESS_KEY", "also secret"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<String> = child_env(vars)
            .into_iter()
            .map(|(k, _)| k.into_string().unwrap())
            .collect();
        assert_eq!(
            kept,
            ["PATH", "HOME", "LC_ALL", "https_proxy", "PIP_INDEX_URL"]
        );
    }

    #[tokio::test]
    async fn tail_keeps_the_end() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let tail = read_tail(&data[..], 1000).await;
        assert_eq!(tail, &data[data.len() - 1000..]);
        let small = read_tail(&b"abc"[..], 1000).await;
        assert_eq!(small, b"abc");
    }

    #[tokio::test]
    async fn capped_read() {
        let data = vec![7u8; 5000];
        assert_eq!(read_capped(&data[..], 5000).await.unwrap().len(), 5000);
        assert!(matches!(
            read_capped(&data[..], 4999).await,
            Err(RunError::StdoutTooLarge)
        ));
    }

    #[tokio::test]
    async fn runs_and_counts() {
        let stats = Arc::new(ProcessStats::default());
        let out = run(
            Path::new("/bin/sh"),
            &["-c".into(), "echo out; echo err >&2; exit 3".into()],
            ChildKind::Tool,
            Path::new("/"),
            Duration::from_secs(5),
            1024,
            &stats,
        )
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(stats.spawned.load(Ordering::SeqCst), 1);
        assert_eq!(stats.running.load(Ordering::SeqCst), 0);

        let big = run(
            Path::new("/bin/sh"),
            &["-c".into(), "head -c 100000 /dev/zero; sleep 30".into()],
            ChildKind::Tool,
            Path::new("/"),
            Duration::from_secs(5),
            1024,
            &stats,
        )
        .await;
        assert!(matches!(big, Err(RunError::StdoutTooLarge)));
        assert_eq!(stats.running.load(Ordering::SeqCst), 0);

        let missing = run(
            Path::new("/nonexistent/encore-test-binary"),
            &[],
            ChildKind::Tool,
            Path::new("/"),
            Duration::from_secs(5),
            1024,
            &stats,
        )
        .await;
        match missing {
            Err(RunError::Spawn(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("unexpected {other:?}"),
        }
    }
}
