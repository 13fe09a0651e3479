//! Per-guild settings (`/settings`): stored in SQLite, overriding the config's defaults
//! field by field, and kept in memory so commands read them without a query.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::Config;
use crate::db::{with_db, Db};

/// What a guild has changed; `None` keeps the config default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub idle_timeout: Option<Duration>,
    pub alone_timeout: Option<Duration>,
    pub default_volume: Option<u16>,
    pub max_queue: Option<usize>,
    pub max_track_duration: Option<Duration>,
    pub dj_role: Option<u64>,
    pub panel: Option<bool>,
    pub autoplay: Option<bool>,
}

/// The settings in effect for one guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildSettings {
    /// `0` disables (24/7).
    pub idle_timeout: Duration,
    pub alone_timeout: Duration,
    pub default_volume: u16,
    pub max_queue: usize,
    /// `0` means no limit.
    pub max_track_duration: Duration,
    /// When set, only DJs, administrators and the current track's requester control
    /// playback; everyone else votes.
    pub dj_role: Option<u64>,
    /// Show the now-playing panel with buttons.
    pub panel: bool,
    /// When the queue runs out, queue a related track (`/autoplay`).
    pub autoplay: bool,
}

impl GuildSettings {
    pub fn defaults(config: &Config) -> Self {
        Self {
            idle_timeout: config.lifecycle.idle_timeout,
            alone_timeout: config.lifecycle.alone_timeout,
            default_volume: config.player.default_volume,
            max_queue: config.player.max_queue,
            max_track_duration: config.ytdlp.max_duration,
            dj_role: None,
            panel: config.player.panel,
            autoplay: false,
        }
    }

    pub fn with(mut self, o: &Overrides) -> Self {
        if let Some(v) = o.idle_timeout {
            self.idle_timeout = v;
        }
        if let Some(v) = o.alone_timeout {
            self.alone_timeout = v;
        }
        if let Some(v) = o.default_volume {
            self.default_volume = v;
        }
        if let Some(v) = o.max_queue {
            self.max_queue = v;
        }
        if let Some(v) = o.max_track_duration {
            self.max_track_duration = v;
        }
        if o.dj_role.is_some() {
            self.dj_role = o.dj_role;
        }
        if let Some(v) = o.panel {
            self.panel = v;
        }
        if let Some(v) = o.autoplay {
            self.autoplay = v;
        }
        self
    }
}

/// One change from `/settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    IdleTimeout(Duration),
    AloneTimeout(Duration),
    DefaultVolume(u16),
    MaxQueue(usize),
    MaxTrackDuration(Duration),
    DjRole(Option<u64>),
    Panel(bool),
    Autoplay(bool),
    /// Back to the config's defaults.
    Reset,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Invalid(String),
    #[error("could not save the settings; try again")]
    Db(#[from] sqlx::Error),
}

/// The operator's limits, which no guild's settings may pass: a guild can only tighten
/// them (otherwise `/settings` would let any server manager lift what the host set to
/// protect itself, or promise a length yt-dlp then refuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// `player.max_queue`.
    pub max_queue: usize,
    /// `ytdlp.max_duration`; `None` when that is 0 (no limit).
    pub max_track_duration: Option<Duration>,
}

/// Volumes a guild may start at, in percent (as `/volume` allows).
const MAX_VOLUME: u16 = 200;

impl Bounds {
    pub fn from_config(config: &Config) -> Self {
        let d = config.ytdlp.max_duration;
        Self {
            max_queue: config.player.max_queue,
            max_track_duration: (!d.is_zero()).then_some(d),
        }
    }

    /// Why `change` passes the operator's limits, if it does; the message names the limit.
    pub fn check(&self, change: &Change) -> Result<(), String> {
        match *change {
            Change::DefaultVolume(v) if v > MAX_VOLUME => {
                Err(format!("volume must be between 0 and {MAX_VOLUME}"))
            }
            Change::MaxQueue(0) => Err("the queue must allow at least one track".into()),
            Change::MaxQueue(n) if n > self.max_queue => Err(format!(
                "the queue limit can be at most {} tracks on this bot (its operator's limit)",
                self.max_queue
            )),
            Change::MaxTrackDuration(d) => match self.max_track_duration {
                Some(limit) if d.is_zero() || d > limit => Err(format!(
                    "the longest track can be at most {} on this bot (its operator's limit); 0 (no limit) is not available",
                    humantime::format_duration(limit)
                )),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Brings stored overrides back within the limits (the operator may have lowered them
    /// since they were saved); says which fields changed.
    pub fn clamp(&self, o: &mut Overrides) -> Vec<&'static str> {
        let mut clamped = Vec::new();
        if let Some(n) = o.max_queue.filter(|n| *n > self.max_queue) {
            o.max_queue = Some(n.min(self.max_queue));
            clamped.push("max_queue");
        }
        if let (Some(d), Some(limit)) = (o.max_track_duration, self.max_track_duration) {
            if d.is_zero() || d > limit {
                o.max_track_duration = Some(limit);
                clamped.push("max_track_duration");
            }
        }
        if o.default_volume.is_some_and(|v| v > MAX_VOLUME) {
            o.default_volume = Some(MAX_VOLUME);
            clamped.push("default_volume");
        }
        clamped
    }
}

pub struct Settings {
    pool: Db,
    defaults: GuildSettings,
    bounds: Bounds,
    cache: Mutex<HashMap<u64, Overrides>>,
}

fn ms(d: Option<Duration>) -> Option<i64> {
    d.map(|d| d.as_millis().min(i64::MAX as u128) as i64)
}

fn from_ms(v: Option<i64>) -> Option<Duration> {
    v.map(|v| Duration::from_millis(v.max(0) as u64))
}

impl Settings {
    /// Loads every guild's overrides.
    pub async fn load(pool: Db, config: &Config) -> Result<Self, sqlx::Error> {
        type Row = (
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<bool>,
            Option<bool>,
        );
        let rows: Vec<Row> = with_db!(&pool, p => sqlx::query_as(
            "SELECT guild_id, idle_timeout_ms, alone_timeout_ms, default_volume, max_queue,
                    max_track_duration_ms, dj_role, panel, autoplay FROM guild_settings",
        )
        .fetch_all(p)
        .await)?;
        let bounds = Bounds::from_config(config);
        let cache = rows
            .into_iter()
            .map(|(g, idle, alone, vol, maxq, maxd, dj, panel, autoplay)| {
                let mut o = Overrides {
                    idle_timeout: from_ms(idle),
                    alone_timeout: from_ms(alone),
                    default_volume: vol.map(|v| v.clamp(0, i64::from(MAX_VOLUME)) as u16),
                    max_queue: maxq.map(|v| v.clamp(1, i64::MAX) as usize),
                    max_track_duration: from_ms(maxd),
                    dj_role: dj.map(|v| v as u64),
                    panel,
                    autoplay,
                };
                let clamped = bounds.clamp(&mut o);
                if !clamped.is_empty() {
                    tracing::info!(
                        guild = g,
                        ?clamped,
                        "guild settings above the configured limits; using the limits"
                    );
                }
                (g as u64, o)
            })
            .collect();
        Ok(Self {
            pool,
            defaults: GuildSettings::defaults(config),
            bounds,
            cache: Mutex::new(cache),
        })
    }

    pub fn defaults(&self) -> &GuildSettings {
        &self.defaults
    }

    /// The settings in effect for `guild`.
    pub fn get(&self, guild: u64) -> GuildSettings {
        let cache = self.cache.lock().expect("settings lock");
        match cache.get(&guild) {
            Some(o) => self.defaults.clone().with(o),
            None => self.defaults.clone(),
        }
    }

    /// Validates, stores, then applies a change; returns the new effective settings.
    /// The in-memory copy only changes once the database has it.
    pub async fn apply(&self, guild: u64, change: Change) -> Result<GuildSettings, SettingsError> {
        let mut o = self
            .cache
            .lock()
            .expect("settings lock")
            .get(&guild)
            .cloned()
            .unwrap_or_default();
        self.bounds.check(&change).map_err(SettingsError::Invalid)?;
        match change {
            Change::IdleTimeout(d) => o.idle_timeout = Some(d),
            Change::AloneTimeout(d) => o.alone_timeout = Some(d),
            Change::DefaultVolume(v) => o.default_volume = Some(v),
            Change::MaxQueue(n) => o.max_queue = Some(n),
            Change::MaxTrackDuration(d) => o.max_track_duration = Some(d),
            Change::DjRole(r) => o.dj_role = r,
            Change::Panel(on) => o.panel = Some(on),
            Change::Autoplay(on) => o.autoplay = Some(on),
            Change::Reset => o = Overrides::default(),
        }
        with_db!(&self.pool, p => sqlx::query(
            "INSERT INTO guild_settings (guild_id, idle_timeout_ms, alone_timeout_ms, default_volume,
                max_queue, max_track_duration_ms, dj_role, panel, autoplay, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (guild_id) DO UPDATE SET idle_timeout_ms = excluded.idle_timeout_ms,
                alone_timeout_ms = excluded.alone_timeout_ms, default_volume = excluded.default_volume,
                max_queue = excluded.max_queue, max_track_duration_ms = excluded.max_track_duration_ms,
                dj_role = excluded.dj_role, panel = excluded.panel, autoplay = excluded.autoplay,
                updated_at = excluded.updated_at",
        )
        .bind(guild as i64)
        .bind(ms(o.idle_timeout))
        .bind(ms(o.alone_timeout))
        .bind(o.default_volume.map(i64::from))
        .bind(o.max_queue.map(|v| v as i64))
        .bind(ms(o.max_track_duration))
        .bind(o.dj_role.map(|v| v as i64))
        .bind(o.panel)
        .bind(o.autoplay)
        .bind(crate::db::unix_now())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        self.cache
            .lock()
            .expect("settings lock")
            .insert(guild, o.clone());
        Ok(self.defaults.clone().with(&o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_guild_cannot_pass_the_operators_limits() {
        let dir = tempfile::tempdir().unwrap();
        for pool in crate::db::testutil::each_engine(dir.path()).await {
            a_guild_cannot_pass_the_operators_limits_on(pool).await;
        }
    }

    async fn a_guild_cannot_pass_the_operators_limits_on(pool: Db) {
        let mut config = Config::default();
        config.player.max_queue = 100;
        config.ytdlp.max_duration = Duration::from_secs(3600);
        let s = Settings::load(pool.clone(), &config).await.unwrap();
        let err = s.apply(1, Change::MaxQueue(101)).await.unwrap_err();
        assert!(err.to_string().contains("at most 100 tracks"), "{err}");
        assert_eq!(
            s.apply(1, Change::MaxQueue(100)).await.unwrap().max_queue,
            100
        );
        let hour = Duration::from_secs(3600);
        for too_long in [hour * 2, Duration::ZERO] {
            let err = s
                .apply(1, Change::MaxTrackDuration(too_long))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("at most 1h"), "{err}");
        }
        let half = Duration::from_secs(1800);
        let g = s.apply(1, Change::MaxTrackDuration(half)).await.unwrap();
        assert_eq!(g.max_track_duration, half);
        let err = s.apply(1, Change::DefaultVolume(201)).await.unwrap_err();
        assert!(err.to_string().contains("200"), "{err}");

        // With no operator length limit, any length (and none) is the guild's choice.
        config.ytdlp.max_duration = Duration::ZERO;
        let free = Settings::load(pool.clone(), &config).await.unwrap();
        free.apply(2, Change::MaxTrackDuration(Duration::ZERO))
            .await
            .unwrap();
        free.apply(2, Change::MaxTrackDuration(hour * 5))
            .await
            .unwrap();

        // The operator lowers the limits: what was stored above them is read clamped.
        config.player.max_queue = 40;
        config.ytdlp.max_duration = Duration::from_secs(600);
        let lowered = Settings::load(pool, &config).await.unwrap();
        let g = lowered.get(1);
        assert_eq!(g.max_queue, 40);
        assert_eq!(g.max_track_duration, Duration::from_secs(600));
        assert_eq!(lowered.get(2).max_track_duration, Duration::from_secs(600));
    }

    #[tokio::test]
    async fn overrides_apply_persist_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        for pool in crate::db::testutil::each_engine(dir.path()).await {
            overrides_apply_persist_and_reset_on(pool).await;
        }
    }

    async fn overrides_apply_persist_and_reset_on(pool: Db) {
        let config = Config::default();
        let s = Settings::load(pool.clone(), &config).await.unwrap();
        assert_eq!(s.get(1), GuildSettings::defaults(&config));
        let g = s
            .apply(1, Change::IdleTimeout(Duration::from_secs(30)))
            .await
            .unwrap();
        assert_eq!(g.idle_timeout, Duration::from_secs(30));
        s.apply(1, Change::DjRole(Some(77))).await.unwrap();
        assert!(!s.apply(1, Change::Panel(false)).await.unwrap().panel);
        assert!(s.apply(1, Change::Autoplay(true)).await.unwrap().autoplay);
        assert!(s.apply(1, Change::DefaultVolume(300)).await.is_err());
        assert!(s.apply(1, Change::MaxQueue(0)).await.is_err());
        assert_eq!(
            s.get(2),
            GuildSettings::defaults(&config),
            "other guilds keep defaults"
        );

        // a restart reads them back
        let s = Settings::load(pool.clone(), &config).await.unwrap();
        let g = s.get(1);
        assert_eq!(
            (g.idle_timeout, g.dj_role),
            (Duration::from_secs(30), Some(77))
        );
        assert_eq!(g.alone_timeout, config.lifecycle.alone_timeout);
        assert!(!g.panel, "the panel stays off after a restart");
        assert!(s.get(2).panel, "on by default");
        assert!(g.autoplay, "autoplay stays on after a restart");
        assert!(!s.get(2).autoplay, "off by default");
        s.apply(1, Change::Reset).await.unwrap();
        let s = Settings::load(pool, &config).await.unwrap();
        assert_eq!(s.get(1), GuildSettings::defaults(&config));
    }
}
