//! Databases for unit tests: every query is tested on both engines, each test on a
//! fresh database of its own (SQLite in the test's directory, PostgreSQL on the test
//! run's private server, `testpg`).

use std::path::Path;

use super::Db;
use crate::config::DatabaseTarget;

/// A fresh database on each engine, not yet opened: SQLite first, then PostgreSQL.
pub async fn targets(dir: &Path) -> [DatabaseTarget; 2] {
    let url = super::testpg::server().fresh_database().await;
    [
        DatabaseTarget::Sqlite(dir.join("encore.db")),
        DatabaseTarget::Postgres(url),
    ]
}

/// A fresh, migrated database on each engine: SQLite first, then PostgreSQL.
pub async fn each_engine(dir: &Path) -> [Db; 2] {
    let [a, b] = targets(dir).await;
    [Db::open(&a).await.unwrap(), Db::open(&b).await.unwrap()]
}
