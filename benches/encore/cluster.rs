//! 6: nodes of a cluster. `encore` processes whose `data.database` is one PostgreSQL database
//! (and `discord.shards` the default `auto`) lease the gateway shards there. Measured here, all
//! on this box: the metadata cache on SQLite and on PostgreSQL side by side, N calls served by
//! one node versus two, and how long guilds stay silent when a node crashes (failover), comes
//! back (rebalance) or is stopped as systemd stops it (rolling restart).
//!
//! The PostgreSQL server is the test suite's private one (`src/db/testpg.rs`: a temporary
//! directory, 127.0.0.1, fsync off), started on first use and stopped when this process exits.
//! Every run gets a copy of one template database whose metadata cache was filled beforehand
//! (`CREATE DATABASE … TEMPLATE`), so no run resumes the queues the previous one saved.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::bot::{self, Bot, Env, NodeConfig};
use crate::fixtures::{self, Media};
use crate::support::testpg::Server;
use crate::support::{guild_on_shard, heard_again, longest_silence, Emulator};
use crate::{cache, calls, stats, sys};

/// Shards of the emulated bot (Discord's recommendation, `GET /gateway/bot`).
pub const SHARDS: u32 = 4;
/// The nodes' `cluster.lease`: what a crash costs before another node may take the shards
/// (the default is 15 s; the minimum 2 s).
pub const LEASE: Duration = Duration::from_secs(4);
/// A silence at least this long in a guild's audio is an interruption (as in tests/cluster.rs).
const BREAK: Duration = Duration::from_secs(1);
/// After the last IDENTIFY, the cluster's next one in the bucket is free (the nodes space
/// them 5.5 s apart, Discord's 5 s and a margin).
const IDENTIFY_SPACING: Duration = Duration::from_millis(5_500);

#[derive(Clone, Debug)]
pub struct Plan {
    /// N, reps, warm-up, window, ramp-up of the calls (the variant is passthrough, DAVE off).
    pub calls: calls::Plan,
    /// Repetitions of crash → rejoin → rolling restart.
    pub gap_runs: usize,
    /// Guilds on each shard in the gap runs.
    pub gap_guilds_per_shard: usize,
    pub cache_entries: usize,
    pub cache_lookups: usize,
}

/// N calls on one or two nodes.
#[derive(Clone, Debug, Default)]
pub struct CallsTrial {
    pub n: usize,
    pub nodes: usize,
    pub error: Option<String>,
    /// From starting the nodes to every shard connected with the leases split evenly.
    pub shards_up: Duration,
    pub not_started: usize,
    pub setup: Duration,
    pub w: calls::Window,
    /// Summed over the nodes.
    pub rss_idle: u64,
    pub rss_playing: u64,
    pub threads: u64,
    /// Calls each node served (the guilds of the shards it held during the window).
    pub per_node: Vec<usize>,
}

impl CallsTrial {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// CPU of all nodes per frame received, in µs.
    pub fn us_per_frame(&self) -> f64 {
        if self.w.frames == 0 {
            return f64::NAN;
        }
        self.w.bot_cpu_pct / 100.0 * self.w.window.as_secs_f64() / self.w.frames as f64 * 1e6
    }
}

/// One crash → rejoin → rolling restart sequence. Gaps in ms, one per guild that moved,
/// each with the order in which its shard came back (0: the first shard of the move; each
/// shard waits for its own identify slot).
#[derive(Clone, Debug, Default)]
pub struct GapRun {
    pub error: Option<String>,
    /// SIGKILL of node a → the guild's first audible frame after the break.
    pub failover: Vec<(usize, f64)>,
    /// The restarted node takes its share back: the silence each moved guild had.
    pub rebalance: Vec<(usize, f64)>,
    /// SIGTERM of node b → the guild's first audible frame after the break.
    pub rolling: Vec<(usize, f64)>,
    /// The longest silence of each guild the crash did not move, from the kill until the
    /// moved ones were heard again.
    pub kept_pause: Vec<f64>,
    /// Guilds per transition (the shards that moved).
    pub moved: [usize; 3],
    pub overlaps: usize,
    pub refused_identifies: usize,
}

#[derive(Clone, Debug)]
pub struct Results {
    pub plan: Plan,
    /// Why the part could not run at all (no PostgreSQL, the media would not cache).
    pub error: Option<String>,
    /// SQLite, then PostgreSQL.
    pub cache: Vec<cache::Results>,
    pub cache_error: Option<String>,
    pub calls: Vec<CallsTrial>,
    pub gaps: Vec<GapRun>,
}

impl Results {
    pub fn calls_of(&self, n: usize, nodes: usize) -> Vec<&CallsTrial> {
        self.calls
            .iter()
            .filter(|t| t.n == n && t.nodes == nodes)
            .collect()
    }
}

/// The private server, started on first use; the reason when it cannot start (PostgreSQL's
/// binaries missing) instead of the panic `server()` raises for the tests.
async fn pg_server() -> Result<&'static Server, String> {
    let r =
        tokio::task::spawn_blocking(|| std::panic::catch_unwind(crate::support::postgres::server))
            .await
            .map_err(|e| e.to_string())?;
    r.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the PostgreSQL server did not start".into())
    })
}

/// Copies of the template database, one per run.
struct Databases {
    server: &'static Server,
    template: String,
    next: usize,
}

fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

impl Databases {
    async fn admin(&self) -> Result<sqlx::PgConnection, String> {
        use sqlx::Connection as _;
        sqlx::PgConnection::connect(&self.server.url("postgres"))
            .await
            .map_err(|e| format!("cannot reach the PostgreSQL server: {e}"))
    }

    /// A new database with the template's contents (the filled metadata cache).
    async fn copy(&mut self) -> Result<String, String> {
        use sqlx::Connection as _;
        let name = format!("bench{}_{}", std::process::id(), self.next);
        self.next += 1;
        let mut admin = self.admin().await?;
        let sql = format!(
            "CREATE DATABASE {name} TEMPLATE {}",
            db_name(&self.template)
        );
        // The template must have no session left; the filling pool closes its
        // connections asynchronously.
        let mut tries = 0;
        let r = loop {
            match sqlx::query(&sql).execute(&mut admin).await {
                Ok(_) => break Ok(self.server.url(&name)),
                Err(e) if tries >= 50 => break Err(format!("{sql}: {e}")),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let _ = admin.close().await;
        r
    }

    /// Drops a run's database (its nodes are gone; any session left is ended).
    async fn drop(&self, url: &str) {
        use sqlx::Connection as _;
        if let Ok(mut admin) = self.admin().await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db_name(url));
            let _ = sqlx::query(&sql).execute(&mut admin).await;
            let _ = admin.close().await;
        }
    }
}

pub async fn run(
    env: &Env,
    media: &Arc<Media>,
    plan: Plan,
    scratch: &Path,
    progress: &mut dyn FnMut(&Results),
) -> Results {
    let mut r = Results {
        plan: plan.clone(),
        error: None,
        cache: Vec::new(),
        cache_error: None,
        calls: Vec::new(),
        gaps: Vec::new(),
    };
    eprintln!("[cluster] starting a private PostgreSQL server");
    let server = match pg_server().await {
        Ok(s) => s,
        Err(e) => {
            r.error = Some(format!("no PostgreSQL server: {e}"));
            return r;
        }
    };

    // The metadata cache on both engines, one after the other, same entries.
    if plan.cache_entries > 0 {
        eprintln!(
            "[cluster] cache: {} entries on SQLite, then on PostgreSQL",
            plan.cache_entries
        );
    }
    let pg_cache = server.fresh_database().await;
    let engines = if plan.cache_entries > 0 {
        vec![None, Some(pg_cache.as_str())]
    } else {
        vec![]
    };
    for database in engines {
        let dir = scratch.join(if database.is_some() {
            "cache-pg"
        } else {
            "cache-sqlite"
        });
        match cache::run_on(&dir, plan.cache_entries, plan.cache_lookups, database).await {
            Ok(c) => {
                eprintln!(
                    "[cluster]   {}: /play's hit path p50 {} µs, p99 {} µs",
                    c.engine,
                    stats::percentile(&c.resolve_hit, 50.0).unwrap_or(f64::NAN) as u64,
                    stats::percentile(&c.resolve_hit, 99.0).unwrap_or(f64::NAN) as u64
                );
                r.cache.push(c);
            }
            Err(e) => {
                eprintln!("[cluster]   cache FAILED: {e:#}");
                r.cache_error = Some(format!("{e:#}"));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    progress(&r);

    // The nodes' data: the metadata cache in a template database, the audio files and
    // their index (a node's own SQLite file) in a data directory every node copies.
    let template = server.fresh_database().await;
    let data_dir = scratch.join("cluster-data");
    let mut config = fixtures::config(&data_dir, &env.ytdlp);
    config.data.database = Some(template.clone());
    match fixtures::fill_audio_cache(&config, &media.cached).await {
        Ok(d) => eprintln!(
            "[cluster] audio cache of the nodes filled in {:.1} s",
            d.as_secs_f64()
        ),
        Err(e) => {
            r.error = Some(format!("cannot fill the nodes' audio cache: {e:#}"));
            return r;
        }
    }
    let env = Env {
        data_dir,
        ..env.clone()
    };
    let mut dbs = Databases {
        server,
        template,
        next: 0,
    };

    let p = &plan.calls;
    for &n in &p.ns {
        for rep in 0..p.reps {
            for nodes in [1, 2] {
                eprintln!(
                    "[cluster] calls: N={n} on {nodes} node(s) (run {}/{})",
                    rep + 1,
                    p.reps
                );
                let t = calls_trial(&env, media, p, &mut dbs, n, nodes).await;
                eprintln!(
                    "[cluster]   {}",
                    match &t.error {
                        Some(e) => format!("FAILED: {e}"),
                        None => format!(
                            "served {:.3}% of the frames, calls per node {:?}, nodes' CPU {:.1}% ({:.2} µs/frame), RSS {:.1} MiB, shards up in {:.1} s",
                            100.0 - t.w.deficit_pct,
                            t.per_node,
                            t.w.bot_cpu_pct,
                            t.us_per_frame(),
                            stats::mib(t.rss_playing as f64),
                            t.shards_up.as_secs_f64()
                        ),
                    }
                );
                r.calls.push(t);
                progress(&r);
            }
        }
    }

    for k in 0..plan.gap_runs {
        eprintln!(
            "[cluster] gaps: crash, rejoin, rolling restart (run {}/{})",
            k + 1,
            plan.gap_runs
        );
        let g = gap_run(&env, media, &mut dbs, k, plan.gap_guilds_per_shard).await;
        eprintln!(
            "[cluster]   {}",
            match &g.error {
                Some(e) => format!("FAILED: {e}"),
                None => format!(
                    "failover {:?} ms, rebalance {:?} ms, rolling restart {:?} ms, survivors' longest pause {:?} ms",
                    whole_ms(&g.failover),
                    whole_ms(&g.rebalance),
                    whole_ms(&g.rolling),
                    g.kept_pause.iter().map(|x| x.round() as u64).collect::<Vec<_>>()
                ),
            }
        );
        r.gaps.push(g);
        progress(&r);
    }
    r
}

fn whole_ms(v: &[(usize, f64)]) -> Vec<u64> {
    v.iter().map(|x| x.1.round() as u64).collect()
}

/// Each gap of `guilds` with the order in which its shard came back (0: first).
fn by_shard_order(guilds: &[bot::G], gaps: &[f64]) -> Vec<(usize, f64)> {
    let shard = |g: &bot::G| guild_on_shard(g.guild, SHARDS);
    let mut first_back: BTreeMap<u32, f64> = BTreeMap::new();
    for (g, ms) in guilds.iter().zip(gaps) {
        let e = first_back.entry(shard(g)).or_insert(*ms);
        *e = e.min(*ms);
    }
    let mut order: Vec<(u32, f64)> = first_back.into_iter().collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    guilds
        .iter()
        .zip(gaps)
        .map(|(g, ms)| {
            let rank = order.iter().position(|(s, _)| *s == shard(g));
            (rank.unwrap_or(0), *ms)
        })
        .collect()
}

// ------------------------------------------------------------------ the cluster as seen from the database

/// Shard → the `node_name` of the node holding its live lease (a node id starts with its name
/// and a dash).
async fn owners(db: &PgPool) -> BTreeMap<u32, String> {
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "SELECT shard_id, owner FROM shard_leases \
         WHERE owner IS NOT NULL AND expires_at > now() ORDER BY shard_id",
    )
    .fetch_all(db)
    .await
    .unwrap_or_default();
    rows.into_iter()
        .map(|(shard, owner)| {
            let name = owner.split('-').next().unwrap_or_default().to_string();
            (shard as u32, name)
        })
        .collect()
}

/// Waits (bounded) until the leases say `want` (node name → shards held), every shard is
/// connected at the emulator, and the commands are registered. Fails at once when a node
/// exits.
async fn until_cluster(
    emu: &Emulator,
    db: &PgPool,
    nodes: &mut [&mut Bot],
    want: &[(&str, usize)],
    timeout: Duration,
) -> Result<BTreeMap<u32, String>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let o = owners(db).await;
        let held = |name: &str| o.values().filter(|x| *x == name).count();
        if o.len() == SHARDS as usize
            && want.iter().all(|(n, k)| held(n) == *k)
            && emu.connected_shards().len() == SHARDS as usize
            && emu.registration_count() > 0
        {
            return Ok(o);
        }
        for b in nodes.iter_mut() {
            if b.exited() {
                return Err(format!("a node exited:\n{}", b.log_tail(15)));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "after {timeout:?}: leases {o:?} (want {want:?}), connected shards {:?}\n{}",
                emu.connected_shards(),
                nodes
                    .iter()
                    .map(|b| b.log_tail(5))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(url: &str) -> Result<PgPool, String> {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to the run's database: {e}"))
}

fn node(url: &str, name: &str) -> NodeConfig {
    NodeConfig {
        database: url.to_string(),
        node_name: name.to_string(),
        lease: LEASE,
    }
}

/// The ids of a guild made by `add_guild_on_shard`, as the bot helpers take them.
fn as_g(g: crate::support::ShardGuild) -> bot::G {
    bot::G {
        guild: g.id,
        voice: g.voice,
        text: g.text,
        listener: g.member,
    }
}

/// `n` guilds, spread evenly over the shards.
async fn sharded_guilds(emu: &Emulator, n: usize) -> Vec<bot::G> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(as_g(
            emu.add_guild_on_shard(i as u32 % SHARDS, SHARDS).await,
        ));
    }
    out
}

fn on_nodes(guilds: &[bot::G], owners: &BTreeMap<u32, String>, node: &str) -> Vec<bot::G> {
    guilds
        .iter()
        .filter(|g| {
            owners
                .get(&guild_on_shard(g.guild, SHARDS))
                .map(String::as_str)
                == Some(node)
        })
        .copied()
        .collect()
}

// ------------------------------------------------------------------ calls: one node vs two

async fn calls_trial(
    env: &Env,
    media: &Arc<Media>,
    plan: &calls::Plan,
    dbs: &mut Databases,
    n: usize,
    nodes: usize,
) -> CallsTrial {
    let mut t = CallsTrial {
        n,
        nodes,
        ..Default::default()
    };
    let emu = Emulator::start().await;
    emu.set_decode_audio(false);
    emu.set_dave(calls::PASSTHROUGH.dave);
    sys::grow_udp_rcvbuf(emu.voice_udp_addr().port(), 32 << 20);
    emu.set_recommended_shards(SHARDS);
    let guilds = sharded_guilds(&emu, n).await;
    let url = match dbs.copy().await {
        Ok(u) => u,
        Err(e) => {
            t.error = Some(e);
            return t;
        }
    };
    let names = &["a", "b"][..nodes];
    let mut bots = Vec::new();
    let t0 = Instant::now();
    for name in names {
        match Bot::spawn_node(
            env,
            &emu,
            calls::PASSTHROUGH.volume,
            &format!("cluster-{n}-{nodes}-{name}"),
            &node(&url, name),
        ) {
            Ok(b) => bots.push(b),
            Err(e) => t.error = Some(format!("cannot start node {name}: {e}")),
        }
    }
    if t.error.is_none() {
        match connect(&url).await {
            Ok(db) => {
                if let Err(e) =
                    calls_measure(&emu, &db, &mut bots, media, plan, &guilds, t0, &mut t).await
                {
                    t.error = Some(e);
                }
                db.close().await;
            }
            Err(e) => t.error = Some(e),
        }
    }
    futures::future::join_all(bots.into_iter().map(|b| b.stop(Duration::from_secs(30)))).await;
    dbs.drop(&url).await;
    t
}

#[allow(clippy::too_many_arguments)]
async fn calls_measure(
    emu: &Emulator,
    db: &PgPool,
    bots: &mut [Bot],
    media: &Arc<Media>,
    plan: &calls::Plan,
    guilds: &[bot::G],
    t0: Instant,
    t: &mut CallsTrial,
) -> Result<(), String> {
    let n = guilds.len();
    let share = SHARDS as usize / bots.len();
    let want: Vec<(&str, usize)> = ["a", "b"][..bots.len()]
        .iter()
        .map(|x| (*x, share))
        .collect();
    {
        let mut refs: Vec<&mut Bot> = bots.iter_mut().collect();
        until_cluster(
            emu,
            db,
            &mut refs,
            &want,
            Duration::from_secs(90) + Duration::from_millis(20 * n as u64),
        )
        .await?;
    }
    t.shards_up = t0.elapsed();
    // Let GUILD_CREATEs settle, then the idle figure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    t.rss_idle = bots.iter().map(|b| b.usage().rss_bytes).sum();

    let tail = || {
        bots.iter()
            .map(|b| b.log_tail(5))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ramp = calls::start_calls(emu, media, plan, guilds, &tail).await?;
    t.not_started = ramp.not_started;
    t.setup = ramp.setup;
    tokio::time::sleep(plan.warmup).await;

    let o = owners(db).await;
    t.per_node = want
        .iter()
        .map(|(name, _)| on_nodes(guilds, &o, name).len())
        .collect();
    let pids: Vec<u32> = bots.iter().map(|b| b.pid).collect();
    t.w = calls::measure_window(emu, guilds, &pids, plan.window).await;
    for b in bots.iter() {
        let u = b.usage();
        t.rss_playing += u.rss_bytes;
        t.threads += u.threads;
    }
    let after = owners(db).await;
    if after != o {
        eprintln!("[cluster]   the leases moved during the window: {o:?} → {after:?}");
    }
    Ok(())
}

// ------------------------------------------------------------------ gaps: crash, rejoin, rolling restart

/// Non-silence frames received in `guild` (DAVE or plain Opus; counted even while decoding).
fn sound_frames(emu: &Emulator, guild: u64) -> u64 {
    let s = emu.dave_stats(guild);
    (s.frames_encrypted + s.frames_plain) as u64
}

/// Waits (bounded) until every guild was heard again after a break that began after `since`
/// (and a second of audio after it). Returns, per guild, (signal → heard again, silence).
async fn until_resumed(
    emu: &Emulator,
    guilds: &[bot::G],
    since: Instant,
    timeout: Duration,
) -> Result<Vec<(Duration, Duration)>, String> {
    let deadline = Instant::now() + timeout;
    let marks: Vec<u64> = guilds.iter().map(|g| sound_frames(emu, g.guild)).collect();
    let mut found: Vec<Option<(Duration, Duration)>> = vec![None; guilds.len()];
    loop {
        for (i, g) in guilds.iter().enumerate() {
            // The decoded audio is looked at only once the counters say it came back
            // (copying it is not free).
            if found[i].is_some() || sound_frames(emu, g.guild) < marks[i] + 75 {
                continue;
            }
            if let Some(r) = heard_again(&emu.audio(g.guild), since, BREAK) {
                if r.frames_after >= 50 {
                    found[i] = Some((r.at - since, r.at - r.last_before));
                }
            }
        }
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
        if Instant::now() >= deadline {
            let missing: Vec<u64> = guilds
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(g, _)| g.guild)
                .collect();
            return Err(format!(
                "guilds {missing:?} not heard again within {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn gap_run(
    env: &Env,
    media: &Arc<Media>,
    dbs: &mut Databases,
    k: usize,
    per_shard: usize,
) -> GapRun {
    let mut g = GapRun::default();
    // DAVE on (the production path) and every frame decoded: a gap is measured between
    // audible frames.
    let emu = Emulator::start().await;
    emu.set_recommended_shards(SHARDS);
    let mut guilds = Vec::new();
    for shard in 0..SHARDS {
        for _ in 0..per_shard {
            guilds.push(as_g(emu.add_guild_on_shard(shard, SHARDS).await));
        }
    }
    let url = match dbs.copy().await {
        Ok(u) => u,
        Err(e) => {
            g.error = Some(e);
            return g;
        }
    };
    match connect(&url).await {
        Ok(db) => {
            if let Err(e) = gap_phases(&emu, &db, env, media, &url, k, &guilds, &mut g).await {
                g.error = Some(e);
            }
            db.close().await;
        }
        Err(e) => g.error = Some(e),
    }
    g.overlaps = emu.shard_overlaps().len();
    g.refused_identifies = emu.refused_identifies();
    dbs.drop(&url).await;
    g
}

/// The nodes live in here: an early return drops them, which kills them.
#[allow(clippy::too_many_arguments)]
async fn gap_phases(
    emu: &Emulator,
    db: &PgPool,
    env: &Env,
    media: &Arc<Media>,
    url: &str,
    k: usize,
    guilds: &[bot::G],
    g: &mut GapRun,
) -> Result<(), String> {
    let spawn = |bot_name: &str, name: &str| {
        Bot::spawn_node(env, emu, 100, bot_name, &node(url, name))
            .map_err(|e| format!("cannot start node {name}: {e}"))
    };
    let mut a = spawn(&format!("gaps{k}-a"), "a")?;
    let mut b = spawn(&format!("gaps{k}-b"), "b")?;
    until_cluster(
        emu,
        db,
        &mut [&mut a, &mut b],
        &[("a", 2), ("b", 2)],
        Duration::from_secs(90),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let errors: Vec<String> = futures::stream::iter(guilds.iter().enumerate())
        .map(|(i, gd)| {
            let url = media.cached[i % media.cached.len()].clone();
            async move {
                bot::play(emu, gd, &url, Duration::from_secs(30))
                    .await
                    .err()
            }
        })
        .buffer_unordered(8)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    if let Some(e) = errors.first() {
        return Err(format!("{} /play failed, e.g. {e}", errors.len()));
    }
    if !bot::until(Duration::from_secs(30), || {
        guilds.iter().all(|gd| sound_frames(emu, gd.guild) >= 50)
    })
    .await
    {
        return Err("not every guild played within 30 s".into());
    }
    // Every queue saved, so the node that takes a guild over has something to resume.
    let saved = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM saved_queues")
                .fetch_one(db)
                .await
                .unwrap_or(0);
            if n as usize >= guilds.len() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if !saved.await {
        return Err("the queues were not saved within 30 s".into());
    }

    // Failover: a dies (SIGKILL); b takes its shards once their leases ran out.
    let o = owners(db).await;
    let (lost, kept) = (on_nodes(guilds, &o, "a"), on_nodes(guilds, &o, "b"));
    g.moved[0] = lost.len();
    for gd in guilds {
        emu.clear_audio(gd.guild);
    }
    let crashed = Instant::now();
    a.kill();
    let gaps = until_resumed(emu, &lost, crashed, Duration::from_secs(60)).await?;
    let back = Instant::now();
    let v: Vec<f64> = gaps
        .iter()
        .map(|(from_signal, _)| ms(*from_signal))
        .collect();
    g.failover = by_shard_order(&lost, &v);
    g.kept_pause = kept
        .iter()
        .map(|gd| ms(longest_silence(&emu.audio(gd.guild), crashed, back)))
        .collect();
    until_cluster(emu, db, &mut [&mut b], &[("b", 4)], Duration::from_secs(30)).await?;

    // Rebalance: a comes back; b hands it half of the shards.
    for gd in guilds {
        emu.clear_audio(gd.guild);
    }
    let rejoined = Instant::now();
    let mut a = spawn(&format!("gaps{k}-a2"), "a")?;
    let o = until_cluster(
        emu,
        db,
        &mut [&mut a, &mut b],
        &[("a", 2), ("b", 2)],
        Duration::from_secs(90),
    )
    .await?;
    let moved = on_nodes(guilds, &o, "a");
    g.moved[1] = moved.len();
    let gaps = until_resumed(emu, &moved, rejoined, Duration::from_secs(60)).await?;
    let v: Vec<f64> = gaps.iter().map(|(_, silence)| ms(*silence)).collect();
    g.rebalance = by_shard_order(&moved, &v);

    // The rolling restart starts with the identify bucket free, as it would in service.
    bot::until(Duration::from_secs(15), || {
        emu.identifies()
            .last()
            .is_some_and(|(at, _, _)| at.elapsed() >= IDENTIFY_SPACING)
    })
    .await;
    let o = owners(db).await;
    let leaving = on_nodes(guilds, &o, "b");
    g.moved[2] = leaving.len();
    for gd in guilds {
        emu.clear_audio(gd.guild);
    }
    let stopped = Instant::now();
    if b.stop(Duration::from_secs(30)).await.is_none() {
        return Err("node b did not stop within 30 s of SIGTERM".into());
    }
    let gaps = until_resumed(emu, &leaving, stopped, Duration::from_secs(60)).await?;
    let v: Vec<f64> = gaps
        .iter()
        .map(|(from_signal, _)| ms(*from_signal))
        .collect();
    g.rolling = by_shard_order(&leaving, &v);
    until_cluster(emu, db, &mut [&mut a], &[("a", 4)], Duration::from_secs(30)).await?;
    a.stop(Duration::from_secs(30)).await;
    Ok(())
}
