//! Who is calling: a request's API key, as extractors, so no handler authenticates by hand.
//!
//! - [`ReadKey`]: a read-only or a full key in `X-Api-Key`.
//! - [`FullKey`]: a full key in `X-Api-Key` (writes, and the reads Healthchecks keeps from
//!   read-only keys: pings, channels).
//! - [`FullKeyJson`]: a full key in `X-Api-Key` or, as Healthchecks allows for writes,
//!   `api_key` in the JSON body, which it parses first (a bad body is a 400 before a 401).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use keepwatch_store::ApiKeyScope;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// Who acts through the API, for logs: "api", or "api key <name>" for a named key, with the
/// name a client gives in `X-Keepwatch-User` (the CLI sends `--as` or the user's login).
pub fn acting_as(scope: &ApiKeyScope, headers: &HeaderMap) -> String {
    let key = if scope.key_name.is_empty() {
        "api".to_string()
    } else {
        format!("api key {}", scope.key_name)
    };
    match headers
        .get("x-keepwatch-user")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100)
    {
        Some(user) => format!("{key} ({user})"),
        None => key,
    }
}

/// A project's key, read-only or full.
pub struct ReadKey(pub ApiKeyScope);

/// A project's full key.
pub struct FullKey(pub ApiKeyScope);

/// A project's full key, from the header or the JSON body, and the body (`None` if empty).
pub struct FullKeyJson {
    pub scope: ApiKeyScope,
    pub body: Option<Value>,
}

impl FromRequestParts<AppState> for ReadKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(state, &parts.headers, None, false)
            .await
            .map(ReadKey)
    }
}

impl FromRequestParts<AppState> for FullKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(state, &parts.headers, None, true)
            .await
            .map(FullKey)
    }
}

impl FromRequest<AppState> for FullKeyJson {
    /// A body over the limit keeps axum's own answer (413).
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let body = json_body(&bytes).map_err(IntoResponse::into_response)?;
        let scope = authorize(state, &headers, body.as_ref(), true)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(FullKeyJson { scope, body })
    }
}

/// Reads the request body as JSON (empty means none). Healthchecks checks this before the key.
fn json_body(body: &Bytes) -> Result<Option<Value>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::BadRequest("could not parse request body".into()))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "json validation error: value is not an object".into(),
        ));
    }
    // Text columns on PostgreSQL cannot hold a NUL: refused here for every body (checks,
    // channels, pause), naming the field, rather than failing the write with a 503.
    if let Some(at) = crate::api::check_spec::nul_path(&value) {
        return Err(ApiError::BadRequest(format!(
            "json validation error: {} contains a NUL character",
            at.trim_start_matches('.')
        )));
    }
    Ok(Some(value))
}

/// Authenticates a request: `X-Api-Key`, or for writes `api_key` in the JSON body.
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    body: Option<&Value>,
    full: bool,
) -> Result<ApiKeyScope, ApiError> {
    let key = match headers.get("x-api-key") {
        Some(v) => v.to_str().unwrap_or_default().to_string(),
        None if full => body
            .and_then(|b| b.get("api_key"))
            .map(|k| {
                k.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| k.to_string())
            })
            .unwrap_or_default(),
        None => String::new(),
    };
    if key.len() != 32 {
        return Err(ApiError::Unauthorized("missing api key"));
    }
    match state.store.api_key_scope(&key).await? {
        Some(scope) if !(full && scope.read_only) => Ok(scope),
        _ => Err(ApiError::Unauthorized("wrong api key")),
    }
}
