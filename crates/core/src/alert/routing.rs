//! Routing: which service an alert of a check belongs to, the urgency its service gives it,
//! and what each entry of its paging timeline becomes: a line in the alert's log, a
//! notification to send, or a notification held back by a maintenance window. An alert whose
//! service has no escalation policy is unrouted: nobody is paged, and its log says so once.
//!
//! The pager records these entries as time passes; `keepwatch drill` prints them. Both call
//! this code, so a drill shows what the server does.

use chrono::{DateTime, Utc};

use super::paging::{Page, Paging, Urgency};
use crate::oncall::OnCall;

/// The service an alert of a check goes to: the one the on-call file binds the check to,
/// else the check's own `service` field, else the project's `default` service, else the
/// project's only service.
pub fn service_for(config: Option<&OnCall>, check_uuid: &str, own: Option<&str>) -> String {
    if let Some(bound) = config.and_then(|c| c.check_services.get(check_uuid)) {
        return bound.clone();
    }
    if let Some(own) = own.filter(|s| !s.is_empty()) {
        return own.to_string();
    }
    let Some(config) = config else {
        return "default".into();
    };
    if config.services.contains_key("default") || config.services.len() != 1 {
        return "default".into();
    }
    config.services.keys().next().cloned().unwrap_or_default()
}

/// The urgency a service gives an alert triggered at `at` (high without a configuration or
/// for a service the file does not have).
pub fn urgency(config: Option<&OnCall>, service: &str, at: DateTime<Utc>) -> Urgency {
    config
        .and_then(|c| c.services.get(service))
        .map_or(Urgency::High, |s| s.urgency.at(at))
}

/// The check an alert is about, from its dedup key (`check:<uuid>` or `check:<uuid>:<kind>`).
pub fn check_of(dedup_key: &str) -> Option<&str> {
    dedup_key
        .strip_prefix("check:")
        .and_then(|rest| rest.split(':').next())
}

/// The alert routing needs to know of.
#[derive(Debug, Clone, Copy)]
pub struct AlertToRoute<'a> {
    pub service: &'a str,
    /// The check it is about, if any: maintenance windows can name one check.
    pub check: Option<&'a str>,
    pub triggered_at: DateTime<Utc>,
    pub urgency: Urgency,
}

/// One entry of an alert's timeline, routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub page: Page,
    /// A notification due inside a maintenance window of the alert's service or check: held
    /// back, and logged as such.
    pub suppressed: bool,
}

/// A line of an alert's log: kind, who, detail.
pub type LogLine = (&'static str, String, String);

impl Routed {
    pub fn at(&self) -> DateTime<Utc> {
        self.page.at()
    }

    /// The line this entry puts in the alert's log, or `None` for a notification to send
    /// (its log line comes with the delivery: notified, or notify_failed).
    pub fn log_line(&self) -> Option<LogLine> {
        Some(match &self.page {
            Page::Step { step, pass, .. } => (
                "escalation_step",
                String::new(),
                format!("step {step}, pass {pass}"),
            ),
            Page::UrgencyRaised { .. } => (
                "urgency_raised",
                String::new(),
                "low → high: nobody acknowledged".into(),
            ),
            Page::LastResort { .. } => (
                "last_resort",
                String::new(),
                "every step and repeat passed unacknowledged".into(),
            ),
            Page::Unreached { who, urgency, .. } => (
                "unreached",
                who.clone(),
                format!("nobody to notify at {} urgency", urgency.as_str()),
            ),
            Page::Notify {
                user,
                contact,
                urgency,
                ..
            } if self.suppressed => (
                "suppressed",
                format!("{user} via {contact}"),
                format!("maintenance window ({} urgency)", urgency.as_str()),
            ),
            Page::Notify { .. } => return None,
        })
    }
}

/// The log line of an alert whose service has no escalation policy.
pub fn unrouted(service: &str) -> LogLine {
    (
        "unrouted",
        String::new(),
        format!("no on-call service `{service}` with an escalation policy in this project"),
    )
}

/// An alert's timeline from its trigger to before `until` (the acknowledgment, or the end of a
/// drill), routed; `None` when its service has no escalation policy in `config` (unrouted).
pub fn route(
    config: &OnCall,
    alert: &AlertToRoute<'_>,
    until: DateTime<Utc>,
) -> Option<Vec<Routed>> {
    let service = config.services.get(alert.service)?;
    let policy = config.policies.get(&service.policy)?;
    let paging = Paging {
        triggered_at: alert.triggered_at,
        urgency: alert.urgency,
        raise_after: service.raise_after,
        policy,
        schedules: &config.schedules,
        people: &config.people,
    };
    Some(
        paging
            .timeline(until)
            .into_iter()
            .map(|page| {
                let suppressed = matches!(page, Page::Notify { at, .. }
                    if config.in_maintenance(alert.service, alert.check, at));
                Routed { page, suppressed }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared fixture (billing pages alice by email), with billing bound to a check, a
    /// support-hours service and a maintenance window on billing.
    fn file() -> String {
        let base = include_str!("../../../../fixtures/oncall/alice-on-billing.toml");
        format!(
            r#"{base}checks = ["6d3b5e2c-0000-4000-8000-000000000001"]
[[services]]
name = "web"
policy = "p"
urgency = "support-hours"
support_hours = {{ tz = "UTC", inside = "high", windows = [{{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }}] }}
[[maintenance]]
service = "billing"
start = "2026-12-01T00:00:00Z"
end = "2026-12-01T01:00:00Z"
"#
        )
    }

    fn config() -> OnCall {
        OnCall::parse(&file()).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_check_goes_to_its_bound_service_then_its_own_then_the_default() {
        let config = config();
        let bound = "6d3b5e2c-0000-4000-8000-000000000001";
        assert_eq!(service_for(Some(&config), bound, Some("web")), "billing");
        assert_eq!(service_for(Some(&config), "other", Some("web")), "web");
        assert_eq!(service_for(Some(&config), "other", None), "default");
        assert_eq!(service_for(None, "other", Some("")), "default");
        assert_eq!(check_of("check:abc:overlap"), Some("abc"));
        assert_eq!(check_of("db1"), None);
    }

    #[test]
    fn support_hours_set_the_urgency_and_unknown_services_are_high() {
        let config = config();
        let monday_noon = at("2026-11-30T12:00:00Z");
        let monday_night = at("2026-11-30T22:00:00Z");
        assert_eq!(urgency(Some(&config), "web", monday_noon), Urgency::High);
        assert_eq!(urgency(Some(&config), "web", monday_night), Urgency::Low);
        assert_eq!(urgency(Some(&config), "nope", monday_night), Urgency::High);
        assert_eq!(urgency(None, "web", monday_night), Urgency::High);
    }

    #[test]
    fn a_notification_inside_a_maintenance_window_is_suppressed_and_logged() {
        let config = config();
        let alert = AlertToRoute {
            service: "billing",
            check: None,
            triggered_at: at("2026-12-01T00:30:00Z"),
            urgency: Urgency::High,
        };
        let routed = route(
            &config,
            &alert,
            alert.triggered_at + chrono::TimeDelta::minutes(1),
        )
        .unwrap();
        let notify = routed
            .iter()
            .find(|r| matches!(r.page, Page::Notify { .. }))
            .unwrap();
        assert!(notify.suppressed);
        assert_eq!(
            notify.log_line(),
            Some((
                "suppressed",
                "alice via email".to_string(),
                "maintenance window (high urgency)".to_string()
            ))
        );
        // After the window, the same alert notifies.
        let later = AlertToRoute {
            triggered_at: at("2026-12-01T01:00:00Z"),
            ..alert
        };
        let routed = route(
            &config,
            &later,
            later.triggered_at + chrono::TimeDelta::minutes(1),
        )
        .unwrap();
        let notify = routed
            .iter()
            .find(|r| matches!(r.page, Page::Notify { .. }))
            .unwrap();
        assert!(!notify.suppressed);
        assert_eq!(notify.log_line(), None);
    }

    #[test]
    fn a_service_without_a_policy_is_unrouted() {
        let alert = AlertToRoute {
            service: "payroll",
            check: None,
            triggered_at: at("2026-12-01T00:30:00Z"),
            urgency: Urgency::High,
        };
        assert_eq!(route(&config(), &alert, alert.triggered_at), None);
        assert_eq!(
            unrouted("payroll").2,
            "no on-call service `payroll` with an escalation policy in this project"
        );
    }
}
