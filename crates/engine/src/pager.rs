//! The pager: turns check events into alerts, and walks each triggered alert's timeline as
//! time passes, queueing the pages that fall due (the dispatcher in [`crate::delivery`]
//! sends them).
//!
//! Each step, on the engine's clock:
//! 1. **Alerts from check events.** Events after the pager's cursor (`meta.pager_events`)
//!    open alerts (`down`, `failed`, `hung` under the dedup key `check:<uuid>`; `overlap` and
//!    `anomaly` under `check:<uuid>:<kind>`); `up` resolves the check's open alert.
//! 2. **Escalation.** For every triggered alert the whole timeline is computed from its
//!    trigger time and the project's on-call configuration by
//!    [`keepwatch_core::alert::routing::timeline`] (the code `keepwatch drill` runs too:
//!    maintenance windows, unrouted alerts), and the entries in `(paged_until, now]` are
//!    recorded: log lines and one page row per notification, committed only while the alert
//!    is still triggered, so an acknowledgment that commits first stops everything after it.
//! 3. **Updates.** When an alert is resolved (by a person or by its check's recovery), or its
//!    hung run finishes late (the alert stays open unless the service's
//!    `resolve_hung_on_recovery` says otherwise), each person who was paged for it gets one
//!    short message (an `alert_update` in the outbox) through their first rule for the
//!    urgency they were paged at.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use keepwatch_core::alert::paging::Page;
use keepwatch_core::alert::routing::{self, Routed};
use keepwatch_core::alert::{AlertSource, AlertStatus};
use keepwatch_store::AppliedOnCall;
use keepwatch_store::{
    AlertNews, AlertRow, EventAlert, NewAlert, NewPage, NewUpdate, PagingRecord, Store, StoreError,
    Timestamp,
};
use tokio::sync::Notify;

use crate::Clock;
use crate::lease::{Lease, Work};
use crate::rounds::Rounds;

/// Where the pager is in the check event stream.
const EVENT_CURSOR: &str = "pager_events";
/// Where the pager is in the alert log's `resolved` and `finished_late` entries, which the
/// people paged for the alert hear of.
const UPDATE_CURSOR: &str = "pager_updates";

pub use keepwatch_core::oncall::contact::ContactKind;

pub struct Pager {
    store: Store,
    clock: Arc<dyn Clock>,
    pub wake: Arc<Notify>,
    /// Rung when pages are queued, for the dispatcher.
    messages_wake: Arc<Notify>,
    /// Rung when check events open alerts: the incident loop looks at new alerts
    /// (recurrences, critical checks).
    pub alerts_wake: Option<Arc<Notify>>,
    rounds: Rounds,
    lease: Arc<dyn Lease>,
    /// The configurations read this round, by project (the store parses each once per
    /// apply; this saves the version query per alert).
    configs: HashMap<i64, Option<Arc<AppliedOnCall>>>,
    /// Each project's applied version as last seen: a new one re-plans its open alerts.
    versions: HashMap<i64, Timestamp>,
    /// When each triggered alert's timeline next has something due (computed by the last
    /// round that walked it), so a round skips the alerts with nothing to do.
    next_due: HashMap<i64, DateTime<Utc>>,
    /// The triggered alerts, by id, and when the whole list was last read.
    tracked: BTreeMap<i64, AlertRow>,
    refreshed_at: DateTime<Utc>,
    /// The highest alert id read so far.
    seen: i64,
}

impl Pager {
    pub async fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
        messages_wake: Arc<Notify>,
        lease: Arc<dyn Lease>,
    ) -> Result<Pager, StoreError> {
        store.start_log_cursor(UPDATE_CURSOR).await?;
        Ok(Pager {
            store,
            clock,
            wake,
            messages_wake,
            alerts_wake: None,
            rounds: Rounds::new(),
            lease,
            configs: HashMap::new(),
            versions: HashMap::new(),
            next_due: HashMap::new(),
            tracked: BTreeMap::new(),
            refreshed_at: DateTime::UNIX_EPOCH,
            seen: 0,
        })
    }

    /// Its rounds, for [`crate::Engine::settled`].
    pub fn rounds(&self) -> tokio::sync::watch::Receiver<crate::rounds::Round> {
        self.rounds.watch()
    }

    pub async fn run(mut self) {
        let mut held = self.lease.holds(Work::Alerting);
        loop {
            // Taken before the round: whatever falls due after it was not seen by the round,
            // so it must wake the next one (the clock may move on during the round).
            let round_start = self.clock.now();
            self.rounds.start();
            let holds = self.lease.holds(Work::Alerting);
            if holds && !held {
                // Taken over from another instance: the triggered alerts are read again in
                // full (the ones kept here may have been acknowledged or resolved there).
                self.refreshed_at = DateTime::UNIX_EPOCH;
            }
            held = holds;
            if holds && let Err(e) = self.step().await {
                tracing::warn!(error = %e, "pager step failed");
            }
            self.rounds.finish(true);
            // The next round comes when a timeline entry falls due, or after a second at most
            // (new check events and triggers also wake it).
            let mut until = round_start + Duration::from_secs(1);
            if let Some(next) = self.next_due.values().min() {
                until = until.min(*next);
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.clock.sleep_until(until) => {}
            }
        }
    }

    /// One round: alerts from new check events, then escalation up to now.
    pub async fn step(&mut self) -> Result<(), StoreError> {
        // Each project's configuration is read once a round, not once per alert.
        self.configs.clear();
        let replan = self.applied_since().await?;
        self.alerts_from_events().await?;
        self.updates_from_log().await?;
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
            let recorded = self.store.record_pagings(chunk, now.into()).await?;
            // Pages recorded just now may be due already: the dispatcher starts on them while
            // the next chunk is recorded.
            if chunk.iter().any(|record| !record.pages.is_empty()) {
                self.messages_wake.notify_one();
            }
            for (record, recorded) in chunk.iter().zip(recorded) {
                if recorded {
                    if let Some(alert) = self.tracked.get_mut(&record.alert_id) {
                        alert.paged_until = record.paged_until;
                    }
                    continue;
                }
                // Not recorded: the alert was acknowledged or resolved (let go of it), or its
                // mark moved under us (read it again, and walk it from there next round).
                self.next_due.remove(&record.alert_id);
                match self.store.alert(record.alert_id).await? {
                    Some(alert) if alert.status == AlertStatus::Triggered => {
                        self.tracked.insert(alert.id, alert);
                    }
                    _ => {
                        self.tracked.remove(&record.alert_id);
                    }
                }
            }
        }
        Ok(())
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

    /// Acts on the check events after the cursor, 500 at a time: each run of events and the
    /// cursor past it are written in one transaction, so an event opens its alert once.
    async fn alerts_from_events(&mut self) -> Result<(), StoreError> {
        let mut cursor = self.store.meta(EVENT_CURSOR).await?;
        loop {
            let events = self.store.check_events_after(cursor, 500).await?;
            let Some(last) = events.last().map(|e| e.id) else {
                return Ok(());
            };
            // (service, dedup key, summary, urgency) per event, then the actions borrowing them.
            let mut planned = Vec::with_capacity(events.len());
            for event in &events {
                let applied = self.oncall(event.project_id).await?;
                let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
                let service = routing::service_for(config, &event.uuid, event.service.as_deref());
                let name = if event.name.is_empty() {
                    &event.uuid
                } else {
                    &event.name
                };
                let dedup = match event.kind.as_str() {
                    "overlap" | "anomaly" => format!("check:{}:{}", event.uuid, event.kind),
                    _ => format!("check:{}", event.uuid),
                };
                let settings = config.and_then(|c| c.services.get(&service));
                let mut resolves =
                    event.kind == "up" && settings.is_none_or(|s| s.resolve_on_recovery);
                // A hung run that finished late: its alert stays open (unless the service says
                // otherwise) and its log says how late.
                let mut late = None;
                if resolves
                    && !settings.is_some_and(|s| s.resolve_hung_on_recovery)
                    && let Some(open) = self
                        .store
                        .open_alert_by_dedup(event.project_id, &dedup)
                        .await?
                    && let Some(detail) = finished_late(
                        &open.details,
                        event.at.to_datetime(),
                        self.check_tz(&open).await?,
                    )
                {
                    resolves = false;
                    late = Some(detail);
                }
                let at = event.at.to_datetime();
                // A check that never reported is worth a look, not a wake-up.
                let urgency = if event.kind == "never_reported" {
                    keepwatch_core::alert::paging::Urgency::Low
                } else {
                    routing::urgency(config, &service, at)
                };
                let payload: serde_json::Value =
                    serde_json::from_str(&event.payload).unwrap_or_default();
                let mut summary = crate::channels::evidence::summary(name, &event.kind, &payload);
                // Held back while a check it depends on is down: recorded with the event, no
                // alert. Released later: the alert says it was held.
                let held = payload.get("suppressed").is_some_and(|s| !s.is_null());
                if let Some(note) = payload["released"]["reason"].as_str() {
                    summary = format!("{summary} ({note})");
                }
                tracing::info!(check = %event.uuid, event = %event.kind, service, urgency = %urgency, resolves, "check event for the pager");
                planned.push((
                    event, service, dedup, summary, urgency, resolves, late, held,
                ));
            }
            let actions: Vec<EventAlert> = planned
                .iter()
                .filter_map(
                    |(event, service, dedup, summary, urgency, resolves, late, held)| {
                        // Held back, or a late notice: for the check's log and channels only.
                        if *held || event.kind == "late" {
                            return None;
                        }
                        if let Some(detail) = late {
                            return Some(EventAlert::Log {
                                project_id: event.project_id,
                                dedup_key: dedup,
                                kind: "finished_late",
                                who: "check recovered",
                                detail: detail.clone(),
                            });
                        }
                        if event.kind == "up" {
                            return resolves.then_some(EventAlert::Resolve {
                                project_id: event.project_id,
                                dedup_key: dedup,
                                who: "check recovered",
                            });
                        }
                        let alert = NewAlert {
                            project_id: event.project_id,
                            service,
                            dedup_key: dedup,
                            summary,
                            source: AlertSource::Check,
                            details: &event.payload,
                        };
                        Some(EventAlert::Trigger(alert, *urgency))
                    },
                )
                .collect();
            self.store
                .intake_events(&actions, EVENT_CURSOR, last, self.clock.now().into())
                .await?;
            if let Some(wake) = &self.alerts_wake {
                wake.notify_one();
            }
            cursor = last;
        }
    }

    /// Queues an alert update for each person who was paged for an alert that was resolved
    /// (by a person, or by its check's recovery) or whose hung run finished late since the
    /// last round: one message each, through their first rule for the urgency they were paged
    /// at. The cursor moves in the same transaction, so each entry is told once.
    async fn updates_from_log(&mut self) -> Result<(), StoreError> {
        let mut cursor = self.store.meta(UPDATE_CURSOR).await?;
        loop {
            let news = self.store.alert_news_after(cursor, 100).await?;
            let Some(last) = news.last().map(|n| n.id) else {
                return Ok(());
            };
            let mut updates = Vec::new();
            for entry in &news {
                let Some(alert) = self.store.alert(entry.alert_id).await? else {
                    continue;
                };
                let applied = self.oncall(alert.project_id).await?;
                let Some(config) = applied.as_deref().and_then(|a| a.config.as_ref().ok()) else {
                    continue;
                };
                let note = update_note(entry, self.check_tz(&alert).await?);
                for (person, urgency) in self.store.paged_people(alert.id).await? {
                    let Some((contact, address)) =
                        routing::update_contact(config, &person, urgency)
                    else {
                        continue;
                    };
                    updates.push(NewUpdate {
                        alert_id: alert.id,
                        person,
                        contact,
                        address,
                        urgency,
                        note: note.clone(),
                    });
                }
            }
            let now = self.clock.now().into();
            self.store
                .queue_updates(&updates, UPDATE_CURSOR, last, now)
                .await?;
            if !updates.is_empty() {
                self.messages_wake.notify_one();
            }
            cursor = last;
        }
    }

    /// The time zone of the check an alert comes from (UTC for other alerts): what the
    /// people paged read its times in, as in its pages.
    async fn check_tz(&self, alert: &AlertRow) -> Result<Tz, StoreError> {
        let details: serde_json::Value = serde_json::from_str(&alert.details).unwrap_or_default();
        let Some(uuid) = details["check_uuid"].as_str() else {
            return Ok(Tz::UTC);
        };
        Ok(self
            .store
            .check_by_uuid(uuid)
            .await?
            .and_then(|check| check.tz.parse().ok())
            .unwrap_or(Tz::UTC))
    }

    /// The part of an alert's timeline that fell due since the last round, to record.
    async fn escalate(
        &mut self,
        alert: &AlertRow,
        now: DateTime<Utc>,
    ) -> Result<Option<PagingRecord>, StoreError> {
        let now_ts = Timestamp::from(now);
        if alert.paged_until >= now_ts {
            return Ok(None);
        }
        let applied = self.oncall(alert.project_id).await?;
        // Entries a file applied later moved before its apply did not happen then: they
        // happen now, and are logged now.
        let applied_at = applied.as_ref().map(|a| a.applied_at);
        let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
        // A check's alerts: `check:<uuid>` or `check:<uuid>:<kind>`.
        let check = alert
            .dedup_key
            .strip_prefix("check:")
            .and_then(|rest| rest.split(':').next());
        // The main alert of a check that is down re-notifies at each run it misses.
        let down_check = match check {
            Some(uuid) if alert.dedup_key == format!("check:{uuid}") => self
                .store
                .check_by_uuid(uuid)
                .await?
                .filter(|row| row.state.status == keepwatch_core::check::Status::Down),
            _ => None,
        };
        let rules = down_check
            .as_ref()
            .and_then(|row| crate::live::rules_from_row(row).ok());
        let routed = routing::Alert {
            service: &alert.service,
            check,
            triggered_at: alert.triggered_at.to_datetime().max(DateTime::UNIX_EPOCH),
            // The timeline is planned from the urgency at the trigger (a raise is in it).
            urgency: alert.triggered_urgency(),
            missed: rules.as_ref().map(|rules| routing::Missed {
                schedule: &rules.schedule,
                grace: TimeDelta::from_std(rules.grace).unwrap_or_default(),
            }),
        };
        // Entries at `now` itself are due; those after are the next round's. The timeline to
        // a day ahead also tells when this alert next needs a round (an unrouted alert: in a
        // minute, in case the configuration changed).
        let timeline = routing::timeline(config, &routed, now + TimeDelta::days(1));
        let next = timeline.iter().map(Routed::at).find(|at| *at > now);
        self.next_due
            .insert(alert.id, next.unwrap_or(now + TimeDelta::minutes(1)));
        let mut log = Vec::new();
        let mut pages = Vec::new();
        let mut raised_at = None;
        for entry in timeline {
            let at = Timestamp::from(entry.at());
            if at <= alert.paged_until || at > now_ts {
                continue;
            }
            // Said once, at the trigger, whenever the file was applied.
            let at = match entry {
                Routed::Unrouted { .. } => at,
                _ if applied_at.is_some_and(|applied| at < applied) => now_ts,
                _ => at,
            };
            match entry {
                Routed::Notify(notification) => pages.push(NewPage {
                    person: notification.person,
                    contact: notification.contact,
                    address: notification.address.unwrap_or_default(),
                    urgency: notification.urgency,
                    due_at: at,
                }),
                Routed::Escalation(Page::UrgencyRaised { at: raise }) => {
                    // The alert reads high from here on (API, CLI, later pages); the log
                    // says when and why.
                    raised_at = Some(at);
                    let waited = crate::channels::evidence::span(raise - routed.triggered_at);
                    let detail = format!("low → high: not acknowledged within {waited}");
                    log.push((at, "urgency_raised".into(), String::new(), detail));
                }
                entry => {
                    if let Some(line) = entry.log() {
                        log.push((at, line.kind.to_string(), line.who, line.detail));
                    }
                }
            }
        }
        // Nothing fell due: leave the mark, so an idle alert costs no write per round.
        if log.is_empty() && pages.is_empty() && raised_at.is_none() {
            return Ok(None);
        }
        Ok(Some(PagingRecord {
            alert_id: alert.id,
            paged_from: alert.paged_until,
            paged_until: now_ts,
            log,
            pages,
            raised_at,
        }))
    }
}

/// How late a hung run finished, when `details` (the alert's trigger) is a hung event and
/// the check recovered at `at`: "finished at 02:14 UTC, 38 min past its max runtime (ran
/// 45 min); stays open until acknowledged or resolved" (in the check's time zone `tz`).
fn finished_late(details: &str, at: DateTime<Utc>, tz: Tz) -> Option<String> {
    let trigger: serde_json::Value = serde_json::from_str(details).ok()?;
    if trigger["kind"] != "hung" {
        return None;
    }
    let hung_at = trigger["at"].as_str()?.parse::<DateTime<Utc>>().ok()?;
    let late = short_duration(at - hung_at);
    let ran = trigger["run"]["started_at"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .map(|started| format!(" (ran {})", short_duration(at - started)))
        .unwrap_or_default();
    Some(format!(
        "finished at {}, {late} past its max runtime{ran}; \
         stays open until acknowledged or resolved",
        at.with_timezone(&tz).format("%H:%M %Z")
    ))
}

/// `1 h 02 min`, `38 min`, `45 s`.
fn short_duration(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    match (secs / 3600, (secs % 3600) / 60) {
        (0, 0) => format!("{secs} s"),
        (0, m) => format!("{m} min"),
        (h, m) => format!("{h} h {m:02} min"),
    }
}

/// What an alert update says: "resolved by alice at 02:14 UTC", "recovered at 02:14 MST" (in
/// the check's time zone), how late a hung run finished, or what the check did next while the
/// alert is open.
fn update_note(entry: &AlertNews, tz: Tz) -> String {
    let at = entry.at.to_datetime().with_timezone(&tz).format("%H:%M %Z");
    match (entry.kind.as_str(), entry.who.as_str()) {
        ("finished_late", _) => entry.detail.clone(),
        ("trigger_repeated", _) => format!("then at {at}: {}", entry.detail),
        (_, "check recovered") => format!("recovered at {at}"),
        (_, who) => format!("resolved by {who} at {at}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_finish_says_how_late_against_the_hung_trigger() {
        let hung = r#"{"kind":"hung","at":"2026-11-28T07:10:00Z",
            "run":{"started_at":"2026-11-28T07:00:00Z"}}"#;
        let at = "2026-11-28T08:12:30Z".parse().unwrap();
        assert_eq!(
            finished_late(hung, at, Tz::UTC).as_deref(),
            Some(
                "finished at 08:12 UTC, 1 h 02 min past its max runtime (ran 1 h 12 min); \
                 stays open until acknowledged or resolved"
            )
        );
        // In the check's time zone, as its pages are.
        let denver = finished_late(hung, at, Tz::America__Denver).unwrap();
        assert!(denver.starts_with("finished at 01:12 MST,"), "{denver}");
        let down = r#"{"kind":"down","at":"2026-11-28T07:10:00Z"}"#;
        assert_eq!(finished_late(down, at, Tz::UTC), None);
    }

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
