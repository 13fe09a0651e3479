//! The metadata cache: resolved tracks by key, aliases from what people typed, counters.
//!
//! Aliases are normalised so that trivially different spellings of one request share an
//! entry:
//! * search text (`"s:"` prefix): trimmed, inner whitespace collapsed to one space,
//!   lowercased;
//! * URLs (`"u:"` prefix): scheme and host lowercased (the `url` crate does it), default
//!   port and fragment dropped, tracking parameters dropped (`utm_*`, `fbclid`, `gclid`,
//!   `si` on YouTube/SoundCloud/Spotify, … see [`is_tracking_param`]), the rest of the
//!   query kept in its order and re-encoded canonically.
//!
//! Lifetimes: an entry is fresh for `metadata_ttl` after yt-dlp last described it, then
//! [`Lookup::Stale`] until [`MetadataCache::expire`] deletes it. A search-text alias
//! expires `search_ttl` after it was made (search results drift); a URL alias lives as long
//! as its entry.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use url::Url;

use super::clock::{from_unix_secs, secs, unix_secs, Clock};
use super::error::CacheError;
use super::settings::CacheSettings;
use crate::db::{with_db, Db};
use crate::sources::{Query, Track};

/// `expires_at` of URL aliases: a URL keeps naming the same item, so its alias lives as
/// long as the entry it points to (entries expire after `metadata_ttl`).
const URL_ALIAS_EXPIRY: i64 = i64::MAX;

/// A stream URL expiring within this margin counts as expired (the track may wait in a
/// queue for a while before it plays).
pub const STREAM_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long the stream URL of a non-generic extractor without a readable expiry is used
/// (an audio file, when cached, is used regardless).
pub const UNKNOWN_EXPIRY_TRUST: Duration = Duration::from_secs(3600);

/// What the cache knows about a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// A fresh entry whose stream URL is still good: no yt-dlp needed.
    Fresh(Track),
    /// A fresh entry whose stream URL expired (or expires within [`STREAM_MARGIN`]):
    /// usable only if its audio file is cached; otherwise re-resolve and refresh.
    StreamExpired(Track),
    /// The entry is older than `metadata_ttl`: re-resolve and refresh.
    Stale(Track),
    /// No alias (or an expired one): resolve.
    Missing,
}

/// Persistent counters (table `cache_counters`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Lookups answered without running yt-dlp.
    Hits,
    /// Lookups that ran yt-dlp (refreshes included).
    Misses,
    /// Misses that replaced a stale entry or an expired stream URL.
    Refreshes,
    /// Resolutions answered with a cached audio file.
    FileHits,
    /// Audio files downloaded and stored.
    Downloads,
    /// Downloads that failed.
    DownloadFailures,
    /// Audio files evicted to stay within the byte budget.
    Evictions,
}

impl Counter {
    pub fn name(self) -> &'static str {
        match self {
            Counter::Hits => "hits",
            Counter::Misses => "misses",
            Counter::Refreshes => "refreshes",
            Counter::FileHits => "file_hits",
            Counter::Downloads => "downloads",
            Counter::DownloadFailures => "download_failures",
            Counter::Evictions => "evictions",
        }
    }
}

/// Every counter's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub refreshes: u64,
    pub file_hits: u64,
    pub downloads: u64,
    pub download_failures: u64,
    pub evictions: u64,
}

impl Counters {
    /// hits / (hits + misses); `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        hit_rate(self.hits, self.misses)
    }
}

/// hits / (hits + misses); `None` when there were no lookups.
pub fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let lookups = hits + misses;
    (lookups > 0).then(|| hits as f64 / lookups as f64)
}

/// The alias of a query: `"s:<normalised text>"` or `"u:<normalised url>"`.
pub fn alias_for(q: &Query) -> String {
    match q {
        Query::Search(s) => format!("s:{}", normalise_search(s)),
        Query::Url(u) => format!("u:{}", normalise_url(u)),
    }
}

/// Trimmed, whitespace runs collapsed to one space, lowercased.
pub fn normalise_search(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// See the module docs.
pub fn normalise_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    // The url crate lowercases the scheme and the host of http(s) URLs and drops default
    // ports; make sure of the host for other schemes too.
    if let Some(host) = u.host_str().map(str::to_ascii_lowercase) {
        let _ = u.set_host(Some(&host));
    }
    let host = u.host_str().unwrap_or("").to_owned();
    if u.query().is_some() {
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| !is_tracking_param(&host, k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    u.to_string()
}

/// Query parameters that only say where a link was shared from.
pub fn is_tracking_param(host: &str, name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.starts_with("utm_") {
        return true;
    }
    if matches!(
        n.as_str(),
        "fbclid"
            | "gclid"
            | "dclid"
            | "gbraid"
            | "wbraid"
            | "msclkid"
            | "mc_cid"
            | "mc_eid"
            | "igshid"
            | "igsh"
            | "yclid"
            | "twclid"
            | "ttclid"
            | "_ga"
            | "_gl"
            | "ref_src"
    ) {
        return true;
    }
    let h = host.trim_end_matches('.');
    let on = |d: &str| h == d || h.ends_with(&format!(".{d}"));
    let share_host =
        on("youtube.com") || on("youtu.be") || on("soundcloud.com") || on("spotify.com");
    share_host && matches!(n.as_str(), "si" | "feature" | "pp" | "ref")
}

/// Deletes the least recently used entries (and their aliases) beyond `max`, inside the
/// open transaction `tx`, and evaluates to (entries removed, aliases removed). A macro, not
/// a function, because it runs on either engine's transaction type (see `db::with_db`).
/// `LIMIT i64::MAX OFFSET max` is how both engines say "all rows after the first `max`".
macro_rules! evict_past {
    ($tx:ident, $max:expr) => {{
        let keep = i64::try_from($max).unwrap_or(i64::MAX);
        let aliases = sqlx::query(
            "DELETE FROM cache_aliases WHERE key IN
                 (SELECT key FROM cache_tracks ORDER BY lru DESC LIMIT $1 OFFSET $2)",
        )
        .bind(i64::MAX)
        .bind(keep)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        let entries = sqlx::query(
            "DELETE FROM cache_tracks WHERE key IN
                 (SELECT key FROM cache_tracks ORDER BY lru DESC LIMIT $1 OFFSET $2)",
        )
        .bind(i64::MAX)
        .bind(keep)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        (entries, aliases)
    }};
}

/// The metadata cache over the shared pool. Cheap to clone.
#[derive(Clone)]
pub struct MetadataCache {
    pool: Db,
    clock: Arc<dyn Clock>,
    settings: Arc<CacheSettings>,
}

impl std::fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataCache").finish_non_exhaustive()
    }
}

impl MetadataCache {
    pub fn new(pool: Db, settings: Arc<CacheSettings>, clock: Arc<dyn Clock>) -> Self {
        MetadataCache {
            pool,
            clock,
            settings,
        }
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// What the cache knows about `q` (does not count or touch anything).
    pub async fn lookup(&self, q: &Query) -> Result<Lookup, CacheError> {
        self.lookup_alias(&alias_for(q)).await
    }

    pub async fn lookup_alias(&self, alias: &str) -> Result<Lookup, CacheError> {
        let now = self.now();
        let row: Option<(String, String, i64, i64)> = with_db!(&self.pool, p => sqlx::query_as(
            "SELECT t.key, t.track_json, t.resolved_at, a.expires_at
             FROM cache_aliases a JOIN cache_tracks t ON t.key = a.key
             WHERE a.alias = $1",
        )
        .bind(alias)
        .fetch_optional(p)
        .await)?;
        let Some((key, json, resolved_at, alias_expires)) = row else {
            return Ok(Lookup::Missing);
        };
        if unix_secs(now) >= alias_expires {
            return Ok(Lookup::Missing);
        }
        let track: Track = match serde_json::from_str(&json) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(key, error = %e, "unreadable cache entry; dropping it");
                self.remove(&key).await?;
                return Ok(Lookup::Missing);
            }
        };
        let fresh_until = from_unix_secs(resolved_at).checked_add(self.settings.metadata_ttl);
        if fresh_until.is_some_and(|t| now >= t) {
            return Ok(Lookup::Stale(track));
        }
        // Signed stream URLs whose expiry we can't read (SoundCloud, Bandcamp, Vimeo …)
        // are trusted for a while only; the generic extractor's are the files themselves.
        let unknown_expiry_passed = track.stream_expires.is_none()
            && track.extractor != "generic"
            && from_unix_secs(resolved_at)
                .checked_add(UNKNOWN_EXPIRY_TRUST)
                .is_some_and(|t| now >= t);
        if unknown_expiry_passed || track.needs_refresh(now, STREAM_MARGIN) {
            return Ok(Lookup::StreamExpired(track));
        }
        Ok(Lookup::Fresh(track))
    }

    /// The entry stored under `key`, fresh or not.
    pub async fn get(&self, key: &str) -> Result<Option<Track>, CacheError> {
        let json: Option<String> = with_db!(&self.pool, p => sqlx::query_scalar("SELECT track_json FROM cache_tracks WHERE key = $1")
                .bind(key)
                .fetch_optional(p)
                .await)?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Marks `key` as just used (least-recently-used order).
    pub async fn touch(&self, key: &str) -> Result<(), CacheError> {
        with_db!(&self.pool, p => sqlx::query(
            "UPDATE cache_tracks SET last_used = $1,
                 lru = (SELECT COALESCE(MAX(lru), 0) + 1 FROM cache_tracks)
             WHERE key = $2",
        )
        .bind(unix_secs(self.now()))
        .bind(key)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Stores a freshly resolved track, with an alias for `q` (when given) and one for the
    /// track's page URL, then evicts least recently used entries past `max_entries`.
    /// Unresolved tracks and live streams are not stored (returns `false`).
    pub async fn store(&self, q: Option<&Query>, track: &Track) -> Result<bool, CacheError> {
        if !track.is_resolved() || track.is_live {
            return Ok(false);
        }
        let now = unix_secs(self.now());
        let key = track.cache_key();
        let json = serde_json::to_string(track).expect("a Track serialises");
        let mut aliases: Vec<(String, i64)> = Vec::new();
        if let Some(q) = q {
            let expires = match q {
                Query::Search(_) => now.saturating_add(secs(self.settings.search_ttl)),
                Query::Url(_) => URL_ALIAS_EXPIRY,
            };
            aliases.push((alias_for(q), expires));
        }
        if let Ok(page) = Url::parse(&track.page_url) {
            if matches!(page.scheme(), "http" | "https") {
                let a = alias_for(&Query::Url(page));
                if !aliases.iter().any(|(x, _)| *x == a) {
                    aliases.push((a, URL_ALIAS_EXPIRY));
                }
            }
        }

        let max_entries = self.settings.max_entries;
        with_db!(&self.pool, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO cache_tracks
                 (key, title, page_url, track_json, resolved_at, stream_expires, last_used, lru)
             VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT COALESCE(MAX(lru), 0) + 1 FROM cache_tracks))
             ON CONFLICT (key) DO UPDATE SET
                 title = excluded.title, page_url = excluded.page_url,
                 track_json = excluded.track_json, resolved_at = excluded.resolved_at,
                 stream_expires = excluded.stream_expires, last_used = excluded.last_used,
                 lru = excluded.lru",
        )
        .bind(&key)
        .bind(&track.title)
        .bind(&track.page_url)
        .bind(&json)
        .bind(now)
        .bind(track.stream_expires.map(unix_secs))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (alias, expires) in &aliases {
            sqlx::query(
                "INSERT INTO cache_aliases (alias, key, created_at, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (alias) DO UPDATE SET
                     key = excluded.key, created_at = excluded.created_at,
                     expires_at = excluded.expires_at",
            )
            .bind(alias)
            .bind(&key)
            .bind(now)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
        }
        evict_past!(tx, max_entries);
        tx.commit().await
        })?;
        Ok(true)
    }

    /// Forgets `key` and its aliases.
    pub async fn remove(&self, key: &str) -> Result<(), CacheError> {
        with_db!(&self.pool, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM cache_aliases WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM cache_tracks WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
        })?;
        Ok(())
    }

    /// Deletes expired aliases and entries older than `metadata_ttl`, then trims to
    /// `max_entries`. Returns (entries removed, aliases removed).
    pub async fn expire(&self) -> Result<(u64, u64), CacheError> {
        let now = unix_secs(self.now());
        let stale_before = now.saturating_sub(secs(self.settings.metadata_ttl));
        let max_entries = self.settings.max_entries;
        let (entries, aliases) = with_db!(&self.pool, pool => {
        let mut tx = pool.begin().await?;
        let mut aliases = sqlx::query(
            "DELETE FROM cache_aliases WHERE expires_at <= $1
                 OR key IN (SELECT key FROM cache_tracks WHERE resolved_at <= $2)
                 OR key NOT IN (SELECT key FROM cache_tracks)",
        )
        .bind(now)
        .bind(stale_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut entries = sqlx::query("DELETE FROM cache_tracks WHERE resolved_at <= $1")
            .bind(stale_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let (e, a) = evict_past!(tx, max_entries);
        entries += e;
        aliases += a;
        tx.commit().await?;
        Ok::<_, sqlx::Error>((entries, aliases))
        })?;
        Ok((entries, aliases))
    }

    /// Number of entries and of aliases.
    pub async fn len(&self) -> Result<(u64, u64), CacheError> {
        let (entries, aliases): (i64, i64) = with_db!(&self.pool, p => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM cache_tracks), (SELECT COUNT(*) FROM cache_aliases)",
        )
        .fetch_one(p)
        .await)?;
        Ok((entries as u64, aliases as u64))
    }

    /// Adds `by` to a persistent counter.
    pub async fn bump(&self, counter: Counter, by: u64) -> Result<(), CacheError> {
        if by == 0 {
            return Ok(());
        }
        with_db!(&self.pool, p => sqlx::query(
            "INSERT INTO cache_counters (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = cache_counters.value + excluded.value",
        )
        .bind(counter.name())
        .bind(by as i64)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Like [`bump`](Self::bump), logging failures instead of returning them.
    pub async fn count(&self, counter: Counter) {
        if let Err(e) = self.bump(counter, 1).await {
            tracing::warn!(counter = counter.name(), error = %e, "could not update a cache counter");
        }
    }

    pub async fn counters(&self) -> Result<Counters, CacheError> {
        let rows: Vec<(String, i64)> = with_db!(&self.pool, p => sqlx::query_as("SELECT name, value FROM cache_counters")
            .fetch_all(p)
            .await)?;
        let mut c = Counters::default();
        for (name, value) in rows {
            let v = value.max(0) as u64;
            match name.as_str() {
                "hits" => c.hits = v,
                "misses" => c.misses = v,
                "refreshes" => c.refreshes = v,
                "file_hits" => c.file_hits = v,
                "downloads" => c.downloads = v,
                "download_failures" => c.download_failures = v,
                "evictions" => c.evictions = v,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Titles (with their page URLs) of cached entries matching `text`, for autocomplete:
    /// titles starting with it first, then titles containing it, most recently used first
    /// within each group. With `guild`, only tracks that guild has played (`play_history`),
    /// so one server never sees what another listens to; `None` searches every entry.
    pub async fn search_titles(
        &self,
        guild: Option<u64>,
        text: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>, CacheError> {
        let needle = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let escaped = needle
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let contains = format!("%{escaped}%");
        let prefix = format!("{escaped}%");
        let rows: Vec<(String, String)> = with_db!(&self.pool, p => sqlx::query_as(
            "SELECT title, page_url FROM cache_tracks
             WHERE LOWER(title) LIKE LOWER($1) ESCAPE '\\'
               AND ($2 IS NULL OR key IN (SELECT track_key FROM play_history WHERE guild_id = $2))
             ORDER BY (LOWER(title) LIKE LOWER($3) ESCAPE '\\') DESC, lru DESC
             LIMIT $4",
        )
        .bind(contains)
        .bind(guild.map(|g| g as i64))
        .bind(prefix)
        .bind(limit.min(25) as i64)
        .fetch_all(p)
        .await)?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::clock::{ManualClock, SystemClock};
    use crate::cache::testutil::track;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn settings(max_entries: u64) -> Arc<CacheSettings> {
        let mut s = CacheSettings::with_dir("/nonexistent");
        s.metadata_ttl = Duration::from_secs(7 * 86400);
        s.search_ttl = Duration::from_secs(3600);
        s.max_entries = max_entries;
        Arc::new(s)
    }

    #[test]
    fn normalises_search_text() {
        assert_eq!(normalise_search("  Blue   Monday\t\n"), "blue monday");
        assert_eq!(normalise_search("ÉTÉ  Indien"), "été indien");
        assert_eq!(
            alias_for(&Query::Search(" Never  Gonna ".into())),
            alias_for(&Query::Search("never gonna".into()))
        );
        assert_ne!(
            alias_for(&Query::Search("never gonna".into())),
            alias_for(&Query::Search("nevergonna".into()))
        );
    }

    #[test]
    fn normalises_urls() {
        let n = |s: &str| normalise_url(&url(s));
        assert_eq!(
            n("HTTPS://WWW.YouTube.COM:443/watch?v=dQw4w9WgXcQ&utm_source=x&si=abc#t=5"),
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
        );
        assert_eq!(
            n("https://youtu.be/dQw4w9WgXcQ?si=XYZ&t=42"),
            "https://youtu.be/dQw4w9WgXcQ?t=42"
        );
        // Order kept, tracking dropped anywhere, case of the path kept.
        assert_eq!(
            n("http://Example.com/A/B?b=2&fbclid=z&a=1&UTM_Medium=m"),
            "http://example.com/A/B?b=2&a=1"
        );
        // `si` is only tracking on known share hosts.
        assert_eq!(
            n("https://example.com/x?si=1"),
            "https://example.com/x?si=1"
        );
        // Nothing left → no `?`.
        assert_eq!(
            n("https://example.com/x?utm_source=a"),
            "https://example.com/x"
        );
        assert_eq!(n("https://example.com/x?"), "https://example.com/x");
        // Equivalent encodings agree.
        assert_eq!(n("https://e.com/?q=a%20b"), n("https://e.com/?q=a+b"));
        assert_eq!(
            alias_for(&Query::Url(url("https://e.com/x#frag"))),
            "u:https://e.com/x"
        );
    }

    #[tokio::test]
    async fn ttl_expiry_with_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        for db in crate::db::testutil::each_engine(dir.path()).await {
            ttl_expiry_with_injected_clock_on(db).await;
        }
    }

    async fn ttl_expiry_with_injected_clock_on(db: Db) {
        let clock = ManualClock::starting_now();
        let m = MetadataCache::new(db, settings(100), Arc::new(clock.clone()));
        let search = Query::Search("Some Song".into());
        let link = Query::Url(url("https://example.com/share/a?utm_source=x"));
        let t = track("a");
        assert_eq!(m.lookup(&search).await.unwrap(), Lookup::Missing);
        assert!(m.store(Some(&search), &t).await.unwrap());
        assert!(m.store(Some(&link), &t).await.unwrap());
        // Other spellings and the page URL find it too.
        let search2 = Query::Search("  some   SONG".into());
        let page = Query::Url(url("https://example.com/watch/a#x"));
        for q in [&search, &search2, &link, &page] {
            assert_eq!(m.lookup(q).await.unwrap(), Lookup::Fresh(t.clone()), "{q}");
        }
        // Search aliases go after search_ttl; URL aliases stay.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(m.lookup(&search).await.unwrap(), Lookup::Missing);
        assert_eq!(m.lookup(&link).await.unwrap(), Lookup::Fresh(t.clone()));
        // The entry goes stale after metadata_ttl.
        clock.advance(Duration::from_secs(7 * 86400 - 3600 - 1));
        assert_eq!(m.lookup(&page).await.unwrap(), Lookup::Fresh(t.clone()));
        clock.advance(Duration::from_secs(1));
        assert_eq!(m.lookup(&page).await.unwrap(), Lookup::Stale(t.clone()));
        // Re-storing refreshes it.
        m.store(None, &t).await.unwrap();
        assert_eq!(m.lookup(&page).await.unwrap(), Lookup::Fresh(t.clone()));

        // A stream URL that expires is not trusted past its expiry (minus the margin).
        let mut e = track("e");
        e.stream_expires = Some(clock.now() + Duration::from_secs(3600));
        let eq = Query::Url(url(&e.page_url));
        m.store(Some(&eq), &e).await.unwrap();
        assert_eq!(m.lookup(&eq).await.unwrap(), Lookup::Fresh(e.clone()));
        clock.advance(Duration::from_secs(3600) - STREAM_MARGIN);
        assert_eq!(
            m.lookup(&eq).await.unwrap(),
            Lookup::StreamExpired(e.clone())
        );

        // Another extractor's stream URL without a readable expiry: trusted for an hour.
        let mut sc = track("sc");
        sc.extractor = "soundcloud".into();
        let scq = Query::Url(url(&sc.page_url));
        m.store(Some(&scq), &sc).await.unwrap();
        clock.advance(UNKNOWN_EXPIRY_TRUST - Duration::from_secs(1));
        assert_eq!(m.lookup(&scq).await.unwrap(), Lookup::Fresh(sc.clone()));
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            m.lookup(&scq).await.unwrap(),
            Lookup::StreamExpired(sc.clone())
        );
        m.remove(&sc.cache_key()).await.unwrap();

        // expire() deletes stale entries and expired aliases.
        clock.advance(Duration::from_secs(8 * 86400));
        let (entries, aliases) = m.expire().await.unwrap();
        assert_eq!(entries, 2);
        assert!(aliases >= 3, "{aliases}");
        assert_eq!(m.len().await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn live_and_unresolved_tracks_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        for db in crate::db::testutil::each_engine(dir.path()).await {
            live_and_unresolved_tracks_are_not_stored_on(db).await;
        }
    }

    async fn live_and_unresolved_tracks_are_not_stored_on(db: Db) {
        let m = MetadataCache::new(db, settings(100), Arc::new(SystemClock));
        let mut live = track("l");
        live.is_live = true;
        assert!(!m.store(None, &live).await.unwrap());
        let mut entry = track("u");
        entry.stream_url.clear();
        assert!(!m.store(None, &entry).await.unwrap());
        assert_eq!(m.len().await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn lru_evicts_past_max_entries() {
        let dir = tempfile::tempdir().unwrap();
        for db in crate::db::testutil::each_engine(dir.path()).await {
            lru_evicts_past_max_entries_on(db).await;
        }
    }

    async fn lru_evicts_past_max_entries_on(db: Db) {
        let m = MetadataCache::new(db, settings(3), Arc::new(ManualClock::starting_now()));
        for id in ["a", "b", "c"] {
            m.store(Some(&Query::Search(id.into())), &track(id))
                .await
                .unwrap();
        }
        // Using "a" makes "b" the least recently used (same clock second throughout).
        m.touch("generic:a").await.unwrap();
        m.store(Some(&Query::Search("d".into())), &track("d"))
            .await
            .unwrap();
        assert_eq!(m.len().await.unwrap().0, 3);
        assert!(m.get("generic:b").await.unwrap().is_none());
        assert_eq!(
            m.lookup(&Query::Search("b".into())).await.unwrap(),
            Lookup::Missing
        );
        for id in ["a", "c", "d"] {
            assert!(
                m.get(&format!("generic:{id}")).await.unwrap().is_some(),
                "{id}"
            );
        }
        // Aliases of evicted entries went with them (2 per entry: query + page URL).
        assert_eq!(m.len().await.unwrap().1, 6);
        // Many more: still bounded, newest kept.
        for i in 0..20 {
            m.store(None, &track(&format!("n{i}"))).await.unwrap();
        }
        assert_eq!(m.len().await.unwrap().0, 3);
        assert!(m.get("generic:n19").await.unwrap().is_some());
        assert!(m.get("generic:n16").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn counters_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        for target in crate::db::testutil::targets(dir.path()).await {
            let p = Db::open(&target).await.unwrap();
            let m = MetadataCache::new(p.clone(), settings(10), Arc::new(SystemClock));
            m.count(Counter::Hits).await;
            m.count(Counter::Hits).await;
            m.count(Counter::Misses).await;
            m.bump(Counter::Evictions, 5).await.unwrap();
            p.close().await;
            counters_were_kept(Db::open(&target).await.unwrap()).await;
        }
    }

    async fn counters_were_kept(p: Db) {
        let m = MetadataCache::new(p, settings(10), Arc::new(SystemClock));
        let c = m.counters().await.unwrap();
        assert_eq!((c.hits, c.misses, c.evictions, c.downloads), (2, 1, 5, 0));
    }

    #[tokio::test]
    async fn search_titles_by_text_and_guild() {
        let dir = tempfile::tempdir().unwrap();
        for db in crate::db::testutil::each_engine(dir.path()).await {
            search_titles_by_text_and_guild_on(db).await;
        }
    }

    async fn search_titles_by_text_and_guild_on(db: Db) {
        let p = db;
        let m = MetadataCache::new(p.clone(), settings(100), Arc::new(SystemClock));
        let mut t1 = track("1");
        t1.title = "Blue Monday".into();
        let mut t2 = track("2");
        t2.title = "Monday Blues".into();
        let mut t3 = track("3");
        t3.title = "100% pure_love".into();
        for t in [&t1, &t2, &t3] {
            m.store(None, t).await.unwrap();
        }
        let titles = |v: Vec<(String, String)>| v.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
        // Prefix matches first, then containing ones.
        assert_eq!(
            titles(m.search_titles(None, "monday", 10).await.unwrap()),
            ["Monday Blues", "Blue Monday"]
        );
        assert_eq!(
            titles(m.search_titles(None, "BLUE", 10).await.unwrap()),
            ["Blue Monday", "Monday Blues"]
        );
        assert_eq!(
            titles(m.search_titles(None, "%", 10).await.unwrap()),
            ["100% pure_love"]
        );
        // `_` and `%` are literal, not wildcards.
        assert!(m.search_titles(None, "b_ue", 10).await.unwrap().is_empty());
        assert_eq!(m.search_titles(None, "pure_", 10).await.unwrap().len(), 1);
        assert_eq!(m.search_titles(None, "", 2).await.unwrap().len(), 2);
        let found = m.search_titles(None, "pure", 10).await.unwrap();
        assert_eq!(found[0].1, t3.page_url);
        // Per guild: only what that guild played.
        crate::db::history::record(&p, 7, &t2, 1).await.unwrap();
        assert_eq!(
            titles(m.search_titles(Some(7), "", 10).await.unwrap()),
            ["Monday Blues"]
        );
        assert!(m.search_titles(Some(8), "", 10).await.unwrap().is_empty());
    }
}
