//! Nothing is lost across restarts: queues resume where they were (after a graceful stop
//! and after a kill), settings survive, and a repeat play is answered from the cache.
//! Every test runs twice: on SQLite (the default) and on PostgreSQL (a cluster's store).

mod support;

use std::time::Duration;

use encore::config::DatabaseTarget;
use encore::db::Db;
use serde_json::json;
use support::postgres::Engine;
use support::world::*;
use support::*;

crate::on_both_engines!(
    a_graceful_restart_resumes_the_queue_in_order,
    an_empty_channel_drops_the_saved_queue_silently,
    settings_take_effect_and_survive_a_restart,
    a_killed_bot_resumes_from_the_last_committed_change,
);

/// A bot on `engine`, with a fresh database.
async fn start(engine: Engine) -> World {
    let database = engine.fresh_database().await;
    World::start_with(move |c| c.data.database = database).await
}

fn sounds_like(seq: &[f32], want: &[f32]) -> bool {
    seq.len() == want.len() && seq.iter().zip(want).all(|(a, b)| (a - b).abs() < 20.0)
}

/// Waits until `sql` (one number, for the test guild) read from the bot's database
/// satisfies `done`; panics with what it last read.
async fn saved_until(target: &DatabaseTarget, sql: &str, done: impl Fn(i64) -> bool) {
    let db = Db::open(target).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    let mut saved = -1;
    while tokio::time::Instant::now() < deadline {
        let read = match &db {
            Db::Sqlite(p) => {
                sqlx::query_scalar(sql)
                    .bind(GUILD as i64)
                    .fetch_one(p)
                    .await
            }
            Db::Postgres(p) => {
                sqlx::query_scalar(sql)
                    .bind(GUILD as i64)
                    .fetch_one(p)
                    .await
            }
        };
        saved = read.unwrap_or(-1);
        if done(saved) {
            db.close().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{}: `{sql}` is still {saved}", target.describe());
}

/// Waits until the bot's database holds `n` saved tracks for the test guild.
async fn saved_tracks_reach(db: &DatabaseTarget, n: i64) {
    let sql = "SELECT COUNT(*) FROM saved_queue_tracks WHERE guild_id = $1";
    saved_until(db, sql, |saved| saved == n).await;
}

async fn queue_three(w: &World) {
    for name in ["a.wav", "b.wav", "c.wav"] {
        let r = w.play(ANN, &w.files.url(name)).await;
        assert!(!r.ephemeral, "{}", r.text());
    }
}

fn write_tones(w: &World) {
    write_tone_wav(&w.media_dir().join("a.wav"), 440.0, 12.0, 0.5);
    write_tone_wav(&w.media_dir().join("b.wav"), 660.0, 2.0, 0.5);
    write_tone_wav(&w.media_dir().join("c.wav"), 880.0, 2.0, 0.5);
}

async fn a_graceful_restart_resumes_the_queue_in_order(engine: Engine) {
    let mut w = start(engine).await;
    write_tones(&w);
    // a: 4 s at 440 Hz, then 16 s at 550 Hz: restarted in the second part, it resumes there.
    // The second part is long so that a busy machine, which notices the 550 Hz late and
    // restarts slowly, still restarts a in its middle and hears the rest of it; with 5 s it
    // sometimes restarted at a's very end (or during c), and the test blamed the bot.
    write_tone_pair_wav(&w.media_dir().join("a.wav"), (440.0, 4.0), (550.0, 16.0));
    queue_three(&w).await;
    let emu = w.emu.clone();
    w.emu
        .wait_for("a's second tone", T, move |_| {
            tone_sequence(&emu.audio(GUILD))
                .iter()
                .any(|f| (f - 550.0).abs() < 20.0)
        })
        .await;
    w.restart().await;
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;
    w.emu.clear_audio(GUILD);
    // the rest of a (resumed mid-track, in its second tone), then b, then c
    let emu = w.emu.clone();
    w.emu
        .wait_for(
            "b and c after the restart",
            Duration::from_secs(40),
            move |_| {
                let seq = tone_sequence(&emu.audio(GUILD));
                seq.iter().any(|f| (f - 880.0).abs() < 20.0)
            },
        )
        .await;
    let seq = tone_sequence(&w.emu.audio(GUILD));
    let notes: Vec<String> = w.emu.messages(TEXT).iter().map(|m| m.text()).collect();
    assert!(
        sounds_like(&seq, &[550.0, 660.0, 880.0]),
        "heard {seq:?}; channel: {notes:#?}\n{:?}",
        w.emu.dave_stats(GUILD)
    );
    w.stop().await;
}

async fn an_empty_channel_drops_the_saved_queue_silently(engine: Engine) {
    let mut w = start(engine).await;
    write_tones(&w);
    queue_three(&w).await;
    w.emu.wait_audio_frames(GUILD, 10, T).await;
    let joins_before = w.emu.voice_state_updates(GUILD).len();
    // the listener leaves while the bot is down
    w.shutdown.cancel();
    w.emu.user_leave_voice(GUILD, ANN).await;
    w.restart().await;
    // The restore has decided once the saved queue is gone; it never rejoins after that.
    let deadline = std::time::Instant::now() + T;
    while !encore::db::queues::load_all(&w.bot.stores.db)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the saved queue was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let updates = w.emu.voice_state_updates(GUILD);
    assert_eq!(updates.last(), Some(&None), "no rejoin: {updates:?}");
    assert_eq!(updates.len(), joins_before + 1, "only the shutdown leave");
    let saved = encore::db::queues::load_all(&w.bot.stores.db)
        .await
        .unwrap();
    assert!(saved.is_empty(), "the queue was dropped");
    w.stop().await;
}

async fn settings_take_effect_and_survive_a_restart(engine: Engine) {
    let mut w = start(engine).await;
    let boss = 1_000_000_000_000_398;
    w.emu.add_member(GUILD, boss, "boss", false, true);
    let r = w
        .cmd(
            boss,
            "settings",
            json!([{"name": "idle_timeout", "type": 3, "value": "1s"}]),
        )
        .await;
    assert!(r.text().contains("Idle timeout: **1s**"), "{}", r.text());
    let refused = w
        .cmd(
            ANN,
            "settings",
            json!([{"name": "idle_timeout", "type": 3, "value": "1h"}]),
        )
        .await;
    assert!(refused.ephemeral, "members cannot change settings");
    let bad = w
        .cmd(
            boss,
            "settings",
            json!([{"name": "alone_timeout", "type": 3, "value": "soon"}]),
        )
        .await;
    assert!(
        bad.ephemeral && bad.text().contains("duration"),
        "{}",
        bad.text()
    );

    w.restart().await;
    let r = w.cmd(boss, "settings", json!([])).await;
    assert!(r.text().contains("Idle timeout: **1s**"), "{}", r.text());
    // the short idle timeout makes the bot leave soon after the track ends
    let r = w.play(ANN, &w.files.url("low.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;
    w.emu
        .wait_bot_voice(GUILD, None, Duration::from_secs(15))
        .await;
    w.stop().await;
}

/// The real binary, killed with SIGKILL mid-track, resumes from the last committed change:
/// the queue, and the position it saved while playing.
async fn a_killed_bot_resumes_from_the_last_committed_change(engine: Engine) {
    let w = start(engine).await;
    let database = w.config.data.database.clone();
    write_tones(&w);
    // a: 4 s at 440 Hz, then 16 s at 550 Hz. Killed in the second part, it must resume there.
    write_tone_pair_wav(&w.media_dir().join("a.wav"), (440.0, 4.0), (550.0, 16.0));
    // The binary reads config.toml from its working directory: save positions every second.
    std::fs::write(
        w.dir.path().join("config.toml"),
        // No length limit: the tones are plain files, whose length yt-dlp cannot tell.
        "[player]\nsave_position_every = \"1s\"\n[ytdlp]\nmax_duration = \"0s\"\n",
    )
    .unwrap();
    // The in-process bot only set the stage: stop it, and let the binary take over.
    let World {
        emu,
        files,
        shutdown,
        run,
        dir,
        ..
    } = w;
    shutdown.cancel();
    tokio::time::timeout(T, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let data = dir.path().join("binary-data");
    // On PostgreSQL the binary takes over the in-process bot's database (which played
    // nothing); on SQLite it gets a file of its own in its own data directory.
    let target = match &database {
        Some(url) => DatabaseTarget::Postgres(url.clone()),
        None => DatabaseTarget::Sqlite(data.join("encore.db")),
    };
    let spawn_bot = |emu: &Emulator| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_encore"));
        if let Some(url) = &database {
            cmd.env("ENCORE_DATABASE", url);
        }
        cmd.env("DISCORD_TOKEN", emu.bot_token())
            .env("DISCORD_API_BASE", emu.api_base())
            .env("ENCORE_DATA_DIR", &data)
            .env("ENCORE_YTDLP_PATH", ytdlp_path())
            .env("ENCORE_ALLOW_PRIVATE_HOSTS", "true")
            .env("RUST_LOG", "warn")
            .current_dir(dir.path())
            .kill_on_drop(true)
            .spawn()
            .expect("start the encore binary")
    };
    let (a, b, c) = (files.url("a.wav"), files.url("b.wav"), files.url("c.wav"));
    let registrations = emu.registration_count();

    let mut bot = spawn_bot(&emu);
    emu.wait_for("the binary to register its commands", T, move |e| {
        e.registration_count() > registrations
    })
    .await;
    for q in [&a, &b, &c] {
        let r = emu
            .command(
                GUILD,
                TEXT,
                ANN,
                "play",
                json!([{"name": "query", "type": 3, "value": q}]),
            )
            .await
            .response(T)
            .await;
        assert!(!r.ephemeral, "{}", r.text());
    }
    emu.wait_audio_frames(GUILD, 40, T).await;
    // "Up to the last committed change": kill only once all three are committed (the
    // writer commits right after each change, but a loaded machine can lag behind), and a
    // position in a's second half has been saved while it played.
    saved_tracks_reach(&target, 3).await;
    let position = "SELECT COALESCE(MAX(position_ms), -1) FROM saved_queues WHERE guild_id = $1";
    saved_until(&target, position, |ms| ms >= 4_500).await;
    // SIGKILL: no shutdown code runs at all.
    bot.start_kill().unwrap();
    let status = tokio::time::timeout(T, bot.wait()).await.unwrap().unwrap();
    assert!(!status.success());

    let registrations = emu.registration_count();
    emu.clear_audio(GUILD);
    let mut bot = spawn_bot(&emu);
    emu.wait_for("the restarted binary to register", T, move |e| {
        e.registration_count() > registrations
    })
    .await;
    let e2 = emu.clone();
    emu.wait_for(
        "the rest of a, then b and c after the kill",
        Duration::from_secs(45),
        move |_| {
            tone_sequence(&e2.audio(GUILD))
                .iter()
                .any(|f| (f - 880.0).abs() < 20.0)
        },
    )
    .await;
    let seq = tone_sequence(&emu.audio(GUILD));
    let notes: Vec<String> = emu.messages(TEXT).iter().map(|m| m.text()).collect();
    assert!(
        sounds_like(&seq, &[550.0, 660.0, 880.0]),
        "heard {seq:?}; channel: {notes:#?}\n{:?}",
        emu.dave_stats(GUILD)
    );
    // SIGTERM this one: it exits cleanly.
    let pid = bot.id().unwrap() as i32;
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(T, bot.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    drop(files);
}
