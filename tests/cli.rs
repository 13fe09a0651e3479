//! The command line as an operator meets it: `encore doctor`, `encore invite`, and what
//! `encore` prints when it cannot start (one line, non-zero exit, no panic, no backtrace).
//! Every run gets a clean environment (PATH and HOME only, plus what the test sets) and a
//! fresh working directory, so no `.env` or `config.toml` of the developer leaks in.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::world::ytdlp_path;
use support::{make_token, Emulator, BOT_USER_ID};

const LIMIT: Duration = Duration::from_secs(60);

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn command(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_encore"));
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

async fn encore(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = tokio::time::timeout(LIMIT, command(cwd, args, env).output())
        .await
        .unwrap_or_else(|_| panic!("encore {args:?} did not finish within {LIMIT:?}"))
        .expect("run the encore binary");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_one_clean_line(out: &Out, want: &str) {
    assert!(
        out.code.is_some_and(|c| c != 0),
        "wanted a non-zero exit: {out:?}"
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "wanted exactly one line: {out:?}");
    assert!(lines[0].contains(want), "wanted {want:?}: {out:?}");
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "\u{1b}["] {
        assert!(!out.stderr.contains(bad), "{bad:?} in: {out:?}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn doctor_on_a_fresh_machine_says_the_token_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = encore(dir.path(), &["doctor"], &[("ENCORE_DATA_DIR", s(&data))]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout
            .contains("FAIL  token     DISCORD_TOKEN is not set"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("Reset Token"),
        "says what to do: {out:?}"
    );
    assert!(
        out.stdout
            .contains("skip  discord   needs a valid DISCORD_TOKEN first"),
        "{out:?}"
    );
    assert!(out.stdout.contains("checks failed"), "{out:?}");
    // Doctor only looks: it did not create the data directory.
    assert!(!data.exists());
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_with_everything_in_place() {
    let emu = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ytdlp = ytdlp_path();
    let ytdlp = std::fs::canonicalize(&ytdlp).unwrap_or(ytdlp);
    let ca = std::env::var("SSL_CERT_FILE").expect("the emulator sets SSL_CERT_FILE");
    let token = emu.bot_token();
    let api = emu.api_base();
    let env = [
        ("DISCORD_TOKEN", token.as_str()),
        ("DISCORD_API_BASE", api.as_str()),
        ("ENCORE_DATA_DIR", s(&data)),
        ("ENCORE_YTDLP_PATH", s(&ytdlp)),
        ("SSL_CERT_FILE", ca.as_str()),
    ];
    let out = encore(dir.path(), &["doctor"], &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for want in [
        "ok    config",
        &format!(
            "ok    token     DISCORD_TOKEN is set and well-formed (application id {BOT_USER_ID})"
        ),
        "ok    tls",
        "ok    discord   Discord accepts the token",
        "ok    libopus",
        "does not exist yet; it is created and migrated at first start",
        "All ",
    ] {
        assert!(out.stdout.contains(want), "wanted {want:?}: {out:?}");
    }
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("ok    yt-dlp") || l.starts_with("warn  yt-dlp")),
        "{out:?}"
    );
    assert!(!out.stdout.contains("FAIL"), "{out:?}");

    // After `encore migrate` the database is checked for real.
    let m = encore(dir.path(), &["migrate"], &env).await;
    assert_eq!(m.code, Some(0), "{m:?}");
    assert!(m.stdout.contains("is up to date"), "{m:?}");
    let out = encore(dir.path(), &["doctor"], &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("is writable and migrated"), "{out:?}");
}

/// With `data.database` a PostgreSQL URL, doctor checks that server (and never prints
/// the password), `encore migrate` migrates it, and an unreachable one fails the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_and_migrate_work_on_a_postgres_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The test server trusts loopback, so any password is accepted: enough to show that
    // it never reaches the output.
    let url = support::postgres::server()
        .fresh_database()
        .await
        .replace("encore@", "encore:hunter2@");
    let env = [
        ("ENCORE_DATABASE", url.as_str()),
        ("ENCORE_DATA_DIR", s(&data)),
    ];
    let line = |out: &Out| {
        out.stdout
            .lines()
            .find(|l| l.contains(" database "))
            .unwrap_or_default()
            .to_string()
    };
    let out = encore(dir.path(), &["doctor"], &env).await;
    let db = line(&out);
    assert!(db.starts_with("warn  database"), "{out:?}");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert!(
        db.contains(&format!("{migrations} migration(s) pending")),
        "{out:?}"
    );
    assert!(!out.stdout.contains("hunter2"), "{out:?}");

    let m = encore(dir.path(), &["migrate"], &env).await;
    assert_eq!(m.code, Some(0), "{m:?}");
    assert!(
        m.stdout.contains("PostgreSQL") && m.stdout.contains("is up to date"),
        "{m:?}"
    );
    assert!(!m.stdout.contains("hunter2"), "{m:?}");
    let db = line(&encore(dir.path(), &["doctor"], &env).await);
    assert!(
        db.starts_with("ok    database")
            && db.contains(&format!(
                "is writable and migrated ({migrations} migrations)"
            )),
        "{db}"
    );

    // Nothing listens on port 9 of the loopback.
    let env = [
        (
            "ENCORE_DATABASE",
            "postgres://encore:hunter2@127.0.0.1:9/encore",
        ),
        ("ENCORE_DATA_DIR", s(&data)),
    ];
    let out = encore(dir.path(), &["doctor"], &env).await;
    let db = line(&out);
    assert!(
        db.starts_with("FAIL  database") && db.contains("cannot connect"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("hunter2"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_token_discord_refuses_and_a_missing_ytdlp() {
    let emu = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Well-formed, but not the emulator's.
    let token = make_token(BOT_USER_ID);
    let api = emu.api_base();
    let ca = std::env::var("SSL_CERT_FILE").unwrap();
    let out = encore(
        dir.path(),
        &["doctor"],
        &[
            ("DISCORD_TOKEN", token.as_str()),
            ("DISCORD_API_BASE", api.as_str()),
            ("ENCORE_DATA_DIR", s(&dir.path().join("data"))),
            ("ENCORE_YTDLP_PATH", "/nonexistent/yt-dlp"),
            ("SSL_CERT_FILE", ca.as_str()),
        ],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout
            .contains("FAIL  discord   Discord refused the token (401)"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("FAIL  yt-dlp    not found (looked for `/nonexistent/yt-dlp`)"),
        "{out:?}"
    );
    assert!(out.stdout.contains("ytdlp.managed = true"), "{out:?}");
}

#[tokio::test]
async fn doctor_fails_a_ytdlp_too_old_for_the_bots_options() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Answers a plain `--version`, as an old release does, but refuses an option it does
    // not know: every lookup the bot makes would fail the same way.
    let old = dir.path().join("old-yt-dlp");
    std::fs::write(
        &old,
        "#!/bin/sh
for a in \"$@\"; do
  if [ \"$a\" = --no-plugin-dirs ]; then
    \
         echo 'yt-dlp: error: no such option: --no-plugin-dirs' >&2; exit 2
  fi
done
\
         echo 2026.10.26
",
    )
    .unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = encore(
        dir.path(),
        &["doctor"],
        &[
            ("ENCORE_DATA_DIR", s(&dir.path().join("data"))),
            ("ENCORE_YTDLP_PATH", s(&old)),
        ],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL  yt-dlp"))
        .unwrap_or_else(|| panic!("no failing yt-dlp line: {out:?}"));
    assert!(line.contains("no such option: --no-plugin-dirs"), "{line}");
    assert!(
        out.stdout
            .contains("too old for the options the bot passes"),
        "{out:?}"
    );
}

#[tokio::test]
async fn doctor_reports_a_bad_config_and_skips_what_depends_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("encore.toml");
    std::fs::write(&cfg, "[player]\nvolum = 50\n").unwrap();
    let out = encore(dir.path(), &["--config", s(&cfg), "doctor"], &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("FAIL  config"), "{out:?}");
    assert!(out.stdout.contains("volum"), "{out:?}");
    assert!(
        out.stdout
            .contains("skip  database  needs a valid config first"),
        "{out:?}"
    );
}

#[tokio::test]
async fn start_up_failures_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let good = make_token(BOT_USER_ID);
    std::fs::write(p.join("unknown.toml"), "[player]\nvolum = 50\n").unwrap();
    std::fs::write(p.join("value.toml"), "[player]\ndefault_volume = 300\n").unwrap();
    std::fs::write(p.join("syntax.toml"), "[player\n").unwrap();
    std::fs::create_dir(p.join("dir.toml")).unwrap();
    std::fs::write(
        p.join("managed.toml"),
        "[ytdlp]\nmanaged = true\npackages = []\n",
    )
    .unwrap();
    let path = |n: &str| p.join(n).to_str().unwrap().to_string();
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--config".into(), path("unknown.toml")],
            vec![("DISCORD_TOKEN", good.as_str())],
            "unknown field `volum`",
        ),
        (
            vec!["--config".into(), path("value.toml"), "run".into()],
            vec![("DISCORD_TOKEN", good.as_str())],
            "player.default_volume",
        ),
        (
            vec!["--config".into(), path("syntax.toml")],
            vec![("DISCORD_TOKEN", good.as_str())],
            "invalid config file",
        ),
        (
            vec!["--config".into(), path("missing.toml"), "run".into()],
            vec![("DISCORD_TOKEN", good.as_str())],
            "cannot read config file",
        ),
        (
            vec!["--config".into(), path("dir.toml")],
            vec![("DISCORD_TOKEN", good.as_str())],
            "cannot read config file",
        ),
        (
            vec!["run".into()],
            vec![("DISCORD_TOKEN", "abc")],
            "DISCORD_TOKEN is malformed",
        ),
        (
            vec![],
            vec![(
                "DISCORD_TOKEN",
                "\"MTMwMDAwMDAwMDAwMDAwMDAwMQ.GabcDE.abcdefghijklmnopqrstuvwxyz0123\"",
            )],
            "DISCORD_TOKEN is malformed",
        ),
        (
            vec!["--config".into(), path("managed.toml"), "migrate".into()],
            vec![],
            "ytdlp.packages",
        ),
        (vec!["run".into()], vec![], "DISCORD_TOKEN is not set"),
        (
            vec!["migrate".into()],
            vec![("ENCORE_ALLOW_PRIVATE_HOSTS", "maybe")],
            "ENCORE_ALLOW_PRIVATE_HOSTS",
        ),
    ];
    for (args, env, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = encore(p, &args, &env).await;
        assert_one_clean_line(&out, want);
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}

/// A failure after logging is set up is one log line, in either log format.
#[tokio::test]
async fn failures_after_start_are_one_log_line_compact_or_json() {
    let dir = tempfile::tempdir().unwrap();
    // A data directory that cannot be created.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let data = blocker.join("data");
    let json_cfg = dir.path().join("json.toml");
    std::fs::write(&json_cfg, "[log]\nformat = \"json\"\n").unwrap();

    let out = encore(dir.path(), &["migrate"], &[("ENCORE_DATA_DIR", s(&data))]).await;
    assert_one_clean_line(&out, "cannot create data directory");
    assert!(out.stderr.trim_start().starts_with("ERROR"), "{out:?}");

    let out = encore(
        dir.path(),
        &["--config", s(&json_cfg), "migrate"],
        &[("ENCORE_DATA_DIR", s(&data))],
    )
    .await;
    assert_one_clean_line(&out, "cannot create data directory");
    let v: serde_json::Value = serde_json::from_str(out.stderr.trim()).expect("a JSON log line");
    assert_eq!(v["level"], "ERROR", "{v}");
    assert!(v["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot create data directory"));
}

#[tokio::test]
async fn invite_prints_the_url_with_the_needed_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let token = make_token(BOT_USER_ID);
    let out = encore(
        dir.path(),
        &["invite"],
        &[("DISCORD_TOKEN", token.as_str())],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "https://discord.com/oauth2/authorize?client_id={BOT_USER_ID}&scope=bot+applications.commands&permissions=3165184"
        )
    );
    assert!(
        out.stderr
            .contains("View Channels, Send Messages, Embed Links, Connect, Speak"),
        "{out:?}"
    );

    let out = encore(
        dir.path(),
        &["invite", "--client-id", "42", "--guild", "7"],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.trim().ends_with(
            "client_id=42&scope=bot+applications.commands&permissions=3165184&guild_id=7&disable_guild_select=true"
        ),
        "{out:?}"
    );

    let out = encore(dir.path(), &["invite"], &[]).await;
    assert_one_clean_line(&out, "--client-id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_fetch_asks_discord_for_the_application_id() {
    let emu = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = emu.bot_token();
    let api = emu.api_base();
    let out = encore(
        dir.path(),
        &["invite", "--fetch"],
        &[
            ("DISCORD_TOKEN", token.as_str()),
            ("DISCORD_API_BASE", api.as_str()),
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("client_id={}&", emu.application_id())),
        "{out:?}"
    );
    // A token Discord refuses.
    let wrong = make_token(BOT_USER_ID);
    let out = encore(
        dir.path(),
        &["invite", "--fetch"],
        &[
            ("DISCORD_TOKEN", wrong.as_str()),
            ("DISCORD_API_BASE", api.as_str()),
        ],
    )
    .await;
    assert_one_clean_line(&out, "Discord refused the token");
}

#[tokio::test]
async fn help_lists_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = encore(dir.path(), &["--help"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for sub in ["run", "doctor", "invite", "migrate"] {
        assert!(
            out.stdout.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} missing: {out:?}"
        );
    }
}
