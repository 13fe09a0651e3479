//! Building yt-dlp's argument lists.
//!
//! Metadata and download calls start with the same hardening options
//! ([`common_args`](YtDlp::common_args)): no configuration files or plugins are read (a
//! `yt-dlp.conf` in the working directory or the user's config dir would otherwise be
//! loaded), and network waits and retries are bounded. User
//! text only ever reaches yt-dlp as the single last argument, right after `--`, so a search
//! such as `--exec=…` or `-a/etc/passwd` can never be read as an option. Cookies and proxy
//! come from the operator's configuration, never from users. See `docs/ytdlp.md`.

use std::ffi::OsString;
use std::path::Path;

use url::Url;

use super::client::YtDlp;
use crate::sources::query::Query;

/// Format selector: Opus audio (passthrough-friendly), else any audio-only, else the best
/// combined format (needed for direct files whose codecs yt-dlp cannot tell).
/// Audio over plain http(s) first: the bot streams one file with range requests, and a
/// format in segments (HLS `m3u8`, DASH) is refused once chosen ([`ResolveError::Segmented`]);
/// the plain fallbacks let yt-dlp say what there is, so the refusal can name it.
///
/// [`ResolveError::Segmented`]: crate::sources::ResolveError::Segmented
pub const FORMAT: &str = "bestaudio[acodec=opus][protocol^=http][protocol!*=dash]/bestaudio[protocol^=http][protocol!*=dash]/best[protocol^=http][protocol!*=dash]/bestaudio/best";

/// Marker of the `--print pre_process:` line that reports duration / liveness even when
/// `--match-filters` then rejects the entry (with `-j`, a rejection is otherwise silent).
pub(super) const PRE_MARK: &str = "encore-pre ";
const PRE_TEMPLATE: &str = "pre_process:encore-pre %(.{duration,is_live,live_status})j";

/// What one call is for; decides the arguments.
pub(super) enum Mode<'a> {
    Single(&'a Query),
    Playlist(&'a Url, usize),
    /// A search listed flat: the whole argument (`ytsearch5:<text>` or a checked URL).
    Flat(&'a str, usize),
}

impl YtDlp {
    fn common_args(&self, cookies: Option<&Path>) -> Vec<OsString> {
        let mut a: Vec<OsString> = [
            "--ignore-config",
            "--no-plugin-dirs",
            "--no-warnings",
            "--no-progress",
            "--socket-timeout",
            "10",
            "--retries",
            "2",
            "--extractor-retries",
            "1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        if let Some(c) = cookies {
            a.push("--cookies".into());
            a.push(c.as_os_str().to_owned());
        }
        if let Some(p) = self.proxy_arg() {
            a.push("--proxy".into());
            a.push(p.into());
        }
        a
    }

    fn filter_args(&self, a: &mut Vec<OsString>) {
        if let Some(limit) = self.inner.cfg.max_duration {
            a.push("--match-filters".into());
            // `duration<N`, not `<?N`: a missing duration must not pass (it may be a stream
            // that never ends). Flat playlist entries are checked as incomplete, so theirs
            // pass until each is looked up on its own.
            a.push(format!("!is_live & duration<{}", limit.as_secs_f64()).into());
            a.push("--print".into());
            a.push(PRE_TEMPLATE.into());
        }
    }

    /// The options every lookup passes, then `--version`: a yt-dlp that refuses one of them
    /// (too old for `--no-plugin-dirs`, say) fails this as it would fail every lookup, so
    /// `encore doctor` asks with exactly these. The cookies file is left out: each lookup
    /// gets a private copy of it.
    pub fn probe_args(&self) -> Vec<OsString> {
        let mut a = self.common_args(None);
        self.filter_args(&mut a);
        a.push("--version".into());
        a
    }

    pub(super) fn args_for(&self, mode: Mode<'_>, cookies: Option<&Path>) -> Vec<OsString> {
        let mut a = self.common_args(cookies);
        let target = match mode {
            Mode::Single(q) => {
                a.push("--no-playlist".into());
                a.extend(["-f", FORMAT].map(OsString::from));
                self.filter_args(&mut a);
                a.push("-j".into());
                q.to_ytdlp_arg()
            }
            Mode::Playlist(url, limit) => {
                a.extend(
                    ["--yes-playlist", "--flat-playlist", "--playlist-items"].map(OsString::from),
                );
                a.push(format!("1:{limit}").into());
                a.extend(["-f", FORMAT].map(OsString::from));
                self.filter_args(&mut a);
                a.push("-J".into());
                url.as_str().to_owned()
            }
            Mode::Flat(target, limit) => {
                a.extend(
                    ["--yes-playlist", "--flat-playlist", "--playlist-items"].map(OsString::from),
                );
                a.push(format!("1:{limit}").into());
                a.push("-J".into());
                target.to_owned()
            }
        };
        a.push("--".into());
        a.push(target.into());
        a
    }

    /// The argv of [`download`](YtDlp::download): download the checked info in `info_json`
    /// to `out`. No user text appears in it: the URL reaches yt-dlp only inside the info
    /// file, after [`resolve`](YtDlp::resolve) has checked it.
    ///
    /// `max_bytes` becomes `--max-filesize`: yt-dlp then refuses a file whose announced
    /// size is larger, saying so on stdout (hence no `--quiet`: the few lines it prints
    /// are how [`download`](YtDlp::download) tells that refusal from other failures).
    pub(super) fn download_args(
        &self,
        cookies: Option<&Path>,
        out: &Path,
        info_json: &Path,
        max_bytes: Option<u64>,
    ) -> Vec<OsString> {
        let mut args = self.common_args(cookies);
        if let Some(n) = max_bytes {
            args.push("--max-filesize".into());
            args.push(n.to_string().into());
        }
        args.extend(
            [
                "--no-playlist",
                "-f",
                FORMAT,
                "--no-part",
                "--no-mtime",
                "--force-overwrites",
                "-o",
            ]
            .map(OsString::from),
        );
        // `%` starts an output-template field: escape it. `out` is absolute (`download`
        // makes it so), so it can't be taken for a `TYPE:` prefix.
        args.push(out.to_string_lossy().replace('%', "%%").into());
        args.push("--load-info-json".into());
        args.push(info_json.as_os_str().to_owned());
        args
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sources::egress::policy::UrlPolicy;
    use crate::sources::ytdlp::tests::ytdlp;

    fn strs(a: &[OsString]) -> Vec<String> {
        a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    fn assert_safe_tail(args: &[String], expected_last: &str) {
        assert_eq!(args.last().unwrap(), expected_last);
        assert_eq!(args[args.len() - 2], "--");
        assert_eq!(args.iter().filter(|a| *a == "--").count(), 1);
        assert!(args.contains(&"--ignore-config".to_owned()));
        assert!(args.contains(&"--no-playlist".to_owned()));
        assert!(args.contains(&"--no-plugin-dirs".to_owned()));
        assert!(args.contains(&"-j".to_owned()));
        assert!(!args
            .iter()
            .any(|a| a == "--enable-file-urls" || a == "--no-check-certificates"));
        // Only the last element carries user text.
        assert!(!args[..args.len() - 1]
            .iter()
            .any(|a| a.contains("passwd") || a.contains("touch")));
    }

    #[test]
    fn build_args_url() {
        let y = ytdlp(None);
        let q = Query::Url(Url::parse("https://www.youtube.com/watch?v=abc").unwrap());
        let a = strs(&y.build_args(&q));
        assert_safe_tail(&a, "https://www.youtube.com/watch?v=abc");
        assert_eq!(a[0], "--ignore-config");
        let f = a.iter().position(|x| x == "-f").unwrap();
        assert_eq!(a[f + 1], FORMAT);
        assert!(!a.contains(&"--match-filters".to_owned()));
        assert!(!a.contains(&"--cookies".to_owned()));
        assert!(!a.contains(&"--proxy".to_owned()));
    }

    #[test]
    fn build_args_search_is_never_an_option() {
        let y = ytdlp(None);
        for text in ["--exec=touch /tmp/x", "-a/etc/passwd", "--exec foo"] {
            let a = strs(&y.build_args(&Query::Search(text.into())));
            assert_safe_tail(&a, &format!("ytsearch1:{text}"));
        }
    }

    #[test]
    fn build_args_filters_and_config() {
        let mut cfg = ytdlp(Some(Duration::from_secs(600))).inner.cfg.clone();
        cfg.cookies = Some("/srv/cookies.txt".into());
        cfg.proxy = Some("socks5://127.0.0.1:9050".into());
        let y = YtDlp::new(cfg, UrlPolicy::default());
        let a = strs(&y.build_args(&Query::Search("x".into())));
        assert_safe_tail(&a, "ytsearch1:x");
        let m = a.iter().position(|x| x == "--match-filters").unwrap();
        assert_eq!(a[m + 1], "!is_live & duration<600");
        let p = a.iter().position(|x| x == "--print").unwrap();
        assert_eq!(a[p + 1], PRE_TEMPLATE);
        let c = a.iter().position(|x| x == "--cookies").unwrap();
        assert_eq!(a[c + 1], "/srv/cookies.txt");
        let p = a.iter().position(|x| x == "--proxy").unwrap();
        assert_eq!(a[p + 1], "socks5://127.0.0.1:9050");
        let b = a.iter().position(|x| x == "--socket-timeout").unwrap();
        assert_eq!(a[b + 1], "10");
    }

    #[test]
    fn playlist_args() {
        let y = ytdlp(None);
        let u = Url::parse("https://www.youtube.com/playlist?list=PL1").unwrap();
        let a = strs(&y.args_for(Mode::Playlist(&u, 25), None));
        assert_eq!(a.last().unwrap(), u.as_str());
        assert_eq!(a[a.len() - 2], "--");
        assert!(a.contains(&"--flat-playlist".to_owned()));
        assert!(a.contains(&"--yes-playlist".to_owned()));
        assert!(a.contains(&"-J".to_owned()));
        assert!(!a.contains(&"--no-playlist".to_owned()));
        let i = a.iter().position(|x| x == "--playlist-items").unwrap();
        assert_eq!(a[i + 1], "1:25");
    }

    #[test]
    fn download_args_carry_no_user_text() {
        let y = ytdlp(None);
        let a = strs(&y.download_args(
            None,
            Path::new("/cache/.a%b.encore-dl"),
            Path::new("/work/.encore-info-1.tmp"),
            Some(200 << 20),
        ));
        let m = a.iter().position(|x| x == "--max-filesize").unwrap();
        assert_eq!(a[m + 1], "209715200");
        assert_eq!(a[0], "--ignore-config");
        let o = a.iter().position(|x| x == "-o").unwrap();
        assert_eq!(a[o + 1], "/cache/.a%%b.encore-dl");
        assert_eq!(
            a[a.len() - 2..],
            ["--load-info-json", "/work/.encore-info-1.tmp"]
        );
        assert!(!a.contains(&"--".to_owned()));
    }
}
