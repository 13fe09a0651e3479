//! How many gateway shards this process runs (`discord.shards`) and, with a PostgreSQL
//! store, how it shares them with the other nodes of a cluster (`[cluster]`).
//!
//! Parsed once when the config loads, so the rest of the bot sees a [`ShardPlan`], never
//! the string an operator typed.

use std::time::Duration;

use serde::Deserialize;

/// Which shards this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "ShardsValue")]
pub enum ShardPlan {
    /// As many as Discord recommends (`GET /gateway/bot`): the default. In a cluster, the
    /// first node fixes the count for every node.
    #[default]
    Auto,
    /// This many in total (all of them here, or shared by the cluster's nodes).
    Total(u32),
    /// Shards `first..=last` of `total`, always here, never shared: a static split for
    /// operators who place shards by hand.
    Range { first: u32, last: u32, total: u32 },
}

/// What TOML may hold for `discord.shards`: `"auto"`, a number, or `"a-b/N"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ShardsValue {
    Number(i64),
    Text(String),
}

impl TryFrom<ShardsValue> for ShardPlan {
    type Error = String;

    fn try_from(v: ShardsValue) -> Result<Self, String> {
        match v {
            ShardsValue::Number(n) => ShardPlan::total(n),
            ShardsValue::Text(s) => ShardPlan::parse(&s),
        }
    }
}

/// Discord's own ceiling on shards per bot is far lower; this only keeps typos out.
const MAX_SHARDS: i64 = 65_536;

impl ShardPlan {
    fn total(n: i64) -> Result<Self, String> {
        if !(1..=MAX_SHARDS).contains(&n) {
            return Err(format!(
                "shards must be between 1 and {MAX_SHARDS}, not {n}"
            ));
        }
        Ok(ShardPlan::Total(n as u32))
    }

    /// `"auto"`, `"8"`, or `"0-3/8"` (shards 0 to 3 of 8).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(ShardPlan::Auto);
        }
        let number = |t: &str| {
            t.trim().parse::<i64>().map_err(|_| {
                format!("{s:?} is not \"auto\", a shard count, or a range like \"0-3/8\"")
            })
        };
        let Some((range, total)) = s.split_once('/') else {
            return ShardPlan::total(number(s)?);
        };
        let ShardPlan::Total(total) = ShardPlan::total(number(total)?)? else {
            unreachable!("total() makes a Total");
        };
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(range)?, number(range)?),
        };
        if first < 0 || first > last || last >= i64::from(total) {
            return Err(format!(
                "the range {first}-{last} must lie within shards 0-{} of {total}",
                total - 1
            ));
        }
        Ok(ShardPlan::Range {
            first: first as u32,
            last: last as u32,
            total,
        })
    }

    /// Whether the shards are placed by hand (never leased from the cluster).
    pub fn is_static(self) -> bool {
        matches!(self, ShardPlan::Range { .. })
    }
}

impl std::fmt::Display for ShardPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardPlan::Auto => f.write_str("auto"),
            ShardPlan::Total(n) => write!(f, "{n}"),
            ShardPlan::Range { first, last, total } => write!(f, "{first}-{last}/{total}"),
        }
    }
}

/// `[cluster]`: only read when `data.database` is a PostgreSQL URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How long a shard stays this node's after its last renewal. A node that cannot
    /// renew stops its shards well before this runs out; another node takes them only
    /// after. Shorter means a faster failover and more database writes.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// This node's name in `/resources` (the host name when unset).
    pub node_name: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            node_name: None,
        }
    }
}

impl ClusterConfig {
    /// How often a node renews its leases and looks for work: five times per lease, so a
    /// node survives a few slow round trips before it must let go.
    pub fn renew_every(&self) -> Duration {
        self.lease / 5
    }

    /// How long without a renewal before this node stops its own shards: two renewals
    /// short of the lease, so they are stopped before any other node may take them.
    pub fn fence_after(&self) -> Duration {
        self.lease - 2 * self.renew_every()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_plans_parse_from_what_operators_write() {
        assert_eq!(ShardPlan::parse("auto"), Ok(ShardPlan::Auto));
        assert_eq!(ShardPlan::parse(" 4 "), Ok(ShardPlan::Total(4)));
        assert_eq!(
            ShardPlan::parse("0-3/8"),
            Ok(ShardPlan::Range {
                first: 0,
                last: 3,
                total: 8
            })
        );
        assert_eq!(
            ShardPlan::parse("5/8"),
            Ok(ShardPlan::Range {
                first: 5,
                last: 5,
                total: 8
            })
        );
        for bad in ["0", "-1", "4-3/8", "0-8/8", "x", "1-2", "0-1/0", "99999999"] {
            assert!(ShardPlan::parse(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(ShardPlan::parse("2-3/4").unwrap().to_string(), "2-3/4");
        assert!(ShardPlan::parse("2-3/4").unwrap().is_static());
    }

    #[test]
    fn the_fence_falls_before_the_lease_runs_out() {
        let c = ClusterConfig::default();
        assert_eq!(c.renew_every(), Duration::from_secs(3));
        assert_eq!(c.fence_after(), Duration::from_secs(9));
        assert!(c.fence_after() + c.renew_every() < c.lease);
    }
}
