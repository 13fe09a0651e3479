//! The cache's one error type; apart so every cache file returns it without importing cache/mod.rs.

/// A cache operation failed (callers log it and carry on without the cache).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("cache I/O error: {0}")]
    Io(#[from] std::io::Error),
}
