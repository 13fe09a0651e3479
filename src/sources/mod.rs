//! Track resolution: user input → checked [`Query`] → yt-dlp → [`Track`].
//!
//! The rules, and why, are in `docs/ytdlp.md`. In short:
//!
//! * **Input** ([`parse_query`]): http(s) URLs only; other schemes, credentials in URLs and
//!   (unless [`UrlPolicy::allow_private_hosts`]) private / loopback / link-local hosts are
//!   refused; everything else is a search (`ytsearch1:<text>`).
//! * **Invocation** ([`YtDlp::build_args`]): never a shell; the user's argument is always
//!   the single last argv element, right after `--`, so text like `--exec=…` or
//!   `-a/etc/passwd` can never be read as an option:
//!   ```text
//!   yt-dlp --ignore-config --no-plugin-dirs --no-warnings --no-progress
//!     --socket-timeout 10 --retries 2 --extractor-retries 1 [--cookies C] [--proxy P]
//!     --no-playlist -f 'bestaudio[acodec=opus]/bestaudio/best'
//!     [--match-filters '!is_live & duration<?LIMIT'
//!      --print 'pre_process:encore-pre %(.{duration,is_live,live_status})j']
//!     -j -- <url | ytsearch1:text>
//!   ```
//!   The `--match-filters`/`--print` pair is present only when `max_duration` is set. With
//!   `-j`, a rejected entry produces no output at all; the `pre_process` print (one small
//!   JSON line, emitted before the filter runs) tells whether it was too long or live, so
//!   the user gets `TooLong { limit, actual }` / `Live` instead of a vague "not found".
//! * **Live streams**: refused ([`ResolveError::Live`]) when `max_duration` is set (a live
//!   stream has no end); accepted and marked [`Track::is_live`] when it is not.
//!   [`YtDlp::download`] always refuses them.
//! * **Process hygiene**: `stdin` null, its own process group, `kill_on_drop`, a fixed
//!   working directory, a whole-call timeout; on timeout, on oversized output and when the
//!   future is dropped, the whole process group gets `SIGKILL`. stdout is capped (2 MiB for
//!   `-j`, 8 MiB for `-J`), stderr keeps its last 64 KiB and is only logged.
//! * **Output**: the returned stream URL is re-checked with the same policy; errors are
//!   mapped from stderr (table on `map_stderr` in `ytdlp/run.rs`), with a short, path-free
//!   reason for anything unrecognised.

mod error;
pub mod managed;
mod process;
pub mod query;
pub mod track;
pub mod ytdlp;

pub use error::{fmt_hms, ResolveError};
pub use process::{child_env, kill_group, LiveProcess, ProcessStats};
pub use query::{is_forbidden_ip, parse_query, Query, UrlPolicy};
pub use track::Track;
pub use ytdlp::{YtDlp, YtDlpConfig};
