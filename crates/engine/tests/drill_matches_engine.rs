//! What `keepwatch drill` shows is what the engine does: the same scenarios run through the
//! routing the drill prints (`keepwatch_core::alert::routing::route`) and through the real
//! engine (SQLite store, manual clock, recording transport), minute by minute, and the two
//! timelines are compared entry by entry: escalation steps and a repeat, a raised low-urgency
//! alert, a maintenance window, an unrouted alert.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use keepwatch_core::alert::paging::Page;
use keepwatch_core::alert::routing::{self, AlertToRoute};
use keepwatch_core::oncall::OnCall;
use keepwatch_engine::channels::RecordingTransport;
use keepwatch_engine::{Engine, EngineConfig, ManualClock, NewTrigger};
use keepwatch_store::{Store, from_micros};

const FILE: &str = r#"
[[people]]
id = "alice"
contacts = { email = "alice@example.com" }
rules = [
  { urgency = "high", contact = "email", after = 0 },
  { urgency = "low", contact = "email", after = 0 },
]
[[people]]
id = "bob"
contacts = { email = "bob@example.com" }
rules = [{ urgency = "high", contact = "email", after = 5 }]

[[policies]]
name = "two-steps"
steps = [{ targets = ["user:alice"], delay = 15 }, { targets = ["user:bob"], delay = 15 }]
repeat = 1
last_resort = "user:bob"

[[services]]
name = "billing"
policy = "two-steps"
urgency = "high"

[[services]]
name = "reports"
policy = "two-steps"
urgency = "low"
raise_after = 10

[[services]]
name = "batch"
policy = "two-steps"
urgency = "high"

[[maintenance]]
service = "batch"
start = "2026-12-01T09:00:00Z"
end = "2026-12-01T09:20:00Z"
"#;

/// When every scenario's alert fires (inside batch's maintenance window).
fn t0() -> DateTime<Utc> {
    "2026-12-01T09:00:00Z".parse().unwrap()
}

/// An entry of a timeline as both sides tell it: when (to the second), what, and who.
type Entry = (DateTime<Utc>, String, String);

/// The drill's side: the routed timeline of an alert on `service` triggered at `t0`.
fn drilled(config: &OnCall, service: &str, until: DateTime<Utc>) -> Vec<Entry> {
    let alert = AlertToRoute {
        service,
        check: None,
        triggered_at: t0(),
        urgency: routing::urgency(Some(config), service, t0()),
    };
    let Some(routed) = routing::route(config, &alert, until) else {
        let (kind, who, _) = routing::unrouted(service);
        return vec![(t0(), kind.to_string(), who)];
    };
    routed
        .into_iter()
        .map(|entry| match entry.log_line() {
            Some((kind, who, _)) => (entry.at(), kind.to_string(), who),
            None => {
                let Page::Notify { user, contact, .. } = &entry.page else {
                    unreachable!("only notifications have no log line of their own")
                };
                (
                    entry.at(),
                    "notified".into(),
                    format!("{user} via {contact}"),
                )
            }
        })
        .collect()
}

/// The engine's side: the alert's log after the engine ran to `until` a minute at a time.
async fn engine_ran(service: &str, until: DateTime<Utc>) -> Vec<Entry> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let project = store.create_project("default", 1).await.unwrap();
    store.apply_oncall(project.id, FILE, &[], 0).await.unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let transport = Arc::new(RecordingTransport::default());
    let (engine, _tasks) = Engine::start_with(
        store.clone(),
        clock.clone(),
        EngineConfig {
            // Every page goes out when due: the rate limit is not what is compared here.
            page_rate_limit: 1000,
            ..EngineConfig::default()
        },
        transport.clone(),
    )
    .await
    .unwrap();
    let trigger = NewTrigger {
        project_id: project.id,
        service,
        dedup_key: "scenario",
        summary: "nightly export failed",
        source: "events",
        details: "{}",
    };
    let (alert, _) = engine.trigger(&trigger).await.unwrap();
    engine.settled().await;
    while keepwatch_engine::Clock::now(&*clock) < until - TimeDelta::minutes(1) {
        clock.advance(TimeDelta::minutes(1));
        engine.settled().await;
    }
    let log = store.alert_log(alert.id).await.unwrap();
    let entries: Vec<Entry> = log
        .into_iter()
        .filter(|entry| entry.kind != "triggered")
        .map(|entry| {
            let at = from_micros(entry.at);
            // A message's pages count from its start (a microsecond apart within a round).
            let at = DateTime::from_timestamp(at.timestamp(), 0).unwrap();
            (at, entry.kind, entry.who)
        })
        .collect();
    let sent = transport.sent().len();
    let notified = entries.iter().filter(|e| e.1 == "notified").count();
    assert_eq!(sent, notified, "one message per notification logged");
    entries
}

async fn compare(service: &str, minutes: i64) -> Vec<Entry> {
    let config = OnCall::parse(FILE).unwrap();
    let until = t0() + TimeDelta::minutes(minutes);
    let mut expected = drilled(&config, service, until);
    let mut actual = engine_ran(service, until).await;
    // Entries at one instant may be recorded in any order.
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected, "service {service}");
    expected
}

#[tokio::test]
async fn steps_and_a_repeat_then_the_last_resort() {
    let entries = compare("billing", 75).await;
    let kinds: Vec<&str> = entries.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "escalation_step").count(), 4);
    assert!(kinds.contains(&"last_resort"), "{kinds:?}");
}

#[tokio::test]
async fn a_low_urgency_alert_nobody_answers_is_raised() {
    let entries = compare("reports", 20).await;
    assert!(
        entries.iter().any(|e| e.1 == "urgency_raised"),
        "{entries:?}"
    );
}

#[tokio::test]
async fn a_maintenance_window_holds_back_what_falls_inside_it() {
    let entries = compare("batch", 30).await;
    assert!(
        entries
            .iter()
            .any(|e| e.1 == "suppressed" && e.2 == "alice via email"),
        "{entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.1 == "notified" && e.0 >= t0() + TimeDelta::minutes(20)),
        "{entries:?}"
    );
}

#[tokio::test]
async fn an_alert_for_a_service_nobody_is_on_call_for_is_unrouted() {
    let entries = compare("payroll", 5).await;
    assert_eq!(entries, [(t0(), "unrouted".to_string(), String::new())]);
}
