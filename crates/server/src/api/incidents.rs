//! The incidents API (`/api/v1/incidents/`): declare (from alerts or by hand), list, show,
//! post updates (and no-news updates), hand over, resolve (the all-clear), reopen, notes,
//! postmortem fields, the stakeholder page's link, and the postmortem export, as
//! `keepwatch incident` does. Every change goes through the engine, which writes it with the
//! messages it causes; [`page`] serves the stakeholder page (`/s/<token>`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use keepwatch_core::incident::postmortem::escape;
use keepwatch_core::incident::{
    ExtraStakeholder, IncidentStatus, Severity, format_duration, local_time, parse_duration,
};
use keepwatch_engine::EngineError;
use keepwatch_engine::incidents::{Declare, Update};
use keepwatch_store::{IncidentRow, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{FullKey, FullKeyJson, ReadKey, acting_as};
use crate::error::ApiError;
use crate::state::AppState;

fn time(at: Option<Timestamp>) -> Option<String> {
    at.map(|at| {
        at.to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    })
}

fn incident_json(state: &AppState, row: &IncidentRow, read_only: bool) -> Value {
    let mut body = json!({
        "id": row.id,
        "title": row.title,
        "severity": row.severity,
        "status": row.status,
        "owner": row.owner,
        "service": row.service,
        "impact": row.impact,
        "stakeholders": serde_json::from_str::<Value>(&row.stakeholder_groups).unwrap_or(Value::Null),
        "extra_stakeholders": serde_json::from_str::<Value>(&row.extra).unwrap_or(Value::Null),
        "update_every": row.update_interval().map(format_duration),
        "next_update_due": time(row.next_update_at),
        "declared_at": time(Some(row.declared_at)),
        "declared_by": row.declared_by,
        "last_update_at": time(row.last_update_at),
        "resolved_at": time(row.resolved_at),
        "postmortem": serde_json::from_str::<Value>(&row.postmortem).unwrap_or(Value::Null),
    });
    // The page's link is its secret: not for read-only keys.
    if !read_only {
        body["page_url"] = json!(state.engine.incident_page_url(row));
    }
    body
}

/// Engine errors, with a JSON 404 for an incident that is not there.
fn engine_error(id: i64) -> impl Fn(EngineError) -> ApiError {
    move |e| match e {
        EngineError::NotFound => ApiError::Missing(format!("no incident #{id}")),
        other => other.into(),
    }
}

fn incident_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::Missing(format!("no incident with id `{id}`")))
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
    if !matches!(status, None | Some("all" | "open" | "resolved")) {
        return Err(ApiError::BadRequest(
            "status must be all, open or resolved".into(),
        ));
    }
    let rows = state
        .store
        .list_incidents(scope.project_id, status, 500)
        .await?;
    Ok(Json(json!({
        "incidents": rows.iter().map(|r| incident_json(&state, r, scope.read_only)).collect::<Vec<_>>()
    })))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ReadKey(scope): ReadKey,
) -> Result<Json<Value>, ApiError> {
    let id = incident_id(&id)?;
    let row = state
        .engine
        .incidents()
        .own(scope.project_id, id)
        .await
        .map_err(engine_error(id))?;
    let mut body = incident_json(&state, &row, scope.read_only);
    body["alerts"] = json!(state.store.incident_alert_ids(id).await?);
    body["checks"] = json!(state.store.incident_check_uuids(id).await?);
    let log = state.store.incident_log(id).await?;
    body["log"] = json!(
        log.iter()
            .map(|l| json!({
                "at": time(Some(l.at)),
                "kind": l.kind,
                "who": l.who,
                "status": l.status,
                "text": l.text,
                "due_at": time(l.due_at),
                "on_time": l.on_time,
            }))
            .collect::<Vec<_>>()
    );
    let messages = state.store.incident_messages(id).await?;
    body["messages"] = json!(
        messages
            .iter()
            .map(|m| json!({
                "id": m.id,
                "kind": m.kind,
                "to": m.person,
                "contact": m.contact,
                "address": m.address,
                "state": m.state,
                "attempts": m.attempts,
                "created_at": time(Some(m.created_at)),
                "sent_at": time(m.sent_at),
                "last_error": m.last_error,
                "subject": m.note,
                "text": m.text,
            }))
            .collect::<Vec<_>>()
    );
    if scope.read_only {
        crate::redact::json(&mut body);
    }
    Ok(Json(body))
}

/// The body's object, or a 400 naming what is expected.
fn object(body: Option<Value>, expected: &str) -> Result<Value, ApiError> {
    match body {
        Some(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiError::BadRequest(format!(
            "the body must be a JSON object: {expected}"
        ))),
    }
}

fn string_field(body: &Value, name: &str) -> Result<Option<String>, ApiError> {
    match &body[name] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::BadRequest(format!("`{name}` must be a string"))),
    }
}

fn severity_field(body: &Value) -> Result<Option<Severity>, ApiError> {
    string_field(body, "severity")?
        .map(|s| {
            Severity::parse_loose(&s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "severity `{s}` is not one of SEV1, SEV2, SEV3, SEV4"
                ))
            })
        })
        .transpose()
}

fn status_field(body: &Value) -> Result<Option<IncidentStatus>, ApiError> {
    string_field(body, "status")?
        .map(|s| {
            IncidentStatus::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "status `{s}` is not one of investigating, identified, monitoring, resolved"
                ))
            })
        })
        .transpose()
}

fn list_field<T>(
    body: &Value,
    name: &str,
    item: impl Fn(&Value) -> Option<T>,
    what: &str,
) -> Result<Option<Vec<T>>, ApiError> {
    match &body[name] {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                item(v).ok_or_else(|| {
                    ApiError::BadRequest(format!("`{name}` must be a list of {what}"))
                })
            })
            .collect::<Result<Vec<T>, ApiError>>()
            .map(Some),
        _ => Err(ApiError::BadRequest(format!(
            "`{name}` must be a list of {what}"
        ))),
    }
}

/// `POST /api/v1/incidents/`: declares an incident.
pub async fn declare(
    State(state): State<AppState>,
    headers: HeaderMap,
    FullKeyJson { scope, body }: FullKeyJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = object(
        body,
        "{\"title\", \"severity\", \"owner\", \"alerts\": [ids], \"impact\", …}",
    )?;
    let update_every = match string_field(&body, "update_every")? {
        None => None,
        Some(text) if matches!(text.trim(), "none" | "0") => Some(None),
        Some(text) => Some(Some(parse_duration(&text, 7).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "update_every `{text}` is not a duration from 1m to 7d (`30m`, `2h`) or `none`"
            ))
        })?)),
    };
    let extra = list_field(
        &body,
        "extra_stakeholders",
        |v| match v {
            Value::String(address) => Some(ExtraStakeholder {
                address: address.clone(),
                tz: None,
            }),
            other => serde_json::from_value(other.clone()).ok(),
        },
        "addresses or {\"address\", \"tz\"} objects",
    )?
    .unwrap_or_default();
    let declare = Declare {
        project_id: scope.project_id,
        title: string_field(&body, "title")?,
        severity: severity_field(&body)?,
        status: status_field(&body)?,
        owner: string_field(&body, "owner")?,
        impact: string_field(&body, "impact")?,
        service: string_field(&body, "service")?,
        alerts: list_field(&body, "alerts", Value::as_i64, "alert ids")?.unwrap_or_default(),
        checks: list_field(
            &body,
            "checks",
            |v| v.as_str().map(str::to_string),
            "check UUIDs",
        )?
        .unwrap_or_default(),
        groups: list_field(
            &body,
            "stakeholders",
            |v| v.as_str().map(str::to_string),
            "stakeholder group names",
        )?,
        extra,
        update_every,
        message: string_field(&body, "message")?,
        who: acting_as(&scope, &headers),
    };
    let row = state.engine.incidents().declare(declare).await?;
    Ok((
        StatusCode::CREATED,
        Json(incident_json(&state, &row, false)),
    ))
}

/// `POST /api/v1/incidents/<id>/updates` with `{"status", "message", "no_news"}`.
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKeyJson { scope, body }: FullKeyJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = incident_id(&id)?;
    let body = object(body, "{\"status\", \"message\", \"no_news\"}")?;
    let update = Update {
        status: status_field(&body)?,
        message: string_field(&body, "message")?.unwrap_or_default(),
        no_news: match &body["no_news"] {
            Value::Null => false,
            Value::Bool(b) => *b,
            _ => {
                return Err(ApiError::BadRequest(
                    "`no_news` must be true or false".into(),
                ));
            }
        },
        who: acting_as(&scope, &headers),
    };
    let row = state
        .engine
        .incidents()
        .update(scope.project_id, id, update)
        .await
        .map_err(engine_error(id))?;
    Ok((
        StatusCode::CREATED,
        Json(incident_json(&state, &row, false)),
    ))
}

/// `POST /api/v1/incidents/<id>/owner` with `{"owner": "<person>"}`.
pub async fn owner(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKeyJson { scope, body }: FullKeyJson,
) -> Result<Json<Value>, ApiError> {
    let id = incident_id(&id)?;
    let body = object(body, "{\"owner\": \"<person>\"}")?;
    let owner = string_field(&body, "owner")?
        .ok_or_else(|| ApiError::BadRequest("the body must be {\"owner\": \"<person>\"}".into()))?;
    let row = state
        .engine
        .incidents()
        .set_owner(scope.project_id, id, &owner, &acting_as(&scope, &headers))
        .await
        .map_err(engine_error(id))?;
    Ok(Json(incident_json(&state, &row, false)))
}

/// `POST /api/v1/incidents/<id>/resolve` with `{"message"}`: the all-clear.
pub async fn resolve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: FullKeyJson,
) -> Result<Json<Value>, ApiError> {
    close_or_reopen(&state, &headers, &id, body, true).await
}

/// `POST /api/v1/incidents/<id>/reopen` with `{"message"}`.
pub async fn reopen(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: FullKeyJson,
) -> Result<Json<Value>, ApiError> {
    close_or_reopen(&state, &headers, &id, body, false).await
}

/// Resolves (`resolve`) or reopens an incident, with the optional message of the body.
async fn close_or_reopen(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    FullKeyJson { scope, body }: FullKeyJson,
    resolve: bool,
) -> Result<Json<Value>, ApiError> {
    let id = incident_id(id)?;
    let message = body
        .as_ref()
        .map(|b| string_field(b, "message"))
        .transpose()?
        .flatten();
    let who = acting_as(&scope, headers);
    let row = if resolve {
        state
            .engine
            .incidents()
            .resolve(scope.project_id, id, message.as_deref(), &who)
            .await
    } else {
        state
            .engine
            .incidents()
            .reopen(scope.project_id, id, message.as_deref(), &who)
            .await
    }
    .map_err(engine_error(id))?;
    Ok(Json(incident_json(state, &row, false)))
}

/// `POST /api/v1/incidents/<id>/notes` with `{"text"}`.
pub async fn note(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKeyJson { scope, body }: FullKeyJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = incident_id(&id)?;
    let text = crate::api::alerts::note_text(body.as_ref().and_then(|b| b["text"].as_str()))?;
    let row = state
        .engine
        .incidents()
        .note(scope.project_id, id, text, &acting_as(&scope, &headers))
        .await
        .map_err(engine_error(id))?;
    Ok((
        StatusCode::CREATED,
        Json(incident_json(&state, &row, false)),
    ))
}

/// `POST /api/v1/incidents/<id>/postmortem` with any of `summary`, `root_cause`,
/// `contributing_factors` (strings) and `action_items` (`{text, owner, done}`).
pub async fn postmortem(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKeyJson { scope, body }: FullKeyJson,
) -> Result<Json<Value>, ApiError> {
    let id = incident_id(&id)?;
    let mut body = object(
        body,
        "{\"summary\", \"root_cause\", \"contributing_factors\", \"action_items\"}",
    )?;
    // The key may come in the body, as on every route that takes JSON: it is not a field.
    if let Some(fields) = body.as_object_mut() {
        fields.remove("api_key");
    }
    let row = state
        .engine
        .incidents()
        .postmortem(scope.project_id, id, &body, &acting_as(&scope, &headers))
        .await
        .map_err(engine_error(id))?;
    Ok(Json(incident_json(&state, &row, false)))
}

/// `POST /api/v1/incidents/<id>/alerts` with `{"alerts": [ids]}`.
pub async fn attach(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKeyJson { scope, body }: FullKeyJson,
) -> Result<Json<Value>, ApiError> {
    let id = incident_id(&id)?;
    let body = object(body, "{\"alerts\": [ids]}")?;
    let alerts = list_field(&body, "alerts", Value::as_i64, "alert ids")?.unwrap_or_default();
    if alerts.is_empty() {
        return Err(ApiError::BadRequest(
            "the body must be {\"alerts\": [ids]} with at least one id".into(),
        ));
    }
    let row = state
        .engine
        .incidents()
        .attach(scope.project_id, id, &alerts, &acting_as(&scope, &headers))
        .await
        .map_err(engine_error(id))?;
    Ok(Json(incident_json(&state, &row, false)))
}

/// `POST /api/v1/incidents/<id>/page`: revokes the stakeholder page's link and makes a new one.
pub async fn rotate_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    FullKey(scope): FullKey,
) -> Result<Json<Value>, ApiError> {
    let id = incident_id(&id)?;
    let row = state
        .engine
        .incidents()
        .rotate_token(scope.project_id, id, &acting_as(&scope, &headers))
        .await
        .map_err(engine_error(id))?;
    Ok(Json(incident_json(&state, &row, false)))
}

#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
    tz: Option<String>,
}

/// `GET /api/v1/incidents/<id>/export?format=markdown|json|html&tz=<zone>`.
pub async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ExportQuery>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let id = incident_id(&id)?;
    let tz: Tz = match query.tz.as_deref() {
        None => Tz::UTC,
        Some(name) => keepwatch_core::schedule::parse_tz(name)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
    };
    let format = query.format.as_deref().unwrap_or("markdown");
    if !matches!(format, "markdown" | "md" | "json" | "html") {
        return Err(ApiError::BadRequest(format!(
            "format `{format}` is not markdown, json or html"
        )));
    }
    let export = state
        .engine
        .export_incident(scope.project_id, id)
        .await
        .map_err(engine_error(id))?;
    Ok(match format {
        "json" => Json(export.json(tz)).into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            export.html(tz),
        )
            .into_response(),
        _ => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            export.markdown(tz),
        )
            .into_response(),
    })
}

/// `GET /s/<token>`: the stakeholder page, no login (the token is the secret): title,
/// status, impact, every update in order, the next update's due time. Plain HTML that reads
/// on a phone; times in UTC and, when the browser's `?tz=` is given, in that zone.
pub async fn page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Response {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><title>Not found</title><p>This incident page does not exist or its link was revoked.</p>",
        )
            .into_response()
    };
    if token.len() < 16 || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        return not_found();
    }
    let row = match state.store.incident_by_token(&token).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read an incident page");
            return (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable").into_response();
        }
    };
    let log = match state.store.incident_log(row.id).await {
        Ok(log) => log,
        Err(e) => {
            tracing::error!(error = %e, "cannot read an incident page");
            return (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable").into_response();
        }
    };
    let tz: Tz = query
        .tz
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(Tz::UTC);
    let now = state.engine.now();
    let when = |at: Timestamp| {
        at.to_datetime()
            .with_timezone(&tz)
            .format("%a %-d %b %Y %H:%M %Z")
            .to_string()
    };
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>{sev} {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:0 auto;padding:1rem;line-height:1.45;font-size:1.05rem}}\
         .status{{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;background:#eee;font-weight:600}}\
         .resolved{{background:#d4f7d4}} li{{margin:.6rem 0}} time{{color:#555;font-size:.9rem;display:block}}\
         p.meta{{color:#444}}</style></head><body>\n\
         <h1>{title}</h1>\n<p><span class=\"status {status}\">{status_label}</span> {sev} · incident #{id}</p>\n",
        sev = row.severity.label(),
        title = escape(&row.title),
        status = row.status,
        status_label = row.status.label(),
        id = row.id,
    );
    if !row.impact.is_empty() {
        html.push_str(&format!(
            "<p><strong>Impact:</strong> {}</p>\n",
            escape(&row.impact)
        ));
    }
    match row.next_update_at {
        Some(next) if row.status != IncidentStatus::Resolved => html.push_str(&format!(
            "<p class=\"meta\"><strong>Next update by</strong> {} ({})</p>\n",
            when(next),
            if next.to_datetime() >= now {
                format!(
                    "in {}",
                    keepwatch_core::incident::postmortem::human(next.to_datetime() - now)
                )
            } else {
                format!(
                    "overdue by {}",
                    keepwatch_core::incident::postmortem::human(now - next.to_datetime())
                )
            }
        )),
        _ if row.status == IncidentStatus::Resolved => {
            html.push_str("<p class=\"meta\">This incident is resolved. No further updates.</p>\n")
        }
        _ => html.push_str("<p class=\"meta\">Next update when there is news.</p>\n"),
    }
    html.push_str("<h2>Updates</h2>\n<ol>\n");
    for l in &log {
        let label = match l.kind.as_str() {
            "declared" => "Declared",
            "update" => "Update",
            "no_news" => "No news",
            "all_clear" => "All clear",
            "reopened" => "Reopened",
            _ => continue,
        };
        let status = l
            .status
            .as_deref()
            .and_then(IncidentStatus::parse)
            .map_or("", IncidentStatus::label);
        html.push_str(&format!(
            "<li><time>{}</time><strong>{label}</strong> · {status}<br>{}</li>\n",
            when(l.at),
            escape(&l.text)
        ));
    }
    html.push_str(&format!(
        "</ol>\n<p class=\"meta\">Times in {}. Owner: {}. Page generated {}.</p>\n</body></html>\n",
        tz.name(),
        escape(&row.owner),
        escape(&local_time(now, tz, now))
    ));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}
