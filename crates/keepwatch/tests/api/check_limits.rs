//! A project's check limit and creation rate: over either, the v3 API answers Healthchecks'
//! `403` with an empty body and a `?create=1` ping Healthchecks' `404 not found`
//! (auto-provisioning may go to twice the limit, as in Healthchecks).

use axum::http::StatusCode;
use chrono::TimeDelta;
use serde_json::json;

use crate::helpers::{AppOptions, TestApp, spawn_app_with};

async fn app(check_limit: i64, per_minute: u32) -> TestApp {
    spawn_app_with(AppOptions {
        check_limit: Some((check_limit, per_minute)),
        ..AppOptions::default()
    })
    .await
}

async fn create(app: &TestApp, name: &str) -> (StatusCode, String) {
    let response = app
        .client
        .post(app.url("/api/v3/checks/"))
        .header("X-Api-Key", &app.api_key)
        .body(json!({ "name": name }).to_string())
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.text().await.unwrap())
}

async fn auto(app: &TestApp, slug: &str) -> (StatusCode, String) {
    let (status, _, body) = app
        .ping(
            "GET",
            &format!("/ping/{}/{slug}?create=1", app.ping_key),
            None,
        )
        .await;
    (status, body)
}

#[tokio::test]
async fn a_project_has_at_most_its_check_limit_and_auto_provisioning_twice_that() {
    let app = app(3, 1000).await;
    for i in 0..3 {
        assert_eq!(create(&app, &format!("c{i}")).await.0, StatusCode::CREATED);
    }
    assert_eq!(
        create(&app, "c3").await,
        (StatusCode::FORBIDDEN, String::new())
    );
    for i in 0..3 {
        let slug = format!("auto-{i}");
        assert_eq!(
            auto(&app, &slug).await,
            (StatusCode::CREATED, "Created".into())
        );
    }
    assert_eq!(
        auto(&app, "auto-3").await,
        (StatusCode::NOT_FOUND, "not found".into())
    );
    // Checks that exist still take pings.
    assert_eq!(auto(&app, "auto-0").await, (StatusCode::OK, "OK".into()));
    let (_, checks) = app.get("/api/v3/checks/").await;
    assert_eq!(checks["checks"].as_array().unwrap().len(), 6);
    // Deleting one makes room again.
    let uuid = checks["checks"][0]["uuid"].as_str().unwrap();
    let path = format!("/api/v3/checks/{uuid}");
    let (status, _) = app.api("DELETE", &path, Some(&app.api_key), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(auto(&app, "auto-3").await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn a_project_creates_at_most_its_rate_of_checks_a_minute() {
    let app = app(1000, 5).await;
    for i in 0..5 {
        assert_eq!(auto(&app, &format!("s{i}")).await.0, StatusCode::CREATED);
    }
    assert_eq!(
        auto(&app, "s5").await,
        (StatusCode::NOT_FOUND, "not found".into())
    );
    assert_eq!(
        create(&app, "api").await,
        (StatusCode::FORBIDDEN, String::new())
    );
    // One creation comes back every 12 s (5 a minute).
    app.advance(TimeDelta::seconds(12));
    assert_eq!(create(&app, "api").await.0, StatusCode::CREATED);
    assert_eq!(auto(&app, "s5").await.0, StatusCode::NOT_FOUND);
    app.advance(TimeDelta::minutes(1));
    for i in 5..10 {
        assert_eq!(auto(&app, &format!("s{i}")).await.0, StatusCode::CREATED);
    }
    assert_eq!(auto(&app, "s10").await.0, StatusCode::NOT_FOUND);
}
