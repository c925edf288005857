//! Alerts end to end: a check event opens an alert on its service, the pager escalates it on
//! the manual clock and delivers pages to receivers on loopback (signed webhook, Slack, ntfy),
//! a notification's link acknowledges it only on POST, and recovery resolves it. Then the
//! events API (PagerDuty Events v2 shape) and the Alertmanager receiver, with bad input.

use axum::http::StatusCode;
use chrono::TimeDelta;
use keepwatch_engine::channels::sign;
use keepwatch_store::Timestamp;
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, Receiver, TestApp, alice_by_webhook, apply, billing_pages, eventually, one_service,
    person, schedule, spawn_app, spawn_app_with,
};

async fn get_alert(app: &TestApp, id: i64) -> Value {
    let (status, alert) = app.get_read_only(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{alert}");
    alert
}

async fn alert_log(app: &TestApp, id: i64) -> Vec<(String, String)> {
    let alert = get_alert(app, id).await;
    alert["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["who"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn uuid_of(check: &Value) -> String {
    let url = check["ping_url"].as_str().unwrap();
    url.rsplit('/').next().unwrap().to_string()
}

async fn open_alerts(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get_read_only("/api/v1/alerts/?status=open").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["alerts"].as_array().unwrap().clone()
}

/// The alert's log (kind, who) once it has an entry of `kind`.
async fn wait_for_log_entry(app: &TestApp, id: i64, kind: &str) -> Vec<(String, String)> {
    eventually(|| async {
        let log = alert_log(app, id).await;
        log.iter().any(|(k, _)| k == kind).then_some(log)
    })
    .await
}

#[tokio::test]
async fn a_missed_deadline_pages_the_on_call_person_until_a_link_acknowledges_it() {
    let app = spawn_app().await;
    let mut webhook = Receiver::start(vec![]).await;
    let mut slack = Receiver::start(vec![]).await;
    let mut ntfy = Receiver::start(vec![]).await;
    let mut bob = Receiver::start(vec![]).await;
    apply(
        &app,
        &format!(
            r#"
[[people]]
id = "alice"
contacts = {{ webhook = "{}#secret=s3cret", slack = "{}", ntfy = "{}" }}
rules = [
  {{ urgency = "high", contact = "webhook", after = 0 }},
  {{ urgency = "high", contact = "slack", after = 0 }},
  {{ urgency = "high", contact = "ntfy", after = 5 }},
]
{bob}{primary}[[policies]]
name = "billing"
steps = [{{ targets = ["schedule:primary"], delay = 10 }}, {{ targets = ["user:bob"], delay = 10 }}]
[[services]]
name = "billing"
policy = "billing"
urgency = "high"
"#,
            webhook.url,
            slack.url,
            ntfy.url,
            bob = person("bob", &[("webhook", &bob.url)]),
            primary = schedule("primary", "UTC", &["alice"], "1w", "2026-11-01T00:00")
        ),
    )
    .await;
    let check = app
        .create_check(json!({"name": "nightly", "timeout": 60, "grace": 60, "service": "billing"}))
        .await;
    let uuid = uuid_of(&check);
    let (status, _, _) = app.ping("GET", &format!("/ping/{uuid}"), None).await;
    assert_eq!(status, StatusCode::OK);

    // Deadline plus grace passes: the check goes down, an alert opens, step 1 pages alice.
    app.advance(TimeDelta::seconds(121));
    let page = webhook.next().await;
    let body = page.json();
    assert_eq!(
        page.headers["x-keepwatch-signature"].to_str().unwrap(),
        sign("s3cret", &page.body)
    );
    let page_id = page.headers["x-keepwatch-delivery"].to_str().unwrap();
    assert!(page_id.parse::<i64>().is_ok(), "{page_id}");
    assert_eq!(
        page.headers.get_all("x-keepwatch-delivery").iter().count(),
        1
    );
    assert_eq!(body["alert"]["summary"], "nightly: missed its run");
    assert_eq!(body["alert"]["service"], "billing");
    assert_eq!(body["alert"]["dedup_key"], format!("check:{uuid}"));
    assert_eq!(body["urgency"], "high");
    assert_eq!(body["person"], "alice");
    let text = slack.next().await.json()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("nightly: missed its ") && text.contains("|Acknowledge>"),
        "{text}"
    );
    let alerts = open_alerts(&app).await;
    assert_eq!(alerts.len(), 1);
    let id = alerts[0]["id"].as_i64().unwrap();
    assert_eq!(alerts[0]["status"], "triggered");

    // Five minutes on: alice's second rule, ntfy, at high priority with action buttons.
    app.advance(TimeDelta::minutes(5));
    let push = ntfy.next().await;
    assert_eq!(push.headers["priority"], "5");
    assert!(
        push.headers["actions"]
            .to_str()
            .unwrap()
            .starts_with("view, Acknowledge, http")
    );

    // The acknowledge link: GET only shows a confirmation page.
    let ack = body["links"]["acknowledge"].as_str().unwrap();
    let confirm = app.client.get(ack).send().await.unwrap();
    assert_eq!(confirm.status(), 200);
    let html = confirm.text().await.unwrap();
    assert!(html.contains("<form method=\"post\">"), "{html}");
    assert_eq!(open_alerts(&app).await[0]["status"], "triggered");
    // No other site may frame the page or post its form for someone (CSRF).
    for (name, value) in [
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
        ("referrer-policy", "same-origin"),
    ] {
        let confirm = app.client.get(ack).send().await.unwrap();
        assert_eq!(confirm.headers()[name], value, "{name}");
    }
    for (header, from) in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Referer", "https://evil.example/page.html"),
    ] {
        let csrf = app
            .client
            .post(ack)
            .header(header, from)
            .send()
            .await
            .unwrap();
        assert_eq!(csrf.status(), 403, "{header}: {from}");
        assert!(csrf.text().await.unwrap().contains("another site"));
    }
    assert_eq!(open_alerts(&app).await[0]["status"], "triggered");
    // A forged or altered link is refused.
    let last = if ack.ends_with('0') { "1" } else { "0" };
    let forged = format!("{}{last}", &ack[..ack.len() - 1]);
    let refused = app.client.post(&forged).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    // POST acknowledges, from the confirmation page itself (same origin) as from a client
    // that sends no Origin.
    let done = app
        .client
        .post(ack)
        .header("Origin", app.url("").trim_end_matches('/'))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("is acknowledged"));

    // Step 2 (bob, due 10 minutes after the trigger) never comes.
    app.advance(TimeDelta::minutes(30));
    let log = wait_for_log_entry(&app, id, "acknowledged").await;
    // Let the pager and the dispatcher catch up past step 2's time: bob heard nothing.
    app.advance(TimeDelta::seconds(2));
    app.engine.settled().await;
    assert!(bob.is_empty(), "bob was paged after the acknowledgment");
    let kinds: Vec<&str> = log.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds[0], "triggered");
    assert_eq!(kinds[1], "escalation_step");
    assert_eq!(
        kinds.iter().filter(|k| **k == "notified").count(),
        3,
        "{kinds:?}"
    );
    // In the name of the person the link was sent to.
    assert!(
        log.contains(&("acknowledged".into(), "alice (link)".into())),
        "{log:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "escalation_step").count(),
        1,
        "{kinds:?}"
    );

    // The check recovers: its alert is resolved.
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    eventually(|| async { open_alerts(&app).await.is_empty().then_some(()) }).await;
    let log = alert_log(&app, id).await;
    assert!(
        log.contains(&("resolved".into(), "check recovered".into())),
        "{log:?}"
    );
}

#[tokio::test]
async fn the_events_api_triggers_acknowledges_and_resolves_by_dedup_key() {
    let app = spawn_app().await;
    let key = apply(&app, &one_service()).await;
    let event = |action: &str, dedup: Option<&str>| {
        let mut body = json!({
            "routing_key": key,
            "event_action": action,
            "payload": {"summary": "disk full on db1", "source": "db1", "severity": "critical"},
        });
        if let Some(dedup) = dedup {
            body["dedup_key"] = json!(dedup);
        }
        body
    };
    let (status, body) = app
        .api(
            "POST",
            "/v2/enqueue",
            None,
            Some(event("trigger", Some("db1-disk"))),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "message": "Event processed", "dedup_key": "db1-disk"})
    );
    // The same key again adds to the open alert.
    let (status, _) = app.send_event(event("trigger", Some("db1-disk"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let alerts = open_alerts(&app).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["service"], "billing");
    assert_eq!(alerts[0]["source"], "events");
    let id = alerts[0]["id"].as_i64().unwrap();
    // Without a dedup key, a trigger opens a new alert and returns its key.
    let (_, body) = app.send_event(event("trigger", None)).await;
    assert_eq!(body["dedup_key"].as_str().unwrap().len(), 32);
    assert_eq!(open_alerts(&app).await.len(), 2);

    let (status, _) = app.send_event(event("acknowledge", Some("db1-disk"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let alert = get_alert(&app, id).await;
    assert_eq!(alert["status"], "acknowledged");
    let (status, _) = app.send_event(event("resolve", Some("db1-disk"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let log = alert_log(&app, id).await;
    let kinds: Vec<&str> = log.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"triggered"));
    assert!(
        kinds.contains(&"trigger_repeated") && kinds.contains(&"acknowledged"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"resolved"));
    // A new trigger after resolution opens a new alert under the same key.
    app.send_event(event("trigger", Some("db1-disk"))).await;
    assert_eq!(open_alerts(&app).await.len(), 2);

    // Bad input: PagerDuty's 400 shape, naming the field.
    for (body, field) in [
        (json!({"event_action": "trigger"}), "routing_key"),
        (
            json!({"routing_key": "nope", "event_action": "trigger"}),
            "routing_key",
        ),
        (
            json!({"routing_key": key, "event_action": "explode"}),
            "event_action",
        ),
        (
            json!({"routing_key": key, "event_action": "trigger", "payload": {"source": "x", "severity": "critical"}}),
            "payload.summary",
        ),
        (
            json!({"routing_key": key, "event_action": "trigger", "payload": {"summary": "x", "source": "x", "severity": "bad"}}),
            "payload.severity",
        ),
        (
            json!({"routing_key": key, "event_action": "acknowledge"}),
            "dedup_key",
        ),
        (
            json!({"routing_key": key, "event_action": "trigger", "dedup_key": 5}),
            "dedup_key",
        ),
    ] {
        let (status, answer) = app.send_event(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["status"], "invalid event");
        assert!(
            answer["errors"][0].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    let (status, answer) = app.send_event(json!("not an object")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // The alerts API: read keys read, only full keys act, other projects' alerts are not visible.
    let ack = format!("/api/v1/alerts/{id}/ack");
    let (status, _) = app.api("POST", &ack, Some(&app.read_key), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.api("GET", "/api/v1/alerts/", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.get_read_only("/api/v1/alerts/?status=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // `all` as `keepwatch alert list --status all` says it: open and resolved alike.
    let (status, all) = app.get_read_only("/api/v1/alerts/?status=all").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let (_, unfiltered) = app.get_read_only("/api/v1/alerts/").await;
    assert_eq!(all, unfiltered);
    assert!(!all["alerts"].as_array().unwrap().is_empty(), "{all}");
    // Unknown ids answer JSON that says what was not found.
    for (path, message) in [
        ("/api/v1/alerts/999999", "no alert with id `999999`"),
        ("/api/v1/alerts/abc", "no alert with id `abc`"),
    ] {
        let (status, body) = app.get_read_only(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], message, "{path}");
    }
    let other_key = crate::helpers::other_project_key(&app).await;
    let (status, _) = app
        .api(
            "POST",
            &format!("/api/v1/alerts/{id}/resolve"),
            Some(&other_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

fn alertmanager(status: &str, group: &str) -> Value {
    // The documented webhook format (version 4).
    json!({
        "version": "4",
        "groupKey": group,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "keepwatch",
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency", "severity": "page"},
        "commonAnnotations": {"summary": "p99 above 1 s"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "HighLatency", "instance": "web1"},
            "annotations": {"summary": "p99 above 1 s"},
            "startsAt": "2026-11-26T11:58:00Z",
            "endsAt": if status == "resolved" { "2026-11-26T12:05:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "c0ffee"
        }]
    })
}

#[tokio::test]
async fn the_alertmanager_receiver_keeps_one_alert_per_group() {
    let app = spawn_app().await;
    let key = apply(&app, &one_service()).await;
    let path = format!("/api/v1/alertmanager/{key}");
    let group = "{}/{}:{alertname=\"HighLatency\"}";
    let (status, _) = app
        .api("POST", &path, None, Some(alertmanager("firing", group)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .api("POST", &path, None, Some(alertmanager("firing", group)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let alerts = open_alerts(&app).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        alerts[0]["summary"],
        "[FIRING:1] HighLatency: p99 above 1 s"
    );
    assert_eq!(alerts[0]["source"], "alertmanager");
    assert_eq!(alerts[0]["details"]["commonLabels"]["severity"], "page");
    // Another group is another alert.
    app.api(
        "POST",
        &path,
        None,
        Some(alertmanager("firing", "{}:{alertname=\"Other\"}")),
    )
    .await;
    assert_eq!(open_alerts(&app).await.len(), 2);
    let (status, _) = app
        .api("POST", &path, None, Some(alertmanager("resolved", group)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let open = open_alerts(&app).await;
    assert_eq!(open.len(), 1);
    assert_ne!(open[0]["id"], alerts[0]["id"]);

    let mut old = alertmanager("firing", group);
    old["version"] = json!("3");
    let (status, _) = app.api("POST", &path, None, Some(old)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .api("POST", &path, None, Some(json!({"version": "4"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/alertmanager/unknown",
            None,
            Some(alertmanager("firing", group)),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An integration key is not a calendar feed.
    let feed = app
        .client
        .get(app.url(&format!("/ical/{key}.ics")))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 404);
}

#[tokio::test]
async fn links_expire_and_alerts_without_a_service_are_recorded_as_unrouted() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![500]).await;
    apply(&app, &alice_by_webhook("hook", &hook.url, 0)).await;
    // A check without a service goes to the project's only service.
    let check = app
        .create_check(json!({"name": "a", "timeout": 60, "grace": 60}))
        .await;
    let uuid = uuid_of(&check);
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    // The first delivery fails (HTTP 500) and is retried with backoff.
    let first = hook.next().await.json();
    assert_eq!(first["alert"]["summary"], "a: failed");
    let id = first["alert"]["id"].as_i64().unwrap();
    // Once the failure is recorded (retry due in 10 s), move the clock past it.
    wait_for_log_entry(&app, id, "notify_failed").await;
    app.advance(TimeDelta::seconds(11));
    let retry = hook.next().await.json();
    assert_eq!(retry["alert"]["id"], first["alert"]["id"]);
    wait_for_log_entry(&app, id, "notified").await;

    // Links expire after a week.
    app.advance(TimeDelta::days(8));
    let ack = retry["links"]["acknowledge"].as_str().unwrap();
    let expired = app.client.post(ack).send().await.unwrap();
    assert_eq!(expired.status(), 403);
    assert!(expired.text().await.unwrap().contains("expired"));
    let garbage = app
        .client
        .get(app.url("/a/not.a.token"))
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 403);
    assert!(garbage.text().await.unwrap().contains("malformed"));

    // An alert for a service the configuration does not have is kept, and says why.
    let check = app
        .create_check(json!({"name": "b", "timeout": 60, "grace": 60, "service": "ghost"}))
        .await;
    let uuid = uuid_of(&check);
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    let alert = eventually(|| async {
        open_alerts(&app)
            .await
            .into_iter()
            .find(|a| a["service"] == "ghost")
    })
    .await;
    let log = eventually(|| async {
        let log = alert_log(&app, alert["id"].as_i64().unwrap()).await;
        log.iter().any(|(k, _)| k == "unrouted").then_some(log)
    })
    .await;
    assert_eq!(log[0].0, "triggered");
}

#[tokio::test]
async fn a_flood_of_alerts_reaches_a_person_as_one_summary() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let key = apply(&app, &alice_by_webhook("webhook", &hook.url, 1)).await;
    for i in 0..5 {
        trigger_disk(&app, &key, i).await;
    }
    // Each alert pages alice a minute after its trigger: all five fall due together.
    app.advance(TimeDelta::minutes(1));
    let message = hook.next().await.json();
    assert_eq!(message["summary_of"], 5, "{message}");
    let pages = message["pages"].as_array().unwrap();
    let mut summaries: Vec<&str> = pages
        .iter()
        .map(|p| p["alert"]["summary"].as_str().unwrap())
        .collect();
    summaries.sort();
    assert_eq!(
        summaries,
        [
            "disk 0 full",
            "disk 1 full",
            "disk 2 full",
            "disk 3 full",
            "disk 4 full"
        ]
    );
    assert!(
        pages
            .iter()
            .all(|p| p["links"]["acknowledge"].as_str().unwrap().contains("/a/"))
    );
    let id = pages[0]["alert"]["id"].as_i64().unwrap();
    let alert = get_alert(&app, id).await;
    let notified = eventually(|| async {
        let alert = get_alert(&app, id).await;
        alert["log"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "notified")
            .cloned()
    })
    .await;
    assert_eq!(
        notified["detail"], "HTTP 200 (in a summary of 5)",
        "{alert}"
    );
    app.engine.settled().await;
    assert!(hook.is_empty(), "one message, not five");
}

/// Alice's webhook pages at once, and the policy pages her again 10 minutes on (one repeat).
fn alice_paged_twice(url: &str) -> String {
    alice_by_webhook("webhook", url, 0).replace("delay = 10 }]", "delay = 10 }]\nrepeat = 1")
}

/// The alert summaries a webhook message is about (a page's one, a summary's several), sorted.
fn paged_summaries(message: &serde_json::Value) -> Vec<String> {
    let mut summaries: Vec<String> = match message["pages"].as_array() {
        Some(pages) => pages
            .iter()
            .map(|p| p["alert"]["summary"].as_str().unwrap().to_string())
            .collect(),
        None => vec![message["alert"]["summary"].as_str().unwrap().to_string()],
    };
    summaries.sort();
    summaries
}

#[tokio::test]
async fn beyond_the_rate_limit_first_pages_go_at_once_and_repeats_fold_into_a_summary() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let key = apply(&app, &alice_paged_twice(&hook.url)).await;
    // One alert a minute: the default limit is five messages within 15 minutes, but the
    // first page of each new alert goes out at once, the sixth and seventh too.
    for i in 0..7 {
        trigger_disk(&app, &key, i).await;
        let page = hook.next().await.json();
        assert_eq!(page["alert"]["summary"], format!("disk {i} full"));
        app.advance(TimeDelta::minutes(1));
    }
    // Minute 11: the repeats of alerts 0 and 1 (due at 10 and 11) fall due together beyond
    // the limit: one summary, at once, and their logs say why.
    app.advance(TimeDelta::minutes(4));
    let summary = hook.next().await.json();
    assert_eq!(summary["summary_of"], 2, "{summary}");
    assert_eq!(paged_summaries(&summary), ["disk 0 full", "disk 1 full"]);
    let alert = open_alerts(&app)
        .await
        .into_iter()
        .find(|a| a["summary"] == "disk 0 full")
        .unwrap();
    let limited = eventually(|| async {
        let alert = get_alert(&app, alert["id"].as_i64().unwrap()).await;
        let log = alert["log"].as_array().unwrap().clone();
        log.into_iter().find(|e| e["kind"] == "rate_limited")
    })
    .await;
    assert_eq!(limited["who"], "alice via webhook");
    assert_eq!(
        limited["detail"],
        "5 messages to this address within 15m: repeats go out in one summary"
    );
    app.engine.settled().await;
    assert!(hook.is_empty(), "one message for both repeats");
}

/// Triggers alert `disk-<i>` ("disk <i> full") through the events API.
async fn trigger_disk(app: &TestApp, key: &str, i: usize) {
    let event = json!({
        "routing_key": key, "event_action": "trigger", "dedup_key": format!("disk-{i}"),
        "payload": {"summary": format!("disk {i} full"), "source": "db", "severity": "error"},
    });
    let (status, _) = app.send_event(event).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

/// The rate limit counts the messages the store says were sent, so a restart does not give
/// an address a fresh window (and a first page still goes out at once after it).
#[tokio::test]
async fn the_rate_limit_survives_a_restart() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let key = apply(&app, &alice_paged_twice(&hook.url)).await;
    for i in 0..5 {
        trigger_disk(&app, &key, i).await;
        hook.next().await.json();
        app.advance(TimeDelta::minutes(1));
    }
    // Stop once the fifth is recorded as sent (it would, rightly, go again otherwise).
    eventually(|| async {
        let alerts = open_alerts(&app).await;
        let mut notified = 0;
        for alert in &alerts {
            let log = alert_log(&app, alert["id"].as_i64().unwrap()).await;
            notified += log.iter().filter(|(k, _)| k == "notified").count();
        }
        (notified == 5).then_some(())
    })
    .await;
    let (data_dir, restart_at) = (
        app.data_dir.clone(),
        keepwatch_engine::Clock::now(&*app.clock),
    );
    let _temp = app.stop().await;

    let app = spawn_app_with(AppOptions {
        data_dir: Some(data_dir),
        start: Some(restart_at),
        ..Default::default()
    })
    .await;
    trigger_disk(&app, &key, 5).await;
    let page = hook.next().await.json();
    assert_eq!(page["alert"]["summary"], "disk 5 full");
    // Minute 11: two repeats due together. Six messages went out within the window (five
    // before the restart): they fold into one summary.
    app.advance(TimeDelta::minutes(6));
    let summary = hook.next().await.json();
    assert_eq!(summary["summary_of"], 2, "{summary}");
    assert_eq!(paged_summaries(&summary), ["disk 0 full", "disk 1 full"]);
    app.engine.settled().await;
    assert!(hook.is_empty(), "a restart does not reset the window");
    app.stop().await;
}

#[tokio::test]
async fn teams_telegram_and_pushover_pages_carry_the_alert_and_its_links() {
    let app = spawn_app().await;
    let mut teams = Receiver::start(vec![]).await;
    let mut telegram = Receiver::start(vec![]).await;
    let mut pushover = Receiver::start(vec![]).await;
    let telegram_to = format!("{}?chat_id=-10042", telegram.url);
    let pushover_to = format!("{}?token=app1&user=u1", pushover.url);
    let contacts = [
        ("teams", teams.url.as_str()),
        ("telegram", &telegram_to),
        ("pushover", &pushover_to),
    ];
    let key = apply(
        &app,
        &(person("alice", &contacts) + &billing_pages(&["user:alice"])),
    )
    .await;
    let event = crate::helpers::disk_event(&key, "trigger");
    let (status, _) = app.send_event(event).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let card = teams.next().await.json();
    assert_eq!(card["type"], "message");
    let attachment = &card["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let content = &attachment["content"];
    assert_eq!(content["type"], "AdaptiveCard");
    assert_eq!(content["body"][0]["text"], "[HIGH] disk full (billing)");
    assert_eq!(content["actions"][0]["title"], "Acknowledge");
    let ack = content["actions"][0]["url"].as_str().unwrap().to_string();
    assert!(ack.contains("/a/"), "{ack}");

    let message = telegram.next().await.json();
    assert_eq!(message["chat_id"], "-10042");
    // The title, then what happened and the evidence (the events API's source is the host).
    let text = message["text"].as_str().unwrap();
    assert!(
        text.starts_with("[HIGH] disk full (billing)\ndisk full\n\nHost: db\n"),
        "{text}"
    );
    let buttons = &message["reply_markup"]["inline_keyboard"][0];
    assert_eq!(
        (buttons[0]["text"].as_str(), buttons[1]["text"].as_str()),
        (Some("Acknowledge"), Some("Resolve"))
    );

    let push = pushover.next().await;
    assert_eq!(
        push.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form = String::from_utf8(push.body.clone()).unwrap();
    for field in [
        "token=app1",
        "user=u1",
        "priority=1",
        "url_title=Acknowledge",
        "url=http",
    ] {
        assert!(
            form.split('&').any(|f| f.starts_with(field)),
            "{field} in {form}"
        );
    }
    // The acknowledge link from the Teams card works like any other.
    let done = app.client.post(&ack).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(open_alerts(&app).await[0]["status"], "acknowledged");
}

#[tokio::test]
async fn the_on_call_file_binds_a_check_to_a_service_that_keeps_alerts_open_on_recovery() {
    let app = spawn_app().await;
    let mut alice = Receiver::start(vec![]).await;
    let mut bob = Receiver::start(vec![]).await;
    // The check says nothing of a service (it would go to `default`, bob's); the file puts
    // it in `billing`, alice's.
    let check = app
        .create_check(json!({"name": "invoices", "timeout": 60, "grace": 60}))
        .await;
    let uuid = uuid_of(&check);
    let policies_and_services = format!(
        r#"
[[policies]]
name = "alice"
steps = [{{ targets = ["user:alice"], delay = 10 }}]
[[policies]]
name = "bob"
steps = [{{ targets = ["user:bob"], delay = 10 }}]
[[services]]
name = "billing"
policy = "alice"
checks = ["{}"]
resolve_on_recovery = false
[[services]]
name = "default"
policy = "bob"
"#,
        uuid.to_uppercase()
    );
    let file = person("alice", &[("webhook", &alice.url)])
        + &person("bob", &[("webhook", &bob.url)])
        + &policies_and_services;
    apply(&app, &file).await;
    let (status, _, _) = app.ping("GET", &format!("/ping/{uuid}"), None).await;
    assert_eq!(status, StatusCode::OK);
    app.advance(TimeDelta::seconds(121));
    let page = alice.next().await.json();
    assert_eq!(page["alert"]["summary"], "invoices: missed its run");
    assert_eq!(page["alert"]["service"], "billing");
    app.engine.settled().await;
    assert!(bob.is_empty(), "the default service's person was paged");

    // Back up: billing keeps the alert open. (Another check's failure, paged to bob, shows
    // the pager has read past the recovery.)
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let other = uuid_of(&app.create_check(json!({"name": "web"})).await);
    app.ping("GET", &format!("/ping/{other}/fail"), None).await;
    assert_eq!(bob.next().await.json()["alert"]["summary"], "web: failed");
    let open = open_alerts(&app).await;
    assert!(
        open.iter()
            .any(|a| a["summary"] == "invoices: missed its run" && a["status"] == "triggered"),
        "{open:?}"
    );
}

#[tokio::test]
async fn a_maintenance_window_records_alerts_but_sends_no_pages() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    // t0 is 2026-11-26T12:00Z: billing is in maintenance for the next hour.
    let config = alice_by_webhook("webhook", &hook.url, 0)
        + "[[maintenance]]\nservice = \"billing\"\nstart = \"2026-11-26T11:00:00Z\"\nend = \"2026-11-26T13:00:00Z\"\n";
    let key = apply(&app, &config).await;
    let trigger = |dedup: &str| {
        json!({
            "routing_key": key, "event_action": "trigger", "dedup_key": dedup,
            "payload": {"summary": format!("{dedup} broke"), "source": "x", "severity": "error"},
        })
    };
    app.send_event(trigger("during")).await;
    let id = open_alerts(&app).await[0]["id"].as_i64().unwrap();
    let log = wait_for_log_entry(&app, id, "suppressed").await;
    assert!(
        log.contains(&("suppressed".into(), "alice via webhook".into())),
        "{log:?}"
    );
    // After the window, a new alert pages again.
    app.advance(TimeDelta::hours(2));
    app.send_event(trigger("after")).await;
    let page = hook.next().await.json();
    assert_eq!(page["alert"]["summary"], "after broke");
    assert!(
        hook.is_empty(),
        "nothing was sent for the alert during maintenance"
    );
}

/// The issue's story, through the engine on the manual clock: a check in America/Denver
/// misses its Saturday 00:00 run; outside support hours the alert is low urgency and alice's
/// low rule is email only; nobody acknowledges, so after 10 minutes it is raised to high and
/// her high rules fire; at +15 the second step reaches bob through the secondary schedule; at
/// +30 the policy repeats; an acknowledgment at +40 stops the rest (bob at +45, lee at +60).
#[tokio::test]
async fn a_saturday_night_miss_in_denver_escalates_on_time_until_acknowledged() {
    use crate::helpers::{AppOptions, spawn_app_with};
    let (mailbox, smtp) = crate::notifications::smtp_server();
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-27T23:00:00-07:00").unwrap();
    let app = spawn_app_with(AppOptions {
        smtp: Some(smtp),
        start: Some(start.to_utc()),
        ..Default::default()
    })
    .await;
    let mut alice_ntfy = Receiver::start(vec![]).await;
    let mut bob = Receiver::start(vec![]).await;
    let mut lee = Receiver::start(vec![]).await;
    apply(
        &app,
        &format!(
            r#"
[[people]]
id = "alice"
contacts = {{ email = "alice@example.com", ntfy = "{}" }}
rules = [
  {{ urgency = "low", contact = "email", after = 0 }},
  {{ urgency = "high", contact = "ntfy", after = 0 }},
  {{ urgency = "high", contact = "email", after = 0 }},
]
[[people]]
id = "bob"
contacts = {{ webhook = "{}" }}
rules = [{{ urgency = "high", contact = "webhook", after = 0 }}, {{ urgency = "low", contact = "webhook", after = 0 }}]
{lee}{primary}{secondary}[[policies]]
name = "billing"
steps = [{{ targets = ["schedule:primary"], delay = 15 }}, {{ targets = ["schedule:secondary"], delay = 15 }}]
repeat = 1
last_resort = "user:lee"
[[services]]
name = "billing"
policy = "billing"
urgency = "support-hours"
support_hours = {{ tz = "America/Denver", windows = [{{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }}] }}
raise_after = 10
"#,
            alice_ntfy.url,
            bob.url,
            lee = person("lee", &[("webhook", &lee.url)]),
            primary = schedule("primary", "America/Denver", &["alice"], "1w", "2026-11-23T09:00"),
            secondary = schedule("secondary", "America/Denver", &["bob"], "1w", "2026-11-23T09:00")
        ),
    )
    .await;
    let check = app
        .create_check(json!({"name": "nightly", "schedule": "0 0 * * *", "tz": "America/Denver", "grace": 60, "service": "billing"}))
        .await;
    let uuid = uuid_of(&check);
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let emails = || mailbox.0.lock().unwrap().len();

    // Saturday 00:00 passes without a ping; at 00:01 (grace) the check is down.
    app.advance(TimeDelta::minutes(61));
    let first =
        eventually(|| async { (emails() == 1).then(|| mailbox.0.lock().unwrap()[0].clone()) })
            .await;
    assert!(first.contains("To: alice@example.com"), "{first}");
    // The page says why, in words, in both parts: the missed run in the check's zone, the
    // last success, the urgency and why, what happens next, and the links.
    let (subject, plain, html) = crate::notifications::email_parts(&first);
    assert_eq!(subject, "[LOW] nightly: missed its 00:00 run");
    let sentence = "nightly: missed its 00:00 run (America/Denver); \
                    last success Fri 23:00, 1 h 01 min ago";
    assert!(plain.starts_with(&format!("{sentence}\n\n")), "{plain}");
    for line in [
        "Urgency: LOW, triggered outside support hours (America/Denver)",
        "Next: raised to high urgency at 00:11 MST if not acknowledged",
        "Acknowledge: http://",
        "Resolve: http://",
    ] {
        assert!(plain.contains(line), "{line:?} not in {plain}");
    }
    assert!(
        html.contains(&format!("<p>{sentence}</p>"))
            && html.contains("triggered outside support hours (America/Denver)")
            && html.contains(">Acknowledge</a>"),
        "{html}"
    );
    let alert = open_alerts(&app).await[0].clone();
    let id = alert["id"].as_i64().unwrap();
    assert_eq!(
        (alert["urgency"].as_str(), alert["triggered_at"].as_str()),
        (Some("low"), Some("2026-11-28T07:01:00Z"))
    );

    // Nothing more until the raise at +10.
    app.advance(TimeDelta::seconds(9 * 60 + 59));
    app.engine.settled().await;
    assert!(alice_ntfy.is_empty() && bob.is_empty() && emails() == 1);
    app.advance(TimeDelta::seconds(1));
    let push = alice_ntfy.next().await;
    assert_eq!(push.headers["priority"], "5");
    eventually(|| async { (emails() == 2).then_some(()) }).await;
    let (subject, plain, _) =
        crate::notifications::email_parts(&mailbox.0.lock().unwrap()[1].clone());
    assert_eq!(subject, "[HIGH] nightly: missed its 00:00 run");
    assert!(
        plain.contains("Urgency: HIGH, raised from low after 10 min unacknowledged"),
        "{plain}"
    );
    // Raised: the alert reads high everywhere from now on, and its log says when and why.
    let raised = get_alert(&app, id).await;
    assert_eq!(
        (raised["urgency"].as_str(), raised["raised_at"].as_str()),
        (Some("high"), Some("2026-11-28T07:11:00Z"))
    );
    assert_eq!(open_alerts(&app).await[0]["urgency"], "high");
    let why = raised["log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "urgency_raised");
    assert_eq!(
        why.unwrap()["detail"],
        "low → high: not acknowledged within 10 min"
    );
    // The API explains it as the pages do, and keeps what each page said.
    assert_eq!(
        raised["evidence"]["sentence"],
        "missed its 00:00 run (America/Denver); last success Fri 23:00, 1 h 01 min ago"
    );
    assert_eq!(raised["outlook"]["urgency"], "high");
    let texts: Vec<&str> = raised["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "sent" && m["contact"] == "email")
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("nightly: missed its 00:00 run")),
        "{texts:?}"
    );

    // Each delivery is logged at the time it was made: wait for the log before moving on.
    let notified = |count: usize| {
        let app = &app;
        async move {
            eventually(|| async {
                let log = alert_log(app, id).await;
                (log.iter().filter(|(k, _)| k == "notified").count() >= count).then_some(())
            })
            .await
        }
    };
    notified(3).await;
    // +15: step 2, the secondary schedule's bob, at high urgency now.
    app.advance(TimeDelta::minutes(5));
    assert_eq!(bob.next().await.json()["urgency"], "high");
    notified(4).await;
    // +30: the policy's second pass starts at step 1 again.
    app.advance(TimeDelta::minutes(15));
    alice_ntfy.next().await;
    eventually(|| async { (emails() == 3).then_some(()) }).await;
    notified(6).await;

    // Acknowledged at +40 from the CLI's API: bob (+45) and lee (+60) are never paged.
    app.advance(TimeDelta::minutes(10));
    let (status, acked) = app.post(&format!("/api/v1/alerts/{id}/ack"), None).await;
    assert_eq!(
        (status, acked["status"].as_str()),
        (StatusCode::OK, Some("acknowledged"))
    );
    app.advance(TimeDelta::minutes(30));
    app.engine.settled().await;
    assert!(bob.is_empty() && lee.is_empty() && alice_ntfy.is_empty());
    assert_eq!(emails(), 3);

    // The log, in domain time (minutes after 00:01 MST, which is 07:01Z).
    let alert = get_alert(&app, id).await;
    let entries: Vec<(String, String, String)> = alert["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let at = e["at"].as_str().unwrap()[11..16].to_string();
            (
                at,
                e["kind"].as_str().unwrap().into(),
                e["who"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect =
        |at: &str, kind: &str, who: &str| (at.to_string(), kind.to_string(), who.to_string());
    for entry in [
        expect("07:01", "triggered", "check"),
        expect("07:01", "escalation_step", ""),
        expect("07:01", "notified", "alice via email"),
        expect("07:11", "urgency_raised", ""),
        expect("07:11", "notified", "alice via ntfy"),
        expect("07:11", "notified", "alice via email"),
        expect("07:16", "escalation_step", ""),
        expect("07:16", "notified", "bob via webhook"),
        expect("07:31", "escalation_step", ""),
        expect("07:31", "notified", "alice via ntfy"),
        expect("07:41", "acknowledged", "api"),
    ] {
        assert!(entries.contains(&entry), "{entry:?} not in {entries:#?}");
    }
    assert!(
        !entries.iter().any(|(_, kind, _)| kind == "last_resort"),
        "{entries:#?}"
    );
}

/// Across restarts the pager neither resends what it sent nor skips what fell due while the
/// server was down.
#[tokio::test]
async fn escalation_resumes_after_a_restart_without_repeating_a_page() {
    use crate::helpers::{AppOptions, spawn_app_with, t0};
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let config = alice_by_webhook("webhook", &hook.url, 0).replace(
        r#"steps = [{ targets = ["user:alice"], delay = 10 }]"#,
        r#"steps = [{ targets = ["user:alice"], delay = 10 }, { targets = ["user:alice"], delay = 10 }]"#,
    );
    let key = apply(&app, &config).await;
    let event = json!({
        "routing_key": key, "event_action": "trigger", "dedup_key": "db1",
        "payload": {"summary": "db1 down", "source": "db1", "severity": "critical"},
    });
    app.send_event(event).await;
    let first = hook.next().await.json();
    let id = first["alert"]["id"].as_i64().unwrap();
    wait_for_log_entry(&app, id, "notified").await;
    let data_dir = app.data_dir.clone();
    let temp = app.stop().await;

    // Step 2 (+10 min) fell due while the server was down: sent once after the start.
    let restarted = |minutes| {
        spawn_app_with(AppOptions {
            data_dir: Some(data_dir.clone()),
            start: Some(t0() + TimeDelta::minutes(minutes)),
            ..Default::default()
        })
    };
    let app = restarted(11).await;
    let second = hook.next().await.json();
    assert_eq!(second["alert"]["id"], id);
    let log = eventually(|| async {
        let log = alert_log(&app, id).await;
        (log.iter().filter(|(k, _)| k == "notified").count() == 2).then_some(log)
    })
    .await;
    let steps = log.iter().filter(|(k, _)| k == "escalation_step").count();
    assert_eq!(steps, 2, "{log:?}");
    app.stop().await;
    let app = restarted(12).await;
    app.engine.settled().await;
    assert!(hook.is_empty(), "a page was sent twice");
    assert_eq!(alert_log(&app, id).await.len(), log.len());
    app.stop().await;
    drop(temp);
}

#[tokio::test]
async fn alertmanager_groups_are_told_apart_by_their_whole_group_key() {
    let app = spawn_app().await;
    let key = apply(&app, &one_service()).await;
    let path = format!("/api/v1/alertmanager/{key}");
    // Two groups whose keys share their first 300 characters (long label sets do).
    let common = format!("{{}}/{{severity=\"page\"}}:{{job=\"{}", "j".repeat(300));
    let (first, second) = (format!("{common}-a\"}}"), format!("{common}-b\"}}"));
    for group in [&first, &second] {
        let (status, _) = app
            .api("POST", &path, None, Some(alertmanager("firing", group)))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let open = open_alerts(&app).await;
    assert_eq!(open.len(), 2, "two groups, two alerts: {open:?}");
    for alert in &open {
        let dedup = alert["dedup_key"].as_str().unwrap();
        assert!(
            dedup.starts_with("alertmanager:{}/{severity=\"page\"}:{job=\"jjj"),
            "{dedup}"
        );
        assert!(dedup.chars().count() <= 255, "{dedup}");
    }
    let (status, _) = app
        .api("POST", &path, None, Some(alertmanager("resolved", &first)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let still_open = open_alerts(&app).await;
    assert_eq!(
        still_open.len(),
        1,
        "resolving one group leaves the other open"
    );
    // Firing the second group again adds to its alert, not a new one.
    app.api("POST", &path, None, Some(alertmanager("firing", &second)))
        .await;
    assert_eq!(open_alerts(&app).await.len(), 1);
    assert_eq!(open_alerts(&app).await[0]["id"], still_open[0]["id"]);
}

/// An integration key acts on its own service's alerts only: service billing's key cannot
/// acknowledge, resolve or add to service web's alerts, by events or by Alertmanager.
#[tokio::test]
async fn an_integration_key_cannot_act_on_another_services_alerts() {
    let app = spawn_app().await;
    let source = format!(
        "{}[[services]]\nname = \"web\"\npolicy = \"p\"\nurgency = \"high\"\n",
        one_service()
    );
    let project = app.store.project_by_name("default").await.unwrap().unwrap();
    keepwatch_core::oncall::config::OnCall::parse(&source).unwrap();
    let feeds = app
        .store
        .apply_oncall(
            project.id,
            &source,
            &[("service", "billing"), ("service", "web")],
            &keepwatch_store::AppliedBy::default(),
            Timestamp::default(),
        )
        .await
        .unwrap();
    let key = |name: &str| {
        feeds
            .iter()
            .find(|f| f.kind == "service" && f.name == name)
            .unwrap()
            .token
            .clone()
    };
    let (billing, web) = (key("billing"), key("web"));
    let event = crate::helpers::disk_event;
    let (status, _) = app.send_event(event(&web, "trigger")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // As PagerDuty does for a key it does not know: accepted, nothing done.
    for action in ["acknowledge", "resolve"] {
        for path in ["/api/v1/events", "/v2/enqueue"] {
            let (status, _) = app
                .api("POST", path, None, Some(event(&billing, action)))
                .await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
    }
    let (status, body) = app.send_event(event(&billing, "trigger")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"][0],
        "'dedup_key' is in use by an open alert of another service"
    );
    let open = open_alerts(&app).await;
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0]["service"].as_str(), open[0]["status"].as_str()),
        (Some("web"), Some("triggered"))
    );
    let log = alert_log(&app, open[0]["id"].as_i64().unwrap()).await;
    assert!(
        !log.iter()
            .any(|(kind, who)| kind == "trigger_repeated" || who == "events API"),
        "{log:?}"
    );

    // Alertmanager: a group firing on web is not resolved through billing's receiver.
    let group = "{}:{alertname=\"HighLatency\"}";
    let app = &app;
    let notify = |key: &str, status: &str| {
        let path = format!("/api/v1/alertmanager/{key}");
        let body = alertmanager(status, group);
        async move { app.api("POST", &path, None, Some(body)).await }
    };
    assert_eq!(notify(&web, "firing").await.0, StatusCode::OK);
    assert_eq!(notify(&billing, "resolved").await.0, StatusCode::OK);
    assert_eq!(notify(&billing, "firing").await.0, StatusCode::BAD_REQUEST);
    let open = open_alerts(app).await;
    assert_eq!(open.len(), 2);
    assert!(open.iter().all(|a| a["service"] == "web"), "{open:?}");

    // Its own key still acts.
    let (status, _) = app.send_event(event(&web, "resolve")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(open_alerts(app).await.len(), 1);
}

/// Alice, then bob `delays[0]` minutes later, then carol `delays[1]` minutes after bob, each
/// through their own webhook receiver.
fn three_steps(urls: [&str; 3], delays: [u32; 2]) -> String {
    let mut file = String::new();
    for (who, url) in ["alice", "bob", "carol"].iter().zip(urls) {
        file.push_str(&person(who, &[("webhook", url)]));
    }
    file.push_str(&format!(
        "[[policies]]\nname = \"p\"\nsteps = [\n\
         {{ targets = [\"user:alice\"], delay = {} }},\n\
         {{ targets = [\"user:bob\"], delay = {} }},\n\
         {{ targets = [\"user:carol\"], delay = 10 }},\n]\n\
         [[services]]\nname = \"billing\"\npolicy = \"p\"\nurgency = \"high\"\n",
        delays[0], delays[1]
    ));
    file
}

#[tokio::test]
async fn an_apply_re_plans_open_alerts_from_the_new_file_without_backdating() {
    let app = spawn_app().await;
    let (mut alice, mut bob, mut carol) = (
        Receiver::start(vec![]).await,
        Receiver::start(vec![]).await,
        Receiver::start(vec![]).await,
    );
    let owned = [alice.url.clone(), bob.url.clone(), carol.url.clone()];
    let urls = [owned[0].as_str(), owned[1].as_str(), owned[2].as_str()];
    app.apply_oncall_config(&three_steps(urls, [10, 10])).await;
    let project = app.store.project_by_name("default").await.unwrap().unwrap();
    let key = app
        .store
        .feeds(project.id)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.kind == "service")
        .unwrap()
        .token;
    let body = json!({"routing_key": key, "event_action": "trigger", "dedup_key": "disk",
                      "payload": {"summary": "disk full", "source": "db1", "severity": "critical"}});
    let (status, _) = app.send_event(body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = open_alerts(&app).await[0]["id"].as_i64().unwrap();
    alice.next().await;
    let t0 = crate::helpers::t0();
    let entries = || async {
        get_alert(&app, id).await["log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap().to_string(),
                    e["detail"].as_str().unwrap().to_string(),
                    chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap())
                        .unwrap()
                        .to_utc(),
                )
            })
            .collect::<Vec<_>>()
    };

    // Two minutes in, bob's step moves from minute 10 to minute 5: he is paged at minute 5.
    app.advance(TimeDelta::minutes(2));
    app.apply_oncall_config(&three_steps(urls, [5, 10])).await;
    app.advance(TimeDelta::minutes(3));
    bob.next().await;
    let log = entries().await;
    let applied = log
        .iter()
        .filter(|(kind, _, _)| kind == "config_applied")
        .map(|(_, detail, at)| (detail.as_str(), *at))
        .collect::<Vec<_>>();
    // The log names what the apply changed.
    assert_eq!(
        applied,
        [(
            "on-call configuration applied (~ policy p): pending steps follow the new file",
            t0 + TimeDelta::minutes(2)
        )],
        "{log:?}"
    );
    let step = |log: &[(String, String, chrono::DateTime<chrono::Utc>)], n: &str| {
        log.iter()
            .find(|(kind, detail, _)| kind == "escalation_step" && detail.starts_with(n))
            .map(|(_, _, at)| *at)
    };
    assert_eq!(step(&log, "step 2,"), Some(t0 + TimeDelta::minutes(5)));
    assert!(carol.is_empty());

    // At minute 8, carol's step moves from minute 15 to minute 6, already past: she is paged
    // at once, and the log says minute 8, when it happened.
    app.advance(TimeDelta::minutes(3));
    app.apply_oncall_config(&three_steps(urls, [5, 1])).await;
    carol.next().await;
    let log = entries().await;
    assert_eq!(
        step(&log, "step 3,"),
        Some(t0 + TimeDelta::minutes(8)),
        "{log:?}"
    );
    let kinds: Vec<&str> = log.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "config_applied").count(),
        2,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn responders_add_notes_from_the_api_the_cli_and_the_link_page() {
    let mut hook = Receiver::start(vec![200]).await;
    let app = spawn_app().await;
    let key = apply(&app, &alice_by_webhook("hook", &hook.url, 0)).await;
    let event = crate::helpers::disk_event(&key, "trigger");
    let (status, _) = app.send_event(event).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let page = hook.next().await.json();
    let id = page["alert"]["id"].as_i64().unwrap();
    let ack = page["links"]["acknowledge"].as_str().unwrap().to_string();

    // The API: a note is trimmed and goes in the log in the caller's name.
    let notes = format!("/api/v1/alerts/{id}/notes");
    let (status, alert) = app
        .post(&notes, Some(json!({"text": "  looking at the db host  "})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{alert}");
    assert_eq!(alert["id"], id);
    // Bad input is refused with a reason, and nothing is logged.
    let long = "x".repeat(4001);
    for body in [
        None,
        Some(json!({})),
        Some(json!({"text": "   "})),
        Some(json!({"text": 5})),
        Some(json!({"text": long})),
    ] {
        let (status, answer) = app.post(&notes, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {answer}");
        assert!(answer["error"].as_str().is_some(), "{answer}");
    }
    let (status, _) = app
        .api(
            "POST",
            &notes,
            Some(&app.read_key),
            Some(json!({"text": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .post("/api/v1/alerts/999999/notes", Some(json!({"text": "hi"})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The CLI, in the name given with --as.
    let out = crate::cli::keepwatch_async(
        &[
            "alert",
            "note",
            &id.to_string(),
            "restarted the worker",
            "--as",
            "bob",
            "--server",
            &app.address,
        ],
        Some(&app.api_key),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A named key's actions carry its name.
    let data_dir = app.data_dir.to_str().unwrap();
    let create = ["api-key", "create", "--name", "ci", "--data-dir", data_dir];
    let out = crate::cli::keepwatch_async(&create, None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ci_key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (status, _) = app
        .api(
            "POST",
            &notes,
            Some(&ci_key),
            Some(json!({"text": "deploy paused"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let bad_name = [
        "api-key",
        "create",
        "--name",
        "a\u{7}b",
        "--data-dir",
        data_dir,
    ];
    let out = crate::cli::keepwatch_async(&bad_name, None).await;
    assert!(!out.status.success());

    // The link's page: the form's note goes in with the acknowledgment, in the name of the
    // person the link was sent to.
    let done = app
        .client
        .post(&ack)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("note=found+it%3A+a+stuck+lock")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);

    let alert = get_alert(&app, id).await;
    let notes: Vec<(&str, &str)> = alert["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "note")
        .map(|e| (e["who"].as_str().unwrap(), e["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        notes,
        [
            ("api", "looking at the db host"),
            ("api (bob)", "restarted the worker"),
            ("api key ci", "deploy paused"),
            ("alice (link)", "found it: a stuck lock"),
        ]
    );
    assert_eq!(alert["status"], "acknowledged");
}

/// The seed's night, as pages: a failure's email carries the last lines of its output, and an
/// overlap's names the stray process by pid and command line, in the subject's words and in
/// both parts of the email.
#[tokio::test]
async fn pages_name_the_stray_process_and_carry_the_last_output() {
    use crate::helpers::{AppOptions, spawn_app_with};
    let (mailbox, smtp) = crate::notifications::smtp_server();
    let app = spawn_app_with(AppOptions {
        smtp: Some(smtp),
        ..Default::default()
    })
    .await;
    apply(
        &app,
        &(person("alice", &[("email", "alice@example.com")]) + &billing_pages(&["user:alice"])),
    )
    .await;
    let uuid = uuid_of(
        &app.create_check(json!({"name": "Nightly client events", "service": "billing"}))
            .await,
    );
    let mail = |n: usize| {
        let mailbox = &mailbox;
        async move { eventually(|| async { mailbox.0.lock().unwrap().get(n).cloned() }).await }
    };

    // A failure with output: the last lines are in the page.
    let output = (1..=14).map(|i| format!("step {i}\n")).collect::<String>() + "error: lock held\n";
    app.ping(
        "POST",
        &format!("/ping/{uuid}/3?host=web1&pid=21507"),
        Some(output.into_bytes()),
    )
    .await;
    let (subject, plain, html) = crate::notifications::email_parts(&mail(0).await);
    assert_eq!(
        subject,
        "[HIGH] Nightly client events: failed with exit status 3"
    );
    let last: String = (6..=14).map(|i| format!("    step {i}\n")).collect();
    assert!(
        plain.starts_with("Nightly client events: failed with exit status 3\n\nHost: web1\n")
            && plain.contains(&format!("Last output:\n{last}    error: lock held\n")),
        "{plain}"
    );
    assert!(html.contains("step 14\nerror: lock held</pre>"), "{html}");

    // A start beside a stray copy of the job: the overlap page names it.
    let strays = json!([{"pid": 26458, "started_at": "2026-11-26T11:58:00Z",
                         "cmdline": "/bin/bash /opt/jobs/nightly.sh --all"}]);
    let response = app
        .client
        .post(app.url(&format!("/ping/{uuid}/start?host=web1&pid=30000")))
        .header("X-Keepwatch-Strays", strays.to_string())
        // What `keepwatch run` sends with its start ping: its report, not the job's output.
        .body("keepwatch: other processes are running this command:\n  pid 26458 …\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (subject, plain, html) = crate::notifications::email_parts(&mail(1).await);
    assert_eq!(
        subject,
        "[HIGH] Nightly client events: another copy is running (pid 26458)"
    );
    let sentence = "Nightly client events: overlap: another copy is running since 11:58: \
                    pid 26458 `/bin/bash /opt/jobs/nightly.sh --all`";
    assert!(plain.starts_with(sentence), "{plain}");
    assert!(!plain.contains("keepwatch: other processes"), "{plain}");
    assert!(html.contains(&format!("<p>{sentence}</p>")), "{html}");
    let alert = open_alerts(&app)
        .await
        .into_iter()
        .find(|a| a["dedup_key"].as_str().unwrap().ends_with(":overlap"))
        .unwrap();
    let shown = get_alert(&app, alert["id"].as_i64().unwrap()).await;
    assert_eq!(shown["sentence"], sentence);
    assert_eq!(
        shown["summary"],
        "Nightly client events: another copy is running (pid 26458)"
    );
}
