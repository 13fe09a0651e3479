//! A minimal HTTP/1.1 server (keep-alive, Content-Length and chunked request bodies) used by the
//! emulator's REST API and by the static [`FileServer`](super::FileServer). Hand-written to avoid
//! extra dependencies; it only has to understand what reqwest/serenity/songbird send.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound for a request head or body (the bot never sends anything close to this).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// The raw request target, e.g. `/api/v10/webhooks/1/abc/messages/%40original?wait=true`.
    pub target: String,
    /// The percent-decoded path without the query string.
    pub path: String,
    /// The raw query string (without `?`), empty if none.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Value of a query parameter (not percent-decoded beyond `+`/`%XX`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let mut it = kv.splitn(2, '=');
            let k = it.next()?;
            (k == name).then(|| percent_decode(it.next().unwrap_or("")))
        })
    }

    /// The JSON body. Multipart bodies (serenity uses them when files are attached) yield their
    /// `payload_json` part. An empty body yields `Value::Null`.
    pub fn json(&self) -> serde_json::Value {
        if self.body.is_empty() {
            return serde_json::Value::Null;
        }
        if let Some(ct) = self.header("content-type") {
            if ct.starts_with("multipart/form-data") {
                if let Some(v) = multipart_payload_json(ct, &self.body) {
                    return v;
                }
            }
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned())
        })
    }
}

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the headers (including the real Content-Length) but no body (HEAD).
    pub head_only: bool,
}

impl HttpResponse {
    pub fn new(status: u16) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            head_only: false,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut r = HttpResponse::new(status);
        r.headers
            .push(("Content-Type".into(), "application/json".into()));
        r.body = serde_json::to_vec(value).expect("serialize json");
        r
    }

    pub fn no_content() -> Self {
        HttpResponse::new(204)
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn multipart_payload_json(content_type: &str, body: &[u8]) -> Option<serde_json::Value> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    for part in text.split(delim.as_str()) {
        let Some((head, rest)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        if head.contains("name=\"payload_json\"") {
            let rest = rest.strip_suffix("\r\n").unwrap_or(rest);
            return serde_json::from_str(rest).ok();
        }
    }
    None
}

/// Reads one request. `Ok(None)` on a clean EOF before a request line.
pub async fn read_request<R>(r: &mut BufReader<R>) -> std::io::Result<Option<HttpRequest>>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut line = String::new();
    // Skip stray empty lines between requests (allowed by RFC 9112).
    loop {
        line.clear();
        let n = r.read_line(&mut line).await?;
        if n == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
        if line.len() > 8192 {
            return Err(bad("request line too long"));
        }
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    let mut head_bytes = 0usize;
    loop {
        let mut h = String::new();
        let n = r.read_line(&mut h).await?;
        if n == 0 {
            return Err(bad("eof in headers"));
        }
        head_bytes += n;
        if head_bytes > 256 * 1024 {
            return Err(bad("headers too large"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size_line = String::new();
            if r.read_line(&mut size_line).await? == 0 {
                return Err(bad("eof in chunk size"));
            }
            let size_hex = size_line.trim().split(';').next().unwrap_or("0");
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // trailers until empty line
                for _ in 0..64 {
                    let mut t = String::new();
                    if r.read_line(&mut t).await? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(bad("body too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).await?;
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        body.resize(len, 0);
        r.read_exact(&mut body).await?;
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    Ok(Some(HttpRequest {
        method,
        path: percent_decode(&raw_path),
        target,
        query,
        headers,
        body,
    }))
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

pub async fn write_response<W>(
    w: &mut W,
    resp: &HttpResponse,
    keep_alive: bool,
) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    let has_len = resp
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len && resp.status != 204 && resp.status != 304 {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        "Connection: close\r\n"
    });
    head.push_str("\r\n");
    w.write_all(head.as_bytes()).await?;
    if !resp.head_only && resp.status != 204 && !resp.body.is_empty() {
        w.write_all(&resp.body).await?;
    }
    w.flush().await
}

/// Serves HTTP/1.1 on `listener` until the task is aborted, calling `handler` for each request.
pub async fn serve<F>(listener: TcpListener, handler: Arc<F>)
where
    F: Fn(HttpRequest) -> HttpResponse + Send + Sync + 'static,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = serve_conn(tcp, handler).await;
        });
    }
}

/// [`serve`] over TLS (the test certificate), as `https://discord.com` is served: the bot
/// reaches it there with serenity's rate limiter on.
pub async fn serve_tls<F>(listener: TcpListener, tls: tokio_rustls::TlsAcceptor, handler: Arc<F>)
where
    F: Fn(HttpRequest) -> HttpResponse + Send + Sync + 'static,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (handler, tls) = (handler.clone(), tls.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            if let Ok(Ok(stream)) = tokio::time::timeout(IDLE_TIMEOUT, tls.accept(tcp)).await {
                let _ = serve_stream(stream, handler).await;
            }
        });
    }
}

async fn serve_conn<F>(tcp: TcpStream, handler: Arc<F>) -> std::io::Result<()>
where
    F: Fn(HttpRequest) -> HttpResponse + Send + Sync + 'static,
{
    let _ = tcp.set_nodelay(true);
    serve_stream(tcp, handler).await
}

async fn serve_stream<S, F>(stream: S, handler: Arc<F>) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin,
    F: Fn(HttpRequest) -> HttpResponse + Send + Sync + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::new(rd);
    loop {
        let req = match tokio::time::timeout(IDLE_TIMEOUT, read_request(&mut rd)).await {
            Ok(Ok(Some(req))) => req,
            Ok(Ok(None)) | Err(_) => return Ok(()),
            Ok(Err(e)) => {
                let resp = HttpResponse::json(
                    400,
                    &serde_json::json!({"message": e.to_string(), "code": 0}),
                );
                let _ = write_response(&mut wr, &resp, false).await;
                return Err(e);
            }
        };
        let keep_alive = !req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let resp = handler(req);
        write_response(&mut wr, &resp, keep_alive).await?;
        if !keep_alive {
            return Ok(());
        }
    }
}
