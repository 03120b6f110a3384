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
    TournamentId,
    /// A broadcast channel: its own stream of messages.
    ChannelId
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

/// UUIDv5 namespace of the ids made from clients' idempotency keys.
const CLIENT_NAMESPACE: uuid::Uuid = uuid::uuid!("0b6a7f4e-5f43-4c55-9a55-7a11e7a11e00");
/// UUIDv5 namespace of the ids the server derives (a registration, a claim, a draw's status
/// changes, an upload). No client key is hashed under it, so no client can name one.
const SERVER_NAMESPACE: uuid::Uuid = uuid::uuid!("5e2f0c3a-9d1b-4e8a-b7c6-7a11e75e2fe0");

/// Who a client key belongs to: part of the id it makes, so two callers' keys never collide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOwner<'a> {
    /// No identity: the key is shared by every anonymous caller of the scope.
    Anonymous,
    /// The subject of a verified user token.
    User(&'a str),
    /// An API key, by the hex of its hash's first bytes (never the key itself).
    ApiKey(&'a str),
}

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The event id this key stands for: a UUIDv5 of the event's kind and scope, the caller
    /// and the key (a UUID key too), in the client namespace. The same retry maps to the same
    /// id; the same key sent for another kind, scope or caller, or a copy of a server-made id,
    /// maps elsewhere.
    pub fn event_id(&self, kind: &str, scope: &str, owner: &KeyOwner<'_>) -> uuid::Uuid {
        let owner = match owner {
            KeyOwner::Anonymous => String::new(),
            KeyOwner::User(sub) => format!("user:{sub}"),
            KeyOwner::ApiKey(id) => format!("key:{id}"),
        };
        // Length-prefixed parts: no choice of one part can shift bytes into another.
        uuid::Uuid::new_v5(
            &CLIENT_NAMESPACE,
            framed(&[kind, scope, &owner, &self.0]).as_bytes(),
        )
    }
}

/// An id the server derives from `parts` (for example `["registration", tournament, user]`),
/// in a namespace no client key reaches.
pub fn server_event_id(parts: &[&str]) -> uuid::Uuid {
    uuid::Uuid::new_v5(&SERVER_NAMESPACE, framed(parts).as_bytes())
}

fn framed(parts: &[&str]) -> String {
    parts.iter().map(|p| format!("{}:{p};", p.len())).collect()
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
    fn idempotency_keys_map_to_stable_event_ids_of_their_own_namespace() {
        let anon = KeyOwner::Anonymous;
        let uuid = "01890a5d-ac96-774b-bcce-b302099a8057";
        let k = IdempotencyKey::try_from(uuid.to_owned()).unwrap();
        // A UUID key is namespaced like any other: a client cannot pick the id itself.
        assert_ne!(k.event_id("poll_vote", "p", &anon).to_string(), uuid);
        let a = IdempotencyKey::try_from("order-17".to_owned()).unwrap();
        let b = IdempotencyKey::try_from("order-17".to_owned()).unwrap();
        let id = |k: &IdempotencyKey, kind, scope, owner| k.event_id(kind, scope, owner);
        assert_eq!(
            id(&a, "poll_vote", "p", &anon),
            id(&b, "poll_vote", "p", &anon)
        );
        assert_ne!(
            id(&a, "poll_vote", "p", &anon),
            id(&k, "poll_vote", "p", &anon)
        );
        assert_ne!(id(&a, "poll_vote", "p", &anon), id(&a, "score", "p", &anon));
        assert_ne!(
            id(&a, "poll_vote", "p", &anon),
            id(&a, "poll_vote", "q", &anon)
        );
        assert_ne!(
            id(&a, "poll_vote", "p", &KeyOwner::User("u1")),
            id(&a, "poll_vote", "p", &KeyOwner::User("u2"))
        );
        // The key a stranger would send to cancel u1's registration names another event.
        let forged = IdempotencyKey::try_from("registration:t:u1".to_owned()).unwrap();
        let server = server_event_id(&["registration", "t", "u1"]);
        for kind in ["registration", "poll_vote"] {
            assert_ne!(forged.event_id(kind, "t", &anon), server);
        }
        // Parts are framed: moving a separator changes the id.
        assert_ne!(
            server_event_id(&["a:b", "c"]),
            server_event_id(&["a", "b:c"])
        );
        assert!(IdempotencyKey::try_from("has space".to_owned()).is_err());
        assert!(IdempotencyKey::try_from("k".repeat(256)).is_err());
    }
}
