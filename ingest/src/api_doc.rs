//! The OpenAPI document: the routes come from the handlers' `#[utoipa::path]` annotations as
//! each router registers them (utoipa-axum), so a route cannot exist undocumented; this module
//! adds what is shared — the title, the admin key scheme and the common response sets.

use crate::error::ErrorBody;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};
use uuid::Uuid;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tally",
        description = "Burst event ingestion: votes, scores and registrations, acknowledged only once stored.",
        license(name = "Apache-2.0")
    ),
    modifiers(&AdminKey, &Webhooks),
    // MediaId appears only as a path parameter, which utoipa does not collect by itself; the
    // webhooks' data only in the `webhooks` section.
    components(schemas(AcceptedBody, ErrorResponse, tally_schema::ids::MediaId,
        tally_schema::webhooks::RegistrationData, tally_schema::webhooks::MediaData,
        tally_schema::webhooks::MatchData, tally_schema::webhooks::TournamentFinalData,
        tally_schema::api::PollResults)),
    tags(
        (name = "events", description = "Writes: 202 only after JetStream stored the event"),
        (name = "reads", description = "Live views from Redis"),
        (name = "live", description = "Server-sent events, WebSockets and the live page"),
        (name = "channels", description = "Broadcast channels: publish, follow, resume by sequence"),
        (name = "admin", description = "Polls, arenas, tournaments, channels and webhook endpoints (API key)"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct AdminKey;

/// The `webhooks` section (OpenAPI 3.1): what Tally POSTs to registered endpoints, one entry
/// per event type, with the Standard Webhooks headers. utoipa has no builder for it, so it is
/// written as JSON into the document's top level.
struct Webhooks;

impl Modify for Webhooks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use tally_schema::webhooks::EventType;
        let header = |name: &str, description: &str| {
            serde_json::json!({"name": name, "in": "header", "required": true,
                "description": description, "schema": {"type": "string"}})
        };
        let headers = [
            header(
                "webhook-id",
                "msg_ and 32 hex digits: the same for every attempt of one message (deduplicate by it)",
            ),
            header(
                "webhook-timestamp",
                "Unix seconds when this attempt was signed",
            ),
            header(
                "webhook-signature",
                "v1,<base64 HMAC-SHA256 of id.timestamp.body>; two, space-separated, while a rotated secret overlaps",
            ),
        ];
        let mut hooks = serde_json::Map::new();
        for t in EventType::ALL {
            let data = match t {
                EventType::MediaProcessed | EventType::MediaFailed => "MediaData",
                EventType::MatchFinal => "MatchData",
                EventType::PollClosed => "PollResults",
                EventType::TournamentFinal => "TournamentFinalData",
                _ => "RegistrationData",
            };
            let body = serde_json::json!({
                "type": "object", "required": ["type", "timestamp", "data"],
                "properties": {
                    "type": {"type": "string", "enum": [t.as_str()]},
                    "timestamp": {"type": "string", "format": "date-time",
                        "description": "When it happened"},
                    "data": {"$ref": format!("#/components/schemas/{data}")},
                },
            });
            let operation = serde_json::json!({"post": {
                "operationId": format!("webhook_{}", t.as_str().replace('.', "_")),
                "summary": t.describe(),
                "parameters": headers,
                "requestBody": {"required": true,
                    "content": {"application/json": {"schema": body}}},
                "responses": {
                    "2XX": {"description": "Delivered"},
                    "default": {"description": "Retried on the schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h)"},
                },
            }});
            hooks.insert(t.as_str().to_owned(), operation);
        }
        openapi
            .extensions
            .get_or_insert_with(Default::default)
            .insert("webhooks".to_owned(), serde_json::Value::Object(hooks));
    }
}

impl Modify for AdminKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `202 Accepted`: where the event is on the stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedBody {
    /// The event id (from the idempotency key when one was sent).
    pub id: Uuid,
    /// The event's stream sequence.
    pub seq: u64,
    /// The key was seen before: the event was stored once, earlier.
    pub duplicate: bool,
    /// A lottery registration's receipt (64 hex digits): SHA-256 of it, cut to 32 hex
    /// digits, is the registrant's pseudonym in the public draw record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// One server-sent event of a live stream: its name and the whole current view, as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveEvent {
    /// A channel message's sequence, to resume from (`Last-Event-ID`); live views have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `results` (poll), `standings` (tournament), `status` (one registrant), or on a channel
    /// `message` (`stale`: the upstream's last good value while it is down).
    #[schema(inline)]
    pub event: LiveEventName,
    /// The view, as the matching read route answers it.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiveEventName {
    Results,
    Standings,
    Status,
    Message,
    Stale,
}

/// Every error: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// What a single-event write may answer.
#[derive(IntoResponses)]
#[allow(dead_code)] // only describes responses
pub enum WriteResponses {
    #[response(status = 202, description = "Stored on the stream")]
    Accepted(AcceptedBody),
    #[response(status = 400, description = "Malformed JSON")]
    Malformed(ErrorResponse),
    #[response(
        status = 401,
        description = "Credentials missing or refused (token_required, token_expired, …, unauthorized)"
    )]
    Unauthorized(ErrorResponse),
    #[response(
        status = 403,
        description = "Credentials not enough (not_your_identity, group_not_granted, insufficient_role, invalid_key, invalid_signature, replayed_signature)"
    )]
    Forbidden(ErrorResponse),
    #[response(status = 404, description = "No such poll, arena or tournament")]
    NotFound(ErrorResponse),
    #[response(
        status = 409,
        description = "Window closed or not allowed now (poll_closed, window_closed, match_final, not_claimable, claim_expired, not_withdrawable)"
    )]
    Closed(ErrorResponse),
    #[response(status = 413, description = "Body too large")]
    TooLarge(ErrorResponse),
    #[response(status = 415, description = "Not application/json")]
    NotJson(ErrorResponse),
    #[response(status = 422, description = "A field with a bad value, named")]
    Invalid(ErrorResponse),
    #[response(
        status = 429,
        description = "Over a rate limit (Retry-After, RateLimit, RateLimit-Policy)"
    )]
    Limited(ErrorResponse),
    #[response(status = 503, description = "Not stored; retry (Retry-After)")]
    Unavailable(ErrorResponse),
}

/// What a read may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ReadResponses {
    #[response(status = 200, description = "The current view")]
    Ok(#[to_schema] serde_json::Value),
    #[response(status = 400, description = "A malformed query string")]
    Malformed(ErrorResponse),
    #[response(
        status = 401,
        description = "A user token refused, or one required and missing"
    )]
    Unauthorized(ErrorResponse),
    #[response(
        status = 403,
        description = "Results hidden by the poll's visibility, or not the reader's own registration"
    )]
    Hidden(ErrorResponse),
    #[response(status = 404, description = "No such resource")]
    NotFound(ErrorResponse),
    #[response(status = 422, description = "A bad query parameter, named")]
    Invalid(ErrorResponse),
    #[response(status = 503, description = "Redis unreachable")]
    Unavailable(ErrorResponse),
}

/// What an admin call with a body (create, replace) may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum AdminBodyResponses {
    #[response(
        status = 200,
        description = "Replaced: the definition, with its version"
    )]
    Ok(#[to_schema] serde_json::Value),
    #[response(status = 201, description = "Created")]
    Created(#[to_schema] serde_json::Value),
    #[response(status = 400, description = "Malformed JSON")]
    Malformed(ErrorResponse),
    #[response(status = 401, description = "No key")]
    Unauthorized(ErrorResponse),
    #[response(status = 403, description = "Wrong key, or a viewer key on a write")]
    Forbidden(ErrorResponse),
    #[response(status = 404, description = "No such resource")]
    NotFound(ErrorResponse),
    #[response(
        status = 409,
        description = "Exists already, or an immutable field changed"
    )]
    Conflict(ErrorResponse),
    #[response(status = 413, description = "Body too large")]
    TooLarge(ErrorResponse),
    #[response(status = 415, description = "Not application/json")]
    NotJson(ErrorResponse),
    #[response(status = 422, description = "A field with a bad value, named")]
    Invalid(ErrorResponse),
    #[response(status = 503, description = "Postgres unreachable")]
    Unavailable(ErrorResponse),
}

/// What an admin call may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum AdminResponses {
    #[response(status = 200, description = "The definition, with its version")]
    Ok(#[to_schema] serde_json::Value),
    #[response(status = 201, description = "Created")]
    Created(#[to_schema] serde_json::Value),
    #[response(status = 401, description = "No key")]
    Unauthorized(ErrorResponse),
    #[response(status = 403, description = "Wrong key, or a viewer key on a write")]
    Forbidden(ErrorResponse),
    #[response(status = 404, description = "No such resource")]
    NotFound(ErrorResponse),
    #[response(
        status = 409,
        description = "Exists already, or an immutable field changed"
    )]
    Conflict(ErrorResponse),
    #[response(status = 422, description = "A field with a bad value, named")]
    Invalid(ErrorResponse),
    #[response(status = 503, description = "Postgres unreachable")]
    Unavailable(ErrorResponse),
}

/// What an admin route may refuse besides its own answers: no key, the wrong role, Postgres
/// away (webhook endpoints; the resource routes use [`AdminResponses`]).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum KeyRefusals {
    #[response(status = 401, description = "No key")]
    Unauthorized(ErrorResponse),
    #[response(
        status = 403,
        description = "A key without the role (viewer to read, admin to write)"
    )]
    Forbidden(ErrorResponse),
    #[response(status = 503, description = "Postgres unreachable")]
    Unavailable(ErrorResponse),
}

/// What a route taking a JSON body may refuse before reading it.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum BodyRefusals {
    #[response(status = 400, description = "Malformed JSON")]
    Malformed(ErrorResponse),
    #[response(status = 413, description = "Body too large")]
    TooLarge(ErrorResponse),
    #[response(status = 415, description = "Not application/json")]
    NotJson(ErrorResponse),
}
