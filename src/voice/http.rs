//! An HTTP media source that seeks with `Range` requests.
//!
//! songbird's `AsyncAdapterStream` is not used: it keeps the bytes it already read across a
//! seek and hands them to the decoder after the jump. [`Body`] is a plain blocking
//! `Read + Seek` for symphonia (songbird reads on its own threads, never on the runtime):
//! a tokio task streams the response into a channel, and a seek opens a new range.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, RANGE,
};
use songbird::input::core::io::MediaSource;
use songbird::input::{AudioStream, AudioStreamError, Compose};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::sources::egress::client::GuardedClient;
use crate::sources::egress::policy::refusal;
use crate::sources::track::Track;

/// How many body chunks are read ahead of the decoder.
const READ_AHEAD_CHUNKS: usize = 16;
/// Re-opens after a dropped connection, in a row, before giving up.
const RESUMES: u32 = 2;
/// Longest a media server may keep us waiting for its answer or for the next bytes of
/// the body, unless [`RangeSource::with_stall_wait`] says otherwise (`player.stream_timeout`):
/// past it the connection counts as dropped (and is re-opened, or the track ends early)
/// instead of hanging the track, or the player starting it, for ever.
pub const STALL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

type Chunks = mpsc::Receiver<io::Result<Vec<u8>>>;

/// The most bytes a second of media may take before a stream counts as runaway: above
/// 48 kHz stereo 16-bit PCM (192 000 B/s), the fattest format played here.
pub const MAX_BYTE_RATE: u64 = 200 * 1024;

/// The byte cap of a stream `length` long: [`MAX_BYTE_RATE`] per second, plus 1 MiB of
/// headers and container. A server that sends more (a length that lied, a stream that
/// never ends) is cut off there instead of being read for ever.
pub fn byte_cap(length: std::time::Duration) -> u64 {
    length
        .as_secs()
        .saturating_add(1)
        .saturating_mul(MAX_BYTE_RATE)
        + (1 << 20)
}

/// Where a track's media lives; opens a [`Body`] at any offset.
#[derive(Clone)]
pub struct RangeSource {
    client: GuardedClient,
    url: String,
    headers: HeaderMap,
    stall: std::time::Duration,
    /// No byte at or past this offset is read ([`byte_cap`]); `None`: no cap.
    max_bytes: Option<u64>,
    /// Set once a read hit `max_bytes`: the track ended there, not at its end.
    capped: Arc<AtomicBool>,
    /// Why the stream ended before its end (the server stopped sending, or cut it short,
    /// and re-opening did not help), for the listeners.
    ended_early: Arc<Mutex<Option<String>>>,
    /// Cancelled when the track is stopped or replaced: every read, request and body
    /// copy of this source ends at once (songbird's mixer reads on its own thread, and a
    /// read waiting on a stalled server would hold up the next track until it timed out).
    stop: CancellationToken,
}

impl RangeSource {
    pub fn new(client: &GuardedClient, track: &Track) -> Self {
        let mut headers = HeaderMap::new();
        for (k, v) in &track.http_headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        Self {
            client: client.clone(),
            url: track.stream_url.clone(),
            headers,
            stall: STALL_WAIT,
            max_bytes: None,
            capped: Arc::default(),
            ended_early: Arc::default(),
            stop: CancellationToken::new(),
        }
    }

    /// Stops reading at byte `cap` (see [`byte_cap`]).
    pub fn with_max_bytes(mut self, cap: Option<u64>) -> Self {
        self.max_bytes = cap;
        self
    }

    /// Becomes true when the stream was cut off at its byte cap.
    pub fn capped(&self) -> Arc<AtomicBool> {
        self.capped.clone()
    }

    /// How long the server may keep us waiting (see [`STALL_WAIT`]).
    pub fn with_stall_wait(mut self, stall: std::time::Duration) -> Self {
        self.stall = stall;
        self
    }

    /// Why the stream ended before its end, once it did.
    pub fn ended_early(&self) -> Arc<Mutex<Option<String>>> {
        self.ended_early.clone()
    }

    /// Cancelling it stops every read of this source at once (the track was stopped).
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// GETs the media from byte `offset` (with `Range` when not 0). Call it on the
    /// runtime; the body is then read from any thread that may block.
    pub async fn open(&self, offset: u64) -> io::Result<Body> {
        let (rx, meta) = self.request(offset, None).await?;
        Ok(Body {
            rt: Handle::current(),
            source: self.clone(),
            rx,
            chunk: Vec::new(),
            at: 0,
            pos: offset,
            len: meta.len,
            ranges: meta.ranges,
            resumes: 0,
            discard: 0,
        })
    }

    async fn request(&self, offset: u64, len: Option<u64>) -> io::Result<(Chunks, Meta)> {
        // Every hop is held to the URL policy (see `sources/egress/client.rs`); a refusal
        // reads as the user-facing sentence, not as a network error.
        let mut req = self
            .client
            .get(&self.url)
            .map_err(refused)?
            .headers(self.headers.clone());
        if offset > 0 {
            // Some hosts (YouTube) want the end spelled out.
            let range = match len {
                Some(len) => format!("bytes={offset}-{}", len.saturating_sub(1)),
                None => format!("bytes={offset}-"),
            };
            req = req.header(RANGE, range);
        }
        let resp = tokio::select! {
            r = tokio::time::timeout(self.stall, req.send()) => r,
            _ = self.stop.cancelled() => return Err(stopped()),
        };
        let resp = resp
            .map_err(|_| stalled())?
            .map_err(|e| match refusal(&e) {
                Some(r) => refused(r),
                None => io::Error::other(e.without_url()),
            })?;
        let status = resp.status();
        if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            // At or past the end: an empty body.
            let (_, rx) = mpsc::channel(1);
            return Ok((rx, Meta { len, ranges: true }));
        }
        if !status.is_success() {
            return Err(io::Error::other(format!(
                "the media server answered HTTP {}",
                status.as_u16()
            )));
        }
        if offset > 0 && status != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the media server ignored the byte range",
            ));
        }
        let h = resp.headers();
        let header = |name| h.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        let total = if status == reqwest::StatusCode::PARTIAL_CONTENT {
            header(CONTENT_RANGE)
                .and_then(|r| r.rsplit('/').next())
                .and_then(|t| t.trim().parse().ok())
        } else {
            header(CONTENT_LENGTH).and_then(|l| l.trim().parse().ok())
        };
        let ranges = status == reqwest::StatusCode::PARTIAL_CONTENT
            || header(ACCEPT_RANGES).is_some_and(|a| a.trim().eq_ignore_ascii_case("bytes"));
        let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
        tokio::spawn(pump(resp, tx, self.stall, self.stop.clone()));
        Ok((
            rx,
            Meta {
                len: total.or(len),
                ranges,
            },
        ))
    }
}

struct Meta {
    len: Option<u64>,
    ranges: bool,
}

fn refused(why: crate::sources::ResolveError) -> io::Error {
    tracing::warn!("the media stream was refused: {why}");
    // The notice adds its own full stop.
    let why = why.to_string();
    io::Error::new(io::ErrorKind::PermissionDenied, why.trim_end_matches('.'))
}

fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the media server stopped answering",
    )
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "the track was stopped")
}

/// What listeners read when a stream ended before its end: why, and how much arrived.
fn early_end(e: &io::Error, pos: u64, len: Option<u64>) -> String {
    let why = match e.kind() {
        io::ErrorKind::TimedOut => "the media server stopped sending it",
        _ => "the media server cut it short",
    };
    match len {
        Some(len) if len > 0 => format!("{why} ({}% of it arrived)", pos * 100 / len),
        _ => why.to_string(),
    }
}

/// Copies the response body into the channel until it ends, the reader goes away or the
/// track is stopped (dropping the response closes its connection).
async fn pump(
    mut resp: reqwest::Response,
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    stall: std::time::Duration,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            c = tokio::time::timeout(stall, resp.chunk()) => c,
            _ = tx.closed() => return,
            _ = stop.cancelled() => return,
        };
        let item = match next {
            Ok(Ok(Some(c))) => Ok(c.to_vec()),
            Ok(Ok(None)) => return,
            Ok(Err(e)) => Err(io::Error::other(e.without_url())),
            Err(_) => Err(stalled()),
        };
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

#[async_trait]
impl Compose for RangeSource {
    fn create(&mut self) -> Result<AudioStream<Box<dyn MediaSource>>, AudioStreamError> {
        Err(AudioStreamError::Unsupported)
    }

    async fn create_async(
        &mut self,
    ) -> Result<AudioStream<Box<dyn MediaSource>>, AudioStreamError> {
        let body = self
            .open(0)
            .await
            .map_err(|e| AudioStreamError::Fail(Box::new(e)))?;
        Ok(AudioStream {
            input: Box::new(body) as Box<dyn MediaSource>,
        })
    }

    fn should_create_async(&self) -> bool {
        true
    }
}

/// One response body being read, positioned at `pos`. Blocking: read it off the runtime.
pub struct Body {
    rt: Handle,
    source: RangeSource,
    rx: Chunks,
    chunk: Vec<u8>,
    at: usize,
    pos: u64,
    len: Option<u64>,
    ranges: bool,
    /// Re-opens since the last good read.
    resumes: u32,
    /// Bytes still to drop from the front of the body: a server without byte ranges is
    /// read again from its start after a broken connection, up to where we were.
    discard: u64,
}

impl Body {
    /// True when any position can be reached (byte ranges of a known length).
    pub fn is_seekable_stream(&self) -> bool {
        self.ranges && self.len.is_some()
    }

    /// Makes the body start at byte `at`: a new request, unless it is where we are, a
    /// hop inside the chunk in hand, or past the end.
    fn reposition(&mut self, at: u64) -> io::Result<()> {
        if at == self.pos {
            return Ok(());
        }
        let ahead = (self.chunk.len() - self.at) as u64;
        if at > self.pos && at - self.pos <= ahead {
            self.at += (at - self.pos) as usize;
            self.pos = at;
            return Ok(());
        }
        if self.len.is_some_and(|len| at >= len) {
            let (_, rx) = mpsc::channel(1);
            self.rx = rx;
        } else {
            self.rx = self.reopen(at)?;
        }
        self.chunk.clear();
        self.at = 0;
        self.pos = at;
        Ok(())
    }

    /// A new request from `at`, waited for on this (blocking) thread.
    fn reopen(&mut self, at: u64) -> io::Result<Chunks> {
        let (tx, rx) = oneshot::channel();
        let source = self.source.clone();
        let len = self.len;
        self.rt.spawn(async move {
            let _ = tx.send(source.request(at, len).await);
        });
        let (chunks, meta) = rx
            .blocking_recv()
            .map_err(|_| io::Error::other("the runtime stopped"))??;
        if self.len.is_none() {
            self.len = meta.len;
        }
        Ok(chunks)
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let buf = match self.source.max_bytes {
            Some(max) if self.pos >= max => {
                if !self.source.capped.swap(true, Ordering::SeqCst) {
                    tracing::info!(at = self.pos, "media stream passed its byte cap; stopped");
                }
                return Err(io::Error::other("the stream passed its size limit"));
            }
            Some(max) => {
                let room = (max - self.pos).min(buf.len() as u64) as usize;
                &mut buf[..room]
            }
            None => buf,
        };
        while self.at >= self.chunk.len() {
            if self.source.stop.is_cancelled() {
                return Ok(0); // stopped: nobody listens any more
            }
            let broke = match self.rx.blocking_recv() {
                Some(Ok(mut c)) => {
                    let drop = self.discard.min(c.len() as u64);
                    c.drain(..drop as usize);
                    self.discard -= drop;
                    self.chunk = c;
                    self.at = 0;
                    continue;
                }
                Some(Err(e)) => e,
                // A body that ends short of the length the server gave broke too.
                None if self.len.is_some_and(|len| self.pos < len) => {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early")
                }
                None => return Ok(0), // end of body
            };
            if self.source.stop.is_cancelled() {
                return Ok(0);
            }
            // A dropped connection: pick up where we are with a byte range, or read a file
            // of known length (not a live stream) again from its start up to here.
            let from = match (self.ranges, self.len) {
                (true, _) => self.pos,
                (false, Some(_)) => 0,
                (false, None) => return Err(self.give_up(broke)),
            };
            if self.resumes >= RESUMES {
                return Err(self.give_up(broke));
            }
            self.resumes += 1;
            tracing::info!(error = %broke, at = self.pos, from, "media stream broke; resuming");
            self.discard = self.pos - from;
            self.rx = match self.reopen(from) {
                Ok(rx) => rx,
                Err(e) if self.source.stop.is_cancelled() => return Err(e),
                Err(e) => return Err(self.give_up(e)),
            };
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        self.pos += n as u64;
        self.resumes = 0;
        Ok(n)
    }
}

impl Body {
    /// The stream cannot go on: says why for the listeners (the track ends early).
    fn give_up(&self, e: io::Error) -> io::Error {
        let why = early_end(&e, self.pos, self.len);
        tracing::warn!(error = %e, at = self.pos, len = ?self.len, "media stream ended early");
        self.source.ended_early.lock().unwrap().get_or_insert(why);
        e
    }
}

impl Seek for Body {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        let target = match position {
            SeekFrom::Start(n) => Some(n as i128),
            SeekFrom::Current(d) => Some(self.pos as i128 + d as i128),
            SeekFrom::End(d) => self.len.map(|len| len as i128 + d as i128),
        };
        if target == Some(self.pos as i128) {
            return Ok(self.pos);
        }
        if !self.is_seekable_stream() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the media server only streams from the start",
            ));
        }
        let target = match target {
            Some(t) if t >= 0 => t as u64,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "seek before the start",
                ))
            }
        };
        self.reposition(target)?;
        Ok(self.pos)
    }
}

impl MediaSource for Body {
    fn is_seekable(&self) -> bool {
        self.is_seekable_stream()
    }

    fn byte_len(&self) -> Option<u64> {
        self.len
    }
}

#[cfg(test)]
mod tests;
