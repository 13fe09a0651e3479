//! What each guild played, newest first: shown to people as suggestions.

use super::Db;
use crate::sources::Track;

pub async fn record(
    db: &Db,
    guild: u64,
    track: &Track,
    requested_by: u64,
) -> Result<(), sqlx::Error> {
    with_db!(db, p => sqlx::query(
        "INSERT INTO play_history (guild_id, track_key, title, page_url, requested_by, played_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(guild as i64)
    .bind(track.cache_key())
    .bind(&track.title)
    .bind(&track.page_url)
    .bind(requested_by as i64)
    .bind(super::unix_now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Distinct (title, url) pairs this guild played whose title contains `needle`, newest first.
pub async fn search(
    db: &Db,
    guild: u64,
    needle: &str,
    limit: u32,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let pattern = format!(
        "%{}%",
        needle
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    // The newest play of each page, newest first; LOWER on both sides because SQLite's
    // LIKE ignores case and PostgreSQL's does not.
    with_db!(db, p => sqlx::query_as(
        "SELECT title, page_url FROM (
             SELECT title, page_url, played_at, id, ROW_NUMBER() OVER (
                 PARTITION BY page_url ORDER BY played_at DESC, id DESC) AS newest
             FROM play_history
             WHERE guild_id = $1 AND LOWER(title) LIKE LOWER($2) ESCAPE '\\') AS plays
         WHERE newest = 1 ORDER BY played_at DESC, id DESC LIMIT $3",
    )
    .bind(guild as i64)
    .bind(pattern)
    .bind(i64::from(limit))
    .fetch_all(p)
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_and_finds_by_title() {
        let dir = tempfile::tempdir().unwrap();
        for pool in crate::db::testutil::each_engine(dir.path()).await {
            records_and_finds_by_title_on(pool).await;
        }
    }

    async fn records_and_finds_by_title_on(pool: Db) {
        let mut t = crate::player::test_track("Blue Monday");
        record(&pool, 1, &t, 7).await.unwrap();
        record(&pool, 1, &t, 7).await.unwrap();
        t.title = "100% pure".into();
        t.page_url = "https://example.com/pure".into();
        record(&pool, 1, &t, 7).await.unwrap();
        record(&pool, 2, &t, 7).await.unwrap();
        let found = search(&pool, 1, "blue", 10).await.unwrap();
        assert_eq!(found.len(), 1, "duplicates fold into one");
        assert_eq!(found[0].0, "Blue Monday");
        assert_eq!(search(&pool, 1, "%", 10).await.unwrap()[0].0, "100% pure");
        assert_eq!(search(&pool, 1, "", 10).await.unwrap().len(), 2);
        assert!(search(&pool, 3, "", 10).await.unwrap().is_empty());
    }
}
