//! Restarts: a deadline that passed while the server was down alerts once after start-up, a
//! restart never alerts twice, and state written only to the ping log survives.

use chrono::TimeDelta;
use serde_json::json;

use crate::helpers::{AppOptions, Receiver, eventually, spawn_app, spawn_app_with, t0};

#[tokio::test]
async fn a_deadline_missed_while_down_alerts_once_after_start_and_never_again() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let uuid = app
        .create_check_uuid(
            json!({"name": "hourly", "timeout": 3600, "grace": 600, "channels": "*"}),
        )
        .await;
    for _ in 0..3 {
        app.ping("GET", &format!("/ping/{uuid}"), None).await;
    }
    let data_dir = app.data_dir.clone();
    let temp = app.stop().await;

    // Two hours later the server starts again: the check went down while nobody watched.
    let start = t0() + TimeDelta::hours(2);
    let app = spawn_app_with(AppOptions {
        data_dir: Some(data_dir.clone()),
        start: Some(start),
        ..Default::default()
    })
    .await;
    let down = hook.next().await.json();
    assert_eq!(down["event"], "down");
    assert_eq!(down["at"], "2026-11-26T13:10:00Z");
    let check = app.get_check(&uuid).await;
    assert_eq!(
        (check["status"].clone(), check["n_pings"].clone()),
        (json!("down"), json!(3))
    );
    // The receiver has it; stop once the server has recorded that (a stop between the two
    // would, rightly, send it again after the restart: delivery is at least once).
    eventually(|| async {
        let sent = app.notifications(&uuid).await;
        (sent.first().is_some_and(|n| n["state"] == "sent")).then_some(())
    })
    .await;
    app.stop().await;

    let app = spawn_app_with(AppOptions {
        data_dir: Some(data_dir),
        start: Some(start + TimeDelta::hours(1)),
        ..Default::default()
    })
    .await;
    // Start-up judges due deadlines before serving; the outbox still holds one notification.
    assert_eq!(app.notifications(&uuid).await.len(), 1);
    assert!(hook.is_empty());
    app.stop().await;
    drop(temp);
}

#[tokio::test]
async fn pings_not_yet_checkpointed_are_replayed_at_start() {
    let app = spawn_app().await;
    let uuid = app
        .create_check_uuid(json!({"name": "r", "timeout": 60, "grace": 60}))
        .await;
    let rid = "00000000-0000-4000-8000-00000000000a";
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    app.ping(
        "GET",
        &format!("/ping/{uuid}/start?rid={rid}&host=h&pid=1"),
        None,
    )
    .await;
    // Simulate a crash: the engine is dropped without its shutdown checkpoint.
    let data_dir = app.data_dir.clone();
    let stored = app.store.check_by_uuid(&uuid).await.unwrap().unwrap();
    assert!(
        stored.state.n_pings < 2,
        "not checkpointed yet (clock did not move)"
    );
    std::mem::forget(app);
    let app = spawn_app_with(AppOptions {
        data_dir: Some(data_dir),
        ..Default::default()
    })
    .await;
    let check = app.get_check(&uuid).await;
    assert_eq!(check["n_pings"], 2);
    assert_eq!(
        check["started"], true,
        "the open run came back from the ping log"
    );
    assert_eq!(check["open_runs"][0]["host"], "h");
}
