//! How long things took, as histograms for `/metrics`: lookups (a `/play` query to a
//! track) and time to first audio (a track's turn to its audio handed to the mixer).
//!
//! Only kept when the metrics listener is on: the [`Registry`](super::Registry) holds
//! `None` otherwise, and the hot path's whole cost is that one `if let`. The histograms are
//! prometheus-client's, so `/metrics` serves them as they are, without copying buckets.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// How a lookup ended, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values Prometheus shows
pub enum LookupResult {
    /// Answered from the metadata cache.
    hit,
    /// Asked yt-dlp (nothing cached, or a stale entry) and got a track.
    miss,
    /// Nothing to play: yt-dlp failed, timed out, or the query was refused.
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    pub result: LookupResult,
}

type Constructor = fn() -> Histogram;

/// The histograms, shared by every clone (prometheus-client metrics are `Arc`s inside).
#[derive(Clone, Debug)]
pub struct Timings {
    pub lookups: Family<LookupLabels, Histogram, Constructor>,
    pub first_audio: Histogram,
}

/// 5 ms to about 40 s: a cache hit takes milliseconds, a yt-dlp search seconds, and
/// `ytdlp.timeout` (30 s by default) ends the rest.
fn lookup_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0,
    ])
}

/// 10 ms (a cached file) to 30 s (a slow stream behind a re-resolve).
fn first_audio_buckets() -> Histogram {
    Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lookups: Family::new_with_constructor(lookup_buckets),
            first_audio: first_audio_buckets(),
        }
    }
}

impl Timings {
    pub fn lookup(&self, result: LookupResult, took: Duration) {
        self.lookups
            .get_or_create(&LookupLabels { result })
            .observe(took.as_secs_f64());
    }

    pub fn first_audio(&self, took: Duration) {
        self.first_audio.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn clones_share_their_counts() {
        let t = Timings::default();
        let c = t.clone();
        c.lookup(LookupResult::hit, Duration::from_millis(3));
        c.lookup(LookupResult::failed, Duration::from_secs(31));
        c.first_audio(Duration::from_millis(200));
        let mut r = Registry::default();
        r.register("lookup", "", t.lookups.clone());
        r.register("first_audio", "", t.first_audio.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            "lookup_count{result=\"hit\"} 1",
            "lookup_count{result=\"failed\"} 1",
            "lookup_bucket{le=\"40.0\",result=\"failed\"} 1",
            "first_audio_sum 0.2",
            "first_audio_bucket{le=\"0.1\"} 0",
            "first_audio_bucket{le=\"0.25\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains("result=\"miss\""), "{text}");
    }
}
