//! The JetStream stream definition and the subject scheme, in one place.
//!
//! Subjects are `<root>.v1.<kind tokens>.<scope>`, e.g. `tally.v1.vote.poll.final-2026`, so a
//! consumer can filter by kind (`tally.v1.vote.>`) or by scope and partition by the last token.
//! Dead letters live in a separate stream so that no event consumer ever sees them.

use crate::event::{Event, Kind};
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
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            name: "TALLY".into(),
            subject_root: "tally".into(),
            duplicate_window: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 4 * 1024 * 1024 * 1024,
        }
    }
}

impl StreamSpec {
    /// The subjects the stream captures: every versioned event subject.
    pub fn subjects(&self) -> Vec<String> {
        vec![format!("{}.v1.>", self.subject_root)]
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

    /// The stream that keeps messages no consumer could decode.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DLQ", self.name)
    }

    /// Dead letters of one consumer.
    pub fn dead_letter_subject(&self, consumer: &str) -> String {
        format!("{}.dlq.{}", self.subject_root, consumer)
    }

    pub fn dead_letter_subjects(&self) -> Vec<String> {
        vec![format!("{}.dlq.>", self.subject_root)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PairVote, PollVote};

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
        let dlq = spec.dead_letter_subject("postgres-writer");
        assert_eq!(dlq, "tally.dlq.postgres-writer");
        assert!(!dlq.starts_with("tally.v1."));
    }
}
