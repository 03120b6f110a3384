//! Live views over server-sent events (`…/stream`) or WebSocket (`…/ws`): a poll's results, a
//! tournament's standings, one registrant's status. Each update carries the whole current
//! view (the read API's JSON), at most a few per second per scope. [`answer`] serves any
//! stream of updates over either transport; the channels' routes use it too.

use crate::auth::{MaybeCaller, Principal};
use crate::error::ApiError;
use crate::extract::{ClientIp, Path, scope};
use crate::live::SlotRefusal;
use crate::live::{StreamSlot, Transport};
use crate::routes::reads::check_results_visible;
use crate::server::AppState;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use std::convert::Infallible;
use std::time::Duration;
use tally_schema::LiveView;
use tally_schema::ids::{PollId, TournamentId};
use tokio_stream::wrappers::WatchStream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(poll_stream))
        .routes(routes!(poll_ws))
        .routes(routes!(standings_stream))
        .routes(routes!(standings_ws))
        .routes(routes!(registration_stream))
        .routes(routes!(registration_ws))
        .routes(routes!(match_stream))
        .routes(routes!(match_ws))
}

/// One update of a live stream: an SSE event, or the WebSocket frame
/// `{"id": "<id>", "event": "<event>", "data": <data>}` carrying the same.
pub struct Update {
    /// The stream sequence a follower resumes from (channels only).
    pub id: Option<u64>,
    pub event: &'static str,
    /// JSON.
    pub data: Bytes,
}

impl Update {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.data).unwrap_or("null")
    }

    fn sse(&self) -> Event {
        let event = Event::default().event(self.event).data(self.text());
        match self.id {
            Some(id) => event.id(id.to_string()),
            None => event,
        }
    }

    fn frame(&self) -> String {
        let id = self.id.map(|i| format!("\"id\":\"{i}\","));
        format!(
            "{{{}\"event\":\"{}\",\"data\":{}}}",
            id.unwrap_or_default(),
            self.event,
            self.text()
        )
    }
}

/// Who asked for a stream, over which transport.
pub enum Client {
    Sse,
    WebSocket(WebSocketUpgrade),
}

impl Client {
    pub fn transport(&self) -> Transport {
        match self {
            Client::Sse => Transport::Sse,
            Client::WebSocket(_) => Transport::WebSocket,
        }
    }

    /// A request to a `…/ws` route that is not a WebSocket handshake: 400 naming why.
    pub fn websocket(
        upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    ) -> Result<Self, ApiError> {
        upgrade
            .map(|ws| Client::WebSocket(ws.max_message_size(4096).max_frame_size(4096)))
            .map_err(|e| {
                tally_schema::api::FieldError {
                    problem: tally_schema::api::Problem::Malformed,
                    code: "not_a_websocket",
                    field: "Upgrade".into(),
                    message: e.body_text(),
                }
                .into()
            })
    }
}

/// Serves `updates` to `client`, holding `slot` for as long as the stream is open; every
/// stream ends when the server begins to stop.
pub fn answer(
    state: &AppState,
    client: Client,
    slot: StreamSlot,
    updates: BoxStream<'static, Update>,
) -> Response {
    let updates = updates.take_until(state.live.closing());
    match client {
        Client::Sse => {
            let events = updates.map(move |update| {
                // The stream owns its place: it is freed when the stream is dropped.
                let _held = &slot;
                Ok::<_, Infallible>(update.sse())
            });
            Sse::new(events)
                .keep_alive(KeepAlive::default())
                .into_response()
        }
        Client::WebSocket(ws) => ws.on_upgrade(move |socket| pump(socket, updates, slot)),
    }
}

/// Sends each update as a text frame until the stream ends or the client goes; answers the
/// client's pings and pings it every half minute, ignores anything else it sends.
async fn pump(
    socket: WebSocket,
    updates: impl futures::Stream<Item = Update> + Send,
    _slot: StreamSlot,
) {
    let (mut tx, mut rx) = socket.split();
    let mut updates = std::pin::pin!(updates);
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    ping.reset();
    loop {
        tokio::select! {
            update = updates.next() => match update {
                Some(update) => {
                    if tx.send(Message::Text(update.frame().into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = tx.send(Message::Close(None)).await;
                    return;
                }
            },
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Ping(data))) => {
                    if tx.send(Message::Pong(data)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Takes a place for a live stream of `view` from `address`, within the per-address and
/// per-instance caps.
pub fn take_slot(
    state: &AppState,
    address: ClientIp,
    view: &'static str,
    transport: Transport,
) -> Result<StreamSlot, ApiError> {
    let retry_after_secs = state.config.retry_after_secs;
    state
        .streams
        .take(address.0, (view, transport))
        .map_err(|refused| match refused {
            SlotRefusal::Address(limit) => ApiError::TooManyStreams {
                limit,
                retry_after_secs,
            },
            SlotRefusal::Instance(_) => ApiError::Unavailable {
                reason: "streams_full",
                retry_after_secs,
            },
        })
}

/// Opens a live stream of `view` for `client`, within the caps.
fn follow(
    state: &AppState,
    address: ClientIp,
    client: Client,
    view: LiveView,
    scope: &str,
    name: &'static str,
) -> Result<Response, ApiError> {
    let slot = take_slot(state, address, view.as_str(), client.transport())?;
    let updates = WatchStream::new(state.live.follow(view, scope))
        .filter_map(|latest| async move { latest })
        .map(move |json| Update {
            id: None,
            event: name,
            data: Bytes::copy_from_slice(json.as_bytes()),
        });
    Ok(answer(state, client, slot, updates.boxed()))
}

/// `?access_token=`: the user token of a stream opened by a browser.
#[derive(Debug, serde::Deserialize)]
pub struct StreamToken {
    pub access_token: Option<String>,
}

/// A browser's EventSource or WebSocket cannot set headers: it may pass the token as
/// `access_token`.
pub async fn with_query_token(
    state: &AppState,
    principal: Principal,
    token: Option<&str>,
) -> Result<Principal, ApiError> {
    match (principal, token) {
        (Principal::Anonymous, Some(t)) => crate::auth::authenticate(state, t).await,
        (principal, _) => Ok(principal),
    }
}

type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;
type TokenQuery = Result<Query<StreamToken>, axum::extract::rejection::QueryRejection>;

async fn registration(
    state: AppState,
    (tournament, user): (String, String),
    principal: Principal,
    address: ClientIp,
    token: TokenQuery,
    client: Client,
) -> Result<Response, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let user: tally_schema::ids::UserId = scope("user", user)?;
    let identity = state
        .catalog
        .snapshot()
        .tournament(tournament.as_str())?
        .identity;
    let Query(token) = token.map_err(crate::extract::malformed_query)?;
    let principal = with_query_token(&state, principal, token.access_token.as_deref()).await?;
    crate::access::read_as(&principal, identity, &user)?;
    let topic = format!("{tournament}{}{user}", crate::live::USER_SEPARATOR);
    follow(
        &state,
        address,
        client,
        LiveView::RegistrationStatus,
        &topic,
        "status",
    )
}

/// Server-sent events `status`: one registrant's lottery status each time it changes (won,
/// waitlisted, claimed, released, promoted).
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/registrations/{user}/stream", tag = "live",
    params(("tournament" = TournamentId, Path), ("user" = tally_schema::ids::UserId, Path),
        ("access_token" = Option<String>, Query, description = "the user token, for a browser's EventSource (it cannot set headers)")),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = crate::api_doc::LiveEvent),
        (status = 400, description = "A malformed query string", body = crate::api_doc::ErrorResponse),
        (status = 401, description = "A user token required or refused", body = crate::api_doc::ErrorResponse),
        (status = 403, description = "Not the reader's own registration", body = crate::api_doc::ErrorResponse),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such tournament", body = crate::api_doc::ErrorResponse)))]
async fn registration_stream(
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
    principal: Principal,
    address: ClientIp,
    token: TokenQuery,
) -> Result<Response, ApiError> {
    registration(state, path, principal, address, token, Client::Sse).await
}

/// The same over WebSocket: a text frame `{"event": "status", "data": …}` per change.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/registrations/{user}/ws", tag = "live",
    params(("tournament" = TournamentId, Path), ("user" = tally_schema::ids::UserId, Path),
        ("access_token" = Option<String>, Query, description = "the user token (a browser's WebSocket cannot set headers)")),
    responses((status = 101, description = "Switching to WebSocket: text frames", body = crate::api_doc::LiveEvent),
        (status = 400, description = "Not a WebSocket handshake, or a malformed query string", body = crate::api_doc::ErrorResponse),
        (status = 401, description = "A user token required or refused", body = crate::api_doc::ErrorResponse),
        (status = 403, description = "Not the reader's own registration", body = crate::api_doc::ErrorResponse),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such tournament", body = crate::api_doc::ErrorResponse)))]
async fn registration_ws(
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
    principal: Principal,
    address: ClientIp,
    token: TokenQuery,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let client = Client::websocket(upgrade)?;
    registration(state, path, principal, address, token, client).await
}

async fn poll(
    state: AppState,
    poll: String,
    address: ClientIp,
    caller: MaybeCaller,
    client: Client,
) -> Result<Response, ApiError> {
    let poll: PollId = scope("poll", poll)?;
    // A live stream outlives the moment it was allowed, so only results that are public for
    // everyone (or to a key holder) stream; "after voting" is read per request instead.
    check_results_visible(&state, &poll, None, caller).await?;
    follow(
        &state,
        address,
        client,
        LiveView::PollResults,
        poll.as_str(),
        "results",
    )
}

/// Server-sent events `results`: the poll's results each time they change.
#[utoipa::path(get, path = "/v1/polls/{poll}/stream", tag = "live",
    params(("poll" = PollId, Path)), security((), ("admin_key" = [])),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = crate::api_doc::LiveEvent),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 403, description = "Results hidden", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such poll", body = crate::api_doc::ErrorResponse)))]
async fn poll_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    address: ClientIp,
    caller: MaybeCaller,
) -> Result<Response, ApiError> {
    poll(state, id, address, caller, Client::Sse).await
}

/// The same over WebSocket: a text frame `{"event": "results", "data": …}` per change.
#[utoipa::path(get, path = "/v1/polls/{poll}/ws", tag = "live",
    params(("poll" = PollId, Path)), security((), ("admin_key" = [])),
    responses((status = 101, description = "Switching to WebSocket: text frames", body = crate::api_doc::LiveEvent),
        (status = 400, description = "Not a WebSocket handshake", body = crate::api_doc::ErrorResponse),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 403, description = "Results hidden", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such poll", body = crate::api_doc::ErrorResponse)))]
async fn poll_ws(
    State(state): State<AppState>,
    Path(id): Path<String>,
    address: ClientIp,
    caller: MaybeCaller,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let client = Client::websocket(upgrade)?;
    poll(state, id, address, caller, client).await
}

async fn standings(
    state: AppState,
    tournament: String,
    address: ClientIp,
    client: Client,
) -> Result<Response, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    state.catalog.snapshot().tournament(tournament.as_str())?;
    follow(
        &state,
        address,
        client,
        LiveView::Standings,
        tournament.as_str(),
        "standings",
    )
}

/// Server-sent events `standings`: the top 50 each time they change.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/standings/stream", tag = "live",
    params(("tournament" = TournamentId, Path)),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = crate::api_doc::LiveEvent),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such tournament", body = crate::api_doc::ErrorResponse)))]
async fn standings_stream(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    address: ClientIp,
) -> Result<Response, ApiError> {
    standings(state, tournament, address, Client::Sse).await
}

/// The same over WebSocket: a text frame `{"event": "standings", "data": …}` per change.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/standings/ws", tag = "live",
    params(("tournament" = TournamentId, Path)),
    responses((status = 101, description = "Switching to WebSocket: text frames", body = crate::api_doc::LiveEvent),
        (status = 400, description = "Not a WebSocket handshake", body = crate::api_doc::ErrorResponse),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such tournament", body = crate::api_doc::ErrorResponse)))]
async fn standings_ws(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    address: ClientIp,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let client = Client::websocket(upgrade)?;
    standings(state, tournament, address, client).await
}

/// A listed match of a tournament, as a live topic (`tournament␟match`).
fn match_topic(state: &AppState, tournament: String, match_id: String) -> Result<String, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let match_id: tally_schema::ids::MatchId = scope("match", match_id)?;
    let snapshot = state.catalog.snapshot();
    crate::routes::reads::listed_match(snapshot.tournament(tournament.as_str())?, &match_id)?;
    Ok(format!(
        "{tournament}{}{match_id}",
        crate::live::USER_SEPARATOR
    ))
}

/// Server-sent events `match`: one match's status and its teams' scores in it, each time a
/// score or its status changes.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/matches/{match}/stream", tag = "live",
    params(("tournament" = TournamentId, Path), ("match" = tally_schema::ids::MatchId, Path)),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = crate::api_doc::LiveEvent),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such tournament, or not one of its listed matches", body = crate::api_doc::ErrorResponse)))]
async fn match_stream(
    State(state): State<AppState>,
    Path((tournament, match_id)): Path<(String, String)>,
    address: ClientIp,
) -> Result<Response, ApiError> {
    let topic = match_topic(&state, tournament, match_id)?;
    follow(
        &state,
        address,
        Client::Sse,
        LiveView::Match,
        &topic,
        "match",
    )
}

/// The same over WebSocket: a text frame `{"event": "match", "data": …}` per change.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/matches/{match}/ws", tag = "live",
    params(("tournament" = TournamentId, Path), ("match" = tally_schema::ids::MatchId, Path)),
    responses((status = 101, description = "Switching to WebSocket: text frames", body = crate::api_doc::LiveEvent),
        (status = 400, description = "Not a WebSocket handshake", body = crate::api_doc::ErrorResponse),
        (status = 429, description = "Too many streams from this address (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "This instance holds all the streams it may (Retry-After)", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such tournament, or not one of its listed matches", body = crate::api_doc::ErrorResponse)))]
async fn match_ws(
    State(state): State<AppState>,
    Path((tournament, match_id)): Path<(String, String)>,
    address: ClientIp,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let client = Client::websocket(upgrade)?;
    let topic = match_topic(&state, tournament, match_id)?;
    follow(&state, address, client, LiveView::Match, &topic, "match")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_websocket_frame_carries_id_event_and_data_as_json() {
        let update = Update {
            id: Some(7),
            event: "message",
            data: Bytes::from_static(br#"{"a":[1,"x\n"]}"#),
        };
        let frame: serde_json::Value = serde_json::from_str(&update.frame()).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"id": "7", "event": "message", "data": {"a": [1, "x\n"]}})
        );
        let view = Update {
            id: None,
            event: "results",
            data: Bytes::from_static(b"{}"),
        };
        assert_eq!(view.frame(), r#"{"event":"results","data":{}}"#);
    }
}
