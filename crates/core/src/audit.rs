//! The audit: rules over the on-call configuration, the checks and their recent history, and
//! the week sweep of [`crate::alert::drill`] (the engine's routing), that flag a setup which
//! reaches nobody before it matters. Each finding says what, on which objects, why it
//! matters and how to fix it; findings accepted in the file (`[[accepted]]`, with a reason and
//! an expiry) are listed apart and do not count.
//!
//! Pure: everything is an argument, `now` included. The binary runs it over a file, the
//! server over what is applied and what it stored (and daily, raising an alert for errors).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveTime, TimeDelta, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::alert::drill;
use crate::alert::paging::{Target, Urgency, UrgencyRule};
use crate::alert::routing;
use crate::oncall::config::OnCall;
use crate::oncall::rotation::OnCallSchedule;
use crate::schedule::Schedule;

/// How bad a finding is: an error is a page that can fail to reach anyone in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

/// An accepted finding's reason and expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedNote {
    pub reason: String,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule, e.g. `high-urgency-unreachable`.
    pub id: String,
    pub severity: Severity,
    /// `service:billing`, `policy:billing`, `schedule:primary`, `person:alice`,
    /// `check:<uuid or slug>`, `contact:alice/email`, `channel:<name>`.
    pub objects: Vec<String>,
    pub summary: String,
    pub why: String,
    pub fix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<AcceptedNote>,
}

/// Thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A high-urgency page must reach someone within this (default 30 min).
    pub high_within: TimeDelta,
    /// How far ahead schedules are examined (default 4 weeks).
    pub ahead: TimeDelta,
    /// A gap that starts within this is an error, later ones warnings (default 7 days).
    pub gap_error_within: TimeDelta,
    /// One person holding more than this share of the off-hours on-call time (default 0.5).
    pub off_hours_share: f64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            high_within: TimeDelta::minutes(30),
            ahead: TimeDelta::weeks(4),
            gap_error_within: TimeDelta::days(7),
            off_hours_share: 0.5,
        }
    }
}

/// What the audit knows of a check.
#[derive(Debug, Clone)]
pub struct CheckFacts {
    /// The UUID of a stored check, or the slug of one the file declares.
    pub id: String,
    pub name: String,
    /// Its own `service` field.
    pub service: Option<String>,
    pub schedule: Schedule,
    /// A cron or OnCalendar schedule (not a period).
    pub cron: bool,
    pub grace: TimeDelta,
    pub max_runtime: Option<TimeDelta>,
    /// `None`: never pinged. Unknown for a check only a file declares (`Some(created)`).
    pub last_ping: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Durations of its last successful runs.
    pub recent_durations: Vec<TimeDelta>,
    /// When its newest run started and why `keepwatch run` could not look for stray
    /// processes then (`None`: it looked, or nothing is known).
    pub scan_skipped: Option<(DateTime<Utc>, String)>,
}

/// Deliveries to one contact or channel lately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deliveries {
    /// `alice/email`, or a channel's name.
    pub name: String,
    pub failed: i64,
    pub total: i64,
    /// Whether the newest delivery failed.
    pub last_failed: bool,
    pub last_error: Option<String>,
}

/// `(person, schedule, shift start)`: a shift check-in not acknowledged in time.
pub type MissedCheckin = (String, String, DateTime<Utc>);

/// What the server recorded; empty for a file audited on its own.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// `(person, contact)` of the verified contacts; `None`: not known (a file alone).
    pub verified: Option<Vec<(String, String)>>,
    pub contacts: Vec<Deliveries>,
    pub channels: Vec<Deliveries>,
    /// `(person, schedule, shift start)` of shift check-ins not acknowledged in time.
    pub missed_checkins: Vec<MissedCheckin>,
}

/// The audit's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub at: DateTime<Utc>,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
    /// Findings accepted in the file, still in force.
    pub accepted: Vec<Finding>,
}

impl Report {
    /// Whether a finding at `level` or worse is reported (`--fail-on`).
    pub fn fails(&self, level: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= level)
    }
}

fn finding(
    id: &str,
    severity: Severity,
    objects: Vec<String>,
    summary: String,
    why: &str,
    fix: String,
) -> Finding {
    Finding {
        id: id.to_string(),
        severity,
        objects,
        summary,
        why: why.to_string(),
        fix,
        accepted: None,
    }
}

/// Audits `config` (with `checks` and `history`) at `now`.
pub fn audit(
    config: &OnCall,
    checks: &[CheckFacts],
    history: &History,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Report {
    let mut all = Vec::new();
    let reach = Reach::of(config);
    high_urgency_unreachable(config, checks, now, settings, &mut all);
    urgency_raising_off(config, &mut all);
    policies(config, &reach, &mut all);
    schedule_gaps(config, &reach, now, settings, &mut all);
    steps_to_nobody(config, now, settings, &mut all);
    off_hours(config, &reach, now, settings, &mut all);
    rules(config, &reach, &mut all);
    contacts(config, &reach, history, &mut all);
    check_rules(config, checks, now, &mut all);
    maintenance(config, checks, now, &mut all);
    missed_checkins(history, &mut all);
    checkins_tell_nobody(config, &mut all);
    // Errors first, then by rule and objects: a stable order for people and for tests.
    all.sort_by(|a, b| (b.severity, &a.id, &a.objects).cmp(&(a.severity, &b.id, &b.objects)));
    let (mut findings, mut accepted) = (Vec::new(), Vec::new());
    for mut f in all {
        let note = config.accepted.iter().find(|a| {
            a.id == f.id && a.until > now && a.objects.iter().all(|o| f.objects.contains(o))
        });
        match note {
            Some(a) => {
                f.accepted = Some(AcceptedNote {
                    reason: a.reason.clone(),
                    until: a.until,
                });
                accepted.push(f);
            }
            None => findings.push(f),
        }
    }
    Report {
        at: now,
        errors: findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count(),
        warnings: findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count(),
        findings,
        accepted,
    }
}

/// Who each policy and service can reach, and at which urgencies.
struct Reach {
    /// Policy → the people its steps and last resort can reach (schedule participants and
    /// override users included).
    policy_people: BTreeMap<String, BTreeSet<String>>,
    /// Person → the urgencies they can be paged at.
    urgencies: BTreeMap<String, BTreeSet<Urgency>>,
    /// Schedules some policy pages.
    paged_schedules: BTreeSet<String>,
}

/// The urgencies a service's alerts can have (a raise makes high possible).
fn service_urgencies(service: &crate::oncall::config::Service) -> BTreeSet<Urgency> {
    let mut out = BTreeSet::new();
    match &service.urgency {
        UrgencyRule::Always(u) => {
            out.insert(*u);
        }
        UrgencyRule::SupportHours {
            inside, outside, ..
        } => {
            out.insert(*inside);
            out.insert(*outside);
        }
    }
    if out.contains(&Urgency::Low) && service.raise_after.is_some() {
        out.insert(Urgency::High);
    }
    out
}

fn schedule_people(schedule: &OnCallSchedule) -> BTreeSet<String> {
    let mut people: BTreeSet<String> = schedule
        .layers
        .iter()
        .flat_map(|l| l.participants.iter().cloned())
        .collect();
    people.extend(schedule.overrides.iter().map(|o| o.user.clone()));
    people
}

impl Reach {
    fn of(config: &OnCall) -> Reach {
        let mut policy_people = BTreeMap::new();
        let mut paged_schedules = BTreeSet::new();
        for (name, policy) in &config.policies {
            let targets = policy
                .steps
                .iter()
                .flat_map(|s| s.targets.iter())
                .chain(policy.last_resort.iter());
            let mut people = BTreeSet::new();
            for target in targets {
                match target {
                    Target::User(id) => {
                        people.insert(id.clone());
                    }
                    Target::Schedule(s) => {
                        paged_schedules.insert(s.clone());
                        if let Some(schedule) = config.schedules.get(s) {
                            people.extend(schedule_people(schedule));
                        }
                    }
                }
            }
            policy_people.insert(name.clone(), people);
        }
        let mut urgencies: BTreeMap<String, BTreeSet<Urgency>> = BTreeMap::new();
        for service in config.services.values() {
            let possible = service_urgencies(service);
            for person in policy_people.get(&service.policy).into_iter().flatten() {
                urgencies
                    .entry(person.clone())
                    .or_default()
                    .extend(possible.iter().copied());
            }
        }
        Reach {
            policy_people,
            urgencies,
            paged_schedules,
        }
    }
}

fn sorted<T>(map: &std::collections::HashMap<String, T>) -> Vec<(&String, &T)> {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_by_key(|(k, _)| *k);
    v
}

/// The time zone a service's times are best read in: its support hours', else the first
/// schedule its policy pages, else UTC.
fn service_tz(config: &OnCall, service: &crate::oncall::config::Service) -> Tz {
    if let UrgencyRule::SupportHours { tz, .. } = &service.urgency {
        return *tz;
    }
    config
        .policies
        .get(&service.policy)
        .and_then(|p| {
            p.steps
                .iter()
                .flat_map(|s| s.targets.iter())
                .find_map(|t| match t {
                    Target::Schedule(s) => config.schedules.get(s).map(|s| s.tz),
                    Target::User(_) => None,
                })
        })
        .unwrap_or(Tz::UTC)
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%a %H:%M").to_string()
}

/// A service whose alerts reach nobody at high urgency within the threshold at some start
/// time of the coming week (the week sweep: every hour, or the deadlines of its checks).
fn high_urgency_unreachable(
    config: &OnCall,
    checks: &[CheckFacts],
    now: DateTime<Utc>,
    settings: &Settings,
    out: &mut Vec<Finding>,
) {
    let from = now
        - TimeDelta::minutes(i64::from(now.minute()))
        - TimeDelta::seconds(i64::from(now.second()))
        + TimeDelta::hours(1);
    for (name, service) in sorted(&config.services) {
        if !config.policies.contains_key(&service.policy) {
            continue;
        }
        let own: Vec<&CheckFacts> = checks
            .iter()
            .filter(|c| routing::service_for(Some(config), &c.id, c.service.as_deref()) == *name)
            .collect();
        let mut starts: Vec<DateTime<Utc>> = own
            .iter()
            .flat_map(|c| {
                drill::starts(
                    from,
                    TimeDelta::days(7),
                    TimeDelta::hours(1),
                    Some((&c.schedule, c.grace)),
                )
            })
            .collect();
        starts.sort();
        starts.dedup();
        let by_schedule = !starts.is_empty() && starts.len() <= 7 * 24 * 12;
        if !by_schedule {
            starts = drill::starts(from, TimeDelta::days(7), TimeDelta::hours(1), None);
        }
        let horizon = settings.high_within.max(TimeDelta::hours(1)) * 3;
        let rows = drill::sweep(Some(config), name, None, &starts, horizon);
        let sweep = drill::summarize(name, None, None, horizon, rows);
        let late = sweep
            .rows
            .iter()
            .filter(|r| {
                r.first_high_page
                    .as_ref()
                    .is_none_or(|h| h.after_minutes > settings.high_within.num_minutes())
            })
            .count();
        if late == 0 {
            continue;
        }
        let tz = service_tz(config, service);
        let Some(worst) = sweep.worst else { continue };
        let wait = match (&worst.first_high_page, worst.next_high_urgency_at) {
            (Some(hit), _) => format!(
                "the first high-urgency page comes after {}",
                drill::wait(hit.after_minutes)
            ),
            (None, Some(next)) => format!(
                "no high-urgency page at all: nobody is woken until support hours start {} ({} later)",
                local(next, tz),
                drill::wait((next - worst.at).num_minutes())
            ),
            (None, None) => "no high-urgency page at all".to_string(),
        };
        let starts_are = if by_schedule {
            "of its checks' deadlines"
        } else {
            "hours of the week"
        };
        out.push(finding(
            "high-urgency-unreachable",
            Severity::Error,
            vec![format!("service:{name}")],
            format!(
                "an alert of service `{name}` reaches nobody at high urgency within {} for {late} of {} {starts_are}; worst: an alert at {} ({}): {wait}",
                drill::wait(settings.high_within.num_minutes()),
                sweep.rows.len(),
                local(worst.at, tz),
                tz.name()
            ),
            "a job that fails then is seen only when someone happens to read a low-urgency message",
            "turn urgency raising on (`raise_after = 10`), make the service high outside support hours, or give those hours a schedule whose people have a high-urgency rule; check with `keepwatch drill --sweep week`".into(),
        ));
    }
}

/// A service that can raise low-urgency alerts with raising turned off.
fn urgency_raising_off(config: &OnCall, out: &mut Vec<Finding>) {
    for (name, service) in sorted(&config.services) {
        if service.raise_after.is_none() && service_urgencies(service).contains(&Urgency::Low) {
            out.push(finding(
                "urgency-raising-off",
                Severity::Warning,
                vec![format!("service:{name}")],
                format!(
                    "service `{name}` can raise low-urgency alerts and never raises them to high"
                ),
                "a low-urgency alert nobody acknowledges stays low: it never wakes anyone",
                format!("set `raise_after = 10` (minutes) on service `{name}`"),
            ));
        }
    }
}

/// Policies that reach one person, or run once with no last resort.
fn policies(config: &OnCall, reach: &Reach, out: &mut Vec<Finding>) {
    for (name, policy) in sorted(&config.policies) {
        let people = reach.policy_people.get(name).cloned().unwrap_or_default();
        if people.len() <= 1 {
            let who = people.iter().next().cloned().unwrap_or("nobody".into());
            out.push(finding(
                "single-person-policy",
                Severity::Warning,
                vec![format!("policy:{name}")],
                format!("escalation policy `{name}` can reach only {who}"),
                "when that person is away, asleep or without signal, nobody hears of the alert",
                format!("add a second step or a last resort with someone else to policy `{name}`"),
            ));
        }
        if policy.repeat == 0 && policy.last_resort.is_none() {
            out.push(finding(
                "no-repeat-no-last-resort",
                Severity::Warning,
                vec![format!("policy:{name}")],
                format!("escalation policy `{name}` runs once, with no repeat and no last resort"),
                "after its last step nobody else is tried: an alert missed once stays missed",
                format!("set `repeat = 1` or `last_resort = \"user:<id>\"` on policy `{name}`"),
            ));
        }
    }
}

/// The stretches of `[from, to)` in which `schedule` has nobody on call.
fn gaps(
    schedule: &OnCallSchedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut push = |start: DateTime<Utc>, end: DateTime<Utc>| {
        if end <= start {
            return;
        }
        match out.last_mut() {
            Some(last) if last.1 >= start => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    };
    let mut t = from;
    for shift in schedule.shifts(from, to) {
        if shift.start > t {
            push(t, shift.start);
        }
        if shift.users.is_empty() {
            push(shift.start.max(t), shift.end);
        }
        t = t.max(shift.end);
    }
    if t < to {
        push(t, to);
    }
    out
}

fn span(d: TimeDelta) -> String {
    drill::wait(d.num_minutes())
}

/// Gaps in the schedules policies page, in the coming weeks (overrides included).
fn schedule_gaps(
    config: &OnCall,
    reach: &Reach,
    now: DateTime<Utc>,
    settings: &Settings,
    out: &mut Vec<Finding>,
) {
    for (name, schedule) in sorted(&config.schedules) {
        if !reach.paged_schedules.contains(name) {
            continue;
        }
        let found = gaps(schedule, now, now + settings.ahead);
        let Some((start, end)) = found.first().copied() else {
            continue;
        };
        let mut plain = schedule.clone();
        plain.overrides.clear();
        let by_override = !plain.on_call_at(start).is_empty();
        let severity = if start < now + settings.gap_error_within {
            Severity::Error
        } else {
            Severity::Warning
        };
        let total: TimeDelta = found.iter().map(|(s, e)| *e - *s).sum();
        let tz = schedule.tz;
        out.push(finding(
            "schedule-gap",
            severity,
            vec![format!("schedule:{name}")],
            format!(
                "schedule `{name}` has nobody on call from {} to {}{} ({} gaps, {} in all, in the next {} days)",
                start.with_timezone(&tz).format("%a %Y-%m-%d %H:%M"),
                end.with_timezone(&tz).format("%a %Y-%m-%d %H:%M %Z"),
                if by_override { ", left by an override" } else { "" },
                found.len(),
                span(total),
                settings.ahead.num_days()
            ),
            "a step that pages this schedule then pages nobody",
            if by_override {
                format!("fix the override of schedule `{name}` so that it replaces someone with someone, or add a layer covering those hours")
            } else {
                format!("add a layer (or widen a restriction) so that schedule `{name}` always has someone, or move its first handoff earlier")
            },
        ));
    }
}

/// The hours of `[from, from + ahead)`, on the hour.
fn hours(from: DateTime<Utc>, ahead: TimeDelta) -> impl Iterator<Item = DateTime<Utc>> {
    let start = from
        - TimeDelta::minutes(i64::from(from.minute()))
        - TimeDelta::seconds(i64::from(from.second()));
    (0..ahead.num_hours()).map(move |h| start + TimeDelta::hours(h))
}

/// A step whose targets all resolve to nobody at some hour of the coming weeks.
fn steps_to_nobody(
    config: &OnCall,
    now: DateTime<Utc>,
    settings: &Settings,
    out: &mut Vec<Finding>,
) {
    let resolves = |target: &Target, t: DateTime<Utc>| match target {
        Target::User(id) => config.people.contains_key(id),
        Target::Schedule(s) => config
            .schedules
            .get(s)
            .is_some_and(|s| !s.on_call_at(t).is_empty()),
    };
    for (name, policy) in sorted(&config.policies) {
        for (index, step) in policy.steps.iter().enumerate() {
            let empty: Vec<DateTime<Utc>> = hours(now, settings.ahead)
                .filter(|t| !step.targets.iter().any(|target| resolves(target, *t)))
                .collect();
            let Some(first) = empty.first() else { continue };
            let tz = step
                .targets
                .iter()
                .find_map(|t| match t {
                    Target::Schedule(s) => config.schedules.get(s).map(|s| s.tz),
                    Target::User(_) => None,
                })
                .unwrap_or(Tz::UTC);
            out.push(finding(
                "step-resolves-to-nobody",
                Severity::Error,
                vec![format!("policy:{name}")],
                format!(
                    "step {} of policy `{name}` reaches nobody for {} of the next {} hours (first: {})",
                    index + 1,
                    empty.len(),
                    settings.ahead.num_hours(),
                    first.with_timezone(&tz).format("%a %Y-%m-%d %H:%M %Z")
                ),
                "an alert then waits the step's whole delay with nobody paged",
                format!("give step {} of policy `{name}` a target that always has someone (a user, or a schedule without gaps)", index + 1),
            ));
        }
    }
}

/// Outside weekdays 09:00–17:00 in `tz`.
fn is_off_hours(t: DateTime<Utc>, tz: Tz) -> bool {
    let local = t.with_timezone(&tz);
    let work = NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()
        ..NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default();
    matches!(local.weekday(), Weekday::Sat | Weekday::Sun) || !work.contains(&local.time())
}

/// One person holding more than the set share of a paged schedule's off-hours on-call time.
fn off_hours(
    config: &OnCall,
    reach: &Reach,
    now: DateTime<Utc>,
    settings: &Settings,
    out: &mut Vec<Finding>,
) {
    for (name, schedule) in sorted(&config.schedules) {
        if !reach.paged_schedules.contains(name) {
            continue;
        }
        let tz = schedule.tz;
        let mut held: BTreeMap<String, i64> = BTreeMap::new();
        let mut covered = 0;
        for t in hours(now, settings.ahead).filter(|t| is_off_hours(*t, tz)) {
            let on = schedule.on_call_at(t);
            if on.is_empty() {
                continue;
            }
            covered += 1;
            for person in on {
                *held.entry(person).or_default() += 1;
            }
        }
        for (person, hours) in held {
            let share = hours as f64 / f64::from(covered);
            if share > settings.off_hours_share {
                out.push(finding(
                    "off-hours-share",
                    Severity::Warning,
                    vec![format!("person:{person}"), format!("schedule:{name}")],
                    format!(
                        "{person} holds {:.0}% of schedule `{name}`'s off-hours (nights and weekends, {}) in the next {} days",
                        share * 100.0,
                        tz.name(),
                        settings.ahead.num_days()
                    ),
                    "one person covering most nights and weekends is tired, or away, when it matters",
                    format!("rotate schedule `{name}`'s off-hours among more people (a weekly layer with several participants)"),
                ));
            }
        }
    }
}

/// People who can be paged at an urgency they have no rule for, and rules that never fire.
fn rules(config: &OnCall, reach: &Reach, out: &mut Vec<Finding>) {
    for (id, person) in sorted(&config.people) {
        let receives = reach.urgencies.get(id).cloned().unwrap_or_default();
        for urgency in &receives {
            if !person.rules.iter().any(|r| r.urgency == *urgency) {
                out.push(finding(
                    "no-rule-for-urgency",
                    if *urgency == Urgency::High { Severity::Error } else { Severity::Warning },
                    vec![format!("person:{id}")],
                    format!("{id} can be paged at {urgency} urgency and has no {urgency}-urgency notification rule"),
                    "those pages reach nobody: the drill shows them as NOBODY REACHED",
                    format!("add `{{ urgency = \"{urgency}\", contact = \"…\", after = 0 }}` to {id}'s rules"),
                ));
            }
        }
        let never: BTreeSet<Urgency> = person
            .rules
            .iter()
            .map(|r| r.urgency)
            .filter(|u| !receives.contains(u))
            .collect();
        for urgency in never {
            let why = if receives.is_empty() {
                format!("{id} is in no escalation policy of any service")
            } else {
                format!("no service that pages {id} raises {urgency}-urgency alerts")
            };
            out.push(finding(
                "rule-never-fires",
                Severity::Warning,
                vec![format!("person:{id}")],
                format!("{id}'s {urgency}-urgency notification rules never fire: {why}"),
                "a rule that never fires suggests the person expects pages they will not get",
                format!("add {id} to a policy, or remove the rules"),
            ));
        }
    }
}

/// People without a verified high-urgency contact; contacts and channels whose deliveries fail.
fn contacts(config: &OnCall, reach: &Reach, history: &History, out: &mut Vec<Finding>) {
    if let Some(verified) = &history.verified {
        for (id, person) in sorted(&config.people) {
            if !reach
                .urgencies
                .get(id)
                .is_some_and(|u| u.contains(&Urgency::High))
            {
                continue;
            }
            let ok = person.rules.iter().any(|r| {
                r.urgency == Urgency::High
                    && verified.iter().any(|(p, c)| p == id && *c == r.contact)
            });
            if !ok {
                out.push(finding(
                    "no-verified-high-contact",
                    Severity::Warning,
                    vec![format!("person:{id}")],
                    format!("{id} has no verified contact among their high-urgency rules"),
                    "nobody has shown that a page reaches them",
                    format!("keepwatch contact send-code {id} <contact>, then keepwatch contact verify {id} <contact> <code>"),
                ));
            }
        }
    }
    for d in &history.contacts {
        if d.failed > 0 && d.last_failed {
            out.push(finding(
                "failing-contact",
                Severity::Warning,
                vec![format!("contact:{}", d.name)],
                format!(
                    "deliveries to {} failed lately ({} of {}; last error: {})",
                    d.name,
                    d.failed,
                    d.total,
                    d.last_error.as_deref().unwrap_or("unknown")
                ),
                "pages through this contact do not arrive",
                "fix the contact's address in the on-call file (or its receiver), then verify it"
                    .into(),
            ));
        }
    }
    for d in &history.channels {
        if d.failed > 0 && d.last_failed {
            out.push(finding(
                "failing-channel",
                Severity::Warning,
                vec![format!("channel:{}", d.name)],
                format!(
                    "notifications through channel `{}` failed lately ({} of {}; last error: {})",
                    d.name,
                    d.failed,
                    d.total,
                    d.last_error.as_deref().unwrap_or("unknown")
                ),
                "check notifications through this channel do not arrive",
                "fix the channel's URL or its receiver".into(),
            ));
        }
    }
}

/// Checks that route nowhere, cron checks without a max runtime, grace shorter than recent
/// runs, checks that never pinged.
fn check_rules(config: &OnCall, checks: &[CheckFacts], now: DateTime<Utc>, out: &mut Vec<Finding>) {
    for check in checks {
        let object = vec![format!("check:{}", check.id)];
        let name = &check.name;
        let service = routing::service_for(Some(config), &check.id, check.service.as_deref());
        let routed = config
            .services
            .get(&service)
            .is_some_and(|s| config.policies.contains_key(&s.policy));
        if !routed {
            out.push(finding(
                "check-unrouted",
                Severity::Error,
                object.clone(),
                format!("check `{name}` routes to service `{service}`, which the on-call file does not have: its alerts page nobody"),
                "a failure of this job is recorded and nobody is told",
                format!("set the check's `service` to one of the file's services, or add a service `{service}`"),
            ));
        }
        if check.cron && check.max_runtime.is_none() {
            out.push(finding(
                "cron-no-max-runtime",
                Severity::Warning,
                object.clone(),
                format!("cron check `{name}` has no max runtime"),
                "a run that hangs after its start signal is not seen until the next run is missed",
                format!("set `max_runtime` on check `{name}` (seconds; a little above its longest normal run)"),
            ));
        }
        if let Some(longest) = check.recent_durations.iter().max()
            && *longest > check.grace
        {
            out.push(finding(
                "grace-shorter-than-runs",
                Severity::Warning,
                object.clone(),
                format!(
                    "check `{name}` has a grace of {} but recent runs took up to {}",
                    span(check.grace),
                    span(*longest)
                ),
                "a normal slow run is reported late, or down, before it finishes",
                format!("raise the grace of check `{name}` above {}", span(*longest)),
            ));
        }
        if let Some((at, why)) = &check.scan_skipped {
            out.push(finding(
                "stray-scan-skipped",
                Severity::Warning,
                object.clone(),
                format!(
                    "`keepwatch run` could not look for stray processes of check `{name}` at its newest run ({}): {why}",
                    at.format("%Y-%m-%d %H:%M UTC")
                ),
                "a copy of the job still running, or a process it watches for, goes unseen: no overlap alert is raised",
                "run the job where `keepwatch run` can read the processes (Linux /proc, not hidden by hidepid, the job's own user), or accept this finding with a reason".into(),
            ));
        }
        if check.last_ping.is_none()
            && let Some(first) = check.schedule.next_after(check.created_at)
            && first + check.grace < now
        {
            out.push(finding(
                "never-pinged",
                Severity::Warning,
                object.clone(),
                format!(
                    "check `{name}` has never pinged, although it was due {}",
                    first.format("%Y-%m-%d %H:%M UTC")
                ),
                "the job may not be wrapped or may ping the wrong URL: its failures go unseen",
                "wrap the job with `keepwatch run <check> -- <command>` or ping its URL at the end"
                    .into(),
            ));
        }
    }
}

/// Maintenance windows, current or coming, that cover a scheduled run of a check they hold.
fn maintenance(config: &OnCall, checks: &[CheckFacts], now: DateTime<Utc>, out: &mut Vec<Finding>) {
    for window in config.maintenance.iter().filter(|m| m.end > now) {
        for check in checks {
            let service = routing::service_for(Some(config), &check.id, check.service.as_deref());
            let applies = window.service.as_deref() == Some(service.as_str())
                || window.check.as_deref() == Some(check.id.as_str());
            if !applies {
                continue;
            }
            let from = window.start.max(now) - TimeDelta::seconds(1);
            let Some(run) = check.schedule.next_after(from).filter(|r| *r < window.end) else {
                continue;
            };
            let held = window
                .service
                .as_ref()
                .map_or(format!("check:{}", check.id), |s| format!("service:{s}"));
            out.push(finding(
                "maintenance-overlaps-run",
                Severity::Warning,
                vec![format!("check:{}", check.id), held],
                format!(
                    "a maintenance window ({} to {}) covers the run of check `{}` due {}",
                    window.start.format("%Y-%m-%d %H:%M"),
                    window.end.format("%Y-%m-%d %H:%M UTC"),
                    check.name,
                    run.format("%Y-%m-%d %H:%M UTC")
                ),
                "if that run fails, nobody is paged until the window ends",
                "move the window off the job's schedule, or accept it in the file with a reason"
                    .into(),
            ));
        }
    }
}

/// People who did not acknowledge a shift check-in in time.
fn missed_checkins(history: &History, out: &mut Vec<Finding>) {
    let mut by_person: BTreeMap<&str, Vec<&MissedCheckin>> = BTreeMap::new();
    for missed in &history.missed_checkins {
        by_person.entry(&missed.0).or_default().push(missed);
    }
    for (person, missed) in by_person {
        let last = missed.iter().map(|m| m.2).max().unwrap_or_default();
        out.push(finding(
            "missed-checkin",
            Severity::Warning,
            vec![format!("person:{person}")],
            format!(
                "{person} did not acknowledge {} shift check-in(s) in time (last: {}, schedule `{}`)",
                missed.len(),
                last.format("%Y-%m-%d %H:%M UTC"),
                missed.last().map_or("", |m| m.1.as_str())
            ),
            "a person on call who cannot be reached is found at the next alert, too late",
            format!("check {person}'s high-urgency contacts (keepwatch contact send-code) and their phone's settings"),
        ));
    }
}

/// Schedules that ask for check-ins with nobody to tell of a missed one: no fallback, and
/// one participant (nobody is ever on call before them).
fn checkins_tell_nobody(config: &OnCall, out: &mut Vec<Finding>) {
    let mut names: Vec<&String> = config.checkins.keys().collect();
    names.sort();
    for name in names {
        let (Some(rule), Some(schedule)) = (config.checkins.get(name), config.schedules.get(name))
        else {
            continue;
        };
        let people: BTreeSet<&str> = schedule
            .layers
            .iter()
            .flat_map(|l| l.participants.iter().map(String::as_str))
            .chain(schedule.overrides.iter().map(|o| o.user.as_str()))
            .collect();
        if rule.fallback.is_none() && people.len() < 2 {
            out.push(finding(
                "checkin-tells-nobody",
                Severity::Warning,
                vec![format!("schedule:{name}")],
                format!(
                    "schedule `{name}` asks for shift check-ins but a missed one tells nobody: no `fallback`, and nobody is on call before its only participant"
                ),
                "a person on call without signal is recorded, and nobody is told in time",
                format!("add a fallback: `checkin = {{ within = \"{}\", fallback = \"<person>\" }}`", crate::incident::format_duration(rule.within)),
            ));
        }
    }
}

/// The report as `keepwatch audit` prints it.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        out.push_str(&format!(
            "{} {} [{}]\n  {}\n  why: {}\n  fix: {}\n",
            f.severity.as_str().to_uppercase(),
            f.id,
            f.objects.join(", "),
            f.summary,
            f.why,
            f.fix
        ));
    }
    for f in &report.accepted {
        if let Some(note) = &f.accepted {
            out.push_str(&format!(
                "accepted {} [{}] until {}: {}\n",
                f.id,
                f.objects.join(", "),
                note.until.format("%Y-%m-%d"),
                note.reason
            ));
        }
    }
    out.push_str(&format!(
        "{} errors, {} warnings, {} accepted\n",
        report.errors,
        report.warnings,
        report.accepted.len()
    ));
    out
}

/// Deliveries per contact or channel from their outcomes, oldest first: `(name, failed,
/// error)`.
pub fn tally<'a>(
    outcomes: impl IntoIterator<Item = (&'a str, bool, Option<&'a str>)>,
) -> Vec<Deliveries> {
    let mut by_name: BTreeMap<&str, Deliveries> = BTreeMap::new();
    for (name, failed, error) in outcomes {
        let d = by_name.entry(name).or_insert_with(|| Deliveries {
            name: name.to_string(),
            failed: 0,
            total: 0,
            last_failed: false,
            last_error: None,
        });
        d.total += 1;
        d.last_failed = failed;
        if failed {
            d.failed += 1;
            d.last_error = error.map(str::to_string);
        }
    }
    by_name.into_values().collect()
}

/// What the audit knows of the checks a file declares (no history).
pub fn declared_checks(config: &OnCall, now: DateTime<Utc>) -> Vec<CheckFacts> {
    config
        .checks
        .iter()
        .filter_map(|c| {
            let subject = drill::Subject::declared(config, &c.slug, drill::Event::Down)?;
            let (schedule, grace) = subject.schedule?;
            Some(CheckFacts {
                id: c.slug.clone(),
                name: c.name.clone().unwrap_or_else(|| c.slug.clone()),
                service: c.service.clone(),
                schedule,
                cron: c.schedule.is_some(),
                grace,
                max_runtime: c.max_runtime.map(TimeDelta::seconds),
                // A file says nothing of pings: not flagged as never pinged.
                last_ping: Some(now),
                created_at: now,
                recent_durations: Vec::new(),
                scan_skipped: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three people in two weekly rotations, two steps, a repeat and a last resort, support
    /// hours with raising: nothing to find.
    const CLEAN: &str = r#"
[[people]]
id = "alice"
contacts = { email = "alice@example.com", ntfy = "https://ntfy.sh/alice" }
rules = [{ urgency = "high", contact = "ntfy", after = 0 }, { urgency = "low", contact = "email", after = 0 }]
[[people]]
id = "bob"
contacts = { email = "bob@example.com", ntfy = "https://ntfy.sh/bob" }
rules = [{ urgency = "high", contact = "ntfy", after = 0 }, { urgency = "low", contact = "email", after = 0 }]
[[people]]
id = "carol"
contacts = { email = "carol@example.com", ntfy = "https://ntfy.sh/carol" }
rules = [{ urgency = "high", contact = "ntfy", after = 0 }, { urgency = "low", contact = "email", after = 0 }]

[[schedules]]
name = "primary"
tz = "America/Denver"
[[schedules.layers]]
name = "weekly"
participants = ["alice", "bob", "carol"]
shift = "1w"
start = "2026-11-02T09:00"

[[schedules]]
name = "secondary"
tz = "America/Denver"
[[schedules.layers]]
name = "weekly"
participants = ["bob", "carol", "alice"]
shift = "1w"
start = "2026-11-02T09:00"

[[policies]]
name = "billing"
steps = [{ targets = ["schedule:primary"], delay = 15 }, { targets = ["schedule:secondary"], delay = 15 }]
repeat = 1
last_resort = "user:carol"

[[services]]
name = "billing"
policy = "billing"
urgency = "support-hours"
support_hours = { tz = "America/Denver", windows = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }], inside = "high", outside = "low" }
raise_after = 10
"#;

    fn now() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    fn nightly() -> CheckFacts {
        CheckFacts {
            id: "0b6a5f0e-3c1d-4e8f-9a2b-7c4d5e6f7a8b".into(),
            name: "nightly-events".into(),
            service: Some("billing".into()),
            schedule: Schedule::parse("0 0 * * *", "America/Denver").unwrap(),
            cron: true,
            grace: TimeDelta::hours(1),
            max_runtime: Some(TimeDelta::hours(2)),
            last_ping: Some(now() - TimeDelta::hours(5)),
            created_at: now() - TimeDelta::days(30),
            recent_durations: vec![TimeDelta::minutes(20)],
            scan_skipped: None,
        }
    }

    fn history() -> History {
        let verified = ["alice", "bob", "carol"]
            .map(|p| (p.to_string(), "ntfy".to_string()))
            .to_vec();
        History {
            verified: Some(verified),
            contacts: vec![Deliveries {
                name: "alice/ntfy".into(),
                failed: 0,
                total: 4,
                last_failed: false,
                last_error: None,
            }],
            channels: Vec::new(),
            missed_checkins: Vec::new(),
        }
    }

    fn run(text: &str, checks: &[CheckFacts], history: &History) -> Report {
        let config = OnCall::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        audit(&config, checks, history, now(), &Settings::default())
    }

    fn ids(report: &Report) -> Vec<&str> {
        report.findings.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn the_clean_configuration_has_no_findings() {
        let report = run(CLEAN, &[nightly()], &history());
        assert_eq!(report.findings, [], "{}", text(&report));
        assert_eq!(text(&report), "0 errors, 0 warnings, 0 accepted\n");
    }

    /// Each rule: a change to the clean configuration (or its checks and history) that
    /// triggers it.
    #[test]
    fn each_rule_has_a_configuration_that_triggers_it() {
        let weekdays = "start = \"2026-11-02T09:00\"\nwithin = [{ days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"], start = \"09:00\", end = \"17:00\" }]";
        let primary_layer = "participants = [\"alice\", \"bob\", \"carol\"]\nshift = \"1w\"\nstart = \"2026-11-02T09:00\"";
        let cases: Vec<(&str, String, Vec<CheckFacts>, History)> = vec![
            ("high-urgency-unreachable", CLEAN.replace("raise_after = 10", "raise_after = 0"), vec![nightly()], history()),
            ("urgency-raising-off", CLEAN.replace("raise_after = 10", "raise_after = 0"), vec![nightly()], history()),
            (
                "single-person-policy",
                format!("{CLEAN}\n[[policies]]\nname = \"solo\"\nsteps = [{{ targets = [\"user:alice\"], delay = 10 }}]\nrepeat = 1\n"),
                vec![nightly()],
                history(),
            ),
            (
                "no-repeat-no-last-resort",
                CLEAN.replace("repeat = 1\nlast_resort = \"user:carol\"", "repeat = 0"),
                vec![nightly()],
                history(),
            ),
            (
                "schedule-gap",
                CLEAN.replacen(primary_layer, &primary_layer.replace("start = \"2026-11-02T09:00\"", weekdays), 1),
                vec![nightly()],
                history(),
            ),
            (
                "step-resolves-to-nobody",
                CLEAN.replacen(primary_layer, &primary_layer.replace("start = \"2026-11-02T09:00\"", weekdays), 1),
                vec![nightly()],
                history(),
            ),
            (
                "off-hours-share",
                CLEAN.replacen("participants = [\"alice\", \"bob\", \"carol\"]", "participants = [\"alice\"]", 1),
                vec![nightly()],
                history(),
            ),
            (
                "no-rule-for-urgency",
                CLEAN.replacen(
                    "id = \"bob\"\ncontacts = { email = \"bob@example.com\", ntfy = \"https://ntfy.sh/bob\" }\nrules = [{ urgency = \"high\", contact = \"ntfy\", after = 0 }, ",
                    "id = \"bob\"\ncontacts = { email = \"bob@example.com\", ntfy = \"https://ntfy.sh/bob\" }\nrules = [",
                    1,
                ),
                vec![nightly()],
                history(),
            ),
            (
                "rule-never-fires",
                format!("[[people]]\nid = \"dave\"\ncontacts = {{ email = \"dave@example.com\" }}\nrules = [{{ urgency = \"high\", contact = \"email\", after = 0 }}]\n{CLEAN}"),
                vec![nightly()],
                history(),
            ),
            ("no-verified-high-contact", CLEAN.to_string(), vec![nightly()], {
                let mut h = history();
                h.verified.as_mut().unwrap().pop();
                h
            }),
            ("failing-contact", CLEAN.to_string(), vec![nightly()], {
                let mut h = history();
                h.contacts[0].failed = 2;
                h.contacts[0].last_failed = true;
                h.contacts[0].last_error = Some("HTTP 404".into());
                h
            }),
            ("failing-channel", CLEAN.to_string(), vec![nightly()], {
                let mut h = history();
                h.channels.push(Deliveries {
                    name: "ops-webhook".into(),
                    failed: 3,
                    total: 3,
                    last_failed: true,
                    last_error: Some("connection refused".into()),
                });
                h
            }),
            ("check-unrouted", CLEAN.to_string(), vec![CheckFacts { service: Some("payroll".into()), ..nightly() }], history()),
            ("cron-no-max-runtime", CLEAN.to_string(), vec![CheckFacts { max_runtime: None, ..nightly() }], history()),
            (
                "grace-shorter-than-runs",
                CLEAN.to_string(),
                vec![CheckFacts { recent_durations: vec![TimeDelta::minutes(20), TimeDelta::minutes(95)], ..nightly() }],
                history(),
            ),
            (
                "never-pinged",
                CLEAN.to_string(),
                vec![CheckFacts { last_ping: None, created_at: now() - TimeDelta::days(3), ..nightly() }],
                history(),
            ),
            (
                "maintenance-overlaps-run",
                format!("{CLEAN}\n[[maintenance]]\nservice = \"billing\"\nstart = \"2026-12-02T06:30:00Z\"\nend = \"2026-12-02T08:00:00Z\"\n"),
                vec![nightly()],
                history(),
            ),
            (
                "stray-scan-skipped",
                CLEAN.to_string(),
                vec![CheckFacts { scan_skipped: Some((now() - TimeDelta::hours(5), "no /proc on this system".into())), ..nightly() }],
                history(),
            ),
            (
                "checkin-tells-nobody",
                format!(
                    "{CLEAN}\n[[schedules]]\nname = \"solo\"\ntz = \"UTC\"\ncheckin = {{ within = \"15m\" }}\n\
                     [[schedules.layers]]\nname = \"l\"\nparticipants = [\"alice\"]\nshift = \"1w\"\nstart = \"2026-11-02T09:00\"\n"
                ),
                vec![nightly()],
                history(),
            ),
            ("missed-checkin", CLEAN.to_string(), vec![nightly()], {
                let mut h = history();
                h.missed_checkins.push(("bob".into(), "primary".into(), now() - TimeDelta::days(1)));
                h
            }),
        ];
        for (id, text, checks, history) in cases {
            let report = run(&text, &checks, &history);
            assert!(ids(&report).contains(&id), "{id}: {}", super::text(&report));
            let f = report.findings.iter().find(|f| f.id == id).unwrap();
            assert!(
                !f.objects.is_empty() && !f.why.is_empty() && !f.fix.is_empty(),
                "{f:?}"
            );
        }
        // And near misses that do not: a window off the run, a check that has not been due
        // yet, a low-only person who is paged at low only.
        let off_run = format!(
            "{CLEAN}\n[[maintenance]]\nservice = \"billing\"\nstart = \"2026-12-02T10:00:00Z\"\nend = \"2026-12-02T11:00:00Z\"\n"
        );
        assert_eq!(
            ids(&run(&off_run, &[nightly()], &history())),
            Vec::<&str>::new()
        );
        let with_checkin = CLEAN.replacen(
            "name = \"primary\"\ntz = \"America/Denver\"\n",
            "name = \"primary\"\ntz = \"America/Denver\"\ncheckin = { within = \"15m\" }\n",
            1,
        );
        assert!(with_checkin.contains("checkin ="));
        assert_eq!(
            ids(&run(&with_checkin, &[nightly()], &history())),
            Vec::<&str>::new(),
            "three people take turns: the one before is told"
        );
        let fresh = CheckFacts {
            last_ping: None,
            created_at: now() - TimeDelta::hours(1),
            ..nightly()
        };
        assert_eq!(ids(&run(CLEAN, &[fresh], &history())), Vec::<&str>::new());
    }

    #[test]
    fn the_unreachable_service_names_its_worst_hour_and_an_accepted_finding_stops_nagging() {
        let text = CLEAN.replace("raise_after = 10", "raise_after = 0");
        let report = run(&text, &[nightly()], &history());
        let f = report
            .findings
            .iter()
            .find(|f| f.id == "high-urgency-unreachable")
            .unwrap();
        // The check's deadlines (01:00 Denver each night): Saturday's waits longest.
        assert!(
            f.summary.contains("for 7 of 7 of its checks' deadlines"),
            "{}",
            f.summary
        );
        assert!(
            f.summary
                .contains("worst: an alert at Sat 01:00 (America/Denver)"),
            "{}",
            f.summary
        );
        assert!(
            f.summary.contains("until support hours start Mon 09:00"),
            "{}",
            f.summary
        );
        assert_eq!(f.severity, Severity::Error);
        assert!(report.fails(Severity::Error));
        // Accepted with a reason until next year: listed apart, not counted.
        let accepted = format!(
            "{text}\n[[accepted]]\nid = \"urgency-raising-off\"\nobjects = [\"service:billing\"]\nreason = \"billing is batch-only\"\nuntil = \"2027-06-30\"\n"
        );
        let report = run(&accepted, &[nightly()], &history());
        assert!(!ids(&report).contains(&"urgency-raising-off"));
        assert_eq!(report.accepted.len(), 1);
        assert!(super::text(&report).contains(
            "accepted urgency-raising-off [service:billing] until 2027-06-30: billing is batch-only"
        ));
        // Expired: it nags again.
        let expired = accepted.replace("2027-06-30", "2026-11-30");
        assert!(ids(&run(&expired, &[nightly()], &history())).contains(&"urgency-raising-off"));
        // Another object: not covered.
        let other = accepted.replace("service:billing", "service:payroll");
        assert!(ids(&run(&other, &[nightly()], &history())).contains(&"urgency-raising-off"));
    }
}
