//! The Healthchecks Management API v3 (`/api/v3/…`) for checks: checks, their pings and
//! flips, plus keepwatch's additions (a check's notifications and their attempts; channels
//! are in [`super::channels`], the validation of a check's body in [`super::check_spec`]).
//! Field names, types, orders and error bodies follow Healthchecks; keepwatch's own fields
//! (`max_runtime`, `service`, `down_reason`, …) are extra keys that clients ignore.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use keepwatch_core::check::Status;
use keepwatch_core::schedule::Schedule;
use keepwatch_engine::CheckView;
use keepwatch_engine::live::{anomaly_rules, rules_from_row, state_from_row, watch_patterns};
use keepwatch_store::{ChannelRow, CheckRow, StateRow, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::api::check_spec::Spec;
use crate::auth::{FullKey, FullKeyJson, ReadKey};
use crate::error::ApiError;
use crate::redact::unique_key;
use crate::state::AppState;

type ApiResult = Result<Response, ApiError>;

/// Healthchecks' date format for `last_ping`, `next_ping` and flips: seconds, `+00:00`.
fn iso_seconds(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// A read-only unique key in a check's place (Healthchecks' `sha1` path converter): that
/// path answers only GET, other methods are a 405 there.
fn is_unique_key(code: &str) -> bool {
    code.len() == 40 && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Finds a check by UUID (or, for reads, by unique key) and checks it is the caller's.
async fn find_check(
    state: &AppState,
    project_id: i64,
    code: &str,
    allow_unique_key: bool,
) -> Result<CheckRow, ApiError> {
    if Uuid::parse_str(code).is_ok() && code.len() == 36 {
        let row = state
            .store
            .check_by_uuid(&code.to_ascii_lowercase())
            .await?
            .ok_or(ApiError::NotFound)?;
        if row.project_id != project_id {
            return Err(ApiError::Forbidden);
        }
        return Ok(row);
    }
    if allow_unique_key && code.len() == 40 {
        let checks = state.store.list_checks(project_id).await?;
        return checks
            .into_iter()
            .find(|c| unique_key(&c.uuid) == code)
            .ok_or(ApiError::NotFoundEmpty);
    }
    Err(ApiError::NotFound)
}

/// The live state of checks (the engine's memory is ahead of the stored row by at most one
/// checkpoint), falling back to the stored state.
pub(crate) async fn live_states(
    state: &AppState,
    rows: &[CheckRow],
) -> Result<Vec<CheckView>, ApiError> {
    let live = state
        .engine
        .states(rows.iter().map(|r| r.id).collect())
        .await?;
    Ok(rows
        .iter()
        .zip(live)
        .map(|(row, live)| {
            live.unwrap_or_else(|| CheckView {
                state: state_from_row(&row.state),
                last_seq: row.state.last_seq,
                rules: None,
            })
        })
        .collect())
}

fn extra_str<'a>(extra: &'a Map<String, Value>, key: &str) -> &'a str {
    extra.get(key).and_then(Value::as_str).unwrap_or("")
}

fn extra_bool(extra: &Map<String, Value>, key: &str) -> bool {
    extra.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A check as Healthchecks' `to_dict` renders it, keys in the same order.
fn check_json(
    state: &AppState,
    row: &CheckRow,
    view: &CheckView,
    channels: &[ChannelRow],
    read_only: bool,
) -> Value {
    let now = state.engine.now();
    let live = &view.state;
    let extra: Map<String, Value> = serde_json::from_str(&row.extra).unwrap_or_default();
    // The engine's parsed rules; a check it does not hold is parsed from its row.
    let rules = view
        .rules
        .clone()
        .or_else(|| rules_from_row(row).ok().map(std::sync::Arc::new));
    let v = super::api_version();
    let mut status = rules.as_ref().map_or("new", |r| live.api_status(r, now));
    // v1 reports a run in progress as `started` until it is overdue (Healthchecks'
    // `get_status(with_started=True)`).
    if v == 1
        && let Some(r) = &rules
    {
        let running = live.open_runs.iter().filter(|run| !run.hung);
        let overdue = running
            .clone()
            .any(|run| now >= run.started_at + r.hung_after());
        if !overdue && running.count() > 0 {
            status = "started";
        }
    }
    // Healthchecks' next_ping is the grace start "with started": the next expected ping of an
    // up check, or a running check's start if earlier; none for a new, paused or down check
    // (a down check's run does not count either).
    let next_ping = rules.as_ref().and_then(|r| {
        use keepwatch_core::check::Status;
        let expected = (live.status == Status::Up)
            .then(|| live.next_expected(r))
            .flatten();
        let start = (live.status != Status::Down)
            .then(|| live.open_runs.iter().map(|run| run.started_at).min())
            .flatten();
        match (expected, start) {
            (Some(e), Some(s)) => Some(e.min(s)),
            (e, s) => e.or(s),
        }
    });
    let filter_subject = extra_bool(&extra, "filter_subject");
    let mut out = json!({
        "name": row.name,
        "slug": row.slug,
        "tags": row.tags,
        "desc": row.descr,
        "grace": row.grace_secs,
        "n_pings": live.n_pings,
        "status": status,
        "started": !live.open_runs.is_empty(),
        "last_ping": live.last_ping.map(iso_seconds),
        "next_ping": next_ping.map(iso_seconds),
        "manual_resume": row.manual_resume,
        "methods": extra_str(&extra, "methods"),
        "subject": if filter_subject { extra_str(&extra, "success_kw") } else { "" },
        "subject_fail": if filter_subject { extra_str(&extra, "failure_kw") } else { "" },
        "start_kw": extra_str(&extra, "start_kw"),
        "success_kw": extra_str(&extra, "success_kw"),
        "failure_kw": extra_str(&extra, "failure_kw"),
        "filter_subject": filter_subject,
        "filter_body": extra_bool(&extra, "filter_body"),
        "filter_http_body": extra_bool(&extra, "filter_http_body"),
        "filter_default_fail": extra_bool(&extra, "filter_default_fail"),
    });
    let obj = out.as_object_mut().expect("a JSON object");
    if let Some(duration) = live.last_duration.filter(|d| d.as_secs() > 0) {
        obj.insert("last_duration".into(), duration.as_secs().into());
    }
    let site = &state.config.site_url;
    // Healthchecks' badge URL has a key of its own; the UUID would be the ping URL.
    obj.insert(
        "badge_url".into(),
        format!("{site}/b/2/{}.svg", super::badges::check_key(row)).into(),
    );
    if read_only {
        obj.insert("unique_key".into(), unique_key(&row.uuid).into());
    } else {
        obj.insert("uuid".into(), row.uuid.clone().into());
        obj.insert(
            "ping_url".into(),
            format!("{}/{}", state.config.ping_url, row.uuid).into(),
        );
        obj.insert(
            "update_url".into(),
            format!("{site}/api/v{v}/checks/{}", row.uuid).into(),
        );
        obj.insert(
            "pause_url".into(),
            format!("{site}/api/v{v}/checks/{}/pause", row.uuid).into(),
        );
        obj.insert(
            "resume_url".into(),
            format!("{site}/api/v{v}/checks/{}/resume", row.uuid).into(),
        );
        let mut ids: Vec<&str> = channels.iter().map(|c| c.uuid.as_str()).collect();
        ids.sort_unstable();
        obj.insert("channels".into(), ids.join(",").into());
    }
    if row.kind == "simple" {
        obj.insert("timeout".into(), row.timeout_secs.into());
    } else {
        obj.insert("schedule".into(), row.schedule.clone().into());
        obj.insert("tz".into(), row.tz.clone().into());
    }
    // keepwatch's own fields.
    obj.insert("max_runtime".into(), row.max_runtime_secs.into());
    obj.insert("service".into(), row.service.clone().into());
    // `late` marks an up check whose late notice was sent: not a reason it is down.
    let down_reason = live
        .down_reason
        .filter(|r| *r != keepwatch_core::check::DownReason::Late);
    obj.insert("down_reason".into(), json!(down_reason));
    obj.insert("open_runs".into(), json!(live.open_runs));
    let anomaly = anomaly_rules(row);
    obj.insert("anomaly_volume_pct".into(), anomaly.volume_below_pct.into());
    obj.insert(
        "anomaly_duration_pct".into(),
        anomaly.duration_above_pct.into(),
    );
    obj.insert(
        "anomaly_short_pct".into(),
        anomaly.duration_below_pct.into(),
    );
    obj.insert("watch".into(), json!(watch_patterns(row)));
    obj.insert(
        "alert_if_never_pinged".into(),
        serde_json::from_str::<Value>(&row.extra)
            .is_ok_and(|extra| extra["alert_if_never_pinged"] == true)
            .into(),
    );
    obj.insert("notify_late".into(), row.notify_late.into());
    // A read-only key sees the checks depended on by their unique_key: a UUID is a ping URL.
    let depends_on: Vec<String> = serde_json::from_str(&row.depends_on).unwrap_or_default();
    let depends_on: Vec<String> = if read_only {
        depends_on.iter().map(|uuid| unique_key(uuid)).collect()
    } else {
        depends_on
    };
    obj.insert("depends_on".into(), json!(depends_on));
    obj.insert("run_history".into(), json!(live.history));
    out
}

async fn render(state: &AppState, row: &CheckRow, read_only: bool) -> Result<Value, ApiError> {
    let live = live_states(state, std::slice::from_ref(row))
        .await?
        .remove(0);
    let channels = state.store.check_channels(row.id).await?;
    Ok(check_json(state, row, &live, &channels, read_only))
}

fn cors_json(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// A new check with Healthchecks' defaults: a one-day period and one hour of grace.
pub fn new_check_row(project_id: i64, now: DateTime<Utc>) -> CheckRow {
    CheckRow {
        id: 0,
        uuid: Uuid::new_v4().to_string(),
        project_id,
        name: String::new(),
        slug: String::new(),
        tags: String::new(),
        descr: String::new(),
        kind: "simple".into(),
        timeout_secs: 86_400,
        grace_secs: 3_600,
        schedule: "* * * * *".into(),
        tz: "UTC".into(),
        max_runtime_secs: None,
        manual_resume: false,
        service: None,
        extra: "{}".into(),
        created_at: now.into(),
        notify_late: false,
        depends_on: "[]".into(),
        state: StateRow {
            status: Status::New,
            open_runs: "[]".into(),
            history: "{}".into(),
            ..StateRow::default()
        },
    }
}

/// `?create=1` on a slug URL: a check named after the slug, with every channel of the project.
pub async fn create_for_slug(
    state: &AppState,
    project_id: i64,
    slug: &str,
) -> Result<CheckRow, String> {
    let mut row = new_check_row(project_id, state.engine.now());
    row.name = slug.to_string();
    row.slug = slug.to_string();
    let row = state
        .engine
        .create_check(row)
        .await
        .map_err(|e| e.to_string())?;
    let channels = state
        .store
        .list_channels(project_id)
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<i64> = channels.iter().map(|c| c.id).collect();
    state
        .store
        .set_check_channels(row.id, &ids)
        .await
        .map_err(|e| e.to_string())?;
    Ok(row)
}

/// Resolves a `channels` value: `*` (all), `""` (none) or comma-separated UUIDs or names.
async fn resolve_channels(
    state: &AppState,
    project_id: i64,
    spec: &str,
) -> Result<Vec<i64>, ApiError> {
    let all = state.store.list_channels(project_id).await?;
    if spec == "*" {
        return Ok(all.iter().map(|c| c.id).collect());
    }
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    for item in spec.split(',') {
        if item.is_empty() {
            return Err(ApiError::BadRequest("empty channel identifier".into()));
        }
        let matches: Vec<&ChannelRow> = all
            .iter()
            .filter(|c| c.uuid == item || c.name == item)
            .collect();
        match matches.as_slice() {
            [one] => ids.push(one.id),
            [] => {
                return Err(ApiError::BadRequest(format!(
                    "invalid channel identifier: {item}"
                )));
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "non-unique channel identifier: {item}"
                )));
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Applies a validated spec to a check, stores it through the engine (which owns check
/// state) with its channels, and renders the result.
async fn save(
    state: &AppState,
    mut row: CheckRow,
    spec: &Spec,
    channels: Option<Vec<i64>>,
    create: bool,
) -> Result<Value, ApiError> {
    apply_spec(&mut row, spec)?;
    if spec.depends_on.as_ref().is_some_and(|d| !d.is_empty()) {
        let all = state.store.list_checks(row.project_id).await?;
        validate_dependencies(&all, &row)
            .map_err(|e| ApiError::BadRequest(format!("json validation error: {e}")))?;
    }
    let row = if create {
        state.engine.create_check(row).await?
    } else {
        state.engine.update_check(row).await?
    };
    if let Some(ids) = &channels {
        state.store.set_check_channels(row.id, ids).await?;
    }
    render(state, &row, false).await
}

/// Creates a check (`existing` is `None`) or changes one from a JSON spec with the API's own
/// rules and limits: the web UI's check form posts through here.
pub(crate) async fn save_from_spec(
    state: &AppState,
    project_id: i64,
    existing: Option<CheckRow>,
    body: &Value,
) -> Result<Value, ApiError> {
    let spec = Spec::parse(body)?;
    let channels = spec_channels(state, project_id, &spec).await?;
    match existing {
        Some(row) => save(state, row, &spec, channels, false).await,
        None => {
            if state.may_create(project_id, false).await?.is_err() {
                return Err(ApiError::ConflictWith(format!(
                    "the project has reached its limit of {} checks, or created too many \
                     in the last minute",
                    state.config.check_limit
                )));
            }
            let row = new_check_row(project_id, state.engine.now());
            save(state, row, &spec, channels, true).await
        }
    }
}

/// The channels a spec names, resolved before anything is saved (`None`: leave them).
async fn spec_channels(
    state: &AppState,
    project_id: i64,
    spec: &Spec,
) -> Result<Option<Vec<i64>>, ApiError> {
    match &spec.channels {
        Some(c) => Ok(Some(resolve_channels(state, project_id, c).await?)),
        None => Ok(None),
    }
}

/// Checks `row`'s `depends_on` against the project's checks `all` (`row` among them or new):
/// each must be another check of the project, and no chain of dependencies may lead back to
/// `row`. The error names the checks.
pub(crate) fn validate_dependencies(all: &[CheckRow], row: &CheckRow) -> Result<(), String> {
    let deps_of =
        |r: &CheckRow| -> Vec<String> { serde_json::from_str(&r.depends_on).unwrap_or_default() };
    let deps = deps_of(row);
    for dep in &deps {
        if *dep == row.uuid {
            return Err("depends_on: a check cannot depend on itself".into());
        }
        if !all.iter().any(|r| r.uuid == *dep) {
            return Err(format!("depends_on: no check `{dep}` in this project"));
        }
    }
    let graph = |uuid: &str| -> Vec<String> {
        if uuid == row.uuid {
            return deps.clone();
        }
        all.iter()
            .find(|r| r.uuid == uuid)
            .map(deps_of)
            .unwrap_or_default()
    };
    if let Some(cycle) = keepwatch_core::check::dependency_cycle(&row.uuid, &graph) {
        let name = |uuid: &String| {
            let found = all.iter().find(|r| r.uuid == *uuid);
            let found = if *uuid == row.uuid { Some(row) } else { found };
            match found {
                Some(r) if !r.name.is_empty() => r.name.clone(),
                _ => uuid.clone(),
            }
        };
        let path: Vec<String> = cycle.iter().map(name).collect();
        return Err(format!("depends_on makes a cycle: {}", path.join(" → ")));
    }
    Ok(())
}

/// Applies the fields present in a spec to a check row.
pub(crate) fn apply_spec(row: &mut CheckRow, spec: &Spec) -> Result<(), ApiError> {
    let mut extra: Map<String, Value> = serde_json::from_str(&row.extra).unwrap_or_default();
    if let Some(v) = &spec.name {
        row.name = v.clone();
        // v1 and v2 derive the slug from the name (an explicit slug still wins below).
        if super::api_version() < 3 {
            row.slug = slugify(v);
        }
    }
    if let Some(v) = &spec.slug {
        row.slug = v.clone();
    }
    if let Some(v) = &spec.tags {
        row.tags = v.clone();
    }
    if let Some(v) = &spec.desc {
        row.descr = v.clone();
    }
    if let Some(v) = spec.grace {
        row.grace_secs = v;
    }
    if let Some(v) = spec.manual_resume {
        row.manual_resume = v;
    }
    if let Some(v) = &spec.tz {
        row.tz = v.clone();
    }
    // A schedule wins over a timeout; the other column is left as it is (as Healthchecks).
    if let Some(schedule) = &spec.schedule {
        row.schedule = schedule.clone();
        row.kind = match Schedule::parse(schedule, &row.tz) {
            Ok(Schedule::OnCalendar { .. }) => "oncalendar".into(),
            _ => "cron".into(),
        };
    } else if let Some(timeout) = spec.timeout {
        row.kind = "simple".into();
        row.timeout_secs = timeout;
    }
    if row.kind != "simple"
        && let Err(e) = Schedule::parse(&row.schedule, &row.tz)
    {
        return Err(ApiError::BadSchedule {
            error: "json validation error: schedule is not a valid cron or OnCalendar expression"
                .into(),
            detail: e.to_string(),
        });
    }
    if let Some(v) = spec.max_runtime {
        row.max_runtime_secs = v;
    }
    if let Some(v) = &spec.service {
        row.service = v.clone();
    }
    // The deprecated `subject`/`subject_fail` first: they set the keywords and
    // `filter_subject`; `success_kw`/`failure_kw` given too then win (as in Healthchecks).
    if let Some(v) = &spec.subject {
        extra.insert("success_kw".into(), v.clone().into());
    }
    if let Some(v) = &spec.subject_fail {
        extra.insert("failure_kw".into(), v.clone().into());
    }
    if spec.subject.is_some() || spec.subject_fail.is_some() {
        let on = !extra_str(&extra, "success_kw").is_empty()
            || !extra_str(&extra, "failure_kw").is_empty();
        extra.insert("filter_subject".into(), on.into());
    }
    for (key, value) in [
        ("methods", &spec.methods),
        ("start_kw", &spec.start_kw),
        ("success_kw", &spec.success_kw),
        ("failure_kw", &spec.failure_kw),
    ] {
        if let Some(v) = value {
            extra.insert(key.into(), v.clone().into());
        }
    }
    for (key, value) in [
        ("filter_subject", spec.filter_subject),
        ("filter_body", spec.filter_body),
        ("filter_http_body", spec.filter_http_body),
        ("filter_default_fail", spec.filter_default_fail),
    ] {
        if let Some(v) = value {
            extra.insert(key.into(), v.into());
        }
    }
    if let Some(v) = spec.anomaly_volume_pct {
        extra.insert("anomaly_volume_pct".into(), v.into());
    }
    if let Some(v) = spec.anomaly_duration_pct {
        extra.insert("anomaly_duration_pct".into(), v.into());
    }
    if let Some(v) = spec.anomaly_short_pct {
        extra.insert("anomaly_short_pct".into(), v.into());
    }
    if let Some(v) = &spec.watch {
        extra.insert("watch".into(), json!(v));
    }
    if let Some(v) = spec.notify_late {
        row.notify_late = v;
    }
    if let Some(v) = &spec.depends_on {
        row.depends_on = json!(v).to_string();
    }
    match spec.alert_if_never_pinged {
        Some(true) => {
            extra.insert("alert_if_never_pinged".into(), true.into());
        }
        Some(false) => {
            extra.remove("alert_if_never_pinged");
        }
        None => {}
    }
    row.extra = Value::Object(extra).to_string();
    Ok(())
}

/// A slug from a name as Django's `slugify` makes it (Healthchecks' v1 and v2): accents
/// folded (NFKD, non-ASCII dropped), lower case, only letters, digits, `_`, `-` and
/// spaces kept, runs of spaces and dashes made one `-`, dashes and underscores trimmed.
pub fn slugify(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let ascii: String = name.nfkd().filter(char::is_ascii).collect();
    let kept: String = ascii
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-') || c.is_ascii_whitespace())
        .collect();
    let mut out = String::with_capacity(kept.len());
    let mut gap = false;
    for c in kept.trim().chars() {
        if c == '-' || c.is_ascii_whitespace() {
            gap = true;
        } else {
            if gap {
                out.push('-');
            }
            gap = false;
            out.push(c);
        }
    }
    if gap {
        out.push('-');
    }
    out.trim_matches(|c| c == '-' || c == '_').to_string()
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    tag: Vec<String>,
    slug: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    axum_extra_query: RawQuery,
    ReadKey(scope): ReadKey,
) -> ApiResult {
    let query = axum_extra_query.parse();
    let rows = state.store.list_checks(scope.project_id).await?;
    let rows: Vec<CheckRow> = rows
        .into_iter()
        .filter(|row| {
            let tags: Vec<&str> = row.tags.split(' ').collect();
            query.tag.iter().all(|t| tags.contains(&t.as_str()))
                && query
                    .slug
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .is_none_or(|s| row.slug == s)
        })
        .collect();
    let states = live_states(&state, &rows).await?;
    let mut checks = Vec::with_capacity(rows.len());
    for (row, live) in rows.iter().zip(&states) {
        let channels = if scope.read_only {
            Vec::new()
        } else {
            state.store.check_channels(row.id).await?
        };
        checks.push(check_json(&state, row, live, &channels, scope.read_only));
    }
    Ok(read_elsewhere(
        &state,
        cors_json(StatusCode::OK, json!({ "checks": checks })),
    ))
}

/// The raw query string, parsed so that `tag` may repeat (`?tag=a&tag=b`).
pub struct RawQuery(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RawQuery {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RawQuery(parts.uri.query().map(str::to_string)))
    }
}

impl RawQuery {
    fn pairs(&self) -> Vec<(String, String)> {
        serde_urlencoded_pairs(self.0.as_deref().unwrap_or(""))
    }

    fn parse(&self) -> ListQuery {
        let mut query = ListQuery {
            tag: Vec::new(),
            slug: None,
        };
        for (key, value) in self.pairs() {
            match key.as_str() {
                "tag" => query.tag.push(value),
                "slug" => query.slug = Some(value),
                _ => {}
            }
        }
        query
    }

    fn get(&self, name: &str) -> Option<String> {
        self.pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

pub async fn create(
    State(state): State<AppState>,
    FullKeyJson { scope, body }: FullKeyJson,
) -> ApiResult {
    let body = body.unwrap_or_else(|| json!({}));
    let spec = Spec::parse(&body)?;
    let channels = spec_channels(&state, scope.project_id, &spec).await?;
    // `unique`: update the first check that equals the request on every listed field.
    if let Some(fields) = spec.unique.as_ref().filter(|f| !f.is_empty())
        && fields.iter().all(|f| body.get(f).is_some())
    {
        let existing = state.store.list_checks(scope.project_id).await?;
        let found = existing.into_iter().find(|row| {
            fields.iter().all(|f| match f.as_str() {
                "name" => Some(row.name.as_str()) == spec.name.as_deref(),
                "slug" => Some(row.slug.as_str()) == spec.slug.as_deref(),
                "tags" => Some(row.tags.as_str()) == spec.tags.as_deref(),
                "timeout" => Some(row.timeout_secs) == spec.timeout,
                "grace" => Some(row.grace_secs) == spec.grace,
                _ => false,
            })
        });
        if let Some(row) = found {
            let saved = save(&state, row, &spec, channels, false).await?;
            return Ok(cors_json(StatusCode::OK, saved));
        }
    }
    // keepwatch: a UUID chosen by the client (checks moved from another server keep their
    // ping URLs) must be free, in every project.
    if let Some(uuid) = &spec.uuid
        && state.store.check_by_uuid(uuid).await?.is_some()
    {
        return Err(ApiError::ConflictWith(format!(
            "a check with uuid {uuid} already exists"
        )));
    }
    // Over the limit or the rate: Healthchecks' 403 with an empty body.
    if state.may_create(scope.project_id, false).await?.is_err() {
        return Err(ApiError::Forbidden);
    }
    let mut row = new_check_row(scope.project_id, state.engine.now());
    if let Some(uuid) = &spec.uuid {
        row.uuid = uuid.clone();
    }
    let saved = save(&state, row, &spec, channels, true).await?;
    Ok(cors_json(StatusCode::CREATED, saved))
}

pub async fn get(
    State(state): State<AppState>,
    Path(code): Path<String>,
    ReadKey(scope): ReadKey,
) -> ApiResult {
    let row = find_check(&state, scope.project_id, &code, true).await?;
    let rendered = render(&state, &row, scope.read_only).await?;
    Ok(read_elsewhere(&state, cors_json(StatusCode::OK, rendered)))
}

pub async fn update(
    State(state): State<AppState>,
    Path(code): Path<String>,
    FullKeyJson { scope, body }: FullKeyJson,
) -> ApiResult {
    if is_unique_key(&code) {
        return Ok(StatusCode::METHOD_NOT_ALLOWED.into_response());
    }
    let body = body.unwrap_or_else(|| json!({}));
    let row = find_check(&state, scope.project_id, &code, false).await?;
    let spec = Spec::parse(&body)?;
    if spec.uuid.as_ref().is_some_and(|uuid| *uuid != row.uuid) {
        return Err(ApiError::BadRequest(
            "json validation error: uuid cannot be changed".into(),
        ));
    }
    let channels = spec_channels(&state, scope.project_id, &spec).await?;
    Ok(cors_json(
        StatusCode::OK,
        save(&state, row, &spec, channels, false).await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(code): Path<String>,
    FullKey(scope): FullKey,
) -> ApiResult {
    if is_unique_key(&code) {
        return Ok(StatusCode::METHOD_NOT_ALLOWED.into_response());
    }
    let row = find_check(&state, scope.project_id, &code, false).await?;
    let mut rendered = render(&state, &row, false).await?;
    state.engine.delete_check(row.id).await?;
    rendered["channels"] = "".into();
    Ok(cors_json(StatusCode::OK, rendered))
}

pub async fn pause(
    State(state): State<AppState>,
    Path(code): Path<String>,
    FullKeyJson { scope, .. }: FullKeyJson,
) -> ApiResult {
    let row = find_check(&state, scope.project_id, &code, false).await?;
    state.engine.pause(row.id).await?;
    Ok(cors_json(
        StatusCode::OK,
        render(&state, &row, false).await?,
    ))
}

pub async fn resume(
    State(state): State<AppState>,
    Path(code): Path<String>,
    FullKeyJson { scope, .. }: FullKeyJson,
) -> ApiResult {
    let row = find_check(&state, scope.project_id, &code, false).await?;
    if !state.engine.resume(row.id).await? {
        // Healthchecks answers this one as plain text under Django's default content type.
        return Ok((
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "check is not paused",
        )
            .into_response());
    }
    Ok(cors_json(
        StatusCode::OK,
        render(&state, &row, false).await?,
    ))
}

pub async fn pings(
    State(state): State<AppState>,
    Path(code): Path<String>,
    FullKey(scope): FullKey,
) -> ApiResult {
    let row = find_check(&state, scope.project_id, &code, false).await?;
    let head = live_states(&state, std::slice::from_ref(&row))
        .await?
        .remove(0)
        .last_seq;
    let pings = state
        .store
        .list_pings(row.id, head, state.config.ping_log_limit)
        .await?;
    let site = &state.config.site_url;
    let pings: Vec<Value> = pings
        .iter()
        .map(|p| {
            let kind = keepwatch_core::check::PingKind::from_code(&p.kind).map_or("success", |k| k.api_type());
            let mut ping = json!({
                "type": kind,
                "date": p.at.to_datetime().format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
                "n": p.n,
                "scheme": p.scheme,
                "remote_addr": p.remote_addr,
                "method": p.method,
                "ua": p.ua,
                "rid": p.rid,
                "body_url": p.body.as_ref().map(|_| format!("{site}/api/v3/checks/{}/pings/{}/body", row.uuid, p.n)),
            });
            let obj = ping.as_object_mut().expect("object");
            if let Some(ms) = p.duration_ms {
                obj.insert("duration".into(), json!(ms as f64 / 1000.0));
            }
            // keepwatch's own fields.
            obj.insert("exit_status".into(), json!(keepwatch_core::check::PingKind::from_code(&p.kind).and_then(|k| k.exit_status())));
            obj.insert("host".into(), json!(p.host));
            obj.insert("pid".into(), json!(p.pid));
            obj.insert("volume".into(), json!(p.volume));
            obj.insert("body_truncated".into(), json!(p.body_truncated));
            ping
        })
        .collect();
    Ok(cors_json(StatusCode::OK, json!({ "pings": pings })))
}

pub async fn ping_body(
    State(state): State<AppState>,
    Path((code, n)): Path<(String, i64)>,
    FullKey(scope): FullKey,
) -> ApiResult {
    let row = find_check(&state, scope.project_id, &code, false).await?;
    let head = live_states(&state, std::slice::from_ref(&row))
        .await?
        .remove(0)
        .last_seq;
    let limit = state.config.ping_log_limit;
    let ping = state
        .store
        .ping(row.id, head, limit, n)
        .await?
        .ok_or(ApiError::NotFoundEmpty)?;
    let body = ping
        .body
        .filter(|b| !b.is_empty())
        .ok_or(ApiError::NotFoundEmpty)?;
    Ok(([(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

pub async fn flips(
    State(state): State<AppState>,
    Path(code): Path<String>,
    query: RawQuery,
    ReadKey(scope): ReadKey,
) -> ApiResult {
    let row = find_check(&state, scope.project_id, &code, true).await?;
    let int = |name: &str, max: i64| -> Result<Option<i64>, ApiError> {
        match query.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|v| (0..=max).contains(v))
                .map(Some)
                .ok_or(ApiError::BadQuery),
        }
    };
    let start = int("start", 10_000_000_000)?;
    let end = int("end", 10_000_000_000)?;
    let seconds = int("seconds", 31_536_000)?;
    let now = state.engine.now();
    let mut from = start.map_or(0, |s| s * 1_000_000);
    if let Some(s) = seconds.filter(|s| *s > 0) {
        from = from.max(Timestamp::from(now).as_micros() - s * 1_000_000);
    }
    let to = end.map_or(i64::MAX, |e| e * 1_000_000 - 1);
    let (from, to) = (Timestamp::from_micros(from), Timestamp::from_micros(to));
    let flips = state.store.list_flips(row.id, from, to).await?;
    let flips: Vec<Value> = flips
        .iter()
        .map(|f| json!({ "timestamp": iso_seconds(f.at.to_datetime()), "up": i32::from(f.new_status == Status::Up) }))
        .collect();
    Ok(cors_json(StatusCode::OK, json!({ "flips": flips })))
}

/// keepwatch: a check's notifications with every delivery attempt.
pub async fn notifications(
    State(state): State<AppState>,
    Path(code): Path<String>,
    ReadKey(scope): ReadKey,
) -> ApiResult {
    // A read-only key is shown unique keys, not UUIDs: it names the check by one.
    let row = find_check(&state, scope.project_id, &code, scope.read_only).await?;
    let rows = state.store.list_notifications(row.id, 100).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.outbox_id).collect();
    let attempts = state.store.list_attempts(&ids).await?;
    let out: Vec<Value> = rows
        .iter()
        .map(|n| {
            let tries: Vec<Value> = attempts
                .iter()
                .filter(|a| a.outbox_id == n.outbox_id)
                .map(|a| json!({ "at": a.at.to_datetime().to_rfc3339(), "ok": a.ok, "detail": a.detail, "took_ms": a.took_ms }))
                .collect();
            json!({
                "id": n.outbox_id,
                "event": n.event_kind,
                "event_at": n.event_at.to_datetime().to_rfc3339(),
                "channel": n.channel_uuid,
                "channel_name": n.channel_name,
                "state": n.state,
                "attempts": n.attempts,
                "next_attempt_at": (n.state == "pending").then(|| n.next_attempt_at.to_datetime().to_rfc3339()),
                "last_error": n.last_error,
                "text": n.text,
                "attempt_log": tries,
            })
        })
        .collect();
    let mut body = json!({ "notifications": out });
    if scope.read_only {
        crate::redact::json(&mut body);
    }
    Ok(cors_json(StatusCode::OK, body))
}

/// `GET /api/v3/checks/<uuid>/events/` (keepwatch): the check's last 100 events, newest
/// first: `down`, `failed`, `hung`, `late`, `overlap`, `anomaly`, `up`, `never_reported`;
/// one held back because a check it depends on was down carries `suppressed` (the reason),
/// one released later `released`.
pub async fn events(
    State(state): State<AppState>,
    Path(code): Path<String>,
    ReadKey(scope): ReadKey,
) -> ApiResult {
    let row = find_check(&state, scope.project_id, &code, scope.read_only).await?;
    let events = state.store.check_events(row.id, &[], 100).await?;
    let out: Vec<Value> = events
        .into_iter()
        .map(|(id, kind, at, payload)| {
            let payload: Value = serde_json::from_str(&payload).unwrap_or_default();
            let mut event = json!({
                "id": id,
                "kind": kind,
                "at": at.to_datetime().to_rfc3339(),
            });
            for key in ["down_at", "exit_status"] {
                if !payload[key].is_null() {
                    event[key] = payload[key].clone();
                }
            }
            for key in ["suppressed", "released"] {
                if let Some(reason) = payload[key]["reason"].as_str() {
                    event[key] = json!(reason);
                    event[format!("{key}_by")] = payload[key]["by"].clone();
                }
            }
            event
        })
        .collect();
    let mut body = json!({ "events": out });
    if scope.read_only {
        crate::redact::json(&mut body);
    }
    Ok(cors_json(StatusCode::OK, body))
}

/// On an instance that does not own the checks (several instances on PostgreSQL), check
/// states are the owner's last checkpoint, up to a second behind: the answer says so, and
/// names the owner, in `X-Keepwatch-State: checkpoint; owner=<instance>`.
fn read_elsewhere(state: &AppState, mut response: Response) -> Response {
    let Some((_, leases)) = state.engine.leases() else {
        return response;
    };
    let Some(deadlines) = leases.iter().find(|l| l.work == "deadlines") else {
        return response;
    };
    if deadlines.mine {
        return response;
    }
    let owner = deadlines.holder.as_deref().unwrap_or("none");
    if let Ok(value) = format!("checkpoint; owner={owner}").parse() {
        response.headers_mut().insert("x-keepwatch-state", value);
    }
    response
}
