//! A private PostgreSQL server for one test run: the unit tests (`db::testutil`) and the
//! integration tests (`tests/support/postgres.rs`, which includes this file) start it on
//! first use and it goes away with the test process.
//!
//! Why not a shared server: tests must not depend on the machine's setup, must not touch
//! anything of the host's, and must run as any user. So this runs Debian's `initdb` and
//! `postgres` binaries into a temporary directory, listening on 127.0.0.1 on a free port
//! (and a Unix socket in that directory), as an unprivileged user when the tests run as
//! root (PostgreSQL refuses to run as root). Every test then gets a database of its own.
//!
//! The server stops when the test process exits: an `atexit` hook sends it SIGQUIT
//! (immediate shutdown) and removes its directory, and the kernel's parent-death signal
//! covers a process that dies without running it (a panic that aborts, a SIGKILL).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a test prints when the server binaries are missing.
pub const INSTALL_HINT: &str = "these tests need PostgreSQL's server binaries (initdb, postgres, \
     pg_isready): run `scripts/deps` (it installs Debian's `postgresql`), or set ENCORE_PG_BIN \
     to the directory that holds them";

/// The running server.
pub struct Server {
    pub port: u16,
    pid: u32,
    dir: PathBuf,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The test run's server, started on first use. Panics (failing the test) with what to
/// install when PostgreSQL is missing or will not start.
pub fn server() -> &'static Server {
    match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("cannot start a private PostgreSQL server: {e}"),
    }
}

impl Server {
    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://encore@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database for one test and returns its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection as _;
        let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        self.url(&name)
    }
}

/// Where `initdb` and `postgres` are: `ENCORE_PG_BIN`, else Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, else `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(d) = std::env::var_os("ENCORE_PG_BIN").map(PathBuf::from) {
        return has(&d).then_some(d);
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has(&bin).then_some((v, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, d)) = debian.pop() {
        return Some(d);
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| has(d))
}

/// The user to run the server as: ourselves, or `postgres` (else `nobody`) when root.
fn server_user() -> Option<(libc::uid_t, libc::gid_t)> {
    // SAFETY: plain libc calls; getpwnam's result is read before any other call could
    // overwrite its static buffer (this runs once, under the OnceLock).
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        for name in [c"postgres", c"nobody"] {
            let pw = libc::getpwnam(name.as_ptr());
            if !pw.is_null() {
                return Some(((*pw).pw_uid, (*pw).pw_gid));
            }
        }
    }
    Some((65534, 65534))
}

/// A command that runs as `user` (when given) and gets SIGQUIT when the thread that
/// started it ends.
fn command(program: PathBuf, user: Option<(libc::uid_t, libc::gid_t)>, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env_remove("PGDATA")
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = user {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After the uid change, which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    cmd
}

fn start() -> Result<Server, String> {
    let bin = bin_dir().ok_or_else(|| INSTALL_HINT.to_string())?;
    let user = server_user();
    let dir = std::env::temp_dir().join(format!("encore-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain libc calls on a path we own.
    unsafe {
        libc::chmod(c_dir.as_ptr(), 0o700);
        if let Some((uid, gid)) = user {
            libc::chown(c_dir.as_ptr(), uid, gid);
        }
    }
    let data = dir.join("data");
    let init = command(bin.join("initdb"), user, &dir)
        .arg("-D")
        .arg(&data)
        .args(["-U", "encore", "--auth=trust", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync")
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut cmd = command(bin.join("postgres"), user, &dir);
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
        .arg(&dir)
        // A throwaway server: durability buys nothing, speed does.
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // The parent-death signal fires when the *thread* that forked ends, so the server is
    // started from a thread that lives as long as the server does (it waits on it).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(format!("cannot start postgres: {e}")));
            }
        })
        .map_err(|e| e.to_string())?;
    let pid = rx.recv().map_err(|e| e.to_string())??;
    let server = Server { port, pid, dir };
    STOP.get_or_init(|| (pid, server.dir.clone()));
    // SAFETY: registers a plain extern "C" function.
    unsafe {
        libc::atexit(stop_at_exit);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "encore",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(server);
        }
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(server.pid as i32, 0) } == 0;
        if !alive || Instant::now() > deadline {
            let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
            return Err(format!("postgres did not become ready:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

static STOP: OnceLock<(u32, PathBuf)> = OnceLock::new();

extern "C" fn stop_at_exit() {
    let Some((pid, dir)) = STOP.get() else { return };
    // SAFETY: signals a process this test run started.
    unsafe {
        libc::kill(*pid as i32, libc::SIGQUIT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: signal 0 only checks that the process exists.
    while unsafe { libc::kill(*pid as i32, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(dir);
}
