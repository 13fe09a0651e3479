//! The bot's state and poise types; apart so no file imports the mod.rs that builds the framework.

use std::sync::Arc;

use crate::config::Config;
use crate::player::Players;

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
    /// This node's place in the cluster, once it joined one (PostgreSQL store only).
    pub cluster: std::sync::OnceLock<crate::cluster::Membership>,
    /// Guilds whose saved queue is being restored (`restore::guild_available`).
    pub restoring: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Per-guild settings (`/settings`) over the config's defaults.
    pub settings: Arc<crate::settings::Settings>,
    /// Cache first, yt-dlp on a miss: what `/play` resolves through.
    pub resolver: crate::cache::Resolver,
    /// The database and this machine's own file.
    pub stores: crate::db::Stores,
    /// Uptime, CPU, mixer load and yt-dlp figures for `/resources`.
    pub status: Arc<crate::status::Status>,
    /// Becomes true once the gateway is ready and commands are registered (systemd's
    /// READY=1 waits on it).
    pub ready: tokio::sync::watch::Sender<bool>,
    /// The app's shutdown signal: long-running commands stop when it fires.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub sweeper: Arc<crate::resources::sweeper::Sweeper>,
    /// `/play` with a Spotify, Apple Music or Deezer link: the pages and the searches.
    pub links: crate::sources::links::Links,
    /// `/lyrics`: LRCLIB, cache first.
    pub lyrics: Arc<crate::sources::lyrics::LyricsService>,
    /// The `/lyrics` message following the song in each guild, to stop it when a newer
    /// one starts there (each with a number, so an ending one removes only itself).
    pub lyrics_follows: std::sync::Mutex<
        std::collections::HashMap<u64, (u64, tokio_util::sync::CancellationToken)>,
    >,
    /// The shards this process owns and their state (`/readyz`, `/metrics`).
    pub gateway: Arc<super::gateway::Gateway>,
}

pub type Data = Arc<Bot>;
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Context<'a> = poise::Context<'a, Data, Error>;
