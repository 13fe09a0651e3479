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
//!     --socket-timeout 10 --retries 2 --extractor-retries 1 [--cookies C]
//!     --proxy http://encore:SECRET@127.0.0.1:PORT
//!     --no-playlist -f FORMAT
//!     [--match-filters '!is_live & duration<LIMIT'
//!      --print 'pre_process:encore-pre %(.{duration,is_live,live_status})j']
//!     -j -- <url | ytsearch1:text>
//!   ```
//!   The `--match-filters`/`--print` pair is present only when `max_duration` is set. With
//!   `-j`, a rejected entry produces no output at all; the `pre_process` print (one small
//!   JSON line, emitted before the filter runs) tells whether it was too long or live, so
//!   the user gets `TooLong { limit, actual }` / `Live` / `UnknownLength` instead of a
//!   vague "not found".
//! * **Live streams**: refused ([`ResolveError::Live`]) when `max_duration` is set (a live
//!   stream has no end); accepted and marked [`Track::is_live`] when it is not. Media of
//!   unknown length counts as live ([`ResolveError::UnknownLength`]).
//! * **Lookup caps** ([`lookups`]): every metadata run takes a global slot (waiting a
//!   bounded time for one); `/play` takes a per-member slot first.
//!   [`YtDlp::download`] always refuses them.
//! * **Process hygiene**: `stdin` null, its own process group, `kill_on_drop`, a fixed
//!   working directory, a whole-call timeout; on timeout, on oversized output and when the
//!   future is dropped, the whole process group gets `SIGKILL`. stdout is capped (2 MiB for
//!   `-j`, 8 MiB for `-J`), stderr keeps its last 64 KiB and is only logged.
//! * **Egress** ([`egress`]): `--proxy` is the bot's own egress proxy, so every connection
//!   yt-dlp makes (redirects, manifests, segments) is checked when it is made; the bot
//!   streams with a client that checks every hop and the address it connects to. The
//!   operator's `ytdlp.proxy` is where the egress proxy goes out.
//! * **Output**: the returned stream URL is re-checked with the same policy; errors are
//!   mapped from stderr (table on `map_stderr` in `ytdlp/run.rs`), with a short, path-free
//!   reason for anything unrecognised.

pub mod egress;
mod error;
pub mod links;
pub mod lookups;
pub mod lyrics;
pub mod managed;
mod process;
pub mod query;
pub mod track;
pub mod ytdlp;

pub use egress::policy::{is_forbidden_ip, UrlPolicy};
pub use error::{fmt_hms, ResolveError};
pub use process::{child_env, kill_group, ytdlp_env, LiveProcess, ProcessStats};
pub use query::{parse_query, Query};
pub use track::Track;
pub use ytdlp::{YtDlp, YtDlpConfig};
