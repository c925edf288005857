//! Healthchecks' Prometheus endpoint: a project's checks as gauges, read with the project's
//! read-only API key, in the URL (`/projects/<uuid>/metrics/<key>`, and the newer
//! `/projects/<uuid>/checks/metrics/<key>`) or as `Authorization: Bearer <key>`
//! (`/projects/<uuid>/metrics/`). Names, labels, HELP and TYPE lines, order and status codes
//! are Healthchecks' (v3.13, `hc/integrations/prometheus/views.py`): 400 for a key that is not
//! 32 characters, 403 for one that is not a project's read-only key, 401 without a Bearer
//! header. As in Healthchecks the project is the key's; the UUID in the path only has to be
//! a UUID, so a scrape configuration moves from Healthchecks by changing its host.

use std::collections::BTreeSet;
use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keepwatch_engine::live::rules_from_row;

use crate::api::checks::live_states;
use crate::error::ApiError;
use crate::redact::unique_key;
use crate::state::AppState;

/// `GET /projects/<uuid>/metrics/<key>` and `/projects/<uuid>/checks/metrics/<key>`.
pub async fn with_key(
    State(state): State<AppState>,
    Path((code, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    // Django's `slug` converter: other keys match no route.
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::NotFound);
    }
    metrics(&state, &code, &key).await
}

/// `GET /projects/<uuid>/metrics/` with `Authorization: Bearer <key>`.
pub async fn with_bearer(
    State(state): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(key) = value.strip_prefix("Bearer ") else {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    };
    metrics(&state, &code, key).await
}

async fn metrics(state: &AppState, code: &str, key: &str) -> Result<Response, ApiError> {
    // Django's `uuid` converter: the path matches only with a UUID there.
    if code.len() != 36 || uuid::Uuid::parse_str(code).is_err() {
        return Err(ApiError::NotFound);
    }
    if key.len() != 32 {
        return Ok(StatusCode::BAD_REQUEST.into_response());
    }
    let project_id = match state.store.api_key_scope(key).await? {
        Some(scope) if scope.read_only => scope.project_id,
        _ => return Ok(StatusCode::FORBIDDEN.into_response()),
    };
    let rows = state.store.list_checks(project_id).await?;
    let views = live_states(state, &rows).await?;
    let now = state.engine.now();
    let mut checks = Vec::with_capacity(rows.len());
    for (row, view) in rows.iter().zip(&views) {
        let status = match view
            .rules
            .clone()
            .or_else(|| rules_from_row(row).ok().map(std::sync::Arc::new))
        {
            Some(rules) => view.state.api_status(&rules, now),
            None => "new",
        };
        let labels = format!(
            "{{name=\"{}\", tags=\"{}\", unique_key=\"{}\"}}",
            escape(&row.name),
            escape(&row.tags),
            unique_key(&row.uuid)
        );
        checks.push((labels, status, !view.state.open_runs.is_empty()));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain")],
        render(&rows, &checks),
    )
        .into_response())
}

/// Healthchecks' label value escaping: backslash, double quote, newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text, as Healthchecks writes it; `checks` are (labels, status, started) by row.
fn render(rows: &[keepwatch_store::CheckRow], checks: &[(String, &str, bool)]) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&str, bool) -> u8| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, status, started) in checks {
            let _ = writeln!(out, "{name}{labels} {}", value(status, *started));
        }
    };
    gauge(
        &mut out,
        "hc_check_up",
        "Whether the check is currently up (1 for yes, 0 for no).",
        &|status, _| u8::from(status != "down"),
    );
    out.push('\n');
    gauge(
        &mut out,
        "hc_check_started",
        "Whether the check is currently started (1 for yes, 0 for no).",
        &|_, started| u8::from(started),
    );
    out.push('\n');
    gauge(
        &mut out,
        "hc_check_grace",
        "Whether the check is currently in the grace period (1 for yes, 0 for no).",
        &|status, _| u8::from(status == "grace"),
    );
    out.push('\n');
    gauge(
        &mut out,
        "hc_check_paused",
        "Whether the check is currently paused (1 for yes, 0 for no).",
        &|status, _| u8::from(status == "paused"),
    );
    let (mut all_tags, mut down_tags, mut down) = (BTreeSet::new(), BTreeSet::new(), 0);
    for (row, (_, status, _)) in rows.iter().zip(checks) {
        let tags = row.tags.split(' ').map(str::trim).filter(|t| !t.is_empty());
        all_tags.extend(tags.clone());
        if *status == "down" {
            down += 1;
            down_tags.extend(tags);
        }
    }
    out.push('\n');
    out.push_str(
        "# HELP hc_tag_up Whether all checks with this tag are up (1 for yes, 0 for no).\n",
    );
    out.push_str("# TYPE hc_tag_up gauge\n");
    for tag in &all_tags {
        let _ = writeln!(
            out,
            "hc_tag_up{{tag=\"{}\"}} {}",
            escape(tag),
            u8::from(!down_tags.contains(tag))
        );
    }
    out.push('\n');
    out.push_str("# HELP hc_checks_total The total number of checks.\n");
    out.push_str("# TYPE hc_checks_total gauge\n");
    let _ = writeln!(out, "hc_checks_total {}", rows.len());
    out.push('\n');
    out.push_str("# HELP hc_checks_down_total The number of checks currently down.\n");
    out.push_str("# TYPE hc_checks_down_total gauge\n");
    let _ = writeln!(out, "hc_checks_down_total {down}");
    out
}
