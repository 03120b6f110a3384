//! The open-loop engine: request `i` is due at `start + i / rate`, whatever earlier answers
//! did, and its latency runs from that due time (no coordinated omission). Requests that wait
//! for one of the `connections` permits wait on the clock too, as a real client's would.
//!
//! [`closed_loop`] is the same engine with every request due at once: `connections` in
//! flight, the next sent as one is answered, latency from sending. It measures how fast a
//! burst drains, not latency under an arrival rate.

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

/// How many requests, how fast, over how many connections.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct Plan {
    pub requests: usize,
    /// Requests per second offered; infinite in a [`closed_loop`] run (all due at once).
    pub rate: f64,
    /// Requests in flight at most (the client's connection budget).
    pub connections: usize,
}

/// What one request got back. Status 0: no answer (connect error, reset, timeout).
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// Event ids acknowledged by this answer (one, or a batch's).
    pub acknowledged: Vec<Uuid>,
}

/// One tenth of a second of the run, for the plot, by when the answers came.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Slice {
    /// Start of the slice, seconds after the first due time.
    pub t: f64,
    /// Answers and 2xx answers in the slice, as rates per second.
    pub answered_per_s: f64,
    pub accepted_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Length of a [`Slice`].
pub const SLICE_MS: u128 = 100;

#[derive(Debug)]
pub struct Run {
    pub plan: Plan,
    pub statuses: BTreeMap<u16, usize>,
    pub latency: Histogram<u64>,
    pub timeline: Vec<Slice>,
    /// From the first due time to the last answer.
    pub elapsed: Duration,
    pub acknowledged: Vec<Uuid>,
    /// What the timeline is made from, kept so runs of several processes can be merged.
    slices: BTreeMap<u64, SliceStats>,
}

/// Answers, 2xx answers and latencies of one slice.
#[derive(Clone, Debug)]
struct SliceStats {
    answered: u64,
    accepted: u64,
    latency: Histogram<u64>,
}

impl SliceStats {
    fn new() -> Self {
        Self {
            answered: 0,
            accepted: 0,
            latency: histogram(),
        }
    }
}

/// Gathers the answers of one run (or of one process's share of it) as they come.
pub struct Collector {
    start: Instant,
    statuses: BTreeMap<u16, usize>,
    latency: Histogram<u64>,
    slices: BTreeMap<u64, SliceStats>,
    acknowledged: Vec<Uuid>,
    last: Instant,
}

impl Collector {
    /// For a run whose first request is due at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            statuses: BTreeMap::new(),
            latency: histogram(),
            slices: BTreeMap::new(),
            acknowledged: Vec::new(),
            last: start,
        }
    }

    /// The answer to a request due at `due`, answered at `answered`.
    pub fn record(&mut self, due: Instant, answered: Instant, answer: Answer) {
        let took = answered.saturating_duration_since(due).as_micros() as u64;
        self.latency.saturating_record(took.max(1));
        let slice = (answered.saturating_duration_since(self.start).as_millis() / SLICE_MS) as u64;
        let entry = self.slices.entry(slice).or_insert_with(SliceStats::new);
        entry.answered += 1;
        if (200..300).contains(&answer.status) {
            entry.accepted += 1;
        }
        entry.latency.saturating_record(took.max(1));
        *self.statuses.entry(answer.status).or_insert(0) += 1;
        self.acknowledged.extend(answer.acknowledged);
        self.last = self.last.max(answered);
    }

    pub fn statuses(&self) -> &BTreeMap<u16, usize> {
        &self.statuses
    }

    pub fn finish(self, plan: Plan) -> Run {
        Run {
            plan,
            timeline: timeline(&self.slices),
            statuses: self.statuses,
            latency: self.latency,
            elapsed: self.last.saturating_duration_since(self.start),
            acknowledged: self.acknowledged,
            slices: self.slices,
        }
    }
}

fn timeline(slices: &BTreeMap<u64, SliceStats>) -> Vec<Slice> {
    let per_s = 1000.0 / SLICE_MS as f64;
    slices
        .iter()
        .map(|(slice, stats)| Slice {
            t: *slice as f64 * SLICE_MS as f64 / 1000.0,
            answered_per_s: stats.answered as f64 * per_s,
            accepted_per_s: stats.accepted as f64 * per_s,
            p50_ms: stats.latency.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: stats.latency.value_at_quantile(0.99) as f64 / 1000.0,
        })
        .collect()
}

/// A histogram as `(value, count)` pairs, and back: how a process hands its share on.
fn pairs(h: &Histogram<u64>) -> Pairs {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

fn from_pairs(pairs: &[(u64, u64)]) -> Histogram<u64> {
    let mut h = histogram();
    for &(value, count) in pairs {
        h.saturating_record_n(value, count);
    }
    h
}

/// A histogram as `(value, count)` pairs.
type Pairs = Vec<(u64, u64)>;

/// One process's share of a run, as it travels to the process that merges them: every
/// answer with its latency and slice, timed against the same wall-clock start.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Share {
    pub plan: Plan,
    pub statuses: BTreeMap<u16, usize>,
    latency: Pairs,
    /// `(slice, answered, accepted, latency)`.
    slices: Vec<(u64, u64, u64, Pairs)>,
    elapsed_us: u64,
    pub acknowledged: Vec<Uuid>,
}

impl Run {
    pub fn share(&self) -> Share {
        Share {
            plan: self.plan,
            statuses: self.statuses.clone(),
            latency: pairs(&self.latency),
            slices: self
                .slices
                .iter()
                .map(|(k, s)| (*k, s.answered, s.accepted, pairs(&s.latency)))
                .collect(),
            elapsed_us: self.elapsed.as_micros() as u64,
            acknowledged: self.acknowledged.clone(),
        }
    }

    /// The shares of several processes as one run of `plan`.
    pub fn merged(plan: Plan, shares: Vec<Share>) -> Run {
        let mut statuses = BTreeMap::new();
        let mut latency = histogram();
        let mut slices: BTreeMap<u64, SliceStats> = BTreeMap::new();
        let mut acknowledged = Vec::new();
        let mut elapsed = Duration::ZERO;
        for share in shares {
            for (status, n) in share.statuses {
                *statuses.entry(status).or_insert(0) += n;
            }
            let _ = latency.add(from_pairs(&share.latency));
            for (k, answered, accepted, h) in share.slices {
                let entry = slices.entry(k).or_insert_with(SliceStats::new);
                entry.answered += answered;
                entry.accepted += accepted;
                let _ = entry.latency.add(from_pairs(&h));
            }
            acknowledged.extend(share.acknowledged);
            elapsed = elapsed.max(Duration::from_micros(share.elapsed_us));
        }
        Run {
            plan,
            statuses,
            latency,
            timeline: timeline(&slices),
            elapsed,
            acknowledged,
            slices,
        }
    }

    /// Requests answered with a 2xx.
    pub fn accepted(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn accepted_per_second(&self) -> f64 {
        self.accepted() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Runs `plan`, calling `send(i)` for request `i` at its due time.
pub async fn run<F, Fut>(label: &str, plan: Plan, send: F) -> Run
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let interval = Duration::from_secs_f64(1.0 / plan.rate);
    let due = (0..plan.requests).map(|i| interval.mul_f64(i as f64));
    run_schedule(label, plan, due, send).await
}

/// Phases of constant rate, one after the other: `(seconds, requests per second)`.
pub fn phases(phases: &[(f64, f64)], connections: usize) -> (Plan, Vec<Duration>) {
    let mut due = Vec::new();
    let mut offset = 0.0;
    for &(seconds, rate) in phases {
        let n = (seconds * rate).round() as usize;
        due.extend((0..n).map(|i| Duration::from_secs_f64(offset + i as f64 / rate)));
        offset += seconds;
    }
    let plan = Plan {
        requests: due.len(),
        rate: due.len() as f64 / offset.max(1e-9),
        connections,
    };
    (plan, due)
}

/// Runs `plan.requests` requests, request `i` due `due[i]` after the start (in order).
pub async fn run_schedule<F, Fut>(
    label: &str,
    plan: Plan,
    due: impl IntoIterator<Item = Duration>,
    send: F,
) -> Run
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Answer> + Send + 'static,
{
    drive(label, plan, due, Latency::FromDue, send).await
}

/// Closed loop: `requests` requests all due at once, at most `connections` in flight, each
/// sent as soon as one is answered; latency runs from sending, as such a client sees it.
pub async fn closed_loop<F, Fut>(label: &str, requests: usize, connections: usize, send: F) -> Run
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let plan = Plan {
        requests,
        rate: f64::INFINITY,
        connections,
    };
    let due = std::iter::repeat(Duration::ZERO);
    drive(label, plan, due, Latency::FromSending, send).await
}

/// Where a request's latency starts.
#[derive(Clone, Copy)]
enum Latency {
    /// Its due time: waiting for a connection counts (open loop).
    FromDue,
    /// When it leaves, a connection in hand (closed loop).
    FromSending,
}

async fn drive<F, Fut>(
    label: &str,
    plan: Plan,
    due: impl IntoIterator<Item = Duration>,
    latency: Latency,
    send: F,
) -> Run
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let bar = ProgressBar::new(plan.requests as u64).with_style(
        ProgressStyle::with_template(
            "{prefix:>18} [{bar:40}] {pos}/{len} answered {msg} ({elapsed})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let permits = Arc::new(Semaphore::new(plan.connections.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Instant, Answer)>();
    let start = Instant::now() + Duration::from_millis(20);

    let collector = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut collector = Collector::new(start);
            while let Some((due, answered, answer)) = rx.recv().await {
                collector.record(due, answered, answer);
                bar.inc(1);
                if bar.position().is_multiple_of(500) {
                    bar.set_message(format!("{:?}", collector.statuses()));
                }
            }
            collector
        })
    };

    for (i, offset) in due.into_iter().enumerate().take(plan.requests) {
        let due = start + offset;
        tokio::time::sleep_until(due.into()).await;
        // A closed loop makes the next request only when one is answered; an open loop makes
        // it now, and it waits for a connection on the clock.
        let held = match latency {
            Latency::FromDue => None,
            Latency::FromSending => permits.clone().acquire_owned().await.ok(),
        };
        let request = send(i);
        let (permits, tx) = (permits.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = match held {
                Some(permit) => permit,
                None => match permits.acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let from = match latency {
                Latency::FromDue => due,
                Latency::FromSending => Instant::now(),
            };
            let answer = request.await;
            let _ = tx.send((from, Instant::now(), answer));
        });
    }
    drop(tx);
    let collector = collector.await.expect("collector runs");
    bar.finish_with_message(format!("{:?}", collector.statuses()));
    collector.finish(plan)
}

/// An HTTP answer turned into an [`Answer`]: the status, and the ids a 202 (one event) or a
/// batch's 207/200 (each item's) acknowledged.
pub async fn answer_of(response: Result<reqwest::Response, reqwest::Error>) -> Answer {
    let Ok(response) = response else {
        return Answer::default();
    };
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let mut acknowledged = Vec::new();
    if status == 202 {
        acknowledged.extend(body["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()));
    }
    for item in body["results"].as_array().into_iter().flatten() {
        if item["status"] == 202 {
            acknowledged.extend(item["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()));
        }
    }
    Answer {
        status,
        acknowledged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_leave_on_schedule_and_latency_counts_from_the_due_time() {
        // 1 connection, answers take 20 ms, 10 requests offered at 1000/s: each waits for the
        // previous one, so the last is due at ~9 ms and answered at ~200 ms.
        let plan = Plan {
            requests: 10,
            rate: 1000.0,
            connections: 1,
        };
        let run = run("test", plan, |_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Answer {
                status: 202,
                acknowledged: vec![Uuid::new_v4()],
            }
        })
        .await;
        assert_eq!(run.accepted(), 10);
        assert_eq!(run.acknowledged.len(), 10);
        let max_ms = run.latency.max() as f64 / 1000.0;
        assert!(
            max_ms > 180.0,
            "queueing behind the slow connection counts: {max_ms} ms"
        );
        assert!(run.quantile_ms(0.0) >= 19.0);
    }

    #[tokio::test]
    async fn a_closed_loop_counts_latency_from_sending() {
        // The same 10 slow answers over 1 connection: each waits for the previous one, but
        // only its own 20 ms count; the run takes ~200 ms.
        let run = closed_loop("test", 10, 1, |_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Answer {
                status: 202,
                acknowledged: vec![Uuid::new_v4()],
            }
        })
        .await;
        assert_eq!(run.accepted(), 10);
        assert_eq!(run.acknowledged.len(), 10);
        let max_ms = run.latency.max() as f64 / 1000.0;
        assert!(
            (19.0..100.0).contains(&max_ms),
            "queueing does not count: {max_ms} ms"
        );
        assert!(
            run.elapsed >= Duration::from_millis(190),
            "{:?}",
            run.elapsed
        );
        assert!(run.plan.rate.is_infinite());
    }

    #[test]
    fn phases_follow_each_other_at_their_own_rates() {
        let (plan, due) = phases(&[(1.0, 10.0), (0.5, 20.0)], 4);
        assert_eq!(plan.requests, 20);
        assert_eq!(due.len(), 20);
        assert_eq!(due[9], Duration::from_millis(900));
        assert_eq!(due[10], Duration::from_secs(1));
        assert_eq!(due[11], Duration::from_millis(1050));
        assert!((plan.rate - 20.0 / 1.5).abs() < 1e-9);
    }

    #[tokio::test]
    async fn unanswered_requests_are_status_zero() {
        let plan = Plan {
            requests: 3,
            rate: 1000.0,
            connections: 8,
        };
        let run = run("test", plan, |_| async { Answer::default() }).await;
        assert_eq!(run.statuses.get(&0), Some(&3));
        assert_eq!(run.accepted(), 0);
    }

    #[test]
    fn shares_of_several_processes_merge_into_one_run() {
        let start = Instant::now();
        let plan = Plan {
            requests: 4,
            rate: 10.0,
            connections: 4,
        };
        let share = |ms: [u64; 2], status: u16| {
            let mut c = Collector::new(start);
            for m in ms {
                let answer = Answer {
                    status,
                    acknowledged: if status == 202 {
                        vec![Uuid::new_v4()]
                    } else {
                        vec![]
                    },
                };
                c.record(start, start + Duration::from_millis(m), answer);
            }
            c.finish(plan).share()
        };
        // Through JSON, as between processes.
        let json = serde_json::to_string(&share([10, 150], 202)).unwrap();
        let shares = vec![serde_json::from_str(&json).unwrap(), share([20, 400], 503)];
        let run = Run::merged(plan, shares);
        assert_eq!(run.statuses.get(&202), Some(&2));
        assert_eq!(run.statuses.get(&503), Some(&2));
        assert_eq!(run.acknowledged.len(), 2);
        assert_eq!(run.latency.len(), 4);
        assert!((run.quantile_ms(1.0) - 400.0).abs() < 1.0);
        assert_eq!(run.elapsed, Duration::from_millis(400));
        // Slice 0 holds one answer of each share.
        assert_eq!(run.timeline[0].answered_per_s, 20.0);
        assert_eq!(run.timeline[0].accepted_per_s, 10.0);
    }
}
