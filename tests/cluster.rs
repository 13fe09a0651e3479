//! Past one machine: the bot's shards in one process, and `encore` nodes (the real
//! binary) sharing one PostgreSQL database, against an emulator that routes each guild to
//! the shard that owns it and refuses what Discord refuses.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::world::*;
use support::*;

const SHARDS: u32 = 4;
/// A server manager in the first guild, for `/resources`.
const BOSS: u64 = 1_000_000_000_000_399;
/// The track every guild plays: 5 s of A, then E.
const FIRST: f32 = 440.0;
const SECOND: f32 = 660.0;

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
    write_tone_pair_wav(&media.join("pair.wav"), (FIRST, 5.0), (SECOND, 90.0));
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
