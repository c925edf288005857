//! What people hear after a page: when an alert they were paged for is resolved (by a person
//! or by its check's recovery) each gets one short message, and a hung run that finishes late
//! keeps its alert open and says how late. Real server, manual clock, webhooks on loopback.

use axum::http::StatusCode;
use chrono::TimeDelta;
use serde_json::{Value, json};

use crate::helpers::{Receiver, TestApp, alice_by_webhook, apply, eventually, spawn_app};

async fn alert(app: &TestApp, id: i64) -> Value {
    let (status, alert) = app.get_read_only(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{alert}");
    alert
}

fn uuid_of(check: &Value) -> String {
    check["uuid"].as_str().unwrap().to_string()
}

/// `HH:MM UTC` of the app's clock now.
fn clock_time(app: &TestApp) -> String {
    let now = keepwatch_engine::Clock::now(&*app.clock);
    format!("{} UTC", now.format("%H:%M"))
}

#[tokio::test]
async fn the_person_paged_hears_of_a_recovery_and_of_a_resolution() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let key = apply(&app, &alice_by_webhook("webhook", &hook.url, 0)).await;
    let uuid = uuid_of(
        &app.create_check(
            json!({"name": "nightly", "timeout": 3600, "grace": 60, "service": "billing"}),
        )
        .await,
    );
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    app.advance(TimeDelta::seconds(3661));
    let page = hook.next().await.json();
    assert_eq!(page["alert"]["summary"], "nightly: missed its run");
    let id = page["alert"]["id"].as_i64().unwrap();

    // The check recovers: the alert is resolved and alice hears of it, once.
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let update = hook.next().await;
    assert!(update.headers.contains_key("x-keepwatch-update"));
    let update = update.json();
    assert_eq!(
        update["update"],
        json!({
            "alert": {"id": id, "summary": "nightly: missed its run", "service": "billing",
                "status": "resolved"},
            "person": "alice",
            "note": format!("recovered at {}", clock_time(&app)),
        })
    );
    let log = eventually(|| async {
        let log = alert(&app, id).await["log"].as_array().unwrap().clone();
        log.iter()
            .find(|e| e["kind"] == "update_sent")
            .map(|e| (e["who"].clone(), e["detail"].clone()))
    })
    .await;
    assert_eq!(log.0, "alice via webhook");
    assert!(
        log.1.as_str().unwrap().starts_with("recovered at"),
        "{log:?}"
    );

    // An events-API alert resolved by a person through the API.
    let event = json!({
        "routing_key": key, "event_action": "trigger", "dedup_key": "disk",
        "payload": {"summary": "disk full", "source": "db", "severity": "error"},
    });
    assert_eq!(app.send_event(event).await.0, StatusCode::ACCEPTED);
    let page = hook.next().await.json();
    let disk = page["alert"]["id"].as_i64().unwrap();
    app.advance(TimeDelta::minutes(3));
    let (status, _) = app
        .api(
            "POST",
            &format!("/api/v1/alerts/{disk}/resolve"),
            Some(&app.api_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let update = hook.next().await.json();
    assert_eq!(
        update["update"]["note"],
        format!("resolved by api at {}", clock_time(&app))
    );
    app.engine.settled().await;
    assert!(hook.is_empty(), "one message per resolution");
}

#[tokio::test]
async fn a_hung_run_that_finishes_late_keeps_its_alert_open_and_says_how_late() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    apply(&app, &alice_by_webhook("webhook", &hook.url, 0)).await;
    let uuid = uuid_of(
        &app.create_check(json!({"name": "nightly", "timeout": 3600, "grace": 60,
            "max_runtime": 60, "service": "billing"}))
            .await,
    );
    app.ping("GET", &format!("/ping/{uuid}/start"), None).await;
    app.advance(TimeDelta::seconds(61));
    let page = hook.next().await.json();
    assert_eq!(page["alert"]["summary"], "nightly: hung for 1 min");
    let id = page["alert"]["id"].as_i64().unwrap();

    // It finishes eleven minutes after it started, ten past its max runtime.
    app.advance(TimeDelta::seconds(599));
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let expected = format!(
        "finished at {}, 10 min past its max runtime (ran 11 min); \
         stays open until acknowledged or resolved",
        clock_time(&app)
    );
    let update = hook.next().await.json();
    assert_eq!(update["update"]["note"], expected);
    // Still open: the update carries the links to act on it.
    let ack = update["update"]["links"]["acknowledge"].as_str().unwrap();
    assert!(ack.contains("/a/"), "{update}");
    let alert = alert(&app, id).await;
    assert_eq!(alert["status"], "triggered", "{alert}");
    let late: Vec<&Value> = alert["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "finished_late")
        .collect();
    assert_eq!(late.len(), 1, "{alert}");
    assert_eq!(late[0]["detail"], expected);

    // The next run fails while the alert is still open: it is not a new alert, but the
    // person paged hears of it rather than only the log.
    app.advance(TimeDelta::minutes(1));
    app.ping("GET", &format!("/ping/{uuid}/3"), None).await;
    let update = hook.next().await.json();
    assert_eq!(
        update["update"]["note"],
        format!(
            "then at {}: nightly: failed with exit status 3",
            clock_time(&app)
        )
    );
    assert_eq!(self::alert(&app, id).await["status"], "triggered");
}

#[tokio::test]
async fn a_service_can_resolve_hung_alerts_on_recovery() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let file = alice_by_webhook("webhook", &hook.url, 0) + "resolve_hung_on_recovery = true\n";
    apply(&app, &file).await;
    let uuid = uuid_of(
        &app.create_check(json!({"name": "nightly", "timeout": 3600, "grace": 60,
            "max_runtime": 60, "service": "billing"}))
            .await,
    );
    app.ping("GET", &format!("/ping/{uuid}/start"), None).await;
    app.advance(TimeDelta::seconds(61));
    let id = hook.next().await.json()["alert"]["id"].as_i64().unwrap();
    app.advance(TimeDelta::minutes(5));
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let update = hook.next().await.json();
    assert_eq!(
        update["update"]["note"],
        format!("recovered at {}", clock_time(&app))
    );
    assert_eq!(alert(&app, id).await["status"], "resolved");
}

/// The second night is never silent: after the policy has run out (one step of 10 minutes),
/// an hourly check that stays down re-notifies alice at the run it misses next, and
/// `remind_after` reminds her of the alert still open.
#[tokio::test]
async fn a_check_that_stays_down_renotifies_at_each_missed_run_and_is_reminded() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let file = alice_by_webhook("webhook", &hook.url, 0) + "remind_after = \"90m\"\n";
    apply(&app, &file).await;
    let uuid = uuid_of(
        &app.create_check(
            json!({"name": "hourly", "timeout": 3600, "grace": 60, "service": "billing"}),
        )
        .await,
    );
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    app.advance(TimeDelta::seconds(3661));
    let page = hook.next().await.json();
    assert_eq!(page["alert"]["summary"], "hourly: missed its run");
    let id = page["alert"]["id"].as_i64().unwrap();
    // The policy runs out after 10 minutes: nothing more until the next missed run.
    app.advance(TimeDelta::minutes(30));
    app.engine.settled().await;
    assert!(
        hook.is_empty(),
        "nothing between the escalation and the next miss"
    );

    // An hour after the trigger the check misses its next run: alice is paged again.
    app.advance(TimeDelta::minutes(30));
    let again = hook.next().await.json();
    assert_eq!(again["alert"]["id"], id);
    // Ninety minutes after the trigger, still open: a reminder.
    app.advance(TimeDelta::minutes(30));
    let reminder = hook.next().await.json();
    assert_eq!(reminder["alert"]["id"], id);
    let log = eventually(|| async {
        let log = alert(&app, id).await["log"].as_array().unwrap().clone();
        let wanted = |kind: &str| log.iter().any(|e| e["kind"] == kind);
        let notified = log.iter().filter(|e| e["kind"] == "notified").count();
        (wanted("missed_run") && wanted("reminder") && notified == 3).then_some(log)
    })
    .await;
    let detail = |kind: &str| {
        log.iter()
            .find(|e| e["kind"] == kind)
            .map(|e| e["detail"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(
        detail("missed_run"),
        "missed run 2 while down: notifying the first step again"
    );
    assert_eq!(
        detail("reminder"),
        "open for 1 h 30 min: reminding the first step"
    );
    // Exactly three pages: the trigger's, the missed run's, the reminder's.
    app.engine.settled().await;
    assert!(hook.is_empty());
}

/// A check created with `alert_if_never_pinged` that has not pinged by its first expected
/// time plus grace raises a low-urgency `never_reported` alert (its status stays `new`, as in
/// Healthchecks); its first ping resolves it. A check without the setting stays quiet.
#[tokio::test]
async fn a_check_that_never_reports_raises_a_low_urgency_alert_when_asked() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let file = alice_by_webhook("webhook", &hook.url, 0).replace(
        r#"urgency = "high", contact"#,
        r#"urgency = "low", contact"#,
    );
    // Low urgency on purpose: the server's audit would otherwise raise an alert of its own.
    let file = format!(
        "{file}\n[[accepted]]\nid = \"high-urgency-unreachable\"\nreason = \"low on purpose\"\nuntil = \"2030-01-01\"\n\
         [[accepted]]\nid = \"no-rule-for-urgency\"\nreason = \"low on purpose\"\nuntil = \"2030-01-01\"\n"
    );
    apply(&app, &file).await;
    let watched = app
        .create_check(json!({"name": "nightly", "timeout": 3600, "grace": 60,
            "service": "billing", "alert_if_never_pinged": true}))
        .await;
    assert_eq!(watched["alert_if_never_pinged"], true);
    let uuid = uuid_of(&watched);
    let quiet = app
        .create_check(json!({"name": "legacy", "timeout": 3600, "grace": 60, "service": "billing"}))
        .await;
    assert_eq!(quiet["alert_if_never_pinged"], false);

    app.advance(TimeDelta::seconds(3599));
    app.engine.settled().await;
    assert!(
        hook.is_empty(),
        "not before the first expected time plus grace"
    );
    app.advance(TimeDelta::seconds(62));
    let page = hook.next().await.json();
    assert_eq!(page["alert"]["summary"], "nightly: never reported");
    assert_eq!(page["urgency"], "low");
    let id = page["alert"]["id"].as_i64().unwrap();
    let (_, check) = app.get(&format!("/api/v3/checks/{uuid}")).await;
    assert_eq!(
        (&check["status"], &check["down_reason"]),
        (&json!("new"), &json!("never_reported"))
    );
    app.advance(TimeDelta::hours(3));
    app.engine.settled().await;
    assert!(hook.is_empty(), "raised once; the legacy check stays quiet");
    assert_eq!(
        app.get_read_only("/api/v1/alerts/?status=open").await.1["alerts"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Its first ping: the alert is resolved, and alice hears of it.
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let update = hook.next().await.json();
    assert_eq!(update["update"]["alert"]["id"], id);
    assert_eq!(alert(&app, id).await["status"], "resolved");
}
