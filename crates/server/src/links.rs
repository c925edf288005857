//! The signed links of notifications (`/a/<token>`): a confirmation page on GET and the
//! action only on POST, so mail scanners that open links do not acknowledge pages. The link
//! is the credential, so these pages forbid framing, keep the link out of Referers and refuse
//! posts made by another site's page ([`cross_site`]). They change the alert through
//! [`crate::api::alerts::apply`], as the alerts API does.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use keepwatch_engine::pager::verify_link;
use keepwatch_store::AlertRow;

use crate::api::alerts::apply;
use crate::error::ApiError;
use crate::state::AppState;

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
pub async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
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
pub async fn act(
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
