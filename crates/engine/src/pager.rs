//! The pager: turns check events into alerts, walks each triggered alert's timeline as time
//! passes, and delivers the pages it falls due.
//!
//! Each step, on the engine's clock:
//! 1. **Alerts from check events.** Events after the pager's cursor (`meta.pager_events`)
//!    open alerts (`down`, `failed`, `hung` under the dedup key `check:<uuid>`; `overlap` and
//!    `anomaly` under `check:<uuid>:<kind>`); `up` resolves the check's open alert.
//! 2. **Escalation.** For every triggered alert the whole timeline is computed from its
//!    trigger time and the project's on-call configuration (`keepwatch_core::alert::paging`), and the
//!    entries in `(paged_until, now]` are recorded: log lines and one page row per
//!    notification, committed only while the alert is still triggered, so an acknowledgment
//!    that commits first stops everything after it.
//! 3. **Delivery.** Due page rows are claimed with a lease and sent (email, Slack, ntfy,
//!    Discord, Teams, Telegram, Pushover, or a signed webhook); several to one address go
//!    as one summary, an address over its rate limit waits for its next summary, failures
//!    retry with exponential backoff, and every attempt is written to the alert's log.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use keepwatch_core::alert::paging::{Page, Paging, Urgency};
use keepwatch_core::oncall::config::OnCall;
use keepwatch_store::AppliedOnCall;
use keepwatch_store::{
    AlertRow, MessageKind, NewAlert, NewPage, PageDelivery, PageOutcome, PagingRecord, Store,
    StoreError, to_micros,
};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::channels::{Failure, Message, Transport, render};
use crate::destination::{HELD_PER_SLOT, Held, Lanes, destination_of};
use crate::dispatch::retry_after;
use crate::{Clock, EngineConfig};

/// Where the pager is in the check event stream.
const EVENT_CURSOR: &str = "pager_events";
/// Pages claimed per round, and how long a claim holds (as the outbox's: a message may wait
/// a few delivery timeouts for its destination's lane).
const CLAIM_LIMIT: i64 = 100;
const LEASE: TimeDelta = TimeDelta::seconds(120);
/// This many pages (or more) to one address in one delivery round go out as one summary
/// message (see [`Message::page`]).
const SUMMARY_AT: usize = 3;
/// Acknowledgment links in notifications stay valid this long.
pub const LINK_LIFETIME: TimeDelta = TimeDelta::days(7);

pub use keepwatch_core::oncall::contact::ContactKind;

/// Sends a short text with no links through a contact (a contact verification code): the
/// same channels and formats as pages, without their buttons.
pub async fn send_plain(
    transport: &dyn Transport,
    contact: &str,
    address: &str,
    title: &str,
    text: &str,
) -> Result<String, Failure> {
    let kind = ContactKind::of(contact, address).ok_or_else(|| {
        Failure::permanent(format!(
            "contact `{contact}` (`{address}`) is not an email address or URL"
        ))
    })?;
    let request = render(kind, address, &Message::plain(title, text))?;
    transport.send(request).await
}

/// A signed, expiring link token for `action` (`ack` or `resolve`) on an alert:
/// `<alert>.<action>.<expires unix seconds>.<HMAC-SHA256 hex>`.
pub fn link_token(secret: &str, alert_id: i64, action: &str, expires: DateTime<Utc>) -> String {
    let claim = format!("{alert_id}.{action}.{}", expires.timestamp());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(claim.as_bytes());
    format!("{claim}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a link token: the alert and action it grants, or why not.
pub fn verify_link(
    secret: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(i64, String), &'static str> {
    let mut parts = token.splitn(4, '.');
    let (Some(alert), Some(action), Some(expires), Some(signature)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("this link is malformed");
    };
    let (Ok(alert_id), Ok(expires)) = (alert.parse::<i64>(), expires.parse::<i64>()) else {
        return Err("this link is malformed");
    };
    let Ok(signature) = hex::decode(signature) else {
        return Err("this link is malformed");
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{alert_id}.{action}.{expires}").as_bytes());
    if mac.verify_slice(&signature).is_err() || !matches!(action, "ack" | "resolve") {
        return Err("this link is not valid");
    }
    if now.timestamp() > expires {
        return Err("this link has expired");
    }
    Ok((alert_id, action.to_string()))
}

/// What sending a page needs, apart from the pager's own state: cloned into each send.
#[derive(Clone)]
struct Messenger {
    transport: Arc<dyn Transport>,
    link_secret: Arc<str>,
    site_url: String,
}

pub struct Pager {
    store: Store,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    messenger: Messenger,
    pub wake: Arc<Notify>,
    /// Sends under way, at most `delivery_concurrency` at once and [`crate::destination::PER_DESTINATION`] to
    /// one destination; `held` is what they carry.
    lanes: Lanes,
    sends: JoinSet<()>,
    /// Pages in hand, left out of claims by address.
    held: Held<String>,
    /// The configurations read this round, by project (the store parses each once per
    /// apply; this saves the version query per alert).
    configs: HashMap<i64, Option<Arc<AppliedOnCall>>>,
    /// Each project's applied version as last seen: a new one re-plans its open alerts.
    versions: HashMap<i64, i64>,
    /// When each triggered alert's timeline next has something due (computed by the last
    /// round that walked it), so a round skips the alerts with nothing to do.
    next_due: HashMap<i64, DateTime<Utc>>,
    /// The triggered alerts, by id, and when the whole list was last read.
    tracked: BTreeMap<i64, AlertRow>,
    refreshed_at: DateTime<Utc>,
    /// The highest alert id read so far.
    seen: i64,
    /// When messages went to each address within the rate-limit window, oldest first.
    recent: HashMap<String, VecDeque<DateTime<Utc>>>,
}

impl Pager {
    pub async fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        wake: Arc<Notify>,
        link_secret: Arc<str>,
        transport: Arc<dyn Transport>,
    ) -> Result<Pager, StoreError> {
        Ok(Pager {
            store,
            clock,
            lanes: Lanes::new(config.delivery_concurrency),
            messenger: Messenger {
                transport,
                link_secret,
                site_url: config.site_url.clone(),
            },
            config,
            wake,
            sends: JoinSet::new(),
            held: Held::default(),
            configs: HashMap::new(),
            versions: HashMap::new(),
            next_due: HashMap::new(),
            tracked: BTreeMap::new(),
            refreshed_at: DateTime::UNIX_EPOCH,
            seen: 0,
            recent: HashMap::new(),
        })
    }

    pub async fn run(mut self) {
        let mut full_round = true;
        loop {
            // Taken before the round: whatever falls due after it was not seen by the round,
            // so it must wake the next one (the clock may move on during the round).
            let round_start = self.clock.now();
            let done = if full_round {
                self.step().await
            } else {
                self.deliver_due().await
            };
            if let Err(e) = done {
                tracing::warn!(error = %e, "pager step failed");
            }
            // The next round comes when a page, a retry or a timeline entry falls due, or
            // after a second at most (new check events also wake it). Pages already due wait
            // for their destination (a send finishing), not for their due time.
            let now = round_start;
            let mut until = now + Duration::from_secs(1);
            if let Some(due) = self
                .store
                .next_message_due(MessageKind::Page)
                .await
                .ok()
                .flatten()
                && let Some(due) = DateTime::from_timestamp_micros(due).filter(|d| *d > now)
            {
                until = until.min(due);
            }
            if let Some(next) = self.next_due.values().min() {
                until = until.min(*next);
            }
            // A finished send frees room: deliver what waited for it, without a full round.
            full_round = tokio::select! {
                _ = self.wake.notified() => true,
                _ = self.clock.sleep_until(until) => true,
                Some(done) = self.sends.join_next_with_id() => {
                    self.held.release(done);
                    false
                }
            };
        }
    }

    /// One round: alerts from new check events, escalation up to now, due deliveries.
    pub async fn step(&mut self) -> Result<(), StoreError> {
        // Each project's configuration is read once a round, not once per alert.
        self.configs.clear();
        let replan = self.applied_since().await?;
        self.alerts_from_events().await?;
        let now = self.clock.now();
        // Triggered alerts are kept in memory: new ones are read by id each round, and the
        // whole list once a minute (to let go of alerts acknowledged or resolved elsewhere;
        // until then, recording refuses to page them, which drops them too).
        if now - self.refreshed_at >= TimeDelta::minutes(1) {
            self.tracked = self
                .store
                .triggered_alerts(0)
                .await?
                .into_iter()
                .map(|a| (a.id, a))
                .collect();
            self.refreshed_at = now;
            self.next_due.retain(|id, _| self.tracked.contains_key(id));
        } else {
            let after = self
                .tracked
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0)
                .max(self.seen);
            self.tracked.extend(
                self.store
                    .triggered_alerts(after)
                    .await?
                    .into_iter()
                    .map(|a| (a.id, a)),
            );
        }
        self.seen = self
            .tracked
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.seen);
        // A file applied since: its project's open alerts are walked now, from the new file.
        for alert in self.tracked.values() {
            if replan.contains(&alert.project_id) {
                self.next_due.remove(&alert.id);
            }
        }
        // Only alerts with something due (or never walked, or re-planned) are walked.
        let due: Vec<AlertRow> = self
            .tracked
            .values()
            .filter(|a| self.next_due.get(&a.id).is_none_or(|next| *next <= now))
            .cloned()
            .collect();
        let mut records = Vec::new();
        for alert in &due {
            records.extend(self.escalate(alert, now).await?);
        }
        // One transaction per chunk, not per alert: a burst of alerts is one fsync per 500.
        for chunk in records.chunks(500) {
            let recorded = self.store.record_pagings(chunk, to_micros(now)).await?;
            for (record, still_triggered) in chunk.iter().zip(recorded) {
                if still_triggered {
                    if let Some(alert) = self.tracked.get_mut(&record.alert_id) {
                        alert.paged_until = record.paged_until;
                    }
                } else {
                    self.tracked.remove(&record.alert_id);
                    self.next_due.remove(&record.alert_id);
                }
            }
        }
        // Pages recorded just now that are already due go out in this round.
        self.deliver_due().await
    }

    /// The projects whose on-call file was applied since the last round.
    async fn applied_since(&mut self) -> Result<HashSet<i64>, StoreError> {
        let mut changed = HashSet::new();
        for (project_id, version) in self.store.oncall_versions().await? {
            if self.versions.insert(project_id, version) != Some(version) {
                changed.insert(project_id);
                if let Some(applied) = self.oncall(project_id).await?
                    && let Err(e) = &applied.config
                {
                    tracing::warn!(project_id, error = %e, "stored on-call configuration does not parse");
                }
            }
        }
        Ok(changed)
    }

    /// The project's applied configuration, read once a round.
    async fn oncall(&mut self, project_id: i64) -> Result<Option<Arc<AppliedOnCall>>, StoreError> {
        if let Some(applied) = self.configs.get(&project_id) {
            return Ok(applied.clone());
        }
        let applied = self.store.oncall(project_id).await?;
        self.configs.insert(project_id, applied.clone());
        Ok(applied)
    }

    /// The service an alert of a check goes to: the one the on-call file binds it to, else
    /// its own `service` field, else the project's `default` service, else the project's
    /// only service.
    fn service_for(config: Option<&OnCall>, uuid: &str, own: Option<&str>) -> String {
        if let Some(bound) = config.and_then(|c| c.check_services.get(uuid)) {
            return bound.clone();
        }
        if let Some(own) = own.filter(|s| !s.is_empty()) {
            return own.to_string();
        }
        let Some(config) = config else {
            return "default".into();
        };
        if config.services.contains_key("default") || config.services.len() != 1 {
            return "default".into();
        }
        config.services.keys().next().cloned().unwrap_or_default()
    }

    /// The urgency a service gives an alert triggered at `at` (high without a configuration).
    pub fn urgency(config: Option<&OnCall>, service: &str, at: DateTime<Utc>) -> Urgency {
        config
            .and_then(|c| c.services.get(service))
            .map_or(Urgency::High, |s| s.urgency.at(at))
    }

    async fn alerts_from_events(&mut self) -> Result<(), StoreError> {
        let mut cursor = self.store.meta(EVENT_CURSOR).await?;
        loop {
            let events = self.store.check_events_after(cursor, 500).await?;
            if events.is_empty() {
                return Ok(());
            }
            for event in &events {
                let now_us = to_micros(self.clock.now());
                let applied = self.oncall(event.project_id).await?;
                let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
                let service = Self::service_for(config, &event.uuid, event.service.as_deref());
                let name = if event.name.is_empty() {
                    &event.uuid
                } else {
                    &event.name
                };
                let dedup = match event.kind.as_str() {
                    "overlap" | "anomaly" => format!("check:{}:{}", event.uuid, event.kind),
                    _ => format!("check:{}", event.uuid),
                };
                if event.kind == "up" {
                    let resolves = config
                        .and_then(|c| c.services.get(&service))
                        .is_none_or(|s| s.resolve_on_recovery);
                    if resolves
                        && let Some(open) = self
                            .store
                            .open_alert_by_dedup(event.project_id, &dedup)
                            .await?
                    {
                        self.store
                            .resolve_alert(open.id, "check recovered", now_us)
                            .await?;
                    }
                    continue;
                }
                let at = DateTime::from_timestamp_micros(event.at).unwrap_or_else(Utc::now);
                let urgency = Self::urgency(config, &service, at);
                let summary = format!("{name} is {}", event.kind);
                self.store
                    .trigger_alert(
                        &NewAlert {
                            project_id: event.project_id,
                            service: &service,
                            dedup_key: &dedup,
                            summary: &summary,
                            source: "check",
                            details: &event.payload,
                            urgency: urgency.as_str(),
                        },
                        now_us,
                    )
                    .await?;
            }
            cursor = events.last().map_or(cursor, |e| e.id);
            self.store.set_meta(EVENT_CURSOR, cursor).await?;
        }
    }

    /// The part of an alert's timeline that fell due since the last round, to record.
    async fn escalate(
        &mut self,
        alert: &AlertRow,
        now: DateTime<Utc>,
    ) -> Result<Option<PagingRecord>, StoreError> {
        let now_us = to_micros(now);
        if alert.paged_until >= now_us {
            return Ok(None);
        }
        let applied = self.oncall(alert.project_id).await?;
        // Entries a file applied later moved before its apply did not happen then: they
        // happen now, and are logged now.
        let applied_at = applied.as_ref().map_or(i64::MIN, |a| a.applied_at);
        let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
        let mut log = Vec::new();
        let mut pages = Vec::new();
        let service = config.and_then(|c| c.services.get(&alert.service).map(|s| (c, s)));
        let policy = service.and_then(|(c, s)| c.policies.get(&s.policy).map(|p| (c, s, p)));
        match policy {
            None => {
                // Nothing to walk until the configuration changes: look again in a minute.
                self.next_due.insert(alert.id, now + TimeDelta::minutes(1));
                // Nobody to page: say so once, at the trigger.
                if alert.paged_until < alert.triggered_at {
                    log.push((
                        alert.triggered_at,
                        "unrouted".to_string(),
                        String::new(),
                        format!(
                            "no on-call service `{}` with an escalation policy in this project",
                            alert.service
                        ),
                    ));
                }
            }
            Some((config, service, policy)) => {
                let triggered_at = DateTime::from_timestamp_micros(alert.triggered_at)
                    .unwrap_or(now)
                    .max(DateTime::UNIX_EPOCH);
                let paging = Paging {
                    triggered_at,
                    urgency: if alert.urgency == "low" {
                        Urgency::Low
                    } else {
                        Urgency::High
                    },
                    raise_after: service.raise_after,
                    policy,
                    schedules: &config.schedules,
                    people: &config.people,
                };
                // A check's alerts: `check:<uuid>` or `check:<uuid>:<kind>`.
                let check = alert
                    .dedup_key
                    .strip_prefix("check:")
                    .and_then(|rest| rest.split(':').next());
                // Entries at `now` itself are due; those after are the next round's. The
                // timeline to a day ahead also tells when this alert next needs a round.
                let timeline = paging.timeline(now + TimeDelta::days(1));
                let next = timeline.iter().map(Page::at).find(|at| *at > now);
                self.next_due
                    .insert(alert.id, next.unwrap_or(now + TimeDelta::minutes(1)));
                for page in timeline {
                    let at = to_micros(page.at());
                    if at <= alert.paged_until || at > now_us {
                        continue;
                    }
                    let at = if at < applied_at { now_us } else { at };
                    match page {
                        Page::Step { step, pass, .. } => log.push((
                            at,
                            "escalation_step".into(),
                            String::new(),
                            format!("step {step}, pass {pass}"),
                        )),
                        Page::UrgencyRaised { .. } => log.push((
                            at,
                            "urgency_raised".into(),
                            String::new(),
                            "low → high: nobody acknowledged".into(),
                        )),
                        Page::LastResort { .. } => log.push((
                            at,
                            "last_resort".into(),
                            String::new(),
                            "every step and repeat passed unacknowledged".into(),
                        )),
                        Page::Unreached { who, urgency, .. } => log.push((
                            at,
                            "unreached".into(),
                            who,
                            format!("nobody to notify at {} urgency", urgency.as_str()),
                        )),
                        Page::Notify {
                            user,
                            contact,
                            urgency,
                            at: due,
                        } if config.in_maintenance(&alert.service, check, due) => log.push((
                            at,
                            "suppressed".into(),
                            format!("{user} via {contact}"),
                            format!("maintenance window ({} urgency)", urgency.as_str()),
                        )),
                        Page::Notify {
                            user,
                            contact,
                            urgency,
                            ..
                        } => {
                            let address = config
                                .contact_address(&user, &contact)
                                .unwrap_or_default()
                                .to_string();
                            pages.push(NewPage {
                                person: user,
                                contact,
                                address,
                                urgency: urgency.as_str().into(),
                                due_at: at,
                            });
                        }
                    }
                }
            }
        }
        // Nothing fell due: leave the mark, so an idle alert costs no write per round.
        if log.is_empty() && pages.is_empty() {
            return Ok(None);
        }
        Ok(Some(PagingRecord {
            alert_id: alert.id,
            paged_until: now_us,
            log,
            pages,
        }))
    }

    async fn deliver_due(&mut self) -> Result<(), StoreError> {
        loop {
            while let Some(done) = self.sends.try_join_next_with_id() {
                self.held.release(done);
            }
            let max_held = self.config.delivery_concurrency.max(1) * HELD_PER_SLOT;
            if self.held.sends() >= max_held {
                return Ok(());
            }
            let now = self.clock.now();
            let busy = self.held.busy();
            let claimed = self
                .store
                .claim_pages_except(
                    to_micros(now),
                    LEASE.num_microseconds().unwrap_or(0),
                    CLAIM_LIMIT,
                    &busy,
                )
                .await?;
            if claimed.is_empty() {
                return Ok(());
            }
            // Claimed again after its lease ran out while it waited here: still ours, and
            // already on its way.
            let claimed: Vec<PageDelivery> = claimed
                .into_iter()
                .filter(|p| !self.held.holds(p.id))
                .collect();
            // A flood to one address becomes one summary message, not a page per alert.
            let mut by_address: Vec<Vec<&PageDelivery>> = Vec::new();
            for page in &claimed {
                match by_address.iter_mut().find(|g| g[0].address == page.address) {
                    Some(group) => group.push(page),
                    None => by_address.push(vec![page]),
                }
            }
            // Each address gets at most `page_rate_limit` messages per window: what the
            // window has no room for waits, and goes out as one summary when it has.
            let window =
                TimeDelta::from_std(self.config.page_rate_window).unwrap_or(TimeDelta::minutes(15));
            let limit = self.config.page_rate_limit.max(1) as usize;
            self.recent
                .retain(|_, sent| sent.back().is_some_and(|at| *at > now - window));
            let mut messages: Vec<Vec<&PageDelivery>> = Vec::new();
            let mut held: Vec<(&PageDelivery, DateTime<Utc>)> = Vec::new();
            for group in by_address {
                let sent = self.recent.entry(group[0].address.clone()).or_default();
                while sent.front().is_some_and(|at| *at <= now - window) {
                    sent.pop_front();
                }
                let room = limit.saturating_sub(sent.len());
                if room == 0 {
                    let until = sent[0] + window;
                    held.extend(group.into_iter().map(|page| (page, until)));
                } else if group.len() >= SUMMARY_AT || group.len() > room {
                    sent.push_back(now);
                    messages.push(group);
                } else {
                    for page in group {
                        sent.push_back(now);
                        messages.push(vec![page]);
                    }
                }
            }
            if !held.is_empty() {
                let outcomes: Vec<PageOutcome> = held
                    .into_iter()
                    .map(|(page, until)| PageOutcome {
                        page,
                        ok: false,
                        detail: format!(
                            "held back: {limit} messages to this address within {}; \
                             goes out in one summary at {}",
                            humantime::format_duration(self.config.page_rate_window),
                            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                        retry_at: Some(to_micros(until)),
                        deferred: true,
                    })
                    .collect();
                self.store
                    .finish_pages(&outcomes, to_micros(self.clock.now()))
                    .await?;
            }
            for pages in messages {
                let pages: Vec<PageDelivery> = pages.into_iter().cloned().collect();
                let destination = destination_of(&pages[0].address);
                let send = self.deliver(destination.clone(), pages.clone(), now);
                let task = self.sends.spawn(send);
                let rows = pages.iter().map(|p| (p.id, p.address.clone())).collect();
                self.held.add(rows, destination, task.id());
            }
        }
    }

    /// Sends one message (a page, or a summary of several) when its destination has a free
    /// lane, and records the outcome of each of its pages.
    fn deliver(
        &self,
        destination: String,
        pages: Vec<PageDelivery>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let lanes = self.lanes.clone();
        let messenger = self.messenger.clone();
        let store = self.store.clone();
        let clock = self.clock.clone();
        let config = self.config.clone();
        async move {
            let refs: Vec<&PageDelivery> = pages.iter().collect();
            let timeout = messenger.transport.timeout();
            let result = lanes
                .run(&destination, async {
                    tokio::time::timeout(timeout, messenger.send(&refs, now))
                        .await
                        .unwrap_or_else(|_| {
                            Err(Failure::transient("no answer within the delivery timeout"))
                        })
                })
                .await;
            let result = match (result, pages.len()) {
                (Ok(detail), n) if n > 1 => Ok(format!("{detail} (in a summary of {n})")),
                (result, _) => result,
            };
            let now_us = to_micros(clock.now());
            let outcomes: Vec<PageOutcome> = pages
                .iter()
                .map(|page| {
                    let retry_at = retry_after(&config, page.attempts, &result)
                        .map(|delay| now_us + delay.as_micros() as i64);
                    let (ok, detail) = match result.clone() {
                        Ok(detail) => (true, detail),
                        Err(failure) => (false, failure.detail),
                    };
                    PageOutcome {
                        page,
                        ok,
                        detail,
                        retry_at,
                        deferred: false,
                    }
                })
                .collect();
            if let Err(e) = store.finish_pages(&outcomes, now_us).await {
                tracing::error!(error = %e, "cannot record page deliveries");
            }
        }
    }

    /// The acknowledge and resolve links of an alert.
    pub fn links(&self, alert_id: i64, now: DateTime<Utc>) -> (String, String) {
        self.messenger.links(alert_id, now)
    }
}

impl Messenger {
    fn links(&self, alert_id: i64, now: DateTime<Utc>) -> (String, String) {
        let expires = now + LINK_LIFETIME;
        let base = self.site_url.trim_end_matches('/');
        (
            format!(
                "{base}/a/{}",
                link_token(&self.link_secret, alert_id, "ack", expires)
            ),
            format!(
                "{base}/a/{}",
                link_token(&self.link_secret, alert_id, "resolve", expires)
            ),
        )
    }

    /// Sends one message to one address: a page, or a summary of several.
    async fn send(&self, pages: &[&PageDelivery], now: DateTime<Utc>) -> Result<String, Failure> {
        let page = pages[0];
        let kind = ContactKind::of(&page.contact, &page.address).ok_or_else(|| {
            Failure::permanent(format!(
                "contact `{}` (`{}`) is not an email address or URL",
                page.contact, page.address
            ))
        })?;
        let links: Vec<(String, String)> =
            pages.iter().map(|p| self.links(p.alert_id, now)).collect();
        let request = render(kind, &page.address, &Message::page(pages, &links))?;
        self.transport.send(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_kinds_come_from_the_name_or_the_address() {
        let of = |name, address| ContactKind::of(name, address);
        assert_eq!(of("x", "bob@example.com"), Some(ContactKind::Email));
        assert_eq!(
            of("x", "https://prod-1.westeurope.logic.azure.com/workflows/a"),
            Some(ContactKind::Teams)
        );
        assert_eq!(
            of("x", "https://acme.webhook.office.com/webhookb2/a"),
            Some(ContactKind::Teams)
        );
        assert_eq!(
            of("x", "https://api.telegram.org/bot1:A/sendMessage?chat_id=5"),
            Some(ContactKind::Telegram)
        );
        assert_eq!(
            of(
                "x",
                "https://api.pushover.net/1/messages.json?token=a&user=b"
            ),
            Some(ContactKind::Pushover)
        );
        assert_eq!(
            of("pushover", "http://127.0.0.1:9/p"),
            Some(ContactKind::Pushover)
        );
        assert_eq!(of("x", "https://example.com/h"), Some(ContactKind::Webhook));
        assert_eq!(of("x", "not an address"), None);
    }
}
