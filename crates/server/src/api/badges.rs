//! Status badges, as Healthchecks serves them: `GET /api/v3/badges/` lists every tag's badge
//! URLs; `/badge/<project key>/<signature>/<tag>.svg|.json|.shields` (and
//! `/badge/<project key>/<signature>.<format>` for all checks) show the worst status of the
//! checks with that tag; `/b/<states>/<check key>.<format>` one check's (the `badge_url` of
//! the check API).
//!
//! Badge URLs are public and must not reveal a ping URL or let anyone guess other badges:
//! the keys are derived one-way from secrets keepwatch already has (a project's ping key, a
//! check's UUID), so nothing is stored. A project key is its id and a 64-bit tag of its ping
//! key; a check key its id and a 64-bit tag of its UUID; a tag's signature is 8 characters
//! of a hash of the ping key and the tag, followed by `-2` for the two-state variant (late
//! counts as up). Changing a project's ping key changes its badge URLs.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::api::checks::live_states;
use crate::auth::ReadKey;
use crate::error::ApiError;
use crate::state::AppState;
use keepwatch_engine::live::rules_from_row;
use keepwatch_store::CheckRow;

/// The label of the badge of all checks (Healthchecks' `MASTER_BADGE_LABEL`).
const ALL_LABEL: &str = "keepwatch";

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hash.finalize().into()
}

/// An id and 8 bytes of a hash, as a UUID-shaped key.
fn key(id: i64, hash: [u8; 32]) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&id.to_be_bytes());
    bytes[8..].copy_from_slice(&hash[..8]);
    Uuid::from_bytes(bytes).to_string()
}

/// The id a key names, if it is one of ours.
fn key_id(key: &str) -> Option<(i64, [u8; 8])> {
    let bytes = Uuid::parse_str(key).ok()?.into_bytes();
    let id = i64::from_be_bytes(bytes[..8].try_into().ok()?);
    Some((id, bytes[8..].try_into().ok()?))
}

pub fn project_key(project_id: i64, ping_key: &str) -> String {
    key(project_id, digest(&["keepwatch project badge", ping_key]))
}

pub fn check_key(check: &CheckRow) -> String {
    key(check.id, digest(&["keepwatch check badge", &check.uuid]))
}

/// 8 letters and digits from a hash of the ping key and the tag.
fn signature(ping_key: &str, tag: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    digest(&["keepwatch badge signature", ping_key, tag])[..8]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A tag as a path segment (Healthchecks quotes it the same way: only `[A-Za-z0-9_.~-]` kept).
fn quote(tag: &str) -> String {
    tag.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'~' | b'-') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn unquote(segment: &str) -> String {
    form_urlencoded::parse(format!("t={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `GET /api/v3/badges/`: every tag's badge URLs (and `*` for all checks), any key.
pub async fn list(
    State(state): State<AppState>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let project = state
        .store
        .project_by_id(scope.project_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut tags = vec!["*".to_string()];
    for check in state.store.list_checks(scope.project_id).await? {
        for tag in check.tags.split_whitespace() {
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_string());
            }
        }
    }
    let site = &state.config.site_url;
    let key = project_key(project.id, &project.ping_key);
    let mut badges = Map::new();
    for tag in tags {
        let sig = signature(&project.ping_key, &tag);
        let url = |fmt: &str, late: bool| {
            let sig = if late {
                sig.clone()
            } else {
                format!("{sig}-2")
            };
            if tag == "*" {
                format!("{site}/badge/{key}/{sig}.{fmt}")
            } else {
                format!("{site}/badge/{key}/{sig}/{}.{fmt}", quote(&tag))
            }
        };
        badges.insert(
            tag.clone(),
            json!({
                "svg": url("svg", false),
                "svg3": url("svg", true),
                "json": url("json", false),
                "json3": url("json", true),
                "shields": url("shields", false),
                "shields3": url("shields", true),
            }),
        );
    }
    Ok(axum::Json(json!({ "badges": badges })).into_response())
}

/// `(file stem, format)` of `<stem>.<svg|json|shields>`.
fn split_format(file: &str) -> Option<(&str, &str)> {
    let (stem, fmt) = file.rsplit_once('.')?;
    matches!(fmt, "svg" | "json" | "shields").then_some((stem, fmt))
}

/// `/badge/<key>/<signature>.<format>`: all of a project's checks.
pub async fn all(
    State(state): State<AppState>,
    Path((key, file)): Path<(String, String)>,
) -> Response {
    let Some((sig, fmt)) = split_format(&file) else {
        return not_found();
    };
    tag_badge(&state, &key, sig, "*", fmt).await
}

/// `/badge/<key>/<signature>/<tag>.<format>`: the checks with a tag.
pub async fn tagged(
    State(state): State<AppState>,
    Path((key, sig, file)): Path<(String, String, String)>,
) -> Response {
    let Some((tag, fmt)) = split_format(&file) else {
        return not_found();
    };
    tag_badge(&state, &key, &sig, &unquote(tag), fmt).await
}

fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// The statuses Healthchecks' API would report for these checks now.
async fn statuses(state: &AppState, rows: &[CheckRow]) -> Option<Vec<&'static str>> {
    let live = live_states(state, rows).await.ok()?;
    let now = state.engine.now();
    Some(
        rows.iter()
            .zip(live)
            .map(|(row, live)| {
                rules_from_row(row).map_or("new", |rules| live.state.api_status(&rules, now))
            })
            .collect(),
    )
}

async fn tag_badge(state: &AppState, key: &str, sig: &str, tag: &str, fmt: &str) -> Response {
    let Some((project_id, _)) = key_id(key) else {
        return not_found();
    };
    let Ok(Some(project)) = state.store.project_by_id(project_id).await else {
        return not_found();
    };
    // Only the first 8 characters are the signature; `-2` (or `-3`) after them picks the variant.
    if project_key(project.id, &project.ping_key) != key
        || sig.get(..8) != Some(signature(&project.ping_key, tag).as_str())
    {
        return not_found();
    }
    let with_late = !(sig.len() == 10 && sig.ends_with("-2"));
    let Ok(checks) = state.store.list_checks(project.id).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let rows: Vec<CheckRow> = checks
        .into_iter()
        .filter(|c| tag == "*" || c.tags.split_whitespace().any(|t| t == tag))
        .collect();
    let Some(statuses) = statuses(state, &rows).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let (mut status, mut grace, mut down) = ("up", 0, 0);
    for s in &statuses {
        match *s {
            "down" => {
                down += 1;
                status = "down";
            }
            "grace" => {
                grace += 1;
                if status == "up" && with_late {
                    status = "late";
                }
            }
            _ => {}
        }
    }
    let label = if tag == "*" { ALL_LABEL } else { tag };
    render(fmt, label, status, statuses.len(), grace, down)
}

/// `/b/<states>/<check key>.<format>`: one check; `states` 3 shows `late` in its grace time.
pub async fn check(
    State(state): State<AppState>,
    Path((states, file)): Path<(String, String)>,
) -> Response {
    let (Ok(states), Some((key, fmt))) = (states.parse::<u32>(), split_format(&file)) else {
        return not_found();
    };
    let Some((check_id, _)) = key_id(key) else {
        return not_found();
    };
    let Ok(Some(row)) = state.store.check_by_id(check_id).await else {
        return not_found();
    };
    if check_key(&row) != key {
        return not_found();
    }
    let Some(statuses) = statuses(&state, std::slice::from_ref(&row)).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let api = statuses[0];
    let status = match api {
        "down" => "down",
        "grace" if states == 3 => "late",
        _ => "up",
    };
    let label = if row.name.is_empty() {
        "check"
    } else {
        row.name.as_str()
    };
    render(
        fmt,
        label,
        status,
        1,
        usize::from(api == "grace"),
        usize::from(api == "down"),
    )
}

fn render(
    fmt: &str,
    label: &str,
    status: &str,
    total: usize,
    grace: usize,
    down: usize,
) -> Response {
    let no_cache = (
        header::CACHE_CONTROL,
        "max-age=0, no-cache, no-store, must-revalidate, private",
    );
    let cors = (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    match fmt {
        "json" => (
            [no_cache, cors],
            axum::Json(json!({"status": status, "total": total, "grace": grace, "down": down})),
        )
            .into_response(),
        "shields" => (
            [no_cache, cors],
            axum::Json(json!({
                "schemaVersion": 1,
                "label": label,
                "message": status,
                "color": match status {
                    "down" => "critical",
                    "late" => "important",
                    _ => "success",
                },
            })),
        )
            .into_response(),
        _ => (
            [no_cache, cors, (header::CONTENT_TYPE, "image/svg+xml")],
            svg(label, status),
        )
            .into_response(),
    }
}

/// Text width in pixels at 11px Verdana, roughly (narrow letters narrower).
fn width(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | 'I' | '.' | ',' | ':' | '\'' => 3,
            'f' | 'r' | 't' | 'J' | ' ' | '-' => 4,
            'm' | 'w' | 'M' | 'W' => 10,
            c if c.is_ascii_uppercase() => 8,
            _ => 7,
        })
        .sum()
}

/// A flat two-part badge: the label on grey, the status on its colour.
fn svg(label: &str, status: &str) -> String {
    let color = match status {
        "down" => "#e05d44",
        "late" => "#fe7d37",
        _ => "#4c1",
    };
    let (w1, w2) = (width(label) + 10, width(status) + 10);
    let label = keepwatch_core::incident::postmortem::escape(label);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"20\" role=\"img\" \
         aria-label=\"{label}: {status}\"><title>{label}: {status}</title>\
         <linearGradient id=\"s\" x2=\"0\" y2=\"100%\"><stop offset=\"0\" stop-color=\"#bbb\" \
         stop-opacity=\".1\"/><stop offset=\"1\" stop-opacity=\".1\"/></linearGradient>\
         <clipPath id=\"r\"><rect width=\"{w}\" height=\"20\" rx=\"3\" fill=\"#fff\"/></clipPath>\
         <g clip-path=\"url(#r)\"><rect width=\"{w1}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{w1}\" width=\"{w2}\" height=\"20\" fill=\"{color}\"/>\
         <rect width=\"{w}\" height=\"20\" fill=\"url(#s)\"/></g>\
         <g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,Geneva,DejaVu Sans,sans-serif\" \
         font-size=\"11\"><text x=\"{x1}\" y=\"14\">{label}</text>\
         <text x=\"{x2}\" y=\"14\">{status}</text></g></svg>",
        w = w1 + w2,
        x1 = w1 as f64 / 2.0,
        x2 = w1 as f64 + w2 as f64 / 2.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_id_and_a_tag_of_the_secret() {
        let key = project_key(42, "pingkey");
        assert_eq!(key_id(&key).unwrap().0, 42);
        assert_ne!(key, project_key(42, "other"));
        assert_eq!(key, project_key(42, "pingkey"));
        let sig = signature("pingkey", "prod");
        assert_eq!(sig.len(), 8);
        assert!(sig.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(sig, signature("pingkey", "etl"));
        assert_eq!(quote("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(unquote("a%20b%2F%C3%BC"), "a b/ü");
        assert_eq!(split_format("prod.svg"), Some(("prod", "svg")));
        assert_eq!(split_format("prod.png"), None);
        let badge = svg("a<b", "late");
        assert!(badge.contains("a&lt;b: late") && badge.contains("#fe7d37"));
    }
}
