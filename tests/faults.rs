//! How the bot behaves when Discord pushes back. The emulator serves `https://discord.com`
//! with serenity's rate limiter on, as in production, and limits routes the way Discord's
//! docs describe (headers on every answer, 429 with `retry_after` past the limit).

mod support;

use std::time::Duration;

use encore::player::Requester;
use support::world::*;
use support::*;

fn ann() -> Requester {
    Requester {
        id: ANN,
        name: "ann".into(),
    }
}

fn now_playing(w: &World) -> Vec<String> {
    w.emu
        .messages(TEXT)
        .iter()
        .map(|m| m.text())
        .filter(|t| t.contains("Now playing"))
        .collect()
}

/// Five short tracks announce themselves faster than the channel's limit allows (2 posts
/// every 2 s): every notice arrives, in order, and the bot waited on the headers instead
/// of running into 429s (Discord bans clients that keep hitting them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_wait_for_the_channels_rate_limit_instead_of_hitting_it() {
    // A notice per track (the panel would be one message, edited: tests/panel.rs).
    let w = World::start_with(|c| c.player.panel = false).await;
    w.emu.limit_route(
        "POST",
        &format!("/channels/{TEXT}/messages"),
        2,
        Duration::from_secs(2),
    );
    let tracks: Vec<_> = (0..5)
        .map(|i| w.tone(&format!("t{i}"), 300.0 + 100.0 * i as f32, 0.4))
        .collect();
    w.enqueue(ann(), tracks).await;
    let emu_w = &w;
    w.emu
        .wait_for("five now-playing notices", Duration::from_secs(30), |_| {
            now_playing(emu_w).len() >= 5
        })
        .await;
    let notes = now_playing(&w);
    for (i, note) in notes.iter().enumerate() {
        assert!(note.contains(&format!("t{i}")), "notice {i}: {notes:#?}");
    }
    assert_eq!(w.emu.rate_limited(), Vec::<String>::new(), "429s were hit");
    w.stop().await;
}

/// A 429 the headers did not announce (a limit shared with other clients): the post is
/// retried after `retry_after` and arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_refused_with_429_is_retried_and_arrives_once() {
    let w = World::start().await;
    let route = format!("/channels/{TEXT}/messages");
    w.emu
        .force_rate_limit("POST", &route, 1, Duration::from_millis(500));
    w.enqueue(ann(), vec![w.tone("once", 440.0, 1.0)]).await;
    let emu_w = &w;
    w.emu
        .wait_for("the now-playing notice", Duration::from_secs(15), |_| {
            !now_playing(emu_w).is_empty()
        })
        .await;
    assert_eq!(w.emu.rate_limited(), vec![format!("POST {route}")]);
    // Give a duplicate every chance to show up: the track plays to its end first.
    w.emu.wait_audio_frames(GUILD, 40, T).await;
    assert_eq!(now_playing(&w).len(), 1, "{:#?}", now_playing(&w));
    w.stop().await;
}

/// The gateway drops while a track plays (close 4000, as Discord does when it restarts a
/// gateway node): the bot resumes its session, the music goes on without a restart of the
/// track, and commands keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_drop_while_playing_resumes_and_the_music_goes_on() {
    let w = World::start().await;
    let r = w.play(ANN, &w.files.url("long.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_audio_frames(GUILD, 25, T).await;
    w.emu.disconnect_gateway(4000).await;
    w.emu
        .wait_for("the gateway to resume", T, |e| {
            e.gateway_resumes() == 1 && e.gateway_connected()
        })
        .await;
    let heard = w.emu.audio(GUILD).len();
    w.emu.wait_audio_frames(GUILD, heard + 50, T).await;
    assert_contiguous(&non_silent(&w.emu.audio(GUILD)));
    let q = w.cmd(ANN, "nowplaying", serde_json::json!([])).await;
    assert!(q.text().contains("long"), "{}", q.text());
    assert_eq!(w.emu.gateway_connections(), 2, "resumed, not re-identified");
    assert_eq!(w.emu.identify_payloads().len(), 1);
    assert_eq!(now_playing(&w).len(), 1, "the track did not restart");
    w.stop().await;
}
