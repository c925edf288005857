//! `spawn_app()`: the real server on a random loopback port, a temporary SQLite file (or a
//! fresh PostgreSQL database), a manual clock the test advances, and typed helpers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use keepwatch_engine::{Engine, EngineConfig, ManualClock, SmtpConfig};
use keepwatch_server::app::{AppConfig, RunningApp};
use keepwatch_store::{Store, Timestamp};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

#[derive(Default)]
pub struct AppOptions {
    /// Reuse a data directory (restarts); a fresh temporary one otherwise.
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub smtp: Option<SmtpConfig>,
    pub ping_body_limit: Option<usize>,
    pub start: Option<DateTime<Utc>>,
    /// Connection timeouts and cap; the server's defaults otherwise.
    pub limits: Option<keepwatch_server::ConnectionLimits>,
    /// Checks per project and creations a minute; the server's defaults otherwise.
    pub check_limit: Option<(i64, u32)>,
    /// Refuse private destinations, as `keepwatch serve` does by default (the tests'
    /// receivers are on loopback, so they are allowed unless this is set).
    pub refuse_private: bool,
    /// Pings kept per check; the server's default (100) otherwise.
    pub ping_log_limit: Option<i64>,
    /// The key `/metrics` asks for; open otherwise.
    pub metrics_key: Option<String>,
}

pub struct TestApp {
    pub address: String,
    pub api_key: String,
    pub read_key: String,
    pub ping_key: String,
    pub store: Store,
    pub engine: Engine,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    pub running: RunningApp,
    _temp: Option<tempfile::TempDir>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// reqwest is built without a default TLS provider (see the README's stack notes); every
/// test that builds a client calls this first.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    install_crypto();
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
    }
    let (temp, data_dir) = match options.data_dir {
        Some(dir) => (None, dir),
        None => {
            let temp = tempfile::tempdir().unwrap();
            let dir = temp.path().to_path_buf();
            (Some(temp), dir)
        }
    };
    let clock = Arc::new(ManualClock::new(options.start.unwrap_or_else(t0)));
    let running = keepwatch_server::app::start(AppConfig {
        database_url: options.database_url,
        data_dir: data_dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        site_url: None,
        clock: clock.clone(),
        engine: EngineConfig {
            smtp: options.smtp,
            allow_private_destinations: !options.refuse_private,
            ping_log_limit: options.ping_log_limit.unwrap_or(100),
            ..EngineConfig::default()
        },
        ping_body_limit: options.ping_body_limit.unwrap_or(100_000),
        limits: options.limits.unwrap_or_default(),
        check_limit: options
            .check_limit
            .map_or(keepwatch_server::DEFAULT_CHECK_LIMIT, |l| l.0),
        check_create_rate: options
            .check_limit
            .map_or(keepwatch_server::DEFAULT_CHECK_CREATE_RATE, |l| l.1),
        metrics_key: options.metrics_key,
    })
    .await
    .unwrap();
    let store = running.store.clone();
    let project = match store.project_by_name("default").await.unwrap() {
        Some(p) => p,
        None => store
            .create_project("default", Timestamp::default())
            .await
            .unwrap(),
    };
    let api_key = store
        .create_api_key(project.id, false, "", Timestamp::default())
        .await
        .unwrap();
    let read_key = store
        .create_api_key(project.id, true, "", Timestamp::default())
        .await
        .unwrap();
    TestApp {
        address: running.site_url.clone(),
        api_key,
        read_key,
        ping_key: project.ping_key,
        store,
        engine: running.engine.clone(),
        clock,
        client: reqwest::Client::new(),
        data_dir,
        running,
        _temp: temp,
    }
}

impl TestApp {
    /// Stops the server as `keepwatch serve` does on SIGTERM; the data directory stays.
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        let TestApp {
            running,
            engine,
            store,
            _temp,
            ..
        } = self;
        // The engine's actor ends when its last handle is gone.
        drop((engine, store));
        running.shutdown().await.unwrap();
        _temp
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// GET/POST/… a ping URL; returns status, headers and body.
    pub async fn ping(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, HeaderMap, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let headers = convert_headers(response.headers());
        (status, headers, response.text().await.unwrap())
    }

    pub async fn api(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.header("X-Api-Key", key);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a check with the full-access key and returns its JSON.
    pub async fn create_check(&self, body: Value) -> Value {
        let (status, check) = self
            .api("POST", "/api/v3/checks/", Some(&self.api_key), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{check}");
        check
    }

    /// The check's pings as the API lists them, newest first.
    pub async fn pings(&self, uuid: &str) -> Vec<Value> {
        let (_, body) = self.get(&format!("/api/v3/checks/{uuid}/pings/")).await;
        body["pings"].as_array().unwrap().clone()
    }

    pub async fn get_check(&self, uuid: &str) -> Value {
        let (status, check) = self.get(&format!("/api/v3/checks/{uuid}")).await;
        assert_eq!(status, StatusCode::OK, "{check}");
        check
    }

    /// Creates a webhook channel pointing at `receiver` and returns its id.
    pub async fn webhook_channel(&self, receiver: &Receiver, secret: Option<&str>) -> String {
        let body =
            json!({"name": "hook", "kind": "webhook", "url": receiver.url, "secret": secret});
        let (status, channel) = self
            .api("POST", "/api/v3/channels/", Some(&self.api_key), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{channel}");
        channel["id"].as_str().unwrap().to_string()
    }

    pub fn advance(&self, by: chrono::TimeDelta) {
        self.clock.advance(by);
    }

    /// GET `path` with the full-access key.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.api("GET", path, Some(&self.api_key), None).await
    }

    /// GET `path` with the read-only key.
    pub async fn get_read_only(&self, path: &str) -> (StatusCode, Value) {
        self.api("GET", path, Some(&self.read_key), None).await
    }

    /// POST `body` (or none) to `path` with the full-access key.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.api("POST", path, Some(&self.api_key), body).await
    }

    /// GET `path` with `key`; the body as text, exactly as sent.
    pub async fn get_text(&self, key: &str, path: &str) -> (StatusCode, String) {
        let response = self
            .client
            .get(self.url(path))
            .header("X-Api-Key", key)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.text().await.unwrap())
    }

    /// Creates a check with the full-access key and returns its UUID.
    pub async fn create_check_uuid(&self, body: Value) -> String {
        self.create_check(body).await["uuid"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `PUT /api/v1/oncall/config{query}` with `key`, as `keepwatch apply --server` does;
    /// returns the status and the JSON answer (its text if it is not JSON).
    pub async fn put_oncall_config(
        &self,
        key: &str,
        query: &str,
        file: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .put(self.url(&format!("/api/v1/oncall/config{query}")))
            .header("X-Api-Key", key)
            .body(file)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Applies an on-call file over REST with the full-access key, which must succeed;
    /// returns the answer (changes, calendar feeds, integration keys).
    pub async fn apply_oncall_config(&self, file: &str) -> Value {
        let (status, body) = self
            .put_oncall_config(&self.api_key, "", file.to_string())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Sends one event to the events API (PagerDuty Events v2 shape; no API key).
    pub async fn send_event(&self, event: Value) -> (StatusCode, Value) {
        self.api("POST", "/api/v1/events", None, Some(event)).await
    }

    pub async fn notifications(&self, uuid: &str) -> Vec<Value> {
        let path = format!("/api/v3/checks/{uuid}/notifications/");
        let (status, body) = self.api("GET", &path, Some(&self.api_key), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["notifications"].as_array().unwrap().clone()
    }
}

/// Applies an on-call configuration for the default project straight to the store and
/// returns the integration key of service `billing`.
pub async fn apply(app: &TestApp, source: &str) -> String {
    let project = app.store.project_by_name("default").await.unwrap().unwrap();
    keepwatch_core::oncall::config::OnCall::parse(source).unwrap();
    let feeds = app
        .store
        .apply_oncall(
            project.id,
            source,
            &[("service", "billing")],
            &keepwatch_store::AppliedBy::default(),
            Timestamp::default(),
        )
        .await
        .unwrap();
    feeds
        .into_iter()
        .find(|f| f.kind == "service")
        .unwrap()
        .token
}

/// An events-API event (`trigger`, `acknowledge`, `resolve`) for dedup key `disk`: "disk
/// full" on `db`, to the service with integration key `routing_key`.
pub fn disk_event(routing_key: &str, action: &str) -> Value {
    json!({
        "routing_key": routing_key, "event_action": action, "dedup_key": "disk",
        "payload": {"summary": "disk full", "source": "db", "severity": "error"},
    })
}

/// A second project and a full-access key of it, to show one project's key cannot reach
/// another's data.
pub async fn other_project_key(app: &TestApp) -> String {
    let other = app
        .store
        .create_project("other", Timestamp::default())
        .await
        .unwrap();
    app.store
        .create_api_key(other.id, false, "", Timestamp::default())
        .await
        .unwrap()
}

/// Service `billing` pages alice by email at once (the shared fixture).
pub fn one_service() -> String {
    include_str!("../../../../fixtures/oncall/alice-on-billing.toml").to_string()
}

/// Service `billing` pages alice at step 1 through one contact, `after` minutes on.
pub fn alice_by_webhook(contact: &str, url: &str, after: u32) -> String {
    one_service()
        .replace(
            r#"contacts = { email = "alice@example.com" }"#,
            &format!(r#"contacts = {{ {contact} = "{url}" }}"#),
        )
        .replace(
            r#"contact = "email", after = 0"#,
            &format!(r#"contact = "{contact}", after = {after}"#),
        )
}

/// An on-call `[[people]]` entry: `id` is paged at once, at high urgency, through each of
/// `contacts` (name, address) in turn.
pub fn person(id: &str, contacts: &[(&str, &str)]) -> String {
    let addresses: Vec<String> = contacts
        .iter()
        .map(|(name, to)| format!("{name} = \"{to}\""))
        .collect();
    let rules: Vec<String> = contacts
        .iter()
        .map(|(name, _)| format!("{{ urgency = \"high\", contact = \"{name}\", after = 0 }}"))
        .collect();
    format!(
        "[[people]]\nid = \"{id}\"\ncontacts = {{ {} }}\nrules = [{}]\n",
        addresses.join(", "),
        rules.join(", ")
    )
}

/// An on-call schedule with one layer rotating through `participants` every `shift`
/// (`1d`, `1w`, …) from `start`, local time in `tz`.
pub fn schedule(name: &str, tz: &str, participants: &[&str], shift: &str, start: &str) -> String {
    format!(
        "[[schedules]]\nname = \"{name}\"\ntz = \"{tz}\"\n\
         [[schedules.layers]]\nname = \"rotation\"\nparticipants = [{}]\n\
         shift = \"{shift}\"\nstart = \"{start}\"\n",
        quoted(participants)
    )
}

/// `"a", "b"`: names as a TOML array's items.
fn quoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    quoted.join(", ")
}

/// Policy `p`, whose one step pages `targets` (10 minutes), and service `billing` on it at
/// high urgency: the end of the shared fixture, for people other than its alice.
pub fn billing_pages(targets: &[&str]) -> String {
    format!(
        "[[policies]]\nname = \"p\"\nsteps = [{{ targets = [{}], delay = 10 }}]\n\
         [[services]]\nname = \"billing\"\npolicy = \"p\"\nurgency = \"high\"\n",
        quoted(targets)
    )
}

fn convert_headers(headers: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let name = axum::http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap();
        out.insert(
            name,
            axum::http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    out
}

/// One request the test receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on loopback standing in for a webhook endpoint. It answers with the
/// queued statuses first, then 200.
pub struct Receiver {
    pub url: String,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    pub async fn start(statuses: Vec<u16>) -> Receiver {
        use axum::routing::post;
        let (tx, rx) = mpsc::unbounded_channel();
        let statuses = Arc::new(std::sync::Mutex::new(statuses));
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                let statuses = statuses.clone();
                async move {
                    let _ = tx.send(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    let mut statuses = statuses.lock().unwrap();
                    let status = if statuses.is_empty() {
                        200
                    } else {
                        statuses.remove(0)
                    };
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}/hook"),
            rx,
        }
    }

    /// The next request, waiting at most 10 s (the engine is asynchronous, not late).
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("no webhook delivery within 10 s")
            .expect("receiver closed")
    }

    /// True if nothing more arrived (checked after the engine has provably caught up).
    pub fn is_empty(&mut self) -> bool {
        self.rx.try_recv().is_err()
    }
}

/// A success ping as the HTTP layer would hand it to the engine, for tests that go straight
/// to the engine.
pub fn engine_ping(check: uuid::Uuid) -> keepwatch_engine::PingRequest {
    keepwatch_engine::PingRequest {
        check,
        kind: keepwatch_core::check::PingKind::Success,
        identity: keepwatch_core::check::RunIdentity {
            rid: None,
            host: None,
            pid: None,
        },
        scheme: "http".into(),
        method: "GET".into(),
        remote_addr: "127.0.0.1".into(),
        user_agent: String::new(),
        volume: None,
        body: None,
        body_truncated: false,
        at: None,
        strays: Vec::new(),
        scan_skipped: None,
        snapshot: None,
    }
}

/// Polls `f` until it returns `Some`, for at most 10 s: waiting for the asynchronous
/// dispatcher to record an outcome, never for a deadline.
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "condition not reached within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
