//! The one way out: every request the bot and yt-dlp make is held to one [`UrlPolicy`].
//!
//! * `policy.rs`: what is acceptable ([`UrlPolicy`], `check_url_static`,
//!   `is_forbidden_ip`), and [`Refused`](policy::Refused), the error a refusal travels as;
//! * `resolve.rs`: resolution under the policy (`check_url`, `resolve_checked`, and
//!   reqwest's `GuardedResolver`), so the address checked is the address connected to;
//! * `client.rs`: the bot's own HTTP client (the media it streams), which re-checks every
//!   redirect hop;
//! * `proxy.rs`: the egress proxy every yt-dlp run goes through (`--proxy`), so the pages,
//!   redirects, manifests and segments yt-dlp fetches are checked at connect time too;
//! * `upstream.rs`: the operator's `ytdlp.proxy`, which the egress proxy chains to.
//!
//! [`Egress`] holds the policy once (the yt-dlp wrapper and the bot share it through an
//! `Arc`) and the address of the running proxy. See `docs/ytdlp.md` ("Egress").

pub mod client;
pub mod policy;
pub mod proxy;
pub mod resolve;
#[cfg(test)]
mod testutil;
pub mod upstream;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use client::GuardedClient;
use policy::UrlPolicy;
use proxy::ProxyEndpoint;
use upstream::Upstream;

/// The policy, and where yt-dlp's requests go out.
#[derive(Debug)]
pub struct Egress {
    policy: Arc<UrlPolicy>,
    /// The running egress proxy; `None` only for an `Egress` made from a bare policy
    /// (unit tests, library users), whose yt-dlp runs go out directly.
    proxy: Option<ProxyEndpoint>,
}

impl Egress {
    /// Starts the egress proxy (chained to `upstream`, the operator's `ytdlp.proxy`) under
    /// `tasks` until `stop`, and builds the bot's guarded HTTP client, which goes through
    /// that proxy when there is an upstream (so the upstream applies to it too).
    pub async fn start(
        policy: UrlPolicy,
        upstream: Option<&str>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> anyhow::Result<(Arc<Egress>, GuardedClient)> {
        let policy = Arc::new(policy);
        if !policy.test_public_addresses.is_empty() || !policy.test_hosts.is_empty() {
            tracing::warn!(
                "ytdlp.test_public_addresses / ytdlp.test_hosts are set: they are for tests only"
            );
        }
        let upstream = upstream
            .map(Upstream::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("ytdlp.proxy: {e}"))?;
        let has_upstream = upstream.is_some();
        let endpoint = proxy::start(policy.clone(), upstream, tasks, stop).await?;
        let via = has_upstream.then(|| endpoint.url());
        let client = GuardedClient::new(policy.clone(), via.as_deref())?;
        Ok((
            Arc::new(Egress {
                policy,
                proxy: Some(endpoint),
            }),
            client,
        ))
    }

    /// An `Egress` without a proxy: yt-dlp goes out directly (through the operator's
    /// proxy, if any), checked only before and after it runs. For tests and tools; the
    /// bot always [`start`](Self::start)s one.
    pub fn without_proxy(policy: UrlPolicy) -> Arc<Egress> {
        Arc::new(Egress {
            policy: Arc::new(policy),
            proxy: None,
        })
    }

    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    /// The egress proxy's URL (with its secret), the `--proxy` every yt-dlp run gets.
    pub fn proxy_url(&self) -> Option<String> {
        self.proxy.as_ref().map(ProxyEndpoint::url)
    }

    /// Where the egress proxy listens, when it runs.
    pub fn proxy_addr(&self) -> Option<std::net::SocketAddr> {
        self.proxy.as_ref().map(|p| p.addr())
    }
}

impl From<UrlPolicy> for Arc<Egress> {
    fn from(policy: UrlPolicy) -> Self {
        Egress::without_proxy(policy)
    }
}
