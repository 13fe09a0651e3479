//! The optional HTTP listener for the people who host the bot (`[metrics]` in config):
//!
//! * `GET /metrics`: every figure `/resources` shows, the gateway shards and the timing
//!   histograms, for Prometheus ([`exposition`]);
//! * `GET /healthz`: 200 while the bot's runtime answers, 503 and the reason when not;
//! * `GET /readyz`: 200 while the bot can serve (connected, database answering, every
//!   owned shard connected), 503 and the reason when not.
//!
//! It runs on a thread and a small runtime of its own: a bot runtime that is wedged cannot
//! answer anything, and this listener must still say so (a 503 rather than a hang). The
//! figures themselves are gathered on the bot's runtime, where the players and the
//! database live. When `metrics.listen` is unset nothing here runs at all.

pub mod exposition;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::config::MetricsConfig;
use crate::discord::Bot;
use crate::health::Probe;
use crate::status::ProcessMeter;

/// A scrape that takes longer than this is answered 503: the bot is too busy to count.
const GATHER_BUDGET: Duration = Duration::from_secs(10);
/// A client has this long to send its request headers.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at once (a scraper needs one or two).
const MAX_CONNECTIONS: usize = 16;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Shared {
    bot: Arc<Bot>,
    probe: Probe,
    /// Kept between scrapes so `/resources`' CPU% reading has a previous one (the page
    /// itself exports CPU seconds, which Prometheus turns into a rate).
    meter: Mutex<ProcessMeter>,
}

/// Binds `config.listen` (refusing an address other machines reach unless
/// `allow_public`), then serves on a thread of its own until `stop`. Returns the bound
/// address, or `None` when the listener is off.
pub fn start(
    config: &MetricsConfig,
    bot: Arc<Bot>,
    probe: Probe,
    stop: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(listen) = config.listen else {
        return Ok(None);
    };
    config
        .check()
        .map_err(|e| anyhow::anyhow!("metrics.listen: {e}"))?;
    let listener = std::net::TcpListener::bind(listen.0)
        .map_err(|e| anyhow::anyhow!("metrics.listen: cannot listen on {}: {e}", listen.0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        meter: Mutex::new(bot.status.process_meter()),
        bot,
        probe,
    });
    std::thread::Builder::new()
        .name("encore-metrics".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "metrics listener: cannot start its runtime");
                    return;
                }
            };
            runtime.block_on(serve(listener, shared, stop));
        })?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(Some(addr))
}

async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics listener: cannot use its socket");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let (s, stop) = (shared.clone(), stop.clone());
        tasks.spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
}

async fn handle(
    s: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "only GET"));
    }
    Ok(match req.uri().path() {
        "/metrics" => match scrape(&s).await {
            Ok(page) => {
                let mut r = Response::new(Full::new(Bytes::from(page)));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(OPENMETRICS),
                );
                r
            }
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &why),
        },
        "/healthz" => verdict(s.probe.live().await),
        "/readyz" => verdict(s.probe.ready().await),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz",
        ),
    })
}

fn verdict(v: Result<(), String>) -> Response<Full<Bytes>> {
    match v {
        Ok(()) => text(StatusCode::OK, "ok"),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &why),
    }
}

/// Gathers the figures on the bot's runtime, as `/resources` does, and renders them.
async fn scrape(s: &Arc<Shared>) -> Result<String, String> {
    let shared = s.clone();
    let work = s.probe.runtime().spawn(async move {
        let bot = &shared.bot;
        let mut meter = *shared.meter.lock().expect("meter lock");
        let report = crate::discord::commands::gather(bot, &mut meter).await;
        *shared.meter.lock().expect("meter lock") = meter;
        let shards = bot.gateway.shards().await;
        let ytdlp = bot.resolver.ytdlp().stats();
        let version = report.ytdlp_version.split_whitespace().next().unwrap_or("");
        exposition::render(&exposition::Scrape {
            shards: &shards,
            timings: bot.registry.timings(),
            ytdlp_failed: ytdlp.failed.load(std::sync::atomic::Ordering::SeqCst),
            cpu_seconds: crate::resources::system::usage().cpu_time.as_secs_f64(),
            cache_budget_bytes: bot.config.cache.max_bytes,
            ytdlp_age_days: crate::status::version_age_days(version, std::time::SystemTime::now()),
            node: bot.cluster.get().map(|c| c.node().id.clone()),
            report: &report,
        })
    });
    match tokio::time::timeout(GATHER_BUDGET, work).await {
        Ok(Ok(page)) => Ok(page),
        Ok(Err(e)) => Err(format!("gathering the figures failed: {e}")),
        Err(_) => Err(format!(
            "the bot did not gather its figures within {GATHER_BUDGET:?}"
        )),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
