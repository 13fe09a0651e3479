//! Who may control playback when a server sets a DJ role, and skip votes for everyone else.
//!
//! Without a DJ role everyone listening controls the music. With one, DJs, administrators
//! (Administrator or Manage Server, and the config's `admin` roles and users) and whoever
//! asked for the current track may skip, stop, clear, move, remove others' tracks, seek,
//! change the volume or the loop mode; everyone else can `/skip`, which counts a vote, and
//! the track is skipped once half of the listeners voted.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::{reply, Context, Error};
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
    let settings = ctx.data().settings.get(guild.get());
    let admin = &ctx.data().config.admin;
    let user = ctx.author().id.get();
    let member = match ctx {
        poise::Context::Application(app) => app.interaction.member.clone(),
        poise::Context::Prefix(_) => None,
    };
    let roles: Vec<u64> = member
        .as_ref()
        .map(|m| m.roles.iter().map(|r| r.get()).collect())
        .unwrap_or_default();
    let by_permission = member
        .as_ref()
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

/// Votes needed to skip with `listeners` humans in the channel: half of them, rounded up.
pub fn votes_needed(listeners: usize) -> usize {
    listeners.div_ceil(2).max(1)
}

/// Skip votes per guild, for the track (queue entry id) they were cast against.
#[derive(Default)]
pub struct SkipVotes {
    inner: Mutex<HashMap<u64, (u64, HashSet<u64>)>>,
}

/// The state of a vote after one more was cast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// False when this user had already voted for this track.
    pub new: bool,
    /// Voters still listening.
    pub votes: usize,
    pub needed: usize,
}

impl Tally {
    pub fn passed(&self) -> bool {
        self.votes >= self.needed
    }
}

impl SkipVotes {
    /// Counts `user`'s vote against entry `entry` of `guild`; votes for an earlier track are
    /// forgotten, and only voters in `listening` count.
    pub fn vote(&self, guild: u64, entry: u64, user: u64, listening: &[u64]) -> Tally {
        let mut all = self.inner.lock().expect("skip votes lock");
        let slot = all.entry(guild).or_insert_with(|| (entry, HashSet::new()));
        if slot.0 != entry {
            *slot = (entry, HashSet::new());
        }
        let new = slot.1.insert(user);
        let votes = slot.1.iter().filter(|u| listening.contains(u)).count();
        Tally {
            new,
            votes,
            needed: votes_needed(listening.len()),
        }
    }

    /// Forgets a guild's votes (the track was skipped).
    pub fn clear(&self, guild: u64) {
        self.inner.lock().expect("skip votes lock").remove(&guild);
    }
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

    #[test]
    fn half_of_the_listeners_skip() {
        assert_eq!(votes_needed(0), 1);
        assert_eq!(votes_needed(1), 1);
        assert_eq!(votes_needed(2), 1);
        assert_eq!(votes_needed(3), 2);
        assert_eq!(votes_needed(4), 2);
        assert_eq!(votes_needed(5), 3);
    }

    #[test]
    fn votes_count_once_per_track_and_only_listeners() {
        let v = SkipVotes::default();
        let here = [1, 2, 3];
        let t = v.vote(7, 100, 1, &here);
        assert_eq!((t.new, t.votes, t.needed, t.passed()), (true, 1, 2, false));
        let t = v.vote(7, 100, 1, &here);
        assert_eq!((t.new, t.votes), (false, 1), "a second vote does not count");
        // a voter who left no longer counts
        let t = v.vote(7, 100, 2, &[2, 3]);
        assert_eq!((t.votes, t.needed, t.passed()), (1, 1, true));
        // a new track starts a new vote; other guilds are separate
        let t = v.vote(7, 101, 3, &here);
        assert_eq!(t.votes, 1);
        assert_eq!(v.vote(8, 100, 1, &here).votes, 1);
        v.clear(7);
        assert!(v.vote(7, 101, 1, &here).new);
    }
}
