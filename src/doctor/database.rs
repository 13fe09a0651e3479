//! `encore doctor`'s database check: the data directory is writable and the database, if
//! there is one, opens and is migrated as far as this build expects (read only: it never
//! migrates).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::Check;
use crate::config::{redact_url, Config, DatabaseTarget};
use crate::db::Engine;

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated path only.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

const NAME: &str = "database";

pub(super) async fn check_database(config: &Config) -> Check {
    match config.data.database() {
        DatabaseTarget::Sqlite(path) => check_sqlite(&path).await,
        DatabaseTarget::Postgres(url) => verdict(
            &redact_url(&url),
            inspect_postgres(&url).await,
            "check the URL, that this machine reaches the server, and that its user may create \
             tables in that database"
                .into(),
        ),
    }
}

async fn check_sqlite(path: &Path) -> Check {
    let path = path.to_path_buf();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        if let Ok(meta) = std::fs::metadata(&dir) {
            if meta.uid() != 0 {
                return Check::warn(
                    NAME,
                    format!(
                        "not checked: doctor runs as root, but {} belongs to uid {}",
                        dir.display(),
                        meta.uid()
                    ),
                    "run doctor as the bot's user (README: Deploying with systemd) so the check means something",
                );
            }
        }
    }
    if !path.exists() {
        let mut anc = dir.as_path();
        while !anc.exists() {
            match anc.parent() {
                Some(p) if !p.as_os_str().is_empty() => anc = p,
                _ => {
                    anc = Path::new(".");
                    break;
                }
            }
        }
        return if writable(anc) {
            Check::ok(
                NAME,
                format!(
                    "{} does not exist yet; it is created and migrated at first start (or by `encore migrate`)",
                    path.display()
                ),
            )
        } else {
            Check::fail(
                NAME,
                format!(
                    "cannot create {}: {} is not writable by this user",
                    path.display(),
                    anc.display()
                ),
                "create the directory and give it to the bot's user (chown), or set data.dir / ENCORE_DATA_DIR",
            )
        };
    }
    if !writable(&dir) {
        return Check::fail(
            NAME,
            format!("{} is not writable by this user", dir.display()),
            format!(
                "chown -R <bot user> {} (SQLite writes its journal next to the database)",
                dir.display()
            ),
        );
    }
    verdict(
        &path.display().to_string(),
        inspect_database(&path).await,
        format!(
            "make sure the bot's user owns {} and the files in it (chown -R)",
            dir.display()
        ),
    )
}

/// The check's result from what the database's migration table says.
fn verdict(label: &str, inspected: Result<Migrations, String>, fix: String) -> Check {
    match inspected {
        Ok(Migrations {
            applied,
            pending,
            unknown,
            failed,
        }) => {
            if let Some(v) = failed.first() {
                Check::fail(
                    NAME,
                    format!("{label}: migration {v} failed part-way"),
                    "restore the database from a backup, then start the bot",
                )
            } else if let Some(v) = unknown.first() {
                Check::fail(
                    NAME,
                    format!(
                        "{label} was migrated by a newer encore (migration {v} is unknown to this version)"
                    ),
                    "install that newer encore again, or restore a backup made before the upgrade",
                )
            } else if !pending.is_empty() {
                Check::warn(
                    NAME,
                    format!(
                        "{label} is writable; {} migration(s) pending",
                        pending.len()
                    ),
                    "they are applied at the next start, or now with `encore migrate`",
                )
            } else {
                Check::ok(
                    NAME,
                    format!("{label} is writable and migrated ({applied} migrations)"),
                )
            }
        }
        Err(e) => Check::fail(NAME, format!("{label}: {e}"), fix),
    }
}

struct Migrations {
    applied: usize,
    pending: Vec<i64>,
    unknown: Vec<i64>,
    failed: Vec<i64>,
}

async fn inspect_database(path: &Path) -> Result<Migrations, String> {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{Connection, Row};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| format!("cannot open: {e}"))?;
    let result = async {
        // A write that is rolled back: proves the file (and its directory) take writes.
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .map_err(|e| format!("not writable: {e}"))?;
        let probe = sqlx::query("CREATE TABLE encore_doctor_probe (x INTEGER)")
            .execute(&mut conn)
            .await;
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        probe.map_err(|e| format!("not writable: {e}"))?;

        let has_table: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
        let rows = if has_table.is_some() {
            sqlx::query("SELECT version, success FROM _sqlx_migrations")
                .fetch_all(&mut conn)
                .await
                .map_err(|e| format!("cannot read the migration table: {e}"))?
        } else {
            Vec::new()
        };
        let applied: Vec<(i64, bool)> = rows
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1)))
            .collect();
        Ok(Migrations::new(Engine::Sqlite, applied))
    }
    .await;
    let _ = conn.close().await;
    result
}

/// The same questions of a PostgreSQL database: it answers, takes a write (rolled back),
/// and how far it is migrated.
async fn inspect_postgres(url: &str) -> Result<Migrations, String> {
    use sqlx::{Connection, Row};
    let options = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|e| format!("invalid URL: {e}"))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::PgConnection::connect_with(&options),
    )
    .await
    .map_err(|_| "no answer within 10 s".to_string())?
    .map_err(|e| format!("cannot connect: {e}"))?;
    let result = async {
        let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
        sqlx::query("CREATE TABLE encore_doctor_probe (x BIGINT)")
            .execute(&mut *tx)
            .await
            .map_err(|e| format!("cannot create a table: {e}"))?;
        tx.rollback().await.map_err(|e| e.to_string())?;
        let rows = sqlx::query("SELECT version, success FROM _sqlx_migrations")
            .fetch_all(&mut conn)
            .await;
        // Before the first start the table does not exist: nothing applied yet.
        let rows = match rows {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(format!("cannot read the migration table: {e}")),
        };
        let applied = rows
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1)))
            .collect();
        Ok(Migrations::new(Engine::Postgres, applied))
    }
    .await;
    let _ = conn.close().await;
    result
}

impl Migrations {
    /// Compares what a database applied (version, succeeded) with what this build knows.
    fn new(engine: Engine, applied: Vec<(i64, bool)>) -> Migrations {
        let known: Vec<i64> = engine
            .migrations()
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .collect();
        Migrations {
            applied: applied.len(),
            pending: known
                .iter()
                .copied()
                .filter(|v| !applied.iter().any(|(a, _)| a == v))
                .collect(),
            unknown: applied
                .iter()
                .map(|(v, _)| *v)
                .filter(|v| !known.contains(v))
                .collect(),
            failed: applied
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(v, _)| *v)
                .collect(),
        }
    }
}
