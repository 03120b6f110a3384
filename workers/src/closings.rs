//! Endings worth telling: `poll.closed` with a poll's final results, and `tournament.final`
//! with a tournament's final standings once every listed match is final (from then on every
//! score is refused, `409 match_final`: the standings are frozen). Each is recorded once, from
//! Postgres, the system of record, only once a grace has passed (a vote or score admitted just
//! before the close may still be on its way) and the writer has passed the stream's end as it
//! was then, so the results are the ones every store agrees on, however busy the stream stays.

use crate::store::{PgStore, StoreError};
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tally_schema::api::{PollResults, Ranked};
use tally_schema::webhooks::{Message, TournamentFinalData};

/// How long after a close the results are taken: longer than ingest's publish timeout, and
/// than an ingest instance takes to learn that a match went final.
pub const CLOSING_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClosingError {
    #[error(transparent)]
    Db(#[from] StoreError),
    #[error("JetStream: {0}")]
    JetStream(String),
}

pub struct Closer {
    store: PgStore,
    js: jetstream::Context,
    spec: tally_schema::StreamSpec,
    writer_consumer: String,
    /// Message ids known to be recorded: not looked up again.
    told: Mutex<HashSet<String>>,
    /// When each tournament was first seen with every match final (its grace starts then).
    finished: Mutex<HashMap<String, DateTime<Utc>>>,
    /// What the writer must have passed before results are taken.
    horizons: tally_kit::consumer::Horizons,
}

/// One ending due to be told.
enum Ending {
    Poll(tally_schema::resources::Poll),
    Tournament(tally_schema::resources::Tournament),
}

impl Closer {
    pub fn new(
        store: PgStore,
        js: jetstream::Context,
        spec: tally_schema::StreamSpec,
        writer_consumer: String,
    ) -> Self {
        Self {
            store,
            js,
            spec,
            writer_consumer,
            told: Mutex::new(HashSet::new()),
            finished: Mutex::new(HashMap::new()),
            horizons: Default::default(),
        }
    }

    /// Records the messages of every ending not told yet; answers how many.
    #[tracing::instrument(name = "closings", skip(self))]
    pub async fn tell(&self, now: DateTime<Utc>) -> Result<usize, ClosingError> {
        let grace = chrono::Duration::from_std(CLOSING_GRACE).unwrap_or_default();
        // Each ending with the time from which everything before it is on the stream.
        let mut due: Vec<(String, Ending, DateTime<Utc>)> = Vec::new();
        for poll in self.store.closed_polls(now - grace).await? {
            if let Some(closes_at) = poll.closes_at {
                let id = Message::poll_closed_id(poll.id.as_str(), closes_at);
                due.push((id, Ending::Poll(poll), closes_at + grace));
            }
        }
        let finals = self.store.final_tournaments().await?;
        {
            let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            let listed: HashSet<&str> = finals.iter().map(|t| t.id.as_str()).collect();
            finished.retain(|id, _| listed.contains(id.as_str()));
            for t in finals {
                let since = *finished.entry(t.id.to_string()).or_insert(now);
                if since + grace <= now {
                    let id = Message::tournament_final_id(t.id.as_str());
                    due.push((id, Ending::Tournament(t), since + grace));
                }
            }
        }
        {
            let told = self.told.lock().unwrap_or_else(|e| e.into_inner());
            due.retain(|(id, _, _)| !told.contains(id));
        }
        if due.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = due.iter().map(|(id, _, _)| id.clone()).collect();
        let known = self.store.known_messages(&ids).await?;
        self.told
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(known.iter().cloned());
        let known: HashSet<String> = known.into_iter().collect();
        due.retain(|(id, _, _)| !known.contains(id));
        if due.is_empty() {
            return Ok(0);
        }
        // Every vote or score accepted before an ending must be in Postgres before its
        // results are taken: the writer must pass the stream's end as it was when this step
        // first asked, and only endings settled by then are told now.
        let horizon = self
            .horizons
            .ask(&self.js, &self.spec, &self.writer_consumer, "closings")
            .await
            .map_err(|e| ClosingError::JetStream(e.to_string()))?;
        if !horizon.progress.caught_up() {
            return Ok(0);
        }
        due.retain(|(_, _, settled)| *settled <= horizon.fixed_at);
        let mut messages = Vec::with_capacity(due.len());
        for (id, ending, _) in &due {
            let message = self.message(ending, now).await?;
            debug_assert_eq!(
                &message.id, id,
                "looked up under the id it is recorded with"
            );
            messages.push(message);
        }
        self.store.record_messages(&messages).await?;
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        told.extend(messages.iter().map(|m| m.id.clone()));
        for m in &messages {
            metrics::counter!("tally_workers_closings_total", "kind" => m.event_type.as_str())
                .increment(1);
        }
        Ok(messages.len())
    }

    async fn message(&self, ending: &Ending, now: DateTime<Utc>) -> Result<Message, ClosingError> {
        Ok(match ending {
            Ending::Poll(poll) => {
                let votes = self.store.poll_votes(poll).await?;
                let results = PollResults::new(poll.id.as_str(), votes);
                let closes_at = poll.closes_at.unwrap_or(now);
                Message::poll_closed(results, closes_at, closes_at)
            }
            Ending::Tournament(t) => {
                let scores = self.store.scores(t.id.as_str()).await?;
                let standings = Ranked::list(tally_schema::replay::standings(scores, t.sort), 0);
                let data = TournamentFinalData {
                    tournament: t.id.clone(),
                    standings,
                };
                Message::tournament_final(data, now)
            }
        })
    }
}

/// The cron tick: tell every ending due.
pub async fn closings_tick(
    _tick: apalis_cron::Tick,
    closer: apalis::prelude::Data<std::sync::Arc<Closer>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    match closer.tell(Utc::now()).await? {
        0 => {}
        n => tracing::info!(told = n, "Polls closed or tournaments final: told."),
    }
    Ok(())
}
