//! Healthchecks' Prometheus endpoint (`/projects/<uuid>/metrics/<read-only key>` and its
//! Bearer form) and the optional key of keepwatch's own `/metrics`, over real HTTP.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{AppOptions, TestApp, spawn_app, spawn_app_with};

async fn get(app: &TestApp, path: &str, bearer: Option<&str>) -> (StatusCode, String, String) {
    let mut request = app.client.get(app.url(path));
    if let Some(key) = bearer {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn project_metrics_read_as_healthchecks_writes_them() {
    project_metrics(spawn_app().await).await;
}

#[tokio::test]
async fn project_metrics_on_postgres() {
    let db = keepwatch_store::testing::PgDatabase::create().await;
    project_metrics(
        spawn_app_with(AppOptions {
            database_url: Some(db.url.clone()),
            ..AppOptions::default()
        })
        .await,
    )
    .await;
}

async fn project_metrics(app: TestApp) {
    let project = app.store.project_by_name("default").await.unwrap().unwrap();
    // Up and running: pinged, then a run started (grace 1 h, so it is not overdue).
    let nightly = app
        .create_check_uuid(
            json!({"name": "nightly", "tags": "prod etl", "timeout": 86400, "grace": 3600}),
        )
        .await;
    // Down: its period and grace have passed since its ping. A quote in its name.
    let sync = app
        .create_check_uuid(
            json!({"name": "say \"hi\"", "tags": "prod", "timeout": 60, "grace": 60}),
        )
        .await;
    let paused = app
        .create_check_uuid(json!({"name": "old", "timeout": 3600}))
        .await;
    for path in [format!("/ping/{nightly}"), format!("/ping/{sync}")] {
        assert_eq!(app.ping("GET", &path, None).await.0, StatusCode::OK);
    }
    app.advance(chrono::TimeDelta::minutes(10));
    assert_eq!(
        app.ping("GET", &format!("/ping/{nightly}/start"), None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, _) = app
        .post(&format!("/api/v3/checks/{paused}/pause"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // The unique keys a read-only key is shown.
    let (_, listed) = app.get_read_only("/api/v3/checks/").await;
    let key_of = |name: &str| {
        listed["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["unique_key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (n, s, o) = (key_of("nightly"), key_of("say \"hi\""), key_of("old"));
    let a = format!("{{name=\"nightly\", tags=\"prod etl\", unique_key=\"{n}\"}}");
    let b = format!("{{name=\"say \\\"hi\\\"\", tags=\"prod\", unique_key=\"{s}\"}}");
    let c = format!("{{name=\"old\", tags=\"\", unique_key=\"{o}\"}}");
    let expected = format!(
        "# HELP hc_check_up Whether the check is currently up (1 for yes, 0 for no).\n\
         # TYPE hc_check_up gauge\n\
         hc_check_up{a} 1\nhc_check_up{b} 0\nhc_check_up{c} 1\n\n\
         # HELP hc_check_started Whether the check is currently started (1 for yes, 0 for no).\n\
         # TYPE hc_check_started gauge\n\
         hc_check_started{a} 1\nhc_check_started{b} 0\nhc_check_started{c} 0\n\n\
         # HELP hc_check_grace Whether the check is currently in the grace period (1 for yes, 0 for no).\n\
         # TYPE hc_check_grace gauge\n\
         hc_check_grace{a} 0\nhc_check_grace{b} 0\nhc_check_grace{c} 0\n\n\
         # HELP hc_check_paused Whether the check is currently paused (1 for yes, 0 for no).\n\
         # TYPE hc_check_paused gauge\n\
         hc_check_paused{a} 0\nhc_check_paused{b} 0\nhc_check_paused{c} 1\n\n\
         # HELP hc_tag_up Whether all checks with this tag are up (1 for yes, 0 for no).\n\
         # TYPE hc_tag_up gauge\n\
         hc_tag_up{{tag=\"etl\"}} 1\nhc_tag_up{{tag=\"prod\"}} 0\n\n\
         # HELP hc_checks_total The total number of checks.\n\
         # TYPE hc_checks_total gauge\n\
         hc_checks_total 3\n\n\
         # HELP hc_checks_down_total The number of checks currently down.\n\
         # TYPE hc_checks_down_total gauge\n\
         hc_checks_down_total 1\n"
    );
    let code = &project.uuid;
    let key = &app.read_key;
    for path in [
        format!("/projects/{code}/metrics/{key}"),
        format!("/projects/{code}/checks/metrics/{key}"),
    ] {
        let (status, content_type, body) = get(&app, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(content_type, "text/plain");
        assert_eq!(body, expected, "{path}");
    }
    let bearer = format!("/projects/{code}/metrics/");
    let (status, _, body) = get(&app, &bearer, Some(key)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, expected.as_str()));

    // Healthchecks' refusals: a key that is no project's read-only key (the full key
    // included) 403, one of another length 400, no Bearer header 401, no UUID 404.
    let wrong = "abcdefghijklmnopqrstuvwxyz012345";
    for path in [
        format!("/projects/{code}/metrics/{wrong}"),
        format!("/projects/{code}/metrics/{}", app.api_key),
    ] {
        let (status, _, body) = get(&app, &path, None).await;
        assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, ""));
    }
    assert_eq!(
        get(&app, &bearer, Some(wrong)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _, _) = get(&app, &format!("/projects/{code}/metrics/short"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, &bearer, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(&app, &format!("/projects/nope/metrics/{key}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // As in Healthchecks, the project is the key's: another UUID in the path still reads it.
    let other = uuid::Uuid::new_v4();
    let (status, _, body) = get(&app, &format!("/projects/{other}/metrics/{key}"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, expected.as_str()));
}

#[tokio::test]
async fn keepwatch_metrics_can_ask_for_a_key() {
    let app = spawn_app().await;
    let (status, _, body) = get(&app, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("keepwatch_checks"), "{body}");

    let app = spawn_app_with(AppOptions {
        metrics_key: Some("s3cret-metrics-key".into()),
        ..AppOptions::default()
    })
    .await;
    let (status, _, body) = get(&app, "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "/metrics needs Authorization: Bearer <metrics key>\n");
    let (status, _, _) = get(&app, "/metrics", Some("guess")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, content_type, body) = get(&app, "/metrics", Some("s3cret-metrics-key")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; version=0.0.4");
    assert!(body.contains("keepwatch_checks"), "{body}");
}
