//! The now-playing panel, end to end against the Discord emulator: one message in the
//! music channel that shows the track, who asked, a moving progress bar and what comes
//! next, edited in place (never re-posted) as the track plays and across tracks; its
//! buttons act through the same rules as the commands (a DJ role refuses the others,
//! whose Skip is a vote); a deleted panel comes back once; it stops with the bot's call;
//! `/settings panel:false` turns it off.

mod support;

use std::time::Duration;

use encore::player::Requester;
use encore::settings::Change;
use serde_json::json;
use support::world::*;
use support::*;

const CAT: u64 = 1_000_000_000_000_303;
const BOSS: u64 = 1_000_000_000_000_399;
const DJ_ROLE: u64 = 1_000_000_000_000_501;

/// The bar moves this often in these tests (the least the config allows).
const EVERY: Duration = Duration::from_secs(2);

async fn world() -> World {
    World::start_with(|c| {
        c.cache.audio = false;
        c.player.panel_every = EVERY;
    })
    .await
}

fn ann() -> Requester {
    Requester {
        id: ANN,
        name: "ann".into(),
    }
}

fn is_panel(r: &Reply) -> bool {
    r.custom_ids().iter().any(|id| id.starts_with("panel:"))
        || r.text().contains("Nothing is playing")
}

/// The bot's posts of a panel (not its edits).
fn panel_posts(w: &World) -> Vec<Reply> {
    w.emu
        .message_history(TEXT)
        .into_iter()
        .filter(|r| r.source == ReplySource::ChannelMessage && is_panel(r))
        .collect()
}

/// Edits of message `id`, in order.
fn edits(w: &World, id: u64) -> Vec<Reply> {
    w.emu
        .message_history(TEXT)
        .into_iter()
        .filter(|r| r.source == ReplySource::ChannelEdit && r.id == id)
        .collect()
}

/// Waits for the panel to show something matching `pred`; returns it.
async fn panel_showing(w: &World, pred: impl Fn(&str) -> bool) -> Reply {
    w.emu
        .wait_message(TEXT, |r| is_panel(r) && pred(&r.text()), T)
        .await
}

async fn press(w: &World, panel: &Reply, user: u64, button: &str) -> Reply {
    w.emu
        .component(panel, user, &format!("panel:{button}"))
        .await
        .response(T)
        .await
}

/// Waits for an acknowledged press (type 6: the panel shows what it did).
async fn press_ok(w: &World, panel: &Reply, user: u64, button: &str) {
    let i = w
        .emu
        .component(panel, user, &format!("panel:{button}"))
        .await;
    let deadline = tokio::time::Instant::now() + T;
    while i.callback_type().is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        i.callback_type(),
        Some(6),
        "{button} by {user}: {:?}",
        i.replies().iter().map(|r| r.text()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_appears_moves_and_is_edited_in_place_across_tracks() {
    let w = world().await;
    let (a, b, c) = (
        w.tone("alpha", 440.0, 5.0),
        w.tone("beta", 660.0, 3.0),
        w.tone("gamma", 550.0, 3.0),
    );
    w.enqueue(ann(), vec![a, b, c]).await;
    let panel = panel_showing(&w, |t| t.contains("Now playing") && t.contains("[alpha]")).await;
    let text = panel.text();
    for want in [
        "Requested by ann",
        "`0:05`",
        "🔘",
        "1. [beta]",
        "2. [gamma]",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let ids = panel.custom_ids();
    for id in ["pause", "skip", "back", "stop", "loop", "shuffle"] {
        assert!(ids.contains(&format!("panel:{id}")), "{id} in {ids:?}");
    }
    // The bar moves while alpha plays, in the same message.
    panel_showing(&w, |t| {
        t.contains("Now playing\n[alpha]") && !t.contains("`0:00` ")
    })
    .await;
    // The next track takes the same message.
    // (The title is followed by the playing track; the others are under "Up next".)
    panel_showing(&w, |t| t.contains("Now playing\n[beta]")).await;
    let after = panel_showing(&w, |t| t.contains("Now playing\n[gamma]")).await;
    assert_eq!(after.id, panel.id, "one panel, edited across tracks");
    let posts = panel_posts(&w);
    assert_eq!(posts.len(), 1, "posted once: {posts:#?}");
    assert!(
        !w.emu
            .messages(TEXT)
            .iter()
            .any(|m| m.text().starts_with("Now playing [")),
        "the panel replaces the plain notice"
    );
    // Edited as it played, and never into Discord's rate limit.
    let n = edits(&w, panel.id).len();
    assert!(n >= 3, "edited as it played: {n}");
    assert_eq!(w.emu.rate_limited(), Vec::<String>::new());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons_act_and_a_dj_role_refuses_the_others_whose_skip_is_a_vote() {
    let w = world().await;
    // Answers must come well inside Discord's window.
    w.emu.set_interaction_deadline(Duration::from_millis(2900));
    let (bed, nxt, last) = (
        w.tone("bed", 330.0, 60.0),
        w.tone("nxt", 550.0, 60.0),
        w.tone("last", 770.0, 60.0),
    );
    w.enqueue(ann(), vec![bed, nxt, last]).await;
    let panel = panel_showing(&w, |t| t.contains("[bed]")).await;
    assert!((w.hear(25).await - 330.0).abs() < 15.0);

    // Pause: the player pauses, nothing more is heard, the panel says so with Resume.
    press_ok(&w, &panel, ANN, "pause").await;
    assert!(w.snapshot().await.paused);
    let paused = panel_showing(&w, |t| t.contains("Paused")).await;
    assert!(paused.custom_ids().contains(&"panel:resume".to_string()));
    // What was on its way when it paused has arrived by now; then nothing (a bounded
    // wait, to see an absence).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let heard = non_silent(&w.emu.audio(GUILD)).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let more = non_silent(&w.emu.audio(GUILD)).len() - heard;
    assert!(more <= 5, "{more} audible frames after pause");
    press_ok(&w, &paused, ANN, "resume").await;
    assert!(!w.snapshot().await.paused);

    // Loop cycles off -> track; Skip moves on.
    press_ok(&w, &panel, ANN, "loop").await;
    assert_eq!(
        w.snapshot().await.loop_mode,
        encore::player::LoopMode::Track
    );
    press_ok(&w, &panel, ANN, "loop").await;
    press_ok(&w, &panel, ANN, "loop").await;
    assert_eq!(w.snapshot().await.loop_mode, encore::player::LoopMode::Off);
    press_ok(&w, &panel, ANN, "skip").await;
    let s = w.snapshot().await;
    assert_eq!(s.current.unwrap().track.title, "nxt");
    panel_showing(&w, |t| t.contains("Now playing\n[nxt]")).await;
    w.emu.clear_audio(GUILD);
    assert!((w.hear(25).await - 550.0).abs() < 15.0, "skip is heard");

    // A DJ role: a listener's Stop is refused (privately) and changes nothing; their
    // Skip is a vote (three listeners: two needed), said in the channel.
    w.bot
        .settings
        .apply(GUILD, Change::DjRole(Some(DJ_ROLE)))
        .await
        .unwrap();
    w.emu.add_member(GUILD, CAT, "cat", false, false);
    w.emu.user_join_voice(GUILD, BEN, MUSIC).await;
    w.emu.user_join_voice(GUILD, CAT, MUSIC).await;
    for button in ["stop", "pause", "back", "loop"] {
        let r = press(&w, &panel, BEN, button).await;
        assert!(r.ephemeral, "{button}: {}", r.text());
        assert!(
            r.text().contains(&format!("Only DJs (<@&{DJ_ROLE}>)")),
            "{button}: {}",
            r.text()
        );
    }
    let s = w.snapshot().await;
    assert_eq!(
        (
            s.current.unwrap().track.title.as_str(),
            s.upcoming.len(),
            s.paused
        ),
        ("nxt", 1, false)
    );
    let r = press(&w, &panel, BEN, "skip").await;
    assert!(!r.ephemeral);
    assert!(
        r.text()
            .contains("ben voted to skip **nxt**: 1/2 votes, 1 more needed"),
        "{}",
        r.text()
    );
    // Someone not in the channel is told to join it.
    w.emu.add_member(GUILD, BOSS, "boss", false, false);
    let r = press(&w, &panel, BOSS, "skip").await;
    assert!(r.ephemeral && r.text().contains(&format!("Join <#{MUSIC}>")));
    // The requester may, DJ role or not.
    press_ok(&w, &panel, ANN, "stop").await;
    assert!(w.snapshot().await.current.is_none());
    panel_showing(&w, |t| t.contains("Nothing is playing")).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_panel_is_posted_again_once_and_the_panel_ends_with_the_call() {
    let w = world().await;
    w.enqueue(ann(), vec![w.tone("long", 440.0, 60.0)]).await;
    let first = panel_showing(&w, |t| t.contains("[long]")).await;
    w.emu.delete_message(TEXT, first.id);
    // The next move of the bar finds it gone and posts it again.
    let again = panel_showing(&w, |t| t.contains("[long]")).await;
    assert_ne!(again.id, first.id);
    assert_eq!(panel_posts(&w).len(), 2);

    // The bot leaves: the panel's last look has no buttons, and then it stays still.
    let r = w.cmd(ANN, "leave", json!([])).await;
    assert!(r.text().contains("Left"), "{}", r.text());
    let ended = panel_showing(&w, |t| t.contains("left the voice channel")).await;
    assert_eq!(ended.id, again.id);
    assert!(ended.custom_ids().is_empty(), "{:?}", ended.custom_ids());
    let requests = w.emu.message_history(TEXT).len();
    tokio::time::sleep(EVERY * 2 + Duration::from_millis(500)).await;
    assert_eq!(
        w.emu.message_history(TEXT).len(),
        requests,
        "no update after the bot left"
    );
    assert!(w.bot.players.get(GUILD).is_none());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_panel_off_gives_plain_notices_and_no_panel() {
    let w = world().await;
    w.emu.add_member(GUILD, BOSS, "boss", false, true);
    let r = w
        .cmd(
            BOSS,
            "settings",
            json!([{"name": "panel", "type": 5, "value": false}]),
        )
        .await;
    assert!(
        r.text().contains("Now-playing panel: **off**"),
        "{}",
        r.text()
    );
    w.enqueue(
        ann(),
        vec![w.tone("one", 440.0, 1.0), w.tone("two", 550.0, 1.0)],
    )
    .await;
    w.emu
        .wait_message(TEXT, |m| m.text().contains("Now playing [two]"), T)
        .await;
    let panels: Vec<_> = w.emu.messages(TEXT).into_iter().filter(is_panel).collect();
    assert!(panels.is_empty(), "{panels:#?}");
    w.stop().await;
}
