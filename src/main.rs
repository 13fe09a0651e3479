//! The `encore` command line: `run` (the default) and `migrate`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use encore::app::App;
use encore::config::{Config, Token};

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
    /// Create the database if needed and apply migrations, then exit
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A missing .env is normal; a broken one is worth saying.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("encore: cannot read .env: {e}");
            return ExitCode::from(2);
        }
    }
    let config = match Config::load(cli.config.as_deref(), |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("encore: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = encore::logging::init(&config.log) {
        eprintln!("encore: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("encore: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(config).await,
            Command::Migrate => migrate(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("encore: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let token = Token::parse(std::env::var("DISCORD_TOKEN").ok().as_deref())?;
    let shutdown = CancellationToken::new();
    let app = App::build(config, token, shutdown.clone()).await?;
    let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
    let result = app.run().await;
    signals.abort();
    result
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let path = config.data.database_path();
    let pool = encore::db::open(&path).await?;
    pool.close().await;
    println!("database {} is up to date", path.display());
    Ok(())
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
