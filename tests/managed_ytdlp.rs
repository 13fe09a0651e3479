//! The managed yt-dlp (`ytdlp.managed = true`), with no network: the "package index" is a
//! local directory (`pip_args = ["--no-index", "--find-links", DIR]`) holding fake `yt-dlp`
//! and `deno` wheels built here. The fake yt-dlp prints its version and answers `-j` with
//! the URL it was given (so the bot streams the real file), and names its version in the
//! title, which shows which environment resolved a track.
//!
//! - first start of the real binary creates the environment, logs the version, says it in
//!   systemd's STATUS, and the bot plays a local URL resolved with it; a second start reuses
//!   it;
//! - failed updates (an index that has nothing, a release that cannot be built, a release
//!   that installs but does not run) keep the working version; a good release is switched
//!   to atomically; scheduled updates run and stop with shutdown.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use encore::config::Config;
use encore::sources::managed::{ManagedYtDlp, UpdateOutcome};
use encore::sources::Query;
use serde_json::json;
use support::world::{ANN, GUILD, MUSIC, TEXT};
use support::*;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

const WHEEL_BUILDER: &str = r#"
import base64, hashlib, io, json, os, sys, tarfile, zipfile
spec = json.load(sys.stdin)
name, version, out = spec["name"], spec["version"], spec["out"]
dist = name.replace("-", "_")
if spec["kind"] == "wheel":
    files = {p: s.encode() for p, s in spec.get("files", {}).items()}
    di = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Provides-Extra: {e}\n" for e in spec.get("extras", []))
    meta += "".join(f"Requires-Dist: {r}\n" for r in spec.get("requires", []))
    files[f"{di}/METADATA"] = meta.encode()
    files[f"{di}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: encore-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    scripts = spec.get("scripts", {})
    if scripts:
        files[f"{di}/entry_points.txt"] = ("[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())).encode()
    record = ""
    for p, b in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()
        record += f"{p},sha256={h},{len(b)}\n"
    record += f"{di}/RECORD,,\n"
    files[f"{di}/RECORD"] = record.encode()
    path = os.path.join(out, f"{dist}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for p, b in files.items():
            z.writestr(p, b)
else:
    base = f"{dist}-{version}"
    files = {
        f"{base}/pyproject.toml": f'[build-system]\nrequires = []\nbuild-backend = "failing_backend"\nbackend-path = ["."]\n\n[project]\nname = "{name}"\nversion = "{version}"\n',
        f"{base}/failing_backend.py": spec.get("backend_prelude", "") + "def _fail(*a, **k):\n    raise RuntimeError('this release cannot be built')\n\nget_requires_for_build_wheel = prepare_metadata_for_build_wheel = build_wheel = build_sdist = _fail\n",
        f"{base}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    path = os.path.join(out, f"{base}.tar.gz")
    with tarfile.open(path, "w:gz") as t:
        for p, s in files.items():
            b = s.encode()
            ti = tarfile.TarInfo(p)
            ti.size = len(b)
            t.addfile(ti, io.BytesIO(b))
print(path)
"#;

fn fake_ytdlp_source(version: &str, broken: bool) -> String {
    format!(
        r#"import json, sys, urllib.request
VERSION = "{version}"
BROKEN = {broken}

def main():
    args = sys.argv[1:]
    if BROKEN:
        sys.stderr.write("fake yt-dlp " + VERSION + ": ImportError: this release is broken\n")
        return 1
    if "--version" in args:
        print(VERSION)
        return 0
    if "--load-info-json" in args:
        info = json.load(open(args[args.index("--load-info-json") + 1]))
        urllib.request.urlretrieve(info["url"], args[args.index("-o") + 1])
        return 0
    if "-j" in args or "-J" in args:
        url = args[args.index("--") + 1]
        name = url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        print(json.dumps({{"id": name, "title": name + " via yt-dlp " + VERSION, "url": url,
            "webpage_url": url, "original_url": url, "ext": "wav", "acodec": "pcm_s16le",
            "vcodec": "none", "duration": 3.0, "extractor_key": "Generic",
            "extractor": "generic", "protocol": "http"}}))
        return 0
    sys.stderr.write("fake yt-dlp: unsupported arguments %r\n" % (args,))
    return 2
"#,
        broken = if broken { "True" } else { "False" }
    )
}

const FAKE_DENO: &str = r#"import sys

def main():
    if "--version" in sys.argv:
        print("deno 2.5.0 (stable, release, x86_64-unknown-linux-gnu)")
        return 0
    return 1
"#;

fn python3() -> &'static str {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import venv, ensurepip, zipfile"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with the venv module is needed (Debian: apt-get install python3 python3-venv; or run scripts/deps)"
    );
    "python3"
}

fn build(spec: serde_json::Value) -> PathBuf {
    use std::io::Write;
    let mut child = std::process::Command::new(python3())
        .args(["-c", WHEEL_BUILDER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "wheel builder: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn ytdlp_wheel(dir: &Path, version: &str, broken: bool) -> PathBuf {
    build(json!({
        "kind": "wheel", "name": "yt-dlp", "version": version, "out": dir,
        "extras": ["default"],
        "files": {"fake_yt_dlp.py": fake_ytdlp_source(version, broken)},
        "scripts": {"yt-dlp": "fake_yt_dlp:main"},
    }))
}

fn deno_wheel(dir: &Path) -> PathBuf {
    build(json!({
        "kind": "wheel", "name": "deno", "version": "2.5.0", "out": dir,
        "files": {"fake_deno.py": FAKE_DENO},
        "scripts": {"deno": "fake_deno:main"},
    }))
}

fn failing_sdist(dir: &Path, version: &str) -> PathBuf {
    build(json!({"kind": "sdist", "name": "yt-dlp", "version": version, "out": dir}))
}

/// Python that writes the environment and command line of the process running it to a new
/// JSON file in `dir`: as a `.pth` line it runs in every Python started in the environment
/// (pip, yt-dlp, the fake deno), as a build backend's first lines it runs where pip builds.
fn env_dump_python(dir: &Path) -> String {
    format!(
        "import json, os; f = open(os.path.join({dir:?}, 'env-%d.json' % os.getpid()), 'w'); \
         json.dump({{'argv': open('/proc/self/cmdline', 'rb').read().decode(errors='replace').split(chr(0)), \
         'env': dict(os.environ)}}, f); f.close()\n",
        dir = dir.to_str().unwrap()
    )
}

fn config(data: &Path, wheels: &Path) -> Config {
    let mut c = Config::default();
    c.data.dir = data.to_path_buf();
    c.ytdlp.managed = true;
    c.ytdlp.allow_private_hosts = true;
    c.ytdlp.pip_args = vec![
        "--no-index".into(),
        "--find-links".into(),
        wheels.to_str().unwrap().into(),
    ];
    c
}

fn environments(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("v-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn link(root: &Path, name: &str) -> Option<String> {
    std::fs::read_link(root.join(name))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Resolves `url` the way the bot does (`app::ytdlp`), returning the title.
async fn resolve_title(config: &Config, url: &str) -> String {
    let y = encore::app::ytdlp(config);
    let q = Query::Url(url::Url::parse(url).unwrap());
    y.resolve(&q).await.expect("resolve").title
}

const BUILD_LIMIT: Duration = Duration::from_secs(300);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BUILD_LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {BUILD_LIMIT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_updates_keep_the_working_version_and_good_ones_switch() {
    let dir = tempfile::tempdir().unwrap();
    let wheels = dir.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let data = dir.path().join("data");
    let cfg = config(&data, &wheels);
    let url = "http://127.0.0.1:9/media/low.wav";

    // An index without the packages: the install fails and leaves nothing behind.
    let m = ManagedYtDlp::new(&cfg);
    let err = bounded("a failing first install", m.ensure_installed())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("cannot install the managed yt-dlp"), "{msg}");
    assert!(msg.contains("pip install failed"), "{msg}");
    assert!(environments(m.root()).is_empty());
    assert!(link(m.root(), "current").is_none());

    // First install.
    ytdlp_wheel(&wheels, "2030.1.1", false);
    deno_wheel(&wheels);
    let v = bounded("the first install", m.ensure_installed())
        .await
        .unwrap();
    assert_eq!(v, "2030.1.1");
    assert_eq!(m.version().as_deref(), Some("2030.1.1"));
    assert!(m.root().join("current/bin/deno").exists());
    assert_eq!(environments(m.root()).len(), 1);
    assert_eq!(resolve_title(&cfg, url).await, "low via yt-dlp 2030.1.1");
    let first = link(m.root(), "current").unwrap();
    // Nothing newer: up to date, nothing rebuilt.
    assert_eq!(
        bounded("an up-to-date check", m.update_now())
            .await
            .unwrap(),
        UpdateOutcome::UpToDate {
            version: "2030.1.1".into()
        }
    );
    assert_eq!(link(m.root(), "current").unwrap(), first);

    // A newer release that cannot be built.
    failing_sdist(&wheels, "2030.2.1");
    let err = bounded("a failing update", m.update_now())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("yt-dlp update failed; keeping 2030.1.1"),
        "{msg}"
    );
    assert_eq!(link(m.root(), "current").unwrap(), first);
    assert_eq!(environments(m.root()), vec![first.clone()]);
    assert_eq!(resolve_title(&cfg, url).await, "low via yt-dlp 2030.1.1");

    // A newer release that installs but does not run.
    ytdlp_wheel(&wheels, "2030.3.1", true);
    let err = bounded("a broken update", m.update_now())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("keeping 2030.1.1"), "{msg}");
    assert!(msg.contains("this release is broken"), "{msg}");
    assert_eq!(link(m.root(), "current").unwrap(), first);
    assert_eq!(environments(m.root()), vec![first.clone()]);
    assert_eq!(m.version().as_deref(), Some("2030.1.1"));
    assert_eq!(resolve_title(&cfg, url).await, "low via yt-dlp 2030.1.1");

    // A good release: switched to; the old one stays as `previous`.
    ytdlp_wheel(&wheels, "2030.4.1", false);
    // A YtDlp built before the update follows the switch (it runs current/bin/yt-dlp).
    let before = encore::app::ytdlp(&cfg);
    let out = bounded("a good update", m.update_now()).await.unwrap();
    assert_eq!(
        out,
        UpdateOutcome::Updated {
            from: Some("2030.1.1".into()),
            to: "2030.4.1".into()
        }
    );
    assert_eq!(m.version().as_deref(), Some("2030.4.1"));
    assert_eq!(link(m.root(), "previous").unwrap(), first);
    assert_eq!(environments(m.root()).len(), 2);
    let q = Query::Url(url::Url::parse(url).unwrap());
    assert_eq!(
        before.resolve(&q).await.unwrap().title,
        "low via yt-dlp 2030.4.1"
    );

    // A new handle (a restart) finds the installed version without reinstalling.
    let again = ManagedYtDlp::new(&cfg);
    assert_eq!(
        bounded("a restart", again.ensure_installed())
            .await
            .unwrap(),
        "2030.4.1"
    );
    assert_eq!(environments(m.root()).len(), 2);

    // Scheduled updates: due one interval after the last attempt, stopped by shutdown.
    let mut scheduled = cfg.clone();
    scheduled.ytdlp.update_interval = Duration::from_secs(1);
    let s = ManagedYtDlp::new(&scheduled);
    ytdlp_wheel(&wheels, "2030.5.1", false);
    let stop = CancellationToken::new();
    let task = tokio::spawn(s.clone().run_updates(stop.clone()));
    let deadline = tokio::time::Instant::now() + BUILD_LIMIT;
    while s.version().as_deref() != Some("2030.5.1") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scheduled update did not happen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the updater stops on shutdown")
        .unwrap();
    // Older environments are collected: current and previous remain.
    let envs = environments(m.root());
    assert_eq!(envs.len(), 2, "{envs:?}");
    assert_eq!(resolve_title(&cfg, url).await, "low via yt-dlp 2030.5.1");

    // The environment in use breaks (a disk problem, a hand edit): the next start goes
    // back to the previous one and collects the broken one.
    let previous = link(m.root(), "previous").unwrap();
    let exe = m.root().join("current/bin/yt-dlp");
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, "#!/bin/sh\necho broken >&2\nexit 1\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let restarted = ManagedYtDlp::new(&cfg);
    assert_eq!(
        bounded(
            "a start with a broken environment",
            restarted.ensure_installed()
        )
        .await
        .unwrap(),
        "2030.4.1"
    );
    assert_eq!(link(m.root(), "current").unwrap(), previous);
    assert_eq!(environments(m.root()), vec![previous]);
    assert_eq!(resolve_title(&cfg, url).await, "low via yt-dlp 2030.4.1");
}

fn collect(child: &mut tokio::process::Child) -> Arc<Mutex<String>> {
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

/// Starts the binary, waits for READY=1 and returns it with its stderr and the READY text.
async fn start_bot(
    emu: &Emulator,
    dir: &Path,
    config: &Path,
    within: Duration,
) -> (tokio::process::Child, Arc<Mutex<String>>, String) {
    let sock_path = dir.join(format!("notify-{}.sock", rand_suffix()));
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_encore"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("ENCORE_LOG", "info")
        .env("DISCORD_TOKEN", emu.bot_token())
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the encore binary");
    let stderr = collect(&mut child);
    let until = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(m.clone());
                if m.lines().any(|l| l == "READY=1") {
                    return (child, stderr, m);
                }
            }
            _ => {
                let status = child.try_wait().ok().flatten();
                panic!(
                    "no READY=1 within {within:?} (exit: {status:?}); got {seen:?}\n--- bot stderr ---\n{}",
                    stderr.lock().unwrap()
                );
            }
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn stop_bot(mut child: tokio::process::Child, stderr: &Arc<Mutex<String>>) {
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the bot stops within 30 s")
        .unwrap();
    assert!(status.success(), "{status:?}\n{}", stderr.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_installs_yt_dlp_and_the_bot_plays_with_it() {
    let emu = Emulator::start().await;
    emu.add_guild(GUILD, "Test Server");
    emu.add_voice_channel(GUILD, MUSIC, "Music");
    emu.add_text_channel(GUILD, TEXT, "general");
    emu.add_member(GUILD, ANN, "ann", false, false);
    emu.user_join_voice(GUILD, ANN, MUSIC).await;

    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    write_tone_wav(&media.join("low.wav"), 440.0, 3.0, 0.5);
    let files = FileServer::start(&media).await;
    let wheels = dir.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    ytdlp_wheel(&wheels, "2030.1.1", false);
    deno_wheel(&wheels);
    let data = dir.path().join("data");
    let cfg_path = dir.path().join("encore.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[discord]\napi_base = {api:?}\n[data]\ndir = {data:?}\n[ytdlp]\nmanaged = true\n\
             allow_private_hosts = true\npip_args = [\"--no-index\", \"--find-links\", {wheels:?}]\n",
            api = emu.api_base(),
            data = data.to_str().unwrap(),
            wheels = wheels.to_str().unwrap(),
        ),
    )
    .unwrap();

    // Before the first start, doctor says what will happen.
    let doctor = run_doctor(&emu, dir.path(), &cfg_path).await;
    assert!(
        doctor.contains(
            "ok    yt-dlp    managed, not installed yet: pip installs yt-dlp[default] deno into"
        ),
        "{doctor}"
    );

    let (child, stderr, ready) = start_bot(&emu, dir.path(), &cfg_path, BUILD_LIMIT).await;
    assert!(
        ready.contains("STATUS=Connected to Discord; yt-dlp 2030.1.1 (managed)"),
        "{ready}"
    );
    let root = data.join("yt-dlp-venv");
    assert!(root.join("current/bin/yt-dlp").exists());
    assert!(root.join("current/bin/deno").exists());
    {
        let log = stderr.lock().unwrap();
        assert!(log.contains("installing the managed yt-dlp"), "{log}");
        assert!(
            log.contains("managed yt-dlp installed") && log.contains("2030.1.1"),
            "{log}"
        );
    }

    // The bot resolves with it, and the tone is heard.
    let reply = emu
        .command(
            GUILD,
            TEXT,
            ANN,
            "play",
            json!([{"name": "query", "type": 3, "value": files.url("low.wav")}]),
        )
        .await
        .response(Duration::from_secs(60))
        .await;
    assert!(
        reply.text().contains("low via yt-dlp 2030.1.1"),
        "{}\n--- bot stderr ---\n{}",
        reply.text(),
        stderr.lock().unwrap()
    );
    emu.wait_audio_frames(GUILD, 25, Duration::from_secs(60))
        .await;
    let frames = non_silent(&emu.audio(GUILD));
    let f = dominant_frequency(&frames[frames.len().saturating_sub(25)..]);
    assert!((f - 440.0).abs() <= 15.0, "heard {f} Hz");
    stop_bot(child, &stderr).await;

    // A second start reuses the environment.
    let (child, stderr2, ready) =
        start_bot(&emu, dir.path(), &cfg_path, Duration::from_secs(60)).await;
    assert!(ready.contains("yt-dlp 2030.1.1 (managed)"), "{ready}");
    {
        let log = stderr2.lock().unwrap();
        assert!(!log.contains("installing the managed yt-dlp"), "{log}");
        assert!(log.contains("managed yt-dlp ready"), "{log}");
    }
    assert_eq!(environments(&root).len(), 1);
    stop_bot(child, &stderr2).await;

    // Doctor shows the installed version and the deno next to it.
    let doctor = run_doctor(&emu, dir.path(), &cfg_path).await;
    assert!(
        doctor.contains("ok    yt-dlp    2030.1.1 (managed in ")
            && doctor.contains("updated every 1day"),
        "{doctor}"
    );
    assert!(doctor.contains("ok    deno"), "{doctor}");
}

/// `encore doctor` with the test's config; returns stdout (asserting it passed).
async fn run_doctor(emu: &Emulator, dir: &Path, config: &Path) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_encore"))
            .arg("--config")
            .arg(config)
            .arg("doctor")
            .current_dir(dir)
            .env("DISCORD_TOKEN", emu.bot_token())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("doctor finishes")
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_pip_its_build_backends_or_the_managed_yt_dlp() {
    // What an operator puts in `.env` or the unit ends up in the bot's environment.
    std::env::set_var("DISCORD_TOKEN", "the-bot-token-must-stay-home");
    std::env::set_var("ENCORE_CANARY", "an-encore-setting-must-stay-home");
    let dir = tempfile::tempdir().unwrap();
    let wheels = dir.path().join("wheels");
    let dumps = dir.path().join("dumps");
    std::fs::create_dir_all(&wheels).unwrap();
    std::fs::create_dir_all(&dumps).unwrap();
    let dump = env_dump_python(&dumps);
    build(json!({
        "kind": "wheel", "name": "yt-dlp", "version": "2030.1.1", "out": wheels,
        "extras": ["default"],
        "files": {
            "fake_yt_dlp.py": fake_ytdlp_source("2030.1.1", false),
            // Runs at the start of every Python in the environment, as any installed
            // package's `.pth` (or a `sitecustomize`) could.
            "encore_env_dump.pth": dump.clone(),
        },
        "scripts": {"yt-dlp": "fake_yt_dlp:main"},
    }));
    deno_wheel(&wheels);
    let cfg = config(&dir.path().join("data"), &wheels);
    let m = ManagedYtDlp::new(&cfg);
    bounded("the first install", m.ensure_installed())
        .await
        .unwrap();
    assert_eq!(
        resolve_title(&cfg, "http://127.0.0.1:9/low.wav").await,
        "low via yt-dlp 2030.1.1"
    );
    // A newer release whose build backend records its environment: pip checks for it
    // (`pip list --outdated`, in the environment above), then builds it in a new one.
    build(json!({
        "kind": "sdist", "name": "yt-dlp", "version": "2030.2.1", "out": wheels,
        "backend_prelude": dump,
    }));
    bounded("a failing update", m.update_now())
        .await
        .unwrap_err();

    let mut seen = Vec::new();
    for e in std::fs::read_dir(&dumps).unwrap().flatten() {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        let argv = v["argv"].to_string();
        let env = v["env"].as_object().unwrap().clone();
        assert!(env.contains_key("PATH"), "{argv}: {env:?}");
        for (k, val) in &env {
            let val = val.as_str().unwrap_or_default();
            assert!(
                !k.starts_with("ENCORE_") && !k.starts_with("DISCORD_"),
                "{argv} got {k}"
            );
            assert!(
                !val.contains("the-bot-token-must-stay-home")
                    && !val.contains("an-encore-setting-must-stay-home"),
                "{argv} got a secret in {k}"
            );
        }
        seen.push(argv);
    }
    let ran = |what: &str| seen.iter().any(|a| a.contains(what));
    assert!(ran("yt-dlp"), "the fake yt-dlp ran: {seen:?}");
    assert!(ran("deno"), "the fake deno ran: {seen:?}");
    assert!(ran("pip"), "pip ran: {seen:?}");
    // pip runs a build backend through its in-process hook runner.
    assert!(ran("_in_process"), "a build backend ran: {seen:?}");
}
