//! systemd `OnCalendar` schedules, evaluated the way Healthchecks evaluates them.
//!
//! This is a port of Healthchecks' OnCalendar support: the `oncalendar` Python package
//! (cuu508/oncalendar v1.1, which started out as `hc/lib/oncalendar.py` in Healthchecks
//! and is what `hc.api.models.Check.get_grace_start` runs for checks of kind
//! "oncalendar"), plus `guess_kind` from `hc/api/views.py` as [`looks_like_oncalendar`].
//!
//! A check's `schedule` holds one or more expressions, one per line. Each expression is
//! `[weekdays] [date] [time] [zone]`, for example `Mon..Fri *-*-* 09:00`,
//! `*-*~1 23:00` (last day of every month), `daily`, or `12:34 Europe/Riga`. An
//! expression that names its own zone is evaluated in that zone; the others are
//! evaluated in the check's `tz`. The next fire time of a schedule is the earliest next
//! fire time of its expressions. Years run from 1970 to 2199: like systemd, nothing
//! fires at or after 2200.
//!
//! # DST rule
//!
//! Expressions match wall-clock time in their zone, as in oncalendar.py:
//!
//! - A wall time that does not exist (the hour skipped when clocks go forward) is
//!   skipped, not moved: `3:30` in Europe/Riga does not fire on the night clocks jump
//!   from 03:00 to 04:00, and the next fire is 03:30 on the next matching day.
//! - A wall time that happens twice (the hour repeated when clocks go back) fires once,
//!   at its first occurrence, with the pre-transition offset (Python's `fold=0`). The
//!   repeated hour does not fire a second time.
//!
//! (oncalendar.py's docstring says the repeated hour repeats, but its code and its tests
//! fire once; we follow the code and the tests.)
//!
//! # Where this differs from the Python
//!
//! - [`OnCalendar::next_after`] always returns a time strictly after `after`. Python
//!   walks wall-clock time from the start, so a start inside the second pass of a
//!   repeated hour (`fold=1`) can yield a first-pass time that is *before* the start,
//!   which would put a check's grace period in the past. We skip such times.
//! - Expressions are compared by instant when picking the earliest. Python compares
//!   datetimes that share a tzinfo by wall time, which differs only inside a repeated hour.
//! - Zone names come from chrono-tz's bundled tz database, not the system's zoneinfo.
//!   chrono-tz's tables end in 2099; later years reuse the zone's rule (see
//!   `rule_year`), so results match Python's zoneinfo up to 2199.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Timelike,
    Utc, Weekday,
};
use chrono_tz::Tz;

/// systemd seems to stop generating dates at year 2200; oncalendar.py does the same.
const MAX_YEAR: i32 = 2200;

const SECOND: TimeDelta = TimeDelta::seconds(1);
const MINUTE: TimeDelta = TimeDelta::seconds(60);
const HOUR: TimeDelta = TimeDelta::seconds(3600);

/// Monday is 0, as in Python's `date.weekday()`.
const SYMBOLIC_DAYS: [&str; 7] = [
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
];

/// The shorthands systemd (and oncalendar.py) accept for a whole expression.
const SPECIALS: [(&str, &str); 9] = [
    ("minutely", "*-*-* *:*:00"),
    ("hourly", "*-*-* *:00:00"),
    ("daily", "*-*-* 00:00:00"),
    ("monthly", "*-*-01 00:00:00"),
    ("weekly", "Mon *-*-* 00:00:00"),
    ("yearly", "*-01-01 00:00:00"),
    ("annually", "*-01-01 00:00:00"),
    ("quarterly", "*-01,04,07,10-01 00:00:00"),
    ("semiannually", "*-01,07-01 00:00:00"),
];

/// A rejected OnCalendar expression. The message names the part that failed to parse,
/// worded as oncalendar.py words it (lowercased): "bad hour", "bad date",
/// "wrong number of fields", ...
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OnCalendarError(&'static str);

const WRONG_NUMBER_OF_FIELDS: OnCalendarError = OnCalendarError("wrong number of fields");

/// A parsed OnCalendar schedule: the value of a check's `schedule` field, one or more
/// expressions, one per line (a single expression is the common case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCalendar {
    exprs: Vec<Expr>,
}

/// One line of a schedule. Each field is the set of values it allows; `days` may hold
/// negative values, counted from the end of the month (-1 is the last day), for `~`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expr {
    /// The zone named at the end of the expression, if any; it overrides the check's zone.
    tz: Option<Tz>,
    weekdays: BTreeSet<i32>,
    years: BTreeSet<i32>,
    months: BTreeSet<i32>,
    days: BTreeSet<i32>,
    hours: BTreeSet<i32>,
    minutes: BTreeSet<i32>,
    seconds: BTreeSet<i32>,
}

impl FromStr for OnCalendar {
    type Err = OnCalendarError;

    /// Parses a schedule the way Healthchecks' `OnCalendar(expressions, start)` does: the
    /// whole value is trimmed, then split on newlines, and every line must parse (an empty
    /// line is an error).
    ///
    /// Healthchecks also rejects a schedule that never fires: its API and forms require a
    /// fire time after 2000-01-01T00:00:00Z, evaluated in UTC. Callers validating input
    /// should check `next_after` for that too, since e.g. `2-30` parses but never fires.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let exprs = py_strip(s)
            .split('\n')
            .map(parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { exprs })
    }
}

impl OnCalendar {
    /// First fire time strictly after `after`, evaluated in `tz` unless the expression
    /// names its own zone. `None` when the schedule never fires again (before year 2200).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.exprs
            .iter()
            .filter_map(|expr| expr.next_after(after, tz))
            .min()
    }
}

/// Heuristic Healthchecks uses to tell OnCalendar from cron (`guess_kind` in
/// `hc/api/views.py`): a single line with exactly five whitespace-separated fields is a
/// cron expression; anything else is OnCalendar.
pub fn looks_like_oncalendar(expr: &str) -> bool {
    let single_line = !py_strip(expr).contains('\n');
    !(single_line && py_split(expr).count() == 5)
}

/// Python's `str.isspace()`, which `str.split()` and `str.strip()` use. It is Unicode
/// White_Space plus the ASCII separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()` with no arguments.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|part| !part.is_empty())
}

/// Python's `s.strip()` with no arguments.
fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `s.rsplit(maxsplit=1)` for a stripped string that contains whitespace.
fn py_rsplit_once(s: &str) -> Option<(&str, &str)> {
    let (i, c) = s.char_indices().rev().find(|&(_, c)| is_py_space(c))?;
    Some((s[..i].trim_end_matches(is_py_space), &s[i + c.len_utf8()..]))
}

/// One line of a schedule, with an optional trailing zone (oncalendar.py's `TzIterator`).
fn parse_line(line: &str) -> Result<Expr, OnCalendarError> {
    let expression = py_strip(line);
    // Python only looks for a zone when the line contains a plain space, then splits on
    // any whitespace. A last word that is not a zone stays part of the expression, where
    // it then fails to parse (usually as a "bad day-of-week").
    if expression.contains(' ')
        && let Some((head, maybe_tz)) = py_rsplit_once(expression)
        && let Some(tz) = parse_tz(maybe_tz)
    {
        return parse_expr(head, Some(tz));
    }
    parse_expr(expression, None)
}

fn parse_tz(value: &str) -> Option<Tz> {
    // No zone name starts with a digit or a star, so a date or time is not looked up.
    if value.starts_with(|c: char| c.is_ascii_digit() || c == '*') {
        return None;
    }
    value.parse().ok()
}

/// An expression without a zone (oncalendar.py's `BaseIterator.__init__`). The parts are
/// taken from the end: a time if the last part has a ":", then a date if the last part has
/// a "-" and starts with a digit or "*", then weekdays; what is missing takes its default
/// (any weekday, `*-*-*`, `00:00:00`).
fn parse_expr(expression: &str, tz: Option<Tz>) -> Result<Expr, OnCalendarError> {
    let lower = expression.to_lowercase();
    let expression = SPECIALS
        .iter()
        .find(|(name, _)| *name == lower)
        .map_or(expression, |(_, full)| full);

    // In "*-*~7" ("7th day from the end", ~1 being the last day) the "~" stands in for the
    // date's second "-"; once it is "-~7", the date splits into year, month and a day
    // field "~7" that Field::parse counts backwards.
    let expression = expression.replace('~', "-~");
    let mut parts: Vec<&str> = py_split(&expression).collect();
    if parts.is_empty() {
        return Err(WRONG_NUMBER_OF_FIELDS);
    }

    let (hours, minutes, seconds) = match parts.last().copied() {
        Some(last) if last.contains(':') => {
            parts.pop();
            let time: Vec<&str> = last.split(':').collect();
            if !(2..=3).contains(&time.len()) {
                return Err(OnCalendarError("bad time"));
            }
            (
                Field::Hour.parse(time[0])?,
                Field::Minute.parse(time[1])?,
                // Seconds may be left out, and then default to 0
                Field::Second.parse(time.get(2).copied().unwrap_or("0"))?,
            )
        }
        _ => ([0].into(), [0].into(), [0].into()),
    };

    let (years, months, days) = match parts.last().copied() {
        Some(last)
            if last.contains('-') && last.starts_with(|c: char| c.is_ascii_digit() || c == '*') =>
        {
            parts.pop();
            let mut date: Vec<&str> = last.split('-').collect();
            if !(2..=3).contains(&date.len()) {
                return Err(OnCalendarError("bad date"));
            }
            if date.len() == 2 {
                // The year may be left out, and then means any year
                date.insert(0, "*");
            }
            (
                Field::Year.parse(date[0])?,
                Field::Month.parse(date[1])?,
                Field::Day.parse(date[2])?,
            )
        }
        _ => (Field::Year.all(), Field::Month.all(), Field::Day.all()),
    };

    let weekdays = if parts.is_empty() {
        Field::Dow.all()
    } else {
        Field::Dow.parse(parts.remove(0))?
    };

    if !parts.is_empty() {
        return Err(WRONG_NUMBER_OF_FIELDS);
    }

    Ok(Expr {
        tz,
        weekdays,
        years,
        months,
        days,
        hours,
        minutes,
        seconds,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Dow,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Field {
    /// The valid values, inclusive (oncalendar.py's `RANGES`).
    fn bounds(self) -> (i32, i32) {
        match self {
            Field::Dow => (0, 6),
            Field::Year => (1970, MAX_YEAR - 1),
            Field::Month => (1, 12),
            Field::Day => (1, 31),
            Field::Hour => (0, 23),
            Field::Minute | Field::Second => (0, 59),
        }
    }

    fn all(self) -> BTreeSet<i32> {
        let (low, high) = self.bounds();
        (low..=high).collect()
    }

    fn error(self) -> OnCalendarError {
        OnCalendarError(match self {
            Field::Dow => "bad day-of-week",
            Field::Year => "bad year",
            Field::Month => "bad month",
            Field::Day => "bad day-of-month",
            Field::Hour => "bad hour",
            Field::Minute => "bad minute",
            Field::Second => "bad second",
        })
    }

    /// A plain decimal number: ASCII digits only, so no signs, spaces or underscores,
    /// which Python's `int()` would otherwise accept.
    fn digits(self, s: &str) -> Result<i64, OnCalendarError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.error());
        }
        // Python's ints do not overflow; saturating keeps a huge number huge (so still out
        // of range, or a step that only keeps the first value) without overflowing.
        Ok(s.bytes().fold(0i64, |n, b| {
            n.saturating_mul(10).saturating_add(i64::from(b - b'0'))
        }))
    }

    /// One value: a weekday name (full or three letters, any case) for the weekday field,
    /// a number for the others. Two-digit years mean 1970..2069, as in systemd.
    fn int(self, s: &str) -> Result<i32, OnCalendarError> {
        if self == Field::Dow {
            let upper = s.to_uppercase();
            return SYMBOLIC_DAYS
                .iter()
                .position(|day| *day == upper || day[..3] == upper)
                .map(|i| i as i32)
                .ok_or(self.error());
        }

        let mut v = self.digits(s)?;
        if self == Field::Year && v < 70 {
            v += 2000;
        }
        if self == Field::Year && v < 100 {
            v += 1900;
        }

        let (low, high) = self.bounds();
        if !(i64::from(low)..=i64::from(high)).contains(&v) {
            return Err(self.error());
        }
        Ok(v as i32)
    }

    /// One field of an expression: `*`, a value, a list `a,b`, a range `a..b`, or a
    /// value or range with a step `a/n`, `a..b/n`. Days prefixed with `~` count from the
    /// end of the month and come out negative (`reverse`).
    fn parse(self, s: &str) -> Result<BTreeSet<i32>, OnCalendarError> {
        self.parse_terms(s, false)
    }

    fn parse_terms(self, s: &str, reverse: bool) -> Result<BTreeSet<i32>, OnCalendarError> {
        let (mut s, mut reverse) = (s, reverse);
        if self == Field::Day {
            while let Some(rest) = s.strip_prefix('~') {
                s = rest;
                reverse = true;
            }
        }

        if self != Field::Dow && s == "*" {
            return Ok(self.all());
        }

        // systemd does not allow "*" in lists, ranges or steps.
        if s.contains('*') {
            return Err(self.error());
        }

        if self == Field::Dow {
            // systemd accepts "Mon, 12:00" as well as "Mon 12:00"
            s = s.trim_end_matches(',');
            // systemd accepts "Mon-Fri" as well as "Mon..Fri"
            if s.contains('-') {
                return self.parse(&s.replace('-', ".."));
            }
        }

        if s.contains(',') {
            let mut result = BTreeSet::new();
            for term in s.split(',') {
                result.extend(self.parse_terms(term, reverse)?);
            }
            return Ok(result);
        }

        if self != Field::Dow
            && let Some((term, step)) = s.split_once('/')
        {
            let step = self.digits(step)?;
            if step == 0 {
                return Err(self.error());
            }
            let step = usize::try_from(step).unwrap_or(usize::MAX);
            let items = self.parse_terms(term, reverse)?;
            if let [start] = items.iter().copied().collect::<Vec<_>>()[..] {
                // A single start value steps up to the end of the field's range (for
                // reversed days, up to 0, which matches nothing but is kept as Python does).
                let end = if reverse { 0 } else { self.bounds().1 };
                return Ok((start..=end).step_by(step).collect());
            }
            // Otherwise take every step-th value of the range, in order.
            return Ok(items.into_iter().step_by(step).collect());
        }

        if let Some((start, end)) = s.split_once("..") {
            let (start, end) = (self.int(start)?, self.int(end)?);
            if end < start {
                return Err(self.error());
            }
            let (start, end) = if reverse {
                (-end, -start)
            } else {
                (start, end)
            };
            return Ok((start..=end).collect());
        }

        let v = self.int(s)?;
        if reverse {
            // With <month>~<day>, systemd rejects days above 28
            if v > 28 {
                return Err(self.error());
            }
            return Ok([-v].into());
        }
        Ok([v].into())
    }
}

impl Expr {
    fn next_after(&self, after: DateTime<Utc>, check_tz: Tz) -> Option<DateTime<Utc>> {
        let zone = self.tz.unwrap_or(check_tz);
        let start = utc_to_local(zone, after)?.with_nanosecond(0)?;
        let mut cursor = Cursor {
            expr: self,
            dt: start,
        };
        loop {
            let fire = cursor.next(zone)?;
            // Only a start in the second pass of a repeated hour gets here with a time not
            // after `after`: the first pass of the same wall time. See the module docs.
            if fire > after {
                return Some(fire);
            }
        }
    }

    fn matches_day(&self, d: NaiveDate) -> bool {
        let weekday = d.weekday().num_days_from_monday() as i32;
        self.weekdays.contains(&weekday) && self.matches_day_of_month(d)
    }

    fn matches_day_of_month(&self, d: NaiveDate) -> bool {
        let day = d.day() as i32;
        if self.days.contains(&day) {
            return true;
        }
        // Negative days count from the end of the month: -1 is the last day.
        let any_reverse = self.days.first().is_some_and(|&first| first < 0);
        any_reverse && self.days.contains(&(day - days_in_month(d) - 1))
    }
}

/// Walks wall-clock time forward to the next match (oncalendar.py's
/// `BaseIterator.__next__`). Each `advance_*` moves `dt` to the next value its field
/// allows, resetting the smaller fields, and reports whether it moved; moving may roll
/// over a larger field, so the search then starts again from the year.
struct Cursor<'a> {
    expr: &'a Expr,
    dt: NaiveDateTime,
}

impl Cursor<'_> {
    fn next(&mut self, zone: Tz) -> Option<DateTime<Utc>> {
        self.dt = self.dt.checked_add_signed(SECOND)?;
        loop {
            self.advance_year();
            if self.dt.year() >= MAX_YEAR {
                return None;
            }
            if self.advance_month()
                || self.advance_day()
                || self.advance_hour()
                || self.advance_minute()
                || self.advance_second()
            {
                continue;
            }
            // The DST rule: an ambiguous wall time takes its first occurrence, a wall time
            // that does not exist is skipped.
            match local_to_utc(zone, self.dt) {
                Some(fire) => return Some(fire),
                None => self.dt += SECOND,
            }
        }
    }

    fn advance_year(&mut self) {
        let years = &self.expr.years;
        let mut needle = self.dt.date();
        if years.contains(&needle.year()) {
            return;
        }
        while !years.contains(&needle.year()) && needle.year() < MAX_YEAR {
            needle = ymd(needle.year() + 1, 1, 1);
        }
        self.dt = needle.and_time(NaiveTime::MIN);
    }

    fn advance_month(&mut self) -> bool {
        let months = &self.expr.months;
        if months.contains(&(self.dt.month() as i32)) {
            return false;
        }
        let mut needle = self.dt.date();
        // The year bound only guards against running off chrono's calendar; past
        // MAX_YEAR the search stops anyway.
        while !months.contains(&(needle.month() as i32)) && needle.year() <= MAX_YEAR {
            needle = match needle.month() {
                12 => ymd(needle.year() + 1, 1, 1),
                month => ymd(needle.year(), month + 1, 1),
            };
        }
        self.dt = needle.and_time(NaiveTime::MIN);
        true
    }

    fn advance_day(&mut self) -> bool {
        let mut needle = self.dt.date();
        if self.expr.matches_day(needle) {
            return false;
        }
        while !self.expr.matches_day(needle) {
            match needle.succ_opt() {
                Some(next) => needle = next,
                None => break,
            }
            if needle.day() == 1 {
                // A new month: go back to check the year and month first. This makes
                // impossible days (Feb 30) cost one step per month, not per day.
                break;
            }
        }
        self.dt = needle.and_time(NaiveTime::MIN);
        true
    }

    fn advance_hour(&mut self) -> bool {
        let hours = &self.expr.hours;
        if hours.contains(&(self.dt.hour() as i32)) {
            return false;
        }
        self.dt -= TimeDelta::seconds(i64::from(self.dt.minute() * 60 + self.dt.second()));
        while !hours.contains(&(self.dt.hour() as i32)) {
            self.dt += HOUR;
            if self.dt.hour() == 0 {
                // A new day: go back to check the year, month and day
                break;
            }
        }
        true
    }

    fn advance_minute(&mut self) -> bool {
        let minutes = &self.expr.minutes;
        if minutes.contains(&(self.dt.minute() as i32)) {
            return false;
        }
        self.dt -= TimeDelta::seconds(i64::from(self.dt.second()));
        while !minutes.contains(&(self.dt.minute() as i32)) {
            self.dt += MINUTE;
            if self.dt.minute() == 0 {
                // A new hour: go back to check the larger fields
                break;
            }
        }
        true
    }

    fn advance_second(&mut self) -> bool {
        let seconds = &self.expr.seconds;
        let second = self.dt.second() as i32;
        if seconds.contains(&second) {
            return false;
        }
        if let Some(&target) = seconds.first()
            && seconds.len() == 1
        {
            // With a single allowed second, jump to it instead of stepping a second at a time
            self.dt += TimeDelta::seconds(i64::from((target - second).rem_euclid(60)));
        }
        while !seconds.contains(&(self.dt.second() as i32)) {
            self.dt += SECOND;
            if self.dt.second() == 0 {
                // A new minute: go back to check the larger fields
                break;
            }
        }
        true
    }
}

/// Wall time in `zone` to an instant, by the DST rule: an ambiguous wall time maps to its
/// first occurrence (the pre-transition offset, Python's `fold=0`), a wall time that does
/// not exist maps to nothing.
fn local_to_utc(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let probe = match rule_year(zone, local.year()) {
        Some(year) => local.with_year(year)?,
        None => local,
    };
    let offset = zone.offset_from_local_datetime(&probe).earliest()?.fix();
    let utc = local.checked_sub_signed(TimeDelta::seconds(offset.local_minus_utc().into()))?;
    Some(utc.and_utc())
}

/// An instant to wall time in `zone`.
fn utc_to_local(zone: Tz, utc: DateTime<Utc>) -> Option<NaiveDateTime> {
    let utc = utc.naive_utc();
    let probe = match rule_year(zone, utc.year()) {
        Some(year) => utc.with_year(year)?,
        None => utc,
    };
    let offset = zone.offset_from_utc_datetime(&probe).fix();
    utc.checked_add_signed(TimeDelta::seconds(offset.local_minus_utc().into()))
}

/// chrono-tz's tables stop at 2099 and then keep the last offset forever, while Python's
/// zoneinfo goes on applying the zone's current rule (the TZif footer), and schedules run
/// to 2199. For a zone that still changes clocks in 2099, years from 2100 on are looked
/// up in the year of 2072..=2099 that has the same calendar (leap or not, same weekday on
/// January 1st): rules like "last Sunday in March" then land on the same days.
fn rule_year(zone: Tz, year: i32) -> Option<i32> {
    const LAST_TABLE_YEAR: i32 = 2099;
    if year <= LAST_TABLE_YEAR {
        return None;
    }
    let offset_at = |month| {
        let probe = ymd(LAST_TABLE_YEAR, month, 1).and_time(NaiveTime::MIN);
        zone.offset_from_utc_datetime(&probe).fix()
    };
    if offset_at(1) == offset_at(7) {
        // No DST by then (or none any more): the last offset is the right one.
        return None;
    }
    let calendar = |year: i32| (ymd(year, 1, 1).weekday(), is_leap_year(year));
    let wanted: (Weekday, bool) = calendar(year);
    // Every 28 consecutive years of 1901..=2099 hold all 14 kinds of calendar year.
    (LAST_TABLE_YEAR - 27..=LAST_TABLE_YEAR).find(|&candidate| calendar(candidate) == wanted)
}

fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// A calendar date the search can reach (years up to MAX_YEAR + 1). Falls back to the
/// last date chrono knows, which is past MAX_YEAR and so ends the search.
fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).unwrap_or(NaiveDate::MAX)
}

fn days_in_month(d: NaiveDate) -> i32 {
    match d.month() {
        2 if is_leap_year(d.year()) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    //! Ported from cuu508/oncalendar's tests/test_baseiterator.py, test_tziterator.py and
    //! test_oncalendar.py, and from the OnCalendar cases in Healthchecks'
    //! hc/api/tests (test_check_model.py, test_create_check.py). Python's naive start
    //! times become UTC here.

    use super::*;

    const RIGA: Tz = chrono_tz::Europe::Riga;

    fn iso(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn now() -> DateTime<Utc> {
        iso("2020-01-01T00:00:00Z")
    }

    /// The single line `s`, parsed.
    fn expr(s: &str) -> Expr {
        parse_line(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn set(values: impl IntoIterator<Item = i32>) -> BTreeSet<i32> {
        values.into_iter().collect()
    }

    fn err(s: &str) -> String {
        match s.parse::<OnCalendar>() {
            Ok(parsed) => panic!("{s:?} parsed as {parsed:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The first `n` fire times after `start`, each found from the one before it.
    fn fires(schedule: &str, start: DateTime<Utc>, tz: Tz, n: usize) -> Vec<DateTime<Utc>> {
        let parsed: OnCalendar = schedule.parse().unwrap();
        let mut out = Vec::new();
        let mut at = start;
        while out.len() < n {
            match parsed.next_after(at, tz) {
                Some(next) => {
                    assert!(next > at, "{schedule:?}: {next} is not after {at}");
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    fn isos(values: &[&str]) -> Vec<DateTime<Utc>> {
        values.iter().map(|s| iso(s)).collect()
    }

    /// Fields that `fields` names ("wymdHMS") hold their defaults.
    fn assert_default(e: &Expr, fields: &str) {
        for f in fields.chars() {
            match f {
                'w' => assert_eq!(e.weekdays, set(0..7)),
                'y' => assert_eq!(e.years, set(1970..2200)),
                'm' => assert_eq!(e.months, set(1..13)),
                'd' => assert_eq!(e.days, set(1..32)),
                'H' => assert_eq!(e.hours, set([0])),
                'M' => assert_eq!(e.minutes, set([0])),
                'S' => assert_eq!(e.seconds, set([0])),
                _ => unreachable!(),
            }
        }
    }

    // --- TestParse ---

    #[test]
    fn it_parses_stars() {
        let e = expr("*-*-* *:*:*");
        assert_default(&e, "wymd");
        assert_eq!(e.hours, set(0..24));
        assert_eq!(e.minutes, set(0..60));
        assert_eq!(e.seconds, set(0..60));
    }

    #[test]
    fn it_parses_weekday() {
        for sample in ["Mon", "MON", "Monday", "MONDAY"] {
            let e = expr(sample);
            assert_default(&e, "ymdHMS");
            assert_eq!(e.weekdays, set([0]));
        }
    }

    #[test]
    fn it_parses_weekday_with_trailing_comma() {
        let e = expr("Mon, 12:34");
        assert_default(&e, "ymdS");
        assert_eq!(e.weekdays, set([0]));
        assert_eq!(e.hours, set([12]));
        assert_eq!(e.minutes, set([34]));
    }

    #[test]
    fn it_parses_weekday_interval() {
        for sample in ["Mon..Tue", "Mon,Tue", "Mon-Tue"] {
            let e = expr(sample);
            assert_default(&e, "ymdHMS");
            assert_eq!(e.weekdays, set([0, 1]));
        }
    }

    #[test]
    fn it_parses_date() {
        let e = expr("2023-11-30");
        assert_default(&e, "wHMS");
        assert_eq!(e.years, set([2023]));
        assert_eq!(e.months, set([11]));
        assert_eq!(e.days, set([30]));
    }

    #[test]
    fn it_handles_omitted_year() {
        let e = expr("11-30");
        assert_default(&e, "wyHMS");
        assert_eq!(e.months, set([11]));
        assert_eq!(e.days, set([30]));
    }

    #[test]
    fn it_handles_two_digit_year() {
        let e = expr("69-*-*");
        assert_default(&e, "wmdHMS");
        assert_eq!(e.years, set([2069]));
    }

    #[test]
    fn it_handles_prev_century_two_digit_year() {
        let e = expr("70-*-*");
        assert_default(&e, "wmdHMS");
        assert_eq!(e.years, set([1970]));
    }

    #[test]
    fn it_parses_time() {
        let e = expr("11:22:33");
        assert_default(&e, "wymd");
        assert_eq!(e.hours, set([11]));
        assert_eq!(e.minutes, set([22]));
        assert_eq!(e.seconds, set([33]));
    }

    #[test]
    fn it_handles_omitted_seconds() {
        let e = expr("11:22");
        assert_default(&e, "wymdS");
        assert_eq!(e.hours, set([11]));
        assert_eq!(e.minutes, set([22]));
    }

    #[test]
    fn it_parses_list() {
        assert_eq!(expr("*:1,2,3").minutes, set([1, 2, 3]));
    }

    #[test]
    fn it_parses_interval() {
        assert_eq!(expr("*:1..3").minutes, set([1, 2, 3]));
    }

    #[test]
    fn it_parses_two_intervals() {
        assert_eq!(expr("*:1..3,7..9:*").minutes, set([1, 2, 3, 7, 8, 9]));
    }

    #[test]
    fn it_parses_step() {
        assert_eq!(expr("*:0/15").minutes, set([0, 15, 30, 45]));
    }

    #[test]
    fn it_parses_interval_with_step() {
        assert_eq!(expr("*:0..10/2").minutes, set([0, 2, 4, 6, 8, 10]));
    }

    #[test]
    fn it_parses_start_with_step() {
        assert_eq!(expr("*:5/15").minutes, set([5, 20, 35, 50]));
    }

    #[test]
    fn it_parses_negative_day() {
        assert_eq!(expr("*-*~1").days, set([-1]));
    }

    #[test]
    fn it_parses_negative_day_sans_year() {
        assert_eq!(expr("*~1").days, set([-1]));
    }

    #[test]
    fn it_parses_negative_day_list() {
        assert_eq!(expr("*-*~1,8").days, set([-1, -8]));
    }

    #[test]
    fn it_parses_negative_day_interval() {
        assert_eq!(expr("*-*~1..3").days, set([-1, -2, -3]));
    }

    #[test]
    fn it_parses_two_negative_day_intervals() {
        assert_eq!(expr("*-*~1..2,4..5").days, set([-1, -2, -4, -5]));
    }

    #[test]
    fn it_parses_negative_day_interval_with_step() {
        assert_eq!(expr("*-*~1..5/2").days, set([-1, -3, -5]));
    }

    #[test]
    fn it_parses_negative_day_start_with_step() {
        assert_eq!(expr("*-*~3/2").days, set([-1, -3]));
    }

    #[test]
    fn it_parses_special_expression() {
        for sample in ["minutely", "Minutely", "MINUTELY", "MiNuTeLY"] {
            let e = expr(sample);
            assert_default(&e, "wymd");
            assert_eq!(e.hours, set(0..24));
            assert_eq!(e.minutes, set(0..60));
            assert_eq!(e.seconds, set([0]));
        }
    }

    #[test]
    fn it_parses_every_special_expression() {
        assert_eq!(expr("weekly"), expr("Mon *-*-* 00:00:00"));
        assert_eq!(expr("quarterly").months, set([1, 4, 7, 10]));
        assert_eq!(expr("semiannually").months, set([1, 7]));
        assert_eq!(expr("annually"), expr("yearly"));
        assert_eq!(expr("monthly").days, set([1]));
        assert_eq!(expr("hourly").hours, set(0..24));
        assert_eq!(expr("daily"), expr("*-*-* 00:00:00"));
    }

    // --- TestValidation ---

    #[test]
    fn it_rejects_empty_string() {
        assert_eq!(err(""), "wrong number of fields");
        assert_eq!(err(" \n "), "wrong number of fields");
    }

    #[test]
    fn it_rejects_4_components() {
        assert_eq!(err("Mon *-*-* *:*:* surprise"), "wrong number of fields");
    }

    #[test]
    fn it_rejects_bad_values() {
        let patterns = [
            "%s *-*-* *:*:*",
            "%s-*-*",
            "*-%s-*",
            "*-*-%s",
            "*-*~%s",
            "%s:*:*",
            "*:%s:*",
            "*:*:%s",
        ];
        let bad_values = [
            "-1", "1000", "ABC", "1-1", "1:1", "Mon/1", "~1", "*/1", "*,1", "1..*",
        ];
        for pattern in patterns {
            for value in bad_values {
                let sample = pattern.replace("%s", value);
                assert!(
                    sample.parse::<OnCalendar>().is_err(),
                    "{sample:?} should be rejected"
                );
            }
        }
    }

    #[test]
    fn it_rejects_lopsided_range() {
        assert_eq!(err("*-*-5..1"), "bad day-of-month");
    }

    #[test]
    fn it_rejects_underscores() {
        assert_eq!(err("*:1..1_0"), "bad minute");
    }

    #[test]
    fn it_rejects_zero_step() {
        assert_eq!(err("*:*/0"), "bad minute");
        assert_eq!(err("*:0/0"), "bad minute");
    }

    #[test]
    fn it_checks_day_of_month_range() {
        assert_eq!(err("1-32"), "bad day-of-month");
    }

    #[test]
    fn it_rejects_weekday_star() {
        assert_eq!(err("* 1-1"), "bad day-of-week");
    }

    #[test]
    fn it_rejects_reverse_dom_above_28() {
        assert_eq!(err("1~29"), "bad day-of-month");
    }

    #[test]
    fn it_names_the_bad_part() {
        assert_eq!(err("Mon, 123:456"), "bad hour");
        assert_eq!(err("12:60"), "bad minute");
        assert_eq!(err("12:00:60"), "bad second");
        assert_eq!(err("1:2:3:4"), "bad time");
        assert_eq!(err("1-2-3-4"), "bad date");
        assert_eq!(err("1969-01-01"), "bad year");
        assert_eq!(err("2200-01-01"), "bad year");
        assert_eq!(err("*-13-01"), "bad month");
        assert_eq!(err("Tue..Mon"), "bad day-of-week");
    }

    // --- TestIterator ---

    #[test]
    fn it_handles_every_5th_second() {
        let got = fires("*:*:0/5", now(), Tz::UTC, 2);
        assert_eq!(got, isos(&["2020-01-01T00:00:05Z", "2020-01-01T00:00:10Z"]));
    }

    #[test]
    fn it_handles_every_minute() {
        let got = fires("*:*", now(), Tz::UTC, 2);
        assert_eq!(got, isos(&["2020-01-01T00:01:00Z", "2020-01-01T00:02:00Z"]));
    }

    #[test]
    fn it_handles_every_feb_29_monday() {
        let got = fires("Mon 2-29", now(), Tz::UTC, 2);
        assert_eq!(got, isos(&["2044-02-29T00:00:00Z", "2072-02-29T00:00:00Z"]));
    }

    #[test]
    fn it_handles_every_last_day_of_month() {
        let got = fires("*~1", now(), Tz::UTC, 3);
        let want = [
            "2020-01-31T00:00:00Z",
            "2020-02-29T00:00:00Z",
            "2020-03-31T00:00:00Z",
        ];
        assert_eq!(got, isos(&want));
    }

    #[test]
    fn it_handles_last_sunday_of_every_month() {
        let got = fires("Sun *~7/1", now(), Tz::UTC, 3);
        let want = [
            "2020-01-26T00:00:00Z",
            "2020-02-23T00:00:00Z",
            "2020-03-29T00:00:00Z",
        ];
        assert_eq!(got, isos(&want));
    }

    #[test]
    fn it_handles_no_occurences() {
        let parsed: OnCalendar = "2019-01-01".parse().unwrap();
        assert_eq!(parsed.next_after(now(), Tz::UTC), None);
    }

    #[test]
    fn it_handles_midnight() {
        let got = fires("00:00", iso("2020-01-01T01:00:00Z"), Tz::UTC, 1);
        assert_eq!(got, isos(&["2020-01-02T00:00:00Z"]));
    }

    #[test]
    fn it_stops_at_year_2200() {
        // 2199 is not a leap year, and iteration stops at 2200
        let parsed: OnCalendar = "2199-2-29".parse().unwrap();
        assert_eq!(parsed.next_after(now(), Tz::UTC), None);
        let parsed: OnCalendar = "*-*-* 12:00".parse().unwrap();
        assert_eq!(
            parsed.next_after(iso("2199-12-31T12:00:00Z"), Tz::UTC),
            None
        );
        assert_eq!(
            parsed.next_after(iso("2300-01-01T00:00:00Z"), Tz::UTC),
            None
        );
    }

    #[test]
    fn it_starts_from_1970() {
        let got = fires("*-*-* 12:00", iso("1950-06-01T00:00:00Z"), Tz::UTC, 1);
        assert_eq!(got, isos(&["1970-01-01T12:00:00Z"]));
    }

    #[test]
    fn it_ignores_subseconds() {
        let after = iso("2020-01-01T00:00:04.999Z");
        let got = fires("*:*:0/5", after, Tz::UTC, 1);
        assert_eq!(got, isos(&["2020-01-01T00:00:05Z"]));
    }

    // --- TestDstHandling (Europe/Riga: +02:00 in winter, +03:00 in summer) ---

    #[test]
    fn it_preserves_timezone() {
        let got = fires("*:*", iso("2020-01-01T00:00:00+02:00"), RIGA, 2);
        assert_eq!(
            got,
            isos(&["2020-01-01T00:01:00+02:00", "2020-01-01T00:02:00+02:00"])
        );
    }

    #[test]
    fn it_handles_spring_dst() {
        // 2020-03-29 03:30 does not exist in Riga, so March is skipped
        let got = fires("*-*-29 3:30", iso("2020-01-01T00:00:00+02:00"), RIGA, 3);
        let want = [
            "2020-01-29T03:30:00+02:00",
            "2020-02-29T03:30:00+02:00",
            "2020-04-29T03:30:00+03:00",
        ];
        assert_eq!(got, isos(&want));
    }

    #[test]
    fn it_handles_autumn_dst() {
        // 2020-10-25 03:30 happens twice in Riga; it fires once, at the first one
        let got = fires("*-*-25 3:30", iso("2020-10-01T00:00:00+03:00"), RIGA, 3);
        let want = [
            "2020-10-25T03:30:00+03:00",
            "2020-11-25T03:30:00+02:00",
            "2020-12-25T03:30:00+02:00",
        ];
        assert_eq!(got, isos(&want));
    }

    #[test]
    fn it_skips_the_missing_hour_minute_by_minute() {
        let got = fires("*:*", iso("2020-03-29T02:58:00+02:00"), RIGA, 3);
        let want = [
            "2020-03-29T02:59:00+02:00",
            "2020-03-29T04:00:00+03:00",
            "2020-03-29T04:01:00+03:00",
        ];
        assert_eq!(got, isos(&want));
    }

    #[test]
    fn it_does_not_repeat_the_repeated_hour() {
        let got = fires("*:*", iso("2020-10-25T03:58:00+03:00"), RIGA, 3);
        let want = [
            "2020-10-25T03:59:00+03:00",
            "2020-10-25T04:00:00+02:00",
            "2020-10-25T04:01:00+02:00",
        ];
        assert_eq!(got, isos(&want));
    }

    #[test]
    fn it_stays_after_a_start_in_the_repeated_hour() {
        // 03:30+02:00 is the second 03:30. Python would answer 03:31+03:00, an hour
        // before the start; the next time after the start is 04:00+02:00.
        let got = fires("*:*", iso("2020-10-25T03:30:00+02:00"), RIGA, 1);
        assert_eq!(got, isos(&["2020-10-25T04:00:00+02:00"]));
        // Still the first 03:30 is fine as a start
        let got = fires("*:*", iso("2020-10-25T03:30:00+03:00"), RIGA, 1);
        assert_eq!(got, isos(&["2020-10-25T03:31:00+03:00"]));
    }

    #[test]
    fn it_keeps_dst_rules_far_in_the_future() {
        let got = fires("*-07-01 12:00", iso("2150-01-01T00:00:00Z"), RIGA, 1);
        assert_eq!(got, isos(&["2150-07-01T12:00:00+03:00"]));
        let got = fires("*-12-01 12:00", iso("2150-01-01T00:00:00Z"), RIGA, 1);
        assert_eq!(got, isos(&["2150-12-01T12:00:00+02:00"]));
    }

    // --- test_tziterator.py ---

    #[test]
    fn it_handles_no_timezone() {
        for sample in ["12:34", "*-*-* 12:34"] {
            let got = fires(sample, now(), Tz::UTC, 2);
            assert_eq!(got, isos(&["2020-01-01T12:34:00Z", "2020-01-02T12:34:00Z"]));
        }
    }

    #[test]
    fn it_parses_timezone_from_schedule() {
        let got = fires("12:34 Europe/Riga", now(), Tz::UTC, 2);
        assert_eq!(got, isos(&["2020-01-01T10:34:00Z", "2020-01-02T10:34:00Z"]));
    }

    #[test]
    fn it_lets_the_schedule_timezone_override_the_check_timezone() {
        let berlin = chrono_tz::Europe::Berlin;
        let got = fires(
            "12:34 Europe/Riga",
            iso("2020-01-01T00:00:00+01:00"),
            berlin,
            2,
        );
        assert_eq!(
            got,
            isos(&["2020-01-01T11:34:00+01:00", "2020-01-02T11:34:00+01:00"])
        );
    }

    #[test]
    fn it_handles_bad_timezone() {
        assert!("12:34 Europe/Surprise".parse::<OnCalendar>().is_err());
        assert!("12:34 Europe/".parse::<OnCalendar>().is_err());
    }

    #[test]
    fn it_does_not_take_dates_and_times_for_zones() {
        for sample in ["*-* *:*", "Mon 1-10", "Mon *-10"] {
            assert_eq!(expr(sample).tz, None, "{sample:?}");
        }
        assert_eq!(expr("Mon 12:00 UTC").tz, Some(Tz::UTC));
        assert_eq!(expr("daily   Europe/Riga").tz, Some(RIGA));
        assert_eq!(
            expr("daily   Europe/Riga"),
            Expr {
                tz: Some(RIGA),
                ..expr("daily")
            }
        );
    }

    #[test]
    fn it_rejects_lone_timezone() {
        for sample in ["Europe/Riga", " Europe/Riga", "Europe/Riga "] {
            assert_eq!(err(sample), "bad day-of-week", "{sample:?}");
        }
    }

    // --- test_oncalendar.py (several expressions, one per line) ---

    #[test]
    fn it_works_with_several_expressions() {
        let got = fires("00:00\n12:34", now(), Tz::UTC, 4);
        let want = [
            "2020-01-01T12:34:00Z",
            "2020-01-02T00:00:00Z",
            "2020-01-02T12:34:00Z",
            "2020-01-03T00:00:00Z",
        ];
        assert_eq!(got, isos(&want));
    }

    #[test]
    fn it_handles_an_expression_that_stops() {
        let got = fires("2020-01-02\n12:34", now(), Tz::UTC, 4);
        let want = [
            "2020-01-01T12:34:00Z",
            "2020-01-02T00:00:00Z",
            "2020-01-02T12:34:00Z",
            "2020-01-03T12:34:00Z",
        ];
        assert_eq!(got, isos(&want));
    }

    #[test]
    fn it_handles_no_occurences_in_any_expression() {
        let parsed: OnCalendar = "2018-01-01\n2019-01-01".parse().unwrap();
        assert_eq!(parsed.next_after(now(), Tz::UTC), None);
    }

    #[test]
    fn it_mixes_zones_across_lines() {
        // 00:00 in Riga is 22:00 UTC the day before
        let got = fires("00:00 UTC\n00:00 Europe/Riga", now(), Tz::UTC, 3);
        let want = [
            "2020-01-01T22:00:00Z",
            "2020-01-02T00:00:00Z",
            "2020-01-02T22:00:00Z",
        ];
        assert_eq!(got, isos(&want));
    }

    #[test]
    fn it_trims_the_schedule_and_its_lines() {
        let got = fires("\n 12:34 \r\n\t00:00\n", now(), Tz::UTC, 2);
        assert_eq!(got, isos(&["2020-01-01T12:34:00Z", "2020-01-02T00:00:00Z"]));
        // ...but an empty line in the middle is an error
        assert_eq!(err("12:34\n\n00:00"), "wrong number of fields");
    }

    // --- Healthchecks: hc/api/tests ---

    #[test]
    fn status_works_with_oncalendar_syntax() {
        // test_check_model.py: expect a ping every midnight
        let got = fires("00:00", iso("2000-01-01T00:00:00Z"), Tz::UTC, 1);
        assert_eq!(got, isos(&["2000-01-02T00:00:00Z"]));
    }

    #[test]
    fn status_handles_stopiteration() {
        let parsed: OnCalendar = "2019-01-01".parse().unwrap();
        assert_eq!(
            parsed.next_after(iso("2020-01-01T00:00:00Z"), Tz::UTC),
            None
        );
    }

    #[test]
    fn it_validates_oncalendar_expressions_like_the_api() {
        // test_create_check.py
        assert!(looks_like_oncalendar("12:34"));
        assert!("12:34".parse::<OnCalendar>().is_ok());
        assert!(looks_like_oncalendar("12:34\nsurprise"));
        assert_eq!(err("12:34\nsurprise"), "bad day-of-week");
        assert!(looks_like_oncalendar("bad-expression"));
        assert_eq!(err("bad-expression"), "bad day-of-week");

        // Parses, but never fires: Healthchecks' validation rejects it by asking for
        // the next fire time after 2000-01-01 in UTC
        for sample in ["2-30", "4-31", "1999-01-01"] {
            let parsed: OnCalendar = sample.parse().unwrap();
            assert_eq!(
                parsed.next_after(iso("2000-01-01T00:00:00Z"), Tz::UTC),
                None,
                "{sample:?}"
            );
        }
    }

    #[test]
    fn it_guesses_kind_like_healthchecks() {
        // guess_kind: a single line with five fields is cron, anything else OnCalendar
        for cron in [
            "5 * * * *",
            "0 0 * * *",
            " 0 9 * * 1-5 ",
            "* * * * *\n",
            "*\t*  * * *",
        ] {
            assert!(!looks_like_oncalendar(cron), "{cron:?}");
        }
        let oncalendar = [
            "",
            "daily",
            "Mon *-*-* 09:00:00",
            "Mon *-*-* 09:00:00 Europe/Riga",
            "0 0 0 * * *",
            "* * * *",
            "00:00\n12:34",
            "0 0 * * *\n0 12 * * *",
        ];
        for sample in oncalendar {
            assert!(looks_like_oncalendar(sample), "{sample:?}");
        }
    }
}
