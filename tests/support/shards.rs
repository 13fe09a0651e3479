//! Sharding in the emulated gateway, as Discord documents it
//! (<https://discord.com/developers/docs/events/gateway#sharding>): `GET /gateway/bot`'s
//! recommended shard count and session start limit, IDENTIFY's `shard: [id, num_shards]`
//! (close 4010 for an invalid pair, 4011 when a shard would hold too many guilds), the
//! identify rate limit per bucket `shard_id % max_concurrency` (op 9 for an IDENTIFY that
//! comes too early), and the routing of every dispatch to the connections whose shard owns
//! its guild (`(guild_id >> 22) % num_shards == shard_id`; events with no guild go to shard 0).
//!
//! Why a file of its own: gateway.rs speaks the protocol of one connection and state.rs holds
//! the world; sharding is the rule that ties connections to guilds, and written into either
//! it would push them past ~700 lines and scatter the documented rules over both. Every
//! rule lives here, including [`State::dispatch`] (the one way a dispatch reaches the bot)
//! and the test-facing [`Emulator`] setters and readers of sharding.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::payloads::{self, id_of};
use super::state::{emu_debug, GatewayConn, GwOut, State};
use super::state::{INTENT_GUILDS, INTENT_GUILD_MEMBERS, INTENT_GUILD_VOICE_STATES};
use super::Emulator;

/// A shard as IDENTIFY names it: `(shard_id, num_shards)`.
pub type ShardPair = (u32, u32);

/// What a connection that identifies without `shard` is.
pub const NO_SHARDING: ShardPair = (0, 1);

/// Guilds one shard may hold before IDENTIFY is closed with 4011 (Discord's figure).
pub const DEFAULT_GUILDS_PER_SHARD: usize = 2500;

/// One IDENTIFY per bucket per this long (Discord's figure).
pub const DEFAULT_IDENTIFY_INTERVAL: Duration = Duration::from_secs(5);

/// `session_start_limit.total` (Discord's figure for most bots), per 24 hours.
pub const SESSION_START_TOTAL: u32 = 1000;
const SESSION_START_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The shard that owns a guild when the bot runs `num_shards` shards (Discord's formula).
pub fn guild_on_shard(guild_id: u64, num_shards: u32) -> u32 {
    assert!(num_shards >= 1, "emulator: num_shards must be at least 1");
    ((guild_id >> 22) % u64::from(num_shards)) as u32
}

fn owns(shard: ShardPair, guild_id: u64) -> bool {
    guild_on_shard(guild_id, shard.1) == shard.0
}

/// Sharding settings and records, in [`State::shards`].
pub struct Sharding {
    /// Explicit `shards` for `GET /gateway/bot` (else computed from the guild count).
    pub recommended: Option<u32>,
    pub guilds_per_shard: usize,
    pub max_concurrency: u32,
    pub identify_interval: Duration,
    /// When the current session-start window began (for `reset_after`).
    pub window_start: Instant,
    /// Accepted IDENTIFYs: when, shard id, shard count.
    pub accepted: Vec<(Instant, u32, u32)>,
    /// IDENTIFYs answered with op 9 for coming too early in their bucket.
    pub refused: usize,
    /// A new session identified as a shard while another session of that shard was still
    /// connected: two processes served the same guilds at once (Discord allows it and
    /// sends both every event; the emulator keeps only the newer and records it here).
    pub overlaps: Vec<String>,
    /// session_id -> the shard it was identified as (a RESUME continues that shard).
    pub session_shard: HashMap<String, ShardPair>,
}

impl Default for Sharding {
    fn default() -> Self {
        Sharding {
            recommended: None,
            guilds_per_shard: DEFAULT_GUILDS_PER_SHARD,
            max_concurrency: 1,
            identify_interval: DEFAULT_IDENTIFY_INTERVAL,
            window_start: Instant::now(),
            accepted: Vec::new(),
            refused: 0,
            overlaps: Vec::new(),
            session_shard: HashMap::new(),
        }
    }
}

impl Sharding {
    /// `ceil(guilds / guilds_per_shard)`, at least 1, unless set explicitly.
    pub fn recommended_shards(&self, guild_count: usize) -> u32 {
        self.recommended.unwrap_or_else(|| {
            let per = self.guilds_per_shard.max(1);
            guild_count.div_ceil(per).max(1) as u32
        })
    }
}

/// The `GET /gateway/bot` body.
pub fn gateway_bot_json(s: &State) -> Value {
    let sh = &s.shards;
    let started = sh
        .accepted
        .iter()
        .filter(|(at, _, _)| *at >= sh.window_start)
        .count() as u32;
    let reset_after = SESSION_START_WINDOW.saturating_sub(sh.window_start.elapsed());
    json!({
        "url": s.gateway_url,
        "shards": sh.recommended_shards(s.guilds.len()),
        "session_start_limit": {
            "total": SESSION_START_TOTAL,
            "remaining": SESSION_START_TOTAL.saturating_sub(started),
            "reset_after": reset_after.as_millis() as u64,
            "max_concurrency": sh.max_concurrency,
        },
    })
}

/// The verdict on an IDENTIFY (after its token was checked).
pub enum Admission {
    /// A new session as this shard (recorded in [`Sharding::accepted`]).
    Accept(ShardPair),
    /// Close the connection: 4010 Invalid shard, or 4011 Sharding required (the close code,
    /// its reason, and the protocol error that says why).
    Close(u16, &'static str, String),
    /// Too early in its bucket: op 9 `d: false` (counted in [`Sharding::refused`]).
    Refuse,
}

/// Validates IDENTIFY's `shard` and applies the identify rate limit.
pub fn admit_identify(s: &mut State, d: &Value) -> Admission {
    let shard = match &d["shard"] {
        Value::Null => Some(NO_SHARDING),
        Value::Array(a) if a.len() == 2 => match (a[0].as_u64(), a[1].as_u64()) {
            (Some(id), Some(n)) => u32::try_from(id).ok().zip(u32::try_from(n).ok()),
            _ => None,
        },
        _ => None,
    };
    let shard = match shard {
        Some((id, n)) if n >= 1 && id < n => (id, n),
        _ => {
            let why = format!("IDENTIFY with an invalid shard {} (4010)", d["shard"]);
            return Admission::Close(4010, "Invalid shard", why);
        }
    };
    let (id, n) = shard;
    let mut per_shard: BTreeMap<u32, usize> = BTreeMap::new();
    for g in s.guilds.keys() {
        *per_shard.entry(guild_on_shard(*g, n)).or_default() += 1;
    }
    let limit = s.shards.guilds_per_shard;
    if let Some((busiest, count)) = per_shard.iter().find(|(_, c)| **c > limit) {
        let why = format!(
            "IDENTIFY as shard [{id}, {n}]: shard {busiest} would hold {count} guilds, over \
             guilds_per_shard {limit} (4011 Sharding required)"
        );
        return Admission::Close(4011, "Sharding required", why);
    }
    let sh = &mut s.shards;
    let now = Instant::now();
    let buckets = sh.max_concurrency.max(1);
    let last_in_bucket = sh
        .accepted
        .iter()
        .rev()
        .find(|(_, sid, _)| sid % buckets == id % buckets)
        .map(|(at, _, _)| *at);
    if last_in_bucket.is_some_and(|at| now.duration_since(at) < sh.identify_interval) {
        sh.refused += 1;
        emu_debug!(
            "IDENTIFY as shard [{id}, {n}] within {:?} of the last one in bucket {}: op 9",
            sh.identify_interval,
            id % buckets
        );
        return Admission::Refuse;
    }
    if now.duration_since(sh.window_start) >= SESSION_START_WINDOW {
        sh.window_start = now;
    }
    sh.accepted.push((now, id, n));
    Admission::Accept(shard)
}

/// The guild a dispatch is about: its `guild_id`, or the `id` of a GUILD_CREATE/UPDATE/DELETE.
pub fn dispatch_guild(t: &str, d: &Value) -> Option<u64> {
    id_of(&d["guild_id"]).or_else(|| {
        matches!(t, "GUILD_CREATE" | "GUILD_UPDATE" | "GUILD_DELETE")
            .then(|| id_of(&d["id"]))
            .flatten()
    })
}

impl State {
    /// Live connections (identified or resumed) that get the guild's events.
    pub fn conns_owning(&self, guild_id: u64) -> Vec<u64> {
        self.gw_conns
            .values()
            .filter(|c| owns(c.shard, guild_id))
            .map(|c| c.conn_id)
            .collect()
    }

    /// The session of the (first) live connection whose shard owns the guild.
    pub fn session_of_guild(&self, guild_id: u64) -> Option<String> {
        self.gw_conns
            .values()
            .find(|c| owns(c.shard, guild_id))
            .map(|c| c.session_id.clone())
    }

    /// Makes `conn` the live connection of its shard; an earlier live connection of the
    /// same shard (an older session) gets nothing more.
    /// A second session live on one shard at once is recorded in [`Sharding::overlaps`].
    pub fn install_conn(&mut self, conn: GatewayConn) {
        let shard = conn.shard;
        let overlapping: Vec<String> = self
            .gw_conns
            .values()
            .filter(|c| c.shard == shard && c.session_id != conn.session_id)
            .map(|c| c.session_id.clone())
            .collect();
        for old in overlapping {
            self.shards.overlaps.push(format!(
                "shard [{}, {}]: session {} began while session {old} was still connected",
                shard.0, shard.1, conn.session_id
            ));
        }
        self.gw_conns.retain(|_, c| c.shard != shard);
        self.gw_conns.insert(conn.conn_id, conn);
    }

    /// The bot's voice states in the guilds of `shard` are gone (a new session there).
    pub fn forget_bot_voice_on(&mut self, shard: ShardPair) {
        let bot = self.bot_user_id;
        for g in self.guilds.values_mut().filter(|g| owns(shard, g.id)) {
            g.voice_states.remove(&bot);
        }
        for (_, v) in self.bot_voice.iter_mut().filter(|(g, _)| owns(shard, **g)) {
            *v = None;
        }
    }

    /// Sends a dispatch where Discord would: an event about a guild to every live connection
    /// whose shard owns the guild, any other event to shard 0 (if their intents allow it).
    pub fn dispatch(&mut self, t: &str, d: Value) {
        let guild = dispatch_guild(t, &d);
        if self.gw_conns.is_empty() {
            if !self.buffer_detached(t, guild, &d) {
                self.drop_unrouted(t, guild);
            }
            return;
        }
        let targets: Vec<u64> = match guild {
            Some(g) => self.conns_owning(g),
            None => self
                .gw_conns
                .values()
                .filter(|c| c.shard.0 == 0)
                .map(|c| c.conn_id)
                .collect(),
        };
        // Sessions waiting to resume get it on their RESUME.
        let buffered = self.buffer_detached(t, guild, &d);
        if targets.is_empty() && !buffered {
            self.drop_unrouted(t, guild);
        }
        for conn_id in targets {
            self.dispatch_to(conn_id, t, d.clone());
        }
    }

    fn drop_unrouted(&mut self, t: &str, guild: Option<u64>) {
        let why = match guild {
            _ if self.gw_conns.is_empty() => "no gateway connection".to_string(),
            Some(g) => format!("no gateway connection on the shard of guild {g}"),
            None => "no gateway connection on shard 0".to_string(),
        };
        emu_debug!("{why}: dropping {t}");
        self.dropped_dispatches.push(format!("{t} ({why})"));
    }

    /// Sends a dispatch on one connection (if live and if its intents allow it).
    pub fn dispatch_to(&mut self, conn_id: u64, t: &str, d: Value) {
        let Some(conn) = self.gw_conns.get(&conn_id) else {
            self.dropped_dispatches
                .push(format!("{t} (connection {conn_id} is gone)"));
            return;
        };
        let needed = intent_needed(t);
        if needed != 0 && conn.intents & needed == 0 {
            emu_debug!(
                "intents {:#x} lack {needed:#x}: not sending {t}",
                conn.intents
            );
            self.dropped_dispatches
                .push(format!("{t} (intents {} lack {needed})", conn.intents));
            return;
        }
        if self.gw_strict.ended.contains(&conn.session_id) {
            // Told the bot its session is over (op 9): nothing more is sent on it.
            self.dropped_dispatches
                .push(format!("{t} (session {} ended)", conn.session_id));
            return;
        }
        let seq = self.gw_sessions.entry(conn.session_id.clone()).or_insert(0);
        *seq += 1;
        let frame = json!({"op": 0, "t": t, "s": *seq, "d": d});
        emu_debug!(
            "gateway -> {t} s={} (shard [{}, {}])",
            *seq,
            conn.shard.0,
            conn.shard.1
        );
        let _ = conn.tx.send(GwOut::Frame(frame.clone()));
        let session = conn.session_id.clone();
        self.log_sent(&session, &frame);
        self.dispatched.push(frame);
    }

    /// GUILD_CREATE to each connection owning the guild, built for that connection's intents.
    pub fn dispatch_guild_create(&mut self, guild_id: u64) {
        let targets = self.conns_owning(guild_id);
        if targets.is_empty() {
            self.drop_unrouted("GUILD_CREATE", Some(guild_id));
        }
        for conn_id in targets {
            let intents = self.gw_conns[&conn_id].intents;
            let g = payloads::guild_create_json(&self.guilds[&guild_id], self.bot_user_id, intents);
            self.dispatch_to(conn_id, "GUILD_CREATE", g);
        }
    }

    /// A fresh snowflake that lands on `shard_id` of `num_shards` (its timestamp part moved
    /// forward by less than `num_shards` ms).
    pub fn snowflake_on_shard(&mut self, shard_id: u32, num_shards: u32) -> u64 {
        let id = self.snowflake();
        let n = u64::from(num_shards);
        let ts = id >> 22;
        let ts = ts + (u64::from(shard_id) + n - ts % n) % n;
        let id = (ts << 22) | (id & ((1 << 22) - 1));
        self.bump_snowflake(id);
        id
    }
}

/// The intent a dispatch needs (0: none).
pub fn intent_needed(t: &str) -> u64 {
    match t {
        "GUILD_CREATE" | "GUILD_DELETE" | "CHANNEL_CREATE" | "CHANNEL_UPDATE"
        | "CHANNEL_DELETE" | "GUILD_UPDATE" => INTENT_GUILDS,
        "VOICE_STATE_UPDATE" => INTENT_GUILD_VOICE_STATES,
        "GUILD_MEMBER_ADD" | "GUILD_MEMBER_REMOVE" | "GUILD_MEMBER_UPDATE" => INTENT_GUILD_MEMBERS,
        _ => 0,
    }
}

/// A guild made by [`Emulator::add_guild_on_shard`]: like the default one, a voice channel, a
/// text channel and a human member in that voice channel.
#[derive(Clone, Copy, Debug)]
pub struct ShardGuild {
    pub id: u64,
    pub voice: u64,
    pub text: u64,
    pub member: u64,
}

impl Emulator {
    /// Overrides `shards` in `GET /gateway/bot` (default: `ceil(guilds / guilds_per_shard)`,
    /// at least 1).
    pub fn set_recommended_shards(&self, n: u32) {
        assert!(
            n >= 1,
            "emulator: the recommended shard count is at least 1"
        );
        self.with(|s| s.shards.recommended = Some(n));
    }

    /// What `GET /gateway/bot` answers in `shards` now.
    pub fn recommended_shards(&self) -> u32 {
        self.read(|s| s.shards.recommended_shards(s.guilds.len()))
    }

    /// Guilds one shard may hold (default 2500, like Discord): an IDENTIFY whose shard count
    /// would give any shard more is closed with 4011 (Sharding required).
    pub fn set_guilds_per_shard(&self, n: usize) {
        assert!(n >= 1, "emulator: guilds_per_shard is at least 1");
        self.with(|s| s.shards.guilds_per_shard = n);
    }

    /// `session_start_limit.max_concurrency` (default 1): the number of identify buckets
    /// (`shard_id % max_concurrency`), each allowed one IDENTIFY per identify interval.
    pub fn set_max_concurrency(&self, n: u32) {
        assert!(n >= 1, "emulator: max_concurrency is at least 1");
        self.with(|s| s.shards.max_concurrency = n);
    }

    /// How long a bucket waits between IDENTIFYs (default 5 s, like Discord); an earlier
    /// one is answered with op 9 `d: false`.
    pub fn set_identify_interval(&self, d: Duration) {
        self.with(|s| s.shards.identify_interval = d);
    }

    /// Accepted IDENTIFYs, in order: when, shard id, shard count (every IDENTIFY payload,
    /// accepted or not: [`identify_payloads`](Self::identify_payloads)).
    pub fn identifies(&self) -> Vec<(Instant, u32, u32)> {
        self.read(|s| s.shards.accepted.clone())
    }

    /// Each time a shard had two live sessions at once (see [`Sharding::overlaps`]).
    pub fn shard_overlaps(&self) -> Vec<String> {
        self.read(|s| s.shards.overlaps.clone())
    }

    /// IDENTIFYs answered with op 9 for coming too early in their bucket.
    pub fn refused_identifies(&self) -> usize {
        self.read(|s| s.shards.refused)
    }

    /// `(shard_id, num_shards)` of every live (identified or resumed) gateway connection, sorted.
    pub fn connected_shards(&self) -> Vec<(u32, u32)> {
        self.read(|s| {
            let mut v: Vec<ShardPair> = s.gw_conns.values().map(|c| c.shard).collect();
            v.sort_unstable();
            v
        })
    }

    /// Closes the live gateway connection(s) of shard `shard_id` with `code`.
    pub async fn disconnect_shard(&self, shard_id: u32, code: u16) {
        self.with(|s| {
            for c in s.gw_conns.values().filter(|c| c.shard.0 == shard_id) {
                let _ = c.tx.send(GwOut::Close(code));
            }
        });
    }

    /// Adds a guild whose id lands on `shard_id` of `num_shards`, built like the default
    /// one: a voice and a text channel, and a human member in the voice channel (so the bot
    /// can play there). GUILD_CREATE goes to the owning shard if it is connected.
    pub async fn add_guild_on_shard(&self, shard_id: u32, num_shards: u32) -> ShardGuild {
        assert!(
            shard_id < num_shards,
            "emulator: shard {shard_id} does not exist among {num_shards}"
        );
        let (id, voice, text, member) = self.with(|s| {
            let id = s.snowflake_on_shard(shard_id, num_shards);
            (id, s.snowflake(), s.snowflake(), s.snowflake())
        });
        self.add_guild(id, &format!("Shard {shard_id}/{num_shards} guild"));
        self.add_voice_channel(id, voice, "Music");
        self.add_text_channel(id, text, "general");
        self.add_member(id, member, &format!("listener-{shard_id}"), false, false);
        self.user_join_voice(id, member, voice).await;
        ShardGuild {
            id,
            voice,
            text,
            member,
        }
    }
}
