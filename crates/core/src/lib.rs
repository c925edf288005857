//! The pure core of keepwatch: everything here takes `now` as an argument and does no I/O,
//! so the engine, the tests and drills run the same code against any clock.
//!
//! - [`schedule`]: when a check is due: cron expressions (Healthchecks' dialect), systemd
//!   OnCalendar expressions and simple periods, with time zones and the DST rule we follow.
//! - [`check`]: the check state machine: pings in, state and events out.
//! - [`oncall`]: who is on call and how to reach them: rotations, the configuration file,
//!   contacts, iCal feeds.
//! - [`alert`]: what happens to an open alert: its paging timeline.

pub mod alert;
pub mod audit;
pub mod check;
pub mod incident;
pub mod oncall;
pub mod schedule;
mod text_enum;
pub mod user;

pub use text_enum::UnknownValue;
