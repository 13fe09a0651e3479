//! The check `cargo test --test independent` runs: the standalone emulator (this binary with
//! `--serve`, a child process) and discord.js (`node client.js`, another), driven only through
//! the control API and the client's own stdout, as anyone outside this repo would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

const GUILD: u64 = 1_200_000_000_000_000_100;
const TEXT: u64 = 1_200_000_000_000_000_101;
const VOICE: u64 = 1_200_000_000_000_000_102;
/// The human who runs `/tone` and listens in the voice channel (a DAVE listener).
const LISTENER: u64 = 1_200_000_000_000_000_200;
const TONE_HZ: f32 = 440.0;
const TONE_SECONDS: u32 = 3;
/// How far from 440 Hz the decoded tone may be (the analysis resolves 0.5 Hz).
const TOLERANCE_HZ: f32 = 3.0;
/// The whole check stays well under a minute; each wait has a share of it.
const STEP: Duration = Duration::from_secs(20);

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent")
}

pub async fn run() {
    let dir = package_dir();
    assert!(
        dir.join("node_modules/discord.js/package.json").exists()
            && dir.join("node_modules/@discordjs/voice/package.json").exists(),
        "the independent client's npm packages are not installed: run `npm ci --prefix tests/independent` \
         (scripts/deps does it; Node 20+ and npm are needed)"
    );

    let (mut server, _server_stdin, info) = start_server().await;
    let ctl = Control {
        base: info["control"]
            .as_str()
            .expect("control address")
            .to_string(),
        http: reqwest::Client::new(),
    };
    ctl.post("/guilds", json!({"id": GUILD, "name": "independent"}))
        .await;
    ctl.post(
        "/channels",
        json!({"guild_id": GUILD, "id": TEXT, "name": "general", "type": "text"}),
    )
    .await;
    ctl.post(
        "/channels",
        json!({"guild_id": GUILD, "id": VOICE, "name": "Music", "type": "voice"}),
    )
    .await;
    ctl.post(
        "/members",
        json!({"guild_id": GUILD, "user_id": LISTENER.to_string(), "name": "listener"}),
    )
    .await;
    ctl.post(
        "/voice-states",
        json!({"guild_id": GUILD, "user_id": LISTENER, "channel_id": VOICE}),
    )
    .await;
    // A bad request is refused with a reason, and the server carries on.
    let refused = ctl
        .send(
            "POST",
            "/voice-states",
            json!({"guild_id": GUILD, "user_id": LISTENER, "channel_id": TEXT}),
        )
        .await;
    assert_eq!(refused.0, 400, "{refused:?}");

    let mut node = Node::start(&info).await;
    let bot_id = info["bot_user_id"].as_str().expect("bot id").to_string();

    // Login and registration, as the emulator saw them.
    let state = ctl
        .until(
            &mut node,
            "the client's login and /tone registration",
            |s| {
                let names = s["registrations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
                    .collect::<Vec<_>>();
                (s["readies"].as_u64() >= Some(1) && names.contains(&json!("tone"))).then_some(())
            },
        )
        .await;
    assert_eq!(state["identifies"], json!(1), "one IDENTIFY: {state:#}");
    let ready = node.wait_event("ready").await;
    assert_eq!(
        ready["user_id"],
        json!(bot_id),
        "READY's user is the bot: {ready}"
    );

    // The human runs /tone: the client answers, joins with DAVE, plays 440 Hz.
    let sent = ctl
        .post(
            "/interactions",
            json!({"guild_id": GUILD, "channel_id": TEXT, "user_id": LISTENER, "name": "tone",
                   "options": [{"name": "hz", "type": 4, "value": TONE_HZ as u32}]}),
        )
        .await;
    let iid = sent["id"].as_str().expect("interaction id").to_string();
    let answered = ctl
        .until_at(
            &mut node,
            "the reply to /tone",
            &format!("/interactions/{iid}"),
            |i| (i["replies"].as_array().is_some_and(|r| !r.is_empty())).then_some(()),
        )
        .await;
    assert_eq!(answered["callback_type"], json!(4), "{answered:#}");
    let first = &answered["replies"][0];
    assert!(
        first["content"].as_str().unwrap_or("").contains("440 Hz"),
        "the reply names the tone: {answered:#}"
    );
    let enough = (TONE_SECONDS as u64 - 1) * 50;
    let audio = ctl
        .until_at(
            &mut node,
            "DAVE frames a listener decrypted",
            &format!("/audio?guild_id={GUILD}"),
            |a| (a["dave"]["frames_decrypted"].as_u64() >= Some(enough)).then_some(()),
        )
        .await;
    let _ = audio;

    // The client plays to the end, edits its reply, leaves and exits by itself.
    let status = tokio::time::timeout(STEP, node.child.wait())
        .await
        .unwrap_or_else(|_| panic!("node did not exit within {STEP:?}: {:#?}", node.events()))
        .expect("wait for node");
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut node.stdout).await;
    assert!(
        status.success(),
        "node failed ({status}): {:#?}",
        node.events()
    );
    let played = node
        .event("played")
        .unwrap_or_else(|| panic!("the client printed no played event: {:#?}", node.events()));
    assert!(played["frames"].as_u64() >= Some(enough), "{played}");

    let audio = ctl.get(&format!("/audio?guild_id={GUILD}")).await;
    let dave = &audio["dave"];
    assert_eq!(dave["protocol_version"], json!(1), "{audio:#}");
    assert_eq!(dave["decrypt_failures"], json!(0), "{audio:#}");
    assert_eq!(dave["frames_plain_in_group"], json!(0), "{audio:#}");
    let senders = audio["senders"].as_array().expect("senders");
    assert_eq!(
        senders.len(),
        1,
        "one voice connection sent audio: {audio:#}"
    );
    let sender = &senders[0];
    assert_eq!(sender["user_id"], json!(bot_id), "{audio:#}");
    assert_eq!(
        sender["measured_on"],
        json!("DAVE-decrypted non-silent frames"),
        "{audio:#}"
    );
    let hz = sender["dominant_frequency_hz"].as_f64().unwrap_or(0.0) as f32;
    assert!(
        (hz - TONE_HZ).abs() <= TOLERANCE_HZ,
        "decoded {hz} Hz, want {TONE_HZ} ± {TOLERANCE_HZ}: {audio:#}"
    );
    println!(
        "independent client: {hz} Hz decoded from {} DAVE frames ({} encrypted, {} decrypt failures)",
        dave["frames_decrypted"], dave["frames_encrypted"], dave["decrypt_failures"]
    );

    // Both ends of the MLS group derived the same voice privacy code (the code users compare
    // to verify the call's encryption).
    let joined = node
        .event("joined")
        .expect("the client printed its joined event");
    assert!(dave["privacy_code"].is_string(), "{audio:#}");
    assert_eq!(
        joined["voice_privacy_code"], dave["privacy_code"],
        "the client's and the listener's voice privacy codes"
    );

    let answered = ctl.get(&format!("/interactions/{iid}")).await;
    let edited = answered["replies"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            r["source"] == json!("EditOriginal")
                && r["content"].as_str().unwrap_or("").starts_with("Played")
        });
    assert!(
        edited,
        "the client edited its reply after playing: {answered:#}"
    );
    assert_eq!(answered["errors"], json!([]), "{answered:#}");

    let notices = ctl.get(&format!("/messages?channel_id={TEXT}")).await;
    assert!(
        notices
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["source"] == json!("ChannelMessage")
                && m["content"] == json!("Finished: 440 Hz")),
        "the client's channel message: {notices:#}"
    );

    let state = ctl.get("/state").await;
    let voice = &state["voice"][0];
    assert_eq!(
        voice["bot_channel_id"],
        Value::Null,
        "the client left: {voice:#}"
    );
    assert_eq!(
        voice["voice_state_updates"],
        json!([VOICE.to_string(), null]),
        "one join, one leave: {voice:#}"
    );
    assert_eq!(state["protocol_errors"], json!([]), "{state:#}");
    assert_eq!(state["unhandled_requests"], json!([]), "{state:#}");
    assert_eq!(state["voice_errors"], json!([]), "{state:#}");

    ctl.post("/shutdown", json!({})).await;
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the emulator stops after POST /shutdown")
        .expect("wait for the emulator");
    assert!(status.success(), "emulator exit: {status}");
}

/// This binary with `--serve`, on free ports; its first stdout line says where.
async fn start_server() -> (Child, ChildStdin, Value) {
    let exe = std::env::current_exe().expect("own executable");
    let mut child = Command::new(exe)
        .args(["--serve", "--lifetime", "90s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the standalone emulator");
    let stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the emulator printed its addresses within 10 s")
        .expect("read the emulator's stdout")
        .expect("the emulator printed its addresses");
    let info: Value = serde_json::from_str(&first).expect("the first line is JSON");
    // Anything it prints later is forwarded, so the output is not lost.
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("[emulator] {l}");
        }
    });
    (child, stdin, info)
}

/// The control API, from outside.
struct Control {
    base: String,
    http: reqwest::Client,
}

impl Control {
    async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        };
        let resp = tokio::time::timeout(Duration::from_secs(10), req.send())
            .await
            .unwrap_or_else(|_| panic!("control {method} {path}: no answer in 10 s"))
            .unwrap_or_else(|e| panic!("control {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.send("POST", path, body).await;
        assert!(
            (200..300).contains(&status),
            "control POST {path}: {status} {v}"
        );
        v
    }

    async fn get(&self, path: &str) -> Value {
        let (status, v) = self.send("GET", path, Value::Null).await;
        assert!(
            (200..300).contains(&status),
            "control GET {path}: {status} {v}"
        );
        v
    }

    async fn until<T>(
        &self,
        node: &mut Node,
        what: &str,
        pred: impl Fn(&Value) -> Option<T>,
    ) -> Value {
        self.until_at(node, what, "/state", pred).await
    }

    /// Polls `GET path` until `pred` holds, failing at once if the client exits first and
    /// after [`STEP`] otherwise (the state is in another process: nothing to be woken by).
    async fn until_at<T>(
        &self,
        node: &mut Node,
        what: &str,
        path: &str,
        pred: impl Fn(&Value) -> Option<T>,
    ) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let v = self.get(path).await;
            if pred(&v).is_some() {
                return v;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                if !status.success() || Instant::now() >= deadline {
                    let state = self.get("/state").await;
                    panic!(
                        "waiting for {what}: node exited ({status}); its events: {:#?}\nlast {path}: {v:#}\nstate: {state:#}",
                        node.events()
                    );
                }
            }
            if Instant::now() >= deadline {
                let state = self.get("/state").await;
                panic!(
                    "timed out after {STEP:?} waiting for {what}; client events: {:#?}\nlast {path}: {v:#}\nstate: {state:#}",
                    node.events()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `node client.js`, with only what it needs in its environment.
struct Node {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    /// Reads the client's stdout (one JSON event a line) until it closes.
    stdout: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(info: &Value) -> Node {
        let s = |k: &str| {
            info[k]
                .as_str()
                .unwrap_or_else(|| panic!("info has no {k}: {info}"))
                .to_string()
        };
        let mut cmd = Command::new("node");
        cmd.arg("client.js")
            .current_dir(package_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("EMULATOR_API", format!("{}/api", s("api_base")))
            .env("DISCORD_TOKEN", s("bot_token"))
            // The voice websocket is `wss://` with the emulator's test certificate.
            .env("NODE_EXTRA_CA_CERTS", s("ca_bundle"))
            .env("TONE_SECONDS", TONE_SECONDS.to_string())
            .env("CLIENT_DEADLINE_MS", "40000")
            .env(
                "CLIENT_DEBUG",
                std::env::var("CLIENT_DEBUG").unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): the independent client needs Node 20+ on PATH")
        });
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ev = events.clone();
        let stdout = tokio::spawn(async move {
            while let Ok(Some(l)) = out.next_line().await {
                eprintln!("[discord.js] {l}");
                let v = serde_json::from_str(&l)
                    .unwrap_or_else(|_| json!({"event": "text", "line": l}));
                ev.lock().unwrap_or_else(|e| e.into_inner()).push(v);
            }
        });
        let mut err = BufReader::new(child.stderr.take().expect("stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(l)) = err.next_line().await {
                eprintln!("[discord.js stderr] {l}");
            }
        });
        Node {
            child,
            events,
            stdout,
        }
    }

    fn events(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn event(&self, name: &str) -> Option<Value> {
        self.events()
            .into_iter()
            .find(|e| e["event"] == json!(name))
    }

    /// The client's first `name` event, waited for (bounded); fails at once if it exits.
    async fn wait_event(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(e) = self.event(name) {
                return e;
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_))) && self.stdout.is_finished();
            if exited || Instant::now() >= deadline {
                panic!("the client printed no {name} event: {:#?}", self.events());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
