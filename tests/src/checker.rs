//! Jepsen-style queue checks: every event carries an id the client chose, the client records
//! which it attempted and which were acknowledged, and the checker compares that with the ids
//! a store finally holds.

use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
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
                let id = Uuid::new_v4();
                let body = serde_json::json!({"voter": format!("v-{id}"), "options": ["a"]});
                let status = client
                    .post(url)
                    .header("Idempotency-Key", id.to_string())
                    .json(&body)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                (id, status)
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
