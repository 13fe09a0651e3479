//! The cluster's shared state in PostgreSQL: who is alive (`cluster_nodes`), who owns
//! which shard (`shard_leases`), and when each identify bucket may next be used
//! (`identify_buckets`).
//!
//! Every time here is the database's `now()`, never a node's clock: nodes on different
//! machines disagree by seconds, the database is the one clock they share.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::postgres::PgPool;

/// The `LISTEN`/`NOTIFY` channel nodes wake each other on.
pub const CHANNEL: &str = "encore_cluster";
/// A node gave shards back: the others look for work at once instead of at their next tick.
pub const RELEASED: &str = "released";

/// Who a node is, as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Unique per process: host, pid and a random suffix.
    pub id: String,
    /// The name shown in `/resources` (`cluster.node_name`, else the host name).
    pub host: String,
    pub version: String,
}

impl NodeInfo {
    /// This process, named `name`.
    pub fn this_process(name: &str) -> NodeInfo {
        NodeInfo {
            id: format!(
                "{name}-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
            host: name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// What a node reports with each heartbeat, for `/resources` on any node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    pub shards: Vec<u32>,
    pub calls: u64,
    pub rss_bytes: u64,
    pub cpu_percent: f64,
}

/// A live node as read back from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub id: String,
    pub host: String,
    pub version: String,
    pub uptime: Duration,
    /// Since its last heartbeat.
    pub heartbeat_age: Duration,
    pub stats: NodeStats,
}

/// The lease operations of one cluster, each one statement (or one transaction).
#[derive(Clone, Debug)]
pub struct Leases {
    pool: PgPool,
    lease: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn age(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.max(0.0))
}

impl Leases {
    pub fn new(pool: PgPool, lease: Duration) -> Leases {
        Leases { pool, lease }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Makes sure the cluster has its shard rows and returns how many there are. The
    /// first node fixes the count (`wanted`); later nodes use the one already there,
    /// whatever they were configured with, so every node agrees on `shard % total`.
    pub async fn ensure_shards(&self, wanted: u32) -> Result<u32, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // One node at a time, so two first nodes cannot create two different counts.
        sqlx::query("LOCK TABLE shard_leases IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let (have,): (i64,) = sqlx::query_as("SELECT count(*) FROM shard_leases")
            .fetch_one(&mut *tx)
            .await?;
        if have == 0 {
            sqlx::query("INSERT INTO shard_leases (shard_id) SELECT generate_series(0, $1 - 1)")
                .bind(i64::from(wanted) as i32)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(if have == 0 { wanted } else { have as u32 })
    }

    /// Registers `node` or refreshes its row: it is alive as of the database's now.
    pub async fn heartbeat(&self, node: &NodeInfo, stats: &NodeStats) -> Result<(), sqlx::Error> {
        let shards = stats
            .shards
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(
            "INSERT INTO cluster_nodes (id, host, version, lease_ms, shards, calls, rss_bytes,
                                        cpu_percent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), shards = $5, calls = $6,
                 rss_bytes = $7, cpu_percent = $8",
        )
        .bind(&node.id)
        .bind(&node.host)
        .bind(&node.version)
        .bind(ms(self.lease))
        .bind(shards)
        .bind(stats.calls as i64)
        .bind(stats.rss_bytes as i64)
        .bind(stats.cpu_percent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Extends every lease `node` still holds; returns those shards. A shard missing
    /// from the answer was lost (it expired and another node took it).
    pub async fn renew(&self, node: &str) -> Result<BTreeSet<u32>, sqlx::Error> {
        let rows: Vec<(i32,)> = sqlx::query_as(
            "UPDATE shard_leases SET expires_at = now() + $2 * interval '1 millisecond'
             WHERE owner = $1 AND expires_at > now() RETURNING shard_id",
        )
        .bind(node)
        .bind(ms(self.lease))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s,)| s as u32).collect())
    }

    /// How many nodes are alive: their heartbeat is younger than their lease.
    pub async fn live_nodes(&self) -> Result<u32, sqlx::Error> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM cluster_nodes
             WHERE heartbeat_at > now() - lease_ms * interval '1 millisecond'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u32)
    }

    /// Takes the lowest free or expired shard for `node`, if there is one.
    pub async fn acquire(&self, node: &str) -> Result<Option<u32>, sqlx::Error> {
        let row: Option<(i32,)> = sqlx::query_as(
            "UPDATE shard_leases
             SET owner = $1, expires_at = now() + $2 * interval '1 millisecond',
                 epoch = epoch + 1
             WHERE shard_id = (
                 SELECT shard_id FROM shard_leases
                 WHERE owner IS NULL OR expires_at <= now()
                 ORDER BY shard_id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING shard_id",
        )
        .bind(node)
        .bind(ms(self.lease))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(s,)| s as u32))
    }

    /// Gives `shard` back (only if `node` holds it) and wakes the other nodes.
    pub async fn release(&self, node: &str, shard: u32) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE shard_leases SET owner = NULL, expires_at = now()
             WHERE owner = $1 AND shard_id = $2",
        )
        .bind(node)
        .bind(shard as i32)
        .execute(&self.pool)
        .await?;
        self.notify(RELEASED).await
    }

    /// On the way out, before the shards stop: this node no longer counts as live, so the
    /// others take its share as each lease is released (its leases stay valid meanwhile).
    pub async fn retire(&self, node: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM cluster_nodes WHERE id = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        self.notify(RELEASED).await
    }

    /// On the way out: every shard back at once, the node's row gone, the others woken.
    pub async fn leave(&self, node: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE shard_leases SET owner = NULL, expires_at = now() WHERE owner = $1")
            .bind(node)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM cluster_nodes WHERE id = $1")
            .bind(node)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(RELEASED)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Tells every node (this one included) `message` on [`CHANNEL`].
    pub async fn notify(&self, message: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(message)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Claims the next identify slot of `bucket`: `Ok` when this node may identify now
    /// (the slot after it is `spacing` later, for every node), else how long until the
    /// bucket is free.
    pub async fn reserve_identify(
        &self,
        bucket: u32,
        spacing: Duration,
    ) -> Result<Result<(), Duration>, sqlx::Error> {
        sqlx::query("INSERT INTO identify_buckets (bucket) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(bucket as i32)
            .execute(&self.pool)
            .await?;
        let claimed: Option<(i32,)> = sqlx::query_as(
            "UPDATE identify_buckets SET next_at = now() + $2 * interval '1 millisecond'
             WHERE bucket = $1 AND next_at <= now() RETURNING bucket",
        )
        .bind(bucket as i32)
        .bind(ms(spacing))
        .fetch_optional(&self.pool)
        .await?;
        if claimed.is_some() {
            return Ok(Ok(()));
        }
        let (wait,): (f64,) = sqlx::query_as(
            "SELECT EXTRACT(EPOCH FROM next_at - now())::float8 FROM identify_buckets
             WHERE bucket = $1",
        )
        .bind(bucket as i32)
        .fetch_one(&self.pool)
        .await?;
        Ok(Err(age(wait)))
    }

    /// The live nodes, oldest first, for `/resources`.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, sqlx::Error> {
        type Row = (String, String, String, f64, f64, String, i64, i64, f64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, host, version,
                    EXTRACT(EPOCH FROM now() - started_at)::float8,
                    EXTRACT(EPOCH FROM now() - heartbeat_at)::float8,
                    shards, calls, rss_bytes, cpu_percent
             FROM cluster_nodes
             WHERE heartbeat_at > now() - lease_ms * interval '1 millisecond'
             ORDER BY started_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| NodeRow {
                id: r.0,
                host: r.1,
                version: r.2,
                uptime: age(r.3),
                heartbeat_age: age(r.4),
                stats: NodeStats {
                    shards: r.5.split(',').filter_map(|s| s.parse().ok()).collect(),
                    calls: r.6.max(0) as u64,
                    rss_bytes: r.7.max(0) as u64,
                    cpu_percent: r.8,
                },
            })
            .collect())
    }

    /// A cluster of its own on the test run's private PostgreSQL server.
    #[cfg(test)]
    pub async fn on_fresh_database(lease: Duration) -> Leases {
        let url = crate::db::testpg::server().fresh_database().await;
        let crate::db::Db::Postgres(pool) = crate::db::open_postgres(&url).await.unwrap() else {
            unreachable!("a postgres:// URL opens PostgreSQL")
        };
        Leases::new(pool, lease)
    }

    /// Who holds `shard` now (an unexpired lease), if anyone.
    pub async fn owner_of(&self, shard: u32) -> Result<Option<String>, sqlx::Error> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT owner FROM shard_leases WHERE shard_id = $1 AND expires_at > now()",
        )
        .bind(shard as i32)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(o,)| o))
    }
}

/// Hands every message of [`CHANNEL`] to `on_message` until `stop`, reconnecting after a
/// lost connection (the node's loop works without it, only later).
pub async fn listen(
    pool: PgPool,
    on_message: std::sync::Arc<dyn Fn(&str) + Send + Sync>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Err(e) = listen_once(&pool, &*on_message) => {
                tracing::debug!(error = %e, "cluster: notifications lost; listening again");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn listen_once(
    pool: &PgPool,
    on_message: &(dyn Fn(&str) + Send + Sync),
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    loop {
        let n = listener.recv().await?;
        on_message(n.payload());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn leases(lease: Duration) -> Leases {
        Leases::on_fresh_database(lease).await
    }

    fn node(name: &str) -> NodeInfo {
        NodeInfo::this_process(name)
    }

    #[tokio::test]
    async fn the_first_node_fixes_the_shard_count() {
        let l = leases(Duration::from_secs(10)).await;
        assert_eq!(l.ensure_shards(4).await.unwrap(), 4);
        assert_eq!(
            l.ensure_shards(8).await.unwrap(),
            4,
            "a later node uses the cluster's"
        );
    }

    #[tokio::test]
    async fn a_shard_has_one_owner_until_it_is_released_or_expires() {
        let l = leases(Duration::from_secs(10)).await;
        l.ensure_shards(2).await.unwrap();
        let (a, b) = (node("a"), node("b"));
        assert_eq!(l.acquire(&a.id).await.unwrap(), Some(0));
        assert_eq!(l.acquire(&b.id).await.unwrap(), Some(1));
        assert_eq!(l.acquire(&b.id).await.unwrap(), None, "no shard is free");
        assert_eq!(l.renew(&a.id).await.unwrap(), BTreeSet::from([0]));
        assert_eq!(l.owner_of(1).await.unwrap(), Some(b.id.clone()));
        l.release(&a.id, 1).await.unwrap();
        assert_eq!(
            l.owner_of(1).await.unwrap(),
            Some(b.id.clone()),
            "not a's to give"
        );
        l.release(&b.id, 1).await.unwrap();
        assert_eq!(l.owner_of(1).await.unwrap(), None);
        assert_eq!(l.acquire(&a.id).await.unwrap(), Some(1));
        l.leave(&a.id).await.unwrap();
        assert_eq!(l.renew(&a.id).await.unwrap(), BTreeSet::new());
        assert_eq!(l.acquire(&b.id).await.unwrap(), Some(0));
    }

    #[tokio::test]
    async fn an_expired_lease_is_lost_and_free_for_another_node() {
        let l = leases(Duration::from_millis(300)).await;
        l.ensure_shards(1).await.unwrap();
        let (a, b) = (node("a"), node("b"));
        assert_eq!(l.acquire(&a.id).await.unwrap(), Some(0));
        assert_eq!(l.acquire(&b.id).await.unwrap(), None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while l.owner_of(0).await.unwrap().is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lease never expired"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            l.renew(&a.id).await.unwrap(),
            BTreeSet::new(),
            "a late renewal fails"
        );
        assert_eq!(l.acquire(&b.id).await.unwrap(), Some(0));
    }

    #[tokio::test]
    async fn nodes_are_live_while_they_beat_and_report_their_figures() {
        let l = leases(Duration::from_secs(10)).await;
        let (a, b) = (node("a"), node("b"));
        let stats = NodeStats {
            shards: vec![0, 2],
            calls: 3,
            rss_bytes: 1 << 20,
            cpu_percent: 1.5,
        };
        l.heartbeat(&a, &stats).await.unwrap();
        l.heartbeat(&b, &NodeStats::default()).await.unwrap();
        assert_eq!(l.live_nodes().await.unwrap(), 2);
        let nodes = l.nodes().await.unwrap();
        assert_eq!(nodes.len(), 2);
        let first = nodes.iter().find(|n| n.id == a.id).unwrap();
        assert_eq!(first.stats, stats);
        assert_eq!(first.host, "a");
        assert!(first.heartbeat_age < Duration::from_secs(5));
        l.leave(&b.id).await.unwrap();
        assert_eq!(l.live_nodes().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_identify_bucket_admits_one_identify_per_spacing() {
        let l = leases(Duration::from_secs(10)).await;
        let spacing = Duration::from_secs(5);
        assert_eq!(l.reserve_identify(0, spacing).await.unwrap(), Ok(()));
        let wait = l.reserve_identify(0, spacing).await.unwrap().unwrap_err();
        assert!(wait > Duration::from_secs(4) && wait <= spacing, "{wait:?}");
        assert_eq!(
            l.reserve_identify(1, spacing).await.unwrap(),
            Ok(()),
            "another bucket is not held up"
        );
    }
}
