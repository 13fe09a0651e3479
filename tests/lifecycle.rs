//! Resource lifecycle end to end: the bot leaves when nobody listens, cleans up after
//! every way a call can end, reports what it holds, and never leaks. Timeouts are set
//! short in the bot's config so the real-time waits stay brief.

mod support;

use std::time::Duration;

use encore::player::Request;
use encore::resources::{CleanupReason, Kind};
use serde_json::json;
use support::world::*;

const BOSS: u64 = 1_000_000_000_000_399;

fn short(idle: u64, alone: u64) -> impl FnOnce(&mut encore::config::Config) {
    move |c| {
        c.lifecycle.idle_timeout = Duration::from_millis(idle);
        c.lifecycle.alone_timeout = Duration::from_millis(alone);
        c.lifecycle.sweep_interval = Duration::from_secs(3600);
    }
}

async fn playing(w: &World, file: &str) {
    let r = w.play(ANN, &w.files.url(file)).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;
    w.emu.wait_audio_frames(GUILD, 10, T).await;
}

/// Waits until the bot holds no call and no player (bounded).
async fn wait_released(w: &World) {
    let registry = w.bot.registry.clone();
    w.emu
        .wait_for("the bot to release its call and player", T, move |_| {
            registry.stats(Kind::Call).current == 0 && registry.stats(Kind::Player).current == 0
        })
        .await;
}

/// Asks the OS (not the registry) whether any yt-dlp this bot started is still alive,
/// once the background cache downloads the plays started have finished.
async fn assert_no_ytdlp_alive(stats: &impl AsStats) {
    let stats = stats.stats();
    let live = stats.clone();
    tokio::time::timeout(T, async move {
        while live.live_count() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("background downloads finish");
    let recent: Vec<u32> = stats.recent.lock().unwrap().iter().copied().collect();
    assert!(!recent.is_empty(), "the bot ran yt-dlp");
    let alive: Vec<u32> = recent
        .into_iter()
        .filter(|g| encore::resources::system::group_alive(*g))
        .collect();
    assert!(
        alive.is_empty(),
        "yt-dlp process groups still alive: {alive:?}"
    );
    assert_eq!(stats.live_count(), 0);
}

trait AsStats {
    fn stats(&self) -> std::sync::Arc<encore::sources::ProcessStats>;
}
impl AsStats for World {
    fn stats(&self) -> std::sync::Arc<encore::sources::ProcessStats> {
        self.bot.resolver.ytdlp().stats()
    }
}
impl AsStats for std::sync::Arc<encore::sources::ProcessStats> {
    fn stats(&self) -> std::sync::Arc<encore::sources::ProcessStats> {
        self.clone()
    }
}

fn cleanups(w: &World, reason: CleanupReason) -> u64 {
    w.bot
        .registry
        .cleanups()
        .by_reason
        .get(&reason)
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_after_the_idle_timeout_and_says_so() {
    let w = World::start_with(short(800, 0)).await;
    playing(&w, "low.wav").await; // 3 s of tone, then idle
    w.emu.wait_bot_voice(GUILD, None, T).await;
    let note = w
        .emu
        .wait_message(TEXT, |m| m.text().contains("Left the voice channel"), T)
        .await;
    assert!(note.text().contains("nothing played"), "{}", note.text());
    wait_released(&w).await;
    assert_eq!(cleanups(&w, CleanupReason::Idle), 1);
    w.stop().await;
}

/// The idle clock must not run out under a listener who just asked for more music: a
/// `/play` whose lookup takes longer than the idle timeout (a slow site) keeps the bot in
/// the call, and the track it brings plays to its end (3 s, twice the timeout) before the
/// clock starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_play_cancels_the_idle_leave() {
    let tmp = tempfile::tempdir().unwrap();
    let slow = slow_ytdlp(tmp.path(), 3);
    let w = World::start_with(|c| {
        short(1500, 0)(c);
        c.cache.audio = false;
        c.ytdlp.path = slow.clone();
    })
    .await;
    playing(&w, "low.wav").await;
    w.emu
        .wait_message(TEXT, |m| m.text().contains("queue is finished"), T)
        .await;
    // The lookup takes 3 s: the idle timeout (1.5 s) passes while it runs.
    let r = w.play(ANN, &w.files.url("high.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    assert_eq!(
        cleanups(&w, CleanupReason::Idle),
        0,
        "left while a /play was on its way"
    );
    let finished = |w: &support::Emulator| {
        w.all_messages(TEXT)
            .iter()
            .filter(|m| m.text().contains("queue is finished"))
            .count()
            == 2
    };
    w.emu
        .wait_for("the second track to finish", T, finished)
        .await;
    assert_eq!(
        cleanups(&w, CleanupReason::Idle),
        0,
        "left while the new track played"
    );
    assert!(
        w.emu
            .voice_state_updates(GUILD)
            .iter()
            .all(|c| *c == Some(MUSIC)),
        "the bot never left the channel: {:?}",
        w.emu.voice_state_updates(GUILD)
    );
    // Then the clock runs again and the bot leaves, saying so.
    w.emu.wait_bot_voice(GUILD, None, T).await;
    assert_eq!(cleanups(&w, CleanupReason::Idle), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_when_alone_but_stays_when_the_listener_returns() {
    let w = World::start_with(short(0, 1500)).await;
    playing(&w, "long.wav").await;
    // another user joining and leaving does not matter
    w.emu.user_join_voice(GUILD, BEN, MUSIC).await;
    w.emu.user_leave_voice(GUILD, BEN).await;
    // the listener steps out and comes back before the timeout
    let left = std::time::Instant::now();
    w.emu.user_leave_voice(GUILD, ANN).await;
    // Away for 0.7 s, under the 1.5 s alone timeout (the scenario, not a wait).
    tokio::time::sleep(Duration::from_millis(700)).await;
    w.emu.user_join_voice(GUILD, ANN, MUSIC).await;
    // The music is still heard a second after the alone timer would have fired.
    let past = left + Duration::from_millis(2500);
    w.emu
        .wait_for("music past the alone deadline", T, move |e| {
            e.audio(GUILD).last().is_some_and(|f| f.at > past)
        })
        .await;
    assert_eq!(
        w.emu.bot_voice_channel(GUILD),
        Some(MUSIC),
        "someone came back"
    );
    assert_eq!(cleanups(&w, CleanupReason::Alone), 0);
    // now everyone leaves for good
    w.emu.user_leave_voice(GUILD, ANN).await;
    w.emu.wait_bot_voice(GUILD, None, T).await;
    let note = w
        .emu
        .wait_message(TEXT, |m| m.text().contains("nobody was listening"), T)
        .await;
    assert!(note.text().contains("Left"), "{}", note.text());
    assert_eq!(cleanups(&w, CleanupReason::Alone), 1);
    wait_released(&w).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_disconnect_cleans_up_and_a_later_play_works() {
    let w = World::start().await;
    playing(&w, "long.wav").await;
    w.emu.move_bot(GUILD, None).await;
    wait_released(&w).await;
    assert_eq!(cleanups(&w, CleanupReason::BotDisconnected), 1);
    assert!(w
        .songbird
        .get(songbird::id::GuildId::from(
            std::num::NonZeroU64::new(GUILD).unwrap()
        ))
        .is_none());
    w.emu.clear_audio(GUILD);
    let r = w.play(ANN, &w.files.url("high.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    let f = w.hear(30).await;
    assert!((f - 880.0).abs() < 15.0, "heard {f}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn being_moved_keeps_playing_in_the_new_channel() {
    let w = World::start().await;
    playing(&w, "long.wav").await;
    w.emu.user_join_voice(GUILD, BEN, LOBBY).await;
    w.emu.move_bot(GUILD, Some(LOBBY)).await;
    w.emu.clear_audio(GUILD);
    let f = w.hear(30).await;
    assert!((f - 330.0).abs() < 15.0, "heard {f} after the move");
    let player = w.bot.players.get(GUILD).expect("still playing");
    let s = player
        .ask(|reply| Request::Snapshot { reply })
        .await
        .unwrap();
    assert_eq!(s.voice_channel, Some(LOBBY));
    assert_eq!(w.bot.registry.calls()[0].channel, LOBBY);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_channel_and_a_removed_guild_clean_up() {
    let w = World::start().await;
    playing(&w, "long.wav").await;
    w.emu.delete_channel(GUILD, MUSIC).await;
    wait_released(&w).await;
    assert_eq!(
        cleanups(&w, CleanupReason::ChannelDeleted) + cleanups(&w, CleanupReason::BotDisconnected),
        1
    );

    let r = w
        .cmd(
            ANN,
            "play",
            json!([{"name":"query","type":3,"value": w.files.url("long.wav")}]),
        )
        .await;
    assert!(r.ephemeral, "ANN is in no channel now: {}", r.text());
    w.emu.user_join_voice(GUILD, ANN, LOBBY).await;
    let r = w.play(ANN, &w.files.url("long.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_bot_voice(GUILD, Some(LOBBY), T).await;
    w.emu.remove_guild(GUILD).await;
    wait_released(&w).await;
    assert_eq!(
        cleanups(&w, CleanupReason::GuildRemoved) + cleanups(&w, CleanupReason::BotDisconnected),
        2
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_4015_resumes_and_4014_cleans_up() {
    let w = World::start().await;
    playing(&w, "long.wav").await;
    w.emu.close_voice(GUILD, 4015).await;
    w.emu.clear_audio(GUILD);
    w.emu.wait_audio_frames(GUILD, 25, T).await;
    assert_eq!(w.emu.bot_voice_channel(GUILD), Some(MUSIC));
    assert_eq!(w.bot.registry.stats(Kind::Call).current, 1);

    w.emu.close_voice(GUILD, 4014).await;
    wait_released(&w).await;
    assert_eq!(w.bot.registry.cleanups().total, 1);
    w.stop().await;
}

/// songbird parks a call's mixer when its connection drops, and a parked track never
/// answers a question about its state: asking must neither stall the player nor leave the
/// bot stuck in the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_while_the_connection_is_down_answer_and_the_cleanup_still_happens() {
    let w = World::start().await;
    playing(&w, "long.wav").await;
    w.emu.close_voice(GUILD, 4014).await;
    // songbird parks the mixer within a tick or two: the call falls silent.
    w.emu
        .wait_for("the audio to stop", T, |e| {
            e.audio(GUILD)
                .last()
                .is_some_and(|f| f.at.elapsed() > Duration::from_millis(100))
        })
        .await;
    let r = w.cmd(ANN, "nowplaying", json!([])).await;
    assert!(r.text().contains("long"), "{}", r.text());
    let r = w.cmd(ANN, "queue", json!([])).await;
    assert!(r.text().contains("long"), "{}", r.text());
    wait_released(&w).await;
    assert_eq!(w.bot.registry.cleanups().total, 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sees_resources_and_cleans_up_members_are_refused() {
    // No background downloads, so the process count is exactly what /play left running.
    let w = World::start_with(|c| c.cache.audio = false).await;
    w.emu.add_member(GUILD, BOSS, "boss", false, true);
    playing(&w, "long.wav").await;

    let refused = w.cmd(ANN, "resources", json!([])).await;
    assert!(
        refused.ephemeral && refused.text().contains("Only server managers"),
        "{}",
        refused.text()
    );
    let refused = w
        .cmd(
            ANN,
            "cleanup",
            json!([{"name":"all","type":5,"value":true}]),
        )
        .await;
    assert!(refused.ephemeral, "{}", refused.text());
    assert_eq!(
        w.emu.bot_voice_channel(GUILD),
        Some(MUSIC),
        "a refused /cleanup changes nothing"
    );

    let r = w.cmd(BOSS, "resources", json!([])).await;
    let text = r.text();
    assert!(
        text.contains("1 active: 1 playing, 0 paused, 0 idle"),
        "{text}"
    );
    assert!(text.contains("0 running"), "{text}");
    assert!(
        text.contains("1 live on"),
        "songbird mixes the one call: {text}"
    );
    assert!(text.contains("RSS"), "{text}");
    assert!(!r.custom_ids().is_empty(), "a refresh button");

    // idle-only cleanup spares the playing call; `all` leaves it
    let r = w.cmd(BOSS, "cleanup", json!([])).await;
    assert!(
        r.text().contains("Reclaimed: 0 voice calls"),
        "{}",
        r.text()
    );
    let r = w
        .cmd(
            BOSS,
            "cleanup",
            json!([{"name":"all","type":5,"value":true}]),
        )
        .await;
    assert!(
        r.text().contains("Reclaimed: 1 voice call "),
        "{}",
        r.text()
    );
    w.emu.wait_bot_voice(GUILD, None, T).await;
    wait_released(&w).await;
    assert_eq!(w.bot.registry.cleanups().forced, 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_cycles_leave_nothing_behind() {
    let w = World::start().await;
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    for i in 0..6 {
        let file = if i % 2 == 0 { "low.wav" } else { "high.wav" };
        let r = w.play(ANN, &w.files.url(file)).await;
        assert!(r.text().contains("Playing"), "cycle {i}: {}", r.text());
        w.emu.wait_bot_voice(GUILD, Some(MUSIC), T).await;
        let r = w.cmd(ANN, "leave", json!([])).await;
        assert!(r.text().contains("Left"), "cycle {i}: {}", r.text());
        w.emu.wait_bot_voice(GUILD, None, T).await;
        wait_released(&w).await;
    }
    for kind in [Kind::Call, Kind::Player] {
        let s = w.bot.registry.stats(kind);
        assert_eq!((s.current, s.acquired), (0, s.released), "{kind:?}");
    }
    assert_no_ytdlp_alive(&w).await;
    // tasks return to about where they were (serenity and songbird keep a few of their own)
    let registry = w.bot.registry.clone();
    w.emu
        .wait_for("background tasks to settle", T, move |_| {
            registry.stats(Kind::Task).current == 1 // the sweeper
        })
        .await;
    // Wait for the count to come back rather than sample it: in about half the runs it
    // stays 5 over for a while and comes back after about 115 s, the mark of HTTP
    // keep-alive connections (opened while requests overlapped) that hold a task on both
    // ends until reqwest's pool drops them as idle (90 s). A leak would never come back.
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    w.emu
        .wait_for(
            &format!(
                "tokio tasks to return to about {tasks_before} (now {})",
                alive()
            ),
            Duration::from_secs(180),
            move |_| alive() <= tasks_before + 4,
        )
        .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_playing_leaves_the_call() {
    let w = World::start().await;
    playing(&w, "long.wav").await;
    let emu = w.emu.clone();
    let w_stats = w.bot.resolver.ytdlp().stats();
    w.stop().await;
    assert_eq!(
        emu.voice_state_updates(GUILD).last(),
        Some(&None),
        "left on shutdown"
    );
    assert_no_ytdlp_alive(&w_stats).await;
}
