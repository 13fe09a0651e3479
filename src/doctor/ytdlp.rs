//! `encore doctor`'s yt-dlp checks: the configured (or managed) yt-dlp runs, and its
//! release is not so old that sites have broken it.

use crate::status::version_age_days;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::check::Check;
use crate::config::Config;
use crate::sources::managed::{self, ManagedYtDlp};

/// yt-dlp releases older than this get a warning: YouTube breaks old versions.
const OLD_YTDLP_DAYS: u64 = 90;

/// `program <the options every lookup passes> --version`, bounded, from `/` (so nothing
/// is written), with the bot's child environment. A yt-dlp that refuses one of the
/// options fails here as it would fail every `/play`.
async fn version_of(program: &Path, args: &[OsString]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(crate::sources::ytdlp_env(std::env::vars_os()))
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Err(_) => return Err("`--version` took longer than 30s".into()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("not found (looked for `{}`)", program.display()))
        }
        Ok(Err(e)) => return Err(format!("cannot start `{}`: {e}", program.display())),
        Ok(Ok(o)) => o,
    };
    let v = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if !out.status.success() || v.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!(
            "`{} --version` failed ({}): {}",
            program.display(),
            out.status,
            last.trim()
        ));
    }
    Ok(v)
}

fn find_on_path(name: &str, env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let path = env("PATH")?;
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

pub(super) async fn check_ytdlp(
    config: &Config,
    env: &impl Fn(&str) -> Option<String>,
) -> Vec<Check> {
    const NAME: &str = "yt-dlp";
    let y = &config.ytdlp;
    let mut checks = Vec::new();
    let program: PathBuf;
    if y.managed {
        let m = ManagedYtDlp::new(config);
        program = m.executable();
        if !program.exists() {
            let probe = tokio::process::Command::new("python3")
                .args(["-c", "import venv, ensurepip"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status();
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(30), probe).await,
                Ok(Ok(s)) if s.success()
            );
            checks.push(if ok {
                Check::ok(
                    NAME,
                    format!(
                        "managed, not installed yet: pip installs {} into {} at first start (needs access to the package index)",
                        y.packages.join(" "),
                        m.root().display()
                    ),
                )
            } else {
                Check::fail(
                    NAME,
                    "ytdlp.managed needs python3 with the venv module, and it is missing",
                    "Debian: apt install python3 python3-venv",
                )
            });
            return checks;
        }
    } else {
        program = y.path.clone();
    }
    // The exact options of a lookup, `--proxy` to a running egress proxy included: the
    // doctor starts its own for the probe and stops it right after.
    let tasks = tokio_util::task::TaskTracker::new();
    let stop = tokio_util::sync::CancellationToken::new();
    let probe = match crate::app::egress(config, &tasks, stop.clone()).await {
        Ok((egress, _)) => crate::app::ytdlp_with(config, egress).probe_args(),
        Err(_) => crate::app::ytdlp(config).probe_args(),
    };
    let version = version_of(&program, &probe).await;
    stop.cancel();
    tasks.close();
    let version = match version {
        Ok(v) => v,
        Err(e) => {
            let too_old = e.contains("no such option");
            checks.push(Check::fail(
                NAME,
                e,
                if too_old {
                    "this yt-dlp is too old for the options the bot passes: update it \
                     (DIR/bin/pip install -U 'yt-dlp[default]'), or set ytdlp.managed = true"
                        .to_string()
                } else if y.managed {
                    "the managed environment is broken: stop the bot, delete its venv directory, start it again".to_string()
                } else {
                    "install it (scripts/deps; or python3 -m venv DIR && DIR/bin/pip install 'yt-dlp[default]' deno, then \
                     set ytdlp.path = DIR/bin/yt-dlp), or set ytdlp.managed = true"
                        .to_string()
                },
            ));
            return checks;
        }
    };
    let how = if y.managed {
        let every = if y.update_interval.is_zero() {
            "never updated automatically".to_string()
        } else {
            format!(
                "updated every {}",
                humantime::format_duration(y.update_interval)
            )
        };
        format!(
            "managed in {}, {every}",
            managed::venv_root(config).display()
        )
    } else {
        format!("`{}`", program.display())
    };
    let age = version_age_days(&version, SystemTime::now());
    checks.push(match age {
        Some(days) if days > OLD_YTDLP_DAYS => Check::warn(
            NAME,
            format!("{version} ({how}) is {days} days old"),
            "YouTube breaks old versions often: update it (or set ytdlp.managed = true)",
        ),
        _ => Check::ok(NAME, format!("{version} ({how})")),
    });

    // yt-dlp looks for deno next to its own Python scripts first, then on PATH.
    let resolved = if program.components().count() == 1 {
        find_on_path(&program.to_string_lossy(), env)
    } else {
        Some(program.clone())
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(p) = &resolved {
        if let Some(d) = p.parent() {
            dirs.push(d.to_path_buf());
        }
        if let Some(d) = std::fs::canonicalize(p)
            .ok()
            .and_then(|c| c.parent().map(Path::to_path_buf))
        {
            dirs.push(d);
        }
    }
    let deno = dirs
        .iter()
        .map(|d| d.join("deno"))
        .find(|p| p.is_file())
        .or_else(|| find_on_path("deno", env));
    checks.push(match deno {
        Some(p) => Check::ok(
            "deno",
            format!("JavaScript runtime for YouTube: {}", p.display()),
        ),
        None => Check::warn(
            "deno",
            "no deno found: since yt-dlp 2025.11 YouTube needs a JavaScript runtime",
            "pip install deno into yt-dlp's environment, or set ytdlp.managed = true",
        ),
    });

    if let Some(c) = &y.cookies {
        checks.push(match std::fs::read(c) {
            Ok(bytes) => {
                let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                if head.starts_with("# Netscape HTTP Cookie File")
                    || head.starts_with("# HTTP Cookie File")
                {
                    Check::ok("cookies", format!("{} is readable", c.display()))
                } else {
                    Check::warn(
                        "cookies",
                        format!("{} does not look like a cookies.txt file", c.display()),
                        "export it in the Netscape format (first line: # Netscape HTTP Cookie File)",
                    )
                }
            }
            Err(e) => Check::fail(
                "cookies",
                format!("cannot read ytdlp.cookies {}: {e}", c.display()),
                "fix the path, and let the bot's user read the file",
            ),
        });
    }
    if let Some(p) = &y.proxy {
        let ok = url::Url::parse(p).ok().is_some_and(|u| {
            matches!(
                u.scheme(),
                "http" | "https" | "socks4" | "socks4a" | "socks5" | "socks5h"
            ) && u.host().is_some()
        });
        checks.push(if ok {
            Check::ok("proxy", "ytdlp.proxy is a valid proxy URL")
        } else {
            Check::fail(
                "proxy",
                "ytdlp.proxy is not a proxy URL",
                "write it as scheme://host:port with scheme http, https or socks5",
            )
        });
    }
    checks
}
