//! Typed identifiers. Each checks length and charset once, at the edge, so the rest of the
//! system can put them in subjects, keys and SQL parameters without escaping worries.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("must only contain {allowed}")]
    BadChar { allowed: &'static str },
}

/// Scopes name subjects (`tally.v1.vote.poll.<scope>`), so no dots, wildcards or spaces.
const SCOPE_ALLOWED: &str = "letters, digits, '_' and '-'";
const SCOPE_MAX: usize = 64;
/// [`scope_char`] as an ECMA-262 pattern (OpenAPI).
#[cfg_attr(not(feature = "openapi"), allow(dead_code))]
const SCOPE_PATTERN: &str = "^[A-Za-z0-9_-]+$";
fn scope_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Members of a scope (voters, teams, options…) may look like emails or urns.
const MEMBER_ALLOWED: &str = "letters, digits and '_', '-', '.', ':', '@', '+'";
const MEMBER_MAX: usize = 128;
/// [`member_char`] as an ECMA-262 pattern (OpenAPI).
#[cfg_attr(not(feature = "openapi"), allow(dead_code))]
const MEMBER_PATTERN: &str = "^[A-Za-z0-9_.:@+-]+$";
fn member_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@' | '+')
}

fn check(s: &str, max: usize, ok: fn(char) -> bool, allowed: &'static str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > max {
        return Err(IdError::TooLong { max });
    }
    if !s.chars().all(ok) {
        return Err(IdError::BadChar { allowed });
    }
    Ok(())
}

/// The OpenAPI schema of an id: a string of `1..=max` characters matching `pattern` (the same
/// rules [`check`] applies), so generated clients and fuzzers know what the API accepts.
#[cfg(feature = "openapi")]
fn id_schema(
    description: &str,
    max: usize,
    pattern: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description.trim()))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .into()
}

macro_rules! id_type {
    ($(#[doc = $doc:literal])* $name:ident, $max:expr, $ok:expr, $allowed:expr, $pattern:expr) => {
        $(#[doc = $doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema(concat!($($doc),*), $max, $pattern)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check(&s, $max, $ok, $allowed)?;
                Ok(Self(s))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::try_from(s.to_owned())
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::try_from(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

macro_rules! scope_ids {
    ($($(#[doc = $doc:literal])* $name:ident),*) => { $(id_type!($(#[doc = $doc])* $name, SCOPE_MAX, scope_char, SCOPE_ALLOWED, SCOPE_PATTERN);)* };
}
macro_rules! member_ids {
    ($($(#[doc = $doc:literal])* $name:ident),*) => { $(id_type!($(#[doc = $doc])* $name, MEMBER_MAX, member_char, MEMBER_ALLOWED, MEMBER_PATTERN);)* };
}

scope_ids!(
    /// A poll: the scope of poll votes.
    PollId,
    /// An arena of pairwise comparisons: the scope of pair votes.
    ArenaId,
    /// A tournament: the scope of scores, registrations and media.
    TournamentId
);

member_ids!(
    /// Who voted in a poll.
    VoterId,
    /// A pair-vote session (personal rankings are per session).
    SessionId,
    /// A registered user.
    UserId,
    /// A team in a tournament.
    TeamId,
    /// A match in a tournament.
    MatchId,
    /// An option of a poll.
    OptionId,
    /// An item compared in an arena.
    ItemId,
    /// A priority group of a registration window.
    GroupId,
    /// An uploaded media object.
    MediaId
);

/// A client-chosen idempotency key: 1–255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for IdempotencyKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        id_schema(
            "A client-chosen idempotency key: 1–255 visible ASCII characters.",
            Self::MAX_LEN,
            "^[!-~]+$",
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for IdempotencyKey {}

/// Namespace for turning idempotency keys that are not UUIDs into event ids (UUIDv5).
const IDEMPOTENCY_NAMESPACE: uuid::Uuid = uuid::uuid!("0b6a7f4e-5f43-4c55-9a55-7a11e7a11e00");

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The event id this key stands for: the key itself when it is a UUID, otherwise a
    /// UUIDv5 of it, so the same key always names the same event in every sink.
    pub fn event_id(&self) -> uuid::Uuid {
        uuid::Uuid::parse_str(&self.0)
            .unwrap_or_else(|_| uuid::Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, self.0.as_bytes()))
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        check(
            &s,
            Self::MAX_LEN,
            |c| c.is_ascii_graphic(),
            "visible ASCII characters",
        )?;
        Ok(Self(s))
    }
}

impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> String {
        k.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_ids_refuse_subject_metacharacters() {
        for bad in ["a.b", "a*", ">", "a b", "", "ä", "a\0"] {
            assert!(PollId::try_from(bad).is_err(), "{bad:?} accepted");
        }
        assert!(PollId::try_from("final-2026_round1").is_ok());
    }

    #[test]
    fn ids_enforce_their_length() {
        assert_eq!(
            TournamentId::try_from("x".repeat(65)),
            Err(IdError::TooLong { max: 64 })
        );
        assert!(VoterId::try_from("x".repeat(128)).is_ok());
        assert!(VoterId::try_from("x".repeat(129)).is_err());
    }

    #[test]
    fn member_ids_accept_emails_and_urns() {
        assert!(UserId::try_from("ada+tally@example.org").is_ok());
        assert!(ItemId::try_from("urn:model:gpt-4.1").is_ok());
        assert!(UserId::try_from("a/b").is_err());
    }

    #[test]
    fn ids_deserialize_through_validation() {
        let err = serde_json::from_str::<PollId>("\"a.b\"").unwrap_err();
        assert!(err.to_string().contains("must only contain"), "{err}");
    }

    #[test]
    fn idempotency_keys_map_to_stable_event_ids() {
        let uuid = "01890a5d-ac96-774b-bcce-b302099a8057";
        let k = IdempotencyKey::try_from(uuid.to_owned()).unwrap();
        assert_eq!(k.event_id().to_string(), uuid);
        let a = IdempotencyKey::try_from("order-17".to_owned()).unwrap();
        let b = IdempotencyKey::try_from("order-17".to_owned()).unwrap();
        assert_eq!(a.event_id(), b.event_id());
        assert_ne!(a.event_id(), k.event_id());
        assert!(IdempotencyKey::try_from("has space".to_owned()).is_err());
        assert!(IdempotencyKey::try_from("k".repeat(256)).is_err());
    }
}
