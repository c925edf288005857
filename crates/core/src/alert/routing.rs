//! Where an alert goes: its service, its urgency, and what its paging timeline becomes once
//! maintenance windows and a missing escalation policy are taken into account.
//!
//! [`super::paging`] says who would be paged when under a policy; this module puts an alert
//! in front of it. The engine's pager records the [`Routed`] entries as they fall due (log
//! lines and queued pages), and `keepwatch drill` prints the same entries for a time the user
//! picks, so a drill cannot disagree with what the engine does: both call [`timeline`].
//!
//! Everything here takes the configuration and the times as arguments and does no I/O.

use chrono::{DateTime, Utc};

use super::paging::{Page, Paging, Urgency};
use crate::oncall::config::OnCall;

/// The service an alert of check `check` goes to: the one the on-call file binds the check
/// to, else the check's own `service` field (`own`), else the project's `default` service,
/// else the project's only service. Without a configuration: `own`, else `default`.
///
/// The service need not exist in the file: an alert on an unknown service is recorded and
/// [`Routed::Unrouted`].
pub fn service_for(config: Option<&OnCall>, check: &str, own: Option<&str>) -> String {
    if let Some(bound) = config.and_then(|c| c.check_services.get(check)) {
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

/// The urgency `service` gives an alert triggered at `at`: its rule (always high, always
/// low, or by support hours). High when the service or the configuration is missing, so an
/// alert nobody configured is never played down.
pub fn urgency(config: Option<&OnCall>, service: &str, at: DateTime<Utc>) -> Urgency {
    config
        .and_then(|c| c.services.get(service))
        .map_or(Urgency::High, |s| s.urgency.at(at))
}

/// Where a person hears that an alert they were paged for was resolved, recovered or
/// finished late: one message, through their first notification rule (the one with the
/// least delay) for `urgency` whose contact has an address. `None` if they have none.
pub fn update_contact(config: &OnCall, person: &str, urgency: Urgency) -> Option<(String, String)> {
    let mut rules: Vec<_> = config
        .people
        .get(person)?
        .rules
        .iter()
        .filter(|rule| rule.urgency == urgency)
        .collect();
    rules.sort_by_key(|rule| rule.delay_minutes);
    rules.into_iter().find_map(|rule| {
        let address = config.contact_address(person, &rule.contact)?;
        Some((rule.contact.clone(), address.to_string()))
    })
}

/// An open alert, as routing needs it.
#[derive(Debug, Clone, Copy)]
pub struct Alert<'a> {
    pub service: &'a str,
    /// The check it is about, if it comes from one (maintenance windows can name a check).
    pub check: Option<&'a str>,
    pub triggered_at: DateTime<Utc>,
    /// The urgency at the trigger.
    pub urgency: Urgency,
}

/// A notification to send: to whom, through which of their contacts, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// When it is due.
    pub at: DateTime<Utc>,
    pub person: String,
    pub contact: String,
    /// The contact's address (`None` if the file does not give one).
    pub address: Option<String>,
    pub urgency: Urgency,
}

/// One entry of a routed alert's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// The alert's service has no escalation policy (it is not in the file, or there is no
    /// file): nobody is paged. The only entry, at the trigger.
    Unrouted {
        at: DateTime<Utc>,
        service: String,
    },
    /// An entry of the paging timeline that is logged as it is: a step started, the urgency
    /// raised, the last resort, a target nobody is behind. Never a [`Page::Notify`]: those
    /// become [`Routed::Notify`] or [`Routed::Suppressed`].
    Escalation(Page),
    /// A notification held back by a maintenance window: logged, not sent.
    Suppressed(Notification),
    Notify(Notification),
}

/// An entry of an alert's log, as the engine records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub kind: &'static str,
    pub who: String,
    pub detail: String,
}

impl Routed {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Routed::Unrouted { at, .. } => *at,
            Routed::Escalation(page) => page.at(),
            Routed::Suppressed(notification) | Routed::Notify(notification) => notification.at,
        }
    }

    /// The alert log line this entry is, or `None` for a notification (which is queued and
    /// logged when it is sent).
    pub fn log(&self) -> Option<LogLine> {
        let line = |kind, who: &str, detail: String| LogLine {
            kind,
            who: who.to_string(),
            detail,
        };
        Some(match self {
            Routed::Unrouted { service, .. } => line(
                "unrouted",
                "",
                format!("no on-call service `{service}` with an escalation policy in this project"),
            ),
            Routed::Escalation(Page::Step { step, pass, .. }) => {
                line("escalation_step", "", format!("step {step}, pass {pass}"))
            }
            Routed::Escalation(Page::UrgencyRaised { .. }) => line(
                "urgency_raised",
                "",
                "low → high: nobody acknowledged".into(),
            ),
            Routed::Escalation(Page::LastResort { .. }) => line(
                "last_resort",
                "",
                "every step and repeat passed unacknowledged".into(),
            ),
            Routed::Escalation(Page::Unreached { who, urgency, .. }) => line(
                "unreached",
                who,
                format!("nobody to notify at {} urgency", urgency.as_str()),
            ),
            Routed::Suppressed(n) => line(
                "suppressed",
                &format!("{} via {}", n.person, n.contact),
                format!("maintenance window ({} urgency)", n.urgency.as_str()),
            ),
            Routed::Escalation(Page::Notify { .. }) | Routed::Notify(_) => return None,
        })
    }
}

/// Everything that happens to `alert` before `until` (its acknowledgment, or the end of a
/// drill) if nobody acknowledges it, in time order: the paging timeline of its service's
/// policy with the notifications due inside a maintenance window suppressed, or the single
/// [`Routed::Unrouted`] entry when the service has no policy.
pub fn timeline(config: Option<&OnCall>, alert: &Alert<'_>, until: DateTime<Utc>) -> Vec<Routed> {
    let routed = config.and_then(|config| {
        let service = config.services.get(alert.service)?;
        let policy = config.policies.get(&service.policy)?;
        Some((config, service, policy))
    });
    let Some((config, service, policy)) = routed else {
        return if alert.triggered_at < until {
            vec![Routed::Unrouted {
                at: alert.triggered_at,
                service: alert.service.to_string(),
            }]
        } else {
            Vec::new()
        };
    };
    let paging = Paging {
        triggered_at: alert.triggered_at,
        urgency: alert.urgency,
        raise_after: service.raise_after,
        policy,
        schedules: &config.schedules,
        people: &config.people,
    };
    paging
        .timeline(until)
        .into_iter()
        .map(|page| {
            let Page::Notify {
                at,
                user,
                contact,
                urgency,
            } = page
            else {
                return Routed::Escalation(page);
            };
            let notification = Notification {
                at,
                address: config.contact_address(&user, &contact).map(str::to_string),
                person: user,
                contact,
                urgency,
            };
            if config.in_maintenance(alert.service, alert.check, at) {
                Routed::Suppressed(notification)
            } else {
                Routed::Notify(notification)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    /// The README's example: billing is high on weekdays 09:00–17:00 in Denver, low outside,
    /// raised after 10 minutes; two steps of 15 minutes, one repeat, Lee as the last resort.
    const EXAMPLE: &str = include_str!("../../../../examples/oncall.toml");

    const CHECK: &str = "0b6a5f0e-3c1d-4e8f-9a2b-7c4d5e6f7a8b";

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn example(extra: &str) -> OnCall {
        OnCall::parse(&format!("{EXAMPLE}\n{extra}")).unwrap()
    }

    fn alert<'a>(service: &'a str, at: &str, urgency: Urgency) -> Alert<'a> {
        Alert {
            service,
            check: Some(CHECK),
            triggered_at: utc(at),
            urgency,
        }
    }

    /// `kind who` per entry, notifications as `notify person contact`.
    fn kinds(entries: &[Routed]) -> Vec<String> {
        entries
            .iter()
            .map(|entry| match (entry, entry.log()) {
                (Routed::Notify(n), _) => format!("notify {} {}", n.person, n.contact),
                (_, Some(line)) => format!("{} {}", line.kind, line.who).trim_end().to_string(),
                (_, None) => unreachable!("only notifications have no log line"),
            })
            .collect()
    }

    #[test]
    fn the_service_is_the_binding_then_the_check_own_then_default_then_the_only_one() {
        let bound = example(&format!(
            "[[services]]\nname = \"ops\"\npolicy = \"billing\"\nchecks = [\"{CHECK}\"]\n"
        ));
        assert_eq!(service_for(Some(&bound), CHECK, Some("payroll")), "ops");
        let other = "1c2d3e4f-0000-4000-8000-000000000000";
        assert_eq!(service_for(Some(&bound), other, Some("payroll")), "payroll");
        // Two services and no `default`: `default`, which is not in the file (unrouted).
        assert_eq!(service_for(Some(&bound), other, None), "default");
        assert_eq!(service_for(Some(&bound), other, Some("")), "default");
        // One service: it takes every check that names none.
        let single = example("");
        assert_eq!(service_for(Some(&single), CHECK, None), "billing");
        let with_default = example("[[services]]\nname = \"default\"\npolicy = \"billing\"\n");
        assert_eq!(service_for(Some(&with_default), CHECK, None), "default");
        assert_eq!(service_for(None, CHECK, Some("payroll")), "payroll");
        assert_eq!(service_for(None, CHECK, None), "default");
    }

    #[test]
    fn an_update_goes_through_the_first_rule_for_the_urgency() {
        let config = example("");
        // Alice: ntfy and email at once, ntfy again after 5 minutes (high); email (low).
        assert_eq!(
            update_contact(&config, "alice", Urgency::High),
            Some(("ntfy".into(), "https://ntfy.sh/alice-pages".into()))
        );
        assert_eq!(
            update_contact(&config, "alice", Urgency::Low).map(|(contact, _)| contact),
            Some("email".into())
        );
        assert_eq!(update_contact(&config, "nobody", Urgency::High), None);
    }

    #[test]
    fn urgency_follows_support_hours_and_is_high_without_a_service() {
        let config = example("");
        // Friday 14:00 and Saturday 00:00 in Denver.
        let friday = utc("2026-11-27T21:00:00Z");
        let saturday = utc("2026-11-28T07:00:00Z");
        assert_eq!(urgency(Some(&config), "billing", friday), Urgency::High);
        assert_eq!(urgency(Some(&config), "billing", saturday), Urgency::Low);
        assert_eq!(urgency(Some(&config), "payroll", saturday), Urgency::High);
        assert_eq!(urgency(None, "billing", saturday), Urgency::High);
    }

    #[test]
    fn a_normal_alert_walks_the_policy_and_gives_the_addresses() {
        let config = example("");
        let alert = alert("billing", "2026-11-27T21:00:00Z", Urgency::High);
        let entries = timeline(
            Some(&config),
            &alert,
            alert.triggered_at + TimeDelta::hours(2),
        );
        assert_eq!(
            kinds(&entries),
            [
                "escalation_step",
                "notify alice ntfy",
                "notify alice email",
                "notify alice ntfy",
                "escalation_step",
                "notify bob ntfy",
                "escalation_step",
                "notify alice ntfy",
                "notify alice email",
                "notify alice ntfy",
                "escalation_step",
                "notify bob ntfy",
                "last_resort",
                "notify lee phone",
            ]
        );
        let Routed::Notify(first) = &entries[1] else {
            panic!("{entries:?}")
        };
        assert_eq!(
            (first.at, first.address.as_deref(), first.urgency),
            (
                alert.triggered_at,
                Some("https://ntfy.sh/alice-pages"),
                Urgency::High
            )
        );
        assert_eq!(
            entries[0].log().unwrap(),
            LogLine {
                kind: "escalation_step",
                who: String::new(),
                detail: "step 1, pass 1".into()
            }
        );
    }

    #[test]
    fn notifications_due_in_a_maintenance_window_are_suppressed() {
        // Billing is in maintenance from 00:00 to 00:12 Denver time on Saturday.
        let config = example(
            "[[maintenance]]\nservice = \"billing\"\n\
             start = \"2026-11-28T07:00:00Z\"\nend = \"2026-11-28T07:12:00Z\"\n",
        );
        let alert = alert("billing", "2026-11-28T07:00:00Z", Urgency::Low);
        let entries = timeline(Some(&config), &alert, utc("2026-11-28T07:20:00Z"));
        assert_eq!(
            kinds(&entries),
            [
                "escalation_step",
                "suppressed alice via email",
                "urgency_raised",
                "suppressed alice via ntfy",
                "suppressed alice via email",
                "escalation_step",
                "notify bob ntfy",
                "notify alice ntfy",
            ]
        );
        assert_eq!(
            entries[1].log().unwrap().detail,
            "maintenance window (low urgency)"
        );
        // A window on another check of the service's does not hold this alert's pages.
        let other = example(
            "[[maintenance]]\ncheck = \"1c2d3e4f-0000-4000-8000-000000000000\"\n\
             start = \"2026-11-28T07:00:00Z\"\nend = \"2026-11-28T07:12:00Z\"\n",
        );
        let entries = timeline(Some(&other), &alert, utc("2026-11-28T07:01:00Z"));
        assert_eq!(kinds(&entries), ["escalation_step", "notify alice email"]);
        // One on this check does.
        let this = example(&format!(
            "[[maintenance]]\ncheck = \"{CHECK}\"\n\
             start = \"2026-11-28T07:00:00Z\"\nend = \"2026-11-28T07:12:00Z\"\n",
        ));
        let entries = timeline(Some(&this), &alert, utc("2026-11-28T07:01:00Z"));
        assert_eq!(
            kinds(&entries),
            ["escalation_step", "suppressed alice via email"]
        );
    }

    #[test]
    fn an_alert_on_a_service_without_a_policy_is_unrouted_once_at_the_trigger() {
        let config = example("");
        let alert = alert("payroll", "2026-11-28T07:00:00Z", Urgency::High);
        let entries = timeline(Some(&config), &alert, utc("2026-11-29T07:00:00Z"));
        assert_eq!(
            entries,
            [Routed::Unrouted {
                at: alert.triggered_at,
                service: "payroll".into()
            }]
        );
        assert_eq!(
            entries[0].log().unwrap().detail,
            "no on-call service `payroll` with an escalation policy in this project"
        );
        assert_eq!(timeline(None, &alert, utc("2026-11-29T07:00:00Z")), entries);
        // Nothing before the trigger.
        assert!(timeline(Some(&config), &alert, alert.triggered_at).is_empty());
    }
}
