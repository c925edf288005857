//! Issue #21: the late notice (a check with `notify_late` tells its channels when it enters
//! its grace period, without paging), and check dependencies (a check's alerts are held back
//! while a check it depends on is down). Real server, manual clock, webhooks on loopback.

use chrono::TimeDelta;
use serde_json::{Value, json};

use crate::helpers::{Receiver, TestApp, alice_by_webhook, apply, spawn_app};

/// Service `billing` pages alice through a webhook at once.
async fn alice_pages_to(app: &TestApp, pager: &Receiver) {
    apply(app, &alice_by_webhook("webhook", &pager.url, 0)).await;
}

async fn open_alerts(app: &TestApp) -> Vec<Value> {
    app.get_read_only("/api/v1/alerts/?status=open").await.1["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_late_check_tells_its_channels_at_the_grace_start_without_paging_then_goes_down() {
    let app = spawn_app().await;
    let mut pager = Receiver::start(vec![]).await;
    alice_pages_to(&app, &pager).await;
    let mut channel = Receiver::start(vec![]).await;
    app.webhook_channel(&channel, None).await;
    let check = app
        .create_check(json!({"name": "hourly", "timeout": 3600, "grace": 600,
            "service": "billing", "channels": "*", "notify_late": true}))
        .await;
    assert_eq!(check["notify_late"], true);
    let uuid = check["uuid"].as_str().unwrap().to_string();
    app.ping("GET", &format!("/ping/{uuid}"), None).await; // 12:00

    app.advance(TimeDelta::minutes(59));
    app.engine.settled().await;
    assert!(channel.is_empty(), "not before the expected time");
    app.advance(TimeDelta::minutes(1)); // 13:00: expected, grace until 13:10
    let late = channel.next().await;
    assert_eq!(late.headers["x-keepwatch-event"], "late");
    let late = late.json();
    assert_eq!(late["event"], "late");
    assert_eq!(late["at"], "2026-11-26T13:00:00Z");
    assert_eq!(late["down_at"], "2026-11-26T13:10:00Z");
    let text = late["text"].as_str().unwrap();
    assert!(
        text.contains(
            "hourly: LATE (not down yet): expected at Thu 13:00 (UTC); it counts as down at \
             Thu 13:10 if no ping arrives"
        ),
        "{text}"
    );
    let shown = app.get_check(&uuid).await;
    assert_eq!((&shown["status"], &shown["down_reason"]), (&json!("grace"), &Value::Null));
    app.advance(TimeDelta::minutes(5));
    app.engine.settled().await;
    assert!(channel.is_empty(), "late once");
    assert!(pager.is_empty(), "a late check pages nobody");
    assert!(open_alerts(&app).await.is_empty(), "and opens no alert");

    app.advance(TimeDelta::minutes(5)); // 13:10: grace over
    assert_eq!(channel.next().await.json()["event"], "down");
    let page = pager.next().await.json();
    assert_eq!(page["alert"]["summary"], "hourly: missed its run");
    assert_eq!(open_alerts(&app).await.len(), 1);

    // A ping in the next grace period ends it quietly: no recovery message for it, no down.
    app.ping("GET", &format!("/ping/{uuid}"), None).await; // 13:10
    assert_eq!(channel.next().await.json()["event"], "up");
    app.advance(TimeDelta::minutes(60)); // 14:10: late again
    assert_eq!(channel.next().await.json()["event"], "late");
    app.advance(TimeDelta::minutes(5));
    app.ping("GET", &format!("/ping/{uuid}"), None).await; // 14:15, in grace
    app.advance(TimeDelta::minutes(10)); // past the old grace end (14:20)
    app.engine.settled().await;
    assert!(channel.is_empty(), "a ping in grace ends it quietly");
    assert_eq!(app.get_check(&uuid).await["status"], "up");

    // Off: the field is kept off, and no late notice is sent.
    let (status, body) = app
        .post(&format!("/api/v3/checks/{uuid}"), Some(json!({"notify_late": "yes"})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "json validation error: notify_late is not a boolean");
    let (_, off) = app
        .post(&format!("/api/v3/checks/{uuid}"), Some(json!({"notify_late": false})))
        .await;
    assert_eq!(off["notify_late"], false);
    app.advance(TimeDelta::minutes(55)); // 15:15: expected, no late notice
    app.engine.settled().await;
    assert!(channel.is_empty(), "without notify_late the grace start is quiet");
}
