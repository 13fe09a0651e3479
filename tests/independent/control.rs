//! The standalone emulator's control API: HTTP/1.1 + JSON on 127.0.0.1.
//!
//! | Route | Body / query | Answer |
//! |---|---|---|
//! | `GET /info` | | ports, bot token, CA bundle (also the server's first stdout line) |
//! | `POST /guilds` | `{id, name}` | 204 |
//! | `POST /channels` | `{guild_id, id, name, type: "text" \| "voice"}` | 204 |
//! | `POST /members` | `{guild_id, user_id, name, bot?, admin?}` | 204 |
//! | `POST /voice-states` | `{guild_id, user_id, channel_id \| null}` (a member joins/leaves voice) | 204 |
//! | `POST /interactions` | `{guild_id, channel_id, user_id, name, options?}` (a slash command) | `{id, token}` |
//! | `GET /interactions/{id}` | | `{callback_type, replies, errors}` |
//! | `GET /state` | | login, registered commands, voice connections, errors |
//! | `GET /messages?channel_id=` | | every non-ephemeral message in the channel |
//! | `GET /audio?guild_id=` | | per sender: frames, DAVE counts, dominant frequency |
//! | `POST /shutdown` | | 204, then the server exits |
//!
//! Ids are snowflakes: accepted as JSON numbers or strings, always answered as strings
//! (a JavaScript number cannot hold one exactly). A request the emulator refuses gets
//! 400 `{"error": ...}` and one stderr line; nothing here ends the server.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde_json::{json, Value};

use crate::server::Served;
use crate::support::http::{HttpRequest, HttpResponse};
use crate::support::{dominant_frequency, non_silent, AudioFrame, Emulator, Reply};

type Answer = Result<Value, (u16, String)>;

pub async fn handle(served: &Served, req: HttpRequest) -> HttpResponse {
    let what = format!("{} {}", req.method, req.path);
    // The emulator's own setup checks panic (they are test assertions); here they become a 400.
    // (The panic hook already logged the one line for a refusal that came from a panic.)
    let (answer, logged) = match AssertUnwindSafe(route(served, &req)).catch_unwind().await {
        Ok(a) => (a, false),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "refused".into());
            (Err((400, msg)), true)
        }
    };
    match answer {
        Ok(Value::Null) => HttpResponse::no_content(),
        Ok(v) => HttpResponse::json(200, &v),
        Err((status, error)) => {
            if !logged {
                let line = error.lines().next().unwrap_or("");
                eprintln!("emulator-server: {what}: {status} {line}");
            }
            HttpResponse::json(status, &json!({ "error": error }))
        }
    }
}

fn bad(msg: impl Into<String>) -> (u16, String) {
    (400, msg.into())
}

/// A snowflake from a JSON number or decimal string.
fn id(body: &Value, key: &str) -> Result<u64, (u16, String)> {
    match &body[key] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad(format!("`{key}` must be a snowflake (number or string)")))
}

fn text<'a>(body: &'a Value, key: &str) -> Result<&'a str, (u16, String)> {
    body[key]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 100)
        .ok_or_else(|| bad(format!("`{key}` must be a string of 1 to 100 characters")))
}

fn body(req: &HttpRequest) -> Result<Value, (u16, String)> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body).map_err(|e| bad(format!("body is not JSON: {e}")))
}

fn query_id(req: &HttpRequest, key: &str) -> Result<u64, (u16, String)> {
    req.query_param(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad(format!("query parameter `{key}` must be a snowflake")))
}

async fn route(served: &Served, req: &HttpRequest) -> Answer {
    let emu = &served.emu;
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["info"]) => Ok(served.info.clone()),
        ("POST", ["guilds"]) => {
            let b = body(req)?;
            emu.add_guild(id(&b, "id")?, text(&b, "name")?);
            Ok(Value::Null)
        }
        ("POST", ["channels"]) => {
            let b = body(req)?;
            let (guild, channel, name) = (id(&b, "guild_id")?, id(&b, "id")?, text(&b, "name")?);
            match b["type"].as_str() {
                Some("text") => emu.add_text_channel(guild, channel, name),
                Some("voice") => emu.add_voice_channel(guild, channel, name),
                _ => return Err(bad("`type` must be \"text\" or \"voice\"")),
            }
            Ok(Value::Null)
        }
        ("POST", ["members"]) => {
            let b = body(req)?;
            let flag = |k: &str| b[k].as_bool().unwrap_or(false);
            emu.add_member(
                id(&b, "guild_id")?,
                id(&b, "user_id")?,
                text(&b, "name")?,
                flag("bot"),
                flag("admin"),
            );
            Ok(Value::Null)
        }
        ("POST", ["voice-states"]) => {
            let b = body(req)?;
            let (guild, user) = (id(&b, "guild_id")?, id(&b, "user_id")?);
            let known = emu.read(|s| {
                s.guilds.get(&guild).map(|g| {
                    let member = g.member(user).is_some();
                    let channel = b["channel_id"].is_null()
                        || id(&b, "channel_id")
                            .ok()
                            .and_then(|c| g.channel(c))
                            .is_some_and(|c| c.kind == 2);
                    (member, channel)
                })
            });
            match known {
                None => return Err(bad(format!("unknown guild {guild}"))),
                Some((false, _)) => {
                    return Err(bad(format!("user {user} is not a member of guild {guild}")))
                }
                Some((_, false)) => {
                    return Err(bad(
                        "`channel_id` must be a voice channel of the guild or null",
                    ))
                }
                _ => {}
            }
            if b["channel_id"].is_null() {
                emu.user_leave_voice(guild, user).await;
            } else {
                emu.user_join_voice(guild, user, id(&b, "channel_id")?)
                    .await;
            }
            Ok(Value::Null)
        }
        ("POST", ["interactions"]) => {
            let b = body(req)?;
            let (guild, channel, user) = (
                id(&b, "guild_id")?,
                id(&b, "channel_id")?,
                id(&b, "user_id")?,
            );
            let name = text(&b, "name")?;
            let options = match &b["options"] {
                Value::Null => json!([]),
                o @ Value::Array(_) => o.clone(),
                _ => return Err(bad("`options` must be an array of {name, type, value}")),
            };
            let registered = emu.read(|s| s.registered_for_guild(guild));
            if !registered.iter().any(|n| n == name) {
                return Err((
                    409,
                    format!(
                        "/{name} is not registered for guild {guild} (registered: {registered:?})"
                    ),
                ));
            }
            let i = emu.command(guild, channel, user, name, options).await;
            let answer = json!({"id": i.id.to_string(), "token": i.token});
            served
                .interactions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(i.id, i);
            Ok(answer)
        }
        ("GET", ["interactions", iid]) => {
            let iid: u64 = iid
                .parse()
                .map_err(|_| bad("interaction id must be a snowflake"))?;
            let i = served
                .interactions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&iid)
                .cloned()
                .ok_or_else(|| (404, format!("no interaction {iid} was sent")))?;
            Ok(json!({
                "id": iid.to_string(),
                "callback_type": i.callback_type(),
                "replies": i.replies().iter().map(reply_json).collect::<Vec<_>>(),
                "errors": i.errors(),
            }))
        }
        ("GET", ["state"]) => Ok(state_json(emu)),
        ("GET", ["messages"]) => {
            let channel = query_id(req, "channel_id")?;
            Ok(json!(emu
                .all_messages(channel)
                .iter()
                .map(reply_json)
                .collect::<Vec<_>>()))
        }
        ("GET", ["audio"]) => Ok(audio_json(emu, query_id(req, "guild_id")?)),
        ("POST", ["shutdown"]) => {
            eprintln!("emulator-server: shutdown requested");
            served.stop.cancel();
            Ok(Value::Null)
        }
        _ => Err((404, format!("no control route {} {}", req.method, req.path))),
    }
}

fn reply_json(r: &Reply) -> Value {
    json!({
        "id": r.id.to_string(),
        "channel_id": r.channel_id.to_string(),
        "source": format!("{:?}", r.source),
        "content": r.content,
        "text": r.text(),
        "ephemeral": r.ephemeral,
        "embeds": r.embeds,
        "components": r.components,
    })
}

/// What a client's author checks first: did it log in, register, connect to voice, and did it
/// do anything Discord would refuse.
fn state_json(emu: &Emulator) -> Value {
    emu.read(|s| {
        let registrations: Vec<Value> = s
            .registrations
            .iter()
            .map(|(g, cmds)| {
                json!({
                    "guild_id": g.map(|g| g.to_string()),
                    "names": cmds.iter().filter_map(|c| c["name"].as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let voice: Vec<Value> = s
            .guilds
            .keys()
            .map(|g| {
                let sessions: Vec<Value> = s
                    .voice_sessions
                    .values()
                    .filter(|v| v.guild_id == *g)
                    .map(|v| {
                        json!({
                            "user_id": v.user_id.to_string(),
                            "ssrc": v.ssrc,
                            "mode": v.mode,
                            "invalidated": v.invalidated,
                        })
                    })
                    .collect();
                json!({
                    "guild_id": g.to_string(),
                    "bot_channel_id": s.bot_voice.get(g).copied().flatten().map(|c| c.to_string()),
                    "voice_state_updates": s.op4s.get(g).map(|v| v.iter().map(|c| c.map(|c| c.to_string())).collect::<Vec<_>>()),
                    "connected": s.voice_current.contains_key(g),
                    "identifies": s.voice_identifies.get(g).copied().unwrap_or(0),
                    "sessions": sessions,
                })
            })
            .collect();
        json!({
            "gateway_connections": s.gateway_connections,
            "gateway_connected": !s.gw_conns.is_empty(),
            "identifies": s.identifies.len(),
            "readies": s.readies,
            "intents": s.gw_conns.values().map(|c| c.intents).collect::<Vec<_>>(),
            "registrations": registrations,
            "requests": s.requests,
            "voice": voice,
            "protocol_errors": s.protocol_errors,
            "unhandled_requests": s.unhandled,
            "voice_errors": s.voice_errors,
            "voice_log": s.voice_log,
        })
    })
}

/// The guild's received audio per sender (SSRC → user), decoded; the dominant frequency is
/// taken over the frames listeners decrypted from DAVE when there are any, else over all.
fn audio_json(emu: &Emulator, guild: u64) -> Value {
    let frames = emu.audio(guild);
    let users: BTreeMap<u32, u64> = emu.read(|s| {
        s.voice_sessions
            .values()
            .filter(|v| v.guild_id == guild)
            .map(|v| (v.ssrc, v.user_id))
            .collect()
    });
    let mut by_ssrc: BTreeMap<u32, Vec<AudioFrame>> = BTreeMap::new();
    for f in frames {
        by_ssrc.entry(f.ssrc).or_default().push(f);
    }
    let senders: Vec<Value> = by_ssrc
        .iter()
        .map(|(ssrc, frames)| {
            let loud = non_silent(frames);
            let dave: Vec<AudioFrame> = loud.iter().filter(|f| f.dave).cloned().collect();
            let measured = if dave.is_empty() { &loud } else { &dave };
            json!({
                "ssrc": ssrc,
                "user_id": users.get(ssrc).map(|u| u.to_string()),
                "frames": frames.len(),
                "non_silent_frames": loud.len(),
                "dave_frames": frames.iter().filter(|f| f.dave).count(),
                "plain_frames": frames.iter().filter(|f| !f.dave).count(),
                "measured_on": if dave.is_empty() { "all non-silent frames" } else { "DAVE-decrypted non-silent frames" },
                "dominant_frequency_hz": dominant_frequency(measured),
            })
        })
        .collect();
    let d = emu.dave_stats(guild);
    json!({
        "guild_id": guild.to_string(),
        "senders": senders,
        "dave": {
            "protocol_version": d.protocol_version,
            "frames_encrypted": d.frames_encrypted,
            "frames_decrypted": d.frames_decrypted,
            "decrypt_failures": d.decrypt_failures,
            "frames_plain": d.frames_plain,
            "frames_plain_in_group": d.frames_plain_in_group,
            "frames_silence": d.frames_silence,
            "listener_failures": d.listener_failures,
            "key_packages": d.key_packages,
            "welcomes": d.welcomes,
            "commits": d.commits,
            "transitions": d.transitions,
            "bot_in_group": d.bot_in_group,
            "listeners": d.listeners.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            "privacy_code": d.privacy_code,
        },
    })
}
