//! The on-call configuration file: people with their notification rules, schedules,
//! escalation policies and services, in one TOML file kept in git. `keepwatch drill`,
//! `keepwatch oncall` and `keepwatch apply` read it; errors name the line (syntax, types,
//! unknown fields) or the path of the field (`schedules[0] (primary).layers[1].shift`).

use std::collections::HashMap;

use crate::alert::paging::{
    EscalationPolicy, EscalationStep, NotificationRule, Person, Target, Urgency, UrgencyRule,
};
use crate::incident::{
    AutoDeclare, IncidentSettings, Severity, Stakeholder, StakeholderAddress, StakeholderGroup,
    parse_duration,
};
use crate::oncall::checkin::CheckinRule;
use crate::oncall::contact::ContactKind;
use crate::oncall::rotation::{
    Layer, OnCallError, OnCallSchedule, Override, Restriction, RestrictionMode, ShiftUnit,
    WeeklyWindow,
};
use crate::schedule::parse_tz;
use chrono::{DateTime, NaiveDateTime, NaiveTime, TimeDelta, Utc, Weekday};
use serde::Deserialize;

/// Why an on-call file was refused: the line, or the path of the field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl From<toml::de::Error> for ConfigError {
    fn from(error: toml::de::Error) -> ConfigError {
        ConfigError(error.to_string())
    }
}

impl From<OnCallError> for ConfigError {
    fn from(error: OnCallError) -> ConfigError {
        ConfigError(error.to_string())
    }
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Returns a [`ConfigError`] with the formatted message.
macro_rules! bail {
    ($($message:tt)*) => {
        return Err(ConfigError(format!($($message)*)))
    };
}

/// Minutes a low-urgency alert waits for an acknowledgment before it becomes high, unless a
/// service says otherwise.
pub const DEFAULT_RAISE_AFTER_MINUTES: u32 = 30;
/// Bounds that keep a policy's timeline finite and its arithmetic in range: values outside
/// are refused with the range, never cut silently.
pub const MAX_REPEAT: u32 = 20;
/// Minutes, for a step's `delay`, a rule's `after` and a service's `raise_after`: 7 days.
pub const MAX_STEP_DELAY: u32 = 7 * 24 * 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    people: Vec<PersonSpec>,
    #[serde(default)]
    schedules: Vec<ScheduleSpec>,
    #[serde(default)]
    policies: Vec<PolicySpec>,
    #[serde(default)]
    services: Vec<ServiceSpec>,
    #[serde(default)]
    maintenance: Vec<MaintenanceSpec>,
    #[serde(default)]
    checks: Vec<DeclaredCheck>,
    #[serde(default)]
    accepted: Vec<AcceptedSpec>,
    #[serde(default)]
    stakeholders: Vec<GroupSpec>,
    incidents: Option<IncidentsSpec>,
}

/// `[[accepted]]`: an audit finding accepted on purpose, with a reason, until a date.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptedSpec {
    id: String,
    #[serde(default)]
    objects: Vec<String>,
    reason: String,
    until: String,
}

/// `[[stakeholders]]`: a named group who receive incident updates.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSpec {
    name: String,
    #[serde(default)]
    members: Vec<MemberSpec>,
}

/// One member: exactly one of `person` (an id of the file) or an address kind, and perhaps a
/// time zone for the times in their updates.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberSpec {
    person: Option<String>,
    email: Option<String>,
    slack: Option<String>,
    teams: Option<String>,
    discord: Option<String>,
    webhook: Option<String>,
    tz: Option<String>,
}

/// `[incidents]`: update intervals per severity and the reminders of the cadence.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentsSpec {
    /// `{ sev1 = "30m", sev2 = "1h", sev3 = "4h", sev4 = "none" }`
    #[serde(default)]
    update_interval: HashMap<String, String>,
    remind_before: Option<String>,
    escalate_after: Option<String>,
    recurrence_days: Option<u32>,
    /// `user:<id>` or `schedule:<name>`: who an overdue update escalates to when the
    /// incident's service has no policy (a service's `incident_backup` comes first).
    backup: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoDeclareSpec {
    /// A high-urgency alert unacknowledged this long (`15m`) becomes an incident.
    unacked_after: Option<String>,
    /// Check UUIDs: any alert on one becomes an incident at once.
    #[serde(default)]
    critical_checks: Vec<String>,
    /// The severity of incidents declared so (default SEV2).
    severity: Option<String>,
}

/// A check declared in the file, by its slug, with the fields of the Management API v3 of the
/// same names (the server creates or updates it as a v3 `POST` with `unique: ["slug"]` would).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredCheck {
    pub slug: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// keepwatch: a low-urgency `late` notice to the check's channels when it enters its
    /// grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_late: Option<bool>,
    /// keepwatch: the slugs of the checks this one depends on (declared in the file or in the
    /// project): while one is down, this check's alerts are held back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceSpec {
    service: Option<String>,
    check: Option<String>,
    start: String,
    end: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonSpec {
    id: String,
    /// The person's IANA time zone: `keepwatch drill` shows each page at their local time.
    tz: Option<String>,
    /// Spanned, so an undeliverable address is reported with its line.
    #[serde(default)]
    contacts: HashMap<String, toml::Spanned<String>>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    urgency: Urgency,
    contact: String,
    /// Minutes after being paged.
    #[serde(default)]
    after: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleSpec {
    name: String,
    tz: String,
    #[serde(default)]
    layers: Vec<LayerSpec>,
    #[serde(default)]
    overrides: Vec<OverrideSpec>,
    /// Ask each person to confirm reachability when their shift starts.
    checkin: Option<CheckinSpec>,
}

/// `checkin = { within = "15m", fallback = "carol" }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckinSpec {
    /// How long the person has to acknowledge (`15m`, `1h`; up to `1d`).
    within: String,
    /// A person told of a missed check-in, besides the person on call before.
    fallback: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideSpec {
    user: String,
    replaces: Option<String>,
    /// RFC 3339 times, `2026-11-28T00:00:00-07:00`.
    start: String,
    end: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerSpec {
    name: String,
    participants: Vec<String>,
    /// `12h`, `1d`, `2w`.
    shift: String,
    /// The first handoff in the schedule's local time, `2026-11-02T09:00`.
    start: String,
    #[serde(default)]
    within: Vec<WindowSpec>,
    #[serde(default)]
    outside: Vec<WindowSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowSpec {
    days: Vec<String>,
    /// `09:00`
    start: String,
    end: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    name: String,
    steps: Vec<StepSpec>,
    #[serde(default)]
    repeat: u32,
    /// `user:<id>` or `schedule:<name>`.
    last_resort: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    targets: Vec<String>,
    /// Minutes to wait for an acknowledgment before the next step.
    delay: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    name: String,
    policy: String,
    /// `high`, `low` or `support-hours`.
    #[serde(default = "high")]
    urgency: String,
    support_hours: Option<SupportHoursSpec>,
    /// Minutes before an unacknowledged low-urgency alert becomes high; 0 turns it off.
    #[serde(default = "default_raise_after")]
    raise_after: u32,
    /// UUIDs of the checks whose alerts go to this service (over the check's own `service`).
    #[serde(default)]
    checks: Vec<String>,
    /// Whether a check coming back up resolves its alert (else a person resolves it).
    #[serde(default = "yes")]
    resolve_on_recovery: bool,
    /// Whether a hung run that finishes late resolves its alert too (by default a hung alert
    /// stays open until a person acknowledges or resolves it).
    #[serde(default)]
    resolve_hung_on_recovery: bool,
    /// Re-notify an open alert at every n-th missed run of its check while it stays down;
    /// 0: never. Unset: every missed run, while the alert is at high urgency.
    renotify_every: Option<u32>,
    /// Remind whoever is on the first step of an alert still open after this long (`90m`,
    /// `12h`, `2d`), and again after each further stretch of it.
    remind_after: Option<String>,
    /// Stakeholder groups every incident of this service tells by default.
    #[serde(default)]
    stakeholders: Vec<String>,
    /// `user:<id>` or `schedule:<name>`: an overdue incident update escalates here instead of
    /// through the policy.
    incident_backup: Option<String>,
    auto_declare: Option<AutoDeclareSpec>,
}

fn yes() -> bool {
    true
}

fn high() -> String {
    "high".into()
}

fn default_raise_after() -> u32 {
    DEFAULT_RAISE_AFTER_MINUTES
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SupportHoursSpec {
    tz: String,
    windows: Vec<WindowSpec>,
    #[serde(default = "high_urgency")]
    inside: Urgency,
    #[serde(default = "low_urgency")]
    outside: Urgency,
}

fn high_urgency() -> Urgency {
    Urgency::High
}

fn low_urgency() -> Urgency {
    Urgency::Low
}

#[derive(Debug, PartialEq)]
pub struct Service {
    pub name: String,
    pub policy: String,
    pub urgency: UrgencyRule,
    pub raise_after: Option<TimeDelta>,
    /// The check UUIDs the file binds to this service, lowercase.
    pub checks: Vec<String>,
    pub resolve_on_recovery: bool,
    /// Whether recovery resolves a hung alert too (`resolve_on_recovery` must also be on).
    pub resolve_hung_on_recovery: bool,
    /// When an open alert is re-notified as its check misses runs.
    pub renotify: Renotify,
    /// How long an alert stays open before its first-step people are reminded (then again
    /// each time as long again passes).
    pub remind_after: Option<TimeDelta>,
    /// Stakeholder groups an incident of this service tells by default.
    pub stakeholders: Vec<String>,
    /// Where an overdue incident update escalates, instead of the policy's first step.
    pub incident_backup: Option<Target>,
    pub auto_declare: Option<AutoDeclare>,
}

/// When an open alert of a check that stays down is re-notified, run after missed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renotify {
    /// The default: every missed run, while the alert is at high urgency.
    HighUrgency,
    /// Every n-th missed run (n ≥ 1), at any urgency.
    Every(u32),
    Never,
}

/// The longest `remind_after`: 30 days.
const MAX_REMIND_AFTER_MINUTES: i64 = 30 * 24 * 60;

/// A `remind_after` value: a number with `m`, `h` or `d`, at least a minute.
fn reminder_interval(text: &str) -> Option<TimeDelta> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
    let minutes = match unit {
        'm' => n,
        'h' => n.checked_mul(60)?,
        'd' => n.checked_mul(24 * 60)?,
        _ => return None,
    };
    (1..=MAX_REMIND_AFTER_MINUTES)
        .contains(&minutes)
        .then(|| TimeDelta::minutes(minutes))
}

/// A maintenance window: pages for alerts of the service (or of the check, by UUID) that fall
/// due in `[start, end)` are not sent; the alerts are still recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    pub service: Option<String>,
    pub check: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// An audit finding accepted on purpose: findings of rule `id` on these `objects` (all the
/// rule's findings when empty) are not reported until `until`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Accepted {
    pub id: String,
    pub objects: Vec<String>,
    pub reason: String,
    pub until: DateTime<Utc>,
}

/// A checked on-call configuration.
#[derive(Debug, PartialEq)]
pub struct OnCall {
    pub people: HashMap<String, Person>,
    pub contacts: HashMap<String, HashMap<String, String>>,
    pub schedules: HashMap<String, OnCallSchedule>,
    pub policies: HashMap<String, EscalationPolicy>,
    pub services: HashMap<String, Service>,
    /// Check UUID (lowercase) → the service the file binds it to.
    pub check_services: HashMap<String, String>,
    /// The time zones of the people who gave one.
    pub time_zones: HashMap<String, chrono_tz::Tz>,
    pub maintenance: Vec<Maintenance>,
    /// Checks declared in the file (slugs unique), in file order.
    pub checks: Vec<DeclaredCheck>,
    /// Audit findings accepted on purpose (`[[accepted]]`).
    pub accepted: Vec<Accepted>,
    /// `[[stakeholders]]` groups, in file order.
    pub stakeholders: Vec<StakeholderGroup>,
    /// `[incidents]`, or its defaults.
    pub incidents: IncidentSettings,
    /// Schedule name → its shift check-in rule (`checkin = { … }`).
    pub checkins: HashMap<String, CheckinRule>,
}

fn weekday(day: &str) -> Option<Weekday> {
    day.parse::<Weekday>().ok()
}

fn windows(specs: &[WindowSpec], at: &str) -> Result<Vec<WeeklyWindow>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let days = w
                .days
                .iter()
                .map(|d| {
                    weekday(d).ok_or_else(|| {
                        ConfigError(format!(
                            "{at}.windows[{i}].days: `{d}` is not a day (mon, tue, … sun)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if days.is_empty() {
                bail!("{at}.windows[{i}].days: name at least one day");
            }
            Ok(WeeklyWindow {
                days,
                start: time_of_day(&w.start, &format!("{at}.windows[{i}].start"))?,
                end: time_of_day(&w.end, &format!("{at}.windows[{i}].end"))?,
            })
        })
        .collect()
}

fn time_of_day(text: &str, at: &str) -> Result<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
        .map_err(|_| ConfigError(format!("{at}: `{text}` is not a time of day such as 09:00")))
}

fn local_time(text: &str, at: &str) -> Result<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            ConfigError(format!(
                "{at}: `{text}` is not a local date and time such as 2026-11-02T09:00"
            ))
        })
}

fn instant(text: &str, at: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| {
            ConfigError(format!(
                "{at}: `{text}` is not an RFC 3339 time such as 2026-11-28T00:00:00-07:00"
            ))
        })
}

fn shift(text: &str, at: &str) -> Result<(u32, ShiftUnit)> {
    let unit = match text.chars().last() {
        Some('h') => ShiftUnit::Hours,
        Some('d') => ShiftUnit::Days,
        Some('w') => ShiftUnit::Weeks,
        _ => bail!("{at}.shift: `{text}` is not a shift length such as 12h, 1d or 1w"),
    };
    // At most about a year: longer rotations are a mistake, and would overflow the arithmetic.
    let max = match unit {
        ShiftUnit::Hours => 24 * 366,
        ShiftUnit::Days => 366,
        ShiftUnit::Weeks => 53,
    };
    match text[..text.len() - 1].parse::<u32>() {
        Ok(n) if n > 0 && n <= max => Ok((n, unit)),
        Ok(_) => bail!(
            "{at}.shift: `{text}` is out of range (1h to {}h, 1d to 366d, 1w to 53w)",
            24 * 366
        ),
        _ => bail!("{at}.shift: `{text}` is not a shift length such as 12h, 1d or 1w"),
    }
}

/// The checks a file must pass to be applied, which a file applied by an earlier version
/// (stored, then read back) may fail: it is still read, so an upgrade never leaves a project
/// without its on-call configuration (numbers are then cut to their range, as they were).
struct Checks {
    strict: bool,
}

impl Checks {
    /// A name written into logs, answers and calendar feeds: control characters (a newline
    /// would start a new iCalendar property) are refused.
    fn name(&self, text: &str, at: &str) -> Result<()> {
        if self.strict && text.chars().any(char::is_control) {
            bail!("{at}: {text:?} contains a control character");
        }
        Ok(())
    }

    /// A number of minutes in `0..=max`, or an error with the accepted range.
    fn minutes(&self, value: u32, max: u32, at: &str) -> Result<u32> {
        if value > max {
            if self.strict {
                bail!("{at}: {value} is out of range (0 to {max} minutes)");
            }
            return Ok(max);
        }
        Ok(value)
    }

    /// A contact's address can be delivered to (see [`ContactKind::check`]).
    fn contact(&self, contact: &str, address: &str) -> Result<(), String> {
        if self.strict {
            ContactKind::check(contact, address)?;
        }
        Ok(())
    }
}

/// The line (from 1) of a byte offset of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

fn target(text: &str, at: &str) -> Result<Target> {
    match text.split_once(':') {
        Some(("user", id)) => Ok(Target::User(id.to_string())),
        Some(("schedule", name)) => Ok(Target::Schedule(name.to_string())),
        _ => bail!("{at}: `{text}` is not `user:<id>` or `schedule:<name>`"),
    }
}

impl OnCall {
    /// Whether pages of an alert on `service` (from check `check`, if any) due at `at` are
    /// held back by a maintenance window.
    pub fn in_maintenance(&self, service: &str, check: Option<&str>, at: DateTime<Utc>) -> bool {
        self.maintenance.iter().any(|m| {
            let applies = m.service.as_deref() == Some(service)
                || (m.check.is_some() && m.check.as_deref() == check);
            applies && m.start <= at && at < m.end
        })
    }

    /// What gets a token when the configuration is applied: a calendar feed per schedule and
    /// per person, an integration key per service, as `(kind, name)`, sorted.
    pub fn token_names(&self) -> Vec<(&'static str, &str)> {
        let mut names: Vec<(&'static str, &str)> = self
            .schedules
            .keys()
            .map(|n| ("schedule", n.as_str()))
            .chain(self.people.keys().map(|n| ("person", n.as_str())))
            .chain(self.services.keys().map(|n| ("service", n.as_str())))
            .collect();
        names.sort();
        names
    }

    /// The address of one of a person's contacts (`None` if either is unknown).
    pub fn contact_address(&self, person: &str, contact: &str) -> Option<&str> {
        self.contacts.get(person)?.get(contact).map(String::as_str)
    }

    /// Parses and checks a configuration, as `keepwatch apply` does before storing it.
    pub fn parse(text: &str) -> Result<OnCall> {
        // PostgreSQL cannot store a NUL in text (the file itself is stored, and its names).
        if let Some(line) = text.lines().position(|line| line.contains('\0')) {
            bail!("line {}: the file contains a NUL character", line + 1);
        }
        if let Some(at) = toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|table| toml_nul_path(&toml::Value::Table(table)))
        {
            bail!("{}: contains a NUL character", at.trim_start_matches('.'));
        }
        OnCall::parse_with(text, &Checks { strict: true })
    }

    /// Reads a configuration stored by an apply, perhaps of an earlier version with fewer
    /// checks: contacts, names and ranges are not held against it again.
    pub fn parse_applied(text: &str) -> Result<OnCall> {
        OnCall::parse_with(text, &Checks { strict: false })
    }

    fn parse_with(text: &str, rules: &Checks) -> Result<OnCall> {
        let file: File = toml::from_str(text)?;
        let mut people = HashMap::new();
        let mut contacts = HashMap::new();
        let mut time_zones = HashMap::new();
        for (i, p) in file.people.into_iter().enumerate() {
            rules.name(&p.id, &format!("people[{i}].id"))?;
            for (contact, address) in &p.contacts {
                let at = format!("people[{i}] ({}).contacts.{contact}", p.id);
                rules.name(contact, &at)?;
                rules.contact(contact, address.get_ref()).map_err(|e| {
                    ConfigError(format!(
                        "{at} (line {}): {e}",
                        line_of(text, address.span().start)
                    ))
                })?;
            }
            if let Some(tz) = &p.tz {
                let tz = parse_tz(tz)
                    .map_err(|e| ConfigError(format!("people[{i}] ({}).tz: {e}", p.id)))?;
                time_zones.insert(p.id.clone(), tz);
            }
            for (j, rule) in p.rules.iter().enumerate() {
                if !p.contacts.contains_key(&rule.contact) {
                    bail!(
                        "people[{i}] ({}).rules[{j}].contact: `{}` is not one of this person's contacts",
                        p.id,
                        rule.contact
                    );
                }
            }
            let rules = p
                .rules
                .into_iter()
                .enumerate()
                .map(|(j, r)| {
                    Ok(NotificationRule {
                        urgency: r.urgency,
                        contact: r.contact,
                        delay_minutes: rules.minutes(
                            r.after,
                            MAX_STEP_DELAY,
                            &format!("people[{i}] ({}).rules[{j}].after", p.id),
                        )?,
                    })
                })
                .collect::<Result<_>>()?;
            let addresses = p
                .contacts
                .into_iter()
                .map(|(contact, address)| (contact, address.into_inner()))
                .collect();
            contacts.insert(p.id.clone(), addresses);
            if people
                .insert(
                    p.id.clone(),
                    Person {
                        id: p.id.clone(),
                        rules,
                    },
                )
                .is_some()
            {
                bail!("people[{i}].id: `{}` appears twice", p.id);
            }
        }
        let mut schedules = HashMap::new();
        let mut checkins = HashMap::new();
        for (i, s) in file.schedules.into_iter().enumerate() {
            rules.name(&s.name, &format!("schedules[{i}].name"))?;
            let at = format!("schedules[{i}] ({})", s.name);
            let tz = parse_tz(&s.tz).map_err(|e| ConfigError(format!("{at}.tz: {e}")))?;
            let mut layers = Vec::new();
            for (j, l) in s.layers.into_iter().enumerate() {
                let at = format!("{at}.layers[{j}]");
                rules.name(&l.name, &format!("{at}.name"))?;
                let (shift_length, shift_unit) = shift(&l.shift, &at)?;
                let restriction = match (l.within.is_empty(), l.outside.is_empty()) {
                    (true, true) => None,
                    (false, true) => Some(Restriction {
                        mode: RestrictionMode::Within,
                        windows: windows(&l.within, &format!("{at}.within"))?,
                    }),
                    (true, false) => Some(Restriction {
                        mode: RestrictionMode::Outside,
                        windows: windows(&l.outside, &format!("{at}.outside"))?,
                    }),
                    (false, false) => bail!("{at}: give `within` or `outside`, not both"),
                };
                layers.push(Layer {
                    name: l.name,
                    participants: l.participants,
                    shift_length,
                    shift_unit,
                    start: local_time(&l.start, &format!("{at}.start"))?,
                    restriction,
                });
            }
            let schedule = OnCallSchedule {
                name: s.name.clone(),
                tz,
                layers,
                overrides: s
                    .overrides
                    .iter()
                    .enumerate()
                    .map(|(j, o)| {
                        let at = format!("{at}.overrides[{j}]");
                        Ok(Override {
                            user: o.user.clone(),
                            replaces: o.replaces.clone(),
                            start: instant(&o.start, &format!("{at}.start"))?,
                            end: instant(&o.end, &format!("{at}.end"))?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            };
            schedule.validate(|user| people.contains_key(user))?;
            if let Some(c) = &s.checkin {
                let within = parse_duration(&c.within, 1).ok_or_else(|| {
                    ConfigError(format!(
                        "{at}.checkin.within: `{}` is not a duration from 1m to 1d (`15m`)",
                        c.within
                    ))
                })?;
                if let Some(fallback) = &c.fallback
                    && !people.contains_key(fallback)
                {
                    bail!("{at}.checkin.fallback: unknown person `{fallback}`");
                }
                checkins.insert(
                    s.name.clone(),
                    CheckinRule {
                        within,
                        fallback: c.fallback.clone(),
                    },
                );
            }
            if schedules.insert(s.name.clone(), schedule).is_some() {
                bail!("{at}.name: `{}` appears twice", s.name);
            }
        }
        let check_target = |t: &Target, at: &str| -> Result<()> {
            match t {
                Target::User(id) if !people.contains_key(id) => bail!("{at}: unknown user `{id}`"),
                Target::Schedule(name) if !schedules.contains_key(name) => {
                    bail!("{at}: unknown schedule `{name}`")
                }
                _ => Ok(()),
            }
        };
        let stakeholders = stakeholder_groups(file.stakeholders, &people, rules)?;
        let mut policies = HashMap::new();
        for (i, p) in file.policies.into_iter().enumerate() {
            rules.name(&p.name, &format!("policies[{i}].name"))?;
            let at = format!("policies[{i}] ({})", p.name);
            if p.steps.is_empty() {
                bail!("{at}.steps: a policy needs at least one step");
            }
            if p.repeat > MAX_REPEAT {
                bail!(
                    "{at}.repeat: {} is out of range (0 to {MAX_REPEAT})",
                    p.repeat
                );
            }
            if policies.contains_key(&p.name) {
                bail!("{at}.name: `{}` appears twice", p.name);
            }
            let mut steps = Vec::new();
            for (j, step) in p.steps.into_iter().enumerate() {
                if step.targets.is_empty() {
                    bail!("{at}.steps[{j}].targets: a step needs at least one target");
                }
                let targets = step
                    .targets
                    .iter()
                    .map(|t| {
                        let target = target(t, &format!("{at}.steps[{j}].targets"))?;
                        check_target(&target, &format!("{at}.steps[{j}].targets"))?;
                        Ok(target)
                    })
                    .collect::<Result<Vec<_>>>()?;
                steps.push(EscalationStep {
                    targets,
                    delay_minutes: rules.minutes(
                        step.delay,
                        MAX_STEP_DELAY,
                        &format!("{at}.steps[{j}].delay"),
                    )?,
                });
            }
            let last_resort = match &p.last_resort {
                None => None,
                Some(text) => {
                    let t = target(text, &format!("{at}.last_resort"))?;
                    check_target(&t, &format!("{at}.last_resort"))?;
                    Some(t)
                }
            };
            policies.insert(
                p.name.clone(),
                EscalationPolicy {
                    name: p.name,
                    steps,
                    repeat: p.repeat,
                    last_resort,
                },
            );
        }
        let mut services = HashMap::new();
        let mut check_services = HashMap::new();
        for (i, s) in file.services.into_iter().enumerate() {
            rules.name(&s.name, &format!("services[{i}].name"))?;
            let at = format!("services[{i}] ({})", s.name);
            if services.contains_key(&s.name) {
                bail!("{at}.name: `{}` appears twice", s.name);
            }
            if !policies.contains_key(&s.policy) {
                bail!("{at}.policy: unknown policy `{}`", s.policy);
            }
            let urgency = match (s.urgency.as_str(), s.support_hours) {
                ("high", None) => UrgencyRule::Always(Urgency::High),
                ("low", None) => UrgencyRule::Always(Urgency::Low),
                ("support-hours", Some(hours)) => UrgencyRule::SupportHours {
                    tz: parse_tz(&hours.tz)
                        .map_err(|e| ConfigError(format!("{at}.support_hours.tz: {e}")))?,
                    windows: windows(&hours.windows, &format!("{at}.support_hours"))?,
                    inside: hours.inside,
                    outside: hours.outside,
                },
                ("support-hours", None) => {
                    bail!(
                        "{at}.support_hours: `urgency = \"support-hours\"` needs a support_hours table"
                    )
                }
                ("high" | "low", Some(_)) => {
                    bail!("{at}.support_hours: only used with `urgency = \"support-hours\"`")
                }
                (other, _) => {
                    bail!("{at}.urgency: `{other}` is not high, low or support-hours")
                }
            };
            let raise_after =
                rules.minutes(s.raise_after, MAX_STEP_DELAY, &format!("{at}.raise_after"))?;
            let raise_after = (raise_after > 0).then(|| TimeDelta::minutes(i64::from(raise_after)));
            let mut checks = Vec::with_capacity(s.checks.len());
            for (j, check) in s.checks.iter().enumerate() {
                let uuid = check_uuid(check).ok_or_else(|| {
                    ConfigError(format!("{at}.checks[{j}]: `{check}` is not a check UUID"))
                })?;
                if let Some(other) = check_services.insert(uuid.clone(), s.name.clone()) {
                    bail!("{at}.checks[{j}]: check `{check}` is already in service `{other}`");
                }
                checks.push(uuid);
            }
            let renotify = match s.renotify_every {
                None => Renotify::HighUrgency,
                Some(0) => Renotify::Never,
                Some(n) => Renotify::Every(n),
            };
            let remind_after = match &s.remind_after {
                None => None,
                Some(text) => match reminder_interval(text) {
                    Some(interval) => Some(interval),
                    None if rules.strict => bail!(
                        "{at}.remind_after: `{text}` is not a duration from 1m to 30d \
                         (a number with m, h or d: `12h`)"
                    ),
                    None => None,
                },
            };
            for (j, group) in s.stakeholders.iter().enumerate() {
                if !stakeholders.iter().any(|g| &g.name == group) {
                    bail!("{at}.stakeholders[{j}]: unknown stakeholder group `{group}`");
                }
            }
            let incident_backup = match &s.incident_backup {
                None => None,
                Some(text) => {
                    let t = target(text, &format!("{at}.incident_backup"))?;
                    check_target(&t, &format!("{at}.incident_backup"))?;
                    Some(t)
                }
            };
            let auto_declare = match s.auto_declare {
                None => None,
                Some(spec) => Some(auto_declare(spec, &format!("{at}.auto_declare"))?),
            };
            services.insert(
                s.name.clone(),
                Service {
                    name: s.name,
                    policy: s.policy,
                    urgency,
                    raise_after,
                    checks,
                    resolve_on_recovery: s.resolve_on_recovery,
                    resolve_hung_on_recovery: s.resolve_hung_on_recovery,
                    renotify,
                    remind_after,
                    stakeholders: s.stakeholders,
                    incident_backup,
                    auto_declare,
                },
            );
        }
        let mut maintenance = Vec::new();
        for (i, m) in file.maintenance.into_iter().enumerate() {
            let at = format!("maintenance[{i}]");
            match (&m.service, &m.check) {
                (Some(service), None) if !services.contains_key(service) => {
                    bail!("{at}.service: unknown service `{service}`")
                }
                (None, Some(check)) if check_uuid(check).is_none() => {
                    bail!("{at}.check: `{check}` is not a check UUID")
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => bail!("{at}: give either `service` or `check`"),
            }
            let start = instant(&m.start, &format!("{at}.start"))?;
            let end = instant(&m.end, &format!("{at}.end"))?;
            if end <= start {
                bail!("{at}.end: must be after start");
            }
            maintenance.push(Maintenance {
                service: m.service,
                check: m.check.as_deref().and_then(check_uuid),
                start,
                end,
            });
        }
        for (i, check) in file.checks.iter().enumerate() {
            let at = format!("checks[{i}]");
            if check.slug.is_empty()
                || !check
                    .slug
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                bail!(
                    "{at}.slug: `{}` is not a slug (lowercase letters, digits, - and _)",
                    check.slug
                );
            }
            if file.checks[..i].iter().any(|c| c.slug == check.slug) {
                bail!("{at}.slug: `{}` appears twice", check.slug);
            }
            if let Some(service) = &check.service
                && !services.contains_key(service)
            {
                bail!("{at} ({}).service: unknown service `{service}`", check.slug);
            }
        }
        let mut accepted = Vec::new();
        for (i, a) in file.accepted.into_iter().enumerate() {
            let at = format!("accepted[{i}]");
            if a.id.is_empty() {
                bail!("{at}.id: name the finding's rule (as `keepwatch audit` prints it)");
            }
            if a.reason.trim().is_empty() {
                bail!("{at}.reason: say why the finding is accepted");
            }
            // A date means the end of that day, UTC.
            let until = match chrono::NaiveDate::parse_from_str(&a.until, "%Y-%m-%d") {
                Ok(day) => day.and_hms_opt(23, 59, 59).unwrap_or_default().and_utc(),
                Err(_) => instant(&a.until, &format!("{at}.until")).map_err(|_| {
                    ConfigError(format!(
                        "{at}.until: `{}` is not a date (2027-01-31) or an RFC 3339 time",
                        a.until
                    ))
                })?,
            };
            accepted.push(Accepted {
                id: a.id,
                objects: a.objects,
                reason: a.reason,
                until,
            });
        }
        let incidents = match file.incidents {
            None => IncidentSettings::default(),
            Some(spec) => {
                let backup = match &spec.backup {
                    None => None,
                    Some(text) => {
                        let t = target(text, "incidents.backup")?;
                        check_target(&t, "incidents.backup")?;
                        Some(t)
                    }
                };
                incident_settings(spec, backup)?
            }
        };
        Ok(OnCall {
            stakeholders,
            incidents,
            people,
            contacts,
            schedules,
            policies,
            services,
            check_services,
            time_zones,
            maintenance,
            checks: file.checks,
            accepted,
            checkins,
        })
    }
}

/// The `[[stakeholders]]` groups: names unique, each member a person of the file or one
/// deliverable address, time zones known.
fn stakeholder_groups(
    specs: Vec<GroupSpec>,
    people: &HashMap<String, Person>,
    rules: &Checks,
) -> Result<Vec<StakeholderGroup>> {
    let mut groups: Vec<StakeholderGroup> = Vec::new();
    for (i, g) in specs.into_iter().enumerate() {
        rules.name(&g.name, &format!("stakeholders[{i}].name"))?;
        let at = format!("stakeholders[{i}] ({})", g.name);
        if groups.iter().any(|o| o.name == g.name) {
            bail!("{at}.name: `{}` appears twice", g.name);
        }
        if g.members.is_empty() {
            bail!("{at}.members: a group needs at least one member");
        }
        let mut members = Vec::new();
        for (j, m) in g.members.into_iter().enumerate() {
            let at = format!("{at}.members[{j}]");
            let given: Vec<(&str, String)> = [
                ("person", m.person),
                ("email", m.email),
                ("slack", m.slack),
                ("teams", m.teams),
                ("discord", m.discord),
                ("webhook", m.webhook),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let [(kind, value)] = given.as_slice() else {
                bail!("{at}: give exactly one of person, email, slack, teams, discord or webhook");
            };
            let member = if *kind == "person" {
                if !people.contains_key(value) {
                    bail!("{at}.person: unknown person `{value}` (not in [[people]])");
                }
                StakeholderAddress::Person(value.clone())
            } else {
                rules
                    .contact(kind, value)
                    .map_err(|e| ConfigError(format!("{at}.{kind}: {e}")))?;
                StakeholderAddress::Contact {
                    kind: kind.to_string(),
                    address: value.clone(),
                }
            };
            let tz = match &m.tz {
                None => None,
                Some(tz) => Some(parse_tz(tz).map_err(|e| ConfigError(format!("{at}.tz: {e}")))?),
            };
            members.push(Stakeholder { member, tz });
        }
        groups.push(StakeholderGroup {
            name: g.name,
            members,
        });
    }
    Ok(groups)
}

/// The longest update interval and reminder offsets: 7 days.
const MAX_CADENCE_DAYS: i64 = 7;

fn cadence_duration(text: &str, at: &str) -> Result<TimeDelta> {
    parse_duration(text, MAX_CADENCE_DAYS).ok_or_else(|| {
        ConfigError(format!(
            "{at}: `{text}` is not a duration from 1m to 7d (a number with m, h or d: `30m`)"
        ))
    })
}

fn incident_settings(spec: IncidentsSpec, backup: Option<Target>) -> Result<IncidentSettings> {
    let mut settings = IncidentSettings {
        backup,
        ..IncidentSettings::default()
    };
    let mut keys: Vec<_> = spec.update_interval.into_iter().collect();
    keys.sort();
    for (key, value) in keys {
        let at = format!("incidents.update_interval.{key}");
        let severity = Severity::parse(&key.to_ascii_lowercase()).ok_or_else(|| {
            ConfigError(format!(
                "{at}: `{key}` is not a severity (sev1, sev2, sev3, sev4)"
            ))
        })?;
        let index = severity as usize;
        settings.intervals[index] = match value.trim() {
            "none" | "0" => None,
            text => Some(cadence_duration(text, &at)?),
        };
    }
    if let Some(text) = &spec.remind_before {
        settings.remind_before = cadence_duration(text, "incidents.remind_before")?;
    }
    if let Some(text) = &spec.escalate_after {
        settings.escalate_after = cadence_duration(text, "incidents.escalate_after")?;
    }
    if let Some(days) = spec.recurrence_days {
        if days > 90 {
            bail!("incidents.recurrence_days: {days} is out of range (0 to 90)");
        }
        settings.recurrence_days = days;
    }
    Ok(settings)
}

fn auto_declare(spec: AutoDeclareSpec, at: &str) -> Result<AutoDeclare> {
    let unacked_after = match &spec.unacked_after {
        None => None,
        Some(text) => Some(cadence_duration(text, &format!("{at}.unacked_after"))?),
    };
    let mut critical_checks = Vec::new();
    for (j, check) in spec.critical_checks.iter().enumerate() {
        critical_checks.push(check_uuid(check).ok_or_else(|| {
            ConfigError(format!(
                "{at}.critical_checks[{j}]: `{check}` is not a check UUID"
            ))
        })?);
    }
    let severity = match &spec.severity {
        None => Severity::Sev2,
        Some(text) => Severity::parse_loose(text).ok_or_else(|| {
            ConfigError(format!(
                "{at}.severity: `{text}` is not a severity (SEV1, SEV2, SEV3, SEV4)"
            ))
        })?,
    };
    if unacked_after.is_none() && critical_checks.is_empty() {
        bail!("{at}: give unacked_after, critical_checks or both");
    }
    Ok(AutoDeclare {
        unacked_after,
        critical_checks,
        severity,
    })
}

/// What `keepwatch apply` changes, by section and name: `+` added, `-` removed, `~` changed.
pub fn changes(old: Option<&OnCall>, new: &OnCall) -> Vec<String> {
    fn section<T: PartialEq>(
        kind: &str,
        old: Option<&HashMap<String, T>>,
        new: &HashMap<String, T>,
        out: &mut Vec<String>,
    ) {
        let empty = HashMap::new();
        let old = old.unwrap_or(&empty);
        let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            match (old.get(name), new.get(name)) {
                (None, Some(_)) => out.push(format!("+ {kind} {name}")),
                (Some(_), None) => out.push(format!("- {kind} {name}")),
                (Some(a), Some(b)) if a != b => out.push(format!("~ {kind} {name}")),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    let people = |c: &OnCall| -> HashMap<String, (Person, Option<HashMap<String, String>>)> {
        c.people
            .iter()
            .map(|(id, p)| (id.clone(), (p.clone(), c.contacts.get(id).cloned())))
            .collect()
    };
    let old_people = old.map(people);
    section("person", old_people.as_ref(), &people(new), &mut out);
    // A schedule with its check-in rule: a changed `checkin` changes the schedule.
    let schedules = |c: &OnCall| -> HashMap<String, (OnCallSchedule, Option<CheckinRule>)> {
        c.schedules
            .iter()
            .map(|(name, s)| (name.clone(), (s.clone(), c.checkins.get(name).cloned())))
            .collect()
    };
    let old_schedules = old.map(schedules);
    section(
        "schedule",
        old_schedules.as_ref(),
        &schedules(new),
        &mut out,
    );
    section("policy", old.map(|c| &c.policies), &new.policies, &mut out);
    section("service", old.map(|c| &c.services), &new.services, &mut out);
    // Maintenance windows have no names: by what they cover and when.
    let windows = |c: &OnCall| -> HashMap<String, ()> {
        c.maintenance
            .iter()
            .map(|m| {
                let what = m.service.as_ref().map_or_else(
                    || format!("check {}", m.check.as_deref().unwrap_or("")),
                    |s| format!("service {s}"),
                );
                (
                    format!("{what} {} → {}", m.start.to_rfc3339(), m.end.to_rfc3339()),
                    (),
                )
            })
            .collect()
    };
    let old_windows = old.map(windows);
    section("maintenance", old_windows.as_ref(), &windows(new), &mut out);
    out
}

/// A check UUID as the rest of keepwatch writes it (lowercase, hyphenated), whatever form
/// the file used, so services and maintenance windows name a check the same way.
fn check_uuid(text: &str) -> Option<String> {
    uuid::Uuid::try_parse(text).ok().map(|u| u.to_string())
}

/// Where a string (or key) of a TOML value holds a NUL (`\u0000` in the file), as a path.
fn toml_nul_path(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => s.contains('\0').then(String::new),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| toml_nul_path(item).map(|rest| format!("[{i}]{rest}"))),
        toml::Value::Table(table) => table.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(format!(".{}", key.replace('\0', "\\0")));
            }
            toml_nul_path(item).map(|rest| format!(".{key}{rest}"))
        }),
        _ => None,
    }
}

/// A file's bytes as text, or where they stop being UTF-8 as an editor shows it: line,
/// column and byte offset.
pub fn utf8_text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        // Columns count characters; all before the bad byte is valid UTF-8.
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        format!(
            "line {line}, column {column} (byte {}) is not valid UTF-8",
            e.valid_up_to()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Service `billing` paging alice by email (the fixture the API tests share).
    const BASE: &str = include_str!("../../../../fixtures/oncall/alice-on-billing.toml");

    fn with(maintenance: &str) -> Result<OnCall> {
        OnCall::parse(&format!("{BASE}[[maintenance]]\n{maintenance}\n"))
    }

    #[test]
    fn a_nul_anywhere_is_refused_with_where_it_is() {
        let escaped = BASE.replace("id = \"alice\"", "id = \"ali\\u0000ce\"");
        assert_eq!(
            OnCall::parse(&escaped).unwrap_err().to_string(),
            "people[0].id: contains a NUL character"
        );
        let raw = format!("{BASE}# a comment with \0 in it\n");
        assert_eq!(
            OnCall::parse(&raw).unwrap_err().to_string(),
            "line 13: the file contains a NUL character"
        );
    }

    #[test]
    fn maintenance_windows_hold_pages_of_their_service_or_check() {
        let config = with(
            "service = \"billing\"\nstart = \"2026-11-28T00:00:00-07:00\"\nend = \"2026-11-28T04:00:00-07:00\"",
        )
        .unwrap();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        assert!(config.in_maintenance("billing", None, at("2026-11-28T07:00:00Z")));
        assert!(
            !config.in_maintenance("billing", None, at("2026-11-28T11:00:00Z")),
            "end is excluded"
        );
        assert!(!config.in_maintenance("other", None, at("2026-11-28T08:00:00Z")));
        let uuid = "5ad6aaab-77eb-4e2d-a580-83c894e15261";
        let config = with(&format!(
            "check = \"{}\"\nstart = \"2026-11-28T00:00:00Z\"\nend = \"2026-11-28T01:00:00Z\"",
            uuid.to_uppercase()
        ))
        .unwrap();
        assert!(config.in_maintenance("billing", Some(uuid), at("2026-11-28T00:30:00Z")));
        assert!(!config.in_maintenance("billing", None, at("2026-11-28T00:30:00Z")));
    }

    #[test]
    fn bad_maintenance_windows_are_refused_with_the_field() {
        let window = "start = \"2026-11-28T00:00:00Z\"\nend = \"2026-11-28T01:00:00Z\"";
        for (spec, message) in [
            (format!("service = \"ghost\"\n{window}"), "maintenance[0].service: unknown service `ghost`"),
            (format!("check = \"not-a-uuid\"\n{window}"), "maintenance[0].check: `not-a-uuid` is not a check UUID"),
            (window.to_string(), "maintenance[0]: give either `service` or `check`"),
            (
                "service = \"billing\"\nstart = \"2026-11-28T01:00:00Z\"\nend = \"2026-11-28T01:00:00Z\"".into(),
                "maintenance[0].end: must be after start",
            ),
            (
                "service = \"billing\"\nstart = \"tomorrow\"\nend = \"2026-11-28T01:00:00Z\"".into(),
                "maintenance[0].start: `tomorrow` is not an RFC 3339 time",
            ),
        ] {
            let error = with(&spec).unwrap_err().to_string();
            assert!(error.contains(message), "{spec}: {error}");
        }
    }

    /// `BASE` with one line replaced, parsed: the error's text.
    fn refused(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        OnCall::parse(&BASE.replacen(from, to, 1))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn undeliverable_contacts_are_refused_with_their_line_and_field() {
        // BASE's contacts are on line 4.
        let contacts = "contacts = { email = \"alice@example.com\" }";
        for (contact, address, reason) in [
            ("webhook", "hooks.example.com/x", "is not an http(s) URL"),
            ("email", "not an email", "is not an email address"),
            (
                "phone",
                "555-1234",
                "is not an email address or an http(s) URL",
            ),
            (
                "slack",
                "hooks.slack.com/services/T/B/X",
                "is not an http(s) URL",
            ),
            (
                "discord",
                "ftp://discord.com/api/webhooks/1/x",
                "scheme `ftp`",
            ),
            ("teams", "https://", "is not an http(s) URL"),
            (
                "telegram",
                "https://api.telegram.org/botT/sendMessage",
                "no `chat_id` parameter",
            ),
            (
                "pushover",
                "https://api.pushover.net/1/messages.json?token=t",
                "no `user` parameter",
            ),
            ("ntfy", "ntfy.sh/alerts", "is not an http(s) URL"),
        ] {
            // The rule's contact stays deliverable unless it is the one under test.
            let spec = if contact == "email" {
                format!("contacts = {{ email = \"{address}\" }}")
            } else {
                format!("contacts = {{ email = \"alice@example.com\", {contact} = \"{address}\" }}")
            };
            let error = refused(contacts, &spec);
            let field = format!("people[0] (alice).contacts.{contact} (line 4): `{address}`");
            assert!(
                error.starts_with(&field) && error.contains(reason),
                "{contact}: {error}"
            );
        }
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        for (from, to, field) in [
            ("id = \"alice\"", "id = \"ali\\nce\"", "people[0].id"),
            (
                "name = \"p\"",
                "name = \"p\\r\\nX-EVIL:1\"",
                "policies[0].name",
            ),
            (
                "name = \"billing\"",
                "name = \"bill\\u0007ing\"",
                "services[0].name",
            ),
        ] {
            let error = refused(from, to);
            assert!(
                error.starts_with(field) && error.ends_with("contains a control character"),
                "{error}"
            );
        }
        let schedule = format!("{BASE}[[schedules]]\nname = \"pri\\nmary\"\ntz = \"UTC\"\n");
        let error = OnCall::parse(&schedule).unwrap_err().to_string();
        assert_eq!(
            error,
            "schedules[0].name: \"pri\\nmary\" contains a control character"
        );
    }

    #[test]
    fn a_stored_file_of_an_earlier_version_is_still_read() {
        // Applied before contacts, names and ranges were checked: refused now, but a server
        // that stored it keeps paging by it (delays cut to 7 days, as they were).
        let old = BASE
            .replace(
                "email = \"alice@example.com\"",
                "email = \"alice@example.com\", phone = \"555-1234\"",
            )
            .replace("delay = 10", "delay = 99999999")
            .replace("name = \"p\"", "name = \"p\\n\"")
            .replace("policy = \"p\"", "policy = \"p\\n\"");
        assert!(OnCall::parse(&old).is_err());
        let config = OnCall::parse_applied(&old).unwrap();
        assert_eq!(
            config.policies["p\n"].steps[0].delay_minutes,
            MAX_STEP_DELAY
        );
        assert_eq!(config.contact_address("alice", "phone"), Some("555-1234"));
    }

    #[test]
    fn out_of_range_numbers_are_refused_with_the_range() {
        for (from, to, error) in [
            (
                "delay = 10",
                "delay = 99999999",
                "policies[0] (p).steps[0].delay: 99999999 is out of range (0 to 10080 minutes)",
            ),
            (
                "after = 0",
                "after = 10081",
                "people[0] (alice).rules[0].after: 10081 is out of range (0 to 10080 minutes)",
            ),
            (
                "urgency = \"high\"\n",
                "urgency = \"high\"\nraise_after = 20000\n",
                "services[0] (billing).raise_after: 20000 is out of range (0 to 10080 minutes)",
            ),
            (
                "urgency = \"high\"\n",
                "urgency = \"high\"\nremind_after = \"12 hours\"\n",
                "services[0] (billing).remind_after: `12 hours` is not a duration from 1m to 30d \
                 (a number with m, h or d: `12h`)",
            ),
            (
                "urgency = \"high\"\n",
                "urgency = \"high\"\nremind_after = \"31d\"\n",
                "services[0] (billing).remind_after: `31d` is not a duration from 1m to 30d \
                 (a number with m, h or d: `12h`)",
            ),
            (
                "delay = 10 }]",
                "delay = 10 }]\nrepeat = 21",
                "policies[0] (p).repeat: 21 is out of range (0 to 20)",
            ),
        ] {
            assert_eq!(refused(from, to), error);
        }
        // The largest accepted values still parse.
        let max = BASE
            .replace("delay = 10", "delay = 10080")
            .replace("after = 0", "after = 10080");
        assert!(OnCall::parse(&max).is_ok());
        let shift = format!(
            "{BASE}[[schedules]]\nname = \"s\"\ntz = \"UTC\"\n[[schedules.layers]]\nname = \"l\"\n\
             participants = [\"alice\"]\nshift = \"400d\"\nstart = \"2026-11-02T09:00\"\n"
        );
        assert_eq!(
            OnCall::parse(&shift).unwrap_err().to_string(),
            "schedules[0] (s).layers[0].shift: `400d` is out of range (1h to 8784h, 1d to 366d, 1w to 53w)"
        );
    }

    #[test]
    fn services_bind_checks_by_uuid_once() {
        let base = "[[people]]\nid = \"a\"\ncontacts = { email = \"a@x\" }\n\
                    rules = [{ urgency = \"high\", contact = \"email\", after = 0 }]\n\
                    [[policies]]\nname = \"p\"\nsteps = [{ targets = [\"user:a\"], delay = 5 }]\n";
        let service = |name: &str, checks: &str| {
            format!("[[services]]\nname = \"{name}\"\npolicy = \"p\"\nchecks = [{checks}]\n")
        };
        let uuid = "5F1C0E2A-3B4D-4E5F-8A9B-0C1D2E3F4A5B";
        let ok = OnCall::parse(&format!(
            "{base}{}",
            service("billing", &format!("\"{uuid}\""))
        ))
        .unwrap();
        assert_eq!(ok.check_services[&uuid.to_ascii_lowercase()], "billing");
        // A maintenance window names the check in the same form, however the file wrote it.
        let window = OnCall::parse(&format!(
            "{base}[[maintenance]]\ncheck = \"{}\"\nstart = \"2026-11-27T10:00:00Z\"\nend = \"2026-11-27T11:00:00Z\"\n",
            uuid.replace('-', "")
        ))
        .unwrap();
        assert_eq!(
            window.maintenance[0].check.as_deref(),
            Some(uuid.to_ascii_lowercase().as_str())
        );
        let err = OnCall::parse(&format!("{base}{}", service("billing", "\"nightly\"")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "services[0] (billing).checks[0]: `nightly` is not a check UUID"
        );
        let twice = format!(
            "{base}{}{}",
            service("billing", &format!("\"{uuid}\"")),
            service("web", &format!("\"{}\"", uuid.to_ascii_lowercase()))
        );
        let err = OnCall::parse(&twice).unwrap_err().to_string();
        assert!(
            err.starts_with("services[1] (web).checks[0]: check `")
                && err.ends_with("is already in service `billing`"),
            "{err}"
        );
    }

    #[test]
    fn stakeholder_groups_cadence_and_auto_declare_are_read_and_checked() {
        let groups = r#"
[[stakeholders]]
name = "execs"
members = [
  { person = "alice", tz = "America/Denver" },
  { email = "cfo@example.com", tz = "Europe/Paris" },
  { slack = "https://hooks.slack.com/services/T/B/x" },
  { webhook = "https://status.example.com/hook" },
]
[incidents]
update_interval = { sev1 = "15m", sev4 = "2h" }
remind_before = "5m"
escalate_after = "20m"
recurrence_days = 3
backup = "user:alice"
"#;
        let ok = BASE.replace(
            "urgency = \"high\"\n",
            "urgency = \"high\"\nstakeholders = [\"execs\"]\nauto_declare = { unacked_after = \"15m\", severity = \"SEV1\" }\n",
        ) + groups;
        let config = OnCall::parse(&ok).unwrap();
        let execs = &config.stakeholders[0];
        assert_eq!(execs.members.len(), 4);
        assert_eq!(
            execs.members[0].member,
            StakeholderAddress::Person("alice".into())
        );
        assert_eq!(config.services["billing"].stakeholders, ["execs"]);
        let auto = config.services["billing"].auto_declare.as_ref().unwrap();
        assert_eq!(auto.unacked_after, Some(TimeDelta::minutes(15)));
        assert_eq!(auto.severity, Severity::Sev1);
        let s = &config.incidents;
        assert_eq!(s.interval(Severity::Sev1), Some(TimeDelta::minutes(15)));
        assert_eq!(s.interval(Severity::Sev2), Some(TimeDelta::hours(1)));
        assert_eq!(s.interval(Severity::Sev4), Some(TimeDelta::hours(2)));
        assert_eq!(s.remind_before, TimeDelta::minutes(5));
        assert_eq!(s.escalate_after, TimeDelta::minutes(20));
        assert_eq!(s.recurrence_days, 3);
        assert_eq!(s.backup, Some(Target::User("alice".into())));
        // Without the table: SEV1 30m, SEV2 1h, SEV3 4h, SEV4 none.
        let defaults = OnCall::parse(BASE).unwrap().incidents;
        assert_eq!(defaults.interval(Severity::Sev3), Some(TimeDelta::hours(4)));
        assert_eq!(defaults.interval(Severity::Sev4), None);

        for (from, to, error) in [
            (
                "person = \"alice\", tz",
                "person = \"zoe\", tz",
                "stakeholders[0] (execs).members[0].person: unknown person `zoe` (not in [[people]])",
            ),
            (
                "{ email = \"cfo@example.com\", tz",
                "{ email = \"cfo\", tz",
                "stakeholders[0] (execs).members[1].email: `cfo` is not an email address",
            ),
            (
                "{ slack = \"https://hooks.slack.com/services/T/B/x\" }",
                "{ slack = \"https://hooks.slack.com/services/T/B/x\", email = \"a@b.c\" }",
                "stakeholders[0] (execs).members[2]: give exactly one of person, email, slack, teams, discord or webhook",
            ),
            (
                "tz = \"Europe/Paris\"",
                "tz = \"Mars/Olympus\"",
                "stakeholders[0] (execs).members[1].tz: unknown time zone `Mars/Olympus`",
            ),
            (
                "stakeholders = [\"execs\"]",
                "stakeholders = [\"board\"]",
                "services[0] (billing).stakeholders[0]: unknown stakeholder group `board`",
            ),
            (
                "sev1 = \"15m\"",
                "sev9 = \"15m\"",
                "incidents.update_interval.sev9: `sev9` is not a severity (sev1, sev2, sev3, sev4)",
            ),
            (
                "remind_before = \"5m\"",
                "remind_before = \"soon\"",
                "incidents.remind_before: `soon` is not a duration from 1m to 7d",
            ),
            (
                "backup = \"user:alice\"",
                "backup = \"user:zoe\"",
                "incidents.backup: unknown user `zoe`",
            ),
            (
                "auto_declare = { unacked_after = \"15m\", severity = \"SEV1\" }",
                "auto_declare = { severity = \"SEV1\" }",
                "services[0] (billing).auto_declare: give unacked_after, critical_checks or both",
            ),
        ] {
            assert!(ok.contains(from), "{from}");
            let got = OnCall::parse(&ok.replacen(from, to, 1))
                .unwrap_err()
                .to_string();
            assert!(got.starts_with(error), "{got}");
        }
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_with_where() {
        assert_eq!(utf8_text(b"a = 1\n"), Ok("a = 1\n"));
        assert_eq!(
            utf8_text(b"[[people]]\nid = \"j\xc3\xa9r\xff\"\n"),
            Err("line 2, column 10 (byte 21) is not valid UTF-8".to_string())
        );
        assert_eq!(
            utf8_text(b"\xfe"),
            Err("line 1, column 1 (byte 0) is not valid UTF-8".to_string())
        );
    }
}
