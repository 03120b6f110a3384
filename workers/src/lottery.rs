//! The lottery draw as an apalis job on apalis' Postgres backend: a scheduler (cron) finds
//! lottery tournaments whose registration window has closed and pushes a draw job. The job is
//! three steps: freeze (the store: once the Postgres writer has stored every event accepted
//! before the close, the registrant list under the draw row's lock), draw (pure, in
//! `tally_schema::lottery`), publish (each registrant's status through the one publisher).
//! The row lock makes it unique per tournament: a second job finds the draw done and only
//! republishes the results. Releases of unclaimed places run from the same scheduler.

use crate::store::{PgStore, StoreError};
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use tally_kit::consumer::{Horizon, Horizons};
use tally_kit::publisher::Publisher;
use tally_schema::event::{RegistrationStatus, StatusChange};
use tally_schema::ids::{TournamentId, UserId};
use tally_schema::lottery;
use tally_schema::redis_keys::Keys;
use tally_schema::resources::{RegistrationMode, Tournament};
use tally_schema::status::{RegistrationState, release_plan};
use tally_schema::webhooks::Message;
use tally_schema::{Envelope, Event};

/// Draw the lottery of one tournament.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawJob {
    pub tournament: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    #[error(transparent)]
    Db(#[from] StoreError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("tournament {0} is not a lottery with a closed registration window")]
    NotDue(String),
    #[error("tournament {0} closed less than the grace ago; retrying")]
    Settling(String),
    #[error("tournament {0} has no committed seed")]
    NoCommitment(String),
    #[error("consumer {consumer} has applied up to {acked}, the stream holds {last}; retrying")]
    NotCaughtUp {
        consumer: String,
        acked: u64,
        last: u64,
    },
    #[error("stored definition does not decode: {0}")]
    Corrupt(String),
}

/// What a finished draw says.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    pub winners: Vec<String>,
    pub waitlist: Vec<String>,
    /// False when an earlier job had drawn it already.
    pub fresh: bool,
}

/// Status changes a draw or release job has awaiting their acknowledgement at once.
const PUBLISHES_IN_FLIGHT: usize = 256;

pub struct Drawer {
    store: PgStore,
    redis: redis::Client,
    keys: Keys,
    js: jetstream::Context,
    spec: tally_schema::StreamSpec,
    publisher: Publisher,
    /// The Postgres writer's durable consumer: the draw waits for it.
    writer_consumer: String,
    /// The Redis sink's consumer: releases wait until it has applied the stream.
    views_consumer: String,
    /// How long before a claim deadline the winner is reminded (`claim.deadline_approaching`);
    /// zero: never.
    claim_reminder: chrono::Duration,
    /// What the draws and the release step wait for the sinks to pass.
    horizons: Horizons,
}

/// Where a [`Drawer`] reads and writes, and whom it waits for.
pub struct DrawerParts {
    pub store: PgStore,
    pub redis: redis::Client,
    pub keys: Keys,
    pub js: jetstream::Context,
    pub spec: tally_schema::StreamSpec,
    pub writer_consumer: String,
    pub views_consumer: String,
    /// How long before a claim deadline to remind; zero: never.
    pub claim_reminder: chrono::Duration,
}

impl Drawer {
    pub fn new(parts: DrawerParts) -> Self {
        let publisher = Publisher::new(
            tally_kit::publisher::Service::Workers,
            parts.js.clone(),
            parts.spec.clone(),
            Duration::from_secs(10),
            PUBLISHES_IN_FLIGHT,
            Duration::from_secs(10),
            // Its publishes go out many at once already (`publish_changes`).
            tally_kit::publisher::Coalescing::OFF,
        );
        Self {
            store: parts.store,
            redis: parts.redis,
            keys: parts.keys,
            js: parts.js,
            spec: parts.spec,
            publisher,
            writer_consumer: parts.writer_consumer,
            views_consumer: parts.views_consumer,
            claim_reminder: parts.claim_reminder,
            horizons: Horizons::default(),
        }
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }
}

fn is_due(t: &Tournament, now: DateTime<Utc>) -> bool {
    t.mode == RegistrationMode::Lottery && t.registration_window().has_closed(now)
}

impl Drawer {
    /// Lottery tournaments whose window has closed and that are not drawn yet.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<String>, DrawError> {
        Ok(self
            .store
            .lottery_tournaments(false)
            .await?
            .into_iter()
            .filter(|t| is_due(t, now))
            .map(|t| t.id.to_string())
            .collect())
    }

    /// Every event accepted before the close must be in Postgres before the list is frozen:
    /// once a grace past the close has gone (a registration admitted just before it may still
    /// be on its way), the writer must pass the stream's end as it was then.
    async fn wait_for_writer(&self, t: &Tournament) -> Result<(), DrawError> {
        let now = Utc::now();
        if let Some(closed) = t.registration_closes_at
            && now < closed + RELEASE_GRACE
        {
            return Err(DrawError::Settling(t.id.to_string()));
        }
        let key = format!("draw:{}", t.id);
        self.wait_for(&self.writer_consumer, &key).await.map(|_| ())
    }

    /// The horizon of `key` once `consumer` has passed it (see [`Horizons`]): what the
    /// stream held when `key` was first asked about is applied, however busy it stays.
    async fn wait_for(&self, consumer: &str, key: &str) -> Result<Horizon, DrawError> {
        let horizon = self
            .horizons
            .ask(&self.js, &self.spec, consumer, key)
            .await
            .map_err(|e| DrawError::JetStream(e.to_string()))?;
        match horizon.progress.caught_up() {
            true => Ok(horizon),
            false => Err(DrawError::NotCaughtUp {
                consumer: consumer.to_owned(),
                acked: horizon.progress.ack_floor,
                last: horizon.progress.last,
            }),
        }
    }

    #[tracing::instrument(name = "lottery_draw", skip(self))]
    pub async fn draw(&self, tournament: &str) -> Result<Drawn, DrawError> {
        let mut lock = self
            .store
            .lock_draw(tournament)
            .await?
            .ok_or_else(|| DrawError::NoCommitment(tournament.to_owned()))?;
        let definition = self
            .store
            .lottery_tournaments(true)
            .await?
            .into_iter()
            .find(|t| t.id.as_str() == tournament);
        if let Some(drawn_at) = lock.row.drawn_at {
            // Drawn before: the stored result stands; make sure its statuses went out.
            let (winners, waitlist) = lock.row.drawn_lists();
            let statuses_published = lock.row.statuses_published;
            drop(lock);
            let drawn = Drawn {
                winners,
                waitlist,
                fresh: false,
            };
            if !statuses_published {
                let claim_window = definition.map_or(
                    chrono::Duration::seconds(Tournament::DEFAULT_CLAIM_WINDOW_SECS as i64),
                    |t| t.claim_window(),
                );
                self.publish(tournament, &drawn, drawn_at, claim_window)
                    .await?;
            }
            return Ok(drawn);
        }
        let definition = definition
            .filter(|t| is_due(t, Utc::now()))
            .ok_or_else(|| DrawError::NotDue(tournament.to_owned()))?;
        self.wait_for_writer(&definition).await?;
        // Freeze.
        let registrants = lock.registrants().await?;
        // Draw.
        let corrupt = |what: &str| DrawError::Corrupt(format!("{tournament}: {what}"));
        let seed: [u8; 32] = lock
            .row
            .seed
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("seed is not 32 bytes"))?;
        let result = match (&lock.row.pseudonym_key, &lock.row.rules) {
            (Some(key), Some(rules)) => {
                let key: [u8; 32] = key
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("pseudonym key is not 32 bytes"))?;
                lottery::draw_v2(&seed, &key, rules, registrants).map_err(|e| corrupt(&e))?
            }
            // Lotteries committed before pseudonyms: v1, by the definition's rules.
            _ => {
                let weights: HashMap<String, f64> = definition
                    .groups
                    .iter()
                    .map(|g| (g.id.to_string(), g.weight))
                    .collect();
                lottery::draw_v1(&seed, registrants, weights, definition.capacity)
            }
        };
        let now = Utc::now();
        lock.record(&result, now).await?;
        let drawn = Drawn {
            winners: result.outcome.winners,
            waitlist: result.outcome.waitlist,
            fresh: true,
        };
        tracing::info!(
            tournament,
            winners = drawn.winners.len(),
            waitlist = drawn.waitlist.len(),
            "Lottery drawn."
        );
        metrics::counter!("tally_workers_lottery_draws_total").increment(1);
        // Publish.
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
        self.store.mark_statuses_published(tournament).await?;
        Ok(())
    }

    /// Publishes status events of one step, many acknowledgements in flight at once.
    async fn publish_changes(
        &self,
        changes: Vec<RegistrationStatus>,
        step: &str,
    ) -> Result<(), DrawError> {
        let steps = changes.into_iter().map(|c| (c, step.to_owned()));
        self.publish_steps(steps.collect()).await
    }

    /// Publishes status events, each named by its own step (see
    /// [`RegistrationStatus::event_id`]), many acknowledgements in flight at once.
    async fn publish_steps(
        &self,
        changes: Vec<(RegistrationStatus, String)>,
    ) -> Result<(), DrawError> {
        use futures::StreamExt;
        let results: Vec<Result<(), DrawError>> = futures::stream::iter(changes)
            .map(|(change, step)| {
                let id = change.event_id(&step);
                let step = step.split(':').next().unwrap_or_default().to_owned();
                async move {
                    let envelope = Envelope::keyed(id, Event::RegistrationStatus(change));
                    let stored = self
                        .publisher
                        .publish(&envelope, true)
                        .await
                        .map_err(|e| DrawError::JetStream(e.to_string()))?;
                    if stored.duplicate {
                        // Only this job makes these ids, so a duplicate is its own earlier
                        // publish (a resumed draw or release): never a client's, but worth
                        // seeing, since a silent one would hide a lost status change.
                        tracing::warn!(id = %envelope.id, step, "JetStream answered a status change as a duplicate.");
                        metrics::counter!("tally_workers_status_duplicates_total", "step" => step)
                            .increment(1);
                    }
                    Ok(())
                }
            })
            .buffer_unordered(PUBLISHES_IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Hands on every freed place (a winner withdrew, or a promotion found its user gone) and
    /// releases every won place whose claim deadline has passed, each to the next user on the
    /// waitlist (with a new deadline). Decides from the status view only once the Redis sink
    /// has passed the stream's end as it was when the step first asked, and only on deadlines
    /// a grace before then, so it never acts on a claim it has not seen, however busy the
    /// stream stays.
    #[tracing::instrument(name = "lottery_release", skip(self))]
    pub async fn release_expired(&self, now: DateTime<Utc>) -> Result<usize, DrawError> {
        let drawn = self.store.published_lotteries().await?;
        if drawn.is_empty() {
            return Ok(0);
        }
        // The views have applied what the stream held when this step first asked; a claim
        // accepted just before a deadline may still have been on its way then.
        let horizon = self.wait_for_views().await?;
        let mut conn = self.redis.get_multiplexed_async_connection().await?;
        let cutoff = horizon.fixed_at.min(now) - RELEASE_GRACE;
        let mut released = 0;
        for t in drawn {
            // Only what is due: the freed places, the earliest expired deadlines and as many
            // of the first waitlisted users, from the indexes the Redis sink keeps beside the
            // status hash.
            let vacated: Vec<(String, u64)> = conn
                .zrange_withscores(
                    self.keys.draw_vacated(t.id.as_str()),
                    0,
                    RELEASES_PER_TICK - 1,
                )
                .await?;
            let expired: Vec<(String, i64)> = conn
                .zrangebyscore_limit_withscores(
                    self.keys.draw_deadlines(t.id.as_str()),
                    "-inf",
                    cutoff.timestamp_millis(),
                    0,
                    RELEASES_PER_TICK,
                )
                .await?;
            if expired.is_empty() && vacated.is_empty() {
                continue;
            }
            let waiting: Vec<(String, u64)> = conn
                .zrange_withscores(
                    self.keys.draw_waitlist(t.id.as_str()),
                    0,
                    (expired.len() + vacated.len()) as isize - 1,
                )
                .await?;
            let won = expired.into_iter().map(|(user, ms)| {
                let deadline = DateTime::from_timestamp_millis(ms);
                let state = RegistrationState::Won {
                    deadline,
                    promoted: false,
                };
                (user, state)
            });
            let waitlisted = waiting
                .into_iter()
                .map(|(user, position)| (user, RegistrationState::Waitlisted { position }));
            // A freed place is handed on once per freeing (its stream sequence names the
            // step): freed again after a promotion found its user gone, it is a new event.
            let freed: HashMap<String, u64> = vacated.iter().cloned().collect();
            let plan = release_plan(
                vacated.into_iter().map(|(u, _)| u),
                won.chain(waitlisted),
                cutoff,
            );
            let deadline = now + t.claim_window();
            let changes: Vec<(RegistrationStatus, String)> = plan
                .into_iter()
                .filter_map(|hand| {
                    let step = match hand.change {
                        StatusChange::HandedOn => format!("handed_on:{}", freed.get(&hand.user)?),
                        _ => "released".to_owned(),
                    };
                    let change = RegistrationStatus {
                        tournament: t.id.clone(),
                        user: hand.user.as_str().try_into().ok()?,
                        status: hand.change,
                        position: None,
                        deadline: hand.promoted.is_some().then_some(deadline),
                        promoted: hand.promoted.and_then(|p| p.as_str().try_into().ok()),
                    };
                    Some((change, step))
                })
                .collect();
            released += changes.len();
            self.publish_steps(changes).await?;
        }
        Ok(released)
    }

    /// Records a `claim.deadline_approaching` webhook for each won, unclaimed place whose
    /// deadline comes within the reminder lead, once: it reads only the deadlines after the
    /// tournament's mark (the last one reminded of), never the whole set. A place promoted
    /// with a deadline already inside the lead (a claim window shorter than the lead) may be
    /// behind the mark and get no reminder.
    #[tracing::instrument(name = "lottery_remind", skip(self))]
    pub async fn remind_approaching(&self, now: DateTime<Utc>) -> Result<usize, DrawError> {
        if self.claim_reminder <= chrono::Duration::zero() {
            return Ok(0);
        }
        let drawn = self.store.published_lotteries().await?;
        if drawn.is_empty() {
            return Ok(0);
        }
        let mut conn = self.redis.get_multiplexed_async_connection().await?;
        let horizon = (now + self.claim_reminder).timestamp_millis();
        let mut reminded = 0;
        for t in drawn {
            let mark_key = self.keys.draw_reminded(t.id.as_str());
            let mark: Option<i64> = conn.get(&mark_key).await?;
            let from = mark.map_or_else(|| "-inf".to_owned(), |m| format!("({m}"));
            let due: Vec<(String, i64)> = conn
                .zrangebyscore_limit_withscores(
                    self.keys.draw_deadlines(t.id.as_str()),
                    from,
                    horizon,
                    0,
                    RELEASES_PER_TICK,
                )
                .await?;
            let Some(&(_, last)) = due.last() else {
                continue;
            };
            let messages: Vec<Message> = due
                .iter()
                .filter_map(|(user, ms)| {
                    let user = UserId::try_from(user.as_str()).ok()?;
                    let deadline = DateTime::from_timestamp_millis(*ms)?;
                    Some(Message::deadline_approaching(&t.id, &user, deadline, now))
                })
                .collect();
            self.store.record_messages(&messages).await?;
            // A full page may have cut a group sharing its last deadline: read that again
            // (the messages' ids make a repeat a no-op).
            let full = due.len() as isize == RELEASES_PER_TICK;
            let _: () = conn
                .set(&mark_key, if full { last - 1 } else { last })
                .await?;
            metrics::counter!("tally_workers_claim_reminders_total")
                .increment(messages.len() as u64);
            reminded += messages.len();
        }
        Ok(reminded)
    }

    /// First-come: announces each registrant who moved up into a place because someone ahead
    /// withdrew, as a `promoted` status event (so the webhooks, Postgres and ClickHouse hear
    /// of it; the place itself follows from positions). Reads only tournaments with a
    /// withdrawal past the mark it keeps per tournament in Redis; Postgres holds a prefix of
    /// the stream, and places computed from a prefix are final.
    #[tracing::instrument(name = "first_come_promote", skip(self))]
    pub async fn promote_first_come(&self) -> Result<usize, DrawError> {
        let mut conn = self.redis.get_multiplexed_async_connection().await?;
        let mut promoted = 0;
        for (t, latest) in self.store.tournaments_with_withdrawals().await? {
            let (RegistrationMode::FirstCome, Some(capacity)) = (t.mode, t.capacity) else {
                continue;
            };
            let mark_key = self.keys.promotions_mark(t.id.as_str());
            let mark: Option<i64> = conn.get(&mark_key).await?;
            if mark.is_some_and(|m| m >= latest) {
                continue;
            }
            let moved = self
                .store
                .first_come_promotions(t.id.as_str(), capacity)
                .await?;
            let changes: Vec<RegistrationStatus> = moved
                .into_iter()
                .filter_map(|(user, place)| {
                    Some(RegistrationStatus {
                        tournament: t.id.clone(),
                        user: user.as_str().try_into().ok()?,
                        status: StatusChange::Promoted,
                        position: u32::try_from(place).ok(),
                        deadline: None,
                        promoted: None,
                    })
                })
                .collect();
            promoted += changes.len();
            self.publish_changes(changes, "promoted").await?;
            let _: () = conn.set(&mark_key, latest).await?;
        }
        Ok(promoted)
    }

    /// Waits until the Redis sink has applied (and acknowledged) what the stream held when
    /// the release step first asked.
    async fn wait_for_views(&self) -> Result<Horizon, DrawError> {
        self.wait_for(&self.views_consumer, "release").await
    }
}

/// How long after a deadline a place is released: longer than ingest's publish timeout.
const RELEASE_GRACE: chrono::Duration = chrono::Duration::seconds(5);

/// Places one release step hands on per tournament; the rest wait for the next tick, so one
/// step's Redis reads and publishes stay bounded however many deadlines pass at once.
const RELEASES_PER_TICK: isize = 10_000;

impl Drawer {
    /// Claims the tournaments due for a draw job: each at most once every five minutes, so a
    /// job waiting for the writer is not joined by a new one every tick.
    pub async fn claim_due(&self, now: DateTime<Utc>) -> Result<Vec<String>, DrawError> {
        let mut claimed = Vec::new();
        for tournament in self.due(now).await? {
            if self.store.claim_draw(&tournament).await? {
                claimed.push(tournament);
            }
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
    match drawer.promote_first_come().await? {
        0 => {}
        n => tracing::info!(promoted = n, "First-come places freed; the next moved up."),
    }
    match drawer.remind_approaching(Utc::now()).await? {
        0 => {}
        n => tracing::info!(
            reminded = n,
            "Claim deadlines approaching; winners reminded."
        ),
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
