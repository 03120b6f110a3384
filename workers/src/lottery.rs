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
use tally_schema::lottery::{self, Registrant};
use tally_schema::redis_keys::Keys;
use tally_schema::resources::{RegistrationMode, Resource, ResourceKind, Tournament};

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

/// seed, drawn_at, winners, waitlist of a `lottery_draws` row.
type DrawRow = (
    Vec<u8>,
    Option<DateTime<Utc>>,
    Option<String>,
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
}

async fn lottery_tournaments(pool: &PgPool) -> Result<Vec<Tournament>, DrawError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.id, r.definition::text FROM resources r
         JOIN lottery_draws d ON d.tournament = r.id
         WHERE r.kind = 'tournament' AND d.drawn_at IS NULL",
    )
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
        Ok(lottery_tournaments(&self.pool)
            .await?
            .into_iter()
            .filter(|t| is_due(t, now))
            .map(|t| t.id.to_string())
            .collect())
    }

    /// Every event accepted before now must be in Postgres before the list is frozen.
    async fn wait_for_writer(&self) -> Result<(), DrawError> {
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
            "SELECT seed, drawn_at, winners::text, waitlist::text FROM lottery_draws
                 WHERE tournament = $1 FOR UPDATE",
        )
        .bind(tournament)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((seed, drawn_at, winners, waitlist)) = row else {
            return Err(DrawError::NoCommitment(tournament.to_owned()));
        };
        if let Some(drawn_at) = drawn_at {
            // Drawn before: the stored result stands; make sure Redis shows it.
            tx.rollback().await?;
            let parse = |v: Option<String>| -> Vec<String> {
                serde_json::from_str(v.as_deref().unwrap_or("[]")).unwrap_or_default()
            };
            let drawn = Drawn {
                winners: parse(winners),
                waitlist: parse(waitlist),
                fresh: false,
            };
            self.publish(tournament, &drawn, drawn_at).await?;
            return Ok(drawn);
        }
        let definition = lottery_tournaments(&self.pool)
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
        let weights: HashMap<String, f64> = definition
            .groups
            .iter()
            .map(|g| (g.id.to_string(), g.weight))
            .collect();
        let capacity = definition.capacity.unwrap_or(u32::MAX) as usize;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| DrawError::Corrupt(format!("{tournament}: seed is not 32 bytes")))?;
        let (frozen, _) = lottery::freeze(registrants.clone());
        let outcome = lottery::draw(&seed, registrants, &weights, capacity);
        let now = Utc::now();
        sqlx::query(
            "UPDATE lottery_draws SET drawn_at = $2, digest = $3, capacity = $4,
                    weights = $5::jsonb, registrants = $6::jsonb, winners = $7::jsonb,
                    waitlist = $8::jsonb
             WHERE tournament = $1",
        )
        .bind(tournament)
        .bind(now)
        .bind(outcome.digest.as_slice())
        .bind(definition.capacity.map(|c| c as i32))
        .bind(to_json(&weights))
        .bind(to_json(&frozen))
        .bind(to_json(&outcome.winners))
        .bind(to_json(&outcome.waitlist))
        .execute(&mut *tx)
        .await?;
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
        self.publish(tournament, &drawn, now).await?;
        Ok(drawn)
    }

    /// Each registrant's result, for the status endpoint.
    async fn publish(
        &self,
        tournament: &str,
        drawn: &Drawn,
        drawn_at: DateTime<Utc>,
    ) -> Result<(), DrawError> {
        let mut fields: Vec<(String, String)> = drawn
            .winners
            .iter()
            .map(|u| {
                let status = serde_json::json!({"status": "won", "drawn_at": drawn_at});
                (u.clone(), status.to_string())
            })
            .collect();
        fields.extend(drawn.waitlist.iter().enumerate().map(|(i, u)| {
            let status =
                serde_json::json!({"status": "waitlisted", "position": i + 1, "drawn_at": drawn_at});
            (u.clone(), status.to_string())
        }));
        let mut conn = self.redis.get_multiplexed_async_connection().await?;
        for chunk in fields.chunks(1000) {
            let _: () = conn
                .hset_multiple(self.keys.draw_results(tournament), chunk)
                .await?;
        }
        Ok(())
    }
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
