//! The escalation policies and services of the applied on-call configuration
//! (`/api/v1/policies/`, `/api/v1/services/`), as the file defines them. Which service an
//! alert belongs to and who it pages is decided by the engine from the same file.

use axum::extract::{Path, State};
use axum::response::Response;
use keepwatch_store::ApiKeyScope;
use serde_json::json;

use super::oncall_config::{answer, entry, json_of, section, stored};
use crate::auth::ReadKey;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/v1/policies/` and `GET /api/v1/services/`.
async fn list(state: &AppState, scope: &ApiKeyScope, name: &str) -> Result<Response, ApiError> {
    let applied = stored(state, scope.project_id).await?;
    Ok(answer(
        scope,
        json!({ name: section(json_of(&applied)?, name) }),
    ))
}

pub async fn policies(
    State(state): State<AppState>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    list(&state, &scope, "policies").await
}

pub async fn services(
    State(state): State<AppState>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    list(&state, &scope, "services").await
}

/// `GET /api/v1/policies/{name}` and `GET /api/v1/services/{name}`.
pub async fn policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    one(&state, &scope, "policies", &name).await
}

pub async fn service(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    one(&state, &scope, "services", &name).await
}

async fn one(
    state: &AppState,
    scope: &ApiKeyScope,
    section_name: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let applied = stored(state, scope.project_id).await?;
    Ok(answer(
        scope,
        entry(json_of(&applied)?, section_name, "name", name)?,
    ))
}
