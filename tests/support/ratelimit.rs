//! Discord's rate limits, as its docs describe them ("Rate Limits", discord.com/developers):
//! every limited response carries `X-RateLimit-Limit`, `-Remaining`, `-Reset` (epoch
//! seconds), `-Reset-After` (seconds) and `-Bucket`; past the limit the answer is `429`
//! with `Retry-After` (seconds), `X-RateLimit-Scope` and the JSON body
//! `{"message": "You are being rate limited.", "retry_after": s, "global": false}`.
//! A well-behaved client reads the headers and waits before it runs out, so a test can
//! assert that it never got a 429 at all, and that a forced one is retried, once.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::http::HttpResponse;

/// A count of requests per window, and 429s forced whatever the count: a route's limit
/// or the global one.
#[derive(Debug)]
struct Window {
    limit: u32,
    window: Duration,
    used: u32,
    start: Instant,
    /// The next requests answered 429 whatever the count (a limit shared with other
    /// clients, as Discord's `shared` scope), each with this `retry_after`.
    forced: u32,
    forced_retry: Duration,
}

impl Window {
    fn new(limit: u32, window: Duration) -> Self {
        Window {
            limit,
            window,
            used: 0,
            start: Instant::now(),
            forced: 0,
            forced_retry: Duration::ZERO,
        }
    }

    /// Counts a request; `Some(retry_after)` when it is over the limit (or forced).
    fn take(&mut self, now: Instant) -> Option<Duration> {
        if now.duration_since(self.start) >= self.window {
            self.start = now;
            self.used = 0;
        }
        if self.forced > 0 {
            self.forced -= 1;
            return Some(self.forced_retry);
        }
        if self.used >= self.limit {
            return Some(self.reset_after(now));
        }
        self.used += 1;
        None
    }

    fn force(&mut self, n: u32, retry_after: Duration) {
        self.forced += n;
        self.forced_retry = retry_after;
    }

    fn reset_after(&self, now: Instant) -> Duration {
        self.window.saturating_sub(now.duration_since(self.start))
    }
}

/// One limited route: `method` and a path (after `/api/v10`) that a request's path starts with.
#[derive(Debug)]
struct Route {
    method: String,
    prefix: String,
    bucket: String,
    count: Window,
}

impl Route {
    fn headers(&self, resp: HttpResponse, remaining: u32, reset_after: Duration) -> HttpResponse {
        let reset = SystemTime::now() + reset_after;
        let epoch = reset.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        resp.header("X-RateLimit-Limit", self.count.limit.to_string())
            .header("X-RateLimit-Remaining", remaining.to_string())
            .header("X-RateLimit-Reset", format!("{epoch:.3}"))
            .header(
                "X-RateLimit-Reset-After",
                format!("{:.3}", reset_after.as_secs_f64()),
            )
            .header("X-RateLimit-Bucket", self.bucket.clone())
    }
}

/// Discord's global limit: 50 requests a second per bot, whatever the route; interaction
/// callbacks and their webhooks are not counted ("Global Rate Limit" in the docs). Past
/// it, every route answers `429` with `X-RateLimit-Global: true` and `"global": true`.
#[derive(Debug)]
struct Global(Window);

impl Default for Global {
    fn default() -> Self {
        Global(Window::new(50, Duration::from_secs(1)))
    }
}

impl Global {
    /// `Some(retry_after)` when this request is over the global limit.
    fn check(&mut self, path: &str) -> Option<Duration> {
        if path.starts_with("/interactions/") || path.starts_with("/webhooks/") {
            return None;
        }
        self.0.take(Instant::now())
    }
}

/// A 429 with Discord's body and `Retry-After` (whole seconds, at least 1).
fn too_many_requests(retry: Duration, global: bool) -> HttpResponse {
    let secs = retry.as_secs_f64();
    let body =
        json!({"message": "You are being rate limited.", "retry_after": secs, "global": global});
    HttpResponse::json(429, &body).header("Retry-After", (secs.ceil() as u64).max(1).to_string())
}

/// What the emulator limits, and the 429s it sent.
#[derive(Debug, Default)]
pub struct RateLimits {
    routes: Vec<Route>,
    global: Global,
    /// `"METHOD /path"` of every request answered 429 (`"global METHOD /path"` for the
    /// global limit).
    pub answered_429: Vec<String>,
}

/// Before a request is routed: go on (and add these headers after), or answer this 429.
pub enum Verdict {
    Go { route: Option<usize> },
    Limited(HttpResponse),
}

impl RateLimits {
    /// Limits `method path_prefix` to `limit` requests per `window`.
    pub fn limit(&mut self, method: &str, prefix: &str, limit: u32, window: Duration) {
        let bucket = format!("{:016x}", self.routes.len() as u64 + 0xb0c4e7);
        self.routes.push(Route {
            method: method.to_owned(),
            prefix: prefix.to_owned(),
            bucket,
            count: Window::new(limit, window),
        });
    }

    /// The next `n` requests to `method prefix` get a 429 with `retry_after`, whatever the
    /// headers said (the route need not be limited otherwise).
    pub fn force(&mut self, method: &str, prefix: &str, n: u32, retry_after: Duration) {
        if self.find(method, prefix).is_none() {
            self.limit(method, prefix, u32::MAX, Duration::from_secs(3600));
        }
        let i = self.find(method, prefix).unwrap();
        self.routes[i].count.force(n, retry_after);
    }

    /// The next `n` requests (interactions excepted) meet the global limit, each told to
    /// wait `retry_after`: as a bot that shares its token with a busy other process would.
    pub fn force_global(&mut self, n: u32, retry_after: Duration) {
        self.global.0.force(n, retry_after);
    }

    fn find(&self, method: &str, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.method == method && path.starts_with(&r.prefix))
    }

    pub fn check(&mut self, method: &str, path: &str) -> Verdict {
        if let Some(retry) = self.global.check(path) {
            self.answered_429.push(format!("global {method} {path}"));
            let resp = too_many_requests(retry, true)
                .header("X-RateLimit-Global", "true")
                .header("X-RateLimit-Scope", "global");
            return Verdict::Limited(resp);
        }
        let Some(i) = self.find(method, path) else {
            return Verdict::Go { route: None };
        };
        let Some(retry) = self.routes[i].count.take(Instant::now()) else {
            return Verdict::Go { route: Some(i) };
        };
        self.answered_429.push(format!("{method} {path}"));
        let resp = self.routes[i]
            .headers(too_many_requests(retry, false), 0, retry)
            .header("X-RateLimit-Scope", "user");
        Verdict::Limited(resp)
    }

    /// The headers of a request that went through `route`.
    pub fn decorate(&self, route: Option<usize>, resp: HttpResponse) -> HttpResponse {
        let Some(r) = route.map(|i| &self.routes[i]) else {
            return resp;
        };
        let count = &r.count;
        r.headers(
            resp,
            count.limit.saturating_sub(count.used),
            count.reset_after(Instant::now()),
        )
    }
}
