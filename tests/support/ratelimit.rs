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

/// One limited route: `method` and a path (after `/api/v10`) that a request's path starts with.
#[derive(Debug)]
struct Route {
    method: String,
    prefix: String,
    limit: u32,
    window: Duration,
    bucket: String,
    used: u32,
    window_start: Instant,
    /// The next requests answered 429 whatever the count (a limit shared with other
    /// clients, as Discord's `shared` scope), each with this `retry_after`.
    forced: u32,
    forced_retry: Duration,
}

impl Route {
    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.window_start) >= self.window {
            self.window_start = now;
            self.used = 0;
        }
    }

    fn reset_after(&self, now: Instant) -> Duration {
        self.window
            .saturating_sub(now.duration_since(self.window_start))
    }

    fn headers(&self, resp: HttpResponse, remaining: u32, reset_after: Duration) -> HttpResponse {
        let reset = SystemTime::now() + reset_after;
        let epoch = reset.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        resp.header("X-RateLimit-Limit", self.limit.to_string())
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
struct Global {
    limit: u32,
    window: Duration,
    used: u32,
    window_start: Instant,
    /// The next requests answered with a global 429 whatever the count.
    forced: u32,
    forced_retry: Duration,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            limit: 50,
            window: Duration::from_secs(1),
            used: 0,
            window_start: Instant::now(),
            forced: 0,
            forced_retry: Duration::ZERO,
        }
    }
}

impl Global {
    /// `Some(retry_after)` when this request is over the global limit.
    fn check(&mut self, path: &str) -> Option<Duration> {
        if path.starts_with("/interactions/") || path.starts_with("/webhooks/") {
            return None;
        }
        if self.forced > 0 {
            self.forced -= 1;
            return Some(self.forced_retry);
        }
        let now = Instant::now();
        if now.duration_since(self.window_start) >= self.window {
            self.window_start = now;
            self.used = 0;
        }
        if self.used >= self.limit {
            return Some(
                self.window
                    .saturating_sub(now.duration_since(self.window_start)),
            );
        }
        self.used += 1;
        None
    }
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
            limit,
            window,
            bucket,
            used: 0,
            window_start: Instant::now(),
            forced: 0,
            forced_retry: Duration::ZERO,
        });
    }

    /// The next `n` requests to `method prefix` get a 429 with `retry_after`, whatever the
    /// headers said (the route need not be limited otherwise).
    pub fn force(&mut self, method: &str, prefix: &str, n: u32, retry_after: Duration) {
        if self.find(method, prefix).is_none() {
            self.limit(method, prefix, u32::MAX, Duration::from_secs(3600));
        }
        let i = self.find(method, prefix).unwrap();
        self.routes[i].forced += n;
        self.routes[i].forced_retry = retry_after;
    }

    /// The next `n` requests (interactions excepted) meet the global limit, each told to
    /// wait `retry_after`: as a bot that shares its token with a busy other process would.
    pub fn force_global(&mut self, n: u32, retry_after: Duration) {
        self.global.forced += n;
        self.global.forced_retry = retry_after;
    }

    fn find(&self, method: &str, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.method == method && path.starts_with(&r.prefix))
    }

    pub fn check(&mut self, method: &str, path: &str) -> Verdict {
        if let Some(retry) = self.global.check(path) {
            self.answered_429.push(format!("global {method} {path}"));
            let secs = retry.as_secs_f64();
            let body = json!({"message": "You are being rate limited.", "retry_after": secs, "global": true});
            let resp = HttpResponse::json(429, &body)
                .header("Retry-After", (secs.ceil() as u64).max(1).to_string())
                .header("X-RateLimit-Global", "true")
                .header("X-RateLimit-Scope", "global");
            return Verdict::Limited(resp);
        }
        let Some(i) = self.find(method, path) else {
            return Verdict::Go { route: None };
        };
        let now = Instant::now();
        let r = &mut self.routes[i];
        r.roll(now);
        let retry = if r.forced > 0 {
            r.forced -= 1;
            Some(r.forced_retry)
        } else if r.used >= r.limit {
            Some(r.reset_after(now))
        } else {
            r.used += 1;
            None
        };
        let Some(retry) = retry else {
            return Verdict::Go { route: Some(i) };
        };
        self.answered_429.push(format!("{method} {path}"));
        let secs = retry.as_secs_f64();
        let body =
            json!({"message": "You are being rate limited.", "retry_after": secs, "global": false});
        let r = &self.routes[i];
        let resp = r
            .headers(HttpResponse::json(429, &body), 0, retry)
            .header("Retry-After", (secs.ceil() as u64).max(1).to_string())
            .header("X-RateLimit-Scope", "user");
        Verdict::Limited(resp)
    }

    /// The headers of a request that went through `route`.
    pub fn decorate(&self, route: Option<usize>, resp: HttpResponse) -> HttpResponse {
        let Some(r) = route.map(|i| &self.routes[i]) else {
            return resp;
        };
        let now = Instant::now();
        r.headers(resp, r.limit.saturating_sub(r.used), r.reset_after(now))
    }
}
