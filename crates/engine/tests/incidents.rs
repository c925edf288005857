//! Incidents in the engine alone: a manual clock and the recording transport, so exactly
//! what each stakeholder and the owner were sent, and when, is asserted, in each format
//! (email, Slack, Discord, Teams, webhook) as its reader sees it.

use std::sync::Arc;

use chrono::{TimeDelta, TimeZone, Utc};
use keepwatch_core::incident::{IncidentStatus, Severity};
use keepwatch_engine::channels::{Body, RecordingTransport, Request};
use keepwatch_engine::incidents::{Declare, Update};
use keepwatch_engine::{Engine, EngineConfig, ManualClock};
use keepwatch_store::{AppliedBy, Store, Timestamp};
use serde_json::Value;

const FILE: &str = r#"
[[people]]
id = "alice"
tz = "America/Denver"
contacts = { email = "alice@example.com" }
rules = [{ urgency = "high", contact = "email", after = 0 }]
[[people]]
id = "carol"
contacts = { email = "carol@example.com" }
rules = [{ urgency = "high", contact = "email", after = 0 }]
[[policies]]
name = "p"
steps = [{ targets = ["user:carol"], delay = 10 }]
[[services]]
name = "billing"
policy = "p"
stakeholders = ["execs"]
[[stakeholders]]
name = "execs"
members = [
  { email = "cfo@example.com", tz = "Europe/Paris" },
  { slack = "https://hooks.slack.com/services/T/B/x" },
  { discord = "https://discord.com/api/webhooks/1/x" },
  { teams = "https://example.webhook.office.com/x" },
  { webhook = "https://status.example.com/hook" },
]
"#;

/// Who a request went to, and what they read.
fn read(request: &Request) -> (String, String) {
    match request {
        Request::Email {
            to, subject, body, ..
        } => (to.clone(), format!("{subject}\n{body}")),
        Request::Post {
            url,
            body: Body::Json(body),
            ..
        } => {
            let json: Value = serde_json::from_slice(body).unwrap();
            let text = if let Some(t) = json["text"].as_str() {
                t.to_string()
            } else if let Some(c) = json["content"].as_str() {
                c.to_string()
            } else {
                json.to_string()
            };
            (url.clone(), text)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn each_stakeholder_reads_the_update_in_their_format_and_zone_and_the_owner_is_reminded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let project = store
        .create_project("default", Timestamp::default())
        .await
        .unwrap();
    store
        .apply_oncall(
            project.id,
            FILE,
            &[],
            &AppliedBy::default(),
            Timestamp::default(),
        )
        .await
        .unwrap();
    let start = Utc.with_ymd_and_hms(2026, 12, 5, 7, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let transport = Arc::new(RecordingTransport::default());
    let (engine, _tasks) = Engine::start_with(
        store.clone(),
        clock.clone(),
        EngineConfig {
            site_url: "https://kw.example".into(),
            ..EngineConfig::default()
        },
        transport.clone(),
    )
    .await
    .unwrap();
    let incident = engine
        .incidents()
        .declare(Declare {
            project_id: project.id,
            title: Some("Nightly export failing".into()),
            severity: Some(Severity::Sev1),
            owner: Some("alice".into()),
            service: Some("billing".into()),
            impact: Some("Client events since midnight are not processed".into()),
            who: "carol".into(),
            ..Declare::default()
        })
        .await
        .unwrap();
    engine.settled().await;
    let token = &incident.token;
    let sent: Vec<(String, String)> = transport.sent().iter().map(read).collect();
    assert_eq!(sent.len(), 6, "five stakeholders and the owner: {sent:#?}");
    let to = |who: &str| {
        sent.iter()
            .find(|(address, _)| address == who)
            .unwrap_or_else(|| panic!("nothing to {who}: {sent:#?}"))
            .1
            .clone()
    };
    let body = format!(
        "[SEV1] Nightly export failing — Investigating\nIncident #1 · Sat 5 Dec 2026 08:00 CET\n\n\
         An incident was declared. Investigating: Client events since midnight are not processed.\n\n\
         Impact: Client events since midnight are not processed\nOwner: alice\n\
         Next update by 08:30 CET.\nAll updates: https://kw.example/s/{token}\n"
    );
    assert_eq!(
        to("cfo@example.com"),
        format!("[keepwatch] [SEV1] Nightly export failing — Investigating\n{body}")
    );
    let utc = body
        .replace("08:00 CET", "07:00 UTC")
        .replace("08:30 CET", "07:30 UTC");
    assert_eq!(
        to("https://hooks.slack.com/services/T/B/x"),
        format!("*[SEV1] Nightly export failing — Investigating*\n{utc}")
    );
    assert_eq!(
        to("https://discord.com/api/webhooks/1/x"),
        format!("**[SEV1] Nightly export failing — Investigating**\n{utc}")
    );
    let teams = to("https://example.webhook.office.com/x");
    assert!(
        teams.contains("Next update by 07:30 UTC.") && !teams.contains("\\\"incident\\\""),
        "an Adaptive Card with the text: {teams}"
    );
    let hook: Value = transport
        .sent()
        .iter()
        .find_map(|r| match r {
            Request::Post {
                url,
                body: Body::Json(body),
                ..
            } if url == "https://status.example.com/hook" => serde_json::from_slice(body).ok(),
            _ => None,
        })
        .unwrap();
    assert_eq!(hook["incident"]["id"], 1);
    assert_eq!(hook["incident"]["status"], "investigating");
    assert_eq!(hook["kind"], "incident_update");
    assert_eq!(hook["text"], utc.as_str());
    assert!(to("alice@example.com").starts_with(
        "[keepwatch] You own incident #1: Nightly export failing\nYou own incident #1 \
         \"Nightly export failing\" (SEV1), declared by carol.\n\
         The next stakeholder update is due by 00:30 MST."
    ));

    // 07:20: alice is reminded, in Denver time, through her own rule; nobody else hears.
    clock.advance(TimeDelta::minutes(19));
    engine.settled().await;
    assert_eq!(transport.sent().len(), 6, "not before 07:20");
    clock.advance(TimeDelta::minutes(1));
    engine.settled().await;
    let reminder: Vec<(String, String)> = transport.sent()[6..].iter().map(read).collect();
    assert_eq!(
        reminder,
        [(
            "alice@example.com".to_string(),
            "[keepwatch] Incident #1: update due by 00:30 MST\nIncident #1 \"Nightly export \
             failing\": the next stakeholder update is due by 00:30 MST.\nPost it with: \
             keepwatch incident update 1 --status <status> -m \"…\" (or --no-news -m \"<what is \
             being done>\")\n"
                .to_string()
        )]
    );

    // 07:25: a no-news update; the CFO reads it in Paris time.
    clock.advance(TimeDelta::minutes(5));
    let updated = engine
        .incidents()
        .update(
            project.id,
            incident.id,
            Update {
                status: None,
                message: "rerunning the export by hand".into(),
                no_news: true,
                who: "alice".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.status, IncidentStatus::Investigating);
    engine.settled().await;
    let cfo: Vec<String> = transport.sent()[7..]
        .iter()
        .map(read)
        .filter(|(to, _)| to == "cfo@example.com")
        .map(|(_, text)| text)
        .collect();
    assert_eq!(cfo.len(), 1);
    assert!(
        cfo[0].contains(
            "No new information since 08:00 CET. We are still investigating: rerunning the \
             export by hand. Next update by 08:55 CET.\n"
        ),
        "{}",
        cfo[0]
    );
    assert_eq!(transport.sent().len(), 12, "five stakeholders more");
}
