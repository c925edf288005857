//! Shift check-ins: a schedule may ask each person to confirm they can be reached when their
//! shift starts (`checkin = { within = "15m", fallback = "carol" }` on a `[[schedules]]`
//! entry). keepwatch sends the check-in through the person's high-urgency rules; if it is not
//! acknowledged within `within`, the person on call before them and the schedule's fallback
//! are told, and the missed check-in is recorded (the audit reports it).
//!
//! Pure: which shifts started in a range, and what each message says, in the reader's zone.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::rotation::OnCallSchedule;

/// A schedule's check-in rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckinRule {
    /// How long after the shift starts the person has to acknowledge.
    pub within: TimeDelta,
    /// A person told of a missed check-in besides the person on call before.
    pub fallback: Option<String>,
}

/// The longest `within`: a day.
pub const MAX_WITHIN: TimeDelta = TimeDelta::days(1);

/// One person's shift that starts at `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShiftStart {
    pub person: String,
    pub start: DateTime<Utc>,
    /// When the person's stretch on call ends (looked for up to 8 weeks ahead).
    pub end: DateTime<Utc>,
    /// Who was on call just before (nobody after a gap), the person excepted.
    pub previous: Vec<String>,
}

/// The shifts of `schedule` that start in `(from, to]`: each person who is on call from an
/// instant in that range and was not just before it.
pub fn shift_starts(
    schedule: &OnCallSchedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<ShiftStart> {
    // A day before `from`, so that a stretch cut at `from` is not taken for a start.
    let look_from = from - TimeDelta::days(1);
    let shifts = schedule.shifts(look_from, to + TimeDelta::seconds(1));
    let mut out = Vec::new();
    for (i, shift) in shifts.iter().enumerate() {
        if shift.start <= from || shift.start > to || shift.start == look_from {
            continue;
        }
        let before: &[String] = match i.checked_sub(1).map(|j| &shifts[j]) {
            Some(prev) if prev.end == shift.start => &prev.users,
            _ => &[],
        };
        for person in shift.users.iter().filter(|u| !before.contains(u)) {
            let end = schedule
                .shifts_of(person, shift.start, shift.start + TimeDelta::weeks(8))
                .first()
                .map_or(shift.end, |s| s.end);
            out.push(ShiftStart {
                person: person.clone(),
                start: shift.start,
                end,
                previous: before.iter().filter(|u| *u != person).cloned().collect(),
            });
        }
    }
    out
}

/// `Sat 5 Dec 09:00 MST`: a time as a reader in `tz` reads it.
pub fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%a %-d %b %H:%M %Z")
        .to_string()
}

/// What a check-in's messages say, in the reader's zone: `(subject, text)`.
pub struct CheckinText<'a> {
    pub id: i64,
    pub schedule: &'a str,
    pub person: &'a str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub due: DateTime<Utc>,
    /// Who will be told if it is missed.
    pub told: &'a [String],
    /// The signed link that acknowledges it.
    pub link: &'a str,
}

impl CheckinText<'_> {
    /// The check-in, to the person whose shift starts.
    pub fn request(&self, tz: Tz) -> (String, String) {
        let subject = format!("Check in for your on-call shift on {}", self.schedule);
        let mut text = format!(
            "Your on-call shift on schedule {} starts {} and runs until {}.\n\
             Please confirm you can be reached by {}: open this link and press the button\n{}\n\
             or run: keepwatch checkin ack {}\n",
            self.schedule,
            local(self.start, tz),
            local(self.end, tz),
            local(self.due, tz),
            self.link,
            self.id
        );
        if !self.told.is_empty() {
            text.push_str(&format!(
                "If you do not, {} will be told.\n",
                self.told.join(" and ")
            ));
        }
        (subject, text)
    }

    /// The notice of a missed check-in, to `reader` (the person on call before, or the
    /// fallback).
    pub fn missed(&self, reader: &str, previous: bool, tz: Tz) -> (String, String) {
        let subject = format!(
            "{} did not check in for their on-call shift on {}",
            self.person, self.schedule
        );
        let why = if previous {
            "you were on call before them"
        } else {
            "you are the schedule's fallback"
        };
        let text = format!(
            "{person}'s on-call shift on schedule {schedule} started {start} and runs until {end}. \
             {person} did not confirm they can be reached by {due}.\n\
             You are told because {why}, {reader}: reach {person}, or cover the shift \
             (an override in the on-call file) until they can be reached.\n",
            person = self.person,
            schedule = self.schedule,
            start = local(self.start, tz),
            end = local(self.end, tz),
            due = local(self.due, tz),
        );
        (subject, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::OnCall;

    const FILE: &str = r#"
[[people]]
id = "alice"
[[people]]
id = "bob"
[[people]]
id = "carol"
[[schedules]]
name = "primary"
tz = "America/Denver"
checkin = { within = "15m", fallback = "carol" }
[[schedules.layers]]
name = "weekly"
participants = ["alice", "bob"]
shift = "1w"
start = "2026-11-30T09:00"
"#;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_handover_is_a_shift_start_with_the_previous_person() {
        let config = OnCall::parse(FILE).unwrap();
        let rule = &config.checkins["primary"];
        assert_eq!(rule.within, TimeDelta::minutes(15));
        assert_eq!(rule.fallback.as_deref(), Some("carol"));
        let schedule = &config.schedules["primary"];
        // Bob takes over on Mon 7 Dec 09:00 MST (16:00 UTC).
        let handover = utc("2026-12-07T16:00:00Z");
        let starts = shift_starts(schedule, handover - TimeDelta::hours(1), handover);
        assert_eq!(
            starts,
            [ShiftStart {
                person: "bob".into(),
                start: handover,
                end: handover + TimeDelta::weeks(1),
                previous: vec!["alice".into()],
            }]
        );
        // Not in a range that ends just before it, nor one that starts at it.
        assert_eq!(
            shift_starts(
                schedule,
                handover - TimeDelta::hours(1),
                handover - TimeDelta::seconds(1)
            ),
            []
        );
        assert_eq!(
            shift_starts(schedule, handover, handover + TimeDelta::hours(1)),
            []
        );
    }

    #[test]
    fn the_texts_name_the_schedule_the_times_in_the_readers_zone_and_the_link() {
        let text = CheckinText {
            id: 7,
            schedule: "primary",
            person: "bob",
            start: utc("2026-12-07T16:00:00Z"),
            end: utc("2026-12-14T16:00:00Z"),
            due: utc("2026-12-07T16:15:00Z"),
            told: &["alice".into(), "carol".into()],
            link: "https://kw.example/a/token",
        };
        let (subject, body) = text.request(chrono_tz::America::Denver);
        assert_eq!(subject, "Check in for your on-call shift on primary");
        assert_eq!(
            body,
            "Your on-call shift on schedule primary starts Mon 7 Dec 09:00 MST and runs until \
             Mon 14 Dec 09:00 MST.\nPlease confirm you can be reached by Mon 7 Dec 09:15 MST: \
             open this link and press the button\nhttps://kw.example/a/token\nor run: keepwatch \
             checkin ack 7\nIf you do not, alice and carol will be told.\n"
        );
        let (subject, body) = text.missed("carol", false, chrono_tz::Europe::Paris);
        assert_eq!(
            subject,
            "bob did not check in for their on-call shift on primary"
        );
        assert!(
            body.starts_with(
                "bob's on-call shift on schedule primary started Mon 7 Dec 17:00 CET and runs \
                 until Mon 14 Dec 17:00 CET. bob did not confirm they can be reached by Mon 7 \
                 Dec 17:15 CET.\nYou are told because you are the schedule's fallback, carol"
            ),
            "{body}"
        );
    }

    #[test]
    fn a_changed_checkin_changes_its_schedule() {
        let old = OnCall::parse(FILE).unwrap();
        let new = OnCall::parse(&FILE.replace("\"15m\"", "\"30m\"")).unwrap();
        assert_eq!(
            crate::oncall::config::changes(Some(&old), &new),
            ["~ schedule primary"]
        );
        let none = OnCall::parse(
            &FILE.replace("checkin = { within = \"15m\", fallback = \"carol\" }\n", ""),
        )
        .unwrap();
        assert!(none.checkins.is_empty());
        assert_eq!(
            crate::oncall::config::changes(Some(&none), &old),
            ["~ schedule primary"]
        );
    }

    #[test]
    fn a_bad_checkin_is_refused_with_its_path() {
        let bad = |text: &str| OnCall::parse(text).unwrap_err().to_string();
        assert_eq!(
            bad(&FILE.replace("\"15m\"", "\"soon\"")),
            "schedules[0] (primary).checkin.within: `soon` is not a duration from 1m to 1d (`15m`)"
        );
        assert_eq!(
            bad(&FILE.replace("\"carol\" }", "\"dave\" }")),
            "schedules[0] (primary).checkin.fallback: unknown person `dave`"
        );
    }
}
