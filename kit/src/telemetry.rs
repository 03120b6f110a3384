//! Logs (tracing) and metrics (the `metrics` facade, rendered as Prometheus text).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber: `RUST_LOG` filters (default `info`),
/// `TALLY_LOG_FORMAT=json` switches to one JSON object per line.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let json = std::env::var("TALLY_LOG_FORMAT").is_ok_and(|v| v == "json");
    // A second call (tests start several services in one process) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Lets one log line through per second and counts the ones held back, so a failure that
/// hits every request (a broker down, a store frozen) is logged once a second, not thousands
/// of times; the requests themselves are counted in metrics.
#[derive(Debug, Default)]
pub struct OncePerSecond {
    second: AtomicU64,
    held_back: AtomicU64,
}

impl OncePerSecond {
    pub const fn new() -> Self {
        Self {
            second: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one let through)` when this line may be logged.
    pub fn admit(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.admit_at(now)
    }

    fn admit_at(&self, second: u64) -> Option<u64> {
        let last = self.second.load(Ordering::Relaxed);
        if second != last
            && self
                .second
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `tracing::warn!` at most once a second per call site, with `held_back`, the lines held
/// back since the last one: for failures that can hit every request.
#[macro_export]
macro_rules! warn_once_a_second {
    ($($fields:tt)*) => {{
        static GATE: $crate::telemetry::OncePerSecond = $crate::telemetry::OncePerSecond::new();
        if let Some(held_back) = GATE.admit() {
            $crate::tracing::warn!(held_back, $($fields)*);
        }
    }};
}

/// Latency buckets in seconds, from 100 µs (a cached read) to 10 s (a timed-out publish).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Batch sizes, in events.
const SIZE_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 50000.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle. Histograms named
/// `*_seconds` get latency buckets, `*_events` and `*_rows` size buckets.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_events".into()), SIZE_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_rows".into()), SIZE_BUCKETS)
                })
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("the metrics recorder is installed once per process")
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::OncePerSecond;

    #[test]
    fn one_line_a_second_gets_through_and_the_rest_are_counted() {
        let gate = OncePerSecond::new();
        assert_eq!(gate.admit_at(100), Some(0));
        assert_eq!(gate.admit_at(100), None);
        assert_eq!(gate.admit_at(100), None);
        assert_eq!(gate.admit_at(101), Some(2));
        assert_eq!(gate.admit_at(101), None);
        assert_eq!(gate.admit_at(105), Some(1));
    }
}
