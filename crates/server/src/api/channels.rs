//! Notification channels of the Management API v3: `GET /api/v3/channels/` as Healthchecks
//! lists them, and keepwatch's `POST /api/v3/channels/` that creates a webhook or email
//! channel (Healthchecks creates channels only in its web UI). Which checks notify which
//! channels is set on the check (`channels` in [`super::checks`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::{FullKey, FullKeyJson};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn list_channels(
    State(state): State<AppState>,
    FullKey(scope): FullKey,
) -> Result<Response, ApiError> {
    let channels = state.store.list_channels(scope.project_id).await?;
    let channels: Vec<Value> = channels
        .iter()
        .map(|c| json!({ "id": c.uuid, "name": c.name, "kind": c.kind }))
        .collect();
    Ok((StatusCode::OK, Json(json!({ "channels": channels }))).into_response())
}

/// keepwatch: `POST /api/v3/channels/` with `{"name", "kind": "webhook", "url", "secret"?}` or
/// `{"name", "kind": "email", "to"}`.
pub async fn create_channel(
    State(state): State<AppState>,
    FullKeyJson { scope, body }: FullKeyJson,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_else(|| json!({}));
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let name = field("name")
        .filter(|n| !n.is_empty() && n.chars().count() <= 100)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "json validation error: name is required (1-100 characters)".into(),
            )
        })?;
    let (kind, config) = match field("kind").as_deref() {
        Some("webhook") => {
            let url = field("url")
                .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "json validation error: url must be an http:// or https:// URL".into(),
                    )
                })?;
            // A secret that is not a string would leave the channel unsigned while the
            // caller believes it signs.
            let secret = match body.get("secret") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(ApiError::BadRequest(
                        "json validation error: secret is not a string".into(),
                    ));
                }
            };
            ("webhook", json!({ "url": url, "secret": secret }))
        }
        Some("email") => {
            let to = field("to").filter(|t| t.contains('@')).ok_or_else(|| {
                ApiError::BadRequest(
                    "json validation error: to must be one or more email addresses".into(),
                )
            })?;
            ("email", json!({ "to": to }))
        }
        _ => {
            return Err(ApiError::BadRequest(
                "json validation error: kind must be \"webhook\" or \"email\"".into(),
            ));
        }
    };
    let now = state.engine.now().into();
    let channel = state
        .store
        .create_channel(scope.project_id, &name, kind, &config.to_string(), now)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": channel.uuid, "name": channel.name, "kind": channel.kind })),
    )
        .into_response())
}
