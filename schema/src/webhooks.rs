//! Outbound webhooks, as the Standard Webhooks specification has them
//! (<https://www.standardwebhooks.com>): the event types an endpoint may subscribe to, the
//! messages the workers sign and deliver (`{"type", "timestamp", "data"}`, named by a
//! `webhook-id` the server derives, so a redelivered source makes the same message), and the
//! admin API's bodies.
//!
//! Where messages come from: the Postgres writer turns each stored `registration_status`
//! event into its messages in the transaction that stores it; the thumbnail job records
//! `media.*` with its result; the match status route records `match.final` with the change.

use crate::api::{FieldError, Validate, check_http_url};
use crate::event::{RegistrationStatus, StatusChange};
use crate::ids::{MatchId, MediaId, TournamentId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an endpoint may subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    /// Drawn a place: claim it before `deadline`.
    #[serde(rename = "registration.won")]
    RegistrationWon,
    /// Drawn onto the waitlist at `position`.
    #[serde(rename = "registration.waitlisted")]
    RegistrationWaitlisted,
    /// Moved up from the waitlist to a freed place: in a lottery, claim it before `deadline`;
    /// first-come, the place at `position` is held.
    #[serde(rename = "registration.promoted")]
    RegistrationPromoted,
    /// A won place not claimed in time; `promoted` names who has it now.
    #[serde(rename = "registration.released")]
    RegistrationReleased,
    /// A won place confirmed.
    #[serde(rename = "registration.claimed")]
    RegistrationClaimed,
    /// The registrant gave the registration up (and any place it held).
    #[serde(rename = "registration.withdrawn")]
    RegistrationWithdrawn,
    /// A won place still unclaimed, its deadline within the reminder lead
    /// (`TALLY_CLAIM_REMINDER_SECS`).
    #[serde(rename = "claim.deadline_approaching")]
    ClaimDeadlineApproaching,
    /// An upload's variants are ready.
    #[serde(rename = "media.processed")]
    MediaProcessed,
    /// An upload was rejected, with the reason.
    #[serde(rename = "media.failed")]
    MediaFailed,
    /// A match was set `final`: its scores stand.
    #[serde(rename = "match.final")]
    MatchFinal,
    /// A poll's window closed: its final results.
    #[serde(rename = "poll.closed")]
    PollClosed,
    /// Every listed match of a tournament is final: its final standings.
    #[serde(rename = "tournament.final")]
    TournamentFinal,
}

impl EventType {
    pub const ALL: [EventType; 12] = [
        Self::RegistrationWon,
        Self::RegistrationWaitlisted,
        Self::RegistrationPromoted,
        Self::RegistrationReleased,
        Self::RegistrationClaimed,
        Self::RegistrationWithdrawn,
        Self::ClaimDeadlineApproaching,
        Self::MediaProcessed,
        Self::MediaFailed,
        Self::MatchFinal,
        Self::PollClosed,
        Self::TournamentFinal,
    ];

    /// As on the wire (`type`), in `webhook_messages.event_type` and in subscriptions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RegistrationWon => "registration.won",
            Self::RegistrationWaitlisted => "registration.waitlisted",
            Self::RegistrationPromoted => "registration.promoted",
            Self::RegistrationReleased => "registration.released",
            Self::RegistrationClaimed => "registration.claimed",
            Self::RegistrationWithdrawn => "registration.withdrawn",
            Self::ClaimDeadlineApproaching => "claim.deadline_approaching",
            Self::MediaProcessed => "media.processed",
            Self::MediaFailed => "media.failed",
            Self::MatchFinal => "match.final",
            Self::PollClosed => "poll.closed",
            Self::TournamentFinal => "tournament.final",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// What it tells, in a line (the OpenAPI document's summary).
    pub fn describe(self) -> &'static str {
        match self {
            Self::RegistrationWon => "A registrant was drawn a place; claim it before the deadline",
            Self::RegistrationWaitlisted => "A registrant was drawn onto the waitlist",
            Self::RegistrationPromoted => {
                "A waitlisted registrant moved up to a freed place; in a lottery, claim it before the deadline"
            }
            Self::RegistrationReleased => "A won place was not claimed in time",
            Self::RegistrationClaimed => "A won place was confirmed",
            Self::RegistrationWithdrawn => "A registrant withdrew, giving up any place held",
            Self::ClaimDeadlineApproaching => {
                "A won place is still unclaimed and its deadline is near"
            }
            Self::MediaProcessed => "An upload's variants are ready",
            Self::MediaFailed => "An upload was rejected",
            Self::MatchFinal => "A match was set final",
            Self::PollClosed => "A poll closed; its final results",
            Self::TournamentFinal => "Every match of a tournament is final; its final standings",
        }
    }
}

/// `data` of the `registration.*` messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationData {
    pub tournament: TournamentId,
    /// Whose registration this is.
    pub user: UserId,
    /// Won or promoted: the place is lost unless claimed by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// Waitlisted: the place in the queue (1 is next); promoted first-come: the place held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// Released: who was promoted to the place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<UserId>,
}

/// `data` of the `media.*` messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaData {
    pub tournament: TournamentId,
    pub media: MediaId,
    /// Processed: each variant's URL path (`/v1/media/{media}/{variant}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variants: BTreeMap<String, String>,
    /// Failed: why the image was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `data` of `match.final`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MatchData {
    pub tournament: TournamentId,
    #[serde(rename = "match")]
    pub match_id: MatchId,
}

/// `data` of `tournament.final`: the standings once no listed match takes scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TournamentFinalData {
    pub tournament: TournamentId,
    /// Every team with a score, ranked in the tournament's order.
    pub standings: Vec<crate::api::Ranked>,
}

/// One message as delivered: the JSON body every attempt sends, byte for byte, and its
/// `webhook-id`.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// `msg_` and 32 hex digits, derived from what the message reports.
    pub id: String,
    pub event_type: EventType,
    /// `{"type": …, "timestamp": …, "data": …}`.
    pub body: serde_json::Value,
}

impl Message {
    /// `claim.deadline_approaching` for `user`'s place, once per deadline.
    pub fn deadline_approaching(
        tournament: &TournamentId,
        user: &UserId,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Self {
        let data = RegistrationData {
            tournament: tournament.clone(),
            user: user.clone(),
            deadline: Some(deadline),
            position: None,
            promoted: None,
        };
        let ms = deadline.timestamp_millis().to_string();
        let source = [tournament.as_str(), user.as_str(), ms.as_str()];
        Self::new(EventType::ClaimDeadlineApproaching, &source, at, data)
    }

    /// `poll.closed` with the final results, once per closing time.
    pub fn poll_closed(
        results: crate::api::PollResults,
        closes_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Self {
        let closes = closes_at.to_rfc3339();
        let source = [results.poll.as_str(), closes.as_str()];
        Self::new(EventType::PollClosed, &source, at, &results)
    }

    /// The id [`Self::poll_closed`] gives: what the workers look up before computing results.
    pub fn poll_closed_id(poll: &str, closes_at: DateTime<Utc>) -> String {
        Self::id_of(
            EventType::PollClosed,
            &[poll, closes_at.to_rfc3339().as_str()],
        )
    }

    /// `tournament.final` with the final standings, once.
    pub fn tournament_final(data: TournamentFinalData, at: DateTime<Utc>) -> Self {
        let tournament = data.tournament.to_string();
        Self::new(
            EventType::TournamentFinal,
            &[tournament.as_str()],
            at,
            &data,
        )
    }

    pub fn tournament_final_id(tournament: &str) -> String {
        Self::id_of(EventType::TournamentFinal, &[tournament])
    }

    /// `msg_` and 32 hex digits derived from the type and `source`.
    fn id_of(event_type: EventType, source: &[&str]) -> String {
        let mut parts = vec!["webhook", event_type.as_str()];
        parts.extend_from_slice(source);
        format!("msg_{}", crate::ids::server_event_id(&parts).simple())
    }

    /// A message of `event_type` about `data`, named by `source` (what it reports, unique
    /// for that type), timestamped `at` (when it happened).
    pub fn new(
        event_type: EventType,
        source: &[&str],
        at: DateTime<Utc>,
        data: impl Serialize,
    ) -> Self {
        let id = Self::id_of(event_type, source);
        let body = serde_json::json!({
            "type": event_type.as_str(),
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": serde_json::to_value(data).expect("webhook data serializes"),
        });
        Self {
            id,
            event_type,
            body,
        }
    }

    /// The messages one stored status change makes: one for its registrant, and for a
    /// release that promoted someone, one for them too; a hand-on tells only whom it
    /// promoted. `event_id` is the change's.
    pub fn from_status(
        change: &RegistrationStatus,
        event_id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> Vec<Self> {
        let source = event_id.to_string();
        let data = |user: &UserId| RegistrationData {
            tournament: change.tournament.clone(),
            user: user.clone(),
            deadline: None,
            position: None,
            promoted: None,
        };
        let own = match change.status {
            StatusChange::Won => Some((
                EventType::RegistrationWon,
                RegistrationData {
                    deadline: change.deadline,
                    ..data(&change.user)
                },
            )),
            StatusChange::Waitlisted => Some((
                EventType::RegistrationWaitlisted,
                RegistrationData {
                    position: change.position,
                    ..data(&change.user)
                },
            )),
            StatusChange::Claimed => Some((EventType::RegistrationClaimed, data(&change.user))),
            StatusChange::Released => Some((
                EventType::RegistrationReleased,
                RegistrationData {
                    promoted: change.promoted.clone(),
                    ..data(&change.user)
                },
            )),
            StatusChange::Withdrawn => Some((EventType::RegistrationWithdrawn, data(&change.user))),
            StatusChange::HandedOn => None,
            StatusChange::Promoted => Some((
                EventType::RegistrationPromoted,
                RegistrationData {
                    position: change.position,
                    ..data(&change.user)
                },
            )),
        };
        let mut messages: Vec<Self> = own
            .into_iter()
            .map(|(kind, data)| Self::new(kind, &[&source], at, data))
            .collect();
        let hands_on = matches!(
            change.status,
            StatusChange::Released | StatusChange::HandedOn
        );
        if let (true, Some(promoted)) = (hands_on, &change.promoted) {
            let promoted = RegistrationData {
                deadline: change.deadline,
                ..data(promoted)
            };
            let kind = EventType::RegistrationPromoted;
            messages.push(Self::new(kind, &[&source], at, promoted));
        }
        messages
    }

    /// What became of an upload: `Ok(variant names)` or `Err(reason)`.
    pub fn media(
        tournament: &TournamentId,
        media: &MediaId,
        result: Result<Vec<String>, String>,
        at: DateTime<Utc>,
    ) -> Self {
        let (kind, variants, reason) = match result {
            Ok(names) => {
                let urls = names
                    .into_iter()
                    .map(|n| {
                        let url = format!("/v1/media/{media}/{n}");
                        (n, url)
                    })
                    .collect();
                (EventType::MediaProcessed, urls, None)
            }
            Err(reason) => (EventType::MediaFailed, BTreeMap::new(), Some(reason)),
        };
        let data = MediaData {
            tournament: tournament.clone(),
            media: media.clone(),
            variants,
            reason,
        };
        Self::new(kind, &[media.as_str()], at, data)
    }

    pub fn match_final(tournament: &TournamentId, match_id: &MatchId, at: DateTime<Utc>) -> Self {
        let data = MatchData {
            tournament: tournament.clone(),
            match_id: match_id.clone(),
        };
        let source = [tournament.as_str(), match_id.as_str()];
        Self::new(EventType::MatchFinal, &source, at, data)
    }
}

/// The messages a definition change makes: `match.final` for each match it sets final
/// (`old` is `None` for a new definition). Whatever route made the change, the message is
/// recorded with it.
pub fn from_change(
    old: Option<&crate::resources::Resource>,
    new: &crate::resources::Resource,
    at: DateTime<Utc>,
) -> Vec<Message> {
    use crate::resources::Resource;
    use crate::status::MatchStatus;
    let Resource::Tournament(t) = new else {
        return Vec::new();
    };
    let was_final = |id: &MatchId| match old {
        Some(Resource::Tournament(o)) => o
            .matches
            .iter()
            .any(|m| &m.id == id && m.status == MatchStatus::Final),
        _ => false,
    };
    t.matches
        .iter()
        .filter(|m| m.status == MatchStatus::Final && !was_final(&m.id))
        .map(|m| Message::match_final(&t.id, &m.id, at))
        .collect()
}

/// `POST /admin/v1/webhooks`: an endpoint and what it subscribes to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    /// Where deliveries go: `http://` or `https://`; never followed elsewhere (redirects are
    /// failures).
    pub url: String,
    /// The types it receives; empty or absent: every type, present and future.
    #[serde(default)]
    pub event_types: Vec<EventType>,
    #[serde(default)]
    pub description: Option<String>,
}

impl EndpointBody {
    pub const MAX_DESCRIPTION: usize = 256;
}

impl Validate for EndpointBody {
    fn validate(&self) -> Result<(), FieldError> {
        check_http_url("url", &self.url)?;
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > Self::MAX_DESCRIPTION)
        {
            return Err(FieldError::invalid(
                "too_long",
                "description",
                format!("must be at most {} characters", Self::MAX_DESCRIPTION),
            ));
        }
        for (i, t) in self.event_types.iter().enumerate() {
            if self.event_types[..i].contains(t) {
                return Err(FieldError::invalid(
                    "duplicate",
                    format!("event_types[{i}]"),
                    format!("'{}' is listed twice", t.as_str()),
                ));
            }
        }
        Ok(())
    }
}

/// `POST /admin/v1/webhooks/{endpoint}/rotate`: a new secret; the old one stays valid (both
/// sign every delivery) for `overlap_secs`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Default a day; at most a week; 0 retires the old secret at once.
    #[serde(default)]
    pub overlap_secs: Option<u64>,
}

impl RotateBody {
    pub const DEFAULT_OVERLAP_SECS: u64 = 86_400;
    pub const MAX_OVERLAP_SECS: u64 = 7 * 86_400;

    pub fn overlap_secs(&self) -> u64 {
        self.overlap_secs.unwrap_or(Self::DEFAULT_OVERLAP_SECS)
    }
}

impl Validate for RotateBody {
    fn validate(&self) -> Result<(), FieldError> {
        if self.overlap_secs() > Self::MAX_OVERLAP_SECS {
            return Err(FieldError::invalid(
                "out_of_range",
                "overlap_secs",
                format!("must be at most {}", Self::MAX_OVERLAP_SECS),
            ));
        }
        Ok(())
    }
}

/// `POST /admin/v1/webhooks/{endpoint}/replay`: one message again, or every message since a
/// time (those not delivered to this endpoint, or all with `include_delivered`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub include_delivered: bool,
}

impl Validate for ReplayBody {
    fn validate(&self) -> Result<(), FieldError> {
        match (&self.message, &self.since) {
            (Some(m), None) => {
                let ok = m.len() == 36
                    && m.starts_with("msg_")
                    && m[4..].bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return Err(FieldError::invalid(
                        "invalid_value",
                        "message",
                        "must be a webhook-id (msg_ and 32 hex digits)",
                    ));
                }
                Ok(())
            }
            (None, Some(_)) => Ok(()),
            _ => Err(FieldError::invalid(
                "missing_field",
                "message",
                "name either a message or a time to replay from (since), not both",
            )),
        }
    }
}

/// Where an endpoint's delivery of a message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Handed to a delivery job.
    Queued,
    /// Answered 2xx.
    Delivered,
    /// Every attempt of the retry schedule failed.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// An endpoint as the admin API shows it (never its secrets, but once, at creation and
/// rotation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointView {
    /// `ep_…`, made by the server.
    pub id: String,
    pub url: String,
    /// Empty: every type.
    pub event_types: Vec<EventType>,
    pub description: Option<String>,
    /// `disabled` (by an operator, or failing for too long), `failing`, or `enabled`.
    pub state: EndpointState,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Attempts failed in a row (any delivery resets it).
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    /// Backing off: the next attempt is not before then.
    pub retry_at: Option<DateTime<Utc>>,
    /// The secret before the last rotation still signs until then.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Deliveries waiting (or being sent).
    pub pending: i64,
    /// Deliveries whose every attempt failed (replay them once the receiver is fixed).
    pub failed: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    Enabled,
    Failing,
    Disabled,
}

/// The answer to a creation or a rotation: the endpoint and its new secret, shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointSecret {
    pub endpoint: EndpointView,
    /// `whsec_` and the base64 of 32 random bytes: the key receivers verify with.
    pub secret: String,
}

/// One delivery attempt, as the log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptView {
    pub message: String,
    pub event_type: Option<EventType>,
    pub attempted_at: DateTime<Utc>,
    /// Absent when nothing answered (see `error`).
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    /// The answer's first bytes.
    pub excerpt: Option<String>,
}

/// What a replay queued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayView {
    /// Deliveries queued again.
    pub replayed: u64,
    /// A replay since a time stops after a bounded number of messages: this is the last
    /// one's time; replay again from it for the rest. Absent when it went to the end.
    pub continue_from: Option<DateTime<Utc>>,
}

/// Records `messages` in the caller's transaction (the one that makes what they report):
/// each once, with a delivery to every subscribed endpoint, and the email a registration
/// message makes where its tournament emails and the registrant gave an address. Returns
/// the deliveries made.
#[cfg(feature = "postgres")]
pub async fn record(
    messages: &[Message],
    conn: &mut sqlx::PgConnection,
) -> Result<u64, sqlx::Error> {
    if messages.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    let types: Vec<&str> = messages.iter().map(|m| m.event_type.as_str()).collect();
    let bodies: Vec<String> = messages.iter().map(|m| m.body.to_string()).collect();
    let done = sqlx::query(include_str!(
        "../postgres/queries/webhook_messages_insert.sql"
    ))
    .bind(&ids)
    .bind(&types)
    .bind(bodies)
    .execute(&mut *conn)
    .await?;
    let mails: Vec<(&Message, RegistrationData)> = messages
        .iter()
        .filter(|m| {
            matches!(
                m.event_type,
                EventType::RegistrationWon | EventType::RegistrationPromoted
            )
        })
        .filter_map(|m| Some((m, serde_json::from_value(m.body["data"].clone()).ok()?)))
        .collect();
    if !mails.is_empty() {
        sqlx::query(include_str!("../postgres/queries/email_outbox_insert.sql"))
            .bind(mails.iter().map(|(m, _)| m.id.as_str()).collect::<Vec<_>>())
            .bind(
                mails
                    .iter()
                    .map(|(m, _)| m.event_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                mails
                    .iter()
                    .map(|(_, d)| d.tournament.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                mails
                    .iter()
                    .map(|(_, d)| d.user.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(mails.iter().map(|(_, d)| d.deadline).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
    }
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::decode;

    #[test]
    fn event_types_round_trip_by_name() {
        for t in EventType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn a_release_that_promotes_tells_both_with_stable_ids() {
        let deadline: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let change = RegistrationStatus {
            tournament: "t".try_into().unwrap(),
            user: "ann".try_into().unwrap(),
            status: StatusChange::Released,
            position: None,
            deadline: Some(deadline),
            promoted: Some("bob".try_into().unwrap()),
        };
        let id = change.event_id("released");
        let messages = Message::from_status(&change, id, deadline);
        let types: Vec<_> = messages.iter().map(|m| m.event_type).collect();
        assert_eq!(
            types,
            [
                EventType::RegistrationReleased,
                EventType::RegistrationPromoted
            ]
        );
        assert_eq!(messages[1].body["data"]["user"], "bob");
        assert_eq!(messages[1].body["data"]["deadline"], "2026-01-01T00:00:00Z");
        assert_eq!(messages[0].body["data"]["promoted"], "bob");
        // The same change makes the same ids; the two messages differ.
        let again = Message::from_status(&change, id, deadline);
        assert_eq!(messages, again);
        assert_ne!(messages[0].id, messages[1].id);
        assert!(messages[0].id.starts_with("msg_") && messages[0].id.len() == 36);
        // A withdrawal tells the registrant's; its hand-on tells only whom it promoted.
        let withdrawn = RegistrationStatus {
            status: StatusChange::Withdrawn,
            deadline: None,
            promoted: None,
            ..change.clone()
        };
        let told = Message::from_status(&withdrawn, withdrawn.event_id("withdrawn"), deadline);
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].event_type, EventType::RegistrationWithdrawn);
        let handed = RegistrationStatus {
            status: StatusChange::HandedOn,
            ..change.clone()
        };
        let told = Message::from_status(&handed, handed.event_id("handed_on:7"), deadline);
        let types: Vec<_> = told.iter().map(|m| m.event_type).collect();
        assert_eq!(types, [EventType::RegistrationPromoted]);
        assert_eq!(told[0].body["data"]["user"], "bob");
        let nobody = RegistrationStatus {
            promoted: None,
            ..handed
        };
        assert!(Message::from_status(&nobody, id, deadline).is_empty());
    }

    #[test]
    fn endpoint_bodies_name_what_is_wrong() {
        let field = |json: &str| decode::<EndpointBody>(json.as_bytes()).unwrap_err().field;
        assert_eq!(field(r#"{"url": "ftp://x"}"#), "url");
        assert_eq!(field(r#"{"url": "http://user:pw@x/"}"#), "url");
        assert_eq!(field(r#"{"url": "http:///path"}"#), "url");
        assert_eq!(
            field(r#"{"url": "http://x", "event_types": ["poll.sideways"]}"#),
            "event_types[0]"
        );
        assert_eq!(
            field(r#"{"url": "http://x", "event_types": ["match.final", "match.final"]}"#),
            "event_types[1]"
        );
        assert_eq!(field(r#"{"url": "http://x", "secret": "mine"}"#), "secret");
        let ok: EndpointBody = decode(br#"{"url": "https://example.org/hook"}"#).unwrap();
        assert!(ok.event_types.is_empty());
        let field = |json: &str| decode::<ReplayBody>(json.as_bytes()).unwrap_err().field;
        assert_eq!(field(r#"{}"#), "message");
        assert_eq!(field(r#"{"message": "msg_1"}"#), "message");
    }
}
