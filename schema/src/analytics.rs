//! Events as ClickHouse rows: every event as one row of `events`
//! (`clickhouse/0001_events.sql`), whatever its kind.

use crate::{Event, StoredEvent};

/// One row of `events` (see `schema/clickhouse/0001_events.sql`).
#[derive(Debug, clickhouse::Row, serde::Serialize, serde::Deserialize)]
pub struct EventRow {
    pub seq: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: uuid::Uuid,
    pub received_at: u32,
    pub kind: String,
    pub scope: String,
    pub actor: String,
    pub items: Vec<String>,
    pub points: i64,
}

impl EventRow {
    pub fn from_event(e: &StoredEvent) -> Self {
        let s = |v: &dyn std::fmt::Display| v.to_string();
        let (actor, items, points) = match &e.envelope.event {
            Event::PollVote(v) => (s(&v.voter), v.options.iter().map(|o| s(o)).collect(), 0),
            Event::PairVote(v) => (s(&v.session), vec![s(&v.winner), s(&v.loser)], 0),
            Event::Score(v) => (s(&v.team), vec![s(&v.match_id)], v.points),
            Event::Registration(v) => (s(&v.user), v.group.iter().map(|g| s(g)).collect(), 0),
            Event::RegistrationStatus(v) => (
                s(&v.user),
                std::iter::once(v.status.as_str().to_owned())
                    .chain(v.promoted.iter().map(|p| s(p)))
                    .collect(),
                v.position.map_or(0, i64::from),
            ),
            Event::MediaUploaded(v) => (
                v.user.as_ref().map(|u| s(u)).unwrap_or_default(),
                vec![s(&v.media)],
                i64::try_from(v.bytes).unwrap_or(i64::MAX),
            ),
        };
        Self {
            seq: e.stream_seq,
            id: e.envelope.id,
            received_at: u32::try_from(e.envelope.received_at.timestamp()).unwrap_or(0),
            kind: e.envelope.event.kind().as_str().to_owned(),
            scope: e.envelope.event.scope().to_owned(),
            actor,
            items,
            points,
        }
    }
}
