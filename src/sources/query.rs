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
//! The policy itself lives in `egress/` (`policy.rs`, `resolve.rs`): the same rules hold
//! every connection yt-dlp and the bot make afterwards, through the egress proxy and the
//! guarded client, which is what closes DNS rebinding (see `docs/ytdlp.md`, "Egress").

use url::Url;

use super::egress::policy::{shorten_scheme, UrlPolicy};
use super::egress::resolve::check_url;
use super::error::ResolveError;

/// Longest accepted query, in characters (after trimming).
pub const MAX_QUERY_CHARS: usize = 500;

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

#[cfg(test)]
mod tests {
    use super::*;

    const DENY: UrlPolicy = UrlPolicy::DENY_PRIVATE;
    const ALLOW: UrlPolicy = UrlPolicy::ALLOW_PRIVATE;

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
}
