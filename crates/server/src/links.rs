//! The signed links of notifications (`/a/<token>`): a confirmation page on GET and the
//! action only on POST, so mail scanners that open links do not acknowledge pages. The link
//! is the credential, so these pages forbid framing, keep the link out of Referers and refuse
//! posts made by another site's page ([`cross_site`]). They change the alert through
//! [`crate::api::alerts::apply`], as the alerts API does. The pages are askama templates
//! under `crates/server/templates/` (compiled into the binary, escaped by default), on the
//! `base.html` layout the web UI will share.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use keepwatch_engine::delivery::LinkGrant;
use keepwatch_store::AlertRow;

use crate::api::alerts::{apply, note_text};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /a/<token>`: what the alert is, and a button that posts back.
#[derive(Template)]
#[template(path = "links/confirm.html")]
struct ConfirmPage<'a> {
    title: String,
    id: i64,
    service: &'a str,
    summary: &'a str,
    status: &'a str,
    verb: &'a str,
    /// An acknowledge link also offers to declare an incident from the alert.
    can_declare: bool,
}

/// `GET /a/<token>` of a shift check-in (the shift) or of a live drill (the drill), and a
/// button that posts back.
#[derive(Template)]
#[template(path = "links/checkin.html")]
struct CheckinPage<'a> {
    title: String,
    person: &'a str,
    schedule: &'a str,
    start: String,
    end: String,
    state: &'a str,
    /// A live drill's link rather than a check-in's.
    drill: bool,
}

/// Every other answer of a link: a title and one sentence (done, refused, not found).
#[derive(Template)]
#[template(path = "links/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A link's page, with the headers that keep it from being framed or leaking the link.
fn page(status: StatusCode, template: &impl Template) -> Response {
    let html = match template.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "a link page could not be rendered");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
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

async fn link_alert(state: &AppState, token: &str) -> Result<(AlertRow, LinkGrant), Response> {
    let grant = state.engine.verify_link(token).map_err(|why| {
        page(
            StatusCode::FORBIDDEN,
            &MessagePage {
                title: "Link not valid",
                message: &format!("{why}."),
            },
        )
    })?;
    match state.store.alert(grant.alert_id).await {
        Ok(Some(alert)) => Ok((alert, grant)),
        Ok(None) => Err(page(
            StatusCode::NOT_FOUND,
            &MessagePage {
                title: "Alert not found",
                message: "This alert no longer exists.",
            },
        )),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

fn link_refused(why: &str) -> Response {
    page(
        StatusCode::FORBIDDEN,
        &MessagePage {
            title: "Link not valid",
            message: &format!("{why}."),
        },
    )
}

/// A shift check-in's link: on GET the shift and a button, on POST the acknowledgment in the
/// name of the person it was sent to.
async fn checkin(state: &AppState, grant: &LinkGrant, act: bool) -> Response {
    let row = match state.store.checkin(grant.alert_id).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                &MessagePage {
                    title: "Check-in not found",
                    message: "This check-in no longer exists.",
                },
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let when =
        |at: keepwatch_store::Timestamp| at.to_datetime().format("%a %-d %b %H:%M").to_string();
    if !act {
        return page(
            StatusCode::OK,
            &CheckinPage {
                title: format!("Check in for your shift on {}?", row.schedule),
                person: &row.person,
                schedule: &row.schedule,
                start: when(row.shift_start),
                end: when(row.shift_end),
                state: &row.state,
                drill: false,
            },
        );
    }
    let who = grant
        .person
        .as_ref()
        .map_or_else(|| "link".to_string(), |person| format!("{person} (link)"));
    match state.engine.acknowledge_checkin(row.id, &who).await {
        Ok(Some(after)) => {
            let message = if after.state == "missed" {
                "Thank you. The check-in was already missed and the people it names were told; \
                 your acknowledgment is recorded, late."
            } else {
                "Thank you: you are recorded as reachable for this shift."
            };
            page(
                StatusCode::OK,
                &MessagePage {
                    title: &format!("Checked in for your shift on {}", after.schedule),
                    message,
                },
            )
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A live drill's link: on GET what it is and a button, on POST the acknowledgment in the
/// name of the person it was sent to.
fn drill(state: &AppState, grant: &LinkGrant, act: bool) -> Response {
    let Some(live) = state.engine.live_drill(grant.alert_id) else {
        return page(
            StatusCode::NOT_FOUND,
            &MessagePage {
                title: "Drill over",
                message: "This live drill is no longer kept (the server restarted). Nothing is \
                          wrong: it was a drill.",
            },
        );
    };
    if !act {
        return page(
            StatusCode::OK,
            &CheckinPage {
                title: format!("DRILL — acknowledge live drill #{}?", live.id),
                person: grant.person.as_deref().unwrap_or(""),
                schedule: &live.service,
                start: live.started_at.format("%a %-d %b %H:%M").to_string(),
                end: String::new(),
                state: if live.acknowledged_at.is_some() {
                    "acknowledged"
                } else {
                    "waiting for an acknowledgment"
                },
                drill: true,
            },
        );
    }
    let who = grant
        .person
        .as_ref()
        .map_or_else(|| "link".to_string(), |person| format!("{person} (link)"));
    match state.engine.acknowledge_drill(live.id, &who) {
        Some(after) => page(
            StatusCode::OK,
            &MessagePage {
                title: &format!("Live drill #{} acknowledged", after.id),
                message: &format!(
                    "Thank you: acknowledged by {}. It was a drill: nothing is wrong.",
                    after.acknowledged_by.as_deref().unwrap_or(&who)
                ),
            },
        ),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// GET on a notification's link: what the alert is and a button; nothing changes yet.
pub async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.engine.verify_link(&token) {
        Ok(grant) if grant.action == "checkin" => return checkin(&state, &grant, false).await,
        Ok(grant) if grant.action == "drill" => return drill(&state, &grant, false),
        Ok(_) => {}
        Err(why) => return link_refused(why),
    }
    let (alert, grant) = match link_alert(&state, &token).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let verb = if grant.action == "ack" {
        "Acknowledge"
    } else {
        "Resolve"
    };
    page(
        StatusCode::OK,
        &ConfirmPage {
            title: format!("{verb} alert #{}?", alert.id),
            id: alert.id,
            service: &alert.service,
            summary: &alert.summary,
            status: alert.status.as_str(),
            verb,
            can_declare: grant.action == "ack",
        },
    )
}

/// POST on a notification's link: the action itself, and the note the page's form may
/// carry (`note=…`; clients that post nothing, such as a chat app's button, just act).
pub async fn act(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(from) = cross_site(&state, &headers) {
        tracing::warn!(from = %from, "a link post from another site was refused");
        return page(
            StatusCode::FORBIDDEN,
            &MessagePage {
                title: "Not from this site",
                message: "This action was sent by a page of another site and was not taken. \
                          Open the link from your notification and press the button there.",
            },
        );
    }
    match state.engine.verify_link(&token) {
        Ok(grant) if grant.action == "checkin" => return checkin(&state, &grant, true).await,
        Ok(grant) if grant.action == "drill" => return drill(&state, &grant, true),
        Ok(_) => {}
        Err(why) => return link_refused(why),
    }
    let (alert, grant) = match link_alert(&state, &token).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // In the name of the person the link was sent to.
    let who = grant
        .person
        .as_ref()
        .map_or_else(|| "link".to_string(), |person| format!("{person} (link)"));
    let note = form_urlencoded::parse(&body)
        .find(|(field, _)| field == "note")
        .map(|(_, text)| text.trim().to_string())
        .filter(|text| !text.is_empty());
    if let Some(note) = &note {
        let added = match note_text(Some(note)) {
            Ok(text) => state
                .engine
                .note(alert.id, &who, text)
                .await
                .map_err(ApiError::from),
            Err(refused) => Err(refused),
        };
        if let Err(e) = added {
            return e.into_response();
        }
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let declare = grant.action == "ack" && fields.iter().any(|(f, v)| f == "declare" && v == "1");
    let acted = apply(&state, alert.id, &grant.action, &who).await;
    if declare && let Ok(after) = &acted {
        let severity = fields
            .iter()
            .find(|(f, _)| f == "severity")
            .and_then(|(_, v)| keepwatch_core::incident::Severity::parse_loose(v));
        let declared = state
            .engine
            .incidents()
            .declare(keepwatch_engine::incidents::Declare {
                project_id: after.project_id,
                severity,
                owner: grant.person.clone(),
                alerts: vec![after.id],
                who: who.clone(),
                ..Default::default()
            })
            .await;
        return match declared {
            Ok(incident) => page(
                StatusCode::OK,
                &MessagePage {
                    title: &format!(
                        "Alert #{} is {}; incident #{} declared",
                        after.id, after.status, incident.id
                    ),
                    message: &format!(
                        "You own incident #{} ({}); its stakeholders were told. Post updates with \
                         keepwatch incident update {} -m \"…\". Stakeholder page: {}",
                        incident.id,
                        incident.severity.label(),
                        incident.id,
                        state.engine.incident_page_url(&incident)
                    ),
                },
            ),
            Err(e) => page(
                StatusCode::BAD_REQUEST,
                &MessagePage {
                    title: &format!(
                        "Alert #{} is {}; no incident declared",
                        after.id, after.status
                    ),
                    message: &e.to_string(),
                },
            ),
        };
    }
    match acted {
        Ok(after) => page(
            StatusCode::OK,
            &MessagePage {
                title: &format!("Alert #{} is {}", after.id, after.status),
                message: &after.summary,
            },
        ),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_alert_says_is_escaped_on_its_pages() {
        let summary = "disk \"/var\" & <script>alert(1)</script>";
        let confirm = ConfirmPage {
            title: "Acknowledge alert #7?".into(),
            id: 7,
            service: "<i>billing</i>",
            summary,
            status: "triggered",
            verb: "Acknowledge",
            can_declare: true,
        };
        let done = MessagePage {
            title: "Alert #7 is acknowledged",
            message: summary,
        };
        for html in [confirm.render().unwrap(), done.render().unwrap()] {
            assert!(
                !html.contains("<script>") && !html.contains("<i>"),
                "{html}"
            );
            assert!(html.contains("alert(1)") && !html.contains(" & "), "{html}");
        }
        let confirm = confirm.render().unwrap();
        assert!(confirm.contains("<form method=\"post\">"), "{confirm}");
        assert!(
            confirm.contains("<h1>Acknowledge alert #7?</h1>"),
            "{confirm}"
        );
    }
}
