//! systemd integration, without libsystemd: the `sd_notify` protocol (one datagram per
//! message to the unix socket named by `NOTIFY_SOCKET`) and a watchdog that pings only
//! while the process is healthy.
//!
//! * `READY=1` once the gateway is ready and commands are registered (the database was
//!   migrated before the gateway was even started), with a `STATUS=` line;
//! * `WATCHDOG=1` every `WATCHDOG_USEC / 2`, from a task on the bot's own runtime, and only
//!   after a health check passed: if the runtime stalls or the check fails, pings stop and
//!   systemd restarts the service (`WatchdogSec=` + `Restart=on-failure`);
//! * `STOPPING=1` as soon as shutdown begins;
//! * `EXTEND_TIMEOUT_USEC=` while a long start-up step runs (the first managed yt-dlp
//!   install).
//!
//! [`init_from_env`] reads the variables once, at the top of `main`, and removes them from
//! the environment so that child processes (yt-dlp, pip) cannot talk to systemd in the
//! bot's name. Without `NOTIFY_SOCKET` everything here is a no-op.

use std::future::Future;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A connection to systemd's notification socket (or nothing, outside systemd).
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

static GLOBAL: OnceLock<Notifier> = OnceLock::new();

/// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, removes them from the process
/// environment, and makes the result available through [`notifier`]. Call it first thing
/// in `main`, while the process has a single thread (removing variables is not
/// thread-safe). Calling it again returns the first result.
pub fn init_from_env() -> &'static Notifier {
    GLOBAL.get_or_init(|| {
        let get = |k: &str| std::env::var(k).ok();
        let n = Notifier::from_vars(
            get("NOTIFY_SOCKET").as_deref(),
            get("WATCHDOG_USEC").as_deref(),
            get("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(k);
        }
        if let Err(e) = &n.1 {
            // Logging is not set up yet; this is rare enough for a plain line.
            eprintln!("encore: ignoring NOTIFY_SOCKET: {e}");
        }
        n.0
    })
}

/// The process-wide notifier: the one [`init_from_env`] made, or a disabled one.
pub fn notifier() -> &'static Notifier {
    static DISABLED: Notifier = Notifier {
        target: None,
        watchdog: None,
    };
    GLOBAL.get().unwrap_or(&DISABLED)
}

impl Notifier {
    /// Builds a notifier from the variables' values; `pid` is this process's id (the
    /// watchdog is only ours when `WATCHDOG_PID` is unset or equal to it). The error says
    /// why a socket was given but cannot be used; the notifier is then disabled.
    pub fn from_vars(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> (Notifier, io::Result<()>) {
        let ours = watchdog_pid
            .map(|p| p.trim().parse::<u32>().ok() == Some(pid))
            .unwrap_or(true);
        let watchdog = watchdog_usec
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&us| us > 0 && ours)
            .map(Duration::from_micros);
        let target = match socket.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => open(name).map(Some),
        };
        match target {
            Ok(target) => (Notifier { target, watchdog }, Ok(())),
            Err(e) => (Notifier::default(), Err(e)),
        }
    }

    /// True when messages go somewhere (we run under systemd with `Type=notify`).
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `WATCHDOG_USEC`, when the watchdog is on and meant for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled())
    }

    /// Sends one message (`KEY=VALUE` lines). A no-op without a socket; failures are
    /// returned but harmless to ignore (systemd may simply not be listening).
    pub fn notify(&self, message: &str) -> io::Result<()> {
        let Some((socket, addr)) = &self.target else {
            return Ok(());
        };
        socket.send_to_addr(message.as_bytes(), addr).map(|_| ())
    }

    /// [`notify`](Self::notify), logging a failure at debug level.
    pub fn send(&self, message: &str) {
        if let Err(e) = self.notify(message) {
            tracing::debug!(error = %e, message, "sd_notify failed");
        }
    }

    /// `STATUS=...` (one line; newlines are flattened).
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    /// Asks systemd for `extra` more time to finish starting (or stopping).
    pub fn extend_timeout(&self, extra: Duration) {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", extra.as_micros()));
    }
}

fn open(name: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())?
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(name)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is neither an absolute path nor an abstract socket name"),
        ));
    };
    let socket = UnixDatagram::unbound()?;
    // systemd reads promptly; never let a full queue stall a runtime thread for long.
    socket.set_write_timeout(Some(Duration::from_secs(1)))?;
    Ok((socket, addr))
}

/// Drives the notifications of one bot run: `READY=1` when `ready` becomes true, watchdog
/// pings at half the interval while `health` passes, `STOPPING=1` when `shutdown` fires.
/// Returns once `STOPPING=1` was sent. `status` is the `STATUS=` text sent with `READY=1`.
///
/// `health` runs before each ping and must finish within a quarter of the watchdog
/// interval; an error (or a late answer) skips the ping and is logged. Run this on the
/// bot's runtime (not a thread of its own), so a stalled runtime stops the pings too.
pub async fn supervise<H, F>(
    notifier: &Notifier,
    mut ready: watch::Receiver<bool>,
    shutdown: CancellationToken,
    status: impl Fn() -> String,
    mut health: H,
) where
    H: FnMut() -> F,
    F: Future<Output = Result<(), String>>,
{
    let became_ready = tokio::select! {
        r = ready.wait_for(|r| *r) => r.is_ok(),
        _ = shutdown.cancelled() => false,
    };
    if became_ready && !shutdown.is_cancelled() {
        notifier.send(&format!("READY=1\nSTATUS={}", status().replace('\n', " ")));
        tracing::debug!("told systemd we are ready");
        match notifier.watchdog_interval() {
            Some(interval) => watchdog(notifier, interval, &shutdown, &mut health).await,
            None => shutdown.cancelled().await,
        }
    } else {
        shutdown.cancelled().await;
    }
    notifier.send("STOPPING=1\nSTATUS=Shutting down");
}

async fn watchdog<H, F>(
    notifier: &Notifier,
    interval: Duration,
    shutdown: &CancellationToken,
    health: &mut H,
) where
    H: FnMut() -> F,
    F: Future<Output = Result<(), String>>,
{
    let period = interval / 2;
    let budget = interval / 4;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let verdict = tokio::select! {
            _ = shutdown.cancelled() => return,
            v = tokio::time::timeout(budget, health()) => v,
        };
        match verdict {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("health check passes again; resuming watchdog pings");
                    failing = false;
                }
                notifier.send("WATCHDOG=1");
            }
            Ok(Err(why)) => {
                tracing::warn!(reason = %why, "health check failed; not pinging the watchdog");
                notifier.status(&format!("Unhealthy: {why}"));
                failing = true;
            }
            Err(_) => {
                tracing::warn!(
                    ?budget,
                    "health check did not finish in time; not pinging the watchdog"
                );
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn bound(dir: &std::path::Path) -> (tokio::net::UnixDatagram, String) {
        let path = dir.join("notify.sock");
        let sock = tokio::net::UnixDatagram::bind(&path).unwrap();
        (sock, path.to_str().unwrap().to_string())
    }

    async fn recv(sock: &tokio::net::UnixDatagram, within: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(within, sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn variables() {
        let (n, r) = Notifier::from_vars(None, Some("1000000"), None, 7);
        assert!(r.is_ok() && !n.enabled() && n.watchdog_interval().is_none());
        let (n, r) = Notifier::from_vars(Some("relative/path"), None, None, 7);
        assert!(r.is_err() && !n.enabled());
        let (n, r) = Notifier::from_vars(Some("@encore-test-x"), Some("1000000"), Some("7"), 7);
        assert!(r.is_ok() && n.enabled());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(1)));
        // The watchdog belongs to another process.
        let (n, _) = Notifier::from_vars(Some("/run/x"), Some("1000000"), Some("8"), 7);
        assert_eq!(n.watchdog_interval(), None);
        let (n, _) = Notifier::from_vars(Some("/run/x"), Some("nonsense"), None, 7);
        assert_eq!(n.watchdog_interval(), None);
        // Disabled notifiers accept messages silently.
        assert!(Notifier::default().notify("READY=1").is_ok());
    }

    #[tokio::test]
    async fn abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("encore-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let std_sock = UnixDatagram::bind_addr(&addr).unwrap();
        std_sock.set_nonblocking(true).unwrap();
        let sock = tokio::net::UnixDatagram::from_std(std_sock).unwrap();
        let (n, r) = Notifier::from_vars(Some(&format!("@{name}")), None, None, 1);
        r.unwrap();
        n.notify("STATUS=hello").unwrap();
        assert_eq!(
            recv(&sock, Duration::from_secs(5)).await.as_deref(),
            Some("STATUS=hello")
        );
    }

    #[tokio::test]
    async fn ready_pings_while_healthy_and_stopping() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, path) = bound(dir.path());
        let (n, r) = Notifier::from_vars(Some(&path), Some("200000"), None, 1);
        r.unwrap();
        let n: &'static Notifier = Box::leak(Box::new(n));
        let (ready_tx, ready_rx) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let healthy = Arc::new(AtomicBool::new(true));
        let h = healthy.clone();
        let task = tokio::spawn(supervise(
            n,
            ready_rx,
            shutdown.clone(),
            || "Connected".to_string(),
            move || {
                let ok = h.load(Ordering::SeqCst);
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("test says no".to_string())
                    }
                }
            },
        ));
        // Nothing before ready.
        assert_eq!(recv(&sock, Duration::from_millis(300)).await, None);
        ready_tx.send_replace(true);
        let first = recv(&sock, Duration::from_secs(5)).await.unwrap();
        assert_eq!(first, "READY=1\nSTATUS=Connected");
        for _ in 0..3 {
            assert_eq!(
                recv(&sock, Duration::from_secs(2)).await.as_deref(),
                Some("WATCHDOG=1")
            );
        }
        // Unhealthy: a status line, then no pings.
        healthy.store(false, Ordering::SeqCst);
        let mut got = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_millis(600);
        while let Ok(Some(m)) =
            tokio::time::timeout_at(until, recv(&sock, Duration::from_secs(1))).await
        {
            got.push(m);
        }
        let after_status: Vec<_> = got
            .iter()
            .skip_while(|m| !m.starts_with("STATUS=Unhealthy"))
            .collect();
        assert!(!after_status.is_empty(), "{got:?}");
        assert!(
            after_status.iter().all(|m| m.as_str() != "WATCHDOG=1"),
            "{got:?}"
        );
        healthy.store(true, Ordering::SeqCst);
        assert_eq!(
            recv(&sock, Duration::from_secs(2)).await.as_deref(),
            Some("WATCHDOG=1")
        );
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        let mut last = None;
        while let Some(m) = recv(&sock, Duration::from_millis(200)).await {
            last = Some(m);
        }
        assert_eq!(last.as_deref(), Some("STOPPING=1\nSTATUS=Shutting down"));
    }

    #[tokio::test]
    async fn stopping_without_ever_being_ready() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, path) = bound(dir.path());
        let (n, _) = Notifier::from_vars(Some(&path), None, None, 1);
        let n: &'static Notifier = Box::leak(Box::new(n));
        let (_tx, rx) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(supervise(n, rx, shutdown.clone(), String::new, || async {
            Ok(())
        }));
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(
            recv(&sock, Duration::from_secs(2)).await.as_deref(),
            Some("STOPPING=1\nSTATUS=Shutting down")
        );
    }
}
