//! The pure core of keepwatch: everything here takes `now` as an argument and does no I/O,
//! so the engine, the tests and (later) drills run the same code against any clock.
//!
//! - [`schedule`]: cron expressions (Healthchecks' dialect), systemd OnCalendar expressions
//!   and simple periods, with time zones and the DST rule we follow.
//! - [`check`]: the check state machine: pings in, state and events out.
//! - [`oncall`]: on-call schedules: layers of rotations, restrictions and overrides; who is
//!   on call at an instant and every shift in a range; [`ical`] writes them as feeds.
//! - [`oncall_file`]: the on-call configuration file (TOML) that puts these together.
//! - [`paging`]: who gets paged when: urgency, escalation, notification rules, raising.

pub mod check;
pub mod contact;
pub mod ical;
pub mod oncalendar;
pub mod oncall;
pub mod oncall_file;
pub mod paging;
pub mod schedule;
