//! Broadcast channels: publish a JSON message (`POST /v1/channels/{channel}/messages`, 202
//! after JetStream's ack), follow a channel over SSE (`…/stream`) or WebSocket (`…/ws`) and
//! resume after a reconnect from the last event id.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ClientIp, IdempotencyHeader, JsonBytes, Path, scope};
use crate::routes::live::{Client, Update, answer, take_slot, with_query_token};
use crate::server::AppState;
use axum::Json;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use tally_kit::channels::{self as streams, ChannelError, Outgoing};
use tally_schema::api::FieldError;
use tally_schema::channels::{Channel, Followers, MessageKind};
use tally_schema::ids::ChannelId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(publish))
}

/// The follow routes: no body, so outside the write routes' body limit and signatures.
pub fn follow_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream))
        .routes(routes!(ws))
}

/// The answer to a publish.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PublishedBody {
    pub channel: ChannelId,
    /// The message's sequence in the channel: its event id for followers.
    pub seq: u64,
    /// The idempotency key was seen before: stored once, earlier.
    pub duplicate: bool,
}

/// Publishes a message: any JSON value, stored as compact JSON and sent to every follower.
/// An `Idempotency-Key` makes a retry store it once (within the duplicate window).
#[utoipa::path(post, path = "/v1/channels/{channel}/messages", tag = "channels",
    params(("channel" = ChannelId, Path), ("Idempotency-Key" = Option<tally_schema::ids::IdempotencyKey>, Header)),
    request_body(content = serde_json::Value, content_type = "application/json"),
    security(("admin_key" = [])),
    responses(
        (status = 202, description = "Stored by JetStream", body = PublishedBody),
        (status = 400, description = "Not JSON", body = crate::api_doc::ErrorResponse),
        (status = 401, description = "No credentials", body = crate::api_doc::ErrorResponse),
        (status = 403, description = "Not a publisher of this channel", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such channel", body = crate::api_doc::ErrorResponse),
        (status = 409, description = "The channel is closed", body = crate::api_doc::ErrorResponse),
        (status = 413, description = "Larger than the message limit", body = crate::api_doc::ErrorResponse),
        (status = 415, description = "Not application/json", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "An Idempotency-Key that is not valid", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "JetStream did not store it (Retry-After)", body = crate::api_doc::ErrorResponse),
    ))]
#[tracing::instrument(name = "channel_publish", skip_all, fields(channel))]
async fn publish(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    key: IdempotencyHeader,
    principal: Principal,
    JsonBytes(body): JsonBytes,
) -> Result<(StatusCode, Json<PublishedBody>), ApiError> {
    let id: ChannelId = scope("channel", channel)?;
    tracing::Span::current().record("channel", id.as_str());
    let channel = state.catalog.snapshot().channel(id.as_str())?.clone();
    may_publish(&principal, &channel)?;
    if !channel.window().contains(chrono::Utc::now()) {
        return Err(ApiError::Conflict {
            code: "channel_closed",
            message: format!("channel '{id}' takes no messages now (see opens_at, closes_at)"),
        });
    }
    let payload = compact(&body)?;
    let message_id = key
        .0
        .map(|k| k.event_id("channel_message", id.as_str(), &principal.key_owner()))
        .map(|uuid| uuid.to_string());
    let out = Outgoing {
        kind: MessageKind::Message,
        payload,
        message_id,
        expected_last: None,
    };
    let (js, spec) = (state.channels.jetstream(), state.channels.spec());
    let timeout = state.config.publish_timeout();
    let published = streams::publish_declaring(js, spec, &channel, out, timeout)
        .await
        .map_err(|e| unavailable(&state, e))?;
    metrics::counter!("tally_ingest_channel_messages_total").increment(1);
    Ok((
        StatusCode::ACCEPTED,
        Json(PublishedBody {
            channel: id,
            seq: published.seq,
            duplicate: published.duplicate,
        }),
    ))
}

/// Admin keys always; a key of the channel's publisher role; a user token in its publisher
/// group. Nobody else.
fn may_publish(principal: &Principal, channel: &Channel) -> Result<(), ApiError> {
    let rule = &channel.publishers;
    let allowed = match principal {
        Principal::Anonymous => {
            return Err(ApiError::Unauthorized {
                code: "unauthorized",
                message: "publishing needs a key or a user token: 'Authorization: Bearer …'".into(),
            });
        }
        Principal::Key { role, .. } => {
            *role == tally_schema::roles::Role::Admin || rule.role.is_some_and(|r| role.allows(r))
        }
        Principal::User(user) => rule.group.is_some() && user.group == rule.group,
    };
    match allowed {
        true => Ok(()),
        false => Err(ApiError::Forbidden {
            code: "not_a_publisher",
            message: format!("this caller may not publish to channel '{}'", channel.id),
        }),
    }
}

/// The body as compact JSON (one line: an SSE data field), or 400 naming why it is not JSON.
fn compact(body: &[u8]) -> Result<Bytes, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| FieldError::malformed("malformed_json", e.to_string()))?;
    Ok(serde_json::to_vec(&value)
        .expect("a JSON value serializes")
        .into())
}

fn unavailable(state: &AppState, e: ChannelError) -> ApiError {
    tally_kit::warn_once_a_second!(error = %e, "Channel publish failed; answering 503.");
    let reason = match e {
        ChannelError::Timeout(_) => "broker_timeout",
        _ => "broker_refused",
    };
    ApiError::Unavailable {
        reason,
        retry_after_secs: state.config.retry_after_secs,
    }
}

/// `?last_event_id=` (a WebSocket cannot send `Last-Event-ID`) and `?access_token=`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FollowQuery {
    /// Resume after this sequence (the last event id seen; 0: from the oldest kept).
    #[param(value_type = Option<i64>, minimum = 0)]
    last_event_id: Option<String>,
    /// A user token, for a browser (it cannot set headers).
    access_token: Option<String>,
}

type FollowQueryResult = Result<Query<FollowQuery>, axum::extract::rejection::QueryRejection>;

/// The sequence a follower resumes after: the `Last-Event-ID` header, else the query, else
/// none. Each given must be a sequence (a whole number up to 2^63 - 1).
fn last_seen(headers: &HeaderMap, query: &FollowQuery) -> Result<Option<u64>, ApiError> {
    let parse = |field: &str, raw: &str| {
        raw.trim()
            .parse::<i64>()
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| -> ApiError {
                FieldError::invalid(
                    "invalid_value",
                    field,
                    "must be a message sequence (a whole number from 0 to 2^63 - 1)",
                )
                .into()
            })
    };
    let from_query = match &query.last_event_id {
        Some(raw) => Some(parse("last_event_id", raw)?),
        None => None,
    };
    match headers.get("last-event-id") {
        Some(v) => parse("Last-Event-ID", v.to_str().unwrap_or("?")).map(Some),
        None => Ok(from_query),
    }
}

async fn follow(
    state: AppState,
    channel: String,
    principal: Principal,
    address: ClientIp,
    headers: HeaderMap,
    query: FollowQueryResult,
    client: Client,
) -> Result<Response, ApiError> {
    let id: ChannelId = scope("channel", channel)?;
    let channel = state.catalog.snapshot().channel(id.as_str())?.clone();
    let Query(query) = query.map_err(crate::extract::malformed_query)?;
    let last = last_seen(&headers, &query)?;
    if channel.followers == Followers::Token {
        let token = query.access_token.as_deref();
        if with_query_token(&state, principal, token).await? == Principal::Anonymous {
            return Err(ApiError::Unauthorized {
                code: "token_required",
                message: format!("following channel '{id}' needs a user token"),
            });
        }
    }
    let slot = take_slot(&state, address, "channel", client.transport())?;
    let messages = state.channels.follow(&channel, last).await.map_err(|e| {
        tally_kit::warn_once_a_second!(error = %e, "Cannot follow a channel; answering 503.");
        ApiError::Unavailable {
            reason: "channel_unavailable",
            retry_after_secs: state.config.retry_after_secs,
        }
    })?;
    let updates = messages.map(|m| Update {
        id: Some(m.seq),
        event: m.kind.as_str(),
        data: m.payload.clone(),
    });
    Ok(answer(&state, client, slot, updates.boxed()))
}

/// Server-sent events: `message` for each message (`stale`: the upstream is down and this is
/// its last good value), each with its sequence as the event id. A reconnect with
/// `Last-Event-ID` receives exactly what it missed, within the channel's retention; a new
/// follower starts at the newest message.
#[utoipa::path(get, path = "/v1/channels/{channel}/stream", tag = "channels",
    params(("channel" = ChannelId, Path), FollowQuery,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "resume after this sequence")),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = crate::api_doc::LiveEvent),
        (status = 400, description = "A malformed query string", body = crate::api_doc::ErrorResponse),
        (status = 401, description = "A user token required or refused", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such channel", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "A last event id that is not a sequence", body = crate::api_doc::ErrorResponse),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may, or JetStream is away (Retry-After)", body = crate::api_doc::ErrorResponse)))]
async fn stream(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    principal: Principal,
    address: ClientIp,
    headers: HeaderMap,
    query: FollowQueryResult,
) -> Result<Response, ApiError> {
    follow(
        state,
        channel,
        principal,
        address,
        headers,
        query,
        Client::Sse,
    )
    .await
}

/// The same over WebSocket: a text frame `{"id": "<seq>", "event": "message", "data": …}` per
/// message; resume with `?last_event_id=`.
#[utoipa::path(get, path = "/v1/channels/{channel}/ws", tag = "channels",
    params(("channel" = ChannelId, Path), FollowQuery),
    responses((status = 101, description = "Switching to WebSocket: text frames", body = crate::api_doc::LiveEvent),
        (status = 400, description = "Not a WebSocket handshake, or a malformed query string", body = crate::api_doc::ErrorResponse),
        (status = 401, description = "A user token required or refused", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such channel", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "A last event id that is not a sequence", body = crate::api_doc::ErrorResponse),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may, or JetStream is away (Retry-After)", body = crate::api_doc::ErrorResponse)))]
async fn ws(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    principal: Principal,
    address: ClientIp,
    headers: HeaderMap,
    query: FollowQueryResult,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let client = Client::websocket(upgrade)?;
    follow(state, channel, principal, address, headers, query, client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_stored_as_one_line_of_json() {
        let body = b"{\n  \"price\": 1.5,\n  \"note\": \"a\\nb\"\n}";
        let stored = compact(body).unwrap();
        assert!(!stored.contains(&b'\n'));
        let back: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(back, serde_json::json!({"price": 1.5, "note": "a\nb"}));
        assert!(compact(b"not json").is_err());
    }

    #[test]
    fn a_last_event_id_must_be_a_sequence() {
        let query = FollowQuery {
            last_event_id: Some("12".into()),
            access_token: None,
        };
        let mut headers = HeaderMap::new();
        assert_eq!(last_seen(&headers, &query).unwrap(), Some(12));
        headers.insert("last-event-id", "40".parse().unwrap());
        assert_eq!(last_seen(&headers, &query).unwrap(), Some(40));
        headers.insert("last-event-id", "x".parse().unwrap());
        let err = last_seen(&headers, &query).unwrap_err();
        assert!(matches!(err, ApiError::Field(f) if f.field == "Last-Event-ID"));
        headers.insert("last-event-id", "1".parse().unwrap());
        let too_far = FollowQuery {
            last_event_id: Some("9223372036854775808".into()),
            access_token: None,
        };
        let err = last_seen(&headers, &too_far).unwrap_err();
        assert!(matches!(err, ApiError::Field(f) if f.field == "last_event_id"));
    }
}
