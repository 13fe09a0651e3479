//! The bot's own HTTP client (the media it streams), held to the policy on every hop:
//!
//! * names resolve through [`GuardedResolver`]: hyper connects to the address that was
//!   checked (no DNS rebinding);
//! * a literal-IP URL never meets a resolver, so [`GuardedClient::get`] checks it first;
//! * every redirect hop is checked ([`check_redirect`]): http(s) only, no credentials, no
//!   private IP literal or `localhost`, at most [`MAX_REDIRECTS`] hops; a name in the next
//!   hop goes through the resolver again;
//! * environment proxies (`HTTP_PROXY`, ...) are ignored: they would take the connection
//!   past the resolver. When the operator set `ytdlp.proxy`, the client goes through the
//!   bot's egress proxy instead (`via`), which checks each destination and chains to it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::redirect::{Attempt, Policy};
use url::Url;

use super::policy::{check_url_static, Refused, UrlPolicy};
use super::resolve::GuardedResolver;
use crate::sources::error::ResolveError;

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A reqwest client that only reaches what the policy accepts. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GuardedClient {
    http: reqwest::Client,
    policy: Arc<UrlPolicy>,
}

/// A client builder with the guarded resolver, no environment proxies and `redirects`.
pub(crate) fn builder(policy: &Arc<UrlPolicy>, redirects: Policy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver::new(policy.clone())))
        .redirect(redirects)
        .connect_timeout(CONNECT_TIMEOUT)
}

impl GuardedClient {
    /// `via`: a proxy URL every request goes through (the bot's egress proxy, when an
    /// upstream proxy is configured).
    pub fn new(policy: Arc<UrlPolicy>, via: Option<&str>) -> reqwest::Result<GuardedClient> {
        let hops = policy.clone();
        let mut b = builder(&policy, Policy::custom(move |a| check_redirect(&hops, a)));
        if let Some(via) = via {
            b = b.proxy(reqwest::Proxy::all(via)?);
        }
        Ok(GuardedClient {
            http: b.build()?,
            policy,
        })
    }

    /// A GET of `url`, or why the policy refuses it before anything is sent.
    pub fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, ResolveError> {
        let parsed = Url::parse(url).map_err(|_| ResolveError::InvalidUrl)?;
        check_url_static(&parsed, &self.policy)?;
        Ok(self.http.get(parsed))
    }

    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }
}

/// The redirect rule: follow a hop only if it passes [`check_url_static`] and the chain
/// is at most [`MAX_REDIRECTS`] long.
pub fn check_redirect(policy: &UrlPolicy, attempt: Attempt<'_>) -> reqwest::redirect::Action {
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(Refused(ResolveError::Failed("too many redirects".into())));
    }
    match check_url_static(attempt.url(), policy) {
        Ok(_) => attempt.follow(),
        Err(e) => {
            tracing::warn!(to = %attempt.url(), "egress refused a redirect: {e}");
            attempt.error(Refused(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::sources::egress::policy::refusal;
    use crate::sources::egress::testutil::server;

    fn policy(allow: bool) -> Arc<UrlPolicy> {
        Arc::new(UrlPolicy {
            allow_private_hosts: allow,
            test_public_addresses: vec!["127.0.0.1".parse().unwrap()],
            test_hosts: [("private.test".to_string(), "127.0.0.2".parse().unwrap())].into(),
        })
    }

    #[tokio::test]
    async fn a_redirect_to_a_private_address_is_refused_before_it_is_followed() {
        let (private, hits) = server("127.0.0.2", None).await;
        let port = private.rsplit(':').next().unwrap().to_owned();
        let (to_ip, _) = server("127.0.0.1", Some(format!("{private}/secret"))).await;
        let (to_name, _) = server(
            "127.0.0.1",
            Some(format!("http://private.test:{port}/secret")),
        )
        .await;
        let c = GuardedClient::new(policy(false), None).unwrap();
        for start in [&to_ip, &to_name] {
            let err = c
                .get(&format!("{start}/a"))
                .unwrap()
                .send()
                .await
                .unwrap_err();
            assert_eq!(
                refusal(&err),
                Some(ResolveError::PrivateHost),
                "{start}: {err:?}"
            );
        }
        // A literal private URL is refused before anything is sent.
        assert_eq!(
            c.get(&format!("{private}/x")).err(),
            Some(ResolveError::PrivateHost)
        );
        assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached 127.0.0.2");

        // Allowed, the same redirects are followed (so the check above is what stopped them).
        let open = GuardedClient::new(policy(true), None).unwrap();
        let r = open
            .get(&format!("{to_name}/a"))
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn redirects_are_bounded_and_other_schemes_refused() {
        let (looping, hits) = server("127.0.0.1", Some("/loop".into())).await;
        let c = GuardedClient::new(policy(false), None).unwrap();
        let send = c.get(&format!("{looping}/loop")).unwrap().send();
        let err = tokio::time::timeout(std::time::Duration::from_secs(10), send)
            .await
            .expect("a redirect loop ends")
            .unwrap_err();
        assert!(err.is_redirect(), "{err:?}");
        assert!(hits.load(Ordering::SeqCst) <= MAX_REDIRECTS + 1);
        // reqwest never follows a non-http(s) Location: the 302 comes back as it is.
        let (to_file, _) = server("127.0.0.1", Some("file:///etc/passwd".into())).await;
        let r = c
            .get(&format!("{to_file}/a"))
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
}
