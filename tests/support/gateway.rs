//! Emulated Discord gateway (plain `ws://`, JSON text frames, API v10).

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::gw_strict;
use super::payloads;
use super::shards::{self, Admission};
use super::state::{
    emu_debug, random_token, GatewayConn, GwOut, Shared, State, VoiceCmd, VoiceStateRec,
};

pub const HEARTBEAT_INTERVAL_MS: u64 = 41_250;

pub async fn run(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            handle_conn(tcp, shared).await;
        });
    }
}

async fn handle_conn(tcp: TcpStream, shared: Arc<Shared>) {
    if shared.read(|s| s.gateway_refused) {
        emu_debug!("gateway connection refused (outage)");
        return;
    }
    let _ = tcp.set_nodelay(true);
    let mut uri = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(
        tcp,
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
            uri = req.uri().to_string();
            Ok(resp)
        },
    )
    .await;
    let Ok(ws) = ws else {
        shared.with(|s| s.protocol_error("gateway websocket handshake failed".into()));
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<GwOut>();
    let conn_id = shared.with(|s| {
        s.gateway_connections += 1;
        s.next_conn_id()
    });
    emu_debug!("gateway connection {conn_id} opened: {uri}");
    if !uri.contains("v=10") {
        shared.with(|s| s.protocol_error(format!("gateway connected without ?v=10: {uri}")));
    }
    let interval = shared.read(|s| s.gw_strict.heartbeat_interval);
    let hello = json!({"op": 10, "s": null, "t": null, "d": {"heartbeat_interval": interval.as_millis() as u64, "_trace": ["emulator"]}});
    if sink.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    // Discord closes a connection that stops heartbeating (4009: the session timed out).
    let deadline = gw_strict::heartbeat_deadline(interval);
    let mut last_heartbeat = Instant::now();
    let mut check = tokio::time::interval(deadline / 4);
    loop {
        tokio::select! {
            _ = check.tick() => {
                if last_heartbeat.elapsed() > deadline {
                    emu_debug!("gateway {conn_id}: no heartbeat for {deadline:?}: closing 4009");
                    shared.with(|s| {
                        s.gw_strict.heartbeat_timeouts += 1;
                        if let Some(session) = s.gw_conns.get(&conn_id).map(|c| c.session_id.clone()) {
                            s.end_session(&session);
                        }
                    });
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Library(4009), reason: "Session timed out".into() }))).await;
                    break;
                }
            }
            msg = stream.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(_))) => {
                        shared.with(|s| s.protocol_error("bot sent a binary gateway frame (ETF/compressed payloads are not emulated)".into()));
                        continue;
                    }
                    Some(Ok(Message::Close(f))) => {
                        emu_debug!("gateway {conn_id}: bot closed ({f:?})");
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        emu_debug!("gateway {conn_id}: read error {e}");
                        break;
                    }
                    None => break,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Library(4002), reason: "decode error".into() }))).await;
                    break;
                };
                if v["op"].as_u64() == Some(1) {
                    last_heartbeat = Instant::now();
                }
                match handle_client_frame(&shared, conn_id, &tx, v) {
                    Reply::None => {}
                    Reply::Send(v) => {
                        if sink.send(Message::text(v.to_string())).await.is_err() {
                            break;
                        }
                    }
                    Reply::Close(code, reason) => {
                        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Library(code), reason: reason.into() }))).await;
                        break;
                    }
                }
            }
            out = rx.recv() => {
                match out {
                    Some(GwOut::Frame(v)) => {
                        if sink.send(Message::text(v.to_string())).await.is_err() {
                            break;
                        }
                    }
                    Some(GwOut::Close(code)) => {
                        if gw_strict::ends_session(code) {
                            shared.with(|s| {
                                if let Some(session) = s.gw_conns.get(&conn_id).map(|c| c.session_id.clone()) {
                                    s.end_session(&session);
                                }
                            });
                        }
                        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: "emulator".into() }))).await;
                        // Let the peer answer the close handshake, bounded.
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while let Some(Ok(m)) = stream.next().await {
                                if m.is_close() { break; }
                            }
                        }).await;
                        break;
                    }
                    None => break,
                }
            }
        }
    }
    shared.with(|s| s.detach_conn(conn_id));
    emu_debug!("gateway connection {conn_id} closed");
}

enum Reply {
    None,
    Send(Value),
    /// Close code and reason.
    Close(u16, &'static str),
}

fn handle_client_frame(
    shared: &Arc<Shared>,
    conn_id: u64,
    tx: &mpsc::UnboundedSender<GwOut>,
    v: Value,
) -> Reply {
    let op = v["op"].as_u64().unwrap_or(u64::MAX);
    let d = v["d"].clone();
    let identified = shared.read(|s| s.gw_conns.contains_key(&conn_id));
    match op {
        1 => match shared.with(|s| s.on_heartbeat()) {
            Some(ack) => Reply::Send(ack),
            None => Reply::None,
        },
        2 if identified => {
            shared.with(|s| s.protocol_error("IDENTIFY on a connection already identified".into()));
            Reply::Close(4005, "Already authenticated")
        }
        2 => shared.with(|s| identify(s, conn_id, tx, &d)),
        6 if identified => {
            shared.with(|s| s.protocol_error("RESUME on a connection already identified".into()));
            Reply::Close(4005, "Already authenticated")
        }
        6 => shared.with(|s| resume(s, conn_id, tx, &d)),
        3 | 4 | 8 if !identified => {
            shared.with(|s| s.protocol_error(format!("op {op} before IDENTIFY: {v}")));
            Reply::Close(4003, "Not authenticated")
        }
        3 => Reply::None, // presence update
        4 => {
            shared.with(|s| {
                let Some(shard) = s.gw_conns.get(&conn_id).map(|c| c.shard) else {
                    s.protocol_error("op 4 on a gateway connection that is not identified".into());
                    return;
                };
                // Discord ignores a voice state update sent on a shard that does not own
                // the guild.
                if let Some(g) = payloads::id_of(&d["guild_id"]) {
                    if shards::guild_on_shard(g, shard.1) != shard.0 {
                        s.protocol_error(format!(
                            "op 4 for guild {g} on shard [{}, {}], which does not own it (ignored): {d}",
                            shard.0, shard.1
                        ));
                        return;
                    }
                }
                bot_voice_state_update(s, &d);
            });
            Reply::None
        }
        8 => {
            // Request guild members: answer with an (unfiltered) chunk.
            shared.with(|s| {
                if let Some(gid) = payloads::id_of(&d["guild_id"]) {
                    if let Some(g) = s.guilds.get(&gid) {
                        let members: Vec<Value> = g
                            .members
                            .iter()
                            .map(|m| payloads::member_json(g, m, s.bot_user_id, false))
                            .collect();
                        let chunk = json!({"guild_id": gid.to_string(), "members": members, "chunk_index": 0, "chunk_count": 1, "nonce": d["nonce"]});
                        s.dispatch("GUILD_MEMBERS_CHUNK", chunk);
                    }
                }
            });
            Reply::None
        }
        _ => {
            shared.with(|s| s.protocol_error(format!("unknown gateway opcode from bot: {v}")));
            Reply::Close(4001, "Unknown opcode")
        }
    }
}

fn identify(s: &mut State, conn_id: u64, tx: &mpsc::UnboundedSender<GwOut>, d: &Value) -> Reply {
    s.identifies.push(d.clone());
    let token = d["token"].as_str().unwrap_or("");
    let token = token.strip_prefix("Bot ").unwrap_or(token);
    if token != s.token {
        s.protocol_error(format!(
            "IDENTIFY with wrong token {token:?} (expected {:?})",
            s.token
        ));
        return Reply::Close(4004, "Authentication failed");
    }
    let shard = match shards::admit_identify(s, d) {
        Admission::Accept(shard) => shard,
        Admission::Close(code, reason, why) => {
            s.protocol_error(why);
            return Reply::Close(code, reason);
        }
        Admission::Refuse => {
            return Reply::Send(json!({"op": 9, "s": null, "t": null, "d": false}))
        }
    };
    let intents = d["intents"].as_u64().unwrap_or(0);
    let session_id = random_token(32);
    s.end_detached_on(shard);
    // A new session of this shard: the bot's previous session on it (and its voice states
    // in the shard's guilds) are gone.
    s.forget_bot_voice_on(shard);
    s.install_conn(GatewayConn {
        conn_id,
        tx: tx.clone(),
        session_id: session_id.clone(),
        intents,
        shard,
    });
    s.gw_sessions.insert(session_id.clone(), 0);
    s.gw_session_intents.insert(session_id.clone(), intents);
    s.shards.session_shard.insert(session_id.clone(), shard);
    let ready = payloads::ready_json(s, &session_id, shard);
    let guilds: Vec<u64> = s
        .guilds
        .keys()
        .copied()
        .filter(|g| shards::guild_on_shard(*g, shard.1) == shard.0)
        .collect();
    s.dispatch_to(conn_id, "READY", ready);
    for g in &guilds {
        let gc = payloads::guild_create_json(&s.guilds[g], s.bot_user_id, intents);
        s.dispatch_to(conn_id, "GUILD_CREATE", gc);
    }
    s.readies += 1;
    emu_debug!(
        "IDENTIFY ok as shard [{}, {}] (intents {intents:#x}), READY + {} GUILD_CREATE sent",
        shard.0,
        shard.1,
        guilds.len()
    );
    Reply::None
}

fn resume(s: &mut State, conn_id: u64, tx: &mpsc::UnboundedSender<GwOut>, d: &Value) -> Reply {
    let token = d["token"].as_str().unwrap_or("");
    let token = token.strip_prefix("Bot ").unwrap_or(token);
    let session_id = d["session_id"].as_str().unwrap_or("").to_string();
    if token != s.token {
        s.protocol_error("RESUME with wrong token".into());
        return Reply::Close(4004, "Authentication failed");
    }
    if !s.gw_sessions.contains_key(&session_id) {
        emu_debug!("RESUME of unknown session {session_id}: invalid session");
        return Reply::Send(json!({"op": 9, "s": null, "t": null, "d": false}));
    }
    let seq = d["seq"].as_u64().unwrap_or(0);
    let replayed = match s.replay(&session_id, seq, tx) {
        Ok(n) => n,
        Err(()) => {
            emu_debug!("RESUME of {session_id} at seq {seq}, past the last one sent: 4007");
            s.end_session(&session_id);
            return Reply::Close(4007, "Invalid seq");
        }
    };
    emu_debug!("RESUME of {session_id} from seq {seq}: {replayed} dispatches replayed");
    let intents = s.gw_session_intents.get(&session_id).copied().unwrap_or(0);
    let shard = s.shards.session_shard.get(&session_id).copied();
    s.install_conn(GatewayConn {
        conn_id,
        tx: tx.clone(),
        session_id,
        intents,
        shard: shard.unwrap_or(shards::NO_SHARDING),
    });
    s.gateway_resumes += 1;
    s.dispatch_to(conn_id, "RESUMED", json!({"_trace": ["emulator"]}));
    Reply::None
}

/// The bot's op 4. `guild_id`/`channel_id` may be numbers or strings.
pub fn bot_voice_state_update(s: &mut State, d: &Value) {
    s.op4_raw.push(d.clone());
    let Some(guild_id) = payloads::id_of(&d["guild_id"]) else {
        s.protocol_error(format!("op 4 without a valid guild_id: {d}"));
        return;
    };
    let channel = payloads::id_of(&d["channel_id"]);
    if channel.is_none() && !d["channel_id"].is_null() {
        s.protocol_error(format!("op 4 with an unparsable channel_id: {d}"));
    }
    let self_mute = d["self_mute"].as_bool().unwrap_or(false);
    let self_deaf = d["self_deaf"].as_bool().unwrap_or(false);
    s.op4s.entry(guild_id).or_default().push(channel);
    if let Some(ch) = channel {
        let already = s.bot_voice.get(&guild_id).copied().flatten() == Some(ch);
        if !already && s.guilds.contains_key(&guild_id) {
            if let Err(why) = super::perms::may_join(s, guild_id, ch) {
                s.protocol_error(why);
                return;
            }
        }
    }
    emu_debug!("op 4 guild {guild_id} -> {channel:?} (mute {self_mute}, deaf {self_deaf})");
    set_bot_voice(s, guild_id, channel, self_mute, self_deaf, true);
}

/// Moves the bot's voice state (by op 4 or a moderator) and dispatches the events.
pub fn set_bot_voice(
    s: &mut State,
    guild_id: u64,
    channel: Option<u64>,
    self_mute: bool,
    self_deaf: bool,
    send_server_update: bool,
) {
    let bot = s.bot_user_id;
    let session_id = s
        .session_of_guild(guild_id)
        .unwrap_or_else(|| "no-session".into());
    let Some(g) = s.guilds.get_mut(&guild_id) else {
        // A leave for a guild the bot was just removed from is what every library sends
        // while it tears its call down (songbird's `remove` always sends op 4, and the bot
        // waits for no answer to it), so it is ignored. A join there is a bug.
        if channel.is_some() {
            s.protocol_error(format!("voice state update for unknown guild {guild_id}"));
        }
        return;
    };
    if let Some(ch) = channel {
        match g.channel(ch) {
            Some(c) if c.kind == 2 => {}
            Some(_) => {
                let msg = format!("bot asked to join channel {ch} which is not a voice channel");
                s.protocol_error(msg);
                return;
            }
            None => {
                let msg = format!("bot asked to join unknown channel {ch} in guild {guild_id}");
                s.protocol_error(msg);
                return;
            }
        }
    }
    let rec = VoiceStateRec {
        channel_id: channel.unwrap_or(0),
        session_id,
        self_mute,
        self_deaf,
    };
    match channel {
        Some(_) => {
            g.voice_states.insert(bot, rec.clone());
        }
        None => {
            g.voice_states.remove(&bot);
        }
    }
    let mut vs = payloads::voice_state_json(g, bot, Some(&rec), bot, true);
    if channel.is_none() {
        vs["channel_id"] = Value::Null;
    }
    s.bot_voice.insert(guild_id, channel);
    s.bot_self_mute_deaf
        .insert(guild_id, (self_mute, self_deaf));
    s.dispatch("VOICE_STATE_UPDATE", vs);
    if channel.is_some() && send_server_update {
        let token = random_token(16).to_lowercase();
        s.voice_server_tokens.insert(guild_id, token.clone());
        let ev = payloads::voice_server_update_json(guild_id, &token, &s.voice_endpoint.clone());
        s.dispatch("VOICE_SERVER_UPDATE", ev);
    }
}

/// A (non-bot) user's voice state change.
pub fn set_user_voice(s: &mut State, guild_id: u64, user_id: u64, channel: Option<u64>) {
    let bot = s.bot_user_id;
    let Some(g) = s.guilds.get_mut(&guild_id) else {
        panic!("emulator: unknown guild {guild_id}");
    };
    if let Some(ch) = channel {
        assert!(
            g.channel(ch).is_some_and(|c| c.kind == 2),
            "emulator: channel {ch} is not a voice channel of guild {guild_id}"
        );
    }
    assert!(
        g.member(user_id).is_some(),
        "emulator: user {user_id} is not a member of guild {guild_id} (add_member first)"
    );
    let rec = VoiceStateRec {
        channel_id: channel.unwrap_or(0),
        session_id: format!("user-session-{user_id}"),
        self_mute: false,
        self_deaf: false,
    };
    match channel {
        Some(_) => {
            g.voice_states.insert(user_id, rec.clone());
        }
        None => {
            g.voice_states.remove(&user_id);
        }
    }
    let mut vs = payloads::voice_state_json(g, user_id, Some(&rec), bot, true);
    if channel.is_none() {
        vs["channel_id"] = Value::Null;
    }
    s.dispatch("VOICE_STATE_UPDATE", vs);
}

/// Closes the guild's current voice websocket with `code` (if any). Returns whether one existed.
pub fn close_voice(s: &mut State, guild_id: u64, code: u16) -> bool {
    match s.voice_current.get(&guild_id) {
        Some(h) => h.tx.send(VoiceCmd::Close(code)).is_ok(),
        None => false,
    }
}
