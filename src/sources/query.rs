//! Turning what a user typed into something safe to hand to yt-dlp.
//!
//! The rules (see also the module docs in `mod.rs`):
//!
//! * Input is trimmed. Empty → [`ResolveError::EmptyQuery`]; more than
//!   [`MAX_QUERY_CHARS`] characters → [`ResolveError::QueryTooLong`].
//! * If the text starts with `^[A-Za-z][A-Za-z0-9+.-]*:` **and** the character right after
//!   the colon is not whitespace, it is a URL attempt with that scheme. Only `http` and
//!   `https` (any case) are accepted; anything else (`file:`, `ftp:`, `data:`, `javascript:`,
//!   `ytsearch5:`, `c:\music` …) is [`ResolveError::UnsupportedScheme`]. Text such as
//!   `artist: song title` (a space after the colon) is free text.
//! * Everything else is free text, searched as `ytsearch1:<text>`. Text starting with `-`
//!   is never an option: the argument always comes after `--` on yt-dlp's command line.
//! * URLs with a user name or password are refused ([`ResolveError::InvalidUrl`]).
//! * Unless [`UrlPolicy::allow_private_hosts`] is set, URLs whose host is, or resolves to, a
//!   loopback / private / link-local / unspecified / multicast / otherwise non-global
//!   address are refused ([`ResolveError::PrivateHost`]). `localhost` and `*.localhost`
//!   are refused without a DNS lookup.
//!
//! Note on DNS rebinding: the check resolves the name once, yt-dlp resolves it again.
//! The stream URL yt-dlp returns is checked again before it is accepted, which narrows but
//! does not close that window; operators who need a hard guarantee should run the bot
//! behind an egress firewall.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use url::{Host, Url};

use super::error::ResolveError;

/// Longest accepted query, in characters (after trimming).
pub const MAX_QUERY_CHARS: usize = 500;

/// How long the DNS lookup of a URL's host may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the user asked for, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// An `http`/`https` URL, normalised by the `url` crate (this normalised form is what is
    /// passed to yt-dlp).
    Url(Url),
    /// Free text (trimmed, control characters replaced by spaces); searched as
    /// `ytsearch1:<text>`.
    Search(String),
}

impl Query {
    /// The single argument given to yt-dlp after `--`.
    pub fn to_ytdlp_arg(&self) -> String {
        match self {
            Query::Url(u) => u.as_str().to_owned(),
            Query::Search(s) => format!("ytsearch1:{s}"),
        }
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Query::Url(u) => f.write_str(u.as_str()),
            Query::Search(s) => f.write_str(s),
        }
    }
}

/// Which URLs are acceptable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UrlPolicy {
    /// Allow hosts on loopback, private, link-local and other non-global addresses
    /// (off by default; tests and LAN-only setups turn it on).
    pub allow_private_hosts: bool,
}

/// Parses and checks user input. See the module docs for the rules.
pub async fn parse_query(input: &str, policy: &UrlPolicy) -> Result<Query, ResolveError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(ResolveError::EmptyQuery);
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ResolveError::QueryTooLong);
    }
    match url_scheme_prefix(text) {
        Some(scheme) => {
            let lower = scheme.to_ascii_lowercase();
            if lower != "http" && lower != "https" {
                return Err(ResolveError::UnsupportedScheme(shorten_scheme(&lower)));
            }
            let mut url = Url::parse(text).map_err(|_| ResolveError::InvalidUrl)?;
            // A fragment never reaches a server, but yt-dlp reads one
            // (`#__youtubedl_smuggle=` passes it data), while the cache key ignores it: a
            // smuggled answer would be served to the next user of the same link.
            url.set_fragment(None);
            check_url(&url, policy).await?;
            Ok(Query::Url(url))
        }
        None => {
            let cleaned: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let cleaned = cleaned.trim();
            if cleaned.is_empty() {
                return Err(ResolveError::EmptyQuery);
            }
            Ok(Query::Search(cleaned.to_owned()))
        }
    }
}

/// Returns the scheme if `text` matches `^[A-Za-z][A-Za-z0-9+.-]*:` followed by a
/// non-whitespace character.
pub(crate) fn url_scheme_prefix(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'.' || b == b'-'))?;
    if bytes[end] != b':' {
        return None;
    }
    let next = text[end + 1..].chars().next()?;
    if next.is_whitespace() {
        return None;
    }
    Some(&text[..end])
}

fn shorten_scheme(s: &str) -> String {
    s.chars().take(24).collect()
}

/// Checks an already parsed URL against the policy: http(s) only, no credentials, a host,
/// and (unless allowed) no private host. Used for user URLs, for `Query::Url` values built
/// elsewhere, and for the stream URLs yt-dlp returns.
pub(crate) async fn check_url(url: &Url, policy: &UrlPolicy) -> Result<(), ResolveError> {
    let Some(name) = check_url_static(url, policy)? else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((name.as_str(), port)))
        .await
        .map_err(|_| ResolveError::TimedOut(DNS_TIMEOUT))?;
    let addrs = lookup.map_err(|e| {
        tracing::debug!(host = %name, error = %e, "DNS lookup failed");
        ResolveError::NotFound
    })?;
    let mut any = false;
    for addr in addrs {
        any = true;
        refuse_ip(addr.ip())?;
    }
    if any {
        Ok(())
    } else {
        Err(ResolveError::NotFound)
    }
}

/// Every check of [`check_url`] that needs no DNS. Returns the host name still to be
/// resolved and checked, if any (`None` for IP literals, or when private hosts are allowed).
pub(crate) fn check_url_static(
    url: &Url,
    policy: &UrlPolicy,
) -> Result<Option<String>, ResolveError> {
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
        Host::Ipv4(ip) => refuse_ip(IpAddr::V4(ip)).map(|_| None),
        Host::Ipv6(ip) => refuse_ip(IpAddr::V6(ip)).map(|_| None),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                return Err(ResolveError::InvalidUrl);
            }
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(ResolveError::PrivateHost);
            }
            Ok(Some(name))
        }
    }
}

fn refuse_ip(ip: IpAddr) -> Result<(), ResolveError> {
    if is_forbidden_ip(ip) {
        Err(ResolveError::PrivateHost)
    } else {
        Ok(())
    }
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

    const DENY: UrlPolicy = UrlPolicy {
        allow_private_hosts: false,
    };
    const ALLOW: UrlPolicy = UrlPolicy {
        allow_private_hosts: true,
    };

    async fn p(s: &str) -> Result<Query, ResolveError> {
        parse_query(s, &DENY).await
    }

    #[tokio::test]
    async fn refuses_other_schemes() {
        assert_eq!(
            p("file:///etc/passwd").await,
            Err(ResolveError::UnsupportedScheme("file".into()))
        );
        assert_eq!(
            p("FTP://x").await,
            Err(ResolveError::UnsupportedScheme("ftp".into()))
        );
        assert_eq!(
            p("ytsearch5:foo").await,
            Err(ResolveError::UnsupportedScheme("ytsearch5".into()))
        );
        assert_eq!(
            p("javascript:alert(1)").await,
            Err(ResolveError::UnsupportedScheme("javascript".into()))
        );
        assert_eq!(
            p("data:text/plain,hi").await,
            Err(ResolveError::UnsupportedScheme("data".into()))
        );
        assert_eq!(
            p("  ytsearch:foo  ").await,
            Err(ResolveError::UnsupportedScheme("ytsearch".into()))
        );
        // A Windows-looking path follows the rule: scheme "c" followed by a non-space.
        assert_eq!(
            p("c:\\music").await,
            Err(ResolveError::UnsupportedScheme("c".into()))
        );
    }

    #[tokio::test]
    async fn a_fragment_never_reaches_yt_dlp() {
        let q = parse_query(
            "https://93.184.215.14/watch?v=1#__youtubedl_smuggle=%7B%22x%22%3A1%7D",
            &DENY,
        )
        .await
        .unwrap();
        let Query::Url(url) = &q else {
            panic!("a URL: {q:?}")
        };
        assert_eq!(url.fragment(), None);
        assert_eq!(q.to_ytdlp_arg(), "https://93.184.215.14/watch?v=1");
    }

    #[tokio::test]
    async fn http_schemes_any_case() {
        let q = parse_query("HTTPS://93.184.215.14/a b", &DENY)
            .await
            .unwrap();
        match q {
            Query::Url(u) => {
                assert_eq!(u.scheme(), "https");
                assert_eq!(u.as_str(), "https://93.184.215.14/a%20b");
            }
            other => panic!("expected url, got {other:?}"),
        }
        assert!(matches!(
            p("Http://93.184.215.14/").await,
            Ok(Query::Url(_))
        ));
    }

    #[tokio::test]
    async fn refuses_credentials() {
        assert_eq!(
            parse_query("http://user:pw@host/", &ALLOW).await,
            Err(ResolveError::InvalidUrl)
        );
        assert_eq!(
            parse_query("http://user@93.184.215.14/", &DENY).await,
            Err(ResolveError::InvalidUrl)
        );
        assert_eq!(p("http://").await, Err(ResolveError::InvalidUrl));
    }

    #[tokio::test]
    async fn private_hosts() {
        for u in [
            "http://127.0.0.1/x",
            "http://[::1]/",
            "http://10.1.2.3",
            "http://192.168.1.1:8080/a",
            "http://172.16.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a01:203]/",
            "http://224.0.0.1/",
            "http://100.64.0.1/",
            "http://2130706433/", // 127.0.0.1 in decimal, normalised by the url crate
            "http://0x7f.1/",
            "http://localhost/",
            "http://LOCALHOST./x",
            "http://foo.localhost:8000/",
        ] {
            assert_eq!(p(u).await, Err(ResolveError::PrivateHost), "{u}");
        }
        let q = parse_query("http://127.0.0.1/x", &ALLOW).await.unwrap();
        assert_eq!(q, Query::Url(Url::parse("http://127.0.0.1/x").unwrap()));
        assert!(matches!(
            parse_query("http://[::1]:8000/a.mp3", &ALLOW).await,
            Ok(Query::Url(_))
        ));
        // Public literals pass without DNS.
        assert!(matches!(p("http://8.8.8.8/").await, Ok(Query::Url(_))));
        assert!(matches!(
            p("https://[2606:4700::1111]/").await,
            Ok(Query::Url(_))
        ));
    }

    #[tokio::test]
    async fn free_text() {
        assert_eq!(
            p("artist: title").await,
            Ok(Query::Search("artist: title".into()))
        );
        assert_eq!(
            p("  --exec foo ").await,
            Ok(Query::Search("--exec foo".into()))
        );
        assert_eq!(
            p("--exec=touch /tmp/x").await,
            Ok(Query::Search("--exec=touch /tmp/x".into()))
        );
        assert_eq!(
            p("-a/etc/passwd").await,
            Ok(Query::Search("-a/etc/passwd".into()))
        );
        assert_eq!(
            p("AC/DC: Thunderstruck").await,
            Ok(Query::Search("AC/DC: Thunderstruck".into()))
        );
        assert_eq!(p("a\tb\u{7}c").await, Ok(Query::Search("a b c".into())));
        assert_eq!(p("1:2 remix").await, Ok(Query::Search("1:2 remix".into())));
        assert_eq!(p("trailing:").await, Ok(Query::Search("trailing:".into())));
    }

    #[tokio::test]
    async fn empty_and_long() {
        assert_eq!(p("").await, Err(ResolveError::EmptyQuery));
        assert_eq!(p("   \n\t ").await, Err(ResolveError::EmptyQuery));
        let long = "a".repeat(501);
        assert_eq!(p(&long).await, Err(ResolveError::QueryTooLong));
        let ok = "é".repeat(500);
        assert_eq!(p(&ok).await, Ok(Query::Search(ok.clone())));
        // Trimming happens before counting.
        let padded = format!("  {}  ", "a".repeat(500));
        assert!(p(&padded).await.is_ok());
    }

    #[test]
    fn scheme_prefix_rule() {
        assert_eq!(url_scheme_prefix("http://x"), Some("http"));
        assert_eq!(url_scheme_prefix("a+b.c-d:x"), Some("a+b.c-d"));
        assert_eq!(url_scheme_prefix("artist: x"), None);
        assert_eq!(url_scheme_prefix("1abc:x"), None);
        assert_eq!(url_scheme_prefix("abc"), None);
        assert_eq!(url_scheme_prefix("abc:"), None);
        assert_eq!(url_scheme_prefix("ab c:d"), None);
        assert_eq!(url_scheme_prefix("é:x"), None);
    }

    #[test]
    fn query_arg() {
        assert_eq!(
            Query::Search("--exec x".into()).to_ytdlp_arg(),
            "ytsearch1:--exec x"
        );
        assert_eq!(
            Query::Url(Url::parse("https://a.example/b").unwrap()).to_ytdlp_arg(),
            "https://a.example/b"
        );
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
