//! Delivers the outbox of messages: one dispatcher for every kind.
//!
//! Due messages are claimed with a lease (see the store's `messages`), sent concurrently
//! through the [`Transport`], and every attempt is recorded. A failure is retried after
//! `retry_base × 2^attempts` (at most an hour) until `max_attempts`, then the message is
//! marked failed; a permanent failure (a refused destination, an unusable address) is marked
//! failed at once.
//!
//! - A **channel event** (a check went down, …) goes to its channel as one message.
//! - **Pages** to one address in one round go as one message when there are
//!   [`pages::SUMMARY_AT`] or more. The first page of each alert is never held back; beyond
//!   `page_rate_limit` messages per `page_rate_window` to one address (counted from the
//!   messages sent, so a restart does not reset it), a round's repeats fold into one summary,
//!   sent at once ([`pages`]). High-urgency rows are claimed before low ones.
//! - An **alert update** (resolved, recovered, a hung run finished late) goes to one person's
//!   contact as one short message, and is logged on its alert.
//!
//! Sends run in a pool that refills as each one finishes: at most `delivery_concurrency` at
//! once and [`PER_DESTINATION`](crate::destination::PER_DESTINATION) to one receiver
//! ([`Lanes`]), each bounded by the delivery timeout. A destination with
//! [`HELD_PER_DESTINATION`] messages in hand gets no more until one finishes (its rows stay in
//! the outbox for later claims), so a slow or hanging receiver holds up only its own messages.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use keepwatch_core::alert::AlertStatus;
use keepwatch_core::oncall::ContactKind;
use keepwatch_store::{
    AttemptResult, CheckinDelivery, Delivery, IncidentDelivery, MessageKind, PageDelivery, Store,
    Timestamp, UpdateDelivery,
};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::EngineConfig;
use crate::channels::format::channel_address;
use crate::channels::{Failure, Message, Transport, gather, render};
use crate::clock::Clock;
use crate::destination::{HELD_PER_DESTINATION, HELD_PER_SLOT, Held, Lanes, destination_of};
use crate::lease::{Lease, Work};
use crate::rounds::Rounds;

mod pages;

pub use pages::{LINK_LIFETIME, LinkGrant, LinkSigner, link_token, verify_link};

/// How long a claim holds. A claimed row waits at most `HELD_PER_DESTINATION /
/// PER_DESTINATION` delivery timeouts (plus one claim's worth) for its turn, well within it;
/// a row whose lease ran out while it waited here is still this process's (see `held`).
/// With several instances a claim holds only as long as the delivery lease (see
/// `Dispatcher::claim_lease`).
const LEASE: TimeDelta = TimeDelta::seconds(120);
/// Pages claimed per round.
const PAGE_CLAIM_LIMIT: i64 = 100;
const IDLE_POLL: Duration = Duration::from_secs(30);

pub struct Dispatcher {
    store: Store,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    /// Rung when messages are queued (a check event's, a page).
    wake: Arc<Notify>,
    transport: Arc<dyn Transport>,
    links: LinkSigner,
    lanes: Lanes,
    /// Sends under way; `held` is what they carry, by the message's destination key (its
    /// channel, or its address), so the next claim leaves out destinations that are full.
    sends: JoinSet<()>,
    held: Held<String>,
    /// When page messages to each address started, within the rate-limit window (oldest
    /// first): read from the store the first time an address comes up, then kept here.
    recent: HashMap<String, VecDeque<Timestamp>>,
    rounds: Rounds,
    lease: Arc<dyn Lease>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        wake: Arc<Notify>,
        transport: Arc<dyn Transport>,
        links: LinkSigner,
        lease: Arc<dyn Lease>,
    ) -> Dispatcher {
        Dispatcher {
            lanes: Lanes::new(config.delivery_concurrency),
            store,
            clock,
            config,
            wake,
            transport,
            links,
            sends: JoinSet::new(),
            held: Held::default(),
            recent: HashMap::new(),
            rounds: Rounds::new(),
            lease,
        }
    }

    /// How long rows claimed now are this instance's. With several instances, as long as its
    /// delivery lease: only the lease holder claims, so a shorter claim is safe (rows it holds
    /// in `held` stay its own), and the pages a dead holder claimed are sent by the next one
    /// as soon as it takes over, not minutes later.
    fn claim_lease(&self) -> TimeDelta {
        self.lease
            .takeover_within()
            .and_then(|d| TimeDelta::from_std(d).ok())
            .map_or(LEASE, |d| d.min(LEASE))
    }

    /// Its rounds, for [`crate::Engine::settled`]: idle when one claimed nothing and nothing
    /// was under way.
    pub fn rounds(&self) -> tokio::sync::watch::Receiver<crate::rounds::Round> {
        self.rounds.watch()
    }

    pub async fn run(mut self) {
        loop {
            while let Some(done) = self.sends.try_join_next_with_id() {
                self.release(done);
            }
            let max_held = self.config.delivery_concurrency.max(1) * HELD_PER_SLOT;
            if self.held.sends() >= max_held {
                if let Some(done) = self.sends.join_next_with_id().await {
                    self.release(done);
                }
                continue;
            }
            // Taken before the claims: whatever falls due after it was not seen by them, so
            // it must end the wait (the clock may move on during the round).
            let now = self.clock.now();
            self.rounds.start();
            let claimed = if self.lease.holds(Work::Delivery) {
                self.round(now, max_held).await
            } else {
                Ok(false)
            };
            let idle = matches!(claimed, Ok(false)) && self.held.sends() == 0;
            self.rounds.finish(idle);
            match claimed {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot claim messages"),
            }
            if let Ok(depth) = self.store.outbox_depth().await {
                metrics::gauge!("keepwatch_outbox_pending").set(depth as f64);
            }
            self.idle(now).await;
        }
    }

    /// Claims what is due and starts sending it; `true` if anything was claimed.
    async fn round(
        &mut self,
        now: DateTime<Utc>,
        max_held: usize,
    ) -> Result<bool, keepwatch_store::StoreError> {
        let room = max_held.saturating_sub(self.held.sends());
        let busy = self.held.busy();
        // Claiming is a write: only for the kinds with something due.
        let due = self.store.due_kinds(now.into()).await?;
        let events = if due.contains(&MessageKind::ChannelEvent) {
            self.store
                .claim_channel_events(
                    now.into(),
                    (now + self.claim_lease()).into(),
                    room.min(HELD_PER_DESTINATION) as i64,
                    &busy,
                )
                .await?
        } else {
            Vec::new()
        };
        let pages = if due.contains(&MessageKind::Page) {
            self.store
                .claim_pages_except(now.into(), self.claim_lease(), PAGE_CLAIM_LIMIT, &busy)
                .await?
        } else {
            Vec::new()
        };
        let updates = if due.contains(&MessageKind::AlertUpdate) {
            self.store
                .claim_updates(now.into(), self.claim_lease(), PAGE_CLAIM_LIMIT, &busy)
                .await?
        } else {
            Vec::new()
        };
        let mut incident_messages = Vec::new();
        for kind in [MessageKind::IncidentUpdate, MessageKind::IncidentReminder] {
            if due.contains(&kind) {
                incident_messages.extend(
                    self.store
                        .claim_incident_messages(
                            kind,
                            now.into(),
                            self.claim_lease(),
                            PAGE_CLAIM_LIMIT,
                            &busy,
                        )
                        .await?,
                );
            }
        }
        let checkins = if due.contains(&MessageKind::Checkin) {
            self.store
                .claim_checkin_messages(now.into(), self.claim_lease(), PAGE_CLAIM_LIMIT, &busy)
                .await?
        } else {
            Vec::new()
        };
        let claimed = !events.is_empty()
            || !pages.is_empty()
            || !updates.is_empty()
            || !incident_messages.is_empty()
            || !checkins.is_empty();
        for message in checkins {
            if self.held.holds(message.id) {
                continue;
            }
            let destination = destination_of(&message.address);
            let rows = vec![(message.id, message.address.clone())];
            let task = self
                .sends
                .spawn(self.send_checkin(destination.clone(), message));
            self.held.add(rows, destination, task.id());
        }
        for message in incident_messages {
            if self.held.holds(message.id) {
                continue;
            }
            let destination = destination_of(&message.address);
            let rows = vec![(message.id, message.address.clone())];
            let task = self
                .sends
                .spawn(self.send_incident(destination.clone(), message));
            self.held.add(rows, destination, task.id());
        }
        for update in updates {
            if self.held.holds(update.id) {
                continue;
            }
            let destination = destination_of(&update.address);
            let rows = vec![(update.id, update.address.clone())];
            let task = self
                .sends
                .spawn(self.send_update(destination.clone(), update));
            self.held.add(rows, destination, task.id());
        }
        for delivery in events {
            // Claimed again after its lease ran out while it waited here: still ours, and
            // already on its way.
            if self.held.holds(delivery.outbox_id) {
                continue;
            }
            let key = format!("channel:{}", delivery.channel_id);
            // Where it goes, for the per-destination limit (an unusable channel fails when
            // it is sent).
            let destination = channel_address(&delivery)
                .map_or_else(|_| "smtp".into(), |(_, address)| destination_of(&address));
            let id = delivery.outbox_id;
            let task = self
                .sends
                .spawn(self.send_event(destination.clone(), delivery));
            self.held.add(vec![(id, key)], destination, task.id());
        }
        let pages: Vec<PageDelivery> = pages
            .into_iter()
            .filter(|p| !self.held.holds(p.id))
            .collect();
        if !pages.is_empty() {
            let messages =
                pages::plan(&self.store, &self.config, &mut self.recent, pages, now).await?;
            for (n, message) in messages.into_iter().enumerate() {
                // Each message of the round counts once against its address's rate limit.
                let started = Timestamp::from(now) + TimeDelta::microseconds(n as i64);
                let address = message[0].address.clone();
                let destination = destination_of(&address);
                let rows = message.iter().map(|p| (p.id, p.address.clone())).collect();
                let send = pages::send(
                    self.delivery_context(),
                    self.links.clone(),
                    destination.clone(),
                    message,
                    now,
                    started,
                );
                let task = self.sends.spawn(send);
                self.held.add(rows, destination, task.id());
                self.recent.entry(address).or_default().push_back(started);
            }
        }
        Ok(claimed)
    }

    /// A send task ended (its outcome is recorded, or it panicked and its rows wait for their
    /// lease to run out).
    fn release(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        self.held.release(done);
    }

    fn delivery_context(&self) -> Context {
        Context {
            store: self.store.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            transport: self.transport.clone(),
            lanes: self.lanes.clone(),
        }
    }

    /// Sends one channel event when its destination has a free lane, and records the attempt.
    fn send_event(
        &self,
        destination: String,
        delivery: Delivery,
    ) -> impl Future<Output = ()> + Send + 'static {
        let context = self.delivery_context();
        async move {
            let Context {
                store,
                clock,
                config,
                transport,
                lanes,
            } = context;
            let (outcome, took) = lanes
                .run(&destination, async {
                    let started = Instant::now();
                    let send = send_event(&*transport, &store, &config.site_url, &delivery);
                    let outcome = tokio::time::timeout(transport.timeout(), send)
                        .await
                        .unwrap_or_else(|_| {
                            Err(Failure::transient("no answer within the delivery timeout"))
                        });
                    (outcome, started.elapsed())
                })
                .await;
            let attempts = delivery.attempts + 1;
            let result = attempt_result(
                &*clock,
                &config,
                delivery.outbox_id,
                delivery.attempts,
                outcome,
                took,
            );
            let ok = result.ok;
            metrics::counter!("keepwatch_deliveries_total", "outcome" => if ok { "ok" } else { "error" })
                .increment(1);
            if !ok {
                tracing::warn!(outbox = delivery.outbox_id, channel = %delivery.channel_name, attempts, error = %result.detail, "delivery failed");
            }
            if let Err(e) = store.record_attempt(&result).await {
                tracing::error!(error = %e, "cannot record delivery attempt");
            }
        }
    }

    /// Sends one alert update when its destination has a free lane, and records the attempt
    /// (with the message's other attempts, and in the alert's log).
    fn send_update(
        &self,
        destination: String,
        update: UpdateDelivery,
    ) -> impl Future<Output = ()> + Send + 'static {
        let context = self.delivery_context();
        // An alert still open (a hung run finished late, the next run failed): its links, so
        // the update can be acted on where it is read.
        let links = (update.status != AlertStatus::Resolved).then(|| {
            self.links
                .links(update.alert_id, &update.person, context.clock.now())
        });
        async move {
            let result = context
                .send_to_contact(
                    &destination,
                    update.id,
                    update.attempts,
                    (&update.contact, &update.address),
                    || update_message(&update, links.as_ref()),
                )
                .await;
            let (ok, detail, at) = (result.ok, &result.detail, result.at);
            let kind = if ok { "update_sent" } else { "update_failed" };
            let who = format!("{} via {}", update.person, update.contact);
            let logged = [(update.alert_id, who, format!("{}: {detail}", update.note))];
            if let Err(e) = context.store.record_attempt(&result).await {
                tracing::error!(error = %e, "cannot record an alert update");
            } else if let Err(e) = context.store.log_alerts(&logged, kind, at).await {
                tracing::error!(error = %e, "cannot log an alert update");
            }
        }
    }

    /// Sends one incident message (a stakeholder update, an owner reminder) when its
    /// destination has a free lane, and records the attempt.
    fn send_incident(
        &self,
        destination: String,
        message: IncidentDelivery,
    ) -> impl Future<Output = ()> + Send + 'static {
        let context = self.delivery_context();
        async move {
            let result = context
                .send_to_contact(
                    &destination,
                    message.id,
                    message.attempts,
                    (&message.contact, &message.address),
                    || incident_message(&message),
                )
                .await;
            let ok = result.ok;
            metrics::counter!("keepwatch_incident_messages_total", "outcome" => if ok { "ok" } else { "error" })
                .increment(1);
            if !ok {
                tracing::warn!(message = message.id, incident = message.incident_id, to = %message.address, error = %result.detail, "incident message failed");
            }
            if let Err(e) = context.store.record_attempt(&result).await {
                tracing::error!(error = %e, "cannot record an incident message");
            }
        }
    }

    /// Sends one shift check-in message (the check-in, or the notice of a missed one) when
    /// its destination has a free lane, and records the attempt.
    fn send_checkin(
        &self,
        destination: String,
        message: CheckinDelivery,
    ) -> impl Future<Output = ()> + Send + 'static {
        let context = self.delivery_context();
        async move {
            let result = context
                .send_to_contact(
                    &destination,
                    message.id,
                    message.attempts,
                    (&message.contact, &message.address),
                    || checkin_message(&message),
                )
                .await;
            if !result.ok {
                tracing::warn!(message = message.id, checkin = message.checkin_id, to = %message.address, error = %result.detail, "check-in message failed");
            }
            if let Err(e) = context.store.record_attempt(&result).await {
                tracing::error!(error = %e, "cannot record a check-in message");
            }
        }
    }

    /// Waits until woken by a new message, until the next one falls due (a retry, a page
    /// held by the rate limit), until a send finishes (its destination may take more now),
    /// or a poll. Messages already due wait for their destination, not for their due time.
    async fn idle(&mut self, now: DateTime<Utc>) {
        let mut until = now + IDLE_POLL;
        if let Some(due) = self
            .store
            .next_due()
            .await
            .ok()
            .flatten()
            .map(Timestamp::to_datetime)
            .filter(|due| *due > now)
        {
            until = until.min(due);
        }
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = self.clock.sleep_until(until) => {}
            Some(done) = self.sends.join_next_with_id() => {
                self.release(done);
            }
        }
    }
}

/// What a send task needs from the dispatcher.
#[derive(Clone)]
struct Context {
    store: Store,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    transport: Arc<dyn Transport>,
    lanes: Lanes,
}

impl Context {
    /// Sends a message through a person's or a stakeholder's contact `(name, address)` when
    /// its destination has a free lane, within the delivery timeout, and makes the record of
    /// the attempt (`attempts` made before it).
    async fn send_to_contact(
        &self,
        destination: &str,
        outbox_id: i64,
        attempts: i64,
        (contact, address): (&str, &str),
        message: impl FnOnce() -> Message,
    ) -> AttemptResult {
        let started = Instant::now();
        let timeout = self.transport.timeout();
        let outcome = self
            .lanes
            .run(destination, async {
                let kind = ContactKind::of(contact, address).ok_or_else(|| {
                    Failure::permanent(format!(
                        "contact `{contact}` (`{address}`) is not an email address or URL"
                    ))
                })?;
                let request = render(kind, address, &message())?
                    .with_delivery_id(&self.config.site_url, outbox_id);
                tokio::time::timeout(timeout, self.transport.send(request))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure::transient("no answer within the delivery timeout"))
                    })
            })
            .await;
        attempt_result(
            &*self.clock,
            &self.config,
            outbox_id,
            attempts,
            outcome,
            started.elapsed(),
        )
    }
}

/// The record of one attempt that ended with `outcome`, `attempts` attempts after the
/// first, with the time of its retry if it failed and may be tried again.
fn attempt_result(
    clock: &dyn Clock,
    config: &EngineConfig,
    outbox_id: i64,
    attempts: i64,
    outcome: Result<String, Failure>,
    took: Duration,
) -> AttemptResult {
    let at = clock.now();
    let retry_at = retry_after(config, attempts, &outcome).map(|delay| Timestamp::from(at + delay));
    let (ok, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(failure) => (false, failure.detail),
    };
    AttemptResult {
        outbox_id,
        at: at.into(),
        ok,
        detail,
        took_ms: took.as_millis() as i64,
        retry_at,
    }
}

/// When a failed send is tried again, `attempts` attempts before it: after `retry_base ×
/// 2^attempts` (at most an hour). `None` when it succeeded, when retrying cannot help, or when
/// it was the last attempt.
fn retry_after(
    config: &EngineConfig,
    attempts: i64,
    outcome: &Result<String, Failure>,
) -> Option<Duration> {
    let failure = outcome.as_ref().err()?;
    if failure.permanent || attempts + 1 >= config.max_attempts {
        return None;
    }
    let factor = 2u32.saturating_pow(attempts.clamp(0, 20) as u32);
    Some(
        config
            .retry_base
            .saturating_mul(factor)
            .min(Duration::from_secs(3600)),
    )
}

/// What an alert update says: the alert in the title, the note as the text, and the
/// acknowledge and resolve links while the alert is open; a webhook gets `{"update": {"alert":
/// {id, summary, service, status}, "person", "note", "links"?}}`.
fn update_message(update: &UpdateDelivery, links: Option<&(String, String)>) -> Message {
    let title = format!("{} ({})", update.summary, update.service);
    let mut text = format!("{}\n", update.note);
    if let Some((ack, resolve)) = links {
        text.push_str(&format!(
            "\nThe alert is still open.\nAcknowledge: {ack}\nResolve: {resolve}\n"
        ));
    }
    text.push_str(&format!(
        "\nAlert #{} on service {}\n",
        update.alert_id, update.service
    ));
    let mut message = Message::plain(&title, &text);
    message.subject = format!("[keepwatch] {title}: {}", update.note);
    message.json = serde_json::json!({
        "update": {
            "alert": {
                "id": update.alert_id,
                "summary": update.summary,
                "service": update.service,
                "status": update.status,
            },
            "person": update.person,
            "note": update.note,
        }
    });
    if let Some((ack, resolve)) = links {
        message.json["update"]["links"] =
            serde_json::json!({"acknowledge": ack, "resolve": resolve});
    }
    message.headers = vec![("X-Keepwatch-Update", update.id.to_string())];
    message
}

/// An incident message as every kind of destination reads it: the subject as the title,
/// the text as written for the recipient; a webhook gets `{"incident": {id, title, severity,
/// status}, "kind", "subject", "text"}`.
fn incident_message(m: &IncidentDelivery) -> Message {
    let mut message = Message::plain(&m.note, &m.text);
    message.subject = format!("[keepwatch] {}", m.note);
    message.json = serde_json::json!({
        "incident": {
            "id": m.incident_id,
            "title": m.title,
            "severity": m.severity,
            "status": m.status,
        },
        "kind": m.kind,
        "subject": m.note,
        "text": m.text,
    });
    message.headers = vec![
        ("X-Keepwatch-Incident", m.incident_id.to_string()),
        ("X-Keepwatch-Message", m.id.to_string()),
    ];
    message
}

/// A shift check-in message as every kind of destination reads it: the subject as the
/// title, the text as written for the recipient (with the link that acknowledges it); a
/// webhook gets `{"checkin": {id, person}, "to", "subject", "text"}`. At high urgency.
fn checkin_message(m: &CheckinDelivery) -> Message {
    let mut message = Message::plain(&m.note, &m.text);
    message.subject = format!("[keepwatch] {}", m.note);
    message.high = true;
    message.json = serde_json::json!({
        "checkin": {"id": m.checkin_id},
        "to": m.person,
        "subject": m.note,
        "text": m.text,
    });
    message.headers = vec![
        ("X-Keepwatch-Checkin", m.checkin_id.to_string()),
        ("X-Keepwatch-Message", m.id.to_string()),
    ];
    message
}

/// Sends one channel event: the message built from the event and the check as it is now.
/// `Ok` carries a short description of the receiver's answer.
async fn send_event(
    transport: &dyn Transport,
    store: &Store,
    site_url: &str,
    delivery: &Delivery,
) -> Result<String, Failure> {
    let (kind, address) = channel_address(delivery)?;
    let payload: serde_json::Value = serde_json::from_str(&delivery.payload).unwrap_or_default();
    let uuid = payload["check_uuid"].as_str().unwrap_or_default();
    let check = store.check_by_uuid(uuid).await.ok().flatten();
    // Explained as of the event (a hung run's duration then), whenever it is sent.
    let at = payload["at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(Utc::now, |t| t.to_utc());
    let evidence = match &check {
        Some(row) => gather::event(store, row, &delivery.event_kind, &payload, at)
            .await
            .ok()
            .map(|(_, evidence)| evidence),
        None => None,
    };
    let message = Message::event(delivery, check.as_ref(), site_url, evidence.as_ref());
    if let Err(e) = store
        .record_message_text(delivery.outbox_id, &message.text)
        .await
    {
        tracing::warn!(error = %e, "cannot record a message's text");
    }
    let request = render(kind, &address, &message)?.with_delivery_id(site_url, delivery.outbox_id);
    transport.send(request).await.map_err(|mut e| {
        if e.detail.starts_with("answered") {
            e.detail.insert_str(0, "webhook ");
        }
        e
    })
}
