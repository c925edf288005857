//! What happens to an alert once it is open:
//!
//! - [`paging`]: who gets paged when: urgency, escalation, notification rules, raising.
//! - [`routing`]: which service an alert belongs to, its urgency, and its timeline with
//!   maintenance windows and unrouted alerts, as the engine records it and drills show it.

pub mod drill;
pub mod paging;
pub mod routing;

crate::text_enum::text_enum! {
    /// Where an alert is in its life: open (triggered, then perhaps acknowledged) until
    /// resolved.
    pub enum AlertStatus {
        Triggered = "triggered",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
    }
}

crate::text_enum::text_enum! {
    /// What raised an alert.
    pub enum AlertSource {
        /// A check's event (down, failed, hung, overlap, anomaly).
        Check = "check",
        /// `POST /api/v1/events`.
        Events = "events",
        /// Alertmanager's webhook.
        Alertmanager = "alertmanager",
        /// The server's own audit: an error-level finding.
        Audit = "audit",
    }
}
