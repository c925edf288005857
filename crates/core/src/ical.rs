//! iCalendar (RFC 5545) feeds of on-call shifts, for calendar apps to subscribe to. Times are
//! written in UTC (`…Z`), which every calendar app reads without a time zone definition.

use chrono::{DateTime, Utc};
use icalendar::{Calendar, Component, Event, EventLike};

use crate::oncall::Shift;

/// A calendar named `title` with one event per shift. `feed_id`, the shift's start and its
/// people make each event's UID, so refreshing the feed does not add copies of a shift;
/// `now` is the DTSTAMP.
pub fn feed(
    title: &str,
    feed_id: &str,
    shifts: &[Shift],
    summary: impl Fn(&Shift) -> String,
    now: DateTime<Utc>,
) -> String {
    let mut calendar = Calendar::new();
    calendar.name(title);
    for shift in shifts {
        let uid = format!(
            "{feed_id}-{}-{}@keepwatch",
            shift.start.timestamp(),
            shift.users.join("+")
        );
        calendar.push(
            Event::new()
                .uid(&uid)
                .summary(&summary(shift))
                .starts(shift.start)
                .ends(shift.end)
                .timestamp(now)
                .done(),
        );
    }
    calendar.done().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::{Layer, OnCallSchedule, Override, ShiftUnit};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// (DTSTART, DTEND, SUMMARY, UID) of every VEVENT, read back by an independent parser.
    fn parse(text: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>, String, String)> {
        let mut calendars = ical::IcalParser::new(text.as_bytes());
        let calendar = calendars
            .next()
            .expect("one calendar")
            .expect("valid iCalendar");
        assert!(calendars.next().is_none());
        let time = |v: &str| {
            chrono::NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%SZ")
                .unwrap()
                .and_utc()
        };
        calendar
            .events
            .iter()
            .map(|event| {
                let get = |name: &str| {
                    event
                        .properties
                        .iter()
                        .find(|p| p.name == name)
                        .and_then(|p| p.value.clone())
                        .unwrap_or_else(|| panic!("{name} missing"))
                };
                (
                    time(&get("DTSTART")),
                    time(&get("DTEND")),
                    get("SUMMARY"),
                    get("UID"),
                )
            })
            .collect()
    }

    #[test]
    fn a_feed_parsed_back_gives_the_schedules_own_shifts() {
        let schedule = OnCallSchedule {
            name: "primary".into(),
            tz: chrono_tz::America::Denver,
            layers: vec![Layer {
                name: "rota".into(),
                participants: vec!["alice".into(), "bob".into()],
                shift_length: 1,
                shift_unit: ShiftUnit::Days,
                start: chrono::NaiveDate::from_ymd_opt(2026, 3, 6)
                    .unwrap()
                    .and_hms_opt(9, 0, 0)
                    .unwrap(),
                restriction: None,
            }],
            overrides: vec![Override {
                user: "carol".into(),
                replaces: Some("bob".into()),
                start: utc("2026-03-07T20:00:00Z"),
                end: utc("2026-03-08T02:00:00Z"),
            }],
        };
        let (from, to) = (utc("2026-03-06T00:00:00Z"), utc("2026-03-12T00:00:00Z"));
        let now = utc("2026-03-01T00:00:00Z");
        let shifts = schedule.shifts(from, to);
        let text = feed("primary", "s1", &shifts, |s| s.users.join(", "), now);
        assert!(text.starts_with("BEGIN:VCALENDAR\r\n") && text.contains("X-WR-CALNAME:primary"));
        let events = parse(&text);
        assert_eq!(events.len(), shifts.len());
        for (event, shift) in events.iter().zip(&shifts) {
            assert_eq!((event.0, event.1), (shift.start, shift.end));
            assert_eq!(event.2, shift.users.join(", "));
        }
        assert_eq!(events[2].2, "carol", "the override shows in the feed");

        // A person's feed: only their shifts, with stable UIDs across refreshes.
        let bobs = schedule.shifts_of("bob", from, to);
        let text = feed("bob", "u-bob", &bobs, |_| "On call: primary".into(), now);
        let again = feed("bob", "u-bob", &bobs, |_| "On call: primary".into(), now);
        assert_eq!(text, again);
        let events = parse(&text);
        let spans: Vec<_> = events.iter().map(|e| (e.0, e.1)).collect();
        let expected: Vec<_> = bobs.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(spans, expected);
        assert!(events.iter().all(|e| e.3.starts_with("u-bob-")));
    }
}
