//! When a check expects its next ping.
//!
//! A check has one of three kinds of schedule, as in Healthchecks:
//!
//! - a **period** (`timeout`): the next ping is due `timeout` after the last one;
//! - a **cron expression** with an IANA time zone, in the 5-field dialect Healthchecks accepts
//!   (ranges, steps, lists, month and weekday names, `L`, `#`, `@daily`-style aliases, and the
//!   Vixie rule that a restricted day-of-month and a restricted day-of-week are OR-ed);
//! - one or more **systemd OnCalendar expressions** (one per line), auto-detected in the same
//!   `schedule` field, see [`oncalendar`].
//!
//! # The DST rule
//!
//! Cron schedules follow Debian cron and Healthchecks' cronsim, which croner 4 matches:
//!
//! - a job whose fixed local time does not exist (02:30 on a spring-forward night) fires once,
//!   at the first instant after the gap (03:00 local);
//! - a job whose fixed local time occurs twice (01:30 on a fall-back night) fires once, at the
//!   first occurrence;
//! - jobs with a wildcard or stepped hour (`*/15 * * * *`, `30 * * * *`) follow the wall clock:
//!   they fire at every real instant whose local time matches, so an hourly job runs twice in
//!   the repeated hour and skips the missing one.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use keepwatch_core::schedule::Schedule;
//!
//! let schedule = Schedule::parse("30 2 * * *", "America/Denver").unwrap();
//! // 2026-03-08 is the spring-forward night in Denver: 02:30 does not exist that night.
//! let after = Utc.with_ymd_and_hms(2026, 3, 8, 0, 0, 0).unwrap();
//! let next = schedule.next_after(after).unwrap();
//! assert_eq!(next.to_rfc3339(), "2026-03-08T09:00:00+00:00"); // 03:00 MDT
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

pub mod oncalendar;

use oncalendar::OnCalendar;

/// Names of the five cron fields, in order, for error messages.
const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const FIELD_RANGES: [&str; 5] = ["0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-7 or SUN-SAT"];

/// Why a schedule expression or time zone was rejected. The message names the bad part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError(String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

/// A validated IANA time zone name.
pub fn parse_tz(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError(format!("unknown time zone `{name}`")))
}

/// A parsed, valid schedule: a period, a cron expression or OnCalendar expressions.
#[derive(Debug, Clone)]
pub enum Schedule {
    Period(Duration),
    Cron {
        expr: String,
        cron: Box<Cron>,
        tz: Tz,
    },
    OnCalendar {
        expr: String,
        items: Vec<OnCalendar>,
        tz: Tz,
    },
}

impl Schedule {
    /// Parses a `schedule` field: OnCalendar when it looks like one (Healthchecks' rule),
    /// cron otherwise.
    pub fn parse(expr: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let schedule = Schedule::parse_stored(expr, tz)?;
        // As Healthchecks (cronsim): a cron expression that never matches a date
        // (`0 0 30 2 *`) is refused, not accepted as a check that can never be late.
        if matches!(schedule, Schedule::Cron { .. })
            && schedule.next_after(healthchecks_epoch()).is_none()
        {
            return Err(ScheduleError(format!("cron `{}` never fires", expr.trim())));
        }
        Ok(schedule)
    }

    /// [`Schedule::parse`] for a stored check: a cron expression that never fires, which
    /// older versions accepted, still loads (the check is then never late).
    pub fn parse_stored(expr: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_tz(tz)?;
        let expr = expr.trim();
        // Healthchecks sends `@daily` to OnCalendar (and rejects it); we accept the cron aliases.
        if !expr.starts_with('@') && oncalendar::looks_like_oncalendar(expr) {
            let items = expr
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(|line| {
                    line.parse::<OnCalendar>()
                        .map_err(|e| ScheduleError(format!("OnCalendar `{line}`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>();
            let items = match items {
                Ok(items) => items,
                // A one-line expression with no time in it was most likely meant as cron with
                // the wrong number of fields: say that, not what OnCalendar disliked.
                Err(_) if !expr.contains('\n') && !expr.contains(':') => {
                    return Err(parse_cron(expr).err().unwrap_or_else(|| {
                        ScheduleError(format!(
                            "`{expr}` is not a valid cron or OnCalendar expression"
                        ))
                    }));
                }
                Err(e) => return Err(e),
            };
            if items.is_empty() {
                return Err(ScheduleError("empty schedule".into()));
            }
            let schedule = Schedule::OnCalendar {
                expr: expr.to_string(),
                items,
                tz,
            };
            // Healthchecks rejects expressions that parse but never fire (`2-30`, say).
            if schedule.next_after(healthchecks_epoch()).is_none() {
                return Err(ScheduleError(format!("OnCalendar `{expr}` never fires")));
            }
            return Ok(schedule);
        }
        let cron = parse_cron(expr)?;
        Ok(Schedule::Cron {
            expr: expr.to_string(),
            cron: Box::new(cron),
            tz,
        })
    }

    /// The first expected ping strictly after `after`, or `None` if the schedule never fires
    /// again (an OnCalendar expression pinned to a past year, say).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Period(period) => Some(after + *period),
            Schedule::Cron { cron, tz, .. } => {
                let local = after.with_timezone(tz);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
            Schedule::OnCalendar { items, tz, .. } => items
                .iter()
                .filter_map(|item| item.next_after(after, *tz))
                .min(),
        }
    }

    /// The expression text for cron and OnCalendar schedules.
    pub fn expr(&self) -> Option<&str> {
        match self {
            Schedule::Period(_) => None,
            Schedule::Cron { expr, .. } | Schedule::OnCalendar { expr, .. } => Some(expr),
        }
    }

    /// The schedule in words, for people: croner's description of a cron expression
    /// ("At 02:00 AM, on Saturday"), with its time zone.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Period(period) => {
                format!(
                    "every {}",
                    humanize_secs(i64::try_from(period.as_secs()).unwrap_or(i64::MAX))
                )
            }
            Schedule::Cron { cron, tz, .. } => {
                format!("{} ({tz})", cron.describe().trim_end_matches('.'))
            }
            Schedule::OnCalendar { expr, tz, .. } => {
                format!("systemd OnCalendar {} ({tz})", expr.replace('\n', "; "))
            }
        }
    }

    /// The time zone of cron and OnCalendar schedules.
    pub fn tz(&self) -> Option<Tz> {
        match self {
            Schedule::Period(_) => None,
            Schedule::Cron { tz, .. } | Schedule::OnCalendar { tz, .. } => Some(*tz),
        }
    }
}

/// Seconds as the largest whole unit or two ("1 day", "2 h 30 min", "45 s").
fn humanize_secs(secs: i64) -> String {
    let units = [(86_400, "day"), (3_600, "h"), (60, "min"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs.max(0);
    for (size, name) in units {
        if rest >= size && parts.len() < 2 {
            let n = rest / size;
            rest %= size;
            parts.push(match (name, n) {
                ("day", 1) => "1 day".to_string(),
                ("day", n) => format!("{n} days"),
                (name, n) => format!("{n} {name}"),
            });
        }
    }
    if parts.is_empty() {
        "0 s".into()
    } else {
        parts.join(" ")
    }
}

/// cronsim's rule (from Vixie cron): day-of-month and day-of-week are OR-ed, unless either
/// field starts with `*` (so `*/2` counts as a wildcard), in which case they are AND-ed.
/// 2000-01-01, where Healthchecks starts looking for a schedule's first firing.
fn healthchecks_epoch() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default()
}

fn parser(dom_and_dow: bool) -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(dom_and_dow)
        .build()
}

/// Parses a 5-field cron expression in Healthchecks' dialect, with an error that names the
/// offending field.
pub fn parse_cron(expr: &str) -> Result<Cron, ScheduleError> {
    let expr = expr.trim();
    // cronsim knows @midnight and @reboot is meaningless for a monitor; croner lacks @midnight.
    let expr = match expr.to_ascii_lowercase().as_str() {
        "@midnight" => "@daily",
        _ => expr,
    };
    if expr.starts_with('@') {
        let known = [
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@hourly",
        ];
        if !known.iter().any(|k| k.eq_ignore_ascii_case(expr)) {
            return Err(ScheduleError(format!(
                "unknown alias `{expr}` (expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"
            )));
        }
        return parser(true)
            .parse(expr)
            .map_err(|e| ScheduleError(format!("invalid cron expression: {e}")));
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(ScheduleError(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
            fields.len()
        )));
    }
    for (i, field) in fields.iter().enumerate() {
        // croner accepts Quartz extras that cronsim (and so Healthchecks) rejects; look at the
        // field with month and weekday names removed, since JUL and WED contain L and W.
        let bare = without_names(field);
        if bare.contains(['?', 'W']) {
            return Err(field_error(i, field, "`?` and `W` are not supported"));
        }
        if i != 2 && i != 4 && bare.contains('L') {
            return Err(field_error(
                i,
                field,
                "`L` is only allowed in day-of-month and day-of-week",
            ));
        }
        if i != 4 && bare.contains('#') {
            return Err(field_error(i, field, "`#` is only allowed in day-of-week"));
        }
        // Parse the field alone, the others wildcards, so the error names this field.
        let mut probe = ["*"; 5];
        probe[i] = field;
        if let Err(e) = parser(true).parse(&probe.join(" ")) {
            let why = format!(
                "{} (allowed: {})",
                strip_croner_prefix(&e.to_string()),
                FIELD_RANGES[i]
            );
            return Err(field_error(i, field, &why));
        }
    }
    let dom_and_dow = fields[2].starts_with('*') || fields[4].starts_with('*');
    parser(dom_and_dow)
        .parse(expr)
        .map_err(|e| ScheduleError(format!("invalid cron expression: {e}")))
}

/// The field in upper case with month and weekday names removed.
fn without_names(field: &str) -> String {
    const NAMES: [&str; 19] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", "SUN",
        "MON", "TUE", "WED", "THU", "FRI", "SAT",
    ];
    let mut rest = field.to_ascii_uppercase();
    for name in NAMES {
        rest = rest.replace(name, "");
    }
    rest
}

fn field_error(index: usize, field: &str, why: &str) -> ScheduleError {
    ScheduleError(format!(
        "field {} ({}) `{}` is invalid: {}",
        index + 1,
        FIELD_NAMES[index],
        field,
        why
    ))
}

fn strip_croner_prefix(message: &str) -> String {
    let message = message
        .trim_start_matches("Invalid pattern: ")
        .trim_start_matches("Component error: ")
        .trim_start_matches("Pattern contains illegal characters: ")
        .trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn schedules_in_words() {
        let nightly = Schedule::parse("0 2 * * 6", "America/Denver").unwrap();
        let words = nightly.describe();
        assert!(
            words.contains("02:00") && words.contains("Saturday"),
            "{words}"
        );
        assert!(words.ends_with("(America/Denver)"), "{words}");
        let period = Schedule::Period(Duration::from_secs(90 * 60));
        assert_eq!(period.describe(), "every 1 h 30 min");
        assert_eq!(
            Schedule::Period(Duration::from_secs(86_400)).describe(),
            "every 1 day"
        );
    }

    /// The next `n` fire times after `after`, as RFC 3339 in the schedule's zone.
    fn fires(expr: &str, tz: &str, after: DateTime<Utc>, n: usize) -> Vec<String> {
        let schedule = Schedule::parse(expr, tz).unwrap();
        let zone = parse_tz(tz).unwrap();
        let mut out = Vec::new();
        let mut t = after;
        for _ in 0..n {
            t = schedule.next_after(t).unwrap();
            out.push(t.with_timezone(&zone).to_rfc3339());
        }
        out
    }

    #[test]
    fn spring_forward_fixed_time_fires_once_after_the_gap() {
        // Denver: 2026-03-08 02:00 MST jumps to 03:00 MDT.
        let got = fires("30 2 * * *", "America/Denver", utc(2026, 3, 7, 0, 0), 3);
        assert_eq!(
            got,
            [
                "2026-03-07T02:30:00-07:00",
                "2026-03-08T03:00:00-06:00",
                "2026-03-09T02:30:00-06:00"
            ]
        );
    }

    #[test]
    fn fall_back_fixed_time_fires_once_at_first_occurrence() {
        // Denver: 2026-11-01 02:00 MDT falls back to 01:00 MST; 01:30 happens twice.
        let got = fires("30 1 * * *", "America/Denver", utc(2026, 10, 31, 12, 0), 3);
        assert_eq!(
            got,
            [
                "2026-11-01T01:30:00-06:00",
                "2026-11-02T01:30:00-07:00",
                "2026-11-03T01:30:00-07:00"
            ]
        );
    }

    #[test]
    fn london_hourly_job_follows_the_wall_clock_across_both_changes() {
        // London: 2026-03-29 01:00 GMT jumps to 02:00 BST; 2026-10-25 02:00 BST back to 01:00 GMT.
        let spring = fires("30 * * * *", "Europe/London", utc(2026, 3, 29, 0, 0), 3);
        assert_eq!(
            spring,
            [
                "2026-03-29T00:30:00+00:00",
                "2026-03-29T02:30:00+01:00",
                "2026-03-29T03:30:00+01:00"
            ]
        );
        let fall = fires("30 * * * *", "Europe/London", utc(2026, 10, 24, 23, 0), 3);
        assert_eq!(
            fall,
            [
                "2026-10-25T00:30:00+01:00",
                "2026-10-25T01:30:00+01:00",
                "2026-10-25T01:30:00+00:00"
            ]
        );
    }

    #[test]
    fn a_week_of_weekday_schedule_in_denver() {
        // Weekdays at 00:00: Sat 2026-11-28 to the following Saturday.
        let got = fires(
            "0 0 * * MON-FRI",
            "America/Denver",
            utc(2026, 11, 28, 12, 0),
            5,
        );
        assert_eq!(
            got,
            [
                "2026-11-30T00:00:00-07:00",
                "2026-12-01T00:00:00-07:00",
                "2026-12-02T00:00:00-07:00",
                "2026-12-03T00:00:00-07:00",
                "2026-12-04T00:00:00-07:00"
            ]
        );
    }

    #[test]
    fn dom_and_dow_are_ored_like_vixie_cron() {
        // The 1st of the month OR any Monday.
        let got = fires("0 12 1 * MON", "UTC", utc(2026, 11, 26, 0, 0), 3);
        assert_eq!(
            got,
            [
                "2026-11-30T12:00:00+00:00",
                "2026-12-01T12:00:00+00:00",
                "2026-12-07T12:00:00+00:00"
            ]
        );
    }

    #[test]
    fn a_stepped_wildcard_day_of_month_is_anded_like_cronsim() {
        // `*/2` starts with `*`: odd days that are also Mondays.
        let got = fires("0 12 */2 * MON", "UTC", utc(2026, 11, 26, 0, 0), 2);
        assert_eq!(
            got,
            ["2026-12-07T12:00:00+00:00", "2026-12-21T12:00:00+00:00"]
        );
    }

    #[test]
    fn last_day_and_nth_weekday() {
        let got = fires("0 0 L * *", "UTC", utc(2026, 1, 15, 0, 0), 2);
        assert_eq!(
            got,
            ["2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00"]
        );
        // The second Tuesday of each month.
        let got = fires("0 9 * * 2#2", "UTC", utc(2026, 11, 1, 0, 0), 2);
        assert_eq!(
            got,
            ["2026-11-10T09:00:00+00:00", "2026-12-08T09:00:00+00:00"]
        );
    }

    #[test]
    fn aliases_and_steps() {
        assert_eq!(
            fires("@daily", "UTC", utc(2026, 11, 26, 5, 0), 1),
            ["2026-11-27T00:00:00+00:00"]
        );
        assert_eq!(
            fires("@midnight", "UTC", utc(2026, 11, 26, 5, 0), 1),
            ["2026-11-27T00:00:00+00:00"]
        );
        assert_eq!(
            fires("*/20 8-9 * * *", "UTC", utc(2026, 11, 26, 8, 30), 3),
            [
                "2026-11-26T08:40:00+00:00",
                "2026-11-26T09:00:00+00:00",
                "2026-11-26T09:20:00+00:00"
            ]
        );
    }

    #[test]
    fn errors_name_the_bad_field() {
        let err = |e: &str| Schedule::parse(e, "UTC").unwrap_err().to_string();
        assert!(
            err("61 * * * *").starts_with("field 1 (minute) `61` is invalid"),
            "{}",
            err("61 * * * *")
        );
        assert!(err("0 0 32 * *").starts_with("field 3 (day-of-month) `32` is invalid"));
        assert!(err("0 0 * 13 *").starts_with("field 4 (month) `13` is invalid"));
        assert!(err("0 0 * * 1#6").starts_with("field 5 (day-of-week)"));
        assert!(err("0 0 1W * *").starts_with("field 3 (day-of-month)"));
        assert_eq!(
            err("0 0 * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), got 4"
        );
        assert_eq!(
            err("0 0 0 * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), got 6"
        );
        assert!(err("@reboot").starts_with("unknown alias `@reboot`"));
        assert_eq!(err("0 0 30 2 *"), "cron `0 0 30 2 *` never fires");
        assert_eq!(
            err("0 0 31 4,6,9,11 *"),
            "cron `0 0 31 4,6,9,11 *` never fires"
        );
        // Day-of-month or day-of-week: Mondays in February fire.
        assert!(Schedule::parse("0 0 30 2 1", "UTC").is_ok());
        assert!(Schedule::parse("0 0 29 2 *", "UTC").is_ok());
        assert_eq!(
            Schedule::parse("0 0 * * *", "Mars/Olympus")
                .unwrap_err()
                .to_string(),
            "unknown time zone `Mars/Olympus`"
        );
    }

    #[test]
    fn period_adds_the_timeout() {
        let s = Schedule::Period(Duration::from_secs(3600));
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 0, 0)),
            Some(utc(2026, 1, 1, 1, 0))
        );
    }
}
