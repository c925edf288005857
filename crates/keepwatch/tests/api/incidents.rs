//! Incidents end to end through the real server, on a manual clock, with webhook receivers
//! and an SMTP server on loopback: a two-day incident with an owner change, reminders before
//! and when an update is due, an overdue update that escalates, a no-news update, an
//! all-clear, a recurrence that reattaches, the stakeholder page and the postmortem export;
//! bad input; a stakeholder webhook that keeps failing. On SQLite and on PostgreSQL.

use axum::http::StatusCode;
use chrono::TimeDelta;
use keepwatch_store::testing::PgDatabase;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, Receiver, TestApp, apply, eventually, spawn_app_with};

struct Hooks {
    alice: Receiver,
    bob: Receiver,
    carol: Receiver,
    execs: Receiver,
    slack: Receiver,
    broken: Receiver,
}

async fn hooks() -> Hooks {
    Hooks {
        alice: Receiver::start(vec![]).await,
        bob: Receiver::start(vec![]).await,
        carol: Receiver::start(vec![]).await,
        execs: Receiver::start(vec![]).await,
        slack: Receiver::start(vec![]).await,
        broken: Receiver::start(vec![500; 1000]).await,
    }
}

/// alice (Denver) and bob (Paris) respond; carol is the service's policy; stakeholders
/// `execs` are a webhook in New York, a Slack channel, the CFO by email in Paris and a
/// webhook that always fails. SEV1 updates every 30 minutes.
fn config(h: &Hooks) -> String {
    let person = |id: &str, tz: &str, url: &str| {
        format!(
            "[[people]]\nid = \"{id}\"\ntz = \"{tz}\"\ncontacts = {{ webhook = \"{url}\" }}\n\
             rules = [{{ urgency = \"high\", contact = \"webhook\", after = 0 }}]\n"
        )
    };
    format!(
        "{}{}{}\
[[policies]]
name = \"p\"
steps = [{{ targets = [\"user:carol\"], delay = 10 }}]
[[services]]
name = \"billing\"
policy = \"p\"
urgency = \"high\"
renotify_every = 0
stakeholders = [\"execs\"]
[[stakeholders]]
name = \"execs\"
members = [
  {{ webhook = \"{}\", tz = \"America/New_York\" }},
  {{ slack = \"{}\" }},
  {{ email = \"cfo@example.com\", tz = \"Europe/Paris\" }},
  {{ webhook = \"{}\" }},
]
[incidents]
update_interval = {{ sev1 = \"30m\" }}
remind_before = \"10m\"
escalate_after = \"15m\"
",
        person("alice", "America/Denver", &h.alice.url),
        person("bob", "Europe/Paris", &h.bob.url),
        person("carol", "UTC", &h.carol.url),
        h.execs.url,
        h.slack.url,
        h.broken.url,
    )
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    app.api("POST", path, Some(&app.api_key), Some(body)).await
}

/// The next incident message a webhook receiver gets: `(subject, text)`.
async fn next_message(hook: &mut Receiver) -> (String, String) {
    let m = hook.next().await.json();
    (
        m["subject"].as_str().unwrap_or_default().to_string(),
        m["text"].as_str().unwrap_or_default().to_string(),
    )
}

/// Nothing more reaches `hook` once the engine has caught up.
async fn quiet(app: &TestApp, hook: &mut Receiver, who: &str) {
    app.engine.settled().await;
    assert!(hook.is_empty(), "{who} got an unexpected message");
}

async fn incident(app: &TestApp, id: i64) -> Value {
    let (status, body) = app
        .api(
            "GET",
            &format!("/api/v1/incidents/{id}"),
            Some(&app.api_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn two_day_incident(options: AppOptions) {
    let (mailbox, smtp) = crate::notifications::smtp_server();
    let app = spawn_app_with(AppOptions {
        smtp: Some(smtp),
        ..options
    })
    .await;
    let mut h = hooks().await;
    apply(&app, &config(&h)).await;
    let check = app
        .create_check(
            json!({"name": "nightly", "timeout": 3600, "grace": 60, "service": "billing"}),
        )
        .await;
    let uuid = check["uuid"].as_str().unwrap().to_string();
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    // 13:01:01 UTC: the check is down, carol is paged.
    app.advance(TimeDelta::seconds(3661));
    let page = h.carol.next().await.json();
    let alert = page["alert"]["id"].as_i64().unwrap();
    let (status, _) = post(&app, &format!("/api/v1/alerts/{alert}/ack"), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    // Declared from the alert: alice owns it; every stakeholder hears of it at once.
    let (status, declared) = post(
        &app,
        "/api/v1/incidents/",
        json!({"alerts": [alert], "severity": "SEV1", "owner": "alice",
               "impact": "Client events since midnight are not processed"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{declared}");
    let id = declared["id"].as_i64().unwrap();
    assert_eq!(declared["next_update_due"], "2026-11-26T13:31:01Z");
    assert_eq!(declared["service"], "billing");
    assert_eq!(declared["stakeholders"], json!(["execs"]));
    let (subject, text) = next_message(&mut h.execs).await;
    assert_eq!(subject, "[SEV1] nightly: missed its run — Investigating");
    assert!(
        text.contains("Incident #1 · Thu 26 Nov 2026 08:01 EST"),
        "{text}"
    );
    assert!(text.contains("An incident was declared."), "{text}");
    assert!(text.contains("Next update by 08:31 EST."), "{text}");
    assert!(text.contains("/s/"), "the stakeholder page: {text}");
    let slack = h.slack.next().await.json();
    let slack_text = slack["text"].as_str().unwrap();
    assert!(
        slack_text.starts_with("*[SEV1] nightly: missed its run — Investigating*\n[SEV1]"),
        "Slack reads the text, not JSON: {slack_text}"
    );
    assert!(
        slack_text.contains("Next update by 13:31 UTC."),
        "{slack_text}"
    );
    let (subject, _) = next_message(&mut h.alice).await;
    assert_eq!(subject, "You own incident #1: nightly: missed its run");
    let email = eventually(|| async {
        let mail = mailbox.0.lock().unwrap();
        mail.iter().find(|m| m.contains("cfo@example.com")).cloned()
    })
    .await;
    let (subject, body, _) = crate::notifications::email_parts(&email);
    assert!(
        subject.contains("[SEV1] nightly: missed its run"),
        "{subject}"
    );
    assert!(
        body.contains("Next update by 14:31 CET."),
        "the CFO reads Paris time: {body}"
    );
    quiet(&app, &mut h.bob, "bob").await;

    // +20 min: alice is reminded 10 minutes ahead, through her own rules.
    app.advance(TimeDelta::minutes(20));
    let (subject, text) = next_message(&mut h.alice).await;
    assert_eq!(subject, "Incident #1: update due by 06:31 MST");
    assert!(text.contains("keepwatch incident update 1"), "{text}");
    quiet(&app, &mut h.execs, "execs").await;

    // +24 min: an update, on time; the next one is due 30 minutes later.
    app.advance(TimeDelta::minutes(4));
    let (status, updated) = post(
        &app,
        &format!("/api/v1/incidents/{id}/updates"),
        json!({"status": "identified", "message": "A stray process holds the export's lock"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{updated}");
    assert_eq!(updated["next_update_due"], "2026-11-26T13:55:01Z");
    let (subject, text) = next_message(&mut h.execs).await;
    assert_eq!(subject, "[SEV1] nightly: missed its run — Identified");
    assert!(
        text.contains("Identified: A stray process holds the export's lock.\n"),
        "{text}"
    );
    assert!(text.contains("Next update by 08:55 EST."), "{text}");
    h.slack.next().await;

    // Not posted: reminded before (13:45) and at the due time (13:55), escalated to the
    // policy (carol) 15 minutes past it (14:10).
    app.advance(TimeDelta::minutes(20));
    assert_eq!(
        next_message(&mut h.alice).await.0,
        "Incident #1: update due by 06:55 MST"
    );
    app.advance(TimeDelta::minutes(10));
    assert_eq!(
        next_message(&mut h.alice).await.0,
        "Incident #1: update due now"
    );
    quiet(&app, &mut h.carol, "carol").await;
    app.advance(TimeDelta::minutes(15));
    let (subject, text) = next_message(&mut h.carol).await;
    assert_eq!(subject, "Incident #1: update overdue, escalated");
    assert!(text.contains("its owner alice has not posted it"), "{text}");
    let log = incident(&app, id).await["log"].clone();
    let escalated = log
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "escalated")
        .expect("the escalation is logged");
    assert_eq!(
        escalated["text"],
        "update overdue by 15m: escalated to carol"
    );
    assert_eq!(escalated["at"], "2026-11-26T14:10:01Z");

    // No news, late (14:11).
    app.advance(TimeDelta::minutes(1));
    let (status, _) = post(
        &app,
        &format!("/api/v1/incidents/{id}/updates"),
        json!({"no_news": true, "message": "stopping the stray process on db2"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, text) = next_message(&mut h.execs).await;
    assert!(
        text.contains(
            "No new information since 08:25 EST. We are still working on the fix: stopping the \
             stray process on db2. Next update by 09:41 EST."
        ),
        "{text}"
    );
    h.slack.next().await;

    // Handed over to bob: he is told, and the next reminders go to him, not alice.
    let (status, owned) = post(
        &app,
        &format!("/api/v1/incidents/{id}/owner"),
        json!({"owner": "bob"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{owned}");
    let (subject, text) = next_message(&mut h.bob).await;
    assert_eq!(subject, "You now own incident #1: nightly: missed its run");
    assert!(
        text.contains("due by 15:41 CET"),
        "bob reads Paris time: {text}"
    );
    app.advance(TimeDelta::minutes(20));
    assert_eq!(
        next_message(&mut h.bob).await.0,
        "Incident #1: update due by 15:41 CET"
    );
    quiet(&app, &mut h.alice, "alice").await;

    // Overnight, nothing posted: due, escalated once, then quiet until the next day.
    app.advance(TimeDelta::minutes(10));
    assert_eq!(
        next_message(&mut h.bob).await.0,
        "Incident #1: update due now"
    );
    app.advance(TimeDelta::minutes(15));
    assert_eq!(
        next_message(&mut h.carol).await.0,
        "Incident #1: update overdue, escalated"
    );
    app.advance(TimeDelta::hours(18));
    quiet(&app, &mut h.bob, "bob").await;
    quiet(&app, &mut h.carol, "carol").await;

    // Day two: the all-clear reaches every stakeholder; no update after it.
    let (status, resolved) = post(
        &app,
        &format!("/api/v1/incidents/{id}/resolve"),
        json!({"message": "the export ran and caught up"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["next_update_due"], Value::Null);
    let (subject, text) = next_message(&mut h.execs).await;
    assert_eq!(subject, "[SEV1] nightly: missed its run — All clear");
    assert!(
        text.contains("All clear: the export ran and caught up.\nThis incident is resolved"),
        "{text}"
    );
    assert!(text.contains("Fri 27 Nov 2026"), "{text}");
    let (status, refused) = post(
        &app,
        &format!("/api/v1/incidents/{id}/updates"),
        json!({"status": "monitoring", "message": "still fine"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        refused["error"],
        "incident #1 is resolved: reopen it first (keepwatch incident reopen 1)"
    );

    // The job recovers, then misses its next run: the new alert is attached to the incident
    // and its owner told.
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    app.advance(TimeDelta::seconds(3661));
    h.carol.next().await; // the new alert's page
    let (subject, text) = next_message(&mut h.bob).await;
    assert_eq!(subject, "Incident #1 may be back: nightly: missed its run");
    assert!(text.contains("after its all-clear"), "{text}");
    let body = incident(&app, id).await;
    assert_eq!(body["alerts"].as_array().unwrap().len(), 2);
    assert!(
        body["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "recurrence"),
        "{body}"
    );

    // The failing stakeholder: retried, each attempt recorded, never holding the others up.
    let broken_rows = |least: i64| {
        let app = &app;
        let url = h.broken.url.clone();
        move || {
            let url = url.clone();
            async move {
                let body = incident(app, id).await;
                let rows: Vec<Value> = body["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["address"] == url.as_str())
                    .cloned()
                    .collect();
                rows.iter()
                    .all(|m| m["attempts"].as_i64().unwrap() >= least)
                    .then_some(rows)
            }
        }
    };
    eventually(broken_rows(1)).await;
    app.advance(TimeDelta::hours(1));
    let broken = eventually(broken_rows(2)).await;
    assert_eq!(broken.len(), 4, "declared, update, no news, all clear");
    assert!(
        broken[0]["last_error"].as_str().unwrap().contains("500"),
        "{broken:?}"
    );
    let execs_sent = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["address"] == h.execs.url.as_str() && m["state"] == "sent")
        .count();
    assert_eq!(execs_sent, 4);

    // The stakeholder page: every update in order, no login; revoked, the old link is gone.
    let url = body["page_url"].as_str().unwrap().to_string();
    let page = app.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let order: Vec<usize> = ["Declared", "Identified", "No news", "All clear"]
        .iter()
        .map(|w| {
            html.find(&format!("<strong>{w}"))
                .or_else(|| html.find(w))
                .unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {html}");
    assert!(html.contains("Client events since midnight are not processed"));
    let (status, rotated) = post(&app, &format!("/api/v1/incidents/{id}/page"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(rotated["page_url"], url.as_str());
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 404);

    // The postmortem in one call: the timeline in order and the figures.
    let (status, export) = app
        .api(
            "GET",
            &format!("/api/v1/incidents/{id}/export?format=json&tz=America/Denver"),
            Some(&app.read_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{export}");
    let timeline = export["timeline"].as_array().unwrap();
    let times: Vec<&str> = timeline.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "in time order");
    for kind in [
        "ping", "check", "alert", "message", "update", "reminder", "incident",
    ] {
        assert!(
            timeline.iter().any(|e| e["kind"] == kind),
            "{kind} in {export}"
        );
    }
    assert_eq!(export["figures"]["updates"], 3, "declared, update, no news");
    assert_eq!(export["figures"]["updates_on_time"], 2);
    assert_eq!(
        export["figures"]["measures"]["time_to_detect"]["at"],
        "2026-11-26T13:01:01.000Z"
    );
    let (status, markdown) = app
        .api(
            "GET",
            &format!("/api/v1/incidents/{id}/export?format=markdown&tz=America/Denver"),
            Some(&app.read_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let markdown = markdown.as_str().unwrap();
    assert!(
        markdown.starts_with("# Incident #1: nightly: missed its run\n"),
        "{markdown}"
    );
    assert!(
        markdown.contains("Stakeholder updates: 3, 2 on time."),
        "{markdown}"
    );
    assert!(
        markdown.contains("**reminder** (keepwatch): escalated: update overdue by 15m"),
        "{markdown}"
    );

    // Reopened: updates are taken again and the cadence resumes.
    let (status, reopened) = post(
        &app,
        &format!("/api/v1/incidents/{id}/reopen"),
        json!({"message": "it failed again"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reopened}");
    assert_ne!(reopened["status"], "resolved", "{reopened}");
    assert_ne!(reopened["next_update_due"], Value::Null, "{reopened}");
    let (status, _) = post(
        &app,
        &format!("/api/v1/incidents/{id}/updates"),
        json!({"status": "identified", "message": "same cause as before"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test]
async fn a_two_day_incident_on_sqlite() {
    two_day_incident(AppOptions::default()).await;
}

#[tokio::test]
async fn a_two_day_incident_on_postgres() {
    let db = PgDatabase::create().await;
    two_day_incident(AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_with_what_is_wrong() {
    let app = spawn_app_with(AppOptions::default()).await;
    let h = hooks().await;
    apply(&app, &config(&h)).await;
    for (body, status, error) in [
        (
            json!({"title": "db down", "owner": "zoe"}),
            StatusCode::BAD_REQUEST,
            "owner `zoe` is not a person in the on-call file",
        ),
        (
            json!({"title": "db down", "owner": "alice", "stakeholders": ["board"]}),
            StatusCode::BAD_REQUEST,
            "unknown stakeholder group `board` (the on-call file has: execs)",
        ),
        (
            json!({"title": "db down", "owner": "alice", "severity": "SEV9"}),
            StatusCode::BAD_REQUEST,
            "severity `SEV9` is not one of SEV1, SEV2, SEV3, SEV4",
        ),
        (
            json!({"owner": "alice"}),
            StatusCode::BAD_REQUEST,
            "give a title (or alerts to take it from)",
        ),
        (
            json!({"title": "db down", "owner": "alice", "alerts": [999]}),
            StatusCode::BAD_REQUEST,
            "no alert with id 999 in this project",
        ),
        (
            json!({"title": "db down", "owner": "alice", "extra_stakeholders": ["not an address"]}),
            StatusCode::BAD_REQUEST,
            "stakeholder `not an address` is not an email address or an http(s) URL",
        ),
    ] {
        let (got, answer) = post(&app, "/api/v1/incidents/", body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(error),
            "{body}: {answer}"
        );
    }
    let (status, declared) = post(
        &app,
        "/api/v1/incidents/",
        json!({"title": "db down", "owner": "alice", "severity": "sev4"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{declared}");
    assert_eq!(
        declared["next_update_due"],
        Value::Null,
        "SEV4 has no cadence"
    );
    let id = declared["id"].as_i64().unwrap();
    for (path, body, error) in [
        (
            "updates",
            json!({"message": "   "}),
            "the message is empty: say what is happening",
        ),
        (
            "updates",
            json!({"status": "fixed", "message": "x"}),
            "status `fixed` is not one of investigating, identified, monitoring, resolved",
        ),
        (
            "owner",
            json!({"owner": "zoe"}),
            "owner `zoe` is not a person in the on-call file",
        ),
        (
            "postmortem",
            json!({"cause": "x"}),
            "unknown postmortem field `cause`",
        ),
    ] {
        let (status, answer) = post(&app, &format!("/api/v1/incidents/{id}/{path}"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(error),
            "{answer}"
        );
    }
    let (status, answer) = post(
        &app,
        "/api/v1/incidents/99/updates",
        json!({"message": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"], "no incident #99");
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/incidents/",
            Some(&app.read_key),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a read-only key cannot declare"
    );
    let (status, _) = app
        .api(
            "GET",
            &format!("/api/v1/incidents/{id}/export?format=pdf"),
            Some(&app.api_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let page = app
        .client
        .get(app.url("/s/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
}

/// A service that declares incidents itself: a high-urgency alert left unacknowledged for 15
/// minutes, and at once any alert on a check marked critical. The owner is whoever its
/// policy reaches first (carol), and the service's stakeholders hear of it.
#[tokio::test]
async fn services_declare_incidents_by_themselves() {
    let app = spawn_app_with(AppOptions::default()).await;
    let mut h = hooks().await;
    let critical = app
        .create_check(json!({"name": "ledger", "timeout": 3600, "grace": 60, "service": "billing"}))
        .await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let file = config(&h).replace(
        "stakeholders = [\"execs\"]\n",
        &format!(
            "stakeholders = [\"execs\"]\nauto_declare = {{ unacked_after = \"15m\", \
             critical_checks = [\"{critical}\"], severity = \"SEV1\" }}\n"
        ),
    );
    let key = apply(&app, &file).await;
    let (status, _) = app
        .send_event(crate::helpers::disk_event(&key, "trigger"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    h.carol.next().await; // paged
    app.advance(TimeDelta::minutes(14));
    app.engine.settled().await;
    let (_, list) = app
        .api(
            "GET",
            "/api/v1/incidents/?status=all",
            Some(&app.api_key),
            None,
        )
        .await;
    assert_eq!(list["incidents"], json!([]), "not yet");
    app.advance(TimeDelta::minutes(1));
    let (subject, _) = next_message(&mut h.execs).await;
    assert_eq!(subject, "[SEV1] disk full — Investigating");
    let (subject, _) = next_message(&mut h.carol).await;
    assert_eq!(subject, "You own incident #1: disk full");
    let first = incident(&app, 1).await;
    assert_eq!(first["owner"], "carol");
    assert_eq!(first["declared_by"], "keepwatch");
    assert!(
        first["log"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("declared automatically (unacknowledged for 15m)"),
        "{first}"
    );

    // The critical check misses its run: an incident at once.
    app.ping("GET", &format!("/ping/{critical}"), None).await;
    app.advance(TimeDelta::seconds(3661));
    let (subject, _) = next_message(&mut h.execs).await;
    assert_eq!(subject, "[SEV1] ledger: missed its run — Investigating");
    let second = incident(&app, 2).await;
    assert_eq!(second["checks"], json!([critical]));
    app.stop().await;
}

/// The acknowledgment page offers to declare an incident: acknowledged and declared in one
/// press, owned by the person the page was sent to, the service's stakeholders told.
#[tokio::test]
async fn the_acknowledgment_page_declares_an_incident() {
    let app = spawn_app_with(AppOptions::default()).await;
    let mut h = hooks().await;
    let key = apply(&app, &config(&h)).await;
    app.send_event(crate::helpers::disk_event(&key, "trigger"))
        .await;
    let page = String::from_utf8(h.carol.next().await.body).unwrap();
    let start = page.find("http://127.0.0.1").unwrap();
    let link = page[start..].split('"').next().unwrap().to_string();
    assert!(link.contains(".ack."), "{link}");
    let confirm = app
        .client
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(confirm.contains("and declare an incident"), "{confirm}");
    let done = app
        .client
        .post(&link)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("declare=1&severity=SEV1")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let done = done.text().await.unwrap();
    assert!(
        done.contains("Alert #1 is acknowledged; incident #1 declared"),
        "{done}"
    );
    let (subject, _) = next_message(&mut h.execs).await;
    assert_eq!(subject, "[SEV1] disk full — Investigating");
    let declared = incident(&app, 1).await;
    assert_eq!(declared["owner"], "carol");
    assert_eq!(declared["declared_by"], "carol (link)");
    assert_eq!(declared["alerts"], json!([1]));
    app.stop().await;
}

/// The export shows each run of a linked check once: its duration, exit status and the end
/// of its output; runs that overlapped another or hung are named as such.
#[tokio::test]
async fn the_export_shows_runs_with_duration_exit_status_and_output_tail() {
    let app = spawn_app_with(AppOptions::default()).await;
    let h = hooks().await;
    apply(&app, &config(&h)).await;
    let check = app
        .create_check(json!({"name": "nightly", "timeout": 3600, "grace": 60,
                              "max_runtime": 600, "service": "billing"}))
        .await;
    let uuid = check["uuid"].as_str().unwrap().to_string();
    let a = "6f0f8d4e-2a4e-4a53-9a43-0c1a2b3c4d01";
    let b = "6f0f8d4e-2a4e-4a53-9a43-0c1a2b3c4d02";
    app.ping("GET", &format!("/ping/{uuid}/start?rid={a}"), None)
        .await;
    app.advance(TimeDelta::seconds(30));
    app.ping("GET", &format!("/ping/{uuid}/start?rid={b}"), None)
        .await;
    app.advance(TimeDelta::seconds(65));
    let output: String = (1..=9).map(|i| format!("copied batch {i}\n")).collect();
    let (status, _, _) = app
        .ping(
            "POST",
            &format!("/ping/{uuid}/0?rid={b}"),
            Some(output.into_bytes()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.advance(TimeDelta::seconds(30));
    let (status, _, _) = app
        .ping(
            "POST",
            &format!("/ping/{uuid}/fail?rid={a}"),
            Some(format!("ERROR: {}\n", "x".repeat(300)).into_bytes()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // An anonymous run that never finishes: hung after its 10-minute max runtime.
    app.ping("GET", &format!("/ping/{uuid}/start"), None).await;
    app.advance(TimeDelta::seconds(700));
    app.engine.settled().await;
    let (status, declared) = post(
        &app,
        "/api/v1/incidents/",
        json!({"title": "export runs", "owner": "alice", "checks": [uuid]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{declared}");
    let id = declared["id"].as_i64().unwrap();
    let (status, export) = app
        .get(&format!("/api/v1/incidents/{id}/export?format=json"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let runs: Vec<&Value> = export["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "run")
        .collect();
    assert_eq!(runs.len(), 3, "{export}");
    // No start or finish ping is left over as its own entry.
    assert!(
        !export["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "ping"),
        "{export}"
    );
    let (first, second, third) = (&runs[0]["run"], &runs[1]["run"], &runs[2]["run"]);
    assert_eq!(first["rid"], a);
    assert_eq!(first["outcome"], "failed");
    assert_eq!(first["duration_seconds"], 125.0);
    assert_eq!(first["exit_status"], Value::Null);
    assert_eq!(first["overlapped"].as_array().unwrap().len(), 1);
    assert_eq!(first["output_cut"], false);
    assert!(first["output_tail"][0].as_str().unwrap().ends_with(" […]"));
    assert_eq!(second["rid"], b);
    assert_eq!(second["outcome"], "succeeded");
    assert_eq!(second["exit_status"], 0);
    assert_eq!(second["duration_seconds"], 65.0);
    assert_eq!(second["output_lines_hidden"], 4);
    assert_eq!(
        second["output_tail"],
        json!([
            "copied batch 5",
            "copied batch 6",
            "copied batch 7",
            "copied batch 8",
            "copied batch 9"
        ])
    );
    assert_eq!(third["outcome"], "hung");
    assert!(third["hung_at"].is_string(), "{third}");

    let (status, markdown) = app
        .get(&format!(
            "/api/v1/incidents/{id}/export?format=markdown&tz=America/Denver"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let markdown = markdown.as_str().unwrap();
    assert!(
        markdown.contains(&format!(
            "nightly: run {b} succeeded after 1m 05s, exit status 0; OVERLAPPING"
        )),
        "{markdown}"
    );
    assert!(
        markdown.contains("  output (last 5 lines; 4 earlier not shown):\n  > copied batch 5\n"),
        "{markdown}"
    );
    assert!(
        markdown.contains(&format!(
            "nightly: run {a} failed after 2m 05s, reported failure"
        )),
        "{markdown}"
    );
    assert!(
        markdown.contains("nightly: run hung: no finish ping; HUNG: past its max runtime 10m 00s"),
        "{markdown}"
    );
    app.stop().await;
}

/// A person from the file who is a stakeholder hears every update through each contact
/// their low-urgency rules name, all at once (a rule's delay is for paging), once each.
#[tokio::test]
async fn a_person_stakeholder_hears_through_each_low_urgency_contact_once() {
    let app = spawn_app_with(AppOptions::default()).await;
    let h = hooks().await;
    let mut dave_hook = Receiver::start(vec![]).await;
    let mut dave_slack = Receiver::start(vec![]).await;
    let file = format!(
        "{}[[people]]\nid = \"dave\"\ntz = \"Asia/Tokyo\"\n\
         contacts = {{ webhook = \"{}\", slack = \"{}\" }}\n\
         rules = [{{ urgency = \"low\", contact = \"webhook\", after = 0 }},\n\
                  {{ urgency = \"low\", contact = \"slack\", after = 20 }},\n\
                  {{ urgency = \"low\", contact = \"webhook\", after = 40 }},\n\
                  {{ urgency = \"high\", contact = \"webhook\", after = 0 }}]\n\
         [[stakeholders]]\nname = \"board\"\nmembers = [{{ person = \"dave\" }}]\n",
        config(&h),
        dave_hook.url,
        dave_slack.url
    );
    apply(&app, &file).await;
    let (status, declared) = post(
        &app,
        "/api/v1/incidents/",
        json!({"title": "exports stalled", "owner": "alice", "severity": "SEV1",
               "stakeholders": ["board"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{declared}");
    let id = declared["id"].as_i64().unwrap();
    let (_, text) = next_message(&mut dave_hook).await;
    assert!(text.contains("exports stalled"), "{text}");
    assert!(text.contains("JST"), "in dave's zone: {text}");
    let slack = dave_slack.next().await.json();
    assert!(slack.to_string().contains("exports stalled"), "{slack}");
    // No repeat later, whatever the rules' delays.
    app.advance(TimeDelta::minutes(45));
    quiet(&app, &mut dave_hook, "dave's webhook").await;
    quiet(&app, &mut dave_slack, "dave's slack").await;
    let (status, _) = post(
        &app,
        &format!("/api/v1/incidents/{id}/updates"),
        json!({"status": "identified", "message": "a stray lock"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, text) = next_message(&mut dave_hook).await;
    assert!(text.contains("a stray lock"), "{text}");
    assert!(
        dave_slack
            .next()
            .await
            .json()
            .to_string()
            .contains("a stray lock")
    );
    quiet(&app, &mut dave_hook, "dave's webhook").await;
    quiet(&app, &mut dave_slack, "dave's slack").await;
    let messages = app.store.incident_messages(id).await.unwrap();
    let dave: Vec<(&str, &str)> = messages
        .iter()
        .filter(|m| m.person.as_deref() == Some("dave"))
        .map(|m| (m.contact.as_deref().unwrap(), m.state.as_str()))
        .collect();
    assert_eq!(
        dave,
        [
            ("webhook", "sent"),
            ("slack", "sent"),
            ("webhook", "sent"),
            ("slack", "sent")
        ]
    );
    app.stop().await;
}
