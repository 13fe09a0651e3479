//! Faults the loopback media server ([`FileServer`](super::FileServer)) serves for a chosen
//! file, the ways a real media server lets a playing track down:
//!
//! * [`Fault::Stall`]: every answer for the file sends its headers and the body up to a byte
//!   of the file, then nothing more, with the connection left open (until the client closes it);
//! * [`Fault::Reset`]: the first answer that reaches a byte sends the body up to it, then
//!   resets the connection (TCP RST: `SO_LINGER` 0 before the socket is dropped); later
//!   requests, a `Range` from where the client was included, are served in full, as a real
//!   server keeps serving;
//! * [`Fault::Truncate`]: every answer claims the file's whole length (`Content-Length`,
//!   `Content-Range`) but ends at a byte of the file with a close (the file on the server was
//!   cut short).
//!
//! A file may also be served without byte ranges ([`Faults::no_ranges`]): `Range` is
//! ignored (200 and the whole file) and no `Accept-Ranges` is sent, as some servers do.
//! Everything else is the plain static server of `fixtures.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::http::{self, HttpRequest, HttpResponse};

/// An idle keep-alive connection is closed after this long (as in `http.rs`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What goes wrong when an answer's body reaches byte `at` of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Stall { at: u64 },
    Reset { at: u64 },
    Truncate { at: u64 },
}

impl Fault {
    fn at(self) -> u64 {
        match self {
            Fault::Stall { at } | Fault::Reset { at } | Fault::Truncate { at } => at,
        }
    }
}

/// The faults set per path, and what they did.
#[derive(Default)]
pub struct Faults {
    /// Path (`/name`) → its fault, and whether a one-time fault (a reset) already fired.
    table: Mutex<Vec<(String, Fault, bool)>>,
    /// Stalled connections the client has not closed yet.
    stalled: AtomicUsize,
    /// Answers a fault cut short, in total.
    cut: AtomicUsize,
    /// Paths served without byte ranges.
    plain: Mutex<Vec<String>>,
}

impl Faults {
    pub fn set(&self, name: &str, fault: Fault) {
        let path = format!("/{}", name.trim_start_matches('/'));
        let mut t = self.table.lock().unwrap();
        t.retain(|(p, _, _)| *p != path);
        t.push((path, fault, false));
    }

    /// Serves `name` without byte ranges from now on.
    pub fn no_ranges(&self, name: &str) {
        let path = format!("/{}", name.trim_start_matches('/'));
        self.plain.lock().unwrap().push(path);
    }

    /// Stalled connections still open: the client has not given up on them yet.
    pub fn stalled_open(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }

    /// Answers cut short by a fault so far.
    pub fn cut(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }

    /// The fault this answer meets, with the number of body bytes sent before it; `None`
    /// when it is served in full (no fault, a reset that already fired, or a body that
    /// ends before the fault's byte).
    fn meet(&self, path: &str, resp: &HttpResponse) -> Option<(Fault, usize)> {
        if resp.head_only || !(resp.status == 200 || resp.status == 206) {
            return None;
        }
        let mut t = self.table.lock().unwrap();
        let (_, fault, fired) = t.iter_mut().find(|(p, _, _)| p == path)?;
        if matches!(fault, Fault::Reset { .. }) && *fired {
            return None;
        }
        let start = body_start(resp);
        let end = start + resp.body.len() as u64;
        if fault.at() >= end {
            return None;
        }
        *fired = true;
        Some((*fault, fault.at().saturating_sub(start) as usize))
    }
}

/// Where the body starts in the file: 0, or the first byte of its `Content-Range`.
fn body_start(resp: &HttpResponse) -> u64 {
    resp.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-range"))
        .and_then(|(_, v)| v.strip_prefix("bytes ")?.split('-').next()?.parse().ok())
        .unwrap_or(0)
}

/// Serves HTTP/1.1 on `listener` until the task is aborted, calling `handler` for each
/// request and cutting the answers `faults` says.
pub async fn serve<F>(listener: TcpListener, handler: Arc<F>, faults: Arc<Faults>)
where
    F: Fn(HttpRequest) -> HttpResponse + Send + Sync + 'static,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (handler, faults) = (handler.clone(), faults.clone());
        tokio::spawn(async move {
            let _ = serve_conn(tcp, handler, faults).await;
        });
    }
}

async fn serve_conn<F>(tcp: TcpStream, handler: Arc<F>, faults: Arc<Faults>) -> std::io::Result<()>
where
    F: Fn(HttpRequest) -> HttpResponse + Send + Sync + 'static,
{
    let _ = tcp.set_nodelay(true);
    let (rd, mut wr) = tcp.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let req = match tokio::time::timeout(IDLE_TIMEOUT, http::read_request(&mut rd)).await {
            Ok(Ok(Some(req))) => req,
            _ => return Ok(()),
        };
        let keep_alive = !req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let path = req.path.clone();
        let plain = faults.plain.lock().unwrap().contains(&path);
        let mut req = req;
        if plain {
            req.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("range"));
        }
        let mut resp = handler(req);
        if plain {
            resp.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("accept-ranges"));
        }
        let Some((fault, sent)) = faults.meet(&path, &resp) else {
            http::write_response(&mut wr, &resp, keep_alive).await?;
            if !keep_alive {
                return Ok(());
            }
            continue;
        };
        faults.cut.fetch_add(1, Ordering::SeqCst);
        // The headers as they were (the whole length), and only the first bytes.
        resp.body.truncate(sent);
        http::write_response(&mut wr, &resp, true).await?;
        match fault {
            Fault::Stall { .. } => {
                faults.stalled.fetch_add(1, Ordering::SeqCst);
                // Nothing more is sent; wait for the client to give up and close.
                let mut sink = [0u8; 1024];
                while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
                faults.stalled.fetch_sub(1, Ordering::SeqCst);
            }
            Fault::Reset { .. } => {
                let tcp = rd.into_inner().reunite(wr).expect("halves of one stream");
                // Dropped with a zero linger, the socket sends RST instead of FIN.
                tcp.set_zero_linger()?;
                drop(tcp);
            }
            Fault::Truncate { .. } => {
                wr.shutdown().await?;
            }
        }
        return Ok(());
    }
}
