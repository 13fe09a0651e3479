//! 4: play / skip / leave cycles across many guilds, with the bot's RSS, open descriptors,
//! threads, live tokio tasks and child processes sampled between batches (all calls left).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::bot::{self, Bot, Env};
use crate::fixtures::Media;
use crate::support::Emulator;
use crate::sys;

#[derive(Clone, Debug)]
pub struct Plan {
    pub cycles: usize,
    pub sample_every: usize,
    pub guilds: usize,
    /// Guilds cycling at once.
    pub concurrency: usize,
    pub dave: bool,
    /// A last sample after this long with nothing to do: what the bot holds once the
    /// pools it keeps warm for a while (HTTP keep-alive, tokio's blocking threads) let go.
    pub settle: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub cycles: usize,
    pub elapsed: Duration,
    pub rss: u64,
    pub fds: u64,
    pub sockets: u64,
    pub threads: u64,
    pub children: usize,
    /// Taken after `Plan::settle` idle, not after a batch.
    pub settled: bool,
    pub tokio_tasks: Option<u64>,
    /// `tokio_tasks` minus the `/resources` commands still live (each stays live for 60 s,
    /// one task each, the sampling one included).
    pub tokio_tasks_net: Option<u64>,
    /// Calls songbird is mixing (0 once every call has left).
    pub mixer_live: Option<u64>,
    /// This process (the emulator keeps every record: it grows, the bot should not).
    pub emu_rss: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Results {
    pub plan: Option<Plan>,
    pub samples: Vec<Sample>,
    pub errors: usize,
    pub first_errors: Vec<String>,
    pub aborted: Option<String>,
    pub duration: Duration,
    pub stop_clean: Option<Duration>,
    /// Per cycle (play → first frame → skip → leave), milliseconds.
    pub cycle_ms: Vec<f64>,
}

const T: Duration = Duration::from_secs(30);

pub async fn run(env: &Env, media: &Arc<Media>, plan: Plan) -> Results {
    let mut res = Results {
        plan: Some(plan.clone()),
        ..Default::default()
    };
    let emu = Emulator::start().await;
    emu.set_decode_audio(false);
    emu.set_dave(plan.dave);
    let guilds = bot::populate(&emu, plan.guilds).await;
    let mut b = match Bot::spawn(env, &emu, 100, "soak") {
        Ok(b) => b,
        Err(e) => {
            res.aborted = Some(format!("cannot start the bot: {e}"));
            return res;
        }
    };
    if let Err(e) = b.wait_ready(&emu, Duration::from_secs(60)).await {
        res.aborted = Some(e.to_string());
        return res;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    let mut probes = Vec::new();
    res.samples.push(sample(&emu, &b, 0, t0, &mut probes).await);
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let times = Arc::new(Mutex::new(Vec::<f64>::new()));
    let mut done = 0;
    while done < plan.cycles {
        let batch = plan.sample_every.min(plan.cycles - done);
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..plan.concurrency.min(plan.guilds))
            .map(|w| {
                let (emu, next, errors, times, media) = (
                    emu.clone(),
                    next.clone(),
                    errors.clone(),
                    times.clone(),
                    media.clone(),
                );
                // Worker w owns guilds w, w + c, w + 2c...: never two cycles in one guild.
                let mine: Vec<bot::G> = guilds
                    .iter()
                    .skip(w)
                    .step_by(plan.concurrency.min(plan.guilds))
                    .copied()
                    .collect();
                tokio::spawn(async move {
                    let mut k = 0;
                    loop {
                        let c = next.fetch_add(1, Ordering::SeqCst);
                        if c >= batch {
                            break;
                        }
                        let g = mine[k % mine.len()];
                        k += 1;
                        let url = &media.cached[c % media.cached.len()];
                        let t = Instant::now();
                        match cycle(&emu, &g, url).await {
                            Ok(()) => times.lock().unwrap().push(crate::stats::ms(t.elapsed())),
                            Err(e) => {
                                errors.lock().unwrap().push(e);
                                // Leave the guild clean for its next cycle.
                                let _ =
                                    bot::command(&emu, &g, g.listener, "leave", json!([]), T).await;
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
        done += batch;
        let n_err = errors.lock().unwrap().len();
        eprintln!(
            "[soak] {done}/{} cycles, {n_err} errors, {:.0} s",
            plan.cycles,
            t0.elapsed().as_secs_f64()
        );
        // Quiet point: every call has left; let the last closes finish.
        tokio::time::sleep(Duration::from_secs(2)).await;
        res.samples
            .push(sample(&emu, &b, done, t0, &mut probes).await);
        if n_err * 20 > done.max(100) {
            res.aborted = Some(format!("too many failed cycles ({n_err} of {done})"));
            break;
        }
        if b.exited() {
            res.aborted = Some(format!("the bot exited:\n{}", b.log_tail(20)));
            break;
        }
    }
    res.duration = t0.elapsed();
    if res.aborted.is_none() && !plan.settle.is_zero() {
        eprintln!("[soak] idle for {:?}, then a last sample", plan.settle);
        tokio::time::sleep(plan.settle).await;
        let mut s = sample(&emu, &b, done, t0, &mut probes).await;
        s.settled = true;
        res.samples.push(s);
    }
    {
        let errs = errors.lock().unwrap();
        res.errors = errs.len();
        res.first_errors = errs.iter().take(5).cloned().collect();
    }
    res.cycle_ms = times.lock().unwrap().clone();
    res.stop_clean = b.stop(Duration::from_secs(30)).await;
    res
}

/// /play (and its first frame), /skip, /leave (and the bot gone from the channel).
async fn cycle(emu: &Emulator, g: &bot::G, url: &str) -> Result<(), String> {
    let before = bot::frames(emu, g.guild);
    bot::play(emu, g, url, T).await?;
    if !bot::until(T, || bot::frames(emu, g.guild) > before).await {
        return Err(format!("guild {}: no audio after /play", g.guild));
    }
    let r = bot::command(emu, g, g.listener, "skip", json!([]), T).await?;
    bot::expect(r, "Skipped", "skip", g)?;
    let r = bot::command(emu, g, g.listener, "leave", json!([]), T).await?;
    bot::expect(r, "Left", "leave", g)?;
    if !bot::until(T, || emu.bot_voice_channel(g.guild).is_none()).await {
        return Err(format!("guild {}: the bot did not leave", g.guild));
    }
    Ok(())
}

/// How long one `/resources` keeps refreshing itself (`LIVE_FOR` in the admin commands).
const RESOURCES_LIVE: Duration = Duration::from_secs(60);

async fn sample(
    emu: &Emulator,
    b: &Bot,
    cycles: usize,
    t0: Instant,
    probes: &mut Vec<Instant>,
) -> Sample {
    let u = b.usage();
    probes.push(Instant::now());
    let live = probes
        .iter()
        .filter(|p| p.elapsed() < RESOURCES_LIVE + Duration::from_secs(1))
        .count() as u64;
    let r = bot::resources(emu, T).await.unwrap_or_default();
    Sample {
        cycles,
        elapsed: t0.elapsed(),
        rss: u.rss_bytes,
        fds: u.open_fds,
        sockets: sys::sockets(b.pid),
        threads: u.threads,
        children: sys::children(b.pid).len(),
        tokio_tasks: r.tokio_tasks,
        tokio_tasks_net: r.tokio_tasks.map(|t| t.saturating_sub(live)),
        mixer_live: r.mixer_live,
        emu_rss: sys::process_usage(None).rss_bytes,
        settled: false,
    }
}
