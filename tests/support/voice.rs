//! Emulated Discord voice server: one TLS websocket listener and one UDP socket shared by all
//! guilds. Voice websocket sessions map to guilds by the `server_id` of IDENTIFY / RESUME; RTP
//! packets map to sessions by SSRC (unique per session). Received audio is decrypted
//! (`aead_aes256_gcm_rtpsize`) and Opus-decoded into [`AudioFrame`]s.
//!
//! DAVE (E2EE) is not emulated: SESSION_DESCRIPTION says `dave_protocol_version: 0`. The
//! per-connection protocol state lives in [`VoiceSession`] so DAVE opcodes can be added there.

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

use super::payloads::id_of;
use super::state::{emu_debug, AudioFrame, Shared, VoiceCmd, VoiceConnHandle, VoiceSessionInfo};

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
    Close(u16),
}

/// Per voice-websocket protocol state (the place to add DAVE later).
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

    fn hello(&mut self) -> Action {
        self.msg(
            8,
            json!({"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "v": self.version}),
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
                let key: [u8; 32] = rand::random();
                let ssrc = shared.with(|s| {
                    if let Some(expected) = s.voice_server_tokens.get(&guild_id) {
                        if *expected != token {
                            let msg = format!(
                                "voice IDENTIFY for guild {guild_id} with token {token:?}, but the last VOICE_SERVER_UPDATE gave {expected:?}"
                            );
                            s.voice_errors.push(msg);
                        }
                    }
                    if user_id != 0 && user_id != s.bot_user_id && s.guilds.contains_key(&guild_id) {
                        let msg = format!("voice IDENTIFY user_id {user_id} is not the bot ({})", s.bot_user_id);
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
                        },
                    );
                    *s.voice_identifies.entry(guild_id).or_default() += 1;
                    s.voice_current.insert(guild_id, VoiceConnHandle { conn_id: self.conn_id, tx: tx.clone() });
                    s.voice_log.push(format!("guild {guild_id}: IDENTIFY v{} ssrc {ssrc}", self.version));
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
                self.mode = Some(mode.clone());
                shared.with(|s| {
                    if let Some(info) = s.voice_sessions.get_mut(&ssrc) {
                        info.mode = Some(mode.clone());
                    }
                    s.voice_log.push(format!(
                        "guild {:?}: SELECT_PROTOCOL {mode} {}",
                        self.guild_id, d["data"]
                    ));
                });
                let desc = json!({
                    "mode": mode,
                    "secret_key": self.key.to_vec(),
                    "dave_protocol_version": 0,
                    "audio_codec": "opus",
                    "video_codec": "H264",
                    "media_session_id": format!("media-{ssrc}"),
                });
                vec![self.msg(4, desc)]
            }
            // HEARTBEAT
            3 => {
                if self.version >= 8 {
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
                        vec![self.msg(9, Value::Null)]
                    }
                    None => vec![Action::Close(4006)],
                }
            }
            // CLIENT_DISCONNECT etc. from clients: ignore. DAVE (21..31) would go here.
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
    let ws = tokio_tungstenite::accept_hdr_async(
        tls,
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
            uri = req.uri().to_string();
            Ok(resp)
        },
    )
    .await;
    let Ok(ws) = ws else {
        shared.with(|s| {
            s.voice_errors
                .push("voice websocket handshake failed".into())
        });
        return;
    };
    let version = url_param(&uri, "v")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4u8);
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
    };
    emu_debug!("voice connection {conn_id} from {peer}: {uri}");
    // Discord sends HELLO as soon as the socket opens.
    let mut pending = vec![sess.hello()];
    'conn: loop {
        for a in pending.drain(..) {
            match a {
                Action::Send(v) => {
                    emu_debug!("voice {conn_id} -> {v}");
                    if sink.send(Message::text(v.to_string())).await.is_err() {
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
                    // Binary frames carry DAVE opcodes (not emulated).
                    shared.with(|s| s.voice_log.push(format!("guild {:?}: ignored binary frame ({} bytes)", sess.guild_id, b.len())));
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
            cmd = rx.recv() => match cmd {
                Some(VoiceCmd::Close(code)) => {
                    shared.with(|s| {
                        s.voice_log.push(format!("guild {:?}: emulator closes with {code}", sess.guild_id));
                        // 4006 (session no longer valid) and 4014 (disconnected) end the session:
                        // a later RESUME is refused. 4015 (server crash) keeps it resumable.
                        if code != 4015 && code != 4009 {
                            if let Some(info) = sess.ssrc.and_then(|x| s.voice_sessions.get_mut(&x)) {
                                info.invalidated = true;
                            }
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
        match decrypt_rtp(pkt, &info.key) {
            Ok((seq, timestamp, opus)) => {
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
