//! A drill: an alert replayed at a chosen time through [`super::routing::timeline`] (the code
//! the engine's pager records from), as a report; and the week sweep, one drill per start
//! time over a week, with the time to the first page and to the first high-urgency page.
//!
//! Pure: the configuration and the times are arguments. The binary prints the report, the
//! server answers it as JSON (`/api/v1/drill`), and the audit reads the sweep.

use chrono::{DateTime, Datelike, FixedOffset, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::paging::{Page, Urgency, UrgencyRule};
use super::routing::{self, Notification, Routed};
use crate::oncall::config::OnCall;
use crate::schedule::Schedule;

crate::text_enum::text_enum! {
    /// What the drilled check did: the engine opens the same alert for each (overlap and
    /// anomaly under their own dedup key) and routes them alike.
    pub enum Event {
        Down = "down",
        Failed = "failed",
        Hung = "hung",
        Overlap = "overlap",
        Anomaly = "anomaly",
    }
}

/// What to drill: an alert of `service` (already resolved as the engine resolves it, see
/// [`routing::service_for`]), of check `check` if it comes from one, at `at`, followed until
/// `until` (an acknowledgment when `acknowledged`, else the end of the horizon).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub service: &'a str,
    pub check: Option<&'a str>,
    pub event: Event,
    pub at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub acknowledged: bool,
}

/// Somebody paged: when, how long after the trigger, who, through what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub at: DateTime<Utc>,
    pub after_minutes: i64,
    pub person: String,
    pub contact: String,
}

/// One line of a drill's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    /// As the alert log names it: `escalation_step`, `urgency_raised`, `last_resort`,
    /// `unreached`, `unrouted`, `missed_run`, `reminder`, `suppressed`, or `notify`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
    /// What the text report prints for it.
    pub text: String,
}

/// What a drill found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub service: String,
    /// The service's policy; `None`: the file has no such service (the alert is unrouted).
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    pub event: Event,
    pub at: DateTime<Utc>,
    pub urgency: Urgency,
    /// Why that urgency: `always`, `inside support hours`, `outside support hours`, `unknown
    /// service`.
    pub urgency_reason: String,
    /// Minutes until a low alert is raised to high; `None`: never (or not low).
    pub raise_after_minutes: Option<i64>,
    /// For a low alert that is never raised: when the service's rule next gives high urgency
    /// (its support hours start), the earliest a person is expected to look.
    pub next_high_urgency_at: Option<DateTime<Utc>>,
    pub entries: Vec<Entry>,
    pub first_page: Option<Hit>,
    pub first_high_page: Option<Hit>,
    pub notifications: usize,
    /// Acknowledged this long after the trigger; `None`: nobody acknowledged.
    pub acknowledged_after_minutes: Option<i64>,
    pub followed_minutes: i64,
    /// The check depends on one that is down now: its alert would be held back (why, as
    /// the alert log says it), and the timeline starts only once that check recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<String>,
}

/// When `rule` next gives high urgency at or after `from`, looking at most 8 days ahead on
/// a 5-minute grid (support hours are set in minutes).
pub fn next_high(rule: &UrgencyRule, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut t = from;
    let end = from + TimeDelta::days(8);
    let grid = TimeDelta::minutes(5);
    if rule.at(t) == Urgency::High {
        return Some(t);
    }
    // Onto the grid, then along it.
    let past = i64::from(t.minute() % 5) * 60 + i64::from(t.second());
    t += grid - TimeDelta::seconds(past);
    while t <= end {
        if rule.at(t) == Urgency::High {
            return Some(t);
        }
        t += grid;
    }
    None
}

/// Runs a drill: the alert's timeline as the engine would record it, with its summary.
pub fn drill(config: Option<&OnCall>, request: &Request<'_>) -> Report {
    let service = config.and_then(|c| c.services.get(request.service));
    let urgency = routing::urgency(config, request.service, request.at);
    let alert = routing::Alert {
        service: request.service,
        check: request.check,
        triggered_at: request.at,
        urgency,
        // A drill has no check that stays down: re-notifications are the engine's.
        missed: None,
    };
    let routed = routing::timeline(config, &alert, request.until);
    let urgency_reason = match service.map(|s| &s.urgency) {
        None => "unknown service",
        Some(UrgencyRule::Always(_)) => "always",
        Some(UrgencyRule::SupportHours { inside, .. }) if *inside == urgency => {
            "inside support hours"
        }
        Some(UrgencyRule::SupportHours { .. }) => "outside support hours",
    };
    let raise_after_minutes = match (urgency, service.and_then(|s| s.raise_after)) {
        (Urgency::Low, Some(after)) => Some(after.num_minutes()),
        _ => None,
    };
    let next_high_urgency_at = match (urgency, raise_after_minutes, service) {
        (Urgency::Low, None, Some(service)) => next_high(&service.urgency, request.at),
        _ => None,
    };
    let entries: Vec<Entry> = routed.iter().filter_map(|e| entry(config, e)).collect();
    let hit = |n: &Notification| Hit {
        at: n.at,
        after_minutes: (n.at - request.at).num_minutes(),
        person: n.person.clone(),
        contact: n.contact.clone(),
    };
    let notified = || {
        routed.iter().filter_map(|e| match e {
            Routed::Notify(n) => Some(n),
            _ => None,
        })
    };
    Report {
        service: request.service.to_string(),
        policy: service.map(|s| s.policy.clone()),
        check: request.check.map(str::to_string),
        event: request.event,
        at: request.at,
        urgency,
        urgency_reason: urgency_reason.to_string(),
        raise_after_minutes,
        next_high_urgency_at,
        first_page: notified().next().map(hit),
        first_high_page: notified().find(|n| n.urgency == Urgency::High).map(hit),
        notifications: notified().count(),
        entries,
        acknowledged_after_minutes: request
            .acknowledged
            .then(|| (request.until - request.at).num_minutes()),
        followed_minutes: (request.until - request.at).num_minutes(),
        held_back: None,
    }
}

fn entry(config: Option<&OnCall>, routed: &Routed) -> Option<Entry> {
    let mut entry = Entry {
        at: routed.at(),
        kind: routed.log().map_or("notify", |l| l.kind).to_string(),
        person: None,
        contact: None,
        urgency: None,
        text: String::new(),
    };
    entry.text = match routed {
        Routed::Unrouted { .. } => "unrouted: nobody is paged".to_string(),
        Routed::Escalation(Page::Step { step, pass, .. }) => {
            format!("escalation step {step} (pass {pass})")
        }
        Routed::Escalation(Page::UrgencyRaised { .. }) => "urgency raised to high".to_string(),
        Routed::Escalation(Page::LastResort { .. }) => "last resort".to_string(),
        Routed::Escalation(Page::Unreached { who, urgency, .. }) => {
            entry.person = Some(who.clone());
            entry.urgency = Some(*urgency);
            format!(
                "  NOBODY REACHED: {who} has no {} urgency rule or nobody on call",
                urgency.as_str()
            )
        }
        Routed::Notify(n) => {
            let address = n
                .address
                .as_deref()
                .map_or(String::new(), |a| format!(" <{a}>"));
            // Where the person lives, if the file says: a 00:15 page is 08:15 in Berlin.
            let their_time =
                config
                    .and_then(|c| c.time_zones.get(&n.person))
                    .map_or(String::new(), |tz| {
                        format!(
                            ", {} {}",
                            n.at.with_timezone(tz).format("%a %H:%M"),
                            tz.name()
                        )
                    });
            entry.person = Some(n.person.clone());
            entry.contact = Some(n.contact.clone());
            entry.urgency = Some(n.urgency);
            format!(
                "  notify {} by {}{address} ({}{their_time})",
                n.person,
                n.contact,
                n.urgency.as_str()
            )
        }
        Routed::Suppressed(n) => {
            entry.person = Some(n.person.clone());
            entry.contact = Some(n.contact.clone());
            entry.urgency = Some(n.urgency);
            format!(
                "  suppressed {} by {} ({}, maintenance window)",
                n.person,
                n.contact,
                n.urgency.as_str()
            )
        }
        Routed::Renotify { .. } | Routed::Reminder { .. } => routed.log()?.detail,
        // The timeline gives notifications as `Notify` or `Suppressed`.
        Routed::Escalation(Page::Notify { .. }) => return None,
    };
    Some(entry)
}

/// `+1:05`: how long after `from`.
pub fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let minutes = (to - from).num_minutes();
    format!("+{}:{:02}", minutes / 60, minutes % 60)
}

/// A report as `keepwatch drill` prints it, times in `offset`.
pub fn text(report: &Report, offset: FixedOffset) -> String {
    let local = |t: DateTime<Utc>| t.with_timezone(&offset).format("%a %Y-%m-%d %H:%M");
    let mut out = match &report.policy {
        Some(policy) => {
            let mut out = format!(
                "Alert on service `{}` at {} (policy `{policy}`)\n",
                report.service,
                local(report.at),
            );
            if let Some(check) = &report.check {
                out.push_str(&format!("check {check}: {}\n", report.event));
            }
            out.push_str(&format!(
                "urgency: {} ({})",
                report.urgency, report.urgency_reason
            ));
            match (report.urgency, report.raise_after_minutes) {
                (Urgency::Low, Some(after)) => out.push_str(&format!(
                    "; raised to high after {after} min without acknowledgment\n"
                )),
                (Urgency::Low, None) => out.push_str("; never raised (the service opted out)\n"),
                _ => out.push('\n'),
            }
            out
        }
        None => {
            let mut out = format!(
                "Alert on service `{}` at {} (not in the file: no escalation policy)\n",
                report.service,
                local(report.at),
            );
            if let Some(check) = &report.check {
                out.push_str(&format!("check {check}: {}\n", report.event));
            }
            out.push_str(&format!("urgency: {} (unknown service)\n", report.urgency));
            out
        }
    };
    if let Some(reason) = &report.held_back {
        out.push_str(&format!(
            "HELD BACK: {reason}: nobody is paged and no channel is told until it recovers; \
             the timeline below starts then\n"
        ));
    }
    for entry in &report.entries {
        out.push_str(&format!(
            "{:>6}  {}  {}\n",
            elapsed(report.at, entry.at),
            local(entry.at),
            entry.text
        ));
    }
    match &report.first_high_page {
        Some(hit) => out.push_str(&format!(
            "first high-urgency page: {} ({} by {})\n",
            elapsed(report.at, hit.at),
            hit.person,
            hit.contact
        )),
        None => {
            out.push_str("first high-urgency page: none\n");
            if let Some(next) = report.next_high_urgency_at {
                out.push_str(&format!(
                    "  the alert stays low: nobody is woken; support hours start {} ({})\n",
                    local(next),
                    elapsed(report.at, next)
                ));
            }
        }
    }
    match report.acknowledged_after_minutes {
        Some(minutes) => out.push_str(&format!(
            "acknowledged at {}: nothing more is sent\n",
            elapsed(report.at, report.at + TimeDelta::minutes(minutes))
        )),
        None => out.push_str(&format!(
            "nobody acknowledged: {} notifications in {}\n",
            report.notifications,
            span(report.followed_minutes)
        )),
    }
    out
}

/// `3h`, `90m`, `2d 4h`: a horizon as the user wrote it, roughly.
fn span(minutes: i64) -> String {
    let (d, h, m) = (minutes / 1440, (minutes % 1440) / 60, minutes % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(if d == 1 {
            "1day".to_string()
        } else {
            format!("{d}days")
        });
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 || parts.is_empty() {
        parts.push(format!("{m}m"));
    }
    parts.join(" ")
}

/// One start time of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub at: DateTime<Utc>,
    pub urgency: Urgency,
    pub first_page: Option<Hit>,
    pub first_high_page: Option<Hit>,
    /// With no high page: when the service's rule next gives high urgency (see
    /// [`Report::next_high_urgency_at`]).
    pub next_high_urgency_at: Option<DateTime<Utc>>,
}

impl SweepRow {
    /// How bad this start is, for finding the worst: minutes to the first high page; with
    /// none, worse than any page, and the longer until support hours the worse.
    fn badness(&self, horizon_minutes: i64) -> i64 {
        match (&self.first_high_page, self.next_high_urgency_at) {
            (Some(hit), _) => hit.after_minutes,
            (None, Some(next)) => horizon_minutes + 1 + (next - self.at).num_minutes(),
            (None, None) => i64::MAX,
        }
    }
}

/// A week (or any span) of drills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// `step`: every `step_minutes`; `schedule`: the check's own deadlines (a job can only
    /// fail when it is due).
    pub starts: String,
    pub step_minutes: Option<i64>,
    pub horizon_minutes: i64,
    pub rows: Vec<SweepRow>,
    /// The start with the longest wait for a high-urgency page (none counts as longest).
    pub worst: Option<SweepRow>,
    /// Median minutes to the first high page; `None` when half the starts or more get none.
    pub median_high_minutes: Option<i64>,
    pub median_page_minutes: Option<i64>,
    /// Start times with no high page within the horizon, and no page at all.
    pub no_high: usize,
    pub no_page: usize,
}

/// The start times of a sweep from `from` for `span`: every `step`, or the deadlines of a
/// check's `schedule` (each expected run plus `grace`).
pub fn starts(
    from: DateTime<Utc>,
    span: TimeDelta,
    step: TimeDelta,
    schedule: Option<(&Schedule, TimeDelta)>,
) -> Vec<DateTime<Utc>> {
    let end = from + span;
    let mut out = Vec::new();
    match schedule {
        Some((schedule, grace)) => {
            let mut expected = schedule.next_after(from - grace - TimeDelta::seconds(1));
            while let Some(run) = expected
                && run + grace < end
                && out.len() < 100_000
            {
                if run + grace >= from {
                    out.push(run + grace);
                }
                expected = schedule.next_after(run);
            }
        }
        None => {
            let step = step.max(TimeDelta::minutes(1));
            let mut t = from;
            while t < end {
                out.push(t);
                t += step;
            }
        }
    }
    out
}

/// One drill per start time, each followed for `horizon` without acknowledgment.
pub fn sweep(
    config: Option<&OnCall>,
    service: &str,
    check: Option<&str>,
    starts: &[DateTime<Utc>],
    horizon: TimeDelta,
) -> Vec<SweepRow> {
    starts
        .iter()
        .map(|at| {
            let report = drill(
                config,
                &Request {
                    service,
                    check,
                    event: Event::Down,
                    at: *at,
                    until: *at + horizon,
                    acknowledged: false,
                },
            );
            SweepRow {
                at: *at,
                urgency: report.urgency,
                first_page: report.first_page,
                first_high_page: report.first_high_page,
                next_high_urgency_at: report.next_high_urgency_at,
            }
        })
        .collect()
}

/// The sweep's summary: worst, medians, counts.
pub fn summarize(
    service: &str,
    check: Option<&str>,
    step: Option<TimeDelta>,
    horizon: TimeDelta,
    rows: Vec<SweepRow>,
) -> Sweep {
    let horizon_minutes = horizon.num_minutes();
    let worst = rows
        .iter()
        .max_by_key(|row| (row.badness(horizon_minutes), std::cmp::Reverse(row.at)))
        .cloned();
    let median = |minutes: Vec<Option<i64>>| {
        let mut sorted: Vec<i64> = minutes
            .iter()
            .map(|m| m.unwrap_or(i64::MAX))
            .collect::<Vec<_>>();
        sorted.sort_unstable();
        let middle = *sorted.get(sorted.len().saturating_sub(1) / 2)?;
        (middle != i64::MAX).then_some(middle)
    };
    let high: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.first_high_page.as_ref().map(|h| h.after_minutes))
        .collect();
    let any: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.first_page.as_ref().map(|h| h.after_minutes))
        .collect();
    Sweep {
        service: service.to_string(),
        check: check.map(str::to_string),
        starts: if step.is_some() { "step" } else { "schedule" }.into(),
        step_minutes: step.map(|s| s.num_minutes()),
        horizon_minutes,
        no_high: high.iter().filter(|m| m.is_none()).count(),
        no_page: any.iter().filter(|m| m.is_none()).count(),
        median_high_minutes: median(high),
        median_page_minutes: median(any),
        worst,
        rows,
    }
}

/// `0m`, `10m`, `2h05`, `57h`: a wait, short enough for a table cell.
pub fn wait(minutes: i64) -> String {
    match minutes {
        m if m < 60 => format!("{m}m"),
        m if m < 600 && m % 60 != 0 => format!("{}h{:02}", m / 60, m % 60),
        m => format!("{}h", m / 60),
    }
}

/// The sweep as `keepwatch drill --sweep week` prints it: a table of days × hours (times
/// in `offset`) of the minutes to the first high-urgency page (`-`: none within the
/// horizon; `.`: no start then), then the worst and the medians.
pub fn sweep_text(sweep: &Sweep, offset: FixedOffset) -> String {
    let local = |t: DateTime<Utc>| t.with_timezone(&offset);
    let mut out = format!(
        "Week sweep of service `{}`{}: time to the first high-urgency page (each alert followed {} unacknowledged; `-`: none, `.`: no start)\n",
        sweep.service,
        sweep
            .check
            .as_ref()
            .map_or(String::new(), |c| format!(" (check {c})")),
        span(sweep.horizon_minutes),
    );
    out.push_str("           ");
    for hour in 0..24 {
        out.push_str(&format!("{hour:>5}"));
    }
    out.push('\n');
    // One line per local day, one cell per hour: the first start of that hour.
    let mut days: Vec<(chrono::NaiveDate, [Option<&SweepRow>; 24])> = Vec::new();
    for row in &sweep.rows {
        let t = local(row.at);
        let date = t.date_naive();
        if days.last().is_none_or(|(d, _)| *d != date) {
            days.push((date, [None; 24]));
        }
        let cells = &mut days.last_mut().expect("pushed above").1;
        let cell = &mut cells[t.hour() as usize];
        if cell.is_none() {
            *cell = Some(row);
        }
    }
    for (date, cells) in &days {
        out.push_str(&format!("{} {:>6}", date.weekday(), date.format("%m-%d")));
        for cell in cells {
            let text = match cell {
                None => ".".to_string(),
                Some(row) => match &row.first_high_page {
                    Some(hit) => wait(hit.after_minutes),
                    None => "-".to_string(),
                },
            };
            out.push_str(&format!("{text:>5}"));
        }
        out.push('\n');
    }
    let fmt = |t: DateTime<Utc>| local(t).format("%a %Y-%m-%d %H:%M").to_string();
    if let Some(worst) = &sweep.worst {
        let what = match (&worst.first_high_page, worst.next_high_urgency_at) {
            (Some(hit), _) => format!(
                "first high-urgency page after {} ({} by {})",
                wait(hit.after_minutes),
                hit.person,
                hit.contact
            ),
            (None, Some(next)) => format!(
                "no high-urgency page; nobody is woken until support hours start {} ({} later)",
                fmt(next),
                wait((next - worst.at).num_minutes())
            ),
            (None, None) => "no high-urgency page at all".to_string(),
        };
        out.push_str(&format!("worst: an alert at {}: {what}\n", fmt(worst.at)));
    }
    let median = |m: Option<i64>| m.map_or("none".to_string(), wait);
    out.push_str(&format!(
        "median: first page {}, first high-urgency page {}\n",
        median(sweep.median_page_minutes),
        median(sweep.median_high_minutes)
    ));
    out.push_str(&format!(
        "{} of {} start times get no high-urgency page, {} no page at all\n",
        sweep.no_high,
        sweep.rows.len(),
        sweep.no_page
    ));
    out
}

/// What is drilled, resolved as the engine resolves it.
#[derive(Debug, Clone)]
pub struct Subject {
    pub service: String,
    /// The check's UUID (or its slug, for a check only a file declares).
    pub check: Option<String>,
    /// The check's schedule and grace, when known: a sweep then starts at its deadlines.
    pub schedule: Option<(Schedule, TimeDelta)>,
    pub event: Event,
}

impl Subject {
    /// A check declared in the file's `[[checks]]` by `slug`: its service as the engine
    /// would route it, its schedule (cron and time zone, or period) and grace. `None` if the
    /// file declares no such check.
    pub fn declared(config: &OnCall, slug: &str, event: Event) -> Option<Subject> {
        let check = config.checks.iter().find(|c| c.slug == slug)?;
        let schedule = match (&check.schedule, check.timeout) {
            (Some(expr), _) => Schedule::parse(expr, check.tz.as_deref().unwrap_or("UTC")).ok(),
            (None, Some(secs)) => Some(Schedule::Period(std::time::Duration::from_secs(
                secs.max(1) as u64,
            ))),
            (None, None) => Some(Schedule::Period(std::time::Duration::from_secs(86_400))),
        };
        Some(Subject {
            service: routing::service_for(Some(config), slug, check.service.as_deref()),
            check: Some(slug.to_string()),
            schedule: schedule.map(|s| (s, TimeDelta::seconds(check.grace.unwrap_or(3600)))),
            event,
        })
    }
}

/// How to drill: the start, an acknowledgment, how long to follow, and a sweep.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub at: DateTime<Utc>,
    pub ack_after: Option<TimeDelta>,
    pub horizon: TimeDelta,
    /// Sweep `span` (a week) from `at`, a start every `step` (or at the check's deadlines).
    pub sweep: Option<(TimeDelta, TimeDelta)>,
}

/// A drill or a sweep, as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Drill(Report),
    Sweep(Sweep),
}

/// Runs what `options` asks for `subject`.
pub fn run(config: Option<&OnCall>, subject: &Subject, options: &Options) -> Outcome {
    match options.sweep {
        None => {
            let (until, acknowledged) = match options.ack_after {
                Some(ack) => (options.at + ack, true),
                None => (options.at + options.horizon, false),
            };
            Outcome::Drill(drill(
                config,
                &Request {
                    service: &subject.service,
                    check: subject.check.as_deref(),
                    event: subject.event,
                    at: options.at,
                    until,
                    acknowledged,
                },
            ))
        }
        Some((span, step)) => {
            let schedule = subject.schedule.as_ref().map(|(s, grace)| (s, *grace));
            let starts = starts(options.at, span, step, schedule);
            let rows = sweep(
                config,
                &subject.service,
                subject.check.as_deref(),
                &starts,
                options.horizon,
            );
            let step = schedule.is_none().then_some(step);
            Outcome::Sweep(summarize(
                &subject.service,
                subject.check.as_deref(),
                step,
                options.horizon,
                rows,
            ))
        }
    }
}

/// Why a drill or sweep fails `--fail-if-no-high-within` (`high`) or
/// `--fail-if-no-page-within` (`page`): one line per failing start, worst first; empty when
/// it passes.
pub fn failures(
    outcome: &Outcome,
    high: Option<TimeDelta>,
    page: Option<TimeDelta>,
) -> Vec<String> {
    let rows: Vec<(DateTime<Utc>, Option<&Hit>, Option<&Hit>)> = match outcome {
        Outcome::Drill(r) => vec![(r.at, r.first_page.as_ref(), r.first_high_page.as_ref())],
        Outcome::Sweep(s) => s
            .rows
            .iter()
            .map(|r| (r.at, r.first_page.as_ref(), r.first_high_page.as_ref()))
            .collect(),
    };
    let mut out = Vec::new();
    for (limit, what, pick) in [(high, "high-urgency page", 2), (page, "page", 1)] {
        let Some(limit) = limit else { continue };
        let late: Vec<DateTime<Utc>> = rows
            .iter()
            .filter(|(_, any, high)| {
                let hit = if pick == 2 { high } else { any };
                hit.is_none_or(|h| h.after_minutes > limit.num_minutes())
            })
            .map(|(at, _, _)| *at)
            .collect();
        if let Some(first) = late.first() {
            out.push(format!(
                "no {what} within {} for {} of {} start times (the first: {})",
                wait(limit.num_minutes()),
                late.len(),
                rows.len(),
                first.to_rfc3339()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../examples/oncall.toml");

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_week_sweep_of_the_example_is_paged_at_high_within_ten_minutes_everywhere() {
        let config = OnCall::parse(EXAMPLE).unwrap();
        // The week after the rotations start (before 2026-11-23 09:00 nobody is on call).
        let from = utc("2026-11-30T07:00:00Z");
        let starts = starts(from, TimeDelta::days(7), TimeDelta::hours(1), None);
        assert_eq!(starts.len(), 168);
        let rows = sweep(
            Some(&config),
            "billing",
            None,
            &starts,
            TimeDelta::hours(24),
        );
        let sweep = summarize(
            "billing",
            None,
            Some(TimeDelta::hours(1)),
            TimeDelta::hours(24),
            rows,
        );
        assert_eq!(sweep.no_high, 0);
        // Outside support hours the alert is low: raised after 10 minutes.
        let worst = sweep.worst.clone().unwrap();
        assert_eq!(worst.first_high_page.unwrap().after_minutes, 10);
        assert_eq!(sweep.median_page_minutes, Some(0));
        assert_eq!(sweep.median_high_minutes, Some(10));
        let text = sweep_text(&sweep, FixedOffset::west_opt(7 * 3600).unwrap());
        assert!(text.contains("\nMon  11-30"), "{text}");
        // Monday 09:00 Denver is high at once; 08:00 is low and raised.
        let monday = text.lines().find(|l| l.starts_with("Mon")).unwrap();
        let cells: Vec<&str> = monday.split_whitespace().skip(2).collect();
        assert_eq!((cells[8], cells[9], cells[17]), ("10m", "0m", "10m"));
    }

    #[test]
    fn without_raising_the_worst_start_is_the_longest_wait_for_support_hours() {
        let config =
            OnCall::parse(&EXAMPLE.replace("raise_after = 10 ", "raise_after = 0 ")).unwrap();
        let nightly = Schedule::parse("0 0 * * *", "America/Denver").unwrap();
        let from = utc("2026-11-23T07:00:00Z");
        let starts = starts(
            from,
            TimeDelta::days(7),
            TimeDelta::hours(1),
            Some((&nightly, TimeDelta::zero())),
        );
        assert_eq!(starts.len(), 7);
        let rows = sweep(
            Some(&config),
            "billing",
            None,
            &starts,
            TimeDelta::hours(72),
        );
        let sweep = summarize("billing", None, None, TimeDelta::hours(72), rows);
        assert_eq!(sweep.no_high, 7);
        let worst = sweep.worst.unwrap();
        // Saturday 00:00 waits until Monday 09:00: the longest.
        assert_eq!(worst.at, utc("2026-11-28T07:00:00Z"));
        assert_eq!(
            worst.next_high_urgency_at,
            Some(utc("2026-11-30T16:00:00Z"))
        );
        assert_eq!(sweep.median_high_minutes, None);
    }

    #[test]
    fn a_drill_report_reads_as_json_and_back() {
        let config = OnCall::parse(EXAMPLE).unwrap();
        let at = utc("2026-11-28T07:00:00Z");
        let report = drill(
            Some(&config),
            &Request {
                service: "billing",
                check: None,
                event: Event::Hung,
                at,
                until: at + TimeDelta::minutes(12),
                acknowledged: true,
            },
        );
        assert_eq!(report.first_page.as_ref().unwrap().after_minutes, 0);
        assert_eq!(report.first_high_page.as_ref().unwrap().after_minutes, 10);
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        let text = text(&report, FixedOffset::west_opt(7 * 3600).unwrap());
        assert!(text.ends_with("acknowledged at +0:12: nothing more is sent\n"));
    }
}
