//! Alerts in the web UI: open and recent alerts, and one alert with why it fired, who is
//! being paged and what happens next, every message sent (its text), the log, and the
//! acknowledge, resolve and note buttons.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use keepwatch_core::user::Role;
use keepwatch_engine::channels::gather;
use keepwatch_store::AlertRow;
use serde::Deserialize;

use super::checks::{absolute, relative};
use super::session::UiUser;
use super::{FormFields, Frame, either, engine_error, error_page, page, store_error};
use crate::state::AppState;

pub struct AlertLine {
    pub id: i64,
    pub summary: String,
    pub service: String,
    pub status: String,
    pub urgency: String,
    pub triggered: String,
    pub triggered_title: String,
}

fn line(alert: &AlertRow, now: DateTime<Utc>) -> AlertLine {
    let at: DateTime<Utc> = alert.triggered_at.into();
    AlertLine {
        id: alert.id,
        summary: alert.summary.clone(),
        service: alert.service.clone(),
        status: alert.status.to_string(),
        urgency: alert.urgency.to_string(),
        triggered: relative(at, now),
        triggered_title: absolute(at, Tz::UTC),
    }
}

#[derive(Template)]
#[template(path = "ui/alerts.html")]
struct AlertsPage {
    title: String,
    frame: Frame,
    open: Vec<AlertLine>,
    recent: Vec<AlertLine>,
    mine_only: bool,
}

#[derive(Deserialize, Default)]
pub struct AlertsQuery {
    #[serde(default)]
    mine: String,
}

/// `GET /ui/p/<project>/alerts/`: open alerts first, then the last 50 resolved. With
/// `?mine=1`, only those that paged the signed-in user's person.
pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(query): Query<AlertsQuery>,
    user: UiUser,
) -> Response {
    let run = async {
        let member = user.project(&state, &project).await?;
        let frame = Frame::new(&state, &user, &member, "alerts").await?;
        let now = state.engine.now();
        let mut open = state
            .store
            .list_alerts(member.project_id, Some("open"), 500)
            .await
            .map_err(store_error)?;
        let mut recent = state
            .store
            .list_alerts(member.project_id, Some("resolved"), 50)
            .await
            .map_err(store_error)?;
        let person = user.session.user.person.clone();
        let mine_only = query.mine == "1" && !person.is_empty();
        if mine_only {
            let mut paged_me = Vec::new();
            for alert in open.iter().chain(&recent) {
                let messages = state
                    .store
                    .alert_messages(alert.id)
                    .await
                    .map_err(store_error)?;
                if messages
                    .iter()
                    .any(|m| m.person.as_deref() == Some(&person))
                {
                    paged_me.push(alert.id);
                }
            }
            open.retain(|a| paged_me.contains(&a.id));
            recent.retain(|a| paged_me.contains(&a.id));
        }
        Ok::<_, Response>(page(
            StatusCode::OK,
            &AlertsPage {
                title: format!("Alerts · {project}"),
                frame,
                open: open.iter().map(|a| line(a, now)).collect(),
                recent: recent.iter().map(|a| line(a, now)).collect(),
                mine_only,
            },
        ))
    };
    either(run.await)
}

pub struct MessageLine {
    pub to: String,
    pub urgency: String,
    pub state: String,
    pub when: String,
    pub error: String,
    pub text: String,
}

pub struct LogLine {
    pub at: String,
    pub kind: String,
    pub who: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "ui/alert.html")]
struct AlertPage {
    title: String,
    frame: Frame,
    alert: AlertLine,
    open: bool,
    acknowledged: bool,
    check: String,
    check_uuid: String,
    sentence: String,
    output: Vec<String>,
    snapshot: String,
    watch: Vec<String>,
    outlook_why: String,
    outlook_next: String,
    messages: Vec<MessageLine>,
    log: Vec<LogLine>,
}

async fn own(state: &AppState, project_id: i64, id: &str) -> Result<AlertRow, Response> {
    let id: i64 = id
        .parse()
        .map_err(|_| error_page(StatusCode::NOT_FOUND, "No such alert."))?;
    match state.store.alert(id).await.map_err(store_error)? {
        Some(alert) if alert.project_id == project_id => Ok(alert),
        _ => Err(error_page(StatusCode::NOT_FOUND, "No such alert.")),
    }
}

/// `GET /ui/p/<project>/alerts/<id>`: where the links in pages land after sign-in.
pub async fn detail(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, String)>,
    user: UiUser,
) -> Response {
    let run = async {
        let member = user.project(&state, &project).await?;
        let frame = Frame::new(&state, &user, &member, "alerts").await?;
        let alert = own(&state, member.project_id, &id).await?;
        let now = state.engine.now();
        let explained = gather::alert(&state.store, &alert, now)
            .await
            .map_err(store_error)?;
        let check_uuid = match alert.dedup_key.strip_prefix("check:") {
            Some(rest) => rest.split(':').next().unwrap_or("").to_string(),
            None => String::new(),
        };
        let messages = state
            .store
            .alert_messages(alert.id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|m| MessageLine {
                to: [m.person, m.contact, m.address]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" · "),
                urgency: m.urgency.unwrap_or_default(),
                state: m.state,
                when: m
                    .sent_at
                    .map(|t| absolute(t.into(), Tz::UTC))
                    .unwrap_or_else(|| absolute(m.created_at.into(), Tz::UTC)),
                error: m.last_error.unwrap_or_default(),
                text: m.text.unwrap_or_default(),
            })
            .collect();
        let log = state
            .store
            .alert_log(alert.id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|entry| LogLine {
                at: absolute(entry.at.into(), Tz::UTC),
                kind: entry.kind,
                who: entry.who,
                detail: entry.detail,
            })
            .collect();
        let status = alert.status.to_string();
        Ok::<_, Response>(page(
            StatusCode::OK,
            &AlertPage {
                title: format!("Alert #{} · {project}", alert.id),
                frame,
                open: status != "resolved",
                acknowledged: status == "acknowledged",
                check: explained.check.clone().unwrap_or_default(),
                check_uuid,
                sentence: explained.sentence(),
                output: explained.evidence.output.clone(),
                snapshot: explained
                    .evidence
                    .snapshot
                    .as_ref()
                    .map(|s| s.summary.clone())
                    .unwrap_or_default(),
                watch: explained.evidence.watch.clone(),
                outlook_why: explained.outlook.why.clone(),
                outlook_next: explained.outlook.next.clone().unwrap_or_default(),
                alert: line(&alert, now),
                messages,
                log,
            },
        ))
    };
    either(run.await)
}

/// `POST /ui/p/<project>/alerts/<id>/act`: `action` = ack, resolve or note (with `note`).
/// The log names the user (their person id from the on-call file, or their email).
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
                "acknowledge, resolve or note alerts",
            )
            .await?;
        let alert = own(&state, member.project_id, &id).await?;
        let who = user.acting();
        let note = fields.get("note").map(|n| n.trim()).unwrap_or("");
        if note.chars().count() > crate::api::alerts::MAX_NOTE_CHARS {
            return Err(error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The note is too long (at most 4000 characters).",
            ));
        }
        match fields.get("action").map(String::as_str) {
            Some("ack") => {
                state
                    .engine
                    .acknowledge(alert.id, &who)
                    .await
                    .map_err(engine_error)?;
            }
            Some("resolve") => {
                state
                    .engine
                    .resolve(alert.id, &who)
                    .await
                    .map_err(engine_error)?;
            }
            Some("note") if note.is_empty() => {
                return Err(error_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Write the note first: it was empty.",
                ));
            }
            Some("note") => {}
            _ => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "Unknown action: ack, resolve or note.",
                ));
            }
        }
        if !note.is_empty() {
            state
                .engine
                .note(alert.id, &who, note)
                .await
                .map_err(engine_error)?;
        }
        Ok(Redirect::to(&format!("/ui/p/{project}/alerts/{}", alert.id)).into_response())
    };
    either(run.await)
}
