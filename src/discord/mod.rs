//! The Discord edge: the poise framework, its commands, the gateway event handler, and how
//! replies and channel notices look. Everything below `crate::player` and `crate::sources`
//! is plain Rust; this module turns Discord events into calls on it.

pub mod commands;
pub mod events;
pub mod format;
pub mod notify;
pub mod presence;
pub mod reply;
pub mod restore;

use std::sync::Arc;

use poise::serenity_prelude as serenity;
use sqlx::SqlitePool;

use crate::config::Config;
use crate::player::Players;
use crate::sources::{UrlPolicy, YtDlp};

/// The state every command sees.
pub struct Bot {
    pub config: Arc<Config>,
    pub players: Arc<Players>,
    pub registry: Arc<crate::resources::Registry>,
    /// Saved queues are written through this (and flushed at shutdown).
    pub queue_writer: crate::db::queues::QueueWriter,
    /// The app's task tracker, for work a command or event starts and shutdown awaits.
    pub tasks: tokio_util::task::TaskTracker,
    /// The bot's own yt-dlp install, when `ytdlp.managed` (updated by `/cleanup update_ytdlp`).
    pub managed: Option<crate::sources::managed::ManagedYtDlp>,
    /// Set once saved queues were restored (on the first cache-ready after start).
    pub restored: std::sync::atomic::AtomicBool,
    /// Per-guild settings (`/settings`) over the config's defaults.
    pub settings: Arc<crate::settings::Settings>,
    pub songbird: Arc<songbird::Songbird>,
    pub ytdlp: YtDlp,
    /// Cache first, yt-dlp on a miss: what `/play` resolves through.
    pub resolver: crate::cache::Resolver,
    pub policy: UrlPolicy,
    pub db: SqlitePool,
    /// Uptime, CPU, mixer load and yt-dlp figures for `/resources`.
    pub status: Arc<crate::status::Status>,
    /// Becomes true once the gateway is ready and commands are registered (systemd's
    /// READY=1 waits on it).
    pub ready: tokio::sync::watch::Sender<bool>,
    /// The app's shutdown signal: long-running commands stop when it fires.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub sweeper: Arc<crate::resources::sweeper::Sweeper>,
}

pub type Data = Arc<Bot>;
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Context<'a> = poise::Context<'a, Data, Error>;

/// Builds the poise framework; commands are registered once the gateway is ready.
pub fn framework(bot: Data) -> poise::Framework<Data, Error> {
    let dev_guild = bot.config.discord.dev_guild;
    poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: commands::all(),
            on_error: |err| Box::pin(on_error(err)),
            event_handler: |framework, event| Box::pin(events::on_event(framework, event)),
            ..Default::default()
        })
        .initialize_owners(false)
        .setup(move |ctx, ready, framework| {
            Box::pin(async move {
                let commands = &framework.options().commands;
                match dev_guild {
                    Some(g) => {
                        poise::builtins::register_in_guild(ctx, commands, serenity::GuildId::new(g))
                            .await?
                    }
                    None => poise::builtins::register_globally(ctx, commands).await?,
                }
                tracing::info!(
                    user = %ready.user.name,
                    guilds = ready.guilds.len(),
                    commands = commands.len(),
                    "connected to Discord and registered commands"
                );
                bot.ready.send_replace(true);
                Ok(bot)
            })
        })
        .build()
}

/// Errors from commands are logged with their context and answered with a short,
/// private message; nothing a user types ends in an unanswered interaction.
async fn on_error(err: poise::FrameworkError<'_, Data, Error>) {
    match err {
        poise::FrameworkError::Command { error, ctx, .. } => {
            tracing::error!(command = %ctx.command().qualified_name, error = %error, "command failed");
            let _ = reply::error(ctx, "Something went wrong on my side; it has been logged.").await;
        }
        // The check already told the caller why.
        poise::FrameworkError::CommandCheckFailed { error: None, .. } => {}
        poise::FrameworkError::ArgumentParse { error, ctx, .. } => {
            tracing::info!(command = %ctx.command().qualified_name, error = %error, "bad arguments");
            let _ = reply::error(ctx, format!("I couldn't read that: {error}")).await;
        }
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                tracing::error!(error = %e, "while handling a framework error");
            }
        }
    }
}
