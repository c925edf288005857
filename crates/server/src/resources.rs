//! The on-call configuration as REST resources under `/api/v1`: the whole file
//! (`GET`/`PUT /oncall/config`, the same as `keepwatch export` and `keepwatch apply`), and
//! read views of its people, schedules (with who is on call and their shifts), escalation
//! policies and services. The file stays the one source of truth: a change is a `PUT` of
//! the edited file, so what is in git and what the server runs cannot drift apart.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use keepwatch_core::oncall::OnCallSchedule;
use keepwatch_core::oncall::config::{OnCall, changes, utf8_text};
use keepwatch_engine::Engine;
use keepwatch_store::{ApiKeyScope, AppliedOnCall, CheckRow, FeedRow, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{FullKey, ReadKey};
use crate::checks::{apply_spec, new_check_row};
use crate::error::ApiError;
use crate::oncall::{off_runtime, parsed};
use crate::spec::Spec;

/// What applying a configuration changed (or would change), and the project's tokens for it.
pub struct Applied {
    pub changes: Vec<String>,
    /// Calendar feeds and integration keys of what the configuration names; empty on a dry run.
    pub tokens: Vec<FeedRow>,
    /// `(person, contact)` of every contact whose address has not been verified: pages still
    /// go to them, but nobody has shown they arrive.
    pub unverified: Vec<(String, String)>,
}

/// The contacts of `config` whose current address no verification code has reached.
pub async fn unverified_contacts(
    store: &Store,
    project_id: i64,
    config: &OnCall,
) -> Result<Vec<(String, String)>, keepwatch_store::StoreError> {
    let verified = store.verified_contacts(project_id).await?;
    let mut out: Vec<(String, String)> = config
        .contacts
        .iter()
        .flat_map(|(person, contacts)| {
            contacts
                .iter()
                .map(move |(contact, address)| (person, contact, address))
        })
        .filter(|(person, contact, address)| {
            !verified
                .iter()
                .any(|(p, c, a)| p == *person && c == *contact && a == *address)
        })
        .map(|(person, contact, _)| (person.clone(), contact.clone()))
        .collect();
    out.sort();
    Ok(out)
}

/// Checks `text`, compares it with the stored configuration and, unless `dry_run`, stores it,
/// makes the tokens it needs, and creates or updates the checks it declares (through the
/// engine, which only a running server has: without one a file declaring checks is refused).
/// A text that does not parse, or a check the v3 API would refuse, is an `Err` with the
/// reason (line and field); nothing is stored then.
pub async fn apply_config(
    store: &Store,
    engine: Option<&Engine>,
    project_id: i64,
    text: &str,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Result<Applied, String>, ApiError> {
    // Parsing a large file is CPU work: off the async workers.
    let owned = text.to_string();
    let new = match tokio::task::spawn_blocking(move || OnCall::parse(&owned))
        .await
        .map_err(|e| ApiError::Unavailable(format!("parsing the configuration failed: {e}")))?
    {
        Ok(new) => new,
        Err(e) => return Ok(Err(format!("{e:#}"))),
    };
    // The stored configuration, from the cache; one that no longer parses is replaced whole.
    let old = store.oncall(project_id).await?;
    let old = old
        .as_ref()
        .and_then(|applied| applied.config.as_ref().ok());
    let mut changes = changes(old, &new);
    let checks = match planned_checks(store, project_id, &new, now).await? {
        Ok(checks) => checks,
        Err(e) => return Ok(Err(e)),
    };
    if !checks.is_empty() && engine.is_none() && !dry_run {
        return Ok(Err(
            "this file declares checks, which only the running server can create: \
             apply it with --server (or PUT it to /api/v1/oncall/config)"
                .into(),
        ));
    }
    changes.extend(
        checks
            .iter()
            .map(|(row, create)| format!("{} check {}", if *create { "+" } else { "~" }, row.slug)),
    );
    let unverified = unverified_contacts(store, project_id, &new).await?;
    if dry_run {
        return Ok(Ok(Applied {
            changes,
            tokens: Vec::new(),
            unverified,
        }));
    }
    let names = new.token_names();
    let rows = store
        .apply_oncall(project_id, text, &names, now.timestamp_micros())
        .await?;
    if let Some(engine) = engine {
        // Open alerts are re-planned from the new file now, not at their old due times.
        engine.pager_wake.notify_one();
        for (row, create) in checks {
            if create {
                engine.create_check(row).await?;
            } else {
                engine.update_check(row).await?;
            }
        }
    }
    let tokens = rows
        .into_iter()
        .filter(|r| names.contains(&(r.kind.as_str(), r.name.as_str())))
        .collect();
    Ok(Ok(Applied {
        changes,
        tokens,
        unverified,
    }))
}

/// The checks the file declares that are new (`true`) or differ from what is stored
/// (`false`), as they will be saved; or the first one the v3 API would refuse, and why.
async fn planned_checks(
    store: &Store,
    project_id: i64,
    config: &OnCall,
    now: DateTime<Utc>,
) -> Result<Result<Vec<(CheckRow, bool)>, String>, ApiError> {
    if config.checks.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let existing = store.list_checks(project_id).await?;
    let mut planned = Vec::new();
    for (i, declared) in config.checks.iter().enumerate() {
        let at = format!("checks[{i}] ({})", declared.slug);
        let refused = |e: ApiError| match e {
            ApiError::BadSchedule { detail, .. } => format!("{at}: {detail}"),
            ApiError::BadRequest(message) => format!("{at}: {message}"),
            other => format!("{at}: {other:?}"),
        };
        let mut body =
            serde_json::to_value(declared).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if declared.name.is_none() {
            body["name"] = json!(declared.slug);
        }
        let spec = match Spec::parse(&body) {
            Ok(spec) => spec,
            Err(e) => return Ok(Err(refused(e))),
        };
        let stored = existing.iter().find(|row| row.slug == declared.slug);
        let (mut row, create) = match stored {
            Some(row) => (row.clone(), false),
            None => (new_check_row(project_id, now), true),
        };
        if let Err(e) = apply_spec(&mut row, &spec) {
            return Ok(Err(refused(e)));
        }
        if create || Some(&row) != stored {
            planned.push((row, create));
        }
    }
    Ok(Ok(planned))
}

/// The stored configuration (parsed once per apply), or a 404 naming the fix.
async fn stored(state: &AppState, project_id: i64) -> Result<Arc<AppliedOnCall>, ApiError> {
    state
        .store
        .oncall(project_id)
        .await?
        .ok_or_else(nothing_applied)
}

/// The stored configuration's content as JSON.
fn json_of(applied: &AppliedOnCall) -> Result<&Value, ApiError> {
    applied
        .json
        .as_ref()
        .map_err(|e| ApiError::Unavailable(format!("stored on-call configuration: {e}")))
}

fn nothing_applied() -> ApiError {
    ApiError::Missing("no on-call configuration applied (keepwatch apply -f <file>)".into())
}

/// `GET /api/v1/oncall/config` (full-access key): the applied file, as `keepwatch export`.
pub async fn get_config(
    State(state): State<AppState>,
    FullKey(scope): FullKey,
) -> Result<Response, ApiError> {
    let applied = stored(&state, scope.project_id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/toml")],
        applied.source.clone(),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ApplyQuery {
    #[serde(default)]
    dry_run: Option<String>,
}

/// `PUT /api/v1/oncall/config[?dry_run=1]` (full-access key), the file as the body: what
/// `keepwatch apply` does. 200 with the changes; 400 naming the line and field.
pub async fn put_config(
    State(state): State<AppState>,
    Query(query): Query<ApplyQuery>,
    FullKey(scope): FullKey,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the configuration is larger than {ONCALL_FILE_LIMIT} bytes, the most accepted"
            ))
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let dry_run = match query.dry_run.as_deref() {
        None | Some("0" | "false") => false,
        Some("" | "1" | "true") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "dry_run: `{other}` is not 1, true, 0 or false"
            )));
        }
    };
    let text = utf8_text(&body)
        .map_err(|e| ApiError::BadRequest(format!("the configuration is not UTF-8 text: {e}")))?;
    let now = state.engine.clock.now();
    let applied = apply_config(
        &state.store,
        Some(&state.engine),
        scope.project_id,
        text,
        dry_run,
        now,
    )
    .await?
    .map_err(ApiError::BadRequest)?;
    Ok(axum::Json(applied_json(&applied, &state.config.site_url, dry_run)).into_response())
}

/// The largest on-call file `PUT /api/v1/oncall/config` takes (a file of 150 people and 30
/// schedules is about 355 KB).
pub const ONCALL_FILE_LIMIT: usize = 2 << 20;

/// What `PUT /api/v1/oncall/config` answers (and `keepwatch apply` prints): the changes, the
/// calendar feed URLs under `site`, the integration keys and the unverified contacts.
pub fn applied_json(applied: &Applied, site: &str, dry_run: bool) -> Value {
    let feeds: Vec<Value> = applied
        .tokens
        .iter()
        .filter(|r| r.kind != "service")
        .map(|r| json!({"kind": r.kind, "name": r.name, "url": format!("{site}/ical/{}.ics", r.token)}))
        .collect();
    let keys: Vec<Value> = applied
        .tokens
        .iter()
        .filter(|r| r.kind == "service")
        .map(|r| json!({"service": r.name, "key": r.token}))
        .collect();
    json!({
        "changes": applied.changes,
        "dry_run": dry_run,
        "calendar_feeds": feeds,
        "integration_keys": keys,
        "unverified_contacts": applied
            .unverified
            .iter()
            .map(|(person, contact)| json!({"person": person, "contact": contact}))
            .collect::<Vec<_>>(),
    })
}

/// A JSON answer; to a read-only key without the secrets in it (see [`crate::redact`]).
fn answer(scope: &ApiKeyScope, mut body: Value) -> Response {
    if scope.read_only {
        crate::redact::json(&mut body);
    }
    axum::Json(body).into_response()
}

/// The entries of one section of the file (`people`, `schedules`, …).
fn section(config: &Value, name: &str) -> Vec<Value> {
    config[name].as_array().cloned().unwrap_or_default()
}

/// The entry whose `key` field is `name`, or a 404 naming what is missing.
fn entry(config: &Value, section_name: &str, key: &str, name: &str) -> Result<Value, ApiError> {
    section(config, section_name)
        .into_iter()
        .find(|e| e[key] == name)
        .ok_or_else(|| ApiError::Missing(format!("no {section_name} entry with {key} `{name}`")))
}

/// A person as the API shows them: contact addresses are shown only to a full-access key
/// (they hold webhook URLs and tokens); a read-only key sees the host or the domain.
/// `verified` names each contact whose current address a verification code has reached.
fn person_view(mut person: Value, full: bool, unverified: &[(String, String)]) -> Value {
    let id = person["id"].as_str().unwrap_or_default().to_string();
    let mut verified = serde_json::Map::new();
    if let Some(contacts) = person["contacts"].as_object_mut() {
        for (contact, address) in contacts.iter_mut() {
            let text = address.as_str().unwrap_or_default().to_string();
            if !full {
                *address = Value::String(redact(&text));
            }
            let pending = unverified.iter().any(|(p, c)| *p == id && c == contact);
            verified.insert(contact.clone(), Value::Bool(!pending));
        }
    }
    person["verified"] = Value::Object(verified);
    person
}

/// `https://hooks.slack.com/services/…` → `https://hooks.slack.com/…`;
/// `alice@example.com` → `…@example.com`.
fn redact(address: &str) -> String {
    if let Some((scheme, rest)) = address.split_once("://") {
        let host = rest.split('/').next().unwrap_or_default();
        format!("{scheme}://{host}/…")
    } else if let Some((_, domain)) = address.rsplit_once('@') {
        format!("…@{domain}")
    } else {
        "…".into()
    }
}

/// `GET /api/v1/people/`.
pub async fn people(
    State(state): State<AppState>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let applied = stored(&state, scope.project_id).await?;
    let config = json_of(&applied)?;
    let unverified = unverified_contacts(&state.store, scope.project_id, parsed(&applied)?).await?;
    let people: Vec<Value> = section(config, "people")
        .into_iter()
        .map(|p| person_view(p, !scope.read_only, &unverified))
        .collect();
    Ok(answer(&scope, json!({ "people": people })))
}

/// `GET /api/v1/people/{id}`: the person and the schedules they are in.
pub async fn person(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let applied = stored(&state, scope.project_id).await?;
    let config = json_of(&applied)?;
    let parsed = parsed(&applied)?;
    let unverified = unverified_contacts(&state.store, scope.project_id, parsed).await?;
    let mut person = person_view(
        entry(config, "people", "id", &id)?,
        !scope.read_only,
        &unverified,
    );
    let mut schedules: Vec<&String> = parsed
        .schedules
        .iter()
        .filter(|(_, s)| {
            s.layers.iter().any(|l| l.participants.contains(&id))
                || s.overrides.iter().any(|o| o.user == id)
        })
        .map(|(name, _)| name)
        .collect();
    schedules.sort();
    person["schedules"] = json!(schedules);
    Ok(answer(&scope, person))
}

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
    let now = state.engine.clock.now();
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
    let now = state.engine.clock.now();
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

/// How long a verification code stays valid.
const CODE_LIFETIME: TimeDelta = TimeDelta::minutes(15);

/// A person's contact address from the applied configuration, or a 404 naming what is missing.
async fn contact_address(
    state: &AppState,
    project_id: i64,
    person: &str,
    contact: &str,
) -> Result<String, ApiError> {
    let applied = crate::oncall::config(state, project_id)
        .await?
        .ok_or_else(nothing_applied)?;
    let config = parsed(&applied)?;
    if !config.people.contains_key(person) {
        return Err(ApiError::Missing(format!(
            "no people entry with id `{person}`"
        )));
    }
    config
        .contact_address(person, contact)
        .map(str::to_string)
        .ok_or_else(|| ApiError::Missing(format!("`{person}` has no contact `{contact}`")))
}

/// `POST /api/v1/people/{id}/contacts/{contact}/send-code` (full-access key): sends a
/// six-digit code through the contact, valid for 15 minutes. 202, or 502 when the contact
/// could not be reached (which is what verification is for).
pub async fn send_code(
    State(state): State<AppState>,
    Path((person, contact)): Path<(String, String)>,
    FullKey(scope): FullKey,
) -> Result<Response, ApiError> {
    let address = contact_address(&state, scope.project_id, &person, &contact).await?;
    let random = u32::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..4]
            .try_into()
            .expect("4 bytes"),
    );
    let code = format!("{:06}", random % 1_000_000);
    let expires = state.engine.clock.now() + CODE_LIFETIME;
    state
        .store
        .start_verification(
            scope.project_id,
            &person,
            &contact,
            &address,
            &code,
            expires.timestamp_micros(),
        )
        .await?;
    let text = format!(
        "Your keepwatch verification code for {person}'s contact `{contact}` is {code}. \
         It is valid for {} minutes.",
        CODE_LIFETIME.num_minutes()
    );
    let title = "keepwatch: verify this contact";
    if let Err(e) = keepwatch_engine::pager::send_plain(
        &state.engine.notifier,
        &contact,
        &address,
        title,
        &text,
    )
    .await
    {
        // A transport error would tell an open port from a closed one: only say that the
        // address could not be reached (the server log has the detail).
        let reason = if e.shareable {
            e.detail
        } else {
            tracing::info!(person, contact, error = %e, "verification code not delivered");
            "the contact's address could not be reached".to_string()
        };
        return Ok((
            axum::http::StatusCode::BAD_GATEWAY,
            axum::Json(json!({"error": format!("could not send the code: {reason}")})),
        )
            .into_response());
    }
    Ok((
        axum::http::StatusCode::ACCEPTED,
        axum::Json(json!({"sent_to": redact(&address), "expires_at": expires.to_rfc3339()})),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct CodeBody {
    code: String,
}

/// `POST /api/v1/people/{id}/contacts/{contact}/verify` with `{"code": "…"}` (full-access
/// key): 200 `{"verified": true}`, or 400 / 409 / 429 saying why not.
pub async fn verify_code(
    State(state): State<AppState>,
    Path((person, contact)): Path<(String, String)>,
    FullKey(scope): FullKey,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    use axum::http::StatusCode;
    use keepwatch_store::CodeCheck;
    let CodeBody { code } = serde_json::from_slice(&body).map_err(|_| {
        ApiError::BadRequest("the body must be {\"code\": \"<the code you received>\"}".into())
    })?;
    let address = contact_address(&state, scope.project_id, &person, &contact).await?;
    let now = state.engine.clock.now().timestamp_micros();
    let check = state
        .store
        .check_verification(scope.project_id, &person, &contact, &address, &code, now)
        .await?;
    let (status, message) = match check {
        CodeCheck::Verified => {
            return Ok(
                axum::Json(json!({"person": person, "contact": contact, "verified": true}))
                    .into_response(),
            );
        }
        CodeCheck::Wrong { attempts_left } => (
            StatusCode::BAD_REQUEST,
            format!("wrong code ({attempts_left} tries left)"),
        ),
        CodeCheck::NoCode => (
            StatusCode::BAD_REQUEST,
            "no code is pending for this contact; request one with send-code".into(),
        ),
        CodeCheck::Expired => (
            StatusCode::BAD_REQUEST,
            "the code has expired; request a new one with send-code".into(),
        ),
        CodeCheck::TooManyAttempts => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong codes; request a new one with send-code".into(),
        ),
        CodeCheck::AddressChanged => (
            StatusCode::CONFLICT,
            "the contact's address changed since the code was sent; request a new one".into(),
        ),
    };
    Ok((status, axum::Json(json!({ "error": message }))).into_response())
}
