//! HTTP request bodies and their validation: strict (unknown fields are refused) and
//! field-level (every error names the field and the reason).
//!
//! [`decode`] turns bytes into a body or a [`FieldError`]; [`Validate`] adds the rules types
//! cannot express; [`decode_batch_item`] reuses both for one item of `POST /v1/events`.

use crate::event::{Event, PairVote, PollVote, Registration, Score};
use crate::ids::{
    ArenaId, GroupId, IdempotencyKey, ItemId, MatchId, OptionId, PollId, SessionId, TeamId,
    TournamentId, UserId, VoterId,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// At most this many options in one poll vote.
pub const MAX_OPTIONS_PER_VOTE: usize = 32;
/// Points of one score event stay within ±this.
pub const MAX_ABS_POINTS: i64 = 1_000_000_000;
/// At most this many items in one `POST /v1/events`.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// Whether a body was not JSON at all (400) or JSON with a bad value (422).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    Malformed,
    Invalid,
}

/// A rejected body: which field, why, and a stable machine-readable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub problem: Problem,
    pub code: &'static str,
    /// A path like `options[2]`; empty for the body as a whole.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn invalid(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            problem: Problem::Invalid,
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Not the shape the route takes at all (400): no field to name, only what was wrong.
    pub fn malformed(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            problem: Problem::Malformed,
            code,
            field: String::new(),
            message: message.into(),
        }
    }

    fn nested(mut self, parent: &str) -> Self {
        self.field = join_path(parent, &self.field);
        self
    }
}

/// An address Tally calls out to (a channel's upstream, a webhook endpoint): `http://` or
/// `https://`, a host, no credentials in it, at most 2048 characters, no whitespace.
pub fn check_http_url(field: &str, url: &str) -> Result<(), FieldError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    let ok = authority.is_some_and(|a| !a.is_empty() && !a.contains('@'))
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(FieldError::invalid(
            "invalid_value",
            field,
            "must be an http:// or https:// URL with a host and no credentials, of at most 2048 characters",
        ))
    }
}

fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_owned(),
        (_, true) => parent.to_owned(),
        _ if child.starts_with('[') => format!("{parent}{child}"),
        _ => format!("{parent}.{child}"),
    }
}

/// Rules beyond what the types check.
pub trait Validate {
    fn validate(&self) -> Result<(), FieldError>;
}

/// Decodes and validates a JSON body. Every body is an object; anything else is refused
/// before serde would try to read a struct from an array.
pub fn decode<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, FieldError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(FieldError::invalid(
            "invalid_type",
            "",
            "the body must be a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(field_error)?;
    value.validate()?;
    Ok(value)
}

fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

/// Maps a serde error to the field it is about and a code.
fn field_error(err: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let mut path = err.path().to_string();
    if path == "." {
        path.clear();
    }
    let inner = err.into_inner();
    // serde_json appends " at line L column C"; the field path says more to an API user.
    let full = inner.to_string();
    let message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    };
    if !inner.is_data() {
        return FieldError::malformed("malformed_json", message);
    }
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let (code, field) = if let Some(name) = named("unknown field `") {
        // serde_path_to_error already points at the unknown key; keep the path as it is.
        let field = if path.ends_with(&name) {
            path
        } else {
            join_path(&path, &name)
        };
        ("unknown_field", field)
    } else if let Some(name) = named("missing field `") {
        ("missing_field", join_path(&path, &name))
    } else if message.starts_with("invalid type") {
        ("invalid_type", path)
    } else {
        ("invalid_value", path)
    };
    FieldError::invalid(code, field, message)
}

/// `POST /v1/polls/{poll}/votes`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollVoteBody {
    /// Optional idempotency key (the `Idempotency-Key` header works too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<IdempotencyKey>,
    pub voter: VoterId,
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 32))]
    pub options: Vec<OptionId>,
}

impl Validate for PollVoteBody {
    fn validate(&self) -> Result<(), FieldError> {
        if self.options.is_empty() {
            return Err(FieldError::invalid(
                "empty",
                "options",
                "must name at least one option",
            ));
        }
        if self.options.len() > MAX_OPTIONS_PER_VOTE {
            return Err(FieldError::invalid(
                "too_many",
                "options",
                format!("must name at most {MAX_OPTIONS_PER_VOTE} options"),
            ));
        }
        for (i, option) in self.options.iter().enumerate() {
            if self.options[..i].contains(option) {
                return Err(FieldError::invalid(
                    "duplicate",
                    format!("options[{i}]"),
                    format!("option '{option}' is listed twice"),
                ));
            }
        }
        Ok(())
    }
}

impl PollVoteBody {
    pub fn into_event(self, poll: PollId) -> Event {
        Event::PollVote(PollVote {
            poll,
            voter: self.voter,
            options: self.options,
        })
    }
}

/// `POST /v1/arenas/{arena}/votes`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairVoteBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<IdempotencyKey>,
    pub session: SessionId,
    pub winner: ItemId,
    pub loser: ItemId,
}

impl Validate for PairVoteBody {
    fn validate(&self) -> Result<(), FieldError> {
        if self.winner == self.loser {
            return Err(FieldError::invalid(
                "same_as_winner",
                "loser",
                "must differ from winner",
            ));
        }
        Ok(())
    }
}

impl PairVoteBody {
    pub fn into_event(self, arena: ArenaId) -> Event {
        Event::PairVote(PairVote {
            arena,
            session: self.session,
            winner: self.winner,
            loser: self.loser,
        })
    }
}

/// `POST /v1/tournaments/{tournament}/scores`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<IdempotencyKey>,
    #[serde(rename = "match")]
    pub match_id: MatchId,
    pub team: TeamId,
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = -1_000_000_000, maximum = 1_000_000_000)
    )]
    pub points: i64,
}

impl Validate for ScoreBody {
    fn validate(&self) -> Result<(), FieldError> {
        // Not `points.abs()`: that overflows for i64::MIN (a panic with overflow checks, and
        // i64::MIN itself, accepted, without them).
        if !(-MAX_ABS_POINTS..=MAX_ABS_POINTS).contains(&self.points) {
            return Err(FieldError::invalid(
                "out_of_range",
                "points",
                format!("must be between -{MAX_ABS_POINTS} and {MAX_ABS_POINTS}"),
            ));
        }
        Ok(())
    }
}

impl ScoreBody {
    pub fn into_event(self, tournament: TournamentId) -> Event {
        Event::Score(Score {
            tournament,
            match_id: self.match_id,
            team: self.team,
            points: self.points,
            // The tournament's rule is stamped by ingest once it has found the tournament.
            effect: Default::default(),
        })
    }
}

/// `POST /v1/tournaments/{tournament}/registrations`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<IdempotencyKey>,
    pub user: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    /// Where to email the registrant (a tournament with `email` set): only a site key may
    /// name it; a user token's `email` claim gives it otherwise. Never on the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The registrant's IANA time zone, for the deadline in their email (a site key; a
    /// token's `zoneinfo` claim otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl Validate for RegistrationBody {
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(email) = &self.email {
            crate::email::check_email("email", email)?;
        }
        if let Some(zone) = &self.time_zone {
            crate::email::check_time_zone("time_zone", zone)?;
        }
        Ok(())
    }
}

impl RegistrationBody {
    pub fn into_event(self, tournament: TournamentId) -> Event {
        Event::Registration(Registration {
            tournament,
            user: self.user,
            group: self.group,
        })
    }
}

/// `POST /v1/events`: items are decoded one by one, so one bad item fails alone.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<BatchItem>, min_items = 1, max_items = 1000))]
    pub events: Vec<Box<serde_json::value::RawValue>>,
}

impl Validate for BatchBody {
    fn validate(&self) -> Result<(), FieldError> {
        if self.events.is_empty() {
            return Err(FieldError::invalid(
                "empty",
                "events",
                "must hold at least one event",
            ));
        }
        if self.events.len() > MAX_BATCH_ITEMS {
            return Err(FieldError::invalid(
                "too_many",
                "events",
                format!("must hold at most {MAX_BATCH_ITEMS} events"),
            ));
        }
        Ok(())
    }
}

/// One item of a batch, as a client builds it: the single-route body plus `type` and scope.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BatchItem {
    PollVote {
        poll: PollId,
        #[serde(flatten)]
        body: PollVoteBody,
    },
    PairVote {
        arena: ArenaId,
        #[serde(flatten)]
        body: PairVoteBody,
    },
    Score {
        tournament: TournamentId,
        #[serde(flatten)]
        body: ScoreBody,
    },
    Registration {
        tournament: TournamentId,
        #[serde(flatten)]
        body: RegistrationBody,
    },
}

/// Each item is its body's object with two more required properties, `type` and the scope
/// (`poll`, `arena` or `tournament`), in one closed object: a derived schema would `allOf` the
/// body (which refuses unknown properties) with them, which nothing can satisfy.
#[cfg(feature = "openapi")]
mod batch_item_schema {
    use super::*;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
    use utoipa::{PartialSchema, ToSchema};

    fn item<B: PartialSchema, S: ToSchema>(kind: &str, scope: &str) -> RefOr<Schema> {
        let RefOr::T(Schema::Object(mut object)) = B::schema() else {
            return B::schema();
        };
        let tag = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([kind]))
            .build();
        object.properties.insert("type".into(), tag.into());
        object
            .properties
            .insert(scope.into(), Ref::from_schema_name(S::name()).into());
        object.required.extend([String::from("type"), scope.into()]);
        object.title = Some(kind.into());
        object.description = None;
        RefOr::T(Schema::Object(object))
    }

    impl PartialSchema for BatchItem {
        fn schema() -> RefOr<Schema> {
            OneOfBuilder::new()
                .description(Some(
                    "One item of a batch, as a client builds it: the single-route body plus \
                     `type` and scope.",
                ))
                .item(item::<PollVoteBody, PollId>("poll_vote", "poll"))
                .item(item::<PairVoteBody, ArenaId>("pair_vote", "arena"))
                .item(item::<ScoreBody, TournamentId>("score", "tournament"))
                .item(item::<RegistrationBody, TournamentId>(
                    "registration",
                    "tournament",
                ))
                .into()
        }
    }

    impl ToSchema for BatchItem {
        fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            for (name, schema) in [
                (PollId::name(), PollId::schema()),
                (ArenaId::name(), ArenaId::schema()),
                (TournamentId::name(), TournamentId::schema()),
            ] {
                schemas.push((name.into(), schema));
            }
            <PollVoteBody as ToSchema>::schemas(schemas);
            <PairVoteBody as ToSchema>::schemas(schemas);
            <ScoreBody as ToSchema>::schemas(schemas);
            <RegistrationBody as ToSchema>::schemas(schemas);
        }
    }
}

/// Decodes item `index` of a batch into its event and optional idempotency key. Field paths
/// in errors are relative to the item (`options[1]`); the caller reports the index.
pub fn decode_batch_item(
    raw: &serde_json::value::RawValue,
) -> Result<(Event, Option<IdempotencyKey>), FieldError> {
    let value: serde_json::Value = serde_json::from_str(raw.get())
        .map_err(|e| FieldError::invalid("malformed_json", "", e.to_string()))?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(FieldError::invalid("invalid_type", "", "must be an object"));
    };
    let kind = match map.remove("type") {
        Some(serde_json::Value::String(kind)) => kind,
        Some(_) => {
            return Err(FieldError::invalid(
                "invalid_type",
                "type",
                "must be a string",
            ));
        }
        None => {
            return Err(FieldError::invalid(
                "missing_field",
                "type",
                "missing field `type`",
            ));
        }
    };
    fn scope<T: DeserializeOwned>(
        map: &mut serde_json::Map<String, serde_json::Value>,
        key: &'static str,
    ) -> Result<T, FieldError> {
        let value = map.remove(key).ok_or_else(|| {
            FieldError::invalid("missing_field", key, format!("missing field `{key}`"))
        })?;
        decode_value(value).map_err(|e| e.nested(key))
    }
    fn body<T: DeserializeOwned + Validate>(
        map: serde_json::Map<String, serde_json::Value>,
    ) -> Result<T, FieldError> {
        let body: T = decode_value(serde_json::Value::Object(map))?;
        body.validate()?;
        Ok(body)
    }
    Ok(match kind.as_str() {
        "poll_vote" => {
            let poll = scope(&mut map, "poll")?;
            let b: PollVoteBody = body(map)?;
            (b.id.clone(), b.into_event(poll))
        }
        "pair_vote" => {
            let arena = scope(&mut map, "arena")?;
            let b: PairVoteBody = body(map)?;
            (b.id.clone(), b.into_event(arena))
        }
        "score" => {
            let tournament = scope(&mut map, "tournament")?;
            let b: ScoreBody = body(map)?;
            (b.id.clone(), b.into_event(tournament))
        }
        "registration" => {
            let tournament = scope(&mut map, "tournament")?;
            let b: RegistrationBody = body(map)?;
            // An address is stored beside a registration, never on the stream: only the
            // single route takes one.
            if b.email.is_some() || b.time_zone.is_some() {
                let field = if b.email.is_some() { "email" } else { "time_zone" };
                return Err(FieldError::invalid(
                    "not_in_batch",
                    field,
                    "an address is taken only by POST /v1/tournaments/{tournament}/registrations",
                ));
            }
            (b.id.clone(), b.into_event(tournament))
        }
        other => {
            return Err(FieldError::invalid(
                "invalid_value",
                "type",
                format!("unknown event type '{other}'; expected poll_vote, pair_vote, score or registration"),
            ));
        }
    })
    .map(|(id, event)| (event, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: DeserializeOwned + Validate + std::fmt::Debug>(json: &str) -> FieldError {
        decode::<T>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_good_vote_decodes() {
        let body: PollVoteBody = decode(br#"{"voter":"v1","options":["a","b"]}"#).unwrap();
        assert_eq!(body.options.len(), 2);
    }

    #[test]
    fn malformed_json_is_malformed() {
        let e = err::<PollVoteBody>(r#"{"voter":"v1","options":["a""#);
        assert_eq!((e.problem, e.code), (Problem::Malformed, "malformed_json"));
        let e = err::<PollVoteBody>("");
        assert_eq!(e.problem, Problem::Malformed);
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = err::<PollVoteBody>(r#"{"voter":"v1","options":["a"],"received_at":"x"}"#);
        assert_eq!((e.code, e.field.as_str()), ("unknown_field", "received_at"));
        assert_eq!(e.problem, Problem::Invalid);
    }

    #[test]
    fn missing_fields_are_named() {
        let e = err::<PairVoteBody>(r#"{"session":"s","winner":"a"}"#);
        assert_eq!((e.code, e.field.as_str()), ("missing_field", "loser"));
    }

    #[test]
    fn wrong_types_name_the_nested_path() {
        let e = err::<PollVoteBody>(r#"{"voter":"v1","options":["a",7]}"#);
        assert_eq!((e.code, e.field.as_str()), ("invalid_type", "options[1]"));
        let e = err::<ScoreBody>(r#"{"match":"m","team":"t","points":"3"}"#);
        assert_eq!((e.code, e.field.as_str()), ("invalid_type", "points"));
    }

    #[test]
    fn invalid_ids_name_the_field_and_the_rule() {
        let e = err::<PollVoteBody>(r#"{"voter":"v 1","options":["a"]}"#);
        assert_eq!((e.code, e.field.as_str()), ("invalid_value", "voter"));
        assert!(e.message.contains("must only contain"), "{}", e.message);
    }

    #[test]
    fn domain_rules_apply_after_decoding() {
        let e = err::<PollVoteBody>(r#"{"voter":"v","options":[]}"#);
        assert_eq!((e.code, e.field.as_str()), ("empty", "options"));
        let e = err::<PollVoteBody>(r#"{"voter":"v","options":["a","b","a"]}"#);
        assert_eq!((e.code, e.field.as_str()), ("duplicate", "options[2]"));
        let many: Vec<String> = (0..33).map(|i| format!("\"o{i}\"")).collect();
        let e = err::<PollVoteBody>(&format!(
            r#"{{"voter":"v","options":[{}]}}"#,
            many.join(",")
        ));
        assert_eq!(e.code, "too_many");
        let e = err::<PairVoteBody>(r#"{"session":"s","winner":"a","loser":"a"}"#);
        assert_eq!((e.code, e.field.as_str()), ("same_as_winner", "loser"));
        let e = err::<ScoreBody>(r#"{"match":"m","team":"t","points":1000000001}"#);
        assert_eq!((e.code, e.field.as_str()), ("out_of_range", "points"));
        let e = err::<ScoreBody>(r#"{"match":"m","team":"t","points":1e30}"#);
        assert_eq!((e.code, e.field.as_str()), ("invalid_type", "points"));
    }

    #[test]
    fn points_at_the_ends_of_i64_are_out_of_range_not_a_crash() {
        for points in [i64::MIN, i64::MAX] {
            let e = err::<ScoreBody>(&format!(r#"{{"match":"m","team":"t","points":{points}}}"#));
            assert_eq!((e.code, e.field.as_str()), ("out_of_range", "points"));
        }
        let edge = format!(r#"{{"match":"m","team":"t","points":-{MAX_ABS_POINTS}}}"#);
        assert!(decode::<ScoreBody>(edge.as_bytes()).is_ok());
    }

    #[test]
    fn deep_nesting_is_malformed_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = err::<PollVoteBody>(&format!(r#"{{"voter":"v","options":{deep}}}"#));
        assert_eq!((e.code, e.field.as_str()), ("invalid_type", "options[0]"));
        // Raw batch items are only skipped over at first; decoding one hits the recursion limit.
        let batch: BatchBody = decode(format!(r#"{{"events":[{deep}]}}"#).as_bytes()).unwrap();
        let e = decode_batch_item(&batch.events[0]).unwrap_err();
        assert_eq!(e.code, "malformed_json");
    }

    #[test]
    fn batch_items_decode_like_single_bodies() {
        let raw = |s: &str| serde_json::value::RawValue::from_string(s.to_owned()).unwrap();
        let (ev, id) = decode_batch_item(&raw(
            r#"{"type":"score","tournament":"t","match":"m","team":"red","points":3,"id":"k1"}"#,
        ))
        .unwrap();
        assert_eq!(ev.scope(), "t");
        assert_eq!(id.unwrap().as_str(), "k1");

        let e = decode_batch_item(&raw(
            r#"{"type":"poll_vote","poll":"p","voter":"v","options":[1]}"#,
        ))
        .unwrap_err();
        assert_eq!((e.code, e.field.as_str()), ("invalid_type", "options[0]"));
        let e = decode_batch_item(&raw(
            r#"{"type":"poll_vote","poll":"p.x","voter":"v","options":["a"]}"#,
        ))
        .unwrap_err();
        assert_eq!((e.code, e.field.as_str()), ("invalid_value", "poll"));
        let e = decode_batch_item(&raw(r#"{"type":"nope"}"#)).unwrap_err();
        assert_eq!(e.field, "type");
        let e = decode_batch_item(&raw(
            r#"{"type":"registration","tournament":"t","user":"u","extra":1}"#,
        ))
        .unwrap_err();
        assert_eq!((e.code, e.field.as_str()), ("unknown_field", "extra"));
        let e = decode_batch_item(&raw("[1]")).unwrap_err();
        assert_eq!(e.code, "invalid_type");
    }

    #[test]
    fn batch_items_serialize_the_way_they_decode() {
        let item = BatchItem::PairVote {
            arena: "a".try_into().unwrap(),
            body: PairVoteBody {
                id: None,
                session: "s".try_into().unwrap(),
                winner: "x".try_into().unwrap(),
                loser: "y".try_into().unwrap(),
            },
        };
        let raw = serde_json::value::to_raw_value(&item).unwrap();
        let (ev, _) = decode_batch_item(&raw).unwrap();
        assert_eq!(ev.kind(), crate::Kind::PairVote);
    }
}

/// Most members one `POST /admin/v1/tournaments/{t}/members` may carry.
pub const MAX_MEMBERS_PER_CALL: usize = 5_000;

/// A user's place in a priority group, as the operator's list says.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    pub user: UserId,
    pub group: GroupId,
}

/// `POST /admin/v1/tournaments/{t}/members`: members added to (or moved within) the list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersBody {
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 5000))]
    pub members: Vec<GroupMember>,
}

impl Validate for MembersBody {
    fn validate(&self) -> Result<(), FieldError> {
        if self.members.is_empty() {
            return Err(FieldError::invalid(
                "empty",
                "members",
                "must hold at least one member",
            ));
        }
        if self.members.len() > MAX_MEMBERS_PER_CALL {
            return Err(FieldError::invalid(
                "too_many",
                "members",
                format!("must hold at most {MAX_MEMBERS_PER_CALL} members"),
            ));
        }
        Ok(())
    }
}

/// `POST /v1/tournaments/{t}/matches/{m}/status`: where the match stands now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchStatusBody {
    pub status: crate::status::MatchStatus,
}

impl Validate for MatchStatusBody {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// The answer to a match status change: the match as it now stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, serde::Serialize)]
pub struct MatchStatusView {
    pub tournament: crate::ids::TournamentId,
    #[serde(rename = "match")]
    pub match_id: crate::ids::MatchId,
    pub status: crate::status::MatchStatus,
}

/// Votes for one option of a poll.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OptionVotes {
    pub option: String,
    pub votes: i64,
}

/// A poll's results: what the read API answers, live updates carry and `poll.closed` tells.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PollResults {
    pub poll: String,
    pub total_votes: i64,
    /// By votes, most first, ties by option: the one order of poll results.
    pub options: Vec<OptionVotes>,
}

impl PollResults {
    /// From votes per option, in any order.
    pub fn new(poll: &str, tally: Vec<(String, i64)>) -> Self {
        let mut options: Vec<OptionVotes> = tally
            .into_iter()
            .map(|(option, votes)| OptionVotes { option, votes })
            .collect();
        options.sort_by(|a, b| b.votes.cmp(&a.votes).then_with(|| a.option.cmp(&b.option)));
        Self {
            poll: poll.to_owned(),
            total_votes: options.iter().map(|o| o.votes).sum(),
            options,
        }
    }
}

/// One entry of a ranking: 1-based rank, the member and its score.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ranked {
    pub rank: u64,
    pub id: String,
    pub score: f64,
}

impl Ranked {
    /// Entries of a ranking in order (best first), the first at 0-based `first_index`.
    pub fn list(entries: Vec<(String, f64)>, first_index: u64) -> Vec<Ranked> {
        entries
            .into_iter()
            .zip(first_index + 1..)
            .map(|((id, score), rank)| Ranked { rank, id, score })
            .collect()
    }
}

/// A tournament's standings (a top N or the window around a team), as the read API answers
/// them and live updates carry them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StandingsView {
    pub tournament: String,
    pub teams: Vec<Ranked>,
    /// Every listed match is final: the standings take no more scores.
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// `GET /v1/tournaments/{t}/matches/{m}` (and its live stream): the match's status and its
/// teams' scores in it, ranked in the tournament's order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MatchView {
    pub tournament: crate::ids::TournamentId,
    #[serde(rename = "match")]
    pub match_id: crate::ids::MatchId,
    pub status: crate::status::MatchStatus,
    pub teams: Vec<Ranked>,
}

/// One variant of an upload, as the gallery and the media read serve it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaVariantView {
    /// Where to fetch it: `/v1/media/{media}/{variant}`.
    pub url: String,
    pub width: u32,
    pub height: u32,
    pub content_type: String,
    pub bytes: u64,
}

/// An upload and what became of it (`stored`, `queued`, `done` with its variants, or
/// `failed` with the reason).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaView {
    pub media: crate::ids::MediaId,
    pub tournament: crate::ids::TournamentId,
    pub status: crate::status::MediaStatus,
    pub reason: Option<String>,
    pub content_type: String,
    pub bytes: u64,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub user: Option<crate::ids::UserId>,
    /// `/v1/media/{media}/original`.
    pub original_url: String,
    /// By variant name (`thumb`, `medium`, `large`); empty until done.
    pub variants: std::collections::BTreeMap<String, MediaVariantView>,
}

/// `GET /v1/media/{media}`: an upload Postgres has, or one only just received (in the object
/// store, its event not yet written).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MediaAnswer {
    Known(MediaView),
    Received {
        media: crate::ids::MediaId,
        /// Always `received`.
        status: crate::status::MediaStatus,
        bytes: u64,
    },
}

/// `GET /v1/tournaments/{t}/media`: a page of a tournament's uploads, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaPage {
    pub media: Vec<MediaView>,
    /// Pass as `?cursor=` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}
