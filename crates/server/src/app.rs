//! The whole service put together and taken down again: [`start`] opens the store, binds
//! the listener, starts the engine, builds the handlers' state and the router and serves;
//! [`RunningApp::shutdown`] stops them in the reverse order. `keepwatch serve` and the test
//! harness both go through here, so the tests run the composition users run (they used to
//! keep a copy of it, which had drifted: another shutdown order, another start-up order).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use keepwatch_engine::{Clock, Engine, EngineConfig, EngineTasks};
use keepwatch_store::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};

use crate::state::{App, AppState, ConnectionLimits, ServerConfig};

/// What the service is started with.
pub struct AppConfig {
    /// A PostgreSQL URL; `None` for SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Where the SQLite database lives.
    pub data_dir: PathBuf,
    /// The address to listen on; port 0 picks a free one ([`RunningApp::addr`] says which).
    pub listen: SocketAddr,
    /// The public base URL (links in API answers and notifications); `None` means
    /// `http://<the bound address>`, for a server on port 0.
    pub site_url: Option<String>,
    /// The engine's time: the system clock, or a manual one in tests.
    pub clock: Arc<dyn Clock>,
    /// The engine's settings. Its `site_url` is replaced by the one above, and its
    /// `ping_log_limit` is also how many pings the API lists per check.
    pub engine: EngineConfig,
    /// Bytes of a ping body that are stored.
    pub ping_body_limit: usize,
    /// Connection timeouts and cap.
    pub limits: ConnectionLimits,
    /// Checks a project may have, and create a minute.
    pub check_limit: i64,
    pub check_create_rate: u32,
    /// The key `/metrics` asks for as `Authorization: Bearer <key>`; `None` leaves it open.
    pub metrics_key: Option<String>,
}

/// The service, serving. Dropping it without [`shutdown`](RunningApp::shutdown) stops the
/// listener but leaves the engine's state unwritten since its last checkpoint (as a crash
/// would, which the engine recovers from by replaying pings).
pub struct RunningApp {
    /// The address the listener is bound to.
    pub addr: SocketAddr,
    /// The public base URL in effect.
    pub site_url: String,
    /// The one-time link that creates the first web UI admin, while there is no user.
    pub setup_url: Option<String>,
    pub store: Store,
    pub engine: Engine,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    tasks: EngineTasks,
}

/// Starts the service: opens the store, binds the listener, starts the engine and serves.
/// Errors name what failed (`cannot open the database`, `listen: cannot bind …`).
pub async fn start(config: AppConfig) -> anyhow::Result<RunningApp> {
    let store = Store::open(config.database_url.as_deref(), &config.data_dir)
        .await
        .context("cannot open the database")?;
    // Bound before the engine starts: a port in use fails start-up before any work begins,
    // and a server on port 0 knows its URL for the engine's links.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.listen))?;
    let addr = listener.local_addr()?;
    let site_url = config
        .site_url
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    let engine_config = EngineConfig {
        site_url: site_url.clone(),
        ..config.engine
    };
    let ping_log_limit = engine_config.ping_log_limit;
    let (engine, tasks) = Engine::start(store.clone(), config.clock, engine_config).await?;
    let state = AppState::new(App {
        engine: engine.clone(),
        store: store.clone(),
        config: ServerConfig {
            ping_log_limit,
            limits: config.limits,
            check_limit: config.check_limit,
            check_create_rate: config.check_create_rate,
            metrics_key: config.metrics_key,
            ..ServerConfig::new(&site_url, config.ping_body_limit)
        },
        metrics: metrics_handle(),
    });
    let setup_url = if store.user_count().await? == 0 {
        let token = keepwatch_store::generate_secret(32);
        state.set_setup_token(&token);
        Some(format!("{site_url}/ui/setup/{token}"))
    } else {
        None
    };
    let router = crate::router(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(crate::listen::serve(listener, router, state, async {
        // A dropped sender stops the server too.
        let _ = stopped.await;
    }));
    Ok(RunningApp {
        addr,
        site_url,
        setup_url,
        store,
        engine,
        stop,
        server,
        tasks,
    })
}

impl RunningApp {
    /// Serves until `signal` completes (or the server fails), then shuts down.
    pub async fn serve_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ended = tokio::select! {
            () = signal => None,
            ended = &mut self.server => Some(ended),
        };
        self.stop_in_order(ended).await
    }

    /// Shuts the service down, in this order: stop accepting and let every connection finish
    /// the request it is answering; write the engine's state; stop the background loops
    /// (dispatcher, pager, maintenance); let the engine's actor end; close the store.
    ///
    /// The actor ends when the last [`Engine`] handle is gone: clones of
    /// [`engine`](RunningApp::engine) must be dropped before this is called.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop_in_order(None).await
    }

    /// [`shutdown`](RunningApp::shutdown), given how the server ended if it already has.
    async fn stop_in_order(
        self,
        ended: Option<Result<std::io::Result<()>, JoinError>>,
    ) -> anyhow::Result<()> {
        let RunningApp {
            store,
            engine,
            stop,
            server,
            tasks,
            ..
        } = self;
        let _ = stop.send(());
        let served = match ended {
            Some(ended) => ended,
            None => server.await,
        };
        tracing::info!("shutting down: writing state");
        if let Err(e) = engine.flush().await {
            tracing::error!(error = %e, "the engine's state was not written at shutdown");
        }
        for task in [
            tasks.dispatcher,
            tasks.pager,
            tasks.maintenance,
            tasks.auditor,
            tasks.incidents,
            tasks.checkins,
        ] {
            task.abort();
            let _ = task.await;
        }
        if let Some(task) = tasks.leases {
            task.abort();
            let _ = task.await;
        }
        // The loops have stopped: another instance may take their work at once.
        engine.release_leases().await;
        drop(engine);
        let _ = tasks.actor.await;
        store.close().await;
        served
            .context("the server task failed")?
            .context("the server failed")
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
