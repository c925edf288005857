//! Compatibility with Healthchecks v3.13: each difference a side-by-side run found, encoded
//! as Healthchecks answers it (from its code, `hc/api/views.py` and `hc/api/models.py`, and
//! the recorded responses in `../shared/reference/healthchecks-v3.md`), on SQLite and
//! PostgreSQL.

use axum::http::StatusCode;
use chrono::TimeDelta;
use keepwatch_store::testing::PgDatabase;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, spawn_app_with};

/// A client that does not follow redirects, to see the 301s themselves.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = raw_client()
        .request(method, app.url(path))
        .header("X-Api-Key", &app.api_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

async fn json_of(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, text) = send(app, method, path, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn api_shapes(app: TestApp) {
    // tz: legacy names are answered (and stored) as their canonical name.
    let (status, check) = json_of(
        &app,
        "POST",
        "/api/v3/checks/",
        Some(json!({"name": "kyiv", "schedule": "0 0 * * *", "tz": "Europe/Kiev"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{check}");
    assert_eq!(check["tz"], "Europe/Kyiv");
    let (_, again) = json_of(
        &app,
        "GET",
        check["update_url"]
            .as_str()
            .unwrap()
            .trim_start_matches(&app.address),
        None,
    )
    .await;
    assert_eq!(again["tz"], "Europe/Kyiv");
    let (status, body) = json_of(
        &app,
        "POST",
        "/api/v3/checks/",
        Some(json!({"name": "x", "schedule": "0 0 * * *", "tz": "Mars/Olympus"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "json validation error: tz is not a valid timezone"
    );

    // success_kw wins over subject; filter_subject follows subject; the 3.13 filters are stored.
    let (status, check) = json_of(
        &app,
        "POST",
        "/api/v3/checks/",
        Some(
            json!({"name": "kw", "subject": "SUBJ", "success_kw": "DONE",
                    "filter_http_body": true, "filter_default_fail": true}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{check}");
    assert_eq!(check["success_kw"], "DONE");
    assert_eq!(
        check["subject"], "DONE",
        "subject reads success_kw back when filter_subject"
    );
    assert_eq!(check["filter_subject"], true);
    assert_eq!(check["filter_http_body"], true);
    assert_eq!(check["filter_default_fail"], true);
    let uuid = check["uuid"].as_str().unwrap().to_string();
    let (_, read) = json_of(&app, "GET", &format!("/api/v3/checks/{uuid}"), None).await;
    assert_eq!(
        (
            read["filter_http_body"].clone(),
            read["filter_default_fail"].clone()
        ),
        (json!(true), json!(true))
    );
    let (_, off) = json_of(
        &app,
        "POST",
        &format!("/api/v3/checks/{uuid}"),
        Some(json!({"filter_default_fail": false})),
    )
    .await;
    assert_eq!(
        (
            off["filter_http_body"].clone(),
            off["filter_default_fail"].clone()
        ),
        (json!(true), json!(false))
    );

    // v1/v2 URLs carry the version called; they derive the slug from the name.
    for v in [1, 2] {
        let (status, check) = json_of(
            &app,
            "POST",
            &format!("/api/v{v}/checks/"),
            Some(json!({"name": format!("Nightly Événements v{v}!"), "timeout": 3600})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{check}");
        let uuid = check["uuid"].as_str().unwrap();
        assert_eq!(check["slug"], format!("nightly-evenements-v{v}"));
        assert_eq!(
            check["update_url"],
            format!("{}/api/v{v}/checks/{uuid}", app.address)
        );
        assert_eq!(
            check["pause_url"],
            format!("{}/api/v{v}/checks/{uuid}/pause", app.address)
        );
        assert_eq!(
            check["resume_url"],
            format!("{}/api/v{v}/checks/{uuid}/resume", app.address)
        );
        let (_, renamed) = json_of(
            &app,
            "POST",
            &format!("/api/v{v}/checks/{uuid}"),
            Some(json!({"name": "  Renamed -- job_ "})),
        )
        .await;
        assert_eq!(renamed["slug"], "renamed-job");
        let (_, explicit) = json_of(
            &app,
            "POST",
            &format!("/api/v{v}/checks/{uuid}"),
            Some(json!({"name": "Other", "slug": "mine"})),
        )
        .await;
        assert_eq!(explicit["slug"], "mine", "an explicit slug wins");
    }
    // v3 leaves the slug alone on a rename.
    let (_, v3) = json_of(
        &app,
        "POST",
        &format!("/api/v3/checks/{uuid}"),
        Some(json!({"name": "Some New Name"})),
    )
    .await;
    assert_eq!(v3["slug"], "");
    assert!(v3["update_url"].as_str().unwrap().contains("/api/v3/"));

    // v1 reports a run in progress as `started`; v3 keeps its status and `started: true`.
    let job = app
        .create_check_uuid(json!({"name": "job", "timeout": 3600, "grace": 600}))
        .await;
    app.ping("GET", &format!("/ping/{job}"), None).await;
    app.ping("GET", &format!("/ping/{job}/start"), None).await;
    app.engine.flush().await.unwrap();
    let (_, v1) = json_of(&app, "GET", &format!("/api/v1/checks/{job}"), None).await;
    assert_eq!(v1["status"], "started");
    let (_, v3) = json_of(&app, "GET", &format!("/api/v3/checks/{job}"), None).await;
    assert_eq!(
        (v3["status"].clone(), v3["started"].clone()),
        (json!("up"), json!(true))
    );
    // Overdue (past its grace): down in v1 too.
    app.advance(TimeDelta::seconds(601));
    app.engine.settled().await;
    let (_, v1) = json_of(&app, "GET", &format!("/api/v1/checks/{job}"), None).await;
    assert_eq!(v1["status"], "down");

    // next_ping is null for a down check (Healthchecks' grace start is only an up check's).
    let down = app
        .create_check_uuid(json!({"name": "down", "timeout": 60, "grace": 60}))
        .await;
    app.ping("GET", &format!("/ping/{down}"), None).await;
    let (_, up) = json_of(&app, "GET", &format!("/api/v3/checks/{down}"), None).await;
    assert!(up["next_ping"].is_string(), "{up}");
    app.ping("GET", &format!("/ping/{down}/fail"), None).await;
    app.engine.flush().await.unwrap();
    let (_, failed) = json_of(&app, "GET", &format!("/api/v3/checks/{down}"), None).await;
    assert_eq!(failed["status"], "down");
    assert_eq!(failed["next_ping"], Value::Null);

    // An upper-case rid is accepted, and answered in lower case.
    let rid = "05B551E0-FFFF-409D-8BA6-2E8967262584";
    let (status, _, body) = app
        .ping("GET", &format!("/ping/{down}/start?rid={rid}"), None)
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "OK"));
    let (status, _, _) = app
        .ping("GET", &format!("/ping/{down}?rid={rid}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    app.engine.flush().await.unwrap();
    let (_, pings) = json_of(&app, "GET", &format!("/api/v3/checks/{down}/pings/"), None).await;
    assert_eq!(pings["pings"][0]["rid"], rid.to_ascii_lowercase());
    assert!(pings["pings"][0]["duration"].is_number(), "paired: {pings}");
    let (status, _, body) = app
        .ping("GET", &format!("/ping/{down}?rid=nope"), None)
        .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_REQUEST, "invalid uuid format")
    );

    // 301 to the path with its slash, query kept.
    for path in [
        "/api/v3/checks".to_string(),
        "/api/v3/status".into(),
        "/api/v3/channels".into(),
        format!("/api/v3/checks/{down}/flips"),
        format!("/api/v3/checks/{down}/pings"),
        "/api/v1/checks".into(),
    ] {
        let (status, headers, _) = send(&app, "GET", &path, None).await;
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY, "{path}");
        assert_eq!(headers["location"], format!("{path}/"));
    }
    let (_, headers, _) = send(&app, "GET", "/api/v3/checks?tag=prod", None).await;
    assert_eq!(headers["location"], "/api/v3/checks/?tag=prod");

    // 405: POST/DELETE by unique key, HEAD on the list.
    let (_, read_only) = app.get_read_only(&format!("/api/v3/checks/{down}")).await;
    let key = read_only["unique_key"].as_str().unwrap().to_string();
    let (status, _, _) = send(
        &app,
        "POST",
        &format!("/api/v3/checks/{key}"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, _) = send(&app, "DELETE", &format!("/api/v3/checks/{key}"), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, _) = send(&app, "GET", &format!("/api/v3/checks/{key}"), None).await;
    assert_eq!(status, StatusCode::OK, "GET by unique key still works");
    let (status, _, _) = send(&app, "HEAD", "/api/v3/checks/", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // 409 "check is not paused" as text/html.
    let (status, headers, body) =
        send(&app, "POST", &format!("/api/v3/checks/{down}/resume"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, "check is not paused");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    app.stop().await;
}

async fn ping_types(app: &TestApp, uuid: &str) -> Vec<String> {
    app.engine.flush().await.unwrap();
    let (status, pings) = json_of(app, "GET", &format!("/api/v3/checks/{uuid}/pings/"), None).await;
    assert_eq!(status, StatusCode::OK);
    pings["pings"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|p| p["type"].as_str().unwrap().to_string())
        .collect()
}

async fn status_of(app: &TestApp, uuid: &str) -> Value {
    json_of(app, "GET", &format!("/api/v3/checks/{uuid}"), None)
        .await
        .1["status"]
        .clone()
}

async fn pings_and_flips(app: TestApp) {
    // manual_resume: a paused check records later pings as `ign` and stays paused.
    let uuid = app
        .create_check_uuid(json!({"name": "manual", "timeout": 3600, "manual_resume": true}))
        .await;
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let (status, _) = json_of(&app, "POST", &format!("/api/v3/checks/{uuid}/pause"), None).await;
    assert_eq!(status, StatusCode::OK);
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    app.ping("GET", &format!("/ping/{uuid}/start"), None).await;
    assert_eq!(
        ping_types(&app, &uuid).await,
        ["success", "ign", "ign", "ign"]
    );
    assert_eq!(status_of(&app, &uuid).await, "paused");
    // Pause, resume, ping: four flips (new→up, up→paused, paused→new, new→up).
    let (status, _) = json_of(&app, "POST", &format!("/api/v3/checks/{uuid}/resume"), None).await;
    assert_eq!(status, StatusCode::OK);
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    app.engine.flush().await.unwrap();
    let (_, flips) = json_of(&app, "GET", &format!("/api/v3/checks/{uuid}/flips/"), None).await;
    let ups: Vec<i64> = flips["flips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["up"].as_i64().unwrap())
        .collect();
    assert_eq!(ups, [1, 0, 0, 1], "newest first: {flips}");

    // filter_http_body: the body's keywords decide, failure first; no keyword: ignored,
    // or a failure with filter_default_fail.
    let uuid = app
        .create_check_uuid(json!({"name": "body", "timeout": 3600, "filter_http_body": true,
                                  "start_kw": "BEGIN", "success_kw": "ALL OK", "failure_kw": "ERROR, panic"}))
        .await;
    for (path, body) in [
        ("", "BEGIN nightly"),
        ("/start", "ALL OK: 12 rows"),
        ("", "ALL OK but ERROR in 2 rows"),
        ("/fail", "ALL OK"),
        ("/1", "nothing to see"),
        ("", "thread panicked"),
    ] {
        let (status, _, text) = app
            .ping(
                "POST",
                &format!("/ping/{uuid}{path}"),
                Some(body.as_bytes().to_vec()),
            )
            .await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "OK"));
    }
    assert_eq!(
        ping_types(&app, &uuid).await,
        ["start", "success", "fail", "success", "ign", "fail"]
    );
    assert_eq!(status_of(&app, &uuid).await, "down");
    let (_, updated) = json_of(
        &app,
        "POST",
        &format!("/api/v3/checks/{uuid}"),
        Some(json!({"filter_default_fail": true})),
    )
    .await;
    assert_eq!(updated["filter_default_fail"], true);
    app.ping("POST", &format!("/ping/{uuid}"), Some(b"ALL OK".to_vec()))
        .await;
    app.ping(
        "POST",
        &format!("/ping/{uuid}"),
        Some(b"no keyword".to_vec()),
    )
    .await;
    let types = ping_types(&app, &uuid).await;
    assert_eq!(types[types.len() - 2..], ["success", "fail"]);
    // Turned off: pings count by their URL again.
    json_of(
        &app,
        "POST",
        &format!("/api/v3/checks/{uuid}"),
        Some(json!({"filter_http_body": false})),
    )
    .await;
    app.ping("POST", &format!("/ping/{uuid}"), Some(b"ERROR".to_vec()))
        .await;
    assert_eq!(ping_types(&app, &uuid).await.last().unwrap(), "success");
    // A POST-only check ignores a GET before looking at its body.
    let post_only = app
        .create_check_uuid(json!({"name": "post", "timeout": 3600, "methods": "POST",
                                  "filter_http_body": true, "filter_default_fail": true}))
        .await;
    app.ping("GET", &format!("/ping/{post_only}"), None).await;
    assert_eq!(ping_types(&app, &post_only).await, ["ign"]);
    app.stop().await;
}

#[tokio::test]
async fn pings_and_flips_match_healthchecks_on_sqlite() {
    pings_and_flips(spawn_app_with(AppOptions::default()).await).await;
}

#[tokio::test]
async fn pings_and_flips_match_healthchecks_on_postgres() {
    let db = PgDatabase::create().await;
    pings_and_flips(
        spawn_app_with(AppOptions {
            database_url: Some(db.url.clone()),
            ..Default::default()
        })
        .await,
    )
    .await;
}

#[tokio::test]
async fn api_shapes_match_healthchecks_on_sqlite() {
    api_shapes(spawn_app_with(AppOptions::default()).await).await;
}

#[tokio::test]
async fn api_shapes_match_healthchecks_on_postgres() {
    let db = PgDatabase::create().await;
    api_shapes(
        spawn_app_with(AppOptions {
            database_url: Some(db.url.clone()),
            ..Default::default()
        })
        .await,
    )
    .await;
}
