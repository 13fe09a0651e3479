//! The emulated Discord world and everything the emulator records, behind one mutex.
//! Every mutation goes through [`Shared::with`], which wakes all `wait_*` callers.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Notify};

use super::payloads;

pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Intent bits the emulator filters dispatches by (like Discord does).
pub const INTENT_GUILDS: u64 = 1 << 0;
pub const INTENT_GUILD_MEMBERS: u64 = 1 << 1;
pub const INTENT_GUILD_VOICE_STATES: u64 = 1 << 7;

pub(crate) fn debug_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("EMULATOR_DEBUG").is_ok_and(|v| !v.is_empty() && v != "0"))
}

macro_rules! emu_debug {
    ($($arg:tt)*) => {
        if $crate::support::state::debug_enabled() {
            eprintln!("[emulator] {}", format!($($arg)*));
        }
    };
}
pub(crate) use emu_debug;

// ---------------------------------------------------------------------------------------------
// Public record types
// ---------------------------------------------------------------------------------------------

/// Where a [`Reply`] came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplySource {
    /// `POST /channels/{id}/messages`.
    ChannelMessage,
    /// `PATCH /channels/{c}/messages/{m}` (the reply holds the message after the edit).
    ChannelEdit,
    /// Interaction callback with a message (type 4, or type 7 = update of the component's message).
    Callback(u8),
    /// `POST /webhooks/{app}/{token}`.
    Followup,
    /// `PATCH /webhooks/{app}/{token}/messages/@original`.
    EditOriginal,
    /// `PATCH /webhooks/{app}/{token}/messages/{id}`.
    EditFollowup,
}

/// A message the bot sent or edited, as the emulator stored it.
#[derive(Clone, Debug)]
pub struct Reply {
    pub id: u64,
    pub channel_id: u64,
    pub content: String,
    pub embeds: Vec<Value>,
    pub components: Vec<Value>,
    /// `flags & 64`.
    pub ephemeral: bool,
    /// The full Message JSON the emulator returned to the bot (after the edit, for edits).
    pub raw: Value,
    /// How the bot produced it (addition to the brief's API).
    pub source: ReplySource,
}

impl Reply {
    pub fn from_message(msg: &Value, source: ReplySource) -> Reply {
        let arr = |k: &str| msg[k].as_array().cloned().unwrap_or_default();
        Reply {
            id: payloads::id_of(&msg["id"]).unwrap_or(0),
            channel_id: payloads::id_of(&msg["channel_id"]).unwrap_or(0),
            content: msg["content"].as_str().unwrap_or("").to_string(),
            embeds: arr("embeds"),
            components: arr("components"),
            ephemeral: msg["flags"].as_u64().unwrap_or(0) & 64 != 0,
            raw: msg.clone(),
            source,
        }
    }

    /// A progress line of a long `/play` ("Finding the tracks… 2 of 5", "Loading the
    /// tracks… 0 of 3"), shown in the reply while the lookups run: not the answer.
    pub fn is_progress(&self) -> bool {
        let t = self.text();
        let Some((head, count)) = t.split_once("… ") else {
            return false;
        };
        matches!(head, "Finding the tracks" | "Loading the tracks")
            && count
                .split_once(" of ")
                .is_some_and(|(a, b)| a.parse::<usize>().is_ok() && b.parse::<usize>().is_ok())
    }

    /// Content plus every embed's title, description, field names/values, footer text and author
    /// name, joined by `\n` (empty parts skipped).
    pub fn text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut push = |s: Option<&str>| {
            if let Some(s) = s {
                if !s.is_empty() {
                    parts.push(s.to_string());
                }
            }
        };
        push(Some(&self.content));
        for e in &self.embeds {
            push(e["author"]["name"].as_str());
            push(e["title"].as_str());
            push(e["description"].as_str());
            if let Some(fields) = e["fields"].as_array() {
                for f in fields {
                    push(f["name"].as_str());
                    push(f["value"].as_str());
                }
            }
            push(e["footer"]["text"].as_str());
        }
        parts.join("\n")
    }

    /// `custom_id`s of every button/select in the message's components.
    pub fn custom_ids(&self) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(v: &Value, out: &mut Vec<String>) {
            if let Some(id) = v["custom_id"].as_str() {
                out.push(id.to_string());
            }
            if let Some(cs) = v["components"].as_array() {
                for c in cs {
                    walk(c, out);
                }
            }
        }
        for c in &self.components {
            walk(c, &mut out);
        }
        out
    }
}

/// One received RTP packet, decrypted and Opus-decoded.
#[derive(Clone, Debug)]
pub struct AudioFrame {
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// 48 kHz stereo interleaved.
    pub pcm: Vec<f32>,
    pub opus_len: usize,
    pub at: Instant,
    /// It arrived DAVE-encrypted and a simulated listener decrypted it (false: plain Opus,
    /// e.g. before the DAVE group exists, with DAVE off, or the Opus silence frame).
    pub dave: bool,
}

// ---------------------------------------------------------------------------------------------
// World
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct ChannelRec {
    pub id: u64,
    pub name: String,
    /// 0 = text, 2 = voice.
    pub kind: u8,
    pub overwrites: Vec<super::perms::Overwrite>,
    /// Voice channels: members allowed at once (0: no limit).
    pub user_limit: u32,
}

#[derive(Clone, Debug)]
pub struct MemberRec {
    pub user_id: u64,
    pub name: String,
    pub is_bot: bool,
    pub is_admin: bool,
    /// Overrides the computed interaction `member.permissions`.
    pub permissions: Option<u64>,
    /// Extra role ids in `member.roles` (besides the admin and bot roles).
    pub roles: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct VoiceStateRec {
    pub channel_id: u64,
    pub session_id: String,
    pub self_mute: bool,
    pub self_deaf: bool,
}

#[derive(Clone, Debug)]
pub struct GuildState {
    pub id: u64,
    pub name: String,
    pub channels: Vec<ChannelRec>,
    pub members: Vec<MemberRec>,
    pub voice_states: BTreeMap<u64, VoiceStateRec>,
    pub joined_at: String,
    /// The bot's permissions (`app_permissions`, and the bot role's permissions).
    pub bot_permissions: u64,
}

impl GuildState {
    pub fn member(&self, user_id: u64) -> Option<&MemberRec> {
        self.members.iter().find(|m| m.user_id == user_id)
    }
    pub fn channel(&self, channel_id: u64) -> Option<&ChannelRec> {
        self.channels.iter().find(|c| c.id == channel_id)
    }
}

pub enum GwOut {
    Frame(Value),
    Close(u16),
}

pub struct GatewayConn {
    pub conn_id: u64,
    pub tx: mpsc::UnboundedSender<GwOut>,
    pub session_id: String,
    pub intents: u64,
    /// `(shard_id, num_shards)` from IDENTIFY (`(0, 1)` without `shard`).
    pub shard: super::shards::ShardPair,
}

pub enum VoiceCmd {
    Close(u16),
    /// DAVE frames to send as they are (see `dave::Out`).
    Dave(Vec<super::dave::Out>),
}

pub struct VoiceConnHandle {
    pub conn_id: u64,
    pub tx: mpsc::UnboundedSender<VoiceCmd>,
}

/// Per voice-session keys, shared with the UDP receiver.
#[derive(Clone, Debug)]
pub struct VoiceSessionInfo {
    pub guild_id: u64,
    pub ssrc: u32,
    pub key: [u8; 32],
    pub mode: Option<String>,
    pub session_id: String,
    pub user_id: u64,
    pub invalidated: bool,
    /// The session's DAVE call (ssrc → the listeners that decrypt its frames).
    pub dave: Option<super::dave::DaveHandle>,
}

#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub json: Value,
    pub channel_id: u64,
    pub deleted: bool,
    /// Deleted by someone else (a member, a moderator: [`super::Emulator::delete_message`]):
    /// the bot cannot know until Discord answers its next request about it with 404
    /// Unknown Message, so that request is no protocol error.
    pub deleted_by_others: bool,
}

#[derive(Clone, Debug)]
pub struct InteractionRec {
    pub id: u64,
    pub token: String,
    /// 2 command, 3 component, 4 autocomplete.
    pub kind: u8,
    pub guild_id: u64,
    pub channel_id: u64,
    pub user_id: u64,
    pub name: String,
    /// The component's message, for kind 3.
    pub message_id: Option<u64>,
    pub created: Instant,
    pub callback_type: Option<u8>,
    pub callback_data: Option<Value>,
    pub callback_at: Option<Instant>,
    pub original_id: Option<u64>,
    pub defer_ephemeral: bool,
    pub first_followup_done: bool,
    pub followup_ids: Vec<u64>,
    pub replies: Vec<Reply>,
    pub choices: Option<Vec<Value>>,
    pub errors: Vec<String>,
}

pub struct State {
    pub bot_user_id: u64,
    pub app_id: u64,
    /// Owner of the application in `GET /oauth2/applications/@me` (poise `owners`).
    pub app_owner: Option<(u64, String)>,
    pub token: String,
    pub gateway_url: String,
    /// New gateway connections are closed before the websocket handshake (an outage).
    pub gateway_refused: bool,
    pub voice_endpoint: String,
    pub guilds: BTreeMap<u64, GuildState>,

    // gateway
    /// Live (identified or resumed) connections by id, at most one per shard pair; see
    /// `shards.rs` for which of them gets which dispatch.
    pub gw_conns: BTreeMap<u64, GatewayConn>,
    pub shards: super::shards::Sharding,
    /// session_id -> last sequence number sent.
    pub gw_sessions: HashMap<String, u64>,
    /// session_id -> intents given at IDENTIFY (for RESUME).
    pub gw_session_intents: HashMap<String, u64>,
    pub gateway_connections: usize,
    pub gateway_resumes: usize,
    pub identifies: Vec<Value>,
    /// Number of READY dispatches sent.
    pub readies: usize,
    pub dispatched: Vec<Value>,
    pub dropped_dispatches: Vec<String>,
    /// Heartbeats, sessions waiting to resume, replay (`gw_strict.rs`).
    pub gw_strict: super::gw_strict::GwStrict,

    // commands
    pub registrations: Vec<(Option<u64>, Vec<Value>)>,
    pub command_ids: HashMap<String, u64>,

    // REST
    pub requests: Vec<String>,
    pub unhandled: Vec<String>,

    // messages
    /// Channels that existed and are gone (deleted, or in a guild the bot was removed
    /// from), with the error Discord answers a post there. A post racing a deletion is not
    /// a bot bug; a post to a channel that never existed is.
    pub gone_channels: HashMap<u64, (u16, u64, &'static str)>,
    pub rate_limits: super::ratelimit::RateLimits,
    pub outages: super::outage::Outages,
    pub msgs: HashMap<u64, StoredMessage>,
    pub channel_posts: BTreeMap<u64, Vec<u64>>,
    /// `(channel, nonce)` of posts sent with `enforce_nonce`, and the message each made: a
    /// repeat within Discord's few minutes returns that message instead of a new one.
    pub nonces: HashMap<(u64, String), u64>,
    pub channel_all: BTreeMap<u64, Vec<u64>>,
    pub channel_replies: BTreeMap<u64, Vec<Reply>>,

    // interactions
    pub interactions: HashMap<u64, InteractionRec>,
    pub interaction_by_token: HashMap<String, u64>,
    pub interaction_deadline: Duration,
    /// How long an interaction's token works for follow-ups and edits (Discord: 15 min).
    pub interaction_token_lifetime: Duration,
    /// Follow-ups and edits refused because their token had expired (401 50027): not a
    /// protocol error (a slow answer cannot always be helped), but a bot should stop.
    pub expired_token_uses: Vec<String>,

    // voice
    pub bot_voice: HashMap<u64, Option<u64>>,
    pub bot_self_mute_deaf: HashMap<u64, (bool, bool)>,
    pub op4s: HashMap<u64, Vec<Option<u64>>>,
    pub op4_raw: Vec<Value>,
    pub voice_server_tokens: HashMap<u64, String>,
    pub voice_sessions: HashMap<u32, VoiceSessionInfo>,
    pub voice_current: HashMap<u64, VoiceConnHandle>,
    pub voice_identifies: HashMap<u64, usize>,
    pub voice_resumes: HashMap<u64, usize>,
    pub voice_log: Vec<String>,
    pub audio: HashMap<u64, Vec<AudioFrame>>,
    /// Non-silent frames per guild since the last clear (kept so waiters are O(1)).
    pub audio_loud: HashMap<u64, usize>,
    pub voice_errors: Vec<String>,
    /// DAVE for new voice sessions (default on; off = `dave_protocol_version: 0`).
    pub dave_enabled: bool,
    /// DAVE counters and group state per guild.
    pub dave_stats: HashMap<u64, super::dave::DaveStats>,
    /// The DAVE call of each guild's current voice session.
    pub dave_calls: HashMap<u64, super::dave::DaveHandle>,
    /// Opus-decode and record received frames (default). Off: frames are only counted in
    /// `dave_stats` (for load benchmarks: no decoding cost, no memory growth).
    pub decode_audio: bool,
    /// Version checks, IDENTIFY checks, heartbeat enforcement, the UDP blackhole.
    pub voice_strict: super::voice_strict::VoiceStrict,

    pub protocol_errors: Vec<String>,
    /// Requests refused with 403 50013 (see `perms.rs`).
    pub permission_refusals: Vec<String>,
    next_ssrc: u32,
    last_snowflake: u64,
    next_conn: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(DISCORD_EPOCH_MS + 1)
}

/// RFC 3339 timestamp (UTC) for a unix time in milliseconds.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}000+00:00")
}

pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

impl State {
    pub fn new(bot_user_id: u64, app_id: u64, token: String) -> State {
        State {
            gone_channels: HashMap::new(),
            rate_limits: Default::default(),
            outages: Default::default(),
            bot_user_id,
            app_id,
            app_owner: None,
            token,
            gateway_url: String::new(),
            gateway_refused: false,
            voice_endpoint: String::new(),
            guilds: BTreeMap::new(),
            gw_conns: BTreeMap::new(),
            shards: Default::default(),
            gw_sessions: HashMap::new(),
            gw_strict: Default::default(),
            gw_session_intents: HashMap::new(),
            gateway_connections: 0,
            gateway_resumes: 0,
            identifies: Vec::new(),
            readies: 0,
            dispatched: Vec::new(),
            dropped_dispatches: Vec::new(),
            registrations: Vec::new(),
            command_ids: HashMap::new(),
            requests: Vec::new(),
            unhandled: Vec::new(),
            msgs: HashMap::new(),
            channel_posts: BTreeMap::new(),
            nonces: HashMap::new(),
            channel_all: BTreeMap::new(),
            channel_replies: BTreeMap::new(),
            interactions: HashMap::new(),
            interaction_by_token: HashMap::new(),
            interaction_deadline: Duration::from_secs(3),
            interaction_token_lifetime: Duration::from_secs(15 * 60),
            expired_token_uses: Vec::new(),
            bot_voice: HashMap::new(),
            bot_self_mute_deaf: HashMap::new(),
            op4s: HashMap::new(),
            op4_raw: Vec::new(),
            voice_server_tokens: HashMap::new(),
            voice_sessions: HashMap::new(),
            voice_current: HashMap::new(),
            voice_identifies: HashMap::new(),
            voice_resumes: HashMap::new(),
            voice_log: Vec::new(),
            audio: HashMap::new(),
            audio_loud: HashMap::new(),
            voice_errors: Vec::new(),
            dave_enabled: true,
            dave_stats: HashMap::new(),
            dave_calls: HashMap::new(),
            decode_audio: true,
            voice_strict: Default::default(),
            protocol_errors: Vec::new(),
            permission_refusals: Vec::new(),
            next_ssrc: 10_000 + (rand::random::<u16>() as u32),
            last_snowflake: 0,
            next_conn: 1,
        }
    }

    /// A fresh, strictly increasing snowflake with the current timestamp.
    pub fn snowflake(&mut self) -> u64 {
        let ts = now_ms().saturating_sub(DISCORD_EPOCH_MS);
        let candidate = (ts << 22) | 1;
        let id = candidate.max(self.last_snowflake + 1);
        self.last_snowflake = id;
        id
    }

    /// Later snowflakes are greater than `id` (one made by hand, e.g. to land on a shard).
    pub fn bump_snowflake(&mut self, id: u64) {
        self.last_snowflake = self.last_snowflake.max(id);
    }

    pub fn next_ssrc(&mut self) -> u32 {
        self.next_ssrc += 1;
        self.next_ssrc
    }

    pub fn next_conn_id(&mut self) -> u64 {
        self.next_conn += 1;
        self.next_conn
    }

    pub fn protocol_error(&mut self, msg: String) {
        emu_debug!("PROTOCOL ERROR: {msg}");
        self.protocol_errors.push(msg);
    }

    pub fn guild_of_channel(&self, channel_id: u64) -> Option<u64> {
        self.guilds
            .values()
            .find(|g| g.channels.iter().any(|c| c.id == channel_id))
            .map(|g| g.id)
    }

    /// Stores a new message and returns its JSON.
    pub fn create_message(
        &mut self,
        channel_id: u64,
        payload: &Value,
        flags: u64,
        kind: u8,
        webhook: bool,
    ) -> Value {
        let id = self.snowflake();
        let guild_id = self.guild_of_channel(channel_id);
        let msg = payloads::message_json(
            self, id, channel_id, guild_id, payload, flags, kind, webhook,
        );
        self.msgs.insert(
            id,
            StoredMessage {
                json: msg.clone(),
                channel_id,
                deleted: false,
                deleted_by_others: false,
            },
        );
        if flags & 64 == 0 {
            self.channel_all.entry(channel_id).or_default().push(id);
        }
        msg
    }

    /// Applies an edit payload to a stored message and returns the new JSON.
    pub fn edit_message(&mut self, id: u64, payload: &Value) -> Option<Value> {
        let m = self.msgs.get_mut(&id)?;
        if m.deleted {
            return None;
        }
        payloads::apply_edit(&mut m.json, payload);
        Some(m.json.clone())
    }

    pub fn reply_for(&self, id: u64, source: ReplySource) -> Option<Reply> {
        self.msgs
            .get(&id)
            .map(|m| Reply::from_message(&m.json, source))
    }

    /// Messages POSTed to a channel, latest version of each, deleted ones excluded.
    pub fn channel_messages(&self, channel_id: u64) -> Vec<Reply> {
        self.channel_posts
            .get(&channel_id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.msgs.get(id))
                    .filter(|m| !m.deleted)
                    .map(|m| Reply::from_message(&m.json, ReplySource::ChannelMessage))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every non-ephemeral message visible in a channel (channel posts and interaction replies).
    pub fn all_channel_messages(&self, channel_id: u64) -> Vec<Reply> {
        self.channel_all
            .get(&channel_id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.msgs.get(id))
                    .filter(|m| !m.deleted && m.json["flags"].as_u64().unwrap_or(0) & 128 == 0)
                    .map(|m| Reply::from_message(&m.json, ReplySource::ChannelMessage))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn command_id(&mut self, name: &str) -> u64 {
        if let Some(id) = self.command_ids.get(name) {
            return *id;
        }
        let id = self.snowflake();
        self.command_ids.insert(name.to_string(), id);
        id
    }

    /// Names registered for a guild: the last global registration plus the last registration
    /// for that guild.
    pub fn registered_for_guild(&self, guild_id: u64) -> Vec<String> {
        let mut names = Vec::new();
        if let Some((_, cmds)) = self.registrations.iter().rev().find(|(g, _)| g.is_none()) {
            names.extend(
                cmds.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from)),
            );
        }
        if let Some((_, cmds)) = self
            .registrations
            .iter()
            .rev()
            .find(|(g, _)| *g == Some(guild_id))
        {
            names.extend(
                cmds.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from)),
            );
        }
        names
    }

    /// Short human summary used in timeout panics.
    pub fn summary(&self) -> String {
        let tail = |v: &Vec<String>, n: usize| -> Vec<String> {
            v.iter().rev().take(n).rev().cloned().collect()
        };
        format!(
            "gateway connections: {}, identifies: {}, READY sent: {}, live shards: {:?}\n\
             registrations: {:?}\nlast requests: {:#?}\nunhandled requests: {:#?}\n\
             dropped dispatches: {:?}\nprotocol errors: {:#?}\nvoice errors: {:?}\nvoice log (tail): {:#?}\n\
             DAVE: {:?}",
            self.gateway_connections,
            self.identifies.len(),
            self.readies,
            self.gw_conns.values().map(|c| c.shard).collect::<Vec<_>>(),
            self.registrations
                .iter()
                .map(|(g, c)| (g, c.iter().filter_map(|c| c["name"].as_str()).collect::<Vec<_>>()))
                .collect::<Vec<_>>(),
            tail(&self.requests, 15),
            self.unhandled,
            tail(&self.dropped_dispatches, 10),
            self.protocol_errors,
            tail(&self.voice_errors, 10),
            tail(&self.voice_log, 15),
            self.dave_stats
                .iter()
                .map(|(g, d)| format!(
                    "guild {g}: v{} bot_in_group {} listeners {:?} epoch {} pending {:?} \
                     frames enc/dec/plain/fail {}/{}/{}/{}",
                    d.protocol_version, d.bot_in_group, d.listeners, d.epoch, d.pending,
                    d.frames_encrypted, d.frames_decrypted, d.frames_plain, d.decrypt_failures
                ))
                .collect::<Vec<_>>(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Shared handle
// ---------------------------------------------------------------------------------------------

pub struct Shared {
    state: Mutex<State>,
    pub notify: Notify,
}

impl Shared {
    pub fn new(state: State) -> Shared {
        Shared {
            state: Mutex::new(state),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Mutates the state and wakes every waiter.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.notify.notify_waiters();
        r
    }

    /// Reads the state (no wake-up).
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Polls `check` on every state change (and at least every 100 ms) until it returns `Some`
    /// or `timeout` elapses (then `None`). Always bounded.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = self.read(&mut check) {
                return Some(v);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return None;
            }
            let wake = deadline.min(now + Duration::from_millis(100));
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }
}
