//! Image uploads: `POST /v1/tournaments/{tournament}/media?user=…` with a JPEG, PNG or WebP
//! body. The type is read from the bytes and must agree with `Content-Type`; the tournament's
//! rules and the per-user limit are checked before anything is stored; the original goes to
//! JetStream's object store, then a media-uploaded event goes on the stream.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ClientIp, Path, scope};
use crate::media::{ACCEPTED, original_key, sniff};
use crate::server::AppState;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashMap;
use tally_schema::Event;
use tally_schema::api::{FieldError, MediaAnswer};
use tally_schema::event::MediaUploaded;
use tally_schema::ids::{MediaId, TournamentId, UserId};
use tally_schema::status::MediaStatus;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload, gallery))
        .routes(routes!(status))
        .routes(routes!(variant))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Uploader {
    /// Who uploads (the per-user limit counts by it).
    #[param(value_type = UserId, required = true)]
    user: Option<String>,
}

fn invalid(code: &'static str, field: &str, message: impl Into<String>) -> ApiError {
    FieldError::invalid(code, field, message).into()
}

/// Stores an image and announces it; thumbnails follow as a job.
#[utoipa::path(post, path = "/v1/tournaments/{tournament}/media", tag = "events",
    params(("tournament" = TournamentId, Path), Uploader),
    request_body(content = Vec<u8>, content_type = "image/jpeg",
        description = "A JPEG, PNG or WebP image (Content-Type must match the bytes)"),
    responses(crate::api_doc::WriteResponses))]
async fn upload(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    query: Result<Query<Uploader>, axum::extract::rejection::QueryRejection>,
    client: ClientIp,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    let limit = state.config.media_body_limit_bytes;
    let Query(uploader) = query.map_err(|e| invalid("malformed_query", "", e.body_text()))?;
    // The uploader: the query's, or the token's subject (a tournament that requires
    // identity refuses a query naming someone else in `check`).
    let user = match (uploader.user, &principal) {
        (Some(user), _) => user,
        (None, Principal::User(u)) => u.id.to_string(),
        (None, _) => {
            return Err(invalid(
                "missing_field",
                "user",
                "name the uploader: ?user=…",
            ));
        }
    };
    let user =
        UserId::try_from(user).map_err(|e| invalid("invalid_value", "user", e.to_string()))?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| ACCEPTED.contains(&v.as_str()))
        .ok_or(ApiError::UnsupportedMediaType)?;
    // A declared length past the limit is refused before a byte of the body is read.
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let media = MediaId::try_from(uuid::Uuid::now_v7().to_string()).expect("a uuid is a valid id");
    let uploaded = MediaUploaded {
        tournament,
        media: media.clone(),
        object_key: original_key(media.as_str()),
        content_type: declared.clone(),
        bytes: declared_len.unwrap_or(0),
        user: Some(user),
    };
    // Rules, identity and limits first: a refused upload is not even read.
    let Event::MediaUploaded(mut uploaded) = state
        .check(Event::MediaUploaded(uploaded), client, &principal)
        .await?
    else {
        unreachable!("check keeps the event's kind")
    };
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })?;
    if bytes.is_empty() {
        return Err(invalid("empty", "body", "the body is empty"));
    }
    let sniffed = sniff(&bytes).ok_or_else(|| {
        invalid(
            "not_an_image",
            "body",
            "the bytes are not a JPEG, PNG or WebP image",
        )
    })?;
    if sniffed != declared {
        return Err(invalid(
            "content_type_mismatch",
            "Content-Type",
            format!("the bytes are {sniffed}, not {declared}"),
        ));
    }
    // What Tally serves says nothing of where or with what it was taken.
    let bytes = tally_media::strip_metadata(&bytes)
        .map_err(|e| invalid("not_an_image", "body", e.to_string()))?;
    uploaded.content_type = sniffed.to_owned();
    uploaded.bytes = bytes.len() as u64;
    let id = uploaded.event_id();
    let tournament = uploaded.tournament.clone();
    let event = Event::MediaUploaded(uploaded);
    // The tournament's quota, counted by every instance alike, before anything is stored.
    let quota = state
        .catalog
        .snapshot()
        .tournament(tournament.as_str())?
        .media_quota_bytes
        .unwrap_or(state.config.media_quota_bytes);
    let size = bytes.len() as u64;
    let unavailable = |reason| ApiError::Unavailable {
        reason,
        retry_after_secs: state.config.retry_after_secs,
    };
    match state
        .media_quota
        .reserve(tournament.as_str(), size, quota)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::Conflict {
                code: "media_quota_exceeded",
                message: format!("the tournament's media would pass its quota of {quota} bytes"),
            });
        }
        Err(e) => {
            tally_kit::warn_once_a_second!(error = %e, "Media quota unreadable; answering 503.");
            return Err(unavailable("views_unavailable"));
        }
    }
    let meta = async_nats::jetstream::object_store::ObjectMetadata {
        name: original_key(media.as_str()),
        metadata: HashMap::from([("content-type".to_owned(), sniffed.to_owned())]),
        ..Default::default()
    };
    if let Err(e) = state.media.put(meta, &mut bytes.as_ref()).await {
        if let Err(e) = state.media_quota.release(tournament.as_str(), size).await {
            tracing::warn!(error = %e, "Could not give back the quota of a refused upload.");
        }
        // The bucket's own size cap (TALLY_MEDIA_MAX_BYTES) is the bound of last resort.
        let full = e.to_string().contains("maximum bytes");
        tally_kit::warn_once_a_second!(error = %e, "Object store refused an upload; answering 503.");
        return Err(unavailable(match full {
            true => "media_store_full",
            false => "object_store_unavailable",
        }));
    }
    let stored = state.publish(event, Some(id)).await?;
    let mut answer = crate::server::accepted_body(&stored);
    answer["media"] = media.to_string().into();
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GalleryQuery {
    /// How many uploads (1 to `TALLY_MEDIA_PAGE_MAX`, which is also the default).
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page cursor: the last upload of the page, as (received_at, media). Opaque to clients; a
/// forged one only moves where a page starts, within the tournament named by the path.
fn encode_cursor(last: &tally_schema::api::MediaView) -> String {
    use base64::Engine;
    let text = format!(
        "{}|{}",
        last.received_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        last.media
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode_cursor(cursor: &str) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, media) = text.split_once('|')?;
    let media = MediaId::try_from(media.to_owned()).ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(at).ok()?.to_utc();
    Some((at, media.to_string()))
}

/// A tournament's uploads, newest first, with their status and variant URLs; paged by
/// cursor, so uploads that arrive while a client pages never repeat or skip an entry.
#[utoipa::path(get, path = "/v1/tournaments/{tournament}/media", tag = "reads",
    params(("tournament" = TournamentId, Path), GalleryQuery),
    responses((status = 200, description = "A page of uploads", body = tally_schema::api::MediaPage),
        (status = 400, description = "A malformed query string", body = crate::api_doc::ErrorResponse),
        (status = 404, description = "No such tournament", body = crate::api_doc::ErrorResponse),
        (status = 422, description = "A bad limit or cursor", body = crate::api_doc::ErrorResponse),
        (status = 503, description = "Postgres unreachable", body = crate::api_doc::ErrorResponse)))]
#[tracing::instrument(name = "media_gallery", skip_all)]
async fn gallery(
    State(state): State<AppState>,
    Path(tournament): Path<String>,
    query: Result<Query<GalleryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<tally_schema::api::MediaPage>, ApiError> {
    let tournament: TournamentId = scope("tournament", tournament)?;
    state.catalog.snapshot().tournament(tournament.as_str())?;
    let Query(query) = query.map_err(|e| invalid("malformed_query", "", e.body_text()))?;
    let most = state.config.media_page_max.max(1);
    let limit = match query.limit {
        None => most,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=most).contains(n))
            .ok_or_else(|| {
                invalid(
                    "out_of_range",
                    "limit",
                    format!("must be a whole number from 1 to {most}"),
                )
            })?,
    };
    let after = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
            invalid(
                "invalid_value",
                "cursor",
                "not a cursor this gallery gave out",
            )
        })?),
    };
    // One more than asked tells whether another page follows.
    let mut media = crate::store::media_gallery(&state.pool, tournament.as_str(), after, limit + 1)
        .await
        .map_err(|e| state.store_unavailable(e))?;
    let more = media.len() > limit as usize;
    media.truncate(limit as usize);
    let next_cursor = media.last().filter(|_| more).map(encode_cursor);
    Ok(Json(tally_schema::api::MediaPage { media, next_cursor }))
}

/// What is known of an upload: stored (in Postgres) or just received.
#[utoipa::path(get, path = "/v1/media/{media}", tag = "reads",
    params(("media" = MediaId, Path)), responses(crate::api_doc::ReadResponses))]
async fn status(
    State(state): State<AppState>,
    Path(media): Path<String>,
) -> Result<Json<MediaAnswer>, ApiError> {
    let media: MediaId = scope("media", media)?;
    let row = crate::store::media_upload(&state.pool, media.as_str())
        .await
        .map_err(|e| state.store_unavailable(e))?;
    if let Some(view) = row {
        return Ok(Json(MediaAnswer::Known(view)));
    }
    match state.media.info(original_key(media.as_str())).await {
        Ok(info) if !info.deleted => Ok(Json(MediaAnswer::Received {
            media,
            status: MediaStatus::Received,
            bytes: info.size as u64,
        })),
        _ => Err(ApiError::NotFound {
            field: "media".into(),
            message: format!("no such media: '{media}'"),
        }),
    }
}

/// The original image or a variant (`thumb` 150×150, `medium` 800×600, `large` 1920×1080),
/// immutable once made: cached for a year. A variant still being made is `404` (see
/// `GET /v1/media/{media}`).
#[utoipa::path(get, path = "/v1/media/{media}/{variant}", tag = "reads",
    params(("media" = MediaId, Path), ("variant" = String, Path, description = "original, thumb, medium or large")),
    responses((status = 200, description = "The image", content_type = "image/jpeg", body = Vec<u8>),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such media", body = crate::api_doc::ErrorResponse)))]
async fn variant(
    State(state): State<AppState>,
    Path((media, variant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use tokio::io::AsyncReadExt;
    let media: MediaId = scope("media", media)?;
    let key =
        crate::media::object_key(media.as_str(), &variant).ok_or_else(|| ApiError::NotFound {
            field: "variant".into(),
            message: format!("variants are {}", crate::media::SERVED.join(", ")),
        })?;
    let not_found = || ApiError::NotFound {
        field: "media".into(),
        message: format!("no {variant} of media '{media}' (yet)"),
    };
    let etag = format!("\"{media}-{variant}\"");
    let mut object = state.media.get(key).await.map_err(|_| not_found())?;
    let content_type = object
        .info
        .metadata
        .get("content-type")
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut cache = HeaderMap::new();
    cache.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    cache.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("ascii etag"),
    );
    cache.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let mut bytes = Vec::with_capacity(object.info.size);
    object.read_to_end(&mut bytes).await.map_err(|e| {
        tracing::warn!(error = %e, "Reading an original failed.");
        ApiError::Unavailable {
            reason: "object_store_unavailable",
            retry_after_secs: state.config.retry_after_secs,
        }
    })?;
    cache.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    Ok((cache, bytes).into_response())
}
