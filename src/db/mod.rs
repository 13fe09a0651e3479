//! The database: SQLite (one file, the embedded default) or PostgreSQL (the store a
//! cluster of nodes shares), behind one [`Db`] handle.
//!
//! Why an enum over two native pools and not sqlx's `Any` driver: `Any` maps column
//! types through a lowest common denominator (no booleans from SQLite, no NUMERIC from
//! Postgres) and fails at run time where the native drivers fail at compile time. Every
//! query here is written once, in the SQL both engines accept (`$1` placeholders, which
//! sqlx's SQLite driver also binds by number), and [`with_db!`] runs it on whichever pool
//! is open. The migrations differ (column types), so each engine has its own folder,
//! `migrations/sqlite` and `migrations/postgres`, with the same versions side by side; the
//! cluster's tables (`0004_cluster.sql`: nodes, shard leases, identify slots) exist on
//! PostgreSQL only, since a SQLite store is one process.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::{DataConfig, DatabaseTarget};

/// Runs `$body` with `$p` bound to the open pool, whichever engine it is: the body is
/// compiled once per engine, so it must be SQL both accept and types both encode (no
/// `u64` or `u32`: bind `i64`).
macro_rules! with_db {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($p) => $body,
            $crate::db::Db::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_db;

pub mod history;
pub mod lyrics;
pub mod playlists;
pub mod queues;

#[cfg(test)]
pub mod testpg;
#[cfg(test)]
pub mod testutil;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which engine a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        }
    }

    /// The migrations this build applies on this engine.
    pub fn migrations(self) -> &'static Migrator {
        match self {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

/// An open, migrated database. Cheap to clone (the pools are shared handles).
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    /// Opens the configured database and brings its schema up to date.
    pub async fn open(target: &DatabaseTarget) -> anyhow::Result<Db> {
        match target {
            DatabaseTarget::Sqlite(path) => open(path).await,
            DatabaseTarget::Postgres(url) => open_postgres(url).await,
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Db::Sqlite(_) => Engine::Sqlite,
            Db::Postgres(_) => Engine::Postgres,
        }
    }

    /// Waits for every connection to be returned, then closes them.
    pub async fn close(&self) {
        with_db!(self, p => p.close().await)
    }

    /// One round trip: the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_db!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))
    }

    /// Runs one statement without parameters; returns the rows it changed.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        with_db!(self, p => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()))
    }

    /// Applies every migration not yet applied.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = self.engine().migrations();
        with_db!(self, p => migrator.run(p).await).context("cannot apply database migrations")
    }
}

/// What a node opens: the database (which every node of a cluster shares) and this
/// machine's own SQLite file, for what only this machine has (the audio cache's index of
/// its files). On a single machine both are the same SQLite database.
#[derive(Clone, Debug)]
pub struct Stores {
    pub db: Db,
    pub local: SqlitePool,
}

impl Stores {
    pub async fn open(data: &DataConfig) -> anyhow::Result<Stores> {
        let db = Db::open(&data.database()).await?;
        let local = match &db {
            Db::Sqlite(pool) => pool.clone(),
            Db::Postgres(_) => open_sqlite(&data.local_path()).await?,
        };
        Ok(Stores { db, local })
    }

    /// The single-machine setup: one SQLite database for everything.
    pub fn single(pool: SqlitePool) -> Stores {
        Stores {
            db: Db::Sqlite(pool.clone()),
            local: pool,
        }
    }

    pub async fn close(&self) {
        self.db.close().await;
        self.local.close().await;
    }
}

/// Opens (creating if missing) the SQLite database at `path`, migrated.
pub async fn open(path: &Path) -> anyhow::Result<Db> {
    Ok(Db::Sqlite(open_sqlite(path).await?))
}

/// [`open`], as the SQLite pool itself.
pub async fn open_sqlite(path: &Path) -> anyhow::Result<SqlitePool> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open database {}", path.display()))?;
    SQLITE_MIGRATIONS
        .run(&pool)
        .await
        .context("cannot apply database migrations")?;
    Ok(pool)
}

/// Connects to the PostgreSQL database at `url`, migrated. Migrations take a lock in the
/// database (sqlx's advisory lock), so nodes starting together apply them once.
pub async fn open_postgres(url: &str) -> anyhow::Result<Db> {
    let options = PgConnectOptions::from_str(url).context("invalid PostgreSQL URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to {}", crate::config::redact_url(url)))?;
    let db = Db::Postgres(pool);
    db.migrate().await?;
    Ok(db)
}

/// Seconds since the Unix epoch, the time unit stored in the database.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_opens_in_wal_mode_and_migrates_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/encore.db");
        let db = open(&path).await.unwrap();
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        db.close().await;
        let db = open(&path).await.unwrap();
        assert_eq!(applied(&db).await, SQLITE_MIGRATIONS.iter().count());
    }

    async fn applied(db: &Db) -> usize {
        let n: i64 = with_db!(db, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM _sqlx_migrations WHERE success"
        )
        .fetch_one(p)
        .await)
        .unwrap();
        n as usize
    }

    /// Migrations only PostgreSQL has: the cluster's leases and node table (0004) mean nothing
    /// to one process on SQLite. Every other version exists for both engines.
    const POSTGRES_ONLY: &[i64] = &[4];

    #[tokio::test]
    async fn postgres_migrates_twice_and_both_engines_have_the_same_versions() {
        let url = testpg::server().fresh_database().await;
        let db = open_postgres(&url).await.unwrap();
        db.close().await;
        let db = open_postgres(&url).await.unwrap();
        assert_eq!(applied(&db).await, POSTGRES_MIGRATIONS.iter().count());
        let versions = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        let shared: Vec<i64> = versions(&POSTGRES_MIGRATIONS)
            .into_iter()
            .filter(|v| !POSTGRES_ONLY.contains(v))
            .collect();
        assert_eq!(
            versions(&SQLITE_MIGRATIONS),
            shared,
            "every schema change but the cluster's exists for both engines"
        );
    }
}
