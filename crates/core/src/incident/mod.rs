//! Incidents: what an incident is (severity, status), who hears of it (stakeholder groups in
//! the on-call file), when the next status update is due and what its owner is told when it
//! is not posted ([`cadence_step`]), and what an update says to each recipient, in their time
//! zone ([`update_text`]).
//!
//! - [`postmortem`]: the timeline and figures of an incident, and its Markdown, HTML and JSON
//!   renderings.
//!
//! Everything here takes the configuration and `now` as arguments and does no I/O; the
//! engine's incident loop and the API call it.

pub mod postmortem;
pub mod runs;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::alert::paging::{Target, Urgency};
use crate::alert::routing::update_contact;
use crate::oncall::config::OnCall;

crate::text_enum::text_enum! {
    /// How bad an incident is; SEV1 is the worst. Its default update interval comes from
    /// the on-call file's `[incidents]` table.
    pub enum Severity {
        Sev1 = "sev1",
        Sev2 = "sev2",
        Sev3 = "sev3",
        Sev4 = "sev4",
    }
}

impl Severity {
    /// `SEV1`, `sev1` or `1`.
    pub fn parse_loose(text: &str) -> Option<Severity> {
        let text = text.trim().to_ascii_lowercase();
        let digit = text.strip_prefix("sev").unwrap_or(&text);
        Severity::parse(&format!("sev{digit}"))
    }

    /// `SEV1`, as people write it.
    pub fn label(self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    fn index(self) -> usize {
        match self {
            Severity::Sev1 => 0,
            Severity::Sev2 => 1,
            Severity::Sev3 => 2,
            Severity::Sev4 => 3,
        }
    }
}

crate::text_enum::text_enum! {
    /// Where an incident is; `resolved` is the all-clear (it can be reopened).
    pub enum IncidentStatus {
        Investigating = "investigating",
        Identified = "identified",
        Monitoring = "monitoring",
        Resolved = "resolved",
    }
}

impl IncidentStatus {
    /// `Investigating`, for the first word of a sentence or a heading.
    pub fn label(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "Investigating",
            IncidentStatus::Identified => "Identified",
            IncidentStatus::Monitoring => "Monitoring",
            IncidentStatus::Resolved => "Resolved",
        }
    }
}

/// One member of a stakeholder group: a person of the file (reached through their first
/// notification rule's contact), or an address (email, Slack, Teams, Discord, webhook).
#[derive(Debug, Clone, PartialEq)]
pub enum StakeholderAddress {
    Person(String),
    /// The contact kind's name (`email`, `slack`, `teams`, `discord`, `webhook`) and address.
    Contact {
        kind: String,
        address: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stakeholder {
    pub member: StakeholderAddress,
    /// Times in updates are written in this zone (a person's own zone otherwise, else UTC).
    pub tz: Option<Tz>,
}

/// `[[stakeholders]]`: a named group of people who receive an incident's updates and are
/// never paged.
#[derive(Debug, Clone, PartialEq)]
pub struct StakeholderGroup {
    pub name: String,
    pub members: Vec<Stakeholder>,
}

/// The default update interval of each severity.
pub const DEFAULT_INTERVALS_MINUTES: [Option<i64>; 4] = [Some(30), Some(60), Some(240), None];
/// How long before an update is due its owner is reminded, by default.
pub const DEFAULT_REMIND_BEFORE_MINUTES: i64 = 10;
/// How long an update may be overdue before the reminder escalates, by default.
pub const DEFAULT_ESCALATE_AFTER_MINUTES: i64 = 15;
/// A new alert on a check of an incident resolved this many days ago at most reopens it.
pub const DEFAULT_RECURRENCE_DAYS: u32 = 7;

/// `[incidents]`: the update cadence and its reminders.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSettings {
    /// By severity, SEV1 first; `None`: no cadence.
    pub intervals: [Option<TimeDelta>; 4],
    pub remind_before: TimeDelta,
    pub escalate_after: TimeDelta,
    pub recurrence_days: u32,
    /// Who an overdue update escalates to when the incident's service names no policy.
    pub backup: Option<Target>,
}

impl Default for IncidentSettings {
    fn default() -> IncidentSettings {
        IncidentSettings {
            intervals: DEFAULT_INTERVALS_MINUTES.map(|m| m.map(TimeDelta::minutes)),
            remind_before: TimeDelta::minutes(DEFAULT_REMIND_BEFORE_MINUTES),
            escalate_after: TimeDelta::minutes(DEFAULT_ESCALATE_AFTER_MINUTES),
            recurrence_days: DEFAULT_RECURRENCE_DAYS,
            backup: None,
        }
    }
}

impl IncidentSettings {
    pub fn interval(&self, severity: Severity) -> Option<TimeDelta> {
        self.intervals[severity.index()]
    }
}

/// A service's rule for declaring incidents by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoDeclare {
    /// A high-urgency alert left unacknowledged this long becomes an incident.
    pub unacked_after: Option<TimeDelta>,
    /// Any alert on one of these checks (UUIDs, lowercase) becomes an incident at once.
    pub critical_checks: Vec<String>,
    pub severity: Severity,
}

/// A duration in the file: a number with `m`, `h` or `d` (`30m`, `1h`), at least a minute and
/// at most `max_days`; `none` or `0` is `None` when `allow_none`.
pub fn parse_duration(text: &str, max_days: i64) -> Option<TimeDelta> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
    let minutes = match unit {
        'm' => n,
        'h' => n.checked_mul(60)?,
        'd' => n.checked_mul(24 * 60)?,
        _ => return None,
    };
    (1..=max_days * 24 * 60)
        .contains(&minutes)
        .then(|| TimeDelta::minutes(minutes))
}

/// `90m` → `1h30m`: a duration as the file writes it.
pub fn format_duration(d: TimeDelta) -> String {
    let minutes = d.num_minutes();
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

/// Someone an update goes to: how they are reached and in which zone they read times.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    /// `alice`, or `execs` (the group) for an address member, or `extra` for one named on the
    /// incident itself.
    pub who: String,
    pub contact: String,
    pub address: String,
    pub tz: Tz,
}

/// An extra stakeholder named on one incident: an address and perhaps a zone.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExtraStakeholder {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
}

/// The kind name an address is sent as (`email`, `slack`, `webhook`, …), or why it cannot be.
pub fn address_kind(address: &str) -> Result<String, String> {
    use crate::oncall::ContactKind;
    let kind = ContactKind::check("", address)?;
    Ok(match kind {
        ContactKind::Email => "email",
        ContactKind::Slack => "slack",
        ContactKind::Ntfy => "ntfy",
        ContactKind::Discord => "discord",
        ContactKind::Teams => "teams",
        ContactKind::Telegram => "telegram",
        ContactKind::Pushover => "pushover",
        ContactKind::Webhook => "webhook",
    }
    .to_string())
}

/// Where a person in the file hears an incident's updates (stakeholders are never paged):
///
/// 1. every contact their low-urgency notification rules name, each once and all at once
///    (a rule's delay is for paging, and an update is not repeated);
/// 2. without a low-urgency rule, every contact of theirs that is verified (`verified`:
///    `(person, contact, verified address)`; a contact whose address changed since is not);
/// 3. with none verified either, one contact so they still hear: the first of their
///    high-urgency rules, else their first contact by name.
///
/// `(contact, address)` pairs in that order; empty when the person has no contact at all.
pub fn person_contacts(
    config: &OnCall,
    person: &str,
    verified: &[(String, String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rules: Vec<_> = config
        .people
        .get(person)
        .map(|p| {
            p.rules
                .iter()
                .filter(|rule| rule.urgency == Urgency::Low)
                .collect()
        })
        .unwrap_or_default();
    rules.sort_by_key(|rule| rule.delay_minutes);
    for rule in rules {
        if let Some(address) = config.contact_address(person, &rule.contact)
            && !out.iter().any(|(c, _)| c == &rule.contact)
        {
            out.push((rule.contact.clone(), address.to_string()));
        }
    }
    if !out.is_empty() {
        return out;
    }
    let mut contacts: Vec<(&String, &String)> = config
        .contacts
        .get(person)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    contacts.sort();
    for (contact, address) in &contacts {
        if verified
            .iter()
            .any(|(p, c, a)| p == person && c == *contact && a == *address)
        {
            out.push((contact.to_string(), address.to_string()));
        }
    }
    if !out.is_empty() {
        return out;
    }
    update_contact(config, person, Urgency::High)
        .or_else(|| {
            contacts
                .first()
                .map(|(c, a)| (c.to_string(), a.to_string()))
        })
        .into_iter()
        .collect()
}

/// Everyone an incident's updates go to: the members of its groups, then its extra
/// stakeholders, each address once (the first mention wins). A person from the file is
/// reached through [`person_contacts`]. People with no contact are left out (the caller can
/// tell from `unreached`).
pub fn recipients(
    config: &OnCall,
    groups: &[String],
    extra: &[ExtraStakeholder],
    verified: &[(String, String, String)],
) -> (Vec<Recipient>, Vec<String>) {
    let mut out: Vec<Recipient> = Vec::new();
    let mut unreached = Vec::new();
    let push = |r: Recipient, out: &mut Vec<Recipient>| {
        if !out.iter().any(|o| o.address == r.address) {
            out.push(r);
        }
    };
    for name in groups {
        let Some(group) = config.stakeholders.iter().find(|g| &g.name == name) else {
            unreached.push(format!("group {name}"));
            continue;
        };
        for member in &group.members {
            match &member.member {
                StakeholderAddress::Person(id) => {
                    let contacts = person_contacts(config, id, verified);
                    if contacts.is_empty() {
                        unreached.push(id.clone());
                    }
                    let tz = member
                        .tz
                        .or_else(|| config.time_zones.get(id).copied())
                        .unwrap_or(Tz::UTC);
                    for (contact, address) in contacts {
                        push(
                            Recipient {
                                who: id.clone(),
                                contact,
                                address,
                                tz,
                            },
                            &mut out,
                        );
                    }
                }
                StakeholderAddress::Contact { kind, address } => push(
                    Recipient {
                        who: group.name.clone(),
                        contact: kind.clone(),
                        address: address.clone(),
                        tz: member.tz.unwrap_or(Tz::UTC),
                    },
                    &mut out,
                ),
            }
        }
    }
    for e in extra {
        let Ok(kind) = address_kind(&e.address) else {
            unreached.push(e.address.clone());
            continue;
        };
        let tz =
            e.tz.as_deref()
                .and_then(|tz| tz.parse::<Tz>().ok())
                .unwrap_or(Tz::UTC);
        push(
            Recipient {
                who: "extra".into(),
                contact: kind,
                address: e.address.clone(),
                tz,
            },
            &mut out,
        );
    }
    (out, unreached)
}

/// What the owner is told about the next update, in the order they fall due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CadenceStep {
    /// `remind_before` ahead of the due time.
    RemindBefore = 1,
    /// At the due time.
    Due = 2,
    /// `escalate_after` past it: escalated through the service's policy or the backup.
    Escalate = 3,
}

impl CadenceStep {
    pub fn stage(self) -> i64 {
        self as i64
    }
}

/// The step due at `now` for an update due at `due`, after the steps up to `stage` (0: none
/// yet) were taken: only the latest reached (a server down for an hour does not send three
/// reminders at once). `None` when nothing new is due.
pub fn cadence_step(
    due: DateTime<Utc>,
    stage: i64,
    settings: &IncidentSettings,
    now: DateTime<Utc>,
) -> Option<CadenceStep> {
    let reached = if now >= due + settings.escalate_after {
        CadenceStep::Escalate
    } else if now >= due {
        CadenceStep::Due
    } else if now >= due - settings.remind_before {
        CadenceStep::RemindBefore
    } else {
        return None;
    };
    (reached.stage() > stage).then_some(reached)
}

/// When the next cadence step falls due after the steps up to `stage`; `None` after the last.
pub fn next_cadence_at(
    due: DateTime<Utc>,
    stage: i64,
    settings: &IncidentSettings,
) -> Option<DateTime<Utc>> {
    match stage {
        s if s < 1 => Some(due - settings.remind_before),
        1 => Some(due),
        2 => Some(due + settings.escalate_after),
        _ => None,
    }
}

/// What kind of update a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    Declared,
    Update,
    NoNews,
    AllClear,
    Reopened,
}

/// An update as it goes out, before it is written for one recipient.
#[derive(Debug, Clone)]
pub struct UpdateView<'a> {
    pub incident_id: i64,
    pub title: &'a str,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub impact: &'a str,
    pub owner: &'a str,
    pub kind: UpdateKind,
    pub message: &'a str,
    pub at: DateTime<Utc>,
    /// The previous update's time (a no-news update says "since" it).
    pub previous_at: Option<DateTime<Utc>>,
    pub next_due: Option<DateTime<Utc>>,
    /// The stakeholder page.
    pub page_url: Option<&'a str>,
}

/// A time as a recipient reads it: `02:00 MST`, with the day when it is not `reference`'s.
pub fn local_time(at: DateTime<Utc>, tz: Tz, reference: DateTime<Utc>) -> String {
    let local = at.with_timezone(&tz);
    if local.date_naive() == reference.with_timezone(&tz).date_naive() {
        local.format("%H:%M %Z").to_string()
    } else {
        local.format("%a %-d %b %H:%M %Z").to_string()
    }
}

/// An update in words for one recipient: its subject and its text, times in `tz`.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use keepwatch_core::incident::*;
/// let at = Utc.with_ymd_and_hms(2026, 12, 5, 9, 0, 0).unwrap();
/// let view = UpdateView {
///     incident_id: 7, title: "Nightly export failing", severity: Severity::Sev2,
///     status: IncidentStatus::Investigating, impact: "", owner: "alice",
///     kind: UpdateKind::NoNews, message: "rerunning the export by hand", at,
///     previous_at: Some(at - chrono::TimeDelta::hours(1)),
///     next_due: Some(at + chrono::TimeDelta::hours(1)), page_url: None,
/// };
/// let (_, text) = update_text(&view, "America/Denver".parse().unwrap());
/// assert!(text.contains("No new information since 01:00 MST. We are still investigating: \
///     rerunning the export by hand. Next update by 03:00 MST."), "{text}");
/// ```
pub fn update_text(view: &UpdateView<'_>, tz: Tz) -> (String, String) {
    let when = |t: DateTime<Utc>| local_time(t, tz, view.at);
    let headline = format!(
        "[{}] {} — {}",
        view.severity.label(),
        view.title,
        match view.kind {
            UpdateKind::AllClear => "All clear",
            UpdateKind::Reopened => "Reopened",
            _ => view.status.label(),
        }
    );
    let mut text = format!(
        "{headline}\nIncident #{} · {}\n\n",
        view.incident_id,
        view.at.with_timezone(&tz).format("%a %-d %b %Y %H:%M %Z")
    );
    let message = view.message.trim().trim_end_matches('.');
    match view.kind {
        UpdateKind::Declared => text.push_str(&format!(
            "An incident was declared. {}: {message}.\n",
            view.status.label()
        )),
        UpdateKind::Update => text.push_str(&format!("{}: {message}.\n", view.status.label())),
        UpdateKind::NoNews => {
            let since = view
                .previous_at
                .map(|t| format!(" since {}", when(t)))
                .unwrap_or_default();
            text.push_str(&format!(
                "No new information{since}. We are still {}: {message}.",
                match view.status {
                    IncidentStatus::Investigating => "investigating",
                    IncidentStatus::Identified => "working on the fix",
                    IncidentStatus::Monitoring => "monitoring",
                    IncidentStatus::Resolved => "following up",
                }
            ));
            match view.next_due {
                Some(next) => text.push_str(&format!(" Next update by {}.\n", when(next))),
                None => text.push('\n'),
            }
        }
        UpdateKind::AllClear => text.push_str(&format!(
            "All clear: {message}.\nThis incident is resolved; there will be no further updates.\n"
        )),
        UpdateKind::Reopened => text.push_str(&format!("The incident was reopened: {message}.\n")),
    }
    if !view.impact.is_empty() {
        text.push_str(&format!("\nImpact: {}\n", view.impact));
    }
    text.push_str(&format!("Owner: {}\n", view.owner));
    if view.kind != UpdateKind::AllClear {
        match view.next_due {
            Some(next) => text.push_str(&format!("Next update by {}.\n", when(next))),
            None => text.push_str("Next update when there is news.\n"),
        }
    }
    if let Some(url) = view.page_url {
        text.push_str(&format!("All updates: {url}\n"));
    }
    (headline, text)
}

/// What the owner (or, escalated, the policy's people) is told about a due update.
pub fn reminder_text(
    incident_id: i64,
    title: &str,
    owner: &str,
    step: CadenceStep,
    due: DateTime<Utc>,
    tz: Tz,
    now: DateTime<Utc>,
) -> (String, String) {
    let when = local_time(due, tz, now);
    let command = format!(
        "keepwatch incident update {incident_id} --status <status> -m \"…\" (or --no-news -m \"<what is being done>\")"
    );
    match step {
        CadenceStep::RemindBefore => (
            format!("Incident #{incident_id}: update due by {when}"),
            format!(
                "Incident #{incident_id} \"{title}\": the next stakeholder update is due by {when}.\nPost it with: {command}\n"
            ),
        ),
        CadenceStep::Due => (
            format!("Incident #{incident_id}: update due now"),
            format!(
                "Incident #{incident_id} \"{title}\": the stakeholder update was due at {when} and has not been posted.\nPost it with: {command}\n"
            ),
        ),
        CadenceStep::Escalate => (
            format!("Incident #{incident_id}: update overdue, escalated"),
            format!(
                "Incident #{incident_id} \"{title}\": the stakeholder update due at {when} is overdue and its owner {owner} has not posted it. You are next in line: post it, or take the incident over with keepwatch incident owner {incident_id} <you>.\nPost it with: {command}\n"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, h, m, 0).unwrap()
    }

    #[test]
    fn the_cadence_reminds_before_at_and_escalates_after_the_due_time() {
        let s = IncidentSettings::default();
        let due = at(3, 0);
        assert_eq!(cadence_step(due, 0, &s, at(2, 49)), None);
        assert_eq!(
            cadence_step(due, 0, &s, at(2, 50)),
            Some(CadenceStep::RemindBefore)
        );
        assert_eq!(cadence_step(due, 1, &s, at(2, 55)), None);
        assert_eq!(cadence_step(due, 1, &s, at(3, 0)), Some(CadenceStep::Due));
        assert_eq!(cadence_step(due, 2, &s, at(3, 14)), None);
        assert_eq!(
            cadence_step(due, 2, &s, at(3, 15)),
            Some(CadenceStep::Escalate)
        );
        assert_eq!(cadence_step(due, 3, &s, at(9, 0)), None);
        // Down for an hour: only the latest step.
        assert_eq!(
            cadence_step(due, 0, &s, at(4, 0)),
            Some(CadenceStep::Escalate)
        );
        assert_eq!(next_cadence_at(due, 0, &s), Some(at(2, 50)));
        assert_eq!(next_cadence_at(due, 2, &s), Some(at(3, 15)));
        assert_eq!(next_cadence_at(due, 3, &s), None);
    }

    #[test]
    fn a_person_stakeholder_hears_through_every_low_urgency_contact_else_verified_ones() {
        let config = OnCall::parse(
            r#"
[[people]]
id = "dana"
contacts = { email = "dana@example.com", slack = "https://hooks.slack.com/services/T/B/d", webhook = "https://d.example/hook" }
rules = [
  { urgency = "low", contact = "slack", after = 30 },
  { urgency = "low", contact = "email", after = 0 },
  { urgency = "low", contact = "email", after = 60 },
  { urgency = "high", contact = "webhook", after = 0 },
]
[[people]]
id = "erin"
tz = "Europe/Paris"
contacts = { email = "erin@example.com", webhook = "https://e.example/hook", ntfy = "https://ntfy.sh/erin" }
rules = [{ urgency = "high", contact = "ntfy", after = 0 }]
[[stakeholders]]
name = "execs"
members = [{ person = "dana" }, { person = "erin" }, { email = "dana@example.com" }]
"#,
        )
        .unwrap();
        let pairs =
            |v: Vec<(String, String)>| v.into_iter().map(|(c, _)| c).collect::<Vec<_>>().join(",");
        // Every low-urgency contact, each once, in the rules' order; never the paging one.
        assert_eq!(pairs(person_contacts(&config, "dana", &[])), "email,slack");
        // No low-urgency rule: every verified contact (a stale verification does not count).
        let verified = vec![
            ("erin".into(), "email".into(), "erin@example.com".into()),
            (
                "erin".into(),
                "webhook".into(),
                "https://old.example/hook".into(),
            ),
            (
                "dana".into(),
                "webhook".into(),
                "https://d.example/hook".into(),
            ),
        ];
        assert_eq!(pairs(person_contacts(&config, "erin", &verified)), "email");
        // Nothing verified: the first high-urgency rule's contact, so they still hear.
        assert_eq!(pairs(person_contacts(&config, "erin", &[])), "ntfy");
        assert!(person_contacts(&config, "zoe", &[]).is_empty());
        let (to, unreached) = recipients(&config, &["execs".into()], &[], &verified);
        let to: Vec<(&str, &str)> = to
            .iter()
            .map(|r| (r.who.as_str(), r.address.as_str()))
            .collect();
        assert_eq!(
            to,
            [
                ("dana", "dana@example.com"),
                ("dana", "https://hooks.slack.com/services/T/B/d"),
                ("erin", "erin@example.com"),
            ],
            "each address once: the group's own dana@ line adds nothing"
        );
        assert!(unreached.is_empty());
    }

    #[test]
    fn severities_parse_as_people_write_them() {
        assert_eq!(Severity::parse_loose("SEV1"), Some(Severity::Sev1));
        assert_eq!(Severity::parse_loose("2"), Some(Severity::Sev2));
        assert_eq!(Severity::parse_loose("sev5"), None);
        assert_eq!(Severity::Sev3.label(), "SEV3");
    }

    #[test]
    fn an_update_reads_in_the_recipients_zone_with_the_next_due_time() {
        let view = UpdateView {
            incident_id: 7,
            title: "Nightly billing export failing",
            severity: Severity::Sev1,
            status: IncidentStatus::Identified,
            impact: "Client events since midnight are not processed.",
            owner: "alice",
            kind: UpdateKind::Update,
            message: "A stray process holds the lock; we are stopping it",
            at: at(9, 0),
            previous_at: None,
            next_due: Some(at(9, 30)),
            page_url: Some("https://kw.example/s/abc"),
        };
        let (subject, text) = update_text(&view, "Europe/Paris".parse().unwrap());
        assert_eq!(
            subject,
            "[SEV1] Nightly billing export failing — Identified"
        );
        assert_eq!(
            text,
            "[SEV1] Nightly billing export failing — Identified\n\
             Incident #7 · Sat 5 Dec 2026 10:00 CET\n\n\
             Identified: A stray process holds the lock; we are stopping it.\n\n\
             Impact: Client events since midnight are not processed.\n\
             Owner: alice\n\
             Next update by 10:30 CET.\n\
             All updates: https://kw.example/s/abc\n"
        );
        let clear = UpdateView {
            kind: UpdateKind::AllClear,
            status: IncidentStatus::Resolved,
            message: "the export ran and caught up",
            next_due: None,
            ..view
        };
        let (_, text) = update_text(&clear, Tz::UTC);
        assert!(
            text.contains("All clear: the export ran and caught up.\nThis incident is resolved")
        );
        assert!(!text.contains("Next update"));
    }

    #[test]
    fn durations_in_the_file() {
        assert_eq!(parse_duration("30m", 1), Some(TimeDelta::minutes(30)));
        assert_eq!(parse_duration("4h", 1), Some(TimeDelta::hours(4)));
        assert_eq!(parse_duration("2d", 1), None);
        assert_eq!(parse_duration("0m", 1), None);
        assert_eq!(format_duration(TimeDelta::minutes(90)), "1h30m");
    }
}
