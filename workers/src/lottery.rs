//! The lottery draw as an apalis job on apalis' Postgres backend: a scheduler (cron) finds
//! lottery tournaments whose registration window has closed and pushes a draw job; the job
//! waits until the Postgres writer has stored every event accepted before the close, freezes
//! the registrants, draws with `tally_schema::lottery` and stores the audit record. The row
//! lock on `lottery_draws` makes it unique per tournament: a second job finds the draw done
//! and only republishes the results.

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::HashMap;
use tally_schema::event::{RegistrationStatus, StatusChange};
use tally_schema::ids::TournamentId;
use tally_schema::lottery::{self, Registrant};
use tally_schema::redis_keys::Keys;
use tally_schema::resources::{RegistrationMode, Resource, ResourceKind, Tournament};
use tally_schema::{Envelope, Event};

/// Draw the lottery of one tournament.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawJob {
    pub tournament: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    #[error("Postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("tournament {0} is not a lottery with a closed registration window")]
    NotDue(String),
    #[error("tournament {0} has no committed seed")]
    NoCommitment(String),
    #[error("the Postgres writer has stored up to {acked}, the stream holds {last}; retrying")]
    NotCaughtUp { acked: u64, last: u64 },
    #[error("stored definition does not decode: {0}")]
    Corrupt(String),
}

/// seed, drawn_at, winners, waitlist, statuses published, pseudonym key and committed rules
/// (v2), of a `lottery_draws` row.
type DrawRow = (
    Vec<u8>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    bool,
    Option<Vec<u8>>,
    Option<String>,
);

/// What a finished draw says.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    pub winners: Vec<String>,
    pub waitlist: Vec<String>,
    /// False when an earlier job had drawn it already.
    pub fresh: bool,
}

pub struct Drawer {
    pub pool: PgPool,
    pub redis: redis::Client,
    pub keys: Keys,
    pub js: jetstream::Context,
    pub stream: String,
    /// The Postgres writer's durable consumer: the draw waits for it.
    pub writer_consumer: String,
    /// The Redis sink's consumer: releases wait for its watermark.
    pub views_consumer: String,
    pub spec: tally_schema::StreamSpec,
}

/// Lottery tournaments: those not drawn yet, or (with `drawn`) every one.
async fn lottery_tournaments(pool: &PgPool, drawn: bool) -> Result<Vec<Tournament>, DrawError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.id, r.definition::text FROM resources r
         JOIN lottery_draws d ON d.tournament = r.id
         WHERE r.kind = 'tournament' AND ($1 OR d.drawn_at IS NULL)",
    )
    .bind(drawn)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(
            |(id, json)| match Resource::decode(ResourceKind::Tournament, json.as_bytes()) {
                Ok(Resource::Tournament(t)) => Ok(t),
                Ok(_) => Err(DrawError::Corrupt(id)),
                Err(e) => Err(DrawError::Corrupt(format!("{id}: {e}"))),
            },
        )
        .collect()
}

fn is_due(t: &Tournament, now: DateTime<Utc>) -> bool {
    t.mode == RegistrationMode::Lottery && t.registration_window().has_closed(now)
}

impl Drawer {
    /// Lottery tournaments whose window has closed and that are not drawn yet.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<String>, DrawError> {
        Ok(lottery_tournaments(&self.pool, false)
            .await?
            .into_iter()
            .filter(|t| is_due(t, now))
            .map(|t| t.id.to_string())
            .collect())
    }

    /// The event stream and the sequence of its last event.
    async fn stream_end(&self) -> Result<(jetstream::stream::Stream, u64), DrawError> {
        let js_err = |e: &dyn std::fmt::Display| DrawError::JetStream(e.to_string());
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| js_err(&e))?;
        let last = stream
            .info()
            .await
            .map_err(|e| js_err(&e))?
            .state
            .last_sequence;
        Ok((stream, last))
    }

    /// Every event accepted before now must be in Postgres before the list is frozen.
    async fn wait_for_writer(&self) -> Result<(), DrawError> {
        let js_err = |e: &dyn std::fmt::Display| DrawError::JetStream(e.to_string());
        let (stream, last) = self.stream_end().await?;
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_consumer(&self.writer_consumer)
            .await
            .map_err(|e| js_err(&e))?;
        let acked = consumer
            .info()
            .await
            .map_err(|e| js_err(&e))?
            .ack_floor
            .stream_sequence;
        match acked >= last {
            true => Ok(()),
            false => Err(DrawError::NotCaughtUp { acked, last }),
        }
    }

    #[tracing::instrument(name = "lottery_draw", skip(self))]
    pub async fn draw(&self, tournament: &str) -> Result<Drawn, DrawError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<DrawRow> = sqlx::query_as(
            "SELECT seed, drawn_at, winners::text, waitlist::text,
                    statuses_published_at IS NOT NULL, pseudonym_key, rules
             FROM lottery_draws WHERE tournament = $1 FOR UPDATE",
        )
        .bind(tournament)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((seed, drawn_at, winners, waitlist, statuses_published, pseudonym_key, rules)) =
            row
        else {
            return Err(DrawError::NoCommitment(tournament.to_owned()));
        };
        if let Some(drawn_at) = drawn_at {
            // Drawn before: the stored result stands; make sure its statuses went out.
            tx.rollback().await?;
            let claim_window = lottery_tournaments(&self.pool, true)
                .await?
                .into_iter()
                .find(|t| t.id.as_str() == tournament)
                .map_or(
                    chrono::Duration::seconds(Tournament::DEFAULT_CLAIM_WINDOW_SECS as i64),
                    |t| t.claim_window(),
                );
            let parse = |v: Option<String>| -> Vec<String> {
                serde_json::from_str(v.as_deref().unwrap_or("[]")).unwrap_or_default()
            };
            let drawn = Drawn {
                winners: parse(winners),
                waitlist: parse(waitlist),
                fresh: false,
            };
            if !statuses_published {
                self.publish(tournament, &drawn, drawn_at, claim_window)
                    .await?;
            }
            return Ok(drawn);
        }
        let definition = lottery_tournaments(&self.pool, false)
            .await?
            .into_iter()
            .find(|t| t.id.as_str() == tournament)
            .filter(|t| is_due(t, Utc::now()))
            .ok_or_else(|| DrawError::NotDue(tournament.to_owned()))?;
        self.wait_for_writer().await?;
        let registrants: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT DISTINCT ON (user_id) user_id, grp FROM registrations
             WHERE tournament = $1 ORDER BY user_id, stream_seq",
        )
        .bind(tournament)
        .fetch_all(&mut *tx)
        .await?;
        let registrants: Vec<Registrant> = registrants
            .into_iter()
            .map(|(user, group)| Registrant { user, group })
            .collect();
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| DrawError::Corrupt(format!("{tournament}: seed is not 32 bytes")))?;
        let result = match (pseudonym_key, rules) {
            (Some(key), Some(rules)) => {
                let key: [u8; 32] = key.try_into().map_err(|_| {
                    DrawError::Corrupt(format!("{tournament}: pseudonym key is not 32 bytes"))
                })?;
                draw_v2(&seed, &key, &rules, registrants)
                    .map_err(|e| DrawError::Corrupt(format!("{tournament}: {e}")))?
            }
            // Lotteries committed before pseudonyms: the v1 draw over user ids, by the
            // definition's capacity and weights.
            _ => {
                let weights: HashMap<String, f64> = definition
                    .groups
                    .iter()
                    .map(|g| (g.id.to_string(), g.weight))
                    .collect();
                let capacity = definition.capacity;
                let (frozen, _) = lottery::freeze(registrants.clone());
                let outcome = lottery::draw(
                    &seed,
                    registrants,
                    &weights,
                    capacity.unwrap_or(u32::MAX) as usize,
                );
                DrawResult {
                    capacity,
                    weights,
                    registrants: frozen,
                    outcome,
                    public: None,
                }
            }
        };
        let now = Utc::now();
        let public = result.public.as_ref();
        sqlx::query(
            "UPDATE lottery_draws SET drawn_at = $2, digest = $3, capacity = $4,
                    weights = $5::jsonb, registrants = $6::jsonb, winners = $7::jsonb,
                    waitlist = $8::jsonb, public_registrants = $9::jsonb,
                    public_winners = $10::jsonb, public_waitlist = $11::jsonb
             WHERE tournament = $1",
        )
        .bind(tournament)
        .bind(now)
        .bind(result.outcome.digest.as_slice())
        .bind(result.capacity.map(|c| c as i32))
        .bind(to_json(&result.weights))
        .bind(to_json(&result.registrants))
        .bind(to_json(&result.outcome.winners))
        .bind(to_json(&result.outcome.waitlist))
        .bind(public.map(|p| to_json(&p.registrants)))
        .bind(public.map(|p| to_json(&p.winners)))
        .bind(public.map(|p| to_json(&p.waitlist)))
        .execute(&mut *tx)
        .await?;
        let outcome = result.outcome;
        tx.commit().await?;
        let drawn = Drawn {
            winners: outcome.winners,
            waitlist: outcome.waitlist,
            fresh: true,
        };
        tracing::info!(
            tournament,
            winners = drawn.winners.len(),
            waitlist = drawn.waitlist.len(),
            "Lottery drawn."
        );
        metrics::counter!("tally_workers_lottery_draws_total").increment(1);
        self.publish(tournament, &drawn, now, definition.claim_window())
            .await?;
        Ok(drawn)
    }

    /// Publishes each registrant's result as a status event (ids derived from tournament and
    /// user, so a repeat within JetStream's window is stored once; the Redis sink also sets a
    /// drawn status only once).
    async fn publish(
        &self,
        tournament: &str,
        drawn: &Drawn,
        drawn_at: DateTime<Utc>,
        claim_window: chrono::Duration,
    ) -> Result<(), DrawError> {
        let t: TournamentId = tournament
            .try_into()
            .map_err(|e| DrawError::Corrupt(format!("{tournament}: {e}")))?;
        let deadline = drawn_at + claim_window;
        let winners = drawn.winners.iter().map(|u| (u, StatusChange::Won, None));
        let waitlist = drawn
            .waitlist
            .iter()
            .enumerate()
            .map(|(i, u)| (u, StatusChange::Waitlisted, Some(i as u32 + 1)));
        let changes: Vec<RegistrationStatus> = winners
            .chain(waitlist)
            .map(|(user, status, position)| {
                Ok(RegistrationStatus {
                    tournament: t.clone(),
                    user: user
                        .as_str()
                        .try_into()
                        .map_err(|e| DrawError::Corrupt(format!("{user}: {e}")))?,
                    status,
                    position,
                    deadline: (status == StatusChange::Won).then_some(deadline),
                    promoted: None,
                })
            })
            .collect::<Result<_, DrawError>>()?;
        self.publish_changes(changes, "drawn").await?;
        sqlx::query("UPDATE lottery_draws SET statuses_published_at = now() WHERE tournament = $1")
            .bind(tournament)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Publishes status events, many acknowledgements in flight at once.
    async fn publish_changes(
        &self,
        changes: Vec<RegistrationStatus>,
        step: &str,
    ) -> Result<(), DrawError> {
        use futures::StreamExt;
        let spec = &self.spec;
        let results: Vec<Result<(), DrawError>> = futures::stream::iter(changes)
            .map(|change| {
                let id = change.event_id(step);
                async move {
                    let envelope = Envelope::keyed(id, Event::RegistrationStatus(change));
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", envelope.id.to_string().as_str());
                    let ack = self
                        .js
                        .publish_with_headers(
                            spec.subject_for(&envelope.event),
                            headers,
                            envelope.to_json().into(),
                        )
                        .await
                        .map_err(|e| DrawError::JetStream(e.to_string()))?;
                    let ack = ack.await.map_err(|e| DrawError::JetStream(e.to_string()))?;
                    if ack.duplicate {
                        // Only this job makes these ids, so a duplicate is its own earlier
                        // publish (a resumed draw or release): never a client's, but worth
                        // seeing, since a silent one would hide a lost status change.
                        metrics::counter!("tally_workers_status_duplicates_total", "step" => step.to_owned())
                            .increment(1);
                        tracing::warn!(id = %envelope.id, step, "JetStream answered a status change as a duplicate.");
                    }
                    Ok(())
                }
            })
            .buffer_unordered(256)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Releases every won place whose claim deadline has passed, each to the next user on the
    /// waitlist (with a new deadline). Decides from the status view only once the Redis sink
    /// has applied the whole stream, so it never acts on a claim it has not seen.
    #[tracing::instrument(name = "lottery_release", skip(self))]
    pub async fn release_expired(&self, now: DateTime<Utc>) -> Result<usize, DrawError> {
        let drawn: Vec<(String, String)> = sqlx::query_as(
            "SELECT r.id, r.definition::text FROM resources r
             JOIN lottery_draws d ON d.tournament = r.id
             WHERE r.kind = 'tournament' AND d.statuses_published_at IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        if drawn.is_empty() {
            return Ok(0);
        }
        self.wait_for_views().await?;
        let mut conn = self.redis.get_multiplexed_async_connection().await?;
        let mut released = 0;
        for (id, json) in drawn {
            let Ok(Resource::Tournament(t)) =
                Resource::decode(ResourceKind::Tournament, json.as_bytes())
            else {
                return Err(DrawError::Corrupt(id));
            };
            let statuses: HashMap<String, String> =
                conn.hgetall(self.keys.draw_results(&id)).await?;
            // A claim accepted just before the deadline may still be on its way to the views.
            let plan = release_plan(&statuses, now - RELEASE_GRACE);
            let deadline = now + t.claim_window();
            let changes: Vec<RegistrationStatus> = plan
                .into_iter()
                .filter_map(|(user, promoted)| {
                    Some(RegistrationStatus {
                        tournament: t.id.clone(),
                        user: user.as_str().try_into().ok()?,
                        status: StatusChange::Released,
                        position: None,
                        deadline: promoted.is_some().then_some(deadline),
                        promoted: promoted.and_then(|p| p.as_str().try_into().ok()),
                    })
                })
                .collect();
            released += changes.len();
            self.publish_changes(changes, "released").await?;
        }
        Ok(released)
    }

    /// Waits until the Redis sink's watermark covers the stream's last event.
    async fn wait_for_views(&self) -> Result<(), DrawError> {
        let (_, last) = self.stream_end().await?;
        let mut conn = self.redis.get_multiplexed_async_connection().await?;
        let applied: Option<u64> = conn
            .get(self.keys.applied_seq(&self.views_consumer))
            .await?;
        let applied = applied.unwrap_or(0);
        match applied >= last {
            true => Ok(()),
            false => Err(DrawError::NotCaughtUp {
                acked: applied,
                last,
            }),
        }
    }
}

/// A draw's result: the private lists (user ids, which the status events and the waitlist
/// need) and, for v2, the public ones (pseudonyms).
struct DrawResult {
    capacity: Option<u32>,
    weights: HashMap<String, f64>,
    registrants: Vec<Registrant>,
    outcome: lottery::Outcome,
    public: Option<PublicLists>,
}

struct PublicLists {
    registrants: Vec<serde_json::Value>,
    winners: Vec<String>,
    waitlist: Vec<String>,
}

/// `tally-draw-v2`: the draw runs over each registrant's pseudonym, under the committed rules
/// (not the definition's: they are the same, since the rules froze when registration opened).
fn draw_v2(
    seed: &[u8; 32],
    pseudonym_key: &[u8; 32],
    rules: &str,
    registrants: Vec<Registrant>,
) -> Result<DrawResult, String> {
    let (capacity, weights) = lottery::parse_rules(rules)?;
    let mut users_by_pseudonym = HashMap::with_capacity(registrants.len());
    let pseudonymous: Vec<Registrant> = registrants
        .iter()
        .map(|r| {
            let p = lottery::pseudonym(&lottery::receipt(pseudonym_key, &r.user));
            users_by_pseudonym.insert(p.clone(), r.user.clone());
            Registrant {
                user: p,
                group: r.group.clone(),
            }
        })
        .collect();
    let (frozen, _) = lottery::freeze(pseudonymous.clone());
    let drawn = lottery::draw(
        seed,
        pseudonymous,
        &weights,
        capacity.unwrap_or(u32::MAX) as usize,
    );
    let user = |p: &String| users_by_pseudonym[p].clone();
    let outcome = lottery::Outcome {
        digest: drawn.digest,
        winners: drawn.winners.iter().map(user).collect(),
        waitlist: drawn.waitlist.iter().map(user).collect(),
    };
    let public = PublicLists {
        registrants: frozen
            .iter()
            .map(|r| {
                serde_json::to_value(lottery::PublicRegistrant {
                    pseudonym: &r.user,
                    group: r.group.as_deref(),
                })
                .expect("a plain struct serializes")
            })
            .collect(),
        winners: drawn.winners,
        waitlist: drawn.waitlist,
    };
    Ok(DrawResult {
        capacity,
        weights,
        registrants: lottery::freeze(registrants).0,
        outcome,
        public: Some(public),
    })
}

/// How long after a deadline a place is released: longer than ingest's publish timeout.
const RELEASE_GRACE: chrono::Duration = chrono::Duration::seconds(5);

/// Which won places to release now, and to whom: expired winners (earliest deadline first)
/// paired with waitlisted users in waitlist order; a release with no one left promotes nobody.
pub fn release_plan(
    statuses: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Vec<(String, Option<String>)> {
    let parsed: Vec<(&String, serde_json::Value)> = statuses
        .iter()
        .filter_map(|(u, j)| Some((u, serde_json::from_str(j).ok()?)))
        .collect();
    let mut expired: Vec<(DateTime<Utc>, &String)> = parsed
        .iter()
        .filter(|(_, v)| v["status"] == "won")
        .filter_map(|(u, v)| {
            let deadline: DateTime<Utc> = v["deadline"].as_str()?.parse().ok()?;
            (deadline <= now).then_some((deadline, *u))
        })
        .collect();
    expired.sort();
    let mut waiting: Vec<(u64, &String)> = parsed
        .iter()
        .filter(|(_, v)| v["status"] == "waitlisted")
        .filter_map(|(u, v)| Some((v["position"].as_u64()?, *u)))
        .collect();
    waiting.sort();
    let mut next = waiting.into_iter().map(|(_, u)| u.clone());
    expired
        .into_iter()
        .map(|(_, u)| (u.clone(), next.next()))
        .collect()
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Plain maps and lists of strings serialize without fail.
    serde_json::to_string(value).expect("plain values serialize")
}

impl Drawer {
    /// Claims the tournaments due for a draw job: each at most once every five minutes, so a
    /// job waiting for the writer is not joined by a new one every tick.
    pub async fn claim_due(&self, now: DateTime<Utc>) -> Result<Vec<String>, DrawError> {
        let mut claimed = Vec::new();
        for tournament in self.due(now).await? {
            let row: Option<(String,)> = sqlx::query_as(
                "UPDATE lottery_draws SET draw_requested_at = now()
                 WHERE tournament = $1 AND drawn_at IS NULL
                   AND (draw_requested_at IS NULL
                        OR draw_requested_at < now() - interval '5 minutes')
                 RETURNING tournament",
            )
            .bind(&tournament)
            .fetch_optional(&self.pool)
            .await?;
            claimed.extend(row.map(|(t,)| t));
        }
        Ok(claimed)
    }
}

/// The cron tick of the scheduler: a draw job for every tournament that is due.
pub async fn schedule_draws(
    _tick: apalis_cron::Tick,
    drawer: apalis::prelude::Data<std::sync::Arc<Drawer>>,
    jobs: apalis::prelude::Data<apalis_postgres::PostgresStorage<DrawJob>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    use apalis::prelude::TaskSink;
    let mut jobs = (*jobs).clone();
    for tournament in drawer.claim_due(Utc::now()).await? {
        tracing::info!(tournament, "Registration closed; draw job queued.");
        jobs.push(DrawJob { tournament }).await?;
    }
    match drawer.release_expired(Utc::now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(released = n, "Unclaimed places released to the waitlist."),
        // The views are behind: try again at the next tick.
        Err(DrawError::NotCaughtUp { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The apalis handler of a draw job: an error makes apalis retry it with backoff (e.g. while
/// the writer catches up).
pub async fn run_draw(
    job: DrawJob,
    drawer: apalis::prelude::Data<std::sync::Arc<Drawer>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    drawer.draw(&job.tournament).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_winners_pass_their_places_down_the_waitlist_in_order() {
        let at = |s: &str| format!("2030-01-01T00:00:{s}Z");
        let statuses: HashMap<String, String> = [
            ("a", json!({"status": "won", "deadline": at("10")})),
            ("b", json!({"status": "won", "deadline": at("05")})),
            ("c", json!({"status": "won", "deadline": at("50")})),
            ("d", json!({"status": "claimed"})),
            ("w2", json!({"status": "waitlisted", "position": 2})),
            ("w1", json!({"status": "waitlisted", "position": 1})),
        ]
        .into_iter()
        .map(|(u, v)| (u.to_owned(), v.to_string()))
        .collect();
        let now: DateTime<Utc> = at("20").parse().unwrap();
        assert_eq!(
            release_plan(&statuses, now),
            vec![
                ("b".to_owned(), Some("w1".to_owned())),
                ("a".to_owned(), Some("w2".to_owned()))
            ]
        );
        let later: DateTime<Utc> = "2030-01-01T00:01:00Z".parse().unwrap();
        assert_eq!(release_plan(&statuses, later)[2], ("c".to_owned(), None));
    }

    use serde_json::json;
}
