//! Where deliveries may go (private destinations refused unless allowed), header-bound text
//! that must never fail a page, and one slow receiver that must not hold up the others.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, Receiver, TestApp, alice_by_webhook, apply, billing_pages, eventually, person,
    spawn_app, spawn_app_with,
};

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
    let (status, channel) = app.post("/api/v3/channels/", Some(body)).await;
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
        .create_check_uuid(json!({"name": "c", "channels": "*"}))
        .await;
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
        app.post(send, None).await
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
    // Each code is recorded as a message, failed, with its attempt (the detail stays in the
    // store for operators).
    let closed_url = format!("http://127.0.0.1:{closed}/x");
    let recorded = app
        .store
        .messages_to(keepwatch_store::MessageKind::VerificationCode, &closed_url)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].1, "failed");
    let attempts = app.store.list_attempts(&[recorded[0].0]).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(!attempts[0].ok);
}

/// Fails a new check (named `name`), which opens an alert on the project's only service.
async fn fail_check(app: &TestApp, name: &str) {
    let check = app.create_check(json!({"name": name})).await;
    let uuid = check["uuid"].as_str().unwrap();
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
}

/// The logs of the project's alerts.
async fn alert_logs(app: &TestApp) -> Vec<Vec<Value>> {
    let (_, alerts) = app.get("/api/v1/alerts/").await;
    let mut logs = Vec::new();
    for alert in alerts["alerts"].as_array().unwrap() {
        let (_, alert) = app.get(&format!("/api/v1/alerts/{}", alert["id"])).await;
        logs.push(alert["log"].as_array().unwrap().clone());
    }
    logs
}

/// The log of the only alert once it has an entry of `kind`.
async fn log_with(app: &TestApp, kind: &str) -> Vec<Value> {
    eventually(|| async {
        let log = alert_logs(app).await.pop()?;
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
    assert_eq!(
        app.store
            .next_message_due(keepwatch_store::MessageKind::Page)
            .await
            .unwrap(),
        None
    );
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
    let alice = person(
        "alice",
        &[("ntfy", &ntfy.url), ("email", "alice@example.com")],
    );
    let key = apply(&app, &(alice + &billing_pages(&["user:alice"]))).await;
    let summary = "disk\r\nBcc: eve@example.com\tfull \u{7}in Zürich ✓";
    let (status, body) = app
        .send_event(json!({
            "routing_key": key,
            "event_action": "trigger",
            "payload": {"summary": summary, "source": "db1", "severity": "critical"},
        }))
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

/// A receiver that takes requests and never answers them; counts the requests it holds.
struct Hung {
    url: String,
    holding: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Hung {
    async fn start() -> Hung {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let holding = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = holding.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Never answer; keep the connection open.
                    let _ = socket.read(&mut buf).await;
                    std::future::pending::<()>().await;
                });
            }
        });
        Hung { url, holding }
    }

    fn holding(&self) -> usize {
        self.holding.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_hanging_channel_does_not_hold_up_the_others() {
    let app = spawn_app().await;
    let hung = Hung::start().await;
    let hung_channel = channel(&app, &hung.url).await;
    let mut healthy = Vec::new();
    for _ in 0..3 {
        let receiver = Receiver::start(vec![]).await;
        channel(&app, &receiver.url).await;
        healthy.push(receiver);
    }
    // 20 checks fail at once: 80 deliveries, 20 of them to the receiver that never answers
    // (more than the dispatcher sends at once).
    let mut uuids = Vec::new();
    for i in 0..20 {
        let check = app
            .create_check(json!({"name": format!("c{i}"), "channels": "*"}))
            .await;
        uuids.push(check["uuid"].as_str().unwrap().to_string());
    }
    for uuid in &uuids {
        app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    }
    for receiver in &mut healthy {
        for _ in 0..20 {
            assert_eq!(receiver.next().await.json()["event"], "failed");
        }
    }
    // Every healthy delivery is recorded, while the hanging receiver still holds its first
    // requests unanswered (none of its attempts has ended), and it holds only a few.
    for uuid in &uuids {
        let notifications = eventually(|| async {
            let n = app.notifications(uuid).await;
            let done = n
                .iter()
                .filter(|n| n["channel"] != hung_channel.as_str())
                .all(|n| n["state"] == "sent");
            done.then_some(n)
        })
        .await;
        let to_hung = notifications
            .iter()
            .find(|n| n["channel"] == hung_channel.as_str())
            .unwrap();
        assert_eq!(
            (&to_hung["state"], &to_hung["attempts"]),
            (&json!("pending"), &json!(0))
        );
    }
    let holding = hung.holding();
    assert!(
        (1..=4).contains(&holding),
        "{holding} requests to one receiver at once"
    );
}

#[tokio::test]
async fn a_hanging_contact_does_not_hold_up_other_pages() {
    let app = spawn_app().await;
    let hung = Hung::start().await;
    let mut bob = Receiver::start(vec![]).await;
    let file = person("alice", &[("hook", &hung.url)])
        + &person("bob", &[("hook", &bob.url)])
        + &billing_pages(&["user:alice", "user:bob"]);
    apply(&app, &file).await;
    // Two alerts, one after the other: each pages alice (who never answers) and bob.
    fail_check(&app, "first").await;
    assert_eq!(bob.next().await.json()["alert"]["summary"], "first: failed");
    fail_check(&app, "second").await;
    assert_eq!(
        bob.next().await.json()["alert"]["summary"],
        "second: failed"
    );
    // Bob's second page came while alice's first was still under way: nothing ended it.
    assert!(hung.holding() >= 1);
    for log in alert_logs(&app).await {
        assert!(
            !log.iter()
                .any(|e| e["kind"] == "notify_failed" && e["who"] == "alice via hook"),
            "{log:?}"
        );
    }
}
