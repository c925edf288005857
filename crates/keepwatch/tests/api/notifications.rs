//! Detection and delivery, on the simulated clock: down, failed, hung, overlap, up; signed
//! webhooks; retries with backoff; email over a real SMTP conversation.

use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use hmac::{Hmac, KeyInit, Mac};
use keepwatch_engine::{SmtpConfig, SmtpSecurity};
use serde_json::json;
use sha2::Sha256;

use crate::helpers::{AppOptions, Receiver, eventually, spawn_app, spawn_app_with, t0};

fn verify(secret: &str, received: &crate::helpers::Received) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&received.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(received.headers["x-keepwatch-signature"], expected.as_str());
}

#[tokio::test]
async fn a_missed_deadline_goes_down_once_and_the_next_success_brings_it_up() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    let channel = app.webhook_channel(&hook, Some("s3cret")).await;
    let check = app
        .create_check(json!({"name": "hourly", "timeout": 3600, "grace": 600, "channels": "*"}))
        .await;
    assert_eq!(check["channels"], channel.as_str());
    let uuid = check["uuid"].as_str().unwrap();
    app.ping("GET", &format!("/ping/{uuid}"), None).await;

    app.advance(TimeDelta::minutes(69));
    assert_eq!(app.get_check(uuid).await["status"], "grace");
    app.advance(TimeDelta::minutes(1)); // 13:10: one hour plus ten minutes of grace
    let down = hook.next().await;
    verify("s3cret", &down);
    let message = down.json();
    assert_eq!(message["event"], "down");
    assert_eq!(
        message["at"],
        (t0() + TimeDelta::minutes(70)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    assert_eq!(message["check"]["name"], "hourly");
    assert_eq!(down.headers["x-keepwatch-event"], "down");
    assert_eq!(app.get_check(uuid).await["status"], "down");
    let (_, flips) = app.get(&format!("/api/v3/checks/{uuid}/flips/")).await;
    assert_eq!(
        flips["flips"][0]["timestamp"], "2026-11-26T13:10:00+00:00",
        "dated at the deadline"
    );

    app.advance(TimeDelta::hours(5));
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let up = hook.next().await;
    assert_eq!(up.json()["event"], "up");
    assert!(hook.is_empty(), "one alert for one outage");
    let notifications = eventually(|| async {
        let n = app.notifications(uuid).await;
        n.iter().all(|n| n["state"] == "sent").then_some(n)
    })
    .await;
    assert_eq!(notifications.len(), 2);
    assert_eq!(notifications[1]["attempt_log"][0]["detail"], "HTTP 200");
}

#[tokio::test]
async fn failures_hangs_and_overlaps_are_notified_with_run_details() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let check = app
        .create_check(json!({"name": "nightly", "schedule": "0 0 * * *", "tz": "America/Denver", "grace": 3600, "max_runtime": 1200, "channels": "*"}))
        .await;
    let uuid = check["uuid"].as_str().unwrap();
    let rid1 = "00000000-0000-4000-8000-000000000001";
    let rid2 = "00000000-0000-4000-8000-000000000002";

    // Exit status 2: failed.
    app.ping("GET", &format!("/ping/{uuid}/2"), None).await;
    let failed = hook.next().await.json();
    assert_eq!(
        (failed["event"].clone(), failed["exit_status"].clone()),
        (json!("failed"), json!(2))
    );

    // A run starts on web1, then a second one on web2 while the first is open: overlap.
    app.ping(
        "GET",
        &format!("/ping/{uuid}/start?rid={rid1}&host=web1&pid=100"),
        None,
    )
    .await;
    app.advance(TimeDelta::minutes(5));
    app.ping(
        "GET",
        &format!("/ping/{uuid}/start?rid={rid2}&host=web2&pid=200"),
        None,
    )
    .await;
    let overlap = hook.next().await.json();
    assert_eq!(overlap["event"], "overlap");
    assert_eq!(
        (
            overlap["run"]["host"].clone(),
            overlap["run"]["pid"].clone()
        ),
        (json!("web2"), json!(200))
    );
    assert_eq!(
        (
            overlap["other_run"]["host"].clone(),
            overlap["other_run"]["pid"].clone()
        ),
        (json!("web1"), json!(100))
    );
    assert_eq!(overlap["other_run"]["started_at"], "2026-11-26T12:00:00Z");

    // The first run never finishes: hung at its start + max_runtime (20 min), while running.
    app.advance(TimeDelta::minutes(15));
    let hung = hook.next().await.json();
    assert_eq!(hung["event"], "hung");
    assert_eq!(hung["run"]["rid"], rid1);
    assert_eq!(hung["at"], "2026-11-26T12:20:00Z");
    // The second finishes fine: up again.
    app.ping("GET", &format!("/ping/{uuid}/0?rid={rid2}"), None)
        .await;
    let up = hook.next().await.json();
    assert_eq!(up["event"], "up");
    assert_eq!(app.get_check(uuid).await["status"], "up");
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_backoff_and_every_attempt_is_kept() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![500, 503]).await;
    app.webhook_channel(&hook, None).await;
    let uuid = app
        .create_check_uuid(json!({"name": "r", "channels": "*"}))
        .await;
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    // Every attempt carries the delivery's one id, so a receiver can drop a duplicate.
    let delivery_id = |r: &crate::helpers::Received| {
        r.headers["x-keepwatch-delivery"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let first_id = delivery_id(&hook.next().await); // answered 500
    assert!(first_id.parse::<i64>().is_ok(), "{first_id}");
    let first = eventually(|| async {
        let n = app.notifications(&uuid).await;
        (n[0]["attempts"] == 1).then(|| n[0].clone())
    })
    .await;
    assert_eq!(first["state"], "pending");
    assert_eq!(first["last_error"], "webhook answered HTTP 500");
    assert_eq!(
        first["next_attempt_at"], "2026-11-26T12:00:10+00:00",
        "first retry after 10 s"
    );
    app.advance(TimeDelta::seconds(10));
    assert_eq!(delivery_id(&hook.next().await), first_id); // answered 503
    let second = eventually(|| async {
        let n = app.notifications(&uuid).await;
        (n[0]["attempts"] == 2).then(|| n[0].clone())
    })
    .await;
    assert_eq!(
        second["next_attempt_at"], "2026-11-26T12:00:30+00:00",
        "then after 20 s"
    );
    app.advance(TimeDelta::seconds(20));
    let delivered = hook.next().await;
    assert_eq!(delivered.json()["event"], "failed");
    assert_eq!(delivery_id(&delivered), first_id);
    let done = eventually(|| async {
        let n = app.notifications(&uuid).await;
        (n[0]["state"] == "sent").then(|| n[0].clone())
    })
    .await;
    let outcomes: Vec<bool> = done["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(outcomes, [false, false, true]);
    // Another delivery, another id.
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let next = hook.next().await;
    assert_eq!(next.json()["event"], "up");
    assert_ne!(delivery_id(&next), first_id);
}

/// Collects the messages a real SMTP server on loopback receives.
#[derive(Clone, Default)]
pub struct Mailbox(pub Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<u8>>>);

/// A real SMTP server on loopback (no TLS, no auth required) and the settings to reach it.
pub fn smtp_server() -> (Mailbox, SmtpConfig) {
    let mailbox = Mailbox::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = mailin_embedded::Server::new(mailbox.clone());
    server.with_name("mail.test").with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    let config = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "keepwatch <keepwatch@example.com>".into(),
    };
    (mailbox, config)
}

/// A received email's subject, plain-text part and HTML part (empty when it has none),
/// decoded from their transfer encoding (quoted-printable, base64 or 7bit).
pub fn email_parts(raw: &str) -> (String, String, String) {
    use base64::prelude::{BASE64_STANDARD, Engine as _};
    let raw = raw.replace("\r\n", "\n");
    let subject = raw
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_string();
    let decode = |part: &str| -> String {
        let Some((headers, body)) = part.split_once("\n\n") else {
            return String::new();
        };
        let body = body.trim_end().trim_end_matches('-');
        let body = match body.rfind("\n--") {
            Some(end) => &body[..end],
            None => body,
        };
        if headers.contains("quoted-printable") {
            let joined = body.replace("=\n", "");
            let mut bytes = Vec::new();
            let mut rest = joined.as_bytes();
            while let Some((&b, tail)) = rest.split_first() {
                if b == b'=' && tail.len() >= 2 {
                    let hex = std::str::from_utf8(&tail[..2]).unwrap();
                    bytes.push(u8::from_str_radix(hex, 16).unwrap());
                    rest = &tail[2..];
                } else {
                    bytes.push(b);
                    rest = tail;
                }
            }
            String::from_utf8(bytes).unwrap()
        } else if headers.contains("base64") {
            let clean: String = body.split_whitespace().collect();
            String::from_utf8(BASE64_STANDARD.decode(clean).unwrap()).unwrap()
        } else {
            body.to_string()
        }
    };
    let (mut plain, mut html) = (String::new(), String::new());
    for part in raw.split("Content-Type: ").skip(1) {
        if part.starts_with("text/plain") {
            plain = decode(part);
        } else if part.starts_with("text/html") {
            html = decode(part);
        }
    }
    (subject, plain, html)
}

impl mailin_embedded::Handler for Mailbox {
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.1.lock().unwrap().extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let message =
            String::from_utf8_lossy(&std::mem::take(&mut *self.1.lock().unwrap())).to_string();
        self.0.lock().unwrap().push(message);
        mailin_embedded::response::OK
    }

    fn auth_plain(
        &mut self,
        _authz: &str,
        user: &str,
        password: &str,
    ) -> mailin_embedded::Response {
        if user == "keepwatch" && password == "hunter2" {
            mailin_embedded::response::AUTH_OK
        } else {
            mailin_embedded::response::INVALID_CREDENTIALS
        }
    }
}

#[tokio::test]
async fn email_goes_through_a_real_smtp_conversation() {
    let (mailbox, smtp) = smtp_server();
    let app = spawn_app_with(AppOptions {
        smtp: Some(smtp),
        ..Default::default()
    })
    .await;
    let (status, _) = app
        .post("/api/v3/channels/", Some(json!({"name": "oncall", "kind": "email", "to": "ops@example.com, lead@example.com"})))
        .await;
    assert_eq!(status, 201);
    let uuid = app
        .create_check_uuid(json!({"name": "Nightly events", "channels": "oncall"}))
        .await;
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    let message = eventually(|| async { mailbox.0.lock().unwrap().first().cloned() }).await;
    assert!(
        message.contains("Subject: [keepwatch] Nightly events: failed"),
        "{message}"
    );
    assert!(
        message.contains("To: ops@example.com, lead@example.com"),
        "{message}"
    );
    // The Message-ID is the delivery id, the same on a resend by another instance.
    let message_id = message
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap_or_else(|| panic!("no Message-ID in {message}"));
    let n = app.notifications(&uuid).await;
    assert_eq!(n.len(), 1);
    assert!(
        message_id.starts_with("<keepwatch.") && message_id.ends_with("@127.0.0.1>"),
        "{message_id}"
    );
    let sent = eventually(|| async {
        let n = app.notifications(&uuid).await;
        (n[0]["state"] == "sent").then(|| n[0].clone())
    })
    .await;
    assert!(
        sent["attempt_log"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("SMTP 250")
    );
}

#[tokio::test]
async fn email_without_an_smtp_server_is_a_recorded_failure_not_a_crash() {
    let app = spawn_app().await;
    app.post(
        "/api/v3/channels/",
        Some(json!({"name": "mail", "kind": "email", "to": "ops@example.com"})),
    )
    .await;
    let uuid = app
        .create_check_uuid(json!({"name": "x", "channels": "*"}))
        .await;
    app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    let n = eventually(|| async {
        let n = app.notifications(&uuid).await;
        (n[0]["attempts"] == 1).then(|| n[0].clone())
    })
    .await;
    assert!(
        n["last_error"]
            .as_str()
            .unwrap()
            .contains("no SMTP server is configured")
    );
    for (body, message) in [
        (
            json!({"name": "w", "kind": "webhook", "url": "ftp://x"}),
            "json validation error: url must be an http:// or https:// URL",
        ),
        (
            json!({"name": "e", "kind": "email", "to": "nobody"}),
            "json validation error: to must be one or more email addresses",
        ),
        (
            json!({"name": "s", "kind": "sms"}),
            "json validation error: kind must be \"webhook\" or \"email\"",
        ),
    ] {
        let (status, error) = app.post("/api/v3/channels/", Some(body)).await;
        assert_eq!(
            (status.as_u16(), error["error"].as_str().unwrap()),
            (400, message)
        );
    }
}

/// Runs a cron check through the real engine on the simulated clock: the job pings at each
/// of `runs` (UTC), then stops; the first alert must be dated `expected_down` and nothing may
/// be sent before it.
async fn simulate(schedule: &str, tz: &str, grace: i64, runs: &[&str], expected_down: &str) {
    let start = chrono::DateTime::parse_from_rfc3339(runs[0])
        .unwrap()
        .with_timezone(&chrono::Utc)
        - TimeDelta::minutes(1);
    let app = spawn_app_with(AppOptions {
        start: Some(start),
        ..Default::default()
    })
    .await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let check = app
        .create_check(
            json!({"name": "sim", "schedule": schedule, "tz": tz, "grace": grace, "channels": "*"}),
        )
        .await;
    let uuid = check["uuid"].as_str().unwrap();
    for run in runs {
        let at = chrono::DateTime::parse_from_rfc3339(run)
            .unwrap()
            .with_timezone(&chrono::Utc);
        app.clock.set(at);
        let (status, _, _) = app.ping("GET", &format!("/ping/{uuid}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(
            app.get_check(uuid).await["status"],
            "up",
            "{schedule} in {tz}: late at {run}?"
        );
    }
    let down = chrono::DateTime::parse_from_rfc3339(expected_down)
        .unwrap()
        .with_timezone(&chrono::Utc);
    app.clock.set(down - TimeDelta::seconds(1));
    assert_ne!(app.get_check(uuid).await["status"], "down");
    app.clock.set(down);
    let alert = hook.next().await.json();
    assert_eq!(alert["event"], "down");
    assert_eq!(
        alert["at"],
        down.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    assert!(hook.is_empty(), "one alert");
}

#[tokio::test]
async fn a_week_of_a_nightly_job_in_denver_alerts_at_one_on_the_missed_saturday() {
    // 00:00 MST every night; the job pings a minute after; Saturday 2026-11-28 it does not run.
    let runs = [
        "2026-11-23T07:01:00Z",
        "2026-11-24T07:01:00Z",
        "2026-11-25T07:01:00Z",
        "2026-11-26T07:01:00Z",
        "2026-11-27T07:01:00Z",
    ];
    simulate(
        "0 0 * * *",
        "America/Denver",
        3600,
        &runs,
        "2026-11-28T08:00:00Z",
    )
    .await;
}

#[tokio::test]
async fn spring_forward_in_denver_expects_the_skipped_0230_job_at_0300() {
    // 02:30 does not exist on 2026-03-08: the run is expected at 03:00 MDT (09:00 UTC); the
    // next night it is 02:30 MDT (08:30 UTC); missing that one alerts after 30 min of grace.
    let runs = ["2026-03-07T09:31:00Z", "2026-03-08T09:01:00Z"];
    simulate(
        "30 2 * * *",
        "America/Denver",
        1800,
        &runs,
        "2026-03-09T09:00:00Z",
    )
    .await;
}

#[tokio::test]
async fn fall_back_in_london_runs_the_0130_job_once() {
    // 01:30 happens twice on 2026-10-25: the job is expected at the first (00:30 UTC) only,
    // so the next expectation is 2026-10-26 01:30 GMT, alerting at 02:00 UTC.
    let runs = ["2026-10-24T00:31:00Z", "2026-10-25T00:31:00Z"];
    simulate(
        "30 1 * * *",
        "Europe/London",
        1800,
        &runs,
        "2026-10-26T02:00:00Z",
    )
    .await;
}

/// A spool delivers a run's start and finish hours late, one request after the other: the
/// check is left to settle in between, so the long-finished run is not reported hung.
#[tokio::test]
async fn late_pings_from_a_spool_settle_before_the_check_is_judged() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let check = app
        .create_check(json!({"name": "nightly", "timeout": 86400, "grace": 600, "max_runtime": 600, "channels": "*"}))
        .await;
    let uuid = check["uuid"].as_str().unwrap();
    let ts = |minutes_ago: i64| {
        (t0() - TimeDelta::minutes(minutes_ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let rid = "0b7c7a8e-6f25-4b47-8a36-0f0f6a0c2a11";
    let (status, _, _) = app
        .ping(
            "POST",
            &format!("/ping/{uuid}/start?rid={rid}&ts={}", ts(120)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // The start's max runtime ran out 110 minutes ago; the finish is still on its way.
    app.advance(TimeDelta::seconds(30));
    app.ping(
        "POST",
        &format!("/ping/{uuid}/0?rid={rid}&ts={}", ts(115)),
        None,
    )
    .await;
    app.advance(TimeDelta::seconds(61));
    let check = app.get_check(uuid).await;
    assert_eq!(check["status"], "up", "{check}");
    assert_eq!(check["last_duration"], 300);

    // A late start that really has no finish is judged once it has settled.
    let other = "6d1d3a5e-0d7e-4a8f-9b0e-3c5b1f7f2b22";
    app.ping(
        "POST",
        &format!("/ping/{uuid}/start?rid={other}&ts={}", ts(60)),
        None,
    )
    .await;
    app.advance(TimeDelta::seconds(30));
    assert_eq!(
        app.get_check(uuid).await["down_reason"],
        serde_json::Value::Null
    );
    app.advance(TimeDelta::seconds(31));
    let hung = hook.next().await.json();
    assert_eq!(hung["event"], "hung");
    assert_eq!(hung["run"]["rid"], other);
    assert!(hook.is_empty(), "only the run that never finished");
}
