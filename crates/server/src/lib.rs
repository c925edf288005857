//! The keepwatch HTTP server: the router (here) and what it routes to.
//!
//! - [`ping`]: the Healthchecks-compatible ping API (the hot path).
//! - [`api`]: the JSON APIs, one module per resource (checks, channels, alerts, on-call …).
//! - [`links`]: the pages behind notifications' signed acknowledge/resolve links.
//! - [`auth`]: who is calling (API keys as extractors); [`error`]: errors as Healthchecks
//!   shapes them; [`redact`]: what a read-only key is not shown; [`quota`]: limits on
//!   creating checks.
//! - [`state`]: what every handler shares ([`AppState`]) and the server's settings.
//! - [`app`]: the whole service put together (store, engine, state, router, listener) and
//!   taken down again, for `keepwatch serve` and the tests alike.
//! - [`listen`]: the accept loop and each connection's life; [`peer`]: the peer address a
//!   request carries.
//!
//! Plus `/api/v3/status/` (health) and `/metrics` (Prometheus text format), here.
//!
//! Modules use each other in one direction: the router uses the handlers, handlers use
//! `auth`, `state`, `error` and `redact`, and nothing uses the router but [`app`].

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

pub mod api;
pub mod app;
pub mod auth;
pub mod error;
pub mod links;
pub mod listen;
pub mod peer;
pub mod ping;
pub mod quota;
pub mod redact;
pub mod state;
pub mod ui;

pub use state::{
    App, AppState, ConnectionLimits, DEFAULT_CHECK_CREATE_RATE, DEFAULT_CHECK_LIMIT, ServerConfig,
};

use api::{
    alerts, audit, badges, channels, checkins, checks, drill, events, incidents, oncall,
    oncall_config, people, policies, prometheus, schedules,
};

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/checks/", get(checks::list).post(checks::create))
        .route(
            "/checks/{code}",
            get(checks::get).post(checks::update).delete(checks::delete),
        )
        .route("/checks/{code}/pause", post(checks::pause))
        .route("/checks/{code}/resume", post(checks::resume))
        .route("/checks/{code}/pings/", get(checks::pings))
        .route("/checks/{code}/pings/{n}/body", get(checks::ping_body))
        .route("/checks/{code}/flips/", get(checks::flips))
        .route("/checks/{code}/notifications/", get(checks::notifications))
        .route("/checks/{code}/events/", get(checks::events))
        .route(
            "/channels/",
            get(channels::list_channels).post(channels::create_channel),
        )
        .route("/status/", any(status))
        .route("/badges/", get(badges::list))
        .route("/oncall/", get(oncall::who))
        .route("/alerts/", get(alerts::list))
        .route("/alerts/{id}", get(alerts::get))
        .route("/alerts/{id}/ack", post(alerts::acknowledge))
        .route("/alerts/{id}/resolve", post(alerts::resolve))
        .route("/alerts/{id}/notes", post(alerts::note))
        // Healthchecks (Django's APPEND_SLASH) redirects these without their trailing slash.
        .route("/checks", any(append_slash))
        .route("/status", any(append_slash))
        .route("/channels", any(append_slash))
        .route("/badges", any(append_slash))
        .route("/checks/{code}/flips", any(append_slash))
        .route("/checks/{code}/pings", any(append_slash))
        .layer(middleware::from_fn(cors));
    // keepwatch's own resources: the on-call configuration and what it defines.
    let oncall = Router::new()
        .route(
            "/oncall/config",
            get(oncall_config::get_config)
                .put(oncall_config::put_config)
                .layer(DefaultBodyLimit::max(oncall_config::ONCALL_FILE_LIMIT)),
        )
        .route("/drill", get(drill::drill))
        .route("/drill/live", post(drill::live))
        .route("/drill/live/{id}", get(drill::live_report))
        .route("/drill/live/{id}/ack", post(drill::live_ack))
        .route("/audit", get(audit::audit))
        .route("/checkins/", get(checkins::list))
        .route("/checkins/{id}/ack", post(checkins::acknowledge))
        .route("/people/", get(people::people))
        .route("/people/{id}", get(people::person))
        .route(
            "/people/{id}/contacts/{contact}/send-code",
            post(people::send_code),
        )
        .route(
            "/people/{id}/contacts/{contact}/verify",
            post(people::verify_code),
        )
        .route("/schedules/", get(schedules::schedules))
        .route("/schedules/{name}", get(schedules::schedule))
        .route("/policies/", get(policies::policies))
        .route("/policies/{name}", get(policies::policy))
        .route("/services/", get(policies::services))
        .route("/services/{name}", get(policies::service))
        .route("/incidents/", get(incidents::list).post(incidents::declare))
        .route("/incidents/{id}", get(incidents::get))
        .route("/incidents/{id}/updates", post(incidents::update))
        .route("/incidents/{id}/owner", post(incidents::owner))
        .route("/incidents/{id}/resolve", post(incidents::resolve))
        .route("/incidents/{id}/reopen", post(incidents::reopen))
        .route("/incidents/{id}/notes", post(incidents::note))
        .route("/incidents/{id}/postmortem", post(incidents::postmortem))
        .route("/incidents/{id}/alerts", post(incidents::attach))
        .route("/incidents/{id}/page", post(incidents::rotate_page))
        .route("/incidents/{id}/export", get(incidents::export));
    Router::new()
        .route("/ping/{a}", any(ping::ping))
        .route("/ping/{a}/", any(ping::ping))
        .route("/ping/{a}/{b}", any(ping::ping))
        .route("/ping/{a}/{b}/{c}", any(ping::ping))
        .nest("/api/v3", api.clone().layer(middleware::from_fn(v3)))
        .nest("/api/v2", api.clone().layer(middleware::from_fn(v2)))
        .nest("/api/v1", api.merge(oncall).layer(middleware::from_fn(v1)))
        .route("/ical/{file}", get(oncall::feed))
        .route("/api/v1/events", post(events::events))
        .route("/v2/enqueue", post(events::events))
        .route("/api/v1/alertmanager/{key}", post(events::alertmanager))
        .route("/a/{token}", get(links::confirm).post(links::act))
        .route("/s/{token}", get(incidents::page))
        .route("/badge/{key}/{file}", get(badges::all))
        .route("/badge/{key}/{sig}/{file}", get(badges::tagged))
        .route("/b/{states}/{file}", get(badges::check))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        // Healthchecks' Prometheus endpoint (a project's checks, read-only key).
        .route("/projects/{code}/metrics/{key}", get(prometheus::with_key))
        .route(
            "/projects/{code}/checks/metrics/{key}",
            get(prometheus::with_key),
        )
        .route("/projects/{code}/metrics/", get(prometheus::with_bearer))
        .route("/", get(index))
        .merge(ui::routes())
        .with_state(state)
}

async fn v1(request: Request, next: Next) -> Response {
    api::API_VERSION.scope(1, next.run(request)).await
}

async fn v2(request: Request, next: Next) -> Response {
    api::API_VERSION.scope(2, next.run(request)).await
}

async fn v3(request: Request, next: Next) -> Response {
    api::API_VERSION.scope(3, next.run(request)).await
}

/// `301 Moved Permanently` to the same path with a trailing slash and the same query, as
/// Django's `APPEND_SLASH` answers Healthchecks' API paths without theirs.
async fn append_slash(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> Response {
    let location = match uri.query() {
        Some(query) => format!("{}/?{query}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Healthchecks' API CORS: every answer allows any origin; OPTIONS is answered without auth.
/// Its checks and channels views answer only their methods: HEAD is a 405 there (axum would
/// answer it as a GET).
async fn cors(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else if request.method() == Method::HEAD
        && (path.starts_with("/checks") || path.starts_with("/channels"))
    {
        StatusCode::METHOD_NOT_ALLOWED.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Api-Key"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// `/api/v3/status/`: 200 "OK" only if the database answers a read and takes a write, so a
/// load balancer or an outside monitor sees a full disk (pings then fail with 503 too).
///
/// keepwatch's extra: asked with `Accept: application/json`, the answer is JSON and says which
/// instance this is and which instance holds each background loop's lease (PostgreSQL with
/// several instances; with SQLite the one instance does all the work).
async fn status(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let healthy = match state.store.ping_db().await {
        Ok(()) => state.store.probe_writes(state.engine.now().into()).await,
        Err(e) => Err(e),
    };
    if json {
        let (instance, leases) = match state.engine.leases() {
            Some((instance, leases)) => (Some(instance), Some(leases)),
            None => (None, None),
        };
        let code = if healthy.is_ok() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        if let Err(e) = &healthy {
            tracing::error!(error = %e, "health check failed");
        }
        let body = serde_json::json!({
            "status": if healthy.is_ok() { "ok" } else { "database unavailable" },
            "backend": state.store.backend_name(),
            "instance": instance,
            "leases": leases,
        });
        return (code, axum::Json(body)).into_response();
    }
    match healthy {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "OK",
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// `/metrics`: keepwatch's own gauges and histograms. With a metrics key set (`serve
/// --metrics-key-file`, `KEEPWATCH_METRICS_KEY`), only for `Authorization: Bearer <key>`:
/// 401 without it, 403 with another key.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.config.metrics_key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(given) = given else {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "/metrics needs Authorization: Bearer <metrics key>\n",
            )
                .into_response();
        };
        // Compared as digests, so the time taken says nothing about the key.
        use sha2::{Digest, Sha256};
        if Sha256::digest(given.as_bytes()) != Sha256::digest(expected.as_bytes()) {
            return (StatusCode::FORBIDDEN, "wrong metrics key\n").into_response();
        }
    }
    if let Ok(stats) = state.engine.stats().await {
        for status in ["new", "up", "down", "paused"] {
            let count = stats.by_status.get(status).copied().unwrap_or(0);
            metrics::gauge!("keepwatch_checks", "status" => status).set(count as f64);
        }
        metrics::gauge!("keepwatch_checks_running").set(stats.running as f64);
    }
    if let Ok(depth) = state.store.outbox_depth().await {
        metrics::gauge!("keepwatch_outbox_pending").set(depth as f64);
    }
    // Which loops this instance runs now (PostgreSQL leases; the status endpoint names the
    // holder of each).
    if let Some((instance, leases)) = state.engine.leases() {
        for lease in leases {
            metrics::gauge!("keepwatch_lease_held", "work" => lease.work, "instance" => instance.clone())
                .set(if lease.mine { 1.0 } else { 0.0 });
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// `/`: the web UI (a browser lands on the dashboard, or the sign-in page).
/// The OpenAPI 3.1 document of every API above (written by hand, checked in CI by a
/// schema-driven fuzzer against the running server: see tests/api/openapi.rs).
const OPENAPI: &str = include_str!("api/openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

async fn index() -> axum::response::Redirect {
    axum::response::Redirect::to("/ui/")
}

#[cfg(test)]
mod tests {
    /// Every route of the router is in the OpenAPI document (paths compared with their
    /// parameters unnamed), but the web UI, the signed action links and the redirects that
    /// add a trailing slash. Read from this file's source: a route added without documenting
    /// it fails here.
    #[test]
    fn every_api_route_is_in_the_openapi_document() {
        let document: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let unnamed = |path: &str| {
            let mut out = String::new();
            let mut in_param = false;
            for c in path.chars() {
                match c {
                    '{' => {
                        in_param = true;
                        out.push_str("{}");
                    }
                    '}' => in_param = false,
                    _ if in_param => {}
                    _ => out.push(c),
                }
            }
            out
        };
        let documented: std::collections::HashSet<String> = document["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(|p| unnamed(p))
            .collect();
        let source = include_str!("lib.rs");
        let router = &source[source.find("pub fn router").unwrap()..];
        let router = &router[..router.find("\n}\n").unwrap()];
        let oncall_at = router.find("let oncall").unwrap();
        let top_at = router
            .find("    Router::new()\n        .route(\"/ping")
            .unwrap();
        let mut missing = Vec::new();
        for (at, _) in router.match_indices(".route(") {
            let rest = router[at..].trim_start_matches(".route(").trim_start();
            let path = &rest[1..rest[1..].find('"').unwrap() + 1];
            let line_end = rest.find(")\n").unwrap_or(rest.len());
            if rest[..line_end].contains("append_slash")
                || ["/a/", "/s/", "/ui"].iter().any(|p| path.starts_with(p))
                || path == "/"
            {
                continue;
            }
            // The Healthchecks API is mounted under v1, v2 and v3 (documented as v3), the
            // on-call resources under v1 and the status ping paths in several shapes.
            let candidates: Vec<String> = if at < oncall_at {
                vec![format!("/api/v3{path}"), format!("/api/v1{path}")]
            } else if at < top_at {
                vec![format!("/api/v1{path}")]
            } else {
                vec![path.to_string()]
            };
            let found = candidates.iter().any(|c| {
                let c = unnamed(c);
                documented.contains(&c)
                    || (c.starts_with("/ping/")
                        && documented.iter().any(|d| {
                            d.starts_with("/ping/")
                                && d.matches('/').count()
                                    >= c.trim_end_matches('/').matches('/').count()
                        }))
            });
            if !found {
                missing.push(candidates[0].clone());
            }
        }
        assert!(
            missing.is_empty(),
            "routes missing from openapi.json: {missing:?}"
        );
    }
}
