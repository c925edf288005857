//! Shift check-ins in the engine alone: a manual clock and the recording transport, so what
//! each person was sent, and when, is asserted as they read it.

use std::sync::Arc;

use chrono::{TimeDelta, TimeZone, Utc};
use keepwatch_engine::channels::{RecordingTransport, Request};
use keepwatch_engine::{Engine, EngineConfig, ManualClock};
use keepwatch_store::{AppliedBy, Store, Timestamp};

/// Alice and bob take turns weekly on `primary` (handover Mondays 09:00 in Denver); each
/// must check in within 15 minutes; carol is the fallback.
const FILE: &str = r#"
[[people]]
id = "alice"
tz = "America/Denver"
contacts = { email = "alice@example.com" }
rules = [{ urgency = "high", contact = "email", after = 0 }]
[[people]]
id = "bob"
tz = "America/Denver"
contacts = { email = "bob@example.com" }
rules = [{ urgency = "high", contact = "email", after = 0 }, { urgency = "low", contact = "email", after = 0 }]
[[people]]
id = "carol"
tz = "Europe/Paris"
contacts = { email = "carol@example.com" }
rules = [{ urgency = "high", contact = "email", after = 0 }]
[[schedules]]
name = "primary"
tz = "America/Denver"
checkin = { within = "15m", fallback = "carol" }
[[schedules.layers]]
name = "weekly"
participants = ["alice", "bob"]
shift = "1w"
start = "2026-11-30T09:00"
[[policies]]
name = "p"
steps = [{ targets = ["schedule:primary"], delay = 10 }]
repeat = 1
[[services]]
name = "billing"
policy = "p"
"#;

/// `(to, subject, body)` of each email sent.
fn emails(transport: &RecordingTransport) -> Vec<(String, String, String)> {
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
async fn a_check_in_acknowledged_in_time_tells_nobody_else_and_a_missed_one_tells_the_previous_person_and_the_fallback()
 {
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
    // Mon 7 Dec 08:00 in Denver: alice has been on call for a week.
    let start = Utc.with_ymd_and_hms(2026, 12, 7, 15, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
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
    engine.settled().await;
    assert_eq!(
        emails(&transport),
        [],
        "no check-in for a shift well under way"
    );

    // 09:00: bob's shift starts; he is asked to check in, through his high-urgency rule.
    clock.advance(TimeDelta::hours(1));
    engine.settled().await;
    let sent = emails(&transport);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let (to, subject, body) = &sent[0];
    assert_eq!(to, "bob@example.com");
    assert_eq!(
        subject,
        "[keepwatch] Check in for your on-call shift on primary"
    );
    let link_line = body
        .lines()
        .find(|l| l.starts_with("https://kw.example/a/"))
        .unwrap_or_else(|| panic!("no link: {body}"));
    assert_eq!(
        body.replace(link_line, "<link>"),
        "Your on-call shift on schedule primary starts Mon 7 Dec 09:00 MST and runs until \
         Mon 14 Dec 09:00 MST.\nPlease confirm you can be reached by Mon 7 Dec 09:15 MST: open \
         this link and press the button\n<link>\nor run: keepwatch checkin ack 1\nIf you do \
         not, alice and carol will be told.\n"
    );
    let token = link_line.trim_start_matches("https://kw.example/a/");
    let grant = engine.verify_link(token).unwrap();
    assert_eq!((grant.alert_id, grant.action.as_str()), (1, "checkin"));
    assert_eq!(grant.person.as_deref(), Some("bob"));

    // 09:05: bob acknowledges; at 09:20 nobody else has heard anything.
    clock.advance(TimeDelta::minutes(5));
    let row = engine
        .acknowledge_checkin(1, "bob (link)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, "acknowledged");
    clock.advance(TimeDelta::minutes(15));
    engine.settled().await;
    assert_eq!(emails(&transport).len(), 1, "{:#?}", emails(&transport));
    assert_eq!(store.checkins(project.id, 10).await.unwrap().len(), 1);

    // A week on, Mon 14 Dec 09:00: alice's turn. She does not check in.
    clock.set(Utc.with_ymd_and_hms(2026, 12, 14, 16, 0, 0).unwrap());
    engine.settled().await;
    let sent = emails(&transport);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[1].0, "alice@example.com");
    assert!(
        sent[1]
            .2
            .contains("keepwatch checkin ack 2\nIf you do not, bob and carol will be told."),
        "{}",
        sent[1].2
    );
    clock.advance(TimeDelta::minutes(14));
    engine.settled().await;
    assert_eq!(emails(&transport).len(), 2, "not before 09:15");
    clock.advance(TimeDelta::minutes(1));
    engine.settled().await;
    let mut told = emails(&transport)[2..].to_vec();
    told.sort();
    assert_eq!(told.len(), 2, "{told:#?}");
    assert_eq!(told[0].0, "bob@example.com");
    assert_eq!(
        told[0].1,
        "[keepwatch] alice did not check in for their on-call shift on primary"
    );
    assert_eq!(
        told[0].2,
        "alice's on-call shift on schedule primary started Mon 14 Dec 09:00 MST and runs until \
         Mon 21 Dec 09:00 MST. alice did not confirm they can be reached by Mon 14 Dec 09:15 MST.\n\
         You are told because you were on call before them, bob: reach alice, or cover the \
         shift (an override in the on-call file) until they can be reached.\n"
    );
    assert_eq!(told[1].0, "carol@example.com");
    assert!(
        told[1]
            .2
            .starts_with("alice's on-call shift on schedule primary started Mon 14 Dec 17:00 CET")
            && told[1]
                .2
                .contains("because you are the schedule's fallback, carol"),
        "{}",
        told[1].2
    );
    let missed = store.checkin(2).await.unwrap().unwrap();
    assert_eq!(missed.state, "missed");

    // The audit names alice; a late acknowledgment is recorded and tells nobody more.
    let config = keepwatch_core::oncall::OnCall::parse(FILE).unwrap();
    let report = keepwatch_engine::audit::audit_project(
        &store,
        project.id,
        &config,
        clock_now(&engine),
        &Default::default(),
    )
    .await
    .unwrap();
    let finding = report
        .findings
        .iter()
        .find(|f| f.id == "missed-checkin")
        .unwrap_or_else(|| panic!("{}", keepwatch_core::audit::text(&report)));
    assert_eq!(finding.objects, ["person:alice"]);
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.objects == ["person:bob"] && f.id == "missed-checkin")
    );
    let late = engine
        .acknowledge_checkin(2, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.state, "missed");
    assert!(late.acknowledged_at.is_some());
    engine.settled().await;
    assert_eq!(emails(&transport).len(), 4);
}

fn clock_now(engine: &Engine) -> chrono::DateTime<Utc> {
    engine.now()
}
