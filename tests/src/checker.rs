//! Jepsen-style queue checks: every event carries an id the client chose, the client records
//! which it attempted and which were acknowledged, and the checker compares that with the ids
//! a store finally holds.

use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What the clients of one burst saw.
#[derive(Debug, Default)]
pub struct Burst {
    /// Every id sent, answered or not (a timed-out request may still have been stored).
    pub attempted: HashSet<Uuid>,
    /// Ids answered 202: these must be stored, exactly once.
    pub acknowledged: HashSet<Uuid>,
    /// Answers by status; 0 counts requests that got no answer (timeout, reset).
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that re-sent an event (same id, same key) after no 202.
    pub retries: usize,
    /// The longest wait for an answer other than 202 (a refusal should come fast).
    pub slowest_refusal: Duration,
}

/// Lost, duplicated and unexpected ids of one store.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Acknowledged but not stored.
    pub lost: usize,
    /// Stored more than once.
    pub duplicated: usize,
    /// Stored but never sent.
    pub unexpected: usize,
    /// Sent without a 202 yet stored (allowed: the ack was lost on the way back).
    pub indeterminate_stored: usize,
}

impl Burst {
    /// Adds another burst's requests to this one (their ids are distinct).
    pub fn merge(&mut self, other: Burst) {
        self.attempted.extend(other.attempted);
        self.acknowledged.extend(other.acknowledged);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.retries += other.retries;
        self.slowest_refusal = self.slowest_refusal.max(other.slowest_refusal);
    }
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lost {}, duplicated {}, unexpected {} (stored without a 202: {})",
            self.lost, self.duplicated, self.unexpected, self.indeterminate_stored
        )
    }
}

/// Compares a burst with the ids a store holds (with repetitions).
pub fn check(burst: &Burst, stored: &[Uuid]) -> Verdict {
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for id in stored {
        *counts.entry(*id).or_default() += 1;
    }
    Verdict {
        lost: burst
            .acknowledged
            .iter()
            .filter(|id| !counts.contains_key(id))
            .count(),
        duplicated: counts.values().filter(|&&n| n > 1).count(),
        unexpected: counts
            .keys()
            .filter(|id| !burst.attempted.contains(id))
            .count(),
        indeterminate_stored: counts
            .keys()
            .filter(|id| burst.attempted.contains(id) && !burst.acknowledged.contains(id))
            .count(),
    }
}

/// The event id ingest stores an anonymous vote in `poll` under, for its key `key`: the key
/// namespaced by kind, scope and caller (docs/architecture.md, "Ids the server makes").
/// Waits (up to `within`) until Postgres holds every acknowledged id of `burst` once and
/// nothing it was not sent; the verdict either way, for the caller to assert and print.
pub async fn postgres_verdict(env: &crate::TestEnv, burst: &Burst, within: Duration) -> Verdict {
    crate::Wait::new("Postgres to hold every acknowledged vote", within)
        .try_until(async || {
            let verdict = check(burst, &env.stored_ids().await);
            if verdict.is_clean() && verdict.lost == 0 {
                Ok(verdict)
            } else {
                Err(verdict)
            }
        })
        .await
        .unwrap_or_else(|verdict| verdict)
}

pub fn vote_event_id(poll: &str, key: Uuid) -> Uuid {
    tally_schema::ids::IdempotencyKey::try_from(key.to_string())
        .expect("a UUID is a valid key")
        .event_id("poll_vote", poll, &tally_schema::ids::KeyOwner::Anonymous)
}

/// One vote for option `a` from voter `v-<id>`, keyed by `id`: the same id always sends the
/// same request, as a retry must. The status, or 0 for no answer (timeout, reset).
async fn send_vote(http: &reqwest::Client, url: &str, id: Uuid) -> u16 {
    let body = serde_json::json!({"voter": format!("v-{id}"), "options": ["a"]});
    http.post(url)
        .header("Idempotency-Key", id.to_string())
        .json(&body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Sends `count` poll votes, each from its own voter and with its own `Idempotency-Key`,
/// `concurrency` at a time, each request given `timeout`; records what was answered.
/// Unlike [`crate::post_votes`] it accepts any answer: it runs while things break.
pub async fn keyed_votes(
    ingest_url: &str,
    poll: &str,
    count: usize,
    concurrency: usize,
    timeout: Duration,
) -> Burst {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("HTTP client");
    let url = format!("{ingest_url}/v1/polls/{poll}/votes");
    let answers: Vec<(Uuid, u16)> = futures::stream::iter(0..count)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let key = Uuid::new_v4();
                (
                    vote_event_id(poll, key),
                    send_vote(&client, &url, key).await,
                )
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut burst = Burst::default();
    for (id, status) in answers {
        burst.attempted.insert(id);
        if status == 202 {
            burst.acknowledged.insert(id);
        }
        *burst.statuses.entry(status).or_default() += 1;
    }
    burst
}

/// Poll votes sent without pause by `clients` careful clients until [`Sustained::finish`]:
/// each vote has its own voter and id (its `Idempotency-Key`), and a vote not answered 202
/// (a timeout, a reset, a 503) is sent again with the same key until it is, as a client
/// that must not lose a vote does. The faults happen while this runs.
pub struct Sustained {
    stop: Arc<AtomicBool>,
    give_up_at: Arc<std::sync::Mutex<Option<Instant>>>,
    clients: Vec<tokio::task::JoinHandle<Burst>>,
}

impl Sustained {
    /// Starts the clients; each request may take `timeout`.
    pub fn start(ingest_url: &str, poll: &str, clients: usize, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("HTTP client");
        let url = format!("{ingest_url}/v1/polls/{poll}/votes");
        let stop = Arc::new(AtomicBool::new(false));
        let give_up_at = Arc::new(std::sync::Mutex::new(None));
        let clients = (0..clients)
            .map(|_| {
                let (http, url, poll) = (http.clone(), url.clone(), poll.to_owned());
                let (stop, give_up_at) = (stop.clone(), give_up_at.clone());
                tokio::spawn(async move {
                    let mut burst = Burst::default();
                    while !stop.load(Ordering::Relaxed) {
                        careful_vote(&http, &url, &poll, &mut burst, &give_up_at).await;
                    }
                    burst
                })
            })
            .collect();
        Self {
            stop,
            give_up_at,
            clients,
        }
    }

    /// Stops sending new votes; votes not yet acknowledged are retried for up to `give_up`.
    pub async fn finish(self, give_up: Duration) -> Burst {
        self.stop.store(true, Ordering::Relaxed);
        *self.give_up_at.lock().expect("lock") = Some(Instant::now() + give_up);
        let mut burst = Burst::default();
        for client in self.clients {
            burst.merge(client.await.expect("client ran"));
        }
        burst
    }
}

async fn careful_vote(
    http: &reqwest::Client,
    url: &str,
    poll: &str,
    burst: &mut Burst,
    give_up_at: &std::sync::Mutex<Option<Instant>>,
) {
    let key = Uuid::new_v4();
    let id = vote_event_id(poll, key);
    burst.attempted.insert(id);
    loop {
        let sent = Instant::now();
        let status = send_vote(http, url, key).await;
        *burst.statuses.entry(status).or_default() += 1;
        if status == 202 {
            burst.acknowledged.insert(id);
            return;
        }
        if status != 0 {
            burst.slowest_refusal = burst.slowest_refusal.max(sent.elapsed());
        }
        let retryable = matches!(status, 0 | 429 | 500..=599);
        let given_up = give_up_at
            .lock()
            .expect("lock")
            .is_some_and(|at| Instant::now() > at);
        if !retryable || given_up {
            return;
        }
        burst.retries += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn a_store_holding_each_acknowledged_id_once_is_clean() {
        let sent = ids(4);
        let burst = Burst {
            attempted: sent.iter().copied().collect(),
            acknowledged: sent[..3].iter().copied().collect(),
            ..Default::default()
        };
        // The fourth was not acknowledged but stored: allowed, counted apart.
        let verdict = check(&burst, &sent);
        assert!(verdict.is_clean(), "{verdict}");
        assert_eq!(verdict.indeterminate_stored, 1);
    }

    #[test]
    fn lost_duplicated_and_unexpected_ids_are_each_counted() {
        let sent = ids(3);
        let stranger = Uuid::new_v4();
        let burst = Burst {
            attempted: sent.iter().copied().collect(),
            acknowledged: sent.iter().copied().collect(),
            ..Default::default()
        };
        let stored = vec![sent[0], sent[0], sent[1], stranger];
        assert_eq!(
            check(&burst, &stored),
            Verdict {
                lost: 1,
                duplicated: 1,
                unexpected: 1,
                indeterminate_stored: 0
            }
        );
    }
}
