//! Emulated Discord voice server: one TLS websocket listener and one UDP socket shared by all
//! guilds. Voice websocket sessions map to guilds by the `server_id` of IDENTIFY / RESUME; RTP
//! packets map to sessions by SSRC (unique per session). Received audio is decrypted
//! (`aead_aes256_gcm_rtpsize`) and Opus-decoded into [`AudioFrame`]s.
//!
//! DAVE (E2EE, protocol v1) is on by default: SESSION_DESCRIPTION answers the client's
//! `max_dave_protocol_version: 1` with `dave_protocol_version: 1` and the connection plays
//! Discord's part in the MLS group (see [`super::dave`]); the received frames are decrypted by
//! the simulated listeners before Opus decoding. `Emulator::set_dave(false)` gives version 0
//! (transport encryption only). Server binary frames are `[op][payload]` on voice gateway v4
//! and `[seq u16 BE][op][payload]` on v8 (songbird 0.6, discord.js). What Discord refuses
//! (versions, credentials, missing heartbeats) is in [`super::voice_strict`].

use aes_gcm::{aead::AeadInPlace, Aes256Gcm, KeyInit};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::dave::{self, DaveCall, DaveHandle, Out};
use super::payloads::id_of;
use super::state::{emu_debug, AudioFrame, Shared, VoiceCmd, VoiceConnHandle, VoiceSessionInfo};
use super::voice_strict;

pub const AES_MODE: &str = "aead_aes256_gcm_rtpsize";
pub const XCHACHA_MODE: &str = "aead_xchacha20_poly1305_rtpsize";
/// Modes offered in READY, in Discord's order.
pub const MODES: [&str; 2] = [AES_MODE, XCHACHA_MODE];
pub const HEARTBEAT_INTERVAL_MS: f64 = 13_750.0;

pub async fn run_ws(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    udp_port: u16,
) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            handle_conn(tcp, peer, acceptor, shared, udp_port).await;
        });
    }
}

/// What the protocol logic asks the connection task to do.
enum Action {
    Send(Value),
    /// A binary frame, already prefixed with the sequence number on v8.
    SendBinary(Vec<u8>),
    Close(u16),
}

/// How often a connection re-checks its DAVE group against the channel's members and timeouts.
const DAVE_TICK: Duration = Duration::from_millis(50);

/// Per voice-websocket protocol state (DAVE lives in [`DaveCall`], shared with the UDP receiver).
pub struct VoiceSession {
    pub conn_id: u64,
    /// The `v` query parameter (songbird uses 4; v8 adds server sequence numbers).
    pub version: u8,
    pub guild_id: Option<u64>,
    pub ssrc: Option<u32>,
    pub session_id: String,
    pub user_id: u64,
    pub mode: Option<String>,
    pub key: [u8; 32],
    /// Server message sequence (v8+).
    pub seq: u64,
    pub udp_port: u16,
    /// `max_dave_protocol_version` from IDENTIFY (0 when absent).
    pub max_dave: u16,
    /// The call's DAVE state, when DAVE was negotiated.
    pub dave: Option<DaveHandle>,
    /// The interval sent in HELLO, and when the client last heartbeated (or connected).
    pub heartbeat_interval: Duration,
    pub last_heartbeat: Instant,
}

impl VoiceSession {
    fn msg(&mut self, op: u8, d: Value) -> Action {
        if self.version >= 8 {
            self.seq += 1;
            Action::Send(json!({"op": op, "d": d, "seq": self.seq}))
        } else {
            Action::Send(json!({"op": op, "d": d}))
        }
    }

    fn out(&mut self, o: Out) -> Action {
        match o {
            Out::Json(op, d) => self.msg(op, d),
            Out::Binary(op, payload) => {
                let mut frame = Vec::with_capacity(payload.len() + 3);
                if self.version >= 8 {
                    self.seq += 1;
                    frame.extend_from_slice(&(self.seq as u16).to_be_bytes());
                }
                frame.push(op);
                frame.extend_from_slice(&payload);
                Action::SendBinary(frame)
            }
        }
    }

    fn outs(&mut self, outs: Vec<Out>) -> Vec<Action> {
        outs.into_iter().map(|o| self.out(o)).collect()
    }

    /// Runs `f` on the call's DAVE state, then brings the group in line with the channel's
    /// humans (only on the guild's current connection). A panic is recorded, never propagated.
    fn dave_step(
        &mut self,
        shared: &Arc<Shared>,
        f: impl FnOnce(&mut DaveCall) -> Vec<Out>,
    ) -> Vec<Action> {
        let (Some(h), Some(guild)) = (self.dave.clone(), self.guild_id) else {
            return vec![];
        };
        let channel = h.lock().channel_id;
        let conn_id = self.conn_id;
        let humans = shared.read(|s| {
            let current = s
                .voice_current
                .get(&guild)
                .is_some_and(|c| c.conn_id == conn_id);
            current.then(|| {
                channel
                    .map(|c| dave::humans_in_channel(s, guild, c))
                    .unwrap_or_default()
            })
        });
        let outs = {
            let mut call = h.lock();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut outs = f(&mut call);
                outs.extend(call.tick(humans.as_deref()));
                // Only the guild's current call speaks for its group in `dave_stats`.
                if humans.is_some() {
                    call.mirror();
                }
                outs
            }));
            match r {
                Ok(outs) => outs,
                Err(_) => {
                    shared.with(|s| {
                        s.voice_errors
                            .push(format!("guild {guild}: DAVE handler panicked"))
                    });
                    vec![]
                }
            }
        };
        self.outs(outs)
    }

    /// A binary frame from the client: `[op][payload]` (26 key package, 28 commit + welcome).
    fn handle_binary(&mut self, b: &[u8], shared: &Arc<Shared>) -> Vec<Action> {
        let Some((&op, payload)) = b.split_first() else {
            shared.with(|s| s.voice_errors.push("empty binary voice frame".into()));
            return vec![];
        };
        if self.dave.is_none() {
            shared.with(|s| {
                s.voice_errors.push(format!(
                    "guild {:?}: binary op {op} ({} bytes) but DAVE was not negotiated",
                    self.guild_id,
                    b.len()
                ))
            });
            return vec![];
        }
        match op {
            26 => self.dave_step(shared, |c| c.on_key_package(payload)),
            28 => self.dave_step(shared, |c| c.on_commit(payload)),
            _ => {
                shared.with(|s| {
                    s.voice_errors.push(format!(
                        "guild {:?}: unexpected binary op {op} ({} bytes) from the client",
                        self.guild_id,
                        b.len()
                    ))
                });
                vec![]
            }
        }
    }

    fn hello(&mut self) -> Action {
        self.msg(
            8,
            json!({"heartbeat_interval": self.heartbeat_interval.as_secs_f64() * 1000.0, "v": self.version}),
        )
    }

    fn handle(
        &mut self,
        v: &Value,
        shared: &Arc<Shared>,
        tx: &mpsc::UnboundedSender<VoiceCmd>,
    ) -> Vec<Action> {
        let op = v["op"].as_u64().unwrap_or(u64::MAX);
        let d = &v["d"];
        match op {
            // IDENTIFY
            0 => {
                let Some(guild_id) = id_of(&d["server_id"]) else {
                    return vec![Action::Close(4005)];
                };
                let session_id = d["session_id"].as_str().unwrap_or("").to_string();
                let user_id = id_of(&d["user_id"]).unwrap_or(0);
                let token = d["token"].as_str().unwrap_or("").to_string();
                self.max_dave = d["max_dave_protocol_version"]
                    .as_u64()
                    .map(|v| v.min(u16::MAX as u64) as u16)
                    .unwrap_or(0);
                let key: [u8; 32] = rand::random();
                let refused = shared.with(|s| {
                    let code = s.refuse_voice_identify(guild_id, &token, &session_id)?;
                    s.voice_log
                        .push(format!("guild {guild_id}: IDENTIFY refused with {code}"));
                    Some(code)
                });
                if let Some(code) = refused {
                    return vec![Action::Close(code)];
                }
                let ssrc = shared.with(|s| {
                    if user_id != 0 && user_id != s.bot_user_id && s.guilds.contains_key(&guild_id)
                    {
                        let msg = format!(
                            "voice IDENTIFY user_id {user_id} is not the bot ({})",
                            s.bot_user_id
                        );
                        s.voice_errors.push(msg);
                    }
                    let ssrc = s.next_ssrc();
                    s.voice_sessions.insert(
                        ssrc,
                        VoiceSessionInfo {
                            guild_id,
                            ssrc,
                            key,
                            mode: None,
                            session_id: session_id.clone(),
                            user_id,
                            invalidated: false,
                            dave: None,
                        },
                    );
                    *s.voice_identifies.entry(guild_id).or_default() += 1;
                    s.voice_current.insert(
                        guild_id,
                        VoiceConnHandle {
                            conn_id: self.conn_id,
                            tx: tx.clone(),
                        },
                    );
                    s.voice_log.push(format!(
                        "guild {guild_id}: IDENTIFY v{} ssrc {ssrc} max_dave_protocol_version {}",
                        self.version, self.max_dave
                    ));
                    ssrc
                });
                self.guild_id = Some(guild_id);
                self.ssrc = Some(ssrc);
                self.session_id = session_id;
                self.user_id = user_id;
                self.key = key;
                let ready = json!({
                    "ssrc": ssrc,
                    "ip": "127.0.0.1",
                    "port": self.udp_port,
                    "modes": MODES,
                    "experiments": [],
                    "heartbeat_interval": 1,
                });
                vec![self.msg(2, ready)]
            }
            // SELECT_PROTOCOL
            1 => {
                let Some(ssrc) = self.ssrc else {
                    return vec![Action::Close(4003)];
                };
                let mode = d["data"]["mode"]
                    .as_str()
                    .or(d["mode"].as_str())
                    .unwrap_or("")
                    .to_string();
                if !MODES.contains(&mode.as_str()) {
                    shared.with(|s| {
                        s.voice_errors
                            .push(format!("SELECT_PROTOCOL with unknown mode {mode:?}"))
                    });
                    return vec![Action::Close(4016)];
                }
                if mode != AES_MODE {
                    shared.with(|s| s.voice_errors.push(format!(
                        "bot selected {mode}: the emulator only decrypts {AES_MODE}, audio will not be recorded"
                    )));
                }
                let dave_on = shared.read(|s| s.dave_enabled);
                if dave_on && self.max_dave == 0 {
                    shared.with(|s| {
                        s.voice_errors.push(format!(
                            "guild {:?}: the client does not support DAVE (no max_dave_protocol_version): \
                             Discord closes such sessions with 4017",
                            self.guild_id
                        ))
                    });
                    return vec![Action::Close(4017)];
                }
                let dave_version = if dave_on {
                    self.max_dave.min(dave::DAVE_PROTOCOL_VERSION)
                } else {
                    0
                };
                self.mode = Some(mode.clone());
                let guild_id = self.guild_id.unwrap_or(0);
                let bot_user_id = if self.user_id != 0 {
                    self.user_id
                } else {
                    shared.read(|s| s.bot_user_id)
                };
                let (channel, humans) = shared.read(|s| {
                    let channel = s.bot_voice.get(&guild_id).copied().flatten();
                    let humans = channel
                        .map(|c| dave::humans_in_channel(s, guild_id, c))
                        .unwrap_or_default();
                    (channel, humans)
                });
                if dave_version > 0 {
                    match DaveCall::new(shared.clone(), guild_id, channel, bot_user_id) {
                        Ok(call) => self.dave = Some(DaveHandle::new(call)),
                        Err(e) => shared.with(|s| {
                            s.voice_errors
                                .push(format!("guild {guild_id}: DAVE setup failed: {e}"))
                        }),
                    }
                }
                let dave_version = if self.dave.is_some() { dave_version } else { 0 };
                shared.with(|s| {
                    if let Some(info) = s.voice_sessions.get_mut(&ssrc) {
                        info.mode = Some(mode.clone());
                        info.dave = self.dave.clone();
                    }
                    match &self.dave {
                        Some(h) => {
                            s.dave_calls.insert(guild_id, h.clone());
                        }
                        None => {
                            s.dave_calls.remove(&guild_id);
                        }
                    }
                    s.dave_stats.entry(guild_id).or_default().protocol_version = dave_version;
                    s.voice_log.push(format!(
                        "guild {:?}: SELECT_PROTOCOL {mode} {}",
                        self.guild_id, d["data"]
                    ));
                });
                let desc = json!({
                    "mode": mode,
                    "secret_key": self.key.to_vec(),
                    "dave_protocol_version": dave_version,
                    "audio_codec": "opus",
                    "video_codec": "H264",
                    "media_session_id": format!("media-{ssrc}"),
                });
                let mut actions = vec![self.msg(4, desc)];
                // Discord announces the users already connected and the call's external sender
                // right after SESSION_DESCRIPTION.
                if let Some(h) = self.dave.clone() {
                    let outs = h.lock().start(&humans);
                    actions.extend(self.outs(outs));
                    h.lock().mirror();
                }
                actions
            }
            // HEARTBEAT
            3 => {
                self.last_heartbeat = Instant::now();
                let withheld = shared.with(|s| {
                    s.voice_strict.heartbeats += 1;
                    s.voice_strict.acks_withheld += s.voice_strict.withhold_acks as usize;
                    s.voice_strict.withhold_acks
                });
                if withheld {
                    vec![]
                } else if self.version >= 8 {
                    let nonce = if d.is_object() {
                        d["t"].clone()
                    } else {
                        d.clone()
                    };
                    vec![self.msg(6, json!({"t": nonce}))]
                } else {
                    vec![self.msg(6, d.clone())]
                }
            }
            // SPEAKING
            5 => {
                shared.with(|s| {
                    s.voice_log
                        .push(format!("guild {:?}: SPEAKING {d}", self.guild_id))
                });
                vec![]
            }
            // RESUME
            7 => {
                let guild_id = id_of(&d["server_id"]);
                let session_id = d["session_id"].as_str().unwrap_or("").to_string();
                let found = shared.with(|s| {
                    let found = s
                        .voice_sessions
                        .values()
                        .filter(|i| {
                            Some(i.guild_id) == guild_id
                                && i.session_id == session_id
                                && !i.invalidated
                        })
                        .max_by_key(|i| i.ssrc)
                        .cloned();
                    if let (Some(info), Some(g)) = (&found, guild_id) {
                        *s.voice_resumes.entry(g).or_default() += 1;
                        s.voice_current.insert(
                            g,
                            VoiceConnHandle {
                                conn_id: self.conn_id,
                                tx: tx.clone(),
                            },
                        );
                        s.voice_log
                            .push(format!("guild {g}: RESUME ok (ssrc {})", info.ssrc));
                    } else {
                        s.voice_log.push(format!(
                            "guild {guild_id:?}: RESUME of unknown/invalid session -> 4006"
                        ));
                    }
                    found
                });
                match found {
                    Some(info) => {
                        self.guild_id = Some(info.guild_id);
                        self.ssrc = Some(info.ssrc);
                        self.session_id = info.session_id;
                        self.key = info.key;
                        self.mode = info.mode;
                        self.dave = info.dave;
                        if let Some(h) = &self.dave {
                            shared.with(|s| {
                                s.dave_calls.insert(info.guild_id, h.clone());
                            });
                        }
                        vec![self.msg(9, Value::Null)]
                    }
                    None => vec![Action::Close(4006)],
                }
            }
            // DAVE transition ready
            23 if self.dave.is_some() => {
                let d = d.clone();
                self.dave_step(shared, |c| c.on_transition_ready(&d))
            }
            // DAVE invalid commit / welcome
            31 if self.dave.is_some() => {
                let d = d.clone();
                self.dave_step(shared, |c| c.on_invalid_commit(&d))
            }
            // CLIENT_DISCONNECT etc. from clients: ignore.
            _ => {
                shared.with(|s| {
                    s.voice_log
                        .push(format!("guild {:?}: ignored op {op}", self.guild_id))
                });
                vec![]
            }
        }
    }
}

async fn handle_conn(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    udp_port: u16,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            shared.with(|s| {
                s.voice_errors
                    .push(format!("voice TLS handshake from {peer} failed: {e}"))
            });
            return;
        }
        Err(_) => return,
    };
    let mut uri = String::new();
    let mut refused = None;
    let ws = tokio_tungstenite::accept_hdr_async(
        tls,
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
            uri = req.uri().to_string();
            // Discord answers the upgrade of a URL without a version it serves with an
            // HTTP error instead of a websocket.
            if let Some(why) = voice_strict::refuse_version(url_param(&uri, "v").as_deref()) {
                refused = Some(why.clone());
                return Err(tokio_tungstenite::tungstenite::http::Response::builder()
                    .status(400)
                    .body(Some(why))
                    .expect("a static response"));
            }
            Ok(resp)
        },
    )
    .await;
    if let Some(why) = refused {
        shared.with(|s| {
            s.voice_strict.refused_versions += 1;
            s.protocol_error(format!("voice connection {uri}: {why}"));
        });
        return;
    }
    let Ok(ws) = ws else {
        shared.with(|s| {
            s.voice_errors
                .push("voice websocket handshake failed".into())
        });
        return;
    };
    let version = url_param(&uri, "v")
        .and_then(|v| v.parse().ok())
        .unwrap_or(8u8);
    let heartbeat_interval = shared.read(|s| {
        s.voice_strict
            .heartbeat_interval
            .unwrap_or(Duration::from_secs_f64(HEARTBEAT_INTERVAL_MS / 1000.0))
    });
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<VoiceCmd>();
    let conn_id = shared.with(|s| s.next_conn_id());
    let mut sess = VoiceSession {
        conn_id,
        version,
        guild_id: None,
        ssrc: None,
        session_id: String::new(),
        user_id: 0,
        mode: None,
        key: [0; 32],
        seq: 0,
        udp_port,
        max_dave: 0,
        dave: None,
        heartbeat_interval,
        last_heartbeat: Instant::now(),
    };
    emu_debug!("voice connection {conn_id} from {peer}: {uri}");
    // Discord sends HELLO as soon as the socket opens.
    let mut pending = vec![sess.hello()];
    // A voice connection gets the main gateway's slack before 4009.
    let deadline = super::gw_strict::heartbeat_deadline(heartbeat_interval);
    let mut heartbeat_check = tokio::time::interval(deadline / 4);
    let mut dave_tick = tokio::time::interval(DAVE_TICK);
    dave_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'conn: loop {
        for a in pending.drain(..) {
            match a {
                Action::Send(v) => {
                    emu_debug!("voice {conn_id} -> {v}");
                    if sink.send(Message::text(v.to_string())).await.is_err() {
                        break 'conn;
                    }
                }
                Action::SendBinary(b) => {
                    emu_debug!(
                        "voice {conn_id} -> binary op {} ({} bytes)",
                        b.get(if sess.version >= 8 { 2 } else { 0 })
                            .copied()
                            .unwrap_or(0),
                        b.len()
                    );
                    if sink.send(Message::binary(b)).await.is_err() {
                        break 'conn;
                    }
                }
                Action::Close(code) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: "emulator".into(),
                        })))
                        .await;
                    break 'conn;
                }
            }
        }
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Value>(&t) else {
                        pending.push(Action::Close(4002));
                        continue;
                    };
                    emu_debug!("voice {conn_id} <- {v}");
                    pending = sess.handle(&v, &shared, &tx);
                }
                Some(Ok(Message::Binary(b))) => {
                    emu_debug!("voice {conn_id} <- binary op {} ({} bytes)", b.first().copied().unwrap_or(0), b.len());
                    pending = sess.handle_binary(&b, &shared);
                }
                Some(Ok(Message::Close(f))) => {
                    shared.with(|s| s.voice_log.push(format!("guild {:?}: client closed {f:?}", sess.guild_id)));
                    break;
                }
                Some(Ok(_)) => {}
                // songbird drops TLS without close_notify when leaving: not an error.
                Some(Err(_)) | None => {
                    shared.with(|s| s.voice_log.push(format!("guild {:?}: connection dropped", sess.guild_id)));
                    break;
                }
            },
            _ = heartbeat_check.tick() => {
                if sess.last_heartbeat.elapsed() > deadline {
                    // Discord: "Your session has timed out" (4009); the session is over.
                    shared.with(|s| {
                        s.voice_strict.heartbeat_timeouts += 1;
                        s.voice_log.push(format!("guild {:?}: no heartbeat for {deadline:?}: closing 4009", sess.guild_id));
                        s.end_voice_session(sess.ssrc);
                    });
                    pending.push(Action::Close(4009));
                }
            }
            _ = dave_tick.tick(), if sess.dave.is_some() => {
                pending = sess.dave_step(&shared, |_| vec![]);
            }
            cmd = rx.recv() => match cmd {
                Some(VoiceCmd::Dave(outs)) => {
                    pending = sess.outs(outs);
                }
                Some(VoiceCmd::Close(code)) => {
                    shared.with(|s| {
                        s.voice_log.push(format!("guild {:?}: emulator closes with {code}", sess.guild_id));
                        // 4006 (session no longer valid), 4009 (session timed out) and 4014
                        // (disconnected) end the session: a later RESUME is refused. 4015
                        // (server crash) keeps it resumable.
                        if code != 4015 {
                            s.end_voice_session(sess.ssrc);
                        }
                    });
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: "emulator".into() })))
                        .await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(Ok(m)) = stream.next().await {
                            if m.is_close() { break; }
                        }
                    })
                    .await;
                    break;
                }
                None => break,
            },
        }
    }
    shared.with(|s| {
        if let Some(g) = sess.guild_id {
            if s.voice_current
                .get(&g)
                .is_some_and(|h| h.conn_id == conn_id)
            {
                s.voice_current.remove(&g);
            }
        }
    });
    emu_debug!("voice connection {conn_id} closed");
}

fn url_param(uri: &str, name: &str) -> Option<String> {
    let q = uri.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_string())
    })
}

// ---------------------------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------------------------

pub async fn run_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 4096];
    let mut decoders: HashMap<u32, opus2::Decoder> = HashMap::new();
    let mut pcm = vec![0f32; 5760 * 2];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        // A lost path loses packets both ways: nothing is answered, nothing is heard.
        if shared.with(|s| s.udp_blackholed()) {
            continue;
        }
        let pkt = &buf[..n];
        // IP discovery request.
        if n == 74 && u16::from_be_bytes([pkt[0], pkt[1]]) == 1 {
            let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
            let mut resp = [0u8; 74];
            resp[0..2].copy_from_slice(&2u16.to_be_bytes());
            resp[2..4].copy_from_slice(&70u16.to_be_bytes());
            resp[4..8].copy_from_slice(&ssrc.to_be_bytes());
            let ip = from.ip().to_string();
            resp[8..8 + ip.len()].copy_from_slice(ip.as_bytes());
            resp[72..74].copy_from_slice(&from.port().to_be_bytes());
            let _ = sock.send_to(&resp, from).await;
            shared.with(|s| {
                s.voice_log
                    .push(format!("UDP IP discovery ssrc {ssrc} from {from}"))
            });
            continue;
        }
        // RTP: version 2, payload type 120 (Opus). Anything else (keepalives, RTCP) is ignored.
        if n < 12 || pkt[0] & 0xC0 != 0x80 || pkt[1] & 0x7F != 0x78 {
            continue;
        }
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let info = shared.read(|s| s.voice_sessions.get(&ssrc).cloned());
        let Some(info) = info else {
            shared.with(|s| {
                s.voice_errors
                    .push(format!("RTP packet for unknown ssrc {ssrc}"))
            });
            continue;
        };
        if info.mode.as_deref() != Some(AES_MODE) {
            continue; // reported at SELECT_PROTOCOL time
        }
        // A session Discord ended (4006, 4009, 4014) carries no more audio: what the
        // client sends before it notices is lost, not heard.
        if info.invalidated {
            continue;
        }
        match decrypt_rtp(pkt, &info.key) {
            Ok((seq, timestamp, payload)) => {
                // DAVE: what the listeners decrypted (None: nobody in the call could play it).
                let (opus, dave) = match &info.dave {
                    Some(h) => match h.lock().on_media(&payload) {
                        Some(r) => r,
                        None => continue,
                    },
                    None => {
                        let silence = payload == dave::OPUS_SILENCE;
                        shared.with(|s| {
                            let st = s.dave_stats.entry(info.guild_id).or_default();
                            if silence {
                                st.frames_silence += 1;
                            } else {
                                st.frames_plain += 1;
                            }
                        });
                        (payload, false)
                    }
                };
                // Counting only (`Emulator::set_decode_audio(false)`): the frame is in `dave_stats`.
                if !shared.read(|s| s.decode_audio) {
                    continue;
                }
                let dec = decoders.entry(ssrc).or_insert_with(|| {
                    opus2::Decoder::new(48_000, opus2::Channels::Stereo).expect("opus decoder")
                });
                match dec.decode_float(&opus, &mut pcm, false) {
                    Ok(samples) => {
                        let frame = AudioFrame {
                            seq,
                            timestamp,
                            ssrc,
                            pcm: pcm[..samples * 2].to_vec(),
                            opus_len: opus.len(),
                            at: Instant::now(),
                            dave,
                        };
                        let loud = super::audio::rms(std::slice::from_ref(&frame))
                            > super::audio::SILENCE_RMS;
                        shared.with(|s| {
                            s.audio.entry(info.guild_id).or_default().push(frame);
                            if loud {
                                *s.audio_loud.entry(info.guild_id).or_default() += 1;
                            }
                        });
                    }
                    Err(e) => shared.with(|s| {
                        s.voice_errors.push(format!(
                            "opus decode failed (ssrc {ssrc}, seq {seq}, {} bytes): {e}",
                            opus.len()
                        ))
                    }),
                }
            }
            Err(e) => shared.with(|s| s.voice_errors.push(format!("ssrc {ssrc}: {e}"))),
        }
    }
}

/// Decrypts an `aead_aes256_gcm_rtpsize` RTP packet. Returns (seq, timestamp, opus payload).
///
/// Layout: RTP header (12 + 4*CC bytes) [+ 4-byte extension preamble if X] (all AAD, in the
/// clear) | ciphertext (extension body, then Opus) | 16-byte tag | 4-byte BE nonce counter.
/// Nonce = counter bytes followed by 8 zero bytes.
pub fn decrypt_rtp(pkt: &[u8], key: &[u8; 32]) -> Result<(u16, u32, Vec<u8>), String> {
    let n = pkt.len();
    let cc = (pkt[0] & 0x0F) as usize;
    let has_ext = pkt[0] & 0x10 != 0;
    let mut aad_len = 12 + 4 * cc;
    let mut ext_words = 0usize;
    if has_ext {
        if n < aad_len + 4 {
            return Err("packet too short for extension preamble".into());
        }
        ext_words = u16::from_be_bytes([pkt[aad_len + 2], pkt[aad_len + 3]]) as usize;
        aad_len += 4;
    }
    if n < aad_len + 16 + 4 {
        return Err(format!("packet too short ({n} bytes)"));
    }
    let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
    let timestamp = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&pkt[n - 4..]);
    let tag = &pkt[n - 20..n - 4];
    let mut body = pkt[aad_len..n - 20].to_vec();
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|e| e.to_string())?;
    cipher
        .decrypt_in_place_detached((&nonce).into(), &pkt[..aad_len], &mut body, tag.into())
        .map_err(|_| format!("AES-GCM authentication failed (seq {seq})"))?;
    if has_ext {
        let skip = ext_words * 4;
        if body.len() < skip {
            return Err("extension longer than payload".into());
        }
        body.drain(..skip);
    }
    Ok((seq, timestamp, body))
}

/// Encrypts like songbird does (for the emulator's own tests of [`decrypt_rtp`]).
pub fn encrypt_rtp(
    header: &[u8],
    ext_body: &[u8],
    opus: &[u8],
    key: &[u8; 32],
    counter: u32,
) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key).unwrap();
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&counter.to_be_bytes());
    let mut body = ext_body.to_vec();
    body.extend_from_slice(opus);
    let tag = cipher
        .encrypt_in_place_detached((&nonce).into(), header, &mut body)
        .unwrap();
    let mut out = header.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&counter.to_be_bytes());
    out
}
