//! `keepwatch import healthchecks`: the real binary reads a Healthchecks API (a stand-in on
//! loopback that answers as Healthchecks v3.13 does, X-Api-Key checked) or saved answers,
//! and writes into a real keepwatch server through its v3 API.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

use keepwatch_store::testing::PgDatabase;

use crate::helpers::{AppOptions, TestApp, spawn_app, spawn_app_with};

const HC_KEY: &str = "hcw_0123456789abcdefghijklmnopqr";
const EVENTS: &str = "5ad6aaab-77eb-4e2d-a580-83c894e15261";
const CRON: &str = "616e0e88-5946-411f-9110-836b2869e7dd";
const PAUSED: &str = "2eec4bb8-c01b-4fd9-92b5-2f5422cdcc2b";
const LISTENER: &str = "5425da74-dc11-425a-afda-758376f8e704";
const SLACK: &str = "9b0c2f7e-1d6a-4c55-8a0e-3f7d2b1c4e90";

/// A check as Healthchecks v3.13 lists it to a full-access key (`to_dict`, keys in order).
fn hc_check(uuid: &str, fields: Value) -> Value {
    let mut check = json!({
        "name": "", "slug": "", "tags": "", "desc": "", "grace": 3600, "n_pings": 0,
        "status": "new", "started": false, "last_ping": null, "next_ping": null,
        "manual_resume": false, "methods": "", "subject": "", "subject_fail": "",
        "start_kw": "", "success_kw": "", "failure_kw": "", "filter_subject": false,
        "filter_body": false, "filter_http_body": false, "filter_default_fail": false,
        "badge_url": "http://127.0.0.1:8000/b/2/bc9eba1d-8829-4f29-844f-049e60864867.svg",
        "uuid": uuid,
        "ping_url": format!("http://127.0.0.1:8000/ping/{uuid}"),
        "update_url": format!("http://127.0.0.1:8000/api/v3/checks/{uuid}"),
        "pause_url": format!("http://127.0.0.1:8000/api/v3/checks/{uuid}/pause"),
        "resume_url": format!("http://127.0.0.1:8000/api/v3/checks/{uuid}/resume"),
        "channels": "",
    });
    for (k, v) in fields.as_object().unwrap() {
        check[k] = v.clone();
    }
    check
}

fn hc_checks() -> Value {
    json!({"checks": [
        hc_check(EVENTS, json!({
            "name": "Nightly events", "slug": "nightly-events", "tags": "prod etl",
            "desc": "client events", "timeout": 86400, "channels": format!("{LISTENER},{SLACK}"),
        })),
        hc_check(CRON, json!({
            "name": "Nightly cron", "schedule": "0 0 * * *", "tz": "America/Denver",
            "grace": 600, "n_pings": 4, "status": "down", "last_ping": "2026-11-26T16:32:48+00:00",
            "channels": LISTENER,
        })),
        hc_check(PAUSED, json!({
            "name": "backup", "slug": "backup", "tags": "db", "grace": 1800, "timeout": 3600,
            "status": "paused", "manual_resume": true, "methods": "POST",
            "subject": "SUCCESS", "subject_fail": "FAIL", "start_kw": "START",
            "success_kw": "SUCCESS", "failure_kw": "FAIL", "filter_subject": true,
            "filter_body": true, "filter_http_body": true, "filter_default_fail": true,
        })),
    ]})
}

fn hc_channels() -> Value {
    json!({"channels": [
        {"id": LISTENER, "name": "listener", "kind": "webhook"},
        {"id": SLACK, "name": "ops", "kind": "slack"},
        {"id": "0f2e4c1a-7b3d-4e5f-9a8b-1c2d3e4f5a6b", "name": "pager", "kind": "pd"},
    ]})
}

/// A stand-in Healthchecks on loopback serving `checks` and `channels` as its v3 API does:
/// 401 `{"error": "missing api key"}` without the key, `"wrong api key"` with another.
async fn healthchecks(checks: Value, channels: Value) -> String {
    fn authorized(headers: &HeaderMap) -> Result<(), (StatusCode, axum::Json<Value>)> {
        match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            Some(HC_KEY) => Ok(()),
            Some(_) => Err((
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "wrong api key"})),
            )),
            None => Err((
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "missing api key"})),
            )),
        }
    }
    let router = Router::new()
        .route(
            "/api/v3/checks/",
            get(move |headers: HeaderMap| async move {
                authorized(&headers).map(|()| axum::Json(checks))
            }),
        )
        .route(
            "/api/v3/channels/",
            get(move |headers: HeaderMap| async move {
                authorized(&headers).map(|()| axum::Json(channels))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

/// Runs `keepwatch import healthchecks ARGS --to <app> --to-api-key <key>`: success, stdout,
/// stderr.
async fn import(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args(["import", "healthchecks"])
        .args(args)
        .args(["--to", &app.address, "--to-api-key", &app.api_key])
        .env_remove("KEEPWATCH_API_KEY")
        .env_remove("KEEPWATCH_SERVER")
        .env_remove("HEALTHCHECKS_API_KEY")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

async fn check_count(app: &TestApp) -> usize {
    let (_, body) = app.get("/api/v3/checks/").await;
    body["checks"].as_array().unwrap().len()
}

#[tokio::test]
async fn checks_move_from_healthchecks_with_their_uuids_and_fields() {
    moves_checks(spawn_app().await).await;
}

#[tokio::test]
async fn checks_move_from_healthchecks_into_postgres() {
    let db = PgDatabase::create().await;
    moves_checks(
        spawn_app_with(AppOptions {
            database_url: Some(db.url.clone()),
            ..AppOptions::default()
        })
        .await,
    )
    .await;
}

async fn moves_checks(app: TestApp) {
    let hc = healthchecks(hc_checks(), hc_channels()).await;
    // The webhook "listener" exists in keepwatch already (its URL given by hand).
    let (status, kw_listener) = app
        .post(
            "/api/v3/channels/",
            Some(json!({"name": "listener", "kind": "webhook", "url": "https://hooks.example.com/kw"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let kw_listener = kw_listener["id"].as_str().unwrap().to_string();

    // A dry run reports and writes nothing.
    let (ok, out, err) = import(&app, &["--url", &hc, "--api-key", HC_KEY, "--dry-run"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("would create  {EVENTS}  Nightly events")),
        "{out}"
    );
    assert!(
        out.contains(&format!("would create  {PAUSED}  backup (paused)")),
        "{out}"
    );
    assert!(
        out.ends_with(
            "would create 3, would update 0, unchanged 0, failed 0; channels attached 1, not \
             migrated 2 (dry run: nothing was written)\n"
        ),
        "{out}"
    );
    assert_eq!(check_count(&app).await, 0);

    let (ok, out, err) = import(&app, &["--url", &hc, "--api-key", HC_KEY]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("created    {EVENTS}  Nightly events\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("created    {CRON}  Nightly cron\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("created    {PAUSED}  backup (paused)\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "attached      {LISTENER} webhook \"listener\" → keepwatch channel {kw_listener}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "not migrated  {SLACK} slack \"ops\": needs its address (Healthchecks' API does not \
             give it): keepwatch reaches slack through a person's `slack` contact"
        )),
        "{out}"
    );
    assert!(
        out.contains("pd \"pager\": keepwatch has no pd channels"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "created 3, updated 0, unchanged 0, failed 0; channels attached 1, not migrated 2\n"
        ),
        "{out}"
    );

    // Each check is in keepwatch under its Healthchecks UUID, with its fields.
    let events = app.get_check(EVENTS).await;
    for (field, value) in [
        ("name", json!("Nightly events")),
        ("slug", json!("nightly-events")),
        ("tags", json!("prod etl")),
        ("desc", json!("client events")),
        ("timeout", json!(86400)),
        ("grace", json!(3600)),
        ("status", json!("new")),
        ("channels", json!(kw_listener)),
    ] {
        assert_eq!(events[field], value, "{field}: {events}");
    }
    let cron = app.get_check(CRON).await;
    assert_eq!(cron["schedule"], "0 0 * * *");
    assert_eq!(cron["tz"], "America/Denver");
    assert_eq!(cron["grace"], 600);
    assert_eq!(cron["channels"], json!(kw_listener));
    let paused = app.get_check(PAUSED).await;
    for (field, value) in [
        ("status", json!("paused")),
        ("manual_resume", json!(true)),
        ("methods", json!("POST")),
        ("timeout", json!(3600)),
        ("grace", json!(1800)),
        ("subject", json!("SUCCESS")),
        ("subject_fail", json!("FAIL")),
        ("start_kw", json!("START")),
        ("success_kw", json!("SUCCESS")),
        ("failure_kw", json!("FAIL")),
        ("filter_subject", json!(true)),
        ("filter_body", json!(true)),
        ("filter_http_body", json!(true)),
        ("filter_default_fail", json!(true)),
        ("channels", json!("")),
    ] {
        assert_eq!(paused[field], value, "{field}: {paused}");
    }
    // The old ping URL works with only the base URL changed.
    let (status, _, body) = app.ping("GET", &format!("/ping/{EVENTS}"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "OK"));
    assert_eq!(app.get_check(EVENTS).await["status"], "up");

    // Again: nothing changes.
    let (ok, out, err) = import(&app, &["--url", &hc, "--api-key", HC_KEY]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("unchanged  {EVENTS}  Nightly events\n")),
        "{out}"
    );
    assert!(
        out.ends_with(
            "created 0, updated 0, unchanged 3, failed 0; channels attached 1, not migrated 2\n"
        ),
        "{out}"
    );
    assert_eq!(check_count(&app).await, 3);
    assert_eq!(app.get_check(EVENTS).await["n_pings"], 1);

    // Changed in Healthchecks since: updated, and resumed.
    let mut changed = hc_checks();
    changed["checks"][0]["grace"] = json!(900);
    changed["checks"][0]["tags"] = json!("prod");
    changed["checks"][2]["status"] = json!("up");
    let hc = healthchecks(changed, hc_channels()).await;
    let (ok, out, err) = import(&app, &["--url", &hc, "--api-key", HC_KEY, "--dry-run"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!(
            "would update  {EVENTS}  Nightly events: tags, grace\n"
        )),
        "{out}"
    );
    assert_eq!(app.get_check(EVENTS).await["grace"], 3600);
    let (ok, out, err) = import(&app, &["--url", &hc, "--api-key", HC_KEY]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!(
            "updated    {EVENTS}  Nightly events: tags, grace\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("updated    {PAUSED}  backup: resumed\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("unchanged  {CRON}  Nightly cron\n")),
        "{out}"
    );
    let events = app.get_check(EVENTS).await;
    assert_eq!(
        (events["grace"].clone(), events["tags"].clone()),
        (json!(900), json!("prod"))
    );
    assert_ne!(app.get_check(PAUSED).await["status"], "paused");
}

#[tokio::test]
async fn bad_keys_and_bad_input_are_refused_precisely() {
    let app = spawn_app().await;
    let hc = healthchecks(hc_checks(), hc_channels()).await;
    // Healthchecks refuses the key: its own message, non-zero exit, nothing written.
    let (ok, _, err) = import(
        &app,
        &[
            "--url",
            &hc,
            "--api-key",
            "hcw_wrongwrongwrongwrongwrongwron",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("Healthchecks refused --api-key") && err.contains("401 wrong api key"),
        "{err}"
    );
    // Nobody listens there.
    let (ok, _, err) = import(&app, &["--url", "http://127.0.0.1:9", "--api-key", HC_KEY]).await;
    assert!(!ok);
    assert!(
        err.contains("cannot reach Healthchecks at http://127.0.0.1:9/api/v3/checks/"),
        "{err}"
    );
    // A read-only key's list has unique keys, not UUIDs.
    let read_only = json!({"checks": [{
        "name": "Nightly events", "slug": "nightly-events", "tags": "prod etl", "desc": "",
        "grace": 3600, "n_pings": 0, "status": "new", "started": false, "last_ping": null,
        "next_ping": null, "manual_resume": false, "methods": "",
        "unique_key": "4adbe35cc30cfd749398f1fbf0106fed96a4d271", "timeout": 86400,
    }]});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checks.json");
    std::fs::write(&file, read_only.to_string()).unwrap();
    let file = file.to_str().unwrap();
    let (ok, _, err) = import(&app, &["--file", file]).await;
    assert!(!ok);
    assert!(err.contains("read with a read-only API key"), "{err}");
    // Malformed JSON.
    std::fs::write(file, "{\"checks\": [").unwrap();
    let (ok, _, err) = import(&app, &["--file", file]).await;
    assert!(!ok);
    assert!(err.contains(&format!("{file}: not JSON")), "{err}");
    // keepwatch refuses its key.
    std::fs::write(file, hc_checks().to_string()).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args([
            "import",
            "healthchecks",
            "--file",
            file,
            "--to",
            &app.address,
        ])
        .args(["--to-api-key", &app.read_key])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(err.contains("keepwatch refused --to-api-key"), "{err}");
    assert_eq!(check_count(&app).await, 0);

    // One check with an invalid schedule: it fails, named, and the others are imported.
    let mut checks = hc_checks();
    checks["checks"][1]["schedule"] = json!("0 25 * * *");
    std::fs::write(file, checks.to_string()).unwrap();
    let (ok, out, _) = import(&app, &["--file", file]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "failed     {CRON}  Nightly cron: schedule `0 25 * * *` (tz America/Denver) is not valid"
        )),
        "{out}"
    );
    assert!(out.contains("nothing written"), "{out}");
    assert!(out.contains("not read: give --channels-file"), "{out}");
    assert!(
        out.ends_with(
            "created 2, updated 0, unchanged 0, failed 1; channels attached 0, not migrated 0\n"
        ),
        "{out}"
    );
    assert_eq!(check_count(&app).await, 2);
    let (status, _) = app.get(&format!("/api/v3/checks/{CRON}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_uuid_given_on_create_is_kept_and_must_be_free() {
    let app = spawn_app().await;
    let check = app
        .create_check(json!({"name": "moved", "uuid": EVENTS.to_uppercase()}))
        .await;
    assert_eq!(check["uuid"], EVENTS);
    let (status, body) = app
        .post(
            "/api/v3/checks/",
            Some(json!({"name": "again", "uuid": EVENTS})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"],
        format!("a check with uuid {EVENTS} already exists")
    );
    let (status, body) = app
        .post(
            "/api/v3/checks/",
            Some(json!({"name": "bad", "uuid": "5ad6aaab"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "json validation error: uuid is not a valid UUID"
    );
    let (status, body) = app
        .post(
            &format!("/api/v3/checks/{EVENTS}"),
            Some(json!({"uuid": CRON})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "json validation error: uuid cannot be changed"
    );
}
