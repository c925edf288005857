//! A live drill in the engine alone: real notifications through the (recording) transport,
//! each at its time on the manual clock, marked as a drill; an acknowledgment stops the rest;
//! no alert is opened.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use keepwatch_core::alert::drill::{Event, Subject};
use keepwatch_engine::channels::{RecordingTransport, Request};
use keepwatch_engine::{Engine, EngineConfig, ManualClock};
use keepwatch_store::{AppliedBy, MessageKind, Store, Timestamp};

const FILE: &str = r#"
[[people]]
id = "alice"
contacts = { email = "alice@example.com" }
rules = [{ urgency = "high", contact = "email", after = 0 }]
[[people]]
id = "bob"
contacts = { email = "bob@example.com" }
rules = [{ urgency = "high", contact = "email", after = 0 }]
[[policies]]
name = "p"
steps = [{ targets = ["user:alice"], delay = 10 }, { targets = ["user:bob"], delay = 10 }]
[[services]]
name = "billing"
policy = "p"
"#;

/// `(to, subject, body)` of the emails sent, once there are `n` (the drill sends from a task
/// of its own: waited for, never for a deadline).
async fn emails(transport: &RecordingTransport, n: usize) -> Vec<(String, String, String)> {
    for _ in 0..500 {
        if transport.sent().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    transport
        .sent()
        .iter()
        .map(|r| match r {
            Request::Email {
                to, subject, body, ..
            } => (to.clone(), subject.clone(), body.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_live_drill_pages_as_the_timeline_says_marked_as_a_drill_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let project = store
        .create_project("default", Timestamp::default())
        .await
        .unwrap();
    store
        .apply_oncall(
            project.id,
            FILE,
            &[],
            &AppliedBy::default(),
            Timestamp::default(),
        )
        .await
        .unwrap();
    let config = keepwatch_core::oncall::OnCall::parse(FILE).unwrap();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 12, 5, 7, 0, 0).unwrap(),
    ));
    let transport = Arc::new(RecordingTransport::default());
    let (engine, _tasks) = Engine::start_with(
        store.clone(),
        clock.clone(),
        EngineConfig {
            site_url: "https://kw.example".into(),
            ..EngineConfig::default()
        },
        transport.clone(),
    )
    .await
    .unwrap();
    let subject = Subject {
        service: "billing".into(),
        check: None,
        schedule: None,
        event: Event::Down,
    };

    // Nobody acknowledges: alice at once, bob ten minutes on.
    let drill =
        engine.start_live_drill(project.id, &config, &subject, TimeDelta::hours(1), "carol");
    assert_eq!(drill.notices.len(), 2);
    assert_eq!(
        (
            drill.notices[1].person.as_str(),
            drill.notices[1].at - drill.started_at
        ),
        ("bob", TimeDelta::minutes(10))
    );
    let sent = emails(&transport, 1).await;
    assert_eq!(sent.len(), 1);
    let (to, subject_line, body) = &sent[0];
    assert_eq!(to, "alice@example.com");
    assert_eq!(subject_line, "DRILL — not a real alert: service billing");
    assert!(
        body.starts_with(
            "DRILL — not a real alert. Nothing is wrong: this is live drill #1 of service \
             billing's paging, started by carol.\nAcknowledge it as you would a page: open this \
             link and press the button\nhttps://kw.example/a/1.drill."
        ),
        "{body}"
    );
    assert!(
        body.contains("Notification 1 of 2 (+0:00 on the drill's timeline), at high urgency."),
        "{body}"
    );
    clock.advance(TimeDelta::minutes(10));
    let sent = emails(&transport, 2).await;
    assert_eq!(sent[1].0, "bob@example.com");
    // Bob acknowledges with his link two minutes later.
    clock.advance(TimeDelta::minutes(2));
    let link = sent[1]
        .2
        .lines()
        .find(|l| l.starts_with("https://kw.example/a/"))
        .unwrap();
    let grant = engine
        .verify_link(link.trim_start_matches("https://kw.example/a/"))
        .unwrap();
    assert_eq!((grant.alert_id, grant.action.as_str()), (1, "drill"));
    let done = engine.acknowledge_drill(1, "bob (link)").unwrap();
    assert!(done.finished);
    let report = done.text();
    assert!(
        report.starts_with(
            "live drill #1 of service billing started 2026-12-05 07:00:00 UTC by carol (DRILL — \
             not a real alert: no alert was opened)\n  +0:00 alice by email (high): sent"
        ),
        "{report}"
    );
    assert!(
        report.contains("\n  +0:10 bob by email (high): sent"),
        "{report}"
    );
    assert!(
        report.ends_with(
            "reached: alice, bob\nacknowledged by bob (link) at +0:12 (how fast: from the \
             drill's start)\n"
        ),
        "{report}"
    );

    // A second drill, acknowledged by alice: bob is not paged.
    let second =
        engine.start_live_drill(project.id, &config, &subject, TimeDelta::hours(1), "carol");
    assert_eq!(second.id, 2);
    emails(&transport, 3).await;
    engine.acknowledge_drill(2, "alice (link)").unwrap();
    clock.advance(TimeDelta::minutes(10));
    let mut finished = None;
    for _ in 0..500 {
        finished = engine.live_drill(2).filter(|d| d.finished);
        if finished.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let finished = finished.expect("the drill finishes");
    assert_eq!(finished.notices[1].state, "skipped");
    assert_eq!(
        transport.sent().len(),
        3,
        "bob is not paged after the acknowledgment"
    );
    assert!(
        finished
            .text()
            .contains("reached: alice\nacknowledged by alice (link) at +0:00")
    );

    // Recorded as drill messages; no alert.
    assert!(
        store
            .list_alerts(project.id, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let to_alice = store
        .messages_to(MessageKind::Drill, "alice@example.com")
        .await
        .unwrap();
    assert_eq!(to_alice.len(), 2);
    assert!(to_alice.iter().all(|(_, state)| state == "sent"));
    assert!(engine.acknowledge_drill(9, "x").is_none());
}
