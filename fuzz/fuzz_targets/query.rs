//! `/play`'s input: the query parser and the URL policy (`docs/fuzzing.md`).
//!
//! No run may reach the network, so the policy that refuses private hosts is only applied
//! where it needs no DNS: IP literals and `localhost` names. Every input is also parsed with
//! private hosts allowed, which never resolves anything.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use encore::sources::{is_forbidden_ip, parse_query, Query, ResolveError, UrlPolicy};
use libfuzzer_sys::fuzz_target;
use url::Host;

const ALLOW: UrlPolicy = UrlPolicy::ALLOW_PRIVATE;
const DENY: UrlPolicy = UrlPolicy::DENY_PRIVATE;

/// One current-thread runtime for every run: building one per input would dominate.
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    ip_embeddings(data);
    if let Ok(text) = std::str::from_utf8(data) {
        query(text);
    }
});

/// An IPv4 address is refused exactly when each IPv6 form that embeds it is, and a URL
/// naming it is refused exactly when the address is.
fn ip_embeddings(data: &[u8]) {
    let Some(b) = data.get(..4) else { return };
    let v4 = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let forbidden = is_forbidden_ip(IpAddr::V4(v4));
    let [hi, lo] = [
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ];
    for (form, v6) in [
        ("mapped", v4.to_ipv6_mapped()),
        ("translated", Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo)),
        ("NAT64", Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo)),
        ("6to4", Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1)),
    ] {
        assert_eq!(
            is_forbidden_ip(IpAddr::V6(v6)),
            forbidden,
            "{v4} and its {form} form {v6} disagree"
        );
    }
    for url in [
        format!("http://{v4}/a"),
        format!("https://[{}]/a", v4.to_ipv6_mapped()),
    ] {
        let got = rt().block_on(parse_query(&url, &DENY));
        assert_eq!(
            got == Err(ResolveError::PrivateHost),
            forbidden,
            "{url}: {got:?}"
        );
        if !forbidden {
            assert!(matches!(got, Ok(Query::Url(_))), "{url}: {got:?}");
        }
    }
    if let Some(b) = data.get(..16) {
        let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap());
        let got = rt().block_on(parse_query(&format!("http://[{v6}]:8080/"), &DENY));
        assert_eq!(
            got == Err(ResolveError::PrivateHost),
            is_forbidden_ip(IpAddr::V6(v6)),
            "{v6}: {got:?}"
        );
    }
}

fn query(text: &str) {
    let allowed = rt().block_on(parse_query(text, &ALLOW));
    let trimmed = text.trim();
    if trimmed.chars().count() > 500 {
        assert_eq!(allowed, Err(ResolveError::QueryTooLong));
        return;
    }
    match &allowed {
        Ok(Query::Url(url)) => {
            assert!(matches!(url.scheme(), "http" | "https"), "{url}");
            assert!(
                url.username().is_empty() && url.password().is_none(),
                "{url}"
            );
            assert_eq!(url.fragment(), None, "{url}");
            assert!(url.host().is_some(), "{url}");
            let arg = allowed.as_ref().unwrap().to_ytdlp_arg();
            assert!(arg.starts_with("http"), "{arg}");
            assert_eq!(arg, url.as_str());
            deny_without_dns(text, url);
        }
        Ok(Query::Search(s)) => {
            assert!(!s.is_empty());
            assert_eq!(s, s.trim());
            assert!(!s.chars().any(char::is_control), "{s:?}");
            // Only text that is not a URL attempt is searched, and it is always searched:
            // whatever it starts with (`-`, `--exec`), yt-dlp gets one `ytsearch1:` argument.
            assert_eq!(
                allowed.as_ref().unwrap().to_ytdlp_arg(),
                format!("ytsearch1:{s}")
            );
        }
        Err(ResolveError::EmptyQuery) => {
            assert!(trimmed.chars().all(|c| c.is_control() || c.is_whitespace()));
        }
        Err(ResolveError::UnsupportedScheme(s)) => {
            assert!(!s.is_empty() && s.chars().count() <= 24, "{s}");
            assert!(s != "http" && s != "https", "{text:?}");
        }
        Err(ResolveError::InvalidUrl) => {}
        Err(other) => panic!("{text:?}: unexpected {other:?} with private hosts allowed"),
    }
}

/// Under the refusing policy, a URL whose host needs no DNS lookup is refused exactly when
/// its address is forbidden (or it is `localhost`), and is otherwise the same URL.
fn deny_without_dns(text: &str, url: &url::Url) {
    let expect_refused = match url.host() {
        Some(Host::Ipv4(ip)) => is_forbidden_ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => is_forbidden_ip(IpAddr::V6(ip)),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                true
            } else {
                return; // would need DNS
            }
        }
        None => unreachable!(),
    };
    let denied = rt().block_on(parse_query(text, &DENY));
    if expect_refused {
        assert_eq!(denied, Err(ResolveError::PrivateHost), "{text:?}");
    } else {
        assert_eq!(denied, Ok(Query::Url(url.clone())), "{text:?}");
    }
}
