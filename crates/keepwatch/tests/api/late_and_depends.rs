//! Issue #21: the late notice (a check with `notify_late` tells its channels when it enters
//! its grace period, without paging), and check dependencies (a check's alerts are held back
//! while a check it depends on is down). Real server, manual clock, webhooks on loopback.

use chrono::TimeDelta;
use serde_json::{Value, json};

use crate::helpers::{Receiver, TestApp, alice_by_webhook, apply, eventually, spawn_app};

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
    assert_eq!(
        (&shown["status"], &shown["down_reason"]),
        (&json!("grace"), &Value::Null)
    );
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
        .post(
            &format!("/api/v3/checks/{uuid}"),
            Some(json!({"notify_late": "yes"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "json validation error: notify_late is not a boolean"
    );
    let (_, off) = app
        .post(
            &format!("/api/v3/checks/{uuid}"),
            Some(json!({"notify_late": false})),
        )
        .await;
    assert_eq!(off["notify_late"], false);
    app.advance(TimeDelta::minutes(55)); // 15:15: expected, no late notice
    app.engine.settled().await;
    assert!(
        channel.is_empty(),
        "without notify_late the grace start is quiet"
    );
}

async fn events(app: &TestApp, uuid: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/api/v3/checks/{uuid}/events/")).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

/// The next message the pager's receiver gets that is a page (alert updates are skipped).
async fn next_page(pager: &mut Receiver) -> Value {
    loop {
        let message = pager.next().await.json();
        if message.get("update").is_none() {
            return message;
        }
    }
}

#[tokio::test]
async fn a_check_whose_dependency_is_down_is_held_back_and_released_when_it_recovers() {
    dependency_story(spawn_app().await).await;
}

/// The same on PostgreSQL.
#[tokio::test]
async fn dependencies_hold_back_and_release_on_postgres() {
    let db = keepwatch_store::testing::PgDatabase::create().await;
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    dependency_story(app).await;
}

async fn dependency_story(app: TestApp) {
    let mut pager = Receiver::start(vec![]).await;
    alice_pages_to(&app, &pager).await;
    let mut channel = Receiver::start(vec![]).await;
    app.webhook_channel(&channel, None).await;
    let backup = app
        .create_check(json!({"name": "backup", "timeout": 3600, "grace": 600,
            "service": "billing", "channels": "*"}))
        .await;
    let backup_uuid = backup["uuid"].as_str().unwrap().to_string();
    assert_eq!(backup["depends_on"], json!([]));
    let report = app
        .create_check(json!({"name": "report", "timeout": 3600, "grace": 1200,
            "service": "billing", "channels": "*", "depends_on": [backup_uuid]}))
        .await;
    assert_eq!(report["depends_on"], json!([backup_uuid]));
    let uuid = report["uuid"].as_str().unwrap().to_string();
    // A read-only key sees the dependency by its unique_key, never its UUID (a ping URL).
    let (_, listed) = app.get_read_only("/api/v3/checks/").await;
    let (backup_ro, report_ro) = {
        let checks = listed["checks"].as_array().unwrap();
        let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap().clone();
        (by_name("backup"), by_name("report"))
    };
    assert_eq!(report_ro["depends_on"], json!([backup_ro["unique_key"]]));
    assert!(!listed.to_string().contains(&backup_uuid), "{listed}");

    // Validation: a precise 400 for each mistake.
    let update = |code: &str, body: Value| {
        let app = &app;
        let path = format!("/api/v3/checks/{code}");
        async move { app.post(&path, Some(body)).await }
    };
    let unknown = "00000000-0000-4000-8000-000000000009";
    let (status, body) = update(&uuid, json!({"depends_on": [unknown]})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        format!("json validation error: depends_on: no check `{unknown}` in this project")
    );
    let (status, body) = update(&uuid, json!({"depends_on": [uuid]})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "json validation error: depends_on: a check cannot depend on itself"
    );
    let (status, body) = update(&backup_uuid, json!({"depends_on": [uuid]})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "json validation error: depends_on makes a cycle: backup → report → backup"
    );
    let (status, body) = update(&uuid, json!({"depends_on": ["nightly"]})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "json validation error: depends_on: `nightly` is not a check UUID"
    );
    let (status, body) = update(&uuid, json!({"depends_on": "x"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "json validation error: depends_on is not an array of check UUIDs"
    );
    assert_eq!(app.get_check(&backup_uuid).await["depends_on"], json!([]));

    app.ping("GET", &format!("/ping/{backup_uuid}"), None).await; // 12:00
    app.ping("GET", &format!("/ping/{uuid}"), None).await;

    // 13:10: the backup is down: its channel and alice hear of it.
    app.advance(TimeDelta::minutes(70));
    let down = channel.next().await.json();
    assert_eq!(
        (&down["event"], &down["check"]["name"]),
        (&json!("down"), &json!("backup"))
    );
    assert_eq!(
        next_page(&mut pager).await["alert"]["summary"],
        "backup: missed its run"
    );

    // 13:20: the report is down too, but held back: no channel message, no page, no alert.
    app.advance(TimeDelta::minutes(10));
    app.engine.settled().await;
    let held = eventually(|| async {
        let events = events(&app, &uuid).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(held[0]["kind"], "down");
    assert_eq!(
        held[0]["suppressed"],
        "suppressed: depends on backup, down since 2026-11-26T13:10:00Z"
    );
    assert_eq!(held[0]["suppressed_by"], backup_uuid.as_str());
    assert_eq!(app.get_check(&uuid).await["status"], "down");

    // The drill says so, through the API and `keepwatch drill`.
    let (status, drill) = app
        .get_read_only(&format!("/api/v1/drill?check={uuid}"))
        .await;
    assert_eq!(status, 200, "{drill}");
    assert_eq!(
        drill["held_back"],
        "suppressed: depends on backup, down since 2026-11-26T13:10:00Z"
    );
    let output = crate::cli::keepwatch_async(
        &["drill", "--check", &uuid, "--server", &app.address],
        Some(&app.api_key),
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(
            "HELD BACK: suppressed: depends on backup, down since 2026-11-26T13:10:00Z: nobody \
             is paged"
        ),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(channel.is_empty(), "the report's channel is not told");
    let open = open_alerts(&app).await;
    assert_eq!(open.len(), 1, "only the backup's alert: {open:?}");

    // 13:30: the backup is back while the report is still down: the report's alert is sent
    // now, saying why it comes late.
    app.advance(TimeDelta::minutes(10));
    app.ping("GET", &format!("/ping/{backup_uuid}"), None).await;
    // Two messages, delivered concurrently: in either order.
    let mut told = [channel.next().await.json(), channel.next().await.json()];
    told.sort_by_key(|m| m["event"].as_str().unwrap_or_default().to_string());
    let [released, up] = told;
    assert_eq!(
        (&up["event"], &up["check"]["name"]),
        (&json!("up"), &json!("backup"))
    );
    assert_eq!(
        (&released["event"], &released["check"]["name"]),
        (&json!("down"), &json!("report"))
    );
    let note = "held back since 2026-11-26T13:20:00Z because it depends on backup, down since \
                2026-11-26T13:10:00Z; backup recovered at 2026-11-26T13:30:00Z";
    assert_eq!(released["released"]["reason"], note);
    assert!(
        released["text"].as_str().unwrap().contains(note),
        "{released}"
    );
    let page = next_page(&mut pager).await;
    assert_eq!(
        page["alert"]["summary"],
        format!("report: missed its run ({note})")
    );
    // The page itself says why it comes late, as the channel message does.
    let sentence = page["evidence"]["sentence"].as_str().unwrap_or_default();
    assert!(sentence.ends_with(&format!("({note})")), "{page}");
    let events = events(&app, &uuid).await;
    assert_eq!(events[0]["released"], note);
    assert_eq!(events[0]["kind"], "down");

    // The report recovers: its up is told as usual (its down was, once released).
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let up = channel.next().await.json();
    assert_eq!(
        (&up["event"], &up["check"]["name"]),
        (&json!("up"), &json!("report"))
    );
}

/// A webhook channel, and two checks pinged at the start: `backup` (down 70 minutes on) and
/// `report`, which depends on it (down 80 minutes on).
async fn backup_and_report(app: &TestApp) -> (Receiver, String, String) {
    let channel = Receiver::start(vec![]).await;
    app.webhook_channel(&channel, None).await;
    let backup = app
        .create_check_uuid(
            json!({"name": "backup", "timeout": 3600, "grace": 600, "channels": "*"}),
        )
        .await;
    let report = app
        .create_check_uuid(json!({"name": "report", "timeout": 3600, "grace": 1200,
            "channels": "*", "depends_on": [backup]}))
        .await;
    app.ping("GET", &format!("/ping/{backup}"), None).await;
    app.ping("GET", &format!("/ping/{report}"), None).await;
    (channel, backup, report)
}

#[tokio::test]
async fn a_held_back_check_that_recovers_first_is_never_told() {
    let app = spawn_app().await;
    let (mut channel, backup, report) = backup_and_report(&app).await;
    app.advance(TimeDelta::minutes(70));
    assert_eq!(channel.next().await.json()["check"]["name"], "backup");
    app.advance(TimeDelta::minutes(10)); // the report is down, held back
    app.engine.settled().await;
    app.ping("GET", &format!("/ping/{report}"), None).await; // and back before the backup
    app.engine.settled().await;
    let events = events(&app, &report).await;
    assert_eq!(events[0]["kind"], "up");
    assert!(
        events[0]["suppressed"]
            .as_str()
            .unwrap()
            .starts_with("its alert was held back"),
        "{events:?}"
    );
    app.ping("GET", &format!("/ping/{backup}"), None).await;
    let up = channel.next().await.json();
    assert_eq!(
        (&up["event"], &up["check"]["name"]),
        (&json!("up"), &json!("backup"))
    );
    app.engine.settled().await;
    assert!(
        channel.is_empty(),
        "nothing about the report: {:?}",
        channel.next().await.json()
    );
}

const DECLARED: &str = r#"
[[checks]]
slug = "nightly-backup"
name = "Nightly backup"
schedule = "0 0 * * *"
grace = 3600
[[checks]]
slug = "queue"
timeout = 600
grace = 60
notify_late = true
depends_on = ["nightly-backup"]
"#;

#[tokio::test]
async fn the_on_call_file_declares_notify_late_and_dependencies_by_slug() {
    let app = spawn_app().await;
    let file = format!("{}{DECLARED}", crate::helpers::one_service());
    let (status, body) = app.put_oncall_config(&app.api_key, "", file.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = app
        .get_read_only("/api/v3/checks/?slug=nightly-backup")
        .await;
    let backup = listed["checks"][0].clone();
    assert_eq!(
        (&backup["notify_late"], &backup["depends_on"]),
        (&json!(false), &json!([]))
    );
    let (_, listed) = app.get("/api/v3/checks/?slug=queue").await;
    let queue = &listed["checks"][0];
    assert_eq!(queue["notify_late"], true);
    // The read-only listing shows no UUIDs: read the backup's with the full key.
    let (_, full) = app.get("/api/v3/checks/?slug=nightly-backup").await;
    assert_eq!(queue["depends_on"], json!([full["checks"][0]["uuid"]]));
    let (_, again) = app.put_oncall_config(&app.api_key, "", file.clone()).await;
    assert_eq!(
        again["changes"],
        json!([]),
        "applying twice changes nothing"
    );

    for (bad, expected) in [
        (
            file.replace(r#"["nightly-backup"]"#, r#"["nope"]"#),
            "checks[1] (queue): depends_on: no check with slug `nope` in the file or the project",
        ),
        (
            file.replace(r#"["nightly-backup"]"#, r#"["queue"]"#),
            "checks[1] (queue): depends_on: a check cannot depend on itself",
        ),
        (
            file.replace("grace = 3600", "grace = 3600\ndepends_on = [\"queue\"]"),
            "checks[0] (nightly-backup): depends_on makes a cycle: Nightly backup → queue → \
             Nightly backup",
        ),
        (
            file.replace("notify_late = true", "notify_late = \"yes\""),
            "notify_late = \"yes\"\n   |               ^^^^^\ninvalid type: string \"yes\", expected a boolean",
        ),
    ] {
        let (status, body) = app.put_oncall_config(&app.api_key, "", bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(expected), "{expected} → {error}");
    }
}

/// What a check depends on is loaded with it when the server starts again.
#[tokio::test]
async fn dependencies_hold_after_a_restart() {
    let app = spawn_app().await;
    let backup = app
        .create_check_uuid(json!({"name": "backup", "timeout": 3600, "grace": 600}))
        .await;
    let report = app
        .create_check_uuid(json!({"name": "report", "timeout": 3600, "grace": 1200,
            "depends_on": [backup]}))
        .await;
    app.ping("GET", &format!("/ping/{backup}"), None).await;
    app.ping("GET", &format!("/ping/{report}"), None).await;
    let data_dir = app.data_dir.clone();
    let _temp = app.stop().await;

    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        data_dir: Some(data_dir),
        start: Some(crate::helpers::t0() + TimeDelta::minutes(5)),
        ..Default::default()
    })
    .await;
    app.advance(TimeDelta::minutes(75)); // 13:20: both down
    app.engine.settled().await;
    let held = eventually(|| async {
        let events = events(&app, &report).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(
        held[0]["suppressed"],
        "suppressed: depends on backup, down since 2026-11-26T13:10:00Z"
    );
}

/// Pausing (or deleting) the check depended on releases what it held back: a paused check is
/// not down, and the dependent one still is.
#[tokio::test]
async fn pausing_the_dependency_releases_the_held_alert() {
    let app = spawn_app().await;
    let (mut channel, backup, _report) = backup_and_report(&app).await;
    app.advance(TimeDelta::minutes(80));
    assert_eq!(channel.next().await.json()["check"]["name"], "backup");
    app.engine.settled().await;
    assert!(channel.is_empty(), "the report is held back");
    let (status, _) = app
        .post(&format!("/api/v3/checks/{backup}/pause"), None)
        .await;
    assert_eq!(status, 200);
    let released = channel.next().await.json();
    assert_eq!(
        (&released["event"], &released["check"]["name"]),
        (&json!("down"), &json!("report"))
    );
    assert!(
        released["released"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("held back since 2026-11-26T13:20:00Z because it depends on backup"),
        "{released}"
    );
}
