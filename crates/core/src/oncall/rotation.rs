//! On-call schedules: who is on call at an instant, and every shift between two instants.
//!
//! A schedule has a time zone, layers of rotations and temporary overrides:
//!
//! - A **layer** rotates through its participants in order, one shift each. Shifts of `hours`
//!   are fixed lengths of real time; shifts of `days` or `weeks` hand off at the same local
//!   time (the time of `start`), so across a DST change a daily shift lasts 23 or 25 hours.
//! - A layer may be **restricted** to weekly windows of local time (`within` them, e.g.
//!   weekdays 09:00–17:00) or to everything `outside` them. Outside its coverage a layer has
//!   nobody, and the layers below show through.
//! - **Higher layers override lower ones**: at each instant the highest layer that has
//!   someone on call decides.
//! - **Overrides** replace one person by another from one instant to another, or add a person.
//!
//! Local times that do not exist (the hour skipped when clocks go forward) are read with the
//! offset in effect before the change, so a 02:30 handoff on that night happens at 03:30; local
//! times that happen twice (clocks going back) mean the first of the two.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// How long one shift of a layer lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShiftUnit {
    Hours,
    Days,
    Weeks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestrictionMode {
    /// The layer covers only the windows.
    Within,
    /// The layer covers everything but the windows.
    Outside,
}

/// A window of local time on some days of the week; `end` at or before `start` ends on the
/// next day (17:00–09:00 is a night).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklyWindow {
    pub days: Vec<Weekday>,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restriction {
    pub mode: RestrictionMode,
    pub windows: Vec<WeeklyWindow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    /// In rotation order.
    pub participants: Vec<String>,
    pub shift_length: u32,
    pub shift_unit: ShiftUnit,
    /// The first handoff, in the schedule's local time; nobody is on call in this layer before.
    pub start: NaiveDateTime,
    #[serde(default)]
    pub restriction: Option<Restriction>,
}

/// `user` is on call instead of `replaces` (or, without `replaces`, besides whoever is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub user: String,
    #[serde(default)]
    pub replaces: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OnCallSchedule {
    pub name: String,
    pub tz: Tz,
    /// Lowest first.
    pub layers: Vec<Layer>,
    pub overrides: Vec<Override>,
}

/// Who is on call at an instant, until when, and who comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub users: Vec<String>,
    /// The next change, looked for up to a year ahead (a year ahead if there is none).
    pub until: DateTime<Utc>,
    /// Who is on call from `until` (nobody is an empty list).
    pub next: Vec<String>,
}

/// A stretch of time with the same people on call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shift {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub users: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OnCallError(pub String);

/// The instant a local time means in `tz`, by the rule in the module documentation.
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        chrono::LocalResult::None => {
            // In the gap: use the offset in effect a few hours before (no zone has two
            // changes that close together).
            let before = tz
                .offset_from_local_datetime(&(local - Duration::hours(3)))
                .earliest()
                .map_or(0, |o| o.fix().local_minus_utc());
            let before = chrono::FixedOffset::east_opt(before).unwrap_or(Utc.fix());
            (local - Duration::seconds(i64::from(before.local_minus_utc()))).and_utc()
        }
    }
}

/// The instants in `[from, to)` at which the zone's offset from UTC changes.
fn offset_changes(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let step = Duration::minutes(15);
    let mut changes = Vec::new();
    let mut t = from;
    while t < to {
        let next = (t + step).min(to);
        if offset(t) != offset(next) {
            // The change lies in (t, next]: narrow it down to the second.
            let (mut before, mut after) = (t, next);
            while after - before > Duration::seconds(1) {
                let mid = before + (after - before) / 2;
                if offset(mid) == offset(before) {
                    before = mid;
                } else {
                    after = mid;
                }
            }
            changes.push(after);
        }
        t = next;
    }
    changes
}

/// Every instant a local time names: none in a skipped hour (then the instant after the
/// gap, by [`local_to_utc`]), two in a repeated one.
fn instants(tz: Tz, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
        _ => vec![local_to_utc(tz, local)],
    }
}

impl WeeklyWindow {
    pub fn contains(&self, local: NaiveDateTime) -> bool {
        let (day, time) = (local.weekday(), local.time());
        if self.start < self.end {
            self.days.contains(&day) && self.start <= time && time < self.end
        } else {
            (self.days.contains(&day) && time >= self.start)
                || (self.days.contains(&day.pred()) && time < self.end)
        }
    }
}

impl Layer {
    fn shift_start(&self, tz: Tz, k: i64) -> DateTime<Utc> {
        let length = i64::from(self.shift_length);
        match self.shift_unit {
            ShiftUnit::Hours => local_to_utc(tz, self.start) + Duration::hours(k * length),
            ShiftUnit::Days => local_to_utc(tz, self.start + Duration::days(k * length)),
            ShiftUnit::Weeks => local_to_utc(tz, self.start + Duration::weeks(k * length)),
        }
    }

    fn nominal_seconds(&self) -> i64 {
        let unit = match self.shift_unit {
            ShiftUnit::Hours => 3600,
            ShiftUnit::Days => 86_400,
            ShiftUnit::Weeks => 7 * 86_400,
        };
        unit * i64::from(self.shift_length.max(1))
    }

    /// The number of the shift that holds `t`; negative before the layer starts.
    fn shift_index(&self, tz: Tz, t: DateTime<Utc>) -> i64 {
        let first = self.shift_start(tz, 0);
        let mut k = (t - first).num_seconds().div_euclid(self.nominal_seconds());
        // DST makes day-based shifts an hour shorter or longer than nominal: settle on the
        // shift whose bounds hold `t`.
        while self.shift_start(tz, k + 1) <= t {
            k += 1;
        }
        while self.shift_start(tz, k) > t {
            k -= 1;
        }
        k
    }

    fn covers(&self, tz: Tz, t: DateTime<Utc>) -> bool {
        let Some(restriction) = &self.restriction else {
            return true;
        };
        let local = t.with_timezone(&tz).naive_local();
        let inside = restriction.windows.iter().any(|w| w.contains(local));
        match restriction.mode {
            RestrictionMode::Within => inside,
            RestrictionMode::Outside => !inside,
        }
    }

    fn user_at(&self, tz: Tz, t: DateTime<Utc>) -> Option<&str> {
        let k = self.shift_index(tz, t);
        if k < 0 || self.participants.is_empty() || !self.covers(tz, t) {
            return None;
        }
        let n = self.participants.len() as i64;
        Some(&self.participants[k.rem_euclid(n) as usize])
    }

    /// Every instant in `[from, to)` at which this layer may change hands.
    fn boundaries(
        &self,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        out: &mut BTreeSet<DateTime<Utc>>,
    ) {
        let mut k = self.shift_index(tz, from).max(0);
        loop {
            let t = self.shift_start(tz, k);
            if t >= to {
                break;
            }
            if t >= from {
                out.insert(t);
            }
            k += 1;
        }
        let Some(restriction) = &self.restriction else {
            return;
        };
        // When the clocks change, the wall clock may re-enter a window (or skip part of one).
        out.extend(offset_changes(tz, from, to));
        let first_day = from.with_timezone(&tz).date_naive() - Duration::days(1);
        let last_day = to.with_timezone(&tz).date_naive() + Duration::days(1);
        for day in first_day.iter_days().take_while(|d| *d <= last_day) {
            for window in restriction
                .windows
                .iter()
                .filter(|w| w.days.contains(&day.weekday()))
            {
                let end_day = if window.start < window.end {
                    day
                } else {
                    day + Duration::days(1)
                };
                // Both occurrences of a repeated local time: windows are judged on the wall
                // clock, so on the night clocks go back a window edge happens twice.
                let edges = [day.and_time(window.start), end_day.and_time(window.end)];
                for t in edges.into_iter().flat_map(|local| instants(tz, local)) {
                    if from <= t && t < to {
                        out.insert(t);
                    }
                }
            }
        }
    }
}

impl OnCallSchedule {
    /// Checks what would make the schedule's answers meaningless; `known` says whether a user
    /// exists.
    pub fn validate(&self, known: impl Fn(&str) -> bool) -> Result<(), OnCallError> {
        let fail =
            |message: String| Err(OnCallError(format!("schedule `{}`: {message}", self.name)));
        for layer in &self.layers {
            if layer.participants.is_empty() {
                return fail(format!("layer `{}` has no participants", layer.name));
            }
            if layer.shift_length == 0 {
                return fail(format!(
                    "layer `{}`: shift_length must be at least 1",
                    layer.name
                ));
            }
            if let Some(unknown) = layer.participants.iter().find(|u| !known(u)) {
                return fail(format!("layer `{}`: unknown user `{unknown}`", layer.name));
            }
            if let Some(restriction) = &layer.restriction
                && (restriction.windows.is_empty()
                    || restriction.windows.iter().any(|w| w.days.is_empty()))
            {
                return fail(format!(
                    "layer `{}`: a restriction needs windows, each on at least one day",
                    layer.name
                ));
            }
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if o.end <= o.start {
                return fail(format!("override {} ends before it starts", i + 1));
            }
            if let Some(unknown) = [Some(&o.user), o.replaces.as_ref()]
                .into_iter()
                .flatten()
                .find(|u| !known(u))
            {
                return fail(format!("override {}: unknown user `{unknown}`", i + 1));
            }
            for (j, other) in self.overrides.iter().enumerate().skip(i + 1) {
                let overlap = o.start < other.end && other.start < o.end;
                let same = match (&o.replaces, &other.replaces) {
                    (Some(a), Some(b)) => a == b,
                    (None, None) => o.user == other.user,
                    _ => false,
                };
                if overlap && same {
                    return fail(format!("overrides {} and {} overlap", i + 1, j + 1));
                }
            }
        }
        Ok(())
    }

    /// Who is on call at `t`: the highest covering layer's person (after replacements), then
    /// anyone added by an override.
    pub fn on_call_at(&self, t: DateTime<Utc>) -> Vec<String> {
        self.on_call_at_with(t, &self.overrides)
    }

    /// [`Self::on_call_at`] with `overrides` (a subset of the schedule's holding every one
    /// active at `t`).
    fn on_call_at_with(&self, t: DateTime<Utc>, overrides: &[Override]) -> Vec<String> {
        let active = || overrides.iter().filter(|o| o.start <= t && t < o.end);
        let mut users = Vec::new();
        if let Some(base) = self.layers.iter().rev().find_map(|l| l.user_at(self.tz, t)) {
            let replaced = active().find(|o| o.replaces.as_deref() == Some(base));
            users.push(replaced.map_or(base, |o| o.user.as_str()).to_string());
        }
        for added in active().filter(|o| o.replaces.is_none()) {
            if !users.contains(&added.user) {
                users.push(added.user.clone());
            }
        }
        users
    }

    /// Every stretch of `[from, to)` with someone on call, cut where the people change.
    pub fn shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Shift> {
        let mut cuts = BTreeSet::from([from, to]);
        for layer in &self.layers {
            layer.boundaries(self.tz, from, to, &mut cuts);
        }
        for o in &self.overrides {
            cuts.extend(
                [o.start, o.end]
                    .into_iter()
                    .filter(|t| from <= *t && *t < to),
            );
        }
        let cuts: Vec<_> = cuts.into_iter().filter(|t| *t <= to).collect();
        // Only the overrides that overlap the range are looked at for each cut.
        let within: Vec<Override> = self
            .overrides
            .iter()
            .filter(|o| o.start < to && from < o.end)
            .cloned()
            .collect();
        let mut shifts: Vec<Shift> = Vec::new();
        for pair in cuts.windows(2) {
            let users = self.on_call_at_with(pair[0], &within);
            match shifts.last_mut() {
                Some(last) if last.end == pair[0] && last.users == users => last.end = pair[1],
                _ if users.is_empty() => {}
                _ => shifts.push(Shift {
                    start: pair[0],
                    end: pair[1],
                    users,
                }),
            }
        }
        shifts
    }

    /// Who is on call at `at`, until when, and who is next.
    pub fn handover(&self, at: DateTime<Utc>) -> Handover {
        // The next change is looked for a day ahead first, then further: the cost of the
        // answer follows how far the change is, not a year of hourly shifts every time.
        let mut shifts = Vec::new();
        let mut until = at;
        for days in [1, 8, 31, 366] {
            let horizon = at + Duration::days(days);
            // shifts() leaves out stretches with nobody: a gap ends at the next shift's start.
            shifts = self.shifts(at, horizon);
            until = match shifts.first() {
                Some(first) if first.start == at => first.end,
                Some(first) => first.start,
                None => horizon,
            };
            if until < horizon {
                break;
            }
        }
        let next = shifts
            .iter()
            .find(|s| s.start == until)
            .map_or_else(Vec::new, |s| s.users.clone());
        Handover {
            users: self.on_call_at(at),
            until,
            next,
        }
    }

    /// The stretches of `[from, to)` during which `user` is on call.
    pub fn shifts_of(&self, user: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Shift> {
        let mut mine: Vec<Shift> = Vec::new();
        for shift in self.shifts(from, to) {
            if !shift.users.iter().any(|u| u == user) {
                continue;
            }
            match mine.last_mut() {
                Some(last) if last.end == shift.start => last.end = shift.end,
                _ => mine.push(Shift {
                    users: vec![user.to_string()],
                    ..shift
                }),
            }
        }
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    fn layer(name: &str, users: &[&str], length: u32, unit: ShiftUnit, start: &str) -> Layer {
        Layer {
            name: name.into(),
            participants: users.iter().map(|u| u.to_string()).collect(),
            shift_length: length,
            shift_unit: unit,
            start: local(start),
            restriction: None,
        }
    }

    fn schedule(tz: Tz, layers: Vec<Layer>) -> OnCallSchedule {
        OnCallSchedule {
            name: "primary".into(),
            tz,
            layers,
            overrides: Vec::new(),
        }
    }

    /// Shifts as (start, end, users) with RFC 3339 UTC times, for comparing with expectations.
    fn table(shifts: &[Shift]) -> Vec<(String, String, String)> {
        shifts
            .iter()
            .map(|s| {
                (
                    s.start.format("%m-%d %H:%MZ").to_string(),
                    s.end.format("%m-%d %H:%MZ").to_string(),
                    s.users.join("+"),
                )
            })
            .collect()
    }

    fn rows(expected: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn daily_handoffs_keep_local_time_across_spring_forward_in_denver() {
        // Denver: MST (UTC-7) until 2026-03-08 02:00, then MDT (UTC-6).
        let s = schedule(
            chrono_tz::America::Denver,
            vec![layer(
                "rota",
                &["alice", "bob"],
                1,
                ShiftUnit::Days,
                "2026-03-06 09:00",
            )],
        );
        let shifts = s.shifts(utc("2026-03-06T00:00:00Z"), utc("2026-03-10T00:00:00Z"));
        assert_eq!(
            table(&shifts),
            rows(&[
                ("03-06 16:00Z", "03-07 16:00Z", "alice"),
                ("03-07 16:00Z", "03-08 15:00Z", "bob"), // 23 hours: the clocks went forward
                ("03-08 15:00Z", "03-09 15:00Z", "alice"),
                ("03-09 15:00Z", "03-10 00:00Z", "bob"),
            ])
        );
        assert_eq!(s.on_call_at(utc("2026-03-08T14:59:00Z")), ["bob"]);
        assert_eq!(s.on_call_at(utc("2026-03-08T15:00:00Z")), ["alice"]);
        assert!(
            s.on_call_at(utc("2026-03-06T15:59:00Z")).is_empty(),
            "before the start"
        );
    }

    #[test]
    fn hour_shifts_are_real_time_and_move_on_the_wall_clock() {
        let s = schedule(
            chrono_tz::America::Denver,
            vec![layer(
                "12h",
                &["alice", "bob"],
                12,
                ShiftUnit::Hours,
                "2026-03-07 08:00",
            )],
        );
        let shifts = s.shifts(utc("2026-03-07T15:00:00Z"), utc("2026-03-09T03:00:00Z"));
        assert_eq!(
            table(&shifts),
            rows(&[
                ("03-07 15:00Z", "03-08 03:00Z", "alice"),
                ("03-08 03:00Z", "03-08 15:00Z", "bob"), // ends 09:00 MDT, not 08:00
                ("03-08 15:00Z", "03-09 03:00Z", "alice"),
            ])
        );
    }

    #[test]
    fn handoffs_in_the_skipped_or_repeated_hour() {
        // A weekly Sunday 02:30 handoff: on 2026-03-08 02:30 does not exist in Denver and the
        // handoff happens at 03:30 MDT; on 2026-11-01 01:30 happens twice and the first counts.
        let spring = schedule(
            chrono_tz::America::Denver,
            vec![layer(
                "weekly",
                &["alice", "bob"],
                1,
                ShiftUnit::Weeks,
                "2026-03-01 02:30",
            )],
        );
        let shifts = spring.shifts(utc("2026-03-01T00:00:00Z"), utc("2026-03-16T00:00:00Z"));
        assert_eq!(
            table(&shifts),
            rows(&[
                ("03-01 09:30Z", "03-08 09:30Z", "alice"), // 03:30 MDT = 09:30Z
                ("03-08 09:30Z", "03-15 08:30Z", "bob"),
                ("03-15 08:30Z", "03-16 00:00Z", "alice"),
            ])
        );
        let fall = schedule(
            chrono_tz::America::Denver,
            vec![layer(
                "weekly",
                &["alice", "bob"],
                1,
                ShiftUnit::Weeks,
                "2026-10-25 01:30",
            )],
        );
        let shifts = fall.shifts(utc("2026-10-25T00:00:00Z"), utc("2026-11-09T00:00:00Z"));
        assert_eq!(
            table(&shifts),
            rows(&[
                ("10-25 07:30Z", "11-01 07:30Z", "alice"), // the first 01:30, MDT
                ("11-01 07:30Z", "11-08 08:30Z", "bob"),   // a week of 7 days and 1 hour
                ("11-08 08:30Z", "11-09 00:00Z", "alice"),
            ])
        );
    }

    fn weekdays() -> Vec<Weekday> {
        vec![
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ]
    }

    /// London, the week the clocks go back (2026-10-25 02:00 BST → 01:00 GMT): a 24/7 daily
    /// rotation at 08:00, a business-hours layer above it (weekdays 09:00–17:00), and an
    /// override; compared shift by shift with times worked out by hand.
    #[test]
    fn layers_restrictions_and_overrides_across_a_fall_back_week_in_london() {
        let mut day = layer(
            "business hours",
            &["carol", "dave"],
            1,
            ShiftUnit::Weeks,
            "2026-10-19 09:00",
        );
        day.restriction = Some(Restriction {
            mode: RestrictionMode::Within,
            windows: vec![WeeklyWindow {
                days: weekdays(),
                start: hm("09:00"),
                end: hm("17:00"),
            }],
        });
        let mut s = schedule(
            chrono_tz::Europe::London,
            vec![
                layer(
                    "24/7",
                    &["alice", "bob"],
                    1,
                    ShiftUnit::Days,
                    "2026-10-23 08:00",
                ),
                day,
            ],
        );
        s.overrides.push(Override {
            user: "erin".into(),
            replaces: Some("dave".into()),
            start: utc("2026-10-26T12:00:00Z"),
            end: utc("2026-10-26T14:00:00Z"),
        });
        let shifts = s.shifts(utc("2026-10-23T07:00:00Z"), utc("2026-10-27T00:00:00Z"));
        assert_eq!(
            table(&shifts),
            rows(&[
                ("10-23 07:00Z", "10-23 08:00Z", "alice"), // Fri 08:00 BST: the 24/7 layer
                ("10-23 08:00Z", "10-23 16:00Z", "carol"), // 09:00-17:00 BST: business hours
                ("10-23 16:00Z", "10-24 07:00Z", "alice"),
                ("10-24 07:00Z", "10-25 08:00Z", "bob"), // 25 hours: the clocks went back
                ("10-25 08:00Z", "10-26 08:00Z", "alice"),
                ("10-26 08:00Z", "10-26 09:00Z", "bob"),
                ("10-26 09:00Z", "10-26 12:00Z", "dave"), // Monday 09:00 GMT, week 2: dave
                ("10-26 12:00Z", "10-26 14:00Z", "erin"), // the override replaces dave
                ("10-26 14:00Z", "10-26 17:00Z", "dave"),
                ("10-26 17:00Z", "10-27 00:00Z", "bob"),
            ])
        );
    }

    #[test]
    fn an_outside_restriction_covers_nights_and_weekends() {
        let mut night = layer("nights", &["nina"], 1, ShiftUnit::Weeks, "2026-11-02 00:00");
        night.restriction = Some(Restriction {
            mode: RestrictionMode::Outside,
            windows: vec![WeeklyWindow {
                days: weekdays(),
                start: hm("09:00"),
                end: hm("17:00"),
            }],
        });
        let s = schedule(
            chrono_tz::America::Denver,
            vec![
                layer("base", &["alice"], 1, ShiftUnit::Weeks, "2026-11-02 00:00"),
                night,
            ],
        );
        // Monday 2026-11-23 in Denver (MST, UTC-7).
        assert_eq!(s.on_call_at(utc("2026-11-23T17:00:00Z")), ["alice"]); // 10:00
        assert_eq!(s.on_call_at(utc("2026-11-24T01:00:00Z")), ["nina"]); // 18:00
        let handover = s.handover(utc("2026-11-23T17:00:00Z"));
        assert_eq!(handover.users, ["alice"]);
        assert_eq!(handover.until, utc("2026-11-24T00:00:00Z"), "17:00 MST");
        assert_eq!(handover.next, ["nina"]);
        assert_eq!(s.on_call_at(utc("2026-11-28T17:00:00Z")), ["nina"]); // Saturday 10:00
    }

    #[test]
    fn handover_finds_near_and_far_changes_as_a_year_of_shifts_would() {
        let mut s = schedule(
            chrono_tz::America::Denver,
            vec![layer(
                "base",
                &["alice"],
                1,
                ShiftUnit::Weeks,
                "2026-11-02 00:00",
            )],
        );
        // One participant: nobody else for a year; then an override five weeks out.
        let at = utc("2026-11-23T17:00:00Z");
        let year = |s: &OnCallSchedule| {
            let shifts = s.shifts(at, at + Duration::days(366));
            (shifts[0].end, shifts.get(1).map(|s| s.users.clone()))
        };
        let h = s.handover(at);
        assert_eq!(
            (h.until, h.next.is_empty()),
            (at + Duration::days(366), true)
        );
        assert_eq!(year(&s).0, h.until);
        s.overrides.push(Override {
            user: "bob".into(),
            replaces: Some("alice".into()),
            start: utc("2026-12-30T00:00:00Z"),
            end: utc("2026-12-31T00:00:00Z"),
        });
        let h = s.handover(at);
        assert_eq!((h.until, Some(h.next)), year(&s));
        assert_eq!(h.until, utc("2026-12-30T00:00:00Z"));
    }

    #[test]
    fn a_handoff_in_the_skipped_hour_east_of_greenwich() {
        // Sydney goes from AEST (UTC+10) to AEDT (UTC+11) at 02:00 on 2026-10-04: 02:30 does
        // not exist and means 03:30 AEDT, 16:30 UTC the day before.
        let t = local_to_utc(chrono_tz::Australia::Sydney, local("2026-10-04 02:30"));
        assert_eq!(t, utc("2026-10-03T16:30:00Z"));
        let t = local_to_utc(chrono_tz::America::Denver, local("2026-03-08 02:30"));
        assert_eq!(t, utc("2026-03-08T09:30:00Z"));
    }

    #[test]
    fn shifts_agree_with_on_call_at_in_the_repeated_hour() {
        // Denver, 2026-11-01: 01:00-02:00 happens twice. A night layer until 01:30 covers
        // 01:00-01:30 on the wall clock both times.
        let mut night = layer("night", &["nina"], 1, ShiftUnit::Weeks, "2026-10-26 00:00");
        night.restriction = Some(Restriction {
            mode: RestrictionMode::Within,
            windows: vec![WeeklyWindow {
                days: vec![Weekday::Sat],
                start: hm("22:00"),
                end: hm("01:30"),
            }],
        });
        let s = schedule(
            chrono_tz::America::Denver,
            vec![
                layer("base", &["alice"], 1, ShiftUnit::Weeks, "2026-10-26 00:00"),
                night,
            ],
        );
        let (from, to) = (utc("2026-11-01T03:00:00Z"), utc("2026-11-01T12:00:00Z"));
        let shifts = s.shifts(from, to);
        // Every minute, the shift that holds it names who on_call_at names.
        let mut t = from;
        while t < to {
            let shift = shifts.iter().find(|s| s.start <= t && t < s.end).unwrap();
            assert_eq!(shift.users, s.on_call_at(t), "at {t}");
            t += Duration::minutes(1);
        }
        assert_eq!(
            table(&shifts),
            rows(&[
                ("11-01 03:00Z", "11-01 04:00Z", "alice"), // Sat 21:00 MDT
                ("11-01 04:00Z", "11-01 07:30Z", "nina"),  // 22:00 MDT to the first 01:30
                ("11-01 07:30Z", "11-01 08:00Z", "alice"),
                ("11-01 08:00Z", "11-01 08:30Z", "nina"), // 01:00-01:30 MST, the second time
                ("11-01 08:30Z", "11-01 12:00Z", "alice"),
            ])
        );
    }

    #[test]
    fn overnight_windows_run_into_the_next_day() {
        let window = WeeklyWindow {
            days: vec![Weekday::Fri],
            start: hm("22:00"),
            end: hm("06:00"),
        };
        let at = |s: &str| window.contains(local(s));
        // 2026-11-27 is a Friday.
        assert!(at("2026-11-27 23:00") && at("2026-11-28 05:59"));
        assert!(!at("2026-11-28 06:00") && !at("2026-11-27 21:59") && !at("2026-11-28 23:00"));
    }

    #[test]
    fn added_people_and_per_user_shifts() {
        let mut s = schedule(
            chrono_tz::UTC,
            vec![layer(
                "rota",
                &["alice", "bob"],
                1,
                ShiftUnit::Days,
                "2026-11-26 00:00",
            )],
        );
        s.overrides.push(Override {
            user: "frank".into(),
            replaces: None,
            start: utc("2026-11-26T20:00:00Z"),
            end: utc("2026-11-27T04:00:00Z"),
        });
        assert_eq!(
            s.on_call_at(utc("2026-11-26T21:00:00Z")),
            ["alice", "frank"]
        );
        assert_eq!(s.on_call_at(utc("2026-11-27T01:00:00Z")), ["bob", "frank"]);
        let frank = s.shifts_of(
            "frank",
            utc("2026-11-26T00:00:00Z"),
            utc("2026-11-28T00:00:00Z"),
        );
        assert_eq!(
            table(&frank),
            rows(&[("11-26 20:00Z", "11-27 04:00Z", "frank")]),
            "one stretch, though the base changed under it"
        );
        let bob = s.shifts_of(
            "bob",
            utc("2026-11-26T00:00:00Z"),
            utc("2026-11-28T00:00:00Z"),
        );
        assert_eq!(
            table(&bob),
            rows(&[("11-27 00:00Z", "11-28 00:00Z", "bob")])
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        let known = |u: &str| ["alice", "bob"].contains(&u);
        let check = |s: &OnCallSchedule| s.validate(known).unwrap_err().to_string();
        let mut s = schedule(
            chrono_tz::UTC,
            vec![layer("empty", &[], 1, ShiftUnit::Days, "2026-11-26 00:00")],
        );
        assert_eq!(
            check(&s),
            "schedule `primary`: layer `empty` has no participants"
        );
        s.layers = vec![layer(
            "rota",
            &["alice", "zed"],
            1,
            ShiftUnit::Days,
            "2026-11-26 00:00",
        )];
        assert_eq!(
            check(&s),
            "schedule `primary`: layer `rota`: unknown user `zed`"
        );
        s.layers = vec![layer(
            "rota",
            &["alice"],
            0,
            ShiftUnit::Days,
            "2026-11-26 00:00",
        )];
        assert_eq!(
            check(&s),
            "schedule `primary`: layer `rota`: shift_length must be at least 1"
        );
        s.layers = vec![layer(
            "rota",
            &["alice", "bob"],
            1,
            ShiftUnit::Days,
            "2026-11-26 00:00",
        )];
        assert_eq!(s.validate(known), Ok(()));
        let cover = |start: &str, end: &str| Override {
            user: "bob".into(),
            replaces: Some("alice".into()),
            start: utc(start),
            end: utc(end),
        };
        s.overrides = vec![
            cover("2026-11-26T10:00:00Z", "2026-11-26T12:00:00Z"),
            cover("2026-11-26T11:00:00Z", "2026-11-26T13:00:00Z"),
        ];
        assert_eq!(check(&s), "schedule `primary`: overrides 1 and 2 overlap");
        s.overrides = vec![cover("2026-11-26T12:00:00Z", "2026-11-26T10:00:00Z")];
        assert_eq!(
            check(&s),
            "schedule `primary`: override 1 ends before it starts"
        );
    }
}
