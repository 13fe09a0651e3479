//! Who may control playback when a server sets a DJ role, and skip votes for everyone else.
//!
//! Without a DJ role everyone listening controls the music. With one, DJs, administrators
//! (Administrator or Manage Server, and the config's `admin` roles and users) and whoever
//! asked for the current track may skip, stop, clear, move, remove others' tracks, seek,
//! change the volume or the loop mode; everyone else can `/skip`, which counts a vote, and
//! the track is skipped once half of the listeners voted (the player counts the votes:
//! `crate::player::votes`).

use poise::serenity_prelude as serenity;

use crate::discord::bot::{Bot, Context, Error};
use crate::discord::reply;
use crate::player::Snapshot;

/// Why a member may control playback (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No DJ role is set: everyone may.
    Open,
    Dj,
    Admin,
    /// Asked for the track that is playing.
    Requester,
    /// None of the above: may vote to skip.
    Listener,
}

impl Standing {
    pub fn may_control(self) -> bool {
        self != Standing::Listener
    }
}

/// Pure rule behind [`standing`].
pub fn standing_of(
    dj_role: Option<u64>,
    roles: &[u64],
    is_admin: bool,
    user: u64,
    current_requester: Option<u64>,
) -> Standing {
    let Some(dj) = dj_role else {
        return Standing::Open;
    };
    if roles.contains(&dj) {
        Standing::Dj
    } else if is_admin {
        Standing::Admin
    } else if current_requester == Some(user) {
        Standing::Requester
    } else {
        Standing::Listener
    }
}

/// The caller's standing in this guild, for the given player state.
pub fn standing(ctx: Context<'_>, snapshot: Option<&Snapshot>) -> Standing {
    let Some(guild) = ctx.guild_id() else {
        return Standing::Open;
    };
    let member = match ctx {
        poise::Context::Application(app) => app.interaction.member.clone(),
        poise::Context::Prefix(_) => None,
    };
    standing_in(
        ctx.data(),
        guild.get(),
        ctx.author().id.get(),
        member.as_deref(),
        snapshot,
    )
}

/// The standing of `user` (with the `member` Discord sent along with their interaction:
/// a command or a panel button) in `guild`, for the given player state.
pub fn standing_in(
    bot: &Bot,
    guild: u64,
    user: u64,
    member: Option<&serenity::Member>,
    snapshot: Option<&Snapshot>,
) -> Standing {
    let settings = bot.settings.get(guild);
    let admin = &bot.config.admin;
    let roles: Vec<u64> = member
        .map(|m| m.roles.iter().map(|r| r.get()).collect())
        .unwrap_or_default();
    let by_permission = member
        .and_then(|m| m.permissions)
        .is_some_and(|p| p.administrator() || p.manage_guild());
    let is_admin = by_permission
        || admin.users.contains(&user)
        || roles.iter().any(|r| admin.roles.contains(r));
    let requester = snapshot
        .and_then(|s| s.current.as_ref())
        .map(|e| e.requester.id);
    standing_of(settings.dj_role, &roles, is_admin, user, requester)
}

/// The refusal for a listener without DJ rights.
pub fn refusal(dj_role: Option<u64>, action: &str) -> String {
    let role = dj_role
        .map(|r| format!("DJs (<@&{r}>)"))
        .unwrap_or_else(|| "DJs".into());
    format!("Only {role}, administrators and whoever asked for the current track can {action}.")
}

/// Checks the caller may control playback; answers privately and returns false if not.
pub async fn require(
    ctx: Context<'_>,
    snapshot: Option<&Snapshot>,
    action: &str,
) -> Result<bool, Error> {
    if standing(ctx, snapshot).may_control() {
        return Ok(true);
    }
    let guild = ctx.guild_id().map(|g| g.get()).unwrap_or_default();
    let dj = ctx.data().settings.get(guild).dj_role;
    reply::error(ctx, refusal(dj, action)).await?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_control() {
        assert_eq!(standing_of(None, &[], false, 1, Some(2)), Standing::Open);
        assert_eq!(standing_of(Some(9), &[9], false, 1, Some(2)), Standing::Dj);
        assert_eq!(
            standing_of(Some(9), &[3], true, 1, Some(2)),
            Standing::Admin
        );
        assert_eq!(
            standing_of(Some(9), &[], false, 1, Some(1)),
            Standing::Requester
        );
        assert_eq!(
            standing_of(Some(9), &[3], false, 1, Some(2)),
            Standing::Listener
        );
        assert_eq!(
            standing_of(Some(9), &[], false, 1, None),
            Standing::Listener
        );
        assert!(!Standing::Listener.may_control());
        assert!(Standing::Requester.may_control());
        assert!(refusal(Some(9), "stop the music").contains("<@&9>"));
    }
}
