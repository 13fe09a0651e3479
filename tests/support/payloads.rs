//! JSON builders for everything the emulator sends to the bot. All are `pub` so
//! `tests/emulator.rs` can check that each one parses with serenity's own model types.

use serde_json::{json, Map, Value};

use super::state::{
    iso8601, now_ms, ChannelRec, GuildState, InteractionRec, MemberRec, State, VoiceStateRec,
    INTENT_GUILD_MEMBERS,
};

// Permission bits.
pub const ADD_REACTIONS: u64 = 1 << 6;
pub const VIEW_CHANNEL: u64 = 1 << 10;
pub const SEND_MESSAGES: u64 = 1 << 11;
pub const EMBED_LINKS: u64 = 1 << 14;
pub const ATTACH_FILES: u64 = 1 << 15;
pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
pub const USE_EXTERNAL_EMOJIS: u64 = 1 << 18;
pub const CONNECT: u64 = 1 << 20;
pub const SPEAK: u64 = 1 << 21;
pub const USE_VAD: u64 = 1 << 25;
pub const USE_APPLICATION_COMMANDS: u64 = 1 << 31;
pub const ADMINISTRATOR: u64 = 1 << 3;

/// What an ordinary member gets (the brief's 3263488 plus reactions, VAD and slash commands).
pub const MEMBER_PERMISSIONS: u64 = VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | CONNECT
    | SPEAK
    | ADD_REACTIONS
    | USE_VAD
    | USE_APPLICATION_COMMANDS;

/// Discord reports every permission bit for administrators (computed permissions), not just `8`.
pub fn all_permissions() -> u64 {
    serenity::model::permissions::Permissions::all().bits()
}

/// Default bot permissions: what a music bot is normally invited with.
pub const BOT_PERMISSIONS: u64 = MEMBER_PERMISSIONS | USE_EXTERNAL_EMOJIS;

/// Parses a snowflake given as a JSON string or number.
pub fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

pub fn everyone_role_id(guild_id: u64) -> u64 {
    guild_id
}
pub fn admin_role_id(guild_id: u64) -> u64 {
    guild_id ^ (1 << 61)
}
pub fn bot_role_id(guild_id: u64) -> u64 {
    guild_id ^ (1 << 60)
}
/// The guild owner is a synthetic user that is not a member (so nobody gets owner powers by
/// accident).
pub fn owner_id(guild_id: u64) -> u64 {
    guild_id ^ (1 << 59)
}

pub fn user_json(id: u64, name: &str, is_bot: bool) -> Value {
    json!({
        "id": id.to_string(),
        "username": name,
        "global_name": if is_bot { Value::Null } else { Value::String(name.to_string()) },
        "discriminator": "0",
        "avatar": null,
        "bot": is_bot,
        "system": false,
        "public_flags": 0,
        "flags": 0,
        "banner": null,
        "accent_color": null,
        "avatar_decoration_data": null,
    })
}

pub fn bot_user_json(state: &State) -> Value {
    let mut u = user_json(state.bot_user_id, "encore-test-bot", true);
    u["verified"] = json!(true);
    u["mfa_enabled"] = json!(false);
    u["email"] = Value::Null;
    u["locale"] = json!("en-US");
    u
}

pub fn member_permissions(guild: &GuildState, m: &MemberRec, bot_user_id: u64) -> u64 {
    if let Some(p) = m.permissions {
        return p;
    }
    if m.user_id == bot_user_id {
        return guild.bot_permissions;
    }
    if m.is_admin {
        all_permissions()
    } else {
        MEMBER_PERMISSIONS
    }
}

/// A guild member object. `with_permissions` adds `permissions` (interaction payloads).
pub fn member_json(
    guild: &GuildState,
    m: &MemberRec,
    bot_user_id: u64,
    with_permissions: bool,
) -> Value {
    let mut roles = Vec::new();
    if m.is_admin {
        roles.push(admin_role_id(guild.id).to_string());
    }
    if m.user_id == bot_user_id {
        roles.push(bot_role_id(guild.id).to_string());
    }
    roles.extend(m.roles.iter().map(u64::to_string));
    let mut v = json!({
        "user": user_json(m.user_id, &m.name, m.is_bot),
        "nick": null,
        "avatar": null,
        "banner": null,
        "roles": roles,
        "joined_at": guild.joined_at,
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
    });
    if with_permissions {
        v["permissions"] = json!(member_permissions(guild, m, bot_user_id).to_string());
    }
    v
}

pub fn role_json(id: u64, name: &str, permissions: u64, position: i64, managed: bool) -> Value {
    json!({
        "id": id.to_string(),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": position,
        "permissions": permissions.to_string(),
        "managed": managed,
        "mentionable": false,
        "flags": 0,
    })
}

pub fn roles_json(guild: &GuildState) -> Value {
    json!([
        role_json(
            everyone_role_id(guild.id),
            "@everyone",
            MEMBER_PERMISSIONS,
            0,
            false
        ),
        role_json(
            admin_role_id(guild.id),
            "Admin",
            ADMINISTRATOR | MEMBER_PERMISSIONS,
            2,
            false
        ),
        role_json(
            bot_role_id(guild.id),
            "encore",
            guild.bot_permissions,
            1,
            true
        ),
    ])
}

pub fn channel_json(guild_id: u64, c: &ChannelRec, position: usize) -> Value {
    let mut v = json!({
        "id": c.id.to_string(),
        "type": c.kind,
        "guild_id": guild_id.to_string(),
        "name": c.name,
        "position": position,
        "permission_overwrites": super::perms::overwrites_json(c),
        "parent_id": null,
        "nsfw": false,
        "flags": 0,
    });
    if c.kind == 2 {
        v["bitrate"] = json!(64000);
        v["user_limit"] = json!(c.user_limit);
        v["rtc_region"] = Value::Null;
        v["rate_limit_per_user"] = json!(0);
        v["last_message_id"] = Value::Null;
    } else {
        v["topic"] = Value::Null;
        v["rate_limit_per_user"] = json!(0);
        v["last_message_id"] = Value::Null;
    }
    v
}

pub fn voice_state_json(
    guild: &GuildState,
    user_id: u64,
    vs: Option<&VoiceStateRec>,
    bot_user_id: u64,
    with_member: bool,
) -> Value {
    let mut v = json!({
        "guild_id": guild.id.to_string(),
        "channel_id": vs.map(|v| Value::String(v.channel_id.to_string())).unwrap_or(Value::Null),
        "user_id": user_id.to_string(),
        "session_id": vs.map(|v| v.session_id.clone()).unwrap_or_else(|| "none".into()),
        "deaf": false,
        "mute": false,
        "self_deaf": vs.map(|v| v.self_deaf).unwrap_or(false),
        "self_mute": vs.map(|v| v.self_mute).unwrap_or(false),
        "self_stream": false,
        "self_video": false,
        "suppress": false,
        "request_to_speak_timestamp": null,
    });
    if with_member {
        if let Some(m) = guild.member(user_id) {
            v["member"] = member_json(guild, m, bot_user_id, false);
        }
    }
    v
}

/// Fields common to GUILD_CREATE and `GET /guilds/{id}` (PartialGuild).
fn guild_base(guild: &GuildState) -> Value {
    json!({
        "id": guild.id.to_string(),
        "name": guild.name,
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": owner_id(guild.id).to_string(),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": roles_json(guild),
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": null,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null,
        "incidents_data": null,
    })
}

pub fn partial_guild_json(guild: &GuildState) -> Value {
    guild_base(guild)
}

/// The GUILD_CREATE `d`. Without the GUILD_MEMBERS intent, `members` holds only the bot and the
/// users in voice channels (as Discord does).
pub fn guild_create_json(guild: &GuildState, bot_user_id: u64, intents: u64) -> Value {
    let mut v = guild_base(guild);
    let all_members = intents & INTENT_GUILD_MEMBERS != 0;
    let members: Vec<Value> = guild
        .members
        .iter()
        .filter(|m| {
            all_members || m.user_id == bot_user_id || guild.voice_states.contains_key(&m.user_id)
        })
        .map(|m| member_json(guild, m, bot_user_id, false))
        .collect();
    let channels: Vec<Value> = guild
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| channel_json(guild.id, c, i))
        .collect();
    let voice_states: Vec<Value> = guild
        .voice_states
        .iter()
        .map(|(uid, vs)| {
            let mut s = voice_state_json(guild, *uid, Some(vs), bot_user_id, false);
            // Discord omits guild_id inside GUILD_CREATE voice states.
            s.as_object_mut().unwrap().remove("guild_id");
            s
        })
        .collect();
    let o = v.as_object_mut().unwrap();
    o.insert("joined_at".into(), json!(guild.joined_at));
    o.insert("large".into(), json!(false));
    o.insert("unavailable".into(), json!(false));
    o.insert("member_count".into(), json!(guild.members.len()));
    o.insert("members".into(), json!(members));
    o.insert("channels".into(), json!(channels));
    o.insert("voice_states".into(), json!(voice_states));
    o.insert("threads".into(), json!([]));
    o.insert("presences".into(), json!([]));
    o.insert("stage_instances".into(), json!([]));
    o.insert("guild_scheduled_events".into(), json!([]));
    o.insert("soundboard_sounds".into(), json!([]));
    v
}

/// READY for a session of `shard` (`(shard_id, num_shards)`): it lists the guilds it owns.
pub fn ready_json(state: &State, session_id: &str, shard: (u32, u32)) -> Value {
    let guilds: Vec<Value> = state
        .guilds
        .keys()
        .filter(|id| super::shards::guild_on_shard(**id, shard.1) == shard.0)
        .map(|id| json!({"id": id.to_string(), "unavailable": true}))
        .collect();
    json!({
        "v": 10,
        "user": bot_user_json(state),
        "guilds": guilds,
        "session_id": session_id,
        "resume_gateway_url": state.gateway_url,
        "shard": [shard.0, shard.1],
        "application": {"id": state.app_id.to_string(), "flags": 0},
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "geo_ordered_rtc_regions": ["local"],
        "guild_join_requests": [],
        "user_settings": {},
        "auth_session_id_hash": "x",
        "session_type": "normal",
    })
}

pub fn voice_server_update_json(guild_id: u64, token: &str, endpoint: &str) -> Value {
    json!({"token": token, "guild_id": guild_id.to_string(), "endpoint": endpoint})
}

pub fn guild_delete_json(guild_id: u64) -> Value {
    json!({"id": guild_id.to_string()})
}

pub fn application_info_json(state: &State) -> Value {
    json!({
        "id": state.app_id.to_string(),
        "name": "encore-test-bot",
        "icon": null,
        "description": "emulated application",
        "summary": "",
        "type": null,
        "rpc_origins": [],
        "bot_public": true,
        "bot_require_code_grant": false,
        "terms_of_service_url": null,
        "privacy_policy_url": null,
        "owner": match &state.app_owner {
            Some((id, name)) => user_json(*id, name, false),
            None => user_json(owner_id(1 << 40), "app-owner", false),
        },
        "verify_key": "0".repeat(64),
        "team": null,
        "guild_id": null,
        "flags": 0,
        "tags": [],
        "hook": true,
        "is_monetized": false,
        "bot": bot_user_json(state),
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "role_connections_verification_url": null,
        "approximate_guild_count": state.guilds.len(),
        "approximate_user_install_count": 0,
        "integration_types_config": {"0": {}},
    })
}

/// Fills what Discord adds to a registered command (ids, version, defaults).
pub fn command_echo_json(
    app_id: u64,
    guild_id: Option<u64>,
    id: u64,
    version: u64,
    cmd: &Value,
) -> Value {
    fn fill_options(opts: &mut Value) {
        if let Some(arr) = opts.as_array_mut() {
            for o in arr {
                if o.get("description").is_none() {
                    o["description"] = json!("");
                }
                if let Some(sub) = o.get_mut("options") {
                    fill_options(sub);
                }
            }
        }
    }
    let mut c = cmd.clone();
    if !c.is_object() {
        c = json!({});
    }
    c["id"] = json!(id.to_string());
    c["application_id"] = json!(app_id.to_string());
    c["version"] = json!(version.to_string());
    if c.get("type").is_none_or(Value::is_null) {
        c["type"] = json!(1);
    }
    if c.get("description").is_none_or(Value::is_null) {
        c["description"] = json!("");
    }
    if c.get("default_member_permissions").is_none() {
        c["default_member_permissions"] = Value::Null;
    }
    if c.get("nsfw").is_none() {
        c["nsfw"] = json!(false);
    }
    if let Some(g) = guild_id {
        c["guild_id"] = json!(g.to_string());
    }
    match c.get_mut("options") {
        Some(o) => fill_options(o),
        None => c["options"] = json!([]),
    }
    c
}

fn normalize_embed(e: &Value) -> Value {
    let mut e = e.clone();
    if let Some(o) = e.as_object_mut() {
        o.entry("type").or_insert(json!("rich"));
        if let Some(fields) = o.get_mut("fields").and_then(Value::as_array_mut) {
            for f in fields {
                if f.get("inline").is_none() {
                    f["inline"] = json!(false);
                }
            }
        }
        for k in ["image", "thumbnail"] {
            if let Some(img) = o.get_mut(k) {
                if img.get("url").is_some() && img.get("proxy_url").is_none() {
                    img["proxy_url"] = img["url"].clone();
                }
            }
        }
    }
    e
}

/// A full Message object as Discord returns it.
#[allow(clippy::too_many_arguments)]
pub fn message_json(
    state: &State,
    id: u64,
    channel_id: u64,
    guild_id: Option<u64>,
    payload: &Value,
    flags: u64,
    kind: u8,
    webhook: bool,
) -> Value {
    let embeds: Vec<Value> = payload["embeds"]
        .as_array()
        .map(|a| a.iter().map(normalize_embed).collect())
        .unwrap_or_default();
    let mut author = user_json(state.bot_user_id, "encore-test-bot", true);
    author["discriminator"] = json!("0000");
    let mut m = json!({
        "id": id.to_string(),
        "channel_id": channel_id.to_string(),
        "author": author,
        "content": payload["content"].as_str().unwrap_or(""),
        "timestamp": iso8601(now_ms()),
        "edited_timestamp": null,
        "tts": payload["tts"].as_bool().unwrap_or(false),
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "mention_channels": [],
        "attachments": [],
        "embeds": embeds,
        "reactions": [],
        "pinned": false,
        "type": kind,
        "flags": flags,
        "components": payload["components"].as_array().cloned().unwrap_or_default(),
        "sticker_items": [],
        "position": null,
    });
    if let Some(g) = guild_id {
        m["guild_id"] = json!(g.to_string());
    }
    if webhook {
        m["webhook_id"] = json!(state.app_id.to_string());
        m["application_id"] = json!(state.app_id.to_string());
    }
    m
}

/// Applies a PATCH payload to a stored Message JSON.
pub fn apply_edit(msg: &mut Value, payload: &Value) {
    if let Some(c) = payload.get("content") {
        msg["content"] = if c.is_null() { json!("") } else { c.clone() };
    }
    if let Some(e) = payload.get("embeds") {
        msg["embeds"] = json!(e
            .as_array()
            .map(|a| a.iter().map(normalize_embed).collect::<Vec<_>>())
            .unwrap_or_default());
    }
    if let Some(c) = payload.get("components") {
        msg["components"] = if c.is_null() { json!([]) } else { c.clone() };
    }
    if let Some(a) = payload.get("attachments") {
        if a.as_array().is_some_and(|a| a.is_empty()) {
            msg["attachments"] = json!([]);
        }
    }
    // An edit clears the LOADING flag of a deferred original; ephemeral stays.
    let flags = msg["flags"].as_u64().unwrap_or(0) & !128;
    msg["flags"] = json!(flags);
    msg["edited_timestamp"] = json!(iso8601(now_ms()));
}

fn partial_channel_json(guild: &GuildState, channel_id: u64) -> Value {
    let c = guild.channel(channel_id);
    json!({
        "id": channel_id.to_string(),
        "name": c.map(|c| c.name.clone()).unwrap_or_else(|| "unknown".into()),
        "type": c.map(|c| c.kind).unwrap_or(0),
        "guild_id": guild.id.to_string(),
        "permissions": all_permissions().to_string(),
        "parent_id": null,
        "nsfw": false,
        "flags": 0,
        "position": 0,
        "permission_overwrites": [],
    })
}

/// The common part of every INTERACTION_CREATE `d`.
pub fn interaction_base(state: &State, rec: &InteractionRec) -> Value {
    let guild = &state.guilds[&rec.guild_id];
    let member = guild
        .member(rec.user_id)
        .map(|m| member_json(guild, m, state.bot_user_id, true))
        .unwrap_or(Value::Null);
    json!({
        "id": rec.id.to_string(),
        "application_id": state.app_id.to_string(),
        "type": rec.kind,
        "guild_id": rec.guild_id.to_string(),
        "guild": {"id": rec.guild_id.to_string(), "locale": "en-US", "features": []},
        "channel": partial_channel_json(guild, rec.channel_id),
        "channel_id": rec.channel_id.to_string(),
        "member": member,
        "token": rec.token,
        "version": 1,
        "app_permissions": guild.bot_permissions.to_string(),
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": rec.guild_id.to_string()},
        "context": 0,
        "attachment_size_limit": 10_485_760,
    })
}

/// `data.resolved` for USER (6) options (users + members), recursively over sub-commands.
fn resolved_json(state: &State, guild: &GuildState, options: &Value) -> Value {
    let mut users = Map::new();
    let mut members = Map::new();
    fn walk(opts: &Value, out: &mut Vec<u64>) {
        for o in opts.as_array().into_iter().flatten() {
            if o["type"].as_u64() == Some(6) {
                if let Some(id) = id_of(&o["value"]) {
                    out.push(id);
                }
            }
            walk(&o["options"], out);
        }
    }
    let mut ids = Vec::new();
    walk(options, &mut ids);
    for id in ids {
        if let Some(m) = guild.member(id) {
            users.insert(id.to_string(), user_json(id, &m.name, m.is_bot));
            let mut mj = member_json(guild, m, state.bot_user_id, true);
            mj.as_object_mut().unwrap().remove("user");
            members.insert(id.to_string(), mj);
        } else {
            users.insert(id.to_string(), user_json(id, &format!("user{id}"), false));
        }
    }
    let mut r = json!({});
    if !users.is_empty() {
        r["users"] = Value::Object(users);
    }
    if !members.is_empty() {
        r["members"] = Value::Object(members);
    }
    r
}

/// INTERACTION_CREATE `d` for an application command (type 2) or autocomplete (type 4).
pub fn command_interaction_json(
    state: &State,
    rec: &InteractionRec,
    command_id: u64,
    options: &Value,
) -> Value {
    let guild = &state.guilds[&rec.guild_id];
    let mut v = interaction_base(state, rec);
    let opts = if options.is_array() {
        options.clone()
    } else {
        json!([])
    };
    v["data"] = json!({
        "id": command_id.to_string(),
        "name": rec.name,
        "type": 1,
        "options": opts,
        "resolved": resolved_json(state, guild, &opts),
        "guild_id": rec.guild_id.to_string(),
    });
    v
}

/// INTERACTION_CREATE `d` for a message component (type 3). `values` for select menus.
pub fn component_interaction_json(
    state: &State,
    rec: &InteractionRec,
    message: &Value,
    custom_id: &str,
    component_type: u8,
    values: Option<&[String]>,
) -> Value {
    let mut v = interaction_base(state, rec);
    v["data"] = json!({"custom_id": custom_id, "component_type": component_type});
    if let Some(vals) = values {
        v["data"]["values"] = json!(vals);
    }
    v["message"] = message.clone();
    v
}

/// Marks the last option (recursively the innermost) as focused if none is.
pub fn ensure_focused(options: &mut Value) {
    fn any_focused(v: &Value) -> bool {
        v.as_array()
            .into_iter()
            .flatten()
            .any(|o| o["focused"].as_bool() == Some(true) || any_focused(&o["options"]))
    }
    if any_focused(options) {
        return;
    }
    fn mark_last(v: &mut Value) {
        if let Some(last) = v.as_array_mut().and_then(|a| a.last_mut()) {
            if last
                .get("options")
                .is_some_and(|o| o.as_array().is_some_and(|a| !a.is_empty()))
            {
                mark_last(&mut last["options"]);
            } else if last.get("value").is_some() {
                last["focused"] = json!(true);
            }
        }
    }
    mark_last(options);
}

/// Voice state helpers used by both the gateway and the public API.
pub fn guild_member_add_json(guild: &GuildState, m: &MemberRec, bot_user_id: u64) -> Value {
    let mut v = member_json(guild, m, bot_user_id, false);
    v["guild_id"] = json!(guild.id.to_string());
    v
}

pub fn channel_event_json(guild: &GuildState, channel_id: u64) -> Option<Value> {
    let pos = guild.channels.iter().position(|c| c.id == channel_id)?;
    Some(channel_json(guild.id, &guild.channels[pos], pos))
}

// ---------------------------------------------------------------------------------------------
// Validation of what the bot sends (Discord's limits). Returns Discord-style error bodies.
// ---------------------------------------------------------------------------------------------

/// `Err((path, message))` for the first limit the payload breaks.
pub fn validate_message(payload: &Value, creating: bool) -> Result<(), (String, String)> {
    let chars = |v: &Value| v.as_str().map(|s| s.chars().count()).unwrap_or(0);
    let content = chars(&payload["content"]);
    if content > 2000 {
        return Err(("content".into(), "Must be 2000 or fewer in length.".into()));
    }
    if chars(&payload["nonce"]) > 25 {
        return Err(("nonce".into(), "Must be 25 or fewer in length.".into()));
    }
    let embeds = payload["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > 10 {
        return Err(("embeds".into(), "Must be 10 or fewer in length.".into()));
    }
    let mut total = 0;
    for (i, e) in embeds.iter().enumerate() {
        let checks = [
            ("title", &e["title"], 256),
            ("description", &e["description"], 4096),
            ("footer.text", &e["footer"]["text"], 2048),
            ("author.name", &e["author"]["name"], 256),
        ];
        for (k, v, max) in checks {
            let n = chars(v);
            total += n;
            if n > max {
                return Err((
                    format!("embeds.{i}.{k}"),
                    format!("Must be {max} or fewer in length."),
                ));
            }
        }
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            return Err((
                format!("embeds.{i}.fields"),
                "Must be 25 or fewer in length.".into(),
            ));
        }
        for (j, f) in fields.iter().enumerate() {
            let (n, v) = (chars(&f["name"]), chars(&f["value"]));
            total += n + v;
            if n == 0 || n > 256 {
                return Err((
                    format!("embeds.{i}.fields.{j}.name"),
                    "Must be between 1 and 256 in length.".into(),
                ));
            }
            if v == 0 || v > 1024 {
                return Err((
                    format!("embeds.{i}.fields.{j}.value"),
                    "Must be between 1 and 1024 in length.".into(),
                ));
            }
        }
    }
    if total > 6000 {
        return Err((
            "embeds".into(),
            "Embed size exceeds maximum size of 6000".into(),
        ));
    }
    let rows = payload["components"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rows.len() > 5 {
        return Err(("components".into(), "Must be 5 or fewer in length.".into()));
    }
    let mut ids = std::collections::HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        if row["type"].as_u64() != Some(1) {
            return Err((
                format!("components.{i}.type"),
                "Top-level components must be action rows (type 1).".into(),
            ));
        }
        let comps = row["components"].as_array().cloned().unwrap_or_default();
        if comps.is_empty() || comps.len() > 5 {
            return Err((
                format!("components.{i}.components"),
                "Must be between 1 and 5 in length.".into(),
            ));
        }
        for (j, c) in comps.iter().enumerate() {
            if chars(&c["label"]) > 80 {
                return Err((
                    format!("components.{i}.components.{j}.label"),
                    "Must be 80 or fewer in length.".into(),
                ));
            }
            let is_link = c["style"].as_u64() == Some(5);
            match c["custom_id"].as_str() {
                Some(id) => {
                    if id.is_empty() || id.chars().count() > 100 {
                        return Err((
                            format!("components.{i}.components.{j}.custom_id"),
                            "Must be between 1 and 100 in length.".into(),
                        ));
                    }
                    if !ids.insert(id.to_string()) {
                        return Err((
                            format!("components.{i}.components.{j}.custom_id"),
                            "Component custom id cannot be duplicated".into(),
                        ));
                    }
                }
                None if !is_link => {
                    return Err((
                        format!("components.{i}.components.{j}.custom_id"),
                        "This field is required".into(),
                    ));
                }
                None => {}
            }
        }
    }
    if creating {
        let has_files = payload["attachments"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let has_stickers = payload["sticker_ids"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if content == 0
            && embeds.is_empty()
            && rows.is_empty()
            && !has_files
            && !has_stickers
            && payload.get("poll").is_none()
        {
            return Err((String::new(), "Cannot send an empty message".into()));
        }
    }
    Ok(())
}

/// Autocomplete choices: at most 25, name 1..=100 chars, string values at most 100 chars.
pub fn validate_choices(data: &Value) -> Result<(), (String, String)> {
    let Some(choices) = data["choices"].as_array() else {
        return Err(("data.choices".into(), "This field is required".into()));
    };
    if choices.len() > 25 {
        return Err((
            "data.choices".into(),
            "Must be 25 or fewer in length.".into(),
        ));
    }
    for (i, c) in choices.iter().enumerate() {
        let n = c["name"].as_str().map(|s| s.chars().count()).unwrap_or(0);
        if n == 0 || n > 100 {
            return Err((
                format!("data.choices.{i}.name"),
                "Must be between 1 and 100 in length.".into(),
            ));
        }
        if let Some(s) = c["value"].as_str() {
            if s.chars().count() > 100 {
                return Err((
                    format!("data.choices.{i}.value"),
                    "Must be 100 or fewer in length.".into(),
                ));
            }
        } else if c["value"].is_null() {
            return Err((
                format!("data.choices.{i}.value"),
                "This field is required".into(),
            ));
        }
    }
    Ok(())
}

/// A Discord JSON error body (`{"code","message","errors"}`).
pub fn error_json(code: u64, message: &str, path_err: Option<(&str, &str)>) -> Value {
    let mut v = json!({"code": code, "message": message});
    if let Some((path, msg)) = path_err {
        let leaf = json!({"_errors": [{"code": "BASE_TYPE_INVALID", "message": msg}]});
        let mut errors = leaf;
        if path.is_empty() {
            errors = json!({"_errors": [{"code": "MESSAGE_EMPTY", "message": msg}]});
        } else {
            for seg in path.rsplit('.') {
                errors = json!({ seg: errors });
            }
        }
        v["errors"] = errors;
    }
    v
}
