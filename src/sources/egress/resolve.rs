//! Name resolution under the policy. Everything that connects out resolves here, and
//! connects to the addresses this returns, so the address checked is the address used: a
//! name that answers a public address to the check and a private one to the connection
//! (DNS rebinding) gets nowhere.
//!
//! * [`check_url`]: the strict check of a URL before it is used (user input, the stream
//!   URL yt-dlp returns): refused when any address the name has is private.
//! * [`resolve_checked`]: the addresses a connection may use: the private ones are
//!   dropped, and the name is refused when none is left. The egress proxy connects with it.
//! * [`GuardedResolver`]: the same, as reqwest's resolver for the bot's own client.
//!
//! The test-only host map ([`UrlPolicy::test_hosts`]) is consulted before DNS.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::policy::{check_url_static, Refused, UrlPolicy};
use crate::sources::error::ResolveError;

/// How long the DNS lookup of a host may take.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// The addresses of `name` (already lower case): the test map first, then the system
/// resolver, within [`DNS_TIMEOUT`]. Unchecked.
async fn lookup(
    policy: &UrlPolicy,
    name: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if let Some(ip) = policy.test_host(name) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| ResolveError::TimedOut(DNS_TIMEOUT))?
        .map_err(|e| {
            tracing::debug!(host = %name, error = %e, "DNS lookup failed");
            ResolveError::NotFound
        })?
        .collect::<Vec<_>>();
    if found.is_empty() {
        Err(ResolveError::NotFound)
    } else {
        Ok(found)
    }
}

/// Checks a URL against the policy: [`check_url_static`], then, for a name, every address
/// it resolves to. Used for user URLs, for `Query::Url` values built elsewhere, and for
/// the stream URLs yt-dlp returns.
pub async fn check_url(url: &Url, policy: &UrlPolicy) -> Result<(), ResolveError> {
    let Some(name) = check_url_static(url, policy)? else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    for addr in lookup(policy, &name, port).await? {
        policy.refuse_ip(addr.ip())?;
    }
    Ok(())
}

/// Where a connection to `host:port` may go: an IP literal if the policy accepts it, or
/// the public addresses a name resolves to ([`ResolveError::PrivateHost`] when it has
/// none). `host` may be bracketed (`[::1]`), as in a `CONNECT` authority.
pub async fn resolve_checked(
    policy: &UrlPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let literal = |ip: IpAddr| {
        policy
            .refuse_ip(ip)
            .map(|_| vec![SocketAddr::new(ip, port)])
    };
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return literal(ip);
    }
    // The same normalisation as a URL's host (IDNA, `0x7f.1` → 127.0.0.1).
    let name = match Host::parse(bare).map_err(|_| ResolveError::InvalidUrl)? {
        Host::Domain(d) => policy.check_name(&d)?,
        Host::Ipv4(ip) => return literal(IpAddr::V4(ip)),
        Host::Ipv6(ip) => return literal(IpAddr::V6(ip)),
    };
    let found = lookup(policy, &name, port).await?;
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| !policy.forbids(a.ip()))
        .collect();
    if allowed.is_empty() {
        tracing::debug!(host = %name, addresses = ?found, "refused: only private addresses");
        return Err(ResolveError::PrivateHost);
    }
    Ok(allowed)
}

/// reqwest's resolver for the bot's own client: [`resolve_checked`], so hyper connects
/// only to addresses the policy accepts. A refusal fails the request with [`Refused`] in
/// its causes.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: Arc<UrlPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<UrlPolicy>) -> Self {
        GuardedResolver { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // hyper puts the URL's port on the addresses: 0 here.
            match resolve_checked(&policy, &host, 0).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(e @ (ResolveError::PrivateHost | ResolveError::InvalidUrl)) => {
                    tracing::warn!(host = %host, "egress refused: {e}");
                    Err(Box::new(Refused(e)) as Box<dyn std::error::Error + Send + Sync>)
                }
                Err(e) => Err(Box::new(std::io::Error::other(e.to_string()))
                    as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn test_net() -> UrlPolicy {
        UrlPolicy {
            test_public_addresses: vec!["127.0.0.1".parse().unwrap()],
            test_hosts: [
                ("private.test".to_string(), "127.0.0.2".parse().unwrap()),
                ("public.test".to_string(), "127.0.0.1".parse().unwrap()),
            ]
            .into(),
            ..UrlPolicy::DENY_PRIVATE
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let p = test_net();
        assert_eq!(
            resolve_checked(&p, "public.test", 80).await,
            Ok(vec!["127.0.0.1:80".parse().unwrap()])
        );
        for host in [
            "private.test",
            "PRIVATE.test.",
            "localhost",
            "127.0.0.2",
            "[::1]",
            "0x7f.2",
        ] {
            assert_eq!(
                resolve_checked(&p, host, 80).await,
                Err(ResolveError::PrivateHost),
                "{host}"
            );
        }
        // 0x7f.1 is 127.0.0.1, the test's public address
        assert!(resolve_checked(&p, "0x7f.1", 80).await.is_ok());
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            check_url(&url("http://private.test:9/x"), &p).await,
            Err(ResolveError::PrivateHost)
        );
        assert_eq!(check_url(&url("http://public.test:9/x"), &p).await, Ok(()));
        // Allowed, the same names resolve.
        let allow = UrlPolicy {
            allow_private_hosts: true,
            ..p
        };
        assert!(resolve_checked(&allow, "private.test", 80).await.is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_with_an_error_that_says_so() {
        let r = GuardedResolver::new(Arc::new(test_net()));
        let addrs: Vec<_> = r
            .resolve(Name::from_str("public.test").unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(addrs, vec!["127.0.0.1:0".parse::<SocketAddr>().unwrap()]);
        let err = match r.resolve(Name::from_str("private.test").unwrap()).await {
            Ok(a) => panic!("resolved to {:?}", a.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert_eq!(
            super::super::policy::refusal(&*err),
            Some(ResolveError::PrivateHost)
        );
    }
}
