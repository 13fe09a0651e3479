//! Servers for the egress tests: the "private" server is a [`FileServer`] on 127.0.0.2,
//! which records every request it gets; a "public" server on 127.0.0.1 whose routes lead there (redirects, an
//! HLS manifest, a page), and a small recording HTTP proxy (CONNECT and absolute-form)
//! standing in for an operator's `ytdlp.proxy`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::fixtures::{serve_file, AbortOnDrop, FileServer};
use super::http::{self, HttpRequest, HttpResponse};

/// The public side on 127.0.0.1: files from `media`, and routes leading to `private`:
/// - `/redirect` → 302 to the private server's `/low.wav`;
/// - `/redirect-name` → 302 to `http://private.test:PORT/low.wav` (the test host map);
/// - `/flip.wav` → `low.wav` for the first `flip_after` requests, then a 302 to private;
/// - `/list.m3u8` → an HLS playlist whose segments are on the private server;
/// - `/page.html` → a page whose `<audio>` is on the private server;
/// - `/page-hls.html` → a page whose `<video>` is an HLS playlist on the private server.
pub struct PublicServer {
    pub addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _task: AbortOnDrop,
}

impl PublicServer {
    pub async fn start(media: &Path, private: &FileServer, flip_after: usize) -> PublicServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let flips = Arc::new(AtomicUsize::new(0));
        let (l2, dir): (_, PathBuf) = (log.clone(), media.to_path_buf());
        let private_base = format!("http://{}", private.addr());
        let private_port = private.addr().port();
        let handler = Arc::new(move |req: HttpRequest| {
            l2.lock().unwrap().push(req.path.clone());
            let redirect = |to: String| HttpResponse::new(302).header("Location", to);
            match req.path.as_str() {
                "/redirect" => redirect(format!("{private_base}/low.wav")),
                "/redirect-name" => redirect(format!("http://private.test:{private_port}/low.wav")),
                "/flip.wav" => {
                    if flips.fetch_add(1, Ordering::SeqCst) < flip_after {
                        let mut r = req.clone();
                        r.path = "/low.wav".into();
                        serve_file(&dir, &r)
                    } else {
                        redirect(format!("{private_base}/low.wav"))
                    }
                }
                "/list.m3u8" => {
                    let mut r = HttpResponse::new(200)
                        .header("Content-Type", "application/vnd.apple.mpegurl");
                    r.body = format!(
                        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
                         #EXTINF:2.0,\n{private_base}/seg0.ts\n\
                         #EXTINF:2.0,\n{private_base}/seg1.ts\n#EXT-X-ENDLIST\n"
                    )
                    .into_bytes();
                    r
                }
                "/page.html" => {
                    let mut r = HttpResponse::new(200).header("Content-Type", "text/html");
                    r.body = format!(
                        "<html><head><title>page</title></head><body>\
                         <audio src=\"{private_base}/low.wav\"></audio></body></html>"
                    )
                    .into_bytes();
                    r
                }
                "/page-hls.html" => {
                    let mut r = HttpResponse::new(200).header("Content-Type", "text/html");
                    r.body = format!(
                        "<html><head><title>page</title></head><body>\
                         <video src=\"{private_base}/list.m3u8\"></video></body></html>"
                    )
                    .into_bytes();
                    r
                }
                _ => serve_file(&dir, &req),
            }
        });
        let task = tokio::spawn(http::serve(listener, handler));
        PublicServer {
            addr,
            log,
            _task: AbortOnDrop(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// A forwarding HTTP proxy on 127.0.0.1 that records what it is asked: `CONNECT
/// host:port`, or `METHOD http://host:port/path` for absolute-form requests (which it
/// forwards with `Connection: close`).
pub struct RecordingProxy {
    pub addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _task: AbortOnDrop,
}

impl RecordingProxy {
    pub async fn start() -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = l2.clone();
                tokio::spawn(async move {
                    let _ = proxy_conn(tcp, log).await;
                });
            }
        });
        RecordingProxy {
            addr,
            log,
            _task: AbortOnDrop(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

async fn proxy_conn(tcp: TcpStream, log: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut rd = BufReader::new(tcp);
    let mut line = String::new();
    rd.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if rd.read_line(&mut h).await? == 0 {
            return Ok(());
        }
        let h = h.trim_end().to_owned();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            let hop = [
                "connection",
                "proxy-connection",
                "keep-alive",
                "proxy-authorization",
            ];
            if !hop.iter().any(|x| k.eq_ignore_ascii_case(x)) {
                headers.push(h.clone());
            }
        }
    }
    log.lock().unwrap().push(format!("{method} {target}"));
    if method == "CONNECT" {
        let mut up = TcpStream::connect(&target).await?;
        rd.get_mut()
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        let mut client = rd.into_inner();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        return Ok(());
    }
    let url = url::Url::parse(&target).map_err(std::io::Error::other)?;
    let host = format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(80)
    );
    let mut body = vec![0; len];
    rd.read_exact(&mut body).await?;
    let mut up = TcpStream::connect(&host).await?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for h in &headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut client = rd.into_inner();
    tokio::io::copy(&mut up, &mut client).await?;
    client.shutdown().await
}
