//! Several `encore` processes on several machines sharing one PostgreSQL database: each is
//! a node, registered in the database, running the gateway shards it holds a lease on.
//!
//! - [`leases`]: the shared state (nodes, shard leases, identify buckets), every time the
//!   database's own.
//! - [`node`]: one node's loop: renew, take a fair share, give back the surplus, start a
//!   shard only in its identify slot, and stop every shard it can no longer prove it owns.
//!
//! Plain Rust over the database: the gateway is behind [`node::ShardControl`], which the
//! bot implements over serenity's shard manager (`crate::discord::shards`).

pub mod leases;
pub mod node;

pub use leases::{Leases, NodeInfo, NodeRow, NodeStats};
pub use node::{Member, ShardControl, Timing};

/// This process's place in the cluster, once it joined: what `/resources` reads and
/// what `/cleanup all:true` speaks through.
pub struct Membership {
    leases: Leases,
    me: NodeInfo,
}

/// How long leaving may wait on the database before the leases are left to run out.
const LEAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// The [`leases::CHANNEL`] message that asks every node to clean up: `cleanup-all:<node>`.
const CLEANUP_ALL: &str = "cleanup-all:";

impl Membership {
    pub fn new(leases: Leases, me: NodeInfo) -> Membership {
        Membership { leases, me }
    }

    pub fn node(&self) -> &NodeInfo {
        &self.me
    }

    /// The live nodes, oldest first.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, sqlx::Error> {
        self.leases.nodes().await
    }

    /// Asks every other node to run `/cleanup all:true` on itself.
    pub async fn ask_all_to_clean_up(&self) -> Result<(), sqlx::Error> {
        self.leases
            .notify(&format!("{CLEANUP_ALL}{}", self.me.id))
            .await
    }

    /// The node that asked, if `message` is a cleanup request.
    pub fn cleanup_from(message: &str) -> Option<&str> {
        message.strip_prefix(CLEANUP_ALL)
    }

    /// Hands every shard back at once (the players have saved their queues): the other
    /// nodes take them now rather than when the leases would have run out.
    pub async fn leave(&self) {
        match tokio::time::timeout(LEAVE_WAIT, self.leases.leave(&self.me.id)).await {
            Ok(Ok(())) => tracing::info!(node = %self.me.id, "left the cluster"),
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                "could not hand the shards back; they free up when the leases run out"
            ),
            Err(_) => tracing::warn!(
                "the database did not answer; the shards free up when the leases run out"
            ),
        }
    }
}

/// The shard that owns `guild` among `total` (Discord's rule: `(guild_id >> 22) % total`).
pub fn shard_of(guild: u64, total: u32) -> u32 {
    ((guild >> 22) % u64::from(total.max(1))) as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn guilds_map_to_shards_by_their_timestamp_bits() {
        assert_eq!(super::shard_of(5 << 22, 4), 1);
        assert_eq!(
            super::shard_of((6 << 22) | 0x3f_ffff, 4),
            2,
            "low 22 bits ignored"
        );
        assert_eq!(super::shard_of(5 << 22, 1), 0);
        assert_eq!(super::shard_of(5 << 22, 0), 0, "no shards means one");
    }
}
