//! Emulated Discord REST API (`/api/v10`, plain HTTP).

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

use super::http::{HttpRequest, HttpResponse};
use super::payloads::{self, error_json, id_of};
use super::ratelimit::Verdict;
use super::state::{emu_debug, Reply, ReplySource, Shared, State};

pub fn handle(shared: &Arc<Shared>, req: HttpRequest) -> HttpResponse {
    let line = format!("{} {}", req.method, req.target);
    emu_debug!(
        "REST {line} {}",
        String::from_utf8_lossy(&req.body[..req.body.len().min(600)])
    );
    shared.with(|s| {
        s.requests.push(line.clone());
        let path = api_path(&req.path).to_owned();
        if let Some(resp) = s.outages.check(&req.method, &path, false) {
            return resp;
        }
        let limited = match s.rate_limits.check(&req.method, &path) {
            Verdict::Limited(resp) => return resp,
            Verdict::Go { route } => route,
        };
        let resp = route(s, &req);
        // A server error after the work was done: the answer is lost, not the message.
        if resp.status < 300 {
            if let Some(lost) = s.outages.check(&req.method, &path, true) {
                return lost;
            }
        }
        let resp = s.rate_limits.decorate(limited, resp);
        if resp.status == 404
            && resp
                .headers
                .iter()
                .any(|(k, _)| k == "X-Emulator-Unhandled")
        {
            s.unhandled.push(line.clone());
        }
        if resp.status >= 400 {
            emu_debug!(
                "REST {line} -> {} {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        resp
    })
}

fn not_found_route(req: &HttpRequest) -> HttpResponse {
    HttpResponse::json(
        404,
        &json!({"message": format!("404: Not Found (emulator has no route for {} {})", req.method, req.path), "code": 0}),
    )
    .header("X-Emulator-Unhandled", "1")
}

fn err(status: u16, code: u64, message: &str) -> HttpResponse {
    HttpResponse::json(status, &error_json(code, message, None))
}

fn form_err(s: &mut State, ctx: &str, path: &str, msg: &str) -> HttpResponse {
    s.protocol_error(format!("{ctx}: Discord would reject this: {path}: {msg}"));
    if path.is_empty() {
        return HttpResponse::json(400, &error_json(50006, msg, None));
    }
    HttpResponse::json(
        400,
        &error_json(50035, "Invalid Form Body", Some((path, msg))),
    )
}

/// A request's path without the `/api/v10` prefix.
fn api_path(path: &str) -> &str {
    path.strip_prefix("/api/v10")
        .or_else(|| path.strip_prefix("/api/v9"))
        .or_else(|| path.strip_prefix("/api"))
        .unwrap_or(path)
}

fn route(s: &mut State, req: &HttpRequest) -> HttpResponse {
    let path = api_path(&req.path);
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = req.method.as_str();

    // Interaction callbacks and webhook routes are authenticated by their token, not the bot token.
    let token_auth = matches!(seg.first(), Some(&"interactions") | Some(&"webhooks"));
    if !token_auth {
        let auth = req.header("authorization").unwrap_or("");
        if auth != format!("Bot {}", s.token) {
            s.protocol_error(format!(
                "{} {} with Authorization {:?}",
                req.method, req.path, auth
            ));
            return err(401, 0, "401: Unauthorized");
        }
    }

    match (m, seg.as_slice()) {
        ("GET", ["gateway"]) => HttpResponse::json(200, &json!({"url": s.gateway_url})),
        ("GET", ["gateway", "bot"]) => HttpResponse::json(200, &super::shards::gateway_bot_json(s)),
        ("GET", ["users", "@me"]) => HttpResponse::json(200, &payloads::bot_user_json(s)),
        ("GET", ["users", uid]) => {
            let Some(uid) = uid.parse::<u64>().ok() else {
                return err(404, 10013, "Unknown User");
            };
            if uid == s.bot_user_id {
                return HttpResponse::json(200, &payloads::bot_user_json(s));
            }
            match s.guilds.values().find_map(|g| g.member(uid)) {
                Some(m) => HttpResponse::json(200, &payloads::user_json(uid, &m.name, m.is_bot)),
                None => err(404, 10013, "Unknown User"),
            }
        }
        ("GET", ["users", "@me", "guilds"]) => HttpResponse::json(
            200,
            &json!(s
                .guilds
                .values()
                .map(
                    |g| json!({"id": g.id.to_string(), "name": g.name, "icon": null,
                "owner": false, "permissions": g.bot_permissions.to_string(), "features": []})
                )
                .collect::<Vec<_>>()),
        ),
        ("GET", ["oauth2", "applications", "@me"]) | ("GET", ["applications", "@me"]) => {
            HttpResponse::json(200, &payloads::application_info_json(s))
        }

        // ---- application commands
        ("PUT", ["applications", app, "commands"]) => register(s, req, app, None),
        ("PUT", ["applications", app, "guilds", g, "commands"]) => {
            let g = g.parse().ok();
            if g.is_none() {
                return err(400, 50035, "Invalid Form Body");
            }
            register(s, req, app, g)
        }
        ("GET", ["applications", _app, "commands"]) => list_commands(s, None),
        ("GET", ["applications", _app, "guilds", g, "commands"]) => {
            list_commands(s, g.parse().ok())
        }
        ("POST", ["applications", app, "commands"])
        | ("POST", ["applications", app, "guilds", _, "commands"]) => {
            let guild = seg.get(3).and_then(|g| g.parse().ok());
            let body = req.json();
            if app.parse::<u64>().ok() != Some(s.app_id) {
                return err(
                    403,
                    20012,
                    "You are not authorized to perform this action on this application",
                );
            }
            if let Err((path, msg)) = super::command_rules::validate(std::slice::from_ref(&body)) {
                let path = path.strip_prefix("0.").unwrap_or(&path).to_owned();
                return form_err(s, "command registration", &path, &msg);
            }
            let name = body["name"].as_str().unwrap_or("").to_string();
            let id = s.command_id(&name);
            // Upsert into the latest registration for that scope.
            let mut cmds = s
                .registrations
                .iter()
                .rev()
                .find(|(g, _)| *g == guild)
                .map(|(_, c)| c.clone())
                .unwrap_or_default();
            cmds.retain(|c| c["name"].as_str() != Some(&name));
            cmds.push(body.clone());
            s.registrations.push((guild, cmds));
            HttpResponse::json(
                201,
                &payloads::command_echo_json(s.app_id, guild, id, 1, &body),
            )
        }
        ("DELETE", ["applications", _, "commands", _])
        | ("DELETE", ["applications", _, "guilds", _, "commands", _]) => HttpResponse::no_content(),

        // ---- interactions
        ("POST", ["interactions", id, token, "callback"]) => callback(s, req, id, token),
        ("POST", ["webhooks", app, token]) => followup(s, req, app, token),
        (m @ ("GET" | "PATCH" | "DELETE"), ["webhooks", app, token, "messages", which]) => {
            webhook_message(s, req, m, app, token, which)
        }

        // ---- channels
        ("GET", ["channels", c]) => {
            let Some(cid) = c.parse::<u64>().ok() else {
                return err(404, 10003, "Unknown Channel");
            };
            match s
                .guild_of_channel(cid)
                .and_then(|g| payloads::channel_event_json(&s.guilds[&g], cid))
            {
                Some(v) => HttpResponse::json(200, &v),
                None => err(404, 10003, "Unknown Channel"),
            }
        }
        ("POST", ["channels", c, "messages"]) => channel_post(s, req, c),
        ("GET", ["channels", c, "messages"]) => {
            let cid = c.parse::<u64>().unwrap_or(0);
            let limit = req
                .query_param("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50usize);
            let mut msgs: Vec<Value> = s
                .channel_all
                .get(&cid)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| s.msgs.get(id))
                        .filter(|m| !m.deleted)
                        .map(|m| m.json.clone())
                        .collect()
                })
                .unwrap_or_default();
            msgs.reverse();
            msgs.truncate(limit);
            HttpResponse::json(200, &json!(msgs))
        }
        ("GET", ["channels", c, "messages", mid]) => {
            let (cid, mid) = (
                c.parse::<u64>().unwrap_or(0),
                mid.parse::<u64>().unwrap_or(0),
            );
            match s.msgs.get(&mid) {
                Some(m) if m.channel_id == cid && !m.deleted => HttpResponse::json(200, &m.json),
                _ => err(404, 10008, "Unknown Message"),
            }
        }
        ("PATCH", ["channels", c, "messages", mid]) => {
            let (cid, mid) = (
                c.parse::<u64>().unwrap_or(0),
                mid.parse::<u64>().unwrap_or(0),
            );
            let body = req.json();
            if s.msgs
                .get(&mid)
                .is_some_and(|m| m.channel_id == cid && m.deleted_by_others)
            {
                return err(404, 10008, "Unknown Message");
            }
            if !s
                .msgs
                .get(&mid)
                .is_some_and(|m| m.channel_id == cid && !m.deleted)
            {
                s.protocol_error(format!("PATCH of unknown message {mid} in channel {cid}"));
                return err(404, 10008, "Unknown Message");
            }
            if let Err((p, msg)) = payloads::validate_message(&body, false) {
                return form_err(
                    s,
                    &format!("PATCH /channels/{cid}/messages/{mid}"),
                    &p,
                    &msg,
                );
            }
            let json = s.edit_message(mid, &body).unwrap();
            s.channel_replies
                .entry(cid)
                .or_default()
                .push(Reply::from_message(&json, ReplySource::ChannelEdit));
            HttpResponse::json(200, &json)
        }
        ("DELETE", ["channels", c, "messages", mid]) => {
            let (cid, mid) = (
                c.parse::<u64>().unwrap_or(0),
                mid.parse::<u64>().unwrap_or(0),
            );
            match s.msgs.get_mut(&mid) {
                Some(m) if m.channel_id == cid && !m.deleted => {
                    m.deleted = true;
                    HttpResponse::no_content()
                }
                _ => err(404, 10008, "Unknown Message"),
            }
        }
        ("POST", ["channels", _c, "typing"]) => HttpResponse::no_content(),

        // ---- guilds
        ("GET", ["guilds", g]) => match g.parse::<u64>().ok().and_then(|g| s.guilds.get(&g)) {
            Some(g) => HttpResponse::json(200, &payloads::partial_guild_json(g)),
            None => err(404, 10004, "Unknown Guild"),
        },
        ("GET", ["guilds", g, "channels"]) => {
            match g.parse::<u64>().ok().and_then(|g| s.guilds.get(&g)) {
                Some(g) => HttpResponse::json(
                    200,
                    &json!(g
                        .channels
                        .iter()
                        .enumerate()
                        .map(|(i, c)| payloads::channel_json(g.id, c, i))
                        .collect::<Vec<_>>()),
                ),
                None => err(404, 10004, "Unknown Guild"),
            }
        }
        ("GET", ["guilds", g, "roles"]) => {
            match g.parse::<u64>().ok().and_then(|g| s.guilds.get(&g)) {
                Some(g) => HttpResponse::json(200, &payloads::roles_json(g)),
                None => err(404, 10004, "Unknown Guild"),
            }
        }
        ("GET", ["guilds", g, "members", u]) => {
            let Some(guild) = g.parse::<u64>().ok().and_then(|g| s.guilds.get(&g)) else {
                return err(404, 10004, "Unknown Guild");
            };
            let uid = if *u == "@me" {
                s.bot_user_id
            } else {
                u.parse().unwrap_or(0)
            };
            match guild.member(uid) {
                Some(m) => {
                    HttpResponse::json(200, &payloads::member_json(guild, m, s.bot_user_id, false))
                }
                None => err(404, 10007, "Unknown Member"),
            }
        }
        ("GET", ["guilds", g, "voice-states", u]) => {
            let Some(guild) = g.parse::<u64>().ok().and_then(|g| s.guilds.get(&g)) else {
                return err(404, 10004, "Unknown Guild");
            };
            let uid = if *u == "@me" {
                s.bot_user_id
            } else {
                u.parse().unwrap_or(0)
            };
            match guild.voice_states.get(&uid) {
                Some(vs) => HttpResponse::json(
                    200,
                    &payloads::voice_state_json(guild, uid, Some(vs), s.bot_user_id, true),
                ),
                None => err(404, 10065, "Unknown Voice State"),
            }
        }
        _ => not_found_route(req),
    }
}

fn register(s: &mut State, req: &HttpRequest, app: &str, guild: Option<u64>) -> HttpResponse {
    if app.parse::<u64>().ok() != Some(s.app_id) {
        s.protocol_error(format!(
            "command registration for application {app}, expected {}",
            s.app_id
        ));
        return err(
            403,
            20012,
            "You are not authorized to perform this action on this application",
        );
    }
    if let Some(g) = guild {
        if !s.guilds.contains_key(&g) {
            s.protocol_error(format!("command registration for unknown guild {g}"));
            return err(403, 50001, "Missing Access");
        }
    }
    let body = req.json();
    let Some(cmds) = body.as_array().cloned() else {
        return err(400, 50035, "Invalid Form Body");
    };
    if let Err((path, msg)) = super::command_rules::validate(&cmds) {
        return form_err(s, "command registration", &path, &msg);
    }
    let echo: Vec<Value> = cmds
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("").to_string();
            let id = s.command_id(&name);
            let version = s.snowflake();
            payloads::command_echo_json(s.app_id, guild, id, version, c)
        })
        .collect();
    s.registrations.push((guild, cmds));
    emu_debug!("registered {} commands (guild {guild:?})", echo.len());
    HttpResponse::json(200, &json!(echo))
}

fn list_commands(s: &mut State, guild: Option<u64>) -> HttpResponse {
    let cmds = s
        .registrations
        .iter()
        .rev()
        .find(|(g, _)| *g == guild)
        .map(|(_, c)| c.clone())
        .unwrap_or_default();
    let app = s.app_id;
    let echo: Vec<Value> = cmds
        .iter()
        .map(|c| {
            let id = s.command_id(c["name"].as_str().unwrap_or(""));
            payloads::command_echo_json(app, guild, id, 1, c)
        })
        .collect();
    HttpResponse::json(200, &json!(echo))
}

fn channel_post(s: &mut State, req: &HttpRequest, c: &str) -> HttpResponse {
    let Some(cid) = c.parse::<u64>().ok() else {
        return err(404, 10003, "Unknown Channel");
    };
    let Some(gid) = s.guild_of_channel(cid) else {
        if let Some(&(status, code, message)) = s.gone_channels.get(&cid) {
            return err(status, code, message);
        }
        s.protocol_error(format!("POST /channels/{cid}/messages: unknown channel"));
        return err(404, 10003, "Unknown Channel");
    };
    if s.guilds[&gid]
        .channel(cid)
        .is_some_and(|c| c.kind != 0 && c.kind != 2)
    {
        return err(400, 50008, "Cannot send messages in a non-text channel");
    }
    if let Err(why) = super::perms::may_post(s, gid, cid) {
        super::state::emu_debug!("{why}: 403 50013");
        s.permission_refusals
            .push(format!("POST /channels/{cid}/messages"));
        return err(403, 50013, "Missing Permissions");
    }
    let body = req.json();
    if let Err((p, msg)) = payloads::validate_message(&body, true) {
        return form_err(s, &format!("POST /channels/{cid}/messages"), &p, &msg);
    }
    // "enforce_nonce": a repeat of a nonce this channel saw returns the message it made.
    let nonce = match &body["nonce"] {
        Value::String(n) => Some(n.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
    .filter(|_| body["enforce_nonce"].as_bool() == Some(true));
    if let Some(id) = nonce.as_ref().and_then(|n| s.nonces.get(&(cid, n.clone()))) {
        if let Some(m) = s.msgs.get(id).filter(|m| !m.deleted) {
            return HttpResponse::json(200, &m.json.clone());
        }
    }
    let flags = body["flags"].as_u64().unwrap_or(0) & !64; // ephemeral is interaction-only
    let json = s.create_message(
        cid,
        &body,
        flags,
        if body.get("message_reference").is_some() {
            19
        } else {
            0
        },
        false,
    );
    let id = id_of(&json["id"]).unwrap();
    if let Some(n) = nonce {
        s.nonces.insert((cid, n), id);
    }
    s.channel_posts.entry(cid).or_default().push(id);
    s.channel_replies
        .entry(cid)
        .or_default()
        .push(Reply::from_message(&json, ReplySource::ChannelMessage));
    HttpResponse::json(200, &json)
}

fn callback(s: &mut State, req: &HttpRequest, id: &str, token: &str) -> HttpResponse {
    let Some(iid) = id.parse::<u64>().ok() else {
        return err(404, 10062, "Unknown interaction");
    };
    let body = req.json();
    let deadline = s.interaction_deadline;
    let Some(rec) = s.interactions.get(&iid).cloned() else {
        s.protocol_error(format!("callback for unknown interaction {iid}"));
        return err(404, 10062, "Unknown interaction");
    };
    let ctx = format!("interaction {} (/{}) callback", iid, rec.name);
    if rec.token != token {
        s.protocol_error(format!("{ctx}: wrong token"));
        return err(401, 50027, "Invalid Webhook Token");
    }
    if rec.callback_type.is_some() {
        let msg = format!(
            "{ctx}: interaction has already been acknowledged (second callback {})",
            body["type"]
        );
        s.protocol_error(msg.clone());
        s.interactions.get_mut(&iid).unwrap().errors.push(msg);
        return err(400, 40060, "Interaction has already been acknowledged.");
    }
    let elapsed = rec.created.elapsed();
    if elapsed > deadline {
        let msg = format!("{ctx}: arrived after {elapsed:?} (> {deadline:?}): Discord answers 404 Unknown interaction; defer first");
        s.protocol_error(msg.clone());
        s.interactions.get_mut(&iid).unwrap().errors.push(msg);
        return err(404, 10062, "Unknown interaction");
    }
    let ty = body["type"].as_u64().unwrap_or(0) as u8;
    let data = body["data"].clone();
    let allowed: &[u8] = match rec.kind {
        2 => &[4, 5, 9],
        3 => &[4, 5, 6, 7, 9],
        4 => &[8],
        _ => &[],
    };
    if !allowed.contains(&ty) {
        let msg = format!(
            "{ctx}: response type {ty} is invalid for interaction type {}",
            rec.kind
        );
        s.protocol_error(msg.clone());
        s.interactions.get_mut(&iid).unwrap().errors.push(msg);
        return err(400, 50035, "Invalid Form Body");
    }
    let mut resource_msg = Value::Null;
    match ty {
        4 => {
            if let Err((p, m)) = payloads::validate_message(&data, true) {
                let path = if p.is_empty() {
                    String::new()
                } else {
                    format!("data.{p}")
                };
                let r = form_err(s, &ctx, &path, &m);
                s.interactions
                    .get_mut(&iid)
                    .unwrap()
                    .errors
                    .push(format!("{ctx}: {p}: {m}"));
                return r;
            }
            let flags = data["flags"].as_u64().unwrap_or(0) & (64 | 4 | 4096);
            let json = s.create_message(
                rec.channel_id,
                &data,
                flags,
                if rec.kind == 2 { 20 } else { 19 },
                true,
            );
            let mid = id_of(&json["id"]).unwrap();
            let r = s.interactions.get_mut(&iid).unwrap();
            r.original_id = Some(mid);
            r.replies
                .push(Reply::from_message(&json, ReplySource::Callback(4)));
            resource_msg = json;
        }
        5 => {
            let eph = data["flags"].as_u64().unwrap_or(0) & 64 != 0;
            // The "thinking" placeholder that later becomes the original response.
            let json = s.create_message(
                rec.channel_id,
                &json!({}),
                if eph { 64 | 128 } else { 128 },
                if rec.kind == 2 { 20 } else { 19 },
                true,
            );
            let mid = id_of(&json["id"]).unwrap();
            let r = s.interactions.get_mut(&iid).unwrap();
            r.defer_ephemeral = eph;
            r.original_id = Some(mid);
            resource_msg = json;
        }
        6 => {
            let r = s.interactions.get_mut(&iid).unwrap();
            r.original_id = r.message_id;
        }
        7 => {
            if let Err((p, m)) = payloads::validate_message(&data, false) {
                return form_err(s, &ctx, &format!("data.{p}"), &m);
            }
            let mid = rec.message_id.unwrap_or(0);
            let Some(json) = s.edit_message(mid, &data) else {
                s.protocol_error(format!("{ctx}: update of a deleted/unknown message {mid}"));
                return err(404, 10008, "Unknown Message");
            };
            let r = s.interactions.get_mut(&iid).unwrap();
            r.original_id = Some(mid);
            r.replies
                .push(Reply::from_message(&json, ReplySource::Callback(7)));
            resource_msg = json;
        }
        8 => {
            if let Err((p, m)) = payloads::validate_choices(&data) {
                let r = form_err(s, &ctx, &p, &m);
                s.interactions
                    .get_mut(&iid)
                    .unwrap()
                    .errors
                    .push(format!("{ctx}: {p}: {m}"));
                return r;
            }
            let r = s.interactions.get_mut(&iid).unwrap();
            r.choices = Some(data["choices"].as_array().cloned().unwrap_or_default());
        }
        _ => {}
    }
    let r = s.interactions.get_mut(&iid).unwrap();
    r.callback_type = Some(ty);
    r.callback_data = Some(data);
    r.callback_at = Some(Instant::now());
    if req.query_param("with_response").as_deref() == Some("true") {
        let mut resource = json!({"type": ty});
        if !resource_msg.is_null() {
            resource["message"] = resource_msg.clone();
        }
        return HttpResponse::json(
            200,
            &json!({
                "interaction": {
                    "id": iid.to_string(), "type": rec.kind, "activity_instance_id": null,
                    "response_message_id": id_of(&resource_msg["id"]).map(|i| i.to_string()),
                    "response_message_loading": ty == 5,
                    "response_message_ephemeral": resource_msg["flags"].as_u64().unwrap_or(0) & 64 != 0,
                },
                "resource": resource,
            }),
        );
    }
    HttpResponse::no_content()
}

fn find_by_token(s: &mut State, app: &str, token: &str, ctx: &str) -> Result<u64, HttpResponse> {
    if app.parse::<u64>().ok() != Some(s.app_id) {
        s.protocol_error(format!("{ctx}: application id {app} is not {}", s.app_id));
        return Err(err(404, 10015, "Unknown Webhook"));
    }
    match s.interaction_by_token.get(token).copied() {
        // "Interaction tokens are valid for 15 minutes": after that the webhook is gone.
        Some(id) if s.interactions[&id].created.elapsed() >= s.interaction_token_lifetime => {
            s.expired_token_uses
                .push(format!("{ctx} of interaction {id}"));
            Err(err(401, 50027, "Invalid Webhook Token"))
        }
        Some(id) => Ok(id),
        None => {
            s.protocol_error(format!("{ctx}: unknown interaction token"));
            Err(err(401, 50027, "Invalid Webhook Token"))
        }
    }
}

fn followup(s: &mut State, req: &HttpRequest, app: &str, token: &str) -> HttpResponse {
    let iid = match find_by_token(s, app, token, "follow-up") {
        Ok(i) => i,
        Err(r) => return r,
    };
    let rec = s.interactions[&iid].clone();
    let ctx = format!("interaction {iid} (/{}) follow-up", rec.name);
    if rec.callback_type.is_none() {
        let msg = format!("{ctx}: sent before the interaction was acknowledged");
        s.protocol_error(msg.clone());
        s.interactions.get_mut(&iid).unwrap().errors.push(msg);
        return err(404, 10015, "Unknown Webhook");
    }
    let body = req.json();
    if let Err((p, m)) = payloads::validate_message(&body, true) {
        s.interactions
            .get_mut(&iid)
            .unwrap()
            .errors
            .push(format!("{ctx}: {p}: {m}"));
        return form_err(s, &ctx, &p, &m);
    }
    let original_alive = rec
        .original_id
        .and_then(|mid| s.msgs.get(&mid))
        .is_some_and(|m| !m.deleted);
    // Once the deferred original is deleted, a follow-up is a new message with its own flags.
    let json = if rec.callback_type == Some(5) && !rec.first_followup_done && original_alive {
        // Discord: the first follow-up after a deferred response edits the "thinking" original
        // (keeping its ephemeral state).
        let mid = rec.original_id.unwrap();
        let mut j = s.edit_message(mid, &body).unwrap_or_else(|| json!({}));
        j["edited_timestamp"] = Value::Null;
        if let Some(m) = s.msgs.get_mut(&mid) {
            m.json["edited_timestamp"] = Value::Null;
        }
        j
    } else {
        let flags = body["flags"].as_u64().unwrap_or(0) & (64 | 4 | 4096);
        s.create_message(rec.channel_id, &body, flags, 0, true)
    };
    let mid = id_of(&json["id"]).unwrap_or(0);
    let r = s.interactions.get_mut(&iid).unwrap();
    r.first_followup_done = true;
    r.followup_ids.push(mid);
    r.replies
        .push(Reply::from_message(&json, ReplySource::Followup));
    HttpResponse::json(200, &json)
}

fn webhook_message(
    s: &mut State,
    req: &HttpRequest,
    m: &str,
    app: &str,
    token: &str,
    which: &str,
) -> HttpResponse {
    let iid = match find_by_token(s, app, token, "webhook message") {
        Ok(i) => i,
        Err(r) => return r,
    };
    let rec = s.interactions[&iid].clone();
    let ctx = format!("interaction {iid} (/{}) {m} messages/{which}", rec.name);
    let original = which == "@original";
    let mid = if original {
        if rec.callback_type.is_none() {
            let msg = format!("{ctx}: before the interaction was acknowledged");
            s.protocol_error(msg.clone());
            s.interactions.get_mut(&iid).unwrap().errors.push(msg);
            return err(404, 10008, "Unknown Message");
        }
        match rec.original_id {
            Some(id) => id,
            None => return err(404, 10008, "Unknown Message"),
        }
    } else {
        match which.parse::<u64>() {
            Ok(id) if rec.followup_ids.contains(&id) || rec.original_id == Some(id) => id,
            _ => {
                s.protocol_error(format!("{ctx}: not a message of this interaction"));
                return err(404, 10008, "Unknown Message");
            }
        }
    };
    match m {
        "GET" => match s.msgs.get(&mid) {
            Some(msg) if !msg.deleted => HttpResponse::json(200, &msg.json),
            _ => err(404, 10008, "Unknown Message"),
        },
        "DELETE" => match s.msgs.get_mut(&mid) {
            Some(msg) if !msg.deleted => {
                msg.deleted = true;
                HttpResponse::no_content()
            }
            _ => err(404, 10008, "Unknown Message"),
        },
        _ => {
            let body = req.json();
            if let Err((p, e)) = payloads::validate_message(&body, false) {
                s.interactions
                    .get_mut(&iid)
                    .unwrap()
                    .errors
                    .push(format!("{ctx}: {p}: {e}"));
                return form_err(s, &ctx, &p, &e);
            }
            let Some(json) = s.edit_message(mid, &body) else {
                return err(404, 10008, "Unknown Message");
            };
            if json["content"].as_str().unwrap_or("").is_empty()
                && json["embeds"].as_array().is_none_or(|a| a.is_empty())
                && json["components"].as_array().is_none_or(|a| a.is_empty())
            {
                s.protocol_error(format!("{ctx}: edit leaves the message empty"));
            }
            let r = s.interactions.get_mut(&iid).unwrap();
            // Discord: an edit of a deferred "thinking" original ends the thinking; a
            // follow-up after it is a message of its own.
            if original {
                r.first_followup_done = true;
            }
            r.replies.push(Reply::from_message(
                &json,
                if original {
                    ReplySource::EditOriginal
                } else {
                    ReplySource::EditFollowup
                },
            ));
            HttpResponse::json(200, &json)
        }
    }
}
