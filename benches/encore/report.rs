//! The markdown report: the machine, then one table per part.

use std::fmt::Write as _;
use std::time::Duration;

use crate::stats::{self, linear_fit, median, mib, mmm, percentile};
use crate::{cache, calls, cluster, soak, sys, ttfa, Options};

pub struct Machine {
    pub cores: usize,
    pub mem: u64,
    pub cpu: String,
    pub kernel: String,
    pub load: String,
    pub nofile: u64,
    pub git: String,
    pub date: String,
    pub command: String,
}

fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Machine {
    pub fn now(command: &str) -> Machine {
        let rev = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Machine {
            cores: sys::cores(),
            mem: sys::mem_total(),
            cpu: sys::cpu_model(),
            kernel: sys::kernel(),
            load: sys::loadavg(),
            nofile: sys::nofile_limit(),
            git: if dirty {
                format!("{rev} + local changes")
            } else {
                rev
            },
            date: crate::support::state::iso8601(crate::support::state::now_ms())[..16]
                .replace('T', " ")
                + " UTC",
            command: command.to_string(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB, Linux {}, load {}",
            self.cores,
            self.cpu,
            self.mem as f64 / (1u64 << 30) as f64,
            self.kernel,
            self.load
        )
    }
}

pub struct Report {
    pub machine: Machine,
    pub opts: Options,
    pub calls: Option<calls::Results>,
    pub ttfa: Option<ttfa::Results>,
    pub soak: Option<soak::Results>,
    pub cache: Option<cache::Results>,
    pub cluster: Option<cluster::Results>,
    pub total: Duration,
    /// False while running (the report is saved as it grows) or when interrupted.
    pub complete: bool,
}

/// Largest N whose trials all worked with a median deficit under `limit` percent.
pub fn headline(r: &calls::Results, vi: usize, limit: f64) -> Option<usize> {
    r.plan
        .ns
        .iter()
        .copied()
        .filter(|&n| {
            let ts = r.of(vi, n);
            !ts.is_empty()
                && ts.iter().all(|t| t.ok)
                && median(&ts.iter().map(|t| t.deficit_pct).collect::<Vec<_>>())
                    .is_some_and(|d| d < limit)
        })
        .max()
}

fn col<T>(ts: &[calls::Trial], f: impl Fn(&calls::Trial) -> T) -> Vec<f64>
where
    T: Into<f64>,
{
    ts.iter().filter(|t| t.ok).map(|t| f(t).into()).collect()
}

fn us_per_frame(t: &calls::Trial) -> f64 {
    if t.frames == 0 {
        return f64::NAN;
    }
    t.bot_cpu_pct / 100.0 * t.window.as_secs_f64() / t.frames as f64 * 1e6
}

/// The deficit with the datagrams the kernel dropped at the emulator's socket counted as
/// received: what the bot sent (the rest of the deficit is the emulator not keeping up).
fn sent_deficit(t: &calls::Trial) -> f64 {
    ((1.0 - (t.frames + t.udp_drops) as f64 / t.expected) * 100.0).max(0.0)
}

/// songbird's mixer threads in % of one core: their mean cost per 20 ms cycle (from
/// `/resources`) times the threads, 50 cycles a second.
fn mixer_pct(t: &calls::Trial) -> Option<f64> {
    let r = &t.resources;
    Some(r.mixer_us_per_cycle? * r.mixer_threads? as f64 * 50.0 / 1e4)
}

fn pctl(v: &[f64], p: f64) -> String {
    whole(percentile(v, p))
}

/// A figure rounded to a whole number, "–" when there is none.
fn whole(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.0}")).unwrap_or_else(|| "–".into())
}

impl Report {
    pub fn new(machine: Machine, opts: Options) -> Report {
        Report {
            machine,
            opts,
            calls: None,
            ttfa: None,
            soak: None,
            cache: None,
            cluster: None,
            total: Duration::ZERO,
            complete: false,
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "## encore benchmarks ({} mode)\n",
            if self.opts.quick { "quick" } else { "full" }
        );
        if !self.complete {
            let _ = writeln!(
                s,
                "**Incomplete**: the run was still going or was interrupted.\n"
            );
        }
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(
            s,
            "| machine | {} cores, {}, {:.1} GiB RAM, Linux {} |",
            m.cores,
            m.cpu,
            m.mem as f64 / (1u64 << 30) as f64,
            m.kernel
        );
        let _ = writeln!(s, "| load average at start | {} |", m.load);
        let _ = writeln!(
            s,
            "| open files limit (inherited by the bot) | {} |",
            m.nofile
        );
        let _ = writeln!(s, "| command | `{}` |", m.command);
        let _ = writeln!(s, "| commit | {} |", m.git);
        let _ = writeln!(s, "| date | {} |", m.date);
        let _ = writeln!(
            s,
            "| duration | {:.1} min |",
            self.total.as_secs_f64() / 60.0
        );
        let _ = writeln!(
            s,
            "| how | the `encore` binary as a child process (its CPU/RSS from /proc/<pid>); the emulator (tests/support) in the benchmark process on 127.0.0.1 |"
        );
        s.push('\n');
        if let Some(c) = &self.calls {
            self.render_calls(&mut s, c);
        }
        if let Some(t) = &self.ttfa {
            self.render_ttfa(&mut s, t);
        }
        self.render_memory(&mut s);
        if let Some(k) = &self.soak {
            self.render_soak(&mut s, k);
        }
        if let Some(c) = &self.cache {
            self.render_cache(&mut s, c);
        }
        if let Some(c) = &self.cluster {
            self.render_cluster(&mut s, c);
        }
        s
    }

    fn render_calls(&self, s: &mut String, r: &calls::Results) {
        let p = &r.plan;
        let _ = writeln!(
            s,
            "### 1. Concurrent calls\n\nEach N: N guilds, each with a voice channel and a listener, all playing cached \
             WebM/Opus (160 kb/s) files; frames counted at the emulator over {:.0} s after {:.0} s of warm-up, \
             versus 50 per second per call. Cells: median [min–max] over {} run(s). Deficit as Lavalink \
             reports it: 1 − received / expected; \"sent-side\" counts the datagrams the kernel dropped at the \
             emulator's socket as received (what the bot did send); \"calls not started\": calls whose /play \
             was not answered or whose audio never came within the set-up time (an overloaded bot), counted \
             as wholly missing. An N whose first run reaches the give-up deficit is not repeated. \
             CPU in % of one core.\n",
            p.window.as_secs_f64(),
            p.warmup.as_secs_f64(),
            p.reps
        );
        let _ = writeln!(s, "**Headline** (largest N with a deficit under 0.1 %):\n");
        for (vi, v) in p.variants.iter().enumerate() {
            let h = headline(r, vi, 0.1);
            let tried = p.ns.iter().filter(|n| !r.of(vi, **n).is_empty()).max();
            let _ = writeln!(
                s,
                "- {}: **{}** (largest N tried: {})",
                v.name,
                h.map(|n| n.to_string()).unwrap_or_else(|| "none".into()),
                tried.map(|n| n.to_string()).unwrap_or_else(|| "–".into())
            );
        }
        s.push('\n');
        for (vi, v) in p.variants.iter().enumerate() {
            let _ = writeln!(
                s,
                "**{}**{}\n",
                v.name,
                if v.dave {
                    " (DAVE end-to-end encryption on)"
                } else {
                    " (DAVE off: transport encryption only)"
                }
            );
            let _ = writeln!(
                s,
                "| N | deficit % | sent-side deficit % | worst call % | calls not started | bot CPU % | bot µs/frame | emulator CPU % | machine busy (cores) | bot RSS MiB | KiB/call | threads | fds | UDP drops | DAVE bad | mixer CPU % | setup s |"
            );
            let _ = writeln!(
                s,
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for &n in &p.ns {
                let ts = r.of(vi, n);
                if ts.is_empty() {
                    continue;
                }
                if ts.iter().all(|t| !t.ok) {
                    let e = ts[0].error.clone().unwrap_or_default();
                    let e: String = e.lines().next().unwrap_or("").chars().take(150).collect();
                    let _ = writeln!(s, "| {n} | failed: {e} ||||||||||||||||");
                    continue;
                }
                let kib_call = col(ts, |t| {
                    (t.rss_playing as f64 - t.rss_idle as f64) / t.n as f64 / 1024.0
                });
                let _ = writeln!(
                    s,
                    "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    mmm(&col(ts, |t| t.deficit_pct), 3),
                    mmm(&col(ts, sent_deficit), 3),
                    mmm(&col(ts, |t| t.worst_call_pct), 2),
                    mmm(&col(ts, |t| t.not_started as f64), 0),
                    mmm(&col(ts, |t| t.bot_cpu_pct), 1),
                    mmm(&col(ts, us_per_frame), 2),
                    mmm(&col(ts, |t| t.emu_cpu_pct), 1),
                    mmm(&col(ts, |t| t.machine_cores), 2),
                    mmm(&col(ts, |t| mib(t.rss_playing as f64)), 1),
                    mmm(&kib_call, 0),
                    mmm(&col(ts, |t| t.threads as f64), 0),
                    mmm(&col(ts, |t| t.fds as f64), 0),
                    mmm(&col(ts, |t| t.udp_drops as f64), 0),
                    mmm(&col(ts, |t| t.dave_bad as f64), 0),
                    mmm(&ts.iter().filter_map(mixer_pct).collect::<Vec<_>>(), 1),
                    mmm(&col(ts, |t| t.setup.as_secs_f64()), 1),
                );
                let failed = ts.iter().filter(|t| !t.ok).count();
                if failed > 0 {
                    let _ = writeln!(
                        s,
                        "| | {failed} of {} runs failed ||||||||||||||||",
                        ts.len()
                    );
                }
            }
            s.push('\n');
        }
        // Side by side: what passthrough saves, what a filter and DAVE cost.
        let idx = |v: calls::Variant| p.variants.iter().position(|x| *x == v);
        if let Some(pi) = idx(calls::PASSTHROUGH) {
            let mut rows = Vec::new();
            for &n in &p.ns {
                let base = median(&col(r.of(pi, n), |t| t.bot_cpu_pct));
                let Some(base) = base else { continue };
                let cpu = |v: calls::Variant| {
                    idx(v).and_then(|i| median(&col(r.of(i, n), |t| t.bot_cpu_pct)))
                };
                let ratio = |v: calls::Variant| {
                    cpu(v)
                        .map(|x| format!("{:.1}×", x / base))
                        .unwrap_or_else(|| "–".into())
                };
                // What filters cost over the re-encode they need anyway (the aim: ≤ 1.2×).
                let filter_over_reencode = match (cpu(calls::FILTERED), cpu(calls::REENCODE)) {
                    (Some(f), Some(re)) if re > 0.0 => format!("{:.2}×", f / re),
                    _ => "–".into(),
                };
                rows.push(format!(
                    "| {n} | {base:.1} | {} | {} | {filter_over_reencode} | {} |",
                    ratio(calls::REENCODE),
                    ratio(calls::FILTERED),
                    ratio(calls::PASSTHROUGH_DAVE)
                ));
            }
            if !rows.is_empty() {
                let _ = writeln!(
                    s,
                    "Bot CPU relative to passthrough at the same N (medians):\n"
                );
                let _ = writeln!(s, "| N | passthrough CPU % | re-encode (vol 50) | re-encode + filter | filter ÷ re-encode | passthrough + DAVE |\n|---|---|---|---|---|---|");
                for r in rows {
                    let _ = writeln!(s, "{r}");
                }
                s.push('\n');
            }
        }
    }

    fn render_ttfa(&self, s: &mut String, t: &ttfa::Results) {
        let _ = writeln!(
            s,
            "### 2. Time to first audio\n\nFrom the INTERACTION_CREATE dispatch to the first audible RTP frame at the emulator \
             (DAVE on, one guild, {} runs each, interleaved). \"reply\": until the `Playing` answer reached the emulator. \
             Baseline in the same runs: `yt-dlp -j` alone, with the bot's exact arguments, on the same URL.\n",
            t.runs
        );
        let _ = writeln!(s, "| case | p50 ms | p95 ms | min | max | reply p50 ms | runs |\n|---|---|---|---|---|---|---|");
        let row = |s: &mut String, name: &str, v: &[f64], reply: &[f64]| {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                pctl(v, 50.0),
                pctl(v, 95.0),
                whole(stats::min(v)),
                whole(stats::max(v)),
                pctl(reply, 50.0),
                v.len()
            );
        };
        row(
            s,
            "(a) cache hit, bot in the channel",
            &t.hit_in_channel,
            &t.reply_hit_in_channel,
        );
        row(
            s,
            "(b) cache hit, bot joins",
            &t.hit_join,
            &t.reply_hit_join,
        );
        row(s, "(c) cache miss (yt-dlp)", &t.miss, &t.reply_miss);
        row(s, "baseline: `yt-dlp -j` alone", &t.ytdlp_j, &[]);
        if !t.join_op4.is_empty() {
            let _ = writeln!(
                s,
                "\nWhere (b)'s time goes (p50, ms after the dispatch): gateway op 4 (join) at the emulator {}, \
                 voice websocket IDENTIFY {}, first audible frame {}.",
                pctl(&t.join_op4, 50.0),
                pctl(&t.join_identify, 50.0),
                pctl(&t.hit_join, 50.0)
            );
        }
        let diffs: Vec<f64> = t.miss.iter().zip(&t.ytdlp_j).map(|(m, y)| m - y).collect();
        if let (Some(m), Some(y), Some(d)) = (median(&t.miss), median(&t.ytdlp_j), median(&diffs)) {
            let _ = writeln!(
                s,
                "\nCache miss / yt-dlp -j: **{:.2}×** (medians); the bot's own time above yt-dlp: **{d:.0} ms** median [{:.0}–{:.0}] per run.",
                m / y,
                stats::min(&diffs).unwrap_or(0.0),
                stats::max(&diffs).unwrap_or(0.0)
            );
        }
        if let Some(p) = t.passthrough_share {
            let _ = writeln!(
                s,
                "Passthrough check: {:.0} % of the frames of a cached track arrived with the file's exact Opus frame size ({} bytes).",
                p * 100.0,
                crate::fixtures::FRAME_BYTES
            );
        }
        for e in &t.errors {
            let _ = writeln!(s, "\n- error: {e}");
        }
        s.push('\n');
    }

    fn render_memory(&self, s: &mut String) {
        let c = self.calls.as_ref();
        let t = self.ttfa.as_ref();
        if c.is_none() && t.is_none() {
            return;
        }
        let _ = writeln!(s, "### 3. Memory\n");
        if let Some(t) = t.filter(|t| t.rss_idle > 0) {
            let _ = writeln!(
                s,
                "- RSS idle after start-up (1 guild, gateway ready, nothing playing): **{:.1} MiB**",
                mib(t.rss_idle as f64)
            );
        }
        if let Some(c) = c {
            for (vi, v) in c.plan.variants.iter().enumerate() {
                let mut pts = Vec::new();
                let mut idle = Vec::new();
                let mut fitted_ns = Vec::new();
                // Only runs that served every call: an overloaded bot holds queues of
                // frames and threads it would not hold in service.
                let healthy = |t: &&calls::Trial| {
                    t.ok && t.not_started == 0 && t.deficit_pct < c.plan.give_up_deficit
                };
                for &n in &c.plan.ns {
                    for tr in c.of(vi, n).iter().filter(healthy) {
                        pts.push((n as f64, tr.rss_playing as f64));
                        idle.push(format!("{:.1}", mib(tr.rss_idle as f64)));
                        if fitted_ns.last() != Some(&n) {
                            fitted_ns.push(n);
                        }
                    }
                }
                if let Some((slope, icpt)) = linear_fit(&pts) {
                    let _ = writeln!(
                        s,
                        "- {}: RSS ≈ {:.1} MiB + **{:.0} KiB per playing call** (least squares over {} runs, N = {:?})",
                        v.name,
                        mib(icpt),
                        slope / 1024.0,
                        pts.len(),
                        fitted_ns
                    );
                }
                if vi == 0 && !idle.is_empty() {
                    let by_n: Vec<String> = c
                        .plan
                        .ns
                        .iter()
                        .filter_map(|&n| {
                            let v = col(c.of(vi, n), |t| mib(t.rss_idle as f64));
                            median(&v).map(|m| format!("N={n}: {m:.1} MiB"))
                        })
                        .collect();
                    let _ = writeln!(
                        s,
                        "- RSS idle with N guilds known, before any call: {}",
                        by_n.join(", ")
                    );
                }
            }
        }
        s.push('\n');
    }

    fn render_soak(&self, s: &mut String, k: &soak::Results) {
        let Some(p) = &k.plan else { return };
        let _ = writeln!(
            s,
            "### 4. Soak\n\n{} play → first frame → skip → leave cycles over {} guilds, {} at once (DAVE {}), \
             sampled after every {} cycles once every call has left. Tokio tasks from `/resources`; each `/resources` \
             stays live for a minute with one task, so the net figure subtracts the ones still live. The last row \
             is taken after {:.0} s with nothing to do.\n",
            p.cycles, p.guilds, p.concurrency, if p.dave { "on" } else { "off" }, p.sample_every,
            p.settle.as_secs_f64()
        );
        let _ = writeln!(s, "| cycles | elapsed s | bot RSS MiB | fds | of which sockets | threads | tokio tasks (without live `/resources`) | calls mixing | child processes | emulator RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|");
        for x in &k.samples {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {:.0} |",
                if x.settled {
                    format!("{} + {:.0} s idle", x.cycles, p.settle.as_secs_f64())
                } else {
                    x.cycles.to_string()
                },
                x.elapsed.as_secs_f64(),
                mib(x.rss as f64),
                x.fds,
                x.sockets,
                x.threads,
                match (x.tokio_tasks, x.tokio_tasks_net) {
                    (Some(t), Some(n)) => format!("{t} ({n})"),
                    _ => "–".into(),
                },
                x.mixer_live.map(|v| v.to_string()).unwrap_or("–".into()),
                x.children,
                mib(x.emu_rss as f64)
            );
        }
        let batches: Vec<&soak::Sample> = k.samples.iter().filter(|x| !x.settled).collect();
        if let (Some(first), Some(last)) = (batches.get(1), batches.last()) {
            if last.cycles > first.cycles {
                let per = 1000.0 / (last.cycles - first.cycles) as f64;
                let d = |a: f64, b: f64| (b - a) * per;
                let _ = writeln!(
                    s,
                    "\nGrowth after the first {} cycles, per 1 000 cycles: RSS {:+.2} MiB, fds {:+.1}, threads {:+.1}, tokio tasks {}.",
                    first.cycles,
                    d(mib(first.rss as f64), mib(last.rss as f64)),
                    d(first.fds as f64, last.fds as f64),
                    d(first.threads as f64, last.threads as f64),
                    match (first.tokio_tasks_net, last.tokio_tasks_net) {
                        (Some(a), Some(b)) => format!("{:+.1}", d(a as f64, b as f64)),
                        _ => "–".into(),
                    }
                );
            }
        }
        let _ = writeln!(
            s,
            "Cycle time p50 {} ms, p95 {} ms; {} failed cycles{}; clean stop {}.",
            pctl(&k.cycle_ms, 50.0),
            pctl(&k.cycle_ms, 95.0),
            k.errors,
            if k.first_errors.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", k.first_errors[0])
            },
            k.stop_clean
                .map(|d| format!("in {:.1} s", d.as_secs_f64()))
                .unwrap_or("failed (killed)".into())
        );
        if let Some(a) = &k.aborted {
            let _ = writeln!(s, "\n**Aborted**: {a}");
        }
        s.push('\n');
    }

    fn render_cache(&self, s: &mut String, c: &cache::Results) {
        let _ = writeln!(
            s,
            "### 5. Cache lookups\n\n{} entries in the SQLite metadata cache (WAL, the bot's own code and schema), random keys, in \
             process. µs per call. Filled in {:.1} s; database {:.1} MiB.\n",
            c.entries,
            c.fill.as_secs_f64(),
            mib(c.db_bytes as f64)
        );
        let _ = writeln!(
            s,
            "| operation | p50 µs | p99 µs | max µs | calls |\n|---|---|---|---|---|"
        );
        let row = |s: &mut String, name: &str, v: &[f64]| {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                pctl(v, 50.0),
                pctl(v, 99.0),
                whole(stats::max(v)),
                v.len()
            );
        };
        row(s, "lookup, hit (`MetadataCache::lookup`)", &c.lookup_hit);
        row(s, "lookup, miss", &c.lookup_miss);
        row(
            s,
            "`/play`'s hit path (`Resolver::resolve`: lookup, touch, counters)",
            &c.resolve_hit,
        );
        row(s, "store, first 1 000 of the fill", &c.store_first);
        row(s, "store, last 1 000 of the fill", &c.store_last);
        row(s, "store into the full cache (evicts one)", &c.store);
        s.push('\n');
    }

    fn render_cluster(&self, s: &mut String, r: &cluster::Results) {
        let _ = writeln!(
            s,
            "### 6. Cluster\n\n`encore` nodes (the same binary, each its own process) sharing one PostgreSQL \
             database on this box (the test suite's private server, 127.0.0.1, fsync off), leasing the \
             {} gateway shards Discord recommends; `cluster.lease` = {} s. All nodes share this machine's {} \
             cores with each other, PostgreSQL and the emulator.\n",
            cluster::SHARDS,
            cluster::LEASE.as_secs(),
            self.machine.cores
        );
        if let Some(e) = &r.error {
            let _ = writeln!(s, "**Not run**: {e}\n");
            return;
        }
        // The cache on both engines, side by side.
        if let [a, b] = r.cache.as_slice() {
            let _ = writeln!(
                s,
                "**Metadata cache, SQLite vs PostgreSQL**: {} entries each, random keys, in process (the bot's \
                 `MetadataCache` and `Resolver`), µs per call. Filled in {:.1} s ({:.1} MiB) and {:.1} s ({:.1} MiB).\n",
                a.entries,
                a.fill.as_secs_f64(),
                mib(a.db_bytes as f64),
                b.fill.as_secs_f64(),
                mib(b.db_bytes as f64)
            );
            let _ = writeln!(
                s,
                "| operation | {0} p50 µs | {0} p99 µs | {1} p50 µs | {1} p99 µs | {1} / {0} (p50) | calls |\n|---|---|---|---|---|---|---|",
                a.engine, b.engine
            );
            let row = |s: &mut String, name: &str, f: fn(&cache::Results) -> &Vec<f64>| {
                let (x, y) = (f(a), f(b));
                let ratio = match (percentile(x, 50.0), percentile(y, 50.0)) {
                    (Some(p), Some(q)) if p > 0.0 => format!("{:.1}×", q / p),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} | {ratio} | {} |",
                    pctl(x, 50.0),
                    pctl(x, 99.0),
                    pctl(y, 50.0),
                    pctl(y, 99.0),
                    x.len().max(y.len())
                );
            };
            row(s, "lookup, hit", |c| &c.lookup_hit);
            row(s, "lookup, miss", |c| &c.lookup_miss);
            row(
                s,
                "`/play`'s hit path (`Resolver::resolve`: lookup, touch, counters)",
                |c| &c.resolve_hit,
            );
            row(s, "store, first 1 000 of the fill", |c| &c.store_first);
            row(s, "store, last 1 000 of the fill", |c| &c.store_last);
            row(s, "store into the full cache (evicts one)", |c| &c.store);
            s.push('\n');
        } else if let Some(e) = &r.cache_error {
            let _ = writeln!(s, "Metadata cache: **failed**: {e}\n");
        }

        // Calls: one node vs two.
        let p = &r.plan.calls;
        if !r.calls.is_empty() {
            let _ = writeln!(
                s,
                "**Calls, one node vs two**: N guilds spread evenly over the {} shards, each playing a cached file \
                 (passthrough, volume 100, DAVE off), served by one node or by two (the shards split 2/2); frames \
                 counted at the emulator over {:.0} s after {:.0} s of warm-up. Cells: median [min–max] over {} run(s), \
                 the two set-ups interleaved. \"served\" = frames received / expected (50 per second per call); CPU, \
                 µs/frame, RSS and threads are the sums over the nodes (CPU in % of one core); \"shards up\": from \
                 starting the nodes to every shard connected with the leases split.\n",
                cluster::SHARDS,
                p.window.as_secs_f64(),
                p.warmup.as_secs_f64(),
                p.reps
            );
            let _ = writeln!(
                s,
                "| N | nodes | calls per node | served % | worst call short % | calls not started | nodes' CPU % | µs/frame | nodes' RSS MiB | threads | emulator CPU % | machine busy (cores) | UDP drops | shards up s | setup s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for &n in &p.ns {
                for nodes in [1, 2] {
                    let all = r.calls_of(n, nodes);
                    if all.is_empty() {
                        continue;
                    }
                    let ts: Vec<&cluster::CallsTrial> =
                        all.iter().copied().filter(|t| t.ok()).collect();
                    if ts.is_empty() {
                        let e = all[0].error.clone().unwrap_or_default();
                        let e: String = e.lines().next().unwrap_or("").chars().take(150).collect();
                        let _ = writeln!(s, "| {n} | {nodes} | failed: {e} ||||||||||||");
                        continue;
                    }
                    let c = |f: &dyn Fn(&cluster::CallsTrial) -> f64| -> Vec<f64> {
                        ts.iter().map(|t| f(t)).collect()
                    };
                    let split = ts[0]
                        .per_node
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(" + ");
                    let _ = writeln!(
                        s,
                        "| {n} | {nodes} | {split} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        mmm(&c(&|t| 100.0 - t.w.deficit_pct), 3),
                        mmm(&c(&|t| t.w.worst_call_pct), 2),
                        mmm(&c(&|t| t.not_started as f64), 0),
                        mmm(&c(&|t| t.w.bot_cpu_pct), 1),
                        mmm(&c(&|t| t.us_per_frame()), 2),
                        mmm(&c(&|t| mib(t.rss_playing as f64)), 1),
                        mmm(&c(&|t| t.threads as f64), 0),
                        mmm(&c(&|t| t.w.emu_cpu_pct), 1),
                        mmm(&c(&|t| t.w.machine_cores), 2),
                        mmm(&c(&|t| t.w.udp_drops as f64), 0),
                        mmm(&c(&|t| t.shards_up.as_secs_f64()), 1),
                        mmm(&c(&|t| t.setup.as_secs_f64()), 1),
                    );
                    let failed = all.len() - ts.len();
                    if failed > 0 {
                        let _ = writeln!(
                            s,
                            "| | | {failed} of {} runs failed ||||||||||||",
                            all.len()
                        );
                    }
                }
            }
            s.push('\n');
        }

        // Gaps.
        if !r.gaps.is_empty() {
            let ok: Vec<&cluster::GapRun> = r.gaps.iter().filter(|g| g.error.is_none()).collect();
            let per_shard = r.plan.gap_guilds_per_shard;
            let _ = writeln!(
                s,
                "**Gaps**: two nodes, {} guilds ({per_shard} per shard) each playing (DAVE on, every frame decoded), \
                 then in one run: node a is killed (SIGKILL, a machine dying) and b takes its shards once their \
                 leases ran out; a is started again and gets half of the shards back; b is stopped as systemd stops \
                 it (SIGTERM: it hands its shards over at once). A gap ends at the guild's first audible frame after \
                 a silence of at least 1 s; it is counted from the signal for the crash and the stop, and as the \
                 silence heard for the rebalance. One sample per guild that moved; {} of {} run(s) completed.\n",
                cluster::SHARDS as usize * per_shard,
                ok.len(),
                r.gaps.len()
            );
            let _ = writeln!(
                s,
                "| transition | p50 ms | max ms | min ms | first shard back: p50 ms | second shard back: p50 ms | guilds moved per run | samples |\n|---|---|---|---|---|---|---|---|"
            );
            let row = |s: &mut String, name: &str, v: Vec<(usize, f64)>, moved: Option<usize>| {
                let all: Vec<f64> = v.iter().map(|x| x.1).collect();
                let nth = |k: usize| -> String {
                    match moved {
                        Some(_) => pctl(
                            &v.iter()
                                .filter(|x| x.0 == k)
                                .map(|x| x.1)
                                .collect::<Vec<_>>(),
                            50.0,
                        ),
                        None => "–".into(),
                    }
                };
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                    pctl(&all, 50.0),
                    whole(stats::max(&all)),
                    whole(stats::min(&all)),
                    nth(0),
                    nth(1),
                    moved.map(|m| m.to_string()).unwrap_or_else(|| "–".into()),
                    all.len()
                );
            };
            let all = |f: fn(&cluster::GapRun) -> &Vec<(usize, f64)>| -> Vec<(usize, f64)> {
                ok.iter().flat_map(|g| f(g).iter().copied()).collect()
            };
            let moved = |i: usize| ok.first().map(|g| g.moved[i]);
            row(
                s,
                "failover (SIGKILL → heard again)",
                all(|g| &g.failover),
                moved(0),
            );
            row(
                s,
                "rebalance (the node returns; silence heard)",
                all(|g| &g.rebalance),
                moved(1),
            );
            row(
                s,
                "rolling restart (SIGTERM → heard again)",
                all(|g| &g.rolling),
                moved(2),
            );
            let kept: Vec<(usize, f64)> = ok
                .iter()
                .flat_map(|g| g.kept_pause.iter().map(|x| (0, *x)))
                .collect();
            row(
                s,
                "guilds that stayed, during the failover (longest silence)",
                kept,
                None,
            );
            let overlaps: usize = r.gaps.iter().map(|g| g.overlaps).sum();
            let refused: usize = r.gaps.iter().map(|g| g.refused_identifies).sum();
            let _ = writeln!(
                s,
                "\nShard overlaps (two sessions of one shard at once): {overlaps}; identifies refused for coming too early: {refused}."
            );
            for (i, g) in r.gaps.iter().enumerate() {
                if let Some(e) = &g.error {
                    let e: String = e.lines().next().unwrap_or("").chars().take(300).collect();
                    let _ = writeln!(s, "\n- run {}: failed: {e}", i + 1);
                }
            }
            s.push('\n');
        }
    }
}

/// Run when `cargo test` starts this target: the headline rule.
pub fn self_check() {
    let trial = |n: usize, d: f64| calls::Trial {
        n,
        ok: true,
        deficit_pct: d,
        ..Default::default()
    };
    let mut r = calls::Results {
        plan: calls::Plan {
            ns: vec![10, 100, 250],
            variants: vec![calls::PASSTHROUGH],
            reps: 3,
            warmup: Duration::ZERO,
            window: Duration::ZERO,
            ramp_concurrency: 1,
            give_up_deficit: 5.0,
        },
        trials: Default::default(),
    };
    r.trials.insert(
        (0, 10),
        vec![trial(10, 0.0), trial(10, 0.5), trial(10, 0.0)],
    );
    r.trials.insert(
        (0, 100),
        vec![trial(100, 0.05), trial(100, 0.0), trial(100, 0.2)],
    );
    r.trials.insert(
        (0, 250),
        vec![trial(250, 0.3), trial(250, 0.4), trial(250, 0.0)],
    );
    assert_eq!(headline(&r, 0, 0.1), Some(100));
}
