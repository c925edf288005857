//! The Management API v3: fields, filters, keys, projects, validation.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn create_get_update_list_pause_resume_delete() {
    let app = spawn_app().await;
    let created = app
        .create_check(json!({"name": "Nightly events", "slug": "nightly-events", "tags": "prod etl", "desc": "client events", "timeout": 86400, "grace": 3600}))
        .await;
    let keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        &keys[..28],
        [
            "name",
            "slug",
            "tags",
            "desc",
            "grace",
            "n_pings",
            "status",
            "started",
            "last_ping",
            "next_ping",
            "manual_resume",
            "methods",
            "subject",
            "subject_fail",
            "start_kw",
            "success_kw",
            "failure_kw",
            "filter_subject",
            "filter_body",
            "filter_http_body",
            "filter_default_fail",
            "badge_url",
            "uuid",
            "ping_url",
            "update_url",
            "pause_url",
            "resume_url",
            "channels"
        ],
        "Healthchecks' key order"
    );
    assert_eq!(created["status"], "new");
    assert_eq!(created["timeout"], 86400);
    let uuid = created["uuid"].as_str().unwrap().to_string();
    assert_eq!(created["ping_url"], app.url(&format!("/ping/{uuid}")));

    // Cron check with a time zone.
    let cron = app.create_check(json!({"name": "Nightly cron", "schedule": "0 0 * * *", "tz": "America/Denver", "grace": 3600})).await;
    assert_eq!(cron["schedule"], "0 0 * * *");
    assert_eq!(cron["tz"], "America/Denver");
    assert!(cron.get("timeout").is_none());

    // unique: an existing check with the same name is returned with 200, not duplicated.
    let (status, same) = app
        .post("/api/v3/checks/", Some(json!({"name": "Nightly cron", "schedule": "0 0 * * *", "tz": "America/Denver", "unique": ["name"]})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["uuid"], cron["uuid"]);

    // Read-only keys see unique_key instead of the UUID and URLs, and can get by unique key.
    let (status, ro) = app.get_read_only(&format!("/api/v3/checks/{uuid}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ro.get("uuid").is_none() && ro.get("ping_url").is_none());
    let unique_key = ro["unique_key"].as_str().unwrap();
    assert_eq!(unique_key.len(), 40);
    let (status, by_key) = app
        .get_read_only(&format!("/api/v3/checks/{unique_key}"))
        .await;
    assert_eq!(
        (status, by_key["name"].clone()),
        (StatusCode::OK, json!("Nightly events"))
    );

    // Update changes only what is given; keepwatch's own fields round-trip.
    let (status, updated) = app
        .post(
            &format!("/api/v3/checks/{uuid}"),
            Some(
                json!({"grace": 600, "max_runtime": 1800, "service": "billing",
                        "anomaly_volume_pct": 20, "anomaly_duration_pct": 0}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (
            updated["anomaly_volume_pct"].clone(),
            updated["anomaly_duration_pct"].clone()
        ),
        (json!(20), json!(0))
    );
    assert_eq!(
        (updated["grace"].clone(), updated["name"].clone()),
        (json!(600), json!("Nightly events"))
    );
    assert_eq!(
        (updated["max_runtime"].clone(), updated["service"].clone()),
        (json!(1800), json!("billing"))
    );
    let (_, switched) = app
        .post(
            &format!("/api/v3/checks/{uuid}"),
            Some(json!({"schedule": "Mon..Fri 09:00", "tz": "Europe/London"})),
        )
        .await;
    assert_eq!(
        switched["schedule"], "Mon..Fri 09:00",
        "OnCalendar is detected in the same field"
    );

    // Filters: tags are AND-ed, slug is exact.
    let (_, list) = app.get_read_only("/api/v3/checks/?tag=prod&tag=etl").await;
    assert_eq!(list["checks"].as_array().unwrap().len(), 1);
    let (_, list) = app.get("/api/v3/checks/?tag=prod&tag=nope").await;
    assert_eq!(list["checks"].as_array().unwrap().len(), 0);
    let (_, list) = app.get("/api/v3/checks/?slug=nightly-events").await;
    assert_eq!(list["checks"][0]["uuid"], uuid.as_str());
    let (_, list) = app.get("/api/v3/checks/").await;
    assert_eq!(list["checks"].as_array().unwrap().len(), 2);

    // Pause and resume.
    let check = |rest: &str| format!("/api/v3/checks/{uuid}{rest}");
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let (status, paused) = app.post(&check("/pause"), None).await;
    assert_eq!(
        (
            status,
            paused["status"].clone(),
            paused["next_ping"].clone()
        ),
        (StatusCode::OK, json!("paused"), json!(null))
    );
    let (status, resumed) = app.post(&check("/resume"), None).await;
    assert_eq!(
        (
            status,
            resumed["status"].clone(),
            resumed["last_ping"].clone()
        ),
        (StatusCode::OK, json!("new"), json!(null))
    );
    // Healthchecks answers this 409 as text (crates/keepwatch/tests/api/hc_compat.rs).
    let (status, _) = app.post(&check("/resume"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Flips: new→up, up→paused, paused→new; `up` is 1 only for the first.
    let (_, flips) = app.get_read_only(&check("/flips/")).await;
    let ups: Vec<i64> = flips["flips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["up"].as_i64().unwrap())
        .collect();
    assert_eq!(ups.iter().sum::<i64>(), 1);
    assert_eq!(ups.len(), 3);
    let (status, _) = app.get(&check("/flips/?seconds=abc")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Delete, then it is gone.
    let (status, deleted) = app
        .api("DELETE", &check(""), Some(&app.api_key), None)
        .await;
    assert_eq!(
        (status, deleted["channels"].clone()),
        (StatusCode::OK, json!(""))
    );
    let (status, _) = app.get(&check("")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, text) = app.ping("GET", &format!("/ping/{uuid}"), None).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::NOT_FOUND, "not found")
    );
}

#[tokio::test]
async fn keys_are_checked_and_projects_are_isolated() {
    let app = spawn_app().await;
    let uuid = app.create_check_uuid(json!({"name": "mine"})).await;
    let missing = json!({"error": "missing api key"});
    let wrong = json!({"error": "wrong api key"});
    assert_eq!(
        app.api("GET", "/api/v3/checks/", None, None).await,
        (StatusCode::UNAUTHORIZED, missing.clone())
    );
    assert_eq!(
        app.api("GET", "/api/v3/checks/", Some("short"), None).await,
        (StatusCode::UNAUTHORIZED, missing)
    );
    let unknown = "x".repeat(32);
    assert_eq!(
        app.api("GET", "/api/v3/checks/", Some(&unknown), None)
            .await,
        (StatusCode::UNAUTHORIZED, wrong.clone())
    );
    // Read-only keys cannot write, nor read pings or channels.
    for (method, path) in [
        ("POST", "/api/v3/checks/".to_string()),
        ("POST", format!("/api/v3/checks/{uuid}")),
        ("DELETE", format!("/api/v3/checks/{uuid}")),
        ("POST", format!("/api/v3/checks/{uuid}/pause")),
        ("GET", format!("/api/v3/checks/{uuid}/pings/")),
        ("GET", "/api/v3/channels/".to_string()),
    ] {
        let (status, body) = app
            .api(
                method,
                &path,
                Some(&app.read_key),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::UNAUTHORIZED, wrong.clone()),
            "{method} {path}"
        );
    }
    // The key may also come in the JSON body of writes.
    let (status, _) = app
        .api(
            "POST",
            "/api/v3/checks/",
            None,
            Some(json!({"name": "by body", "api_key": app.api_key})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Another project's key can neither read nor change this project's checks.
    let other_key = crate::helpers::other_project_key(&app).await;
    for (method, path) in [
        ("GET", format!("/api/v3/checks/{uuid}")),
        ("POST", format!("/api/v3/checks/{uuid}")),
        ("DELETE", format!("/api/v3/checks/{uuid}")),
        ("POST", format!("/api/v3/checks/{uuid}/pause")),
        ("GET", format!("/api/v3/checks/{uuid}/pings/")),
        ("GET", format!("/api/v3/checks/{uuid}/flips/")),
    ] {
        let (status, _) = app.api(method, &path, Some(&other_key), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    let (_, list) = app
        .api("GET", "/api/v3/checks/", Some(&other_key), None)
        .await;
    assert_eq!(list, json!({"checks": []}));
    assert_eq!(app.get_check(&uuid).await["name"], "mine", "unchanged");
    // CORS preflight needs no key.
    let (status, _) = app.api("OPTIONS", "/api/v3/checks/", None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bad_input_gets_healthchecks_messages() {
    let app = spawn_app().await;
    let post = |body: &str| {
        let request = app
            .client
            .post(app.url("/api/v3/checks/"))
            .header("X-Api-Key", &app.api_key)
            .body(body.to_string());
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let error = |e: &str| json!({"error": e});
    assert_eq!(
        post("{not json").await,
        (400, error("could not parse request body"))
    );
    assert_eq!(
        post("[1, 2]").await,
        (400, error("json validation error: value is not an object"))
    );
    assert_eq!(
        post(r#"{"timeout": 59}"#).await,
        (400, error("json validation error: timeout is too small"))
    );
    assert_eq!(
        post(r#"{"grace": 31536001}"#).await,
        (400, error("json validation error: grace is too large"))
    );
    assert_eq!(
        post(r#"{"timeout": "60"}"#).await,
        (400, error("json validation error: timeout is not a number"))
    );
    assert_eq!(
        post(r#"{"name": 5}"#).await,
        (400, error("json validation error: name is not a string"))
    );
    assert_eq!(
        post(&format!(r#"{{"name": "{}"}}"#, "n".repeat(101))).await,
        (400, error("json validation error: name is too long"))
    );
    assert_eq!(
        post(r#"{"slug": "Bad Slug"}"#).await,
        (
            400,
            error("json validation error: slug does not match pattern")
        )
    );
    assert_eq!(
        post(r#"{"manual_resume": "yes"}"#).await,
        (
            400,
            error("json validation error: manual_resume is not a boolean")
        )
    );
    assert_eq!(
        post(r#"{"methods": "GET"}"#).await,
        (
            400,
            error("json validation error: methods has unexpected value")
        )
    );
    assert_eq!(
        post(r#"{"unique": ["desc"]}"#).await,
        (
            400,
            error("json validation error: an item in 'unique' has unexpected value")
        )
    );
    assert_eq!(
        post(r#"{"tz": "Mars/Olympus"}"#).await,
        (
            400,
            error("json validation error: tz is not a valid timezone")
        )
    );
    assert_eq!(
        post(r#"{"channels": "nope"}"#).await,
        (400, error("invalid channel identifier: nope"))
    );
    assert_eq!(
        post(r#"{"channels": ",b"}"#).await,
        (400, error("empty channel identifier"))
    );
    let (status, body) = post(r#"{"schedule": "61 * * * *"}"#).await;
    assert_eq!(
        (status, body["error"].clone()),
        (
            400,
            json!("json validation error: schedule is not a valid cron or OnCalendar expression")
        )
    );
    assert_eq!(
        body["detail"],
        "field 1 (minute) `61` is invalid: number out of bounds (allowed: 0-59)"
    );
    let (status, body) = post(r#"{"schedule": "0 0 * *"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "expected 5 fields (minute hour day-of-month month day-of-week), got 4"
    );
    let (status, body) = post(r#"{"max_runtime": 0}"#).await;
    assert_eq!(
        (status, body),
        (
            400,
            error("json validation error: max_runtime is too small")
        )
    );
    for (body, message) in [
        (
            r#"{"anomaly_volume_pct": 150}"#,
            "anomaly_volume_pct must be 0 (off) or from 1 to 100",
        ),
        (
            r#"{"anomaly_duration_pct": 90}"#,
            "anomaly_duration_pct must be 0 (off) or from 101 to 100000",
        ),
        (
            r#"{"anomaly_duration_pct": "3x"}"#,
            "anomaly_duration_pct is not a number",
        ),
    ] {
        let (status, answer) = post(body).await;
        assert_eq!(
            (status, answer),
            (400, error(&format!("json validation error: {message}")))
        );
    }
    // Nothing was created by any of these.
    let (_, list) = app.get("/api/v3/checks/").await;
    assert_eq!(list, json!({"checks": []}));
    // Unknown and malformed check ids.
    let (status, _) = app
        .get("/api/v3/checks/7280d984-4630-4ae9-b52a-8dc9d87b6864")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/api/v3/checks/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn status_and_metrics() {
    let app = spawn_app().await;
    let uuid = app.create_check_uuid(json!({"name": "m"})).await;
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let (status, _, text) = app.ping("GET", "/api/v3/status/", None).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "OK"));
    let (status, _, text) = app.ping("GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    for metric in [
        "keepwatch_pings_total{kind=\"success\"}",
        "keepwatch_ping_seconds_bucket",
        "keepwatch_checks{status=\"up\"}",
        "keepwatch_outbox_pending",
        "keepwatch_commit_seconds",
    ] {
        assert!(text.contains(metric), "{metric} missing from:\n{text}");
    }
}
