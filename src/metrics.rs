//! Counters exposed at `/metrics` in the Prometheus text format. Plain atomics: the hot
//! path pays one relaxed increment per event.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why an event was not stored. Low cardinality on purpose: it becomes a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    InvalidPayload,
    TooLarge,
    UnknownSite,
    Overloaded,
    StorageUnavailable,
    NoVisit,
}

impl Rejection {
    const ALL: [Rejection; 6] = [
        Rejection::InvalidPayload,
        Rejection::TooLarge,
        Rejection::UnknownSite,
        Rejection::Overloaded,
        Rejection::StorageUnavailable,
        Rejection::NoVisit,
    ];
    fn label(self) -> &'static str {
        match self {
            Rejection::InvalidPayload => "invalid_payload",
            Rejection::TooLarge => "too_large",
            Rejection::UnknownSite => "unknown_site",
            Rejection::Overloaded => "overloaded",
            Rejection::StorageUnavailable => "storage_unavailable",
            Rejection::NoVisit => "engagement_without_visit",
        }
    }
}

/// Upper bounds (seconds) of the commit latency histogram buckets.
const COMMIT_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    pub events_ingested: AtomicU64,
    pub events_dropped_bot: AtomicU64,
    rejected: [AtomicU64; 6],
    pub batches_committed: AtomicU64,
    pub batches_failed: AtomicU64,
    commit_buckets: [AtomicU64; 10],
    commit_count: AtomicU64,
    commit_micros_sum: AtomicU64,
}

impl Metrics {
    pub fn reject(&self, why: Rejection) {
        let i = Rejection::ALL.iter().position(|r| *r == why).expect("listed");
        self.rejected[i].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, why: Rejection) -> u64 {
        let i = Rejection::ALL.iter().position(|r| *r == why).expect("listed");
        self.rejected[i].load(Relaxed)
    }

    pub fn observe_commit(&self, seconds: f64) {
        for (i, bound) in COMMIT_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.commit_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Relaxed);
        self.commit_micros_sum.fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    /// Renders every metric; gauges that live elsewhere are passed in.
    pub fn render(&self, queue_depth: usize, queue_capacity: usize, live_visits: usize, role_leader: bool) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter("footfall_events_ingested_total", "Events stored.", self.events_ingested.load(Relaxed));
        counter("footfall_events_dropped_bot_total", "Events dropped because the client is a bot.", self.events_dropped_bot.load(Relaxed));
        counter("footfall_batches_committed_total", "Event batches committed to storage.", self.batches_committed.load(Relaxed));
        counter("footfall_batches_failed_total", "Event batches storage refused.", self.batches_failed.load(Relaxed));
        let _ = writeln!(out, "# HELP footfall_events_rejected_total Events not stored, by reason.\n# TYPE footfall_events_rejected_total counter");
        for (i, r) in Rejection::ALL.iter().enumerate() {
            let _ = writeln!(out, "footfall_events_rejected_total{{reason=\"{}\"}} {}", r.label(), self.rejected[i].load(Relaxed));
        }
        let _ = writeln!(out, "# HELP footfall_ingest_queue_depth Events waiting for the writer.\n# TYPE footfall_ingest_queue_depth gauge\nfootfall_ingest_queue_depth {queue_depth}");
        let _ = writeln!(out, "# HELP footfall_ingest_queue_capacity Capacity of the ingest queue.\n# TYPE footfall_ingest_queue_capacity gauge\nfootfall_ingest_queue_capacity {queue_capacity}");
        let _ = writeln!(out, "# HELP footfall_live_visits Visits that can still be extended.\n# TYPE footfall_live_visits gauge\nfootfall_live_visits {live_visits}");
        let _ = writeln!(out, "# HELP footfall_is_leader Whether this worker runs the scheduled jobs.\n# TYPE footfall_is_leader gauge\nfootfall_is_leader {}", u8::from(role_leader));
        let _ = writeln!(out, "# HELP footfall_commit_seconds Time to commit one event batch durably.\n# TYPE footfall_commit_seconds histogram");
        for (i, bound) in COMMIT_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "footfall_commit_seconds_bucket{{le=\"{bound}\"}} {}", self.commit_buckets[i].load(Relaxed));
        }
        let count = self.commit_count.load(Relaxed);
        let _ = writeln!(out, "footfall_commit_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "footfall_commit_seconds_sum {}", self.commit_micros_sum.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "footfall_commit_seconds_count {count}");
        out
    }
}
