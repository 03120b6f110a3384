//! The API, one module per area. Each exports `router()`.

pub mod admin;
pub mod arenas;
pub mod events;
pub mod live;
pub mod media;
pub mod ops;
pub mod page;
pub mod polls;
pub mod reads;
pub mod tournaments;

use crate::config::IngestConfig;
use crate::extract::BodyLimit;
use crate::server::AppState;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Every route, each registered with its OpenAPI description.
pub fn router(config: &IngestConfig) -> OpenApiRouter<AppState> {
    let single = config.body_limit_bytes;
    OpenApiRouter::with_openapi(crate::api_doc::ApiDoc::openapi())
        .merge(with_limit(polls::router(), single))
        .merge(with_limit(arenas::router(), single))
        .merge(with_limit(tournaments::router(), single))
        .merge(with_limit(events::router(), config.batch_body_limit_bytes))
        .merge(with_limit(admin::router(), config.admin_body_limit_bytes))
        .merge(with_limit(media::router(), config.media_body_limit_bytes))
        .merge(reads::router())
        .merge(live::router())
        .merge(page::router())
        .merge(ops::router())
}

fn with_limit(router: OpenApiRouter<AppState>, limit: usize) -> OpenApiRouter<AppState> {
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)))
}
