//! Alerts over HTTP: the alerts API (`/api/v1/alerts/`), the events API in the shape of
//! PagerDuty's Events API v2 (`/api/v1/events`, also at `/v2/enqueue`), the Prometheus
//! Alertmanager webhook receiver (`/api/v1/alertmanager/<integration key>`), and the signed
//! acknowledge/resolve links of notifications (`/a/<token>`: a confirmation page on GET, the
//! action only on POST, so mail scanners that open links do not acknowledge pages).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use keepwatch_engine::pager::{Pager, verify_link};
use keepwatch_store::{AlertRow, ApiKeyScope, AppliedOnCall, NewAlert, to_micros};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::{FullKey, ReadKey};
use crate::error::ApiError;
use crate::spec::nul_path;

/// Longest summary kept (PagerDuty's limit), and longest dedup key.
const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;

fn alert_json(alert: &AlertRow) -> Value {
    let time = |us: Option<i64>| {
        us.and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    json!({
        "id": alert.id,
        "service": alert.service,
        "dedup_key": alert.dedup_key,
        "summary": alert.summary,
        "source": alert.source,
        "status": alert.status,
        "urgency": alert.urgency,
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
        None | Some("open" | "triggered" | "acknowledged" | "resolved")
    ) {
        return Err(ApiError::BadRequest(
            "status must be open, triggered, acknowledged or resolved".into(),
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
    body["log"] = json!(
        log.iter()
            .map(|entry| json!({
                "at": chrono::DateTime::from_timestamp_micros(entry.at)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
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
    // Who: the name a client gives (the CLI sends the user's login), else "api".
    let who = headers
        .get("x-keepwatch-user")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .map_or_else(|| "api".to_string(), |v| format!("api ({v})"));
    let alert = apply(state, alert.id, action, &who).await?;
    Ok(Json(alert_json(&alert)))
}

async fn apply(state: &AppState, id: i64, action: &str, who: &str) -> Result<AlertRow, ApiError> {
    let now_us = to_micros(state.engine.clock.now());
    let alert = match action {
        "ack" => state.store.acknowledge_alert(id, who, now_us).await?,
        _ => state.store.resolve_alert(id, who, now_us).await?,
    };
    alert.ok_or(ApiError::NotFound)
}

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

/// The project's applied configuration, from the store's cache (parsed once per apply).
async fn oncall(state: &AppState, project_id: i64) -> Option<Arc<AppliedOnCall>> {
    state.store.oncall(project_id).await.ok()?
}

/// Opens (or adds a repeated trigger to) an alert on a service.
async fn trigger(
    state: &AppState,
    project_id: i64,
    service: &str,
    dedup_key: &str,
    summary: &str,
    source: &str,
    details: &Value,
) -> Result<(AlertRow, bool), ApiError> {
    let now = state.engine.clock.now();
    let config = oncall(state, project_id).await;
    let config = config.as_deref().and_then(|c| c.config.as_ref().ok());
    let urgency = Pager::urgency(config, service, now);
    let triggered = state
        .store
        .trigger_alert(
            &NewAlert {
                project_id,
                service,
                dedup_key,
                summary,
                source,
                details: &details.to_string(),
                urgency: urgency.as_str(),
            },
            to_micros(now),
        )
        .await?;
    state.engine.pager_wake.notify_one();
    Ok(triggered)
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
                &state, project_id, &service, &dedup_key, &summary, "events", payload,
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
                "alertmanager",
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

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    // The page holds a button that acts: no other site may frame it (clickjacking), it
    // loads nothing, and its form posts only back here.
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    // The link is the credential: never send it to another site as a Referer.
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    response
}

/// Whether a POST on a link may come from a page of another site. Browsers send `Origin`
/// (or at least `Referer`) with a form post; a post made by another site's page names that
/// site, and is refused (CSRF). A client that sends neither (curl, a chat app's action
/// button) is not a browser carrying someone's session, and the signed link is enough.
fn cross_site(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))?;
    let from = from.to_str().unwrap_or("");
    let authority = |url: &str| -> Option<String> {
        let rest = url.split_once("://")?.1;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        Some(rest[..end].to_ascii_lowercase())
    };
    let Some(origin) = authority(from) else {
        return Some(from.to_string());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    // Behind a reverse proxy the Host may be rewritten: the public site URL counts too.
    let site = authority(&state.config.site_url);
    if Some(&origin) == host.as_ref() || Some(&origin) == site.as_ref() {
        None
    } else {
        Some(from.to_string())
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn link_alert(state: &AppState, token: &str) -> Result<(AlertRow, String), Response> {
    let (id, action) = verify_link(&state.engine.link_secret, token, state.engine.clock.now())
        .map_err(|why| {
            page(
                StatusCode::FORBIDDEN,
                "Link not valid",
                &format!("<p>{why}.</p>"),
            )
        })?;
    match state.store.alert(id).await {
        Ok(Some(alert)) => Ok((alert, action)),
        Ok(None) => Err(page(
            StatusCode::NOT_FOUND,
            "Alert not found",
            "<p>This alert no longer exists.</p>",
        )),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// GET on a notification's link: what the alert is and a button; nothing changes yet.
pub async fn link_confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (alert, action) = match link_alert(&state, &token).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let verb = if action == "ack" {
        "Acknowledge"
    } else {
        "Resolve"
    };
    let body = format!(
        "<p>Alert #{} on <b>{}</b>: {}</p><p>Status: <b>{}</b>.</p>\
         <form method=\"post\"><button type=\"submit\">{verb} alert #{}</button></form>",
        alert.id,
        escape(&alert.service),
        escape(&alert.summary),
        alert.status,
        alert.id
    );
    page(
        StatusCode::OK,
        &format!("{verb} alert #{}?", alert.id),
        &body,
    )
}

/// POST on a notification's link: the action itself.
pub async fn link_act(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(from) = cross_site(&state, &headers) {
        tracing::warn!(from = %from, "a link post from another site was refused");
        return page(
            StatusCode::FORBIDDEN,
            "Not from this site",
            "<p>This action was sent by a page of another site and was not taken. \
             Open the link from your notification and press the button there.</p>",
        );
    }
    let (alert, action) = match link_alert(&state, &token).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match apply(&state, alert.id, &action, "link").await {
        Ok(after) => page(
            StatusCode::OK,
            &format!("Alert #{} is {}", after.id, after.status),
            &format!("<p>{}</p>", escape(&after.summary)),
        ),
        Err(e) => e.into_response(),
    }
}
