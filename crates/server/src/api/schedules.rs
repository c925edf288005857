//! The schedules of the applied on-call configuration (`/api/v1/schedules/`): each as the
//! file defines it, with who is on call now and until when, and one schedule's shifts over a
//! range. Computing shifts of a large file is CPU work: it runs through
//! [`super::oncall::off_runtime`], off the async workers.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use keepwatch_core::oncall::OnCallSchedule;
use serde::Deserialize;
use serde_json::{Value, json};

use super::oncall::off_runtime;
use super::oncall_config::{answer, entry, json_of, parsed, section, stored};
use crate::auth::ReadKey;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ShiftsQuery {
    from: Option<String>,
    to: Option<String>,
}

fn time(text: &Option<String>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.to_utc())
                .map_err(|_| ApiError::BadRequest(format!("{name}: `{t}` is not an RFC 3339 time")))
        })
        .transpose()
}

/// Who is on call at `now`, until when, and who is next.
fn on_call(schedule: &OnCallSchedule, now: DateTime<Utc>) -> Value {
    let handover = schedule.handover(now);
    json!({
        "users": handover.users,
        "until": handover.until.to_rfc3339(),
        "next": handover.next,
    })
}

/// `GET /api/v1/schedules/`: every schedule, with who is on call now and until when.
pub async fn schedules(
    State(state): State<AppState>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let applied = stored(&state, scope.project_id).await?;
    json_of(&applied)?;
    parsed(&applied)?;
    let now = state.engine.now();
    let schedules = off_runtime(move || {
        let (Ok(config), Ok(parsed)) = (&applied.json, &applied.config) else {
            return Vec::new();
        };
        section(config, "schedules")
            .into_iter()
            .map(|mut s| {
                let name = s["name"].as_str().unwrap_or_default().to_string();
                if let Some(schedule) = parsed.schedules.get(&name) {
                    s["oncall"] = on_call(schedule, now);
                }
                s
            })
            .collect::<Vec<Value>>()
    })
    .await?;
    Ok(answer(&scope, json!({ "schedules": schedules })))
}

/// `GET /api/v1/schedules/{name}?from=&to=`: the schedule, who is on call now, and every
/// shift from `from` (default now) to `to` (default a week later; at most 366 days).
pub async fn schedule(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ShiftsQuery>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let from = time(&query.from, "from")?;
    let to = time(&query.to, "to")?;
    let applied = stored(&state, scope.project_id).await?;
    let mut body = entry(json_of(&applied)?, "schedules", "name", &name)?;
    if !parsed(&applied)?.schedules.contains_key(&name) {
        return Err(ApiError::Missing(format!(
            "no schedules entry with name `{name}`"
        )));
    }
    let now = state.engine.now();
    let from = from.unwrap_or(now);
    let to = to.unwrap_or(from + TimeDelta::days(7));
    if to <= from || to - from > TimeDelta::days(366) {
        return Err(ApiError::BadRequest(
            "to: must be after from, and at most 366 days later".into(),
        ));
    }
    let (oncall, shifts) = off_runtime(move || {
        let Some(schedule) = applied
            .config
            .as_ref()
            .ok()
            .and_then(|c| c.schedules.get(&name))
        else {
            return (Value::Null, Value::Null);
        };
        let shifts = schedule
            .shifts(from, to)
            .into_iter()
            .map(|s| json!({"start": s.start.to_rfc3339(), "end": s.end.to_rfc3339(), "users": s.users}))
            .collect();
        (on_call(schedule, now), shifts)
    })
    .await?;
    body["oncall"] = oncall;
    body["shifts"] = shifts;
    Ok(answer(&scope, body))
}
