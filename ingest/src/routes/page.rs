//! The live results page: plain HTML and JavaScript, no build step, following the SSE stream
//! of one poll (`/live/polls/{poll}`) or one tournament's standings
//! (`/live/tournaments/{tournament}`).

use crate::error::ApiError;
use crate::extract::{Path, scope};
use crate::server::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use tally_schema::ids::{PollId, TournamentId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const PAGE: &str = include_str!("../../static/live.html");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(poll_page))
        .routes(routes!(tournament_page))
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

/// A page of live bars for one poll.
#[utoipa::path(get, path = "/live/polls/{poll}", tag = "live", params(("poll" = PollId, Path)),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = 404, description = "Not a poll id", body = crate::api_doc::ErrorResponse)))]
async fn poll_page(Path(poll): Path<String>) -> Result<impl IntoResponse, ApiError> {
    scope::<PollId>("poll", poll)?;
    Ok(page())
}

/// A page of live standings for one tournament.
#[utoipa::path(get, path = "/live/tournaments/{tournament}", tag = "live", params(("tournament" = TournamentId, Path)),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = 404, description = "Not a tournament id", body = crate::api_doc::ErrorResponse)))]
async fn tournament_page(Path(tournament): Path<String>) -> Result<impl IntoResponse, ApiError> {
    scope::<TournamentId>("tournament", tournament)?;
    Ok(page())
}
