//! Saved queues in the database, written by one task: players send their latest state, the
//! writer coalesces per guild and commits in one transaction. A failed write is logged
//! and retried with backoff; nothing is dropped and the music never waits for the disk.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Db;
use crate::player::filters::FilterSpec;
use crate::player::persist::{QueueStore, SavedQueue};
use crate::player::queue::{LoopMode, Requester};
use crate::sources::Track;

enum Msg {
    Save(u64, Option<Box<SavedQueue>>),
    Position(u64, Duration),
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
    /// Drop what is still waiting for these guilds: another node owns them now.
    Forget(Vec<u64>),
}

/// The players' handle to the writer.
#[derive(Clone)]
pub struct QueueWriter {
    tx: mpsc::UnboundedSender<Msg>,
}

impl QueueStore for QueueWriter {
    fn save(&self, guild: u64, state: Option<SavedQueue>) {
        let _ = self.tx.send(Msg::Save(guild, state.map(Box::new)));
    }

    fn checkpoint(&self, guild: u64, position: Duration) {
        let _ = self.tx.send(Msg::Position(guild, position));
    }
}

impl QueueWriter {
    /// Waits until every save sent so far is committed (or `timeout` passes).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
        tokio::time::timeout(timeout, done)
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl QueueWriter {
    /// Drops the saves still waiting for `guilds`, because another node serves them now
    /// (their shard was handed off or fenced while the database was out of reach): a stale
    /// state written later would overwrite what the new owner saved since.
    pub fn forget(&self, guilds: Vec<u64>) {
        let _ = self.tx.send(Msg::Forget(guilds));
    }
}

/// The writer and the future that runs it; the future ends when every `QueueWriter` is
/// dropped, after committing what it was sent.
pub fn writer(pool: Db) -> (QueueWriter, impl std::future::Future<Output = ()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (QueueWriter { tx }, run(pool, rx))
}

const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What is waiting to be committed: each guild's latest state, and positions reached
/// since that state.
#[derive(Default)]
struct Pending {
    saves: HashMap<u64, Option<SavedQueue>>,
    positions: HashMap<u64, Duration>,
    waiting: Vec<oneshot::Sender<()>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.saves.is_empty() && self.positions.is_empty()
    }

    fn take(&mut self, m: Msg) {
        match m {
            Msg::Save(g, s) => {
                // The new state carries its own position; an older checkpoint is stale.
                self.positions.remove(&g);
                self.saves.insert(g, s.map(|b| *b));
            }
            Msg::Position(g, p) => {
                self.positions.insert(g, p);
            }
            Msg::Flush(ack) => self.waiting.push(ack),
            Msg::Forget(guilds) => {
                for g in guilds {
                    self.saves.remove(&g);
                    self.positions.remove(&g);
                }
            }
        }
    }

    fn guilds(&self) -> usize {
        self.saves.len() + self.positions.len()
    }
}

async fn run(pool: Db, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut pending = Pending::default();
    let mut retry = RETRY_FIRST;
    loop {
        if pending.is_empty() {
            for ack in pending.waiting.drain(..) {
                let _ = ack.send(());
            }
            match rx.recv().await {
                None => return,
                Some(m) => pending.take(m),
            }
        }
        // Coalesce whatever else is already queued: only each guild's latest state matters.
        while let Ok(m) = rx.try_recv() {
            pending.take(m);
        }
        match commit(&pool, &pending).await {
            Ok(()) => {
                pending.saves.clear();
                pending.positions.clear();
                retry = RETRY_FIRST;
            }
            Err(e) => {
                tracing::warn!(error = %e, guilds = pending.guilds(), "saving queues failed; retrying in {retry:?}");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                if rx.is_closed() && retry == RETRY_MAX {
                    tracing::error!(guilds = pending.guilds(), "giving up saving queues at exit");
                    return;
                }
            }
        }
    }
}

async fn commit(db: &Db, pending: &Pending) -> Result<(), sqlx::Error> {
    with_db!(db, pool => {
    let mut tx = pool.begin().await?;
    for (guild, state) in &pending.saves {
        let g = *guild as i64;
        sqlx::query("DELETE FROM saved_queue_tracks WHERE guild_id = $1")
            .bind(g)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM saved_queues WHERE guild_id = $1")
            .bind(g)
            .execute(&mut *tx)
            .await?;
        let Some(s) = state else { continue };
        sqlx::query(
            "INSERT INTO saved_queues (guild_id, voice_channel, text_channel, loop_mode, paused,
                volume, position_ms, playing, saved_at, filters_json)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(g)
        .bind(s.voice_channel as i64)
        .bind(s.text_channel as i64)
        .bind(s.loop_mode.label())
        .bind(s.paused)
        .bind(i64::from(s.volume))
        .bind(s.position.as_millis() as i64)
        .bind(s.playing)
        .bind(super::unix_now())
        .bind(filters_json(&s.filters)?)
        .execute(&mut *tx)
        .await?;
        for (ord, (track, who)) in s.tracks.iter().enumerate() {
            let json =
                serde_json::to_string(track).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query(
                "INSERT INTO saved_queue_tracks (guild_id, ord, track_json, requester_id, requester)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(g)
            .bind(ord as i64)
            .bind(json)
            .bind(who.id as i64)
            .bind(&who.name)
            .execute(&mut *tx)
            .await?;
        }
    }
    // A guild whose queue was forgotten has no row left: the update then changes nothing.
    for (guild, position) in &pending.positions {
        sqlx::query("UPDATE saved_queues SET position_ms = $1, saved_at = $2 WHERE guild_id = $3")
            .bind(position.as_millis() as i64)
            .bind(super::unix_now())
            .bind(*guild as i64)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
    })
}

/// The filters as saved: `None` when none are on.
fn filters_json(f: &FilterSpec) -> Result<Option<String>, sqlx::Error> {
    if f.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(f)
        .map(Some)
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Filters read back; unreadable or out-of-range ones are dropped (the music plays plain).
fn read_filters(guild: i64, json: Option<String>) -> FilterSpec {
    let Some(json) = json else {
        return FilterSpec::default();
    };
    match serde_json::from_str::<FilterSpec>(&json) {
        Ok(f) if f.validate().is_ok() => f,
        _ => {
            tracing::warn!(guild, "dropping unreadable saved filters");
            FilterSpec::default()
        }
    }
}

/// Every saved queue. Unreadable tracks are skipped.
pub async fn load_all(db: &Db) -> Result<Vec<(u64, SavedQueue)>, sqlx::Error> {
    load_where(db, None).await
}

/// `guild`'s saved queue, for the restore when the guild becomes available to this node
/// (after a start, or when this node takes over the guild's shard).
pub async fn load(db: &Db, guild: u64) -> Result<Option<SavedQueue>, sqlx::Error> {
    Ok(load_where(db, Some(guild)).await?.pop().map(|(_, q)| q))
}

async fn load_where(db: &Db, guild: Option<u64>) -> Result<Vec<(u64, SavedQueue)>, sqlx::Error> {
    with_db!(db, pool => {
    type Head = (i64, i64, i64, String, bool, i64, i64, bool, Option<String>);
    let heads: Vec<Head> = sqlx::query_as(
        "SELECT guild_id, voice_channel, text_channel, loop_mode, paused, volume, position_ms,
                playing, filters_json FROM saved_queues WHERE $1 IS NULL OR guild_id = $1 ORDER BY guild_id",
    )
    .bind(guild.map(|g| g as i64))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(heads.len());
    for (g, voice, text, loop_mode, paused, volume, pos, playing, filters) in heads {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT track_json, requester_id, requester FROM saved_queue_tracks
             WHERE guild_id = $1 ORDER BY ord",
        )
        .bind(g)
        .fetch_all(pool)
        .await?;
        let tracks = rows
            .into_iter()
            .filter_map(|(json, id, name)| {
                let t: Track = serde_json::from_str(&json)
                    .map_err(|e| tracing::warn!(guild = g, error = %e, "skipping an unreadable saved track"))
                    .ok()?;
                Some((t, Requester { id: id as u64, name }))
            })
            .collect();
        let loop_mode = match loop_mode.as_str() {
            "track" => LoopMode::Track,
            "queue" => LoopMode::Queue,
            _ => LoopMode::Off,
        };
        out.push((
            g as u64,
            SavedQueue {
                voice_channel: voice as u64,
                text_channel: text as u64,
                loop_mode,
                paused,
                volume: volume.clamp(0, 200) as u16,
                position: Duration::from_millis(pos.max(0) as u64),
                playing,
                tracks,
                filters: read_filters(g, filters),
            },
        ));
    }
    Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(n: usize) -> SavedQueue {
        SavedQueue {
            voice_channel: 10,
            text_channel: 20,
            loop_mode: LoopMode::Queue,
            paused: false,
            volume: 80,
            position: Duration::from_millis(1500),
            playing: true,
            tracks: (0..n)
                .map(|i| {
                    (
                        crate::player::test_track(&format!("t{i}")),
                        Requester {
                            id: 7,
                            name: "ann".into(),
                        },
                    )
                })
                .collect(),
            // Odd sizes keep their filters; even ones have none (saved as NULL).
            filters: match n % 2 {
                1 => FilterSpec::preset("nightcore").unwrap(),
                _ => FilterSpec::default(),
            },
        }
    }

    #[tokio::test]
    async fn saves_coalesces_flushes_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        for pool in crate::db::testutil::each_engine(dir.path()).await {
            saves_coalesces_flushes_and_loads_on(pool).await;
        }
    }

    async fn saves_coalesces_flushes_and_loads_on(pool: Db) {
        let (w, run) = writer(pool.clone());
        let task = tokio::spawn(run);
        for n in 1..=5 {
            w.save(1, Some(saved(n)));
        }
        w.save(2, Some(saved(2)));
        w.save(2, None);
        assert!(w.flush(Duration::from_secs(5)).await);
        let all = load_all(&pool).await.unwrap();
        assert_eq!(all.len(), 1, "guild 2 was forgotten");
        assert_eq!(load(&pool, 1).await.unwrap().as_ref(), Some(&all[0].1));
        assert_eq!(load(&pool, 2).await.unwrap(), None);
        assert_eq!(all[0].0, 1);
        assert_eq!(all[0].1, saved(5), "the latest state wins, in order");
        drop(w);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn checkpoints_move_the_position_until_a_newer_state_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        for pool in crate::db::testutil::each_engine(dir.path()).await {
            checkpoints_move_the_position_until_a_newer_state_replaces_them_on(pool).await;
        }
    }

    async fn checkpoints_move_the_position_until_a_newer_state_replaces_them_on(pool: Db) {
        let (w, run) = writer(pool.clone());
        let task = tokio::spawn(run);
        let position = |all: &[(u64, SavedQueue)]| all[0].1.position;
        w.save(1, Some(saved(3)));
        w.checkpoint(1, Duration::from_secs(42));
        w.checkpoint(9, Duration::from_secs(7)); // no saved queue: nothing to move
        assert!(w.flush(Duration::from_secs(5)).await);
        let all = load_all(&pool).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(position(&all), Duration::from_secs(42));
        assert_eq!(all[0].1.tracks, saved(3).tracks, "only the position moved");

        w.checkpoint(1, Duration::from_secs(60));
        w.save(1, Some(saved(2))); // newer, with its own position (1.5 s)
        assert!(w.flush(Duration::from_secs(5)).await);
        assert_eq!(position(&load_all(&pool).await.unwrap()), saved(2).position);
        drop(w);
        task.await.unwrap();
    }

    /// Commits fail while `saved_queues` is renamed away.
    async fn set_table_away(pool: &Db, away: bool) {
        let (from, to) = if away {
            ("saved_queues", "saved_queues_away")
        } else {
            ("saved_queues_away", "saved_queues")
        };
        pool.execute(&format!("ALTER TABLE {from} RENAME TO {to}"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        for pool in crate::db::testutil::each_engine(dir.path()).await {
            a_failed_write_is_retried_not_lost_on(pool).await;
        }
    }

    async fn a_failed_write_is_retried_not_lost_on(pool: Db) {
        // Break the table so commits fail, then repair it while the writer retries.
        set_table_away(&pool, true).await;
        let (w, run) = writer(pool.clone());
        let task = tokio::spawn(run);
        w.save(1, Some(saved(3)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        set_table_away(&pool, false).await;
        assert!(
            w.flush(Duration::from_secs(10)).await,
            "the retry commits it"
        );
        assert_eq!(load_all(&pool).await.unwrap()[0].1, saved(3));
        drop(w);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_guild_handed_to_another_node_is_not_written_late() {
        let dir = tempfile::tempdir().unwrap();
        for pool in crate::db::testutil::each_engine(dir.path()).await {
            a_guild_handed_to_another_node_is_not_written_late_on(pool).await;
        }
    }

    async fn a_guild_handed_to_another_node_is_not_written_late_on(pool: Db) {
        set_table_away(&pool, true).await;
        let (w, run) = writer(pool.clone());
        let task = tokio::spawn(run);
        w.save(1, Some(saved(3)));
        w.save(2, Some(saved(2)));
        w.checkpoint(1, Duration::from_secs(9));
        assert!(
            !w.flush(Duration::from_millis(300)).await,
            "the table is away"
        );
        // Guild 1's shard went to another node while the database was out of reach.
        w.forget(vec![1]);
        set_table_away(&pool, false).await;
        assert!(w.flush(Duration::from_secs(10)).await);
        let all = load_all(&pool).await.unwrap();
        let guilds: Vec<u64> = all.iter().map(|(g, _)| *g).collect();
        assert_eq!(
            guilds,
            vec![2],
            "only the guild still served here is written"
        );
        drop(w);
        task.await.unwrap();
    }
}
