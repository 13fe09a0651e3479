//! Discord emulator for end-to-end tests of the bot: REST (plain HTTP), gateway (`ws://`) and
//! voice (`wss://` + UDP) on 127.0.0.1, plus audio analysis and fixtures.
//!
//! Use from an integration test with `mod support;`. See `tests/emulator.rs` for examples
//! (including a minimal real serenity + poise + songbird bot driven end to end).
//!
//! Things a bot under test must know:
//! - REST: `HttpBuilder::new(emu.bot_token()).proxy(emu.api_base()).ratelimiter_disabled(true)`.
//!   Every REST call must carry `Authorization: Bot <token>` (401 otherwise).
//! - The bot user id and application id are both [`BOT_USER_ID`]; the token is
//!   `base64(id).XXXXXX.<38 chars>`.
//! - Songbird: use a per-runtime mixer scheduler ([`songbird_config`]), never the default one,
//!   or the second `#[tokio::test]` in a binary breaks. Prefer
//!   `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` for bot tests.
//! - Dispatches are filtered by the IDENTIFY intents (like Discord): no GUILD_VOICE_STATES, no
//!   VOICE_STATE_UPDATE. Without GUILD_MEMBERS, GUILD_CREATE lists only the bot and users in voice.
//! - Interactions: the first callback must come within 3 s ([`Emulator::set_interaction_deadline`]),
//!   only once, with a body Discord accepts (content ≤ 2000, embed/component limits, ≤ 25
//!   autocomplete choices); otherwise the bot gets Discord's error and
//!   [`Emulator::protocol_errors`] says why. `command()` panics for unregistered commands.
//!   Follow-ups and edits work for 15 minutes ([`Emulator::set_interaction_token_lifetime`]),
//!   then meet 401 50027 ([`Emulator::expired_token_uses`]).
//! - REST: Discord's global limit (50 requests a second, interactions excepted) is enforced;
//!   [`Emulator::limit_route`], [`Emulator::force_rate_limit`] and
//!   [`Emulator::force_global_rate_limit`] add 429s, [`Emulator::fail_route`] a burst of 5xx.
//! - Admin members get every permission bit (Discord's computed permissions), others
//!   [`payloads::MEMBER_PERMISSIONS`]; the bot gets [`payloads::BOT_PERMISSIONS`].
//! - Voice speaks DAVE (E2EE v1) by default: simulated listeners (the humans in the bot's voice
//!   channel) are in the MLS group and decrypt every frame; `audio()` is what they decrypted
//!   (see [`dave`], [`Emulator::dave_stats`], [`Emulator::set_dave`] for transport-only v0).
//! - The voice server checks what Discord checks ([`voice_strict`]): `?v=` 4-8 (else HTTP 400
//!   and a protocol error), IDENTIFY's token and session against the last VOICE_SERVER_UPDATE
//!   and the bot's voice state (else close 4004 / 4006), and heartbeats (else 4009); test
//!   switches withhold heartbeat ACKs and blackhole UDP ([`Emulator::blackhole_udp`]).
//! - Sharding follows Discord ([`shards`]): IDENTIFY's `shard` is checked (4010, 4011 over
//!   [`Emulator::set_guilds_per_shard`]), one IDENTIFY per bucket per 5 s (else op 9;
//!   [`Emulator::set_identify_interval`]), and each shard gets only its guilds and their events.
//! - Set `EMULATOR_DEBUG=1` to log every request, dispatch and voice frame to stderr.
#![allow(dead_code, unused_imports, unused_macros)]
// tungstenite fixes the handshake callback's error type; interaction builders mirror Discord's fields.
#![allow(clippy::result_large_err, clippy::too_many_arguments)]

pub mod audio;
pub mod command_rules;
pub mod dave;
pub mod egress;
pub mod fixtures;
pub mod gateway;
pub mod gw_strict;
pub mod http;
pub mod lrclib;
pub mod media_faults;
pub mod outage;
pub mod partition;
pub mod payloads;
pub mod perms;
pub mod postgres;
pub mod ratelimit;
pub mod rest;
pub mod shards;
pub mod state;
pub mod streaming;
/// The private PostgreSQL server, the same file the unit tests use.
#[path = "../../src/db/testpg.rs"]
pub mod testpg;
pub mod tls;
pub mod voice;
pub mod voice_strict;
pub mod world;

pub use audio::{
    assert_contiguous, dominant_frequency, heard_again, longest_silence, mono, non_silent, rms,
    synth_frames, tone_sequence, tone_strength, Resumed,
};
pub use dave::{DaveStats, PeerStats};
pub use fixtures::{
    packet_sizes, write_stereo_wav, write_tone_ffmpeg, write_tone_mp3, write_tone_ogg,
    write_tone_pair_wav, write_tone_wav, write_tone_webm, write_two_tone_wav, FileRequest,
    FileServer,
};
pub use media_faults::Fault;
pub use shards::{guild_on_shard, ShardGuild};
pub use state::{AudioFrame, Reply, ReplySource};
pub use tls::install_test_ca;

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

use state::{random_token, InteractionRec, Shared, State};

/// The emulated bot user id (also the application id, as for modern Discord apps).
pub const BOT_USER_ID: u64 = 1_300_000_000_000_000_001;

/// A songbird `Config` with its own mixer `Scheduler`, created on the current tokio runtime.
///
/// songbird's default scheduler is a process-wide static whose idle task is spawned on the
/// runtime that first uses it; each `#[tokio::test]` has its own runtime, so the second test in
/// a binary that uses the default gets a dead scheduler (`SendError` panic in
/// `songbird::driver::scheduler`). Every test (and every in-process bot) must use this instead
/// of `songbird::Config::default()`. Call it from inside the test's runtime.
pub fn songbird_config() -> songbird::Config {
    songbird::Config::default().scheduler(songbird::driver::Scheduler::new(Default::default()))
}

/// The 127.0.0.1 ports [`Emulator::start_on`] binds; 0 (the default) is any free port.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ports {
    pub rest: u16,
    pub rest_tls: u16,
    pub gateway: u16,
    pub voice: u16,
    pub voice_udp: u16,
}

/// A running Discord emulator. Cheap to clone; servers stop when the last clone is dropped.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    rest_addr: std::net::SocketAddr,
    rest_tls_addr: std::net::SocketAddr,
    gateway_addr: std::net::SocketAddr,
    voice_addr: std::net::SocketAddr,
    udp_addr: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A well-formed bot token: base64(user id) "." 6 chars "." 38 chars, all `[A-Za-z0-9_-]`.
pub fn make_token(bot_user_id: u64) -> String {
    format!(
        "{}.{}.{}",
        base64url(bot_user_id.to_string().as_bytes()),
        random_token(6),
        random_token(38)
    )
}

impl Emulator {
    /// Starts REST, gateway and voice servers on ephemeral 127.0.0.1 ports (and installs the
    /// test CA so songbird trusts the voice server).
    pub async fn start() -> Emulator {
        Emulator::start_on(Ports::default())
            .await
            .expect("bind the emulator's ports")
    }

    /// [`start`](Self::start) on the given 127.0.0.1 ports (0: any free one), for the
    /// standalone emulator (`tests/independent/server.rs`), whose users may need fixed ports.
    pub async fn start_on(ports: Ports) -> std::io::Result<Emulator> {
        install_test_ca();
        let bind = |what: &'static str, port: u16| async move {
            TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("bind {what} on port {port}: {e}"))
            })
        };
        let rest = bind("REST", ports.rest).await?;
        let rest_tls = bind("REST over TLS", ports.rest_tls).await?;
        let rest_tls_addr = rest_tls.local_addr()?;
        let gw = bind("gateway", ports.gateway).await?;
        let voice = bind("voice", ports.voice).await?;
        let udp = Arc::new(
            UdpSocket::bind(("127.0.0.1", ports.voice_udp))
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("bind voice UDP on port {}: {e}", ports.voice_udp),
                    )
                })?,
        );
        let (rest_addr, gateway_addr, voice_addr, udp_addr) = (
            rest.local_addr().unwrap(),
            gw.local_addr().unwrap(),
            voice.local_addr().unwrap(),
            udp.local_addr().unwrap(),
        );
        let mut st = State::new(BOT_USER_ID, BOT_USER_ID, make_token(BOT_USER_ID));
        st.gateway_url = format!("ws://{gateway_addr}");
        st.voice_endpoint = format!("127.0.0.1:{}", voice_addr.port());
        let shared = Arc::new(Shared::new(st));
        let (s2, s3) = (shared.clone(), shared.clone());
        let tasks = vec![
            tokio::spawn(http::serve(
                rest,
                Arc::new(move |req| rest::handle(&s2, req)),
            )),
            tokio::spawn(http::serve_tls(
                rest_tls,
                tls::tls_acceptor(),
                Arc::new(move |req| rest::handle(&s3, req)),
            )),
            tokio::spawn(gateway::run(gw, shared.clone())),
            tokio::spawn(voice::run_ws(
                voice,
                tls::tls_acceptor(),
                shared.clone(),
                udp_addr.port(),
            )),
            tokio::spawn(voice::run_udp(udp, shared.clone())),
        ];
        Ok(Emulator {
            inner: Arc::new(Inner {
                shared,
                rest_addr,
                rest_tls_addr,
                gateway_addr,
                voice_addr,
                udp_addr,
                tasks,
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        self.inner.shared.with(f)
    }
    /// A read-only look at the whole state (the standalone emulator's control API reports
    /// from it).
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.inner.shared.read(f)
    }

    // ---------------------------------------------------------------- addresses and identity

    /// Where `https://discord.com` is served (TLS with the test certificate): the bot's
    /// `discord.rest_address`, which keeps serenity's rate limiter on.
    pub fn rest_tls_addr(&self) -> std::net::SocketAddr {
        self.inner.rest_tls_addr
    }

    /// `http://127.0.0.1:PORT`, for `HttpBuilder::proxy(..).ratelimiter_disabled(true)`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.inner.rest_addr)
    }
    /// `ws://127.0.0.1:PORT` (what `GET /gateway` returns).
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.inner.gateway_addr)
    }
    /// `127.0.0.1:PORT`, the endpoint sent in VOICE_SERVER_UPDATE.
    pub fn voice_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.inner.voice_addr.port())
    }
    pub fn voice_udp_addr(&self) -> std::net::SocketAddr {
        self.inner.udp_addr
    }
    pub fn bot_token(&self) -> String {
        self.read(|s| s.token.clone())
    }
    pub fn bot_user_id(&self) -> u64 {
        BOT_USER_ID
    }
    pub fn application_id(&self) -> u64 {
        BOT_USER_ID
    }

    // ---------------------------------------------------------------- world setup

    /// Adds a guild (the bot is a member). Dispatches GUILD_CREATE if the bot is connected.
    pub fn add_guild(&self, guild_id: u64, name: &str) {
        self.with(|s| {
            assert!(
                !s.guilds.contains_key(&guild_id),
                "emulator: guild {guild_id} already added"
            );
            let bot = s.bot_user_id;
            s.guilds.insert(
                guild_id,
                state::GuildState {
                    id: guild_id,
                    name: name.to_string(),
                    channels: Vec::new(),
                    members: vec![state::MemberRec {
                        user_id: bot,
                        name: "encore-test-bot".into(),
                        is_bot: true,
                        is_admin: false,
                        permissions: None,
                        roles: Vec::new(),
                    }],
                    voice_states: Default::default(),
                    joined_at: state::iso8601(state::now_ms()),
                    bot_permissions: payloads::BOT_PERMISSIONS,
                },
            );
            if !s.gw_conns.is_empty() {
                s.dispatch_guild_create(guild_id);
            }
        });
    }

    fn add_channel(&self, guild_id: u64, channel_id: u64, name: &str, kind: u8) {
        self.with(|s| {
            assert!(
                s.guild_of_channel(channel_id).is_none(),
                "emulator: channel id {channel_id} already exists"
            );
            assert!(
                channel_id != guild_id,
                "emulator: channel id {channel_id} equals its guild id"
            );
            let g = s
                .guilds
                .get_mut(&guild_id)
                .unwrap_or_else(|| panic!("emulator: unknown guild {guild_id} (add_guild first)"));
            g.channels.push(state::ChannelRec {
                id: channel_id,
                name: name.to_string(),
                kind,
                overwrites: Vec::new(),
                user_limit: 0,
            });
            let ev = payloads::channel_event_json(g, channel_id).unwrap();
            if !s.gw_conns.is_empty() {
                s.dispatch("CHANNEL_CREATE", ev);
            }
        });
    }

    pub fn add_voice_channel(&self, guild_id: u64, channel_id: u64, name: &str) {
        self.add_channel(guild_id, channel_id, name, 2);
    }

    pub fn add_text_channel(&self, guild_id: u64, channel_id: u64, name: &str) {
        self.add_channel(guild_id, channel_id, name, 0);
    }

    /// Adds a member. Admins get every permission bit in interactions (as Discord computes it);
    /// others get [`payloads::MEMBER_PERMISSIONS`].
    pub fn add_member(
        &self,
        guild_id: u64,
        user_id: u64,
        name: &str,
        is_bot: bool,
        is_admin: bool,
    ) {
        self.with(|s| {
            assert!(
                user_id != s.bot_user_id,
                "emulator: {user_id} is the bot's own id"
            );
            let bot = s.bot_user_id;
            let g = s
                .guilds
                .get_mut(&guild_id)
                .unwrap_or_else(|| panic!("emulator: unknown guild {guild_id} (add_guild first)"));
            assert!(
                g.member(user_id).is_none(),
                "emulator: user {user_id} already in guild {guild_id}"
            );
            let m = state::MemberRec {
                user_id,
                name: name.to_string(),
                is_bot,
                is_admin,
                permissions: None,
                roles: Vec::new(),
            };
            let ev = payloads::guild_member_add_json(g, &m, bot);
            g.members.push(m);
            if !s.gw_conns.is_empty() {
                s.dispatch("GUILD_MEMBER_ADD", ev);
            }
        });
    }

    /// Overrides a member's `member.permissions` in interactions.
    pub fn set_member_permissions(&self, guild_id: u64, user_id: u64, permissions: u64) {
        self.with(|s| {
            let g = s.guilds.get_mut(&guild_id).expect("unknown guild");
            let m = g
                .members
                .iter_mut()
                .find(|m| m.user_id == user_id)
                .expect("unknown member");
            m.permissions = Some(permissions);
        });
    }

    /// Sets a member's extra role ids (sent in `member.roles` of interactions and member
    /// payloads; the admin role of admins is kept).
    pub fn set_member_roles(&self, guild_id: u64, user_id: u64, roles: &[u64]) {
        self.with(|s| {
            let g = s.guilds.get_mut(&guild_id).expect("unknown guild");
            let m = g
                .members
                .iter_mut()
                .find(|m| m.user_id == user_id)
                .expect("unknown member");
            m.roles = roles.to_vec();
        });
    }

    /// Sets the bot's permissions in a guild (`app_permissions` and the bot role).
    pub fn set_bot_permissions(&self, guild_id: u64, permissions: u64) {
        self.with(|s| {
            s.guilds
                .get_mut(&guild_id)
                .expect("unknown guild")
                .bot_permissions = permissions
        });
    }

    /// Makes `user_id` the application owner in `GET /oauth2/applications/@me` (poise reads its
    /// `owners` from there, for `owners_only` commands).
    pub fn set_app_owner(&self, user_id: u64, name: &str) {
        self.with(|s| s.app_owner = Some((user_id, name.to_string())));
    }

    /// Time the bot has to answer an interaction callback (Discord: 3 s). Later callbacks get
    /// 404 Unknown interaction and a protocol error is recorded.
    pub fn set_interaction_deadline(&self, d: Duration) {
        self.with(|s| s.interaction_deadline = d);
    }
    /// How long interaction tokens work for follow-ups and edits (Discord: 15 minutes);
    /// past it they are answered 401 50027 Invalid Webhook Token.
    pub fn set_interaction_token_lifetime(&self, d: Duration) {
        self.with(|s| s.interaction_token_lifetime = d);
    }
    /// Follow-ups and edits that came after their token expired.
    pub fn expired_token_uses(&self) -> Vec<String> {
        self.read(|s| s.expired_token_uses.clone())
    }

    pub async fn user_join_voice(&self, guild_id: u64, user_id: u64, channel_id: u64) {
        self.with(|s| gateway::set_user_voice(s, guild_id, user_id, Some(channel_id)));
    }

    pub async fn user_leave_voice(&self, guild_id: u64, user_id: u64) {
        self.with(|s| gateway::set_user_voice(s, guild_id, user_id, None));
    }

    /// Deletes a channel: everyone in it (the bot too) gets a VOICE_STATE_UPDATE with
    /// `channel_id: null`, then CHANNEL_DELETE; the bot's voice websocket is closed with 4014.
    pub async fn delete_channel(&self, guild_id: u64, channel_id: u64) {
        let closed = self.with(|s| {
            let bot = s.bot_user_id;
            let g = s
                .guilds
                .get(&guild_id)
                .unwrap_or_else(|| panic!("emulator: unknown guild {guild_id}"));
            let ev = payloads::channel_event_json(g, channel_id).unwrap_or_else(|| {
                panic!("emulator: unknown channel {channel_id} in guild {guild_id}")
            });
            let in_channel: Vec<u64> = g
                .voice_states
                .iter()
                .filter(|(_, v)| v.channel_id == channel_id)
                .map(|(u, _)| *u)
                .collect();
            let mut bot_was_in = false;
            for u in in_channel {
                if u == bot {
                    bot_was_in = true;
                    let (m, d) = s
                        .bot_self_mute_deaf
                        .get(&guild_id)
                        .copied()
                        .unwrap_or_default();
                    gateway::set_bot_voice(s, guild_id, None, m, d, false);
                } else {
                    gateway::set_user_voice(s, guild_id, u, None);
                }
            }
            s.guilds
                .get_mut(&guild_id)
                .unwrap()
                .channels
                .retain(|c| c.id != channel_id);
            s.gone_channels
                .insert(channel_id, (404, 10003, "Unknown Channel"));
            s.dispatch("CHANNEL_DELETE", ev);
            bot_was_in && gateway::close_voice(s, guild_id, 4014)
        });
        if closed {
            self.wait_voice_closed(guild_id).await;
        }
    }

    /// The bot is removed from the guild: GUILD_DELETE (and its voice websocket closed with 4014).
    pub async fn remove_guild(&self, guild_id: u64) {
        let closed = self.with(|s| {
            assert!(
                s.guilds.contains_key(&guild_id),
                "emulator: unknown guild {guild_id}"
            );
            let closed = gateway::close_voice(s, guild_id, 4014);
            if let Some(g) = s.guilds.remove(&guild_id) {
                for c in &g.channels {
                    s.gone_channels.insert(c.id, (403, 50001, "Missing Access"));
                }
            }
            s.bot_voice.insert(guild_id, None);
            s.dispatch("GUILD_DELETE", payloads::guild_delete_json(guild_id));
            closed
        });
        if closed {
            self.wait_voice_closed(guild_id).await;
        }
    }

    /// A moderator moves (`Some`) or disconnects (`None`) the bot. Move: VOICE_STATE_UPDATE +
    /// VOICE_SERVER_UPDATE. Disconnect: VOICE_STATE_UPDATE with `channel_id: null`, and the voice
    /// websocket is closed with 4014 (as Discord does).
    pub async fn move_bot(&self, guild_id: u64, channel_id: Option<u64>) {
        let closed = self.with(|s| {
            let (m, d) = s
                .bot_self_mute_deaf
                .get(&guild_id)
                .copied()
                .unwrap_or_default();
            gateway::set_bot_voice(s, guild_id, channel_id, m, d, true);
            channel_id.is_none() && gateway::close_voice(s, guild_id, 4014)
        });
        if closed {
            self.wait_voice_closed(guild_id).await;
        }
    }

    // ---------------------------------------------------------------- gateway

    /// Waits until the bot identified, got READY + GUILD_CREATEs, and registered its commands.
    pub async fn wait_ready(&self, timeout: Duration) {
        let ok = self
            .shared()
            .wait_until(timeout, |s| {
                (!s.gw_conns.is_empty() && s.readies > 0 && !s.registrations.is_empty())
                    .then_some(())
            })
            .await;
        if ok.is_none() {
            let summary = self.read(|s| s.summary());
            panic!("emulator: bot not ready after {timeout:?} (needs IDENTIFY + command registration)\n{summary}");
        }
    }

    /// Names from the last command registration (global or guild).
    pub fn registered_commands(&self) -> Vec<String> {
        self.read(|s| {
            s.registrations
                .last()
                .map(|(_, c)| {
                    c.iter()
                        .filter_map(|c| c["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Every registration: (guild or None for global, the command objects the bot sent).
    pub fn command_registrations(&self) -> Vec<(Option<u64>, Vec<Value>)> {
        self.read(|s| s.registrations.clone())
    }

    /// Waits until `pred` holds (re-checked on every emulator state change and at least every
    /// 100 ms). Panics with `what` and a state summary on timeout. `pred` may call any
    /// `Emulator` getter.
    pub async fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Emulator) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared().notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if pred(self) {
                return;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let summary = self.read(|s| s.summary());
                panic!("emulator: timed out after {timeout:?} waiting for {what}\n{summary}");
            }
            let _ =
                tokio::time::timeout_at(deadline.min(now + Duration::from_millis(100)), notified)
                    .await;
        }
    }

    /// Whether a gateway connection is currently identified or resumed (any shard; see
    /// [`connected_shards`](Self::connected_shards)).
    pub fn gateway_connected(&self) -> bool {
        self.read(|s| !s.gw_conns.is_empty())
    }

    /// Number of successful gateway RESUMEs.
    pub fn gateway_resumes(&self) -> usize {
        self.read(|s| s.gateway_resumes)
    }

    /// Number of command registrations (PUTs) so far.
    pub fn registration_count(&self) -> usize {
        self.read(|s| s.registrations.len())
    }

    /// Number of gateway websocket connections accepted so far.
    pub fn gateway_connections(&self) -> usize {
        self.read(|s| s.gateway_connections)
    }

    /// The IDENTIFY payloads received (token, intents, properties...).
    pub fn identify_payloads(&self) -> Vec<Value> {
        self.read(|s| s.identifies.clone())
    }

    /// Every dispatch frame sent to the bot (`{"op":0,"t":..,"s":..,"d":..}`).
    pub fn dispatched_events(&self) -> Vec<Value> {
        self.read(|s| s.dispatched.clone())
    }

    /// Dispatches not sent (no connection, or filtered by the bot's intents).
    pub fn dropped_dispatches(&self) -> Vec<String> {
        self.read(|s| s.dropped_dispatches.clone())
    }

    /// Closes the bot's gateway websocket(s), every shard's, with `code` (e.g. 4000 →
    /// serenity resumes). One shard: [`disconnect_shard`](Self::disconnect_shard).
    pub async fn disconnect_gateway(&self, code: u16) {
        self.with(|s| {
            for c in s.gw_conns.values() {
                let _ = c.tx.send(state::GwOut::Close(code));
            }
        });
    }

    /// A gateway outage: while `refused`, every new gateway connection is closed before
    /// its websocket handshake, so a bot that lost its connection cannot get back on
    /// until this is called with `false`.
    pub fn refuse_gateway(&self, refused: bool) {
        self.with(|s| s.gateway_refused = refused);
    }

    // ---------------------------------------------------------------- REST records

    /// `"METHOD /target"` of every REST request.
    pub fn requests(&self) -> Vec<String> {
        self.read(|s| s.requests.clone())
    }
    /// Limits `method path_prefix` (the path after `/api/v10`, e.g.
    /// `/channels/123/messages`) to `limit` requests per `window`, with Discord's headers.
    pub fn limit_route(&self, method: &str, prefix: &str, limit: u32, window: Duration) {
        self.with(|s| s.rate_limits.limit(method, prefix, limit, window));
    }
    /// The next `n` requests to `method path_prefix` are answered 429 with `retry_after`.
    pub fn force_rate_limit(&self, method: &str, prefix: &str, n: u32, retry_after: Duration) {
        self.with(|s| s.rate_limits.force(method, prefix, n, retry_after));
    }
    /// The next `n` requests (interaction callbacks and webhooks excepted) meet Discord's
    /// global limit (`X-RateLimit-Global`), each told to wait `retry_after`.
    pub fn force_global_rate_limit(&self, n: u32, retry_after: Duration) {
        self.with(|s| s.rate_limits.force_global(n, retry_after));
    }
    /// The next `n` requests to `method path_prefix` fail with a server error (`status`:
    /// 500, 502 with Discord's edge's HTML page, or 503).
    pub fn fail_route(&self, method: &str, prefix: &str, n: u32, status: u16) {
        self.with(|s| s.outages.arm(method, prefix, n, status, false));
    }
    /// Like [`Emulator::fail_route`], but each request is carried out and only its answer
    /// is lost: a client that retries without a nonce does it twice.
    pub fn fail_route_after_doing_it(&self, method: &str, prefix: &str, n: u32, status: u16) {
        self.with(|s| s.outages.arm(method, prefix, n, status, true));
    }
    /// `"STATUS METHOD /path"` of every request answered with a server error.
    pub fn server_errors(&self) -> Vec<String> {
        self.read(|s| s.outages.answered.clone())
    }
    /// `"METHOD /path"` of every request answered 429 (`"global METHOD /path"` for the
    /// global limit).
    pub fn rate_limited(&self) -> Vec<String> {
        self.read(|s| s.rate_limits.answered_429.clone())
    }
    /// Requests the emulator had no route for (answered 404).
    pub fn unhandled_requests(&self) -> Vec<String> {
        self.read(|s| s.unhandled.clone())
    }
    /// Things Discord would reject or that indicate a bot bug (late callbacks, double acks,
    /// invalid message bodies, wrong tokens, join of a non-voice channel...).
    pub fn protocol_errors(&self) -> Vec<String> {
        self.read(|s| s.protocol_errors.clone())
    }
    /// Panics listing protocol errors and unhandled requests, if any.
    pub fn assert_no_protocol_errors(&self) {
        let (p, u) = self.read(|s| (s.protocol_errors.clone(), s.unhandled.clone()));
        assert!(
            p.is_empty() && u.is_empty(),
            "emulator: protocol errors: {p:#?}\nunhandled requests: {u:#?}"
        );
    }

    // ---------------------------------------------------------------- interactions

    fn new_interaction(
        &self,
        kind: u8,
        guild_id: u64,
        channel_id: u64,
        user_id: u64,
        name: &str,
        message_id: Option<u64>,
        build: impl FnOnce(&State, &InteractionRec) -> Value,
    ) -> Interaction {
        let res: Result<(u64, String), String> = self.with(|s| {
            let waiting = s
                .gw_strict
                .detached
                .values()
                .any(|d| shards::guild_on_shard(guild_id, d.shard.1) == d.shard.0);
            if s.gw_conns.is_empty() && !waiting {
                return Err(
                    "the bot is not connected to the gateway (call wait_ready first)".into(),
                );
            }
            if s.conns_owning(guild_id).is_empty() && !waiting {
                return Err(format!(
                    "no live gateway connection is on the shard of guild {guild_id} (live: {:?})",
                    s.gw_conns.values().map(|c| c.shard).collect::<Vec<_>>()
                ));
            }
            let Some(g) = s.guilds.get(&guild_id) else {
                return Err(format!("unknown guild {guild_id}"));
            };
            if g.channel(channel_id).is_none() {
                return Err(format!("channel {channel_id} is not in guild {guild_id}"));
            }
            if g.member(user_id).is_none() {
                return Err(format!(
                    "user {user_id} is not a member of guild {guild_id} (add_member first)"
                ));
            }
            let id = s.snowflake();
            let token = format!("aW50ZXJhY3Rpb246{}", random_token(120));
            let rec = InteractionRec {
                id,
                token: token.clone(),
                kind,
                guild_id,
                channel_id,
                user_id,
                name: name.to_string(),
                message_id,
                created: std::time::Instant::now(),
                callback_type: None,
                callback_data: None,
                callback_at: None,
                original_id: None,
                defer_ephemeral: false,
                first_followup_done: false,
                followup_ids: Vec::new(),
                replies: Vec::new(),
                choices: None,
                errors: Vec::new(),
            };
            let d = build(s, &rec);
            s.interactions.insert(id, rec);
            s.interaction_by_token.insert(token.clone(), id);
            s.dispatch("INTERACTION_CREATE", d);
            Ok((id, token))
        });
        match res {
            Ok((id, token)) => Interaction {
                id,
                token,
                kind,
                guild_id,
                channel_id,
                shared: self.shared().clone(),
            },
            Err(e) => {
                let summary = self.read(|s| s.summary());
                panic!("emulator: cannot send interaction /{name}: {e}\n{summary}")
            }
        }
    }

    fn check_registered(&self, guild_id: u64, name: &str) {
        let names = self.read(|s| s.registered_for_guild(guild_id));
        assert!(
            names.iter().any(|n| n == name),
            "emulator: command {name:?} is not registered for guild {guild_id} (registered: {names:?}); \
             Discord would not deliver it. Did you call wait_ready?"
        );
    }

    /// Slash command (INTERACTION_CREATE type 2). `options`: JSON array like
    /// `[{"name":"query","type":3,"value":"http://..."}]` (sub-commands: type 1 with `options`).
    pub async fn command(
        &self,
        guild_id: u64,
        channel_id: u64,
        user_id: u64,
        name: &str,
        options: Value,
    ) -> Interaction {
        self.check_registered(guild_id, name);
        self.new_interaction(2, guild_id, channel_id, user_id, name, None, |s, rec| {
            let cmd_id = s.command_ids.get(name).copied().unwrap_or(rec.id);
            payloads::command_interaction_json(s, rec, cmd_id, &options)
        })
    }

    /// Autocomplete (type 4). The last option is marked `focused` if none is.
    pub async fn autocomplete(
        &self,
        guild_id: u64,
        channel_id: u64,
        user_id: u64,
        name: &str,
        options: Value,
    ) -> Interaction {
        self.check_registered(guild_id, name);
        let mut options = options;
        payloads::ensure_focused(&mut options);
        self.new_interaction(4, guild_id, channel_id, user_id, name, None, |s, rec| {
            let cmd_id = s.command_ids.get(name).copied().unwrap_or(rec.id);
            payloads::command_interaction_json(s, rec, cmd_id, &options)
        })
    }

    /// Button press (type 3) on a message the bot sent.
    pub async fn component(&self, message: &Reply, user_id: u64, custom_id: &str) -> Interaction {
        self.component_inner(message, user_id, custom_id, None)
    }

    /// Select-menu choice (type 3 with `values`).
    pub async fn component_select(
        &self,
        message: &Reply,
        user_id: u64,
        custom_id: &str,
        values: &[&str],
    ) -> Interaction {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        self.component_inner(message, user_id, custom_id, Some(values))
    }

    fn component_inner(
        &self,
        message: &Reply,
        user_id: u64,
        custom_id: &str,
        values: Option<Vec<String>>,
    ) -> Interaction {
        let found = self.read(|s| {
            let m = s.msgs.get(&message.id).filter(|m| !m.deleted)?;
            let guild = s.guild_of_channel(m.channel_id)?;
            Some((m.json.clone(), m.channel_id, guild))
        });
        let Some((msg, channel_id, guild_id)) = found else {
            panic!(
                "emulator: message {} is unknown or deleted (component {custom_id:?})",
                message.id
            );
        };
        let current = Reply::from_message(&msg, ReplySource::ChannelMessage);
        let mut comp_type = None;
        fn find(v: &Value, id: &str, out: &mut Option<u8>) {
            if v["custom_id"].as_str() == Some(id) {
                *out = v["type"].as_u64().map(|t| t as u8);
            }
            for c in v["components"].as_array().into_iter().flatten() {
                find(c, id, out);
            }
        }
        for c in &current.components {
            find(c, custom_id, &mut comp_type);
        }
        let Some(comp_type) = comp_type else {
            panic!(
                "emulator: message {} has no component with custom_id {custom_id:?} (has {:?})",
                message.id,
                current.custom_ids()
            );
        };
        let name = format!("component:{custom_id}");
        self.new_interaction(
            3,
            guild_id,
            channel_id,
            user_id,
            &name,
            Some(message.id),
            |s, rec| {
                payloads::component_interaction_json(
                    s,
                    rec,
                    &msg,
                    custom_id,
                    comp_type,
                    values.as_deref(),
                )
            },
        )
    }

    // ---------------------------------------------------------------- messages

    /// Messages the bot POSTed to `/channels/{id}/messages` (latest version of each, deleted
    /// ones excluded), in order.
    pub fn messages(&self, channel_id: u64) -> Vec<Reply> {
        self.read(|s| s.channel_messages(channel_id))
    }

    /// Every non-ephemeral message in the channel: channel posts and interaction replies.
    pub fn all_messages(&self, channel_id: u64) -> Vec<Reply> {
        self.read(|s| s.all_channel_messages(channel_id))
    }

    /// Every POST and PATCH to the channel's messages, in order (each edit is a separate entry).
    pub fn message_history(&self, channel_id: u64) -> Vec<Reply> {
        self.read(|s| {
            s.channel_replies
                .get(&channel_id)
                .cloned()
                .unwrap_or_default()
        })
    }

    /// Someone (a member, a moderator) deletes message `id` in `channel_id`, as Discord's
    /// `DELETE /channels/{channel}/messages/{id}` by another user: it disappears, and the
    /// bot, which gets no event about it without the message intents, hears of it as 404
    /// Unknown Message (code 10008) on its next edit. Panics if there is no such message.
    pub fn delete_message(&self, channel_id: u64, id: u64) {
        self.with(|s| {
            let m = s
                .msgs
                .get_mut(&id)
                .filter(|m| m.channel_id == channel_id && !m.deleted)
                .unwrap_or_else(|| panic!("emulator: no message {id} in channel {channel_id}"));
            m.deleted = true;
            m.deleted_by_others = true;
        });
    }

    /// Waits for a message in [`messages`](Self::messages) matching `pred`.
    pub async fn wait_message(
        &self,
        channel_id: u64,
        pred: impl Fn(&Reply) -> bool,
        timeout: Duration,
    ) -> Reply {
        let r = self
            .shared()
            .wait_until(timeout, |s| {
                s.channel_messages(channel_id).into_iter().find(|r| pred(r))
            })
            .await;
        r.unwrap_or_else(|| {
            let seen: Vec<String> = self.messages(channel_id).iter().map(|r| r.text()).collect();
            let summary = self.read(|s| s.summary());
            panic!("emulator: no matching message in channel {channel_id} after {timeout:?}; messages seen: {seen:#?}\n{summary}")
        })
    }

    /// Like [`wait_message`](Self::wait_message) over [`all_messages`](Self::all_messages).
    pub async fn wait_any_message(
        &self,
        channel_id: u64,
        pred: impl Fn(&Reply) -> bool,
        timeout: Duration,
    ) -> Reply {
        let r = self
            .shared()
            .wait_until(timeout, |s| {
                s.all_channel_messages(channel_id)
                    .into_iter()
                    .find(|r| pred(r))
            })
            .await;
        r.unwrap_or_else(|| {
            let seen: Vec<String> = self.all_messages(channel_id).iter().map(|r| r.text()).collect();
            panic!("emulator: no matching message in channel {channel_id} after {timeout:?}; messages seen: {seen:#?}")
        })
    }

    // ---------------------------------------------------------------- voice

    /// Where Discord thinks the bot is: set by the bot's op 4 and by `move_bot`/`delete_channel`.
    pub fn bot_voice_channel(&self, guild_id: u64) -> Option<u64> {
        self.read(|s| s.bot_voice.get(&guild_id).copied().flatten())
    }

    /// Every op 4 the bot sent for the guild, in order (`None` = leave).
    pub fn voice_state_updates(&self, guild_id: u64) -> Vec<Option<u64>> {
        self.read(|s| s.op4s.get(&guild_id).cloned().unwrap_or_default())
    }

    pub async fn wait_bot_voice(&self, guild_id: u64, channel: Option<u64>, timeout: Duration) {
        let ok = self
            .shared()
            .wait_until(timeout, |s| {
                (s.bot_voice.get(&guild_id).copied().flatten() == channel).then_some(())
            })
            .await;
        if ok.is_none() {
            let (now, ops, summary) = self.read(|s| {
                (
                    s.bot_voice.get(&guild_id).copied().flatten(),
                    s.op4s.get(&guild_id).cloned(),
                    s.summary(),
                )
            });
            panic!(
                "emulator: bot voice channel in guild {guild_id} is {now:?}, expected {channel:?} after {timeout:?}; \
                 op 4s: {ops:?}\n{summary}"
            );
        }
    }

    /// Waits until the guild has a voice websocket session that selected its protocol.
    pub async fn wait_voice_connected(&self, guild_id: u64, timeout: Duration) {
        let ok = self
            .shared()
            .wait_until(timeout, |s| {
                let cur = s.voice_current.contains_key(&guild_id);
                let selected = s
                    .voice_sessions
                    .values()
                    .any(|i| i.guild_id == guild_id && i.mode.is_some());
                (cur && selected).then_some(())
            })
            .await;
        if ok.is_none() {
            let summary = self.read(|s| s.summary());
            panic!(
                "emulator: no voice connection for guild {guild_id} after {timeout:?}\n{summary}"
            );
        }
    }

    /// Every RTP packet received for the guild, decrypted and decoded, in arrival order.
    pub fn audio(&self, guild_id: u64) -> Vec<AudioFrame> {
        self.read(|s| s.audio.get(&guild_id).cloned().unwrap_or_default())
    }

    /// On (the default): every received frame is Opus-decoded and kept for [`audio`](Self::audio).
    /// Off: frames are only counted ([`dave_stats`](Self::dave_stats): `frames_encrypted`,
    /// `frames_plain`, `frames_silence`), for load benchmarks with hundreds of calls.
    pub fn set_decode_audio(&self, on: bool) {
        self.with(|s| s.decode_audio = on);
    }

    pub fn clear_audio(&self, guild_id: u64) {
        self.with(|s| {
            s.audio.remove(&guild_id);
            s.audio_loud.remove(&guild_id);
        });
    }

    /// Waits until `n` non-silent frames (rms > 0.01) have been received for the guild.
    pub async fn wait_audio_frames(&self, guild_id: u64, n: usize, timeout: Duration) {
        let ok = self
            .shared()
            .wait_until(timeout, |s| {
                (s.audio_loud.get(&guild_id).copied().unwrap_or(0) >= n).then_some(())
            })
            .await;
        if ok.is_none() {
            let frames = self.audio(guild_id);
            let loud = non_silent(&frames).len();
            let summary = self.read(|s| s.summary());
            panic!(
                "emulator: wanted {n} non-silent audio frames for guild {guild_id} within {timeout:?}, got {loud} \
                 ({} frames in total; voice connections: {})\n{summary}",
                frames.len(),
                self.voice_connections(guild_id)
            );
        }
    }

    /// Closes the bot's current voice websocket for the guild with `code` (4006, 4014, 4015...)
    /// and waits (bounded) until it is gone. Panics if there is none.
    pub async fn close_voice(&self, guild_id: u64, code: u16) {
        let sent = self.with(|s| gateway::close_voice(s, guild_id, code));
        if !sent {
            let summary = self.read(|s| s.summary());
            panic!("emulator: close_voice({guild_id}, {code}): the bot has no voice connection in that guild\n{summary}");
        }
        self.wait_voice_closed(guild_id).await;
    }

    async fn wait_voice_closed(&self, guild_id: u64) {
        let conn = self.read(|s| s.voice_current.get(&guild_id).map(|h| h.conn_id));
        let Some(conn) = conn else { return };
        let _ = self
            .shared()
            .wait_until(Duration::from_secs(5), |s| {
                s.voice_current
                    .get(&guild_id)
                    .is_none_or(|h| h.conn_id != conn)
                    .then_some(())
            })
            .await;
    }

    /// Number of voice websocket IDENTIFYs for the guild so far.
    pub fn voice_connections(&self, guild_id: u64) -> usize {
        self.read(|s| s.voice_identifies.get(&guild_id).copied().unwrap_or(0))
    }

    /// Number of successful voice RESUMEs for the guild so far.
    pub fn voice_resumes(&self, guild_id: u64) -> usize {
        self.read(|s| s.voice_resumes.get(&guild_id).copied().unwrap_or(0))
    }

    /// Decrypt/decode failures and other voice anomalies.
    pub fn voice_errors(&self) -> Vec<String> {
        self.read(|s| s.voice_errors.clone())
    }

    /// Voice server event log (identify, select protocol, speaking, closes...).
    pub fn voice_log(&self) -> Vec<String> {
        self.read(|s| s.voice_log.clone())
    }

    // ---------------------------------------------------------------- fixtures for parse tests

    /// The READY `d` a new session would get.
    pub fn build_ready(&self) -> Value {
        self.read(|s| payloads::ready_json(s, "session", shards::NO_SHARDING))
    }
    /// The GUILD_CREATE `d` for a guild (as if all intents were given).
    pub fn build_guild_create(&self, guild_id: u64) -> Value {
        self.read(|s| payloads::guild_create_json(&s.guilds[&guild_id], s.bot_user_id, u64::MAX))
    }
}

/// An interaction sent to the bot.
#[derive(Clone)]
pub struct Interaction {
    pub id: u64,
    pub token: String,
    /// 2 command, 3 component, 4 autocomplete.
    pub kind: u8,
    pub guild_id: u64,
    pub channel_id: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Interaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interaction")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Interaction {
    fn rec(&self) -> InteractionRec {
        self.shared.read(|s| s.interactions[&self.id].clone())
    }

    fn describe(&self) -> String {
        let r = self.rec();
        let summary = self.shared.read(|s| s.summary());
        format!(
            "interaction {} (/{}) : callback type {:?}, callback data {}, replies {:#?}, errors {:#?}\n{summary}",
            r.id,
            r.name,
            r.callback_type,
            r.callback_data.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            r.replies.iter().map(|r| (r.source.clone(), r.text())).collect::<Vec<_>>(),
            r.errors
        )
    }

    /// The final visible reply: the type 4 (or 7) callback's message; after a deferral (5/6),
    /// the first follow-up or edit of @original that is not a progress line (a long
    /// `/play` of a playlist shows "Loading the tracks… 2 of 5" before its answer: see
    /// [`Reply::is_progress`]). Panics on timeout.
    pub async fn response(&self, timeout: Duration) -> Reply {
        let id = self.id;
        let r = self
            .shared
            .wait_until(timeout, |s| {
                let rec = s.interactions.get(&id)?;
                match rec.callback_type? {
                    4 | 7 => rec.replies.first().cloned(),
                    5 | 6 => rec
                        .replies
                        .iter()
                        .find(|r| {
                            matches!(r.source, ReplySource::Followup | ReplySource::EditOriginal)
                                && !r.is_progress()
                        })
                        .cloned(),
                    9 => {
                        let data = rec.callback_data.clone().unwrap_or(Value::Null);
                        Some(Reply {
                            id: 0,
                            channel_id: rec.channel_id,
                            content: data["title"].as_str().unwrap_or("").to_string(),
                            embeds: vec![],
                            components: data["components"].as_array().cloned().unwrap_or_default(),
                            ephemeral: false,
                            raw: data,
                            source: ReplySource::Callback(9),
                        })
                    }
                    _ => None,
                }
            })
            .await;
        r.unwrap_or_else(|| {
            panic!(
                "emulator: no response within {timeout:?} to {}",
                self.describe()
            )
        })
    }

    /// Everything: callback message, follow-ups, edits, in order.
    pub fn replies(&self) -> Vec<Reply> {
        self.rec().replies
    }

    /// Waits until at least `n` replies exist and returns them all.
    pub async fn wait_replies(&self, n: usize, timeout: Duration) -> Vec<Reply> {
        let id = self.id;
        let r = self
            .shared
            .wait_until(timeout, |s| {
                let rec = s.interactions.get(&id)?;
                (rec.replies.len() >= n).then(|| rec.replies.clone())
            })
            .await;
        r.unwrap_or_else(|| {
            panic!(
                "emulator: wanted {n} replies within {timeout:?} to {}",
                self.describe()
            )
        })
    }

    /// The callback type the bot answered with, if any yet.
    pub fn callback_type(&self) -> Option<u8> {
        self.rec().callback_type
    }

    /// Errors Discord would have returned for this interaction (late/double ack, invalid bodies).
    pub fn errors(&self) -> Vec<String> {
        self.rec().errors
    }

    /// Choices of a type 8 autocomplete result.
    pub async fn autocomplete_choices(&self, timeout: Duration) -> Vec<Value> {
        let id = self.id;
        let r = self
            .shared
            .wait_until(timeout, |s| s.interactions.get(&id)?.choices.clone())
            .await;
        r.unwrap_or_else(|| {
            panic!(
                "emulator: no autocomplete result within {timeout:?} for {}",
                self.describe()
            )
        })
    }
}

/// Reports how long the bot took to recover from an injected fault: printed, and added to
/// `target/tmp/recovery.tsv` (`what`, seconds), which `scripts/faults` sums up under the
/// fault suite's "N passed, M failed" (RELIABILITY.md).
pub fn recovered(what: &str, took: Duration) {
    use std::io::Write;
    eprintln!("recovery[{what}]: {:.2} s", took.as_secs_f64());
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("recovery.tsv");
    // One write of one line to a file opened for appending: lines from tests running at
    // once never interleave.
    let line = format!("{what}\t{:.3}\n", took.as_secs_f64());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}
