//! The on-call configuration over REST: `PUT /api/v1/oncall/config` applies a file as
//! `keepwatch apply` does (dry run, idempotent, errors naming line and field), and people,
//! schedules (with shifts), policies and services read back from it.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, alice_by_webhook, spawn_app};

const CONFIG: &str = r#"
[[people]]
id = "alice"
contacts = { email = "alice@example.com", slack = "https://hooks.slack.com/services/T0/B0/secret" }
rules = [{ urgency = "high", contact = "slack", after = 0 }, { urgency = "low", contact = "email", after = 0 }]
[[people]]
id = "bob"
contacts = { email = "bob@example.com" }
rules = [{ urgency = "high", contact = "email", after = 0 }]
[[schedules]]
name = "primary"
tz = "America/Denver"
[[schedules.layers]]
name = "daily"
participants = ["alice", "bob"]
shift = "1d"
start = "2026-11-23T09:00"
[[policies]]
name = "billing"
steps = [{ targets = ["schedule:primary"], delay = 15 }]
[[services]]
name = "billing"
policy = "billing"
urgency = "high"
"#;

async fn put(app: &TestApp, query: &str, key: &str, body: &str) -> (StatusCode, Value) {
    app.put_oncall_config(key, query, body.to_string()).await
}

#[tokio::test]
async fn the_on_call_file_is_applied_and_read_back_over_rest() {
    let app = spawn_app().await;
    let (status, body) = app.get_read_only("/api/v1/people/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"],
        "no on-call configuration applied (keepwatch apply -f <file>)"
    );

    // Applying needs a full-access key; a dry run stores nothing.
    let (status, _) = put(&app, "", &app.read_key, CONFIG).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = put(&app, "?dry_run=1", &app.api_key, CONFIG).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["changes"],
        json!([
            "+ person alice",
            "+ person bob",
            "+ schedule primary",
            "+ policy billing",
            "+ service billing"
        ])
    );
    assert_eq!(body["dry_run"], true);
    let (status, _) = app.get("/api/v1/oncall/config").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad files are refused with the field, and nothing is stored.
    for (bad, expected) in [
        (
            CONFIG.replace(r#"["alice", "bob"]"#, r#"["alice", "carol"]"#),
            "carol",
        ),
        (CONFIG.replace(r#"["alice", "bob"]"#, "[]"), "participants"),
        (
            CONFIG.replace("America/Denver", "Mars/Olympus"),
            "Mars/Olympus",
        ),
        (CONFIG.replace("schedule:primary", "schedule:nope"), "nope"),
        ("[[people]\n".to_string(), "line 1"),
    ] {
        let (status, body) = put(&app, "", &app.api_key, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(expected), "{expected} in {error}");
    }
    let (status, _) = put(&app, "?dry_run=maybe", &app.api_key, CONFIG).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Applied: the calendar feed and the integration key come back; twice changes nothing.
    let (status, body) = put(&app, "", &app.api_key, CONFIG).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["changes"].as_array().unwrap().len(), 5);
    let feeds = body["calendar_feeds"].as_array().unwrap();
    assert!(
        feeds.iter().any(|f| f["kind"] == "schedule"
            && f["name"] == "primary"
            && f["url"].as_str().unwrap().ends_with(".ics")),
        "{body}"
    );
    assert_eq!(body["integration_keys"][0]["service"], "billing");
    let (status, again) = put(&app, "", &app.api_key, CONFIG).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["changes"], json!([]));
    assert_eq!(again["integration_keys"], body["integration_keys"]);
    let (status, text) = app.get("/api/v1/oncall/config").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, Some(CONFIG)));
    // The file holds contact URLs and tokens: a read-only key does not get it.
    let (status, _) = app.get_read_only("/api/v1/oncall/config").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // People: a read-only key sees where a contact goes, not its secret URL.
    let (status, body) = app.get_read_only("/api/v1/people/").await;
    assert_eq!(status, StatusCode::OK);
    let alice = &body["people"][0];
    assert_eq!(alice["id"], "alice");
    assert_eq!(alice["contacts"]["slack"], "https://hooks.slack.com/…");
    assert_eq!(alice["contacts"]["email"], "…@example.com");
    let (_, full) = app.get("/api/v1/people/alice").await;
    assert_eq!(
        full["contacts"]["slack"],
        "https://hooks.slack.com/services/T0/B0/secret"
    );
    assert_eq!(full["schedules"], json!(["primary"]));
    assert_eq!(full["rules"][1]["urgency"], "low");
    let (status, body) = app.get_read_only("/api/v1/people/carol").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no people entry with id `carol`");

    // Schedules: who is on call now (the test clock: Thu 2026-11-26 05:00 in Denver, so the
    // shift that began Wed 09:00, the third day: alice, bob, alice), and exact shifts.
    let (_, body) = app.get_read_only("/api/v1/schedules/").await;
    let primary = &body["schedules"][0];
    assert_eq!(primary["oncall"]["users"], json!(["alice"]));
    assert_eq!(primary["oncall"]["until"], "2026-11-26T16:00:00+00:00");
    assert_eq!(primary["oncall"]["next"], json!(["bob"]));
    let path = "/api/v1/schedules/primary?from=2026-11-23T16:00:00Z&to=2026-11-25T16:00:00Z";
    let (status, body) = app.get_read_only(path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["shifts"],
        json!([
            {"start": "2026-11-23T16:00:00+00:00", "end": "2026-11-24T16:00:00+00:00", "users": ["alice"]},
            {"start": "2026-11-24T16:00:00+00:00", "end": "2026-11-25T16:00:00+00:00", "users": ["bob"]},
        ])
    );
    for (path, status) in [
        ("/api/v1/schedules/nope", StatusCode::NOT_FOUND),
        (
            "/api/v1/schedules/primary?from=tomorrow",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/schedules/primary?from=2026-11-25T00:00:00Z&to=2026-11-24T00:00:00Z",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/schedules/primary?from=2026-01-01T00:00:00Z&to=2027-06-01T00:00:00Z",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/policies/nope", StatusCode::NOT_FOUND),
        ("/api/v1/services/nope", StatusCode::NOT_FOUND),
    ] {
        let (got, body) = app.get_read_only(path).await;
        assert_eq!(got, status, "{path}: {body}");
    }

    // Policies and services, as written.
    let (_, body) = app.get_read_only("/api/v1/policies/billing").await;
    assert_eq!(body["steps"][0]["targets"], json!(["schedule:primary"]));
    let (_, body) = app.get_read_only("/api/v1/services/").await;
    assert_eq!(body["services"][0]["urgency"], "high");
    let (status, _) = app.api("GET", "/api/v1/services/", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Service `billing` pages alice through webhook contact `hook`.
fn with_hook(url: &str) -> String {
    alice_by_webhook("hook", url, 0)
}

async fn verified(app: &TestApp) -> Value {
    let (status, body) = app.get_read_only("/api/v1/people/alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["verified"]["hook"].clone()
}

/// The six-digit code in a verification message a webhook contact received.
fn code_in(message: &Value) -> String {
    let text = message["message"]["text"].as_str().unwrap();
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text}"))
        .to_string()
}

#[tokio::test]
async fn a_contact_is_verified_by_a_code_sent_through_it() {
    let app = spawn_app().await;
    let mut hook = crate::helpers::Receiver::start(vec![]).await;
    let (status, body) = put(&app, "", &app.api_key, &with_hook(&hook.url)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["unverified_contacts"],
        json!([{"person": "alice", "contact": "hook"}])
    );
    assert_eq!(verified(&app).await, false);

    let send = "/api/v1/people/alice/contacts/hook/send-code";
    let verify = "/api/v1/people/alice/contacts/hook/verify";
    let (status, _) = app.api("POST", send, Some(&app.read_key), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (path, error) in [
        (
            "/api/v1/people/alice/contacts/sms/send-code",
            "`alice` has no contact `sms`",
        ),
        (
            "/api/v1/people/carol/contacts/hook/send-code",
            "no people entry with id `carol`",
        ),
    ] {
        let (status, body) = app.post(path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::NOT_FOUND, Some(error))
        );
    }
    let (status, body) = app.post(verify, Some(json!({"code": "000000"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("no code is pending")
    );

    // The code arrives through the contact; a wrong one counts down, the right one verifies.
    let (status, body) = app.post(send, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let recorded = app
        .store
        .messages_to(keepwatch_store::MessageKind::VerificationCode, &hook.url)
        .await
        .unwrap();
    assert_eq!(
        recorded
            .iter()
            .map(|(_, state)| state.as_str())
            .collect::<Vec<_>>(),
        ["sent"]
    );
    let host = hook
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    assert_eq!(body["sent_to"], format!("http://{host}/…"));
    let code = code_in(&hook.next().await.json());
    let wrong = if code == "123456" { "654321" } else { "123456" };
    let (status, body) = app.post(verify, Some(json!({"code": wrong}))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("wrong code (4 tries left)"))
    );
    let (status, _) = app.post(verify, Some(json!({"number": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = app.post(verify, Some(json!({"code": code}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verified"], true);
    assert_eq!(verified(&app).await, true);
    // Used up: the same code does not verify twice.
    let (status, _) = app.post(verify, Some(json!({"code": code}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = put(&app, "", &app.api_key, &with_hook(&hook.url)).await;
    assert_eq!(body["unverified_contacts"], json!([]));

    // A new address in the file is unverified again.
    let moved = format!("{}?v=2", hook.url);
    let (_, body) = put(&app, "", &app.api_key, &with_hook(&moved)).await;
    assert_eq!(body["unverified_contacts"].as_array().unwrap().len(), 1);
    assert_eq!(verified(&app).await, false);

    // A code expires after 15 minutes, and five wrong tries use it up.
    app.post(send, None).await;
    let code = code_in(&hook.next().await.json());
    app.advance(chrono::TimeDelta::minutes(16));
    let (status, body) = app.post(verify, Some(json!({"code": code}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("the code has expired")
    );
    app.post(send, None).await;
    let code = code_in(&hook.next().await.json());
    let wrong = if code == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        app.post(verify, Some(json!({"code": wrong}))).await;
    }
    let (status, _) = app.post(verify, Some(json!({"code": code}))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(verified(&app).await, false);

    // A contact that cannot be reached says so.
    let mut broken = crate::helpers::Receiver::start(vec![500]).await;
    put(&app, "", &app.api_key, &with_hook(&broken.url)).await;
    let (status, body) = app.post(send, None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"], "could not send the code: answered HTTP 500");
    broken.next().await;
}

#[tokio::test]
async fn the_cli_sends_and_enters_a_verification_code() {
    let app = spawn_app().await;
    let mut hook = crate::helpers::Receiver::start(vec![]).await;
    put(&app, "", &app.api_key, &with_hook(&hook.url)).await;
    let contact = |args: &[&str]| {
        let mut all: Vec<String> = vec!["contact".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["--server".into(), app.address.clone()]);
        let key = app.api_key.clone();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            crate::cli::keepwatch_async(&all, Some(&key)).await
        }
    };
    let out = contact(&["send-code", "alice", "hook"]).await;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.starts_with("code sent to http://127.0.0.1"),
        "{printed}"
    );
    let code = code_in(&hook.next().await.json());
    let out = contact(&["verify", "alice", "hook", "12345x"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong code (4 tries left)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = contact(&["verify", "alice", "hook", &code]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alice hook: verified\n"
    );
    assert_eq!(verified(&app).await, true);
}

const CHECKS: &str = r#"
[[checks]]
slug = "nightly-backup"
name = "Nightly backup"
schedule = "0 0 * * *"
tz = "America/Denver"
grace = 3600
service = "billing"
[[checks]]
slug = "queue"
timeout = 600
grace = 60
"#;

#[tokio::test]
async fn checks_declared_in_the_file_are_created_and_updated_by_slug() {
    let app = spawn_app().await;
    let file = format!("{CONFIG}{CHECKS}");
    let (status, body) = put(&app, "?dry_run=1", &app.api_key, &file).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let changes: Vec<&str> = body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|c| c.contains("check"))
        .collect();
    assert_eq!(changes, ["+ check nightly-backup", "+ check queue"]);
    let (_, listed) = app.get_read_only("/api/v3/checks/").await;
    assert_eq!(listed["checks"], json!([]), "a dry run creates nothing");

    let (status, _) = put(&app, "", &app.api_key, &file).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = app
        .get_read_only("/api/v3/checks/?slug=nightly-backup")
        .await;
    let check = &listed["checks"][0];
    assert_eq!(check["name"], "Nightly backup");
    assert_eq!(check["schedule"], "0 0 * * *");
    assert_eq!(check["tz"], "America/Denver");
    assert_eq!(check["grace"], 3600);
    assert_eq!(check["service"], "billing");
    assert_eq!(check["status"], "new");
    // Declared checks are expected to report: one that never pings raises `never_reported`.
    assert_eq!(check["alert_if_never_pinged"], true);
    let (_, listed) = app.get_read_only("/api/v3/checks/?slug=queue").await;
    assert_eq!(
        (
            &listed["checks"][0]["name"],
            &listed["checks"][0]["timeout"]
        ),
        (&json!("queue"), &json!(600))
    );

    // Twice: nothing changes. A changed field updates the same check.
    let (_, again) = put(&app, "", &app.api_key, &file).await;
    assert_eq!(again["changes"], json!([]));
    let (_, again) = put(
        &app,
        "",
        &app.api_key,
        &file.replace("grace = 60", "grace = 120"),
    )
    .await;
    assert_eq!(again["changes"], json!(["~ check queue"]));
    let (_, listed) = app.get_read_only("/api/v3/checks/").await;
    assert_eq!(listed["checks"].as_array().unwrap().len(), 2);

    // What the v3 API would refuse is refused with the check and the field.
    for (bad, expected) in [
        (
            file.replace("0 0 * * *", "0 0 * *"),
            "checks[0] (nightly-backup): expected 5 fields",
        ),
        (
            file.replace("service = \"billing\"", "service = \"web\""),
            "checks[0] (nightly-backup).service: unknown service `web`",
        ),
        (
            file.replace("slug = \"queue\"", "slug = \"nightly-backup\""),
            "checks[1].slug: `nightly-backup` appears twice",
        ),
        (
            file.replace("timeout = 600", "timeout = 1"),
            "checks[1] (queue): json validation error: timeout is too small",
        ),
    ] {
        let (status, body) = put(&app, "", &app.api_key, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with(expected), "{expected} → {error}");
    }

    // From the CLI: straight to the database it refuses (only the server makes checks),
    // and a dry run says so too rather than promise an apply that will fail; with --server
    // it goes through the API.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oncall.toml");
    std::fs::write(&path, file.replace("grace = 60", "grace = 90")).unwrap();
    let path = path.to_str().unwrap();
    let data_dir = app.data_dir.to_str().unwrap();
    for dry_run in [false, true] {
        let mut args = vec!["apply", "-f", path, "--data-dir", data_dir];
        if dry_run {
            args.push("--dry-run");
        }
        let out = crate::cli::keepwatch_async(&args, None).await;
        assert!(!out.status.success(), "dry run: {dry_run}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("apply it with --server"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = crate::cli::keepwatch_async(
        &["apply", "-f", path, "--server", &app.address],
        Some(&app.api_key),
    )
    .await;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.starts_with("~ check queue\n"), "{printed}");
    assert!(printed.contains("  service billing: "), "{printed}");
    // A key that may not write: the server's refusal, naming the file.
    let out = crate::cli::keepwatch_async(
        &["apply", "-f", path, "--server", &app.address],
        Some(&app.read_key),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{path}: the server answered 401"))
            && stderr.contains("wrong api key"),
        "{stderr}"
    );
}
