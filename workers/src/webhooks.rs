//! Webhook delivery (Standard Webhooks), as apalis jobs on the Postgres backend.
//!
//! Messages are recorded, with a delivery per subscribed endpoint, in the transaction that
//! makes what they report (`tally_schema::webhooks`). Each second the scheduler claims the
//! due deliveries (`webhook_deliveries`, under a lease) and pushes them as jobs, each holding
//! one endpoint's deliveries; a job sends them, signed, and records every attempt with the
//! endpoint's health. So:
//!
//! - nothing is lost to a dead worker: a delivery whose job never reports back is claimed
//!   again once its lease runs out; a job that finds its lease taken sends nothing;
//! - a receiver sees every message at least once, each time with the same `webhook-id`;
//! - a failed attempt is retried on the schedule (by default over 27 hours); an endpoint that
//!   fails backs off as a whole and gets one delivery at a time (a probe) until it answers,
//!   so a dead or slow receiver holds a bounded share of the workers and never delays the
//!   others or ingest; one failing for `disable_after` is disabled until an operator
//!   re-enables it, its deliveries kept;
//! - requests go only to the registered URL: redirects are not followed (a 3xx is a failed
//!   attempt), each has a timeout, and only the first bytes of an answer are read (the log's
//!   excerpt).

use crate::store::PgStore;
use crate::store::webhooks::{Claimed, Outcome, Taken};
use apalis::prelude::{BoxDynError, Data, TaskSink};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, clap::Args)]
pub struct WebhookConfig {
    /// How long one delivery attempt may take, connecting included, in milliseconds.
    #[arg(long, env = "TALLY_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// Seconds to wait before each retry of a failed delivery, comma-separated (the defaults
    /// are Standard Webhooks' suggestion: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). A
    /// delivery fails once all are spent; a failing endpoint backs off by the same steps.
    #[arg(
        long,
        env = "TALLY_WEBHOOK_RETRY_SCHEDULE",
        value_delimiter = ',',
        default_value = "5,300,1800,7200,18000,36000,36000"
    )]
    pub webhook_retry_schedule: Vec<f64>,
    /// An endpoint failing every attempt for this long is disabled, in seconds.
    #[arg(long, env = "TALLY_WEBHOOK_DISABLE_AFTER_SECS", default_value_t = 5 * 86_400)]
    pub webhook_disable_after_secs: u64,
    /// Deliveries one healthy endpoint may have in flight (a failing one: one).
    #[arg(
        long,
        env = "TALLY_WEBHOOK_IN_FLIGHT_PER_ENDPOINT",
        default_value_t = 1000
    )]
    pub webhook_in_flight_per_endpoint: u32,
    /// Deliveries one scheduler tick claims at most.
    #[arg(long, env = "TALLY_WEBHOOK_CLAIM_MAX", default_value_t = 5000)]
    pub webhook_claim_max: u32,
    /// Deliveries (to one endpoint) per job.
    #[arg(long, env = "TALLY_WEBHOOK_JOB_DELIVERIES", default_value_t = 100)]
    pub webhook_job_deliveries: usize,
    /// Requests one job has open at once.
    #[arg(long, env = "TALLY_WEBHOOK_JOB_REQUESTS", default_value_t = 10)]
    pub webhook_job_requests: usize,
    /// Delivery jobs one worker runs at once.
    #[arg(long, env = "TALLY_WEBHOOK_CONCURRENCY", default_value_t = 64)]
    pub webhook_concurrency: usize,
    /// A delivery claimed this long ago without a result is claimed again, in seconds (its
    /// worker died); more than the timeout.
    #[arg(long, env = "TALLY_WEBHOOK_LEASE_SECS", default_value_t = 120)]
    pub webhook_lease_secs: u64,
    /// Bytes of an answer kept in the attempt log.
    #[arg(long, env = "TALLY_WEBHOOK_EXCERPT_BYTES", default_value_t = 1024)]
    pub webhook_excerpt_bytes: usize,
    /// How long what was told is kept, in seconds: finished messages with their deliveries
    /// (a replay reaches back this far), the attempt log, sent or failed emails. A message
    /// still pending for some endpoint (a disabled one) is kept until it is delivered, fails
    /// or the endpoint is deleted.
    #[arg(long, env = "TALLY_WEBHOOK_RETENTION_SECS", default_value_t = 30 * 86_400)]
    pub webhook_retention_secs: u64,
    /// How often the workers delete what is past the retention, in seconds (each time at most
    /// 10,000 rows of each kind, oldest first).
    #[arg(long, env = "TALLY_WEBHOOK_PRUNE_EVERY_SECS", default_value_t = 60)]
    pub webhook_prune_every_secs: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            webhook_timeout_ms: 10_000,
            webhook_retry_schedule: vec![5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
            webhook_disable_after_secs: 5 * 86_400,
            webhook_in_flight_per_endpoint: 1000,
            webhook_claim_max: 5000,
            webhook_job_deliveries: 100,
            webhook_job_requests: 10,
            webhook_concurrency: 64,
            webhook_lease_secs: 120,
            webhook_excerpt_bytes: 1024,
            webhook_retention_secs: 30 * 86_400,
            webhook_prune_every_secs: 60,
        }
    }
}

impl WebhookConfig {
    fn schedule(&self) -> Vec<Duration> {
        durations(&self.webhook_retry_schedule)
    }
}

/// A retry schedule in seconds as durations, each within 0 s to 30 days; an empty one still
/// retries once, after 5 s.
pub(crate) fn durations(seconds: &[f64]) -> Vec<Duration> {
    let schedule: Vec<Duration> = seconds
        .iter()
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 30.0 * 86_400.0)))
        .collect();
    match schedule.is_empty() {
        true => vec![Duration::from_secs(5)],
        false => schedule,
    }
}

/// One endpoint's deliveries, as one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub deliveries: Vec<Claimed>,
}

pub struct Deliverer {
    store: PgStore,
    http: reqwest::Client,
    config: WebhookConfig,
    schedule: Vec<Duration>,
    /// When the last pruning ran (none yet: at the first tick).
    pruned_at: std::sync::Mutex<Option<Instant>>,
}

/// Rows of each kind one pruning deletes at most.
const PRUNE_LIMIT: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Deliverer {
    pub fn new(store: PgStore, config: WebhookConfig) -> Result<Self, DeliveryError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.webhook_timeout_ms))
            .user_agent(concat!("Tally-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let schedule = config.schedule();
        Ok(Self {
            store,
            http,
            config,
            schedule,
            pruned_at: std::sync::Mutex::new(None),
        })
    }

    /// Deletes what is past the retention, when a pruning is due.
    #[tracing::instrument(name = "webhook_prune", skip_all)]
    pub async fn prune(&self) -> Result<(), DeliveryError> {
        let every = Duration::from_secs(self.config.webhook_prune_every_secs);
        {
            let mut last = self.pruned_at.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < every) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let retention = Duration::from_secs(self.config.webhook_retention_secs);
        let pruned = self.store.prune_notices(retention, PRUNE_LIMIT).await?;
        for (kind, n) in [
            ("message", pruned.messages),
            ("attempt", pruned.attempts),
            ("email", pruned.emails),
        ] {
            metrics::counter!("tally_workers_notices_pruned_total", "kind" => kind).increment(n);
        }
        if pruned != crate::store::webhooks::Pruned::default() {
            tracing::info!(?pruned, "Told notices past the retention deleted.");
        }
        Ok(())
    }

    /// Claims the due deliveries and groups them into jobs, one endpoint per job.
    pub async fn claim(&self) -> Result<Vec<DeliveryJob>, DeliveryError> {
        let c = &self.config;
        let claimed = self
            .store
            .claim_webhook_deliveries(
                c.webhook_claim_max,
                c.webhook_in_flight_per_endpoint,
                Duration::from_secs(c.webhook_lease_secs),
            )
            .await?;
        metrics::counter!("tally_workers_webhook_claimed_total").increment(claimed.len() as u64);
        let mut by_endpoint: BTreeMap<String, Vec<Claimed>> = BTreeMap::new();
        for delivery in claimed {
            by_endpoint
                .entry(delivery.endpoint_id.clone())
                .or_default()
                .push(delivery);
        }
        let size = c.webhook_job_deliveries.max(1);
        Ok(by_endpoint
            .into_values()
            .flat_map(|deliveries| {
                deliveries
                    .chunks(size)
                    .map(|chunk| DeliveryJob {
                        deliveries: chunk.to_vec(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// Sends a job's deliveries that are still its own, then records every attempt.
    #[tracing::instrument(name = "webhook_deliveries", skip_all, fields(deliveries = job.deliveries.len()))]
    pub async fn run(&self, job: &DeliveryJob) -> Result<(), DeliveryError> {
        let taken = self.store.take_webhook_deliveries(&job.deliveries).await?;
        if taken.is_empty() {
            return Ok(());
        }
        // The first failure stops the job: an endpoint that times out or errs on one request
        // most likely does on all, and the rest wait for its backoff (unattempted) instead of
        // each holding a request slot for the timeout.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let requests = self.config.webhook_job_requests.max(1);
        let mut results = futures::stream::iter(taken)
            .map(|t| {
                let stop = &stop;
                async move {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(Claimed {
                            message_id: t.message_id,
                            endpoint_id: t.endpoint_id,
                            queued_at: t.queued_at,
                        });
                    }
                    let outcome = self.attempt(&t).await;
                    if !outcome.delivered {
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(outcome)
                }
            })
            .buffer_unordered(requests)
            // Recorded as they finish (a few at a time when they finish together), so a worker
            // killed mid-job leaves few sent but unrecorded, which go again with their ids.
            .ready_chunks(requests);
        while let Some(chunk) = results.next().await {
            let (outcomes, unattempted): (Vec<_>, Vec<_>) =
                chunk.into_iter().partition(Result::is_ok);
            let outcomes: Vec<Outcome> = outcomes.into_iter().filter_map(Result::ok).collect();
            let unattempted: Vec<Claimed> =
                unattempted.into_iter().filter_map(Result::err).collect();
            let disabled = self
                .store
                .record_webhook_attempts(
                    &outcomes,
                    &unattempted,
                    &self.schedule,
                    Duration::from_secs(self.config.webhook_disable_after_secs),
                )
                .await?;
            for endpoint in disabled {
                tracing::warn!(endpoint, "Webhook endpoint failing too long; disabled.");
                metrics::counter!("tally_workers_webhook_endpoints_disabled_total").increment(1);
            }
        }
        Ok(())
    }

    /// One signed POST of a message to its endpoint.
    #[tracing::instrument(name = "webhook_attempt", skip_all, fields(message = %t.message_id, endpoint = %t.endpoint_id))]
    async fn attempt(&self, t: &Taken) -> Outcome {
        let started = Instant::now();
        let timestamp = chrono::Utc::now().timestamp();
        let result = match signature(t, timestamp) {
            Ok(signature) => self.post(t, timestamp, signature).await,
            Err(e) => Err(format!("cannot sign: {e}")),
        };
        let latency = started.elapsed();
        let (status_code, error, excerpt) = match result {
            Ok((status, excerpt)) => (Some(status), None, Some(excerpt)),
            Err(error) => (None, Some(error), None),
        };
        let delivered = status_code.is_some_and(|s| (200..300).contains(&s));
        let label = match (delivered, status_code) {
            (true, _) => "delivered",
            (false, Some(_)) => "refused",
            (false, None) => "unanswered",
        };
        metrics::counter!("tally_workers_webhook_attempts_total", "status" => label).increment(1);
        metrics::histogram!("tally_workers_webhook_attempt_seconds").record(latency.as_secs_f64());
        let retry_after = match delivered {
            true => None,
            false => self.schedule.get(t.attempts.max(0) as usize).copied(),
        };
        if !delivered {
            tracing::info!(?status_code, ?error, retry = ?retry_after, "Webhook attempt failed.");
        }
        Outcome {
            message_id: t.message_id.clone(),
            endpoint_id: t.endpoint_id.clone(),
            status_code,
            latency,
            error,
            excerpt,
            delivered,
            retry_after,
        }
    }

    /// POSTs the body; answers the status and the first bytes of the answer.
    async fn post(
        &self,
        t: &Taken,
        timestamp: i64,
        signature: String,
    ) -> Result<(u16, String), String> {
        let mut response = self
            .http
            .post(&t.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &t.message_id)
            .header(
                standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
                timestamp.to_string(),
            )
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(t.body.clone())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        // Only the excerpt is read; the rest of a large answer is dropped with the connection.
        let limit = self.config.webhook_excerpt_bytes;
        let mut excerpt = Vec::new();
        while excerpt.len() < limit {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status is the answer; a body cut short only shortens the excerpt.
                Err(_) => break,
            }
        }
        excerpt.truncate(limit);
        Ok((status, String::from_utf8_lossy(&excerpt).into_owned()))
    }
}

/// `webhook-signature`: `v1,<base64 HMAC-SHA256>` with the secret, and with the previous one
/// too while a rotation's overlap lasts, space-separated (receivers accept either).
fn signature(t: &Taken, timestamp: i64) -> Result<String, standardwebhooks::WebhookError> {
    let mut signatures = Vec::with_capacity(2);
    for secret in std::iter::once(&t.secret).chain(&t.previous_secret) {
        let signer = standardwebhooks::Webhook::new(secret)?;
        signatures.push(signer.sign(&t.message_id, timestamp, t.body.as_bytes())?);
    }
    Ok(signatures.join(" "))
}

/// A failed request, said briefly: a timeout, a refused connection, or the client's words.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    }
}

/// Each second: jobs for the due deliveries.
pub async fn schedule_deliveries(
    _tick: apalis_cron::Tick,
    deliverer: Data<Arc<Deliverer>>,
    jobs: Data<apalis_postgres::PostgresStorage<DeliveryJob>>,
) -> Result<(), BoxDynError> {
    let mut jobs = (*jobs).clone();
    for job in deliverer.claim().await? {
        jobs.push(job).await?;
    }
    deliverer.prune().await?;
    Ok(())
}

/// The apalis handler: a job's attempts are recorded even when they fail, so only storage
/// errors make apalis retry it (and its lease keeps a retry from sending twice).
pub async fn run_deliveries(
    job: DeliveryJob,
    deliverer: Data<Arc<Deliverer>>,
) -> Result<(), BoxDynError> {
    deliverer.run(&job).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_reference_library_and_name_both_secrets_in_an_overlap() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let old = "whsec_dGhlIG9sZCBzZWNyZXQsIHN0aWxsIHZhbGlk";
        let taken = Taken {
            message_id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk".into(),
            endpoint_id: "ep_1".into(),
            attempts: 0,
            queued_at: chrono::Utc::now(),
            body: r#"{"email":"test@example.com","username":"test_user"}"#.into(),
            url: "http://127.0.0.1/".into(),
            secret: secret.into(),
            previous_secret: None,
        };
        // The reference library's own example.
        assert_eq!(
            signature(&taken, 1649367553).unwrap(),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        let now = chrono::Utc::now().timestamp();
        let both = signature(
            &Taken {
                previous_secret: Some(old.into()),
                ..taken.clone()
            },
            now,
        )
        .unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("webhook-id", taken.message_id.parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", both.parse().unwrap());
        for key in [secret, old] {
            let verifier = standardwebhooks::Webhook::new(key).unwrap();
            verifier
                .verify(taken.body.as_bytes(), &headers)
                .expect("verifies");
        }
    }

    #[test]
    fn an_empty_schedule_still_retries() {
        let config = WebhookConfig {
            webhook_retry_schedule: vec![],
            ..Default::default()
        };
        assert_eq!(config.schedule(), [Duration::from_secs(5)]);
    }
}
