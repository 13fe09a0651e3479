//! The bot under test as a child process (the `encore` binary, exactly as deployed), the
//! emulated worlds it is pointed at, and bounded helpers to drive it.
//!
//! Child-process mode keeps the bot's figures clean: its CPU, RSS, threads and descriptors are
//! read from `/proc/<pid>`, while the emulator (which decrypts every frame) runs in this
//! process and is reported separately.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{Emulator, Reply, ReplySource};
use crate::sys;

/// What every bot of one benchmark run shares.
#[derive(Clone)]
pub struct Env {
    /// The `encore` binary.
    pub exe: PathBuf,
    /// A `data.dir` with the audio cache filled: every bot starts from a copy of it (a
    /// bot saves its queues on the way out and would resume them in the next one).
    pub data_dir: PathBuf,
    pub ytdlp: PathBuf,
    /// Scratch space: config files, logs, working directory.
    pub work: PathBuf,
}

/// A running bot. Dropping it kills the process (SIGKILL) if [`Bot::stop`] was not called.
pub struct Bot {
    child: Option<Child>,
    pub pid: u32,
    pub log: PathBuf,
    /// This bot's own copy of the data directory.
    pub data_dir: PathBuf,
}

/// Copies `from` into `to`: files copied, except the audio files, which are hard-linked.
fn clone_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type()?;
        if ty.is_dir() {
            clone_dir(&src, &dst)?;
        } else if ty.is_file() {
            let linked = src.extension().is_some_and(|x| x == "webm")
                && std::fs::hard_link(&src, &dst).is_ok();
            if !linked {
                std::fs::copy(&src, &dst)?;
            }
        }
    }
    Ok(())
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A node of a cluster (part 6): the PostgreSQL database every node shares, and its
/// `[cluster]` settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub database: String,
    pub node_name: String,
    pub lease: Duration,
}

impl Bot {
    /// Starts `encore run` against `emu` with `default_volume = volume`; no timeouts that
    /// would make it leave a call during a measurement.
    pub fn spawn(env: &Env, emu: &Emulator, volume: u16, name: &str) -> anyhow::Result<Bot> {
        Bot::spawn_with(env, emu, volume, name, None)
    }

    /// [`Bot::spawn`] as a node of a cluster: `data.database` is the shared PostgreSQL
    /// database and `discord.shards` stays `auto`, so the node leases its shards there.
    pub fn spawn_node(
        env: &Env,
        emu: &Emulator,
        volume: u16,
        name: &str,
        node: &NodeConfig,
    ) -> anyhow::Result<Bot> {
        Bot::spawn_with(env, emu, volume, name, Some(node))
    }

    fn spawn_with(
        env: &Env,
        emu: &Emulator,
        volume: u16,
        name: &str,
        node: Option<&NodeConfig>,
    ) -> anyhow::Result<Bot> {
        let data_dir = env.work.join(format!("{name}-data"));
        let _ = std::fs::remove_dir_all(&data_dir);
        clone_dir(&env.data_dir, &data_dir)?;
        let config = env.work.join(format!("{name}.toml"));
        let (database, cluster) = match node {
            Some(n) => (
                format!("database = {}\n", toml_str(&n.database)),
                format!(
                    "\n[cluster]\nlease = \"{}ms\"\nnode_name = {}\n",
                    n.lease.as_millis(),
                    toml_str(&n.node_name)
                ),
            ),
            None => (String::new(), String::new()),
        };
        let text = format!(
            "[data]\ndir = {}\n{database}\n[ytdlp]\npath = {}\nallow_private_hosts = true\n\
             max_duration = \"0s\"\n\n\
             [player]\ndefault_volume = {volume}\n\n[limits]\nmax_calls = 100000\n\
             max_lookups_per_member = 100000\n\n\
             [lifecycle]\nidle_timeout = \"0s\"\nalone_timeout = \"0s\"\npause_timeout = \"0s\"\n\n\
             [log]\nlevel = \"warn\"\n{cluster}",
            toml_str(&data_dir.to_string_lossy()),
            toml_str(&env.ytdlp.to_string_lossy()),
        );
        std::fs::write(&config, text)?;
        let log = env.work.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&env.exe);
        cmd.arg("--config")
            .arg(&config)
            .arg("run")
            .current_dir(&env.work)
            .env("DISCORD_TOKEN", emu.bot_token())
            .env("DISCORD_API_BASE", emu.api_base())
            .env("RUST_LOG", "warn")
            .env_remove("ENCORE_LOG")
            // The config file says where the data is and which shards to run; an
            // operator's environment must not redirect a bot under test.
            .env_remove("ENCORE_DATA_DIR")
            .env_remove("ENCORE_DATABASE")
            .env_remove("ENCORE_SHARDS")
            .env_remove("ENCORE_YTDLP_PATH")
            .env_remove("ENCORE_ALLOW_PRIVATE_HOSTS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: prctl is async-signal-safe. If this benchmark dies, the bot dies with it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(Bot {
            pid: child.id(),
            child: Some(child),
            log,
            data_dir,
        })
    }

    pub fn usage(&self) -> sys::ProcessUsage {
        sys::process_usage(Some(self.pid))
    }

    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// The last lines of the bot's log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the bot identified and registered its commands (bounded).
    pub async fn wait_ready(&mut self, emu: &Emulator, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if emu.gateway_connected() && emu.registration_count() > 0 {
                return Ok(());
            }
            if self.exited() {
                anyhow::bail!("the bot exited during start-up:\n{}", self.log_tail(20));
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "the bot was not ready after {timeout:?}:\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as when its machine dies: no shutdown code runs. Waits for the process and
    /// removes its data directory.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// SIGTERM (the bot leaves its calls and closes cleanly), SIGKILL after `grace`.
    /// Returns how long the clean stop took, or `None` if it had to be killed.
    pub async fn stop(mut self, grace: Duration) -> Option<Duration> {
        let mut child = self.child.take()?;
        let t0 = Instant::now();
        let data_dir = self.data_dir.clone();
        let _cleanup = Cleanup(data_dir);
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        while t0.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

/// Removes a stopped bot's data directory.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------------ emulated worlds

/// Ids of guild `i`: a voice channel with one listener in it, a text channel, and (guild 0
/// only) an admin who may use `/resources`.
#[derive(Clone, Copy, Debug)]
pub struct G {
    pub guild: u64,
    pub voice: u64,
    pub text: u64,
    pub listener: u64,
}

pub const ADMIN: u64 = 1_500_000_000_000_000_001;

pub fn ids(i: usize) -> G {
    let base = 1_600_000_000_000_000_000 + (i as u64) * 10;
    G {
        guild: base,
        voice: base + 1,
        text: base + 2,
        listener: base + 3,
    }
}

/// Adds `n` guilds to the emulator (before the bot connects: READY then lists them all).
pub async fn populate(emu: &Emulator, n: usize) -> Vec<G> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let g = ids(i);
        emu.add_guild(g.guild, &format!("bench {i}"));
        emu.add_voice_channel(g.guild, g.voice, "music");
        emu.add_text_channel(g.guild, g.text, "general");
        emu.add_member(g.guild, g.listener, &format!("listener{i}"), false, false);
        if i == 0 {
            emu.add_member(g.guild, ADMIN, "admin", false, true);
        }
        emu.user_join_voice(g.guild, g.listener, g.voice).await;
        out.push(g);
    }
    out
}

/// Frames the emulator received from the bot in `guild` (DAVE, plain and silence frames;
/// counted without decoding when `set_decode_audio(false)`).
pub fn frames(emu: &Emulator, guild: u64) -> u64 {
    let s = emu.dave_stats(guild);
    (s.frames_encrypted + s.frames_plain + s.frames_silence) as u64
}

/// Sends a slash command and waits (bounded) for its visible answer, like
/// `Interaction::response` but returning an error instead of panicking.
pub async fn command(
    emu: &Emulator,
    g: &G,
    user: u64,
    name: &str,
    options: Value,
    timeout: Duration,
) -> Result<Reply, String> {
    let ix = emu.command(g.guild, g.text, user, name, options).await;
    let deadline = Instant::now() + timeout;
    loop {
        let found = match ix.callback_type() {
            Some(4 | 7) => ix.replies().into_iter().next(),
            Some(5 | 6) => ix
                .replies()
                .into_iter()
                .find(|r| matches!(r.source, ReplySource::Followup | ReplySource::EditOriginal)),
            _ => None,
        };
        if let Some(r) = found {
            return Ok(r);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "/{name} in guild {}: no answer within {timeout:?} (callback {:?}, errors {:?})",
                g.guild,
                ix.callback_type(),
                ix.errors()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn play(emu: &Emulator, g: &G, url: &str, timeout: Duration) -> Result<Reply, String> {
    let r = command(
        emu,
        g,
        g.listener,
        "play",
        json!([{"name": "query", "type": 3, "value": url}]),
        timeout,
    )
    .await?;
    expect(r, "Playing", "play", g)
}

/// Checks an answer starts with `word` (the bot's errors are private and say why).
pub fn expect(r: Reply, word: &str, what: &str, g: &G) -> Result<Reply, String> {
    let text = r.text();
    if text.starts_with(word) {
        Ok(r)
    } else {
        Err(format!("/{what} in guild {}: {text:?}", g.guild))
    }
}

/// Polls `cond` every 5 ms until it holds (true) or `timeout` passes (false).
pub async fn until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What `/resources` said (the bot's own view: tokio tasks, mixer).
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub tokio_tasks: Option<u64>,
    pub mixer_live: Option<u64>,
    pub mixer_threads: Option<u64>,
    pub mixer_us_per_cycle: Option<f64>,
}

/// Runs `/resources` as the admin of guild 0 and reads its figures.
pub async fn resources(emu: &Emulator, timeout: Duration) -> Result<Resources, String> {
    let g = ids(0);
    let r = command(emu, &g, ADMIN, "resources", json!([]), timeout).await?;
    let text = r.text();
    let mut out = Resources::default();
    let words: Vec<&str> = text.split_whitespace().collect();
    let before = |i: usize| -> Option<f64> {
        words
            .get(i.checked_sub(1)?)?
            .trim_start_matches('(')
            .parse::<f64>()
            .ok()
    };
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or("");
        match (*w, next) {
            ("tokio", "tasks") => out.tokio_tasks = before(i).map(|v| v as u64),
            ("live", "on") => out.mixer_live = before(i).map(|v| v as u64),
            ("threads", "·") if words.get(i + 3).is_some_and(|w| w.starts_with("µs")) => {
                out.mixer_threads = before(i).map(|v| v as u64);
                out.mixer_us_per_cycle = words.get(i + 2).and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Kills (by pid) anything still running that mentions `dir` on its command line: yt-dlp
/// processes of a bot that had to be killed. Returns how many there were.
pub fn reap_strays(dir: &Path) -> usize {
    let pids = sys::processes_mentioning(&dir.to_string_lossy());
    for p in &pids {
        // SAFETY: signalling a process we identified by its command line.
        unsafe {
            libc::kill(*p as i32, libc::SIGKILL);
        }
    }
    pids.len()
}
