//! Where an alert goes: its service, its urgency, and what its paging timeline becomes once
//! maintenance windows and a missing escalation policy are taken into account.
//!
//! [`super::paging`] says who would be paged when under a policy; this module puts an alert
//! in front of it. The engine's pager records the [`Routed`] entries as they fall due (log
//! lines and queued pages), and `keepwatch drill` prints the same entries for a time the user
//! picks, so a drill cannot disagree with what the engine does: both call [`timeline`].
//!
//! Everything here takes the configuration and the times as arguments and does no I/O.

use chrono::{DateTime, TimeDelta, Utc};

use super::paging::{Page, Paging, Urgency};
use crate::oncall::config::{OnCall, Renotify};
use crate::schedule::Schedule;

/// At most this many reminders and missed runs in one timeline, counted from the trigger: a
/// check due every minute and down for a week; bounds the work of one computation.
const MAX_NAGS: usize = 10_000;

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
    /// For the alert of a check that is down: its schedule, whose missed runs re-notify.
    pub missed: Option<Missed<'a>>,
}

/// The schedule of a check that is down, for re-notifying at each run it misses.
#[derive(Debug, Clone, Copy)]
pub struct Missed<'a> {
    pub schedule: &'a Schedule,
    pub grace: TimeDelta,
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
    /// The check missed another run while its alert stayed open (`run`: how many it has
    /// missed, the one that raised the alert included). Once the policy has run out, the
    /// first step is notified again (`notify`); while it is still escalating, the escalation
    /// pages and the miss is only logged.
    Renotify {
        at: DateTime<Utc>,
        run: u32,
        notify: bool,
    },
    /// The alert has been open for `open_for` (the service's `remind_after`, or a multiple):
    /// the first step is reminded.
    Reminder {
        at: DateTime<Utc>,
        open_for: TimeDelta,
    },
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
            Routed::Unrouted { at, .. }
            | Routed::Renotify { at, .. }
            | Routed::Reminder { at, .. } => *at,
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
            Routed::Renotify { run, notify, .. } => line(
                "missed_run",
                "",
                if *notify {
                    format!("missed run {run} while down: notifying the first step again")
                } else {
                    format!("missed run {run} while down (escalation under way)")
                },
            ),
            Routed::Reminder { open_for, .. } => {
                let hours = open_for.num_minutes() / 60;
                let open = match (hours, open_for.num_minutes() % 60) {
                    (0, m) => format!("{m} min"),
                    (h, 0) => format!("{h} h"),
                    (h, m) => format!("{h} h {m:02} min"),
                };
                line(
                    "reminder",
                    "",
                    format!("open for {open}: reminding the first step"),
                )
            }
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
    // Reminders and re-notifications, each followed by the first step's notifications.
    let mut nags: Vec<(Routed, DateTime<Utc>)> = Vec::new();
    if let Some(every) = service.remind_after {
        let mut open_for = every;
        while alert.triggered_at + open_for < until && nags.len() < MAX_NAGS {
            let at = alert.triggered_at + open_for;
            nags.push((Routed::Reminder { at, open_for }, at));
            open_for += every;
        }
    }
    if let Some(missed) = alert.missed.filter(|_| service.renotify != Renotify::Never) {
        // The run whose deadline raised the alert is missed run 1.
        let mut expected = missed
            .schedule
            .next_after(alert.triggered_at - missed.grace);
        let mut run = 1;
        while let Some(next) = expected
            && next + missed.grace < until
            && nags.len() < MAX_NAGS
        {
            run += 1;
            let at = next + missed.grace;
            let due = match service.renotify {
                Renotify::HighUrgency => paging.urgency_at(at) == Urgency::High,
                Renotify::Every(n) => (run - 1) % n == 0,
                Renotify::Never => false,
            };
            if at >= alert.triggered_at {
                let notify = due && at >= paging.escalation_end();
                nags.push((Routed::Renotify { at, run, notify }, at));
            }
            expected = missed.schedule.next_after(next);
        }
    }
    let route = |page: Page| {
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
    };
    let mut routed: Vec<Routed> = paging.timeline(until).into_iter().map(route).collect();
    if nags.is_empty() {
        return routed;
    }
    // A reminder and a missed run at one instant notify once.
    let mut notified = Vec::new();
    for (nag, at) in nags {
        let notify = !matches!(nag, Routed::Renotify { notify: false, .. });
        routed.push(nag);
        if !notify || notified.contains(&at) {
            continue;
        }
        notified.push(at);
        routed.extend(
            paging
                .first_step(at)
                .into_iter()
                .filter(|page| page.at() < until)
                .map(route),
        );
    }
    // Stable: at one instant the escalation comes first, then each reminder or
    // re-notification followed by what it sends.
    routed.sort_by_key(Routed::at);
    routed
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
            missed: None,
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

    /// `HH:MM kind who` per entry after `from`, notifications as `notify person contact`.
    fn after(entries: &[Routed], from: &str) -> Vec<String> {
        let from = utc(from);
        let kept: Vec<Routed> = entries.iter().filter(|e| e.at() > from).cloned().collect();
        kept.iter()
            .zip(kinds(&kept))
            .map(|(entry, kind)| format!("{} {kind}", entry.at().format("%a %H:%M")))
            .collect()
    }

    /// A nightly check (00:00 Denver, 30 minutes grace) misses Saturday's run and stays down:
    /// after the policy has run out (step, step, repeat, last resort: an hour), each night it
    /// misses re-notifies the first step, and `remind_after` reminds it every 12 hours.
    #[test]
    fn a_check_that_stays_down_renotifies_each_missed_run_and_is_reminded() {
        let config = OnCall::parse(&EXAMPLE.replace(
            "raise_after = 10 ",
            "remind_after = \"12h\"\nraise_after = 10 ",
        ))
        .unwrap();
        let nightly = Schedule::parse("0 0 * * *", "America/Denver").unwrap();
        let mut alert = alert("billing", "2026-11-28T07:30:00Z", Urgency::Low);
        alert.missed = Some(Missed {
            schedule: &nightly,
            grace: TimeDelta::minutes(30),
        });
        let entries = timeline(Some(&config), &alert, utc("2026-11-30T07:31:00Z"));
        assert_eq!(
            after(&entries, "2026-11-28T08:35:00Z"),
            [
                "Sat 19:30 reminder",
                "Sat 19:30 notify alice ntfy",
                "Sat 19:30 notify alice email",
                "Sat 19:35 notify alice ntfy",
                "Sun 07:30 reminder",
                "Sun 07:30 notify alice ntfy",
                "Sun 07:30 notify alice email",
                "Sun 07:30 missed_run",
                "Sun 07:35 notify alice ntfy",
                "Sun 19:30 reminder",
                "Sun 19:30 notify alice ntfy",
                "Sun 19:30 notify alice email",
                "Sun 19:35 notify alice ntfy",
                "Mon 07:30 reminder",
                "Mon 07:30 notify alice ntfy",
                "Mon 07:30 notify alice email",
                "Mon 07:30 missed_run",
            ]
        );
        let missed: Vec<String> = entries
            .iter()
            .filter(|e| matches!(e, Routed::Renotify { .. }))
            .map(|e| e.log().unwrap().detail)
            .collect();
        assert_eq!(
            missed,
            [
                "missed run 2 while down: notifying the first step again",
                "missed run 3 while down: notifying the first step again",
            ]
        );
        // Without a schedule (a drill, a check that recovered) nothing is re-notified; with
        // `renotify_every = 0` the misses are not logged either.
        let never = OnCall::parse(
            &EXAMPLE.replace("raise_after = 10 ", "renotify_every = 0\nraise_after = 10 "),
        )
        .unwrap();
        let quiet = timeline(Some(&never), &alert, utc("2026-11-30T07:31:00Z"));
        assert!(!quiet.iter().any(|e| matches!(e, Routed::Renotify { .. })));
        alert.missed = None;
        let quiet = timeline(Some(&config), &alert, utc("2026-11-30T07:31:00Z"));
        assert!(!quiet.iter().any(|e| matches!(e, Routed::Renotify { .. })));
    }

    #[test]
    fn a_miss_during_the_escalation_is_only_logged_and_low_urgency_is_not_renotified() {
        let config = example("");
        let every_10_min = Schedule::Period(std::time::Duration::from_secs(600));
        let mut alert = alert("billing", "2026-11-28T07:00:00Z", Urgency::Low);
        alert.missed = Some(Missed {
            schedule: &every_10_min,
            grace: TimeDelta::minutes(1),
        });
        let entries = timeline(Some(&config), &alert, utc("2026-11-28T08:25:00Z"));
        let missed: Vec<(String, String)> = entries
            .iter()
            .filter(|e| matches!(e, Routed::Renotify { .. }))
            .map(|e| (e.at().format("%H:%M").to_string(), e.log().unwrap().detail))
            .collect();
        // Misses at 07:10, 07:20, … ; the escalation runs until 08:00.
        assert_eq!(
            missed[0],
            (
                "07:10".into(),
                "missed run 2 while down (escalation under way)".into()
            )
        );
        assert_eq!(
            missed.last().unwrap(),
            &(
                "08:20".into(),
                "missed run 9 while down: notifying the first step again".into()
            )
        );
        // A low alert that is never raised is not re-notified by default.
        let low_only =
            OnCall::parse(&EXAMPLE.replace("raise_after = 10 ", "raise_after = 0 ")).unwrap();
        let entries = timeline(Some(&low_only), &alert, utc("2026-11-28T09:25:00Z"));
        assert!(entries.iter().any(|e| matches!(e, Routed::Renotify { .. })));
        assert!(
            !entries
                .iter()
                .any(|e| matches!(e, Routed::Renotify { notify: true, .. }))
        );
        // `renotify_every = 2` at any urgency: every second miss.
        let every_other = OnCall::parse(
            &EXAMPLE.replace("raise_after = 10 ", "renotify_every = 2\nraise_after = 0 "),
        )
        .unwrap();
        let entries = timeline(Some(&every_other), &alert, utc("2026-11-28T08:45:00Z"));
        let notifying: Vec<String> = entries
            .iter()
            .filter(|e| matches!(e, Routed::Renotify { notify: true, .. }))
            .map(|e| e.at().format("%H:%M").to_string())
            .collect();
        // Misses 3, 5, 7 … (07:20, 07:40, 08:00, …); from 08:00 the policy has run out.
        assert_eq!(notifying, ["08:00", "08:20", "08:40"]);
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
