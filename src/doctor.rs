//! `encore doctor`: checks what the bot needs on this machine, prints one line per check
//! (and what to do about a failure), and says through its exit code whether all passed.
//!
//! It only reads: it never creates the data directory, never migrates, never installs.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::{Config, Token, TokenError};
use crate::invite::error_chain;
use crate::sources::managed::{self, ManagedYtDlp};

/// yt-dlp releases older than this get a warning: YouTube breaks old versions.
const OLD_YTDLP_DAYS: u64 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but worth knowing; does not fail the run.
    Warn,
    Fail,
    /// Not checked because an earlier check failed.
    Skip,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn skip(name: &'static str, why: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Skip,
            detail: why.into(),
            fix: None,
        }
    }
}

/// Runs every check. `config_path` is `--config`; `env` reads the environment (after
/// `.env` was loaded).
pub async fn run(config_path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Vec<Check> {
    let mut checks = Vec::new();

    let config = match Config::load(config_path, &env) {
        Ok(c) => {
            let source = match config_path {
                Some(p) => p.display().to_string(),
                None if Path::new("config.toml").exists() => "./config.toml".into(),
                None => {
                    "no config file: built-in defaults and environment (pass --config PATH)".into()
                }
            };
            checks.push(Check::ok("config", source));
            Some(c)
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                e.to_string(),
                "correct the key or value it names; every key is described in config.toml.example and the README",
            ));
            None
        }
    };

    let token = match Token::parse(env("DISCORD_TOKEN").as_deref()) {
        Ok(t) => {
            let id = crate::invite::application_id_from_token(&t)
                .map(|id| format!(" (application id {id})"))
                .unwrap_or_default();
            checks.push(Check::ok(
                "token",
                format!("DISCORD_TOKEN is set and well-formed{id}"),
            ));
            Some(t)
        }
        Err(e @ TokenError::Missing) => {
            checks.push(Check::fail(
                "token",
                e.to_string(),
                "Developer Portal > your application > Bot > Reset Token, then set DISCORD_TOKEN \
                 (systemd: in /etc/encore/encore.env, mode 0600)",
            ));
            None
        }
        Err(e) => {
            checks.push(Check::fail(
                "token",
                e.to_string(),
                "copy the token again from Developer Portal > Bot (Reset Token); it looks like xxxx.yyyy.zzzz",
            ));
            None
        }
    };

    checks.push(check_tls(&env));

    let api_base = match &config {
        Some(c) => c.discord.api_base.clone(),
        None => env("DISCORD_API_BASE").filter(|v| !v.trim().is_empty()),
    };
    checks.push(match &token {
        Some(t) => check_discord(t, api_base.as_deref()).await,
        None => Check::skip("discord", "needs a valid DISCORD_TOKEN first"),
    });

    checks.push(check_opus());

    match &config {
        Some(c) => {
            checks.push(check_database(c).await);
            checks.extend(check_ytdlp(c, &env).await);
        }
        None => {
            checks.push(Check::skip("database", "needs a valid config first"));
            checks.push(Check::skip("yt-dlp", "needs a valid config first"));
        }
    }
    checks
}

/// Prints the checks and a summary; returns true when none failed.
pub fn print(checks: &[Check], out: &mut impl Write) -> std::io::Result<bool> {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in checks {
        let tag = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        writeln!(out, "{tag}  {:<width$}  {}", c.name, c.detail)?;
        if let Some(fix) = &c.fix {
            writeln!(out, "      {:<width$}  -> {fix}", "")?;
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed == 0 {
        writeln!(out, "All {} checks passed.", checks.len())?;
    } else {
        writeln!(
            out,
            "{failed} of {} checks failed; fix them and run `encore doctor` again.",
            checks.len()
        )?;
    }
    Ok(failed == 0)
}

fn check_tls(env: &impl Fn(&str) -> Option<String>) -> Check {
    let source = match (env("SSL_CERT_FILE"), env("SSL_CERT_DIR")) {
        (Some(f), _) => format!("SSL_CERT_FILE={f}"),
        (None, Some(d)) => format!("SSL_CERT_DIR={d}"),
        (None, None) => "the system store".into(),
    };
    let r = rustls_native_certs::load_native_certs();
    let errors: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
    if r.certs.is_empty() {
        Check::fail(
            "tls",
            format!(
                "no trusted CA certificates found in {source}{}",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(": {}", errors.join("; "))
                }
            ),
            "install the CA bundle (Debian: apt install ca-certificates), or point SSL_CERT_FILE at a PEM bundle",
        )
    } else if !errors.is_empty() {
        Check::warn(
            "tls",
            format!(
                "{} trusted CA certificates from {source}, with errors: {}",
                r.certs.len(),
                errors.join("; ")
            ),
            "check SSL_CERT_FILE / SSL_CERT_DIR and /etc/ssl/certs",
        )
    } else {
        Check::ok(
            "tls",
            format!("{} trusted CA certificates from {source}", r.certs.len()),
        )
    }
}

async fn check_discord(token: &Token, api_base: Option<&str>) -> Check {
    let base = api_base
        .unwrap_or("https://discord.com")
        .trim_end_matches('/')
        .to_string();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                "discord",
                format!("cannot build an HTTP client: {}", error_chain(&e)),
                "check the TLS trust store (see the tls line)",
            )
        }
    };
    let resp = client
        .get(format!("{base}/api/v10/users/@me"))
        .header("Authorization", format!("Bot {}", token.expose()))
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return Check::fail(
            "discord",
            format!("cannot reach Discord at {base}: {}", error_chain(&e)),
            "check DNS and the firewall (outgoing HTTPS to discord.com and gateway.discord.gg), \
                 or discord.api_base",
        ),
    };
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Check::fail(
            "discord",
            "Discord refused the token (401): it is wrong or was reset",
            "Developer Portal > Bot > Reset Token, and update DISCORD_TOKEN",
        );
    }
    if !status.is_success() {
        return Check::fail(
            "discord",
            format!("Discord answered {status} to GET /users/@me"),
            "try again later; if it persists, check https://discordstatus.com",
        );
    }
    let body = resp.bytes().await.unwrap_or_default();
    let me: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let name = me["username"].as_str().unwrap_or("?");
    let id = me["id"].as_str().unwrap_or("?");
    if me["bot"].as_bool() == Some(false) {
        return Check::fail(
            "discord",
            format!("the token belongs to the user account {name}, not a bot"),
            "use the token from the Bot tab of your application",
        );
    }
    Check::ok(
        "discord",
        format!("Discord accepts the token: logged in as {name} (id {id}) at {base}"),
    )
}

fn check_opus() -> Check {
    let version = opus2::version();
    let encoder = opus2::Encoder::new(48_000, opus2::Channels::Stereo, opus2::Application::Audio);
    let result = encoder.and_then(|mut enc| {
        let pcm = [0i16; 960 * 2];
        let mut out = [0u8; 4000];
        enc.encode(&pcm, &mut out)
    });
    match result {
        Ok(_) => Check::ok("libopus", format!("{version} encodes 48 kHz stereo")),
        Err(e) => Check::fail(
            "libopus",
            format!("{version} cannot encode: {e}"),
            "install libopus (Debian: apt install libopus0)",
        ),
    }
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated path only.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

async fn check_database(config: &Config) -> Check {
    const NAME: &str = "database";
    let path = config.data.database_path();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        if let Ok(meta) = std::fs::metadata(&dir) {
            if meta.uid() != 0 {
                return Check::warn(
                    NAME,
                    format!(
                        "not checked: doctor runs as root, but {} belongs to uid {}",
                        dir.display(),
                        meta.uid()
                    ),
                    "run doctor as the bot's user (README: Deploying with systemd) so the check means something",
                );
            }
        }
    }
    if !path.exists() {
        let mut anc = dir.as_path();
        while !anc.exists() {
            match anc.parent() {
                Some(p) if !p.as_os_str().is_empty() => anc = p,
                _ => {
                    anc = Path::new(".");
                    break;
                }
            }
        }
        return if writable(anc) {
            Check::ok(
                NAME,
                format!(
                    "{} does not exist yet; it is created and migrated at first start (or by `encore migrate`)",
                    path.display()
                ),
            )
        } else {
            Check::fail(
                NAME,
                format!(
                    "cannot create {}: {} is not writable by this user",
                    path.display(),
                    anc.display()
                ),
                "create the directory and give it to the bot's user (chown), or set data.dir / ENCORE_DATA_DIR",
            )
        };
    }
    if !writable(&dir) {
        return Check::fail(
            NAME,
            format!("{} is not writable by this user", dir.display()),
            format!(
                "chown -R <bot user> {} (SQLite writes its journal next to the database)",
                dir.display()
            ),
        );
    }
    match inspect_database(&path).await {
        Ok(Migrations {
            applied,
            pending,
            unknown,
            failed,
        }) => {
            if let Some(v) = failed.first() {
                Check::fail(
                    NAME,
                    format!("{}: migration {v} failed part-way", path.display()),
                    "restore the database from a backup, then start the bot",
                )
            } else if let Some(v) = unknown.first() {
                Check::fail(
                    NAME,
                    format!(
                        "{} was migrated by a newer encore (migration {v} is unknown to this version)",
                        path.display()
                    ),
                    "install that newer encore again, or restore a backup made before the upgrade",
                )
            } else if !pending.is_empty() {
                Check::warn(
                    NAME,
                    format!(
                        "{} is writable; {} migration(s) pending",
                        path.display(),
                        pending.len()
                    ),
                    "they are applied at the next start, or now with `encore migrate`",
                )
            } else {
                Check::ok(
                    NAME,
                    format!(
                        "{} is writable and migrated ({applied} migrations)",
                        path.display()
                    ),
                )
            }
        }
        Err(e) => Check::fail(
            NAME,
            format!("{}: {e}", path.display()),
            format!(
                "make sure the bot's user owns {} and the files in it (chown -R)",
                dir.display()
            ),
        ),
    }
}

struct Migrations {
    applied: usize,
    pending: Vec<i64>,
    unknown: Vec<i64>,
    failed: Vec<i64>,
}

async fn inspect_database(path: &Path) -> Result<Migrations, String> {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{Connection, Row};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| format!("cannot open: {e}"))?;
    let result = async {
        // A write that is rolled back: proves the file (and its directory) take writes.
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .map_err(|e| format!("not writable: {e}"))?;
        let probe = sqlx::query("CREATE TABLE encore_doctor_probe (x INTEGER)")
            .execute(&mut conn)
            .await;
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        probe.map_err(|e| format!("not writable: {e}"))?;

        let has_table: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
        let rows = if has_table.is_some() {
            sqlx::query("SELECT version, success FROM _sqlx_migrations")
                .fetch_all(&mut conn)
                .await
                .map_err(|e| format!("cannot read the migration table: {e}"))?
        } else {
            Vec::new()
        };
        let known: Vec<i64> = sqlx::migrate!("./migrations")
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .collect();
        let applied: Vec<(i64, bool)> = rows
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1)))
            .collect();
        Ok(Migrations {
            applied: applied.len(),
            pending: known
                .iter()
                .copied()
                .filter(|v| !applied.iter().any(|(a, _)| a == v))
                .collect(),
            unknown: applied
                .iter()
                .map(|(v, _)| *v)
                .filter(|v| !known.contains(v))
                .collect(),
            failed: applied
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(v, _)| *v)
                .collect(),
        })
    }
    .await;
    let _ = conn.close().await;
    result
}

/// `program --ignore-config --version`, bounded, from `/` (so no `yt-dlp.conf` nearby
/// matters and nothing is written).
async fn version_of(program: &Path) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(["--ignore-config", "--version"])
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

/// Days since a yt-dlp version like `2026.10.26` (or `2026.10.26.1`) was released.
/// A release date in the future (a clock that is behind) counts as 0 days.
pub fn version_age_days(version: &str, now: SystemTime) -> Option<u64> {
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

fn find_on_path(name: &str, env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let path = env("PATH")?;
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

async fn check_ytdlp(config: &Config, env: &impl Fn(&str) -> Option<String>) -> Vec<Check> {
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
    let version = match version_of(&program).await {
        Ok(v) => v,
        Err(e) => {
            checks.push(Check::fail(
                NAME,
                e,
                if y.managed {
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

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn ages() {
        // 2026-01-01 is day 20454 since the epoch.
        let now = UNIX_EPOCH + Duration::from_secs(20454 * 86_400 + 3600);
        assert_eq!(version_age_days("2026.01.01", now), Some(0));
        assert_eq!(version_age_days("2025.12.31", now), Some(1));
        assert_eq!(version_age_days("2025.01.01", now), Some(365));
        assert_eq!(version_age_days("2025.10.22.1", now), Some(71));
        assert_eq!(version_age_days("nightly", now), None);
        assert_eq!(version_age_days("2030.1.1", now), Some(0));
        assert_eq!(version_age_days("2024.02.29", now), Some(672));
        assert_eq!(version_age_days("2025.02.29", now), None);
        assert_eq!(version_age_days("2025.13.01", now), None);
        assert_eq!(version_age_days("1999.12.31", now), None);
    }

    #[test]
    fn printing() {
        let checks = vec![
            Check::ok("config", "defaults"),
            Check::fail("token", "DISCORD_TOKEN is not set", "set it"),
            Check::skip("discord", "needs a token"),
        ];
        let mut out = Vec::new();
        assert!(!print(&checks, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("FAIL  token    DISCORD_TOKEN is not set"),
            "{text}"
        );
        assert!(text.contains("-> set it"), "{text}");
        assert!(text.contains("1 of 3 checks failed"), "{text}");
        let mut out = Vec::new();
        assert!(print(&checks[..1], &mut out).unwrap());
    }
}
