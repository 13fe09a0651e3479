//! Typed configuration: a TOML file (unknown keys are errors), humantime durations, and a
//! small set of environment overrides so a systemd unit or a test can repoint the bot
//! without writing a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod cluster;
mod extras;
mod links;
mod metrics;
pub use cluster::{ClusterConfig, ShardPlan};
pub use extras::{AutoplayConfig, LyricsConfig, PlaylistsConfig};
pub use links::LinksConfig;
pub use metrics::{ListenAddr, MetricsConfig};

/// Everything the bot reads at start-up. Every section has defaults, so an empty file (or
/// no file at all) is a valid configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub discord: DiscordConfig,
    pub data: DataConfig,
    pub ytdlp: YtdlpConfig,
    pub player: PlayerConfig,
    pub cache: CacheConfig,
    pub lifecycle: LifecycleConfig,
    pub limits: LimitsConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub cluster: ClusterConfig,
    pub metrics: MetricsConfig,
    pub lyrics: LyricsConfig,
    pub playlists: PlaylistsConfig,
    pub autoplay: AutoplayConfig,
    pub links: LinksConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// Base URL for every REST call (`https://discord.com` when unset). Pointing it at an
    /// HTTP rate-limit proxy or at the test emulator disables serenity's own rate limiter.
    pub api_base: Option<String>,
    /// Where `https://discord.com` is reached, when not at its public address: requests
    /// still go to `https://discord.com/api/...` (TLS checked against that name), serenity's
    /// rate limiter stays on, but the connection goes to this `ip:port`. For a
    /// TLS-terminating gateway in front of Discord, and for the test emulator, whose rate
    /// limits the bot must then obey. Not combined with `api_base`.
    pub rest_address: Option<std::net::SocketAddr>,
    /// Register slash commands in this guild only (instant) instead of globally.
    pub dev_guild: Option<u64>,
    /// Gateway shards: `"auto"` (as many as Discord recommends), a total, or a static
    /// range `"a-b/N"` for this process alone.
    pub shards: ShardPlan,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Directory for the database and anything else the bot keeps; created if missing.
    pub dir: PathBuf,
    /// Where the bot keeps what it must not forget: a SQLite file (a path, or `sqlite:`
    /// and a path; the default is `<dir>/encore.db`), or a PostgreSQL URL
    /// (`postgres://user:password@host/db`) that every node of a cluster shares.
    pub database: Option<String>,
}

/// The database the bot opens, read from `data.database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// The embedded default: one file on this machine.
    Sqlite(PathBuf),
    /// A PostgreSQL server (the URL as written, password included).
    Postgres(String),
}

impl DatabaseTarget {
    fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let url = url::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err("a PostgreSQL URL needs a host (postgres://user@host/db)".into());
            }
            return Ok(DatabaseTarget::Postgres(s.to_string()));
        }
        if s.contains("://") && !s.starts_with("sqlite://") {
            return Err("must be a file path, sqlite:<path> or a postgres:// URL".into());
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .unwrap_or(s);
        if path.is_empty() {
            return Err("is empty".into());
        }
        Ok(DatabaseTarget::Sqlite(PathBuf::from(path)))
    }

    /// What to call it in logs and replies (never the password).
    pub fn describe(&self) -> String {
        match self {
            DatabaseTarget::Sqlite(p) => format!("SQLite {}", p.display()),
            DatabaseTarget::Postgres(url) => format!("PostgreSQL {}", redact_url(url)),
        }
    }
}

/// `url` without its password, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
            database: None,
        }
    }
}

impl DataConfig {
    /// The configured database (validated when the config loads).
    pub fn database(&self) -> DatabaseTarget {
        match &self.database {
            Some(s) => DatabaseTarget::parse(s)
                .unwrap_or_else(|_| DatabaseTarget::Sqlite(PathBuf::from(s))),
            None => DatabaseTarget::Sqlite(self.dir.join("encore.db")),
        }
    }

    /// The SQLite file, when the database is one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self.database() {
            DatabaseTarget::Sqlite(p) => Some(p),
            DatabaseTarget::Postgres(_) => None,
        }
    }

    /// This machine's own SQLite file: the database itself, or (with a PostgreSQL store)
    /// `<dir>/node.db`, which indexes what only this machine has (its audio files).
    pub fn local_path(&self) -> PathBuf {
        self.sqlite_path()
            .unwrap_or_else(|| self.dir.join("node.db"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct YtdlpConfig {
    /// The yt-dlp executable: a path, or a name looked up on `PATH`.
    pub path: PathBuf,
    /// Whole-call limit for one yt-dlp run; the process group is killed past it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest track accepted; `0` means no limit.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// Allow URLs on loopback and private networks. Off by default: the generic extractor
    /// would otherwise let any user make the bot fetch from the host's LAN.
    pub allow_private_hosts: bool,
    /// Operator-only: a cookies file passed to yt-dlp (`--cookies`).
    pub cookies: Option<PathBuf>,
    /// Operator-only: the proxy every request goes out through (yt-dlp's, through the
    /// egress proxy, and the bot's own streaming): `http://`, `socks5://` or `socks5h://`.
    pub proxy: Option<String>,
    /// **Test-only**: addresses that count as public, so tests run the real URL policy
    /// against servers on loopback. Never set this on a real bot.
    pub test_public_addresses: Vec<std::net::IpAddr>,
    /// **Test-only**: host names answered before DNS (`"private.test" = "127.0.0.2"`).
    pub test_hosts: std::collections::BTreeMap<String, std::net::IpAddr>,
    /// Keep a private yt-dlp in a virtual environment under `venv_dir`, installed with pip
    /// on first start and updated every `update_interval` (`path` is then ignored).
    pub managed: bool,
    /// How often the managed yt-dlp is updated; `0s` turns scheduled updates off.
    #[serde(with = "humantime_serde")]
    pub update_interval: Duration,
    /// Where the managed virtual environments live; defaults to `<data.dir>/yt-dlp-venv`.
    pub venv_dir: Option<PathBuf>,
    /// What pip installs into the managed environment.
    pub packages: Vec<String>,
    /// Operator-only: extra pip options for the managed install, such as index options
    /// (`--index-url URL`, `--find-links DIR`, `--no-index`).
    pub pip_args: Vec<String>,
}

impl Default for YtdlpConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("yt-dlp"),
            timeout: Duration::from_secs(20),
            max_duration: Duration::from_secs(3 * 3600),
            allow_private_hosts: false,
            cookies: None,
            proxy: None,
            test_public_addresses: Vec::new(),
            test_hosts: Default::default(),
            managed: false,
            update_interval: Duration::from_secs(24 * 3600),
            venv_dir: None,
            packages: vec!["yt-dlp[default]".into(), "deno".into()],
            pip_args: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlayerConfig {
    /// Volume new players start at, in percent (100 keeps Opus passthrough).
    pub default_volume: u16,
    /// Most tracks one guild may have waiting.
    pub max_queue: usize,
    /// Rows per `/queue` page.
    pub page_size: usize,
    /// Most tracks `/play` takes from one playlist.
    pub max_playlist: usize,
    /// Voice calls one songbird mixer thread serves (it moves a call elsewhere when a
    /// thread would miss its 20 ms tick). See BENCHMARKS.md for why 64.
    pub mixers_per_thread: usize,
    /// How often a playing track's position is saved between queue changes, so a crash
    /// resumes near where it was; 0 saves it only with queue changes and at shutdown.
    #[serde(with = "humantime_serde")]
    pub save_position_every: Duration,
    /// Show a now-playing panel with buttons (one message, edited in place) instead of a
    /// "Now playing" line per track; servers can turn it off with `/settings`.
    pub panel: bool,
    /// How often the panel's progress bar moves (it also changes at once on a pause, a
    /// skip, a queue change).
    #[serde(with = "humantime_serde")]
    pub panel_every: Duration,
    /// Longest a media server may keep a playing stream waiting for its next bytes: past
    /// it the connection counts as gone, is re-opened where it was (twice), and then the
    /// track ends early with a notice and the next one plays.
    #[serde(with = "humantime_serde")]
    pub stream_timeout: Duration,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        Self {
            default_volume: 100,
            max_queue: 500,
            page_size: 10,
            max_playlist: 100,
            mixers_per_thread: 64,
            save_position_every: Duration::from_secs(15),
            panel: true,
            panel_every: Duration::from_secs(15),
            stream_timeout: Duration::from_secs(10),
        }
    }
}

/// The metadata and audio caches (`crate::cache`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Master switch: off, every lookup runs yt-dlp and nothing is stored.
    pub enabled: bool,
    /// Keep finished audio files on disk (played without yt-dlp or network).
    pub audio: bool,
    /// Audio file directory, holding nothing else; defaults to `<data.dir>/audio`.
    pub dir: Option<PathBuf>,
    /// How long a resolved track is trusted before yt-dlp describes it again.
    #[serde(with = "humantime_serde")]
    pub metadata_ttl: Duration,
    /// How long search text keeps pointing at the track it found.
    #[serde(with = "humantime_serde")]
    pub search_ttl: Duration,
    /// Most tracks remembered (least recently used are forgotten first).
    pub max_entries: u64,
    /// Disk budget for audio files: "2GiB", "500MB", or bytes.
    #[serde(deserialize_with = "crate::cache::size::deserialize")]
    pub max_bytes: u64,
    /// Longer tracks are never stored; `"0s"` = no limit. Live streams never are.
    #[serde(with = "humantime_serde")]
    pub max_track_duration: Duration,
    /// Most audio downloads at once.
    pub download_concurrency: usize,
    /// Largest file one download may write ("200MB"; `0` = only the `max_bytes` budget):
    /// passed to yt-dlp as `--max-filesize` and enforced while the file grows, since a
    /// stream sent without a length is only known once written.
    #[serde(deserialize_with = "crate::cache::size::deserialize")]
    pub max_file_size: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            audio: true,
            dir: None,
            metadata_ttl: Duration::from_secs(7 * 86400),
            search_ttl: Duration::from_secs(3600),
            max_entries: 10_000,
            max_bytes: 2 << 30,
            max_track_duration: Duration::from_secs(30 * 60),
            download_concurrency: 2,
            max_file_size: 200 << 20,
        }
    }
}

impl CacheConfig {
    pub fn audio_dir(&self, data: &DataConfig) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data.dir.join("audio"))
    }
}

/// When the bot lets go of a voice channel. `"0s"` disables a timeout (24/7 mode).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Leave after nothing has played for this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Leave after no human has been in the channel for this long.
    #[serde(with = "humantime_serde")]
    pub alone_timeout: Duration,
    /// Leave after the music has stayed paused for this long.
    #[serde(with = "humantime_serde")]
    pub pause_timeout: Duration,
    /// How often the sweeper reconciles, reaps and expires.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(5 * 60),
            alone_timeout: Duration::from_secs(60),
            pause_timeout: Duration::from_secs(15 * 60),
            sweep_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most voice calls at once across all servers; `/play` beyond it is refused.
    pub max_calls: usize,
    /// Most yt-dlp lookups at once across all servers (each is a process of about 48 MB);
    /// past it a lookup waits up to `ytdlp.timeout` for a slot, then the bot says it is busy.
    pub max_lookups: usize,
    /// Most lookups one member may have running; past it they are told to slow down.
    pub max_lookups_per_member: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        // Two per core (a lookup mostly waits on the network), from 2 to 8.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            max_calls: 100,
            max_lookups: (cores * 2).clamp(2, 8),
            max_lookups_per_member: 2,
        }
    }
}

/// Who may use `/resources` and `/cleanup`, besides members with Manage Server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub roles: Vec<u64>,
    pub users: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable; colours only when stderr is a terminal.
    #[default]
    Compact,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter; `RUST_LOG` itself wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Compact,
        }
    }
}

/// A configuration problem, worded for the one line printed before exiting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: String, message: String },
}

impl Config {
    /// Reads `explicit` if given (it must exist), else `config.toml` if present, else the
    /// defaults; then applies environment overrides from `env`.
    pub fn load(
        explicit: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match explicit {
            Some(path) => Self::from_file(path)?,
            None if Path::new("config.toml").exists() => Self::from_file(Path::new("config.toml"))?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML; the error is toml's message flattened to one line.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            e.to_string()
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("syntax error")
                .trim()
                .to_string()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default()
        })
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let set = |key: &str| env(key).filter(|v| !v.trim().is_empty());
        if let Some(v) = set("DISCORD_API_BASE") {
            self.discord.api_base = Some(v);
        }
        if let Some(v) = set("ENCORE_DATA_DIR") {
            self.data.dir = PathBuf::from(v);
        }
        if let Some(v) = set("ENCORE_DATABASE") {
            self.data.database = Some(v);
        }
        if let Some(v) = set("ENCORE_SHARDS") {
            self.discord.shards = ShardPlan::parse(&v).map_err(|message| ConfigError::Invalid {
                key: "ENCORE_SHARDS".into(),
                message,
            })?;
        }
        if let Some(v) = set("ENCORE_YTDLP_PATH") {
            self.ytdlp.path = PathBuf::from(v);
        }
        if let Some(v) = set("ENCORE_ALLOW_PRIVATE_HOSTS") {
            self.ytdlp.allow_private_hosts = parse_bool("ENCORE_ALLOW_PRIVATE_HOSTS", &v)?;
        }
        if let Some(v) = set("ENCORE_LOG") {
            self.log.level = v;
        }
        Ok(())
    }

    /// The checks serde cannot express (ranges, a data directory apart from the cache's).
    /// Public so that `fuzz/` can run it on any configuration that parses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        };
        if let Some(db) = &self.data.database {
            DatabaseTarget::parse(db).map_err(|m| invalid("data.database", &m))?;
        }
        if let Some(base) = &self.discord.api_base {
            let parsed =
                url::Url::parse(base).map_err(|e| invalid("discord.api_base", &e.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(
                    "discord.api_base",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if self.discord.api_base.is_some() && self.discord.rest_address.is_some() {
            return Err(invalid(
                "discord.rest_address",
                "set either discord.api_base or discord.rest_address, not both",
            ));
        }
        for check in [
            self.lyrics.check(),
            self.playlists.check(),
            self.autoplay.check(),
            self.links.check(),
        ] {
            check.map_err(|(key, m)| invalid(key, &m))?;
        }
        if self.player.default_volume > 200 {
            return Err(invalid(
                "player.default_volume",
                "must be between 0 and 200",
            ));
        }
        if self.player.max_queue == 0 {
            return Err(invalid("player.max_queue", "must be at least 1"));
        }
        if !(1..=25).contains(&self.player.page_size) {
            return Err(invalid("player.page_size", "must be between 1 and 25"));
        }
        if !(1..=crate::sources::ytdlp::MAX_PLAYLIST_ITEMS).contains(&self.player.max_playlist) {
            return Err(invalid("player.max_playlist", "must be between 1 and 1000"));
        }
        if !(1..=1024).contains(&self.player.mixers_per_thread) {
            return Err(invalid(
                "player.mixers_per_thread",
                "must be between 1 and 1024",
            ));
        }
        let every = self.player.save_position_every;
        if !every.is_zero() && every < Duration::from_secs(1) {
            return Err(invalid(
                "player.save_position_every",
                "must be 0 (off) or at least 1s",
            ));
        }
        if self.player.stream_timeout.is_zero() {
            return Err(invalid("player.stream_timeout", "must be more than 0s"));
        }
        if self.player.panel_every < crate::player::panel::MIN_GAP {
            return Err(invalid("player.panel_every", "must be at least 2s"));
        }
        if self.cluster.lease < Duration::from_secs(2) {
            return Err(invalid("cluster.lease", "must be at least 2s"));
        }
        if self.lifecycle.sweep_interval < Duration::from_secs(1) {
            return Err(invalid("lifecycle.sweep_interval", "must be at least 1s"));
        }
        if self.limits.max_calls == 0 {
            return Err(invalid("limits.max_calls", "must be at least 1"));
        }
        if !(1..=1024).contains(&self.limits.max_lookups) {
            return Err(invalid("limits.max_lookups", "must be between 1 and 1024"));
        }
        if self.limits.max_lookups_per_member == 0 {
            return Err(invalid(
                "limits.max_lookups_per_member",
                "must be at least 1",
            ));
        }
        if self.ytdlp.timeout < Duration::from_secs(1) {
            return Err(invalid("ytdlp.timeout", "must be at least 1s"));
        }
        if self.ytdlp.path.as_os_str().is_empty() {
            return Err(invalid("ytdlp.path", "must not be empty"));
        }
        if let Some(p) = &self.ytdlp.proxy {
            crate::sources::egress::upstream::Upstream::parse(p)
                .map_err(|e| invalid("ytdlp.proxy", &e))?;
        }
        if self.ytdlp.managed && self.ytdlp.packages.is_empty() {
            return Err(invalid("ytdlp.packages", "must name at least yt-dlp"));
        }
        self.metrics
            .check()
            .map_err(|m| invalid("metrics.listen", &m))?;
        if self.cache.max_entries == 0 {
            return Err(invalid("cache.max_entries", "must be at least 1"));
        }
        if !(1..=16).contains(&self.cache.download_concurrency) {
            return Err(invalid(
                "cache.download_concurrency",
                "must be between 1 and 16",
            ));
        }
        if self.cache.enabled && self.cache.audio {
            let audio = self.cache.audio_dir(&self.data);
            let db = self.data.local_path();
            if audio == self.data.dir || db.parent() == Some(audio.as_path()) {
                return Err(invalid(
                    "cache.dir",
                    "must be a directory of its own (not the data directory): unknown files there may be deleted",
                ));
            }
        }
        Ok(())
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            key: key.into(),
            message: format!("expected true or false, got {v:?}"),
        }),
    }
}

/// A bot token that has the shape Discord issues: three dot-separated base64url parts.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("DISCORD_TOKEN is not set (put it in the environment or in .env)")]
    Missing,
    #[error("DISCORD_TOKEN is malformed: {0}")]
    Malformed(&'static str),
}

impl Token {
    pub fn parse(raw: Option<&str>) -> Result<Token, TokenError> {
        let raw = raw.map(str::trim).unwrap_or_default();
        // People paste the header form; accept it.
        let raw = raw.strip_prefix("Bot ").unwrap_or(raw).trim();
        if raw.is_empty() {
            return Err(TokenError::Missing);
        }
        let parts: Vec<&str> = raw.split('.').collect();
        if parts.len() != 3 {
            return Err(TokenError::Malformed(
                "expected three parts separated by dots (copy it from the Bot page of the Developer Portal)",
            ));
        }
        let base64url = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !parts.iter().all(|p| base64url(p)) {
            return Err(TokenError::Malformed(
                "it contains characters a token never has (quotes or spaces?)",
            ));
        }
        if parts[0].len() < 16 || parts[2].len() < 20 {
            return Err(TokenError::Malformed("it is too short to be a bot token"));
        }
        Ok(Token(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.ytdlp.timeout, Duration::from_secs(20));
        assert_eq!(
            c.data.database(),
            DatabaseTarget::Sqlite(PathBuf::from("data/encore.db"))
        );
        assert_eq!(c.player.default_volume, 100);
    }

    #[test]
    fn durations_are_humantime() {
        let c =
            Config::from_toml("[ytdlp]\ntimeout = \"45s\"\nmax_duration = \"1h 30m\"\n").unwrap();
        assert_eq!(c.ytdlp.timeout, Duration::from_secs(45));
        assert_eq!(c.ytdlp.max_duration, Duration::from_secs(5400));
        let err = Config::from_toml("[ytdlp]\ntimeout = \"soon\"\n").unwrap_err();
        assert!(err.contains("soon") || err.contains("unknown"), "{err}");
        let c = Config::from_toml("[player]\nstream_timeout = \"3s\"\n").unwrap();
        assert_eq!(c.player.stream_timeout, Duration::from_secs(3));
        assert_eq!(
            Config::default().player.stream_timeout,
            Duration::from_secs(10)
        );
        let c = Config::from_toml("[player]\nstream_timeout = \"0s\"\n").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("player.stream_timeout"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[player]\nvolum = 50\n").unwrap_err();
        assert!(err.contains("volum"), "{err}");
        let err = Config::from_toml("[nonsense]\n").unwrap_err();
        assert!(err.contains("nonsense"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn the_proxy_is_checked_at_start_and_test_settings_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[ytdlp]\nproxy = \"https://p.example:3128\"\n").unwrap();
        let err = Config::load(Some(&path), |_| None).unwrap_err().to_string();
        assert!(
            err.contains("ytdlp.proxy") && err.contains("socks5://"),
            "{err}"
        );
        std::fs::write(
            &path,
            "[ytdlp]\nproxy = \"socks5h://127.0.0.1:1080\"\n\
             test_public_addresses = [\"127.0.0.1\"]\n\
             test_hosts = { \"private.test\" = \"127.0.0.2\" }\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), |_| None).unwrap();
        assert_eq!(
            c.ytdlp.test_public_addresses,
            vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(c.ytdlp.test_hosts["private.test"].to_string(), "127.0.0.2");
    }

    #[test]
    fn database_targets_parse_once_at_load() {
        let parse = DatabaseTarget::parse;
        assert_eq!(
            parse("/var/lib/encore/encore.db"),
            Ok(DatabaseTarget::Sqlite("/var/lib/encore/encore.db".into()))
        );
        assert_eq!(
            parse("sqlite:data/x.db"),
            Ok(DatabaseTarget::Sqlite("data/x.db".into()))
        );
        let pg = "postgres://encore:s3cret@db.internal:5432/encore";
        assert_eq!(parse(pg), Ok(DatabaseTarget::Postgres(pg.into())));
        let shown = parse(pg).unwrap().describe();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db.internal:5432/encore"), "{shown}");
        assert!(parse("mysql://x/y").is_err());
        assert!(parse("postgres:///nohost").is_err());
        assert!(parse("").is_err());
        let env = |k: &str| (k == "ENCORE_DATABASE").then(|| "mysql://db/encore".to_string());
        let err = Config::load(None, env).unwrap_err().to_string();
        assert!(err.contains("data.database"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[ytdlp]\npath = \"/opt/yt\"\n[data]\ndir = \"/var/x\"\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = [
            ("DISCORD_API_BASE", "http://127.0.0.1:9"),
            ("ENCORE_YTDLP_PATH", "/usr/bin/yt-dlp"),
            ("ENCORE_ALLOW_PRIVATE_HOSTS", "true"),
        ]
        .into();
        let c = Config::load(Some(&path), |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.discord.api_base.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.ytdlp.path, PathBuf::from("/usr/bin/yt-dlp"));
        assert_eq!(c.data.dir, PathBuf::from("/var/x"));
        assert!(c.ytdlp.allow_private_hosts);
    }

    #[test]
    fn shards_and_cluster_read_from_toml_and_env() {
        let c = Config::from_toml("[discord]\nshards = 4\n[cluster]\nlease = \"6s\"\n").unwrap();
        assert_eq!(c.discord.shards, ShardPlan::Total(4));
        assert_eq!(c.cluster.lease, Duration::from_secs(6));
        let c = Config::from_toml("[discord]\nshards = \"2-3/4\"\n").unwrap();
        assert!(c.discord.shards.is_static());
        assert_eq!(Config::default().discord.shards, ShardPlan::Auto);
        let err = Config::from_toml("[discord]\nshards = \"4-2/4\"\n").unwrap_err();
        assert!(err.contains("range"), "{err}");
        let env = |k: &str| (k == "ENCORE_SHARDS").then(|| "0-1/2".to_string());
        let c = Config::load(Some(&write_empty()), env).unwrap();
        assert_eq!(c.discord.shards.to_string(), "0-1/2");
        let env = |k: &str| (k == "ENCORE_SHARDS").then(|| "none".to_string());
        let err = Config::load(Some(&write_empty()), env).unwrap_err();
        assert!(err.to_string().contains("ENCORE_SHARDS"), "{err}");
        let err = Config::from_toml("[cluster]\nlease = \"1s\"\n")
            .unwrap()
            .validate();
        assert!(err.unwrap_err().to_string().contains("cluster.lease"));
    }

    /// An empty config file that outlives the test (a leaked temp dir is fine in tests).
    fn write_empty() -> PathBuf {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("empty.toml");
        std::fs::write(&path, "").unwrap();
        path
    }

    #[test]
    fn rest_address_keeps_the_discord_name_and_excludes_api_base() {
        let c = Config::from_toml("[discord]\nrest_address = \"127.0.0.1:8443\"\n").unwrap();
        assert_eq!(
            c.discord.rest_address,
            Some("127.0.0.1:8443".parse().unwrap())
        );
        let both = "[discord]\nrest_address = \"127.0.0.1:8443\"\napi_base = \"http://x\"\n";
        let err = Config::from_toml(both).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("discord.rest_address"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let env = |k: &str| (k == "DISCORD_API_BASE").then(|| "ftp://x".to_string());
        let err = Config::load(Some(Path::new("/nonexistent/encore.toml")), no_env).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/encore.toml"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "").unwrap();
        let err = Config::load(Some(&path), env).unwrap_err();
        assert!(err.to_string().contains("discord.api_base"), "{err}");
        std::fs::write(&path, "[player]\ndefault_volume = 300\n").unwrap();
        let err = Config::load(Some(&path), no_env).unwrap_err();
        assert!(err.to_string().contains("player.default_volume"), "{err}");
        std::fs::write(&path, "[player]\nmixers_per_thread = 0\n").unwrap();
        let err = Config::load(Some(&path), no_env).unwrap_err();
        assert!(
            err.to_string().contains("player.mixers_per_thread"),
            "{err}"
        );
        std::fs::write(&path, "[player]\nsave_position_every = \"200ms\"\n").unwrap();
        let err = Config::load(Some(&path), no_env).unwrap_err();
        assert!(
            err.to_string().contains("player.save_position_every"),
            "{err}"
        );
        std::fs::write(&path, "[player]\nsave_position_every = \"0s\"\n").unwrap();
        let off = Config::load(Some(&path), no_env).unwrap();
        assert!(off.player.save_position_every.is_zero());
        let env = |k: &str| (k == "ENCORE_ALLOW_PRIVATE_HOSTS").then(|| "maybe".to_string());
        std::fs::write(&path, "").unwrap();
        assert!(Config::load(Some(&path), env).is_err());
    }

    #[test]
    fn token_shapes() {
        let good = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.abcdefghijklmnopqrstuvwxyz0123";
        assert!(Token::parse(Some(good)).is_ok());
        assert!(Token::parse(Some(&format!("Bot {good}\n"))).is_ok());
        assert_eq!(Token::parse(None).unwrap_err(), TokenError::Missing);
        assert_eq!(Token::parse(Some("  ")).unwrap_err(), TokenError::Missing);
        assert!(matches!(
            Token::parse(Some("abc")),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            Token::parse(Some(
                "\"MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.abcdefghijklmnopqrstuvwxyz0123\""
            )),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            Token::parse(Some("a.b.c")),
            Err(TokenError::Malformed(_))
        ));
        assert!(!format!("{:?}", Token::parse(Some(good)).unwrap()).contains("abcdef"));
    }
}
