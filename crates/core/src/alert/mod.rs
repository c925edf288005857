//! What happens to an alert once it is open:
//!
//! - [`paging`]: who gets paged when: urgency, escalation, notification rules, raising.
//! - [`routing`]: which service an alert belongs to, its urgency, and its timeline with
//!   maintenance windows and unrouted alerts, as the engine records it and drills show it.

pub mod paging;
pub mod routing;
