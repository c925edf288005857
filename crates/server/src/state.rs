//! What every handler shares: the [`App`] (engine, store, settings, metrics) behind the
//! [`AppState`] that axum clones per request, and the server's settings ([`ServerConfig`],
//! [`ConnectionLimits`]) with their defaults. It sits below every handler module and uses
//! none of them, so handlers and the connection layer ([`crate::listen`]) can all depend on
//! it without a cycle.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use keepwatch_engine::Engine;
use keepwatch_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::quota;

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
    pub limits: ConnectionLimits,
    /// Checks a project may have (`?create=1` may create up to twice as many).
    pub check_limit: i64,
    /// Checks a project may create a minute.
    pub check_create_rate: u32,
    /// The key `/metrics` asks for (`Authorization: Bearer <key>`); `None`: open.
    pub metrics_key: Option<String>,
}

impl ServerConfig {
    pub fn new(site_url: &str, ping_body_limit: usize) -> ServerConfig {
        let site_url = site_url.trim_end_matches('/').to_string();
        ServerConfig {
            ping_url: format!("{site_url}/ping"),
            site_url,
            ping_body_limit,
            ping_log_limit: 100,
            limits: ConnectionLimits::default(),
            check_limit: DEFAULT_CHECK_LIMIT,
            check_create_rate: DEFAULT_CHECK_CREATE_RATE,
            metrics_key: None,
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
    quota: quota::CheckQuota,
    login_limiter: crate::ui::session::LoginLimiter,
    /// The secret of the first-admin setup link, while there is no user.
    setup_token: std::sync::Mutex<Option<String>>,
}

impl AppState {
    pub fn new(app: App) -> AppState {
        let ping_body_limit_header = HeaderValue::from(app.config.ping_body_limit);
        let quota = quota::CheckQuota::new(app.config.check_limit, app.config.check_create_rate);
        AppState(Arc::new(Shared {
            app,
            ping_body_limit_header,
            quota,
            login_limiter: Default::default(),
            setup_token: Default::default(),
        }))
    }

    /// Whether the project may create a check now; `auto` for `?create=1` (see [`quota`]).
    pub async fn may_create(
        &self,
        project_id: i64,
        auto: bool,
    ) -> Result<Result<(), quota::Refusal>, keepwatch_store::StoreError> {
        let now = self.engine.now();
        self.0
            .quota
            .may_create(&self.store, now, project_id, auto)
            .await
    }

    /// Failed web UI sign-ins, to refuse guessing.
    pub fn login_limiter(&self) -> &crate::ui::session::LoginLimiter {
        &self.0.login_limiter
    }

    pub fn set_setup_token(&self, token: &str) {
        *self.0.setup_token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.to_string());
    }

    pub fn setup_token_matches(&self, token: &str) -> bool {
        self.0
            .setup_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .is_some_and(|t| t == token)
    }

    pub fn clear_setup_token(&self) {
        *self.0.setup_token.lock().unwrap_or_else(|e| e.into_inner()) = None;
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

/// Connection timeouts and the cap on open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From accept (or from the first byte of a keep-alive connection's next request) to the
    /// end of the request's headers.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// From the end of a request's headers to the end of its body.
    pub body_read_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}
