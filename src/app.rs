//! Wires the parts together and owns shutdown: one `CancellationToken` that every task
//! watches, one `TaskTracker` that shutdown waits on. Nothing is spawned untracked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use poise::serenity_prelude as serenity;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Token};
use crate::discord::{self, Bot};
use crate::player::{PlayerSettings, Players};
use crate::sources::{UrlPolicy, YtDlp, YtDlpConfig};

/// How long shutdown waits for players to leave their channels.
const DRAIN: Duration = Duration::from_secs(10);

pub struct App {
    pub bot: Arc<Bot>,
    client: serenity::Client,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// serenity's HTTP client, pointed at `api_base` when set. serenity ignores the proxy
/// unless its rate limiter is off, so an alternative base always disables it.
pub fn http_client(token: &Token, config: &Config) -> serenity::Http {
    let mut builder = serenity::HttpBuilder::new(token.expose());
    if let Some(base) = &config.discord.api_base {
        builder = builder
            .proxy(base.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    builder.build()
}

pub fn ytdlp(config: &Config) -> YtDlp {
    let y = &config.ytdlp;
    YtDlp::new(
        YtDlpConfig {
            path: y.path.clone(),
            timeout: y.timeout,
            max_duration: (!y.max_duration.is_zero()).then_some(y.max_duration),
            cookies: y.cookies.clone(),
            proxy: y.proxy.clone(),
            work_dir: config.data.dir.clone(),
        },
        policy(config),
    )
}

pub fn policy(config: &Config) -> UrlPolicy {
    UrlPolicy {
        allow_private_hosts: config.ytdlp.allow_private_hosts,
    }
}

impl App {
    /// Opens the database and builds the Discord client; nothing connects yet.
    pub async fn build(
        config: Config,
        token: Token,
        shutdown: CancellationToken,
    ) -> anyhow::Result<App> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.data.dir).with_context(|| {
            format!("cannot create data directory {}", config.data.dir.display())
        })?;
        let db = crate::db::open(&config.data.database_path()).await?;
        let tasks = TaskTracker::new();
        // A scheduler per app, not songbird's process-wide default: that one lives on the
        // runtime that first touched it, and dies with it.
        let scheduler = songbird::driver::Scheduler::new(Default::default());
        let songbird = songbird::Songbird::serenity_from_config(
            songbird::Config::default().scheduler(scheduler.clone()),
        );
        let stream_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        let notifier = Arc::new(discord::notify::ChannelNotifier::new(Arc::new(
            http_client(&token, &config),
        )));
        let players = Players::new(
            discord::voice::factory(songbird.clone(), stream_http),
            notifier,
            PlayerSettings {
                volume: config.player.default_volume,
                max_queue: config.player.max_queue,
            },
            tasks.clone(),
            shutdown.child_token(),
        );
        let bot = Arc::new(Bot {
            ytdlp: ytdlp(&config),
            policy: policy(&config),
            config: config.clone(),
            players,
            db,
            started: Instant::now(),
            scheduler,
            ready: tokio::sync::watch::Sender::new(false),
        });
        let intents =
            serenity::GatewayIntents::GUILDS | serenity::GatewayIntents::GUILD_VOICE_STATES;
        let client = serenity::ClientBuilder::new_with_http(http_client(&token, &config), intents)
            .framework(discord::framework(bot.clone()))
            .voice_manager_arc(songbird)
            .await
            .context("cannot create the Discord client")?;
        Ok(App {
            bot,
            client,
            tasks,
            shutdown,
        })
    }

    /// Runs until `shutdown` fires or the gateway fails for good. On the way out every
    /// player leaves its channel (while the gateway can still say so), then the shards
    /// close, then the database.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let shards = self.client.shard_manager.clone();
        let players_done = self.tasks.clone();
        let shutdown = self.shutdown.clone();
        let bot = self.bot.clone();
        let stopper = tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down: leaving voice channels");
            players_done.close();
            if tokio::time::timeout(DRAIN, players_done.wait())
                .await
                .is_err()
            {
                tracing::warn!("players did not finish within {DRAIN:?}; closing anyway");
            }
            shards.shutdown_all().await;
        });
        let result = self.client.start().await;
        // The gateway stopped on its own (bad token, network): stop everything else too.
        self.shutdown.cancel();
        let _ = stopper.await;
        bot.db.close().await;
        tracing::info!("stopped");
        result.map_err(|e| anyhow::anyhow!(describe_gateway_error(&e)))
    }
}

fn describe_gateway_error(e: &serenity::Error) -> String {
    match e {
        serenity::Error::Gateway(serenity::GatewayError::InvalidAuthentication) => {
            "Discord refused the token (DISCORD_TOKEN is wrong or was reset)".into()
        }
        serenity::Error::Gateway(serenity::GatewayError::DisallowedGatewayIntents)
        | serenity::Error::Gateway(serenity::GatewayError::InvalidGatewayIntents) => {
            "Discord refused the gateway intents".into()
        }
        other => format!("Discord connection failed: {other}"),
    }
}
