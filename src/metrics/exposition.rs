//! The `/metrics` page: the figures `/resources` shows, plus the gateway's shards and the
//! timing histograms, in the OpenMetrics text format (which Prometheus scrapes natively).
//!
//! Built afresh for every scrape from one [`Scrape`], the same way `/resources` builds its
//! embed from a `ResourceReport`: the figures are read once, at one moment, and nothing is
//! kept between scrapes but the histograms, which only the hot path writes. Names follow
//! Prometheus' conventions: an `encore_` prefix, base units in the name (`_seconds`,
//! `_bytes`), `_total` on counters, and the usual `process_*` names for the process.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::discord::gateway::{ShardState, STAGES};
use crate::resources::report::ResourceReport;
use crate::resources::timings::Timings;
use crate::resources::Kind;

/// Everything one scrape shows.
pub struct Scrape<'a> {
    pub report: &'a ResourceReport,
    pub shards: &'a [ShardState],
    pub timings: Option<&'a Timings>,
    /// yt-dlp runs that ended in an error other than a timeout.
    pub ytdlp_failed: u64,
    /// The process's CPU time since start, in seconds.
    pub cpu_seconds: f64,
    /// `cache.max_bytes`: what the audio cache may fill.
    pub cache_budget_bytes: u64,
    /// Days since the yt-dlp in use was released, when its version is a date.
    pub ytdlp_age_days: Option<u64>,
    /// This node's id, in a cluster: every series then carries `node="<id>"`.
    pub node: Option<String>,
}

type Labels = Vec<(&'static str, String)>;

fn gauge(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, v: f64) {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(v);
    match unit {
        Some(u) => r.register_with_unit(name, help, u, g),
        None => r.register(name, help, g),
    }
}

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    r.register(name, help, c);
}

fn counters(
    r: &mut Registry,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) {
    let f = Family::<Labels, Counter>::default();
    for (labels, v) in rows {
        f.get_or_create(&labels).inc_by(v);
    }
    r.register(name, help, f);
}

fn gauges(
    r: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    rows: impl IntoIterator<Item = (Labels, f64)>,
) {
    let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (labels, v) in rows {
        f.get_or_create(&labels).set(v);
    }
    match unit {
        Some(u) => r.register_with_unit(name, help, u, f),
        None => r.register(name, help, f),
    }
}

/// The page, in the OpenMetrics text format.
pub fn render(s: &Scrape) -> String {
    let node = s
        .node
        .iter()
        .map(|n| (Cow::Borrowed("node"), Cow::<'static, str>::Owned(n.clone())));
    let mut r = Registry::with_labels(node);
    let rep = s.report;
    let kind = |k: Kind| rep.kinds.get(&k).copied().unwrap_or_default();
    let n = |v: usize| v as f64;

    gauges(
        &mut r,
        "encore_calls",
        "Voice calls held now, by what they do: playing, paused, or idle (nothing queued)",
        None,
        [
            ("playing", rep.calls_playing),
            ("paused", rep.calls_paused),
            ("idle", rep.calls_idle),
        ]
        .map(|(state, v)| (vec![("state", state.to_string())], n(v))),
    );
    gauge(
        &mut r,
        "encore_calls_peak",
        "Most voice calls held at once since start",
        None,
        kind(Kind::Call).peak as f64,
    );
    counter(
        &mut r,
        "encore_voice_joins",
        "Voice calls joined since start",
        kind(Kind::Call).acquired,
    );
    counter(
        &mut r,
        "encore_voice_leaves",
        "Voice calls left since start",
        kind(Kind::Call).released,
    );
    gauge(
        &mut r,
        "encore_players",
        "Guild players running now (each owns a queue)",
        None,
        n(rep.queues),
    );
    gauge(
        &mut r,
        "encore_players_peak",
        "Most guild players running at once since start",
        None,
        kind(Kind::Player).peak as f64,
    );
    gauge(
        &mut r,
        "encore_queued_tracks",
        "Tracks in every queue, the playing ones included",
        None,
        n(rep.queued_tracks),
    );
    gauge(&mut r, "encore_background_tasks", "The bot's own background tasks running now (sweeper, updater, downloads, live /resources views)", None, kind(Kind::Task).current as f64);
    gauge(
        &mut r,
        "encore_background_tasks_peak",
        "Most background tasks at once since start",
        None,
        kind(Kind::Task).peak as f64,
    );

    gauge(
        &mut r,
        "encore_ytdlp_processes",
        "yt-dlp processes running now",
        None,
        n(rep.ytdlp_running),
    );
    counter(
        &mut r,
        "encore_ytdlp_runs",
        "yt-dlp processes started since start",
        rep.ytdlp_spawned,
    );
    counters(
        &mut r,
        "encore_ytdlp_runs_failed",
        "yt-dlp runs that ended without an answer, by reason: timeout (killed at ytdlp.timeout) or error",
        [("timeout", rep.ytdlp_timed_out), ("error", s.ytdlp_failed)]
            .map(|(reason, v)| (vec![("reason", reason.to_string())], v)),
    );
    let version = rep.ytdlp_version.clone();
    r.register(
        "encore_ytdlp",
        "The yt-dlp in use",
        Info::new(vec![("version", version)]),
    );
    if let Some(days) = s.ytdlp_age_days {
        gauge(&mut r, "encore_ytdlp_age", "Time since the yt-dlp in use was released: sites change, and an old yt-dlp fails more lookups", Some(Unit::Seconds), (days * 86_400) as f64);
    }
    if let Some(t) = s.timings {
        // Named with their unit rather than given a UNIT line: OpenMetrics parsers differ
        // on units for histograms, the name is what queries use anyway.
        r.register(
            "encore_lookup_duration_seconds",
            "Time to turn a /play query into a track, by result: hit (metadata cache), miss (yt-dlp ran) or failed",
            t.lookups.clone(),
        );
        r.register(
            "encore_time_to_first_audio_seconds",
            "Time from a track's turn to its audio reaching the mixer (opening the cached file or the stream)",
            t.first_audio.clone(),
        );
    }

    if let Some(c) = &rep.cache {
        gauge(
            &mut r,
            "encore_cache_entries",
            "Tracks in the metadata cache",
            None,
            c.entries as f64,
        );
        gauge(
            &mut r,
            "encore_cache_files",
            "Audio files in the cache",
            None,
            c.audio_files as f64,
        );
        gauge(
            &mut r,
            "encore_cache_size",
            "Bytes the cached audio files take on disk",
            Some(Unit::Bytes),
            c.audio_bytes as f64,
        );
        gauge(
            &mut r,
            "encore_cache_budget",
            "What the audio cache may take on disk (cache.max_bytes); older files go past it",
            Some(Unit::Bytes),
            s.cache_budget_bytes as f64,
        );
        counter(
            &mut r,
            "encore_cache_hits",
            "Lookups answered from the metadata cache",
            c.hits,
        );
        counter(
            &mut r,
            "encore_cache_misses",
            "Lookups the metadata cache could not answer (yt-dlp ran)",
            c.misses,
        );
    }

    counters(
        &mut r,
        "encore_cleanups",
        "Calls and players cleaned up since start, by reason; forced=\"true\" when an admin or shutdown asked",
        rep.cleanups.by_reason.iter().map(|(reason, v)| {
            (
                vec![
                    ("reason", reason.label().to_string()),
                    ("forced", reason.is_forced().to_string()),
                ],
                *v,
            )
        }),
    );
    counter(
        &mut r,
        "encore_cleanup_failures",
        "Cleanups that did not finish (the sweeper retries them)",
        rep.cleanups.failed,
    );
    counters(
        &mut r,
        "encore_leaks_found",
        "Things the sweeper found held with no owner (and released), by what they were",
        rep.leaks
            .iter()
            .map(|(what, v)| (vec![("what", what.to_string())], *v)),
    );
    counters(
        &mut r,
        "encore_errors",
        "Errors users or the bot met, by class",
        rep.errors
            .iter()
            .map(|(class, v)| (vec![("class", class.to_string())], *v)),
    );

    gauge(
        &mut r,
        "encore_tokio_tasks",
        "Tasks alive on the bot's async runtime",
        None,
        n(rep.tokio_tasks),
    );
    gauge(
        &mut r,
        "encore_mixer_calls",
        "Calls songbird's mixer threads are mixing now",
        None,
        rep.mixer_tasks_live as f64,
    );
    gauge(
        &mut r,
        "encore_mixer_threads",
        "songbird mixer threads",
        None,
        rep.mixer_threads as f64,
    );
    gauge(
        &mut r,
        "encore_mixer_cycle_cost",
        "Mean compute time of the mixer threads' last 20 ms cycle",
        Some(Unit::Seconds),
        rep.mixer_cost_us / 1e6,
    );

    gauge(
        &mut r,
        "process_resident_memory",
        "Resident memory of the bot's process",
        Some(Unit::Bytes),
        rep.rss_bytes as f64,
    );
    let cpu = Counter::<f64, AtomicU64>::default();
    cpu.inc_by(s.cpu_seconds);
    r.register_with_unit(
        "process_cpu",
        "User and system CPU time the process used",
        Unit::Seconds,
        cpu,
    );
    gauge(
        &mut r,
        "process_open_fds",
        "Open file descriptors",
        None,
        rep.open_fds as f64,
    );
    gauge(
        &mut r,
        "process_threads",
        "OS threads of the process",
        None,
        rep.threads as f64,
    );
    gauge(
        &mut r,
        "encore_uptime",
        "Time since the bot started",
        Some(Unit::Seconds),
        rep.uptime.as_secs_f64(),
    );

    gauges(
        &mut r,
        "encore_gateway_latency",
        "Each gateway shard's last heartbeat round trip (NaN until its first heartbeat is answered)",
        Some(Unit::Seconds),
        s.shards.iter().map(|sh| {
            let l = sh.latency.map_or(f64::NAN, |l| l.as_secs_f64());
            (vec![("shard", sh.id.to_string())], l)
        }),
    );
    gauges(
        &mut r,
        "encore_gateway_shard_state",
        "Each gateway shard this process owns: 1 for the stage it is in, 0 for the others",
        None,
        s.shards.iter().flat_map(|sh| {
            STAGES.iter().map(move |stage| {
                let on = if sh.stage == *stage { 1.0 } else { 0.0 };
                (
                    vec![("shard", sh.id.to_string()), ("state", stage.to_string())],
                    on,
                )
            })
        }),
    );

    let mut out = String::new();
    encode(&mut out, &r).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scrape_of<'a>(
        report: &'a ResourceReport,
        shards: &'a [ShardState],
        node: Option<&str>,
    ) -> String {
        render(&Scrape {
            report,
            shards,
            timings: None,
            ytdlp_failed: 2,
            cpu_seconds: 1.5,
            cache_budget_bytes: 1 << 30,
            ytdlp_age_days: Some(3),
            node: node.map(str::to_string),
        })
    }

    #[test]
    fn a_cluster_node_labels_every_series_with_its_id() {
        let report = ResourceReport {
            calls_playing: 2,
            ytdlp_version: "2026.10.26 (managed)".into(),
            ..Default::default()
        };
        let shards = [ShardState {
            id: 3,
            stage: "resuming",
            latency: Some(Duration::from_millis(40)),
        }];
        let text = scrape_of(&report, &shards, Some("node-a"));
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert!(samples.len() > 20, "{text}");
        for l in &samples {
            assert!(l.contains("node=\"node-a\""), "{l}");
        }
        for line in [
            "encore_calls{node=\"node-a\",state=\"playing\"} 2.0",
            "encore_ytdlp_info{node=\"node-a\",version=\"2026.10.26 (managed)\"} 1",
            "encore_ytdlp_runs_failed_total{node=\"node-a\",reason=\"error\"} 2",
            "encore_ytdlp_age_seconds{node=\"node-a\"} 259200.0",
            "encore_gateway_shard_state{node=\"node-a\",shard=\"3\",state=\"resuming\"} 1.0",
            "encore_gateway_shard_state{node=\"node-a\",shard=\"3\",state=\"connected\"} 0.0",
            "encore_gateway_latency_seconds{node=\"node-a\",shard=\"3\"} 0.04",
            "process_cpu_seconds_total{node=\"node-a\"} 1.5",
        ] {
            assert!(samples.contains(&line), "no {line} in\n{text}");
        }
        // A single bot has no node label at all.
        let alone = scrape_of(&report, &shards, None);
        assert!(!alone.contains("node="), "{alone}");
        assert!(
            alone.contains("\nencore_calls{state=\"playing\"} 2.0\n"),
            "{alone}"
        );
    }
}
