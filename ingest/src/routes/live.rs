//! Server-sent events: `GET /v1/polls/{poll}/stream` and
//! `GET /v1/tournaments/{tournament}/standings/stream`. Each event carries the whole current
//! view (the read API's JSON), at most a few per second per scope.

use crate::auth::MaybeCaller;
use crate::error::ApiError;
use crate::extract::scope;
use crate::routes::reads::check_results_visible;
use crate::server::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use axum::routing::get;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::convert::Infallible;
use tally_schema::LiveView;
use tally_schema::ids::{PollId, TournamentId};
use tokio_stream::wrappers::WatchStream;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/polls/{poll}/stream", get(poll_stream))
        .route(
            "/v1/tournaments/{tournament}/standings/stream",
            get(standings_stream),
        )
}

type Events = Sse<KeepAliveStream<BoxStream<'static, Result<Event, Infallible>>>>;

fn follow(state: &AppState, view: LiveView, scope: &str, name: &'static str) -> Events {
    let updates = WatchStream::new(state.live.follow(view, scope))
        .filter_map(|latest| async move { latest })
        .map(move |json| Ok(Event::default().event(name).data(&*json)))
        .take_until(state.live.closing());
    Sse::new(updates.boxed()).keep_alive(KeepAlive::default())
}

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
