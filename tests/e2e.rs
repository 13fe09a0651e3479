//! End-to-end: the real bot (the same `App` the binary runs) against the Discord emulator,
//! with the real yt-dlp resolving tone files served on 127.0.0.1.

mod support;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Once};
use std::time::Duration;

use encore::app::App;
use encore::config::{Config, Token};
use encore::discord::Bot;
use serde_json::json;
use support::*;
use tokio_util::sync::CancellationToken;

const GUILD: u64 = 1_000_000_000_000_001;
const MUSIC: u64 = 1_000_000_000_000_101;
const LOBBY: u64 = 1_000_000_000_000_102;
const TEXT: u64 = 1_000_000_000_000_201;
const ANN: u64 = 1_000_000_000_000_301;
const BEN: u64 = 1_000_000_000_000_302;

const T: Duration = Duration::from_secs(30);

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

struct World {
    emu: Emulator,
    files: FileServer,
    bot: Arc<Bot>,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
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
        let files = FileServer::start(&media).await;

        let mut config = Config::default();
        config.discord.api_base = Some(emu.api_base());
        config.data.dir = dir.path().join("data");
        config.ytdlp.path = ytdlp_path();
        config.ytdlp.allow_private_hosts = true;
        let token = Token::parse(Some(&emu.bot_token())).expect("emulator token is well-formed");
        let shutdown = CancellationToken::new();
        let app = App::build(config, token, shutdown.clone()).await.unwrap();
        let bot = app.bot.clone();
        let run = tokio::spawn(app.run());
        emu.wait_ready(T).await;
        World {
            emu,
            files,
            bot,
            shutdown,
            run,
            _dir: dir,
        }
    }

    async fn cmd(&self, user: u64, name: &str, options: serde_json::Value) -> Reply {
        self.emu
            .command(GUILD, TEXT, user, name, options)
            .await
            .response(T)
            .await
    }

    async fn play(&self, user: u64, query: &str) -> Reply {
        self.cmd(
            user,
            "play",
            json!([{"name": "query", "type": 3, "value": query}]),
        )
        .await
    }

    /// Waits for `n` audible frames and returns the frequency heard in them.
    async fn hear(&self, n: usize) -> f32 {
        self.emu.wait_audio_frames(GUILD, n, T).await;
        let frames = non_silent(&self.emu.audio(GUILD));
        dominant_frequency(&frames[frames.len().saturating_sub(n)..])
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(T, self.run).await;
        r.expect("the bot shuts down in time")
            .expect("run task")
            .expect("clean exit");
    }
}

fn near(f: f32, want: f32) -> bool {
    (f - want).abs() <= 15.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_url_joins_the_callers_channel_and_the_tone_is_heard() {
    let w = World::start().await;
    let r = w.play(ANN, &w.files.url("low.wav")).await;
    assert!(!r.ephemeral, "{r:?}");
    assert!(r.text().contains("Playing"), "{}", r.text());
    assert!(r.text().contains("low"), "{}", r.text());
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;

    let f = w.hear(60).await;
    assert!(near(f, 440.0), "heard {f} Hz, want 440");
    let frames = non_silent(&w.emu.audio(GUILD));
    assert_contiguous(&frames);
    assert!(w
        .emu
        .messages(TEXT)
        .iter()
        .any(|m| m.text().contains("Now playing")));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plays_queue_in_order_skip_stop_and_leave() {
    let w = World::start().await;
    let first = w.play(ANN, &w.files.url("low.wav")).await;
    assert!(first.text().contains("Playing"), "{}", first.text());
    let second = w.play(ANN, &w.files.url("high.wav")).await;
    assert!(second.text().contains("position 1"), "{}", second.text());

    let q = w.cmd(ANN, "queue", json!([])).await.text();
    let (low, high) = (q.find("low").unwrap(), q.find("high").unwrap());
    assert!(low < high, "now playing first, then the queued one:\n{q}");
    assert!(near(w.hear(25).await, 440.0));

    let skip = w.cmd(ANN, "skip", json!([])).await;
    assert!(skip.text().contains("Skipped"), "{}", skip.text());
    w.emu.clear_audio(GUILD);
    let f = w.hear(40).await;
    assert!(near(f, 880.0), "after /skip heard {f} Hz, want 880");

    let stop = w.cmd(ANN, "stop", json!([])).await;
    assert!(stop.text().contains("Stopped"), "{}", stop.text());
    let np = w.cmd(ANN, "nowplaying", json!([])).await;
    assert!(
        np.ephemeral && np.text().contains("Nothing is playing"),
        "{}",
        np.text()
    );

    let leave = w.cmd(ANN, "leave", json!([])).await;
    assert!(leave.text().contains("Left"), "{}", leave.text());
    w.emu.wait_bot_voice(GUILD, None, T).await;
    assert_eq!(w.emu.voice_state_updates(GUILD).last(), Some(&None));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_private_and_silent() {
    let w = World::start().await;
    let marker = w._dir.path().join("pwned");

    // not in a voice channel
    let r = w.play(BEN, &w.files.url("low.wav")).await;
    assert!(
        r.ephemeral && r.text().contains("Join a voice channel"),
        "{r:?}"
    );

    // a file: URL never reaches yt-dlp
    let stats = w.bot.ytdlp.stats();
    let spawned = stats.spawned.load(Ordering::SeqCst);
    let r = w.play(ANN, "file:///etc/passwd").await;
    assert_eq!(
        stats.spawned.load(Ordering::SeqCst),
        spawned,
        "refused before yt-dlp ran"
    );
    assert!(r.ephemeral && r.text().contains("file"), "{}", r.text());
    assert!(!r.text().contains("root:"), "{}", r.text());

    // an option-looking query is a search term, not an option
    let q = format!("--exec=touch {}", marker.display());
    let r = w.play(ANN, &q).await;
    assert!(r.ephemeral, "{r:?}");
    assert!(
        !marker.exists(),
        "user text must never become a yt-dlp option"
    );

    // a URL that 404s
    let r = w.play(ANN, &w.files.url("missing.wav")).await;
    assert!(r.ephemeral, "{r:?}");
    assert!(r.text().contains("Nothing was found"), "{}", r.text());

    assert!(
        w.emu.voice_state_updates(GUILD).is_empty(),
        "no join for refused plays"
    );
    assert!(w.emu.audio(GUILD).is_empty());
    assert_eq!(
        stats.running.load(Ordering::SeqCst),
        0,
        "no yt-dlp outlives its lookup"
    );
    // the bot still works afterwards
    let r = w.play(ANN, &w.files.url("low.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;
    w.stop().await;
}
