//! The HTTP side of reading a link: one GET through the guarded client, within a time
//! limit and a size cap, and the errors a member is told about.

use std::time::Duration;

use url::Url;

use super::wanted::Service;
use crate::sources::egress::client::GuardedClient;

/// Largest page read: Spotify's embed pages and Apple Music's pages are a few hundred KiB.
const MAX_BODY: usize = 8 << 20;

/// Why a link could not be read; the text is what the member sees.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("{name} did not answer in time; try again later.", name = .0.name())]
    TimedOut(Service),
    #[error("{name} could not be reached; try again later.", name = .0.name())]
    Unreachable(Service),
    #[error("{name} has nothing at that link (it may be private or removed).", name = .0.name())]
    NotFound(Service),
    #[error("{name} answered with an error ({code}); try again later.", name = .0.name(), code = .1)]
    Status(Service, u16),
    #[error("{name}'s page for that link could not be read: {why}.", name = .0.name(), why = .1)]
    Malformed(Service, String),
    #[error("That {name} link has no tracks in it.", name = .0.name())]
    Empty(Service),
}

/// `base` with `parts` appended to its path, each percent-encoded as one segment.
pub(super) fn join(base: &Url, parts: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty().extend(parts);
    }
    url
}

pub(super) struct Fetcher<'a> {
    pub http: &'a GuardedClient,
    pub service: Service,
    pub timeout: Duration,
}

impl Fetcher<'_> {
    /// The body of a 200 answer to `GET url`, as text.
    pub async fn text(&self, url: Url) -> Result<String, LinkError> {
        let service = self.service;
        let request = self
            .http
            .get(url.as_str())
            .map_err(|e| {
                tracing::warn!(%url, error = %e, "a link's page was refused by the egress policy");
                LinkError::Unreachable(service)
            })?
            .header(
                reqwest::header::USER_AGENT,
                concat!("encore/", env!("CARGO_PKG_VERSION"), " (Discord music bot)"),
            );
        let exchange = async {
            let mut resp = request.send().await.map_err(|e| {
                tracing::info!(%url, error = %e.without_url(), "a link's page could not be fetched");
                LinkError::Unreachable(service)
            })?;
            match resp.status().as_u16() {
                200 => {}
                404 => return Err(LinkError::NotFound(service)),
                other => {
                    tracing::info!(%url, status = other, "a link's page answered an error");
                    return Err(LinkError::Status(service, other));
                }
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|_| LinkError::Unreachable(service))?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(LinkError::Malformed(
                        service,
                        "the page is too large".into(),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            String::from_utf8(body)
                .map_err(|_| LinkError::Malformed(service, "the page is not text".into()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(LinkError::TimedOut(service)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_one_segment_each() {
        let base = Url::parse("http://127.0.0.1:9/base/").unwrap();
        assert_eq!(
            join(&base, &["embed", "track", "a/b?c"]).as_str(),
            "http://127.0.0.1:9/base/embed/track/a%2Fb%3Fc"
        );
        let base = Url::parse("https://api.deezer.com").unwrap();
        assert_eq!(
            join(&base, &["album", "302127"]).as_str(),
            "https://api.deezer.com/album/302127"
        );
    }
}
