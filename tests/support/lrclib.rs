//! A loopback stand-in for LRCLIB (lrclib.net/docs): `GET /api/get` answers one record
//! or `404 {"code":404,"name":"TrackNotFound","message":"Failed to find specified track"}`,
//! `GET /api/search` a JSON array of records; a record is
//! `{id, name, trackName, artistName, albumName, duration, instrumental, plainLyrics,
//! syncedLyrics}` (duration in seconds, synced lyrics in LRC, `[mm:ss.xx] line`).
//! Every request is logged so tests can count what reached it.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::fixtures::AbortOnDrop;
use super::http::{self, HttpRequest, HttpResponse};

/// One song LRCLIB knows.
#[derive(Clone, Debug)]
pub struct Song {
    pub id: i64,
    pub artist: String,
    pub title: String,
    pub album: String,
    pub duration: f64,
    pub plain: Option<String>,
    pub synced: Option<String>,
}

impl Song {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.title,
            "trackName": self.title,
            "artistName": self.artist,
            "albumName": self.album,
            "duration": self.duration,
            "instrumental": self.plain.is_none() && self.synced.is_none(),
            "plainLyrics": self.plain,
            "syncedLyrics": self.synced,
        })
    }
}

/// Query parameter `name` of `req`, form-decoded (`+` is a space) as LRCLIB reads it.
pub fn param(req: &HttpRequest, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[derive(Clone)]
pub struct Lrclib {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<HttpRequest>>>,
    _task: Arc<AbortOnDrop>,
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

impl Lrclib {
    pub async fn start(songs: Vec<Song>) -> Lrclib {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let handler = Arc::new(move |req: HttpRequest| {
            seen.lock().unwrap().push(req.clone());
            let q = |k: &str| param(&req, k).map(|v| lower(&v)).unwrap_or_default();
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/api/get") => {
                    let duration: f64 = q("duration").parse().unwrap_or(-1.0);
                    // LRCLIB matches the length within about two seconds.
                    let hit = songs.iter().find(|s| {
                        lower(&s.artist) == q("artist_name")
                            && lower(&s.title) == q("track_name")
                            && (duration < 0.0 || (s.duration - duration).abs() <= 2.0)
                    });
                    match hit {
                        Some(s) => HttpResponse::json(200, &s.json()),
                        None => HttpResponse::json(
                            404,
                            &json!({"code": 404, "name": "TrackNotFound",
                                    "message": "Failed to find specified track"}),
                        ),
                    }
                }
                ("GET", "/api/search") => {
                    let words = q("q");
                    let found: Vec<Value> = songs
                        .iter()
                        .filter(|s| {
                            let all = lower(&format!("{} {}", s.artist, s.title));
                            !words.is_empty() && words.split_whitespace().all(|w| all.contains(w))
                        })
                        .map(Song::json)
                        .collect();
                    HttpResponse::json(200, &Value::Array(found))
                }
                _ => HttpResponse::json(404, &json!({"message": "no such route"})),
            }
        });
        let task = tokio::spawn(http::serve(listener, handler));
        Lrclib {
            addr,
            log,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    /// `http://127.0.0.1:PORT`, the bot's `lyrics.api_base`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.log.lock().unwrap().clone()
    }
}
