//! The live results page: plain HTML and JavaScript, no build step, following the SSE stream
//! of one poll (`/live/polls/{poll}`) or one tournament's standings
//! (`/live/tournaments/{tournament}`).

use crate::error::ApiError;
use crate::extract::scope;
use crate::server::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tally_schema::ids::{PollId, TournamentId};

const PAGE: &str = include_str!("../../static/live.html");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/live/polls/{poll}", get(poll_page))
        .route("/live/tournaments/{tournament}", get(tournament_page))
}

fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        PAGE,
    )
}

async fn poll_page(Path(poll): Path<String>) -> Result<impl IntoResponse, ApiError> {
    scope::<PollId>("poll", poll)?;
    Ok(page())
}

async fn tournament_page(Path(tournament): Path<String>) -> Result<impl IntoResponse, ApiError> {
    scope::<TournamentId>("tournament", tournament)?;
    Ok(page())
}
