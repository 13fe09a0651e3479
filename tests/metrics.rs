//! The metrics listener as a host uses it (`[metrics]`, src/metrics/):
//! - `/metrics` scraped while the bot plays through the emulator, read with an OpenMetrics
//!   parser: the call, player, queue and lookup figures are those `/resources` gathers at
//!   the same moment, and the histograms count the lookups and plays made;
//! - `/readyz` fails while the gateway is down and passes again once the shard is back;
//!   `/healthz` fails while the bot's runtime is wedged (the probe the systemd watchdog
//!   asks too) and passes once it runs again;
//! - a port alone binds 127.0.0.1, and a public address is refused without
//!   `metrics.allow_public`.
//!
//! The HTTP client is a blocking one on a thread of its own: a test that wedges the bot's
//! runtime must not need that runtime to read the answer.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use encore::config::ListenAddr;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use support::world::{World, ANN, GUILD, T};

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// `GET path` on `addr`: (status, body). Blocking, bounded by 10 s.
fn get_blocking(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Bodies are small and sent whole (no chunking for a full body of known length).
    (status, body.to_string())
}

async fn get(addr: SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || get_blocking(addr, path))
        .await
        .unwrap()
}

async fn scrape(addr: SocketAddr) -> (String, Exposition) {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&body)
        .unwrap_or_else(|e| panic!("not OpenMetrics: {e:?}\n{body}"));
    (body, parsed)
}

/// The value of `family`'s sample whose labels include `labels` (a gauge or a counter).
fn value(m: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    let f = m
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no {family} in {:?}", m.families.keys()));
    let sample = f
        .iter_samples()
        .find(|s| {
            let set = s.get_labelset().unwrap();
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {family}{labels:?}"));
    match &sample.value {
        OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
        OpenMetricsValue::Counter(c) => c.value.as_f64(),
        other => panic!("{family} is {other:?}"),
    }
}

/// Observations in `family`'s histogram samples whose labels include `labels`.
fn histogram_count(m: &Exposition, family: &str, labels: &[(&str, &str)]) -> u64 {
    let Some(f) = m.families.get(family) else {
        return 0;
    };
    f.iter_samples()
        .filter(|s| {
            let set = s.get_labelset().unwrap();
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| match &s.value {
            OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0),
            other => panic!("{family} is {other:?}"),
        })
        .sum()
}

/// A bot with the listener on a port the OS picks: `"0"`, a port alone.
async fn world() -> World {
    let w = World::start_with(|c| c.metrics.listen = Some(ListenAddr::parse("0").unwrap())).await;
    let addr = w.metrics.expect("the listener is on");
    assert_eq!(
        addr.ip().to_string(),
        "127.0.0.1",
        "a port alone binds loopback"
    );
    w
}

async fn wait_status(addr: SocketAddr, path: &'static str, want: u16, what: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let (status, body) = get(addr, path).await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {path} stayed {status} ({body}) for {T:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_while_playing_matches_resources_and_counts_the_plays() {
    let w = world().await;
    let addr = w.metrics.unwrap();
    // Before anything: no call, and no lookup or play counted.
    let (_, m) = scrape(addr).await;
    assert_eq!(value(&m, "encore_calls", &[("state", "playing")]), 0.0);
    assert_eq!(
        histogram_count(&m, "encore_lookup_duration_seconds", &[]),
        0
    );

    // A lookup through yt-dlp that plays, then the same query again: a cache hit, queued.
    let url = w.files.url("low.wav");
    let r = w.play(ANN, &url).await;
    assert!(r.text().contains("Playing"), "{}", r.text());
    let r = w.play(ANN, &url).await;
    assert!(r.text().contains("from cache"), "{}", r.text());
    w.emu.wait_audio_frames(GUILD, 10, T).await;
    // The first track (3 s) ends and the second starts: two plays.
    let deadline = Instant::now() + T;
    let (text, m, report) = loop {
        let mut meter = w.bot.status.process_meter();
        let before = encore::discord::commands::gather(&w.bot, &mut meter).await;
        let (text, m) = scrape(addr).await;
        let after = encore::discord::commands::gather(&w.bot, &mut meter).await;
        let plays = histogram_count(&m, "encore_time_to_first_audio_seconds", &[]);
        let steady = (before.calls_playing, before.queues, before.queued_tracks)
            == (after.calls_playing, after.queues, after.queued_tracks)
            && before.cache == after.cache;
        if plays == 2 && steady {
            break (text, m, after);
        }
        assert!(Instant::now() < deadline, "plays counted: {plays}\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let n = |v: usize| v as f64;
    assert_eq!(report.calls_playing, 1, "{report:?}");
    for (state, v) in [
        ("playing", report.calls_playing),
        ("paused", report.calls_paused),
        ("idle", report.calls_idle),
    ] {
        assert_eq!(
            value(&m, "encore_calls", &[("state", state)]),
            n(v),
            "{state}"
        );
    }
    assert_eq!(value(&m, "encore_players", &[]), n(report.queues));
    assert_eq!(
        value(&m, "encore_queued_tracks", &[]),
        n(report.queued_tracks)
    );
    let cache = report.cache.clone().expect("the cache is on");
    assert_eq!((cache.hits, cache.misses), (1, 1), "{cache:?}");
    assert_eq!(value(&m, "encore_cache_hits", &[]), cache.hits as f64);
    assert_eq!(value(&m, "encore_cache_misses", &[]), cache.misses as f64);
    assert_eq!(value(&m, "encore_cache_entries", &[]), cache.entries as f64);
    // The lookups histogram counts the two /play lookups, by where the answer came from.
    let lookups = "encore_lookup_duration_seconds";
    assert_eq!(
        histogram_count(&m, lookups, &[("result", "hit")]),
        cache.hits
    );
    assert_eq!(
        histogram_count(&m, lookups, &[("result", "miss")]),
        cache.misses
    );
    assert_eq!(histogram_count(&m, lookups, &[("result", "failed")]), 0);
    assert_eq!(
        value(&m, "encore_ytdlp_runs", &[]),
        report.ytdlp_spawned as f64
    );
    assert!(report.ytdlp_spawned >= 1);
    assert_eq!(value(&m, "encore_voice_joins", &[]), 1.0);
    // The rest of /resources is there too, with Prometheus names and units.
    for family in [
        "encore_ytdlp_processes",
        "encore_ytdlp_runs_failed",
        "encore_ytdlp",
        "encore_cache_size_bytes",
        "encore_cache_budget_bytes",
        "encore_cleanup_failures",
        "encore_tokio_tasks",
        "encore_mixer_calls",
        "encore_mixer_cycle_cost_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
        "encore_uptime_seconds",
        "encore_gateway_shard_state",
    ] {
        // Declared even while empty (no cleanup yet has no sample).
        assert!(
            text.contains(&format!("\n# TYPE {family} ")),
            "no {family} in\n{text}"
        );
    }
    assert!(value(&m, "process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(
        value(
            &m,
            "encore_gateway_shard_state",
            &[("shard", "0"), ("state", "connected")]
        ),
        1.0
    );
    assert!(text.contains("# TYPE encore_calls gauge"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_gateway_is_down_and_passes_once_the_shard_is_back() {
    let w = world().await;
    let addr = w.metrics.unwrap();
    wait_status(addr, "/readyz", 200, "a connected bot").await;
    let connections = w.emu.gateway_connections();
    // Discord's gateway goes away: the session is closed and it takes no one back.
    w.emu.refuse_gateway(true);
    w.emu.disconnect_gateway(4000).await;
    let why = wait_status(addr, "/readyz", 503, "the gateway is down").await;
    assert!(why.contains("shard 0 is"), "{why}");
    // Alive all the same: nothing for a supervisor to restart.
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (_, m) = scrape(addr).await;
    let connected = [("shard", "0"), ("state", "connected")];
    assert_eq!(value(&m, "encore_gateway_shard_state", &connected), 0.0);
    w.emu.refuse_gateway(false);
    wait_status(addr, "/readyz", 200, "the gateway is back").await;
    assert!(w.emu.gateway_connected());
    assert!(w.emu.gateway_connections() > connections);
    let (_, m) = scrape(addr).await;
    assert_eq!(value(&m, "encore_gateway_shard_state", &connected), 1.0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_the_runtime_is_wedged() {
    let w = world().await;
    let addr = w.metrics.unwrap();
    wait_status(addr, "/healthz", 200, "a running bot").await;
    // Both worker threads of the bot's runtime stuck in a blocking wait, as a blocking call
    // on the runtime would leave them.
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
    let (stuck_tx, stuck) = std::sync::mpsc::channel::<()>();
    for _ in 0..2 {
        let (wait, stuck_tx) = (wait.clone(), stuck_tx.clone());
        tokio::spawn(async move {
            let _ = stuck_tx.send(());
            let _ = wait.lock().unwrap().recv_timeout(T);
        });
    }
    for _ in 0..2 {
        stuck.recv_timeout(T).expect("both workers are stuck");
    }
    let (status, why) = tokio::task::spawn_blocking(move || get_blocking(addr, "/healthz"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("runtime did not run a new task"), "{why}");
    // The same probe the systemd watchdog pings for (src/main.rs): it fails too.
    let probe = encore::health::Probe::of(&w.bot);
    let watchdog = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(probe.watchdog())
    });
    let verdict = watchdog.join().unwrap();
    assert!(verdict.is_err(), "{verdict:?}");
    release.send(()).unwrap();
    release.send(()).unwrap();
    wait_status(addr, "/healthz", 200, "the runtime runs again").await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_address_is_refused_without_allow_public() {
    let emu = support::Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = encore::config::Config::default();
    config.data.dir = dir.path().join("data");
    config.discord.rest_address = Some(emu.rest_tls_addr());
    config.metrics.listen = Some(ListenAddr::parse("0.0.0.0:0").unwrap());
    let token = encore::config::Token::parse(Some(&emu.bot_token())).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let built = encore::app::App::build(config, token, shutdown.clone()).await;
    shutdown.cancel();
    let e = format!("{:#}", built.err().expect("refused"));
    assert!(e.contains("allow_public") && e.contains("0.0.0.0"), "{e}");
}

fn manifest(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// promtool, from Debian's `prometheus` package; missing, the test fails and says so.
fn promtool() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/bin")])
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool is not installed, so deploy/prometheus/alerts.yml cannot be checked. \
                 Install it with scripts/deps (Debian/Ubuntu: sudo apt-get install prometheus)"
            )
        })
}

#[test]
fn the_alerts_pass_promtool_check_rules() {
    let mut child = std::process::Command::new(promtool())
        .args(["check", "rules"])
        .arg(manifest("deploy/prometheus/alerts.yml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "promtool hangs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 6 rules found"), "{text}");
}

/// Every PromQL expression of the dashboard (its panels' targets and its variables'
/// queries) and of the alerts, with Grafana's variables replaced by what Grafana sends.
fn deploy_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(manifest("deploy/grafana/encore.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() > 10, "{} panels", panels.len());
    for p in panels {
        assert!(p["gridPos"]["w"].is_u64() && p["type"].is_string(), "{p}");
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            out.push((
                format!("panel {title:?}"),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    let docs = yaml_rust2::YamlLoader::load_from_str(
        &std::fs::read_to_string(manifest("deploy/prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    for group in docs[0]["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            out.push((
                format!("alert {name}"),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out.into_iter()
        .map(|(w, e)| {
            (
                w,
                e.replace("$__rate_interval", "5m")
                    .replace("$instance", ".*"),
            )
        })
        .collect()
}

/// The metric names an expression reads.
fn names_in(expr: &str) -> Vec<String> {
    use promql_parser::parser::Expr;
    struct Names(Vec<String>);
    impl promql_parser::util::ExprVisitor for Names {
        type Error = ();
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            self.0.extend(vs.name.clone());
            Ok(true)
        }
    }
    let parsed = promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut names = Names(Vec::new());
    promql_parser::util::walk_expr(&mut names, &parsed).unwrap();
    names.0
}

/// The series names Prometheus stores from a scrape: `_total` for counters, `_bucket`,
/// `_count` and `_sum` for histograms, `_info` for info metrics.
fn series_names(m: &Exposition) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (name, f) in &m.families {
        let suffixes: &[&str] = match f.family_type {
            OpenMetricsType::Counter => &["_total"],
            OpenMetricsType::Histogram => &["_bucket", "_count", "_sum"],
            OpenMetricsType::Info => &["_info"],
            _ => &[""],
        };
        out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_read_only_metrics_the_bot_exports() {
    let w = world().await;
    let addr = w.metrics.unwrap();
    // One of everything a dashboard panel shows: a lookup that plays, a cached one, a
    // failed one (an error), a /leave (a cleanup); a leak as the sweeper records one.
    let url = w.files.url("low.wav");
    assert!(w.play(ANN, &url).await.text().contains("Playing"));
    assert!(w.play(ANN, &url).await.text().contains("from cache"));
    let r = w.play(ANN, &w.files.url("missing.wav")).await;
    assert!(!r.text().contains("Queued"), "{}", r.text());
    w.emu.wait_audio_frames(GUILD, 5, T).await;
    w.cmd(ANN, "leave", serde_json::json!([])).await;
    w.bot.registry.record_leak("orphan call");
    let deadline = Instant::now() + T;
    let exported = loop {
        let (text, m) = scrape(addr).await;
        let names = series_names(&m);
        if names.contains("encore_cleanups_total") {
            break names;
        }
        assert!(Instant::now() < deadline, "no cleanup counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let expressions = deploy_expressions();
    let mut read = std::collections::BTreeSet::new();
    for (whose, expr) in &expressions {
        let names = names_in(expr);
        assert!(!names.is_empty(), "{whose} reads no metric: {expr}");
        for name in names {
            // `up` is the one series Prometheus writes itself, for every scrape target.
            assert!(
                name == "up" || exported.contains(&name),
                "{whose} reads {name}, which the bot does not export: {expr}\nexported: {exported:?}"
            );
            read.insert(name);
        }
    }
    // The dashboard covers what the issue lists: calls, first audio, lookups, cache,
    // resources, errors, the gateway.
    for name in [
        "encore_calls",
        "encore_time_to_first_audio_seconds_bucket",
        "encore_lookup_duration_seconds_count",
        "encore_cache_size_bytes",
        "process_resident_memory_bytes",
        "encore_errors_total",
        "encore_gateway_shard_state",
    ] {
        assert!(read.contains(name), "nothing reads {name}");
    }
    w.stop().await;
}
