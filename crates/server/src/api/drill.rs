//! `GET /api/v1/drill`: a drill or a week sweep over the project's applied on-call
//! configuration, for a service or a check (by UUID or slug) routed as the engine routes it.
//! The computation is [`keepwatch_core::alert::drill`], over [`routing::timeline`], which the
//! pager records from.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use keepwatch_core::alert::drill::{self, Event, Options, Subject};
use keepwatch_core::alert::routing;
use keepwatch_core::oncall::config::OnCall;
use keepwatch_engine::live_drill::LiveDrill;
use keepwatch_store::{AppliedOnCall, CheckRow};
use serde::Deserialize;
use serde_json::{Value, json};

use super::oncall::off_runtime;
use super::oncall_config::{answer, config, parsed};
use crate::auth::{FullKey, ReadKey, acting_as};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct DrillQuery {
    pub(crate) service: Option<String>,
    pub(crate) check: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) at: Option<String>,
    pub(crate) ack_after_minutes: Option<i64>,
    pub(crate) horizon_minutes: Option<i64>,
    /// `week`: a week sweep from `at`.
    pub(crate) sweep: Option<String>,
    pub(crate) step_minutes: Option<i64>,
    pub(crate) fail_if_no_high_within_minutes: Option<i64>,
    pub(crate) fail_if_no_page_within_minutes: Option<i64>,
}

/// The longest a drill follows an alert: 31 days.
const MAX_HORIZON_MINUTES: i64 = 31 * 1440;

/// What a drill request asks, checked: a precise 400 for each mistake.
pub struct Asked {
    pub options: Options,
    pub event: Event,
    pub high: Option<TimeDelta>,
    pub page: Option<TimeDelta>,
}

fn minutes(name: &str, value: Option<i64>, min: i64) -> Result<Option<TimeDelta>, ApiError> {
    match value {
        None => Ok(None),
        Some(m) if (min..=MAX_HORIZON_MINUTES).contains(&m) => Ok(Some(TimeDelta::minutes(m))),
        Some(m) => Err(ApiError::BadRequest(format!(
            "{name}: {m} is out of range ({min} to {MAX_HORIZON_MINUTES})"
        ))),
    }
}

fn asked(query: &DrillQuery, now: DateTime<Utc>) -> Result<Asked, ApiError> {
    let at = match &query.at {
        None => now,
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .map_err(|_| ApiError::BadRequest(format!("at: `{text}` is not an RFC 3339 time")))?,
    };
    let event = match query.event.as_deref() {
        None => Event::Down,
        Some(text) => Event::parse(text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "event: `{text}` is not down, failed, hung, overlap or anomaly"
            ))
        })?,
    };
    let sweep = match query.sweep.as_deref() {
        None => None,
        Some("week") => {
            let step =
                minutes("step_minutes", query.step_minutes, 1)?.unwrap_or(TimeDelta::hours(1));
            Some((TimeDelta::days(7), step))
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "sweep: `{other}` is not `week`"
            )));
        }
    };
    Ok(Asked {
        options: Options {
            at,
            ack_after: minutes("ack_after_minutes", query.ack_after_minutes, 0)?,
            horizon: minutes("horizon_minutes", query.horizon_minutes, 1)?
                .unwrap_or(TimeDelta::days(1)),
            sweep,
        },
        event,
        high: minutes(
            "fail_if_no_high_within_minutes",
            query.fail_if_no_high_within_minutes,
            0,
        )?,
        page: minutes(
            "fail_if_no_page_within_minutes",
            query.fail_if_no_page_within_minutes,
            0,
        )?,
    })
}

/// `GET /api/v1/drill?service=…|check=<uuid|slug>&at=…[&event=…][&ack_after_minutes=…]
/// [&horizon_minutes=…][&sweep=week[&step_minutes=…]][&fail_if_no_high_within_minutes=…]`:
/// the drill's report (or the sweep), plus `failures` for the thresholds given.
pub async fn drill(
    State(state): State<AppState>,
    Query(query): Query<DrillQuery>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let (outcome, failures) = compute(&state, scope.project_id, &query).await?;
    let mut body = serde_json::to_value(&outcome).unwrap_or_default();
    body["failures"] = json!(failures);
    Ok(answer(&scope, body))
}

/// Runs the drill (or sweep) a query asks for on the project's applied configuration: the
/// outcome and the `--fail-if-…` conditions it breaks (the API and the web UI's drill page).
pub(crate) async fn compute(
    state: &AppState,
    project_id: i64,
    query: &DrillQuery,
) -> Result<(drill::Outcome, Vec<String>), ApiError> {
    let asked = asked(query, state.engine.now())?;
    let applied = config(state, project_id).await?;
    let subject = subject(state, project_id, query, &applied, asked.event).await?;
    let options = asked.options;
    let (high, page) = (asked.high, asked.page);
    let held_back = match &query.check {
        Some(code) => held_back(state, &find(state, project_id, code).await?).await?,
        None => None,
    };
    off_runtime(move || {
        let config: Option<&OnCall> = applied.as_deref().and_then(|a| a.config.as_ref().ok());
        let mut outcome = drill::run(config, &subject, &options);
        if let drill::Outcome::Drill(report) = &mut outcome {
            report.held_back = held_back;
        }
        let failures = drill::failures(&outcome, high, page);
        (outcome, failures)
    })
    .await
}

/// Why a check's alert would be held back now: a check it depends on is down (the
/// engine's live state), as the alert log would say it.
async fn held_back(state: &AppState, row: &CheckRow) -> Result<Option<String>, ApiError> {
    let deps: Vec<String> = serde_json::from_str(&row.depends_on).unwrap_or_default();
    for dep in deps {
        let Some(dep_row) = state.store.check_by_uuid(&dep).await? else {
            continue;
        };
        if dep_row.project_id != row.project_id {
            continue;
        }
        let view = crate::api::checks::live_states(state, std::slice::from_ref(&dep_row))
            .await?
            .remove(0);
        if view.state.status != keepwatch_core::check::Status::Down {
            continue;
        }
        let since = view
            .rules
            .clone()
            .or_else(|| {
                keepwatch_engine::live::rules_from_row(&dep_row)
                    .ok()
                    .map(Arc::new)
            })
            .and_then(|rules| view.state.down_since(&rules));
        let uuid = uuid::Uuid::parse_str(&dep_row.uuid).unwrap_or_default();
        let name = if dep_row.name.is_empty() {
            &dep_row.uuid
        } else {
            &dep_row.name
        };
        let why = keepwatch_core::check::Suppression::new(uuid, name, since);
        return Ok(Some(why.reason));
    }
    Ok(None)
}

/// What is drilled: a check (by UUID or slug, routed as the engine routes it) or a service of
/// the applied configuration.
async fn subject(
    state: &AppState,
    project_id: i64,
    query: &DrillQuery,
    applied: &Option<Arc<AppliedOnCall>>,
    event: Event,
) -> Result<Subject, ApiError> {
    Ok(match (&query.check, &query.service) {
        (Some(code), _) => {
            let row = find(state, project_id, code).await?;
            let own = row.service.clone().or_else(|| query.service.clone());
            let config = match applied {
                Some(applied) => Some(parsed(applied)?),
                None => None,
            };
            let rules = keepwatch_engine::live::rules_from_row(&row).ok();
            Subject {
                service: routing::service_for(config, &row.uuid, own.as_deref()),
                check: Some(row.uuid.clone()),
                schedule: rules
                    .map(|r| (r.schedule, TimeDelta::from_std(r.grace).unwrap_or_default())),
                event,
            }
        }
        (None, Some(service)) => {
            let known = match applied {
                Some(applied) => parsed(applied)?.services.contains_key(service),
                None => false,
            };
            if !known {
                return Err(ApiError::BadRequest(format!(
                    "service: no service `{service}` in the applied on-call configuration"
                )));
            }
            Subject {
                service: service.clone(),
                check: None,
                schedule: None,
                event,
            }
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "give service=<name> or check=<uuid|slug>".into(),
            ));
        }
    })
}

/// A live drill as the API answers it: the drill, and its report as text.
fn live_json(drill: &LiveDrill) -> Value {
    let mut body = serde_json::to_value(drill).unwrap_or_default();
    body["text"] = json!(drill.text());
    body
}

/// `POST /api/v1/drill/live?service=…|check=<uuid|slug>[&event=…][&horizon_minutes=…]` (a
/// full-access key: it notifies people for real): starts a live drill now; 201 with the
/// drill as planned (`id`, `notices`, `text`).
pub async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<DrillQuery>,
    FullKey(scope): FullKey,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if query.at.is_some() || query.sweep.is_some() || query.ack_after_minutes.is_some() {
        return Err(ApiError::BadRequest(
            "a live drill starts now and is acknowledged by people: at, sweep and \
             ack_after_minutes do not apply"
                .into(),
        ));
    }
    let asked = asked(&query, state.engine.now())?;
    let applied = config(&state, scope.project_id).await?;
    let subject = subject(&state, scope.project_id, &query, &applied, asked.event).await?;
    let Some(applied) = applied else {
        return Err(ApiError::BadRequest(
            "no on-call configuration is applied: a live drill has nobody to notify".into(),
        ));
    };
    let config = parsed(&applied)?;
    let drill = state.engine.start_live_drill(
        scope.project_id,
        config,
        &subject,
        asked.options.horizon,
        &acting_as(&scope, &headers),
    );
    Ok((StatusCode::CREATED, Json(live_json(&drill))))
}

fn own_drill(state: &AppState, project_id: i64, id: &str) -> Result<LiveDrill, ApiError> {
    let missing = || {
        ApiError::Missing(format!(
            "no live drill with id `{id}` (live drills are kept until the server restarts)"
        ))
    };
    let number: i64 = id.parse().map_err(|_| missing())?;
    match state.engine.live_drill(number) {
        Some(drill) if drill.project_id == project_id => Ok(drill),
        Some(_) => Err(ApiError::Forbidden),
        None => Err(missing()),
    }
}

/// `GET /api/v1/drill/live/{id}`: the live drill and how it went.
pub async fn live_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ReadKey(scope): ReadKey,
) -> Result<Json<Value>, ApiError> {
    let drill = own_drill(&state, scope.project_id, &id)?;
    Ok(Json(live_json(&drill)))
}

/// `POST /api/v1/drill/live/{id}/ack`: acknowledges the live drill (the first
/// acknowledgment counts), as its link does.
pub async fn live_ack(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKey(scope): FullKey,
) -> Result<Json<Value>, ApiError> {
    let drill = own_drill(&state, scope.project_id, &id)?;
    let drill = state
        .engine
        .acknowledge_drill(drill.id, &acting_as(&scope, &headers))
        .ok_or(ApiError::Forbidden)?;
    Ok(Json(live_json(&drill)))
}

/// The project's check with this UUID or slug (a slug must name exactly one).
async fn find(
    state: &AppState,
    project_id: i64,
    code: &str,
) -> Result<keepwatch_store::CheckRow, ApiError> {
    if uuid::Uuid::parse_str(code).is_ok() {
        return match state
            .store
            .check_by_uuid(&code.to_ascii_lowercase())
            .await?
        {
            Some(row) if row.project_id == project_id => Ok(row),
            _ => Err(ApiError::BadRequest(format!(
                "check: no check `{code}` in this project"
            ))),
        };
    }
    // PostgreSQL refuses NUL in text, and no slug holds one.
    if code.contains('\0') {
        return Err(ApiError::BadRequest(
            "check: a slug or UUID cannot contain a NUL character".into(),
        ));
    }
    let mut rows = state.store.checks_by_slug(project_id, code).await?;
    match rows.len() {
        1 => Ok(rows.remove(0)),
        0 => Err(ApiError::BadRequest(format!(
            "check: no check with UUID or slug `{code}` in this project"
        ))),
        n => Err(ApiError::BadRequest(format!(
            "check: {n} checks have the slug `{code}`: give the UUID"
        ))),
    }
}
