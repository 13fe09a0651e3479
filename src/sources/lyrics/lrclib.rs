//! LRCLIB's open API (no key): `GET /api/get` (one record, matched by artist, title and
//! length; 404 when it has none) and `GET /api/search` (a list). Every request goes
//! through the bot's guarded client, so the operator's egress policy applies to it too.

use std::time::Duration;

use url::Url;

use crate::sources::egress::client::GuardedClient;

/// Largest answer read: a song's lyrics are a few KiB, a search a few dozen records.
const MAX_BODY: usize = 1 << 20;

/// One LRCLIB record, in its JSON field names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub track_name: String,
    #[serde(default)]
    pub artist_name: String,
    #[serde(default)]
    pub album_name: Option<String>,
    /// Seconds.
    #[serde(default)]
    pub duration: Option<f64>,
    #[serde(default)]
    pub instrumental: bool,
    #[serde(default)]
    pub plain_lyrics: Option<String>,
    /// LRC: `[mm:ss.xx] line` per line.
    #[serde(default)]
    pub synced_lyrics: Option<String>,
}

impl Record {
    /// It has words to show (blank strings count as none).
    pub fn has_words(&self) -> bool {
        let some = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.trim().is_empty());
        some(&self.plain_lyrics) || some(&self.synced_lyrics)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LrclibError {
    #[error("LRCLIB did not answer in time")]
    TimedOut,
    #[error("LRCLIB could not be reached: {0}")]
    Unreachable(String),
    #[error("LRCLIB answered {0}")]
    Status(u16),
    #[error("LRCLIB's answer was not readable: {0}")]
    Malformed(String),
}

/// The API at `base` (`https://lrclib.net`, a mirror, or a test server).
#[derive(Clone, Debug)]
pub struct Lrclib {
    http: GuardedClient,
    base: Url,
    timeout: Duration,
}

impl Lrclib {
    pub fn new(http: GuardedClient, base: Url, timeout: Duration) -> Lrclib {
        Lrclib {
            http,
            base,
            timeout,
        }
    }

    /// `/api/get`: the record for exactly this song, `None` on LRCLIB's 404.
    pub async fn get(
        &self,
        artist: &str,
        title: &str,
        duration: Option<Duration>,
    ) -> Result<Option<Record>, LrclibError> {
        let mut url = self.endpoint("api/get");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("artist_name", artist)
                .append_pair("track_name", title);
            if let Some(d) = duration {
                q.append_pair("duration", &d.as_secs().to_string());
            }
        }
        self.fetch(url).await
    }

    /// `/api/search?q=`: records for free text, LRCLIB's best first.
    pub async fn search(&self, q: &str) -> Result<Vec<Record>, LrclibError> {
        let mut url = self.endpoint("api/search");
        url.query_pairs_mut().append_pair("q", q);
        Ok(self.fetch(url).await?.unwrap_or_default())
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}/{path}"));
        url.set_query(None);
        url
    }

    async fn fetch<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<T>, LrclibError> {
        let request = self
            .http
            .get(url.as_str())
            .map_err(|e| LrclibError::Unreachable(e.to_string()))?
            // LRCLIB asks clients to name themselves.
            .header(
                reqwest::header::USER_AGENT,
                concat!("encore/", env!("CARGO_PKG_VERSION"), " (Discord music bot)"),
            )
            .header(reqwest::header::ACCEPT, "application/json");
        let exchange = async {
            let mut resp = request
                .send()
                .await
                .map_err(|e| LrclibError::Unreachable(e.without_url().to_string()))?;
            match resp.status().as_u16() {
                404 => return Ok(None),
                200 => {}
                other => return Err(LrclibError::Status(other)),
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| LrclibError::Unreachable(e.without_url().to_string()))?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(LrclibError::Malformed("the answer is too large".into()));
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| LrclibError::Malformed(e.to_string()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(LrclibError::TimedOut))
    }
}
