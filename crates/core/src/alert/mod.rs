//! What happens to an alert once it is open:
//!
//! - [`paging`]: who gets paged when: urgency, escalation, notification rules, raising.
//! - [`routing`]: an alert's service and urgency, and what each entry of its timeline
//!   becomes (a log line, a notification, one held back by maintenance), for the pager and
//!   the drill alike.

pub mod paging;
pub mod routing;
