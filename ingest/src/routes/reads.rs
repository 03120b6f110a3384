//! The read API, served from the aggregator's Redis views: poll results, arena rankings
//! (global and per session), tournament standings (top N, or around one team) and
//! registration counts. A defined poll or tournament nobody has written to reads as empty;
//! an undefined one is 404. Poll results honour the poll's visibility rule. While Redis cannot
//! answer, poll results, standings and registrations are read from Postgres instead
//! (`crate::fallback`), marked `"source": "postgres"`; arena rankings are not (Elo would have
//! to be replayed from every vote) and answer 503.

use crate::auth::MaybeCaller;
use crate::error::ApiError;
use crate::extract::{Path, malformed_query, scope};
use crate::fallback::Source;
use crate::server::AppState;
use crate::store;
use crate::views::{around_in, top_of};
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use tally_schema::api::FieldError;
use tally_schema::ids::{ArenaId, PollId, SessionId, TeamId, TournamentId, UserId, VoterId};
use tally_schema::resources::{RegistrationMode, SortOrder, Visibility};
use tally_schema::status::RegistrationState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest `limit` and `radius` a read accepts.
const MAX_LIMIT: usize = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(poll_results))
        .routes(routes!(arena_ranking))
        .routes(routes!(session_ranking))
        .routes(routes!(standings))
        .routes(routes!(registrations))
        .routes(routes!(registration_status))
        .routes(routes!(draw))
        .routes(routes!(match_read))
}

/// The listed match `match_id` of a tournament's definition, or 404 naming it.
pub fn listed_match<'a>(
    definition: &'a tally_schema::resources::Tournament,
    match_id: &tally_schema::ids::MatchId,
) -> Result<&'a tally_schema::resources::MatchDef, ApiError> {
    definition
        .matches
        .iter()
        .find(|m| &m.id == match_id)
        .ok_or_else(|| ApiError::NotFound {
            field: "match".into(),
            message: format!("'{match_id}' is not a listed match of '{}'", definition.id),
        })
}

/// One match: its status (`scheduled`, `live`, `final`) and its teams' scores in it, combined
/// and ranked as the standings are.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/matches/{match}", tag = "reads",
    params(("tournament" = TournamentId, Path), ("match" = tally_schema::ids::MatchId, Path)),
    responses(crate::api_doc::ReadResponses))]
async fn match_read(
    State(state): State<AppState>,
    Path((tournament, match_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let match_id: tally_schema::ids::MatchId = scope("match", match_id)?;
    let (status, order) = {
        let snapshot = state.catalog.snapshot();
        let definition = snapshot.tournament(tournament.as_str())?;
        (listed_match(definition, &match_id)?.status, definition.sort)
    };
    let (t, m) = (tournament.as_str(), match_id.as_str());
    let postgres = async {
        let ranking = store::match_standings(state.fallback.pool(), t, m, order).await?;
        let teams = ranking
            .into_iter()
            .take(crate::views::MATCH_TEAMS)
            .collect();
        Ok(tally_schema::api::MatchView {
            tournament: tournament.clone(),
            match_id: match_id.clone(),
            status,
            teams: tally_schema::api::Ranked::list(teams, 0),
        })
    };
    let redis = state
        .views
        .match_view(&tournament, &match_id, status, order);
    let (view, source) = state.read_view(redis, "match", &[t, m], postgres).await?;
    Ok(Json(source.mark(json!(view))))
}

/// Query parameters, taken as text so a bad value gets our field-level error.
#[derive(Debug, Default, Deserialize)]
pub struct ReadParams {
    limit: Option<String>,
    around: Option<String>,
    radius: Option<String>,
}

fn number(name: &str, value: Option<&str>, default: usize) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) || (name == "radius" && n == 0) => Ok(n),
        _ => Err(FieldError::invalid(
            "invalid_value",
            name,
            format!("must be a whole number from 1 to {MAX_LIMIT}"),
        )
        .into()),
    }
}

fn params(
    query: Result<Query<ReadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<ReadParams, ApiError> {
    query.map(|Query(p)| p).map_err(malformed_query)
}

/// `?voter=` names the reader of a poll whose results show only after voting.
#[derive(Debug, Default, Deserialize)]
pub struct ResultParams {
    voter: Option<String>,
}

/// Whether the caller may see a poll's results now, by the poll's visibility rule; a key
/// holder always may. 404 for an unknown poll, 403 `results_hidden` otherwise.
pub async fn check_results_visible(
    state: &AppState,
    poll: &PollId,
    voter: Option<String>,
    caller: MaybeCaller,
) -> Result<(), ApiError> {
    let snapshot = state.catalog.snapshot();
    let definition = snapshot.poll(poll.as_str())?;
    if caller
        .0
        .is_some_and(|c| c.0.allows(crate::auth::Role::Viewer))
    {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let voted = match (definition.visibility, voter) {
        (Visibility::AfterVoting, Some(voter)) => {
            let voter = VoterId::try_from(voter).map_err(|e| {
                ApiError::from(FieldError::invalid("invalid_value", "voter", e.to_string()))
            })?;
            let (p, v) = (poll.as_str(), voter.as_str());
            let postgres = store::has_voted(state.fallback.pool(), p, v);
            state
                .read_view(state.views.has_voted(p, v), "voted", &[p, v], postgres)
                .await?
                .0
        }
        _ => false,
    };
    match definition.results_visible(now, voted) {
        true => Ok(()),
        false => Err(ApiError::Forbidden {
            code: "results_hidden",
            message: match definition.visibility {
                Visibility::AfterVoting => "results show once ?voter= has voted".into(),
                Visibility::AfterClose => "results show once the poll has closed".into(),
                _ => "results of this poll are not public".into(),
            },
        }),
    }
}

/// Votes per option, most first, if the poll's visibility allows.
#[utoipa::path(get, path = "/v1/polls/{poll}/results", tag = "reads",
    params(("poll" = PollId, Path), ("voter" = Option<VoterId>, Query, description = "who asks (polls visible after voting)")),
    security((), ("admin_key" = [])), responses(crate::api_doc::ReadResponses))]
async fn poll_results(
    State(state): State<AppState>,
    Path(poll): Path<String>,
    caller: MaybeCaller,
    query: Result<Query<ResultParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let poll: PollId = scope("poll", poll)?;
    let voter = query.map(|Query(p)| p.voter).map_err(malformed_query)?;
    check_results_visible(&state, &poll, voter, caller).await?;
    let p = poll.as_str();
    let postgres = store::poll_votes(state.fallback.pool(), p);
    let (results, source) = state
        .read_view(state.views.poll_results(p), "poll", &[p], postgres)
        .await?;
    Ok(Json(source.mark(json!(results))))
}

/// Live Elo ranking, and the latest Bradley–Terry fit beside it.
#[utoipa::path(get, path = "/v1/arenas/{arena}/ranking", tag = "reads",
    params(("arena" = ArenaId, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000)), responses(crate::api_doc::ReadResponses))]
async fn arena_ranking(
    State(state): State<AppState>,
    Path(arena): Path<String>,
    query: Result<Query<ReadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let arena: ArenaId = scope("arena", arena)?;
    state.catalog.snapshot().arena(arena.as_str())?;
    let limit = number("limit", params(query)?.limit.as_deref(), 10)?;
    let key = state.views.keys().arena_elo(arena.as_str());
    let items = state
        .views
        .top(&key, limit, SortOrder::Desc)
        .await
        .map_err(|e| state.views_unavailable(e))?;
    // The latest Bradley–Terry fit (scheduled job) beside the live Elo ranking.
    let fitted = state
        .views
        .document(&state.views.keys().bradley_terry(arena.as_str()))
        .await
        .map_err(|e| state.views_unavailable(e))?;
    Ok(Json(json!({
        "arena": arena,
        "rating": "elo",
        "items": items,
        "bradley_terry": fitted,
    })))
}

/// One session's personal Elo ranking.
#[utoipa::path(get, path = "/v1/arenas/{arena}/sessions/{session}/ranking", tag = "reads",
    params(("arena" = ArenaId, Path), ("session" = SessionId, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000)), responses(crate::api_doc::ReadResponses))]
async fn session_ranking(
    State(state): State<AppState>,
    Path((arena, session)): Path<(String, String)>,
    query: Result<Query<ReadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let arena: ArenaId = scope("arena", arena)?;
    let session: SessionId = scope("session", session)?;
    state.catalog.snapshot().arena(arena.as_str())?;
    let limit = number("limit", params(query)?.limit.as_deref(), 10)?;
    let key = state
        .views
        .keys()
        .session_elo(arena.as_str(), session.as_str());
    let items = state
        .views
        .top(&key, limit, SortOrder::Desc)
        .await
        .map_err(|e| state.views_unavailable(e))?;
    Ok(Json(
        json!({ "arena": arena, "session": session, "rating": "elo", "items": items }),
    ))
}

/// The top of the standings, or the teams around one team, in the tournament's sort order.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/standings", tag = "reads",
    params(("tournament" = TournamentId, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("around" = Option<TeamId>, Query), ("radius" = Option<u32>, Query, minimum = 0, maximum = 1000)), responses(crate::api_doc::ReadResponses))]
async fn standings(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    query: Result<Query<ReadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let (order, is_final) = state
        .catalog
        .snapshot()
        .tournament(tournament.as_str())
        .map(|d| (d.sort, d.is_final()))?;
    let params = params(query)?;
    // Both are checked even when only one applies: a bad value is refused, never ignored.
    let limit = number("limit", params.limit.as_deref(), 10)?;
    let radius = number("radius", params.radius.as_deref(), 2)?;
    let around = params
        .around
        .map(|team| {
            TeamId::try_from(team).map_err(|e| {
                ApiError::from(FieldError::invalid(
                    "invalid_value",
                    "around",
                    e.to_string(),
                ))
            })
        })
        .transpose()?;
    let t = tournament.as_str();
    let key = state.views.keys().standings(t);
    // Some(window), or None when `around` names a team without a standing.
    let redis = async {
        match &around {
            Some(team) => state.views.around(&key, team.as_str(), radius, order).await,
            None => state.views.top(&key, limit, order).await.map(Some),
        }
    };
    let postgres = async {
        let query = store::standings(state.fallback.pool(), t, order);
        let order = if order == SortOrder::Desc {
            "desc"
        } else {
            "asc"
        };
        let ranking: Vec<(String, f64)> =
            state.fallback.read("standings", &[t, order], query).await?;
        Ok(match &around {
            Some(team) => around_in(&ranking, team.as_str(), radius),
            None => Some(top_of(&ranking, limit)),
        })
    };
    let (teams, source) = state.read_either(redis, postgres).await?;
    let teams = teams.ok_or_else(|| ApiError::NotFound {
        field: "around".into(),
        message: format!(
            "team '{}' has no standing in this tournament",
            around.as_ref().map_or("", |t| t.as_str())
        ),
    })?;
    let view = tally_schema::api::StandingsView {
        tournament: t.to_owned(),
        teams,
        is_final,
    };
    Ok(Json(source.mark(json!(view))))
}

/// Registrations per priority group and in total.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/registrations", tag = "reads",
    params(("tournament" = TournamentId, Path)), responses(crate::api_doc::ReadResponses))]
async fn registrations(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    state.catalog.snapshot().tournament(tournament.as_str())?;
    let t = tournament.as_str();
    let postgres = store::registration_counts(state.fallback.pool(), t);
    let ((total, groups), source) = state
        .read_view(
            state.views.registrations(t),
            "registrations",
            &[t],
            postgres,
        )
        .await?;
    let groups: serde_json::Map<String, Value> =
        groups.into_iter().map(|(g, n)| (g, n.into())).collect();
    Ok(Json(source.mark(
        json!({ "tournament": tournament, "total": total, "groups": groups }),
    )))
}

/// One user's registration: first-come places follow stream order, counting only those still
/// registered (position up to the capacity: `placed`, beyond it: `waitlisted`); in a lottery,
/// `received` until the draw, and a waitlisted user also sees how many wait ahead and how
/// many won places are still unclaimed; `withdrawn` once given up.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/registrations/{user}", tag = "reads",
    params(("tournament" = TournamentId, Path), ("user" = UserId, Path)),
    responses(crate::api_doc::ReadResponses))]
async fn registration_status(
    State(state): State<AppState>,
    Path((tournament, user)): Path<(String, String)>,
    principal: crate::auth::Principal,
) -> Result<Json<Value>, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let user: UserId = scope("user", user)?;
    let snapshot = state.catalog.snapshot();
    let definition = snapshot.tournament(tournament.as_str())?;
    crate::access::read_as(&principal, definition.identity, &user)?;
    let (t, u) = (tournament.as_str(), user.as_str());
    let pool = state.fallback.pool();
    let (position, position_source) = state
        .read_view(
            state.views.registrant_position(t, u),
            "registrant",
            &[t, u],
            store::registrant_position(pool, t, u),
        )
        .await?;
    let position = position.ok_or_else(|| ApiError::NotFound {
        field: "user".into(),
        message: format!("'{user}' has not registered (or it is not processed yet)"),
    })?;
    let (drawn, drawn_source) = state
        .read_view(
            state.views.draw_result(t, u),
            "registration_status",
            &[t, u],
            store::draw_result(pool, t, u),
        )
        .await?;
    let source = match (position_source, drawn_source) {
        (Source::Redis, Source::Redis) => Source::Redis,
        _ => Source::Postgres,
    };
    let reg = drawn.unwrap_or_else(|| RegistrationState::before_draw(definition, position));
    // A lottery's waitlist: how it may move.
    let (outlook, source) = match (&reg, definition.mode) {
        (RegistrationState::Waitlisted { .. }, RegistrationMode::Lottery) => {
            let (outlook, outlook_source) = state
                .read_view(
                    state.views.waitlist_outlook(t, u),
                    "waitlist_outlook",
                    &[t, u],
                    store::waitlist_outlook(pool, t, u),
                )
                .await?;
            let source = match (source, outlook_source) {
                (Source::Redis, Source::Redis) => Source::Redis,
                _ => Source::Postgres,
            };
            (Some(outlook), source)
        }
        _ => (None, source),
    };
    // Only a reader proven to be the registrant (or a key) gets the receipt again: in an
    // anonymous tournament anyone could read it and unmask the public record.
    let receipt = match definition.identity {
        tally_schema::resources::Identity::Token => {
            snapshot.receipt(tournament.as_str(), user.as_str())
        }
        _ => None,
    };
    Ok(Json(source.mark(json!({
        "tournament": tournament,
        "user": user,
        "registration": RegistrationAnswer { state: reg, outlook, receipt },
    }))))
}

/// A registration's state, with the registrant's receipt where the reader may have it.
#[derive(serde::Serialize)]
struct RegistrationAnswer {
    #[serde(flatten)]
    state: RegistrationState,
    #[serde(flatten)]
    outlook: Option<tally_schema::status::WaitlistOutlook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt: Option<String>,
}

/// A lottery's audit record: the seed's commitment before the draw; after it the seed, the
/// digest of the frozen registrant list, the list, the weights and the results, so anyone can
/// recompute the draw (`tally verify-draw`).
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/draw", tag = "reads",
    params(("tournament" = TournamentId, Path)), responses(crate::api_doc::ReadResponses))]
async fn draw(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    state.catalog.snapshot().tournament(tournament.as_str())?;
    crate::store::draw_record(&state.pool, tournament.as_str())
        .await
        .map_err(|e| state.store_unavailable(e))?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound {
            field: "tournament".into(),
            message: format!("'{tournament}' is not a lottery"),
        })
}
