//! The figures `/resources` shows, gathered into one plain struct and rendered as text
//! lines (so the layout is unit-tested without Discord).

use std::collections::BTreeMap;
use std::time::Duration;

use super::registry::{Cleanups, Kind, KindStats};
use crate::cache::size::format_bytes;

#[derive(Debug, Clone, Default)]
pub struct ResourceReport {
    pub uptime: Duration,
    pub calls_active: usize,
    pub calls_playing: usize,
    pub calls_paused: usize,
    pub calls_idle: usize,
    pub queues: usize,
    pub queued_tracks: usize,
    pub kinds: BTreeMap<Kind, KindStats>,
    pub ytdlp_running: usize,
    pub ytdlp_spawned: u64,
    pub ytdlp_timed_out: u64,
    pub ytdlp_version: String,
    pub tokio_tasks: usize,
    /// Calls songbird is mixing now. (Not its `total_tasks`: songbird 0.6.1 never
    /// subtracts a mixer that ends while parked, so that count only grows.)
    pub mixer_tasks_live: u64,
    pub mixer_threads: u64,
    /// Mean compute cost of the mixer threads' last cycle, in microseconds.
    pub mixer_cost_us: f64,
    pub rss_bytes: u64,
    pub cpu_percent: f64,
    pub threads: u64,
    pub open_fds: u64,
    pub cache: Option<CacheFigures>,
    pub cleanups: Cleanups,
    pub leaks: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    /// With a PostgreSQL store: every live node, as of its last heartbeat.
    pub cluster: Option<ClusterFigures>,
}

/// The cluster as `/resources` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFigures {
    /// The node that answered (its id).
    pub this_node: String,
    pub nodes: Vec<crate::cluster::NodeRow>,
    /// Why the nodes could not be read, when they could not.
    pub error: Option<String>,
}

/// At most this many node lines: an embed field holds 1024 characters.
const NODE_LINES: usize = 8;

impl ClusterFigures {
    fn text(&self) -> String {
        if let Some(e) = &self.error {
            return format!("cannot read the nodes: {e}");
        }
        let calls: u64 = self.nodes.iter().map(|n| n.stats.calls).sum();
        let shards: usize = self.nodes.iter().map(|n| n.stats.shards.len()).sum();
        let mut lines = vec![format!(
            "{} node{} · {shards} shard{} running · {calls} call{}",
            self.nodes.len(),
            if self.nodes.len() == 1 { "" } else { "s" },
            if shards == 1 { "" } else { "s" },
            if calls == 1 { "" } else { "s" },
        )];
        for n in self.nodes.iter().take(NODE_LINES) {
            let shards = match n.stats.shards.as_slice() {
                [] => "no shards".to_string(),
                s => format!(
                    "shards {}",
                    s.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                ),
            };
            lines.push(format!(
                "{}{} · {shards} · {} calls · RSS {} · CPU {:.1}% · v{} · beat {}s ago",
                if n.id == self.this_node { "▶ " } else { "" },
                n.host,
                n.stats.calls,
                format_bytes(n.stats.rss_bytes),
                n.stats.cpu_percent,
                n.version,
                n.heartbeat_age.as_secs(),
            ));
        }
        if self.nodes.len() > NODE_LINES {
            lines.push(format!("and {} more", self.nodes.len() - NODE_LINES));
        }
        lines.join("\n")
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheFigures {
    pub entries: u64,
    pub audio_files: u64,
    pub audio_bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

/// Uptime to the second, the humantime way (`1h 2m 3s`).
pub fn uptime(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn counts(map: &BTreeMap<impl AsRef<str>, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{} {v}", k.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ResourceReport {
    /// Embed fields: (name, value).
    pub fn fields(&self) -> Vec<(String, String)> {
        let k = |kind: Kind| self.kinds.get(&kind).copied().unwrap_or_default();
        let calls = k(Kind::Call);
        let players = k(Kind::Player);
        let tasks = k(Kind::Task);
        let mut f = vec![
            (
                "Voice calls".to_string(),
                format!(
                    "{} active: {} playing, {} paused, {} idle\npeak {} · joined {} · left {}",
                    self.calls_active,
                    self.calls_playing,
                    self.calls_paused,
                    self.calls_idle,
                    calls.peak,
                    calls.acquired,
                    calls.released
                ),
            ),
            (
                "Queues".to_string(),
                format!(
                    "{} players · {} tracks queued · peak {}",
                    self.queues, self.queued_tracks, players.peak
                ),
            ),
            (
                "yt-dlp".to_string(),
                format!(
                    "{} running · {} run · {} timed out\nversion {}",
                    self.ytdlp_running,
                    self.ytdlp_spawned,
                    self.ytdlp_timed_out,
                    self.ytdlp_version
                ),
            ),
            (
                "Tasks".to_string(),
                format!(
                    "{} tokio tasks · {} background ({} peak)",
                    self.tokio_tasks, tasks.current, tasks.peak
                ),
            ),
            (
                "Mixer".to_string(),
                format!(
                    "{} live on {} threads · {:.0} µs/cycle",
                    self.mixer_tasks_live, self.mixer_threads, self.mixer_cost_us
                ),
            ),
            (
                "Process".to_string(),
                format!(
                    "RSS {} · CPU {:.1}% · {} threads · {} fds\nup {}",
                    format_bytes(self.rss_bytes),
                    self.cpu_percent,
                    self.threads,
                    self.open_fds,
                    uptime(self.uptime)
                ),
            ),
        ];
        if let Some(c) = &self.cache {
            let rate = match crate::cache::metadata::hit_rate(c.hits, c.misses) {
                None => "no lookups yet".to_string(),
                Some(r) => format!("{:.0}% hit rate", r * 100.0),
            };
            f.push((
                "Cache".to_string(),
                format!(
                    "{} tracks · {} files, {} · {rate} ({} hits, {} misses)",
                    c.entries,
                    c.audio_files,
                    format_bytes(c.audio_bytes),
                    c.hits,
                    c.misses
                ),
            ));
        }
        let by_reason: BTreeMap<&str, u64> = self
            .cleanups
            .by_reason
            .iter()
            .map(|(r, n)| (r.label(), *n))
            .collect();
        f.push((
            "Cleanups".to_string(),
            format!(
                "{} total: {} automatic, {} forced, {} failed\n{}",
                self.cleanups.total,
                self.cleanups.automatic,
                self.cleanups.forced,
                self.cleanups.failed,
                counts(&by_reason)
            ),
        ));
        if let Some(c) = &self.cluster {
            f.push(("Cluster (▶ answered)".to_string(), c.text()));
        }
        f.push((
            "Leaks found / errors".to_string(),
            format!(
                "leaks: {}\nerrors: {}",
                counts(&self.leaks),
                counts(&self.errors)
            ),
        ));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::registry::CleanupReason;

    #[test]
    fn uptime_to_the_second() {
        assert_eq!(uptime(Duration::from_millis(3_723_400)), "1h 2m 3s");
    }

    #[test]
    fn renders_every_section() {
        let mut r = ResourceReport {
            calls_active: 2,
            calls_playing: 1,
            calls_idle: 1,
            ytdlp_version: "2026.10.26".into(),
            rss_bytes: 3 << 30,
            cache: Some(CacheFigures {
                entries: 10,
                audio_files: 2,
                audio_bytes: 1536,
                hits: 3,
                misses: 1,
            }),
            ..Default::default()
        };
        r.cleanups.by_reason.insert(CleanupReason::Alone, 2);
        r.cleanups.total = 2;
        r.leaks.insert("orphan call", 1);
        let text: String = r
            .fields()
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect();
        assert!(
            text.contains("2 active: 1 playing, 0 paused, 1 idle"),
            "{text}"
        );
        assert!(text.contains("75% hit rate"), "{text}");
        assert!(text.contains("alone 2"), "{text}");
        assert!(text.contains("orphan call 1"), "{text}");
        assert!(text.contains("version 2026.10.26"), "{text}");
        // Sizes as `format_bytes` writes them.
        assert!(text.contains("RSS 3 GiB"), "{text}");
        assert!(text.contains("2 files, 1.5 KiB"), "{text}");
        assert!(r.fields().len() <= 25, "Discord allows 25 fields");
    }

    #[test]
    fn the_cluster_shows_each_node_and_the_totals() {
        use crate::cluster::{NodeRow, NodeStats};
        let node = |id: &str, shards: Vec<u32>, calls| NodeRow {
            id: id.into(),
            host: format!("host-{id}"),
            version: "1.2.3".into(),
            uptime: Duration::from_secs(60),
            heartbeat_age: Duration::from_secs(2),
            stats: NodeStats {
                shards,
                calls,
                rss_bytes: 50 << 20,
                cpu_percent: 3.25,
            },
        };
        let r = ResourceReport {
            cluster: Some(ClusterFigures {
                this_node: "b".into(),
                nodes: vec![node("a", vec![0, 1], 2), node("b", vec![2], 1)],
                error: None,
            }),
            ..Default::default()
        };
        let fields = r.fields();
        let (_, text) = fields
            .iter()
            .find(|(n, _)| n.starts_with("Cluster"))
            .unwrap();
        assert!(
            text.starts_with("2 nodes · 3 shards running · 3 calls"),
            "{text}"
        );
        assert!(
            text.contains("\nhost-a · shards 0,1 · 2 calls · RSS 50 MiB"),
            "{text}"
        );
        assert!(text.contains("\n▶ host-b · shards 2 · 1 calls"), "{text}");
        assert!(text.contains("CPU 3.2% · v1.2.3 · beat 2s ago"), "{text}");
        let many = ClusterFigures {
            nodes: (0..12).map(|i| node(&i.to_string(), vec![i], 0)).collect(),
            ..Default::default()
        };
        let text = many.text();
        assert!(text.ends_with("and 4 more") && text.len() < 1024, "{text}");
        assert!(ResourceReport::default()
            .fields()
            .iter()
            .all(|(n, _)| !n.starts_with("Cluster")));
    }
}
