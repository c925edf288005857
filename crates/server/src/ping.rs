//! The Healthchecks-compatible ping API.
//!
//! `/ping/<uuid>[/start|/fail|/log|/<0-255>]` and `/ping/<ping-key>/<slug>[/…]`, any HTTP
//! method, with `?rid=`, `?create=1` (slug form), and keepwatch's optional `host`, `pid`,
//! `volume` and `ts` (query or `X-Keepwatch-Host`/`X-Keepwatch-Pid` headers), and the stray
//! processes `keepwatch run` found (`X-Keepwatch-Strays`, a JSON array), or why it could not
//! look (`X-Keepwatch-Scan-Skipped`); a `log` ping with `X-Keepwatch-Snapshot: 1` carries a
//! snapshot of the run's processes as its JSON body. A start is answered with
//! `X-Keepwatch-Max-Runtime` (seconds after which the run counts as hung) and, when the check
//! has watch patterns, `X-Keepwatch-Watch` (a JSON array). Status codes and bodies
//! are those of Healthchecks (see the tests): `OK`, `Created` (201), `not found` (404),
//! `ambiguous slug` (409), `invalid url format` and `invalid uuid format` (400). A 200 is sent
//! only once the ping is committed to the database.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use keepwatch_core::check::{PingKind, RunIdentity, RunSnapshot, StrayProcess};
use keepwatch_engine::{PingReply, PingRequest};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::DJANGO_NOT_FOUND;
use crate::peer::{PeerAddr, route};
use crate::state::AppState;

/// Registered once: looking a metric up by name on every ping showed in profiles. The
/// recorder is installed before the server starts, so the handle is the real one.
static PING_SECONDS: std::sync::LazyLock<metrics::Histogram> =
    std::sync::LazyLock::new(|| metrics::histogram!("keepwatch_ping_seconds"));

#[derive(Deserialize, Default)]
pub struct PingQuery {
    rid: Option<String>,
    create: Option<String>,
    host: Option<String>,
    pid: Option<String>,
    volume: Option<String>,
    /// When the ping happened (RFC 3339 or Unix seconds), for pings delivered late from a
    /// spool; a time in the future counts as now.
    ts: Option<String>,
}

/// The request headers a ping reads, named once (a `&str` name is parsed on every lookup).
static HOST_HEADER: HeaderName = HeaderName::from_static("x-keepwatch-host");
static PID_HEADER: HeaderName = HeaderName::from_static("x-keepwatch-pid");
static STRAYS_HEADER: HeaderName = HeaderName::from_static("x-keepwatch-strays");
static SCAN_SKIPPED_HEADER: HeaderName = HeaderName::from_static("x-keepwatch-scan-skipped");
static SNAPSHOT_HEADER: HeaderName = HeaderName::from_static("x-keepwatch-snapshot");
static MAX_RUNTIME_HEADER: HeaderName = HeaderName::from_static("x-keepwatch-max-runtime");
static WATCH_HEADER: HeaderName = HeaderName::from_static("x-keepwatch-watch");
static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static PING_BODY_LIMIT: HeaderName = HeaderName::from_static("ping-body-limit");

/// At most this many stray processes are taken from one ping.
const MAX_STRAYS: usize = 32;

/// The longest reason for a skipped scan taken from a ping.
const MAX_SCAN_SKIPPED: usize = 500;

/// Everything about a ping that does not depend on which check it targets.
struct Incoming {
    kind: PingKind,
    identity: RunIdentity,
    volume: Option<i64>,
    at: Option<DateTime<Utc>>,
    strays: Vec<StrayProcess>,
    scan_skipped: Option<String>,
    /// The request says its body is a snapshot (parsed once the body is read).
    has_snapshot: bool,
    method: Method,
    remote_addr: String,
    scheme: String,
    user_agent: String,
}

fn text(status: StatusCode, body: &'static str) -> Response {
    // Built directly: `(status, body).into_response()` would set a content type to replace.
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // Room for `ok_response`'s two headers and the content length the router adds.
    headers.reserve(5);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, no-cache, no-store, must-revalidate, private"),
    );
    response
}

/// A stored ping's answer. For HEAD the body stays in the response: the server sends its
/// `Content-Length` and not the body, the headers a GET gets, as Healthchecks does.
fn ok_response(state: &AppState, status: StatusCode, body: &'static str) -> Response {
    let mut response = text(status, body);
    let headers = response.headers_mut();
    headers.insert(
        PING_BODY_LIMIT.clone(),
        state.ping_body_limit_header().clone(),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// A lowercase canonical UUID, the only form Healthchecks' URL patterns accept.
/// Checked byte by byte: this runs on every ping.
fn strict_uuid(s: &str) -> Option<Uuid> {
    let canonical = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        });
    canonical.then(|| Uuid::parse_str(s).ok()).flatten()
}

/// A `rid`: any hyphenated UUID, upper or lower case (Healthchecks' `is_valid_uuid_string`
/// accepts both); it is stored and answered in lower case.
fn run_id(s: &str) -> Option<Uuid> {
    strict_uuid(&s.to_ascii_lowercase())
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reads a URL suffix: `start`, `fail`, `log` or an exit status. `Err` is the 400 for an exit
/// status above 255; `Ok(None)` means the suffix is not an action at all.
fn parse_action(s: &str) -> Result<Option<PingKind>, ()> {
    Ok(Some(match s {
        "" => PingKind::Success,
        "start" => PingKind::Start,
        "fail" => PingKind::Fail,
        "log" => PingKind::Log,
        digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            match digits.parse::<u64>() {
                Ok(n) if n <= 255 => PingKind::Exit(n as u8),
                _ => return Err(()),
            }
        }
        _ => return Ok(None),
    }))
}

/// Every ping route (`/ping/{a}`, `/ping/{a}/`, `/ping/{a}/{b}`, `/ping/{a}/{b}/{c}`) taken
/// through the router: the paths [`direct_path`] leaves to it (percent-encoded ones).
pub async fn ping(
    State(state): State<AppState>,
    params: RawPathParams,
    request: Request,
) -> Response {
    let segments: Vec<&str> = params.iter().map(|(_, value)| value).collect();
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<PeerAddr>>()
        .map(|ConnectInfo(PeerAddr(peer))| &**peer);
    handle(&state, &segments, peer, &parts, body).await
}

/// The segments after `/ping/` if the path has the shape of a ping route (one to three
/// non-empty segments, or one and a trailing slash) and nothing to percent-decode: such a
/// request is answered by [`ping_direct`] without the router, which would match it the same
/// way.
pub fn direct_path(path: &str) -> Option<([&str; 3], usize)> {
    let rest = path.strip_prefix("/ping/")?;
    if rest.contains('%') {
        return None;
    }
    let mut segments = [""; 3];
    let mut count = 0;
    for (i, segment) in rest.split('/').enumerate() {
        match (i, segment.is_empty()) {
            (0..=2, false) => segments[i] = segment,
            // `/ping/{a}/`
            (1, true) if rest.len() == segments[0].len() + 1 => return Some((segments, 1)),
            _ => return None,
        }
        count = i + 1;
    }
    Some((segments, count))
}

/// A request for a `/ping/…` path, with the connection's peer address. One whose path
/// [`direct_path`] accepts is answered here, skipping the router's per-request work
/// (matching, decoded parameter copies, request extensions: about a sixth of a keep-alive
/// ping's instructions on the HTTP threads); any other goes through the router.
pub async fn ping_direct(
    state: AppState,
    peer: PeerAddr,
    mut router: Router,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    match direct_path(parts.uri.path()) {
        Some((segments, count)) => {
            handle(&state, &segments[..count], Some(&peer.0), &parts, body).await
        }
        None => match route(&mut router, &peer, Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        },
    }
}

async fn handle(
    state: &AppState,
    segments: &[&str],
    peer: Option<&str>,
    parts: &Parts,
    body: Body,
) -> Response {
    let started = Instant::now();
    // The same URL shapes Healthchecks' routes accept, in the same order.
    let (target, action) = match segments {
        [code] | [code, ""] => match strict_uuid(code) {
            Some(uuid) => (Target::Uuid(uuid), ""),
            None => return not_found_page(),
        },
        [code, action]
            if strict_uuid(code).is_some() && !matches!(parse_action(action), Ok(None)) =>
        {
            (Target::Uuid(strict_uuid(code).expect("checked")), *action)
        }
        [key, slug] if is_slug(key) && is_slug(slug) => (slug_target(key, slug), ""),
        [key, slug, action]
            if is_slug(key) && is_slug(slug) && !matches!(parse_action(action), Ok(None)) =>
        {
            (slug_target(key, slug), *action)
        }
        _ => return not_found_page(),
    };
    let Ok(Some(kind)) = parse_action(action) else {
        return text(StatusCode::BAD_REQUEST, "invalid url format");
    };
    // Most pings have no query string: skip the deserializer then.
    let query = match parts.uri.query() {
        None => PingQuery::default(),
        Some(_) => match Query::<PingQuery>::try_from_uri(&parts.uri) {
            Ok(Query(query)) => query,
            Err(rejection) => return rejection.into_response(),
        },
    };
    let incoming = match read_incoming(kind, &query, &parts.method, peer, &parts.headers) {
        Ok(incoming) => incoming,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let (body, truncated) = read_body(body, state.config.ping_body_limit).await;
    let snapshot = match incoming.has_snapshot {
        false => None,
        true => match read_snapshot(body.as_deref(), truncated) {
            Some(snapshot) => Some(Box::new(snapshot)),
            None => return text(StatusCode::BAD_REQUEST, "invalid snapshot"),
        },
    };
    let response = deliver(
        state,
        target,
        query.create.as_deref() == Some("1"),
        incoming,
        body,
        truncated,
        snapshot,
    )
    .await;
    PING_SECONDS.record(started.elapsed().as_secs_f64());
    response
}

/// Where a ping goes: a check by UUID, or a slug in the project that owns a ping key.
enum Target {
    Uuid(Uuid),
    Slug { ping_key: String, slug: String },
}

fn slug_target(key: &str, slug: &str) -> Target {
    Target::Slug {
        ping_key: key.to_string(),
        slug: slug.to_string(),
    }
}

fn not_found_page() -> Response {
    let mut response = (StatusCode::NOT_FOUND, DJANGO_NOT_FOUND).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn read_incoming(
    kind: PingKind,
    query: &PingQuery,
    method: &Method,
    peer: Option<&str>,
    headers: &HeaderMap,
) -> Result<Incoming, &'static str> {
    let rid = match &query.rid {
        None => None,
        Some(rid) => Some(run_id(rid).ok_or("invalid uuid format")?),
    };
    let header_text = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // keepwatch's own headers are refused when they are there but not UTF-8 text (silently
    // dropping them lost the host); they cannot hold a NUL (hyper refuses the request).
    let header_utf8 = |name: &HeaderName, error: &'static str| {
        headers
            .get(name)
            .map(|v| std::str::from_utf8(v.as_bytes()).map(str::to_string))
            .transpose()
            .map_err(|_| error)
    };
    let host = match query.host.clone() {
        Some(host) => Some(host),
        None => header_utf8(&HOST_HEADER, "invalid host")?,
    };
    // A NUL cannot be stored in text on PostgreSQL (it failed the whole group commit there).
    if host
        .as_ref()
        .is_some_and(|h| h.is_empty() || h.len() > 255 || h.contains('\0'))
    {
        return Err("invalid host");
    }
    let pid = match query.pid.clone() {
        Some(pid) => Some(pid),
        None => header_utf8(&PID_HEADER, "invalid pid")?,
    };
    let pid = match pid {
        None => None,
        Some(pid) => Some(pid.parse::<u32>().map_err(|_| "invalid pid")?),
    };
    let volume = match &query.volume {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or("invalid volume")?,
        ),
    };
    let at = match &query.ts {
        None => None,
        Some(ts) => Some(parse_time(ts).ok_or("invalid ts")?),
    };
    let strays = match header_utf8(&STRAYS_HEADER, "invalid X-Keepwatch-Strays")? {
        None => Vec::new(),
        Some(json) => serde_json::from_str::<Vec<StrayProcess>>(&json)
            .ok()
            .filter(|strays| strays.len() <= MAX_STRAYS)
            .ok_or("invalid X-Keepwatch-Strays")?,
    };
    let scan_skipped = header_utf8(&SCAN_SKIPPED_HEADER, "invalid X-Keepwatch-Scan-Skipped")?;
    if scan_skipped
        .as_ref()
        .is_some_and(|s| s.len() > MAX_SCAN_SKIPPED || s.contains('\0'))
    {
        return Err("invalid X-Keepwatch-Scan-Skipped");
    }
    let has_snapshot = headers.contains_key(&SNAPSHOT_HEADER);
    if has_snapshot && kind != PingKind::Log {
        return Err("X-Keepwatch-Snapshot goes with a log ping");
    }
    // As Healthchecks: the first X-Forwarded-For address, else the peer.
    let remote_addr = header_text(&FORWARDED_FOR)
        .and_then(|f| f.split(',').next().map(|a| a.trim().to_string()))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| peer.unwrap_or_default().to_string());
    let scheme = header_text(&FORWARDED_PROTO).unwrap_or_else(|| "http".into());
    // Kept whatever its bytes (as Healthchecks keeps it), never a reason to refuse a ping.
    let mut user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    user_agent.truncate(user_agent.floor_char_boundary(200));
    Ok(Incoming {
        kind,
        identity: RunIdentity { rid, host, pid },
        volume,
        at,
        strays,
        scan_skipped,
        has_snapshot,
        method: method.clone(),
        remote_addr,
        scheme,
        user_agent,
    })
}

/// A snapshot body: whole (not cut at the body limit), within the size limits, and without
/// NUL characters (PostgreSQL text cannot hold them).
fn read_snapshot(body: Option<&[u8]>, truncated: bool) -> Option<RunSnapshot> {
    if truncated {
        return None;
    }
    let snapshot: RunSnapshot = serde_json::from_slice(body?).ok()?;
    let text = serde_json::to_string(&snapshot).ok()?;
    (snapshot.within_limits() && !text.contains("\\u0000")).then_some(snapshot)
}

/// RFC 3339, or seconds since the Unix epoch (with an optional fraction).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let seconds: f64 = s
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    DateTime::from_timestamp_micros((seconds * 1e6) as i64)
}

/// Keeps the first `limit` bytes of the body and reads (but drops) the rest, so an oversized
/// body is truncated and marked rather than rejected, and memory stays bounded.
async fn read_body(body: Body, limit: usize) -> (Option<Vec<u8>>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        let room = limit.saturating_sub(kept.len());
        if chunk.len() > room {
            truncated = true;
        }
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    ((!kept.is_empty()).then_some(kept), truncated)
}

async fn deliver(
    state: &AppState,
    target: Target,
    create: bool,
    incoming: Incoming,
    body: Option<Vec<u8>>,
    body_truncated: bool,
    snapshot: Option<Box<RunSnapshot>>,
) -> Response {
    let (check, created) = match target {
        Target::Uuid(uuid) => (uuid, false),
        // Boxed: the database futures of this path would otherwise make every ping's
        // future several KB larger, and it is copied around per request.
        Target::Slug { ping_key, slug } => {
            match Box::pin(resolve_slug(state, &ping_key, &slug, create)).await {
                Ok(found) => found,
                Err(response) => return response,
            }
        }
    };
    let request = PingRequest {
        check,
        kind: incoming.kind,
        identity: incoming.identity,
        scheme: incoming.scheme,
        method: incoming.method.to_string(),
        remote_addr: incoming.remote_addr,
        user_agent: incoming.user_agent,
        volume: incoming.volume,
        body,
        body_truncated,
        at: incoming.at,
        strays: incoming.strays,
        scan_skipped: incoming.scan_skipped,
        snapshot,
    };
    let (status, body) = match created {
        true => (StatusCode::CREATED, "Created"),
        false => (StatusCode::OK, "OK"),
    };
    match state.engine.ping(request).await {
        Ok(PingReply::Ok) => ok_response(state, status, body),
        Ok(PingReply::Started(rules)) => {
            let mut response = ok_response(state, status, body);
            let headers = response.headers_mut();
            headers.insert(
                MAX_RUNTIME_HEADER.clone(),
                HeaderValue::from(rules.hung_after().as_secs()),
            );
            if !rules.watch.is_empty()
                && let Ok(json) = serde_json::to_string(&rules.watch)
                && let Ok(value) = HeaderValue::from_bytes(json.as_bytes())
            {
                headers.insert(WATCH_HEADER.clone(), value);
            }
            response
        }
        Ok(PingReply::NotFound) => text(StatusCode::NOT_FOUND, "not found"),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// The check a slug names in the project of a ping key, created if asked; the flag says
/// whether it was created.
async fn resolve_slug(
    state: &AppState,
    ping_key: &str,
    slug: &str,
    create: bool,
) -> Result<(Uuid, bool), Response> {
    let project = match state.store.project_by_ping_key(ping_key).await {
        Ok(Some(project)) => project,
        Ok(None) => return Err(text(StatusCode::NOT_FOUND, "not found")),
        Err(e) => return Err(unavailable(&e.to_string())),
    };
    let matches = match state.store.checks_by_slug(project.id, slug).await {
        Ok(matches) => matches,
        Err(e) => return Err(unavailable(&e.to_string())),
    };
    match matches.as_slice() {
        [one] => Ok((Uuid::parse_str(&one.uuid).unwrap_or_default(), false)),
        // Over the limit or the rate Healthchecks answers as if there were no such check.
        [] if create => match state.may_create(project.id, true).await {
            Ok(Err(_)) => Err(text(StatusCode::NOT_FOUND, "not found")),
            Err(e) => Err(unavailable(&e.to_string())),
            Ok(Ok(())) => {
                match crate::api::checks::create_for_slug(state, project.id, slug).await {
                    Ok(row) => Ok((Uuid::parse_str(&row.uuid).unwrap_or_default(), true)),
                    Err(e) => Err(unavailable(&e)),
                }
            }
        },
        [] => Err(text(StatusCode::NOT_FOUND, "not found")),
        _ => Err(text(StatusCode::CONFLICT, "ambiguous slug")),
    }
}

/// The ping was not stored: say so, so the client (and `keepwatch run`) retries.
fn unavailable(error: &str) -> Response {
    tracing::error!(error, "ping not stored");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "storage unavailable, ping not recorded",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::direct_path;

    #[test]
    fn direct_path_takes_exactly_the_ping_routes_shapes() {
        fn taken(path: &str) -> Option<Vec<&str>> {
            direct_path(path).map(|(segments, count)| segments[..count].to_vec())
        }
        assert_eq!(taken("/ping/abc"), Some(vec!["abc"]));
        assert_eq!(taken("/ping/abc/"), Some(vec!["abc"]));
        assert_eq!(taken("/ping/key/slug"), Some(vec!["key", "slug"]));
        assert_eq!(
            taken("/ping/key/slug/fail"),
            Some(vec!["key", "slug", "fail"])
        );
        // Left to the router: no route of that shape, or a segment to percent-decode.
        for path in [
            "/ping/",
            "/ping",
            "/pong/abc",
            "/ping//abc",
            "/ping/abc//",
            "/ping/a/b/",
            "/ping/a//b",
            "/ping/a/b/c/d",
            "/ping/%61bc",
        ] {
            assert_eq!(taken(path), None, "{path}");
        }
    }
}
