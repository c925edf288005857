//! The keepwatch HTTP server.
//!
//! - [`ping`]: the Healthchecks-compatible ping API (the hot path).
//! - [`checks`]: the Healthchecks Management API v3 and keepwatch's additions.
//! - [`spec`]: validation of check create/update bodies, with Healthchecks' messages.
//! - [`error`]: API errors shaped as Healthchecks shapes them.
//!
//! Plus `/api/v3/status/` (health) and `/metrics` (Prometheus text format).

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use keepwatch_engine::Engine;
use keepwatch_store::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower::Service;

pub mod alerts;
pub mod auth;
pub mod checks;
pub mod error;
pub mod listen;
pub mod oncall;
pub mod ping;
pub mod quota;
pub mod redact;
pub mod resources;
pub mod spec;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public base URL (API links in responses).
    pub site_url: String,
    /// Base of ping URLs shown in the API (`<site_url>/ping`).
    pub ping_url: String,
    /// Bytes of a ping body that are stored; the rest is dropped and the ping marked truncated.
    pub ping_body_limit: usize,
    /// Pings listed per check by the API.
    pub ping_log_limit: i64,
    /// Connection timeouts and cap.
    pub limits: listen::ConnectionLimits,
    /// Checks a project may have (`?create=1` may create up to twice as many).
    pub check_limit: i64,
    /// Checks a project may create a minute.
    pub check_create_rate: u32,
}

impl ServerConfig {
    pub fn new(site_url: &str, ping_body_limit: usize) -> ServerConfig {
        let site_url = site_url.trim_end_matches('/').to_string();
        ServerConfig {
            ping_url: format!("{site_url}/ping"),
            site_url,
            ping_body_limit,
            ping_log_limit: 100,
            limits: listen::ConnectionLimits::default(),
            check_limit: DEFAULT_CHECK_LIMIT,
            check_create_rate: DEFAULT_CHECK_CREATE_RATE,
        }
    }
}

/// Healthchecks' check limit of a self-hosted account.
pub const DEFAULT_CHECK_LIMIT: i64 = 10_000;
/// Enough for provisioning tools, few enough that a leaked ping key fills nothing fast.
pub const DEFAULT_CHECK_CREATE_RATE: u32 = 120;

/// What every handler shares.
pub struct App {
    pub engine: Engine,
    pub store: Store,
    pub config: ServerConfig,
    pub metrics: PrometheusHandle,
}

/// The handlers' state: axum clones it for every request, so it is one `Arc` (cloning the
/// fields themselves, a dozen reference counts and two strings, showed in ping profiles).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The [`App`] and what every ping answer derives from it, made once.
struct Shared {
    app: App,
    ping_body_limit_header: HeaderValue,
    creation_rate: quota::CreationRate,
}

impl AppState {
    pub fn new(app: App) -> AppState {
        let ping_body_limit_header = HeaderValue::from(app.config.ping_body_limit);
        AppState(Arc::new(Shared {
            app,
            ping_body_limit_header,
            creation_rate: quota::CreationRate::default(),
        }))
    }

    /// Check creations per project, for [`quota::may_create`].
    pub fn creation_rate(&self) -> &quota::CreationRate {
        &self.0.creation_rate
    }

    /// The `Ping-Body-Limit` header's value.
    pub fn ping_body_limit_header(&self) -> &HeaderValue {
        &self.0.ping_body_limit_header
    }
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0.app
    }
}

/// The process-wide Prometheus recorder (the `metrics` facade allows one per process).
///
/// Histograms keep every recorded value until upkeep folds them into their buckets, so a
/// thread runs it every few seconds: without it, a server nobody scraped grew with every ping
/// (~25 bytes each under `bench/ping.sh`; `install_recorder` leaves upkeep to its caller).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("keepwatch_ping_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ],
                )
                .and_then(|b| b.set_buckets(&[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]))
                .expect("static bucket lists are not empty")
                .install_recorder()
                .expect("the metrics recorder is installed once");
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("keepwatch-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread can be started at start-up");
            handle
        })
        .clone()
}

/// How often recorded histogram values are folded into their buckets.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

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
        .route(
            "/channels/",
            get(checks::list_channels).post(checks::create_channel),
        )
        .route("/status/", any(status))
        .route("/oncall/", get(oncall::who))
        .route("/alerts/", get(alerts::list))
        .route("/alerts/{id}", get(alerts::get))
        .route("/alerts/{id}/ack", post(alerts::acknowledge))
        .route("/alerts/{id}/resolve", post(alerts::resolve))
        .layer(middleware::from_fn(cors));
    // keepwatch's own resources: the on-call configuration and what it defines.
    let oncall = Router::new()
        .route(
            "/oncall/config",
            get(resources::get_config)
                .put(resources::put_config)
                .layer(DefaultBodyLimit::max(resources::ONCALL_FILE_LIMIT)),
        )
        .route("/people/", get(resources::people))
        .route("/people/{id}", get(resources::person))
        .route(
            "/people/{id}/contacts/{contact}/send-code",
            post(resources::send_code),
        )
        .route(
            "/people/{id}/contacts/{contact}/verify",
            post(resources::verify_code),
        )
        .route("/schedules/", get(resources::schedules))
        .route("/schedules/{name}", get(resources::schedule))
        .route("/policies/", get(resources::policies))
        .route("/policies/{name}", get(resources::policy))
        .route("/services/", get(resources::services))
        .route("/services/{name}", get(resources::service));
    Router::new()
        .route("/ping/{a}", any(ping::ping))
        .route("/ping/{a}/", any(ping::ping))
        .route("/ping/{a}/{b}", any(ping::ping))
        .route("/ping/{a}/{b}/{c}", any(ping::ping))
        .nest("/api/v3", api.clone())
        .nest("/api/v2", api.clone())
        .nest("/api/v1", api.merge(oncall))
        .route("/ical/{file}", get(oncall::feed))
        .route("/api/v1/events", post(alerts::events))
        .route("/v2/enqueue", post(alerts::events))
        .route("/api/v1/alertmanager/{key}", post(alerts::alertmanager))
        .route(
            "/a/{token}",
            get(alerts::link_confirm).post(alerts::link_act),
        )
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .with_state(state)
}

/// Healthchecks' API CORS: every answer allows any origin; OPTIONS is answered without auth.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
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
async fn status(State(state): State<AppState>) -> Response {
    let now_us = keepwatch_store::to_micros(state.engine.clock.now());
    let healthy = match state.store.ping_db().await {
        Ok(()) => state.store.probe_writes(now_us).await,
        Err(e) => Err(e),
    };
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

async fn metrics(State(state): State<AppState>) -> Response {
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn index() -> &'static str {
    "keepwatch is running. Ping API: /ping/<uuid>; Management API: /api/v3/checks/; metrics: /metrics\n"
}

/// The peer's IP address as pings record it, formatted once per connection: formatting it
/// per request was about 3% of a keep-alive ping's instructions (callgrind).
#[derive(Clone)]
pub struct PeerAddr(pub Arc<str>);

/// A request through the router, with the peer address as `ConnectInfo<PeerAddr>`.
fn route(
    router: &mut Router,
    peer: &PeerAddr,
    mut request: Request,
) -> <Router as Service<Request>>::Future {
    request.extensions_mut().insert(ConnectInfo(peer.clone()));
    router.call(request)
}

/// Serves until `shutdown` completes (see [`listen`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve(listener, state, shutdown).await
}
