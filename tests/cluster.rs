//! Past one machine: the bot's shards in one process, and `encore` nodes (the real
//! binary) sharing one PostgreSQL database, against an emulator that routes each guild to
//! the shard that owns it and refuses what Discord refuses.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use support::partition::Partition;
use support::postgres;
use support::world::*;
use support::*;

const SHARDS: u32 = 4;
/// A server manager in the first guild, for `/resources`.
const BOSS: u64 = 1_000_000_000_000_399;
/// The track every guild plays: 5 s of A, then E.
const FIRST: f32 = 440.0;
const SECOND: f32 = 660.0;
/// The nodes' `cluster.lease`: short, so a crash costs the test seconds, not a minute.
const LEASE: Duration = Duration::from_secs(4);
/// How often a node renews (`lease / 5`, `ClusterConfig::renew_every`).
const RENEW: Duration = Duration::from_millis(800);

/// One test of this file at a time: each runs several bots and their calls, and on a
/// 2-core machine running them side by side measures the machine, not the cluster.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn play(url: &str) -> serde_json::Value {
    json!([{"name": "query", "type": 3, "value": url}])
}

/// Guilds on each of `SHARDS` shards, and the track they play.
async fn sharded_emulator(dir: &Path) -> (Emulator, Vec<ShardGuild>, FileServer) {
    let emu = Emulator::start().await;
    let mut guilds = Vec::new();
    for shard in 0..SHARDS {
        guilds.push(emu.add_guild_on_shard(shard, SHARDS).await);
    }
    emu.add_member(guilds[0].id, BOSS, "boss", false, true);
    let media = dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    write_tone_pair_wav(&media.join("pair.wav"), (FIRST, 5.0), (SECOND, 150.0));
    let files = FileServer::start(&media).await;
    (emu, guilds, files)
}

/// Starts `/play` in `g` and waits until it is heard.
async fn play_in(emu: &Emulator, files: &FileServer, g: &ShardGuild) {
    let r = emu
        .command(g.id, g.text, g.member, "play", play(&files.url("pair.wav")))
        .await
        .response(T)
        .await;
    assert!(!r.ephemeral, "guild {}: {}", g.id, r.text());
    emu.wait_audio_frames(g.id, 25, T).await;
}

/// The identifies the emulator accepted were never closer than Discord's 5 s per bucket
/// (one bucket here), and none was refused.
fn assert_identify_rate(emu: &Emulator) {
    assert_eq!(emu.refused_identifies(), 0, "an identify came too early");
    let mut at: Vec<Instant> = emu.identifies().iter().map(|(t, _, _)| *t).collect();
    at.sort();
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(4_900),
            "two identifies {gap:?} apart"
        );
    }
}

/// One process, autosharded: Discord recommends 4 shards for guilds one shard may not
/// hold (at most 2 per shard here); a fixed single shard is refused with 4011 (serenity
/// then retries it every 5 s, and the host reads why in the log), and the default asks
/// and runs all four, each guild heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_runs_the_shards_discord_asks_for() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (emu, guilds, files) = sharded_emulator(dir.path()).await;
    emu.set_guilds_per_shard(2);
    emu.set_recommended_shards(SHARDS);

    let single = support::world::start_bot(&emu, dir.path(), |c| {
        c.discord.shards = encore::config::ShardPlan::Total(1);
    })
    .await;
    emu.wait_for("Discord's refusal of one shard for four guilds", T, |e| {
        e.protocol_errors().iter().any(|p| p.contains("4011"))
    })
    .await;
    assert!(
        emu.connected_shards().is_empty(),
        "the refused shard never connected"
    );
    single.stop().await;
    let refusals = emu.protocol_errors();
    assert!(refusals.iter().all(|p| p.contains("4011")), "{refusals:#?}");

    let bot = support::world::start_bot(&emu, dir.path(), |_| {}).await;
    emu.wait_for("four shards connected", Duration::from_secs(60), |e| {
        e.connected_shards().len() == SHARDS as usize
    })
    .await;
    for g in &guilds {
        play_in(&emu, &files, g).await;
        let heard = dominant_frequency(&non_silent(&emu.audio(g.id)));
        assert!((heard - FIRST).abs() < 20.0, "guild {}: {heard} Hz", g.id);
    }
    assert_identify_rate(&emu);
    bot.stop().await;
    assert_eq!(
        emu.protocol_errors(),
        refusals,
        "autosharding was refused too"
    );
}

// ---------------------------------------------------------------------------------------------
// Nodes: the real binary, several at once, on one PostgreSQL database.

/// One `encore` process of the cluster, with its own working directory (its config.toml
/// names it and sets the short lease) and its own data directory.
struct Node {
    name: &'static str,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Node {
    fn spawn(emu: &Emulator, dir: &Path, name: &'static str, database: &str) -> Node {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join("config.toml"),
            format!(
                "[player]\nsave_position_every = \"1s\"\n\
                 [ytdlp]\nmax_duration = \"0s\"\n\
                 [cluster]\nlease = \"{}s\"\nnode_name = \"{name}\"\n",
                LEASE.as_secs()
            ),
        )
        .unwrap();
        // One log per name, across restarts, for the failure messages.
        let log = home.join("node.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_encore"))
            .env("ENCORE_DATABASE", database)
            .env("DISCORD_TOKEN", emu.bot_token())
            .env("DISCORD_API_BASE", emu.api_base())
            .env("ENCORE_DATA_DIR", home.join("data"))
            .env("ENCORE_YTDLP_PATH", ytdlp_path())
            .env("ENCORE_ALLOW_PRIVATE_HOSTS", "true")
            .env("RUST_LOG", "warn,encore=info")
            .current_dir(&home)
            .stdout(Stdio::null())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start the encore binary");
        Node { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the machine died; no shutdown code runs.
    async fn crash(mut self) {
        self.child.start_kill().unwrap();
        let status = tokio::time::timeout(T, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(!status.success());
    }

    /// SIGTERM, as systemd stops a unit: the node hands its shards over and exits cleanly.
    async fn terminate(mut self) {
        let pid = self.child.id().expect("still running") as i32;
        // SAFETY: a plain syscall on our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(T, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(
            status.success(),
            "{}: {status:?}\n{}",
            self.name,
            self.log()
        );
    }
}

/// The cluster's database as the test reads it.
struct Store(sqlx::PgPool);

impl Store {
    async fn connect(url: &str) -> Store {
        Store(sqlx::PgPool::connect(url).await.unwrap())
    }

    /// Shard → the name of the node holding its live lease.
    async fn owners(&self) -> BTreeMap<u32, String> {
        let rows: Vec<(i32, String)> = sqlx::query_as(
            "SELECT shard_id, owner FROM shard_leases \
             WHERE owner IS NOT NULL AND expires_at > now() ORDER BY shard_id",
        )
        .fetch_all(&self.0)
        .await
        .unwrap_or_default();
        rows.into_iter()
            .map(|(shard, owner)| {
                let name = owner.split('-').next().unwrap_or_default().to_string();
                (shard as u32, name)
            })
            .collect()
    }

    /// Waits until the leases say `want` (node name → how many shards it holds).
    async fn until_held(&self, want: &[(&str, usize)]) -> BTreeMap<u32, String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let owners = self.owners().await;
            let held = |name: &str| owners.values().filter(|o| *o == name).count();
            if owners.len() == SHARDS as usize && want.iter().all(|(n, k)| held(n) == *k) {
                return owners;
            }
            assert!(
                Instant::now() < deadline,
                "leases {owners:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every guild's saved position has passed `at`.
    async fn until_saved_past(&self, guilds: &[ShardGuild], at: Duration) {
        let deadline = Instant::now() + T;
        loop {
            let rows: Vec<(i64, i64)> =
                sqlx::query_as("SELECT guild_id, position_ms FROM saved_queues")
                    .fetch_all(&self.0)
                    .await
                    .unwrap_or_default();
            let past = |g: &ShardGuild| {
                rows.iter()
                    .any(|(id, ms)| *id as u64 == g.id && *ms as u128 > at.as_millis())
            };
            if guilds.iter().all(past) {
                return;
            }
            assert!(Instant::now() < deadline, "saved positions {rows:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the nodes' heartbeats report `calls` calls on all shards.
    async fn until_reported(&self, calls: i64) {
        let deadline = Instant::now() + T;
        loop {
            let reported: Option<i64> = sqlx::query_scalar(
                "SELECT SUM(calls)::BIGINT FROM cluster_nodes \
                 WHERE heartbeat_at > now() - make_interval(secs => lease_ms / 1000.0)",
            )
            .fetch_one(&self.0)
            .await
            .unwrap_or(None);
            if reported == Some(calls) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "heartbeats report {reported:?} calls"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The guilds whose shard `node` holds.
fn held_by(guilds: &[ShardGuild], owners: &BTreeMap<u32, String>, node: &str) -> Vec<ShardGuild> {
    guilds
        .iter()
        .filter(|g| {
            owners
                .get(&guild_on_shard(g.id, SHARDS))
                .map(String::as_str)
                == Some(node)
        })
        .cloned()
        .collect()
}

/// A silence of at least this long in a guild's audio is an interruption.
const BREAK: Duration = Duration::from_secs(1);

/// Waits until each guild plays again after `since` (a second of audio after the break),
/// and returns how long each was silent, counted from `since`. The second heard is
/// the second tone: the queue went on from its saved position, not from the start.
async fn until_resumed(emu: &Emulator, guilds: &[ShardGuild], since: Instant) -> Vec<Duration> {
    let mut gaps = Vec::new();
    for g in guilds {
        let e = emu.clone();
        let id = g.id;
        emu.wait_for(
            &format!("guild {id} heard again"),
            Duration::from_secs(60),
            move |_| heard_again(&e.audio(id), since, BREAK).is_some_and(|r| r.frames_after >= 50),
        )
        .await;
        let at = heard_again(&emu.audio(id), since, BREAK).unwrap().at;
        let after: Vec<AudioFrame> = non_silent(&emu.audio(id))
            .into_iter()
            .filter(|f| f.at >= at)
            .take(50)
            .collect();
        let heard = dominant_frequency(&after);
        assert!(
            (heard - SECOND).abs() < 20.0,
            "guild {id} resumed at {heard} Hz, not where it was"
        );
        gaps.push(at - since);
    }
    gaps
}

/// Two nodes start against four shards, the cluster's database fresh, and every guild
/// plays until it is into the second tone and saved there (a queue restarted from its
/// start would be heard).
async fn two_nodes_playing(
    dir: &Path,
    emu: &Emulator,
    files: &FileServer,
    guilds: &[ShardGuild],
    a_database: &str,
    b_database: &str,
) -> (Node, Node, Store) {
    emu.set_guilds_per_shard(2);
    emu.set_recommended_shards(SHARDS);
    let store = Store::connect(b_database).await;
    let a = Node::spawn(emu, dir, "a", a_database);
    let b = Node::spawn(emu, dir, "b", b_database);
    store.until_held(&[("a", 2), ("b", 2)]).await;
    emu.wait_for("four shards connected", Duration::from_secs(60), |e| {
        e.connected_shards().len() == SHARDS as usize
    })
    .await;
    for g in guilds {
        play_in(emu, files, g).await;
    }
    store
        .until_saved_past(guilds, Duration::from_millis(5_500))
        .await;
    (a, b, store)
}

/// A crash and a rolling restart, on real processes. Two nodes split four shards 2/2 and
/// play in each guild; `/resources` shows both. One is SIGKILLed: its guilds fall silent
/// until its leases run out, then the other node takes them and each queue goes on from its
/// saved position, while the survivor's own guilds never pause. The crashed node comes back
/// and gets half the shards again. Then the other is stopped as systemd does (SIGTERM): it
/// hands its shards over at once, so its guilds are silent for less time than the crash cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_moves_the_guilds_and_a_rolling_restart_moves_them_sooner() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (emu, guilds, files) = sharded_emulator(dir.path()).await;
    let database = postgres::server().fresh_database().await;
    let (a, b, store) =
        two_nodes_playing(dir.path(), &emu, &files, &guilds, &database, &database).await;
    store.until_reported(SHARDS as i64).await;
    let r = emu
        .command(guilds[0].id, guilds[0].text, BOSS, "resources", json!([]))
        .await
        .response(T)
        .await;
    assert!(
        r.text().contains("2 nodes · 4 shards running · 4 calls"),
        "{}",
        r.text()
    );

    // The crash.
    let owners = store.owners().await;
    let (lost, kept) = (
        held_by(&guilds, &owners, "a"),
        held_by(&guilds, &owners, "b"),
    );
    let crashed = Instant::now();
    a.crash().await;
    let failover = until_resumed(&emu, &lost, crashed).await;
    let back = Instant::now();
    for g in &kept {
        let pause = longest_silence(&emu.audio(g.id), crashed, back);
        assert!(
            pause < BREAK,
            "guild {} on the survivor paused {pause:?}",
            g.id
        );
    }
    store.until_held(&[("b", 4)]).await;
    for gap in &failover {
        assert!(
            *gap >= LEASE - RENEW,
            "a crashed node's guild was taken {gap:?} after the crash, before its lease ran out"
        );
    }

    // The crashed node returns and gets its share back.
    let rejoined = Instant::now();
    let a = Node::spawn(&emu, dir.path(), "a", &database);
    let owners = store.until_held(&[("a", 2), ("b", 2)]).await;
    until_resumed(&emu, &held_by(&guilds, &owners, "a"), rejoined).await;
    let balanced = Instant::now();
    for g in &held_by(&guilds, &owners, "b") {
        let pause = longest_silence(&emu.audio(g.id), rejoined, balanced);
        assert!(
            pause < BREAK,
            "guild {} paused {pause:?} in the rebalance",
            g.id
        );
    }
    // The identify bucket is free again (a takes over without waiting for it).
    emu.wait_for("the identify bucket to be free", T, |e| {
        e.identifies()
            .last()
            .is_some_and(|(at, _, _)| at.elapsed() >= Duration::from_millis(5_500))
    })
    .await;

    // The rolling restart: b is stopped as systemd stops it.
    let leaving = held_by(&guilds, &owners, "b");
    let stopped = Instant::now();
    b.terminate().await;
    let handover = until_resumed(&emu, &leaving, stopped).await;
    store.until_held(&[("a", 4)]).await;
    eprintln!("failover gaps {failover:?}, rolling-restart gaps {handover:?}");
    let longest_of = |gaps: &[Duration]| gaps.iter().max().copied().unwrap_or_default();
    support::recovered("node SIGKILLed (longest gap)", longest_of(&failover));
    support::recovered("node stopped (longest gap)", longest_of(&handover));
    let longest = |gaps: &[Duration]| gaps.iter().max().copied().unwrap();
    assert!(
        *handover.iter().min().unwrap() < LEASE,
        "a handed-over guild waited out the lease: {handover:?}"
    );
    assert!(
        longest(&handover) < longest(&failover),
        "a rolling restart ({handover:?}) cost as much as a crash ({failover:?})"
    );

    assert_identify_rate(&emu);
    assert_eq!(emu.shard_overlaps(), Vec::<String>::new());
    a.terminate().await;
    drop(files);
}

/// Split brain: a node cut off from the database (a partition that drops nothing and
/// answers nothing) stops its shards before its leases run out, so when the other node
/// takes them no shard ever has two sessions; its queues go on there. When the line comes
/// back, the cut-off node rejoins and takes its share again, still without overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_before_another_takes_over() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (emu, guilds, files) = sharded_emulator(dir.path()).await;
    let server = postgres::server();
    let database = server.fresh_database().await;
    let line = Partition::start(([127, 0, 0, 1], server.port).into()).await;
    let via_line = database.replace(
        &format!(":{}/", server.port),
        &format!(":{}/", line.addr().port()),
    );
    let (a, b, store) =
        two_nodes_playing(dir.path(), &emu, &files, &guilds, &via_line, &database).await;

    let owners = store.owners().await;
    let cut_off = held_by(&guilds, &owners, "a");
    let cut = Instant::now();
    line.cut();
    until_resumed(&emu, &cut_off, cut).await;
    store.until_held(&[("b", 4)]).await;
    assert_eq!(emu.shard_overlaps(), Vec::<String>::new());
    for g in &cut_off {
        assert!(
            emu.voice_state_updates(g.id).contains(&None),
            "guild {}: the cut-off node never left its call",
            g.id
        );
    }
    assert!(
        a.log().contains("stopping this node's shards"),
        "the cut-off node said nothing:\n{}",
        a.log()
    );

    let healed = Instant::now();
    line.heal();
    let owners = store.until_held(&[("a", 2), ("b", 2)]).await;
    until_resumed(&emu, &held_by(&guilds, &owners, "a"), healed).await;
    assert_eq!(emu.shard_overlaps(), Vec::<String>::new());
    assert_identify_rate(&emu);
    a.terminate().await;
    b.terminate().await;
    drop(files);
}
