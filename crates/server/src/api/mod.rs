//! The JSON APIs, one module per resource. Each handler takes the caller's key as an
//! extractor ([`crate::auth`]) and answers [`crate::error::ApiError`] on failure; none of
//! them knows about connections or the router ([`crate::router`] wires them to paths).
//!
//! - [`checks`]: the Healthchecks Management API v3 for checks, pings and flips.
//! - [`badges`]: status badges (`/api/v3/badges/`, `/badge/…`, `/b/…`).
//! - [`check_spec`]: a check's create or update body, validated as Healthchecks does.
//! - [`channels`]: notification channels (`/api/v3/channels/`).
//! - [`prometheus`]: Healthchecks' Prometheus endpoint (`/projects/<uuid>/metrics/<key>`).
//! - [`alerts`]: keepwatch's alerts API (`/api/v1/alerts/`).
//! - [`incidents`]: incidents, their updates, the stakeholder page and the postmortem
//!   export (`/api/v1/incidents/`, `/s/<token>`).
//! - [`events`]: alerts from outside: PagerDuty-style events and Alertmanager webhooks.
//! - [`oncall`]: who is on call (`/api/v1/oncall/`) and the calendar feeds (`/ical/…`).
//! - [`oncall_config`]: the on-call configuration file (`/api/v1/oncall/config`), and how
//!   the handlers below read the applied one.
//! - [`audit`]: the audit of the applied configuration (`/api/v1/audit`).
//! - [`checkins`]: shift check-ins, and acknowledging one (`/api/v1/checkins/`).
//! - [`drill`]: a drill or week sweep over the applied configuration (`/api/v1/drill`).
//! - [`people`], [`schedules`], [`policies`]: read views of what that file defines (and the
//!   verification of people's contacts).

pub mod alerts;
pub mod audit;
pub mod badges;
pub mod channels;
pub mod check_spec;
pub mod checkins;
pub mod checks;
pub mod drill;
pub mod events;
pub mod incidents;
pub mod oncall;
pub mod oncall_config;
pub mod people;
pub mod policies;
pub mod prometheus;
pub mod schedules;

tokio::task_local! {
    /// The version of the Healthchecks API the request came in on (`/api/v1/`, `/api/v2/`,
    /// `/api/v3/`): Healthchecks renders URLs with it, derives slugs from names before v3 and
    /// reports `started` in v1. Set by [`crate::router`] around the nested API routers.
    pub static API_VERSION: u8;
}

/// The version the current request came in on (3 outside an API request).
pub fn api_version() -> u8 {
    API_VERSION.try_with(|v| *v).unwrap_or(3)
}
