//! Which destinations are acceptable: the one rule that user URLs, the stream URLs yt-dlp
//! returns, every redirect hop and every connection the egress proxy makes are held to.
//!
//! * Only `http` and `https`, no user name or password, a host.
//! * Unless [`UrlPolicy::allow_private_hosts`] is set, no loopback / private / link-local /
//!   unspecified / multicast / otherwise non-global address ([`is_forbidden_ip`]), and no
//!   `localhost` or `*.localhost` name (refused without a DNS lookup).
//!
//! The checks that need DNS are in `resolve.rs`; this file only decides.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::sources::error::ResolveError;

/// Which destinations are acceptable. Built once from the config (`app::policy`) and
/// shared (behind an `Arc`) by the yt-dlp wrapper, the bot's HTTP client and the egress
/// proxy, so that they can never disagree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Allow hosts on loopback, private, link-local and other non-global addresses
    /// (off by default; tests and LAN-only setups turn it on).
    pub allow_private_hosts: bool,
    /// **Test-only**: addresses that count as public although they are not, so that the
    /// end-to-end tests run the real policy against servers on loopback (`127.0.0.1` is
    /// "public" while `127.0.0.2` stays private).
    pub test_public_addresses: Vec<IpAddr>,
    /// **Test-only**: names answered before DNS (`private.test` → `127.0.0.2`), so that a
    /// test can have a name resolving to a private address without touching /etc/hosts.
    pub test_hosts: BTreeMap<String, IpAddr>,
}

impl UrlPolicy {
    /// Private hosts refused, no test overrides: what a deployment runs.
    pub const DENY_PRIVATE: UrlPolicy = UrlPolicy {
        allow_private_hosts: false,
        test_public_addresses: Vec::new(),
        test_hosts: BTreeMap::new(),
    };
    /// Everything reachable allowed (`allow_private_hosts = true`).
    pub const ALLOW_PRIVATE: UrlPolicy = UrlPolicy {
        allow_private_hosts: true,
        test_public_addresses: Vec::new(),
        test_hosts: BTreeMap::new(),
    };

    /// True when the bot must not connect to `ip` under this policy.
    pub fn forbids(&self, ip: IpAddr) -> bool {
        !self.allow_private_hosts
            && !self.test_public_addresses.contains(&ip)
            && is_forbidden_ip(ip)
    }

    pub(crate) fn refuse_ip(&self, ip: IpAddr) -> Result<(), ResolveError> {
        if self.forbids(ip) {
            Err(ResolveError::PrivateHost)
        } else {
            Ok(())
        }
    }

    /// The test map's answer for `name` (lower case, without a trailing dot), if any.
    pub(crate) fn test_host(&self, name: &str) -> Option<IpAddr> {
        self.test_hosts.get(name).copied()
    }

    /// A host name as a request names it: refused when it is `localhost`-like (unless
    /// private hosts are allowed), else lower case without a trailing dot.
    pub(crate) fn check_name(&self, name: &str) -> Result<String, ResolveError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return Err(ResolveError::InvalidUrl);
        }
        if !self.allow_private_hosts && (name == "localhost" || name.ends_with(".localhost")) {
            return Err(ResolveError::PrivateHost);
        }
        Ok(name)
    }
}

/// A destination the policy refused, carried inside reqwest's and hyper's errors so that
/// whoever gets the error can tell a refusal from a network failure ([`refusal`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub ResolveError);

/// The refusal somewhere in `err`'s chain of causes, if the policy is why it failed.
pub fn refusal(err: &(dyn std::error::Error + 'static)) -> Option<ResolveError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(Refused(r)) = e.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        // `io::Error::source` skips the error it wraps: look inside it too.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(r) = refusal(inner) {
                return Some(r);
            }
        }
        next = e.source();
    }
    None
}

/// Every check of [`check_url`](super::resolve::check_url) that needs no DNS: http(s) only,
/// no credentials, a host, and (unless allowed) no private IP literal or `localhost` name.
/// Returns the host name still to be resolved and checked, if any (`None` for IP
/// literals, or when private hosts are allowed).
pub fn check_url_static(url: &Url, policy: &UrlPolicy) -> Result<Option<String>, ResolveError> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(ResolveError::UnsupportedScheme(shorten_scheme(other))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ResolveError::InvalidUrl);
    }
    let host = url.host().ok_or(ResolveError::InvalidUrl)?;
    if policy.allow_private_hosts {
        return Ok(None);
    }
    match host {
        Host::Ipv4(ip) => policy.refuse_ip(IpAddr::V4(ip)).map(|_| None),
        Host::Ipv6(ip) => policy.refuse_ip(IpAddr::V6(ip)).map(|_| None),
        Host::Domain(name) => policy.check_name(name).map(Some),
    }
}

pub(crate) fn shorten_scheme(s: &str) -> String {
    s.chars().take(24).collect()
}

/// True for addresses a public URL must not point at: loopback, private (RFC 1918, ULA),
/// link-local, unspecified, multicast, broadcast, CGNAT, documentation, benchmarking and
/// reserved ranges, and IPv6 forms embedding such an IPv4 address (mapped, compatible,
/// NAT64 well-known prefix, 6to4).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}
fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10 shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || a >= 240 // 240.0.0.0/4 reserved
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return true;
    }
    let seg = ip.segments();
    // IPv4-mapped ::ffff:a.b.c.d
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated)
    if seg[..6].iter().all(|&s| s == 0) {
        return is_forbidden_v4(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    // NAT64 well-known prefix 64:ff9b::/96
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|&s| s == 0) {
        return is_forbidden_v4(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    // IPv4-translated ::ffff:0:a.b.c.d (RFC 2765): the mapped check above does not see it
    if seg[..4].iter().all(|&s| s == 0) && seg[4] == 0xffff && seg[5] == 0 {
        return is_forbidden_v4(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    // 6to4 2002:AABB:CCDD::/48 embeds an IPv4 address
    if seg[0] == 0x2002 {
        return is_forbidden_v4(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // 2001:db8::/32 documentation
        // 2001::/32 Teredo: a tunnel whose far end (an obfuscated IPv4) can be any host
        || (seg[0] == 0x2001 && seg[1] == 0)
        || (seg[0] == 0x2001 && seg[1] == 0x0002 && seg[2] == 0) // 2001:2::/48 benchmarking
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // 64:ff9b:1::/48 local NAT64
        || (seg[0] == 0x0100 && seg[1..4].iter().all(|&s| s == 0)) // 100::/64 discard
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_net() -> UrlPolicy {
        UrlPolicy {
            test_public_addresses: vec!["127.0.0.1".parse().unwrap()],
            ..UrlPolicy::DENY_PRIVATE
        }
    }

    #[test]
    fn test_public_addresses_count_as_public_and_nothing_else_does() {
        let p = test_net();
        assert!(!p.forbids("127.0.0.1".parse().unwrap()));
        assert!(p.forbids("127.0.0.2".parse().unwrap()));
        assert!(p.forbids("10.0.0.5".parse().unwrap()));
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(check_url_static(&url("http://127.0.0.1:8/x"), &p), Ok(None));
        assert_eq!(
            check_url_static(&url("http://127.0.0.2:8/x"), &p),
            Err(ResolveError::PrivateHost)
        );
        assert_eq!(
            check_url_static(&url("http://LocalHost./"), &p),
            Err(ResolveError::PrivateHost)
        );
        assert_eq!(
            check_url_static(&url("http://Public.Test./a"), &p),
            Ok(Some("public.test".into()))
        );
    }

    #[test]
    fn a_refusal_is_found_inside_io_and_boxed_errors() {
        let io = std::io::Error::other(Refused(ResolveError::PrivateHost));
        assert_eq!(refusal(&io), Some(ResolveError::PrivateHost));
        let plain = std::io::Error::other("connection reset");
        assert_eq!(refusal(&plain), None);
    }

    #[test]
    fn forbidden_ips() {
        for s in [
            "127.0.0.1",
            "10.0.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "255.255.255.255",
            "239.1.1.1",
            "100.127.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "2002:7f00:1::",
            "2001:db8::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "64:ff9b:1::a00:1",
            "::ffff:0:10.0.0.5",
            "::ffff:0:127.0.0.1",
        ] {
            assert!(is_forbidden_ip(s.parse().unwrap()), "{s}");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::808:808",
            "2001:4860:4860::8888",
        ] {
            assert!(!is_forbidden_ip(s.parse().unwrap()), "{s}");
        }
    }
}
