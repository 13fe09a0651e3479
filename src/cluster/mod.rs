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
