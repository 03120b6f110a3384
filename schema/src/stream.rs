//! The JetStream stream definition and the subject scheme, in one place.
//!
//! Subjects are `<root>.v1.<kind tokens>.<scope>`, e.g. `tally.v1.vote.poll.final-2026`, so a
//! consumer can filter by kind (`tally.v1.vote.>`) or by scope and partition by the last token.
//! Dead letters live in a separate stream so that no event consumer ever sees them.

use crate::event::{Event, Kind};
use crate::ids::ChannelId;
use std::time::Duration;

/// What the event stream is called, what it holds and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name, `TALLY` in production; tests use their own.
    pub name: String,
    /// First subject token, `tally` in production; tests use their own.
    pub subject_root: String,
    /// How long JetStream remembers a message id: a retry with the same idempotency key
    /// inside this window is stored once (sinks catch later ones by event id).
    pub duplicate_window: Duration,
    /// How long events stay on the stream; a sink down longer than this misses events.
    pub max_age: Duration,
    /// Size cap. When full, publishes are refused (503) rather than old events discarded,
    /// because an old event may not have reached every sink yet.
    pub max_bytes: i64,
    /// Copies of every message in a JetStream cluster (1 on a single server, 3 in production):
    /// a publish is acknowledged once a majority holds it, so one lost node loses nothing.
    pub replicas: usize,
    /// Size cap of the media bucket (originals and variants): past it, uploads are refused.
    pub media_max_bytes: i64,
    /// How long uploaded media is kept (zero: until deleted).
    pub media_max_age: Duration,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            name: "TALLY".into(),
            subject_root: "tally".into(),
            duplicate_window: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 4 * 1024 * 1024 * 1024,
            replicas: 1,
            media_max_bytes: 2 * 1024 * 1024 * 1024,
            media_max_age: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

impl StreamSpec {
    /// The subjects the stream captures: every versioned event subject.
    pub fn subjects(&self) -> Vec<String> {
        vec![format!("{}.v1.>", self.subject_root)]
    }

    /// Core NATS subject (outside the stream) on which a changed resource definition is
    /// announced, so every ingest reloads its catalog at once.
    pub fn resource_changes_subject(&self) -> String {
        format!("{}.admin.changed", self.subject_root)
    }

    /// Where an event is published.
    pub fn subject_for(&self, event: &Event) -> String {
        self.subject(event.kind(), event.scope())
    }

    pub fn subject(&self, kind: Kind, scope: &str) -> String {
        format!(
            "{}.v1.{}.{}",
            self.subject_root,
            kind.subject_tokens(),
            scope
        )
    }

    /// The filter that matches every event of one kind.
    pub fn kind_filter(&self, kind: Kind) -> String {
        format!("{}.v1.{}.*", self.subject_root, kind.subject_tokens())
    }

    /// Core NATS subject (not stored) on which the aggregator says a live view changed.
    pub fn live_subject(&self, view: LiveView, scope: &str) -> String {
        format!("{}.live.{}.{scope}", self.subject_root, view.as_str())
    }

    /// Every live-view notification.
    pub fn live_subjects(&self) -> String {
        format!("{}.live.>", self.subject_root)
    }

    /// Reads a live-view subject back into its view and scope.
    pub fn parse_live_subject<'a>(&self, subject: &'a str) -> Option<(LiveView, &'a str)> {
        let rest = subject
            .strip_prefix(&self.subject_root)?
            .strip_prefix(".live.")?;
        let (view, scope) = rest.split_once('.')?;
        let view = match view {
            "poll" => LiveView::PollResults,
            "standings" => LiveView::Standings,
            "registrations" => LiveView::RegistrationStatus,
            _ => return None,
        };
        Some((view, scope))
    }

    /// The JetStream object store of uploaded media (originals and variants).
    pub fn media_bucket(&self) -> String {
        format!("{}_MEDIA", self.name)
    }

    /// The key-value bucket of leases (which aggregator is active).
    pub fn leases_bucket(&self) -> String {
        format!("{}_LEASES", self.name)
    }

    /// The stream that holds one broadcast channel's messages (its retention is the
    /// channel's, so each channel has its own).
    pub fn channel_stream(&self, channel: &ChannelId) -> String {
        format!("{}_CH_{channel}", self.name)
    }

    /// The prefix of every channel stream's name (backups list them by it).
    pub fn channel_stream_prefix(&self) -> String {
        format!("{}_CH_", self.name)
    }

    /// Where a channel's messages are published: outside the event subjects.
    pub fn channel_subject(&self, channel: &ChannelId) -> String {
        format!("{}.ch.{channel}", self.subject_root)
    }

    /// The stream that keeps messages no consumer could decode.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DLQ", self.name)
    }

    /// Whether `subject` is one of the stream's event subjects (where a dead letter may be
    /// put back), not a dead-letter, live or admin subject.
    pub fn is_event_subject(&self, subject: &str) -> bool {
        subject
            .strip_prefix(&self.subject_root)
            .and_then(|rest| rest.strip_prefix(".v1."))
            .is_some_and(|rest| !rest.is_empty())
    }

    /// Dead letters of one consumer.
    pub fn dead_letter_subject(&self, consumer: &str) -> String {
        format!("{}.dlq.{}", self.subject_root, consumer)
    }

    pub fn dead_letter_subjects(&self) -> Vec<String> {
        vec![format!("{}.dlq.>", self.subject_root)]
    }
}

/// The headers a dead letter carries beside the payload no consumer could decode: written
/// by the consumer that gave up on it, read back by `tally dead-letters`.
pub mod dead_letter_header {
    /// Why the message could not be decoded (one line, bounded).
    pub const REASON: &str = "Tally-Dead-Letter-Reason";
    /// The event subject it was published to, where a replay puts it back.
    pub const ORIGINAL_SUBJECT: &str = "Tally-Original-Subject";
    /// Its sequence in the event stream.
    pub const ORIGINAL_SEQUENCE: &str = "Tally-Original-Sequence";
}

/// A view that clients can follow live (SSE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LiveView {
    PollResults,
    Standings,
    /// Registration statuses of a tournament (each follower reads their own).
    RegistrationStatus,
    /// One match of a tournament: refreshed with its standings (scores notify both).
    Match,
}

impl LiveView {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveView::PollResults => "poll",
            LiveView::Standings => "standings",
            LiveView::RegistrationStatus => "registrations",
            LiveView::Match => "match",
        }
    }

    /// The live view an event changes, with its scope.
    pub fn changed_by(event: &Event) -> Option<(LiveView, &str)> {
        match event {
            Event::PollVote(v) => Some((LiveView::PollResults, v.poll.as_str())),
            Event::Score(s) => Some((LiveView::Standings, s.tournament.as_str())),
            Event::RegistrationStatus(s) => {
                Some((LiveView::RegistrationStatus, s.tournament.as_str()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PairVote, PollVote};

    #[test]
    fn live_subjects_round_trip() {
        let spec = StreamSpec::default();
        let subject = spec.live_subject(LiveView::Standings, "cup");
        assert_eq!(subject, "tally.live.standings.cup");
        assert_eq!(
            spec.parse_live_subject(&subject),
            Some((LiveView::Standings, "cup"))
        );
        assert_eq!(spec.parse_live_subject("tally.live.other.x"), None);
        assert_eq!(spec.parse_live_subject("tally.v1.score.cup"), None);
    }

    #[test]
    fn subjects_name_kind_and_scope() {
        let spec = StreamSpec::default();
        let ev = Event::PollVote(PollVote {
            poll: "final".try_into().unwrap(),
            voter: "v".try_into().unwrap(),
            options: vec![],
        });
        assert_eq!(spec.subject_for(&ev), "tally.v1.vote.poll.final");
        let ev = Event::PairVote(PairVote {
            arena: "models".try_into().unwrap(),
            session: "s".try_into().unwrap(),
            winner: "a".try_into().unwrap(),
            loser: "b".try_into().unwrap(),
        });
        assert_eq!(spec.subject_for(&ev), "tally.v1.vote.pair.models");
        assert_eq!(spec.kind_filter(Kind::Score), "tally.v1.score.*");
    }

    #[test]
    fn dead_letters_stay_outside_the_event_subjects() {
        let spec = StreamSpec::default();
        let dlq = spec.dead_letter_subject(crate::consumers::POSTGRES_WRITER);
        assert_eq!(dlq, "tally.dlq.postgres-writer");
        assert!(!dlq.starts_with("tally.v1."));
        assert!(!spec.is_event_subject(&dlq));
        assert!(spec.is_event_subject("tally.v1.vote.poll.final"));
        assert!(!spec.is_event_subject("tally.v1."));
        assert!(!spec.is_event_subject("tallyx.v1.vote.poll.final"));
        assert!(!spec.is_event_subject("tally.live.poll.final"));
        let prices: ChannelId = "prices".try_into().unwrap();
        assert!(!spec.is_event_subject(&spec.channel_subject(&prices)));
        assert_eq!(spec.channel_stream(&prices), "TALLY_CH_prices");
    }
}
