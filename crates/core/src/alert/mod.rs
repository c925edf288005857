//! What happens to an alert once it is open:
//!
//! - [`paging`]: who gets paged when: urgency, escalation, notification rules, raising.

pub mod paging;
