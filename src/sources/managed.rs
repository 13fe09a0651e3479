//! A yt-dlp the bot keeps for itself (`ytdlp.managed = true`): a Python virtual environment
//! under `ytdlp.venv_dir` (default `<data.dir>/yt-dlp-venv`) with `yt-dlp[default]` and
//! `deno` installed by pip, updated on a schedule and on request.
//!
//! Layout of the directory:
//!
//! ```text
//! yt-dlp-venv/
//!   current  -> v-1767225600-1234-0     the environment in use (a relative symlink)
//!   previous -> v-1764633600-999-0      the one before it, kept for in-flight calls
//!   v-…/                                virtual environments (bin/yt-dlp, bin/deno, …)
//!   last-update-check                   unix time of the last update attempt
//!   .lock                               flock(2): one installer at a time
//! ```
//!
//! The bot always runs `yt-dlp-venv/current/bin/yt-dlp` ([`executable`]), so a
//! [`YtDlp`](super::YtDlp) built once keeps working across updates. An install or update
//! never touches the environment in use: it creates a new one next to it, installs into it,
//! checks that `yt-dlp --version` (and `deno --version`, when installed) work, and only
//! then renames a new `current` symlink over the old one, which is atomic. Any failure
//! removes the half-built environment and leaves `current` alone, so a broken release or an
//! unreachable index keeps the working version. Directories that are neither `current` nor
//! `previous` (older versions, installs interrupted by a crash) are removed.
//!
//! An update first asks pip (`pip list --outdated` in the current environment) whether
//! anything newer exists, so an up-to-date check costs a few index requests, not a
//! download. pip's index options come from `ytdlp.pip_args` (operator-only), which is how
//! the tests install from a local directory with `--no-index --find-links DIR`.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use tokio_util::sync::CancellationToken;

use super::process::{self, ChildKind, RunError, RunOutput};
use super::ProcessStats;
use crate::config::Config;

const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";
const LAST_CHECK: &str = "last-update-check";
const LOCK_FILE: &str = ".lock";

/// The Python used to create environments (looked up on `PATH`).
const PYTHON: &str = "python3";
const VENV_TIMEOUT: Duration = Duration::from_secs(180);
const PIP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const OUTDATED_TIMEOUT: Duration = Duration::from_secs(120);
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);
/// After a failed scheduled update, try again after this long (or the interval, if shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(3600);
const OUTPUT_CAP: usize = 4 * 1024 * 1024;
/// Distributions whose updates alone are no reason to rebuild the environment.
const IGNORED_OUTDATED: &[&str] = &["pip", "setuptools", "wheel"];

/// Serializes installs within this process (the `.lock` file does it across processes).
static OP_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The directory holding the managed environments.
pub fn venv_root(config: &Config) -> PathBuf {
    config
        .ytdlp
        .venv_dir
        .clone()
        .unwrap_or_else(|| config.data.dir.join("yt-dlp-venv"))
}

/// The yt-dlp the bot runs when `ytdlp.managed` is on: `<venv_root>/current/bin/yt-dlp`,
/// made absolute (yt-dlp runs in another working directory).
pub fn executable(config: &Config) -> PathBuf {
    let root = venv_root(config);
    std::path::absolute(&root)
        .unwrap_or(root)
        .join(CURRENT)
        .join("bin")
        .join("yt-dlp")
}

/// What [`ManagedYtDlp::update_now`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Nothing newer was available.
    UpToDate { version: String },
    /// A new environment is in use.
    Updated { from: Option<String>, to: String },
}

impl std::fmt::Display for UpdateOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateOutcome::UpToDate { version } => write!(f, "yt-dlp {version} is up to date"),
            UpdateOutcome::Updated {
                from: Some(old),
                to,
            } => {
                write!(f, "yt-dlp updated from {old} to {to}")
            }
            UpdateOutcome::Updated { from: None, to } => write!(f, "yt-dlp {to} installed"),
        }
    }
}

/// Handle on the managed yt-dlp. Cheap to clone; all clones share the known version.
#[derive(Clone)]
pub struct ManagedYtDlp {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    packages: Vec<String>,
    pip_args: Vec<String>,
    interval: Duration,
    version: Mutex<Option<String>>,
    stats: Arc<ProcessStats>,
}

impl std::fmt::Debug for ManagedYtDlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedYtDlp")
            .field("root", &self.inner.root)
            .field("version", &self.version())
            .finish()
    }
}

impl ManagedYtDlp {
    /// A handle for the configured directory; nothing is read or installed yet.
    pub fn new(config: &Config) -> Self {
        let y = &config.ytdlp;
        ManagedYtDlp {
            inner: Arc::new(Inner {
                root: std::path::absolute(venv_root(config)).unwrap_or_else(|_| venv_root(config)),
                packages: y.packages.clone(),
                pip_args: y.pip_args.clone(),
                interval: y.update_interval,
                version: Mutex::new(None),
                stats: Arc::new(ProcessStats::default()),
            }),
        }
    }

    /// `Some` when `ytdlp.managed` is on.
    pub fn from_config(config: &Config) -> Option<Self> {
        config.ytdlp.managed.then(|| Self::new(config))
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// `<root>/current/bin/yt-dlp`: stable across updates.
    pub fn executable(&self) -> PathBuf {
        self.inner.root.join(CURRENT).join("bin").join("yt-dlp")
    }

    /// The version in use, once [`ensure_installed`](Self::ensure_installed) or an update
    /// has run.
    pub fn version(&self) -> Option<String> {
        self.inner.version.lock().ok().and_then(|v| v.clone())
    }

    fn set_version(&self, v: &str) {
        if let Ok(mut g) = self.inner.version.lock() {
            *g = Some(v.to_owned());
        }
    }

    /// Makes sure a working yt-dlp is installed, installing it on first start (which needs
    /// the package index and takes a minute; systemd is told to wait). Returns its version.
    pub async fn ensure_installed(&self) -> anyhow::Result<String> {
        let _lock = self.lock().await?;
        let root = &self.inner.root;
        match self.probe(CURRENT).await {
            Ok(v) => {
                self.set_version(&v);
                gc(root);
                tracing::info!(version = %v, dir = %root.display(), "managed yt-dlp ready");
                return Ok(v);
            }
            Err(e) if root.join(CURRENT).symlink_metadata().is_ok() => {
                tracing::warn!(error = %format!("{e:#}"), "the managed yt-dlp in use does not work");
                if let (Ok(v), Some(prev)) =
                    (self.probe(PREVIOUS).await, link_target(root, PREVIOUS))
                {
                    // Only `current` moves: the broken environment is then unreferenced
                    // and collected.
                    replace_symlink(root, CURRENT, &prev)
                        .with_context(|| format!("cannot switch back to {prev}"))?;
                    gc(root);
                    self.set_version(&v);
                    tracing::warn!(version = %v, "went back to the previous managed yt-dlp");
                    return Ok(v);
                }
            }
            Err(_) => {}
        }
        let notifier = crate::systemd::notifier();
        notifier.status("Installing yt-dlp (first start)");
        notifier.extend_timeout(VENV_TIMEOUT + PIP_TIMEOUT + VERSION_TIMEOUT);
        tracing::info!(
            dir = %root.display(),
            packages = ?self.inner.packages,
            "installing the managed yt-dlp (first start; this can take a minute)"
        );
        let (id, v) = self
            .install_new()
            .await
            .context("cannot install the managed yt-dlp")?;
        switch(root, &id)?;
        gc(root);
        write_last_check(root);
        self.set_version(&v);
        tracing::info!(version = %v, dir = %root.display(), "managed yt-dlp installed");
        Ok(v)
    }

    /// Updates now if anything newer is available, keeping the version in use when
    /// anything fails (the error says so). For the scheduled task and for an admin asking.
    pub async fn update_now(&self) -> anyhow::Result<UpdateOutcome> {
        let _lock = self.lock().await?;
        let result = self.update_locked().await;
        write_last_check(&self.inner.root);
        match &result {
            Ok(outcome) => tracing::info!("{outcome}"),
            Err(e) => tracing::error!("{e:#}"),
        }
        result
    }

    async fn update_locked(&self) -> anyhow::Result<UpdateOutcome> {
        let root = &self.inner.root;
        let current = self.probe(CURRENT).await.ok();
        if let Some(cur) = &current {
            self.set_version(cur);
            let outdated = self
                .outdated()
                .await
                .with_context(|| format!("cannot check for yt-dlp updates; keeping {cur}"))?;
            if outdated.is_empty() {
                return Ok(UpdateOutcome::UpToDate {
                    version: cur.clone(),
                });
            }
            tracing::info!(?outdated, "updating the managed yt-dlp");
        }
        let (id, v) = self.install_new().await.with_context(|| match &current {
            Some(cur) => format!("yt-dlp update failed; keeping {cur}"),
            None => "cannot install the managed yt-dlp".to_string(),
        })?;
        switch(root, &id)?;
        gc(root);
        self.set_version(&v);
        Ok(UpdateOutcome::Updated {
            from: current,
            to: v,
        })
    }

    /// Runs scheduled updates every `ytdlp.update_interval` (counted from the last attempt,
    /// across restarts) until `shutdown`; an update in progress is killed on shutdown.
    /// Returns at once when the interval is zero.
    pub async fn run_updates(self, shutdown: CancellationToken) {
        let interval = self.inner.interval;
        if interval.is_zero() {
            return;
        }
        let mut wait = read_last_check(&self.inner.root)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|since| interval.saturating_sub(since))
            .unwrap_or(Duration::ZERO);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.update_now() => r,
            };
            wait = match result {
                Ok(_) => interval,
                Err(_) => interval.min(RETRY_AFTER_FAILURE),
            };
        }
    }

    /// `yt-dlp --version` of `<root>/<link>/bin/yt-dlp`.
    async fn probe(&self, link: &str) -> anyhow::Result<String> {
        let exe = self.inner.root.join(link).join("bin").join("yt-dlp");
        if !exe.exists() {
            return Err(anyhow!("{} does not exist", exe.display()));
        }
        self.version_of(&exe).await
    }

    async fn version_of(&self, exe: &Path) -> anyhow::Result<String> {
        let out = self
            .run(exe, &["--ignore-config", "--version"], VERSION_TIMEOUT)
            .await?;
        let v = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        if !out.status.success() || v.is_empty() {
            return Err(anyhow!(
                "`{} --version` failed ({}): {}",
                exe.display(),
                out.status,
                tail(&out.stderr)
            ));
        }
        Ok(v)
    }

    /// Distributions in the current environment that have a newer release, as
    /// `name old -> new`.
    async fn outdated(&self) -> anyhow::Result<Vec<String>> {
        let python = self.inner.root.join(CURRENT).join("bin").join("python");
        let mut args: Vec<&str> = vec![
            "-m",
            "pip",
            "list",
            "--outdated",
            "--format=json",
            "--disable-pip-version-check",
            "--no-input",
        ];
        args.extend(self.inner.pip_args.iter().map(String::as_str));
        let out = self.run(&python, &args, OUTDATED_TIMEOUT).await?;
        if !out.status.success() {
            return Err(anyhow!("pip list --outdated failed: {}", tail(&out.stderr)));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some(line) = stderr.lines().find(|l| {
            [
                "Could not fetch",
                "Retrying",
                "is ignored",
                "Failed to establish",
                "ERROR",
            ]
            .iter()
            .any(|m| l.contains(m))
        }) {
            return Err(anyhow!("the package index did not answer: {}", line.trim()));
        }
        #[derive(serde::Deserialize)]
        struct Row {
            name: String,
            version: String,
            latest_version: String,
        }
        let rows: Vec<Row> = serde_json::from_slice(&out.stdout)
            .map_err(|e| anyhow!("pip list printed something unexpected: {e}"))?;
        Ok(rows
            .into_iter()
            .filter(|r| !IGNORED_OUTDATED.contains(&normalize(&r.name).as_str()))
            .map(|r| format!("{} {} -> {}", r.name, r.version, r.latest_version))
            .collect())
    }

    /// Builds a complete new environment next to the current one; returns its directory
    /// name and yt-dlp version. On failure nothing of it is left behind.
    async fn install_new(&self) -> anyhow::Result<(String, String)> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let root = &self.inner.root;
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let id = format!(
            "v-{}-{}-{}",
            unix_now(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = root.join(&id);
        let result = self.build(&dir).await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result.map(|v| (id, v))
    }

    async fn build(&self, dir: &Path) -> anyhow::Result<String> {
        let dir_s = dir
            .to_str()
            .context("the venv directory is not valid UTF-8")?;
        let out = self
            .run(Path::new(PYTHON), &["-m", "venv", dir_s], VENV_TIMEOUT)
            .await
            .map_err(|e| {
                e.context("python3 is needed for ytdlp.managed (Debian: apt install python3 python3-venv)")
            })?;
        if !out.status.success() {
            return Err(anyhow!(
                "python3 -m venv failed: {} (Debian: apt install python3-venv)",
                tail(&out.stderr)
            ));
        }
        let mut args: Vec<&str> = vec![
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--upgrade",
        ];
        args.extend(self.inner.pip_args.iter().map(String::as_str));
        args.push("--");
        args.extend(self.inner.packages.iter().map(String::as_str));
        let out = self
            .run(&dir.join("bin").join("python"), &args, PIP_TIMEOUT)
            .await?;
        if !out.status.success() {
            tracing::warn!(stderr = %String::from_utf8_lossy(&out.stderr), "pip install failed");
            return Err(anyhow!("pip install failed: {}", tail(&out.stderr)));
        }
        let version = self.version_of(&dir.join("bin").join("yt-dlp")).await?;
        let deno = dir.join("bin").join("deno");
        if deno.exists() {
            let out = self.run(&deno, &["--version"], VERSION_TIMEOUT).await?;
            if !out.status.success() {
                return Err(anyhow!(
                    "the installed deno does not run: {}",
                    tail(&out.stderr)
                ));
            }
        }
        Ok(version)
    }

    async fn run(
        &self,
        program: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<RunOutput> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let cwd = &self.inner.root;
        std::fs::create_dir_all(cwd).with_context(|| format!("cannot create {}", cwd.display()))?;
        tracing::debug!(program = %program.display(), ?args, "running");
        match process::run(
            program,
            &args,
            ChildKind::Tool,
            cwd,
            timeout,
            OUTPUT_CAP,
            &self.inner.stats,
        )
        .await
        {
            Ok(out) => Ok(out),
            Err(RunError::Spawn(e)) if e.kind() == io::ErrorKind::NotFound => {
                Err(anyhow!("{} not found", program.display()))
            }
            Err(RunError::Spawn(e)) => Err(anyhow!("cannot start {}: {e}", program.display())),
            Err(RunError::TimedOut) => Err(anyhow!(
                "{} took longer than {} and was stopped",
                program.display(),
                humantime::format_duration(timeout)
            )),
            Err(RunError::StdoutTooLarge) => {
                Err(anyhow!("{} printed too much output", program.display()))
            }
            Err(RunError::Io(e)) => Err(anyhow!("running {}: {e}", program.display())),
        }
    }

    /// Takes the in-process lock, then the directory's `.lock` (polling, so that waiting
    /// stays cancellable).
    async fn lock(&self) -> anyhow::Result<(tokio::sync::MutexGuard<'static, ()>, std::fs::File)> {
        let guard = OP_LOCK.lock().await;
        let root = &self.inner.root;
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK_FILE))
            .with_context(|| format!("cannot open {}", root.join(LOCK_FILE).display()))?;
        let mut warned = false;
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok((guard, file));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(anyhow!("cannot lock {}: {e}", root.display()));
            }
            if !warned {
                tracing::info!(dir = %root.display(), "another process is installing yt-dlp; waiting");
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// pip's name normalization (PEP 503).
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// The last few meaningful lines of a process's stderr, on one line.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("[notice]"))
        .collect();
    let start = lines.len().saturating_sub(4);
    let s = lines[start..].join(" / ");
    if s.is_empty() {
        "no error output".into()
    } else if s.chars().count() > 600 {
        s.chars().skip(s.chars().count() - 600).collect()
    } else {
        s
    }
}

fn link_target(root: &Path, link: &str) -> Option<String> {
    std::fs::read_link(root.join(link))
        .ok()?
        .file_name()?
        .to_str()
        .map(str::to_owned)
}

/// Points `current` at `id` (atomically: a new symlink renamed over the old one) and
/// `previous` at what `current` was.
fn switch(root: &Path, id: &str) -> anyhow::Result<()> {
    let old = link_target(root, CURRENT);
    replace_symlink(root, CURRENT, id)
        .with_context(|| format!("cannot switch {} to {id}", root.join(CURRENT).display()))?;
    if let Some(old) = old.filter(|o| o != id) {
        replace_symlink(root, PREVIOUS, &old)
            .with_context(|| format!("cannot update {}", root.join(PREVIOUS).display()))?;
    }
    if let Ok(d) = std::fs::File::open(root) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn replace_symlink(root: &Path, name: &str, target: &str) -> io::Result<()> {
    let tmp = root.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, root.join(name))
}

/// Removes environments that are neither `current` nor `previous`, and stale temporaries.
/// Call with the lock held.
fn gc(root: &Path) {
    let keep: Vec<String> = [CURRENT, PREVIOUS]
        .iter()
        .filter_map(|l| link_target(root, l))
        .collect();
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with("v-") && !keep.contains(&name) {
            tracing::debug!(dir = %path.display(), "removing an old yt-dlp environment");
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(dir = %path.display(), error = %e, "cannot remove an old yt-dlp environment");
            }
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn write_last_check(root: &Path) {
    let path = root.join(LAST_CHECK);
    if let Err(e) = std::fs::write(&path, format!("{}\n", unix_now())) {
        tracing::warn!(file = %path.display(), error = %e, "cannot record the update time");
    }
}

fn read_last_check(root: &Path) -> Option<SystemTime> {
    let s = std::fs::read_to_string(root.join(LAST_CHECK)).ok()?;
    let secs: u64 = s.trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let mut c = Config::default();
        c.data.dir = PathBuf::from("/var/lib/encore");
        assert_eq!(
            executable(&c),
            PathBuf::from("/var/lib/encore/yt-dlp-venv/current/bin/yt-dlp")
        );
        c.ytdlp.venv_dir = Some(PathBuf::from("/opt/ytdlp"));
        assert_eq!(
            executable(&c),
            PathBuf::from("/opt/ytdlp/current/bin/yt-dlp")
        );
        assert!(ManagedYtDlp::from_config(&c).is_none());
        c.ytdlp.managed = true;
        let m = ManagedYtDlp::from_config(&c).unwrap();
        assert_eq!(m.executable(), executable(&c));
    }

    #[test]
    fn switching_keeps_one_previous_and_collects_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for v in ["v-1", "v-2", "v-3", "v-crashed"] {
            std::fs::create_dir_all(root.join(v).join("bin")).unwrap();
        }
        switch(root, "v-1").unwrap();
        assert_eq!(link_target(root, CURRENT).as_deref(), Some("v-1"));
        assert_eq!(link_target(root, PREVIOUS), None);
        switch(root, "v-2").unwrap();
        switch(root, "v-3").unwrap();
        assert_eq!(link_target(root, CURRENT).as_deref(), Some("v-3"));
        assert_eq!(link_target(root, PREVIOUS).as_deref(), Some("v-2"));
        std::os::unix::fs::symlink("v-1", root.join(".current.tmp")).unwrap();
        gc(root);
        let mut left: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["current", "previous", "v-2", "v-3"]);
        assert!(root.join("current/bin").is_dir());
    }

    #[test]
    fn helpers() {
        assert_eq!(normalize("Yt_Dlp.ejs"), "yt-dlp-ejs");
        assert_eq!(tail(b""), "no error output");
        assert_eq!(
            tail(b"a\n\n[notice] new pip\nb\nc\nd\ne\n"),
            "b / c / d / e"
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(read_last_check(dir.path()).is_none());
        write_last_check(dir.path());
        let t = read_last_check(dir.path()).unwrap();
        assert!(SystemTime::now().duration_since(t).unwrap() < Duration::from_secs(5));
        assert_eq!(
            UpdateOutcome::Updated {
                from: Some("1".into()),
                to: "2".into()
            }
            .to_string(),
            "yt-dlp updated from 1 to 2"
        );
    }
}
