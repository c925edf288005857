//! The on-call configuration file as a REST resource under `/api/v1`: `GET`/`PUT
//! /oncall/config`, the same as `keepwatch export` and `keepwatch apply` (which calls
//! [`apply_config`] here). The file stays the one source of truth: a change is a `PUT` of the
//! edited file, so what is in git and what the server runs cannot drift apart. The read views
//! of what it defines are its neighbours ([`super::people`], [`super::schedules`],
//! [`super::policies`], [`super::oncall`]); how they all read the applied file is at the end
//! of this module.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use keepwatch_core::oncall::config::{OnCall, changes, utf8_text};
use keepwatch_engine::Engine;
use keepwatch_store::{ApiKeyScope, AppliedBy, AppliedOnCall, CheckRow, FeedRow, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use super::check_spec::Spec;
use super::checks::{apply_spec, new_check_row, validate_dependencies};
use crate::auth::FullKey;
use crate::error::ApiError;
use crate::state::AppState;

/// What applying a configuration changed (or would change), and the project's tokens for it.
pub struct Applied {
    pub changes: Vec<String>,
    /// Calendar feeds and integration keys of what the configuration names; empty on a dry run.
    pub tokens: Vec<FeedRow>,
    /// `(person, contact)` of every contact whose address has not been verified: pages still
    /// go to them, but nobody has shown they arrive.
    pub unverified: Vec<(String, String)>,
    /// The audit of the configuration applied (or that would be), with the project's checks
    /// and history.
    pub audit: keepwatch_core::audit::Report,
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
    who: &str,
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
    // A dry run refuses it too: it reports what the real apply would do.
    if !checks.is_empty() && engine.is_none() {
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
    let (mut facts, history) = keepwatch_engine::audit::gather(store, project_id, now).await?;
    // The checks the file declares are audited as they will be saved.
    for (row, create) in &checks {
        if let Some(mut planned) = keepwatch_engine::audit::check_facts(row) {
            if *create {
                // Not created yet: named by its slug (its UUID comes with the creation).
                planned.id = row.slug.clone();
            }
            facts.retain(|f| f.id != planned.id);
            facts.push(planned);
        }
    }
    let new = Arc::new(new);
    let audited = new.clone();
    let audit = super::oncall::off_runtime(move || {
        keepwatch_core::audit::audit(
            &audited,
            &facts,
            &history,
            now,
            &keepwatch_core::audit::Settings::default(),
        )
    })
    .await?;
    if dry_run {
        return Ok(Ok(Applied {
            changes,
            tokens: Vec::new(),
            unverified,
            audit,
        }));
    }
    let names = new.token_names();
    let rows = store
        .apply_oncall(
            project_id,
            text,
            &names,
            &AppliedBy {
                who,
                changes: &changes,
            },
            now.into(),
        )
        .await?;
    if let Some(engine) = engine {
        // Open alerts are re-planned from the new file now, not at their old due times.
        engine.oncall_applied();
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
        audit,
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
    // Every declared check as it will be saved, with the stored row it replaces, if any.
    let mut declared_rows = Vec::with_capacity(config.checks.len());
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
        // Slugs here, UUIDs in the API: resolved below, once every declared check has one.
        if let Some(body) = body.as_object_mut() {
            body.remove("depends_on");
        }
        // A check declared in the file is expected to report: if it never pings by its first
        // expected time plus grace, a low-urgency `never_reported` alert says so.
        body["alert_if_never_pinged"] = json!(true);
        let spec = match Spec::parse(&body) {
            Ok(spec) => spec,
            Err(e) => return Ok(Err(refused(e))),
        };
        let stored = existing.iter().find(|row| row.slug == declared.slug);
        let mut row = match stored {
            Some(row) => row.clone(),
            None => new_check_row(project_id, now),
        };
        if let Err(e) = apply_spec(&mut row, &spec) {
            return Ok(Err(refused(e)));
        }
        declared_rows.push((row, stored));
    }
    // `depends_on`: slugs of checks declared in the file or stored in the project.
    let uuid_of_slug = |slug: &str| {
        declared_rows
            .iter()
            .map(|(row, _)| row)
            .chain(existing.iter())
            .find(|row| row.slug == slug)
            .map(|row| row.uuid.clone())
    };
    let mut resolved = Vec::with_capacity(declared_rows.len());
    for (i, declared) in config.checks.iter().enumerate() {
        let Some(slugs) = &declared.depends_on else {
            resolved.push(None);
            continue;
        };
        let mut uuids = Vec::with_capacity(slugs.len());
        for slug in slugs {
            match uuid_of_slug(slug) {
                Some(uuid) => uuids.push(uuid),
                None => {
                    return Ok(Err(format!(
                        "checks[{i}] ({}): depends_on: no check with slug `{slug}` in the file \
                         or the project",
                        declared.slug
                    )));
                }
            }
        }
        uuids.sort_unstable();
        uuids.dedup();
        resolved.push(Some(json!(uuids).to_string()));
    }
    for ((row, _), deps) in declared_rows.iter_mut().zip(resolved) {
        if let Some(deps) = deps {
            row.depends_on = deps;
        }
    }
    // The project's checks as they will be: the declared ones replace their stored rows.
    let mut all: Vec<CheckRow> = existing
        .iter()
        .filter(|row| !declared_rows.iter().any(|(d, _)| d.uuid == row.uuid))
        .cloned()
        .collect();
    all.extend(declared_rows.iter().map(|(row, _)| row.clone()));
    let mut planned = Vec::new();
    for (i, (row, stored)) in declared_rows.into_iter().enumerate() {
        if let Err(e) = validate_dependencies(&all, &row) {
            return Ok(Err(format!("checks[{i}] ({}): {e}", row.slug)));
        }
        if stored != Some(&row) {
            planned.push((row, stored.is_none()));
        }
    }
    Ok(Ok(planned))
}

/// `GET /api/v1/oncall/config[?at=<RFC 3339>]` (full-access key): the applied file, as
/// `keepwatch export`; with `at`, the file in force then, who applied it and when (headers).
pub async fn get_config(
    State(state): State<AppState>,
    Query(query): Query<AtQuery>,
    FullKey(scope): FullKey,
) -> Result<Response, ApiError> {
    let Some(at) = query.at else {
        let applied = stored(&state, scope.project_id).await?;
        return Ok((
            [(header::CONTENT_TYPE, "application/toml")],
            applied.source.clone(),
        )
            .into_response());
    };
    let at = DateTime::parse_from_rfc3339(&at)
        .map_err(|e| ApiError::BadRequest(format!("at: `{at}` is not an RFC 3339 time: {e}")))?
        .with_timezone(&Utc);
    let Some(then) = state.store.oncall_at(scope.project_id, at.into()).await? else {
        return Err(ApiError::Missing(format!(
            "no on-call configuration was applied at or before {}",
            at.to_rfc3339()
        )));
    };
    let applied_at = then.applied_at.to_datetime().to_rfc3339();
    let header_value = |text: &str| {
        header::HeaderValue::from_str(text).unwrap_or(header::HeaderValue::from_static(""))
    };
    Ok((
        [
            (header::CONTENT_TYPE, header_value("application/toml")),
            (
                header::HeaderName::from_static("x-keepwatch-applied-at"),
                header_value(&applied_at),
            ),
            (
                header::HeaderName::from_static("x-keepwatch-applied-by"),
                header_value(&then.applied_by),
            ),
        ],
        then.source,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct AtQuery {
    /// `GET /api/v1/oncall/config?at=<RFC 3339>`: the file in force then.
    at: Option<String>,
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
    headers: axum::http::HeaderMap,
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
    let now = state.engine.now();
    let applied = apply_config(
        &state.store,
        Some(&state.engine),
        scope.project_id,
        text,
        dry_run,
        &crate::auth::acting_as(&scope, &headers),
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
        "audit": applied.audit,
    })
}

// Reading the applied configuration: for the handlers of what it defines (people,
// schedules, policies, services, who is on call) as for this one.

/// The configuration applied to a project, parsed once per apply and shared (see
/// `Store::oncall`); `None` when nothing was applied.
pub(crate) async fn config(
    state: &AppState,
    project_id: i64,
) -> Result<Option<Arc<AppliedOnCall>>, ApiError> {
    let Some(applied) = state.store.oncall(project_id).await? else {
        return Ok(None);
    };
    parsed(&applied)?;
    Ok(Some(applied))
}

/// The parsed configuration; it was valid when applied, so a failure is the server's.
pub(crate) fn parsed(applied: &AppliedOnCall) -> Result<&OnCall, ApiError> {
    applied
        .config
        .as_ref()
        .map_err(|e| ApiError::Unavailable(format!("stored on-call configuration: {e}")))
}

/// The stored configuration (parsed once per apply), or a 404 naming the fix.
pub(crate) async fn stored(
    state: &AppState,
    project_id: i64,
) -> Result<Arc<AppliedOnCall>, ApiError> {
    state
        .store
        .oncall(project_id)
        .await?
        .ok_or_else(nothing_applied)
}

/// The stored configuration's content as JSON.
pub(crate) fn json_of(applied: &AppliedOnCall) -> Result<&Value, ApiError> {
    applied
        .json
        .as_ref()
        .map_err(|e| ApiError::Unavailable(format!("stored on-call configuration: {e}")))
}

pub(crate) fn nothing_applied() -> ApiError {
    ApiError::Missing("no on-call configuration applied (keepwatch apply -f <file>)".into())
}

/// A JSON answer; to a read-only key without the secrets in it (see [`crate::redact`]).
pub(crate) fn answer(scope: &ApiKeyScope, mut body: Value) -> Response {
    if scope.read_only {
        crate::redact::json(&mut body);
    }
    axum::Json(body).into_response()
}

/// The entries of one section of the file (`people`, `schedules`, …).
pub(crate) fn section(config: &Value, name: &str) -> Vec<Value> {
    config[name].as_array().cloned().unwrap_or_default()
}

/// The entry whose `key` field is `name`, or a 404 naming what is missing.
pub(crate) fn entry(
    config: &Value,
    section_name: &str,
    key: &str,
    name: &str,
) -> Result<Value, ApiError> {
    section(config, section_name)
        .into_iter()
        .find(|e| e[key] == name)
        .ok_or_else(|| ApiError::Missing(format!("no {section_name} entry with {key} `{name}`")))
}
