//! How the bot behaves when Discord's gateway pushes back the way its docs describe: the
//! server asks for a heartbeat (op 1), tells the bot to reconnect (op 7), invalidates its
//! session (op 9, resumable or not), stops acknowledging heartbeats (a zombie connection),
//! or closes with a code that ends the session (4009). Each test prints its recovery time
//! for RELIABILITY.md.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::world::*;
use support::*;

/// Plays `long.wav` and waits until the emulator hears it.
async fn playing(w: &World) {
    let r = w.play(ANN, &w.files.url("long.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_audio_frames(GUILD, 25, T).await;
}

/// The music is heard again after `since` (50 more frames, 1 s) and the time that took.
async fn music_goes_on(w: &World, what: &str, since: Instant) -> Duration {
    let heard = w.emu.audio(GUILD).len();
    w.emu.wait_audio_frames(GUILD, heard + 50, T).await;
    let took = since.elapsed();
    support::recovered(what, took);
    took
}

/// Op 1 from the server: the bot heartbeats at once instead of at its next interval
/// (41.25 s away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_asked_for_by_the_server_is_sent_at_once() {
    let w = World::start().await;
    let (before, _) = w.emu.heartbeats();
    assert_eq!(w.emu.request_heartbeat(), 1);
    let t0 = Instant::now();
    w.emu
        .wait_for("the bot's heartbeat", Duration::from_secs(5), |e| {
            e.heartbeats().0 > before
        })
        .await;
    support::recovered("op 1", t0.elapsed());
    w.stop().await;
}

/// Op 7 RECONNECT mid-song: the bot reconnects and resumes its session (no new IDENTIFY),
/// and the music goes on without restarting the track.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op7_reconnect_resumes_and_the_music_goes_on() {
    let w = World::start().await;
    playing(&w).await;
    let t0 = Instant::now();
    assert_eq!(w.emu.send_reconnect(), 1);
    w.emu
        .wait_for("the gateway to resume", T, |e| {
            e.gateway_resumes() == 1 && e.gateway_connected()
        })
        .await;
    music_goes_on(&w, "op 7", t0).await;
    assert_contiguous(&non_silent(&w.emu.audio(GUILD)));
    assert_eq!(
        w.emu.identify_payloads().len(),
        1,
        "resumed, not identified"
    );
    let q = w.cmd(ANN, "nowplaying", json!([])).await;
    assert!(q.text().contains("long"), "{}", q.text());
    w.stop().await;
}

/// Op 9 with `d: true`: the session may be resumed, and is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op9_resumable_resumes() {
    let w = World::start().await;
    playing(&w).await;
    let t0 = Instant::now();
    assert_eq!(w.emu.send_invalid_session(true), 1);
    w.emu
        .wait_for("the gateway to resume", T, |e| {
            e.gateway_resumes() == 1 && e.gateway_connected()
        })
        .await;
    music_goes_on(&w, "op 9 true", t0).await;
    assert_eq!(
        w.emu.identify_payloads().len(),
        1,
        "resumed, not identified"
    );
    w.stop().await;
}

/// Op 9 with `d: false` mid-song: the session is gone, the bot identifies again, keeps
/// its queue and the music goes on; commands answer on the new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op9_not_resumable_identifies_again_and_the_music_goes_on() {
    let w = World::start().await;
    playing(&w).await;
    let t0 = Instant::now();
    assert_eq!(w.emu.send_invalid_session(false), 1);
    w.emu
        .wait_for("a new session", T, |e| {
            e.identify_payloads().len() == 2 && e.gateway_connected()
        })
        .await;
    music_goes_on(&w, "op 9 false", t0).await;
    let q = w.cmd(ANN, "nowplaying", json!([])).await;
    assert!(q.text().contains("long"), "{}", q.text());
    w.stop().await;
}

/// The gateway stops acknowledging heartbeats (a zombie connection): the bot notices at
/// its next heartbeat, drops the connection and gets a working one; the music goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_connection_is_replaced_and_the_music_goes_on() {
    let w = World::start().await;
    // A short interval reaches the bot with its next session's HELLO.
    w.emu.set_heartbeat_interval(Duration::from_millis(1000));
    w.emu.disconnect_gateway(4009).await;
    w.emu
        .wait_for("a new session", T, |e| {
            e.identify_payloads().len() == 2 && e.gateway_connected()
        })
        .await;
    playing(&w).await;
    let conns = w.emu.gateway_connections();
    let t0 = Instant::now();
    w.emu.withhold_heartbeat_acks(true);
    w.emu
        .wait_for("the bot to leave the zombie connection", T, |e| {
            e.gateway_connections() > conns
        })
        .await;
    w.emu.withhold_heartbeat_acks(false);
    w.emu
        .wait_for("a live session", T, |e| e.gateway_connected())
        .await;
    music_goes_on(&w, "zombie", t0).await;
    assert!(w.emu.heartbeats().1 >= 1, "an ACK was withheld");
    assert_eq!(
        w.emu.heartbeat_timeouts(),
        0,
        "the bot left before Discord closed it"
    );
    let q = w.cmd(ANN, "nowplaying", json!([])).await;
    assert!(q.text().contains("long"), "{}", q.text());
    w.stop().await;
}

/// A command sent while the bot's connection is down (the gateway refuses it for a moment,
/// so the bot cannot be back before the command exists) reaches it on RESUME, since Discord
/// replays every dispatch after the bot's `seq`, and is answered: the emulator shows the
/// replay is what carried that very interaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_replays_what_the_bot_missed_while_away() {
    let w = World::start().await;
    w.emu.refuse_gateway(true);
    let t0 = Instant::now();
    w.emu.disconnect_gateway(4000).await;
    w.emu
        .wait_for("the connection to drop", T, |e| !e.gateway_connected())
        .await;
    let pending = w
        .emu
        .command(GUILD, TEXT, ANN, "nowplaying", json!([]))
        .await;
    w.emu.refuse_gateway(false);
    let r = pending.response(T).await;
    support::recovered("replay", t0.elapsed());
    assert!(r.text().contains("Nothing"), "{}", r.text());
    let replayed = w.emu.gateway_replayed_events();
    assert!(
        replayed.contains(&format!("INTERACTION_CREATE {}", pending.id)),
        "the command came by the replay: {replayed:?}"
    );
    assert_eq!(w.emu.gateway_resumes(), 1);
    assert_eq!(
        w.emu.identify_payloads().len(),
        1,
        "resumed, not identified"
    );
    w.stop().await;
}

/// Close 4009 (session timed out) mid-song: Discord will not resume it; the bot identifies
/// a new session and the music goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_4009_starts_a_new_session_and_the_music_goes_on() {
    let w = World::start().await;
    playing(&w).await;
    let t0 = Instant::now();
    w.emu.disconnect_gateway(4009).await;
    w.emu
        .wait_for("a new session", T, |e| {
            e.identify_payloads().len() == 2 && e.gateway_connected()
        })
        .await;
    music_goes_on(&w, "4009", t0).await;
    assert_eq!(w.emu.gateway_resumes(), 0);
    w.stop().await;
}
