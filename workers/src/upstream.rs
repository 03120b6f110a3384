//! The upstream poller: every second (apalis-cron) it looks at each channel that names an
//! upstream URL and, when that upstream is due, fetches it and publishes the value to the
//! channel if it changed.
//!
//! - Due: at most one call per `every_secs` across every worker — the worker that sets the
//!   channel's turn key in Redis (`SET NX PX`) makes the call, the others skip it.
//! - Bounded: a token bucket per upstream (`burst`, `per_minute`) caps the calls this worker
//!   makes whatever the schedule says; each call has a timeout and a response-size bound.
//! - Unchanged values are not published: the new value is compared with the channel's newest
//!   message, and published only if the channel still ends there (an optimistic check on the
//!   stream's last sequence), so two workers never publish the same change twice.
//! - A circuit breaker: after `failures_to_open` failures in a row no call is made for
//!   `open_secs`, then one call tries again. When it opens, the channel's last good value is
//!   published again as `stale`, so followers show it marked as such; the next good value
//!   (even an unchanged one) is published as a fresh message.

use crate::store::PgStore;
use governor::{DefaultDirectRateLimiter, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_kit::channels::{self as streams, ChannelError, Outgoing};
use tally_schema::StreamSpec;
use tally_schema::channels::{Channel, MessageKind, Upstream};
use tally_schema::ids::ChannelId;
use tally_schema::redis_keys::Keys;

/// Why a fetch failed (each is a `status` of `tally_workers_upstream_calls_total`).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no answer within the timeout")]
    Timeout,
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answered more than {0} bytes")]
    TooLarge(u32),
    #[error("answered something that is not JSON: {0}")]
    NotJson(String),
}

impl FetchError {
    fn status(&self) -> &'static str {
        match self {
            FetchError::Timeout => "timeout",
            FetchError::Request(_) => "unreachable",
            FetchError::Status(_) => "http_error",
            FetchError::TooLarge(_) => "too_large",
            FetchError::NotJson(_) => "not_json",
        }
    }
}

/// One upstream's state on this worker. A changed definition starts it afresh.
struct State {
    upstream: Upstream,
    bucket: DefaultDirectRateLimiter,
    next_due: Instant,
    failures: u32,
    open_until: Option<Instant>,
}

impl State {
    fn new(upstream: Upstream, now: Instant) -> Self {
        let per_minute = NonZeroU32::new(upstream.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(upstream.burst).unwrap_or(NonZeroU32::MIN);
        Self {
            bucket: DefaultDirectRateLimiter::direct(
                Quota::per_minute(per_minute).allow_burst(burst),
            ),
            upstream,
            next_due: now,
            failures: 0,
            open_until: None,
        }
    }
}

impl State {
    /// Due, and not held back by an open circuit; a due call sets the next due time.
    fn gate(&mut self, now: Instant) -> Gate {
        if now < self.next_due {
            return Gate::NotDue;
        }
        self.next_due = now + self.upstream_interval().saturating_sub(TICK_SLACK);
        match self.open_until {
            Some(until) if now < until => Gate::Open,
            _ => Gate::Go,
        }
    }

    fn upstream_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.upstream.every_secs))
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    /// Counts a failure; true when it opens the circuit (again, after a failed retry).
    fn failed(&mut self, now: Instant) -> bool {
        self.failures += 1;
        if self.failures < self.upstream.failures_to_open {
            return false;
        }
        self.open_until = Some(now + Duration::from_secs(u64::from(self.upstream.open_secs)));
        true
    }
}

/// Ticks come once a second, each a little later or sooner than the last (the definitions are
/// read first): an upstream is due, and its turn free, half a tick before its interval is
/// up, so a call every `every_secs` lands on every `every_secs`-th tick, not every other one.
const TICK_SLACK: Duration = Duration::from_millis(500);

/// What the breaker says about a call now.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    NotDue,
    Open,
    Go,
}

pub struct Poller {
    pub store: PgStore,
    pub js: async_nats::jetstream::Context,
    pub spec: StreamSpec,
    redis: redis::Client,
    /// Connected on first use: the workers start (and write Postgres) without Redis.
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    pub keys: Keys,
    pub http: reqwest::Client,
    states: Mutex<HashMap<ChannelId, State>>,
}

impl Poller {
    pub fn new(
        store: PgStore,
        js: async_nats::jetstream::Context,
        spec: StreamSpec,
        redis: redis::Client,
        keys: Keys,
    ) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client builds");
        Self {
            store,
            js,
            spec,
            redis,
            connection: tokio::sync::OnceCell::new(),
            keys,
            http,
            states: Mutex::default(),
        }
    }

    /// One tick: every channel with an upstream that is due, one after another.
    pub async fn tick(&self) -> Result<(), crate::store::StoreError> {
        let channels = self.store.channels_with_upstream().await?;
        let now = Instant::now();
        {
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            states.retain(|id, _| channels.iter().any(|c| &c.id == id));
        }
        for channel in channels {
            let Some(upstream) = channel.upstream.clone() else {
                continue;
            };
            let gate = self.gate(&channel.id, &upstream, now);
            match gate {
                Gate::NotDue => continue,
                Gate::Open => {
                    skipped("circuit_open");
                    continue;
                }
                Gate::Go => {}
            }
            if !self.take_turn(&channel.id, &upstream).await {
                skipped("other_worker");
                continue;
            }
            if !self.take_token(&channel.id) {
                skipped("bucket");
                continue;
            }
            self.poll(&channel, &upstream).await;
        }
        Ok(())
    }

    /// Due, and not held back by an open circuit; sets the next due time.
    fn gate(&self, id: &ChannelId, upstream: &Upstream, now: Instant) -> Gate {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let state = states
            .entry(id.clone())
            .or_insert_with(|| State::new(upstream.clone(), now));
        if &state.upstream != upstream {
            *state = State::new(upstream.clone(), now);
        }
        state.gate(now)
    }

    /// This worker's turn for the current interval, across every worker (Redis `SET NX PX`).
    /// Without Redis the worker polls on its own schedule.
    async fn take_turn(&self, id: &ChannelId, upstream: &Upstream) -> bool {
        let interval = Duration::from_secs(u64::from(upstream.every_secs));
        let hold_ms = interval.saturating_sub(TICK_SLACK).as_millis().max(100) as u64;
        let connection = self
            .connection
            .get_or_try_init(|| redis::aio::ConnectionManager::new(self.redis.clone()))
            .await;
        let mut redis = match connection {
            Ok(c) => c.clone(),
            Err(e) => {
                tally_kit::warn_once_a_second!(error = %e, "Redis unreachable; polling upstreams on this worker's schedule alone.");
                return true;
            }
        };
        let set: Result<Option<String>, _> = redis::cmd("SET")
            .arg(self.keys.upstream_turn(id.as_str()))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(hold_ms)
            .query_async(&mut redis)
            .await;
        match set {
            Ok(taken) => taken.is_some(),
            Err(e) => {
                tally_kit::warn_once_a_second!(error = %e, "Redis unreachable; polling upstreams on this worker's schedule alone.");
                true
            }
        }
    }

    fn take_token(&self, id: &ChannelId) -> bool {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.get(id).is_some_and(|s| s.bucket.check().is_ok())
    }

    #[tracing::instrument(name = "upstream_poll", skip_all, fields(channel = %channel.id))]
    async fn poll(&self, channel: &Channel, upstream: &Upstream) {
        let fetched = fetch(&self.http, upstream).await;
        metrics::counter!("tally_workers_upstream_calls_total", "status" => match &fetched {
            Ok(_) => "ok",
            Err(e) => e.status(),
        })
        .increment(1);
        let result = match fetched {
            Ok(value) => {
                self.succeeded(&channel.id);
                self.publish_if_changed(channel, value).await
            }
            Err(e) => {
                tracing::info!(error = %e, url = %upstream.url, "Upstream call failed.");
                match self.failed(&channel.id) {
                    true => self.mark_stale(channel).await,
                    false => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "Could not publish the upstream's value.");
        }
    }

    fn succeeded(&self, id: &ChannelId) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = states.get_mut(id) {
            s.succeeded();
        }
    }

    /// Counts a failure; true when it opens the circuit.
    fn failed(&self, id: &ChannelId) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let opened = states.get_mut(id).is_some_and(|s| s.failed(Instant::now()));
        if opened {
            metrics::counter!("tally_workers_upstream_circuit_opened_total").increment(1);
        }
        opened
    }

    async fn publish_if_changed(
        &self,
        channel: &Channel,
        value: bytes::Bytes,
    ) -> Result<(), ChannelError> {
        let last = self.newest(channel).await?;
        if let Some(last) = &last
            && last.kind == MessageKind::Message
            && last.payload == value
        {
            skipped("unchanged");
            return Ok(());
        }
        self.publish(channel, MessageKind::Message, value, last.map(|m| m.seq))
            .await
    }

    /// Publishes the last good value again, marked stale (once: a stale channel stays so).
    async fn mark_stale(&self, channel: &Channel) -> Result<(), ChannelError> {
        match self.newest(channel).await? {
            Some(last) if last.kind == MessageKind::Message => {
                self.publish(channel, MessageKind::Stale, last.payload, Some(last.seq))
                    .await
            }
            _ => Ok(()),
        }
    }

    async fn newest(
        &self,
        channel: &Channel,
    ) -> Result<Option<streams::ChannelMessage>, ChannelError> {
        match streams::last(&self.js, &self.spec, &channel.id).await {
            Err(ChannelError::NoStream { .. }) => {
                streams::ensure(&self.js, &self.spec, channel).await?;
                Ok(None)
            }
            other => other,
        }
    }

    async fn publish(
        &self,
        channel: &Channel,
        kind: MessageKind,
        payload: bytes::Bytes,
        expected_last: Option<u64>,
    ) -> Result<(), ChannelError> {
        let out = Outgoing {
            kind,
            payload,
            message_id: None,
            expected_last,
        };
        let timeout = Duration::from_secs(5);
        match streams::publish_declaring(&self.js, &self.spec, channel, out, timeout).await {
            Ok(_) => {
                metrics::counter!("tally_workers_upstream_messages_total", "kind" => kind.as_str())
                    .increment(1);
                Ok(())
            }
            // Another worker published this change first.
            Err(ChannelError::Moved { .. }) => {
                skipped("published_by_another");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn skipped(reason: &'static str) {
    metrics::counter!("tally_workers_upstream_skips_total", "reason" => reason).increment(1);
}

/// GETs the upstream: a 2xx answer of at most `max_bytes` that is JSON, as compact JSON.
pub async fn fetch(
    http: &reqwest::Client,
    upstream: &Upstream,
) -> Result<bytes::Bytes, FetchError> {
    let timeout = Duration::from_millis(u64::from(upstream.timeout_ms));
    let call = async {
        let mut response = http
            .get(&upstream.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Request(e.to_string()))?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let limit = upstream.max_bytes as usize;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Request(e.to_string()))?
        {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge(upstream.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| FetchError::Timeout)??;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| FetchError::NotJson(e.to_string()))?;
    Ok(serde_json::to_vec(&value)
        .expect("a JSON value serializes")
        .into())
}

/// The apalis-cron job: one tick of the poller.
pub async fn poll_tick(
    _tick: apalis_cron::Tick,
    poller: apalis::prelude::Data<std::sync::Arc<Poller>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    poller.tick().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream() -> Upstream {
        serde_json::from_value(serde_json::json!({
            "url": "http://127.0.0.1:9/",
            "every_secs": 2,
            "burst": 2,
            "per_minute": 1,
            "failures_to_open": 2,
            "open_secs": 60
        }))
        .unwrap()
    }

    #[test]
    fn the_bucket_bounds_calls_whatever_the_schedule() {
        let state = State::new(upstream(), Instant::now());
        assert!(state.bucket.check().is_ok());
        assert!(state.bucket.check().is_ok());
        assert!(
            state.bucket.check().is_err(),
            "a burst of 2, then 1 a minute"
        );
    }

    #[test]
    fn the_circuit_opens_after_failures_in_a_row_and_one_call_retries_it() {
        let start = Instant::now();
        let mut state = State::new(upstream(), start);
        assert_eq!(state.gate(start), Gate::Go);
        assert_eq!(state.gate(start), Gate::NotDue, "every 2 s");
        assert!(!state.failed(start));
        state.succeeded();
        assert!(!state.failed(start), "failures count in a row");
        assert!(state.failed(start), "the second in a row opens it");
        let later = start + Duration::from_secs(2);
        assert_eq!(state.gate(later), Gate::Open);
        let reopened = start + Duration::from_secs(61);
        assert_eq!(state.gate(reopened), Gate::Go, "one call after open_secs");
        assert!(state.failed(reopened), "a failed retry opens it again");
        assert_eq!(state.gate(reopened + Duration::from_secs(2)), Gate::Open);
        state.succeeded();
        assert_eq!(state.gate(reopened + Duration::from_secs(4)), Gate::Go);
    }

    #[test]
    fn a_tick_a_little_early_is_still_due() {
        let start = Instant::now();
        let mut state = State::new(upstream(), start);
        assert_eq!(state.gate(start), Gate::Go);
        assert_eq!(state.gate(start + Duration::from_secs(1)), Gate::NotDue);
        // Every 2 s: the tick that comes 100 ms sooner than 2 s after the last call calls.
        assert_eq!(state.gate(start + Duration::from_millis(1900)), Gate::Go);
    }

    #[test]
    fn a_definition_change_starts_the_state_afresh() {
        let mut u = upstream();
        let now = Instant::now();
        let mut state = State::new(u.clone(), now);
        state.failures = 5;
        u.every_secs = 3;
        assert_ne!(state.upstream, u);
        state = State::new(u, now);
        assert_eq!(state.failures, 0);
    }
}
