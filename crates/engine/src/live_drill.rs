//! Live drills (`keepwatch drill --live`): the drill's timeline, computed from the applied
//! configuration at the engine's now (the same routing and escalation as a real alert), sent
//! for real to the people and contacts it names, each notification at its time, every one
//! marked as a drill ("DRILL — not a real alert" in its title and first line). No alert is
//! opened: the messages are recorded as `drill` messages, apart from alerts, their lists and
//! their metrics. The people acknowledge with the link in the message, as they would a page;
//! the first acknowledgment stops the notifications still to come, and the report says who
//! was reached, through what, when, and how fast the drill was acknowledged.
//!
//! A drill in progress lives in the engine's memory: a restart ends it (its messages stay
//! recorded).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use keepwatch_core::alert::drill::{self, Subject};
use keepwatch_core::alert::paging::Urgency;
use keepwatch_core::oncall::OnCall;
use keepwatch_store::{MessageKind, SentNow, Store};
use serde::Serialize;

use crate::channels::{self, Transport};
use crate::clock::Clock;
use crate::delivery::link_token;

/// The marker every drill message starts with.
pub const MARK: &str = "DRILL — not a real alert";

/// One notification of a live drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// When the timeline sends it.
    pub at: DateTime<Utc>,
    pub person: String,
    pub contact: String,
    pub urgency: Urgency,
    /// `planned`, `sent`, `failed`, `skipped` (acknowledged before it was due) or
    /// `no address` (the contact has none).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// The receiver's answer, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A live drill and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveDrill {
    pub id: i64,
    #[serde(skip)]
    pub project_id: i64,
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    pub notices: Vec<Notice>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    /// Every notification is sent or skipped.
    pub finished: bool,
}

/// `+1:05` after the start.
fn after(from: DateTime<Utc>, at: DateTime<Utc>) -> String {
    drill::elapsed(from, at)
}

impl LiveDrill {
    /// The report: each notification, who acknowledged and how fast.
    pub fn text(&self) -> String {
        let mut out = format!(
            "live drill #{} of service {}{} started {} by {} ({MARK}: no alert was opened)\n",
            self.id,
            self.service,
            self.check
                .as_ref()
                .map_or(String::new(), |c| format!(" (check {c})")),
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.started_by
        );
        if self.notices.is_empty() {
            out.push_str("  the timeline notifies nobody: nobody was reached\n");
        }
        for n in &self.notices {
            let when = n.sent_at.map_or_else(
                || after(self.started_at, n.at),
                |t| after(self.started_at, t),
            );
            out.push_str(&format!(
                "  {when} {} by {} ({}): {}{}\n",
                n.person,
                n.contact,
                n.urgency.as_str(),
                n.state,
                n.detail
                    .as_ref()
                    .map_or(String::new(), |d| format!(" ({d})"))
            ));
        }
        let reached: Vec<&str> = self
            .notices
            .iter()
            .filter(|n| n.state == "sent")
            .map(|n| n.person.as_str())
            .collect();
        let mut reached_unique = reached.clone();
        reached_unique.dedup();
        out.push_str(&format!(
            "reached: {}\n",
            if reached_unique.is_empty() {
                "nobody".to_string()
            } else {
                reached_unique.join(", ")
            }
        ));
        match (&self.acknowledged_at, &self.acknowledged_by) {
            (Some(at), Some(by)) => out.push_str(&format!(
                "acknowledged by {by} at {} (how fast: from the drill's start)\n",
                drill::elapsed(self.started_at, *at)
            )),
            _ if self.finished => out.push_str("not acknowledged\n"),
            _ => out.push_str("not acknowledged yet\n"),
        }
        out
    }
}

/// The live drills of this process, by id.
#[derive(Clone, Default)]
pub struct LiveDrills {
    drills: Arc<Mutex<HashMap<i64, LiveDrill>>>,
    next: Arc<Mutex<i64>>,
}

/// What sending a drill needs from the engine.
pub(crate) struct Sender {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub transport: Arc<dyn Transport>,
    pub secret: Arc<str>,
    pub site_url: String,
}

impl LiveDrills {
    pub fn get(&self, id: i64) -> Option<LiveDrill> {
        self.drills.lock().unwrap().get(&id).cloned()
    }

    /// Records the first acknowledgment of drill `id`; the drill as it is then.
    pub fn acknowledge(&self, id: i64, who: &str, now: DateTime<Utc>) -> Option<LiveDrill> {
        let mut drills = self.drills.lock().unwrap();
        let drill = drills.get_mut(&id)?;
        if drill.acknowledged_at.is_none() {
            drill.acknowledged_at = Some(now);
            drill.acknowledged_by = Some(who.to_string());
        }
        Some(drill.clone())
    }

    /// Plans the drill of `subject` from `config` at `now` (followed for `horizon`) and
    /// starts sending it; returns it as planned.
    pub(crate) fn start(
        &self,
        sender: Sender,
        project_id: i64,
        config: &OnCall,
        subject: &Subject,
        horizon: TimeDelta,
        who: &str,
    ) -> LiveDrill {
        let now = sender.clock.now();
        let report = drill::drill(
            Some(config),
            &drill::Request {
                service: &subject.service,
                check: subject.check.as_deref(),
                event: subject.event,
                at: now,
                until: now + horizon,
                acknowledged: false,
            },
        );
        let mut addresses = Vec::new();
        let notices: Vec<Notice> = report
            .entries
            .iter()
            .filter(|e| e.kind == "notify")
            .filter_map(|e| {
                let (person, contact) = (e.person.clone()?, e.contact.clone()?);
                let address = config
                    .contact_address(&person, &contact)
                    .map(str::to_string);
                let state = if address.is_some() {
                    "planned"
                } else {
                    "no address"
                };
                addresses.push(address);
                Some(Notice {
                    at: e.at,
                    person,
                    contact,
                    urgency: e.urgency.unwrap_or(Urgency::High),
                    state: state.into(),
                    sent_at: None,
                    detail: None,
                })
            })
            .collect();
        let id = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        let drill = LiveDrill {
            id,
            project_id,
            service: subject.service.clone(),
            check: subject.check.clone(),
            started_at: now,
            started_by: who.to_string(),
            finished: notices.is_empty(),
            notices,
            acknowledged_at: None,
            acknowledged_by: None,
        };
        self.drills.lock().unwrap().insert(id, drill.clone());
        let expires = now + horizon + TimeDelta::days(1);
        tokio::spawn(self.clone().send(sender, id, addresses, expires));
        drill
    }

    /// Sends each notification at its time until the drill is acknowledged.
    async fn send(
        self,
        sender: Sender,
        id: i64,
        addresses: Vec<Option<String>>,
        expires: DateTime<Utc>,
    ) {
        let Some(planned) = self.get(id) else { return };
        let total = planned.notices.len();
        for (i, address) in addresses.into_iter().enumerate() {
            let notice = planned.notices[i].clone();
            sender.clock.sleep_until(notice.at).await;
            if self.get(id).is_some_and(|d| d.acknowledged_at.is_some()) {
                break;
            }
            let Some(address) = address else { continue };
            let token = link_token(&sender.secret, id, &notice.person, "drill", expires);
            let link = format!("{}/a/{token}", sender.site_url.trim_end_matches('/'));
            let title = format!("{MARK}: service {}", planned.service);
            let text = format!(
                "{MARK}. Nothing is wrong: this is live drill #{id} of service {}'s paging, \
                 started by {}.\nAcknowledge it as you would a page: open this link and press \
                 the button\n{link}\nNotification {} of {total} ({} on the drill's timeline), \
                 at {} urgency.\n",
                planned.service,
                planned.started_by,
                i + 1,
                drill::elapsed(planned.started_at, notice.at),
                notice.urgency.as_str(),
            );
            // When it went out (the receiver may act on it before the answer comes back).
            let at = sender.clock.now();
            let started = std::time::Instant::now();
            let result =
                channels::send_plain(&*sender.transport, &notice.contact, &address, &title, &text)
                    .await;
            let (ok, detail) = match &result {
                Ok(detail) => (true, detail.clone()),
                Err(failure) => (false, failure.detail.clone()),
            };
            let sent = SentNow {
                kind: MessageKind::Drill,
                person: &notice.person,
                contact: &notice.contact,
                address: &address,
                at: at.into(),
                ok,
                detail: &detail,
                took_ms: started.elapsed().as_millis() as i64,
            };
            if let Err(e) = sender.store.record_sent_now(&sent).await {
                tracing::error!(error = %e, "cannot record a drill message");
            }
            tracing::info!(drill = id, person = %notice.person, contact = %notice.contact, ok, "drill notification");
            if let Some(d) = self.drills.lock().unwrap().get_mut(&id) {
                let n = &mut d.notices[i];
                n.state = if ok { "sent" } else { "failed" }.into();
                n.sent_at = Some(at);
                n.detail = Some(detail);
            }
        }
        if let Some(d) = self.drills.lock().unwrap().get_mut(&id) {
            for n in d.notices.iter_mut().filter(|n| n.state == "planned") {
                n.state = "skipped".into();
            }
            d.finished = true;
        }
    }
}
