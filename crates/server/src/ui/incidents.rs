//! Incidents in the web UI: the list (with a declare form), and one incident with the
//! countdown to its next due update, the update composer (with "no news"), the owner, the
//! stakeholders and what each was sent, the timeline, the all-clear, reopen, notes and the
//! postmortem export. Everything goes through the engine's incident facade, as the API does.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use keepwatch_core::incident::{IncidentStatus, Severity};
use keepwatch_core::user::Role;
use keepwatch_engine::incidents::{Declare, Update};
use keepwatch_store::IncidentRow;
use serde::Deserialize;

use super::checks::{absolute, relative};
use super::session::UiUser;
use super::{FormFields, Frame, either, engine_error, error_page, page, store_error};
use crate::state::AppState;

pub struct IncidentLine {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub owner: String,
    pub declared: String,
    /// "in 12 min" / "overdue by 5 min" / "" (no cadence).
    pub due: String,
    pub overdue: bool,
    /// RFC 3339 of the next due update, for the live countdown.
    pub due_at: String,
}

fn line(row: &IncidentRow, now: DateTime<Utc>) -> IncidentLine {
    let due = row.next_update_at.map(DateTime::<Utc>::from);
    IncidentLine {
        id: row.id,
        title: row.title.clone(),
        severity: row.severity.as_str().to_uppercase(),
        status: row.status.to_string(),
        owner: row.owner.clone(),
        declared: relative(row.declared_at.into(), now),
        due: due
            .map(|d| {
                if d < now {
                    format!("overdue by {}", relative(now, d).trim_start_matches("in "))
                } else {
                    relative(d, now)
                }
            })
            .unwrap_or_default(),
        overdue: due.is_some_and(|d| d < now),
        due_at: due.map(|d| d.to_rfc3339()).unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "ui/incidents.html")]
struct IncidentsPage {
    title: String,
    frame: Frame,
    open: Vec<IncidentLine>,
    resolved: Vec<IncidentLine>,
    people: Vec<String>,
    person: String,
    error: String,
}

async fn people(state: &AppState, project_id: i64) -> Result<Vec<String>, Response> {
    let applied = state.store.oncall(project_id).await.map_err(store_error)?;
    let mut ids: Vec<String> = applied
        .as_deref()
        .and_then(|a| a.config.as_ref().ok())
        .map(|c| c.people.keys().cloned().collect())
        .unwrap_or_default();
    ids.sort();
    Ok(ids)
}

/// `GET /ui/p/<project>/incidents/`.
pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: UiUser,
) -> Response {
    list_page(&state, &project, &user, StatusCode::OK, "").await
}

async fn list_page(
    state: &AppState,
    project: &str,
    user: &UiUser,
    status: StatusCode,
    error: &str,
) -> Response {
    let run = async {
        let member = user.project(state, project).await?;
        let frame = Frame::new(state, user, &member, "incidents").await?;
        let now = state.engine.now();
        let open = state
            .store
            .list_incidents(member.project_id, Some("open"), 200)
            .await
            .map_err(store_error)?;
        let resolved = state
            .store
            .list_incidents(member.project_id, Some("resolved"), 50)
            .await
            .map_err(store_error)?;
        Ok::<_, Response>(page(
            status,
            &IncidentsPage {
                title: format!("Incidents · {project}"),
                frame,
                open: open.iter().map(|r| line(r, now)).collect(),
                resolved: resolved.iter().map(|r| line(r, now)).collect(),
                people: people(state, member.project_id).await?,
                person: user.session.user.person.clone(),
                error: error.to_string(),
            },
        ))
    };
    either(run.await)
}

/// `POST /ui/p/<project>/incidents/`: declares an incident by hand.
pub async fn declare(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: UiUser,
    axum::Form(fields): FormFields,
) -> Response {
    let run = async {
        let member = user
            .may_post(
                &state,
                &project,
                &fields,
                Role::can_respond,
                "declare incidents",
            )
            .await?;
        let field = |name: &str| {
            fields
                .get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let declared = state
            .engine
            .incidents()
            .declare(Declare {
                project_id: member.project_id,
                title: field("title"),
                severity: field("severity").and_then(|s| Severity::parse_loose(&s)),
                status: None,
                // Whoever declares owns it, unless they name someone (or are nobody in the
                // file: then the service's policy picks).
                owner: field("owner")
                    .or_else(|| Some(user.session.user.person.clone()).filter(|p| !p.is_empty())),
                impact: field("impact"),
                service: field("service"),
                alerts: field("alert")
                    .and_then(|a| a.parse().ok())
                    .into_iter()
                    .collect(),
                checks: Vec::new(),
                groups: None,
                extra: Vec::new(),
                update_every: None,
                message: None,
                who: user.acting(),
            })
            .await;
        match declared {
            Ok(row) => {
                Ok(Redirect::to(&format!("/ui/p/{project}/incidents/{}", row.id)).into_response())
            }
            Err(e) => Ok(list_page(
                &state,
                &project,
                &user,
                StatusCode::UNPROCESSABLE_ENTITY,
                &e.to_string(),
            )
            .await),
        }
    };
    either(run.await)
}

pub struct LogLine {
    pub at: String,
    pub kind: String,
    pub who: String,
    pub status: String,
    pub text: String,
    pub late: bool,
}

pub struct SentLine {
    pub to: String,
    pub state: String,
    pub when: String,
    pub error: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "ui/incident.html")]
struct IncidentPage {
    title: String,
    frame: Frame,
    incident: IncidentLine,
    resolved: bool,
    impact: String,
    service: String,
    groups: String,
    cadence: String,
    stakeholder_page: String,
    statuses: Vec<&'static str>,
    people: Vec<String>,
    log: Vec<LogLine>,
    sent: Vec<SentLine>,
    error: String,
}

/// `GET /ui/p/<project>/incidents/<id>`.
pub async fn detail(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, String)>,
    user: UiUser,
) -> Response {
    detail_page(&state, &project, &id, &user, StatusCode::OK, "").await
}

async fn own(state: &AppState, project_id: i64, id: &str) -> Result<IncidentRow, Response> {
    let id: i64 = id
        .parse()
        .map_err(|_| error_page(StatusCode::NOT_FOUND, "No such incident."))?;
    state
        .engine
        .incidents()
        .own(project_id, id)
        .await
        .map_err(|_| error_page(StatusCode::NOT_FOUND, "No such incident."))
}

async fn detail_page(
    state: &AppState,
    project: &str,
    id: &str,
    user: &UiUser,
    status: StatusCode,
    error: &str,
) -> Response {
    let run = async {
        let member = user.project(state, project).await?;
        let frame = Frame::new(state, user, &member, "incidents").await?;
        let row = own(state, member.project_id, id).await?;
        let now = state.engine.now();
        let log = state
            .store
            .incident_log(row.id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|l| LogLine {
                at: absolute(l.at.into(), Tz::UTC),
                kind: l.kind.replace('_', " "),
                who: l.who,
                status: l.status.unwrap_or_default(),
                text: l.text,
                late: l.on_time == Some(false),
            })
            .collect();
        let sent = state
            .store
            .incident_messages(row.id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|m| SentLine {
                to: [m.person, m.contact, m.address]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" · "),
                state: m.state,
                when: absolute(m.sent_at.unwrap_or(m.created_at).into(), Tz::UTC),
                error: m.last_error.unwrap_or_default(),
                text: m.text.unwrap_or_default(),
            })
            .collect();
        let groups: Vec<String> = serde_json::from_str(&row.stakeholder_groups).unwrap_or_default();
        Ok::<_, Response>(page(
            status,
            &IncidentPage {
                title: format!("Incident #{} · {project}", row.id),
                frame,
                resolved: row.status == IncidentStatus::Resolved,
                impact: row.impact.clone(),
                service: row.service.clone(),
                groups: groups.join(", "),
                cadence: row
                    .update_every
                    .map(|secs| {
                        format!(
                            "every {}",
                            super::checks::span_words(u64::try_from(secs).unwrap_or(0))
                        )
                    })
                    .unwrap_or_else(|| "no cadence".into()),
                stakeholder_page: state.engine.incident_page_url(&row),
                statuses: vec!["investigating", "identified", "monitoring"],
                people: people(state, member.project_id).await?,
                incident: line(&row, now),
                log,
                sent,
                error: error.to_string(),
            },
        ))
    };
    either(run.await)
}

/// `POST /ui/p/<project>/incidents/<id>/act`: `action` = update (status, message,
/// no_news), resolve (message), reopen (message), owner (owner) or note (message).
pub async fn act(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, String)>,
    user: UiUser,
    axum::Form(fields): FormFields,
) -> Response {
    let run = async {
        let member = user
            .may_post(
                &state,
                &project,
                &fields,
                Role::can_respond,
                "change incidents",
            )
            .await?;
        let row = own(&state, member.project_id, &id).await?;
        let field = |name: &str| fields.get(name).map(|v| v.trim()).unwrap_or("");
        let message = field("message");
        let who = user.acting();
        let incidents = state.engine.incidents();
        let done = match field("action") {
            "update" => {
                incidents
                    .update(
                        member.project_id,
                        row.id,
                        Update {
                            status: IncidentStatus::parse(field("status")),
                            message: message.to_string(),
                            no_news: fields.contains_key("no_news"),
                            who,
                        },
                    )
                    .await
            }
            "resolve" => {
                incidents
                    .resolve(
                        member.project_id,
                        row.id,
                        Some(message).filter(|m| !m.is_empty()),
                        &who,
                    )
                    .await
            }
            "reopen" => {
                incidents
                    .reopen(
                        member.project_id,
                        row.id,
                        Some(message).filter(|m| !m.is_empty()),
                        &who,
                    )
                    .await
            }
            "owner" => {
                incidents
                    .set_owner(member.project_id, row.id, field("owner"), &who)
                    .await
            }
            "note" => {
                incidents
                    .note(member.project_id, row.id, message, &who)
                    .await
            }
            _ => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "Unknown action: update, resolve, reopen, owner or note.",
                ));
            }
        };
        match done {
            Ok(_) => {
                Ok(Redirect::to(&format!("/ui/p/{project}/incidents/{}", row.id)).into_response())
            }
            Err(keepwatch_engine::EngineError::Invalid(e))
            | Err(keepwatch_engine::EngineError::Conflict(e)) => Ok(detail_page(
                &state,
                &project,
                &id,
                &user,
                StatusCode::UNPROCESSABLE_ENTITY,
                &e,
            )
            .await),
            Err(e) => Err(engine_error(e)),
        }
    };
    either(run.await)
}

#[derive(Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    format: String,
}

/// `GET /ui/p/<project>/incidents/<id>/export?format=markdown|json`: the postmortem
/// timeline, as a download.
pub async fn export(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, String)>,
    Query(query): Query<ExportQuery>,
    user: UiUser,
) -> Response {
    let run = async {
        let member = user.project(&state, &project).await?;
        let row = own(&state, member.project_id, &id).await?;
        let export = state
            .engine
            .export_incident(member.project_id, row.id)
            .await
            .map_err(engine_error)?;
        let (body, kind, ext) = if query.format == "json" {
            (
                serde_json::to_string_pretty(&export.json(Tz::UTC)).unwrap_or_default(),
                "application/json",
                "json",
            )
        } else {
            (
                export.markdown(Tz::UTC),
                "text/markdown; charset=utf-8",
                "md",
            )
        };
        let disposition = format!("attachment; filename=\"incident-{}.{ext}\"", row.id);
        Ok::<_, Response>(
            (
                [
                    (header::CONTENT_TYPE, kind.to_string()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response(),
        )
    };
    either(run.await)
}
