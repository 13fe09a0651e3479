//! The systemd side of self-hosting:
//! - `deploy/encore.service` passes `systemd-analyze verify` (any printed warning fails,
//!   except the one about `/usr/local/bin/encore` not being installed on this machine) and
//!   has the settings the deployment relies on; the sysusers entry and the installed config
//!   are valid;
//! - the real binary, run against the Discord emulator with a notify socket the test binds,
//!   sends `READY=1` once the gateway is ready, pings the watchdog, and on SIGTERM sends
//!   `STOPPING=1` and exits 0.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::world::{GUILD, TEXT};
use support::Emulator;
use tokio::io::AsyncReadExt;
use tokio::net::UnixDatagram;

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A tool from systemd; missing tools fail the test with the way to install them.
fn systemd_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed, so deploy/encore.service cannot be checked. \
                 Install it with scripts/deps (Debian/Ubuntu: sudo apt-get install systemd)"
            )
        })
}

/// Runs a command to completion with a deadline; returns (success, stdout + stderr).
fn run_bounded(cmd: &mut std::process::Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn verify(unit: &Path) -> (bool, String) {
    run_bounded(
        std::process::Command::new(systemd_tool("systemd-analyze"))
            .args(["verify", "--man=no"])
            .arg(unit)
            .env("SYSTEMD_LOG_COLOR", "0"),
        Duration::from_secs(60),
    )
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let unit = manifest("deploy/encore.service");
    let (_, text) = verify(&unit);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.contains("/usr/local/bin/encore") && l.contains("is not executable")))
        .collect();
    assert!(
        problems.is_empty(),
        "systemd-analyze verify complained about deploy/encore.service:\n{}",
        problems.join("\n")
    );

    // With ExecStart pointing at the binary just built, it must be silent and exit 0.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&unit).unwrap();
    let exec = "ExecStart=/usr/local/bin/encore ";
    assert!(text.contains(exec), "ExecStart changed; update this test");
    let copy = dir.path().join("encore.service");
    std::fs::write(
        &copy,
        text.replace(
            exec,
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_encore")),
        ),
    )
    .unwrap();
    let (ok, out) = verify(&copy);
    assert!(
        ok && out.trim().is_empty(),
        "verify with the built binary: {out}"
    );

    // The hardening score, where this systemd can compute it offline.
    let analyze = systemd_tool("systemd-analyze");
    let (ok, out) = run_bounded(
        std::process::Command::new(&analyze)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&copy),
        Duration::from_secs(60),
    );
    if ok {
        let score: f32 = out
            .lines()
            .find_map(|l| l.split("Overall exposure level for encore.service:").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
        assert!(score <= 2.0, "exposure level {score} (want <= 2.0):\n{out}");
    }
}

/// The settings the issue and the README rely on, present and not contradicted.
#[test]
fn unit_file_has_the_deployment_settings() {
    let text = std::fs::read_to_string(manifest("deploy/encore.service")).unwrap();
    let values = |key: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    };
    let one = |key: &str| -> String {
        let v = values(key);
        assert_eq!(v.len(), 1, "{key}= should appear once: {v:?}");
        v[0].clone()
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("Restart"), "on-failure");
    assert!(!one("WatchdogSec").is_empty());
    assert_eq!(one("User"), "encore");
    assert_eq!(one("StateDirectory"), "encore");
    assert_eq!(one("EnvironmentFile"), "/etc/encore/encore.env");
    assert!(one("ExecStart").contains("--config /etc/encore/config.toml"));
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictNamespaces", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    let families = one("RestrictAddressFamilies");
    for f in ["AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(families.split_whitespace().any(|x| x == f), "{families}");
    }
    assert!(values("SystemCallFilter").contains(&"@system-service".to_string()));
    // deno's JIT needs writable+executable memory.
    assert!(values("MemoryDenyWriteExecute")
        .iter()
        .all(|v| v != "yes" && v != "true"));
    // The environment points the bot at its state directory.
    assert!(values("Environment").contains(&"ENCORE_DATA_DIR=/var/lib/encore".to_string()));
}

#[test]
fn sysusers_entry_and_installed_config_are_valid() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    for f in ["passwd", "group", "shadow", "gshadow"] {
        std::fs::write(root.path().join("etc").join(f), "").unwrap();
    }
    let entry = std::fs::read_to_string(manifest("deploy/encore.sysusers")).unwrap();
    let mut child = std::process::Command::new(systemd_tool("systemd-sysusers"))
        .arg("--dry-run")
        .arg(format!("--root={}", root.path().display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(entry.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Creating user 'encore'"), "{text}");

    // The config the unit installs parses, and turns the managed yt-dlp on.
    let c = encore::config::Config::from_file(&manifest("deploy/config.toml")).unwrap();
    assert!(c.ytdlp.managed);
    assert_eq!(c.ytdlp.update_interval, Duration::from_secs(86400));
    assert_eq!(c.data.dir, PathBuf::from("/var/lib/encore"));
    // So does the documented example.
    encore::config::Config::from_file(&manifest("config.toml.example"))
        .expect("config.toml.example parses");
}

/// Datagrams from the bot, with a log for failure messages.
struct Notifications {
    sock: UnixDatagram,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Notifications {
    async fn next(&mut self, until: tokio::time::Instant) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout_at(until, self.sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.seen.push(m.clone());
        Some(m)
    }

    async fn wait_for(&mut self, what: &str, within: Duration) -> String {
        let until = tokio::time::Instant::now() + within;
        while let Some(m) = self.next(until).await {
            if m.lines().any(|l| l == what) {
                return m;
            }
        }
        panic!(
            "no {what} within {within:?}; got {:?}\n--- bot stderr ---\n{}",
            self.seen,
            self.stderr.lock().unwrap()
        );
    }
}

fn collect_stderr(child: &mut tokio::process::Child) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let b = buf.clone();
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 8192];
        while let Ok(n) = err.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            b.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_notifies_ready_pings_the_watchdog_and_stops_on_sigterm() {
    let emu = Emulator::start().await;
    emu.add_guild(GUILD, "Test Server");
    emu.add_text_channel(GUILD, TEXT, "general");
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_encore"))
        .arg("run")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("ENCORE_LOG", "info")
        .env("DISCORD_TOKEN", emu.bot_token())
        .env("DISCORD_API_BASE", emu.api_base())
        .env("ENCORE_DATA_DIR", dir.path().join("data"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the encore binary");
    let stderr = collect_stderr(&mut child);
    let mut n = Notifications {
        sock,
        seen: Vec::new(),
        stderr: stderr.clone(),
    };

    let ready = n.wait_for("READY=1", Duration::from_secs(60)).await;
    assert!(ready.contains("STATUS=Connected to Discord"), "{ready}");
    // READY=1 means the gateway is up and the commands are registered.
    assert!(
        !emu.registered_commands().is_empty(),
        "READY=1 came before command registration"
    );
    assert!(
        n.seen[..n.seen.len() - 1]
            .iter()
            .all(|m| !m.contains("WATCHDOG=1")),
        "watchdog pings before READY: {:?}",
        n.seen
    );

    // Pings every WATCHDOG_USEC / 2 = 200 ms.
    let started = Instant::now();
    for _ in 0..4 {
        n.wait_for("WATCHDOG=1", Duration::from_secs(2)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "pings too fast: {:?}",
        started.elapsed()
    );

    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    n.wait_for("STOPPING=1", Duration::from_secs(10)).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the bot exits within 30 s of SIGTERM")
        .unwrap();
    // Nothing after STOPPING=1 but the end.
    let mut after = Vec::new();
    while let Some(m) = n
        .next(tokio::time::Instant::now() + Duration::from_millis(300))
        .await
    {
        after.push(m);
    }
    assert!(
        after.iter().all(|m| !m.contains("WATCHDOG=1")),
        "pings after STOPPING: {after:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = stderr.lock().unwrap().clone();
    assert!(status.success(), "exit status {status:?}\n{log}");
    // Logs off a terminal: no colours, no timestamps (journald adds its own).
    assert!(!log.contains('\u{1b}'), "ANSI escapes in:\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            !line.starts_with(|c: char| c.is_ascii_digit()),
            "timestamped log line: {line}"
        );
    }
}

/// The unit's `IPAddressDeny=` is a second wall around the URL policy: every address the
/// policy refuses (but loopback, where the bot's own egress proxy and systemd-resolved
/// listen) is denied to the whole service, and the public addresses Discord and media hosts
/// use stay reachable.
#[test]
fn unit_denies_the_private_networks_the_url_policy_refuses() {
    use std::net::IpAddr;
    let text = std::fs::read_to_string(manifest("deploy/encore.service")).unwrap();
    let nets = |key: &str| -> Vec<ipnet::IpNet> {
        text.lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .flat_map(|v| v.split_whitespace())
            .flat_map(|w| match w {
                "localhost" => vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
                other => vec![other
                    .parse()
                    .unwrap_or_else(|e| panic!("{key}={other}: {e}"))],
            })
            .collect()
    };
    let (allow, deny) = (nets("IPAddressAllow"), nets("IPAddressDeny"));
    assert!(!deny.is_empty(), "the unit denies nothing");
    // systemd: an address matching IPAddressAllow= is allowed, else one matching
    // IPAddressDeny= is denied, else allowed.
    let denied =
        |ip: IpAddr| !allow.iter().any(|n| n.contains(&ip)) && deny.iter().any(|n| n.contains(&ip));
    let samples = [
        "10.0.0.5",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254", // cloud metadata
        "100.64.0.1",
        "0.0.0.0",
        "192.0.0.8",
        "192.0.2.1",
        "198.18.0.1",
        "224.0.0.251",
        "255.255.255.255",
        "fd00::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
        "2001:0:4136:e378::1",
        "::",
        "127.0.0.1",
        "127.0.0.53",
        "::1",
        "1.1.1.1",
        "8.8.8.8",
        "162.159.128.233", // discord.com
        "142.250.74.78",
        "2606:4700::1111",
        "2a00:1450:4001::200e",
    ];
    for s in samples {
        let ip: IpAddr = s.parse().unwrap();
        let refused = encore::sources::egress::policy::is_forbidden_ip(ip);
        let want = refused && !ip.is_loopback();
        assert_eq!(
            denied(ip),
            want,
            "{s}: the policy {} it, the unit {} it",
            if refused { "refuses" } else { "allows" },
            if denied(ip) { "denies" } else { "allows" }
        );
    }
}
