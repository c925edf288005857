//! On-call over HTTP, from the configuration `keepwatch apply` stored: calendar feeds at
//! unguessable URLs (`/ical/<token>.ics`, no API key, as calendar apps subscribe) and
//! `GET /api/v1/oncall/` (who is on call, until when, who is next).

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use chrono::{DateTime, TimeDelta, Utc};
use keepwatch_core::oncall::Shift;
use keepwatch_core::oncall::config::OnCall;
use keepwatch_store::{AppliedOnCall, FeedRow};
use serde::Deserialize;
use serde_json::{Value, json};

use super::oncall_config::{config, parsed};
use crate::auth::ReadKey;
use crate::error::ApiError;
use crate::state::AppState;

/// At most this many CPU-heavy on-call computations (shifts and handovers over a large file)
/// run at once, each on the blocking pool: the async workers stay free for pings and the
/// rest of the API, and a burst of such requests queues instead of taking every core.
static HEAVY: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `work` off the async workers, within [`HEAVY`]'s bound.
pub(crate) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = HEAVY
        .acquire()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Unavailable(format!("on-call computation failed: {e}")))
}

/// `GET /ical/<token>.ics`: the shifts of a schedule or a person from 7 days ago to 90 days
/// ahead.
pub async fn feed(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    let token = file.strip_suffix(".ics").unwrap_or(&file);
    let row = match state.store.feed_by_token(token).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let applied = match config(&state, row.project_id).await {
        Ok(Some(applied)) => applied,
        Ok(None) => return not_found(),
        Err(e) => return e.into_response(),
    };
    let now = state.engine.now();
    match off_runtime(move || feed_body(&applied, &row, now)).await {
        Ok(Some(body)) => (
            [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
            body,
        )
            .into_response(),
        Ok(None) => not_found(),
        Err(e) => e.into_response(),
    }
}

/// The iCalendar text of a feed, `None` if what it names is gone.
fn feed_body(applied: &AppliedOnCall, row: &FeedRow, now: DateTime<Utc>) -> Option<String> {
    let config = applied.config.as_ref().ok()?;
    let (from, to) = (now - TimeDelta::days(7), now + TimeDelta::days(90));
    // A schedule's feed names who is on call; a person's names the schedule.
    let (title, shifts): (String, Vec<Shift>) = match row.kind.as_str() {
        "schedule" => {
            let schedule = config.schedules.get(&row.name)?;
            (format!("On call: {}", row.name), schedule.shifts(from, to))
        }
        "person" => {
            if !config.people.contains_key(&row.name) {
                return None;
            }
            let mut shifts: Vec<Shift> = config
                .schedules
                .iter()
                .flat_map(|(name, schedule)| {
                    schedule
                        .shifts_of(&row.name, from, to)
                        .into_iter()
                        .map(|s| Shift {
                            users: vec![name.clone()],
                            ..s
                        })
                })
                .collect();
            shifts.sort_by(|a, b| (a.start, &a.users).cmp(&(b.start, &b.users)));
            (format!("On call: {}", row.name), shifts)
        }
        // Integration keys share the token table; they are not feeds.
        _ => return None,
    };
    let person = row.kind != "schedule";
    let body = keepwatch_core::oncall::ical::feed(
        &title,
        &format!("{}-{}", row.kind, row.name),
        &shifts,
        |s| {
            if person {
                format!("On call: {}", s.users.join(", "))
            } else {
                s.users.join(", ")
            }
        },
        now,
    );
    Some(body)
}

#[derive(Deserialize)]
pub struct OnCallQuery {
    schedule: Option<String>,
    at: Option<String>,
}

/// `GET /api/v1/oncall/?schedule=<name>&at=<RFC 3339>`.
pub async fn who(
    State(state): State<AppState>,
    Query(query): Query<OnCallQuery>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let at = match &query.at {
        None => state.engine.now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .map_err(|_| ApiError::BadRequest(format!("at `{text}` is not an RFC 3339 time")))?,
    };
    let Some(applied) = config(&state, scope.project_id).await? else {
        return Ok(axum::Json(json!({ "oncall": [] })).into_response());
    };
    if let Some(only) = &query.schedule
        && !parsed(&applied)?.schedules.contains_key(only)
    {
        return Err(ApiError::BadRequest(format!("no schedule `{only}`")));
    }
    let feeds = state.store.feeds(scope.project_id).await?;
    let site = state.config.site_url.clone();
    let only = query.schedule;
    let entries = off_runtime(move || {
        let Ok(config) = applied.config.as_ref() else {
            return Vec::new();
        };
        let mut names: Vec<&String> = config.schedules.keys().collect();
        names.sort();
        if let Some(only) = &only {
            names.retain(|n| *n == only);
        }
        handovers(config, &names, &feeds, &site, at)
    })
    .await?;
    let mut body = json!({ "oncall": entries });
    if scope.read_only {
        // The feed URL's token reads the schedule without a key.
        crate::redact::json(&mut body);
    }
    Ok(axum::Json(body).into_response())
}

/// Who is on call in each named schedule at `at`, with the schedule's feed URL.
fn handovers(
    config: &OnCall,
    names: &[&String],
    feeds: &[FeedRow],
    site: &str,
    at: DateTime<Utc>,
) -> Vec<Value> {
    names
        .iter()
        .map(|name| {
            let name = *name;
            let handover = config.schedules[name].handover(at);
            let ical = feeds
                .iter()
                .find(|f| f.kind == "schedule" && &f.name == name)
                .map(|f| format!("{site}/ical/{}.ics", f.token));
            json!({
                "schedule": name,
                "users": handover.users,
                "until": handover.until.to_rfc3339(),
                "next": handover.next,
                "ical_url": ical,
            })
        })
        .collect()
}
