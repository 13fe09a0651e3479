//! yt-dlp's stdout (`-j` and `-J`) read into tracks (`docs/fuzzing.md`). yt-dlp prints what
//! a web page said, so none of it is trusted.
//!
//! Private hosts are allowed here: the policy then needs no DNS lookup, so no run reaches
//! the network. The refusing policy's rules are the `query` target's.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use encore::sources::{Track, UrlPolicy, YtDlp, YtDlpConfig};
use libfuzzer_sys::fuzz_target;
use url::Url;

const LIMIT: Duration = Duration::from_secs(600);
const PLAYLIST_ITEMS: usize = 5;

struct Fixture {
    rt: tokio::runtime::Runtime,
    /// No length limit: live streams are accepted and marked.
    open: YtDlp,
    /// `max_duration = 10m`: nothing live or that long gets through.
    limited: YtDlp,
    page: Url,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let policy = UrlPolicy::ALLOW_PRIVATE;
        let cfg = YtDlpConfig::default();
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
            open: YtDlp::new(cfg.clone(), policy.clone()),
            limited: YtDlp::new(
                YtDlpConfig {
                    max_duration: Some(LIMIT),
                    ..cfg
                },
                policy,
            ),
            page: Url::parse("https://www.youtube.com/playlist?list=PL1").unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    for (y, limit) in [(&f.open, None), (&f.limited, Some(LIMIT))] {
        if let Ok((track, json)) = f.rt.block_on(y.single_from_stdout(data, None)) {
            assert!(json.is_object());
            resolved(&track, limit);
        }
        if let Ok((title, tracks)) =
            f.rt.block_on(y.playlist_from_stdout(data, &f.page, PLAYLIST_ITEMS))
        {
            assert!(!title.trim().is_empty());
            assert!((1..=PLAYLIST_ITEMS).contains(&tracks.len()));
            if tracks.len() == 1 && tracks[0].is_resolved() {
                resolved(&tracks[0], limit); // a plain URL's one track
            } else {
                for t in &tracks {
                    entry(t, limit);
                }
            }
        }
    }
});

/// A track ready to play: an http(s) stream URL without credentials, something to show as
/// its title, and within the operator's length limit.
fn resolved(t: &Track, limit: Option<Duration>) {
    let stream = Url::parse(&t.stream_url).expect("stream URL parses");
    http_without_credentials(&stream);
    shown(t);
    within(t, limit);
}

/// An unresolved playlist entry: an http(s) page to resolve later, no stream yet.
fn entry(t: &Track, limit: Option<Duration>) {
    assert!(!t.is_resolved(), "{t:?}");
    let page = Url::parse(&t.page_url).expect("page URL parses");
    http_without_credentials(&page);
    shown(t);
    within(t, limit);
}

fn http_without_credentials(u: &Url) {
    assert!(matches!(u.scheme(), "http" | "https"), "{u}");
    assert!(u.username().is_empty() && u.password().is_none(), "{u}");
    assert!(u.host().is_some(), "{u}");
}

/// `/queue` and the now-playing notice show the title; the cache keys a track by extractor
/// and id, so a blank id would make every such track one cache entry.
fn shown(t: &Track) {
    assert!(!t.title.trim().is_empty(), "blank title: {t:?}");
    assert!(!t.id.trim().is_empty(), "blank id: {t:?}");
    assert!(!t.page_url.is_empty(), "{t:?}");
}

fn within(t: &Track, limit: Option<Duration>) {
    if let Some(d) = t.duration {
        assert!(d < Duration::from_secs(1_000_000_000), "{t:?}");
    }
    if let Some(limit) = limit {
        assert!(!t.is_live, "{t:?}");
        assert!(t.duration.is_none_or(|d| d < limit), "{t:?}");
    }
}
