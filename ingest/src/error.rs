//! The one HTTP error type. Every error answers `{"error": {"code", "message", "field"}}`;
//! internal details are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tally_schema::api::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A body or header that is not valid: 400 (malformed) or 422 (bad value).
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("no such resource")]
    NotFound { field: String, message: String },
    /// JetStream did not take the event in time: the client should retry.
    #[error("unavailable: {reason}")]
    Unavailable {
        reason: &'static str,
        retry_after_secs: u64,
    },
}

/// The JSON error body, shared by every route and by per-item batch results.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Field(e) if e.problem == Problem::Malformed => StatusCode::BAD_REQUEST,
            ApiError::Field(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::Field(e) => ErrorBody {
                code: e.code,
                message: e.message.clone(),
                field: e.field.clone(),
            },
            ApiError::PayloadTooLarge { limit } => ErrorBody {
                code: "payload_too_large",
                message: format!("the body must be at most {limit} bytes"),
                field: String::new(),
            },
            ApiError::UnsupportedMediaType => ErrorBody {
                code: "unsupported_media_type",
                message: "send the body as Content-Type: application/json".into(),
                field: String::new(),
            },
            ApiError::NotFound { field, message } => ErrorBody {
                code: "not_found",
                message: message.clone(),
                field: field.clone(),
            },
            ApiError::Unavailable { reason, .. } => ErrorBody {
                code: "unavailable",
                message: format!("the event was not stored ({reason}); retry later"),
                field: String::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = self.body();
        metrics::counter!("tally_ingest_rejections_total", "reason" => body.code).increment(1);
        let mut response = (status, Json(serde_json::json!({ "error": body }))).into_response();
        if let ApiError::Unavailable {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}
