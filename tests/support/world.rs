//! A running bot (the same `App` the binary runs) wired to a fresh emulator: one guild
//! with two voice channels, a text channel, two members (ANN in MUSIC, BEN nowhere), and
//! tone files served on 127.0.0.1. Shared by every end-to-end test file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use encore::app::App;
use encore::config::{Config, Token};
use encore::discord::Bot;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;

pub const GUILD: u64 = 1_000_000_000_000_001;
pub const MUSIC: u64 = 1_000_000_000_000_101;
pub const LOBBY: u64 = 1_000_000_000_000_102;
pub const TEXT: u64 = 1_000_000_000_000_201;
pub const ANN: u64 = 1_000_000_000_000_301;
pub const BEN: u64 = 1_000_000_000_000_302;

pub const T: Duration = Duration::from_secs(30);

/// The yt-dlp the tests use: `ENCORE_YTDLP`, else the project's `.venv`, else `PATH`.
/// Missing yt-dlp fails the test with the way to install it; it is never skipped.
pub fn ytdlp_path() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("ENCORE_YTDLP")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/yt-dlp"),
            PathBuf::from("yt-dlp"),
        ])
        .collect();
    for c in &candidates {
        let ok = std::process::Command::new(c)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return c.clone();
        }
    }
    panic!(
        "yt-dlp not found (tried {candidates:?}). Install it with: \
         python3 -m venv .venv && .venv/bin/pip install yt-dlp  (or set ENCORE_YTDLP)"
    );
}

/// A yt-dlp that takes `secs` to answer any lookup (a slow site), then runs the real one.
pub fn slow_ytdlp(dir: &Path, secs: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("slow-yt-dlp");
    let real = ytdlp_path();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --version ] && exec '{real}' --version; done\n\
             sleep {secs}\nexec '{real}' \"$@\"\n",
            real = real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,encore=info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The bot, in this process, against an emulator: what [`World`] starts, for tests that
/// set the emulator up their own way.
pub struct RunningBot {
    pub bot: Arc<Bot>,
    pub songbird: Arc<songbird::Songbird>,
    pub shutdown: CancellationToken,
    pub run: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub config: Config,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, when `metrics.listen` is set.
    pub metrics: Option<std::net::SocketAddr>,
}

/// Builds the bot against `emu` with its data under `dir`, `tweak` applied to the
/// config, and starts it; does not wait for it to connect (it may be refused).
pub async fn start_bot(emu: &Emulator, dir: &Path, tweak: impl FnOnce(&mut Config)) -> RunningBot {
    let mut config = Config::default();
    // `https://discord.com`, served by the emulator: serenity's rate limiter stays on,
    // as in production, and obeys the emulator's rate-limit headers.
    config.discord.rest_address = Some(emu.rest_tls_addr());
    config.data.dir = dir.join("data");
    config.ytdlp.path = ytdlp_path();
    config.ytdlp.allow_private_hosts = true;
    // The tones are plain files, whose length yt-dlp cannot tell, and a track of unknown
    // length is refused under a length limit: tests of that limit set one.
    config.ytdlp.max_duration = Duration::ZERO;
    tweak(&mut config);
    let token = Token::parse(Some(&emu.bot_token())).expect("emulator token is well-formed");
    let shutdown = CancellationToken::new();
    let app = App::build(config.clone(), token, shutdown.clone())
        .await
        .unwrap();
    RunningBot {
        bot: app.bot.clone(),
        songbird: app.songbird.clone(),
        shutdown,
        metrics: app.metrics,
        run: tokio::spawn(app.run()),
        config,
    }
}

impl RunningBot {
    /// A graceful stop (as on SIGTERM); fails the test unless the bot exits cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(T, self.run)
            .await
            .expect("the bot shuts down in time")
            .expect("run task")
            .expect("clean exit");
    }
}

pub struct World {
    pub emu: Emulator,
    pub files: FileServer,
    pub bot: Arc<Bot>,
    /// The bot's voice manager, to see which calls songbird holds.
    pub songbird: Arc<songbird::Songbird>,
    pub shutdown: CancellationToken,
    pub run: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The bot's config, reused by [`World::restart`].
    pub config: Config,
    pub dir: tempfile::TempDir,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, when `metrics.listen` is set.
    pub metrics: Option<std::net::SocketAddr>,
}

impl World {
    pub async fn start() -> World {
        Self::start_with(|_| {}).await
    }

    /// Starts with `tweak` applied to the bot's config (after the emulator defaults).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> World {
        init_logs();
        let emu = Emulator::start().await;
        emu.add_guild(GUILD, "Test Server");
        emu.add_voice_channel(GUILD, MUSIC, "Music");
        emu.add_voice_channel(GUILD, LOBBY, "Lobby");
        emu.add_text_channel(GUILD, TEXT, "general");
        emu.add_member(GUILD, ANN, "ann", false, false);
        emu.add_member(GUILD, BEN, "ben", false, false);
        emu.user_join_voice(GUILD, ANN, MUSIC).await;

        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        std::fs::create_dir_all(&media).unwrap();
        write_tone_wav(&media.join("low.wav"), 440.0, 3.0, 0.5);
        write_tone_wav(&media.join("high.wav"), 880.0, 3.0, 0.5);
        write_tone_wav(&media.join("long.wav"), 330.0, 8.0, 0.5);
        let files = FileServer::start(&media).await;

        let RunningBot {
            bot,
            songbird,
            shutdown,
            run,
            config,
            metrics,
        } = start_bot(&emu, dir.path(), tweak).await;
        emu.wait_ready(T).await;
        World {
            emu,
            files,
            bot,
            songbird,
            shutdown,
            run,
            config,
            dir,
            metrics,
        }
    }

    /// Where the served files live: tests may add more (`self.files.url(name)`).
    pub fn media_dir(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    pub async fn cmd(&self, user: u64, name: &str, options: serde_json::Value) -> Reply {
        self.emu
            .command(GUILD, TEXT, user, name, options)
            .await
            .response(T)
            .await
    }

    pub async fn play(&self, user: u64, query: &str) -> Reply {
        self.cmd(
            user,
            "play",
            json!([{"name": "query", "type": 3, "value": query}]),
        )
        .await
    }

    /// A `freq` Hz tone of `secs` seconds served as `<name>.wav` (written once), as a
    /// queue-ready track with a known length: tests put it straight into the player.
    pub fn tone(&self, name: &str, freq: f32, secs: f32) -> Arc<encore::sources::Track> {
        let file = format!("{name}.wav");
        let path = self.media_dir().join(&file);
        if !path.exists() {
            write_tone_wav(&path, freq, secs, 0.5);
        }
        let url = self.files.url(&file);
        Arc::new(encore::sources::Track {
            title: name.into(),
            page_url: url.clone(),
            stream_url: url,
            http_headers: Vec::new(),
            duration: Some(Duration::from_secs_f32(secs)),
            extractor: "generic".into(),
            id: name.into(),
            is_live: false,
            uploader: None,
            thumbnail: None,
            ext: Some("wav".into()),
            acodec: None,
            stream_expires: None,
        })
    }

    /// Queues `tracks` for `requester` in MUSIC straight into the player, as `/play` would
    /// after a lookup.
    pub async fn enqueue(
        &self,
        requester: encore::player::Requester,
        tracks: Vec<Arc<encore::sources::Track>>,
    ) {
        let player = self.bot.players.get_or_start(GUILD);
        player
            .call_within(encore::player::JOIN_WAIT, |reply| {
                encore::player::Request::Enqueue {
                    tracks,
                    requester,
                    voice_channel: MUSIC,
                    text_channel: TEXT,
                    front: false,
                    reply,
                }
            })
            .await
            .expect("enqueue");
    }

    /// The guild's player state (it must be running).
    pub async fn snapshot(&self) -> encore::player::Snapshot {
        self.bot
            .players
            .get(GUILD)
            .expect("a player")
            .ask(|reply| encore::player::Request::Snapshot { reply })
            .await
            .expect("snapshot")
    }

    /// Waits for `n` audible frames and returns the frequency heard in them.
    pub async fn hear(&self, n: usize) -> f32 {
        self.emu.wait_audio_frames(GUILD, n, T).await;
        let frames = non_silent(&self.emu.audio(GUILD));
        dominant_frequency(&frames[frames.len().saturating_sub(n)..])
    }

    /// A graceful stop (as on SIGTERM) and a fresh start of the bot on the same data
    /// directory and database, against the same emulator.
    pub async fn restart(&mut self) {
        self.restart_with(|| {}).await;
    }

    /// [`World::restart`] with `between` run while the bot is down (a host repairing its
    /// disk, say).
    pub async fn restart_with(&mut self, between: impl FnOnce()) {
        self.shutdown.cancel();
        let run = std::mem::replace(&mut self.run, tokio::spawn(async { Ok(()) }));
        tokio::time::timeout(T, run)
            .await
            .expect("the bot shuts down in time")
            .expect("run task")
            .expect("clean exit");
        between();
        let registrations = self.emu.registration_count();
        let token = Token::parse(Some(&self.emu.bot_token())).unwrap();
        self.shutdown = CancellationToken::new();
        let app = App::build(self.config.clone(), token, self.shutdown.clone())
            .await
            .unwrap();
        self.bot = app.bot.clone();
        self.songbird = app.songbird.clone();
        self.metrics = app.metrics;
        self.run = tokio::spawn(app.run());
        self.emu
            .wait_for("the restarted bot to register its commands", T, move |e| {
                e.registration_count() > registrations
            })
            .await;
    }

    /// Shuts the bot down and fails the test if it did not exit cleanly, or if it sent
    /// Discord anything the emulator found malformed or had no route for, at any time
    /// during the test (a bad embed or an unknown route would otherwise pass unseen).
    pub async fn stop(self) {
        let emu = self.emu.clone();
        self.stop_allowing_protocol_errors().await;
        emu.assert_no_protocol_errors();
    }

    /// [`World::stop`] for the tests that provoke protocol errors on purpose (a reply
    /// after the interaction deadline) and assert them themselves.
    pub async fn stop_allowing_protocol_errors(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(T, self.run).await;
        r.expect("the bot shuts down in time")
            .expect("run task")
            .expect("clean exit");
    }
}

/// A command's options as Discord sends them: each value's option type from its JSON kind
/// (boolean 5, integer 4, number 10, string 3).
pub fn opts(pairs: &[(&str, serde_json::Value)]) -> serde_json::Value {
    use serde_json::Value;
    Value::Array(
        pairs
            .iter()
            .map(|(name, v)| {
                let kind = match v {
                    Value::Bool(_) => 5,
                    Value::Number(n) if n.is_i64() || n.is_u64() => 4,
                    Value::Number(_) => 10,
                    _ => 3,
                };
                json!({"name": name, "type": kind, "value": v})
            })
            .collect(),
    )
}
