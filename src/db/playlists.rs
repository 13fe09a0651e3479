//! Playlists members save with `/playlist`: per member and server, optionally shared with
//! the server (others may see and load it; only its owner may change it). Names are
//! unique per owner whatever their case. The limits (how many, how long) are checked here,
//! inside the transaction that writes, so two saves at once cannot pass them together.

use super::Db;
use crate::sources::Track;

/// One playlist, without its tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: i64,
    pub owner_id: u64,
    pub owner_name: String,
    pub name: String,
    pub shared: bool,
    pub tracks: usize,
}

/// Who saves, where, and the limits that apply.
#[derive(Debug, Clone)]
pub struct Owner {
    pub guild: u64,
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_per_member: usize,
    pub max_tracks: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaylistError {
    /// The member already has this many playlists.
    #[error("too many playlists ({0})")]
    TooMany(usize),
    /// The playlist would hold more than this many tracks.
    #[error("too many tracks ({0})")]
    TooLong(usize),
    /// The owner already has a playlist of that name.
    #[error("the name is taken")]
    Taken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How a save treats a playlist of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Its tracks are replaced (or it is created).
    Replace,
    /// The tracks are added at its end (or it is created).
    Append,
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub created: bool,
    pub tracks: usize,
    pub shared: bool,
}

/// The name as it is compared: trimmed, lower case.
pub fn key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A track as a saved playlist keeps it: without the stream URL and its headers, which
/// expire; it is looked up again when it plays.
fn stored(track: &Track) -> Result<String, sqlx::Error> {
    let mut t = track.clone();
    t.stream_url.clear();
    t.http_headers.clear();
    t.stream_expires = None;
    serde_json::to_string(&t).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

type Row = (i64, i64, String, String, bool, i64);

fn summary((id, owner, owner_name, name, shared, n): Row) -> Summary {
    Summary {
        id,
        owner_id: owner as u64,
        owner_name,
        name,
        shared,
        tracks: n as usize,
    }
}

const SELECT: &str = "SELECT p.id, p.owner_id, p.owner_name, p.name, p.shared,
        (SELECT COUNT(*) FROM playlist_tracks t WHERE t.playlist_id = p.id)
    FROM playlists p";

/// Saves `tracks` under `name` for `owner`. `shared`: `Some` sets who may see it, `None`
/// keeps what it was (private for a new one).
pub async fn save(
    db: &Db,
    owner: &Owner,
    name: &str,
    tracks: &[Track],
    mode: Mode,
    shared: Option<bool>,
    limits: Limits,
) -> Result<Saved, PlaylistError> {
    let now = super::unix_now();
    with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let existing: Option<(i64, bool, i64)> = sqlx::query_as(
            "SELECT p.id, p.shared, (SELECT COUNT(*) FROM playlist_tracks t WHERE t.playlist_id = p.id)
             FROM playlists p WHERE guild_id = $1 AND owner_id = $2 AND name_key = $3",
        )
        .bind(owner.guild as i64)
        .bind(owner.id as i64)
        .bind(key(name))
        .fetch_optional(&mut *tx)
        .await?;
        let (id, created, first, was_shared) = match existing {
            Some((id, was_shared, n)) => {
                let first = match mode {
                    Mode::Replace => 0,
                    Mode::Append => n,
                };
                (id, false, first, was_shared)
            }
            None => {
                let (owned,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM playlists WHERE guild_id = $1 AND owner_id = $2",
                )
                .bind(owner.guild as i64)
                .bind(owner.id as i64)
                .fetch_one(&mut *tx)
                .await?;
                if owned as usize >= limits.max_per_member {
                    return Err(PlaylistError::TooMany(limits.max_per_member));
                }
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO playlists (guild_id, owner_id, owner_name, name, name_key, shared,
                         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
                )
                .bind(owner.guild as i64)
                .bind(owner.id as i64)
                .bind(&owner.name)
                .bind(name.trim())
                .bind(key(name))
                .bind(shared.unwrap_or(false))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                (id, true, 0, false)
            }
        };
        let total = first as usize + tracks.len();
        if total > limits.max_tracks {
            return Err(PlaylistError::TooLong(limits.max_tracks));
        }
        let shared = shared.unwrap_or(was_shared);
        if !created {
            if mode == Mode::Replace {
                sqlx::query("DELETE FROM playlist_tracks WHERE playlist_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "UPDATE playlists SET shared = $1, owner_name = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(shared)
            .bind(&owner.name)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        for (i, t) in tracks.iter().enumerate() {
            sqlx::query("INSERT INTO playlist_tracks (playlist_id, ord, track_json) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(first + i as i64)
                .bind(stored(t)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Saved { created, tracks: total, shared })
    })
}

/// The playlist `name` as `caller` sees it: their own, else one another member shared
/// with the server (the oldest, if several did).
pub async fn find(
    db: &Db,
    guild: u64,
    caller: u64,
    name: &str,
) -> Result<Option<Summary>, sqlx::Error> {
    let sql = format!(
        "{SELECT} WHERE p.guild_id = $1 AND p.name_key = $2 AND (p.owner_id = $3 OR p.shared)
         ORDER BY CASE WHEN p.owner_id = $3 THEN 0 ELSE 1 END, p.created_at, p.id LIMIT 1"
    );
    let row: Option<Row> = with_db!(db, p => sqlx::query_as(&sql)
        .bind(guild as i64)
        .bind(key(name))
        .bind(caller as i64)
        .fetch_optional(p)
        .await)?;
    Ok(row.map(summary))
}

/// The playlists `caller` may load here: their own first, then those shared by others.
pub async fn visible(db: &Db, guild: u64, caller: u64) -> Result<Vec<Summary>, sqlx::Error> {
    let sql = format!(
        "{SELECT} WHERE p.guild_id = $1 AND (p.owner_id = $2 OR p.shared)
         ORDER BY CASE WHEN p.owner_id = $2 THEN 0 ELSE 1 END, p.name_key, p.id"
    );
    let rows: Vec<Row> = with_db!(db, p => sqlx::query_as(&sql)
        .bind(guild as i64)
        .bind(caller as i64)
        .fetch_all(p)
        .await)?;
    Ok(rows.into_iter().map(summary).collect())
}

/// The tracks of playlist `id`, in order; a track that no longer reads is skipped.
pub async fn tracks(db: &Db, id: i64) -> Result<Vec<Track>, sqlx::Error> {
    let rows: Vec<(String,)> = with_db!(db, p => sqlx::query_as(
        "SELECT track_json FROM playlist_tracks WHERE playlist_id = $1 ORDER BY ord",
    )
    .bind(id)
    .fetch_all(p)
    .await)?;
    Ok(rows
        .into_iter()
        .filter_map(|(json,)| {
            serde_json::from_str(&json)
                .map_err(|e| tracing::warn!(playlist = id, error = %e, "skipping an unreadable saved track"))
                .ok()
        })
        .collect())
}

/// Deletes playlist `id` if `owner` owns it; true if it did.
pub async fn delete(db: &Db, id: i64, owner: u64) -> Result<bool, sqlx::Error> {
    with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let owned: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM playlists WHERE id = $1 AND owner_id = $2")
                .bind(id)
                .bind(owner as i64)
                .fetch_optional(&mut *tx)
                .await?;
        if owned.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM playlist_tracks WHERE playlist_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM playlists WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Renames playlist `id` (owned by `owner`) to `name`; `Ok(false)` if `owner` does not
/// own it, [`PlaylistError::Taken`] if they have another of that name.
pub async fn rename(db: &Db, id: i64, owner: &Owner, name: &str) -> Result<bool, PlaylistError> {
    let clash: Option<(i64,)> = with_db!(db, p => sqlx::query_as(
        "SELECT id FROM playlists WHERE guild_id = $1 AND owner_id = $2 AND name_key = $3 AND id <> $4",
    )
    .bind(owner.guild as i64)
    .bind(owner.id as i64)
    .bind(key(name))
    .bind(id)
    .fetch_optional(p)
    .await)?;
    if clash.is_some() {
        return Err(PlaylistError::Taken);
    }
    let changed = with_db!(db, p => sqlx::query(
        "UPDATE playlists SET name = $1, name_key = $2, updated_at = $3 WHERE id = $4 AND owner_id = $5",
    )
    .bind(name.trim())
    .bind(key(name))
    .bind(super::unix_now())
    .bind(id)
    .bind(owner.id as i64)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => PlaylistError::Taken,
        _ => PlaylistError::Db(e),
    })?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(n: &str) -> Track {
        let mut t = crate::player::test_track(n);
        t.http_headers = vec![("Cookie".into(), "secret".into())];
        t
    }

    const LIMITS: Limits = Limits {
        max_per_member: 2,
        max_tracks: 3,
    };

    fn owner(id: u64) -> Owner {
        Owner {
            guild: 7,
            id,
            name: format!("m{id}"),
        }
    }

    #[tokio::test]
    async fn save_find_load_share_rename_delete_on_both_engines() {
        let dir = tempfile::tempdir().unwrap();
        for db in crate::db::testutil::each_engine(dir.path()).await {
            let e = db.engine().name();
            let (ann, ben) = (owner(1), owner(2));
            let s = save(
                &db,
                &ann,
                " Road Trip ",
                &[track("a"), track("b")],
                Mode::Replace,
                None,
                LIMITS,
            )
            .await
            .unwrap();
            assert_eq!(
                s,
                Saved {
                    created: true,
                    tracks: 2,
                    shared: false
                },
                "{e}"
            );
            // Private: ben does not see it; ann finds it in any case.
            assert!(find(&db, 7, 2, "road trip").await.unwrap().is_none(), "{e}");
            let p = find(&db, 7, 1, "ROAD TRIP").await.unwrap().unwrap();
            assert_eq!(
                (p.name.as_str(), p.tracks, p.shared),
                ("Road Trip", 2, false)
            );
            let loaded = tracks(&db, p.id).await.unwrap();
            let titles: Vec<_> = loaded.iter().map(|t| t.title.as_str()).collect();
            assert_eq!(titles, ["a", "b"], "{e}");
            assert!(loaded
                .iter()
                .all(|t| t.stream_url.is_empty() && t.http_headers.is_empty()));
            // Appending past the track limit is refused and changes nothing.
            let err = save(
                &db,
                &ann,
                "road trip",
                &[track("c"), track("d")],
                Mode::Append,
                None,
                LIMITS,
            )
            .await
            .unwrap_err();
            assert!(matches!(err, PlaylistError::TooLong(3)), "{e}: {err:?}");
            assert_eq!(tracks(&db, p.id).await.unwrap().len(), 2);
            let s = save(
                &db,
                &ann,
                "road trip",
                &[track("c")],
                Mode::Append,
                Some(true),
                LIMITS,
            )
            .await
            .unwrap();
            assert_eq!(
                s,
                Saved {
                    created: false,
                    tracks: 3,
                    shared: true
                }
            );
            // Shared: ben sees and finds it, but may neither delete nor rename it.
            let seen = find(&db, 7, 2, "road trip").await.unwrap().unwrap();
            assert_eq!(seen.id, p.id);
            assert_eq!(visible(&db, 7, 2).await.unwrap().len(), 1);
            assert!(!delete(&db, p.id, 2).await.unwrap(), "{e}");
            assert!(!rename(&db, p.id, &ben, "mine").await.unwrap(), "{e}");
            // The member limit.
            save(&db, &ann, "two", &[track("x")], Mode::Replace, None, LIMITS)
                .await
                .unwrap();
            let err = save(
                &db,
                &ann,
                "three",
                &[track("x")],
                Mode::Replace,
                None,
                LIMITS,
            )
            .await
            .unwrap_err();
            assert!(matches!(err, PlaylistError::TooMany(2)), "{e}: {err:?}");
            // Names are unique per owner in any case.
            assert!(matches!(
                rename(&db, p.id, &ann, "TWO").await,
                Err(PlaylistError::Taken)
            ));
            assert!(rename(&db, p.id, &ann, "Drive").await.unwrap());
            assert_eq!(find(&db, 7, 1, "drive").await.unwrap().unwrap().id, p.id);
            // Replacing keeps sharing and swaps the tracks.
            let s = save(
                &db,
                &ann,
                "drive",
                &[track("z")],
                Mode::Replace,
                None,
                LIMITS,
            )
            .await
            .unwrap();
            assert_eq!(
                s,
                Saved {
                    created: false,
                    tracks: 1,
                    shared: true
                }
            );
            assert!(delete(&db, p.id, 1).await.unwrap());
            assert!(find(&db, 7, 1, "drive").await.unwrap().is_none());
            assert!(tracks(&db, p.id).await.unwrap().is_empty());
            db.close().await;
        }
    }
}
