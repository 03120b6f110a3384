//! Recomputes every Redis structure from Postgres, the system of record: clears the sink's
//! keys, replays the stored events in stream order through the same batch script, and leaves
//! the applied sequence at the last one, so the live sink resumes right after it.
//!
//! Run it with the Redis sink stopped and the Postgres writer caught up (`check_writer_idle`).

use crate::leaderboard::{RedisError, RedisSink};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tally_schema::event::{
    MediaUploaded, PairVote, PollVote, Registration, RegistrationStatus, Score, StatusChange,
};
use tally_schema::resources::ScoreEffect;
use tally_schema::{Envelope, Event, StoredEvent};
use uuid::Uuid;

const PAGE: i64 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("a stored row is not a valid event (seq {seq}): {reason}")]
    BadRow { seq: i64, reason: String },
}

/// What a rebuild did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    pub events: u64,
    pub last_seq: u64,
}

#[derive(sqlx::FromRow)]
struct Row {
    stream_seq: i64,
    event_id: Uuid,
    received_at: DateTime<Utc>,
    kind: String,
    scope: String,
    a: Option<String>,
    b: Option<String>,
    c: Option<String>,
    n: Option<i64>,
    d: Option<DateTime<Utc>>,
}

pub async fn rebuild(pool: &PgPool, sink: &RedisSink) -> Result<Rebuilt, RebuildError> {
    let cleared = sink.clear().await?;
    tracing::info!(
        keys = cleared,
        prefix = sink.keys().prefix(),
        "Cleared the Redis views."
    );
    let mut after = 0i64;
    let mut events = 0u64;
    loop {
        let rows: Vec<Row> = sqlx::query_as(include_str!("../queries/events_after.sql"))
            .bind(after)
            .bind(PAGE)
            .fetch_all(pool)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.stream_seq;
        let page = rows
            .into_iter()
            .map(stored_event)
            .collect::<Result<Vec<_>, _>>()?;
        events += sink.apply(&page).await?.applied;
    }
    Ok(Rebuilt {
        events,
        last_seq: u64::try_from(after).unwrap_or(0),
    })
}

fn stored_event(row: Row) -> Result<StoredEvent, RebuildError> {
    let seq = row.stream_seq;
    let bad = |reason: String| RebuildError::BadRow { seq, reason };
    let text = |v: Option<String>, what: &str| v.ok_or_else(|| bad(format!("{what} is missing")));
    fn id<T: TryFrom<String, Error = tally_schema::ids::IdError>>(v: String) -> Result<T, String> {
        T::try_from(v.clone()).map_err(|e| format!("'{v}' {e}"))
    }
    let event = match row.kind.as_str() {
        "poll_vote" => Event::PollVote(PollVote {
            poll: id(row.scope).map_err(bad)?,
            voter: id(text(row.a, "voter")?).map_err(bad)?,
            options: text(row.b, "options")?
                .split(',')
                .filter(|o| !o.is_empty())
                .map(|o| id(o.to_owned()))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
        }),
        "pair_vote" => Event::PairVote(PairVote {
            arena: id(row.scope).map_err(bad)?,
            session: id(text(row.a, "session")?).map_err(bad)?,
            winner: id(text(row.b, "winner")?).map_err(bad)?,
            loser: id(text(row.c, "loser")?).map_err(bad)?,
        }),
        "score" => Event::Score(Score {
            tournament: id(row.scope).map_err(bad)?,
            match_id: id(text(row.a, "match")?).map_err(bad)?,
            team: id(text(row.b, "team")?).map_err(bad)?,
            points: row.n.ok_or_else(|| bad("points are missing".into()))?,
            effect: row
                .c
                .as_deref()
                .map_or(Some(ScoreEffect::Add), ScoreEffect::parse)
                .ok_or_else(|| bad("unknown score effect".into()))?,
        }),
        "registration" => Event::Registration(Registration {
            tournament: id(row.scope).map_err(bad)?,
            user: id(text(row.a, "user")?).map_err(bad)?,
            group: row.b.map(id).transpose().map_err(bad)?,
        }),
        "media_uploaded" => Event::MediaUploaded(MediaUploaded {
            tournament: id(row.scope).map_err(bad)?,
            media: id(text(row.a, "media")?).map_err(bad)?,
            object_key: text(row.b, "object key")?,
            content_type: text(row.c, "content type")?,
            bytes: u64::try_from(row.n.unwrap_or(0)).unwrap_or(0),
            user: None,
        }),
        "registration_status" => Event::RegistrationStatus(RegistrationStatus {
            tournament: id(row.scope).map_err(bad)?,
            user: id(text(row.a, "user")?).map_err(bad)?,
            status: row
                .b
                .as_deref()
                .and_then(StatusChange::parse)
                .ok_or_else(|| bad("unknown status".into()))?,
            promoted: row.c.map(id).transpose().map_err(bad)?,
            deadline: row.d,
            position: row.n.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0),
        }),
        other => return Err(bad(format!("unknown kind {other}"))),
    };
    Ok(StoredEvent {
        stream_seq: u64::try_from(seq).map_err(|e| bad(e.to_string()))?,
        envelope: Envelope {
            id: row.event_id,
            received_at: row.received_at,
            // Postgres holds each id once, so nothing to deduplicate on replay.
            keyed: false,
            event,
        },
    })
}
