//! End-to-end: the real bot with the URL policy on (`allow_private_hosts = false`), where
//! 127.0.0.1 counts as public (`ytdlp.test_public_addresses`) and 127.0.0.2 is the private
//! network. Whatever a public link leads to (a redirect, a name, an HLS playlist, a page),
//! the private server must get no request at all, from yt-dlp or from the bot's own
//! streaming, and the user is told why.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use encore::config::Config;
use support::egress::{PublicServer, RecordingProxy};
use support::world::*;
use support::FileServer;

const REFUSAL: &str = "private network addresses are not allowed";

fn guarded(c: &mut Config) {
    c.ytdlp.allow_private_hosts = false;
    c.ytdlp.test_public_addresses = vec!["127.0.0.1".parse().unwrap()];
    c.ytdlp.test_hosts = [
        ("private.test".to_string(), "127.0.0.2".parse().unwrap()),
        ("public.test".to_string(), "127.0.0.1".parse().unwrap()),
    ]
    .into();
    // One stream, no background download: each case's requests are the lookup's and the
    // stream's only (the HLS case turns downloads back on).
    c.cache.audio = false;
}

struct Net {
    private: FileServer,
    public: PublicServer,
}

async fn net(w: &World, flip_after: usize) -> Net {
    let private = FileServer::start_on("127.0.0.2", &w.media_dir()).await;
    let public = PublicServer::start(&w.media_dir(), &private, flip_after).await;
    Net { private, public }
}

/// Waits until no yt-dlp runs (the lookup, a background download) and `n` have started.
async fn ytdlp_settled(w: &World, n: u64) {
    let stats = w.bot.resolver.ytdlp().stats();
    let deadline = tokio::time::Instant::now() + T;
    while stats.spawned.load(Ordering::SeqCst) < n || stats.running.load(Ordering::SeqCst) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "yt-dlp runs did not settle: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The private network (127.0.0.2) got no request at all.
fn assert_private_untouched(n: &Net) {
    assert_eq!(
        n.private
            .request_log()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "nothing reached 127.0.0.2"
    );
}

/// The "Couldn't play" notice for `title`, once it is posted.
async fn failure_notice(w: &World, title: &str) -> String {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if let Some(m) = w
            .emu
            .messages(TEXT)
            .iter()
            .map(|m| m.text())
            .find(|t| t.contains("Couldn't play") && t.contains(title))
        {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failure notice for {title}: {:?}",
            w.emu
                .messages(TEXT)
                .iter()
                .map(|m| m.text())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_private_address_is_refused_to_ytdlp_and_to_the_stream() {
    let w = World::start_with(guarded).await;
    let n = net(&w, 1).await;

    // yt-dlp's first request is redirected to 127.0.0.2: the egress proxy refuses the hop.
    let r = w.play(ANN, &n.public.url("redirect")).await;
    assert!(r.ephemeral && r.text().contains(REFUSAL), "{}", r.text());

    // yt-dlp gets the file; the bot's own GET of the same URL is then redirected.
    let r = w.play(ANN, &n.public.url("flip.wav")).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    let notice = failure_notice(&w, "flip").await;
    assert!(notice.contains(REFUSAL), "{notice}");
    assert!(
        n.public
            .requests()
            .iter()
            .filter(|p| *p == "/flip.wav")
            .count()
            >= 2,
        "both yt-dlp and the bot asked: {:?}",
        n.public.requests()
    );

    assert_private_untouched(&n);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_a_private_address_is_refused() {
    let w = World::start_with(guarded).await;
    let n = net(&w, 0).await;
    let port = n.private.addr().port();

    // Given directly: refused before yt-dlp runs.
    let r = w
        .play(ANN, &format!("http://private.test:{port}/low.wav"))
        .await;
    assert!(r.ephemeral && r.text().contains(REFUSAL), "{}", r.text());

    // Reached through a redirect from a public page: refused when yt-dlp connects.
    let r = w.play(ANN, &n.public.url("redirect-name")).await;
    assert!(r.ephemeral && r.text().contains(REFUSAL), "{}", r.text());

    // A public name still plays (the map is consulted, the policy is the same).
    let port = n.public.addr.port();
    let r = w
        .play(ANN, &format!("http://public.test:{port}/low.wav"))
        .await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    assert!((w.hear(25).await - 440.0).abs() < 15.0);

    assert_private_untouched(&n);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_segments_on_a_private_address_are_never_fetched() {
    let w = World::start_with(|c| {
        guarded(c);
        // A download into the cache would be what makes yt-dlp fetch the segments.
        c.cache.audio = true;
    })
    .await;
    let n = net(&w, 0).await;

    // yt-dlp reads the playlist (through the egress proxy); a format in segments is
    // refused before anything plays or downloads, so no segment is ever asked for.
    let r = w.play(ANN, &n.public.url("list.m3u8")).await;
    assert!(
        r.ephemeral && r.text().contains("in segments (HLS or DASH)"),
        "{}",
        r.text()
    );
    ytdlp_settled(&w, 1).await;
    assert_eq!(
        w.bot
            .resolver
            .ytdlp()
            .stats()
            .spawned
            .load(Ordering::SeqCst),
        1,
        "no download started"
    );
    assert!(
        n.public.requests().iter().any(|p| p == "/list.m3u8"),
        "{:?}",
        n.public.requests()
    );
    assert_private_untouched(&n);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_media_is_on_a_private_address_is_refused() {
    let w = World::start_with(guarded).await;
    let n = net(&w, 0).await;

    // The <audio> on the page is a private URL: refused, never fetched.
    let r = w.play(ANN, &n.public.url("page.html")).await;
    assert!(r.ephemeral && r.text().contains(REFUSAL), "{}", r.text());

    // yt-dlp reads the page, then asks for the HLS playlist its <video> names: the egress
    // proxy refuses that connection, so the page has no playable audio.
    let r = w.play(ANN, &n.public.url("page-hls.html")).await;
    assert!(
        r.ephemeral && r.text().contains("no playable audio"),
        "{}",
        r.text()
    );

    assert!(n.public.requests().iter().any(|p| p == "/page.html"));
    assert!(n.public.requests().iter().any(|p| p == "/page-hls.html"));
    assert_private_untouched(&n);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_proxy_carries_the_lookup_and_the_stream() {
    let upstream = RecordingProxy::start().await;
    let proxy_url = upstream.url();
    let w = World::start_with(move |c| {
        guarded(c);
        c.ytdlp.proxy = Some(proxy_url);
    })
    .await;

    let url = w.files.url("low.wav");
    let r = w.play(ANN, &url).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    assert!((w.hear(40).await - 440.0).abs() < 15.0);

    let through_proxy = upstream
        .requests()
        .iter()
        .filter(|l| l.ends_with("/low.wav"))
        .count();
    let served = w
        .files
        .request_log()
        .iter()
        .filter(|r| r.path == "/low.wav")
        .count();
    // yt-dlp's lookup and the bot's streaming GET: at least two, and every one of them
    // reached the media server through the proxy.
    assert!(through_proxy >= 2, "proxy saw {:?}", upstream.requests());
    assert_eq!(through_proxy, served, "proxy saw {:?}", upstream.requests());
    w.stop().await;
}
