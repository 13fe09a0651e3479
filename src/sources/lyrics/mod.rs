//! Lyrics from LRCLIB, cache first: `/lyrics` asks [`LyricsService::find`], which answers
//! from the database when it can (found lyrics for `lyrics.cache_ttl`, "nothing there"
//! for `lyrics.miss_ttl`) and asks LRCLIB otherwise.
//!
//! - `lrclib.rs`: the HTTP API and its record;
//! - `matching.rs`: what song a track is, and which record fits it;
//! - `synced.rs`: synced lyrics as a timeline the `/lyrics` message follows.

pub mod lrclib;
pub mod matching;
pub mod synced;

use std::time::Duration;

pub use lrclib::{Lrclib, LrclibError, Record};
pub use matching::Wanted;
pub use synced::Timeline;

use crate::db::Db;

/// What [`LyricsService::find`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// `None`: LRCLIB has nothing for it.
    pub record: Option<Record>,
    /// Answered from the database, without asking LRCLIB.
    pub cached: bool,
}

pub struct LyricsService {
    api: Lrclib,
    db: Db,
    cache_ttl: Duration,
    miss_ttl: Duration,
}

impl LyricsService {
    pub fn new(api: Lrclib, db: Db, cache_ttl: Duration, miss_ttl: Duration) -> LyricsService {
        LyricsService {
            api,
            db,
            cache_ttl,
            miss_ttl,
        }
    }

    /// The lyrics of `wanted`, from the cache or LRCLIB. A cache that cannot be read or
    /// written is logged and passed by: lyrics still come, only slower.
    pub async fn find(&self, wanted: &Wanted) -> Result<Found, LrclibError> {
        let key = wanted.cache_key();
        match crate::db::lyrics::get(&self.db, &key).await {
            Ok(Some((body, at))) => {
                let ttl = if body.is_some() {
                    self.cache_ttl
                } else {
                    self.miss_ttl
                };
                let fresh = crate::db::unix_now().saturating_sub(at) < ttl.as_secs() as i64;
                let record = body.map(|b| serde_json::from_str::<Record>(&b));
                match record {
                    Some(Err(e)) => tracing::warn!(error = %e, "unreadable cached lyrics"),
                    Some(Ok(r)) if fresh => {
                        return Ok(Found {
                            record: Some(r),
                            cached: true,
                        })
                    }
                    None if fresh => {
                        return Ok(Found {
                            record: None,
                            cached: true,
                        })
                    }
                    _ => {}
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the lyrics cache"),
        }
        let record = self.ask(wanted).await?;
        let body = match &record {
            Some(r) => match serde_json::to_string(r) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot store lyrics");
                    return Ok(Found {
                        record,
                        cached: false,
                    });
                }
            },
            None => None,
        };
        if let Err(e) = crate::db::lyrics::put(&self.db, &key, body.as_deref()).await {
            tracing::warn!(error = %e, "cannot write the lyrics cache");
        }
        Ok(Found {
            record,
            cached: false,
        })
    }

    /// LRCLIB itself: the exact match first, its search after.
    async fn ask(&self, wanted: &Wanted) -> Result<Option<Record>, LrclibError> {
        match wanted {
            Wanted::Song {
                artist: Some(artist),
                title,
                duration,
            } => {
                if let Some(r) = self.api.get(artist, title, *duration).await? {
                    if r.has_words() || r.instrumental {
                        return Ok(Some(r));
                    }
                }
                let found = self.api.search(&format!("{artist} {title}")).await?;
                Ok(matching::best(found, *duration))
            }
            Wanted::Song {
                artist: None,
                title,
                duration,
            } => Ok(matching::best(self.api.search(title).await?, *duration)),
            Wanted::Query(q) => Ok(matching::best(self.api.search(q).await?, None)),
        }
    }

    /// Forgets answers past their time (the sweeper calls it through `Expiring`).
    pub async fn expire(&self) -> Result<u64, sqlx::Error> {
        let now = crate::db::unix_now();
        crate::db::lyrics::expire(
            &self.db,
            now - self.cache_ttl.as_secs() as i64,
            now - self.miss_ttl.as_secs() as i64,
        )
        .await
    }
}

#[async_trait::async_trait]
impl crate::resources::sweeper::Expiring for LyricsService {
    async fn expire(&self) -> u64 {
        match LyricsService::expire(self).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "lyrics cache expiry failed");
                0
            }
        }
    }
}
