//! The dispatcher on its own (no HTTP server): a queued page is rendered for its contact and
//! handed to the transport, recorded in the alert's log, and only while this process holds
//! the delivery lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keepwatch_engine::channels::{Body, RecordingTransport, Request};
use keepwatch_engine::delivery::{Dispatcher, LinkSigner};
use keepwatch_engine::lease::{Lease, Work};
use keepwatch_engine::rounds::next_round;
use keepwatch_engine::{EngineConfig, ManualClock};
use keepwatch_store::{AlertSource, NewAlert, NewPage, PagingRecord, Store, Timestamp, Urgency};
use tokio::sync::Notify;

/// A lease switched by the test.
struct Switch(AtomicBool);

impl Lease for Switch {
    fn holds(&self, work: Work) -> bool {
        work == Work::Delivery && self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_page_is_sent_once_and_only_while_the_lease_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let project = store
        .create_project("default", Timestamp::from_micros(1))
        .await
        .unwrap();
    let new = NewAlert {
        project_id: project.id,
        service: "billing",
        dedup_key: "db1",
        summary: "disk full",
        source: AlertSource::Events,
        details: "{}",
    };
    let one_second = Timestamp::from_micros(1_000_000);
    let (alert, _) = store
        .trigger_alert(&new, Urgency::High, one_second)
        .await
        .unwrap();
    let page = NewPage {
        person: "alice".into(),
        contact: "slack".into(),
        address: "https://hooks.slack.com/services/T1/B1/x".into(),
        urgency: Urgency::High,
        due_at: one_second,
    };
    let record = PagingRecord {
        alert_id: alert.id,
        paged_from: alert.paged_until,
        paged_until: one_second,
        log: Vec::new(),
        pages: vec![page],
        raised_at: None,
    };
    assert!(store.record_paging(&record, one_second).await.unwrap());

    let transport = Arc::new(RecordingTransport::default());
    let lease = Arc::new(Switch(AtomicBool::new(false)));
    let wake = Arc::new(Notify::new());
    let links = LinkSigner {
        secret: "s3cret".into(),
        site_url: "https://kw.example".into(),
    };
    let dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(ManualClock::new(
            Timestamp::from_micros(2_000_000).to_datetime(),
        )),
        EngineConfig::default(),
        wake.clone(),
        transport.clone(),
        links,
        lease.clone(),
    );
    let rounds = dispatcher.rounds();
    tokio::spawn(dispatcher.run());

    // Without the lease a round sends nothing.
    assert_eq!(next_round(&rounds, &wake).await, Some(true));
    assert!(transport.sent().is_empty());

    lease.0.store(true, Ordering::SeqCst);
    while next_round(&rounds, &wake).await == Some(false) {}
    let sent = transport.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let Request::Post {
        url,
        body: Body::Json(body),
        ..
    } = &sent[0]
    else {
        panic!("a Slack page is a JSON post: {sent:?}")
    };
    assert_eq!(url, "https://hooks.slack.com/services/T1/B1/x");
    let text = serde_json::from_slice::<serde_json::Value>(body).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.starts_with(
            "*[HIGH] disk full (billing)*\n#1 disk full (billing): <https://kw.example/a/1.ack."
        ),
        "{text}"
    );
    let log = store.alert_log(alert.id).await.unwrap();
    let notified: Vec<(&str, &str)> = log
        .iter()
        .filter(|entry| entry.kind == "notified")
        .map(|entry| (entry.who.as_str(), entry.detail.as_str()))
        .collect();
    assert_eq!(notified, [("alice via slack", "recorded")]);

    // Nothing is sent twice.
    assert_eq!(next_round(&rounds, &wake).await, Some(true));
    assert_eq!(transport.sent().len(), 1);
}

/// The alert ids a recorded webhook message is about: one page's, or a summary's.
fn alert_ids(request: &Request) -> Vec<i64> {
    let Request::Post {
        body: Body::Json(body),
        ..
    } = request
    else {
        panic!("a webhook page is a JSON post: {request:?}")
    };
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    match json["pages"].as_array() {
        Some(pages) => pages
            .iter()
            .map(|p| p["alert"]["id"].as_i64().unwrap())
            .collect(),
        None => vec![json["alert"]["id"].as_i64().unwrap()],
    }
}

/// Queues a page of `alert` to alice's webhook, due at `at` (seconds).
async fn queue_page(store: &Store, alert: &keepwatch_store::AlertRow, urgency: Urgency, at: i64) {
    let at = Timestamp::from_micros(at * 1_000_000);
    let paged_from = store.alert(alert.id).await.unwrap().unwrap().paged_until;
    let record = PagingRecord {
        alert_id: alert.id,
        paged_from,
        paged_until: at,
        log: Vec::new(),
        raised_at: None,
        pages: vec![NewPage {
            person: "alice".into(),
            contact: "webhook".into(),
            address: "http://127.0.0.1:9/alice".into(),
            urgency,
            due_at: at,
        }],
    };
    assert!(store.record_paging(&record, at).await.unwrap());
}

/// Five alerts within a minute to one address, with a limit of two messages per window: each
/// alert's first page goes out in the round it falls due (none waits for the window), and
/// only repeats beyond the limit fold into a summary, which goes out at once.
#[tokio::test]
async fn five_alerts_in_a_minute_never_delay_the_fifth_alerts_first_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let project = store
        .create_project("default", Timestamp::from_micros(1))
        .await
        .unwrap();
    let start = 100;
    let clock = Arc::new(ManualClock::new(
        Timestamp::from_micros(start * 1_000_000).to_datetime(),
    ));
    let transport = Arc::new(RecordingTransport::default());
    let wake = Arc::new(Notify::new());
    let config = EngineConfig {
        page_rate_limit: 2,
        ..EngineConfig::default()
    };
    let dispatcher = Dispatcher::new(
        store.clone(),
        clock.clone(),
        config,
        wake.clone(),
        transport.clone(),
        LinkSigner {
            secret: "s3cret".into(),
            site_url: "https://kw.example".into(),
        },
        Arc::new(Switch(AtomicBool::new(true))),
    );
    let rounds = dispatcher.rounds();
    tokio::spawn(dispatcher.run());

    let mut alerts = Vec::new();
    for i in 0..5i64 {
        let at = start + i * 12;
        clock.set(Timestamp::from_micros(at * 1_000_000).to_datetime());
        let dedup = format!("disk-{i}");
        let summary = format!("disk {i} full");
        let new = NewAlert {
            project_id: project.id,
            service: "billing",
            dedup_key: &dedup,
            summary: &summary,
            source: AlertSource::Events,
            details: "{}",
        };
        // The first four are low urgency; the fifth is high.
        let urgency = if i == 4 { Urgency::High } else { Urgency::Low };
        let (alert, _) = store
            .trigger_alert(&new, urgency, Timestamp::from_micros(at * 1_000_000))
            .await
            .unwrap();
        queue_page(&store, &alert, urgency, at).await;
        while next_round(&rounds, &wake).await == Some(false) {}
        let sent = transport.sent();
        assert_eq!(
            sent.len(),
            i as usize + 1,
            "alert {i} paged at once: {sent:?}"
        );
        assert_eq!(alert_ids(sent.last().unwrap()), [alert.id]);
        alerts.push(alert);
    }
    assert!(
        store
            .alert_log(alerts[4].id)
            .await
            .unwrap()
            .iter()
            .all(|entry| entry.kind != "rate_limited"),
        "a first page is never held or folded"
    );

    // Two repeats (of alerts 0 and 1) fall due together beyond the limit: one summary, now.
    let at = start + 60;
    clock.set(Timestamp::from_micros(at * 1_000_000).to_datetime());
    queue_page(&store, &alerts[0], Urgency::Low, at).await;
    queue_page(&store, &alerts[1], Urgency::Low, at).await;
    while next_round(&rounds, &wake).await == Some(false) {}
    let sent = transport.sent();
    assert_eq!(sent.len(), 6, "{sent:?}");
    let mut folded = alert_ids(&sent[5]);
    folded.sort();
    assert_eq!(folded, [alerts[0].id, alerts[1].id]);
    let log = store.alert_log(alerts[0].id).await.unwrap();
    let limited: Vec<&str> = log
        .iter()
        .filter(|entry| entry.kind == "rate_limited")
        .map(|entry| entry.detail.as_str())
        .collect();
    assert_eq!(
        limited,
        ["2 messages to this address within 15m: repeats go out in one summary"]
    );
}
