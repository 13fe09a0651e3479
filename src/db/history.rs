//! What each guild played, newest first: shown to people as suggestions.

use sqlx::SqlitePool;

use crate::sources::Track;

pub async fn record(
    pool: &SqlitePool,
    guild: u64,
    track: &Track,
    requested_by: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO play_history (guild_id, track_key, title, page_url, requested_by, played_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(guild as i64)
    .bind(track.cache_key())
    .bind(&track.title)
    .bind(&track.page_url)
    .bind(requested_by as i64)
    .bind(super::unix_now())
    .execute(pool)
    .await?;
    Ok(())
}

/// Distinct (title, url) pairs this guild played whose title contains `needle`, newest first.
pub async fn search(
    pool: &SqlitePool,
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
    sqlx::query_as(
        "SELECT title, page_url FROM play_history
         WHERE guild_id = ? AND title LIKE ? ESCAPE '\\'
         GROUP BY page_url ORDER BY MAX(played_at) DESC, MAX(id) DESC LIMIT ?",
    )
    .bind(guild as i64)
    .bind(pattern)
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_and_finds_by_title() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("h.db")).await.unwrap();
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
