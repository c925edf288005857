//! The shift check-in loop (see [`keepwatch_core::oncall::checkin`]): when a person's shift
//! starts on a schedule that asks for check-ins, it opens a check-in and sends it through
//! their high-urgency rules, with a signed link that acknowledges it; when one falls due
//! unacknowledged, it records it as missed and tells the person on call before and the
//! schedule's fallback, through theirs. Each shift start is opened once (the store's unique
//! key), so a restart or a second round sends nothing twice. Under [`Work::Checkins`].

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use keepwatch_core::alert::paging::Target;
use keepwatch_core::oncall::OnCall;
use keepwatch_core::oncall::checkin::{CheckinText, shift_starts};
use keepwatch_store::{CheckinMessage, CheckinRow, NewCheckin, Store, StoreError, Timestamp};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::delivery::LinkSigner;
use crate::lease::{Lease, Work};

/// The loop looks again at least this often (a schedule applied elsewhere, a missed wake).
const IDLE_POLL: TimeDelta = TimeDelta::hours(1);

pub struct CheckinLoop {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) lease: Arc<dyn Lease>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) messages_wake: Arc<Notify>,
    pub(crate) links: LinkSigner,
    pub(crate) rounds: crate::rounds::Rounds,
}

/// The zone a person reads times in: their own, else the schedule's.
fn zone(config: &OnCall, person: &str, schedule: &str) -> Tz {
    config
        .time_zones
        .get(person)
        .copied()
        .or_else(|| config.schedules.get(schedule).map(|s| s.tz))
        .unwrap_or(Tz::UTC)
}

/// A message `(subject, text)` to `person` through their high-urgency rules, each rule's
/// contact after its delay from `from`.
fn to_person(
    config: &OnCall,
    person: &str,
    from: DateTime<Utc>,
    (subject, text): (String, String),
) -> Vec<CheckinMessage> {
    crate::incidents::reach(config, &[Target::User(person.to_string())], from)
        .into_iter()
        .map(|(person, contact, address, at)| CheckinMessage {
            person,
            contact,
            address,
            subject: subject.clone(),
            text: text.clone(),
            due_at: at.into(),
        })
        .collect()
}

impl CheckinLoop {
    pub async fn run(self) {
        loop {
            let now = self.clock.now();
            self.rounds.start();
            let next = if self.lease.holds(Work::Checkins) {
                match self.round(now).await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::error!(error = %e, "check-in round failed");
                        None
                    }
                }
            } else {
                None
            };
            self.rounds.finish(true);
            let until = next
                .filter(|t| *t > now)
                .map_or(now + IDLE_POLL, |t| t.min(now + IDLE_POLL));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.clock.sleep_until(until) => {}
            }
        }
    }

    /// One round at `now`: opens the check-ins of shifts that started within their
    /// schedule's `within`, records those due unacknowledged as missed. Returns when the next
    /// shift change or due check-in comes.
    pub async fn round(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut next: Option<DateTime<Utc>> = self
            .store
            .next_checkin_due()
            .await?
            .map(Timestamp::to_datetime);
        let mut sooner = |at: DateTime<Utc>| {
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        let mut queued = false;
        for (project_id, _) in self.store.oncall_versions().await? {
            let Some(applied) = self.store.oncall(project_id).await? else {
                continue;
            };
            let Ok(config) = applied.config.as_ref() else {
                continue;
            };
            for (name, rule) in &config.checkins {
                let Some(schedule) = config.schedules.get(name) else {
                    continue;
                };
                sooner(schedule.handover(now).until);
                for start in shift_starts(schedule, now - rule.within, now) {
                    let mut told = start.previous.clone();
                    if let Some(fallback) = &rule.fallback
                        && *fallback != start.person
                        && !told.contains(fallback)
                    {
                        told.push(fallback.clone());
                    }
                    let due = start.start + rule.within;
                    let tz = zone(config, &start.person, name);
                    let write = |id: i64| {
                        let link = self.links.checkin_link(id, &start.person, now);
                        let text = CheckinText {
                            id,
                            schedule: name,
                            person: &start.person,
                            start: start.start,
                            end: start.end,
                            due,
                            told: &told,
                            link: &link,
                        };
                        to_person(config, &start.person, start.start, text.request(tz))
                    };
                    let new = NewCheckin {
                        project_id,
                        schedule: name,
                        person: &start.person,
                        shift_start: start.start.into(),
                        shift_end: start.end.into(),
                        due_at: due.into(),
                        told: &told,
                    };
                    if let Some(id) = self.store.open_checkin(&new, &write, now.into()).await? {
                        tracing::info!(checkin = id, schedule = %name, person = %start.person, "shift check-in sent");
                        queued = true;
                        sooner(due);
                    }
                }
            }
        }
        for due in self.store.due_checkins(now.into()).await? {
            queued |= self.missed(&due, now).await?;
        }
        if queued {
            self.messages_wake.notify_one();
        }
        Ok(next)
    }

    /// Records a check-in as missed and tells who it names; `true` if it was still pending.
    async fn missed(&self, row: &CheckinRow, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let told: Vec<String> = serde_json::from_str(&row.told).unwrap_or_default();
        let applied = self.store.oncall(row.project_id).await?;
        let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
        let mut notices = Vec::new();
        if let Some(config) = config {
            let fallback = config
                .checkins
                .get(&row.schedule)
                .and_then(|r| r.fallback.as_deref());
            let text = CheckinText {
                id: row.id,
                schedule: &row.schedule,
                person: &row.person,
                start: row.shift_start.to_datetime(),
                end: row.shift_end.to_datetime(),
                due: row.due_at.to_datetime(),
                told: &told,
                link: "",
            };
            for reader in &told {
                let previous = fallback != Some(reader.as_str());
                let tz = zone(config, reader, &row.schedule);
                notices.extend(to_person(
                    config,
                    reader,
                    now,
                    text.missed(reader, previous, tz),
                ));
            }
        }
        let changed = self
            .store
            .miss_checkin(row.id, &notices, now.into())
            .await?;
        if changed {
            tracing::warn!(checkin = row.id, schedule = %row.schedule, person = %row.person, told = ?told, "shift check-in missed");
        }
        Ok(changed)
    }
}
