//! The alerts API (`/api/v1/alerts/`): list, show, acknowledge, resolve and add notes to a
//! project's alerts with an API key, as `keepwatch alert` does. Alerts are opened by the engine (from
//! check events) and by [`super::events`] (the events API and Alertmanager); notifications'
//! signed links act on them through [`crate::links`]; all three change an alert through
//! [`apply`] here.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use keepwatch_engine::channels::gather;
use keepwatch_store::{AlertRow, ApiKeyScope, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{FullKey, FullKeyJson, ReadKey, acting_as};
use crate::error::ApiError;
use crate::state::AppState;

fn alert_json(alert: &AlertRow) -> Value {
    let time = |at: Option<Timestamp>| {
        at.map(|at| {
            at.to_datetime()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    };
    json!({
        "id": alert.id,
        "service": alert.service,
        "dedup_key": alert.dedup_key,
        "summary": alert.summary,
        "source": alert.source,
        "status": alert.status,
        "urgency": alert.urgency,
        "raised_at": time(alert.raised_at),
        "details": serde_json::from_str::<Value>(&alert.details).unwrap_or(Value::Null),
        "triggered_at": time(Some(alert.triggered_at)),
        "acknowledged_at": time(alert.acknowledged_at),
        "resolved_at": time(alert.resolved_at),
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
    ReadKey(scope): ReadKey,
) -> Result<Json<Value>, ApiError> {
    let status = query.status.as_deref();
    if !matches!(
        status,
        None | Some("all" | "open" | "triggered" | "acknowledged" | "resolved")
    ) {
        return Err(ApiError::BadRequest(
            "status must be all, open, triggered, acknowledged or resolved".into(),
        ));
    }
    let alerts = state
        .store
        .list_alerts(scope.project_id, status, 500)
        .await?;
    let mut body = json!({ "alerts": alerts.iter().map(alert_json).collect::<Vec<_>>() });
    if scope.read_only {
        crate::redact::json(&mut body);
    }
    Ok(Json(body))
}

async fn own_alert(state: &AppState, project_id: i64, id: &str) -> Result<AlertRow, ApiError> {
    // keepwatch's own API answers JSON, not the HTML 404 of Healthchecks' check routes.
    let missing = || ApiError::Missing(format!("no alert with id `{id}`"));
    let number: i64 = id.parse().map_err(|_| missing())?;
    match state.store.alert(number).await? {
        Some(alert) if alert.project_id == project_id => Ok(alert),
        Some(_) => Err(ApiError::Forbidden),
        None => Err(missing()),
    }
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ReadKey(scope): ReadKey,
) -> Result<Json<Value>, ApiError> {
    let alert = own_alert(&state, scope.project_id, &id).await?;
    let log = state.store.alert_log(alert.id).await?;
    let mut body = alert_json(&alert);
    // Why, in the words every page of it uses, and what each page said.
    let explained = gather::alert(&state.store, &alert, state.engine.now()).await?;
    body["check"] = json!(explained.check);
    body["sentence"] = json!(explained.sentence());
    body["evidence"] = json!(explained.evidence);
    body["outlook"] = json!(explained.outlook);
    let messages = state.store.alert_messages(alert.id).await?;
    body["messages"] = json!(
        messages
            .iter()
            .map(|m| json!({
                "id": m.id,
                "person": m.person,
                "contact": m.contact,
                "address": m.address,
                "urgency": m.urgency,
                "state": m.state,
                "attempts": m.attempts,
                "sent_at": m.sent_at.map(|at| at.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                "last_error": m.last_error,
                "text": m.text,
            }))
            .collect::<Vec<_>>()
    );
    body["log"] = json!(
        log.iter()
            .map(|entry| json!({
                "at": entry.at.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "kind": entry.kind,
                "who": entry.who,
                "detail": entry.detail,
            }))
            .collect::<Vec<_>>()
    );
    if scope.read_only {
        crate::redact::json(&mut body);
    }
    Ok(Json(body))
}

pub async fn acknowledge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKey(scope): FullKey,
) -> Result<Json<Value>, ApiError> {
    act(&state, &headers, &id, "ack", &scope).await
}

pub async fn resolve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKey(scope): FullKey,
) -> Result<Json<Value>, ApiError> {
    act(&state, &headers, &id, "resolve", &scope).await
}

async fn act(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    action: &str,
    scope: &ApiKeyScope,
) -> Result<Json<Value>, ApiError> {
    let alert = own_alert(state, scope.project_id, id).await?;
    let alert = apply(state, alert.id, action, &acting_as(scope, headers)).await?;
    Ok(Json(alert_json(&alert)))
}

/// The longest note an alert takes, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;

/// A note's text, or why it is refused.
pub(crate) fn note_text(text: Option<&str>) -> Result<&str, ApiError> {
    let text = text.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::BadRequest(
            "the body must be {\"text\": \"<the note>\"} with a text that is not empty".into(),
        ));
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "a note is at most {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok(text)
}

/// `POST /api/v1/alerts/<id>/notes` with `{"text": "…"}`: adds a note to the alert's log.
pub async fn note(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKeyJson { scope, body }: FullKeyJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let alert = own_alert(&state, scope.project_id, &id).await?;
    let text = note_text(body.as_ref().and_then(|b| b["text"].as_str()))?;
    let alert = state
        .engine
        .note(alert.id, &acting_as(&scope, &headers), text)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((StatusCode::CREATED, Json(alert_json(&alert))))
}

/// Acknowledges (`action` "ack") or resolves an alert in `who`'s name; `NotFound` if it is
/// gone.
pub(crate) async fn apply(
    state: &AppState,
    id: i64,
    action: &str,
    who: &str,
) -> Result<AlertRow, ApiError> {
    let alert = match action {
        "ack" => state.engine.acknowledge(id, who).await?,
        _ => state.engine.resolve(id, who).await?,
    };
    alert.ok_or(ApiError::NotFound)
}
