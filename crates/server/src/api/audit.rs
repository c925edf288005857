//! `GET /api/v1/audit`: the audit of the project's applied on-call configuration, its checks
//! and what the store recorded ([`keepwatch_engine::audit`]); `keepwatch audit --server`
//! prints it.

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use keepwatch_core::audit::{self, Report, Settings};
use keepwatch_store::{AppliedOnCall, Store};
use serde::Deserialize;
use std::sync::Arc;

use super::oncall::off_runtime;
use super::oncall_config::{answer, nothing_applied, parsed};
use crate::auth::ReadKey;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct AuditQuery {
    /// A high-urgency page must reach someone within this many minutes (default 30).
    high_within_minutes: Option<i64>,
}

/// Settings from the query, checked.
fn settings(query: &AuditQuery) -> Result<Settings, ApiError> {
    let mut settings = Settings::default();
    if let Some(minutes) = query.high_within_minutes {
        if !(1..=7 * 1440).contains(&minutes) {
            return Err(ApiError::BadRequest(format!(
                "high_within_minutes: {minutes} is out of range (1 to {})",
                7 * 1440
            )));
        }
        settings.high_within = TimeDelta::minutes(minutes);
    }
    Ok(settings)
}

/// Audits `applied` for the project: the store's facts, then the rules off the async
/// workers (the week sweeps are CPU work).
pub async fn run(
    store: &Store,
    project_id: i64,
    applied: Arc<AppliedOnCall>,
    now: DateTime<Utc>,
    settings: Settings,
) -> Result<Report, ApiError> {
    parsed(&applied)?;
    let (checks, history) = keepwatch_engine::audit::gather(store, project_id, now).await?;
    off_runtime(move || {
        let config = applied.config.as_ref().ok()?;
        Some(audit::audit(config, &checks, &history, now, &settings))
    })
    .await?
    .ok_or_else(|| ApiError::Unavailable("stored on-call configuration does not parse".into()))
}

/// `GET /api/v1/audit[?high_within_minutes=30]`: `{at, errors, warnings, findings, accepted}`.
pub async fn audit(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let settings = settings(&query)?;
    let applied = state
        .store
        .oncall(scope.project_id)
        .await?
        .ok_or_else(nothing_applied)?;
    let report = run(
        &state.store,
        scope.project_id,
        applied,
        state.engine.now(),
        settings,
    )
    .await?;
    let body = serde_json::to_value(&report)
        .map_err(|e| ApiError::Unavailable(format!("audit report: {e}")))?;
    Ok(answer(&scope, body))
}
