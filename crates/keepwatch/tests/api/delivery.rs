//! Where deliveries may go (private destinations refused unless allowed), header-bound text
//! that must never fail a page, and one slow receiver that must not hold up the others.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::alerts::{alice_by_webhook, apply};
use crate::helpers::{AppOptions, Receiver, TestApp, eventually, spawn_app, spawn_app_with};

const REFUSED: &str = "destination is a private address (not delivered: set \
     allow_private_destinations to deliver to hosts on a private network)";

async fn refusing_app() -> TestApp {
    spawn_app_with(AppOptions {
        refuse_private: true,
        ..AppOptions::default()
    })
    .await
}

async fn channel(app: &TestApp, url: &str) -> String {
    let body = json!({"name": url, "kind": "webhook", "url": url});
    let (status, channel) = app
        .api("POST", "/api/v3/channels/", Some(&app.api_key), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    channel["id"].as_str().unwrap().to_string()
}

/// A TCP port on loopback that accepts connections and closes them without a word (an
/// internal service that is not HTTP), and one nobody listens on.
async fn open_and_closed_ports() -> (u16, u16) {
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open_port = open.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = open.accept().await {
            drop(socket);
        }
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    (open_port, closed_port)
}

#[tokio::test]
async fn channels_to_private_destinations_fail_at_once_and_nothing_is_sent() {
    let app = refusing_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let port = hook
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let urls = [
        hook.url.clone(),
        format!("http://localhost:{port}/hook"), // a name that resolves to loopback
        format!("http://127.1:{port}/hook"),
        format!("http://2130706433:{port}/hook"), // 127.0.0.1 as one number
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://10.0.0.1/hook".into(),
        "http://192.168.1.1/hook".into(),
        "http://[fd00::1]/hook".into(),
    ];
    let mut names = std::collections::HashMap::new();
    for url in &urls {
        names.insert(channel(&app, url).await, url.clone());
    }
    let uuid = app
        .create_check(json!({"name": "c", "channels": "*"}))
        .await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    let notifications: Vec<Value> = eventually(|| async {
        let n = app.notifications(&uuid).await;
        (n.len() == urls.len() && n.iter().all(|n| n["state"] != "pending")).then_some(n)
    })
    .await;
    for n in &notifications {
        let url = &names[n["channel"].as_str().unwrap()];
        // Failed for good after one attempt: retrying cannot help.
        assert_eq!(
            (&n["state"], &n["attempts"], n["last_error"].as_str()),
            (&json!("failed"), &json!(1), Some(REFUSED)),
            "{url}: {n}"
        );
    }
    assert!(hook.is_empty(), "a refused destination got a request");
}

#[tokio::test]
async fn send_code_does_not_tell_an_open_port_from_a_closed_one() {
    let (open, closed) = open_and_closed_ports().await;
    async fn answer(app: &TestApp, port: u16) -> (StatusCode, Value) {
        let url = format!("http://127.0.0.1:{port}/x");
        apply(app, &alice_by_webhook("hook", &url, 0)).await;
        let send = "/api/v1/people/alice/contacts/hook/send-code";
        app.api("POST", send, Some(&app.api_key), None).await
    }
    // By default a private address is refused before any connection is made.
    let app = refusing_app().await;
    let (status, refused_open) = answer(&app, open).await;
    let (_, refused_closed) = answer(&app, closed).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        refused_open["error"],
        format!("could not send the code: {REFUSED}")
    );
    assert_eq!(refused_open, refused_closed);
    // Allowed (an on-premises receiver): still one answer for both.
    let app = spawn_app().await;
    let (status, open_answer) = answer(&app, open).await;
    let (_, closed_answer) = answer(&app, closed).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        open_answer["error"],
        "could not send the code: the contact's address could not be reached"
    );
    assert_eq!(open_answer, closed_answer);
}

/// Fails a new check (named `name`), which opens an alert on the project's only service.
async fn fail_check(app: &TestApp, name: &str) {
    let check = app.create_check(json!({"name": name})).await;
    let uuid = check["uuid"].as_str().unwrap();
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
}

/// The log of the only alert once it has an entry of `kind`.
async fn log_with(app: &TestApp, kind: &str) -> Vec<Value> {
    eventually(|| async {
        let (_, alerts) = app
            .api("GET", "/api/v1/alerts/", Some(&app.api_key), None)
            .await;
        let id = alerts["alerts"][0]["id"].as_i64()?;
        let (_, alert) = app
            .api(
                "GET",
                &format!("/api/v1/alerts/{id}"),
                Some(&app.api_key),
                None,
            )
            .await;
        let log = alert["log"].as_array()?.clone();
        log.iter().any(|e| e["kind"] == kind).then_some(log)
    })
    .await
}

#[tokio::test]
async fn pages_to_private_destinations_fail_at_once_with_the_reason_in_the_alert_log() {
    let app = refusing_app().await;
    let mut hook = Receiver::start(vec![]).await;
    apply(&app, &alice_by_webhook("hook", &hook.url, 0)).await;
    fail_check(&app, "nightly").await;
    let log = log_with(&app, "notify_failed").await;
    let failed: Vec<&Value> = log
        .iter()
        .filter(|e| e["kind"] == "notify_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{log:?}");
    assert_eq!(failed[0]["detail"], REFUSED);
    // The page is failed, not pending a retry (its state is written with the log entry).
    assert_eq!(app.store.next_page_due().await.unwrap(), None);
    assert!(hook.is_empty());
}

#[tokio::test]
async fn pages_whose_text_has_line_breaks_control_characters_or_non_ascii_are_delivered() {
    use base64::prelude::{BASE64_STANDARD, Engine as _};
    let (mailbox, smtp) = crate::notifications::smtp_server();
    let app = spawn_app_with(AppOptions {
        smtp: Some(smtp),
        ..AppOptions::default()
    })
    .await;
    let mut ntfy = Receiver::start(vec![]).await;
    let key = apply(
        &app,
        &format!(
            r#"
[[people]]
id = "alice"
contacts = {{ ntfy = "{}", email = "alice@example.com" }}
rules = [{{ urgency = "high", contact = "ntfy", after = 0 }}, {{ urgency = "high", contact = "email", after = 0 }}]
[[policies]]
name = "p"
steps = [{{ targets = ["user:alice"], delay = 10 }}]
[[services]]
name = "billing"
policy = "p"
urgency = "high"
"#,
            ntfy.url
        ),
    )
    .await;
    let summary = "disk\r\nBcc: eve@example.com\tfull \u{7}in Zürich ✓";
    let (status, body) = app
        .api(
            "POST",
            "/api/v1/events",
            None,
            Some(json!({
                "routing_key": key,
                "event_action": "trigger",
                "payload": {"summary": summary, "source": "db1", "severity": "critical"},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // ntfy: the title on one line, RFC 2047-encoded (ntfy decodes it) as it is not ASCII.
    let push = ntfy.next().await;
    let title = push.headers["title"].to_str().unwrap();
    let encoded = title
        .strip_prefix("=?UTF-8?B?")
        .and_then(|t| t.strip_suffix("?="))
        .unwrap_or_else(|| panic!("not an encoded word: {title}"));
    let decoded = String::from_utf8(BASE64_STANDARD.decode(encoded).unwrap()).unwrap();
    assert_eq!(
        decoded,
        "[HIGH] disk  Bcc: eve@example.com full  in Zürich ✓ (billing)"
    );
    // Email: the subject stays one header; nothing after the line break became a header.
    let mail = eventually(|| async { mailbox.0.lock().unwrap().first().cloned() }).await;
    let headers = mail.split("\r\n\r\n").next().unwrap();
    assert!(
        !headers
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
        "{mail}"
    );
    let log = log_with(&app, "notified").await;
    let notified = log.iter().filter(|e| e["kind"] == "notified").count();
    let failed: Vec<&Value> = log
        .iter()
        .filter(|e| e["kind"] == "notify_failed")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(notified >= 1);
}
