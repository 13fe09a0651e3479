//! Skip votes of listeners without DJ rights. They live with the player, which knows which
//! track is playing: a vote counts against one queue entry, and a new track starts a new
//! vote.

use std::collections::HashSet;

/// Votes needed to skip with `listeners` humans in the channel: half of them, rounded up.
pub fn votes_needed(listeners: usize) -> usize {
    listeners.div_ceil(2).max(1)
}

/// One guild's votes, for the entry they were cast against.
#[derive(Debug, Default)]
pub struct SkipVotes {
    entry: u64,
    voters: HashSet<u64>,
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
    /// Counts `user`'s vote against entry `entry`; votes for an earlier track are forgotten,
    /// and only voters in `listening` count.
    pub fn vote(&mut self, entry: u64, user: u64, listening: &[u64]) -> Tally {
        if self.entry != entry {
            self.entry = entry;
            self.voters.clear();
        }
        let new = self.voters.insert(user);
        let votes = self.voters.iter().filter(|u| listening.contains(u)).count();
        Tally {
            new,
            votes,
            needed: votes_needed(listening.len()),
        }
    }

    /// Forgets the votes (the track was skipped, or another one started).
    pub fn clear(&mut self) {
        self.voters.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut v = SkipVotes::default();
        let here = [1, 2, 3];
        let t = v.vote(100, 1, &here);
        assert_eq!((t.new, t.votes, t.needed, t.passed()), (true, 1, 2, false));
        let t = v.vote(100, 1, &here);
        assert_eq!((t.new, t.votes), (false, 1), "a second vote does not count");
        // a voter who left no longer counts
        let t = v.vote(100, 2, &[2, 3]);
        assert_eq!((t.votes, t.needed, t.passed()), (1, 1, true));
        // a new track starts a new vote
        let t = v.vote(101, 3, &here);
        assert_eq!(t.votes, 1);
        v.clear();
        assert!(v.vote(101, 1, &here).new);
    }
}
