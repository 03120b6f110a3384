//! Server-sent events: `GET /v1/polls/{poll}/stream` and
//! `GET /v1/tournaments/{tournament}/standings/stream`. Each event carries the whole current
//! view (the read API's JSON), at most a few per second per scope.

use crate::auth::{MaybeCaller, Principal};
use crate::error::ApiError;
use crate::extract::{ClientIp, Path, scope};
use crate::live::SlotRefusal;
use crate::routes::reads::check_results_visible;
use crate::server::AppState;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::convert::Infallible;
use tally_schema::LiveView;
use tally_schema::ids::{PollId, TournamentId};
use tokio_stream::wrappers::WatchStream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(poll_stream))
        .routes(routes!(standings_stream))
        .routes(routes!(registration_stream))
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
    Path((tournament, user)): Path<(String, String)>,
    principal: Principal,
    client: ClientIp,
    token: Result<Query<StreamToken>, axum::extract::rejection::QueryRejection>,
) -> Result<Events, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let user: tally_schema::ids::UserId = scope("user", user)?;
    let identity = state
        .catalog
        .snapshot()
        .tournament(tournament.as_str())?
        .identity;
    let Query(token) = token.map_err(crate::extract::malformed_query)?;
    // A browser's EventSource cannot set headers: it may pass the token as `access_token`.
    let principal = match (principal, &token.access_token) {
        (Principal::Anonymous, Some(t)) => crate::auth::authenticate(&state, t).await?,
        (principal, _) => principal,
    };
    crate::access::read_as(&principal, identity, &user)?;
    let topic = format!("{tournament}{}{user}", crate::live::USER_SEPARATOR);
    follow(
        &state,
        client,
        LiveView::RegistrationStatus,
        &topic,
        "status",
    )
}

/// `?access_token=`: the user token of a stream opened by a browser.
#[derive(Debug, serde::Deserialize)]
pub struct StreamToken {
    access_token: Option<String>,
}

type Events = Sse<KeepAliveStream<BoxStream<'static, Result<Event, Infallible>>>>;

/// Opens a live stream of `view` for `client`, within the per-address and per-instance caps.
fn follow(
    state: &AppState,
    client: ClientIp,
    view: LiveView,
    scope: &str,
    name: &'static str,
) -> Result<Events, ApiError> {
    let retry_after_secs = state.config.retry_after_secs;
    let slot = state
        .streams
        .take(client.0, view)
        .map_err(|refused| match refused {
            SlotRefusal::Address(limit) => ApiError::TooManyStreams {
                limit,
                retry_after_secs,
            },
            SlotRefusal::Instance(_) => ApiError::Unavailable {
                reason: "streams_full",
                retry_after_secs,
            },
        })?;
    let updates = WatchStream::new(state.live.follow(view, scope))
        .filter_map(|latest| async move { latest })
        .map(move |json| {
            // The stream owns its place: it is freed when the stream is dropped.
            let _held = &slot;
            Ok(Event::default().event(name).data(&*json))
        })
        .take_until(state.live.closing());
    Ok(Sse::new(updates.boxed()).keep_alive(KeepAlive::default()))
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
    Path(poll): Path<String>,
    client: ClientIp,
    caller: MaybeCaller,
) -> Result<Events, ApiError> {
    let poll: PollId = scope("poll", poll)?;
    // A live stream outlives the moment it was allowed, so only results that are public for
    // everyone (or to a key holder) stream; "after voting" is read per request instead.
    check_results_visible(&state, &poll, None, caller).await?;
    follow(
        &state,
        client,
        LiveView::PollResults,
        poll.as_str(),
        "results",
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
    client: ClientIp,
) -> Result<Events, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    state.catalog.snapshot().tournament(tournament.as_str())?;
    follow(
        &state,
        client,
        LiveView::Standings,
        tournament.as_str(),
        "standings",
    )
}
