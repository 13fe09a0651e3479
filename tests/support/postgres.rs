//! The engines the database-backed tests run on: SQLite (a file in the test's data
//! directory, the bot's default) and PostgreSQL (a database of its own on the test run's
//! private server, `src/db/testpg.rs`, which the unit tests use too).

pub use super::testpg::{server, INSTALL_HINT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The `data.database` setting for a fresh database on this engine: `None` for
    /// SQLite (the default file in the bot's data directory), a new database's URL for
    /// PostgreSQL.
    pub async fn fresh_database(self) -> Option<String> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres => Some(server().fresh_database().await),
        }
    }
}

/// Generates one test per engine, `sqlite::NAME` and `postgres::NAME`, from each
/// `async fn NAME(engine: Engine)` listed.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::postgres::Engine::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::postgres::Engine::Postgres).await
                }
            )*
        }
    };
}
