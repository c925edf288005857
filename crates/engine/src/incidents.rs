//! Incidents in the engine: declaring, updating, handing over, resolving and reopening them
//! (each change and the messages it causes written in one transaction), and the incident loop
//! under [`Work::Incidents`]: the cadence of reminders (before and when an update is due, then
//! escalated when it is overdue), recurrences (a new alert on a check of an incident resolved
//! lately is attached to it and its owner told) and the services' auto-declare rules.
//!
//! What updates say, when reminders fall due and how the postmortem reads are decided in
//! core's [`keepwatch_core::incident`]; this module reads and writes the store and queues
//! messages, which the dispatcher sends.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use keepwatch_core::alert::paging::{
    EscalationPolicy, EscalationStep, Page, Paging, Target, Urgency,
};
use keepwatch_core::incident::postmortem::{Entry, Export, Header, Marker, Postmortem};
use keepwatch_core::incident::runs::{self, HungRun, RunPing};
use keepwatch_core::incident::{
    CadenceStep, ExtraStakeholder, IncidentSettings, IncidentStatus, Recipient, Severity,
    UpdateKind, UpdateView, cadence_step, next_cadence_at, recipients, reminder_text, update_text,
};
use keepwatch_core::oncall::OnCall;
use keepwatch_store::{
    AlertRow, IncidentRow, MessageKind, NewIncident, NewIncidentLog, NewIncidentMessage, Store,
    Timestamp,
};
use tokio::sync::Notify;

use crate::EngineError;
use crate::clock::Clock;
use crate::lease::{Lease, Work};

/// The longest title, impact, message or note, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// The incident loop's cursor over new alerts (recurrence, critical checks).
const ALERT_CURSOR: &str = "incident_alert_cursor";
const IDLE_POLL: Duration = Duration::from_secs(30);

/// What declaring an incident takes; everything but `who` may be left to defaults.
#[derive(Debug, Clone, Default)]
pub struct Declare {
    pub project_id: i64,
    pub title: Option<String>,
    pub severity: Option<Severity>,
    pub status: Option<IncidentStatus>,
    /// A person of the on-call file; default: who the service's policy reaches first now.
    pub owner: Option<String>,
    pub impact: Option<String>,
    pub service: Option<String>,
    pub alerts: Vec<i64>,
    /// Check UUIDs (the alerts' checks are linked too).
    pub checks: Vec<String>,
    /// Default: the service's stakeholder groups.
    pub groups: Option<Vec<String>>,
    pub extra: Vec<ExtraStakeholder>,
    /// Override of the severity's interval; `Some(None)`: no cadence.
    pub update_every: Option<Option<TimeDelta>>,
    /// The first message to stakeholders (default: the impact, or the title).
    pub message: Option<String>,
    pub who: String,
}

/// An update to post.
#[derive(Debug, Clone)]
pub struct Update {
    pub status: Option<IncidentStatus>,
    pub message: String,
    pub no_news: bool,
    pub who: String,
}

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::Invalid(message.into())
}

/// A text a person typed, trimmed, not empty and not too long.
pub fn text_field(text: &str, what: &str) -> Result<String, EngineError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(format!(
            "{what} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    if text.contains('\0') {
        return Err(invalid(format!("{what} contains a NUL character")));
    }
    Ok(text.to_string())
}

/// The incident facade ([`crate::Engine::incidents`]): declare, update, hand over, resolve,
/// reopen, notes, the postmortem, the stakeholder page.
#[derive(Clone)]
pub struct Incidents {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) messages_wake: Arc<Notify>,
    pub(crate) site_url: String,
}

/// The parsed configuration of a project, or why there is none.
async fn config_of(
    store: &Store,
    project_id: i64,
) -> Result<Arc<keepwatch_store::AppliedOnCall>, EngineError> {
    let applied = store.oncall(project_id).await?.ok_or_else(|| {
        invalid("no on-call file is applied to this project: incidents need its people and stakeholders (keepwatch apply)")
    })?;
    if let Err(e) = &applied.config {
        return Err(invalid(format!(
            "the applied on-call file cannot be read: {e}"
        )));
    }
    Ok(applied)
}

fn oncall(applied: &keepwatch_store::AppliedOnCall) -> &OnCall {
    applied.config.as_ref().expect("checked by config_of")
}

fn groups_of(row: &IncidentRow) -> Vec<String> {
    serde_json::from_str(&row.stakeholder_groups).unwrap_or_default()
}

fn extra_of(row: &IncidentRow) -> Vec<ExtraStakeholder> {
    serde_json::from_str(&row.extra).unwrap_or_default()
}

/// The people a target reaches now, through their own rules at `urgency`: `(person,
/// contact, address, due)`.
pub(crate) fn reach(
    config: &OnCall,
    targets: &[Target],
    now: DateTime<Utc>,
) -> Vec<(String, String, String, DateTime<Utc>)> {
    let policy = EscalationPolicy {
        name: "incident".into(),
        steps: vec![EscalationStep {
            targets: targets.to_vec(),
            delay_minutes: 0,
        }],
        repeat: 0,
        last_resort: None,
    };
    let paging = Paging {
        triggered_at: now,
        urgency: Urgency::High,
        raise_after: None,
        policy: &policy,
        schedules: &config.schedules,
        people: &config.people,
    };
    let mut out = Vec::new();
    for page in paging.first_step(now) {
        if let Page::Notify {
            at, user, contact, ..
        } = page
            && let Some(address) = config.contact_address(&user, &contact)
        {
            out.push((user, contact, address.to_string(), at));
        }
    }
    out
}

/// Who an overdue update escalates to: the service's `incident_backup`, the file's
/// `[incidents] backup`, else the first step of the service's policy.
fn escalation_targets(config: &OnCall, service: &str) -> Vec<Target> {
    let service = config.services.get(service);
    if let Some(t) = service.and_then(|s| s.incident_backup.clone()) {
        return vec![t];
    }
    if let Some(t) = config.incidents.backup.clone() {
        return vec![t];
    }
    service
        .and_then(|s| config.policies.get(&s.policy))
        .and_then(|p| p.steps.first())
        .map(|step| step.targets.clone())
        .unwrap_or_default()
}

/// The person a service's policy reaches first now (a declared incident's default owner).
fn first_on_call(config: &OnCall, service: &str, now: DateTime<Utc>) -> Option<String> {
    let targets = config
        .services
        .get(service)
        .and_then(|s| config.policies.get(&s.policy))
        .and_then(|p| p.steps.first())
        .map(|step| step.targets.clone())
        .unwrap_or_default();
    reach(config, &targets, now)
        .into_iter()
        .map(|(person, ..)| person)
        .next()
}

fn time_zone(config: &OnCall, person: &str) -> Tz {
    config.time_zones.get(person).copied().unwrap_or(Tz::UTC)
}

impl Incidents {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn page_url(&self, row: &IncidentRow) -> String {
        format!("{}/s/{}", self.site_url.trim_end_matches('/'), row.token)
    }

    /// The update `view` written for every stakeholder of `row`, as messages due now.
    async fn stakeholder_messages(
        &self,
        config: &OnCall,
        row: &IncidentRow,
        view: &UpdateView<'_>,
    ) -> Result<Vec<NewIncidentMessage>, EngineError> {
        let verified = self.store.verified_contacts(row.project_id).await?;
        let (to, unreached) = recipients(config, &groups_of(row), &extra_of(row), &verified);
        if !unreached.is_empty() {
            tracing::warn!(
                incident = row.id,
                ?unreached,
                "stakeholders without a contact"
            );
        }
        Ok(to
            .into_iter()
            .map(|r: Recipient| {
                let (subject, text) = update_text(view, r.tz);
                NewIncidentMessage {
                    kind: MessageKind::IncidentUpdate,
                    person: r.who,
                    contact: r.contact,
                    address: r.address,
                    urgency: "low".into(),
                    subject,
                    text,
                    due_at: view.at.into(),
                }
            })
            .collect())
    }

    /// A message to a person through their own high-urgency rules (each rule's contact after
    /// its delay).
    fn person_messages(
        &self,
        config: &OnCall,
        targets: &[Target],
        write: impl Fn(Tz) -> (String, String),
        now: DateTime<Utc>,
    ) -> Vec<NewIncidentMessage> {
        reach(config, targets, now)
            .into_iter()
            .map(|(person, contact, address, at)| {
                let (subject, text) = write(time_zone(config, &person));
                NewIncidentMessage {
                    kind: MessageKind::IncidentReminder,
                    text,
                    person,
                    contact,
                    address,
                    urgency: "high".into(),
                    subject,
                    due_at: at.into(),
                }
            })
            .collect()
    }

    fn view<'a>(
        &self,
        row: &'a IncidentRow,
        kind: UpdateKind,
        message: &'a str,
        at: DateTime<Utc>,
        url: &'a str,
    ) -> UpdateView<'a> {
        UpdateView {
            incident_id: row.id,
            title: &row.title,
            severity: row.severity,
            status: row.status,
            impact: &row.impact,
            owner: &row.owner,
            kind,
            message,
            at,
            previous_at: row.last_update_at.map(Timestamp::to_datetime),
            next_due: row.next_update_at.map(Timestamp::to_datetime),
            page_url: Some(url),
        }
    }

    pub async fn declare(&self, d: Declare) -> Result<IncidentRow, EngineError> {
        let now = self.now();
        let applied = config_of(&self.store, d.project_id).await?;
        let config = oncall(&applied);
        let mut alerts: Vec<AlertRow> = Vec::new();
        for id in &d.alerts {
            match self.store.alert(*id).await? {
                Some(a) if a.project_id == d.project_id => alerts.push(a),
                _ => return Err(invalid(format!("no alert with id {id} in this project"))),
            }
        }
        let service = d
            .service
            .clone()
            .or_else(|| alerts.first().map(|a| a.service.clone()))
            .unwrap_or_default();
        if !service.is_empty() && !config.services.contains_key(&service) && d.service.is_some() {
            return Err(invalid(format!(
                "unknown service `{service}` (not in the on-call file)"
            )));
        }
        let title = match d.title.as_deref() {
            Some(t) => text_field(t, "the title")?,
            None => match alerts.first() {
                Some(a) => a.summary.clone(),
                None => return Err(invalid("give a title (or alerts to take it from)")),
            },
        };
        let owner = match d
            .owner
            .clone()
            .or_else(|| first_on_call(config, &service, now))
        {
            Some(owner) => owner,
            None => {
                return Err(invalid(
                    "give an owner (a person in the on-call file): nobody is on call for the service",
                ));
            }
        };
        if !config.people.contains_key(&owner) {
            return Err(invalid(format!(
                "owner `{owner}` is not a person in the on-call file"
            )));
        }
        let groups = d.groups.clone().unwrap_or_else(|| {
            config
                .services
                .get(&service)
                .map(|s| s.stakeholders.clone())
                .unwrap_or_default()
        });
        check_groups(config, &groups)?;
        check_extra(&d.extra)?;
        let impact = match d.impact.as_deref() {
            Some(i) if !i.trim().is_empty() => text_field(i, "the impact")?,
            _ => String::new(),
        };
        let severity = d.severity.unwrap_or(Severity::Sev2);
        let status = d.status.unwrap_or(IncidentStatus::Investigating);
        if status == IncidentStatus::Resolved {
            return Err(invalid("a new incident cannot be resolved already"));
        }
        let interval = d
            .update_every
            .unwrap_or_else(|| config.incidents.interval(severity));
        let mut checks: Vec<String> = Vec::new();
        for uuid in &d.checks {
            let uuid = uuid.trim().to_ascii_lowercase();
            match self.store.check_by_uuid(&uuid).await? {
                Some(c) if c.project_id == d.project_id => checks.push(uuid),
                _ => return Err(invalid(format!("no check `{uuid}` in this project"))),
            }
        }
        for a in &alerts {
            if let Some(uuid) = alert_check(a)
                && !checks.contains(&uuid)
            {
                checks.push(uuid);
            }
        }
        let message = match d.message.as_deref() {
            Some(m) => text_field(m, "the message")?,
            None if !impact.is_empty() => impact.clone(),
            None => title.clone(),
        };
        let token = keepwatch_store::generate_secret(32);
        let groups_json = serde_json::to_string(&groups).expect("strings");
        let extra_json = serde_json::to_string(&d.extra).expect("plain data");
        let next = interval.map(|i| Timestamp::from(now + i));
        let alert_ids: Vec<i64> = alerts.iter().map(|a| a.id).collect();
        // The row as it will be, to write the first message from.
        let draft = IncidentRow {
            id: 0,
            project_id: d.project_id,
            title: title.clone(),
            severity,
            status,
            owner: owner.clone(),
            service: service.clone(),
            impact: impact.clone(),
            stakeholder_groups: groups_json.clone(),
            extra: extra_json.clone(),
            update_every: interval.map(|i| i.num_seconds()),
            next_update_at: next,
            cadence_stage: 0,
            token: token.clone(),
            declared_at: now.into(),
            declared_by: d.who.clone(),
            last_update_at: None,
            resolved_at: None,
            postmortem: "{}".into(),
        };
        let log = NewIncidentLog {
            kind: "declared".into(),
            who: d.who.clone(),
            status: Some(status.as_str().into()),
            text: message.clone(),
            due_at: None,
            on_time: Some(true),
        };
        // The id is in every message: create first, then queue with the real row.
        let row = self
            .store
            .create_incident(
                &NewIncident {
                    project_id: d.project_id,
                    title: &title,
                    severity,
                    status,
                    owner: &owner,
                    service: &service,
                    impact: &impact,
                    stakeholder_groups: &groups_json,
                    extra: &extra_json,
                    update_every: draft.update_every,
                    next_update_at: next,
                    token: &token,
                    declared_by: &d.who,
                    alerts: &alert_ids,
                    checks: &checks,
                },
                &log,
                &[],
                now.into(),
            )
            .await?;
        let url = self.page_url(&row);
        let mut view = self.view(&row, UpdateKind::Declared, &message, now, &url);
        view.previous_at = None;
        let mut messages = self.stakeholder_messages(config, &row, &view).await?;
        let owner_text = |tz: Tz| {
            format!(
                "You own incident #{} \"{}\" ({}), declared by {}.\n{}Stakeholder page: {url}\n",
                row.id,
                row.title,
                row.severity.label(),
                d.who,
                row.next_update_at.map_or(String::new(), |t| format!(
                    "The next stakeholder update is due by {}.\n",
                    keepwatch_core::incident::local_time(t.to_datetime(), tz, now)
                )),
            )
        };
        if row.owner != d.who {
            messages.extend(self.person_messages(
                config,
                &[Target::User(row.owner.clone())],
                |tz| {
                    (
                        format!("You own incident #{}: {}", row.id, row.title),
                        owner_text(tz),
                    )
                },
                now,
            ));
        }
        self.store
            .attach_to_incident(row.id, &[], &[], None, &messages, now.into())
            .await?;
        self.messages_wake.notify_one();
        tracing::info!(incident = row.id, owner = %row.owner, severity = %row.severity, recipients = messages.len(), "incident declared");
        Ok(row)
    }

    /// The incident if it is the project's.
    pub async fn own(&self, project_id: i64, id: i64) -> Result<IncidentRow, EngineError> {
        match self.store.incident(id).await? {
            Some(row) if row.project_id == project_id => Ok(row),
            _ => Err(EngineError::NotFound),
        }
    }

    pub async fn update(
        &self,
        project_id: i64,
        id: i64,
        u: Update,
    ) -> Result<IncidentRow, EngineError> {
        let row = self.own(project_id, id).await?;
        if row.status == IncidentStatus::Resolved {
            return Err(EngineError::Conflict(format!(
                "incident #{id} is resolved: reopen it first (keepwatch incident reopen {id})"
            )));
        }
        let message = text_field(&u.message, "the message").map_err(|_| {
            invalid(
                "the message is empty: say what is happening (for --no-news: what is being done)",
            )
        })?;
        let status = u.status.unwrap_or(row.status);
        let kind = if status == IncidentStatus::Resolved {
            UpdateKind::AllClear
        } else if u.no_news {
            UpdateKind::NoNews
        } else {
            UpdateKind::Update
        };
        self.post(row, status, kind, &message, &u.who).await
    }

    pub async fn resolve(
        &self,
        project_id: i64,
        id: i64,
        message: Option<&str>,
        who: &str,
    ) -> Result<IncidentRow, EngineError> {
        let row = self.own(project_id, id).await?;
        if row.status == IncidentStatus::Resolved {
            return Err(EngineError::Conflict(format!(
                "incident #{id} is already resolved"
            )));
        }
        let message = match message {
            Some(m) => text_field(m, "the message")?,
            None => "the issue is resolved".into(),
        };
        self.post(
            row,
            IncidentStatus::Resolved,
            UpdateKind::AllClear,
            &message,
            who,
        )
        .await
    }

    pub async fn reopen(
        &self,
        project_id: i64,
        id: i64,
        message: Option<&str>,
        who: &str,
    ) -> Result<IncidentRow, EngineError> {
        let row = self.own(project_id, id).await?;
        if row.status != IncidentStatus::Resolved {
            return Err(EngineError::Conflict(format!(
                "incident #{id} is not resolved (it is {})",
                row.status
            )));
        }
        let message = match message {
            Some(m) => text_field(m, "the message")?,
            None => "the problem is back".into(),
        };
        self.post(
            row,
            IncidentStatus::Investigating,
            UpdateKind::Reopened,
            &message,
            who,
        )
        .await
    }

    /// Writes an update (or all-clear, or reopen) and queues it for every stakeholder.
    async fn post(
        &self,
        was: IncidentRow,
        status: IncidentStatus,
        kind: UpdateKind,
        message: &str,
        who: &str,
    ) -> Result<IncidentRow, EngineError> {
        let now = self.now();
        let applied = config_of(&self.store, was.project_id).await?;
        let config = oncall(&applied);
        let on_time = was
            .next_update_at
            .is_none_or(|due| now <= due.to_datetime());
        let mut row = was.clone();
        row.status = status;
        row.cadence_stage = 0;
        row.last_update_at = Some(now.into());
        match kind {
            UpdateKind::AllClear => {
                row.next_update_at = None;
                row.resolved_at = Some(now.into());
            }
            _ => {
                row.resolved_at = None;
                row.next_update_at = row.update_interval().map(|i| (now + i).into());
            }
        }
        let log_kind = match kind {
            UpdateKind::Update => "update",
            UpdateKind::NoNews => "no_news",
            UpdateKind::AllClear => "all_clear",
            UpdateKind::Reopened => "reopened",
            UpdateKind::Declared => "declared",
        };
        let log = NewIncidentLog {
            kind: log_kind.into(),
            who: who.into(),
            status: Some(status.as_str().into()),
            text: message.into(),
            due_at: was.next_update_at,
            on_time: (kind != UpdateKind::Reopened).then_some(on_time),
        };
        let url = self.page_url(&row);
        let mut view = self.view(&row, kind, message, now, &url);
        view.previous_at = was
            .last_update_at
            .or(Some(was.declared_at))
            .map(Timestamp::to_datetime);
        let messages = self.stakeholder_messages(config, &row, &view).await?;
        if !self
            .store
            .change_incident(&was, &row, &[log], &messages, now.into())
            .await?
        {
            return Err(EngineError::Conflict(format!(
                "incident #{} changed meanwhile: read it again and retry",
                was.id
            )));
        }
        self.messages_wake.notify_one();
        tracing::info!(
            incident = row.id,
            kind = log_kind,
            who,
            recipients = messages.len(),
            on_time,
            "incident update posted"
        );
        Ok(row)
    }

    pub async fn set_owner(
        &self,
        project_id: i64,
        id: i64,
        owner: &str,
        who: &str,
    ) -> Result<IncidentRow, EngineError> {
        let was = self.own(project_id, id).await?;
        let now = self.now();
        let applied = config_of(&self.store, project_id).await?;
        let config = oncall(&applied);
        let owner = owner.trim();
        if !config.people.contains_key(owner) {
            return Err(invalid(format!(
                "owner `{owner}` is not a person in the on-call file"
            )));
        }
        if was.owner == owner {
            return Ok(was);
        }
        let mut row = was.clone();
        row.owner = owner.to_string();
        let log = NewIncidentLog {
            kind: "owner".into(),
            who: who.into(),
            text: format!("owner changed from {} to {owner}", was.owner),
            ..NewIncidentLog::default()
        };
        let url = self.page_url(&row);
        let messages = self.person_messages(
            config,
            &[Target::User(owner.to_string())],
            |tz| {
                let subject = format!("You now own incident #{}: {}", row.id, row.title);
                let text = format!(
                    "{who} handed incident #{} \"{}\" ({}) over to you (it was {}'s).\n{}Stakeholder page: {url}\n",
                    row.id,
                    row.title,
                    row.severity.label(),
                    was.owner,
                    row.next_update_at.map_or(String::new(), |t| format!(
                        "The next stakeholder update is due by {}; the reminders now come to you.\n",
                        keepwatch_core::incident::local_time(t.to_datetime(), tz, now)
                    )),
                );
                (subject, text)
            },
            now,
        );
        if !self
            .store
            .change_incident(&was, &row, &[log], &messages, now.into())
            .await?
        {
            return Err(EngineError::Conflict(format!(
                "incident #{id} changed meanwhile: read it again and retry"
            )));
        }
        self.messages_wake.notify_one();
        tracing::info!(incident = id, owner, who, "incident owner changed");
        Ok(row)
    }

    pub async fn note(
        &self,
        project_id: i64,
        id: i64,
        text: &str,
        who: &str,
    ) -> Result<IncidentRow, EngineError> {
        let row = self.own(project_id, id).await?;
        let text = text_field(text, "the note")?;
        let log = NewIncidentLog {
            kind: "note".into(),
            who: who.into(),
            text,
            ..NewIncidentLog::default()
        };
        self.store
            .attach_to_incident(id, &[], &[], Some(&log), &[], self.now().into())
            .await?;
        Ok(row)
    }

    /// Edits the postmortem: the fields given replace the stored ones.
    pub async fn postmortem(
        &self,
        project_id: i64,
        id: i64,
        edit: &serde_json::Value,
        who: &str,
    ) -> Result<IncidentRow, EngineError> {
        let was = self.own(project_id, id).await?;
        let mut current: serde_json::Value =
            serde_json::from_str(&was.postmortem).unwrap_or_else(|_| serde_json::json!({}));
        let Some(fields) = edit.as_object() else {
            return Err(invalid(
                "the body must be a JSON object with summary, root_cause, contributing_factors or action_items",
            ));
        };
        for (key, value) in fields {
            if !matches!(
                key.as_str(),
                "summary" | "root_cause" | "contributing_factors" | "action_items"
            ) {
                return Err(invalid(format!(
                    "unknown postmortem field `{key}` (summary, root_cause, contributing_factors, action_items)"
                )));
            }
            current[key] = value.clone();
        }
        let parsed: Postmortem = serde_json::from_value(current.clone())
            .map_err(|e| invalid(format!("the postmortem is not valid: {e}")))?;
        let mut row = was.clone();
        row.postmortem = serde_json::to_string(&parsed).expect("plain data");
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let log = NewIncidentLog {
            kind: "postmortem".into(),
            who: who.into(),
            text: format!("postmortem edited: {}", names.join(", ")),
            ..NewIncidentLog::default()
        };
        if !self
            .store
            .change_incident(&was, &row, &[log], &[], self.now().into())
            .await?
        {
            return Err(EngineError::Conflict(format!(
                "incident #{id} changed meanwhile: read it again and retry"
            )));
        }
        Ok(row)
    }

    /// A new stakeholder page token: the old URL stops working.
    pub async fn rotate_token(
        &self,
        project_id: i64,
        id: i64,
        who: &str,
    ) -> Result<IncidentRow, EngineError> {
        let was = self.own(project_id, id).await?;
        let mut row = was.clone();
        row.token = keepwatch_store::generate_secret(32);
        let log = NewIncidentLog {
            kind: "page_revoked".into(),
            who: who.into(),
            text: "the stakeholder page's old link was revoked and a new one made".into(),
            ..NewIncidentLog::default()
        };
        if !self
            .store
            .change_incident(&was, &row, &[log], &[], self.now().into())
            .await?
        {
            return Err(EngineError::Conflict(format!(
                "incident #{id} changed meanwhile: read it again and retry"
            )));
        }
        Ok(row)
    }

    /// Links more alerts to an incident.
    pub async fn attach(
        &self,
        project_id: i64,
        id: i64,
        alert_ids: &[i64],
        who: &str,
    ) -> Result<IncidentRow, EngineError> {
        let row = self.own(project_id, id).await?;
        let mut checks = Vec::new();
        for a in alert_ids {
            match self.store.alert(*a).await? {
                Some(alert) if alert.project_id == project_id => {
                    checks.extend(alert_check(&alert));
                }
                _ => return Err(invalid(format!("no alert with id {a} in this project"))),
            }
        }
        let list: Vec<String> = alert_ids.iter().map(|a| format!("#{a}")).collect();
        let log = NewIncidentLog {
            kind: "alert_attached".into(),
            who: who.into(),
            text: format!("alerts {} attached", list.join(", ")),
            ..NewIncidentLog::default()
        };
        self.store
            .attach_to_incident(id, alert_ids, &checks, Some(&log), &[], self.now().into())
            .await?;
        Ok(row)
    }

    /// The whole postmortem export of an incident.
    pub async fn export(
        &self,
        project_id: i64,
        id: i64,
        last_seqs: &std::collections::HashMap<i64, i64>,
    ) -> Result<Export, EngineError> {
        let row = self.own(project_id, id).await?;
        gather_export(&self.store, &row, self.now(), last_seqs).await
    }
}

/// Every group must be in the file.
fn check_groups(config: &OnCall, groups: &[String]) -> Result<(), EngineError> {
    for g in groups {
        if !config.stakeholders.iter().any(|s| &s.name == g) {
            let known: Vec<&str> = config
                .stakeholders
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            return Err(invalid(format!(
                "unknown stakeholder group `{g}` (the on-call file has: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    Ok(())
}

fn check_extra(extra: &[ExtraStakeholder]) -> Result<(), EngineError> {
    for e in extra {
        keepwatch_core::incident::address_kind(&e.address)
            .map_err(|why| invalid(format!("stakeholder {why}")))?;
        if let Some(tz) = &e.tz {
            keepwatch_core::schedule::parse_tz(tz)
                .map_err(|why| invalid(format!("stakeholder `{}`: {why}", e.address)))?;
        }
    }
    Ok(())
}

/// The check an alert came from (its details' `check_uuid`).
pub fn alert_check(alert: &AlertRow) -> Option<String> {
    let details: serde_json::Value = serde_json::from_str(&alert.details).ok()?;
    details["check_uuid"].as_str().map(str::to_ascii_lowercase)
}

/// The incident loop: reminders on the cadence, recurrences, auto-declare.
pub struct IncidentLoop {
    pub(crate) incidents: Incidents,
    pub(crate) lease: Arc<dyn Lease>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) rounds: crate::rounds::Rounds,
}

impl IncidentLoop {
    pub async fn run(mut self) {
        if let Err(e) = self.start_cursor().await {
            tracing::error!(error = %e, "cannot start the incident loop's alert cursor");
        }
        loop {
            let now = self.incidents.clock.now();
            self.rounds.start();
            let next = if self.lease.holds(Work::Incidents) {
                match self.round(now).await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::error!(error = %e, "incident round failed");
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
                _ = self.incidents.clock.sleep_until(until) => {}
            }
        }
    }

    async fn start_cursor(&mut self) -> Result<(), EngineError> {
        let store = &self.incidents.store;
        if store.meta(ALERT_CURSOR).await? == 0 {
            // Alerts from before incidents existed are not looked at again.
            let last = store.max_alert_id().await?;
            if last > 0 {
                store.set_meta(ALERT_CURSOR, last).await?;
            }
        }
        Ok(())
    }

    /// One round; returns when the next cadence step falls due.
    pub(crate) async fn round(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        let next = self.cadence(now).await?;
        self.new_alerts(now).await?;
        self.auto_declare_unacked(now).await?;
        Ok(next)
    }

    async fn cadence(&mut self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, EngineError> {
        let store = self.incidents.store.clone();
        let mut next: Option<DateTime<Utc>> = None;
        for was in store.incidents_with_cadence().await? {
            let Some(due) = was.next_update_at.map(Timestamp::to_datetime) else {
                continue;
            };
            let applied = store.oncall(was.project_id).await?;
            let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
            let default = IncidentSettings::default();
            let settings = config.map_or(&default, |c| &c.incidents);
            let Some(step) = cadence_step(due, was.cadence_stage, settings, now) else {
                if let Some(at) = next_cadence_at(due, was.cadence_stage, settings) {
                    next = Some(next.map_or(at, |n: DateTime<Utc>| n.min(at)));
                }
                continue;
            };
            let Some(config) = config else { continue };
            let mut row = was.clone();
            row.cadence_stage = step.stage();
            let compose =
                |tz: Tz| reminder_text(was.id, &was.title, &was.owner, step, due, tz, now);
            let (targets, kind) = match step {
                CadenceStep::Escalate => (escalation_targets(config, &was.service), "escalated"),
                _ => (vec![Target::User(was.owner.clone())], "reminder"),
            };
            let messages = self
                .incidents
                .person_messages(config, &targets, compose, now);
            let mut people: Vec<&str> = messages.iter().map(|m| m.person.as_str()).collect();
            people.dedup();
            let log = NewIncidentLog {
                kind: kind.into(),
                who: "keepwatch".into(),
                text: match step {
                    CadenceStep::RemindBefore => {
                        format!("{} reminded: update due at {}", was.owner, due.to_rfc3339())
                    }
                    CadenceStep::Due => format!("{} reminded: update due now", was.owner),
                    CadenceStep::Escalate => format!(
                        "update overdue by {}: escalated to {}",
                        keepwatch_core::incident::format_duration(now - due),
                        if people.is_empty() {
                            "nobody (no policy or backup reaches anyone)".to_string()
                        } else {
                            people.join(", ")
                        }
                    ),
                },
                due_at: Some(due.into()),
                ..NewIncidentLog::default()
            };
            if store
                .change_incident(&was, &row, &[log], &messages, now.into())
                .await?
            {
                tracing::info!(incident = was.id, step = ?step, to = ?people, "incident update reminder");
                self.incidents.messages_wake.notify_one();
            }
            if let Some(at) = next_cadence_at(due, row.cadence_stage, settings) {
                next = Some(next.map_or(at, |n: DateTime<Utc>| n.min(at)));
            }
        }
        Ok(next)
    }

    /// New alerts: a recurrence on a check of a recent incident, or an alert on a critical
    /// check.
    async fn new_alerts(&mut self, now: DateTime<Utc>) -> Result<(), EngineError> {
        let store = self.incidents.store.clone();
        let cursor = store.meta(ALERT_CURSOR).await?;
        let alerts = store.alerts_after(cursor, 200).await?;
        let Some(last) = alerts.last().map(|a| a.id) else {
            return Ok(());
        };
        for alert in &alerts {
            let Some(uuid) = alert_check(alert) else {
                continue;
            };
            let applied = store.oncall(alert.project_id).await?;
            let Some(config) = applied.as_deref().and_then(|a| a.config.as_ref().ok()) else {
                continue;
            };
            let since = now - TimeDelta::days(i64::from(config.incidents.recurrence_days));
            if let Some(incident) = store
                .incident_of_check_since(alert.project_id, &uuid, since.into())
                .await?
            {
                self.recurrence(config, &incident, alert, now).await?;
                continue;
            }
            let critical = config
                .services
                .get(&alert.service)
                .and_then(|s| s.auto_declare.as_ref())
                .filter(|a| a.critical_checks.contains(&uuid));
            if let Some(rule) = critical
                && alert.status != keepwatch_core::alert::AlertStatus::Resolved
            {
                self.auto_declare(alert, rule.severity, "an alert on a critical check")
                    .await?;
            }
        }
        store.set_meta(ALERT_CURSOR, last).await?;
        Ok(())
    }

    async fn recurrence(
        &mut self,
        config: &OnCall,
        incident: &IncidentRow,
        alert: &AlertRow,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let store = &self.incidents.store;
        let before = store.incident_alert_ids(incident.id).await?;
        if before.contains(&alert.id) {
            return Ok(());
        }
        let resolved = incident.status == IncidentStatus::Resolved;
        let times = before.len() + 1;
        let text = if resolved {
            format!(
                "recurrence: alert #{} \"{}\" on a check of this incident, {} after its all-clear (alert {} of this incident)",
                alert.id,
                alert.summary,
                keepwatch_core::incident::postmortem::human(
                    now - incident.resolved_at.map_or(now, |t| t.to_datetime())
                ),
                times
            )
        } else {
            format!(
                "alert #{} \"{}\" attached (alert {} of this incident)",
                alert.id, alert.summary, times
            )
        };
        let log = NewIncidentLog {
            kind: if resolved {
                "recurrence"
            } else {
                "alert_attached"
            }
            .into(),
            who: "keepwatch".into(),
            text: text.clone(),
            ..NewIncidentLog::default()
        };
        let subject = if resolved {
            format!("Incident #{} may be back: {}", incident.id, alert.summary)
        } else {
            format!(
                "Incident #{}: another alert, {}",
                incident.id, alert.summary
            )
        };
        let body = format!(
            "Incident #{} \"{}\": {text}.\n{}",
            incident.id,
            incident.title,
            if resolved {
                format!(
                    "Reopen it with: keepwatch incident reopen {} -m \"…\"\n",
                    incident.id
                )
            } else {
                String::new()
            }
        );
        let messages = self.incidents.person_messages(
            config,
            &[Target::User(incident.owner.clone())],
            |_| (subject.clone(), body.clone()),
            now,
        );
        let checks: Vec<String> = alert_check(alert).into_iter().collect();
        store
            .attach_to_incident(
                incident.id,
                &[alert.id],
                &checks,
                Some(&log),
                &messages,
                now.into(),
            )
            .await?;
        self.incidents.messages_wake.notify_one();
        tracing::info!(
            incident = incident.id,
            alert = alert.id,
            resolved,
            "alert attached to incident"
        );
        Ok(())
    }

    async fn auto_declare(
        &mut self,
        alert: &AlertRow,
        severity: Severity,
        why: &str,
    ) -> Result<(), EngineError> {
        if !self
            .incidents
            .store
            .incidents_of_alert(alert.id)
            .await?
            .is_empty()
        {
            return Ok(());
        }
        let declared = self
            .incidents
            .declare(Declare {
                project_id: alert.project_id,
                severity: Some(severity),
                alerts: vec![alert.id],
                message: Some(format!("declared automatically ({why}): {}", alert.summary)),
                who: "keepwatch".into(),
                ..Declare::default()
            })
            .await;
        match declared {
            Ok(row) => tracing::info!(
                incident = row.id,
                alert = alert.id,
                why,
                "incident declared automatically"
            ),
            Err(e) => {
                tracing::warn!(alert = alert.id, error = %e, "cannot declare an incident automatically")
            }
        }
        Ok(())
    }

    async fn auto_declare_unacked(&mut self, now: DateTime<Utc>) -> Result<(), EngineError> {
        let store = self.incidents.store.clone();
        for alert in store.unacked_alerts_before(now.into()).await? {
            let applied = store.oncall(alert.project_id).await?;
            let Some(config) = applied.as_deref().and_then(|a| a.config.as_ref().ok()) else {
                continue;
            };
            let Some(rule) = config
                .services
                .get(&alert.service)
                .and_then(|s| s.auto_declare.clone())
            else {
                continue;
            };
            let Some(after) = rule.unacked_after else {
                continue;
            };
            if alert.triggered_at.to_datetime() + after <= now {
                let why = format!(
                    "unacknowledged for {}",
                    keepwatch_core::incident::format_duration(after)
                );
                self.auto_declare(&alert, rule.severity, &why).await?;
            }
        }
        Ok(())
    }
}

/// A page's text without its signed acknowledge and resolve links: they act on the alert, and
/// an export is read by more people (and with read-only keys).
fn without_links(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("Acknowledge: ") && !line.starts_with("Resolve: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How much of the end of a finish ping's body the export reads (it shows a few lines).
const TAIL_BYTES: usize = 4096;

/// Reads everything about an incident and puts its timeline together.
async fn gather_export(
    store: &Store,
    row: &IncidentRow,
    now: DateTime<Utc>,
    last_seqs: &std::collections::HashMap<i64, i64>,
) -> Result<Export, EngineError> {
    let alert_ids = store.incident_alert_ids(row.id).await?;
    let alerts = store.alerts_by_id(&alert_ids).await?;
    let first = alerts
        .iter()
        .map(|a| a.triggered_at.to_datetime())
        .chain([row.declared_at.to_datetime()])
        .min()
        .unwrap_or(now);
    let from = first - TimeDelta::hours(12);
    let to = row.resolved_at.map_or(now, Timestamp::to_datetime) + TimeDelta::hours(1);
    let mut entries = Vec::new();
    let mut check_names = Vec::new();
    for uuid in store.incident_check_uuids(row.id).await? {
        let Some(check) = store.check_by_uuid(&uuid).await? else {
            check_names.push(uuid);
            continue;
        };
        let name = if check.name.is_empty() {
            check.uuid.clone()
        } else {
            check.name.clone()
        };
        check_names.push(name.clone());
        let head = last_seqs.get(&check.id).copied().or(check.state.last_seq);
        let pings: Vec<_> = store
            .list_pings(check.id, head, 1_000_000)
            .await?
            .into_iter()
            .rev()
            .filter(|p| (from..=to).contains(&p.at.to_datetime()))
            .collect();
        // Only finish pings show their output: read the end of their bodies in one go.
        let finishes: Vec<i64> = pings
            .iter()
            .filter(|p| p.kind != "start")
            .map(|p| p.seq)
            .collect();
        let mut tails = store.ping_body_tails(&finishes, TAIL_BYTES).await?;
        let events = store
            .check_events_between(check.id, from.into(), to.into())
            .await?;
        let hung: Vec<HungRun> = events
            .iter()
            .filter(|(_, kind, _)| kind == "hung")
            .filter_map(|(at, _, payload)| {
                let event: serde_json::Value = serde_json::from_str(payload).ok()?;
                let run = &event["run"];
                Some(HungRun {
                    at: at.to_datetime(),
                    started_at: run["started_at"].as_str()?.parse().ok()?,
                    rid: run["rid"].as_str().map(str::to_string),
                })
            })
            .collect();
        let run_pings: Vec<RunPing> = pings
            .into_iter()
            .map(|p| {
                let (body, cut) = match tails.remove(&p.seq) {
                    Some((body, cut)) => (Some(body), cut),
                    None => (None, p.body_truncated),
                };
                RunPing {
                    at: p.at.to_datetime(),
                    kind: p.kind,
                    rid: p.rid,
                    host: p.host,
                    pid: p.pid,
                    remote_addr: p.remote_addr,
                    volume: p.volume,
                    body,
                    body_cut: cut,
                }
            })
            .collect();
        entries.extend(runs::timeline(&name, &run_pings, &hung, to.min(now)));
        for (at, kind, payload) in events {
            let mut details: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
            if let Some(map) = details.as_object_mut() {
                for key in ["check_uuid", "check_name", "at", "kind"] {
                    map.remove(key);
                }
            }
            let failure = matches!(
                kind.as_str(),
                "down" | "failed" | "fail" | "hung" | "overlap" | "anomaly"
            );
            entries.push(Entry {
                at: at.to_datetime(),
                kind: "check".into(),
                who: name.clone(),
                text: format!("{name} {kind}: {details}"),
                marker: failure.then_some(Marker::Failure),
                ..Default::default()
            });
        }
    }
    for alert in &alerts {
        entries.push(Entry {
            at: alert.triggered_at.to_datetime(),
            kind: "alert".into(),
            who: alert.service.clone(),
            text: format!(
                "#{} opened ({} urgency): {}",
                alert.id, alert.urgency, alert.summary
            ),
            marker: Some(Marker::Alert),
            ..Default::default()
        });
        for log in store.alert_log(alert.id).await? {
            let marker = match log.kind.as_str() {
                "notified" => Some(Marker::Page),
                "acknowledged" => Some(Marker::Acknowledged),
                _ => None,
            };
            entries.push(Entry {
                at: log.at.to_datetime(),
                kind: "alert".into(),
                who: log.who,
                text: format!("#{} {}: {}", alert.id, log.kind, log.detail)
                    .trim_end_matches(": ")
                    .to_string(),
                marker,
                ..Default::default()
            });
        }
        for m in store.alert_messages(alert.id).await? {
            let at = m.sent_at.unwrap_or(m.created_at).to_datetime();
            entries.push(Entry {
                at,
                kind: "message".into(),
                who: format!(
                    "{} via {}",
                    m.person.unwrap_or_default(),
                    m.contact.unwrap_or_default()
                ),
                text: format!(
                    "alert #{} message {} after {} attempt(s){}{}",
                    alert.id,
                    m.state,
                    m.attempts,
                    m.last_error
                        .map_or(String::new(), |e| format!(" (last error: {e})")),
                    m.text
                        .map_or(String::new(), |t| format!("\n{}", without_links(&t))),
                ),
                marker: None,
                ..Default::default()
            });
        }
    }
    for log in store.incident_log(row.id).await? {
        let marker = match log.kind.as_str() {
            "declared" | "update" | "no_news" => Some(Marker::Update {
                on_time: log.on_time.unwrap_or(true),
            }),
            "all_clear" => Some(Marker::AllClear),
            _ => None,
        };
        let status = log
            .status
            .as_deref()
            .map_or(String::new(), |s| format!("[{s}] "));
        entries.push(Entry {
            at: log.at.to_datetime(),
            kind: match log.kind.as_str() {
                "update" | "no_news" | "all_clear" | "declared" | "reopened" => "update".into(),
                "reminder" | "escalated" => "reminder".into(),
                "note" => "note".into(),
                _ => "incident".into(),
            },
            who: log.who,
            text: format!(
                "{}{status}{}{}",
                match log.kind.as_str() {
                    "update" | "note" => String::new(),
                    other => format!("{}: ", other.replace('_', " ")),
                },
                log.text,
                match log.on_time {
                    Some(false) => " (late)",
                    _ => "",
                }
            ),
            marker,
            ..Default::default()
        });
    }
    for m in store.incident_messages(row.id).await? {
        let at = m.sent_at.unwrap_or(m.created_at).to_datetime();
        entries.push(Entry {
            at,
            kind: "message".into(),
            who: format!(
                "{} via {} ({})",
                m.person.unwrap_or_default(),
                m.contact.unwrap_or_default(),
                m.address.unwrap_or_default()
            ),
            text: format!(
                "{} {} after {} attempt(s){}: {}",
                m.kind.replace('_', " "),
                m.state,
                m.attempts,
                m.last_error
                    .map_or(String::new(), |e| format!(" (last error: {e})")),
                m.note.unwrap_or_default(),
            ),
            marker: None,
            ..Default::default()
        });
    }
    for (at, by) in store
        .oncall_applies_between(row.project_id, from.into(), to.into())
        .await?
    {
        entries.push(Entry {
            at: at.to_datetime(),
            kind: "config".into(),
            who: by,
            text: "on-call configuration applied".into(),
            marker: None,
            ..Default::default()
        });
    }
    let header = Header {
        id: row.id,
        title: row.title.clone(),
        severity: row.severity.label(),
        status: row.status.as_str().into(),
        owner: row.owner.clone(),
        impact: row.impact.clone(),
        service: row.service.clone(),
        declared_at: row.declared_at.to_datetime(),
        resolved_at: row.resolved_at.map(Timestamp::to_datetime),
        checks: check_names,
        alerts: alert_ids,
    };
    let postmortem: Postmortem = serde_json::from_str(&row.postmortem).unwrap_or_default();
    Ok(Export::new(header, entries, postmortem))
}
