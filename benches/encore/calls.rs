//! 1 and 3: N guilds playing cached Opus at once; frames received versus 50/s per call, the
//! bot's CPU and RSS, and the RSS increment per playing call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::bot::{self, Bot, Env};
use crate::fixtures::Media;
use crate::stats;
use crate::support::Emulator;
use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant {
    pub name: &'static str,
    pub volume: u16,
    pub dave: bool,
    /// A `/filter` preset set in every call once it plays: songbird decodes, the bot's DSP
    /// runs, songbird re-encodes.
    pub filter: Option<&'static str>,
}

pub const PASSTHROUGH: Variant = Variant {
    name: "passthrough (vol 100)",
    volume: 100,
    dave: false,
    filter: None,
};
pub const REENCODE: Variant = Variant {
    name: "re-encode (vol 50)",
    volume: 50,
    dave: false,
    filter: None,
};
pub const PASSTHROUGH_DAVE: Variant = Variant {
    name: "passthrough + DAVE",
    volume: 100,
    dave: true,
    filter: None,
};
/// One filter on (bassboost-medium: two biquads per channel) at volume 100.
pub const FILTERED: Variant = Variant {
    name: "re-encode + filter (bassboost)",
    volume: 100,
    dave: false,
    filter: Some("bassboost-medium"),
};

#[derive(Clone, Debug)]
pub struct Plan {
    pub ns: Vec<usize>,
    pub variants: Vec<Variant>,
    pub reps: usize,
    pub warmup: Duration,
    pub window: Duration,
    /// /play commands in flight at once while setting up.
    pub ramp_concurrency: usize,
    /// A variant stops growing N once its median deficit reaches this (percent).
    pub give_up_deficit: f64,
}

/// One measured trial.
#[derive(Clone, Debug, Default)]
pub struct Trial {
    pub n: usize,
    pub ok: bool,
    pub error: Option<String>,
    pub setup: Duration,
    pub window: Duration,
    pub frames: u64,
    pub expected: f64,
    pub deficit_pct: f64,
    /// The worst single call's deficit.
    pub worst_call_pct: f64,
    pub bot_cpu_pct: f64,
    /// This process: the emulator (decrypting, DAVE, counting) and the harness.
    pub emu_cpu_pct: f64,
    /// The whole machine, in cores (others' work included).
    pub machine_cores: f64,
    pub rss_idle: u64,
    pub rss_playing: u64,
    pub threads: u64,
    pub fds: u64,
    /// Datagrams the kernel dropped at the emulator's socket during the window.
    pub udp_drops: u64,
    /// DAVE frames no listener could decrypt, and plain frames sent inside a DAVE group,
    /// during the window.
    pub dave_bad: u64,
    /// Calls that never started: their `/play` got no answer in time, or their audio never
    /// came (an overloaded bot). They count in the deficit as wholly missing.
    pub not_started: usize,
    pub resources: bot::Resources,
}

#[derive(Clone)]
pub struct Results {
    pub plan: Plan,
    /// (variant name, N) → trials.
    pub trials: BTreeMap<(usize, usize), Vec<Trial>>,
}

impl Results {
    pub fn of(&self, v: usize, n: usize) -> &[Trial] {
        self.trials
            .get(&(v, n))
            .map(|t| t.as_slice())
            .unwrap_or(&[])
    }
}

/// `progress` sees the results after every trial (the report is saved as it grows).
pub async fn run(
    env: &Env,
    media: &Arc<Media>,
    plan: Plan,
    progress: &mut dyn FnMut(&Results),
) -> Results {
    let mut results = Results {
        plan: plan.clone(),
        trials: BTreeMap::new(),
    };
    let mut active: Vec<usize> = (0..plan.variants.len()).collect();
    for &n in &plan.ns {
        if active.is_empty() {
            break;
        }
        for rep in 0..plan.reps {
            for &vi in &active {
                let v = plan.variants[vi];
                // One failed set-up, or one run past the give-up deficit, is decisive at
                // this N: the next runs would say the same and an overloaded run is slow.
                if results
                    .of(vi, n)
                    .iter()
                    .any(|t| !t.ok || t.deficit_pct >= plan.give_up_deficit)
                {
                    continue;
                }
                eprintln!("[calls] N={n} {} (run {}/{})", v.name, rep + 1, plan.reps);
                let t = trial(env, media, &plan, v, n).await;
                eprintln!(
                    "[calls]   {}",
                    match &t.error {
                        Some(e) => format!("FAILED: {e}"),
                        None => format!(
                            "deficit {:.3}% (worst call {:.2}%), bot CPU {:.1}%, emulator CPU {:.1}%, RSS {:.1} MiB, udp drops {}",
                            t.deficit_pct,
                            t.worst_call_pct,
                            t.bot_cpu_pct,
                            t.emu_cpu_pct,
                            stats::mib(t.rss_playing as f64),
                            t.udp_drops
                        ),
                    }
                );
                results.trials.entry((vi, n)).or_default().push(t);
                progress(&results);
            }
        }
        active.retain(|&vi| {
            let ts = results.of(vi, n);
            let failed = ts.iter().any(|t| !t.ok);
            let d: Vec<f64> = ts.iter().map(|t| t.deficit_pct).collect();
            let over = stats::median(&d).is_some_and(|m| m >= plan.give_up_deficit);
            !(failed || over)
        });
    }
    results
}

async fn trial(env: &Env, media: &Arc<Media>, plan: &Plan, v: Variant, n: usize) -> Trial {
    let mut t = Trial {
        n,
        ..Default::default()
    };
    let emu = Emulator::start().await;
    emu.set_decode_audio(false);
    emu.set_dave(v.dave);
    let port = emu.voice_udp_addr().port();
    sys::grow_udp_rcvbuf(port, 32 << 20);
    let guilds = bot::populate(&emu, n).await;
    let mut b = match Bot::spawn(env, &emu, v.volume, &format!("calls-{n}-{}", v.volume)) {
        Ok(b) => b,
        Err(e) => {
            t.error = Some(format!("cannot start the bot: {e}"));
            return t;
        }
    };
    let r = measure(&emu, &mut b, media, plan, v, &guilds, &mut t).await;
    if let Err(e) = r {
        t.error = Some(e);
    }
    t.ok = t.error.is_none();
    b.stop(Duration::from_secs(30)).await;
    t
}

async fn measure(
    emu: &Emulator,
    b: &mut Bot,
    media: &Arc<Media>,
    plan: &Plan,
    v: Variant,
    guilds: &[bot::G],
    t: &mut Trial,
) -> Result<(), String> {
    let n = guilds.len();
    b.wait_ready(
        emu,
        Duration::from_secs(60) + Duration::from_millis(20 * n as u64),
    )
    .await
    .map_err(|e| e.to_string())?;
    // Let GUILD_CREATEs settle, then the idle figure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    t.rss_idle = b.usage().rss_bytes;

    let ramp = start_calls(emu, media, plan, guilds, &|| b.log_tail(10)).await?;
    t.not_started = ramp.not_started;
    t.setup = ramp.setup;
    if let Some(preset) = v.filter {
        set_filters(emu, plan, guilds, preset).await?;
    }
    tokio::time::sleep(plan.warmup).await;

    let w = measure_window(emu, guilds, &[b.pid], plan.window).await;
    let u = b.usage();
    t.window = w.window;
    t.frames = w.frames;
    t.expected = w.expected;
    t.deficit_pct = w.deficit_pct;
    t.worst_call_pct = w.worst_call_pct;
    t.bot_cpu_pct = w.bot_cpu_pct;
    t.emu_cpu_pct = w.emu_cpu_pct;
    t.machine_cores = w.machine_cores;
    t.udp_drops = w.udp_drops;
    t.dave_bad = w.dave_bad;
    t.rss_playing = u.rss_bytes;
    t.threads = u.threads;
    t.fds = u.open_fds;
    // The bot's own view (tokio tasks, mixer cost), after the window so it does not disturb it.
    match bot::resources(emu, Duration::from_secs(20)).await {
        Ok(r) => t.resources = r,
        Err(e) => eprintln!("[calls]   /resources: {e}"),
    }
    Ok(())
}

/// `/filter preset:<preset>` in every call (`plan.ramp_concurrency` in flight).
async fn set_filters(
    emu: &Emulator,
    plan: &Plan,
    guilds: &[bot::G],
    name: &str,
) -> Result<(), String> {
    // Discord sends a choice as its index; `off` is the first.
    let index = encore::player::filters::PRESETS
        .iter()
        .position(|p| *p == name)
        .ok_or_else(|| format!("no preset {name}"))?
        + 1;
    let failed: Vec<String> = futures::stream::iter(guilds)
        .map(|g| async move {
            let options = serde_json::json!([{"name": "preset", "type": 4, "value": index}]);
            let r = bot::command(
                emu,
                g,
                g.listener,
                "filter",
                options,
                Duration::from_secs(30),
            )
            .await;
            match r {
                Ok(r) if !r.ephemeral => None,
                Ok(r) => Some(format!("/filter {name} in guild {}: {}", g.guild, r.text())),
                Err(e) => Some(e),
            }
        })
        .buffer_unordered(plan.ramp_concurrency)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    match failed.first() {
        None => Ok(()),
        Some(e) => Err(format!("{} /filter failed, e.g. {e}", failed.len())),
    }
}

/// How setting up the calls went.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ramp {
    /// Calls whose `/play` was not answered in time or whose audio never came.
    pub not_started: usize,
    pub setup: Duration,
}

/// One `/play` of a cached track per guild (`plan.ramp_concurrency` in flight), then waits
/// (bounded) until every call sends audio. `log_tail` is the bot's log, for the error when
/// nothing started.
pub async fn start_calls(
    emu: &Emulator,
    media: &Arc<Media>,
    plan: &Plan,
    guilds: &[bot::G],
    log_tail: &dyn Fn() -> String,
) -> Result<Ramp, String> {
    let n = guilds.len();
    let t0 = Instant::now();
    let per_play = Duration::from_secs(30);
    // A saturated bot answers each /play only at its 30 s timeout: without a bound the
    // set-up of N = 2000 would take an hour. Plays not answered by then count as failed.
    let setup_bound = Duration::from_secs(60) + Duration::from_millis(30 * n as u64);
    let mut answered = 0;
    let mut errors: Vec<String> = futures::stream::iter(guilds.iter().enumerate())
        .map(|(i, g)| {
            let url = media.cached[i % media.cached.len()].clone();
            async move { bot::play(emu, g, &url, per_play).await.err() }
        })
        .buffer_unordered(plan.ramp_concurrency)
        .take_until(tokio::time::sleep(setup_bound))
        .inspect(|_| answered += 1)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    let failed = errors.len() + (n - answered);
    if answered < n {
        errors.push(format!(
            "{} /play not sent or not answered within the set-up bound of {setup_bound:?}",
            n - answered
        ));
    }
    if failed == n {
        return Err(format!(
            "every /play failed, e.g. {}\n{}",
            errors[0],
            log_tail()
        ));
    }
    // An overloaded bot answers some /play too late and starts some calls late: measure
    // what it does deliver (the missing calls count as missing frames) rather than
    // reporting nothing for the N where it breaks.
    bot::until(
        Duration::from_secs(30) + Duration::from_millis(10 * n as u64),
        || guilds.iter().all(|g| bot::frames(emu, g.guild) > 0),
    )
    .await;
    let not_started = guilds
        .iter()
        .filter(|g| bot::frames(emu, g.guild) == 0)
        .count();
    if not_started == n {
        return Err(format!("none of the {n} calls sent audio"));
    }
    if not_started > 0 {
        eprintln!(
            "[calls]   {not_started} of {n} calls did not start ({failed} /play failed), e.g. {}",
            errors.first().map(String::as_str).unwrap_or("-")
        );
    }
    Ok(Ramp {
        not_started,
        setup: t0.elapsed(),
    })
}

/// What the emulator received during one window, and what the bot process(es) spent.
#[derive(Clone, Debug, Default)]
pub struct Window {
    pub window: Duration,
    pub frames: u64,
    pub expected: f64,
    pub deficit_pct: f64,
    pub worst_call_pct: f64,
    /// The sum over the processes measured, in % of one core.
    pub bot_cpu_pct: f64,
    pub emu_cpu_pct: f64,
    pub machine_cores: f64,
    pub udp_drops: u64,
    pub dave_bad: u64,
}

/// Counts every call's frames over `window` and the CPU of the processes `pids` (the bot,
/// or every node of a cluster) in the same interval.
pub async fn measure_window(
    emu: &Emulator,
    guilds: &[bot::G],
    pids: &[u32],
    window: Duration,
) -> Window {
    let n = guilds.len();
    let snap = |emu: &Emulator| -> (Vec<u64>, u64) {
        let mut bad = 0;
        let frames = guilds
            .iter()
            .map(|g| {
                let s = emu.dave_stats(g.guild);
                bad += (s.decrypt_failures + s.frames_plain_in_group) as u64;
                (s.frames_encrypted + s.frames_plain + s.frames_silence) as u64
            })
            .collect();
        (frames, bad)
    };
    let bots =
        || -> Vec<sys::CpuMark> { pids.iter().map(|p| sys::CpuMark::now(Some(*p))).collect() };
    let port = emu.voice_udp_addr().port();
    let (drops_a, mach_a, me_a, bot_a) = (
        sys::udp_drops(port),
        sys::machine_cpu(),
        sys::CpuMark::now(None),
        bots(),
    );
    let (fa, bad_a) = snap(emu);
    let wa = Instant::now();
    tokio::time::sleep(window).await;
    let (fb, bad_b) = snap(emu);
    let wb = Instant::now();
    let (drops_b, mach_b, me_b, bot_b) = (
        sys::udp_drops(port),
        sys::machine_cpu(),
        sys::CpuMark::now(None),
        bots(),
    );

    let mut w = Window {
        window: wb - wa,
        ..Default::default()
    };
    let per_call: Vec<u64> = fa.iter().zip(&fb).map(|(a, b)| b - a).collect();
    w.frames = per_call.iter().sum();
    let expected_per_call = 50.0 * w.window.as_secs_f64();
    w.expected = expected_per_call * n as f64;
    w.deficit_pct = ((1.0 - w.frames as f64 / w.expected) * 100.0).max(0.0);
    w.worst_call_pct = per_call
        .iter()
        .map(|&f| ((1.0 - f as f64 / expected_per_call) * 100.0).max(0.0))
        .fold(0.0, f64::max);
    w.bot_cpu_pct = bot_a.iter().zip(&bot_b).map(|(a, b)| a.percent_to(b)).sum();
    w.emu_cpu_pct = me_a.percent_to(&me_b);
    w.machine_cores = sys::machine_busy_cores(mach_a, mach_b);
    w.udp_drops = drops_b.saturating_sub(drops_a);
    w.dave_bad = bad_b.saturating_sub(bad_a);
    w
}
