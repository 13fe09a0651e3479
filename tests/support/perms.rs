//! Discord's permission checks on what the bot does, as its docs compute them ("Permission
//! Overwrites"): the bot's base permissions, then the channel's @everyone overwrite, then
//! its overwrite for the bot. A post without SEND_MESSAGES is refused with 403 50013, and
//! a voice join without CONNECT, or to a channel at its `user_limit` (without
//! MOVE_MEMBERS), is ignored by the gateway, so a bot that asks is a protocol error.

use serde_json::{json, Value};

use super::payloads;
use super::state::{ChannelRec, GuildState, State};
use super::Emulator;

pub const ADMINISTRATOR: u64 = 1 << 3;
pub const VIEW_CHANNEL: u64 = 1 << 10;
pub const SEND_MESSAGES: u64 = 1 << 11;
pub const CONNECT: u64 = 1 << 20;
pub const SPEAK: u64 = 1 << 21;
pub const MOVE_MEMBERS: u64 = 1 << 24;

/// One channel permission overwrite (type 0 role, 1 member).
#[derive(Clone, Debug)]
pub struct Overwrite {
    pub id: u64,
    pub kind: u8,
    pub allow: u64,
    pub deny: u64,
}

pub fn overwrites_json(c: &ChannelRec) -> Value {
    json!(c
        .overwrites
        .iter()
        .map(|o| json!({"id": o.id.to_string(), "type": o.kind,
            "allow": o.allow.to_string(), "deny": o.deny.to_string()}))
        .collect::<Vec<_>>())
}

/// The bot's permissions in `channel` (Discord's order: base, @everyone, member).
pub fn bot_permissions_in(g: &GuildState, channel: u64, bot: u64) -> u64 {
    let base = g.bot_permissions;
    if base & ADMINISTRATOR != 0 {
        return payloads::all_permissions();
    }
    let Some(c) = g.channel(channel) else {
        return base;
    };
    let mut p = base;
    for o in c.overwrites.iter().filter(|o| o.kind == 0 && o.id == g.id) {
        p = (p & !o.deny) | o.allow;
    }
    for o in c.overwrites.iter().filter(|o| o.kind == 1 && o.id == bot) {
        p = (p & !o.deny) | o.allow;
    }
    p
}

/// Why Discord would not let the bot post in `channel` (a 50013), if it would not.
pub fn may_post(s: &State, guild: u64, channel: u64) -> Result<(), String> {
    let p = bot_permissions_in(&s.guilds[&guild], channel, s.bot_user_id);
    if p & (VIEW_CHANNEL | SEND_MESSAGES) != VIEW_CHANNEL | SEND_MESSAGES {
        return Err(format!("post to channel {channel} without SEND_MESSAGES"));
    }
    Ok(())
}

/// Why the gateway would ignore the bot's join of voice `channel`, if it would.
pub fn may_join(s: &State, guild: u64, channel: u64) -> Result<(), String> {
    let g = &s.guilds[&guild];
    let bot = s.bot_user_id;
    let p = bot_permissions_in(g, channel, bot);
    if p & (VIEW_CHANNEL | CONNECT) != VIEW_CHANNEL | CONNECT {
        return Err(format!(
            "bot asked to join voice channel {channel} without CONNECT (Discord ignores it)"
        ));
    }
    let limit = g.channel(channel).map(|c| c.user_limit).unwrap_or(0);
    let inside = g
        .voice_states
        .iter()
        .filter(|(u, v)| **u != bot && v.channel_id == channel)
        .count();
    if limit > 0 && inside >= limit as usize && p & MOVE_MEMBERS == 0 {
        return Err(format!(
            "bot asked to join voice channel {channel}, full at {inside}/{limit} (Discord ignores it)"
        ));
    }
    Ok(())
}

impl Emulator {
    fn edit_channel(&self, guild: u64, channel: u64, f: impl FnOnce(&mut ChannelRec)) {
        self.with(|s| {
            let g = s.guilds.get_mut(&guild).expect("emulator: unknown guild");
            let c = g
                .channels
                .iter_mut()
                .find(|c| c.id == channel)
                .expect("emulator: unknown channel");
            f(c);
            let ev = payloads::channel_event_json(&s.guilds[&guild], channel).unwrap();
            s.dispatch("CHANNEL_UPDATE", ev);
        });
    }

    /// Sets the channel's overwrite for the bot (CHANNEL_UPDATE is dispatched).
    pub fn set_bot_overwrite(&self, guild: u64, channel: u64, allow: u64, deny: u64) {
        let bot = self.bot_user_id();
        self.edit_channel(guild, channel, |c| {
            c.overwrites.retain(|o| !(o.kind == 1 && o.id == bot));
            c.overwrites.push(Overwrite {
                id: bot,
                kind: 1,
                allow,
                deny,
            });
        });
    }

    /// Sets a voice channel's `user_limit` (0: none; CHANNEL_UPDATE is dispatched).
    pub fn set_user_limit(&self, guild: u64, channel: u64, limit: u32) {
        self.edit_channel(guild, channel, |c| c.user_limit = limit);
    }

    /// `"METHOD path"` of requests refused with 403 50013 Missing Permissions.
    pub fn permission_refusals(&self) -> Vec<String> {
        self.read(|s| s.permission_refusals.clone())
    }
}
