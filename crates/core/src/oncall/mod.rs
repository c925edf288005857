//! Who is on call, and how to reach them:
//!
//! - [`rotation`]: on-call schedules (layers of rotations, restrictions, overrides); who is on
//!   call at an instant and every shift in a range.
//! - [`config`]: the on-call configuration file (TOML) that puts people, schedules, escalation
//!   policies and services together.
//! - [`checkin`]: shift check-ins (which shifts start when, what the messages say).
//! - [`contact`]: a person's contact addresses, and whether one can be delivered to.
//! - [`ical`]: shifts as iCalendar feeds.

pub mod checkin;
pub mod config;
pub mod contact;
pub mod ical;
pub mod rotation;

pub use config::OnCall;
pub use contact::ContactKind;
pub use rotation::{OnCallSchedule, Shift};
