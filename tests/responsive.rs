//! The player never waits on the network: while the next track's lookup hangs (a yt-dlp
//! that does not answer), every command is still answered inside Discord's three-second
//! interaction window, and `/skip` skips the hanging track and stops its lookup.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use encore::player::{Requester, Snapshot};
use encore::sources::Track;
use serde_json::json;
use support::world::*;
use support::*;

/// Discord's interaction deadline, which the emulator enforces too.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// A yt-dlp that answers `--version` and otherwise records its pid and hangs for two
/// minutes (longer than the test), as a lookup against an unresponsive site would.
fn hanging_ytdlp(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("hanging-yt-dlp");
    let pid = dir.join("hung.pid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --version ] && echo 2026.10.26 && exit 0; done\n\
             echo $$ > '{}'\nexec sleep 120\n",
            pid.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// A playlist entry not looked up yet: its turn runs yt-dlp on its page.
fn unresolved(w: &World, name: &str) -> Arc<Track> {
    let t = w.tone(name, 660.0, 1.0);
    Arc::new(Track {
        stream_url: String::new(),
        page_url: w.files.url("never-answers"),
        ..(*t).clone()
    })
}

/// Polls the player (bounded) until `pred` holds for its state.
async fn wait_state(w: &World, what: &str, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + T;
    loop {
        let s = w.snapshot().await;
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn current(s: &Snapshot) -> &str {
    s.current
        .as_ref()
        .map(|e| e.track.title.as_str())
        .unwrap_or("")
}

/// Sends a command and checks it was answered within the interaction deadline.
async fn answered(w: &World, name: &str, options: serde_json::Value) -> Reply {
    let sent = Instant::now();
    let r = w.cmd(ANN, name, options).await;
    let took = sent.elapsed();
    assert!(
        took < ANSWER_WAIT,
        "/{name} was answered after {took:?}, past Discord's deadline"
    );
    assert!(
        !r.text().contains("Something went wrong"),
        "/{name}: {}",
        r.text()
    );
    r
}

fn pid_alive(pid: i32) -> bool {
    // Signal 0 checks the process exists; a zombie left to its parent counts as gone
    // once reaped, which kill_on_drop does.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_answer_while_the_next_lookup_hangs_and_skip_skips_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = hanging_ytdlp(tmp.path());
    let w = World::start_with(|c| {
        c.cache.audio = false;
        c.ytdlp.path = fake.clone();
    })
    .await;
    let first = w.tone("first", 440.0, 1.0);
    let hangs = unresolved(&w, "hangs");
    let after = w.tone("after", 880.0, 6.0);
    let ann = Requester {
        id: ANN,
        name: "ann".into(),
    };
    w.enqueue(ann, vec![first, hangs, after]).await;

    // The first track ends; the next one's lookup starts and never comes back.
    wait_state(&w, "the hanging track to be opening", |s| {
        current(s) == "hangs" && s.starting
    })
    .await;
    let pid_file = tmp.path().join("hung.pid");
    let deadline = Instant::now() + T;
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "the lookup never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let queue = answered(&w, "queue", json!([])).await;
    assert!(queue.text().contains("hangs"), "{}", queue.text());
    assert!(queue.text().contains("after"), "{}", queue.text());
    let np = answered(&w, "nowplaying", json!([])).await;
    assert!(np.text().contains("hangs"), "{}", np.text());
    assert!(np.text().contains("starting"), "{}", np.text());
    let paused = answered(&w, "pause", json!([])).await;
    assert!(paused.text().contains("Paused"), "{}", paused.text());
    let skipped = answered(&w, "skip", json!([])).await;
    assert!(
        skipped.text().contains("Skipped **hangs**") && skipped.text().contains("after"),
        "{}",
        skipped.text()
    );

    // The hanging entry is gone, the next one plays, and the stuck yt-dlp was stopped.
    let s = wait_state(&w, "the next track to play", |s| {
        current(s) == "after" && !s.starting
    })
    .await;
    assert!(!s.paused, "a skip starts the next track playing");
    w.emu.clear_audio(GUILD);
    let heard = w.hear(25).await;
    assert!((heard - 880.0).abs() < 15.0, "heard {heard} Hz");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + T;
    while pid_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the hanging yt-dlp ({pid}) outlived the skipped track"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.emu.assert_no_protocol_errors();
    w.stop().await;
}
