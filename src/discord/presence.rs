//! Who listens in a voice channel: the people in it, from the gateway cache.
//!
//! The alone timeout, the restore after a restart and `/skip` votes all ask the same
//! question, so they share one answer: every voice state in the channel except the bot
//! itself and other bots.

use poise::serenity_prelude as serenity;

/// One voice state, reduced to what decides whether it is a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VoiceMember {
    user: serenity::UserId,
    channel: Option<serenity::ChannelId>,
    /// Unknown counts as a person: a bot wrongly counted only keeps the call open, a
    /// person wrongly dropped would see the bot leave mid-song.
    bot: bool,
}

/// The people (by user id) in voice `channel` of `guild`; empty when the guild is not
/// cached. `cache` is anything that has the gateway cache (a serenity `Context`).
pub fn humans_in(
    cache: impl AsRef<serenity::Cache>,
    guild: serenity::GuildId,
    channel: serenity::ChannelId,
) -> Vec<u64> {
    let cache = cache.as_ref();
    let me = cache.current_user().id;
    let Some(g) = cache.guild(guild) else {
        return Vec::new();
    };
    // A voice state does not always carry its member: fall back to the guild's members.
    let states = g.voice_states.values().map(|vs| VoiceMember {
        user: vs.user_id,
        channel: vs.channel_id,
        bot: vs
            .member
            .as_ref()
            .map(|m| m.user.bot)
            .or_else(|| g.members.get(&vs.user_id).map(|m| m.user.bot))
            .unwrap_or(false),
    });
    humans(states, channel, me)
}

/// The users of `states` in `channel` who are people: neither `me` (whose own member
/// entry may be missing, which would make it look like a person) nor a bot.
fn humans(
    states: impl IntoIterator<Item = VoiceMember>,
    channel: serenity::ChannelId,
    me: serenity::UserId,
) -> Vec<u64> {
    states
        .into_iter()
        .filter(|vs| vs.channel == Some(channel) && vs.user != me && !vs.bot)
        .map(|vs| vs.user.get())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(user: u64, channel: Option<u64>, bot: bool) -> VoiceMember {
        VoiceMember {
            user: serenity::UserId::new(user),
            channel: channel.map(serenity::ChannelId::new),
            bot,
        }
    }

    #[test]
    fn only_people_in_the_channel_count() {
        let music = serenity::ChannelId::new(10);
        let me = serenity::UserId::new(1);
        let states = [
            // the bot itself, even when its member entry says nothing about being a bot
            state(1, Some(10), false),
            state(2, Some(10), false),
            // another bot
            state(3, Some(10), true),
            // elsewhere, or connected to no channel
            state(4, Some(11), false),
            state(5, None, false),
            state(6, Some(10), false),
        ];
        let mut people = humans(states, music, me);
        people.sort_unstable();
        assert_eq!(people, vec![2, 6]);
        assert!(humans([state(1, Some(10), false)], music, me).is_empty());
    }
}
