//! encore's benchmark suite: the real bot (the `encore` binary, as a child process) against
//! the Discord emulator of `tests/support` on loopback. Prints markdown tables (and saves
//! them under `target/encore-bench/`).
//!
//! ```text
//! cargo bench --bench encore                 # full suite (the figures in BENCHMARKS.md)
//! cargo bench --bench encore -- --quick      # a few minutes: what CI runs
//! cargo bench --bench encore -- --only calls --calls 10,100 --reps 1
//! ```
//!
//! Options: `--quick` | `--full` (default), `--only calls,ttfa,soak,cache,cluster`,
//! `--calls N,N,..`, `--variants pass,reencode,dave`, `--reps K`, `--window SECS`,
//! `--ttfa-runs K`, `--soak-cycles K`, `--soak-every K`, `--cache-entries K`,
//! `--cluster-calls N,N,..`, `--gap-runs K`, `--cluster-cache-entries K`. `--reps` and
//! `--window` apply to the cluster's calls too.
//!
//! Started by `cargo test` (no `--bench` argument) it only checks its own helpers.

// The emulator's own `#![allow]`s cover what the benchmark does not use of it.
#[path = "../../tests/support/mod.rs"]
mod support;

mod bot;
mod cache;
mod calls;
mod cluster;
mod fixtures;
mod report;
mod soak;
mod stats;
mod sys;
mod ttfa;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    pub only: Vec<String>,
    pub calls: calls::Plan,
    pub ttfa_runs: usize,
    pub soak: soak::Plan,
    pub cache_entries: usize,
    pub cache_lookups: usize,
    pub cluster: cluster::Plan,
    pub tracks: usize,
    pub track_secs: f32,
    pub command: String,
}

impl Options {
    fn quick() -> Options {
        Options {
            quick: true,
            only: vec![],
            calls: calls::Plan {
                ns: vec![10, 40],
                variants: vec![
                    calls::PASSTHROUGH,
                    calls::REENCODE,
                    calls::FILTERED,
                    calls::PASSTHROUGH_DAVE,
                ],
                reps: 1,
                warmup: Duration::from_secs(2),
                window: Duration::from_secs(5),
                ramp_concurrency: 8,
                give_up_deficit: 5.0,
            },
            ttfa_runs: 5,
            soak: soak::Plan {
                cycles: 200,
                sample_every: 50,
                guilds: 10,
                concurrency: 5,
                dave: true,
                settle: Duration::from_secs(20),
            },
            cache_entries: 10_000,
            cache_lookups: 2_000,
            cluster: cluster::Plan {
                calls: calls::Plan {
                    ns: vec![40],
                    variants: vec![calls::PASSTHROUGH],
                    reps: 1,
                    warmup: Duration::from_secs(2),
                    window: Duration::from_secs(5),
                    ramp_concurrency: 8,
                    give_up_deficit: 5.0,
                },
                gap_runs: 1,
                gap_guilds_per_shard: 2,
                cache_entries: 2_000,
                cache_lookups: 1_000,
            },
            tracks: 2,
            track_secs: 150.0,
            command: String::new(),
        }
    }

    fn full() -> Options {
        Options {
            quick: false,
            only: vec![],
            calls: calls::Plan {
                ns: vec![10, 100, 250, 500, 1000, 2000],
                variants: vec![
                    calls::PASSTHROUGH,
                    calls::REENCODE,
                    calls::FILTERED,
                    calls::PASSTHROUGH_DAVE,
                ],
                reps: 3,
                warmup: Duration::from_secs(3),
                window: Duration::from_secs(15),
                ramp_concurrency: 16,
                give_up_deficit: 5.0,
            },
            ttfa_runs: 20,
            soak: soak::Plan {
                cycles: 10_000,
                sample_every: 1_000,
                guilds: 100,
                concurrency: 10,
                dave: true,
                settle: Duration::from_secs(160),
            },
            cache_entries: 100_000,
            cache_lookups: 20_000,
            cluster: cluster::Plan {
                calls: calls::Plan {
                    ns: vec![100, 1000],
                    variants: vec![calls::PASSTHROUGH],
                    reps: 3,
                    warmup: Duration::from_secs(3),
                    window: Duration::from_secs(15),
                    ramp_concurrency: 16,
                    give_up_deficit: 5.0,
                },
                gap_runs: 5,
                gap_guilds_per_shard: 2,
                // Not 100 000 as in part 5: on PostgreSQL each store costs time in
                // proportion to the entries (the eviction's OFFSET scan), so filling 100 000
                // would take over an hour (BENCHMARKS.md, 6. Cluster).
                cache_entries: 20_000,
                cache_lookups: 20_000,
            },
            tracks: 4,
            track_secs: 600.0,
            command: String::new(),
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == part)
    }
}

fn list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

/// `None`: started by `cargo test` (no `--bench`, no mode): only the self-checks run.
fn parse_args() -> Option<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let full = args.iter().any(|a| a == "--full");
    if !bench && !quick && !full {
        return None;
    }
    let mut o = if quick {
        Options::quick()
    } else {
        Options::full()
    };
    let shown: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    o.command = if shown.is_empty() {
        "cargo bench --bench encore".into()
    } else {
        format!("cargo bench --bench encore -- {}", shown.join(" "))
    };
    if cfg!(debug_assertions) {
        // CI runs the quick mode from the test build (no optimised build to wait for): it
        // proves the benchmarks still run; its figures are not the optimised bot's.
        o.command = format!(
            "cargo test --bench encore -- --bench {} (unoptimised test build: the figures are not comparable)",
            shown.join(" ")
        );
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--only" => o.only = list(&val()),
            "--calls" => o.calls.ns = list(&val()),
            "--reps" => {
                o.calls.reps = val().parse().unwrap_or(o.calls.reps).max(1);
                o.cluster.calls.reps = o.calls.reps;
            }
            "--window" => {
                o.calls.window = Duration::from_secs_f64(val().parse().unwrap_or(5.0));
                o.cluster.calls.window = o.calls.window;
            }
            "--variants" => {
                o.calls.variants = val()
                    .split(',')
                    .filter_map(|v| match v.trim() {
                        "pass" | "passthrough" => Some(calls::PASSTHROUGH),
                        "reencode" | "re-encode" => Some(calls::REENCODE),
                        "dave" => Some(calls::PASSTHROUGH_DAVE),
                        "filter" | "filtered" => Some(calls::FILTERED),
                        _ => None,
                    })
                    .collect()
            }
            "--ttfa-runs" => o.ttfa_runs = val().parse().unwrap_or(o.ttfa_runs),
            "--soak-cycles" => o.soak.cycles = val().parse().unwrap_or(o.soak.cycles),
            "--soak-every" => {
                o.soak.sample_every = val().parse().unwrap_or(o.soak.sample_every).max(1)
            }
            "--cache-entries" => o.cache_entries = val().parse().unwrap_or(o.cache_entries),
            "--cluster-cache-entries" => {
                o.cluster.cache_entries = val().parse().unwrap_or(o.cluster.cache_entries)
            }
            "--cluster-calls" => o.cluster.calls.ns = list(&val()),
            "--gap-runs" => o.cluster.gap_runs = val().parse().unwrap_or(o.cluster.gap_runs),
            "--bench" | "--quick" | "--full" => {}
            other if other.starts_with("--") => {
                eprintln!("encore bench: unknown option {other} (see benches/encore/main.rs)")
            }
            // A positional filter from `cargo bench <filter>`: a part name.
            other => o.only.push(other.to_string()),
        }
    }
    Some(o)
}

/// The `encore` binary cargo built for this benchmark (same profile).
fn bot_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_encore"))
}

fn main() {
    let Some(opts) = parse_args() else {
        stats::self_check();
        report::self_check();
        println!(
            "encore bench: helpers ok (run `cargo bench --bench encore -- --quick` to measure)"
        );
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Every wait inside is bounded; this is the backstop. Exiting kills the bots (they get
    // SIGKILL when this process dies).
    let limit = if opts.quick {
        Duration::from_secs(20 * 60)
    } else {
        Duration::from_secs(4 * 3600)
    };
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("encore bench: still running after {limit:?}; giving up");
        std::process::exit(2);
    });
    // SIGINT/SIGTERM: drop the run (its bots are killed and waited for, its temporary
    // directory removed); the report saved so far stays.
    let ok = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            ok = run(opts) => ok,
            _ = term.recv() => { eprintln!("encore bench: stopped by SIGTERM"); false }
            _ = int.recv() => { eprintln!("encore bench: stopped by SIGINT"); false }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    if !ok {
        std::process::exit(1);
    }
}

async fn run(opts: Options) -> bool {
    let started = Instant::now();
    let machine = report::Machine::now(&opts.command);
    eprintln!("{}", machine.line());
    let tmp = tempfile::Builder::new()
        .prefix("encore-bench-")
        .tempdir()
        .expect("temp dir");
    let work = tmp.path().join("work");
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&work).unwrap();
    let env = bot::Env {
        exe: bot_exe(),
        data_dir: data_dir.clone(),
        ytdlp: support::world::ytdlp_path(),
        work,
    };
    let mut rep = report::Report::new(machine, opts.clone());
    let mut ok = true;
    let report_file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/encore-bench")
        .join(if opts.quick {
            "report-quick.md"
        } else {
            "report-full.md"
        });
    let save = |rep: &mut report::Report| {
        rep.total = started.elapsed();
        if let Some(dir) = report_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(&report_file, rep.render());
    };

    // The media: for the bots (the audio cache of `env.data_dir` filled on SQLite) and for
    // the cluster's nodes (which fill their own, on PostgreSQL).
    let needs_bot = ["calls", "ttfa", "soak"].iter().any(|p| opts.wants(p));
    let mut media = None;
    if needs_bot || opts.wants("cluster") {
        eprintln!(
            "[setup] {} tracks of {:.0} s (WebM/Opus 160 kb/s), filling the audio cache",
            opts.tracks, opts.track_secs
        );
        let m = Arc::new(
            fixtures::Media::create(&tmp.path().join("media"), opts.tracks, opts.track_secs).await,
        );
        if needs_bot {
            let config = fixtures::config(&env.data_dir, &env.ytdlp);
            match fixtures::fill_audio_cache(&config, &m.cached).await {
                Ok(d) => eprintln!("[setup] audio cache filled in {:.1} s", d.as_secs_f64()),
                Err(e) => {
                    eprintln!("[setup] FAILED: {e:#}");
                    return false;
                }
            }
        }
        media = Some(m);
    }

    if opts.wants("ttfa") {
        let r = ttfa::run(&env, media.as_ref().unwrap(), opts.ttfa_runs).await;
        ok &= r.errors.is_empty() && !r.miss.is_empty();
        rep.ttfa = Some(r);
        save(&mut rep);
    }
    if opts.wants("calls") {
        let r = {
            let mut progress = |r: &calls::Results| {
                rep.calls = Some(r.clone());
                save(&mut rep);
            };
            calls::run(
                &env,
                media.as_ref().unwrap(),
                opts.calls.clone(),
                &mut progress,
            )
            .await
        };
        // Quick mode must get through its smallest N with every variant.
        let smallest = opts.calls.ns.first().copied().unwrap_or(0);
        for vi in 0..opts.calls.variants.len() {
            let ts = r.of(vi, smallest);
            if ts.is_empty() || ts.iter().any(|t| !t.ok) {
                ok = false;
            }
        }
        rep.calls = Some(r);
    }
    if opts.wants("soak") {
        let r = soak::run(&env, media.as_ref().unwrap(), opts.soak.clone()).await;
        ok &= r.aborted.is_none();
        rep.soak = Some(r);
        save(&mut rep);
    }
    if opts.wants("cache") {
        eprintln!("[cache] {} entries", opts.cache_entries);
        match cache::run(tmp.path(), opts.cache_entries, opts.cache_lookups).await {
            Ok(r) => rep.cache = Some(r),
            Err(e) => {
                eprintln!("[cache] FAILED: {e:#}");
                ok = false;
            }
        }
        save(&mut rep);
    }
    if opts.wants("cluster") {
        let t0 = Instant::now();
        let r = {
            let mut progress = |r: &cluster::Results| {
                rep.cluster = Some(r.clone());
                save(&mut rep);
            };
            cluster::run(
                &env,
                media.as_ref().unwrap(),
                opts.cluster.clone(),
                tmp.path(),
                &mut progress,
            )
            .await
        };
        eprintln!(
            "[cluster] done in {:.1} min",
            t0.elapsed().as_secs_f64() / 60.0
        );
        // Quick mode must get through every measurement once: both engines, the smallest
        // N on one and two nodes, and a gap run.
        let calls_ok = opts.cluster.calls.ns.first().is_none_or(|&smallest| {
            [1, 2].iter().all(|&k| {
                let ts = r.calls_of(smallest, k);
                !ts.is_empty() && ts.iter().all(|t| t.ok())
            })
        });
        let gaps_ok = opts.cluster.gap_runs == 0 || r.gaps.iter().any(|g| g.error.is_none());
        let cache_ok = opts.cluster.cache_entries == 0 || r.cache.len() == 2;
        if r.error.is_some() || !cache_ok || !calls_ok || !gaps_ok {
            eprintln!(
                "[cluster] FAILED: {}",
                r.error.as_deref().unwrap_or("see above")
            );
            ok = false;
        }
        rep.cluster = Some(r);
    }
    let strays = bot::reap_strays(tmp.path());
    if strays > 0 {
        eprintln!("[cleanup] killed {strays} stray process(es) of the bots under test");
    }
    rep.complete = true;
    save(&mut rep);
    println!("{}", rep.render());
    eprintln!("report saved to {}", report_file.display());
    if !ok {
        eprintln!("encore bench: some measurements failed (see above)");
    }
    ok
}
