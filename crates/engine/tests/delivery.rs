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
