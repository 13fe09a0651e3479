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
    let t0 = std::time::Instant::now();
    w.emu.disconnect_gateway(4000).await;
    w.emu
        .wait_for("the gateway to resume", T, |e| {
            e.gateway_resumes() == 1 && e.gateway_connected()
        })
        .await;
    support::recovered("gateway drop (resumed)", t0.elapsed());
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

/// The bot may not post in the text channel (an overwrite denies Send Messages): Discord
/// answers every notice 403 50013, the bot drops them (one log line each) and the queue
/// plays on to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_refused_with_50013_are_dropped_and_the_music_goes_on() {
    let w = World::start().await;
    w.emu
        .set_bot_overwrite(GUILD, TEXT, 0, support::perms::SEND_MESSAGES);
    let t0 = std::time::Instant::now();
    w.enqueue(
        ann(),
        vec![w.tone("one", 440.0, 0.6), w.tone("two", 660.0, 0.6)],
    )
    .await;
    let bot = &w;
    w.emu
        .wait_for("both tracks to play", T, |_| {
            let refused = bot.emu.permission_refusals().len();
            let heard = bot.emu.audio(GUILD).len();
            refused >= 2 && heard >= 55
        })
        .await;
    support::recovered("50013", t0.elapsed());
    let snap = w.snapshot().await;
    assert!(
        snap.current
            .as_ref()
            .is_none_or(|e| e.track.title.contains("two")),
        "the second track played: {:?}",
        snap.current.map(|e| e.track.title.clone())
    );
    assert!(now_playing(&w).is_empty(), "nothing was posted");
    w.stop().await;
}

/// `/play` from a voice channel the bot may not join gets the reason at once, and the bot
/// does not ask the gateway (which would ignore it): a channel at its user limit, then one
/// where an overwrite denies Connect. Once allowed, `/play` plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_in_a_full_or_forbidden_voice_channel_gets_a_clear_reply() {
    let w = World::start().await;
    let url = w.files.url("low.wav");
    w.emu.set_user_limit(GUILD, MUSIC, 1);
    let r = w.play(ANN, &url).await;
    assert!(r.text().contains("is full (1/1)"), "{}", r.text());
    w.emu.set_user_limit(GUILD, MUSIC, 0);
    w.emu
        .set_bot_overwrite(GUILD, MUSIC, 0, support::perms::CONNECT);
    let r = w.play(ANN, &url).await;
    assert!(r.text().contains("Connect permission"), "{}", r.text());
    assert!(
        w.emu.voice_state_updates(GUILD).is_empty(),
        "the bot never asked to join"
    );
    w.emu.set_bot_overwrite(GUILD, MUSIC, 0, 0);
    let r = w.play(ANN, &url).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    w.emu.wait_audio_frames(GUILD, 10, T).await;
    w.stop().await;
}

/// Another process on the same token used up Discord's global limit: the next requests
/// meet a global 429 (`X-RateLimit-Global`). The bot holds every request for the time it
/// was told (under the 5 s a notice may take), then each notice arrives once, in order,
/// and the music never waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_rate_limit_holds_the_notices_and_loses_none() {
    let w = World::start_with(|c| c.player.panel = false).await;
    w.emu.force_global_rate_limit(2, Duration::from_secs(1));
    let t0 = std::time::Instant::now();
    let tracks: Vec<_> = (0..3)
        .map(|i| w.tone(&format!("g{i}"), 400.0 + 100.0 * i as f32, 0.5))
        .collect();
    w.enqueue(ann(), tracks).await;
    let emu_w = &w;
    w.emu
        .wait_for("three now-playing notices", T, |_| {
            now_playing(emu_w).len() >= 3
        })
        .await;
    support::recovered("global 429", t0.elapsed());
    let notes = now_playing(&w);
    for (i, note) in notes.iter().enumerate() {
        assert!(note.contains(&format!("g{i}")), "notice {i}: {notes:#?}");
    }
    let limited = w.emu.rate_limited();
    assert!(
        !limited.is_empty() && limited.iter().all(|l| l.starts_with("global ")),
        "{limited:?}"
    );
    // The audio did not wait for the notices: all three tracks were heard.
    w.emu.wait_audio_frames(GUILD, 70, T).await;
    assert_eq!(now_playing(&w).len(), 3, "{:#?}", now_playing(&w));
    w.stop().await;
}

/// A storm of 429s on interaction replies (two in a row on the callback route, each
/// announcing `Retry-After: 1`, Discord's whole seconds): each is waited out and the
/// command is still answered, once, inside Discord's three seconds to answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_on_interaction_replies_is_waited_out_and_answered() {
    let w = World::start().await;
    w.emu
        .force_rate_limit("POST", "/interactions/", 2, Duration::from_millis(500));
    let t0 = std::time::Instant::now();
    let i = w
        .emu
        .command(GUILD, TEXT, ANN, "nowplaying", serde_json::json!([]))
        .await;
    let r = i.response(T).await;
    support::recovered("429 storm on a reply", t0.elapsed());
    assert!(r.text().contains("Nothing"), "{}", r.text());
    assert_eq!(i.replies().len(), 1, "answered once");
    let limited = w.emu.rate_limited();
    assert_eq!(limited.len(), 2, "{limited:?}");
    assert!(
        limited.iter().all(|l| l.contains("/callback")),
        "{limited:?}"
    );
    // `World::stop` fails on a callback after the three seconds.
    w.stop().await;
}

/// Discord's REST answers 5xx for a moment: a notice that met two 503s is sent again and
/// arrives once; one whose answer was lost after Discord made the message (a 502 from its
/// edge) is not posted twice (the bot's nonce); a command whose answer met two 500s is
/// still answered. The music never stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_server_errors_is_retried_without_losing_or_doubling_anything() {
    let w = World::start_with(|c| c.player.panel = false).await;
    let route = format!("/channels/{TEXT}/messages");
    w.emu.fail_route("POST", &route, 2, 503);
    let t0 = std::time::Instant::now();
    w.enqueue(ann(), vec![w.tone("first", 440.0, 2.0)]).await;
    let emu_w = &w;
    w.emu
        .wait_for("the first notice", T, |_| !now_playing(emu_w).is_empty())
        .await;
    support::recovered("5xx notice", t0.elapsed());
    w.emu.fail_route_after_doing_it("POST", &route, 1, 502);
    w.enqueue(ann(), vec![w.tone("second", 550.0, 0.6)]).await;
    w.emu
        .wait_for("the second notice", T, |_| now_playing(emu_w).len() >= 2)
        .await;
    w.emu.fail_route("POST", "/interactions/", 2, 500);
    let t1 = std::time::Instant::now();
    let r = w.cmd(ANN, "nowplaying", serde_json::json!([])).await;
    support::recovered("5xx reply", t1.elapsed());
    assert!(
        r.text().contains("second"),
        "the command was answered: {}",
        r.text()
    );
    w.emu.wait_audio_frames(GUILD, 130, T).await;
    let notes = now_playing(&w);
    assert_eq!(notes.len(), 2, "each notice once: {notes:#?}");
    let posted: Vec<String> = w.emu.messages(TEXT).iter().map(|m| m.text()).collect();
    let mut distinct = posted.clone();
    distinct.dedup();
    assert_eq!(distinct, posted, "a message was posted twice");
    assert!(
        notes[0].contains("first") && notes[1].contains("second"),
        "{notes:#?}"
    );
    assert_eq!(
        w.emu.server_errors().len(),
        5,
        "{:?}",
        w.emu.server_errors()
    );
    w.stop().await;
}
