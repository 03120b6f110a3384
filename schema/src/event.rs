//! The envelope every event travels in, and the event kinds.
//!
//! Stream messages are decoded leniently (unknown fields are ignored) so that an older
//! consumer keeps working while a newer ingest adds optional fields; the strict checks live in
//! [`crate::api`], at the edge.

use crate::ids::{
    ArenaId, GroupId, ItemId, MatchId, MediaId, OptionId, PollId, SessionId, TeamId, TournamentId,
    UserId, VoterId,
};
use crate::resources::ScoreEffect;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One event as stored on the stream: id, time received, and the typed payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUIDv7 assigned by ingest, or derived from the client's idempotency key.
    pub id: Uuid,
    /// When ingest accepted the request.
    pub received_at: DateTime<Utc>,
    /// The id came from a client's idempotency key, so the same event may reach the stream
    /// twice (a retry after JetStream's duplicate window); sinks then deduplicate by id.
    /// Server-made ids are unique by construction and need no such bookkeeping.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyed: bool,
    /// The kind (as `type`) and its payload.
    pub event: Event,
}

impl Envelope {
    /// A fresh envelope with a time-ordered id.
    pub fn new(event: Event) -> Self {
        Self {
            id: Uuid::now_v7(),
            received_at: Utc::now(),
            keyed: false,
            event,
        }
    }

    /// An envelope whose id a client chose (its idempotency key).
    pub fn keyed(id: Uuid, event: Event) -> Self {
        Self {
            id,
            keyed: true,
            ..Self::new(event)
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these plain structs to a Vec cannot fail.
        serde_json::to_vec(self).expect("envelope serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// An event as a sink holds it: the envelope plus its place in JetStream's total order.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub stream_seq: u64,
    pub envelope: Envelope,
}

impl StoredEvent {
    /// A stream message's payload at `stream_seq` as the event a sink applies, or why it
    /// cannot be one (the reason a dead letter carries). Pure, so it can be fuzzed without a
    /// NATS message.
    pub fn decode(stream_seq: u64, payload: &[u8]) -> Result<Self, String> {
        let envelope =
            Envelope::from_json(payload).map_err(|e| format!("undecodable event: {e}"))?;
        Ok(Self {
            stream_seq,
            envelope,
        })
    }
}

/// A vote in a poll: the voter's chosen options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollVote {
    pub poll: PollId,
    pub voter: VoterId,
    pub options: Vec<OptionId>,
}

/// "winner beat loser" in an arena, from one session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairVote {
    pub arena: ArenaId,
    pub session: SessionId,
    pub winner: ItemId,
    pub loser: ItemId,
}

/// Points for a team in a match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub tournament: TournamentId,
    #[serde(rename = "match")]
    pub match_id: MatchId,
    pub team: TeamId,
    pub points: i64,
    /// How the points combine with the team's standing: stamped by ingest from the
    /// tournament's score operator and sort order (older events: add).
    #[serde(default, skip_serializing_if = "is_add")]
    pub effect: ScoreEffect,
}

fn is_add(effect: &ScoreEffect) -> bool {
    *effect == ScoreEffect::Add
}

/// A user asking for a place in a tournament, optionally in a priority group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub tournament: TournamentId,
    pub user: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
}

impl Registration {
    /// One registration per user and tournament: a repeat is the same event, stored once.
    pub fn event_id(&self) -> Uuid {
        crate::ids::server_event_id(&["registration", self.tournament.as_str(), self.user.as_str()])
    }
}

/// An uploaded image stored in the object store, waiting for its thumbnails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaUploaded {
    pub tournament: TournamentId,
    pub media: MediaId,
    pub object_key: String,
    pub content_type: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
}

/// What happened to a registration: the draw's results, a claim, a lapse, a withdrawal and
/// the places they free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    /// Drawn a place; must claim it before `deadline`.
    Won,
    /// Drawn onto the waitlist at `position`.
    Waitlisted,
    /// Confirmed a won place.
    Claimed,
    /// Did not claim in time; the place goes to `promoted` (the next on the waitlist), who
    /// must claim it before `deadline`.
    Released,
    /// The registrant gave up: before the draw (not drawn), on the waitlist (leaves it), or
    /// holding a place (the place is handed on). Published by ingest for the registrant.
    Withdrawn,
    /// Lottery: a place freed by `user` (withdrawn, or a promotion that found its user gone)
    /// handed to `promoted`, the next still waitlisted, who must claim it before `deadline`;
    /// `promoted` is absent when no one waits. Published by the workers' release step.
    HandedOn,
    /// First-come: `user` moved up into a place at `position` because someone ahead withdrew.
    /// Published by the workers' release step; the place needs no claim.
    Promoted,
}

impl StatusChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Won => "won",
            Self::Waitlisted => "waitlisted",
            Self::Claimed => "claimed",
            Self::Released => "released",
            Self::Withdrawn => "withdrawn",
            Self::HandedOn => "handed_on",
            Self::Promoted => "promoted",
        }
    }

    pub const ALL: [StatusChange; 7] = [
        Self::Won,
        Self::Waitlisted,
        Self::Claimed,
        Self::Released,
        Self::Withdrawn,
        Self::HandedOn,
        Self::Promoted,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A registrant's status changed: published by the draw job, a claim (ingest) or the release
/// job, so analysts see every change and the status views follow the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistrationStatus {
    pub tournament: TournamentId,
    pub user: UserId,
    pub status: StatusChange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<UserId>,
}

impl RegistrationStatus {
    /// One event per user, tournament and step (`drawn`, `claimed`, `released`,
    /// `withdrawn`, `handed_on` with the vacancy's stream sequence, `promoted`): a retried
    /// publish is the same event.
    pub fn event_id(&self, step: &str) -> Uuid {
        crate::ids::server_event_id(&[
            "registration_status",
            self.tournament.as_str(),
            self.user.as_str(),
            step,
        ])
    }
}

impl MediaUploaded {
    /// The upload's media id names its event: a retried upload of the same id is stored once.
    pub fn event_id(&self) -> Uuid {
        crate::ids::server_event_id(&["media", self.tournament.as_str(), self.media.as_str()])
    }
}

/// Every kind of event Tally carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    PollVote(PollVote),
    PairVote(PairVote),
    Score(Score),
    Registration(Registration),
    MediaUploaded(MediaUploaded),
    RegistrationStatus(RegistrationStatus),
}

/// The kind of an event, without its payload: names subjects, tables and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    PollVote,
    PairVote,
    Score,
    Registration,
    MediaUploaded,
    RegistrationStatus,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::PollVote,
        Kind::PairVote,
        Kind::Score,
        Kind::Registration,
        Kind::MediaUploaded,
        Kind::RegistrationStatus,
    ];

    /// The `type` tag on the wire and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PollVote => "poll_vote",
            Kind::PairVote => "pair_vote",
            Kind::Score => "score",
            Kind::Registration => "registration",
            Kind::MediaUploaded => "media_uploaded",
            Kind::RegistrationStatus => "registration_status",
        }
    }

    /// The subject tokens between `<root>.v1.` and the scope, e.g. `vote.poll`.
    pub fn subject_tokens(self) -> &'static str {
        match self {
            Kind::PollVote => "vote.poll",
            Kind::PairVote => "vote.pair",
            Kind::Score => "score",
            Kind::Registration => "registration",
            Kind::MediaUploaded => "media",
            Kind::RegistrationStatus => "registration_status",
        }
    }
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self {
            Event::PollVote(_) => Kind::PollVote,
            Event::PairVote(_) => Kind::PairVote,
            Event::Score(_) => Kind::Score,
            Event::Registration(_) => Kind::Registration,
            Event::MediaUploaded(_) => Kind::MediaUploaded,
            Event::RegistrationStatus(_) => Kind::RegistrationStatus,
        }
    }

    /// The poll, arena or tournament the event belongs to: the last subject token.
    pub fn scope(&self) -> &str {
        match self {
            Event::PollVote(e) => e.poll.as_str(),
            Event::PairVote(e) => e.arena.as_str(),
            Event::Score(e) => e.tournament.as_str(),
            Event::Registration(e) => e.tournament.as_str(),
            Event::MediaUploaded(e) => e.tournament.as_str(),
            Event::RegistrationStatus(e) => e.tournament.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote() -> Event {
        Event::PollVote(PollVote {
            poll: "p1".try_into().unwrap(),
            voter: "v1".try_into().unwrap(),
            options: vec!["a".try_into().unwrap()],
        })
    }

    #[test]
    fn envelope_round_trips_through_json() {
        let env = Envelope::new(vote());
        let back = Envelope::from_json(&env.to_json()).unwrap();
        assert_eq!(back, env);
        assert_eq!(env.id.get_version_num(), 7);
    }

    #[test]
    fn the_kind_travels_as_a_type_tag() {
        let json: serde_json::Value =
            serde_json::from_slice(&Envelope::new(vote()).to_json()).unwrap();
        assert_eq!(json["event"]["type"], "poll_vote");
        let score = r#"{"type":"score","tournament":"t","match":"m1","team":"red","points":3}"#;
        let ev: Event = serde_json::from_str(score).unwrap();
        assert_eq!(ev.kind(), Kind::Score);
        assert_eq!(ev.scope(), "t");
    }

    #[test]
    fn stream_decoding_ignores_fields_it_does_not_know() {
        let newer =
            r#"{"type":"registration","tournament":"t","user":"u","group":"vip","added_later":1}"#;
        assert!(serde_json::from_str::<Event>(newer).is_ok());
    }

    #[test]
    fn stream_decoding_still_validates_ids() {
        let bad = r#"{"type":"registration","tournament":"t.x","user":"u"}"#;
        assert!(serde_json::from_str::<Event>(bad).is_err());
    }
}
