//! SIGKILL at 100 random moments of a play/queue/skip workload: after each kill, the queue a
//! restart reads back is exactly the last committed one, never a mix of two states nor an
//! older one.
//!
//! The workload runs in a child process (this test binary again, running the ignored
//! `workload_child`) through the bot's own queue writer and SQLite store: each change is
//! sent as the player sends it, and once `flush` says it is committed the child prints
//! `committed <n>`. The parent kills the child at a random moment, reads the database as a
//! restarting bot does, and checks it holds state `n` (or `n + 1`, a commit that landed
//! before its line was printed). The next child resumes from what it reads, as the bot does.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use encore::db::queues::{self, QueueWriter};
use encore::player::persist::{QueueStore, SavedQueue};
use encore::player::{LoopMode, Requester};
use encore::sources::Track;

const GUILD: u64 = 1_000_000_000_000_100;
const KILLS: usize = 100;
/// The child stops by itself after this many changes (a kill normally comes far sooner).
const MAX_CHANGES: u64 = 5_000;

fn track(n: u64) -> (Track, Requester) {
    let t = Track {
        title: format!("track {n}"),
        page_url: format!("https://example.com/watch/{n}"),
        stream_url: format!("https://media.example.com/{n}.webm"),
        http_headers: vec![],
        duration: Some(Duration::from_secs(60 + n % 240)),
        extractor: "generic".into(),
        id: n.to_string(),
        is_live: false,
        uploader: None,
        thumbnail: None,
        ext: Some("webm".into()),
        acodec: Some("opus".into()),
        stream_expires: None,
    };
    let who = Requester {
        id: 1_000_000_000_000_300 + n % 3,
        name: format!("member {}", n % 3),
    };
    (t, who)
}

/// The queue after the workload's first `n` changes: every third change plays a track,
/// every third queues two more, every third skips the current one. `position` carries `n`
/// so a restart can tell where the workload was.
fn state(n: u64) -> SavedQueue {
    let mut tracks: Vec<(Track, Requester)> = Vec::new();
    let mut next = 0;
    for k in 1..=n {
        match k % 3 {
            1 => {
                tracks.push(track(next));
                next += 1;
            }
            2 => {
                tracks.push(track(next));
                tracks.push(track(next + 1));
                next += 2;
            }
            _ => {
                if tracks.len() > 1 {
                    tracks.remove(0);
                }
            }
        }
    }
    SavedQueue {
        voice_channel: 1_000_000_000_000_200,
        text_channel: 1_000_000_000_000_201,
        loop_mode: if n % 5 == 0 {
            LoopMode::Queue
        } else {
            LoopMode::Off
        },
        paused: n % 7 == 0,
        volume: 100,
        position: Duration::from_millis(n),
        playing: !tracks.is_empty(),
        tracks,
        filters: Default::default(),
    }
}

/// Which workload state the database holds (0: none saved yet).
async fn saved_state(db: &encore::db::Db) -> u64 {
    match queues::load(db, GUILD).await.expect("the database reads") {
        None => 0,
        Some(q) => {
            let n = q.position.as_millis() as u64;
            assert_eq!(q, state(n), "the saved queue is exactly state {n}");
            n
        }
    }
}

/// The child: resumes from the saved state and commits one change after another.
#[tokio::test]
#[ignore = "the child process of sigkill_at_100_random_moments_loses_no_committed_change"]
async fn workload_child() {
    let path = std::env::var("ENCORE_KILL_DB").expect("run by the kill test");
    let db = encore::db::open(Path::new(&path)).await.unwrap();
    let start = saved_state(&db).await;
    let (writer, run): (QueueWriter, _) = queues::writer(db.clone());
    let runner = tokio::spawn(run);
    for n in start + 1..=start + MAX_CHANGES {
        writer.save(GUILD, Some(state(n)));
        assert!(writer.flush(Duration::from_secs(10)).await, "committed");
        println!("committed {n}");
    }
    drop(writer);
    runner.await.unwrap();
}

/// Runs one child; kills it `after` its first commit; returns the last state it reported.
fn run_and_kill(db: &Path, after: Duration) -> Option<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["workload_child", "--exact", "--ignored", "--nocapture"])
        .env("ENCORE_KILL_DB", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary runs again as the child");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last = None;
    // The first commit shows the workload is under way; the kill comes `after` it.
    for line in lines.by_ref() {
        if let Some(n) = line.unwrap().strip_prefix("committed ") {
            last = Some(n.parse().unwrap());
            break;
        }
    }
    assert!(last.is_some(), "the child committed nothing");
    // The random moment (the scenario, not a wait for something).
    std::thread::sleep(after);
    child.kill().unwrap();
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix("committed ") {
            last = Some(n.parse().unwrap());
        }
    }
    child.wait().unwrap();
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_100_random_moments_loses_no_committed_change() {
    use rand::{Rng, SeedableRng};
    let seed = 20261202;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("encore.db");
    let started = Instant::now();
    let (mut exact, mut one_later) = (0, 0);
    let mut previous = 0;
    for kill in 0..KILLS {
        let after = Duration::from_micros(rng.gen_range(0..30_000));
        let path2 = path.clone();
        let reported = tokio::task::spawn_blocking(move || run_and_kill(&path2, after))
            .await
            .unwrap()
            .expect("a commit was reported");
        // What a restarting bot reads.
        let db = encore::db::open(&path).await.unwrap();
        let saved = saved_state(&db).await;
        db.close().await;
        assert!(
            saved == reported || saved == reported + 1,
            "kill {kill} (seed {seed}, {after:?} in): the child had committed state {reported}, \
             the database holds state {saved}"
        );
        assert!(
            saved > previous,
            "kill {kill}: the restart went on from the saved state"
        );
        previous = saved;
        if saved == reported {
            exact += 1;
        } else {
            one_later += 1;
        }
    }
    println!(
        "{KILLS} kills in {:?}: the saved queue was the last reported commit {exact} times, \
         a commit made just before the kill {one_later} times, never older or torn; \
         {previous} changes in all (seed {seed})",
        started.elapsed()
    );
}
