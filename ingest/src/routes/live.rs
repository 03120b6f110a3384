//! Server-sent events: `GET /v1/polls/{poll}/stream` and
//! `GET /v1/tournaments/{tournament}/standings/stream`. Each event carries the whole current
//! view (the read API's JSON), at most a few per second per scope.

use crate::auth::MaybeCaller;
use crate::error::ApiError;
use crate::extract::{Path, scope};
use crate::routes::reads::check_results_visible;
use crate::server::AppState;
use axum::extract::State;
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
    params(("tournament" = TournamentId, Path), ("user" = tally_schema::ids::UserId, Path)),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = crate::api_doc::LiveEvent),
        (status = 404, description = "No such tournament", body = crate::api_doc::ErrorResponse)))]
async fn registration_stream(
    State(state): State<AppState>,
    Path((tournament, user)): Path<(String, String)>,
) -> Result<Events, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let user: tally_schema::ids::UserId = scope("user", user)?;
    state.catalog.snapshot().tournament(tournament.as_str())?;
    let topic = format!("{tournament}{}{user}", crate::live::USER_SEPARATOR);
    Ok(follow(
        &state,
        LiveView::RegistrationStatus,
        &topic,
        "status",
    ))
}

type Events = Sse<KeepAliveStream<BoxStream<'static, Result<Event, Infallible>>>>;

fn follow(state: &AppState, view: LiveView, scope: &str, name: &'static str) -> Events {
    let updates = WatchStream::new(state.live.follow(view, scope))
        .filter_map(|latest| async move { latest })
        .map(move |json| Ok(Event::default().event(name).data(&*json)))
        .take_until(state.live.closing());
    Sse::new(updates.boxed()).keep_alive(KeepAlive::default())
}

/// Server-sent events `results`: the poll's results each time they change.
#[utoipa::path(get, path = "/v1/polls/{poll}/stream", tag = "live",
    params(("poll" = PollId, Path)), security((), ("admin_key" = [])),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = crate::api_doc::LiveEvent),
        (status = 403, description = "Results hidden", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such poll", body = crate::api_doc::ErrorResponse)))]
async fn poll_stream(
    State(state): State<AppState>,
    Path(poll): Path<String>,
    caller: MaybeCaller,
) -> Result<Events, ApiError> {
    let poll: PollId = scope("poll", poll)?;
    // A live stream outlives the moment it was allowed, so only results that are public for
    // everyone (or to a key holder) stream; "after voting" is read per request instead.
    check_results_visible(&state, &poll, None, caller).await?;
    Ok(follow(
        &state,
        LiveView::PollResults,
        poll.as_str(),
        "results",
    ))
}

/// Server-sent events `standings`: the top 50 each time they change.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/standings/stream", tag = "live",
    params(("tournament" = TournamentId, Path)),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = crate::api_doc::LiveEvent),
        (status = 404, description = "No such tournament", body = crate::api_doc::ErrorResponse)))]
async fn standings_stream(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
) -> Result<Events, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    state.catalog.snapshot().tournament(tournament.as_str())?;
    Ok(follow(
        &state,
        LiveView::Standings,
        tournament.as_str(),
        "standings",
    ))
}
