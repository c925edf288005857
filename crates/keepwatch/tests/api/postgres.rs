//! The same service on PostgreSQL: pings, the API, detection and a restart, end to end.

use chrono::TimeDelta;
use keepwatch_store::testing::PgDatabase;
use serde_json::json;

use crate::helpers::{AppOptions, Receiver, spawn_app_with, t0};

#[tokio::test]
async fn the_service_runs_on_postgres() {
    let db = PgDatabase::create().await;
    let options = || AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    };
    let app = spawn_app_with(options()).await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, Some("k")).await;
    let uuid = app
        .create_check(
            json!({"name": "pg", "slug": "pg", "timeout": 60, "grace": 60, "channels": "*"}),
        )
        .await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let rid = "00000000-0000-4000-8000-0000000000aa";
    let (status, _, _) = app
        .ping(
            "POST",
            &format!("/ping/{uuid}/start?rid={rid}"),
            Some(b"starting".to_vec()),
        )
        .await;
    assert_eq!(status, 200);
    app.advance(TimeDelta::seconds(30));
    let (status, _, _) = app
        .ping(
            "GET",
            &format!("/ping/{}/pg/0?rid={rid}", app.ping_key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let pings = app.pings(&uuid).await;
    assert_eq!(pings[0]["duration"], 30.0);
    assert!(pings[1]["body_url"].is_string());

    app.advance(TimeDelta::seconds(121));
    assert_eq!(hook.next().await.json()["event"], "down");
    app.stop().await;

    let app = spawn_app_with(AppOptions {
        start: Some(t0() + TimeDelta::hours(1)),
        ..options()
    })
    .await;
    let check = app.get_check(&uuid).await;
    assert_eq!(
        (check["status"].clone(), check["n_pings"].clone()),
        (json!("down"), json!(2))
    );
    assert_eq!(
        app.notifications(&uuid).await.len(),
        1,
        "no second alert after restart"
    );
    app.stop().await;
}
