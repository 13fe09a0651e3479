//! The egress proxy: every yt-dlp run is given `--proxy http://encore:SECRET@127.0.0.1:PORT`,
//! so each connection yt-dlp makes (the page, its redirects, HLS/DASH manifests and their
//! segments) is checked when it is made, by the same policy and resolver as the bot's own.
//!
//! * The secret is drawn at each start; a request without it gets `407` (another local
//!   user cannot borrow the bot's way out).
//! * `CONNECT host:port` (https): the host is resolved and checked ([`resolve_checked`]),
//!   the checked address is connected (directly, or through the operator's proxy), and
//!   the bytes are copied both ways.
//! * Absolute-form plain-http requests are forwarded with a guarded client that follows
//!   no redirect: yt-dlp follows them itself, through this proxy, so each hop is checked.
//! * A refused destination gets `403` with a one-line body, and a warning in the log.
//!
//! It runs under the app's `TaskTracker` and stops with its `CancellationToken`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::client::builder;
use super::policy::{check_url_static, refusal, UrlPolicy};
use super::resolve::resolve_checked;
use super::upstream::{dial_direct, Io, Upstream};
use crate::sources::error::ResolveError;

/// The reason phrase of a refusal (`403 Refused by encore egress policy`): yt-dlp prints
/// it in its error line ("HTTP Error 403: Refused by ..."), which is how a lookup that
/// failed on a refused hop is told apart from a site's own 403 (`map_stderr`).
pub const REFUSED_REASON: &str = "Refused by encore egress policy";

/// The user name in the proxy URL; the password is the per-start secret.
const USER: &str = "encore";
/// Largest request body forwarded (yt-dlp posts small JSON to some APIs).
const MAX_REQUEST_BODY: usize = 1 << 20;
/// Longest wait for the next bytes of a forwarded response.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

type Body = BoxBody<Bytes, std::io::Error>;

/// Where the egress proxy listens, and the URL yt-dlp is given.
#[derive(Clone)]
pub struct ProxyEndpoint {
    addr: SocketAddr,
    secret: String,
}

impl ProxyEndpoint {
    /// `http://encore:SECRET@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{USER}:{}@{}", self.secret, self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl std::fmt::Debug for ProxyEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyEndpoint")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    policy: Arc<UrlPolicy>,
    upstream: Option<Upstream>,
    forward: reqwest::Client,
    /// The whole `Proxy-Authorization` value a request must carry.
    auth: String,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// Binds `127.0.0.1:0` and serves until `stop` fires.
pub async fn start(
    policy: Arc<UrlPolicy>,
    upstream: Option<Upstream>,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> anyhow::Result<ProxyEndpoint> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let secret: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let mut forward =
        builder(&policy, reqwest::redirect::Policy::none()).read_timeout(READ_TIMEOUT);
    if let Some(up) = &upstream {
        forward = forward.proxy(reqwest::Proxy::all(up.url())?);
    }
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{secret}"));
    let shared = Arc::new(Shared {
        policy,
        upstream,
        forward: forward.build()?,
        auth: format!("Basic {token}"),
        tasks: tasks.clone(),
        stop,
    });
    tasks.spawn(accept_loop(listener, shared));
    tracing::debug!(%addr, "egress proxy listening");
    Ok(ProxyEndpoint { addr, secret })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let tcp = tokio::select! {
            _ = shared.stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "egress proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let s = shared.clone();
        shared.tasks.spawn(async move {
            let stop = s.stop.clone();
            let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let authorized = req
        .headers()
        .get(PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == s.auth);
    if !authorized {
        let mut r = text(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "proxy authentication required",
        );
        r.headers_mut().insert(
            PROXY_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"encore\""),
        );
        return Ok(r);
    }
    if req.method() == Method::CONNECT {
        return Ok(tunnel(s, req).await);
    }
    if req.uri().scheme_str() == Some("http") {
        return Ok(forward(s, req).await);
    }
    Ok(text(
        StatusCode::BAD_REQUEST,
        "the egress proxy takes CONNECT and absolute http:// requests only",
    ))
}

/// `CONNECT host:port`: check, connect, answer 200, then copy both ways.
async fn tunnel(s: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let Some(authority) = req.uri().authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let Some(port) = authority.port_u16() else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let addrs = match resolve_checked(&s.policy, authority.host(), port).await {
        Ok(a) => a,
        Err(e) => return refused(authority.as_str(), e),
    };
    let mut stream = match s.dial(&addrs).await {
        Ok(st) => st,
        Err(e) => {
            tracing::debug!(to = %authority, error = %e, "egress proxy: connect failed");
            return text(StatusCode::BAD_GATEWAY, "could not connect");
        }
    };
    let stop = s.stop.clone();
    s.tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(up) => {
                let mut up = TokioIo::new(up);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut up, &mut stream) => {}
                    _ = stop.cancelled() => {}
                }
            }
            Err(e) => tracing::debug!(error = %e, "egress proxy: upgrade failed"),
        }
    });
    Response::new(empty())
}

impl Shared {
    /// A connection to the first of the checked `addrs` that answers, through the
    /// upstream proxy when there is one.
    async fn dial(&self, addrs: &[SocketAddr]) -> std::io::Result<Box<dyn Io>> {
        match &self.upstream {
            Some(up) => up.connect(addrs[0]).await,
            None => dial_direct(addrs).await,
        }
    }
}

/// An absolute-form `GET http://...`: checked, then sent without following redirects.
async fn forward(s: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let target = req.uri().to_string();
    let Ok(url) = Url::parse(&target) else {
        return text(StatusCode::BAD_REQUEST, "not a valid URL");
    };
    match check_url_static(&url, &s.policy) {
        Err(e) => return refused(&target, e),
        // Through an upstream, the name is resolved there: check what it resolves to here
        // first (directly, the forwarding client's resolver checks at connect time).
        Ok(Some(name)) if s.upstream.is_some() => {
            let port = url.port_or_known_default().unwrap_or(80);
            if let Err(e) = resolve_checked(&s.policy, &name, port).await {
                return refused(&target, e);
            }
        }
        Ok(_) => {}
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let mut out = s
        .forward
        .request(parts.method, url)
        .headers(end_to_end(&parts.headers, true));
    if !body.is_empty() {
        out = out.body(body);
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            return match refusal(&e) {
                Some(r) => refused(&target, r),
                None => {
                    tracing::debug!(to = %target, error = %e, "egress proxy: request failed");
                    text(StatusCode::BAD_GATEWAY, "the request failed")
                }
            }
        }
    };
    let mut r = Response::builder().status(resp.status());
    if let Some(h) = r.headers_mut() {
        *h = end_to_end(resp.headers(), false);
    }
    let stream = resp
        .bytes_stream()
        .map(|c| c.map(Frame::data).map_err(std::io::Error::other));
    r.body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "bad response"))
}

/// `headers` without the hop-by-hop ones (and, on a request, without `Host`: the URL
/// says where it goes).
fn end_to_end(headers: &HeaderMap, request: bool) -> HeaderMap {
    const HOP: &[&str] = &[
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let name: &HeaderName = k;
        if HOP.contains(&name.as_str()) || (request && name == hyper::header::HOST) {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

fn refused(to: &str, e: ResolveError) -> Response<Body> {
    match e {
        ResolveError::PrivateHost
        | ResolveError::InvalidUrl
        | ResolveError::UnsupportedScheme(_) => {
            tracing::warn!(to, "egress proxy refused a destination: {e}");
            let mut r = text(StatusCode::FORBIDDEN, &format!("{REFUSED_REASON}: {e}"));
            r.extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(
                    REFUSED_REASON.as_bytes(),
                ));
            r
        }
        ResolveError::TimedOut(_) => text(StatusCode::GATEWAY_TIMEOUT, "DNS lookup timed out"),
        _ => text(StatusCode::BAD_GATEWAY, "the host name was not found"),
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{body}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn ok_server(ip: &str) -> (String, Arc<AtomicUsize>) {
        crate::sources::egress::testutil::server(ip, None).await
    }

    #[tokio::test]
    async fn only_the_bot_may_use_it_and_private_destinations_get_403() {
        let policy = Arc::new(UrlPolicy {
            test_public_addresses: vec!["127.0.0.1".parse().unwrap()],
            ..UrlPolicy::DENY_PRIVATE
        });
        let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
        let ep = start(policy, None, &tasks, stop.clone()).await.unwrap();
        let (public, _) = ok_server("127.0.0.1").await;
        let (private, private_hits) = ok_server("127.0.0.2").await;
        let via = |proxy: String| {
            reqwest::Client::builder()
                .proxy(reqwest::Proxy::all(proxy).unwrap())
                .build()
                .unwrap()
        };
        let stranger = via(format!("http://{}", ep.addr()));
        let r = stranger.get(&public).send().await.unwrap();
        assert_eq!(r.status(), 407, "no secret, no way out");
        let wrong = via(format!("http://encore:guess@{}", ep.addr()));
        assert_eq!(wrong.get(&public).send().await.unwrap().status(), 407);

        let bot = via(ep.url());
        let r = bot.get(&public).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
        let r = bot.get(&private).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains(REFUSED_REASON));
        assert_eq!(private_hits.load(Ordering::SeqCst), 0);

        stop.cancel();
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .expect("the proxy stops with its token");
    }
}
