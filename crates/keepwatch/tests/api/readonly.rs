//! What a read-only API key gets: every answer it can have is free of ping URLs (check
//! UUIDs), contact and webhook URLs (tokens), calendar feed tokens and integration keys;
//! checks are named by their `unique_key`, as Healthchecks does.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{billing_pages, eventually, schedule, spawn_app};

/// Port 1 on loopback refuses connections: deliveries fail (errors name no URL).
const TELEGRAM: &str = "http://127.0.0.1:1/bot123456:TELEGRAM-SECRET/sendMessage?chat_id=-1";
const WEBHOOK: &str = "http://127.0.0.1:1/hooks/WEBHOOK-SECRET";

fn config() -> String {
    format!(
        r#"
[[people]]
id = "alice"
contacts = {{ telegram = "{TELEGRAM}", email = "alice@mail.example.com" }}
rules = [{{ urgency = "high", contact = "telegram", after = 0 }}]
{primary}{billing}"#,
        primary = schedule("primary", "UTC", &["alice"], "1d", "2026-11-23T09:00"),
        billing = billing_pages(&["schedule:primary"])
    )
}

#[tokio::test]
async fn read_only_keys_see_no_ping_urls_contact_urls_or_tokens() {
    let app = spawn_app().await;
    let applied = app.apply_oncall_config(&config()).await;
    let feed_url = applied["calendar_feeds"][0]["url"].as_str().unwrap();
    let feed_token = feed_url
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".ics");
    let integration_key = applied["integration_keys"][0]["key"].as_str().unwrap();
    let channel = json!({"name": "hook", "kind": "webhook", "url": WEBHOOK});
    let (status, channel) = app.post("/api/v3/channels/", Some(channel)).await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    // No name: the alert's summary is the UUID.
    let check = app
        .create_check(json!({"timeout": 60, "grace": 60, "channels": "*"}))
        .await;
    let uuid = check["uuid"].as_str().unwrap().to_string();
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    // The page to Telegram and the webhook notification fail, their errors recorded.
    let alert_id = eventually(|| async {
        let (_, body) = app.get_text(&app.api_key, "/api/v1/alerts/").await;
        let alerts: Value = serde_json::from_str(&body).unwrap();
        let id = alerts["alerts"][0]["id"].as_i64()?;
        let (_, alert) = app
            .get_text(&app.api_key, &format!("/api/v1/alerts/{id}"))
            .await;
        alert.contains("notify_failed").then_some(id)
    })
    .await;
    let notifications = format!("/api/v3/checks/{uuid}/notifications/");
    eventually(|| async {
        let (_, body) = app.get_text(&app.api_key, &notifications).await;
        body.contains("could not connect").then_some(())
    })
    .await;
    // A full-access key sees everything: the secrets are there to leak.
    let (_, full_alert) = app
        .get_text(&app.api_key, &format!("/api/v1/alerts/{alert_id}"))
        .await;
    assert!(full_alert.contains(&uuid), "{full_alert}");
    let (_, full_person) = app.get_text(&app.api_key, "/api/v1/people/alice").await;
    assert!(full_person.contains("TELEGRAM-SECRET"), "{full_person}");

    let (_, listed) = app.get_text(&app.read_key, "/api/v3/checks/").await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let unique_key = listed["checks"][0]["unique_key"]
        .as_str()
        .unwrap()
        .to_string();
    let secrets = [
        uuid.as_str(),
        "TELEGRAM-SECRET",
        "bot123456",
        "WEBHOOK-SECRET",
        "alice@",
        feed_token,
        integration_key,
    ];
    for path in [
        "/api/v1/alerts/".to_string(),
        "/api/v1/alerts/?status=open".to_string(),
        format!("/api/v1/alerts/{alert_id}"),
        "/api/v3/checks/".to_string(),
        format!("/api/v3/checks/{unique_key}"),
        format!("/api/v3/checks/{unique_key}/flips/"),
        format!("/api/v3/checks/{unique_key}/notifications/"),
        "/api/v1/oncall/".to_string(),
        "/api/v1/people/".to_string(),
        "/api/v1/people/alice".to_string(),
        "/api/v1/schedules/".to_string(),
        "/api/v1/schedules/primary".to_string(),
        "/api/v1/policies/".to_string(),
        "/api/v1/policies/p".to_string(),
        "/api/v1/services/".to_string(),
        "/api/v1/services/billing".to_string(),
    ] {
        let (status, body) = app.get_text(&app.read_key, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        for secret in secrets {
            assert!(!body.contains(secret), "{path} shows `{secret}`: {body}");
        }
    }
    // The alert names its check by the unique key, and says why the page failed.
    let (_, alert) = app
        .get_text(&app.read_key, &format!("/api/v1/alerts/{alert_id}"))
        .await;
    let alert: Value = serde_json::from_str(&alert).unwrap();
    assert_eq!(alert["dedup_key"], format!("check:{unique_key}"));
    assert_eq!(alert["summary"], format!("{unique_key}: failed"));
    let failed = alert["log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "notify_failed")
        .unwrap();
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{failed}"
    );
    // What read-only keys may not read at all.
    for path in [
        "/api/v3/channels/".to_string(),
        format!("/api/v3/checks/{uuid}/pings/"),
        "/api/v1/oncall/config".to_string(),
    ] {
        let (status, _) = app.get_text(&app.read_key, &path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    app.stop().await;
}
