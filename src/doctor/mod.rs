//! `encore doctor`: checks what the bot needs on this machine, prints one line per check
//! (and what to do about a failure), and says through its exit code whether all passed.
//!
//! It only reads: it never creates the data directory, never migrates, never installs.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

mod check;
mod database;
mod resolver;
mod ytdlp;

pub use crate::status::version_age_days;
pub use check::{Check, Status};
use database::check_database;
use ytdlp::check_ytdlp;

use crate::config::{Config, Token, TokenError};
use crate::invite::error_chain;

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
    checks.push(resolver::check_resolvers(
        std::fs::read_to_string(resolver::RESOLV_CONF)
            .ok()
            .as_deref(),
    ));

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
