//! Readiness in the web UI: the drill (who is paged when, if an alert fires at a given
//! time), the week sweep as a heat map of days × hours, and the audit's findings linked to
//! the objects to fix. Both run the same code as `keepwatch drill` and `keepwatch audit`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Datelike, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use keepwatch_core::alert::drill::{Outcome, Sweep};
use keepwatch_core::audit::Settings;
use serde::Deserialize;

use super::checks::absolute;
use super::session::UiUser;
use super::{Frame, error_page, page, store_error};
use crate::api::drill::{DrillQuery, compute};
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct DrillForm {
    #[serde(default)]
    service: String,
    #[serde(default)]
    check: String,
    #[serde(default)]
    event: String,
    /// `datetime-local`, read in `tz`.
    #[serde(default)]
    at: String,
    #[serde(default)]
    tz: String,
    #[serde(default)]
    ack_after: String,
    /// `week` for the sweep.
    #[serde(default)]
    sweep: String,
}

pub struct EntryLine {
    pub at: String,
    pub after: String,
    pub kind: String,
    pub text: String,
    pub high: bool,
}

/// One cell of the heat map: minutes to the first high-urgency page from that start.
pub struct Cell {
    pub label: String,
    pub class: &'static str,
    pub title: String,
}

#[derive(Template)]
#[template(path = "ui/drill.html")]
struct DrillPage {
    title: String,
    frame: Frame,
    services: Vec<String>,
    form: DrillForm,
    error: String,
    summary: Vec<String>,
    entries: Vec<EntryLine>,
    /// Day names and 24 cells each.
    heat: Vec<(String, Vec<Cell>)>,
    failures: Vec<String>,
}

/// The week sweep as 7 rows (days, in `tz`) × 24 columns (hours): each cell the worst start
/// in that hour (no high page at all, or minutes to it).
fn heat_map(sweep: &Sweep, tz: Tz, high_within: i64) -> Vec<(String, Vec<Cell>)> {
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut worst: Vec<Vec<Option<Option<i64>>>> = vec![vec![None; 24]; 7];
    for row in &sweep.rows {
        let local = row.at.with_timezone(&tz);
        let day = local.weekday().num_days_from_monday() as usize;
        let hour = local.hour() as usize;
        let minutes = row.first_high_page.as_ref().map(|h| h.after_minutes);
        let cell = &mut worst[day][hour];
        *cell = match (*cell, minutes) {
            (None, m) => Some(m),
            (Some(None), _) | (Some(_), None) => Some(None),
            (Some(Some(a)), Some(b)) => Some(Some(a.max(b))),
        };
    }
    days.iter()
        .zip(worst)
        .map(|(day, hours)| {
            let cells = hours
                .into_iter()
                .enumerate()
                .map(|(hour, cell)| match cell {
                    None => Cell {
                        label: String::new(),
                        class: "",
                        title: format!("{day} {hour:02}:00: no start"),
                    },
                    Some(None) => Cell {
                        label: "–".into(),
                        class: "h-none",
                        title: format!("{day} {hour:02}:00: no high-urgency page"),
                    },
                    Some(Some(m)) => Cell {
                        label: m.to_string(),
                        class: if m <= high_within { "h-good" } else { "h-slow" },
                        title: format!("{day} {hour:02}:00: first high-urgency page after {m} min"),
                    },
                })
                .collect();
            (day.to_string(), cells)
        })
        .collect()
}

/// `GET /ui/p/<project>/drill`: the form, and with `service` or `check` the drill.
pub async fn drill(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(form): Query<DrillForm>,
    user: UiUser,
) -> Response {
    let run = async {
        let member = user.project(&state, &project).await?;
        let frame = Frame::new(&state, &user, &member, "drill").await?;
        let applied = state
            .store
            .oncall(member.project_id)
            .await
            .map_err(store_error)?;
        let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
        let mut services: Vec<String> = config
            .map(|c| c.services.keys().cloned().collect())
            .unwrap_or_default();
        services.sort();
        let tz: Tz = form.tz.parse().unwrap_or(Tz::UTC);
        let mut view = DrillPage {
            title: format!("Drill · {project}"),
            frame,
            services,
            error: String::new(),
            summary: Vec::new(),
            entries: Vec::new(),
            heat: Vec::new(),
            failures: Vec::new(),
            form: DrillForm::default(),
        };
        if form.service.is_empty() && form.check.is_empty() {
            view.form = DrillForm {
                tz: "UTC".into(),
                event: "down".into(),
                ..form
            };
            return Ok::<_, Response>(page(StatusCode::OK, &view));
        }
        let at = if form.at.is_empty() {
            None
        } else {
            match NaiveDateTime::parse_from_str(&form.at, "%Y-%m-%dT%H:%M")
                .ok()
                .and_then(|t| tz.from_local_datetime(&t).earliest())
            {
                Some(t) => Some(t.with_timezone(&Utc).to_rfc3339()),
                None => {
                    view.error = format!("`{}` is not a date and time", form.at);
                    view.form = form;
                    return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, &view));
                }
            }
        };
        let query = DrillQuery {
            service: Some(form.service.clone()).filter(|s| !s.is_empty()),
            check: Some(form.check.clone()).filter(|s| !s.is_empty()),
            event: Some(form.event.clone()).filter(|s| !s.is_empty()),
            at,
            ack_after_minutes: form.ack_after.trim().parse().ok(),
            sweep: (form.sweep == "week").then(|| "week".to_string()),
            fail_if_no_high_within_minutes: Some(30),
            ..DrillQuery::default()
        };
        match compute(&state, member.project_id, &query).await {
            Err(e) => {
                view.error = e.message();
                view.form = form;
                return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, &view));
            }
            Ok((Outcome::Drill(report), failures)) => {
                view.summary = vec![
                    format!(
                        "Alert on service {} at {} ({} urgency: {}).",
                        report.service,
                        absolute(report.at, tz),
                        report.urgency,
                        report.urgency_reason
                    ),
                    match &report.first_page {
                        Some(hit) => format!(
                            "First page: {} by {} after {} min.",
                            hit.person, hit.contact, hit.after_minutes
                        ),
                        None => "Nobody is paged.".into(),
                    },
                    match &report.first_high_page {
                        Some(hit) => format!(
                            "First high-urgency page: {} by {} after {} min.",
                            hit.person, hit.contact, hit.after_minutes
                        ),
                        None => match report.next_high_urgency_at {
                            Some(next) => format!(
                                "No high-urgency page; the service's rule gives high urgency next at {}.",
                                absolute(next, tz)
                            ),
                            None => "No high-urgency page.".into(),
                        },
                    },
                ];
                view.entries = report
                    .entries
                    .iter()
                    .map(|e| EntryLine {
                        at: absolute(e.at, tz),
                        after: format!("+{} min", (e.at - report.at).num_minutes()),
                        kind: e.kind.replace('_', " "),
                        text: e.text.clone(),
                        high: e.urgency.is_some_and(|u| u.to_string() == "high"),
                    })
                    .collect();
                view.failures = failures;
            }
            Ok((Outcome::Sweep(sweep), failures)) => {
                view.summary = vec![
                    format!(
                        "Week sweep of service {}: {} starts, {} with no high-urgency page within {} h.",
                        sweep.service,
                        sweep.rows.len(),
                        sweep.no_high,
                        sweep.horizon_minutes / 60
                    ),
                    match &sweep.worst {
                        Some(w) => format!(
                            "Worst: an alert at {} — {}.",
                            absolute(w.at, tz),
                            match &w.first_high_page {
                                Some(h) =>
                                    format!("first high-urgency page after {} min", h.after_minutes),
                                None => "nobody is paged at high urgency".into(),
                            }
                        ),
                        None => String::new(),
                    },
                    match sweep.median_high_minutes {
                        Some(m) => format!("Median time to the first high-urgency page: {m} min."),
                        None => "Half the week or more gets no high-urgency page.".into(),
                    },
                ];
                view.heat = heat_map(&sweep, tz, 30);
                view.failures = failures;
            }
        }
        view.form = form;
        Ok(page(StatusCode::OK, &view))
    };
    match run.await {
        Ok(r) | Err(r) => r,
    }
}

pub struct FindingLine {
    pub id: String,
    pub severity: String,
    pub summary: String,
    pub why: String,
    pub fix: String,
    /// (label, link or empty)
    pub objects: Vec<(String, String)>,
    pub accepted: String,
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    title: String,
    frame: Frame,
    applied: bool,
    at: String,
    findings: Vec<FindingLine>,
    accepted: Vec<FindingLine>,
}

/// Where to fix an audit object: its check page or its entry on the on-call page.
fn object_link(base: &str, object: &str, checks: &[keepwatch_store::CheckRow]) -> String {
    let Some((kind, name)) = object.split_once(':') else {
        return String::new();
    };
    match kind {
        "check" => checks
            .iter()
            .find(|c| c.uuid == name || c.slug == name)
            .map(|c| format!("{base}/checks/{}", c.uuid))
            .unwrap_or_default(),
        "schedule" => format!("{base}/oncall/#schedule-{name}"),
        "person" => format!("{base}/oncall/#person-{name}"),
        "contact" => format!(
            "{base}/oncall/#person-{}",
            name.split('/').next().unwrap_or(name)
        ),
        "policy" | "service" => format!("{base}/oncall/"),
        _ => String::new(),
    }
}

/// `GET /ui/p/<project>/audit`.
pub async fn audit(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: UiUser,
) -> Response {
    let run = async {
        let member = user.project(&state, &project).await?;
        let frame = Frame::new(&state, &user, &member, "audit").await?;
        let Some(applied) = state
            .store
            .oncall(member.project_id)
            .await
            .map_err(store_error)?
        else {
            return Ok::<_, Response>(page(
                StatusCode::OK,
                &AuditPage {
                    title: format!("Audit · {project}"),
                    frame,
                    applied: false,
                    at: String::new(),
                    findings: Vec::new(),
                    accepted: Vec::new(),
                },
            ));
        };
        let now = state.engine.now();
        let report = crate::api::audit::run(
            &state.store,
            member.project_id,
            applied,
            now,
            Settings::default(),
        )
        .await
        .map_err(|e| error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message()))?;
        let checks = state
            .store
            .list_checks(member.project_id)
            .await
            .map_err(store_error)?;
        let base = frame.base();
        let lines = |findings: &[keepwatch_core::audit::Finding]| -> Vec<FindingLine> {
            findings
                .iter()
                .map(|f| FindingLine {
                    id: f.id.clone(),
                    severity: f.severity.as_str().to_string(),
                    summary: f.summary.clone(),
                    why: f.why.clone(),
                    fix: f.fix.clone(),
                    objects: f
                        .objects
                        .iter()
                        .map(|o| (o.clone(), object_link(&base, o, &checks)))
                        .collect(),
                    accepted: f
                        .accepted
                        .as_ref()
                        .map(|a| {
                            format!(
                                "accepted until {}: {}",
                                absolute(a.until, Tz::UTC),
                                a.reason
                            )
                        })
                        .unwrap_or_default(),
                })
                .collect()
        };
        let view = AuditPage {
            title: format!("Audit · {project}"),
            applied: true,
            at: absolute(report.at, Tz::UTC),
            findings: lines(&report.findings),
            accepted: lines(&report.accepted),
            frame,
        };
        Ok(page(StatusCode::OK, &view))
    };
    match run.await {
        Ok(r) | Err(r) => r,
    }
}
