//! Where autoplay's picks come from (the rules they follow are `crate::player::autoplay`'s):
//!
//! 1. a track whose extractor has a mix (`autoplay.mix_sources`, YouTube by default): its
//!    mix (`autoplay.mix` with the track's id, YouTube's `list=RD<id>`), listed flat through
//!    the yt-dlp wrapper like any playlist link (the URL goes after `--`);
//! 2. otherwise, or when the mix gives nothing: the server's history, the tracks the people
//!    now in the channel queued most.
//!
//! Either way the candidate is resolved the way `/play` resolves a link (the cache, then
//! yt-dlp), so the pick comes back with its stream URL and opens as quickly as a queued
//! track. Nothing played in the last hour (in the player, or in the history table) is
//! picked. The pick is recorded in the history as queued by nobody (0), so it counts as
//! played without counting as anyone's favourite.

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use super::resolver::Resolver;
use crate::config::AutoplayConfig;
use crate::db::history::{self, Plays};
use crate::db::Db;
use crate::player::autoplay::{Ask, Origin, Pick, Related, RECENT};
use crate::sources::{Query, Track};

/// The most mix entries listed.
const MIX_ENTRIES: usize = 25;
/// The most (page, member) rows of history read.
const HISTORY_ROWS: u32 = 500;
/// The most candidates resolved for one pick (each is a yt-dlp run unless cached).
const TRIES: usize = 3;

/// Picks from mixes and the server's history.
pub struct RelatedTracks {
    resolver: Resolver,
    db: Db,
    config: AutoplayConfig,
}

impl RelatedTracks {
    pub fn new(resolver: Resolver, db: Db, config: AutoplayConfig) -> Self {
        Self {
            resolver,
            db,
            config,
        }
    }

    async fn in_mix(&self, ask: &Ask) -> Result<Track, String> {
        let url = mix_url(&self.config.mix, &ask.seed)?;
        let (_, entries) = self
            .resolver
            .ytdlp()
            .resolve_playlist(&url, MIX_ENTRIES)
            .await
            .map_err(|e| e.to_string())?;
        let pages = entries
            .into_iter()
            .filter(|t| !ask.refuses(t))
            .map(|t| t.page_url);
        self.first_playable(ask, pages).await
    }

    async fn in_history(&self, ask: &Ask) -> Result<Track, String> {
        let rows = history::plays_by_member(&self.db, ask.guild, HISTORY_ROWS)
            .await
            .map_err(|e| format!("history unreadable: {e}"))?;
        let pages = favourites(rows, ask.listeners.as_deref())
            .into_iter()
            .filter(|page| !ask.recent.contains(page));
        self.first_playable(ask, pages).await
    }

    /// The first of `pages` that resolves and passes the rules (at most [`TRIES`] tried).
    async fn first_playable(
        &self,
        ask: &Ask,
        pages: impl Iterator<Item = String>,
    ) -> Result<Track, String> {
        let mut last = "no candidate left".to_string();
        for page in pages.take(TRIES) {
            let Ok(url) = Url::parse(&page) else {
                continue;
            };
            match self.resolver.resolve(&Query::Url(url)).await {
                Ok(r) if r.track.is_live => last = format!("{} is live", r.track.title),
                Ok(r) if ask.refuses(&r.track) => last = format!("{} played lately", r.track.title),
                Ok(r) => return Ok(r.track),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

#[async_trait]
impl Related for RelatedTracks {
    async fn pick(&self, mut ask: Ask) -> Result<Pick, String> {
        let since = crate::db::unix_now() - RECENT.as_secs() as i64;
        match history::played_since(&self.db, ask.guild, since).await {
            Ok(recent) => ask.recent.extend(recent),
            Err(e) => tracing::warn!(error = %e, "autoplay: could not read the last hour's plays"),
        }
        let mut why = Vec::new();
        let mut found = None;
        if self.config.has_mix(&ask.seed.extractor) {
            match self.in_mix(&ask).await {
                Ok(t) => {
                    found = Some((
                        t,
                        Origin::Mix {
                            seed: ask.seed.title.clone(),
                        },
                    ))
                }
                Err(e) => why.push(format!("the mix: {e}")),
            }
        }
        if found.is_none() {
            match self.in_history(&ask).await {
                Ok(t) => found = Some((t, Origin::History)),
                Err(e) => why.push(format!("the history: {e}")),
            }
        }
        let Some((track, origin)) = found else {
            return Err(why.join("; "));
        };
        if let Err(e) = history::record(&self.db, ask.guild, &track, 0).await {
            tracing::warn!(error = %e, "autoplay: could not record its pick");
        }
        Ok(Pick {
            track: Arc::new(track),
            origin,
        })
    }
}

/// The mix of `seed`: `template` with its id (escaped) for `{id}`.
fn mix_url(template: &str, seed: &Track) -> Result<Url, String> {
    let id: String = url::form_urlencoded::byte_serialize(seed.id.as_bytes()).collect();
    Url::parse(&template.replace("{id}", &id)).map_err(|e| e.to_string())
}

/// Pages by how often `listeners` queued them (everyone's plays when they are unknown),
/// most first; ties keep the history's order (the most recently played first).
fn favourites(rows: Vec<Plays>, listeners: Option<&[u64]>) -> Vec<String> {
    let mut totals: Vec<(String, i64)> = Vec::new();
    for row in rows {
        if listeners.is_some_and(|l| !l.contains(&row.requested_by)) {
            continue;
        }
        match totals.iter_mut().find(|(page, _)| *page == row.page_url) {
            Some((_, n)) => *n += row.plays,
            None => totals.push((row.page_url, row.plays)),
        }
    }
    totals.sort_by_key(|t| std::cmp::Reverse(t.1));
    totals.into_iter().map(|(page, _)| page).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(page: &str, by: u64, plays: i64) -> Plays {
        Plays {
            page_url: page.into(),
            title: page.into(),
            requested_by: by,
            plays,
        }
    }

    #[test]
    fn favourites_count_only_the_people_listening() {
        let rows = vec![
            row("bens", 2, 20),
            row("shared", 2, 6),
            row("anns", 1, 5),
            row("shared", 1, 1),
            row("once", 1, 1),
        ];
        assert_eq!(
            favourites(rows.clone(), Some(&[1])),
            ["anns", "shared", "once"]
        );
        assert_eq!(
            favourites(rows.clone(), Some(&[1, 2])),
            ["bens", "shared", "anns", "once"]
        );
        assert_eq!(favourites(rows.clone(), None)[0], "bens");
        assert!(favourites(rows, Some(&[3])).is_empty());
    }

    #[test]
    fn the_mix_url_carries_the_id_escaped() {
        let mix = AutoplayConfig::default().mix;
        let mut seed = crate::player::test_track("x");
        seed.id = "dQw4w9WgXcQ".into();
        assert_eq!(
            mix_url(&mix, &seed).unwrap().as_str(),
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=RDdQw4w9WgXcQ"
        );
        seed.id = "a&b c".into();
        assert_eq!(
            mix_url(&mix, &seed).unwrap().as_str(),
            "https://www.youtube.com/watch?v=a%26b+c&list=RDa%26b+c"
        );
    }
}
