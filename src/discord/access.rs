//! Whether the bot may join a voice channel, from the gateway cache, before it asks
//! Discord to. Discord's gateway ignores a join the bot may not make (no Connect, or a
//! channel at its user limit), so asking anyway would only end in a join timeout and a
//! vague error; the member is told the reason at once instead.

use poise::serenity_prelude as serenity;
use serenity::Permissions;

/// What to tell the member when the bot cannot join `channel` of `guild`; `None` when it
/// can, or when the cache does not know enough to say (Discord then decides).
pub fn voice_refusal(
    cache: impl AsRef<serenity::Cache>,
    guild: serenity::GuildId,
    channel: serenity::ChannelId,
) -> Option<String> {
    let cache = cache.as_ref();
    let me = cache.current_user().id;
    let g = cache.guild(guild)?;
    let ch = g.channels.get(&channel)?;
    let member = g.members.get(&me)?;
    let perms = g.user_permissions_in(ch, member);
    let inside = g
        .voice_states
        .values()
        .filter(|v| v.channel_id == Some(channel) && v.user_id != me)
        .count();
    refusal(perms, ch.user_limit.unwrap_or(0), inside, channel.get())
}

/// The decision, apart from the cache: Connect and Speak are needed, and a full channel
/// (at `limit`, 0 = none) takes the bot only with Move Members, as Discord rules.
fn refusal(perms: Permissions, limit: u32, inside: usize, channel: u64) -> Option<String> {
    if !perms.contains(Permissions::VIEW_CHANNEL | Permissions::CONNECT) {
        return Some(format!(
            "I can't join <#{channel}>: I don't have the Connect permission there. \
             Ask a server admin to allow it."
        ));
    }
    if !perms.contains(Permissions::SPEAK) {
        return Some(format!(
            "I can't play in <#{channel}>: I don't have the Speak permission there. \
             Ask a server admin to allow it."
        ));
    }
    if limit > 0 && inside >= limit as usize && !perms.contains(Permissions::MOVE_MEMBERS) {
        return Some(format!(
            "<#{channel}> is full ({inside}/{limit}), so I can't join it. \
             Make room or raise its user limit."
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Permissions {
        Permissions::VIEW_CHANNEL | Permissions::CONNECT | Permissions::SPEAK
    }

    #[test]
    fn connect_speak_and_room_are_needed() {
        assert_eq!(refusal(ok(), 0, 10, 1), None);
        assert_eq!(refusal(ok(), 3, 2, 1), None);
        let no_connect = refusal(ok() - Permissions::CONNECT, 0, 0, 1).unwrap();
        assert!(no_connect.contains("Connect"), "{no_connect}");
        let mute = refusal(ok() - Permissions::SPEAK, 0, 0, 1).unwrap();
        assert!(mute.contains("Speak"), "{mute}");
        let full = refusal(ok(), 2, 2, 1).unwrap();
        assert!(full.contains("full (2/2)"), "{full}");
        assert_eq!(refusal(ok() | Permissions::MOVE_MEMBERS, 2, 2, 1), None);
    }
}
