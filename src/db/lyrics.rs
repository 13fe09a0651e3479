//! LRCLIB's answers, kept so that a second `/lyrics` for the same song asks nobody: the
//! record as JSON when it had lyrics, `NULL` when it had none. Freshness is the caller's
//! rule (found and missing answers are kept for different times).

use super::Db;

/// What was stored for `lookup`: the body (`None`: LRCLIB had nothing) and when, in Unix
/// seconds.
pub async fn get(db: &Db, lookup: &str) -> Result<Option<(Option<String>, i64)>, sqlx::Error> {
    with_db!(db, p => sqlx::query_as(
        "SELECT body, fetched_at FROM lyrics_cache WHERE lookup = $1",
    )
    .bind(lookup)
    .fetch_optional(p)
    .await)
}

/// Stores (or replaces) the answer for `lookup`, stamped now.
pub async fn put(db: &Db, lookup: &str, body: Option<&str>) -> Result<(), sqlx::Error> {
    with_db!(db, p => sqlx::query(
        "INSERT INTO lyrics_cache (lookup, body, fetched_at) VALUES ($1, $2, $3)
         ON CONFLICT (lookup) DO UPDATE SET body = excluded.body, fetched_at = excluded.fetched_at",
    )
    .bind(lookup)
    .bind(body)
    .bind(super::unix_now())
    .execute(p)
    .await
    .map(|_| ()))
}

/// Forgets answers stored before `found_before` (found) or `missing_before` (missing).
pub async fn expire(db: &Db, found_before: i64, missing_before: i64) -> Result<u64, sqlx::Error> {
    with_db!(db, p => sqlx::query(
        "DELETE FROM lyrics_cache WHERE (body IS NOT NULL AND fetched_at < $1)
                                     OR (body IS NULL AND fetched_at < $2)",
    )
    .bind(found_before)
    .bind(missing_before)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_and_misses_are_kept_and_replaced_on_both_engines() {
        let dir = tempfile::tempdir().unwrap();
        for db in crate::db::testutil::each_engine(dir.path()).await {
            assert_eq!(get(&db, "a").await.unwrap(), None);
            put(&db, "a", None).await.unwrap();
            let (body, at) = get(&db, "a").await.unwrap().unwrap();
            assert_eq!(body, None, "{:?}", db.engine());
            assert!(at > 0);
            put(&db, "a", Some("{\"id\":1}")).await.unwrap();
            assert_eq!(
                get(&db, "a").await.unwrap().unwrap().0.as_deref(),
                Some("{\"id\":1}")
            );
            put(&db, "b", None).await.unwrap();
            // Found answers older than now+10 go, misses are kept.
            let now = crate::db::unix_now();
            assert_eq!(expire(&db, now + 10, 0).await.unwrap(), 1);
            assert!(get(&db, "a").await.unwrap().is_none());
            assert!(get(&db, "b").await.unwrap().is_some());
            db.close().await;
        }
    }
}
