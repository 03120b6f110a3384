//! Events as Postgres rows: one table per kind (`postgres/migrations/0001_events.sql`), one
//! mapping each way.
//!
//! - Event → row: [`Rows`] collects a batch into the column arrays of each table, which one
//!   `INSERT … SELECT FROM UNNEST` per table binds (`postgres/queries/insert_*.sql`).
//! - Row → event: the view `stored_events` (migration 0012) shows every row as its event's
//!   JSON, which [`StoredRow`] decodes with the same [`Event`] decoder the stream uses.

use crate::event::{Event, Kind, StoredEvent};
use crate::{Envelope, event};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use uuid::Uuid;

type Insert = Query<'static, Postgres, PgArguments>;

/// The columns every event table starts with.
#[derive(Default)]
struct Common {
    ids: Vec<Uuid>,
    seqs: Vec<i64>,
    received: Vec<DateTime<Utc>>,
}

impl Common {
    fn push(&mut self, e: &StoredEvent) {
        self.ids.push(e.envelope.id);
        self.seqs
            .push(i64::try_from(e.stream_seq).unwrap_or(i64::MAX));
        self.received.push(e.envelope.received_at);
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn bind(self, sql: &'static str) -> Insert {
        sqlx::query(sql)
            .bind(self.ids)
            .bind(self.seqs)
            .bind(self.received)
    }
}

fn text(v: &impl std::fmt::Display) -> String {
    v.to_string()
}

#[derive(Default)]
struct PollVotes {
    common: Common,
    poll: Vec<String>,
    voter: Vec<String>,
    /// Option ids cannot contain ',' (see ids.rs), so a joined list round-trips.
    options: Vec<String>,
}

impl PollVotes {
    fn push(&mut self, e: &StoredEvent, v: &event::PollVote) {
        self.common.push(e);
        self.poll.push(text(&v.poll));
        self.voter.push(text(&v.voter));
        let options: Vec<&str> = v.options.iter().map(|o| o.as_str()).collect();
        self.options.push(options.join(","));
    }
}

impl Table for PollVotes {
    const KIND: Kind = Kind::PollVote;

    fn len(&self) -> usize {
        self.common.len()
    }

    fn insert(self) -> Insert {
        self.common
            .bind(include_str!("../postgres/queries/insert_poll_votes.sql"))
            .bind(self.poll)
            .bind(self.voter)
            .bind(self.options)
    }
}

#[derive(Default)]
struct PairVotes {
    common: Common,
    arena: Vec<String>,
    session: Vec<String>,
    winner: Vec<String>,
    loser: Vec<String>,
}

impl PairVotes {
    fn push(&mut self, e: &StoredEvent, v: &event::PairVote) {
        self.common.push(e);
        self.arena.push(text(&v.arena));
        self.session.push(text(&v.session));
        self.winner.push(text(&v.winner));
        self.loser.push(text(&v.loser));
    }
}

impl Table for PairVotes {
    const KIND: Kind = Kind::PairVote;

    fn len(&self) -> usize {
        self.common.len()
    }

    fn insert(self) -> Insert {
        self.common
            .bind(include_str!("../postgres/queries/insert_pair_votes.sql"))
            .bind(self.arena)
            .bind(self.session)
            .bind(self.winner)
            .bind(self.loser)
    }
}

#[derive(Default)]
struct Scores {
    common: Common,
    tournament: Vec<String>,
    match_id: Vec<String>,
    team: Vec<String>,
    points: Vec<i64>,
    effect: Vec<&'static str>,
}

impl Scores {
    fn push(&mut self, e: &StoredEvent, s: &event::Score) {
        self.common.push(e);
        self.tournament.push(text(&s.tournament));
        self.match_id.push(text(&s.match_id));
        self.team.push(text(&s.team));
        self.points.push(s.points);
        self.effect.push(s.effect.as_str());
    }
}

impl Table for Scores {
    const KIND: Kind = Kind::Score;

    fn len(&self) -> usize {
        self.common.len()
    }

    fn insert(self) -> Insert {
        self.common
            .bind(include_str!("../postgres/queries/insert_scores.sql"))
            .bind(self.tournament)
            .bind(self.match_id)
            .bind(self.team)
            .bind(self.points)
            .bind(self.effect)
    }
}

#[derive(Default)]
struct Registrations {
    common: Common,
    tournament: Vec<String>,
    user: Vec<String>,
    group: Vec<Option<String>>,
}

impl Registrations {
    fn push(&mut self, e: &StoredEvent, r: &event::Registration) {
        self.common.push(e);
        self.tournament.push(text(&r.tournament));
        self.user.push(text(&r.user));
        self.group.push(r.group.as_ref().map(text));
    }
}

impl Table for Registrations {
    const KIND: Kind = Kind::Registration;

    fn len(&self) -> usize {
        self.common.len()
    }

    fn insert(self) -> Insert {
        self.common
            .bind(include_str!("../postgres/queries/insert_registrations.sql"))
            .bind(self.tournament)
            .bind(self.user)
            .bind(self.group)
    }
}

#[derive(Default)]
struct MediaUploads {
    common: Common,
    tournament: Vec<String>,
    media: Vec<String>,
    object_key: Vec<String>,
    content_type: Vec<String>,
    bytes: Vec<i64>,
    user: Vec<Option<String>>,
}

impl MediaUploads {
    fn push(&mut self, e: &StoredEvent, m: &event::MediaUploaded) {
        self.common.push(e);
        self.tournament.push(text(&m.tournament));
        self.media.push(text(&m.media));
        self.object_key.push(m.object_key.clone());
        self.content_type.push(m.content_type.clone());
        self.bytes.push(i64::try_from(m.bytes).unwrap_or(i64::MAX));
        self.user.push(m.user.as_ref().map(text));
    }
}

impl Table for MediaUploads {
    const KIND: Kind = Kind::MediaUploaded;

    fn len(&self) -> usize {
        self.common.len()
    }

    fn insert(self) -> Insert {
        self.common
            .bind(include_str!("../postgres/queries/insert_media_uploads.sql"))
            .bind(self.tournament)
            .bind(self.media)
            .bind(self.object_key)
            .bind(self.content_type)
            .bind(self.bytes)
            .bind(self.user)
    }
}

#[derive(Default)]
struct RegistrationStatuses {
    common: Common,
    tournament: Vec<String>,
    user: Vec<String>,
    status: Vec<&'static str>,
    promoted: Vec<Option<String>>,
    deadline: Vec<Option<DateTime<Utc>>>,
    /// 0 for none: the view maps it back to no position.
    position: Vec<i64>,
}

impl RegistrationStatuses {
    fn push(&mut self, e: &StoredEvent, s: &event::RegistrationStatus) {
        self.common.push(e);
        self.tournament.push(text(&s.tournament));
        self.user.push(text(&s.user));
        self.status.push(s.status.as_str());
        self.promoted.push(s.promoted.as_ref().map(text));
        self.deadline.push(s.deadline);
        self.position.push(s.position.map_or(0, i64::from));
    }
}

impl Table for RegistrationStatuses {
    const KIND: Kind = Kind::RegistrationStatus;

    fn len(&self) -> usize {
        self.common.len()
    }

    fn insert(self) -> Insert {
        self.common
            .bind(include_str!(
                "../postgres/queries/insert_registration_statuses.sql"
            ))
            .bind(self.tournament)
            .bind(self.user)
            .bind(self.status)
            .bind(self.promoted)
            .bind(self.deadline)
            .bind(self.position)
    }
}

/// A batch of events as the rows of their tables.
#[derive(Default)]
pub struct Rows {
    poll_votes: PollVotes,
    pair_votes: PairVotes,
    scores: Scores,
    registrations: Registrations,
    media_uploads: MediaUploads,
    registration_statuses: RegistrationStatuses,
}

impl Rows {
    pub fn new(events: &[StoredEvent]) -> Self {
        let mut rows = Self::default();
        for e in events {
            match &e.envelope.event {
                Event::PollVote(v) => rows.poll_votes.push(e, v),
                Event::PairVote(v) => rows.pair_votes.push(e, v),
                Event::Score(s) => rows.scores.push(e, s),
                Event::Registration(r) => rows.registrations.push(e, r),
                Event::MediaUploaded(m) => rows.media_uploads.push(e, m),
                Event::RegistrationStatus(s) => rows.registration_statuses.push(e, s),
            }
        }
        rows
    }

    /// One idempotent insert per table that has rows (`ON CONFLICT (event_id) DO NOTHING`),
    /// with its kind and row count.
    pub fn inserts(self) -> Vec<(Kind, usize, Insert)> {
        let mut inserts = Vec::new();
        add(&mut inserts, self.poll_votes);
        add(&mut inserts, self.pair_votes);
        add(&mut inserts, self.scores);
        add(&mut inserts, self.registrations);
        add(&mut inserts, self.media_uploads);
        add(&mut inserts, self.registration_statuses);
        inserts
    }
}

/// The column arrays of one event table.
trait Table {
    const KIND: Kind;
    fn len(&self) -> usize;
    fn insert(self) -> Insert;
}

fn add<T: Table>(inserts: &mut Vec<(Kind, usize, Insert)>, table: T) {
    let rows = table.len();
    if rows > 0 {
        inserts.push((T::KIND, rows, table.insert()));
    }
}

/// A row of the view `stored_events`.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredRow {
    pub stream_seq: i64,
    pub event_id: Uuid,
    pub received_at: DateTime<Utc>,
    /// The event's JSON, as text (sqlx without its JSON feature).
    pub event: String,
}

/// A stored row that is not a valid event: the schema and the view disagree.
#[derive(Debug, thiserror::Error)]
#[error("a stored row is not a valid event (seq {seq}): {reason}")]
pub struct BadRow {
    pub seq: i64,
    pub reason: String,
}

impl StoredRow {
    pub fn into_stored_event(self) -> Result<StoredEvent, BadRow> {
        let bad = |reason: String| BadRow {
            seq: self.stream_seq,
            reason,
        };
        let event: Event = serde_json::from_str(&self.event).map_err(|e| bad(e.to_string()))?;
        Ok(StoredEvent {
            stream_seq: u64::try_from(self.stream_seq).map_err(|e| bad(e.to_string()))?,
            envelope: Envelope {
                id: self.event_id,
                received_at: self.received_at,
                // Postgres holds each id once, so nothing to deduplicate on replay.
                keyed: false,
                event,
            },
        })
    }
}
