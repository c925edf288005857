//! iCalendar (RFC 5545) feeds of on-call shifts, for calendar apps to subscribe to. Times are
//! written in UTC (`…Z`), which every calendar app reads without a time zone definition.

use chrono::{DateTime, Utc};

use crate::oncall::rotation::Shift;

/// A calendar named `title` with one event per shift. `feed_id`, the shift's start and its
/// people make each event's UID, so refreshing the feed does not add copies of a shift;
/// `now` is the DTSTAMP. Every text value is escaped and every line folded (RFC 5545 3.1 and
/// 3.3.11): a name cannot start a property or an event of its own.
pub fn feed(
    title: &str,
    feed_id: &str,
    shifts: &[Shift],
    summary: impl Fn(&Shift) -> String,
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    for fixed in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//keepwatch//on-call feed//EN",
        "CALSCALE:GREGORIAN",
    ] {
        line(&mut out, fixed);
    }
    line(&mut out, &format!("NAME:{}", text(title)));
    line(&mut out, &format!("X-WR-CALNAME:{}", text(title)));
    for shift in shifts {
        let uid = format!(
            "{feed_id}-{}-{}@keepwatch",
            shift.start.timestamp(),
            shift.users.join("+")
        );
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}", text(&uid)));
        line(&mut out, &format!("DTSTAMP:{}", stamp(now)));
        line(&mut out, &format!("DTSTART:{}", stamp(shift.start)));
        line(&mut out, &format!("DTEND:{}", stamp(shift.end)));
        line(&mut out, &format!("SUMMARY:{}", text(&summary(shift))));
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A TEXT value (RFC 5545 3.3.11): backslash, semicolon and comma escaped, a line break
/// (CRLF, CR or LF) written as `\n`, other control characters left out.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line folded at 75 octets (RFC 5545 3.1): each continuation line starts
/// with a space; a fold never splits a UTF-8 character.
fn line(out: &mut String, content: &str) {
    let mut rest = content;
    let mut limit = 75;
    loop {
        if rest.len() <= limit {
            out.push_str(rest);
            out.push_str("\r\n");
            return;
        }
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        // The leading space counts toward the next line's 75 octets.
        limit = 74;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::rotation::{Layer, OnCallSchedule, Override, ShiftUnit};

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
        assert!(text.contains("\r\nNAME:primary\r\n"));

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

    #[test]
    fn names_are_escaped_and_long_lines_folded() {
        let start = utc("2026-03-06T09:00:00Z");
        let shifts = [Shift {
            start,
            end: start + chrono::TimeDelta::hours(8),
            users: vec![
                "bob\r\nEND:VEVENT\r\nBEGIN:VEVENT".into(),
                "a;b,c\\d".into(),
            ],
        }];
        let title = format!("{}\nX-INJECTED:1 é", "x".repeat(100));
        let text = feed(&title, "s\r1", &shifts, |s| s.users.join(", "), start);
        for l in text.split("\r\n") {
            assert!(l.len() <= 75, "{l:?} is {} octets", l.len());
            assert!(
                !l.starts_with("X-INJECTED") && !l.starts_with("END:VEVENT\\"),
                "{l:?}"
            );
        }
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.iter().filter(|l| **l == "BEGIN:VEVENT").count(), 1);
        assert_eq!(lines.iter().filter(|l| **l == "END:VEVENT").count(), 1);
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']));
        // Read back by an independent parser (which unfolds but keeps the escapes).
        let events = parse(&text);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].2,
            "bob\\nEND:VEVENT\\nBEGIN:VEVENT\\, a\\;b\\,c\\\\d"
        );
        let unfolded = text.replace("\r\n ", "");
        assert!(unfolded.contains(&format!(
            "X-WR-CALNAME:{}\\nX-INJECTED:1 é\r\n",
            "x".repeat(100)
        )));
    }
}
