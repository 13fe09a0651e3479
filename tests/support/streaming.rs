//! A loopback stand-in for the streaming services `/play` reads links from, and for the
//! search their tracks are found with:
//!
//! * Spotify's embed pages (`/embed/{kind}/{id}`), Apple Music's pages (`/{cc}/album/…`) and
//!   Deezer's API (`/{kind}/{id}`), served from `tests/fixtures/links/` (their shapes, and
//!   where they come from, are in that folder's README), `{base}` replaced by this server's
//!   address; a path it does not know is a 404 (Deezer's unknown ids: its `DataException`);
//!   (a page given inline, starting with `<` or `{`, is served as it is);
//! * `/search.rss?q=…`: an RSS 2.0 feed of results with `itunes:duration`, which the real
//!   yt-dlp lists flat like a site search. Each request is logged.

use std::sync::{Arc, Mutex};

use super::fixtures::AbortOnDrop;
use super::http::{self, HttpRequest, HttpResponse};
use super::lrclib::param;

/// What each search lists: a key the query contains, and its hits.
type Results = Vec<(String, Vec<Hit>)>;

/// One search result.
#[derive(Clone, Debug)]
pub struct Hit {
    pub title: String,
    /// What it plays (a tone on the test file server).
    pub link: String,
    pub secs: u64,
    pub description: String,
}

pub fn hit(title: &str, link: String, secs: u64, description: &str) -> Hit {
    Hit {
        title: title.into(),
        link,
        secs,
        description: description.into(),
    }
}

#[derive(Clone)]
pub struct Streaming {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<HttpRequest>>>,
    results: Arc<Mutex<Results>>,
    _task: Arc<AbortOnDrop>,
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/links/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An RSS feed of `hits`, as a search's results page.
pub fn rss(hits: &[Hit]) -> String {
    let mut out = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel><title>Search results</title><link>http://127.0.0.1/</link><description>results</description>"#,
    );
    for (i, h) in hits.iter().enumerate() {
        out.push_str(&format!(
            "<item><title>{}</title><link>{}</link><guid>r{i}</guid><description>{}</description><itunes:duration>{}</itunes:duration></item>",
            escape(&h.title),
            escape(&h.link),
            escape(&h.description),
            h.secs
        ));
    }
    out.push_str("</channel></rss>");
    out
}

impl Streaming {
    /// `pages`: path → fixture file name (or the page itself). Searches find nothing until
    /// [`set_results`](Self::set_results).
    pub async fn start(pages: Vec<(&str, &str)>) -> Streaming {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let pages: Vec<(String, String)> = pages
            .into_iter()
            .map(|(p, f)| {
                let inline = f.starts_with('<') || f.starts_with('{');
                let body = if inline { f.to_owned() } else { fixture(f) };
                (p.to_owned(), body.replace("{base}", &base))
            })
            .collect();
        let results: Arc<Mutex<Results>> = Arc::default();
        let table = results.clone();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let handler = Arc::new(move |req: HttpRequest| {
            seen.lock().unwrap().push(req.clone());
            if req.path == "/search.rss" {
                let q = param(&req, "q").unwrap_or_default().to_lowercase();
                let hits = table
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| q.contains(k.as_str()))
                    .map(|(_, h)| h.clone())
                    .unwrap_or_default();
                let mut r = HttpResponse::new(200).header("content-type", "application/rss+xml");
                r.body = rss(&hits).into_bytes();
                return r;
            }
            match pages.iter().find(|(p, _)| *p == req.path) {
                Some((p, body)) => {
                    let ct = if p.contains("/embed/") || body.starts_with('<') {
                        "text/html; charset=utf-8"
                    } else {
                        "application/json"
                    };
                    let mut r = HttpResponse::new(200).header("content-type", ct);
                    r.body = body.clone().into_bytes();
                    r
                }
                None => HttpResponse::new(404),
            }
        });
        let task = tokio::spawn(http::serve(listener, handler));
        Streaming {
            addr,
            log,
            results,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    /// A search whose text contains a key (any case) lists its hits.
    pub fn set_results(&self, results: Vec<(&str, Vec<Hit>)>) {
        *self.results.lock().unwrap() = results
            .into_iter()
            .map(|(k, h)| (k.to_lowercase(), h))
            .collect();
    }

    /// `http://127.0.0.1:PORT`: every `links.*_base`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `q` of each search asked, in order of arrival.
    pub fn searches(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == "/search.rss")
            .filter_map(|r| param(r, "q"))
            .collect()
    }
}
