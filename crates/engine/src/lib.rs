//! The keepwatch engine: the pure core driven by a clock.
//!
//! - [`actor`]: the single owner of check state. Pings are group-committed; deadlines are
//!   kept in a heap; a checkpoint moves state and pings out of the hot table.
//! - [`delivery`]: the one dispatcher of the outbox of messages (channel events, pages):
//!   claims, summaries and rate limits, retries with backoff, the signed links of pages.
//! - [`channels`]: what a message says and how each kind of destination gets it (formats),
//!   and what sends it (transports).
//! - [`pager`]: alerts from check events, and escalation through the on-call configuration,
//!   which queues pages (notifications to people).
//! - [`clock`]: wall clock for production, manual clock for tests and drills.
//! - [`lease`]: whether this process may run a loop's round (always, with one instance).
//!
//! [`Engine`] is the handle the server and the CLI use.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keepwatch_core::check::{
    CheckRules, CheckState, PingKind, RunIdentity, RunSnapshot, StrayProcess,
};
use keepwatch_store::{AlertRow, CheckRow, NewAlert, Store, StoreError};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub mod actor;
pub mod audit;
pub mod channels;
pub mod checkins;
pub mod clock;
pub mod delivery;
pub mod destination;
mod inbox;
pub mod incidents;
pub mod lease;
pub mod live;
pub mod live_drill;
pub mod pager;
pub mod rounds;

pub use channels::transport::{SmtpConfig, SmtpSecurity};
pub use clock::{Clock, ManualClock, SystemClock};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often the in-memory state is checkpointed to the database.
    pub checkpoint_interval: Duration,
    /// Pings kept per check (Healthchecks keeps 100).
    pub ping_log_limit: i64,
    /// First retry delay of a failed delivery; doubles on each attempt, capped at an hour.
    pub retry_base: Duration,
    /// Attempts before a delivery is marked failed.
    pub max_attempts: i64,
    /// Deliveries sent at once.
    pub delivery_concurrency: usize,
    /// Timeout of one webhook request or SMTP conversation.
    pub delivery_timeout: Duration,
    /// Deliver to loopback, private, link-local and other non-public addresses (receivers on
    /// the operator's own network). Off: such destinations are refused (see [`destination`]).
    pub allow_private_destinations: bool,
    pub smtp: Option<SmtpConfig>,
    /// This many pager messages to one contact address per `page_rate_window`; beyond it,
    /// repeats due together fold into one summary (sent at once). First pages always go.
    pub page_rate_limit: u32,
    pub page_rate_window: Duration,
    /// Public base URL of this server, for links in notifications.
    pub site_url: String,
    /// Leases of background work between instances (PostgreSQL only; SQLite has one
    /// instance).
    pub leases: lease::LeaseSettings,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            checkpoint_interval: Duration::from_secs(1),
            ping_log_limit: 100,
            retry_base: Duration::from_secs(10),
            max_attempts: 8,
            delivery_concurrency: 16,
            delivery_timeout: Duration::from_secs(10),
            allow_private_destinations: false,
            smtp: None,
            page_rate_limit: 5,
            page_rate_window: Duration::from_secs(15 * 60),
            site_url: "http://127.0.0.1:8000".into(),
            leases: lease::LeaseSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("check not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("engine stopped")]
    Stopped,
    /// The request conflicts with the state of what it acts on (an update to a resolved
    /// incident).
    #[error("{0}")]
    Conflict(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Unavailable(e.to_string())
    }
}

/// A ping as the HTTP layer parsed it.
#[derive(Debug, Clone)]
pub struct PingRequest {
    pub check: Uuid,
    pub kind: PingKind,
    pub identity: RunIdentity,
    pub scheme: String,
    pub method: String,
    pub remote_addr: String,
    pub user_agent: String,
    pub volume: Option<i64>,
    pub body: Option<Vec<u8>>,
    pub body_truncated: bool,
    /// When the ping happened, if earlier than its arrival (a ping delivered from a spool).
    pub at: Option<DateTime<Utc>>,
    /// Other processes running the job's command or matching a watch pattern, as
    /// `keepwatch run` found them.
    pub strays: Vec<StrayProcess>,
    /// Why `keepwatch run` could not look for such processes, when it could not.
    pub scan_skipped: Option<String>,
    /// A snapshot of the run's processes (on a `log` ping from `keepwatch run`).
    pub snapshot: Option<Box<RunSnapshot>>,
}

#[derive(Debug, Clone)]
pub enum PingReply {
    /// Committed: the ping is durable and its state change and events are stored.
    Ok,
    /// A committed start, with the rules of its check: the runner is told when the run
    /// counts as hung and which processes to watch.
    Started(Arc<CheckRules>),
    NotFound,
}

/// A check as the engine holds it: its live state and its newest ping.
#[derive(Debug, Clone)]
pub struct CheckView {
    pub state: CheckState,
    pub last_seq: Option<i64>,
    /// The rules the engine judges it by (already parsed: a dashboard of 10,000 checks
    /// would otherwise parse 10,000 schedules a request); `None` when read from the store.
    pub rules: Option<Arc<CheckRules>>,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub checks: usize,
    pub by_status: BTreeMap<&'static str, u64>,
    pub running: u64,
    pub last_seq: i64,
}

/// Handle to a running engine; cheap to clone. The server and the CLI go through its methods:
/// checks and pings (to the actor), alerts (trigger, acknowledge, resolve, signed links), the
/// on-call configuration, verification codes.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<actor::Command>,
    store: Store,
    clock: Arc<dyn Clock>,
    /// Wakes the pager (a new alert from the events API or Alertmanager should page now).
    pager_wake: Arc<Notify>,
    /// The key that signs the acknowledge/resolve links in notifications.
    link_secret: Arc<str>,
    /// Sends what the server sends itself: contact verification codes.
    notifier: Arc<dyn channels::Transport>,
    /// Wakes the dispatcher.
    messages_wake: Arc<Notify>,
    pager_rounds: watch::Receiver<rounds::Round>,
    dispatcher_rounds: watch::Receiver<rounds::Round>,
    /// Incidents: declare, update, hand over, resolve, export.
    incidents: incidents::Incidents,
    /// Wakes the incident loop, and its rounds.
    incidents_wake: Arc<Notify>,
    incident_rounds: watch::Receiver<rounds::Round>,
    /// Wakes the auditor (after an apply).
    audit_wake: Arc<Notify>,
    audit_rounds: watch::Receiver<rounds::Round>,
    /// Bumped after every committed batch of pings and deadlines (see [`Engine::subscribe`]).
    changes: Arc<watch::Sender<u64>>,
    /// Wakes the shift check-in loop (after an apply), and its rounds.
    checkins_wake: Arc<Notify>,
    checkin_rounds: watch::Receiver<rounds::Round>,
    /// Live drills in progress and done (in memory).
    live_drills: live_drill::LiveDrills,
    /// The leases of background work (PostgreSQL); `None` with SQLite, the sole instance.
    leases: Option<Arc<lease::DbLeases>>,
}

/// The engine's background tasks.
pub struct EngineTasks {
    pub actor: JoinHandle<()>,
    pub dispatcher: JoinHandle<()>,
    pub pager: JoinHandle<()>,
    pub maintenance: JoinHandle<()>,
    pub incidents: JoinHandle<()>,
    pub auditor: JoinHandle<()>,
    pub checkins: JoinHandle<()>,
    /// Renews the leases (PostgreSQL).
    pub leases: Option<JoinHandle<()>>,
}

/// Database housekeeping on the wall clock (it is not domain time): the SQLite WAL
/// checkpoint, every second.
async fn maintain(store: Store, lease: Arc<dyn lease::Lease>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !lease.holds(lease::Work::Housekeeping) {
            continue;
        }
        if let Err(e) = store.wal_checkpoint().await {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Runs the actor on a thread of its own with a one-thread runtime. On SQLite it commits each
/// batch synchronously there (`Store::commit_batch`), so the commit neither waits for a free
/// runtime worker nor holds one up while HTTP requests queue behind it. The returned handle
/// finishes when the actor does.
fn spawn_on_own_thread(
    actor: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name("keepwatch-engine".into())
        .spawn(move || {
            runtime.block_on(actor);
            let _ = done.send(());
        })?;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}

impl Engine {
    /// Loads state (replaying pings newer than the last checkpoint), then starts the actor, the
    /// dispatcher and the pager. Deadlines that passed while the server was down fire at once, once.
    /// Messages go out over HTTP and SMTP ([`channels::LiveTransport`]).
    pub async fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<(Engine, EngineTasks), StoreError> {
        // One transport (HTTP client, SMTP) for the dispatcher and the server's own messages
        // (contact verification codes).
        let transport: Arc<dyn channels::Transport> =
            Arc::new(channels::LiveTransport::new(&config).map_err(StoreError::task)?);
        Engine::start_with(store, clock, config, transport).await
    }

    /// [`Engine::start`] with the transport every message goes through: a
    /// [`channels::RecordingTransport`] runs the real engine and sends nothing (tests, drills).
    pub async fn start_with(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        transport: Arc<dyn channels::Transport>,
    ) -> Result<(Engine, EngineTasks), StoreError> {
        let wake = Arc::new(Notify::new());
        let pager_wake = Arc::new(Notify::new());
        // On PostgreSQL, several instances may share the database: each loop's work is done
        // under a lease there, kept on the wall clock (leases are between processes, not in
        // the engine's domain time). The first claim is made before any loop runs, so a
        // lone instance starts as it always has.
        let db_leases = if store.backend_name() == "postgres" {
            config
                .leases
                .validate()
                .map_err(|e| StoreError::task(format!("leases: {e}")))?;
            let leases = Arc::new(lease::DbLeases::new(
                store.clone(),
                Arc::new(SystemClock),
                config.leases.clone(),
            ));
            leases.round().await?;
            Some(leases)
        } else {
            None
        };
        let lease: Arc<dyn lease::Lease> = match &db_leases {
            Some(leases) => leases.clone(),
            None => Arc::new(lease::SoleInstance),
        };
        let changes = Arc::new(watch::Sender::new(0));
        let mut actor = actor::Actor::load(
            store.clone(),
            clock.clone(),
            config.clone(),
            wake.clone(),
            pager_wake.clone(),
            lease.clone(),
            changes.clone(),
        )
        .await?;
        // Deadlines that passed while the server was down are judged before the first ping.
        actor.tick().await;
        let (tx, rx) = mpsc::channel(16 * 1024);
        let actor = spawn_on_own_thread(actor.run(rx))
            .map_err(|e| StoreError::task(format!("cannot start the engine thread: {e}")))?;
        // Read once: the pager signs links with it, the server checks them.
        let link_secret: Arc<str> = store.secret("alert_links").await?.into();
        let notifier = transport;
        let incidents = incidents::Incidents {
            store: store.clone(),
            clock: clock.clone(),
            messages_wake: wake.clone(),
            site_url: config.site_url.clone(),
        };
        let incidents_wake = Arc::new(Notify::new());
        let incident_loop = incidents::IncidentLoop {
            incidents: incidents.clone(),
            lease: lease.clone(),
            wake: incidents_wake.clone(),
            rounds: rounds::Rounds::new(),
        };
        let incident_rounds = incident_loop.rounds.watch();
        let incident_task = tokio::spawn(incident_loop.run());
        let pager = pager::Pager::new(
            store.clone(),
            clock.clone(),
            pager_wake.clone(),
            wake.clone(),
            lease.clone(),
        )
        .await?;
        let mut pager = pager;
        pager.alerts_wake = Some(incidents_wake.clone());
        let pager_rounds = pager.rounds();
        let pager = tokio::spawn(pager.run());
        let links = delivery::LinkSigner {
            secret: link_secret.clone(),
            site_url: config.site_url.clone(),
        };
        let checkins_wake = Arc::new(Notify::new());
        let checkin_loop = checkins::CheckinLoop {
            store: store.clone(),
            clock: clock.clone(),
            lease: lease.clone(),
            wake: checkins_wake.clone(),
            messages_wake: wake.clone(),
            links: links.clone(),
            rounds: rounds::Rounds::new(),
        };
        let checkin_rounds = checkin_loop.rounds.watch();
        let checkin_task = tokio::spawn(checkin_loop.run());
        let dispatcher = delivery::Dispatcher::new(
            store.clone(),
            clock.clone(),
            config,
            wake.clone(),
            notifier.clone(),
            links,
            lease.clone(),
        );
        let dispatcher_rounds = dispatcher.rounds();
        let dispatcher = tokio::spawn(dispatcher.run());
        let audit_wake = Arc::new(Notify::new());
        let auditor = audit::Auditor::new(
            store.clone(),
            clock.clone(),
            audit_wake.clone(),
            pager_wake.clone(),
            lease.clone(),
        );
        let audit_rounds = auditor.rounds();
        let auditor = tokio::spawn(auditor.run());
        let maintenance = tokio::spawn(maintain(store.clone(), lease));
        let lease_task = db_leases.as_ref().map(|leases| {
            leases.wake_on_acquire(lease::Work::Alerting, pager_wake.clone());
            leases.wake_on_acquire(lease::Work::Delivery, wake.clone());
            leases.wake_on_acquire(lease::Work::Incidents, incidents_wake.clone());
            leases.wake_on_acquire(lease::Work::Audit, audit_wake.clone());
            leases.wake_on_acquire(lease::Work::Checkins, checkins_wake.clone());
            tokio::spawn(leases.clone().run())
        });
        Ok((
            Engine {
                tx,
                store,
                clock,
                pager_wake,
                link_secret,
                notifier,
                messages_wake: wake,
                pager_rounds,
                dispatcher_rounds,
                incidents,
                incidents_wake,
                incident_rounds,
                audit_wake,
                audit_rounds,
                changes,
                checkins_wake,
                checkin_rounds,
                live_drills: live_drill::LiveDrills::default(),
                leases: db_leases,
            },
            EngineTasks {
                leases: lease_task,
                actor,
                dispatcher,
                pager,
                maintenance,
                incidents: incident_task,
                auditor,
                checkins: checkin_task,
            },
        ))
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> actor::Command,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)
    }

    /// This instance's id and the leases as it last saw them; `None` without leases
    /// (SQLite: this is the only instance and does all the work).
    pub fn leases(&self) -> Option<(String, Vec<lease::LeaseView>)> {
        self.leases
            .as_ref()
            .map(|l| (l.instance().to_string(), l.view()))
    }

    /// Gives up this instance's leases (at shutdown, after the loops have stopped).
    pub async fn release_leases(&self) {
        if let Some(leases) = &self.leases {
            leases.release().await;
        }
    }

    /// Records a ping; returns once it is committed.
    pub async fn ping(&self, request: PingRequest) -> Result<PingReply, EngineError> {
        self.call(|reply| actor::Command::Ping(Box::new(request), reply))
            .await?
    }

    pub async fn create_check(&self, row: CheckRow) -> Result<CheckRow, EngineError> {
        self.call(|reply| actor::Command::Create(Box::new(row), reply))
            .await?
    }

    pub async fn update_check(&self, row: CheckRow) -> Result<CheckRow, EngineError> {
        self.call(|reply| actor::Command::Update(Box::new(row), reply))
            .await?
    }

    pub async fn pause(&self, id: i64) -> Result<(), EngineError> {
        self.call(|reply| actor::Command::Pause(id, reply)).await?
    }

    /// Resumes a paused check; `false` if it was not paused.
    pub async fn resume(&self, id: i64) -> Result<bool, EngineError> {
        self.call(|reply| actor::Command::Resume(id, reply)).await?
    }

    pub async fn delete_check(&self, id: i64) -> Result<(), EngineError> {
        self.call(|reply| actor::Command::Delete(id, reply)).await?
    }

    /// The live states of checks (the stored state can lag by one checkpoint).
    pub async fn states(&self, ids: Vec<i64>) -> Result<Vec<Option<CheckView>>, EngineError> {
        self.call(|reply| actor::Command::States(ids, reply)).await
    }

    pub async fn stats(&self) -> Result<Stats, EngineError> {
        self.call(actor::Command::Stats).await
    }

    /// The engine's time (the wall clock, or a test's or a drill's clock).
    /// Changes whenever check states may have changed (a committed batch of pings or
    /// deadlines): the web UI's live dashboard waits on it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The project's applied on-call configuration, parsed once per apply (the store keeps
    /// the parsed file).
    pub async fn oncall(
        &self,
        project_id: i64,
    ) -> Result<Option<Arc<keepwatch_store::AppliedOnCall>>, EngineError> {
        Ok(self.store.oncall(project_id).await?)
    }

    /// Opens an alert on a service, or attaches a repeated trigger to the open alert with the
    /// same key; returns it and whether it is new. Its urgency is the service's at this
    /// moment. The pager takes it up at once.
    pub async fn trigger(&self, alert: &NewAlert<'_>) -> Result<(AlertRow, bool), EngineError> {
        let now = self.now();
        let applied = self.oncall(alert.project_id).await?;
        let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
        let urgency = keepwatch_core::alert::routing::urgency(config, alert.service, now);
        let triggered = self.store.trigger_alert(alert, urgency, now.into()).await?;
        self.incidents_wake.notify_one();
        let (opened, created) = &triggered;
        tracing::info!(alert = opened.id, service = alert.service, source = %alert.source, urgency = %urgency, new = created, summary = alert.summary, "alert triggered");
        self.pager_wake.notify_one();
        Ok(triggered)
    }

    /// Acknowledges a triggered alert in `who`'s name: escalation stops, pending pages are
    /// cancelled. `None` if there is no such alert; unchanged if it was not triggered.
    pub async fn acknowledge(&self, id: i64, who: &str) -> Result<Option<AlertRow>, EngineError> {
        let alert = self
            .store
            .acknowledge_alert(id, who, self.now().into())
            .await?;
        if let Some(alert) = &alert {
            tracing::info!(alert = id, who, status = %alert.status, "acknowledgment");
        }
        Ok(alert)
    }

    /// Adds a note to an alert's log in `who`'s name; `None` if there is no such alert.
    pub async fn note(
        &self,
        id: i64,
        who: &str,
        text: &str,
    ) -> Result<Option<AlertRow>, EngineError> {
        if !self
            .store
            .add_alert_note(id, who, text, self.now().into())
            .await?
        {
            return Ok(None);
        }
        tracing::info!(alert = id, who, "note added to alert");
        Ok(self.store.alert(id).await?)
    }

    /// Resolves an open alert in `who`'s name; pending pages are cancelled, and the people
    /// who were paged are told.
    pub async fn resolve(&self, id: i64, who: &str) -> Result<Option<AlertRow>, EngineError> {
        let alert = self.store.resolve_alert(id, who, self.now().into()).await?;
        if let Some(alert) = &alert {
            tracing::info!(alert = id, who, status = %alert.status, "resolution");
        }
        // The people who were paged hear of it.
        self.pager_wake.notify_one();
        Ok(alert)
    }

    /// The alert, action (`ack`, `resolve`) and person a notification's signed link grants,
    /// or why not (malformed, not valid, expired).
    pub fn verify_link(&self, token: &str) -> Result<delivery::LinkGrant, &'static str> {
        delivery::verify_link(&self.link_secret, token, self.now())
    }

    /// A project's on-call file was applied: its open alerts are re-planned now, not at their
    /// old due times.
    pub fn oncall_applied(&self) {
        self.audit_wake.notify_one();
        self.checkins_wake.notify_one();
        self.pager_wake.notify_one();
    }

    /// Returns once the pager and the dispatcher have caught up with everything due now: a
    /// pager round that began after this call, then dispatcher rounds until one finds nothing
    /// to send and nothing under way. "Nothing more was sent" is then a fact, not a guess
    /// after a sleep.
    pub async fn settled(&self) {
        // An audit due now raises its alerts before the pager's round.
        let _ = rounds::next_round(&self.audit_rounds, &self.audit_wake).await;
        // Check-ins due now are opened or missed, and their messages queued.
        let _ = rounds::next_round(&self.checkin_rounds, &self.checkins_wake).await;
        if rounds::next_round(&self.pager_rounds, &self.pager_wake)
            .await
            .is_none()
        {
            return;
        }
        // The incident loop reads the alerts the pager opened, and queues messages.
        if rounds::next_round(&self.incident_rounds, &self.incidents_wake)
            .await
            .is_none()
        {
            return;
        }
        while let Some(false) =
            rounds::next_round(&self.dispatcher_rounds, &self.messages_wake).await
        {}
    }

    /// Sends a contact verification code through the contact at once (the person waits for
    /// it) and records the message and its attempt (not its text, which holds the code).
    /// Not retried: the answer says whether it went, and asking again sends a new code.
    pub async fn send_verification_code(
        &self,
        person: &str,
        contact: &str,
        address: &str,
        text: &str,
    ) -> Result<String, channels::Failure> {
        let started = std::time::Instant::now();
        let title = "keepwatch: verify this contact";
        let result = channels::send_plain(&*self.notifier, contact, address, title, text).await;
        let (ok, detail) = match &result {
            Ok(detail) => (true, detail.as_str()),
            Err(failure) => (false, failure.detail.as_str()),
        };
        let sent = keepwatch_store::SentNow {
            kind: keepwatch_store::MessageKind::VerificationCode,
            person,
            contact,
            address,
            at: self.clock.now().into(),
            ok,
            detail,
            took_ms: started.elapsed().as_millis() as i64,
        };
        if let Err(e) = self.store.record_sent_now(&sent).await {
            tracing::error!(error = %e, "cannot record a verification code's delivery");
        }
        result
    }

    /// Acknowledges shift check-in `id` in `who`'s name: its pending messages are cancelled.
    /// `None` if there is no such check-in; a missed one records the late acknowledgment.
    pub async fn acknowledge_checkin(
        &self,
        id: i64,
        who: &str,
    ) -> Result<Option<keepwatch_store::CheckinRow>, EngineError> {
        let row = self
            .store
            .acknowledge_checkin(id, who, self.now().into())
            .await?;
        if let Some(row) = &row {
            tracing::info!(checkin = id, who, state = %row.state, "check-in acknowledged");
        }
        Ok(row)
    }

    /// Starts a live drill of `subject` from `config` now, followed for `horizon`: real
    /// notifications, marked as a drill, each at its time (see [`live_drill`]).
    pub fn start_live_drill(
        &self,
        project_id: i64,
        config: &keepwatch_core::oncall::OnCall,
        subject: &keepwatch_core::alert::drill::Subject,
        horizon: chrono::TimeDelta,
        who: &str,
    ) -> live_drill::LiveDrill {
        let sender = live_drill::Sender {
            store: self.store.clone(),
            clock: self.clock.clone(),
            transport: self.notifier.clone(),
            secret: self.link_secret.clone(),
            site_url: self.incidents.site_url.clone(),
        };
        let drill = self
            .live_drills
            .start(sender, project_id, config, subject, horizon, who);
        tracing::info!(drill = drill.id, service = %drill.service, who, notices = drill.notices.len(), "live drill started");
        drill
    }

    /// A live drill of this process and how it goes.
    pub fn live_drill(&self, id: i64) -> Option<live_drill::LiveDrill> {
        self.live_drills.get(id)
    }

    /// Acknowledges live drill `id` in `who`'s name (the first acknowledgment counts): the
    /// notifications still to come are not sent.
    pub fn acknowledge_drill(&self, id: i64, who: &str) -> Option<live_drill::LiveDrill> {
        let drill = self.live_drills.acknowledge(id, who, self.now());
        if drill.is_some() {
            tracing::info!(drill = id, who, "live drill acknowledged");
        }
        drill
    }

    /// Incidents: declare, show, update, hand over, resolve, reopen, notes, the postmortem
    /// and the stakeholder page (see [`incidents::Incidents`]).
    pub fn incidents(&self) -> &incidents::Incidents {
        &self.incidents
    }

    /// The incident's postmortem export: the timeline with the live heads of its checks'
    /// ping logs, figures and the written postmortem.
    pub async fn export_incident(
        &self,
        project_id: i64,
        id: i64,
    ) -> Result<keepwatch_core::incident::postmortem::Export, EngineError> {
        let mut ids = Vec::new();
        for uuid in self.store.incident_check_uuids(id).await? {
            if let Some(check) = self.store.check_by_uuid(&uuid).await? {
                ids.push(check.id);
            }
        }
        let views = self.states(ids.clone()).await?;
        let heads = ids
            .into_iter()
            .zip(views)
            .filter_map(|(id, view)| Some((id, view?.last_seq?)))
            .collect();
        self.incidents.export(project_id, id, &heads).await
    }

    /// The URL of an incident's stakeholder page.
    pub fn incident_page_url(&self, row: &keepwatch_store::IncidentRow) -> String {
        format!(
            "{}/s/{}",
            self.incidents.site_url.trim_end_matches('/'),
            row.token
        )
    }

    /// Writes all pending state to the database.
    pub async fn flush(&self) -> Result<(), EngineError> {
        self.call(actor::Command::Flush).await
    }
}
