//! Why a track could not be resolved, and how lengths are written in messages.
//!
//! A [`ResolveError`] comes from two places: the input checks in `query.rs`, which refuse a
//! query before yt-dlp runs, and the yt-dlp wrapper, which maps its failures. It has its own
//! file so that neither has to import the other for it (when it lived in the wrapper,
//! `query.rs` and the wrapper imported each other).

use std::time::Duration;

/// Why a track could not be resolved. `Display` is a short sentence fit for users.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ResolveError {
    #[error("Give me a link or something to search for.")]
    EmptyQuery,
    #[error("That is too long; keep it under 500 characters.")]
    QueryTooLong,
    #[error("`{0}:` links are not supported. Use an http(s) link, or put a space after the colon to search for the text.")]
    UnsupportedScheme(String),
    #[error("That link is not valid (links with a user name or password are not accepted).")]
    InvalidUrl,
    #[error("Links to local or private network addresses are not allowed.")]
    PrivateHost,
    #[error("Nothing was found for that (it may have been removed or made private).")]
    NotFound,
    #[error("That link is not supported: no playable audio was found there.")]
    Unsupported,
    #[error("Looking that up took too long (gave up after {}).", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("yt-dlp is not installed (looked for `{0}`).")]
    Missing(String),
    #[error("That track is {} long; the limit is {}.", fmt_hms(*.actual), fmt_hms(*.limit))]
    TooLong { limit: Duration, actual: Duration },
    #[error("Live streams can't be played here.")]
    Live,
    /// Only offered in segments (an HLS or DASH playlist): the bot streams one file with
    /// range requests and cannot play those.
    #[error(
        "That is only offered as a stream in segments (HLS or DASH), which this bot can't play."
    )]
    Segmented,
    /// No length is known (a radio stream not flagged live, a file that does not say): it
    /// may never end, so it is refused like a live stream whenever a length limit is set.
    #[error("That has no known length (a live stream or a radio, maybe); only tracks up to {} can be played here.", fmt_hms(*.limit))]
    UnknownLength { limit: Duration },
    /// The download passed `cache.max_file_size` (or the cache budget) and was stopped.
    #[error("That file is larger than the {} this bot downloads.", fmt_mib(*.limit))]
    FileTooLarge { limit: u64 },
    /// Every lookup slot stayed taken for the whole wait (`limits.max_lookups`).
    #[error("I'm busy with other lookups right now; try again in a moment.")]
    Busy,
    #[error("The source refused the request (the host may need cookies or a proxy).")]
    Blocked,
    #[error("Couldn't get that track: {0}")]
    Failed(String),
}

impl ResolveError {
    /// A short name for counting errors by class in `/resources`.
    pub fn class(&self) -> &'static str {
        match self {
            ResolveError::EmptyQuery
            | ResolveError::QueryTooLong
            | ResolveError::UnsupportedScheme(_)
            | ResolveError::InvalidUrl
            | ResolveError::PrivateHost => "refused input",
            ResolveError::NotFound => "not found",
            ResolveError::Unsupported | ResolveError::Segmented => "unsupported",
            ResolveError::TimedOut(_) => "yt-dlp timeout",
            ResolveError::Missing(_) => "yt-dlp missing",
            ResolveError::TooLong { .. }
            | ResolveError::Live
            | ResolveError::UnknownLength { .. }
            | ResolveError::FileTooLarge { .. } => "over limits",
            ResolveError::Busy => "busy",
            ResolveError::Blocked => "blocked by source",
            ResolveError::Failed(_) => "yt-dlp failed",
        }
    }

    /// True when the problem lies in what the user asked for (show it, don't alert the
    /// operator); false for host-side problems (timeouts, a missing or blocked yt-dlp,
    /// unexpected failures), which deserve a log line at warn level.
    pub fn is_user_error(&self) -> bool {
        match self {
            ResolveError::EmptyQuery
            | ResolveError::QueryTooLong
            | ResolveError::UnsupportedScheme(_)
            | ResolveError::InvalidUrl
            | ResolveError::PrivateHost
            | ResolveError::NotFound
            | ResolveError::Unsupported
            | ResolveError::Segmented
            | ResolveError::TooLong { .. }
            | ResolveError::Live
            | ResolveError::UnknownLength { .. }
            | ResolveError::FileTooLarge { .. } => true,
            ResolveError::TimedOut(_)
            | ResolveError::Busy
            | ResolveError::Missing(_)
            | ResolveError::Blocked
            | ResolveError::Failed(_) => false,
        }
    }
}

/// `200 MiB`, `1.5 MiB`: sizes in the few messages that show one.
fn fmt_mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if mib >= 10.0 || mib.fract() == 0.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}

/// `3:05`, `1:02:03`: how lengths are written everywhere the bot shows one.
pub fn fmt_hms(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_user_errors() {
        assert_eq!(
            ResolveError::Missing("/opt/yt-dlp".into()).to_string(),
            "yt-dlp is not installed (looked for `/opt/yt-dlp`)."
        );
        assert_eq!(
            ResolveError::TooLong {
                limit: Duration::from_secs(3600),
                actual: Duration::from_secs(3 * 3600 + 62)
            }
            .to_string(),
            "That track is 3:01:02 long; the limit is 1:00:00."
        );
        assert_eq!(
            ResolveError::TimedOut(Duration::from_secs(20)).to_string(),
            "Looking that up took too long (gave up after 20s)."
        );
        assert!(ResolveError::NotFound.is_user_error());
        assert!(ResolveError::PrivateHost.is_user_error());
        assert!(!ResolveError::Blocked.is_user_error());
        assert!(!ResolveError::TimedOut(Duration::from_secs(1)).is_user_error());
        assert!(!ResolveError::Failed("x".into()).is_user_error());
    }
}
