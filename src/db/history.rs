//! What each guild played, newest first: shown to people as suggestions.

use super::Db;
use crate::sources::Track;

/// Who queued what, and how often: one row of [`plays_by_member`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plays {
    pub page_url: String,
    pub title: String,
    pub requested_by: u64,
    pub plays: i64,
}

/// Records that `requested_by` queued `track` now (0: autoplay queued it).
pub async fn record(
    db: &Db,
    guild: u64,
    track: &Track,
    requested_by: u64,
) -> Result<(), sqlx::Error> {
    record_at(db, guild, track, requested_by, super::unix_now()).await
}

/// [`record`] at `played_at` (unix seconds).
pub async fn record_at(
    db: &Db,
    guild: u64,
    track: &Track,
    requested_by: u64,
    played_at: i64,
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
    .bind(played_at)
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

/// Page URLs and track keys this guild played at or after `since` (unix seconds).
pub async fn played_since(db: &Db, guild: u64, since: i64) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String, String)> = with_db!(db, p => sqlx::query_as(
        "SELECT DISTINCT page_url, track_key FROM play_history
         WHERE guild_id = $1 AND played_at >= $2",
    )
    .bind(guild as i64)
    .bind(since)
    .fetch_all(p)
    .await)?;
    Ok(rows.into_iter().flat_map(|(u, k)| [u, k]).collect())
}

/// How often each member queued each page in this guild, most first (at most `limit`
/// rows); what autoplay queued itself does not count.
pub async fn plays_by_member(db: &Db, guild: u64, limit: u32) -> Result<Vec<Plays>, sqlx::Error> {
    let rows: Vec<(String, String, i64, i64)> = with_db!(db, p => sqlx::query_as(
        "SELECT page_url, MAX(title), requested_by, COUNT(*) FROM play_history
         WHERE guild_id = $1 AND requested_by <> 0
         GROUP BY page_url, requested_by
         ORDER BY COUNT(*) DESC, MAX(played_at) DESC LIMIT $2",
    )
    .bind(guild as i64)
    .bind(i64::from(limit))
    .fetch_all(p)
    .await)?;
    Ok(rows
        .into_iter()
        .map(|(page_url, title, by, plays)| Plays {
            page_url,
            title,
            requested_by: by as u64,
            plays,
        })
        .collect())
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

        // Who played what how often, and what played since a moment.
        let mut old = crate::player::test_track("Old Song");
        old.page_url = "https://example.com/old".into();
        for _ in 0..3 {
            record_at(&pool, 1, &old, 8, 1000).await.unwrap();
        }
        record(&pool, 1, &old, 0).await.unwrap(); // autoplay's own: not counted
        let plays = plays_by_member(&pool, 1, 10).await.unwrap();
        assert_eq!(plays[0].page_url, "https://example.com/old");
        assert_eq!((plays[0].requested_by, plays[0].plays), (8, 3));
        assert_eq!(plays.len(), 3, "{plays:?}");
        let since = played_since(&pool, 1, 2000).await.unwrap();
        assert!(
            since.contains(&"https://example.com/old".to_string()),
            "autoplay's row is recent"
        );
        assert!(!played_since(&pool, 1, i64::MAX)
            .await
            .unwrap()
            .contains(&old.page_url));
    }
}
