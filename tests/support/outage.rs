//! Discord's REST API failing for a moment: its docs list 5xx as "the server had an error
//! processing your request", and a 502 comes from its edge as an HTML page, not JSON. A
//! test arms a burst of them on one route; the requests after it are served as usual.

use super::http::HttpResponse;
use serde_json::json;

#[derive(Debug)]
struct Burst {
    method: String,
    prefix: String,
    left: u32,
    status: u16,
    /// The request is carried out and only its answer is lost (an edge timing out on a
    /// slow backend): a blind retry would do it twice.
    after: bool,
}

/// Armed bursts, and the requests they answered.
#[derive(Debug, Default)]
pub struct Outages {
    bursts: Vec<Burst>,
    /// `"STATUS METHOD /path"` of every request answered with a server error.
    pub answered: Vec<String>,
}

impl Outages {
    /// The next `n` requests to `method prefix` are answered `status` (500, 502 or 503).
    /// With `after`, each request is carried out first and only its answer is the error.
    pub fn arm(&mut self, method: &str, prefix: &str, n: u32, status: u16, after: bool) {
        self.bursts.push(Burst {
            method: method.to_owned(),
            prefix: prefix.to_owned(),
            left: n,
            status,
            after,
        });
    }

    /// The server error this request meets, if a burst is armed on its route: checked
    /// before the request is carried out (`after` false) and after it succeeded (true).
    pub fn check(&mut self, method: &str, path: &str, after: bool) -> Option<HttpResponse> {
        let b = self.bursts.iter_mut().find(|b| {
            b.left > 0 && b.after == after && b.method == method && path.starts_with(&b.prefix)
        })?;
        b.left -= 1;
        let status = b.status;
        self.answered.push(format!("{status} {method} {path}"));
        Some(match status {
            502 => {
                let mut r = HttpResponse::new(502).header("Content-Type", "text/html");
                r.body = b"<html><head><title>502 Bad Gateway</title></head>\
                    <body><center><h1>502 Bad Gateway</h1></center></body></html>"
                    .to_vec();
                r
            }
            _ => HttpResponse::json(
                status,
                &json!({"message": format!("{status}: {}", super::http::reason(status)), "code": 0}),
            ),
        })
    }
}
