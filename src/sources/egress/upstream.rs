//! The operator's proxy (`ytdlp.proxy`) as the egress proxy's way out: an http proxy is
//! asked to `CONNECT` (with hyper's client), a socks5 proxy is spoken to with tokio-socks.
//! Either way the destination given to it is the IP address the bot already checked, so
//! the upstream never resolves a name the bot did not see resolve.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

/// How long reaching a destination (directly or through the upstream) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream to a destination, however it was reached.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A parsed `ytdlp.proxy`.
#[derive(Clone, Debug)]
pub struct Upstream {
    url: String,
    kind: Kind,
    /// `host:port` of the proxy itself (operator-configured: resolved without the policy).
    addr: String,
    user: Option<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Http,
    Socks5,
}

impl Upstream {
    /// `http://[user:pass@]host:port`, `socks5://...` or `socks5h://...`; anything else is
    /// an error that says what is supported.
    pub fn parse(s: &str) -> Result<Upstream, String> {
        let u = Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        let (kind, default_port) = match u.scheme() {
            "http" => (Kind::Http, 80),
            "socks5" | "socks5h" => (Kind::Socks5, 1080),
            other => {
                return Err(format!(
                    "`{other}://` proxies are not supported: use http://, socks5:// or socks5h://"
                ))
            }
        };
        let host = u.host_str().ok_or("the proxy URL has no host")?;
        let addr = format!("{host}:{}", u.port().unwrap_or(default_port));
        let user = (!u.username().is_empty()).then(|| {
            let dec = |s: &str| {
                // percent-decoding; `+` is literal in a URL's user part
                url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (dec(u.username()), dec(u.password().unwrap_or("")))
        });
        Ok(Upstream {
            url: s.to_owned(),
            kind,
            addr,
            user,
        })
    }

    /// The URL, for reqwest (plain-http requests are forwarded through it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A tunnel to `target` through the upstream.
    pub async fn connect(&self, target: SocketAddr) -> std::io::Result<Box<dyn Io>> {
        let work = async {
            match self.kind {
                Kind::Socks5 => {
                    let s = match &self.user {
                        Some((u, p)) => tokio_socks::tcp::Socks5Stream::connect_with_password(
                            self.addr.as_str(),
                            target,
                            u,
                            p,
                        )
                        .await
                        .map_err(std::io::Error::other)?,
                        None => tokio_socks::tcp::Socks5Stream::connect(self.addr.as_str(), target)
                            .await
                            .map_err(std::io::Error::other)?,
                    };
                    Ok(Box::new(s) as Box<dyn Io>)
                }
                Kind::Http => self.http_connect(target).await,
            }
        };
        tokio::time::timeout(DIAL_TIMEOUT, work)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "the proxy did not answer")
            })?
    }

    async fn http_connect(&self, target: SocketAddr) -> std::io::Result<Box<dyn Io>> {
        let tcp = TcpStream::connect(self.addr.as_str()).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn.with_upgrades());
        let authority = target.to_string();
        let mut req = hyper::Request::connect(authority.as_str())
            .header(hyper::header::HOST, authority.as_str());
        if let Some((u, p)) = &self.user {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header(hyper::header::PROXY_AUTHORIZATION, format!("Basic {token}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(std::io::Error::other)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        if !resp.status().is_success() {
            return Err(std::io::Error::other(format!(
                "the proxy refused CONNECT {authority}: HTTP {}",
                resp.status().as_u16()
            )));
        }
        let up = hyper::upgrade::on(resp)
            .await
            .map_err(std::io::Error::other)?;
        Ok(Box::new(TokioIo::new(up)))
    }
}

/// A direct connection to the first of `addrs` that answers.
pub async fn dial_direct(addrs: &[SocketAddr]) -> std::io::Result<Box<dyn Io>> {
    let mut last = None;
    for a in addrs {
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(Box::new(s));
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
}
