//! 2: time to first audio, from the interaction dispatch to the first audible RTP frame at
//! the emulator, for (a) a cache hit with the bot in the channel, (b) a cache hit with a
//! join, (c) a cache miss through yt-dlp; and, as the baseline in the same run, yt-dlp's own
//! `-j` for the same URL with the bot's exact arguments.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::bot::{self, Bot, Env};
use crate::fixtures::{self, Media, FRAME_BYTES};
use crate::stats;
use crate::support::{non_silent, Emulator};

#[derive(Clone, Debug, Default)]
pub struct Results {
    pub runs: usize,
    /// Milliseconds.
    pub hit_in_channel: Vec<f64>,
    pub hit_join: Vec<f64>,
    pub miss: Vec<f64>,
    pub ytdlp_j: Vec<f64>,
    /// Until the "Playing" reply reached the emulator, per case.
    pub reply_hit_in_channel: Vec<f64>,
    pub reply_hit_join: Vec<f64>,
    pub reply_miss: Vec<f64>,
    /// (b) only: when the join's gateway op 4 and voice IDENTIFY reached the emulator.
    pub join_op4: Vec<f64>,
    pub join_identify: Vec<f64>,
    /// Share of the cached track's frames that arrived with the file's exact size.
    pub passthrough_share: Option<f64>,
    pub rss_idle: u64,
    pub errors: Vec<String>,
}

const T: Duration = Duration::from_secs(30);

pub async fn run(env: &Env, media: &Arc<Media>, runs: usize) -> Results {
    let mut res = Results {
        runs,
        ..Default::default()
    };
    // DAVE on, decoding on: the production path, one guild.
    let emu = Emulator::start().await;
    let guilds = bot::populate(&emu, 1).await;
    let g = guilds[0];
    let mut b = match Bot::spawn(env, &emu, 100, "ttfa") {
        Ok(b) => b,
        Err(e) => {
            res.errors.push(format!("cannot start the bot: {e}"));
            return res;
        }
    };
    if let Err(e) = b.wait_ready(&emu, Duration::from_secs(60)).await {
        res.errors.push(e.to_string());
        return res;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    res.rss_idle = b.usage().rss_bytes;
    let cached = media.cached[0].clone();
    let ytdlp = encore::app::ytdlp(&fixtures::config(&env.data_dir, &env.ytdlp));
    let policy = encore::app::policy(&fixtures::config(&env.data_dir, &env.ytdlp));

    for run in 0..runs {
        eprintln!("[ttfa] run {}/{runs}", run + 1);
        let r: Result<(), String> = async {
            // (b) cache hit with a join: the bot is not in the channel.
            if emu.bot_voice_channel(g.guild).is_some() {
                let r = bot::command(&emu, &g, g.listener, "leave", json!([]), T).await?;
                bot::expect(r, "Left", "leave", &g)?;
            }
            if !bot::until(T, || emu.bot_voice_channel(g.guild).is_none()).await {
                return Err("the bot did not leave".into());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t = timed_play(&emu, &g, &cached).await?;
            res.hit_join.push(t.first);
            res.reply_hit_join.push(t.reply);
            res.join_op4.extend(t.op4);
            res.join_identify.extend(t.identify);
            if run == 0 {
                // Passthrough check on the frames of this play (decoded, so sizes are known).
                tokio::time::sleep(Duration::from_millis(1000)).await;
                let frames = emu.audio(g.guild);
                let exact = frames.iter().filter(|f| f.opus_len == FRAME_BYTES).count();
                res.passthrough_share = Some(exact as f64 / frames.len().max(1) as f64);
            }

            // (a) cache hit, bot already in the channel (idle after /stop).
            let r = bot::command(&emu, &g, g.listener, "stop", json!([]), T).await?;
            bot::expect(r, "Stopped", "stop", &g)?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t = timed_play(&emu, &g, &cached).await?;
            res.hit_in_channel.push(t.first);
            res.reply_hit_in_channel.push(t.reply);

            // (c) cache miss: a URL never seen, the bot in the channel.
            let r = bot::command(&emu, &g, g.listener, "stop", json!([]), T).await?;
            bot::expect(r, "Stopped", "stop", &g)?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let files_before = count_cached(&b.data_dir);
            let url = media.fresh_miss_url();
            let t = timed_play(&emu, &g, &url).await?;
            res.miss.push(t.first);
            res.reply_miss.push(t.reply);
            // The bot now downloads it in the background: let that finish first (it would
            // load the machine during the next measurement).
            let pid = b.pid;
            let done = bot::until(Duration::from_secs(60), || {
                count_cached(&b.data_dir) > files_before && crate::sys::children(pid).is_empty()
            })
            .await;
            if !done {
                return Err("the background download of a missed track did not finish".into());
            }

            // Baseline: yt-dlp -j, the bot's exact arguments, same URL.
            let q = encore::sources::parse_query(&url, &policy)
                .await
                .map_err(|e| e.to_string())?;
            let args = ytdlp.build_args(&q);
            let t0 = Instant::now();
            let out = tokio::time::timeout(
                T,
                tokio::process::Command::new(&env.ytdlp)
                    .args(&args)
                    .current_dir(&env.work)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .map_err(|_| "yt-dlp -j took over 30 s".to_string())?
            .map_err(|e| e.to_string())?;
            res.ytdlp_j.push(stats::ms(t0.elapsed()));
            if !out.status.success() {
                return Err(format!(
                    "yt-dlp -j failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let r = bot::command(&emu, &g, g.listener, "stop", json!([]), T).await?;
            bot::expect(r, "Stopped", "stop", &g)?;
            Ok(())
        }
        .await;
        if let Err(e) = r {
            eprintln!("[ttfa]   {e}");
            res.errors.push(e);
            if res.errors.len() > 2 {
                break;
            }
        }
    }
    b.stop(Duration::from_secs(20)).await;
    res
}

fn count_cached(data_dir: &std::path::Path) -> usize {
    std::fs::read_dir(data_dir.join("audio"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    encore::cache::audio::is_cache_file_name(&e.file_name().to_string_lossy())
                })
                .count()
        })
        .unwrap_or(0)
}

/// One /play, timed from just before the dispatch (milliseconds).
struct Timing {
    /// The first audible frame at the emulator.
    first: f64,
    /// The "Playing" answer.
    reply: f64,
    /// The bot's gateway op 4 (join) reached the emulator.
    op4: Option<f64>,
    /// The bot's voice websocket IDENTIFY reached the emulator.
    identify: Option<f64>,
}

/// Clears the guild's audio, sends /play and times it.
async fn timed_play(emu: &Emulator, g: &bot::G, url: &str) -> Result<Timing, String> {
    emu.clear_audio(g.guild);
    emu.clear_dave_stats(g.guild);
    let (op4s, identifies) = (
        emu.voice_state_updates(g.guild).len(),
        emu.voice_connections(g.guild),
    );
    let t0 = Instant::now();
    let play = bot::play(emu, g, url, T);
    let reply_at = async {
        let r = play.await;
        (r, Instant::now())
    };
    let heard = async {
        // Counters first (cheap), then the decoded frames.
        if bot::until(T, || bot::frames(emu, g.guild) > 0).await {
            bot::until(Duration::from_secs(5), || {
                !non_silent(&emu.audio(g.guild)).is_empty()
            })
            .await;
        }
    };
    // The join's steps as the emulator sees them, polled every millisecond until audio flows.
    let steps = async {
        let (mut op4, mut identify) = (None, None);
        let deadline = Instant::now() + T;
        while Instant::now() < deadline && bot::frames(emu, g.guild) == 0 {
            if op4.is_none() && emu.voice_state_updates(g.guild).len() > op4s {
                op4 = Some(stats::ms(t0.elapsed()));
            }
            if identify.is_none() && emu.voice_connections(g.guild) > identifies {
                identify = Some(stats::ms(t0.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (op4, identify)
    };
    let ((r, reply_at), (), (op4, identify)) = tokio::join!(reply_at, heard, steps);
    r?;
    let frames = non_silent(&emu.audio(g.guild));
    let first = frames
        .first()
        .ok_or_else(|| format!("no audible frame within {T:?} after /play {url}"))?;
    Ok(Timing {
        first: stats::ms(first.at.saturating_duration_since(t0)),
        reply: stats::ms(reply_at.saturating_duration_since(t0)),
        op4,
        identify,
    })
}
