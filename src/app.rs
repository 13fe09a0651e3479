//! Wires the parts together and owns shutdown: one `CancellationToken` that every task
//! watches, one `TaskTracker` that shutdown waits on. Nothing is spawned untracked.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use poise::serenity_prelude as serenity;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ShardPlan, Token};
use crate::discord::{self, Bot};
use crate::player::{PlayerSettings, Players};
use crate::resources::sweeper::Sweeper;
use crate::resources::{IdlePolicy, Kind, Registry};
use crate::sources::egress::client::GuardedClient;
use crate::sources::egress::policy::UrlPolicy;
use crate::sources::egress::Egress;
use crate::sources::lookups::Lookups;
use crate::sources::ytdlp::{YtDlp, YtDlpConfig};

/// How long shutdown waits for players to leave their channels.
const DRAIN: Duration = Duration::from_secs(10);

pub struct App {
    pub bot: Arc<Bot>,
    /// songbird's voice manager (the calls the players hold through `crate::voice`).
    pub songbird: Arc<songbird::Songbird>,
    /// The bot's own yt-dlp (`ytdlp.managed`): installed by `build`, updated by `run`.
    pub managed: Option<crate::sources::managed::ManagedYtDlp>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`metrics.listen`), if they are.
    pub metrics: Option<std::net::SocketAddr>,
    client: serenity::Client,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    writer: tokio::task::JoinHandle<()>,
}

/// serenity's HTTP client. `api_base` points it at another base URL; serenity ignores
/// that proxy unless its rate limiter is off, so it turns the limiter off (the proxy is
/// expected to limit). `rest_address` keeps `https://discord.com` and the limiter, and
/// only changes where the name connects.
pub fn http_client(token: &Token, config: &Config) -> anyhow::Result<serenity::Http> {
    let mut builder = serenity::HttpBuilder::new(token.expose());
    if let Some(base) = &config.discord.api_base {
        builder = builder
            .proxy(base.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    if let Some(addr) = config.discord.rest_address {
        let client = reqwest::Client::builder()
            .resolve("discord.com", addr)
            .build()
            .context("cannot build the Discord HTTP client")?;
        builder = builder.client(client);
    }
    Ok(builder.build())
}

/// The yt-dlp wrapper without an egress proxy (tools and tests that run no bot); the bot
/// uses [`ytdlp_with`] and the [`Egress`] of [`egress`].
pub fn ytdlp(config: &Config) -> YtDlp {
    ytdlp_with(config, Egress::without_proxy(policy(config)))
}

/// Starts the egress proxy under `tasks` until `stop` and builds the bot's guarded HTTP
/// client: the one way out for yt-dlp and for the bot's own streaming.
pub async fn egress(
    config: &Config,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> anyhow::Result<(Arc<Egress>, GuardedClient)> {
    Egress::start(policy(config), config.ytdlp.proxy.as_deref(), tasks, stop)
        .await
        .context("cannot start the egress proxy")
}

pub fn ytdlp_with(config: &Config, egress: Arc<Egress>) -> YtDlp {
    let y = &config.ytdlp;
    let lookups = Lookups::new(
        config.limits.max_lookups,
        config.limits.max_lookups_per_member,
        y.timeout,
    );
    YtDlp::with_lookups(
        YtDlpConfig {
            path: if y.managed {
                crate::sources::managed::executable(config)
            } else {
                y.path.clone()
            },
            timeout: y.timeout,
            max_duration: (!y.max_duration.is_zero()).then_some(y.max_duration),
            cookies: y.cookies.clone(),
            proxy: y.proxy.clone(),
            work_dir: config.data.dir.clone(),
        },
        egress,
        Arc::new(lookups),
    )
}

/// What a new player starts with, from the guild's effective settings.
pub fn player_settings(g: &crate::settings::GuildSettings, config: &Config) -> PlayerSettings {
    let every = config.player.save_position_every;
    PlayerSettings {
        volume: g.default_volume,
        max_queue: g.max_queue,
        max_calls: config.limits.max_calls,
        idle: IdlePolicy::from_config(
            g.idle_timeout,
            g.alone_timeout,
            config.lifecycle.pause_timeout,
        ),
        save_position_every: (!every.is_zero()).then_some(every),
        panel: g.panel,
        panel_every: config.player.panel_every,
        autoplay: g.autoplay,
        max_track: (!g.max_track_duration.is_zero()).then_some(g.max_track_duration),
    }
}

pub fn policy(config: &Config) -> UrlPolicy {
    UrlPolicy {
        allow_private_hosts: config.ytdlp.allow_private_hosts,
        test_public_addresses: config.ytdlp.test_public_addresses.clone(),
        test_hosts: config.ytdlp.test_hosts.clone(),
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
        let stores = crate::db::Stores::open(&config.data).await?;
        let db = stores.db.clone();
        tracing::info!(database = %config.data.database().describe(), "database open");
        let managed = crate::sources::managed::ManagedYtDlp::from_config(&config);
        if let Some(m) = &managed {
            m.ensure_installed().await?;
        }
        let tasks = TaskTracker::new();
        // A scheduler per app, not songbird's process-wide default: that one lives on the
        // runtime that first touched it, and dies with it.
        let mut sched = songbird::driver::SchedulerConfig::default();
        if let Some(n) = std::num::NonZeroUsize::new(config.player.mixers_per_thread) {
            sched.strategy = songbird::driver::SchedulerMode::MaxPerThread(n);
        }
        let scheduler = songbird::driver::Scheduler::new(sched);
        let songbird = songbird::Songbird::serenity_from_config(
            songbird::Config::default().scheduler(scheduler.clone()),
        );
        let (egress, stream_http) = egress(&config, &tasks, shutdown.child_token()).await?;
        let lyrics = Arc::new(crate::sources::lyrics::LyricsService::new(
            crate::sources::lyrics::Lrclib::new(
                stream_http.clone(),
                url::Url::parse(&config.lyrics.api_base).context("lyrics.api_base")?,
                config.lyrics.timeout,
            ),
            db.clone(),
            config.lyrics.cache_ttl,
            config.lyrics.miss_ttl,
        ));
        let notifier = Arc::new(discord::notify::ChannelNotifier::new(Arc::new(
            http_client(&token, &config)?,
        )));
        let ytdlp = ytdlp_with(&config, egress);
        let links =
            crate::sources::links::Links::new(stream_http.clone(), ytdlp.clone(), &config.links)
                .map_err(|e| anyhow::anyhow!("links: {e}"))?;
        let resolver = crate::cache::Resolver::new(
            &stores,
            ytdlp.clone(),
            crate::cache::CacheSettings::from_config(&config),
            tasks.clone(),
            shutdown.child_token(),
        );
        // Before anything plays: drop rows without files, files without rows, temp files.
        let scan = resolver.startup_scan().await;
        tracing::info!(?scan, "audio cache checked");
        let settings = Arc::new(
            crate::settings::Settings::load(db.clone(), &config)
                .await
                .context("cannot read guild settings")?,
        );
        // The timing histograms cost their recording only when someone can read them.
        let registry = match config.metrics.listen {
            Some(_) => Registry::with_timings(),
            None => Registry::new(),
        };
        // One writer for saved queues; it outlives the players so their last saves land.
        let (queue_writer, writer_run) = crate::db::queues::writer(db.clone());
        let writer = tokio::spawn(writer_run);
        let players = Players::new(
            crate::voice::factory(
                songbird.clone(),
                stream_http,
                resolver.clone(),
                config.player.stream_timeout,
            ),
            notifier,
            {
                let settings = settings.clone();
                let config = config.clone();
                Arc::new(move |guild| player_settings(&settings.get(guild), &config))
            },
            registry.clone(),
            Arc::new(queue_writer.clone()),
            tasks.clone(),
            shutdown.child_token(),
        );
        players.set_related(Arc::new(crate::cache::related::RelatedTracks::new(
            resolver.clone(),
            db.clone(),
            config.autoplay.clone(),
        )));
        let sweeper = Arc::new(Sweeper {
            registry: registry.clone(),
            calls: Arc::new(crate::voice::SongbirdInventory(songbird.clone())),
            players: players.clone(),
            processes: ytdlp.stats(),
            cache: vec![
                Arc::new(crate::cache::Expiry(resolver.clone())),
                lyrics.clone(),
            ],
        });
        let status = Arc::new(crate::status::Status::new(
            scheduler,
            ytdlp.clone(),
            managed.clone(),
        ));
        let bot = Arc::new(Bot {
            resolver,
            registry: registry.clone(),
            settings,
            queue_writer,
            tasks: tasks.clone(),
            restoring: Default::default(),
            cluster: Default::default(),
            managed: managed.clone(),
            config: config.clone(),
            players,
            stores,
            status,
            ready: tokio::sync::watch::Sender::new(false),
            shutdown: shutdown.clone(),
            sweeper: sweeper.clone(),
            gateway: Default::default(),
            links,
            lyrics,
            lyrics_follows: Default::default(),
        });
        let intents =
            serenity::GatewayIntents::GUILDS | serenity::GatewayIntents::GUILD_VOICE_STATES;
        let client = serenity::ClientBuilder::new_with_http(http_client(&token, &config)?, intents)
            .framework(discord::framework(bot.clone()))
            .voice_manager_arc(songbird.clone())
            .await
            .context("cannot create the Discord client")?;
        bot.gateway.attach(&client.shard_manager);
        let metrics = crate::metrics::start(
            &config.metrics,
            bot.clone(),
            crate::health::Probe::of(&bot),
            shutdown.child_token(),
        )?;
        {
            let unit = registry.acquire(Kind::Task);
            let interval = config.lifecycle.sweep_interval;
            let stop = shutdown.child_token();
            tasks.spawn(async move {
                let _unit = unit;
                sweeper.run(interval, stop).await;
            });
        }
        Ok(App {
            bot,
            songbird,
            managed,
            metrics,
            client,
            tasks,
            shutdown,
            writer,
        })
    }

    /// Runs until `shutdown` fires or the gateway fails for good. On the way out every
    /// player leaves its channel (while the gateway can still say so), then the shards
    /// close, then the database.
    pub async fn run(mut self) -> anyhow::Result<()> {
        if let Some(m) = self.managed.clone() {
            self.tasks.spawn(m.run_updates(self.shutdown.child_token()));
        }
        let shards = self.client.shard_manager.clone();
        let players_done = self.tasks.clone();
        let shutdown = self.shutdown.clone();
        let bot = self.bot.clone();
        let bot_for_stop = self.bot.clone();
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
            let killed = bot_for_stop.sweeper.kill_all_processes();
            if killed > 0 {
                tracing::info!(killed, "stopped running yt-dlp processes");
            }
            shards.shutdown_all().await;
        });
        let result = match (&bot.stores.db, bot.config.discord.shards) {
            // A shared store and no static range: this process is a node of a cluster,
            // running the shards it wins a lease on until shutdown.
            (crate::db::Db::Postgres(pool), plan) if !plan.is_static() => {
                match discord::shards::join_cluster(
                    &self.client,
                    &self.songbird,
                    &bot,
                    pool.clone(),
                )
                .await
                {
                    Ok(()) => {
                        self.shutdown.cancelled().await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            (_, plan) => self
                .start_shards(plan)
                .await
                .map_err(|e| anyhow::anyhow!(describe_gateway_error(&e))),
        };
        // The gateway stopped on its own (bad token, network): stop everything else too.
        self.shutdown.cancel();
        let _ = stopper.await;
        // Every player has saved its last state: commit it, then close the database.
        if !bot.queue_writer.flush(DRAIN).await {
            tracing::warn!("saved queues may be incomplete: the writer did not finish in time");
        }
        // Saved: the other nodes may take this node's shards (and resume its queues) now.
        if let Some(node) = bot.cluster.get() {
            node.leave().await;
        }
        // Flushed and idle: nothing is lost by stopping it here.
        self.writer.abort();
        bot.stores.close().await;
        tracing::info!("stopped");
        result
    }

    /// Runs the gateway shards `plan` names in this process, until they stop.
    async fn start_shards(&mut self, plan: ShardPlan) -> serenity::Result<()> {
        tracing::info!(shards = %plan, "connecting to Discord");
        match plan {
            ShardPlan::Total(n) => self.bot.gateway.own(0..n),
            ShardPlan::Range { first, last, .. } => self.bot.gateway.own(first..=last),
            // The total comes with the first READY (`discord::events`).
            ShardPlan::Auto => {}
        }
        match plan {
            // Asks Discord (`GET /gateway/bot`) how many shards the bot needs.
            ShardPlan::Auto => self.client.start_autosharded().await,
            ShardPlan::Total(n) => self.client.start_shards(n).await,
            // serenity's range end is inclusive.
            ShardPlan::Range { first, last, total } => {
                self.client.start_shard_range(first..last, total).await
            }
        }
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
        serenity::Error::Gateway(serenity::GatewayError::OverloadedShard) => {
            "Discord requires more shards for this many servers (close 4011): set \
             discord.shards = \"auto\" or a larger total"
                .into()
        }
        serenity::Error::Gateway(serenity::GatewayError::InvalidShardData) => {
            "Discord refused the shard numbers (close 4010): check discord.shards".into()
        }
        other => format!("Discord connection failed: {other}"),
    }
}
