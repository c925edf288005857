//! Alerts from other systems: the events API in the shape of PagerDuty's Events API v2
//! (`/api/v1/events`, also at `/v2/enqueue`) and the Prometheus Alertmanager webhook receiver
//! (`/api/v1/alertmanager/<integration key>`). Both name a service by its integration key
//! (printed by `keepwatch apply`) and trigger, acknowledge or resolve its alerts; errors take
//! the shapes those systems' clients expect, not the Management API's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keepwatch_core::alert::AlertSource;
use keepwatch_store::AlertRow;
use keepwatch_store::NewAlert;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::alerts::apply;
use super::check_spec::nul_path;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest summary kept (PagerDuty's limit), and longest dedup key.
const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;

/// Finds the project and service an integration key belongs to.
async fn integration(state: &AppState, key: &str) -> Result<Option<(i64, String)>, ApiError> {
    Ok(match state.store.feed_by_token(key).await? {
        Some(row) if row.kind == "service" => Some((row.project_id, row.name)),
        _ => None,
    })
}

/// The open alert under `dedup_key` if it is `service`'s: an integration key acts on its own
/// service's alerts only.
async fn open_alert_of(
    state: &AppState,
    project_id: i64,
    service: &str,
    dedup_key: &str,
) -> Result<Option<AlertRow>, keepwatch_store::StoreError> {
    Ok(state
        .store
        .open_alert_by_dedup(project_id, dedup_key)
        .await?
        .filter(|alert| alert.service == service))
}

/// A trigger under a key another service's open alert has is refused: it would add to that
/// alert (open alerts' keys are unique in a project).
async fn not_another_services(
    state: &AppState,
    project_id: i64,
    service: &str,
    dedup_key: &str,
) -> Result<(), Response> {
    match state.store.open_alert_by_dedup(project_id, dedup_key).await {
        Ok(Some(alert)) if alert.service != service => Err(invalid_event(
            "'dedup_key' is in use by an open alert of another service",
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// Opens (or adds a repeated trigger to) an alert on a service.
async fn trigger(
    state: &AppState,
    project_id: i64,
    service: &str,
    dedup_key: &str,
    summary: &str,
    source: AlertSource,
    details: &Value,
) -> Result<(AlertRow, bool), ApiError> {
    let trigger = NewAlert {
        project_id,
        service,
        dedup_key,
        summary,
        source,
        details: &details.to_string(),
    };
    Ok(state.engine.trigger(&trigger).await?)
}

/// An Alertmanager group's alert key: `alertmanager:<groupKey>` when that fits in 255
/// characters, else its start and a SHA-256 of the whole groupKey. (Cut at 255 characters,
/// two groups sharing their first 255 merged into one alert, and resolving one closed both.)
fn group_dedup_key(group_key: &str) -> String {
    let key = format!("alertmanager:{group_key}");
    if key.chars().count() <= MAX_DEDUP_KEY {
        return key;
    }
    let suffix = format!(
        "…sha256:{}",
        hex::encode(Sha256::digest(group_key.as_bytes()))
    );
    let head: String = key
        .chars()
        .take(MAX_DEDUP_KEY - suffix.chars().count())
        .collect();
    format!("{head}{suffix}")
}

/// A path from `nul_path` as a message names it (`payload.summary`; `body` for the body).
fn field_name(at: &str) -> &str {
    match at.trim_start_matches('.') {
        "" => "body",
        field => field,
    }
}

/// PagerDuty's error shape for a rejected event.
fn invalid_event(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": [message],
        })),
    )
        .into_response()
}

/// `POST /api/v1/events`: PagerDuty Events API v2. `routing_key` is a service's integration
/// key (printed by `keepwatch apply`); `event_action` is `trigger`, `acknowledge` or
/// `resolve`; a trigger without `dedup_key` gets a new one, returned in the answer (202).
pub async fn events(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return invalid_event("the body is not a JSON object");
    };
    if let Some(at) = nul_path(&event) {
        return invalid_event(&format!("'{}' contains a NUL character", field_name(&at)));
    }
    let Some(key) = event["routing_key"].as_str() else {
        return invalid_event("'routing_key' is missing or not a string");
    };
    let (project_id, service) = match integration(&state, key).await {
        Ok(Some(found)) => found,
        Ok(None) => return invalid_event("'routing_key' is not an integration key of a service"),
        Err(e) => return e.into_response(),
    };
    let action = event["event_action"].as_str().unwrap_or_default();
    let dedup_key = match event.get("dedup_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_DEDUP_KEY => Some(k.clone()),
        Some(_) => return invalid_event("'dedup_key' must be a string of 1 to 255 characters"),
    };
    let result = match action {
        "trigger" => {
            let payload = &event["payload"];
            let Some(summary) = payload["summary"].as_str().filter(|s| !s.is_empty()) else {
                return invalid_event("'payload.summary' is missing");
            };
            if payload["source"].as_str().is_none_or(str::is_empty) {
                return invalid_event("'payload.source' is missing");
            }
            if !matches!(
                payload["severity"].as_str(),
                Some("critical" | "error" | "warning" | "info")
            ) {
                return invalid_event(
                    "'payload.severity' must be critical, error, warning or info",
                );
            }
            let summary: String = summary.chars().take(MAX_SUMMARY).collect();
            let dedup_key = dedup_key.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
            if let Err(response) =
                not_another_services(&state, project_id, &service, &dedup_key).await
            {
                return response;
            }
            trigger(
                &state,
                project_id,
                &service,
                &dedup_key,
                &summary,
                AlertSource::Events,
                payload,
            )
            .await
            .map(|_| dedup_key)
        }
        "acknowledge" | "resolve" => {
            let Some(dedup_key) = dedup_key else {
                return invalid_event("'dedup_key' is required to acknowledge or resolve");
            };
            // PagerDuty accepts these for unknown or closed keys and does nothing; another
            // service's alert is unknown to this key.
            match open_alert_of(&state, project_id, &service, &dedup_key).await {
                Ok(Some(alert)) => {
                    let act = if action == "acknowledge" {
                        "ack"
                    } else {
                        "resolve"
                    };
                    apply(&state, alert.id, act, "events API")
                        .await
                        .map(|_| dedup_key)
                }
                Ok(None) => Ok(dedup_key),
                Err(e) => Err(e.into()),
            }
        }
        _ => return invalid_event("'event_action' must be trigger, acknowledge or resolve"),
    };
    match result {
        Ok(dedup_key) => (
            StatusCode::ACCEPTED,
            Json(json!({ "status": "success", "message": "Event processed", "dedup_key": dedup_key })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/alertmanager/<integration key>`: Alertmanager's webhook (version 4). One
/// keepwatch alert per Alertmanager group (`groupKey`): a firing notification opens it (or
/// adds to it), a resolved one resolves it.
pub async fn alertmanager(
    State(state): State<AppState>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let bad = |message: &str| (StatusCode::BAD_REQUEST, message.to_string()).into_response();
    let (project_id, service) = match integration(&state, &key).await {
        Ok(Some(found)) => found,
        Ok(None) => return (StatusCode::NOT_FOUND, "unknown integration key").into_response(),
        Err(e) => return e.into_response(),
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return bad("the body is not JSON");
    };
    if let Some(at) = nul_path(&message) {
        return bad(&format!("{} contains a NUL character", field_name(&at)));
    }
    if message["version"].as_str() != Some("4") {
        return bad("unsupported Alertmanager webhook version (expected \"4\")");
    }
    let (Some(group_key), Some(status), Some(alerts)) = (
        message["groupKey"].as_str(),
        message["status"].as_str(),
        message["alerts"].as_array(),
    ) else {
        return bad("groupKey, status and alerts are required");
    };
    let dedup_key = group_dedup_key(group_key);
    let result = match status {
        "firing" => {
            let firing = alerts
                .iter()
                .filter(|a| a["status"].as_str() == Some("firing"))
                .count();
            let labels = &message["commonLabels"];
            let name = labels["alertname"].as_str().unwrap_or("alert");
            let summary = message["commonAnnotations"]["summary"]
                .as_str()
                .map_or_else(
                    || format!("[FIRING:{firing}] {name}"),
                    |s| format!("[FIRING:{firing}] {name}: {s}"),
                );
            let summary: String = summary.chars().take(MAX_SUMMARY).collect();
            if let Err(response) =
                not_another_services(&state, project_id, &service, &dedup_key).await
            {
                return response;
            }
            let details = json!({
                "receiver": message["receiver"],
                "groupLabels": message["groupLabels"],
                "commonLabels": message["commonLabels"],
                "externalURL": message["externalURL"],
                "alerts": alerts,
            });
            trigger(
                &state,
                project_id,
                &service,
                &dedup_key,
                &summary,
                AlertSource::Alertmanager,
                &details,
            )
            .await
            .map(|_| ())
        }
        "resolved" => match open_alert_of(&state, project_id, &service, &dedup_key).await {
            Ok(Some(alert)) => apply(&state, alert.id, "resolve", "alertmanager")
                .await
                .map(|_| ()),
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        },
        _ => return bad("status must be firing or resolved"),
    };
    match result {
        Ok(()) => (StatusCode::OK, "OK").into_response(),
        Err(e) => e.into_response(),
    }
}
