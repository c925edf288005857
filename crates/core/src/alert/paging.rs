//! Who gets paged when: the timeline of an alert under its service's urgency rule, its
//! escalation policy, the on-call schedules and each person's notification rules.
//!
//! Everything about an unacknowledged alert follows from its trigger time and the
//! configuration, so the timeline is computed whole, up to a limit (the acknowledgment, or
//! the end of a drill), and the engine sends what falls due. The rules:
//!
//! - The alert's **urgency** comes from its service: always high, always low, or by support
//!   hours (one urgency inside weekly windows of local time, the other outside).
//! - **Escalation**: step 1 starts at the trigger; each step notifies its targets (people, or
//!   whoever a schedule has on call when the step starts) and waits its delay before the next
//!   step. The whole policy runs `1 + repeat` times; then the last-resort target is notified.
//! - **Notification rules**: a person notified at `t` under urgency `u` gets one notification
//!   per rule for `u`, at `t + rule delay`.
//! - **Urgency raising**: a low-urgency alert still unacknowledged `raise_after` after the
//!   trigger becomes high: the people of the step in progress are notified again under their
//!   high-urgency rules, later steps use high rules, and low-urgency notifications not yet due
//!   are dropped.
//! - An **acknowledgment** stops everything after it: pass its time as the limit.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::oncall::rotation::{OnCallSchedule, WeeklyWindow};

crate::text_enum::text_enum! {
    /// How loudly to page: each person's notification rules say how, per urgency.
    #[derive(PartialOrd, Ord)]
    pub enum Urgency {
        Low = "low",
        High = "high",
    }
}

/// "Send to `contact` `delay_minutes` after being paged, for alerts of `urgency`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRule {
    pub urgency: Urgency,
    /// The name of one of the person's contact methods.
    pub contact: String,
    pub delay_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    pub rules: Vec<NotificationRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    User(String),
    Schedule(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationStep {
    pub targets: Vec<Target>,
    /// How long to wait for an acknowledgment before the next step.
    pub delay_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationPolicy {
    pub name: String,
    pub steps: Vec<EscalationStep>,
    /// How many more times the whole policy runs when nobody acknowledges.
    pub repeat: u32,
    pub last_resort: Option<Target>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UrgencyRule {
    Always(Urgency),
    SupportHours {
        tz: Tz,
        windows: Vec<WeeklyWindow>,
        inside: Urgency,
        outside: Urgency,
    },
}

impl UrgencyRule {
    pub fn at(&self, t: DateTime<Utc>) -> Urgency {
        match self {
            UrgencyRule::Always(urgency) => *urgency,
            UrgencyRule::SupportHours {
                tz,
                windows,
                inside,
                outside,
            } => {
                let local = t.with_timezone(tz).naive_local();
                if windows.iter().any(|w| w.contains(local)) {
                    *inside
                } else {
                    *outside
                }
            }
        }
    }
}

/// One entry of an alert's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Page {
    /// An escalation step started (steps and passes count from 1).
    Step {
        at: DateTime<Utc>,
        step: usize,
        pass: u32,
    },
    UrgencyRaised {
        at: DateTime<Utc>,
    },
    LastResort {
        at: DateTime<Utc>,
    },
    Notify {
        at: DateTime<Utc>,
        user: String,
        contact: String,
        urgency: Urgency,
    },
    /// A target with nobody behind it (an empty schedule slot, an unknown person), or a
    /// person with no rule for the urgency: nobody hears of this page.
    Unreached {
        at: DateTime<Utc>,
        who: String,
        urgency: Urgency,
    },
}

impl Page {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Page::Step { at, .. }
            | Page::UrgencyRaised { at }
            | Page::LastResort { at }
            | Page::Notify { at, .. }
            | Page::Unreached { at, .. } => *at,
        }
    }
}

/// Everything an alert's timeline depends on.
pub struct Paging<'a> {
    pub triggered_at: DateTime<Utc>,
    pub urgency: Urgency,
    /// `None`: the service opted out of raising urgency.
    pub raise_after: Option<TimeDelta>,
    pub policy: &'a EscalationPolicy,
    pub schedules: &'a HashMap<String, OnCallSchedule>,
    pub people: &'a HashMap<String, Person>,
}

impl Paging<'_> {
    /// Every page before `until` (the acknowledgment, or the end of a drill), in time order.
    pub fn timeline(&self, until: DateTime<Utc>) -> Vec<Page> {
        let raise_at = self.raise_at();
        let urgency_at = |t: DateTime<Utc>| self.urgency_at(t);
        let mut pages = Vec::new();
        // The steps, pass after pass, and who each one reached.
        let mut started: Vec<(DateTime<Utc>, Vec<&Target>)> = Vec::new();
        let mut at = self.triggered_at;
        'passes: for pass in 1..=self.policy.repeat + 1 {
            for (index, step) in self.policy.steps.iter().enumerate() {
                if at >= until {
                    break 'passes;
                }
                pages.push(Page::Step {
                    at,
                    step: index + 1,
                    pass,
                });
                for target in &step.targets {
                    self.notify(target, at, urgency_at(at), &mut pages);
                }
                started.push((at, step.targets.iter().collect()));
                at += TimeDelta::minutes(i64::from(step.delay_minutes));
            }
        }
        let steps_done =
            started.len() == self.policy.steps.len() * (self.policy.repeat as usize + 1);
        if steps_done
            && at < until
            && let Some(target) = &self.policy.last_resort
        {
            pages.push(Page::LastResort { at });
            self.notify(target, at, urgency_at(at), &mut pages);
            started.push((at, vec![target]));
        }
        if let Some(raise) = raise_at.filter(|r| *r < until) {
            // Low-urgency notifications not yet sent when the urgency rises are replaced.
            pages.retain(
                |p| !matches!(p, Page::Notify { at, urgency: Urgency::Low, .. } if *at >= raise),
            );
            pages.push(Page::UrgencyRaised { at: raise });
            // A step that starts at the raise already used the high rules.
            let current = started
                .iter()
                .rev()
                .find(|(start, _)| *start <= raise)
                .filter(|(start, _)| *start < raise);
            for target in current
                .map(|(_, targets)| targets.clone())
                .unwrap_or_default()
            {
                self.notify(target, raise, Urgency::High, &mut pages);
            }
        }
        pages.retain(|p| p.at() < until);
        // Stable: at the same instant, steps come before what they cause.
        pages.sort_by_key(Page::at);
        pages
    }

    /// When a low-urgency alert becomes high, if it does.
    fn raise_at(&self) -> Option<DateTime<Utc>> {
        match (self.urgency, self.raise_after) {
            (Urgency::Low, Some(after)) => Some(self.triggered_at + after),
            _ => None,
        }
    }

    /// When the policy has run out if nobody acknowledges: every step of every pass has had
    /// its delay (the last resort, if any, is paged then).
    pub fn escalation_end(&self) -> DateTime<Utc> {
        let pass: i64 = self
            .policy
            .steps
            .iter()
            .map(|step| i64::from(step.delay_minutes))
            .sum();
        self.triggered_at + TimeDelta::minutes(pass * (i64::from(self.policy.repeat) + 1))
    }

    /// The alert's urgency at `t`: the trigger's, or high once raised.
    pub fn urgency_at(&self, t: DateTime<Utc>) -> Urgency {
        match self.raise_at() {
            Some(raise) if t >= raise => Urgency::High,
            _ => self.urgency,
        }
    }

    /// The notifications of whoever the first step reaches at `at`, at the urgency then: what
    /// a reminder or a re-notification sends (the first step is who owns the alert now).
    pub fn first_step(&self, at: DateTime<Utc>) -> Vec<Page> {
        let mut pages = Vec::new();
        if let Some(step) = self.policy.steps.first() {
            for target in &step.targets {
                self.notify(target, at, self.urgency_at(at), &mut pages);
            }
        }
        pages
    }

    fn notify(&self, target: &Target, at: DateTime<Utc>, urgency: Urgency, pages: &mut Vec<Page>) {
        let users = match target {
            Target::User(id) => vec![id.clone()],
            Target::Schedule(name) => match self.schedules.get(name) {
                Some(schedule) => schedule.on_call_at(at),
                None => Vec::new(),
            },
        };
        if users.is_empty() {
            let who = match target {
                Target::User(id) => id.clone(),
                Target::Schedule(name) => format!("schedule {name}"),
            };
            pages.push(Page::Unreached { at, who, urgency });
        }
        for user in users {
            let rules: Vec<&NotificationRule> = self
                .people
                .get(&user)
                .map(|p| p.rules.iter().filter(|r| r.urgency == urgency).collect())
                .unwrap_or_default();
            if rules.is_empty() {
                pages.push(Page::Unreached {
                    at,
                    who: user.clone(),
                    urgency,
                });
            }
            for rule in rules {
                pages.push(Page::Notify {
                    at: at + TimeDelta::minutes(i64::from(rule.delay_minutes)),
                    user: user.clone(),
                    contact: rule.contact.clone(),
                    urgency,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::rotation::{Layer, ShiftUnit};
    use chrono::{NaiveTime, Weekday};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn rule(urgency: Urgency, contact: &str, delay_minutes: u32) -> NotificationRule {
        NotificationRule {
            urgency,
            contact: contact.into(),
            delay_minutes,
        }
    }

    fn always(name: &str, user: &str) -> OnCallSchedule {
        OnCallSchedule {
            name: name.into(),
            tz: chrono_tz::America::Denver,
            layers: vec![Layer {
                name: "24/7".into(),
                participants: vec![user.into()],
                shift_length: 1,
                shift_unit: ShiftUnit::Weeks,
                start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap(),
                restriction: None,
            }],
            overrides: Vec::new(),
        }
    }

    struct World {
        policy: EscalationPolicy,
        schedules: HashMap<String, OnCallSchedule>,
        people: HashMap<String, Person>,
        service: UrgencyRule,
    }

    /// Alice is on call (primary), Bob is the secondary, Lee the last resort. Support hours
    /// are weekdays 09:00–17:00 in Denver: high inside, low outside.
    fn world() -> World {
        use Urgency::{High, Low};
        let person = |id: &str, rules| {
            (
                id.to_string(),
                Person {
                    id: id.into(),
                    rules,
                },
            )
        };
        World {
            policy: EscalationPolicy {
                name: "billing".into(),
                steps: vec![
                    EscalationStep {
                        targets: vec![Target::Schedule("primary".into())],
                        delay_minutes: 15,
                    },
                    EscalationStep {
                        targets: vec![Target::Schedule("secondary".into())],
                        delay_minutes: 15,
                    },
                ],
                repeat: 1,
                last_resort: Some(Target::User("lee".into())),
            },
            schedules: HashMap::from([
                ("primary".to_string(), always("primary", "alice")),
                ("secondary".to_string(), always("secondary", "bob")),
            ]),
            people: HashMap::from([
                person(
                    "alice",
                    vec![
                        rule(High, "ntfy", 0),
                        rule(High, "email", 0),
                        rule(High, "ntfy", 5),
                        rule(Low, "email", 0),
                    ],
                ),
                person("bob", vec![rule(High, "ntfy", 0), rule(Low, "email", 0)]),
                person("lee", vec![rule(High, "phone", 0)]),
            ]),
            service: UrgencyRule::SupportHours {
                tz: chrono_tz::America::Denver,
                windows: vec![WeeklyWindow {
                    days: vec![
                        Weekday::Mon,
                        Weekday::Tue,
                        Weekday::Wed,
                        Weekday::Thu,
                        Weekday::Fri,
                    ],
                    start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                    end: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
                }],
                inside: Urgency::High,
                outside: Urgency::Low,
            },
        }
    }

    fn describe(pages: &[Page]) -> Vec<String> {
        pages
            .iter()
            .map(|p| {
                let at = p.at().format("%H:%M");
                match p {
                    Page::Step { step, pass, .. } => format!("{at} step {step} pass {pass}"),
                    Page::UrgencyRaised { .. } => format!("{at} urgency raised"),
                    Page::LastResort { .. } => format!("{at} last resort"),
                    Page::Notify {
                        user,
                        contact,
                        urgency,
                        ..
                    } => format!("{at} {user} {contact} {urgency:?}"),
                    Page::Unreached { who, urgency, .. } => {
                        format!("{at} UNREACHED {who} {urgency:?}")
                    }
                }
            })
            .collect()
    }

    /// A check in Denver misses its 00:00 deadline on a Saturday (07:00 UTC): outside support
    /// hours, so low urgency; nobody acknowledges.
    #[test]
    fn a_saturday_night_alert_rises_escalates_repeats_and_reaches_the_last_resort() {
        let w = world();
        let saturday_midnight = utc("2026-11-28T07:00:00Z");
        let urgency = w.service.at(saturday_midnight);
        assert_eq!(urgency, Urgency::Low);
        assert_eq!(
            w.service.at(utc("2026-11-30T16:00:00Z")),
            Urgency::High,
            "Monday 09:00"
        );
        let paging = Paging {
            triggered_at: saturday_midnight,
            urgency,
            raise_after: Some(TimeDelta::minutes(10)),
            policy: &w.policy,
            schedules: &w.schedules,
            people: &w.people,
        };
        let forever = utc("2026-11-29T00:00:00Z");
        assert_eq!(
            describe(&paging.timeline(forever)),
            [
                "07:00 step 1 pass 1",
                "07:00 alice email Low", // low: email only
                "07:10 urgency raised",
                "07:10 alice ntfy High", // the high rules fire for the step in progress
                "07:10 alice email High",
                "07:15 step 2 pass 1",
                "07:15 bob ntfy High", // later steps are high
                "07:15 alice ntfy High",
                "07:30 step 1 pass 2",
                "07:30 alice ntfy High",
                "07:30 alice email High",
                "07:35 alice ntfy High",
                "07:45 step 2 pass 2",
                "07:45 bob ntfy High",
                "08:00 last resort",
                "08:00 lee phone High",
            ]
        );
    }

    #[test]
    fn an_acknowledgment_stops_everything_after_it() {
        let w = world();
        let t0 = utc("2026-11-28T07:00:00Z");
        let paging = Paging {
            triggered_at: t0,
            urgency: Urgency::Low,
            raise_after: Some(TimeDelta::minutes(10)),
            policy: &w.policy,
            schedules: &w.schedules,
            people: &w.people,
        };
        let all = paging.timeline(utc("2026-11-29T00:00:00Z"));
        for minutes in [0, 1, 10, 14, 15, 31, 59, 61] {
            let ack = t0 + TimeDelta::minutes(minutes);
            let kept = paging.timeline(ack);
            let expected: Vec<_> = all.iter().filter(|p| p.at() < ack).cloned().collect();
            assert_eq!(kept, expected, "acknowledged at +{minutes} min");
        }
        assert!(
            paging.timeline(t0).is_empty(),
            "acknowledged at once: nothing"
        );
        // Acknowledged before the raise: no high-urgency page at all.
        let before_raise = paging.timeline(t0 + TimeDelta::minutes(9));
        assert!(before_raise.iter().all(|p| !matches!(
            p,
            Page::Notify {
                urgency: Urgency::High,
                ..
            }
        )));
    }

    #[test]
    fn a_raise_at_a_step_start_pages_that_step_once() {
        let w = world();
        let paging = Paging {
            triggered_at: utc("2026-11-28T07:00:00Z"),
            urgency: Urgency::Low,
            raise_after: Some(TimeDelta::minutes(15)),
            policy: &w.policy,
            schedules: &w.schedules,
            people: &w.people,
        };
        let pages = describe(&paging.timeline(utc("2026-11-28T07:20:00Z")));
        assert_eq!(
            pages,
            [
                "07:00 step 1 pass 1",
                "07:00 alice email Low",
                "07:15 step 2 pass 1",
                "07:15 bob ntfy High",
                "07:15 urgency raised",
            ]
        );
    }

    #[test]
    fn without_raising_a_low_alert_stays_low_and_people_without_rules_are_flagged() {
        let w = world();
        let paging = Paging {
            triggered_at: utc("2026-11-28T07:00:00Z"),
            urgency: Urgency::Low,
            raise_after: None,
            policy: &w.policy,
            schedules: &w.schedules,
            people: &w.people,
        };
        let pages = describe(&paging.timeline(utc("2026-11-29T00:00:00Z")));
        assert!(pages.contains(&"07:15 bob email Low".to_string()));
        assert!(
            pages.contains(&"08:00 UNREACHED lee Low".to_string()),
            "{pages:?}"
        );
        assert!(!pages.iter().any(|p| p.contains("High")));
    }
}
