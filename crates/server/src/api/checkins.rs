//! Shift check-ins (`/api/v1/checkins/`): a project's recent check-ins, and acknowledging
//! one with an API key, as `keepwatch checkin` does (the check-in's signed link acknowledges
//! it too, through [`crate::links`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use keepwatch_store::{CheckinRow, Timestamp};
use serde_json::{Value, json};

use crate::auth::{FullKey, ReadKey, acting_as};
use crate::error::ApiError;
use crate::state::AppState;

fn time(at: Timestamp) -> String {
    at.to_datetime()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn checkin_json(row: &CheckinRow) -> Value {
    json!({
        "id": row.id,
        "schedule": row.schedule,
        "person": row.person,
        "shift_start": time(row.shift_start),
        "shift_end": time(row.shift_end),
        "due_at": time(row.due_at),
        "state": row.state,
        "told_if_missed": serde_json::from_str::<Value>(&row.told).unwrap_or(Value::Null),
        "acknowledged_at": row.acknowledged_at.map(time),
        "acknowledged_by": row.acknowledged_by,
    })
}

/// `GET /api/v1/checkins/`: the project's last 100 check-ins, newest first.
pub async fn list(
    State(state): State<AppState>,
    ReadKey(scope): ReadKey,
) -> Result<Json<Value>, ApiError> {
    let rows = state.store.checkins(scope.project_id, 100).await?;
    Ok(Json(
        json!({ "checkins": rows.iter().map(checkin_json).collect::<Vec<_>>() }),
    ))
}

/// `POST /api/v1/checkins/{id}/ack`: acknowledges a check-in (late, if it was missed).
pub async fn acknowledge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKey(scope): FullKey,
) -> Result<Json<Value>, ApiError> {
    let missing = || ApiError::Missing(format!("no check-in with id `{id}`"));
    let number: i64 = id.parse().map_err(|_| missing())?;
    match state.store.checkin(number).await? {
        Some(row) if row.project_id == scope.project_id => {}
        Some(_) => return Err(ApiError::Forbidden),
        None => return Err(missing()),
    }
    let row = state
        .engine
        .acknowledge_checkin(number, &acting_as(&scope, &headers))
        .await?
        .ok_or_else(missing)?;
    Ok(Json(checkin_json(&row)))
}
