//! API errors, shaped as Healthchecks shapes them: JSON `{"error": …}` where Healthchecks
//! sends JSON, empty bodies where it sends none.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Django's generic 404 page, which Healthchecks returns for ping URLs that match no route.
pub const DJANGO_NOT_FOUND: &str = "\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n";

#[derive(Debug)]
pub enum ApiError {
    /// 400 `{"error": "could not parse request body"}` and the like.
    BadRequest(String),
    /// 400 for a schedule: Healthchecks' message, plus keepwatch's precise `detail`.
    BadSchedule { error: String, detail: String },
    /// 400 with an empty body (flips filters).
    BadQuery,
    /// 401 `{"error": "missing api key"}` / `"wrong api key"`.
    Unauthorized(&'static str),
    /// 403, empty body: the check belongs to another project.
    Forbidden,
    /// 404, Django's not-found page (a check UUID that does not exist).
    NotFound,
    /// 404, empty body.
    NotFoundEmpty,
    /// 404 `{"error": …}` (keepwatch's own API).
    Missing(String),
    /// 409 `{"error": …}`.
    Conflict(&'static str),
    /// 409 `{"error": …}` with a message made for the case.
    ConflictWith(String),
    /// 413 `{"error": …}`: what was too large and the most accepted.
    TooLarge(String),
    /// 503: the database did not answer.
    Unavailable(String),
}

impl ApiError {
    /// What went wrong, in a sentence a person can act on (the web UI shows it by a form).
    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(message)
            | ApiError::Missing(message)
            | ApiError::ConflictWith(message)
            | ApiError::TooLarge(message) => message.clone(),
            ApiError::BadSchedule { detail, .. } => detail.clone(),
            ApiError::Conflict(message) | ApiError::Unauthorized(message) => message.to_string(),
            ApiError::BadQuery => "bad query".into(),
            ApiError::Forbidden => "not allowed".into(),
            ApiError::NotFound | ApiError::NotFoundEmpty => "not found".into(),
            ApiError::Unavailable(_) => "the database did not answer; try again".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let json = |status: StatusCode, body: serde_json::Value| {
            (status, axum::Json(body)).into_response()
        };
        match self {
            ApiError::BadRequest(message) => {
                json(StatusCode::BAD_REQUEST, json!({ "error": message }))
            }
            ApiError::BadSchedule { error, detail } => json(
                StatusCode::BAD_REQUEST,
                json!({ "error": error, "detail": detail }),
            ),
            ApiError::BadQuery => StatusCode::BAD_REQUEST.into_response(),
            ApiError::Unauthorized(message) => {
                json(StatusCode::UNAUTHORIZED, json!({ "error": message }))
            }
            ApiError::Forbidden => StatusCode::FORBIDDEN.into_response(),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                DJANGO_NOT_FOUND,
            )
                .into_response(),
            ApiError::NotFoundEmpty => StatusCode::NOT_FOUND.into_response(),
            ApiError::Missing(message) => json(StatusCode::NOT_FOUND, json!({ "error": message })),
            ApiError::Conflict(message) => json(StatusCode::CONFLICT, json!({ "error": message })),
            ApiError::ConflictWith(message) => {
                json(StatusCode::CONFLICT, json!({ "error": message }))
            }
            ApiError::TooLarge(message) => {
                json(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": message }))
            }
            ApiError::Unavailable(message) => {
                tracing::error!(error = %message, "API request failed");
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "storage unavailable" }),
                )
            }
        }
    }
}

impl From<keepwatch_store::StoreError> for ApiError {
    fn from(e: keepwatch_store::StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<keepwatch_engine::EngineError> for ApiError {
    fn from(e: keepwatch_engine::EngineError) -> Self {
        match e {
            keepwatch_engine::EngineError::NotFound => ApiError::NotFound,
            keepwatch_engine::EngineError::Invalid(message) => ApiError::BadRequest(message),
            keepwatch_engine::EngineError::Conflict(message) => ApiError::ConflictWith(message),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}
