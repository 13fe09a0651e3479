//! `/playlist` end to end: a saved queue survives a restart and loads back in order, only
//! its owner may delete it, and the limits on size and count are said plainly. (The store
//! itself is tested on SQLite and PostgreSQL in `src/db/playlists.rs`.)

mod support;

use serde_json::{json, Value};
use support::world::*;
use support::*;

/// `/playlist <sub>` with `options` as slash options.
async fn playlist(w: &World, user: u64, sub: &str, options: Value) -> Reply {
    w.cmd(
        user,
        "playlist",
        json!([{"name": sub, "type": 1, "options": options}]),
    )
    .await
}

fn name(n: &str) -> Value {
    json!({"name": "name", "type": 3, "value": n})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_queue_survives_a_restart_and_only_its_owner_deletes_it() {
    let mut w = World::start_with(|c| {
        c.cache.audio = false;
        c.playlists.max_per_member = 2;
        c.playlists.max_tracks = 3;
    })
    .await;
    let tracks = vec![
        w.tone("alpha", 440.0, 6.0),
        w.tone("beta", 660.0, 2.0),
        w.tone("gamma", 880.0, 2.0),
    ];
    let ann = encore::player::Requester {
        id: ANN,
        name: "ann".into(),
    };
    w.enqueue(ann, tracks).await;
    w.emu.wait_audio_frames(GUILD, 5, T).await;

    let shared = json!({"name": "shared", "type": 5, "value": true});
    let r = playlist(&w, ANN, "save", json!([name("Road trip"), shared])).await;
    assert!(!r.ephemeral, "{}", r.text());
    assert!(
        r.text()
            .contains("Saved 3 tracks as **Road trip** (shared with the server)"),
        "{}",
        r.text()
    );

    // Another member sees it, may not delete or rename it.
    let r = playlist(&w, BEN, "delete", json!([name("road trip")])).await;
    assert!(r.ephemeral, "{}", r.text());
    assert!(r.text().contains("belongs to ann"), "{}", r.text());
    let new = json!({"name": "new_name", "type": 3, "value": "mine now"});
    let r = playlist(&w, BEN, "rename", json!([name("Road trip"), new])).await;
    assert!(
        r.ephemeral && r.text().contains("belongs to ann"),
        "{}",
        r.text()
    );

    // The limits: 3 tracks per playlist, 2 playlists per member.
    let track_only = json!({"name": "what", "type": 4, "value": 1});
    let r = playlist(
        &w,
        ANN,
        "save",
        json!([name("Road trip"), track_only.clone()]),
    )
    .await;
    assert!(r.ephemeral, "{}", r.text());
    assert!(r.text().contains("holds at most 3 tracks"), "{}", r.text());
    let r = playlist(&w, ANN, "save", json!([name("Singles"), track_only])).await;
    assert!(
        r.text().contains("Added **alpha** to **Singles**: 1 track"),
        "{}",
        r.text()
    );
    let r = playlist(&w, ANN, "save", json!([name("Third")])).await;
    assert!(r.ephemeral, "{}", r.text());
    assert!(
        r.text().contains("already have 2 playlists"),
        "{}",
        r.text()
    );

    // Cleared, restarted: the playlist is still there, and loads in the same order.
    let r = w.cmd(ANN, "stop", json!([])).await;
    assert!(!r.ephemeral, "{}", r.text());
    w.restart().await;
    let r = playlist(&w, BEN, "list", json!([])).await;
    assert!(
        r.text().contains("**Road trip** (ann's) · 3 tracks"),
        "{}",
        r.text()
    );
    let r = playlist(&w, ANN, "load", json!([name("ROAD TRIP")])).await;
    assert!(!r.ephemeral, "{}", r.text());
    assert!(
        r.text().contains("Queued 3 tracks from **Road trip**"),
        "{}",
        r.text()
    );
    let s = w.snapshot().await;
    let order: Vec<String> = s
        .current
        .iter()
        .chain(s.upcoming.iter())
        .map(|e| e.track.title.clone())
        .collect();
    assert_eq!(order, ["alpha", "beta", "gamma"]);
    // And it plays: the first tone is heard (looked up again, its stream URL was not kept).
    w.emu.clear_audio(GUILD);
    let heard = w.hear(10).await;
    assert!((heard - 440.0).abs() < 20.0, "heard {heard} Hz");

    // Its owner deletes it.
    let r = playlist(&w, ANN, "delete", json!([name("road trip")])).await;
    assert!(
        r.text().contains("Deleted **Road trip** (3 tracks)"),
        "{}",
        r.text()
    );
    let r = playlist(&w, ANN, "load", json!([name("road trip")])).await;
    assert!(
        r.ephemeral && r.text().contains("no playlist called"),
        "{}",
        r.text()
    );
    w.stop().await;
}
