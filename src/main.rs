//! The `encore` command line: `run` (the default), `doctor`, `invite` and `migrate`.
//!
//! Start-up failures (bad config, missing or malformed token, a database that cannot be
//! opened...) end with one line on stderr and a non-zero exit code, never a panic.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use encore::app::App;
use encore::config::{Config, Token};
use encore::systemd::{self, Notifier};

#[derive(Parser)]
#[command(name = "encore", version, about = "A self-hosted Discord music bot")]
struct Cli {
    /// Config file (default: ./config.toml if present, else built-in defaults)
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to Discord and play music (the default)
    Run,
    /// Check config, token, Discord, TLS, libopus, database and yt-dlp; exit 0 if all pass
    Doctor,
    /// Print the URL that adds the bot to a server, with the permissions it needs
    Invite {
        /// The application id (default: read from DISCORD_TOKEN)
        #[arg(long, value_name = "ID")]
        client_id: Option<u64>,
        /// Preselect this server
        #[arg(long, value_name = "ID")]
        guild: Option<u64>,
        /// Ask Discord for the application id instead of reading it from the token
        #[arg(long)]
        fetch: bool,
    },
    /// Create the database if needed and apply migrations, then exit
    Migrate,
}

fn main() -> ExitCode {
    // First, while the process has one thread: take systemd's variables out of the
    // environment so that yt-dlp and pip never inherit them.
    let notifier = systemd::init_from_env();
    let cli = Cli::parse();
    // A missing .env is normal; a broken one is worth saying.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            return fail(format_args!("cannot read .env: {e}"));
        }
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::Doctor => doctor(cli.config.as_deref()),
        Command::Invite {
            client_id,
            guild,
            fetch,
        } => invite(cli.config.as_deref(), client_id, guild, fetch),
        Command::Run => {
            let Some(config) = load_config(cli.config.as_deref()) else {
                return ExitCode::from(2);
            };
            let token = match Token::parse(std::env::var("DISCORD_TOKEN").ok().as_deref()) {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            if let Err(e) = encore::logging::init(&config.log) {
                return fail(e);
            }
            block_on(run(config, token, notifier))
        }
        Command::Migrate => {
            let Some(config) = load_config(cli.config.as_deref()) else {
                return ExitCode::from(2);
            };
            if let Err(e) = encore::logging::init(&config.log) {
                return fail(e);
            }
            block_on(migrate(config))
        }
    }
}

/// One line on stderr, through the log when it is set up (so journald and JSON logs get
/// it too), and exit code 1.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    let line = format!("{e:#}").replace('\n', " ");
    let logged = tracing::dispatcher::has_been_set() && tracing::enabled!(tracing::Level::ERROR);
    if logged {
        tracing::error!("{line}");
    } else {
        eprintln!("encore: {line}");
    }
    ExitCode::FAILURE
}

fn load_config(path: Option<&Path>) -> Option<Config> {
    match Config::load(path, |k| std::env::var(k).ok()) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("encore: {e}");
            None
        }
    }
}

fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(format_args!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format_args!("{e:#}")),
    }
}

async fn run(config: Config, token: Token, notifier: &'static Notifier) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
    // Building can take a while the first time (a managed yt-dlp is installed); a stop
    // request meanwhile ends it (dropping the future kills pip).
    let app = tokio::select! {
        app = App::build(config, token, shutdown.clone()) => app?,
        _ = shutdown.cancelled() => {
            notifier.send("STOPPING=1");
            return Ok(());
        }
    };
    let ready = app.bot.ready.subscribe();
    let probe = encore::health::Probe::of(&app.bot);
    let managed = app.managed.clone();
    let supervisor = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let status = move || match managed.as_ref().and_then(|m| m.version()) {
                Some(v) => format!("Connected to Discord; yt-dlp {v} (managed)"),
                None => "Connected to Discord".to_string(),
            };
            // The same probe `/healthz` asks (src/health.rs), plus the database.
            let health = move || {
                let probe = probe.clone();
                async move { probe.watchdog().await }
            };
            systemd::supervise(notifier, ready, shutdown, status, health).await
        }
    });
    let result = app.run().await;
    shutdown.cancel();
    if tokio::time::timeout(Duration::from_secs(5), supervisor)
        .await
        .is_err()
    {
        tracing::warn!("the systemd notifier did not stop in time");
    }
    signals.abort();
    result
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let target = config.data.database();
    let stores = encore::db::Stores::open(&config.data).await?;
    stores.close().await;
    println!("database {} is up to date", target.describe());
    Ok(())
}

fn doctor(config: Option<&Path>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format_args!("cannot start the async runtime: {e}")),
    };
    let checks = runtime.block_on(encore::doctor::run(config, |k| std::env::var(k).ok()));
    match encore::doctor::print(&checks, &mut std::io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(format_args!("cannot print the report: {e}")),
    }
}

fn invite(
    config: Option<&Path>,
    client_id: Option<u64>,
    guild: Option<u64>,
    fetch: bool,
) -> ExitCode {
    let id = match client_id {
        Some(id) => id,
        None => {
            let token = match Token::parse(std::env::var("DISCORD_TOKEN").ok().as_deref()) {
                Ok(t) => t,
                Err(e) => return fail(format_args!("{e}; or pass --client-id APPLICATION_ID")),
            };
            match encore::invite::application_id_from_token(&token).filter(|_| !fetch) {
                Some(id) => id,
                None => {
                    let Some(config) = load_config(config) else {
                        return ExitCode::from(2);
                    };
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => return fail(format_args!("cannot start the async runtime: {e}")),
                    };
                    let api_base = config.discord.api_base.as_deref();
                    match runtime.block_on(encore::invite::fetch_application_id(&token, api_base)) {
                        Ok(id) => id,
                        Err(e) => return fail(e),
                    }
                }
            }
        }
    };
    println!("{}", encore::invite::url(id, guild));
    eprintln!(
        "Open it in a browser to add the bot to a server you manage. It asks for the \
         `bot` and `applications.commands` scopes and these permissions: View Channels, \
         Send Messages, Embed Links, Connect, Speak."
    );
    ExitCode::SUCCESS
}

/// SIGTERM (systemd stop) or Ctrl-C starts a graceful shutdown.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
    shutdown.cancel();
}
