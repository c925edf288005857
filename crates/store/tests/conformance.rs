//! One storage story run against both backends: a temporary SQLite file and a fresh
//! PostgreSQL database (see [`PgDatabase`]); when PostgreSQL is unreachable the test fails:
//! CI must not pass without it.

use chrono::TimeDelta;
use keepwatch_core::check::Status;
use keepwatch_store::testing::PgDatabase;
use keepwatch_store::{AlertSource, AlertStatus, NewAlert, Urgency};
use keepwatch_store::{
    AttemptResult, Batch, CheckRow, EventRow, FlipRow, PingRow, StateRow, StateUpdate, Store,
    Timestamp,
};

/// The alert most stories trigger: `disk full` on `billing`, from the events API.
fn disk_full(project_id: i64) -> NewAlert<'static> {
    NewAlert {
        project_id,
        service: "billing",
        dedup_key: "db1",
        summary: "disk full",
        source: AlertSource::Events,
        details: "{}",
    }
}

/// A time, in microseconds since the epoch.
fn us(micros: i64) -> Timestamp {
    Timestamp::from_micros(micros)
}

fn check(project_id: i64, name: &str, slug: &str) -> CheckRow {
    CheckRow {
        id: 0,
        uuid: uuid::Uuid::new_v4().to_string(),
        project_id,
        name: name.into(),
        slug: slug.into(),
        tags: "prod etl".into(),
        descr: String::new(),
        kind: "cron".into(),
        timeout_secs: 86400,
        grace_secs: 3600,
        schedule: "0 0 * * *".into(),
        tz: "America/Denver".into(),
        max_runtime_secs: Some(600),
        manual_resume: false,
        service: Some("billing".into()),
        extra: "{}".into(),
        created_at: us(1),
        notify_late: true,
        depends_on: r#"["0b5c4a39-5c8a-4a55-9d1e-1f7a3b2c9d10"]"#.into(),
        state: StateRow {
            status: Status::New,
            open_runs: "[]".into(),
            ..StateRow::default()
        },
    }
}

fn ping(seq: i64, check_id: i64, n: i64, body: Option<&[u8]>) -> PingRow {
    PingRow {
        seq,
        check_id,
        prev_seq: (seq > 1).then(|| seq - 1),
        n,
        at: us(1_000_000 * seq),
        kind: if n == 1 {
            "start".into()
        } else {
            "exit:0".into()
        },
        scheme: "http".into(),
        method: "POST".into(),
        remote_addr: "127.0.0.1".into(),
        ua: "curl".into(),
        rid: Some("05b551e0-ffff-409d-8ba6-2e8967262584".into()),
        host: Some("web1".into()),
        pid: Some(4242),
        volume: Some(17),
        body: body.map(<[u8]>::to_vec),
        body_truncated: body.is_some_and(|b| b.len() > 3),
        duration_ms: (n > 1).then_some(1500),
    }
}

async fn story(store: Store) {
    // Projects and keys.
    let project = store.create_project("default", us(1)).await.unwrap();
    assert_eq!(project.ping_key.len(), 22);
    assert!(
        store.create_project("default", us(1)).await.is_err(),
        "names are unique"
    );
    let other = store.create_project("other", us(1)).await.unwrap();
    assert_eq!(
        store.project_by_ping_key(&project.ping_key).await.unwrap(),
        Some(project.clone())
    );
    let key = store
        .create_api_key(project.id, false, "", us(1))
        .await
        .unwrap();
    let read_key = store
        .create_api_key(project.id, true, "", us(1))
        .await
        .unwrap();
    assert_eq!(key.len(), 32);
    let scope = store.api_key_scope(&key).await.unwrap().unwrap();
    assert_eq!((scope.project_id, scope.read_only), (project.id, false));
    assert!(
        store
            .api_key_scope(&read_key)
            .await
            .unwrap()
            .unwrap()
            .read_only
    );
    assert_eq!(store.api_key_scope("nope").await.unwrap(), None);

    // Checks.
    let mut nightly = check(project.id, "nightly", "nightly");
    nightly.id = store.insert_check(&nightly).await.unwrap();
    let mut theirs = check(other.id, "theirs", "nightly");
    theirs.id = store.insert_check(&theirs).await.unwrap();
    assert_eq!(
        store.check_by_uuid(&nightly.uuid).await.unwrap(),
        Some(nightly.clone())
    );
    assert_eq!(
        store.list_checks(project.id).await.unwrap(),
        vec![nightly.clone()]
    );
    assert_eq!(
        store
            .checks_by_slug(project.id, "nightly")
            .await
            .unwrap()
            .len(),
        1
    );
    nightly.name = "Nightly events".into();
    nightly.max_runtime_secs = None;
    store.update_check(&nightly).await.unwrap();
    assert_eq!(
        store.check_by_id(nightly.id).await.unwrap().unwrap().name,
        "Nightly events"
    );
    // The engine's start-up load reads `notify_late` and `depends_on` too (issue #21).
    let mut seen = Vec::new();
    store
        .for_each_check(|row| seen.push((row.id, row.notify_late, row.depends_on)))
        .await
        .unwrap();
    assert_eq!(
        seen,
        vec![
            (nightly.id, true, nightly.depends_on.clone()),
            (theirs.id, true, theirs.depends_on.clone())
        ]
    );
    nightly.notify_late = false;
    nightly.depends_on = "[]".into();
    store.update_check_config(&nightly).await.unwrap();
    let stored = store.check_by_id(nightly.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.notify_late, stored.depends_on.as_str()),
        (false, "[]")
    );

    // Channels.
    let hook = store
        .create_channel(
            project.id,
            "hook",
            "webhook",
            r#"{"url":"http://127.0.0.1:9/"}"#,
            us(1),
        )
        .await
        .unwrap();
    store
        .set_check_channels(nightly.id, &[hook.id])
        .await
        .unwrap();
    assert_eq!(
        store.check_channels(nightly.id).await.unwrap(),
        vec![hook.clone()]
    );
    assert_eq!(store.list_channels(other.id).await.unwrap(), vec![]);

    // A writer batch: two pings, a state change with its flip, an event for the channel.
    let batch = Batch {
        pings: vec![
            ping(1, nightly.id, 1, None),
            ping(2, nightly.id, 2, Some(b"hello")),
        ],
        states: vec![StateUpdate {
            check_id: nightly.id,
            state: StateRow {
                status: Status::Up,
                down_reason: None,
                last_ping: Some(us(2_000_000)),
                n_pings: 2,
                last_duration_ms: Some(1500),
                open_runs: "[]".into(),
                history: r#"{"volumes":[120,80]}"#.into(),
                last_seq: Some(2),
                checkpoint_seq: 2,
            },
        }],
        flips: vec![FlipRow {
            check_id: nightly.id,
            at: us(2_000_000),
            old_status: Status::New,
            new_status: Status::Up,
        }],
        events: vec![EventRow {
            check_id: nightly.id,
            kind: "up".into(),
            at: us(2_000_000),
            payload: serde_json::json!({"kind": "up"}),
        }],
        inbox_done: Vec::new(),
        fence: None,
    };
    assert_eq!(
        store.commit_batch(&batch, us(2_000_000)).await.unwrap(),
        1,
        "one outbox row per channel"
    );
    assert_eq!(store.max_ping_seq().await.unwrap(), 2);
    // The end of a ping's body, for the postmortem's output tails; pings without one are
    // left out.
    let tails = store.ping_body_tails(&[1, 2, 99], 3).await.unwrap();
    assert_eq!(tails.len(), 1);
    assert_eq!(tails[&2], ("llo".to_string(), true));
    assert_eq!(
        store.ping_body_tails(&[2], 100).await.unwrap()[&2],
        ("hello".to_string(), true),
        "cut at ingest"
    );
    assert_eq!(
        store
            .check_events_between(nightly.id, us(1_000_000), us(2_000_000))
            .await
            .unwrap()
            .iter()
            .map(|(at, kind, _)| (*at, kind.as_str()))
            .collect::<Vec<_>>(),
        vec![(us(2_000_000), "up")]
    );
    assert!(
        store
            .check_events_between(nightly.id, us(2_000_001), us(9_000_000))
            .await
            .unwrap()
            .is_empty()
    );
    let stored = store.check_by_id(nightly.id).await.unwrap().unwrap();
    assert_eq!(stored.state.status, Status::Up);
    assert_eq!(stored.state.history, r#"{"volumes":[120,80]}"#);
    assert_eq!(
        (stored.state.last_seq, stored.state.checkpoint_seq),
        (Some(2), 2)
    );
    // A batch that fails part-way (its second ping reuses seq 2) leaves nothing behind, and
    // the writer goes on committing (the sweep story below commits through it again).
    let failing = Batch {
        pings: vec![ping(3, nightly.id, 3, None), ping(2, nightly.id, 3, None)],
        ..Batch::default()
    };
    assert!(store.commit_batch(&failing, us(3_000_000)).await.is_err());
    assert_eq!(store.max_ping_seq().await.unwrap(), 2);

    // Pings are listed by walking the chain from the head, newest first, bodies elided but
    // marked present; one ping is fetched with its body.
    let pings = store.list_pings(nightly.id, Some(2), 10).await.unwrap();
    assert_eq!(pings.iter().map(|p| p.n).collect::<Vec<_>>(), vec![2, 1]);
    assert_eq!(pings[0].body.as_deref(), Some(&b""[..]));
    assert_eq!(pings[1].body, None);
    assert_eq!(pings[0].volume, Some(17));
    assert_eq!(pings[0].pid, Some(4242));
    assert!(pings[0].body_truncated);
    assert_eq!(
        store
            .list_pings(nightly.id, Some(2), 1)
            .await
            .unwrap()
            .len(),
        1,
        "limit"
    );
    assert!(
        store
            .list_pings(theirs.id, Some(2), 10)
            .await
            .unwrap()
            .is_empty(),
        "another check's chain"
    );
    let body = store
        .ping(nightly.id, Some(2), 100, 2)
        .await
        .unwrap()
        .unwrap()
        .body;
    assert_eq!(body.as_deref(), Some(&b"hello"[..]));
    assert_eq!(store.ping(nightly.id, Some(2), 100, 7).await.unwrap(), None);

    // Replay reads pings after the mark; the checkpoint moves the mark.
    assert_eq!(store.replay_from().await.unwrap(), 0);
    let mut replay = Vec::new();
    store
        .for_each_ping_after(0, |p| replay.push(p.seq))
        .await
        .unwrap();
    assert_eq!(replay, vec![1, 2]);
    store.checkpoint(&[], 2, None, us(3)).await.unwrap();
    assert_eq!(store.replay_from().await.unwrap(), 2);
    store.checkpoint(&[], 1, None, us(3)).await.unwrap();
    assert_eq!(
        store.replay_from().await.unwrap(),
        1,
        "the mark is overwritten"
    );

    // The sweep keeps the newest `keep` pings of each check (by its stored count).
    assert_eq!(
        store.prune_pings(0, 3, 1).await.unwrap(),
        (1, None),
        "one ping pruned; fewer than 3 pings from seq 0 on, so the log ends in this step"
    );
    let pings = store.list_pings(nightly.id, Some(2), 10).await.unwrap();
    assert_eq!(
        pings.iter().map(|p| p.n).collect::<Vec<_>>(),
        vec![2],
        "n=1 pruned"
    );

    let flips = store
        .list_flips(nightly.id, us(0), us(i64::MAX))
        .await
        .unwrap();
    assert_eq!(flips.len(), 1);
    assert!(
        store
            .list_flips(nightly.id, us(3_000_000), us(i64::MAX))
            .await
            .unwrap()
            .is_empty()
    );

    // Outbox: claim, fail with a retry, claim again when due, succeed.
    let except = store
        .claim_due_except(us(2_000_000), us(9_000_000), 10, &[hook.id])
        .await
        .unwrap();
    assert!(except.is_empty(), "rows of a busy channel are left");
    let claimed = store
        .claim_due(us(2_000_000), us(9_000_000), 10)
        .await
        .unwrap();
    assert_eq!(claimed[0].channel_id, hook.id);
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].channel_kind, "webhook");
    assert!(
        store
            .claim_due(us(2_000_000), us(9_000_000), 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let outbox_id = claimed[0].outbox_id;
    store
        .record_attempt(&AttemptResult {
            outbox_id,
            at: us(3_000_000),
            ok: false,
            detail: "HTTP 500".into(),
            took_ms: 3,
            retry_at: Some(us(4_000_000)),
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .next_message_due(keepwatch_store::MessageKind::ChannelEvent)
            .await
            .unwrap(),
        Some(us(4_000_000))
    );
    assert!(
        store
            .claim_due(us(3_500_000), us(9_000_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_due(us(4_000_000), us(9_000_000), 10)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 1);
    store
        .record_attempt(&AttemptResult {
            outbox_id,
            at: us(4_100_000),
            ok: true,
            detail: "HTTP 200".into(),
            took_ms: 2,
            retry_at: None,
        })
        .await
        .unwrap();
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    let notes = store.list_notifications(nightly.id, 10).await.unwrap();
    assert_eq!((notes[0].state.as_str(), notes[0].attempts), ("sent", 2));
    assert_eq!(notes[0].last_error.as_deref(), Some("HTTP 500"));
    let attempts = store.list_attempts(&[outbox_id]).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.ok).collect::<Vec<_>>(),
        vec![false, true]
    );

    // Deleting a check removes its pings and notifications, not other projects' checks.
    store.delete_check(nightly.id).await.unwrap();
    assert_eq!(store.check_by_uuid(&nightly.uuid).await.unwrap(), None);
    assert_eq!(
        store.prune_pings(0, 10, 100).await.unwrap().0,
        1,
        "a deleted check's pings are swept"
    );
    assert!(
        store
            .list_pings(nightly.id, Some(2), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_notifications(nightly.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count_checks().await.unwrap(), 1);
    oncall_story(&store).await;
    alert_story(&store).await;
    alert_update_story(&store).await;
    event_intake_story(&store).await;
    verification_story(&store).await;
    incident_story(&store).await;
    sweep_story(&store, project.id).await;
    inbox_story(&store, project.id).await;
    store.ping_db().await.unwrap();
    store.close().await;
}

/// The inbox keeps entries in order until they are applied: a ping's entry is deleted with
/// the batch that stores the ping, and not when that batch fails.
async fn inbox_story(store: &Store, project_id: i64) {
    use keepwatch_store::InboxRow;
    let mut row = check(project_id, "inboxed", "inboxed");
    row.id = store.insert_check(&row).await.unwrap();
    let entry = |kind: &str, body: Option<&[u8]>| InboxRow {
        id: 0,
        kind: kind.into(),
        check_uuid: row.uuid.clone(),
        received_at: us(5),
        instance: "b".into(),
        request: "{}".into(),
        body: body.map(<[u8]>::to_vec),
    };
    store
        .append_inbox(&[entry("ping", Some(b"\0binary")), entry("reload", None)])
        .await
        .unwrap();
    store.append_inbox(&[entry("pause", None)]).await.unwrap();
    let entries = store.inbox(10).await.unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["ping", "reload", "pause"]);
    assert_eq!(entries[0].body.as_deref(), Some(&b"\0binary"[..]));
    assert_eq!(entries[0].received_at, us(5));
    assert_eq!(store.inbox_depth().await.unwrap(), 3);
    assert_eq!(store.inbox(1).await.unwrap(), entries[..1]);
    // A batch that fails (a seq taken twice) leaves its entry; one that commits takes it.
    let seq = store.max_ping_seq().await.unwrap() + 1;
    let failing = Batch {
        pings: vec![ping(seq, row.id, 1, None), ping(seq, row.id, 2, None)],
        inbox_done: vec![(row.id, entries[0].id)],
        ..Batch::default()
    };
    assert!(store.commit_batch(&failing, us(6)).await.is_err());
    assert_eq!(store.inbox_depth().await.unwrap(), 3);
    let applied = Batch {
        pings: vec![ping(seq, row.id, 1, None)],
        inbox_done: vec![(row.id, entries[0].id)],
        ..Batch::default()
    };
    store.commit_batch(&applied, us(6)).await.unwrap();
    let left: Vec<i64> = store
        .inbox(10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [entries[1].id, entries[2].id]);
    store.delete_inbox(&left).await.unwrap();
    assert_eq!(store.inbox_depth().await.unwrap(), 0);
    // Which of these checks exist.
    let found = store
        .check_ids_by_uuid(&[row.uuid.clone(), uuid::Uuid::new_v4().to_string()])
        .await
        .unwrap();
    assert_eq!(found, [(row.uuid.clone(), row.id)]);
}

/// The sweep walks the log in steps of a given number of pings, whatever their seqs.
async fn sweep_story(store: &Store, project_id: i64) {
    let mut busy = check(project_id, "busy", "busy");
    busy.id = store.insert_check(&busy).await.unwrap();
    let first = store.max_ping_seq().await.unwrap() + 1;
    let batch = Batch {
        pings: (0..10)
            .map(|i| ping(first + i, busy.id, i + 1, None))
            .collect(),
        states: vec![StateUpdate {
            check_id: busy.id,
            state: StateRow {
                status: Status::Up,
                n_pings: 10,
                open_runs: "[]".into(),
                ..StateRow::default()
            },
        }],
        ..Batch::default()
    };
    store.commit_batch(&batch, us(0)).await.unwrap();
    // Keeping two of ten: each step of four pings deletes what it looked at, up to the
    // newest two, and says where the next step starts.
    assert_eq!(
        store.prune_pings(first, 4, 2).await.unwrap(),
        (4, Some(first + 4))
    );
    assert_eq!(
        store.prune_pings(first + 4, 4, 2).await.unwrap(),
        (4, Some(first + 8))
    );
    assert_eq!(
        store.prune_pings(first + 8, 4, 2).await.unwrap(),
        (0, None),
        "the newest two are kept, and the log ends within the step"
    );
    let kept = store
        .list_pings(busy.id, Some(first + 9), 10)
        .await
        .unwrap();
    assert_eq!(kept.iter().map(|p| p.n).collect::<Vec<_>>(), vec![10, 9]);
    // A step that starts in a swept stretch counts only the pings still there.
    assert_eq!(
        store.prune_pings(first, 1, 2).await.unwrap(),
        (0, Some(first + 9))
    );
}

/// The applied on-call configuration is replaced whole; feed tokens are made once and kept.
async fn oncall_story(store: &Store) {
    let project = store.create_project("oncall", us(1)).await.unwrap();
    assert_eq!(store.oncall_source(project.id).await.unwrap(), None);
    let feeds = store
        .apply_oncall(
            project.id,
            "v1",
            &[("schedule", "primary"), ("person", "alice")],
            &keepwatch_store::AppliedBy::default(),
            us(10),
        )
        .await
        .unwrap();
    assert_eq!(feeds.len(), 2);
    assert!(feeds.iter().all(|f| f.token.len() == 32));
    let again = store
        .apply_oncall(
            project.id,
            "v2",
            &[("schedule", "primary"), ("person", "bob")],
            &keepwatch_store::AppliedBy::default(),
            us(20),
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 3);
    let primary = |feeds: &[keepwatch_store::FeedRow]| {
        feeds
            .iter()
            .find(|f| f.name == "primary")
            .unwrap()
            .token
            .clone()
    };
    assert_eq!(primary(&feeds), primary(&again), "a feed keeps its token");
    assert_eq!(
        store.oncall_source(project.id).await.unwrap().as_deref(),
        Some("v2")
    );
    let found = store
        .feed_by_token(&primary(&again))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.kind.as_str(), found.project_id),
        ("schedule", project.id)
    );
    assert_eq!(store.feed_by_token("nope").await.unwrap(), None);

    // The parsed configuration is cached per apply: reads share one parse, and each apply,
    // even in the same microsecond, is a new version.
    let valid = "[[people]]\nid = \"alice\"\n";
    store
        .apply_oncall(
            project.id,
            valid,
            &[],
            &keepwatch_store::AppliedBy::default(),
            us(20),
        )
        .await
        .unwrap();
    let parses = store.oncall_parses();
    let first = store.oncall(project.id).await.unwrap().unwrap();
    assert_eq!(
        first.applied_at,
        us(21),
        "applied at 20 again: one more than before"
    );
    assert!(first.config.as_ref().unwrap().people.contains_key("alice"));
    assert_eq!(first.json.as_ref().unwrap()["people"][0]["id"], "alice");
    let second = store.oncall(project.id).await.unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(store.oncall_parses(), parses + 1);
    let versions = store.oncall_versions().await.unwrap();
    assert!(versions.contains(&(project.id, us(21))), "{versions:?}");

    // A changed file is logged in each open alert of the project; the same file again is not.
    let (alert, _) = store
        .trigger_alert(&disk_full(project.id), Urgency::High, us(30))
        .await
        .unwrap();
    let changed = "[[people]]\nid = \"bob\"\n";
    store
        .apply_oncall(
            project.id,
            changed,
            &[],
            &keepwatch_store::AppliedBy::default(),
            us(40),
        )
        .await
        .unwrap();
    store
        .apply_oncall(
            project.id,
            changed,
            &[],
            &keepwatch_store::AppliedBy::default(),
            us(50),
        )
        .await
        .unwrap();
    let applied: Vec<(Timestamp, String)> = store
        .alert_log(alert.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "config_applied")
        .map(|e| (e.at, e.detail))
        .collect();
    assert_eq!(
        applied,
        [(
            us(40),
            "on-call configuration applied: pending steps follow the new file".to_string()
        )]
    );
    let latest = store.oncall(project.id).await.unwrap().unwrap();
    assert_eq!(latest.applied_at, us(50));
    assert!(latest.config.as_ref().unwrap().people.contains_key("bob"));
    assert_eq!(store.oncall_parses(), parses + 2);

    // Who applied a file, and what it changed, is in the logs of the alerts open then.
    let changes = ["+ person carol".to_string(), "- person bob".to_string()];
    let by = keepwatch_store::AppliedBy {
        who: "api (carol)",
        changes: &changes,
    };
    let carol = "[[people]]\nid = \"carol\"\n";
    store
        .apply_oncall(project.id, carol, &[], &by, us(60))
        .await
        .unwrap();
    let log = store.alert_log(alert.id).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.who.as_str(), last.detail.as_str()),
        (
            "config_applied",
            "api (carol)",
            "on-call configuration applied (+ person carol; - person bob): \
             pending steps follow the new file"
        )
    );
    // Every apply is kept: the file in force at any time, and who applied it.
    let at = |micros| store.oncall_at(project.id, us(micros));
    assert_eq!(at(9).await.unwrap(), None);
    assert_eq!(at(10).await.unwrap().unwrap().source, "v1");
    assert_eq!(at(15).await.unwrap().unwrap().source, "v1");
    assert_eq!(at(45).await.unwrap().unwrap().source, changed);
    let now = at(i64::MAX).await.unwrap().unwrap();
    assert_eq!(
        (now.source.as_str(), now.applied_at, now.applied_by.as_str()),
        (carol, us(60), "api (carol)")
    );
}

/// A code verifies its contact once; wrong, expired, reused, re-addressed and too many tries
/// are told apart.
async fn verification_story(store: &Store) {
    use keepwatch_store::CodeCheck;
    let project = store.create_project("verify", us(0)).await.unwrap();
    let check = |code: &'static str, address: &'static str, now: i64| {
        store.check_verification(project.id, "alice", "email", address, code, us(now))
    };
    assert_eq!(check("111111", "a@x", 0).await.unwrap(), CodeCheck::NoCode);
    store
        .start_verification(project.id, "alice", "email", "a@x", "111111", us(1_000))
        .await
        .unwrap();
    assert_eq!(
        check("111111", "b@x", 0).await.unwrap(),
        CodeCheck::AddressChanged
    );
    assert_eq!(
        check("222222", "a@x", 0).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 4 }
    );
    assert_eq!(
        check("111111", "a@x", 2_000).await.unwrap(),
        CodeCheck::Expired
    );
    assert!(
        store
            .verified_contacts(project.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        check(" 111111 ", "a@x", 500).await.unwrap(),
        CodeCheck::Verified
    );
    assert_eq!(
        check("111111", "a@x", 500).await.unwrap(),
        CodeCheck::NoCode
    );
    assert_eq!(
        store.verified_contacts(project.id).await.unwrap(),
        [("alice".to_string(), "email".to_string(), "a@x".to_string())]
    );
    // A new code resets the count of wrong tries.
    store
        .start_verification(project.id, "alice", "email", "a@x", "333333", us(9_000))
        .await
        .unwrap();
    for left in (0..5).rev() {
        assert_eq!(
            check("000000", "a@x", 0).await.unwrap(),
            CodeCheck::Wrong {
                attempts_left: left
            }
        );
    }
    assert_eq!(
        check("333333", "a@x", 0).await.unwrap(),
        CodeCheck::TooManyAttempts
    );
}

/// One open alert per dedup key; paging is recorded only while triggered; an acknowledgment
/// cancels pending pages; claimed pages carry their alert; attempts land in the log.
async fn alert_story(store: &Store) {
    use keepwatch_store::{NewPage, PageOutcome, PagingRecord};
    let project = store.create_project("alerts", us(1)).await.unwrap();
    let new = disk_full(project.id);
    let (alert, created) = store
        .trigger_alert(&new, Urgency::Low, us(1_000))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (alert.status.as_str(), alert.paged_until),
        ("triggered", us(999))
    );
    let (again, created) = store
        .trigger_alert(&new, Urgency::Low, us(2_000))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, alert.id);
    let page = |person: &str, due_at| NewPage {
        person: person.into(),
        contact: "email".into(),
        address: format!("{person}@example.com"),
        urgency: Urgency::Low,
        due_at,
    };
    let record = |pages| PagingRecord {
        alert_id: alert.id,
        paged_from: alert.paged_until,
        paged_until: us(1_000),
        log: vec![(
            us(1_000),
            "escalation_step".into(),
            String::new(),
            "step 1".into(),
        )],
        pages,
        raised_at: None,
    };
    let first = record(vec![page("alice", us(1_000)), page("bob", us(5_000))]);
    assert!(store.record_paging(&first, us(1_000)).await.unwrap());
    // The same stretch again (another instance computed it from the same mark): refused.
    assert!(!store.record_paging(&first, us(1_000)).await.unwrap());
    assert_eq!(
        store
            .next_message_due(keepwatch_store::MessageKind::Page)
            .await
            .unwrap(),
        Some(us(1_000))
    );
    let alices = ["alice@example.com".to_string()];
    let except = store.claim_pages_except(us(1_000), TimeDelta::minutes(1), 10, &alices);
    assert!(
        except.await.unwrap().is_empty(),
        "pages to a busy address are left"
    );
    let claimed = store
        .claim_pages(us(1_000), TimeDelta::minutes(1), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].person.as_str(), claimed[0].summary.as_str()),
        ("alice", "disk full")
    );
    assert!(
        store
            .claim_pages(us(1_000), TimeDelta::minutes(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let outcome = PageOutcome {
        page: &claimed[0],
        ok: true,
        detail: "SMTP 250".into(),
        retry_at: None,
    };
    // What the message said is kept with its delivery record.
    store
        .finish_pages(&[outcome], Some("disk full\n\nHost: db1\n"), us(1_500))
        .await
        .unwrap();
    let messages = store.alert_messages(alert.id).await.unwrap();
    let sent = messages.iter().find(|m| m.id == claimed[0].id).unwrap();
    assert_eq!(
        (sent.state.as_str(), sent.text.as_deref()),
        ("sent", Some("disk full\n\nHost: db1\n"))
    );
    assert!(messages.iter().all(|m| m.id == sent.id || m.text.is_none()));
    // Bob's page failed and is retried: still pending, due again at 7_000, one attempt.
    let bobs = store
        .claim_pages(us(5_000), TimeDelta::minutes(1), 10)
        .await
        .unwrap();
    let failed = PageOutcome {
        page: &bobs[0],
        ok: false,
        detail: "HTTP 503".into(),
        retry_at: Some(us(7_000)),
    };
    store
        .finish_pages(&[failed], None, us(5_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .next_message_due(keepwatch_store::MessageKind::Page)
            .await
            .unwrap(),
        Some(us(7_000))
    );
    let again = store
        .claim_pages(us(7_000), TimeDelta::minutes(1), 10)
        .await
        .unwrap();
    assert_eq!((again[0].person.as_str(), again[0].attempts), ("bob", 1));
    let acked = store
        .acknowledge_alert(alert.id, "alice", us(2_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (acked.status.as_str(), acked.acknowledged_at),
        ("acknowledged", Some(us(2_000)))
    );
    // Bob's page was cancelled, and paging an acknowledged alert records nothing.
    assert_eq!(
        store
            .next_message_due(keepwatch_store::MessageKind::Page)
            .await
            .unwrap(),
        None
    );
    let late = record(vec![page("carol", us(9_000))]);
    assert!(!store.record_paging(&late, us(9_000)).await.unwrap());
    let resolved = store
        .resolve_alert(alert.id, "api", us(3_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.status, AlertStatus::Resolved);
    let kinds: Vec<String> = store
        .alert_log(alert.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "triggered",
            "trigger_repeated",
            "escalation_step",
            "notified",
            "notify_failed",
            "acknowledged",
            "pages_cancelled",
            "resolved"
        ]
    );
    // Resolved: the key is free for a new alert.
    let (fresh, created) = store
        .trigger_alert(&new, Urgency::Low, us(4_000))
        .await
        .unwrap();
    assert!(created && fresh.id != alert.id);
    // A stretch that raises the urgency makes the alert high, once, and keeps when; the
    // urgency at the trigger (low) is still what its timeline is computed from.
    assert_eq!(fresh.urgency, Urgency::Low);
    let raise = PagingRecord {
        alert_id: fresh.id,
        paged_from: fresh.paged_until,
        paged_until: us(5_000),
        log: vec![(
            us(5_000),
            "urgency_raised".into(),
            String::new(),
            "low → high".into(),
        )],
        pages: Vec::new(),
        raised_at: Some(us(5_000)),
    };
    assert!(store.record_paging(&raise, us(5_000)).await.unwrap());
    let raised = store.alert(fresh.id).await.unwrap().unwrap();
    assert_eq!(
        (raised.urgency, raised.raised_at, raised.triggered_urgency()),
        (Urgency::High, Some(us(5_000)), Urgency::Low)
    );
    let listed = store
        .list_alerts(project.id, Some("open"), 10)
        .await
        .unwrap();
    assert_eq!(listed[0].urgency, Urgency::High);
    assert_eq!(
        store
            .open_alert_by_dedup(project.id, "db1")
            .await
            .unwrap()
            .unwrap()
            .id,
        fresh.id
    );
    assert_eq!(
        store
            .list_alerts(project.id, Some("open"), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.list_alerts(project.id, None, 10).await.unwrap().len(),
        2
    );
    // Secrets are made once.
    let secret = store.secret("links").await.unwrap();
    assert_eq!(secret.len(), 48);
    assert_eq!(store.secret("links").await.unwrap(), secret);
    store.set_meta("cursor", 7).await.unwrap();
    assert_eq!(store.meta("cursor").await.unwrap(), 7);
}

/// The people paged for an alert hear of its resolution: the log entries after a cursor
/// that starts at the end of the log, who was paged (and at which urgency), and the
/// `alert_update` messages queued with the cursor and claimed by the dispatcher.
async fn alert_update_story(store: &Store) {
    use keepwatch_store::{
        AttemptResult, MessageKind, NewPage, NewUpdate, PageOutcome, PagingRecord,
    };
    let project = store.create_project("updates", us(1)).await.unwrap();
    let (alert, _) = store
        .trigger_alert(&disk_full(project.id), Urgency::Low, us(10_000))
        .await
        .unwrap();
    // The cursor starts at the end of the log, and a second start leaves it.
    store.start_log_cursor("updates").await.unwrap();
    let start = store.meta("updates").await.unwrap();
    assert!(start > 0);
    assert!(store.alert_news_after(start, 10).await.unwrap().is_empty());
    let page = |person: &str, urgency| NewPage {
        person: person.into(),
        contact: "email".into(),
        address: format!("{person}@example.com"),
        urgency,
        due_at: us(10_000),
    };
    let record = PagingRecord {
        alert_id: alert.id,
        paged_from: alert.paged_until,
        paged_until: us(10_000),
        log: Vec::new(),
        raised_at: None,
        pages: vec![
            page("alice", Urgency::Low),
            page("alice", Urgency::High),
            page("bob", Urgency::Low),
            page("carol", Urgency::High),
        ],
    };
    assert!(store.record_paging(&record, us(10_000)).await.unwrap());
    let claimed = store
        .claim_pages(us(10_000), chrono::TimeDelta::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(claimed.iter().all(|page| !page.repeat), "first pages");
    // Carol's page failed: she was not reached.
    let outcomes: Vec<PageOutcome> = claimed
        .iter()
        .map(|page| PageOutcome {
            page,
            ok: page.person != "carol",
            detail: "done".into(),
            retry_at: None,
        })
        .collect();
    // Sent as one summary: its text is stored once and read with each page.
    store
        .finish_pages(&outcomes, Some("4 alerts for you"), us(11_000))
        .await
        .unwrap();
    let messages = store.alert_messages(alert.id).await.unwrap();
    assert_eq!(messages.len(), 4);
    assert!(
        messages
            .iter()
            .all(|m| m.text.as_deref() == Some("4 alerts for you")),
        "{messages:?}"
    );
    assert_eq!(
        store.paged_people(alert.id).await.unwrap(),
        [
            ("alice".to_string(), Urgency::High),
            ("bob".to_string(), Urgency::Low)
        ]
    );
    // A page of the same alert to alice again is a repeat.
    let again = PagingRecord {
        alert_id: alert.id,
        paged_from: us(10_000),
        paged_until: us(12_000),
        log: Vec::new(),
        raised_at: None,
        pages: vec![NewPage {
            due_at: us(12_000),
            ..page("alice", Urgency::High)
        }],
    };
    assert!(store.record_paging(&again, us(12_000)).await.unwrap());
    let repeat = store
        .claim_pages(us(12_000), chrono::TimeDelta::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(repeat.len(), 1);
    assert!(repeat[0].repeat);

    store
        .resolve_alert(alert.id, "dave", us(13_000))
        .await
        .unwrap();
    let news = store.alert_news_after(start, 10).await.unwrap();
    assert_eq!(
        news.iter()
            .map(|n| (n.alert_id, n.kind.as_str(), n.who.as_str(), n.at))
            .collect::<Vec<_>>(),
        [(alert.id, "resolved", "dave", us(13_000))]
    );
    let update = NewUpdate {
        alert_id: alert.id,
        person: "alice".into(),
        contact: "email".into(),
        address: "alice@example.com".into(),
        urgency: Urgency::High,
        note: "resolved by dave at 00:00 UTC".into(),
    };
    store
        .queue_updates(&[update], "updates", news[0].id, us(13_000))
        .await
        .unwrap();
    assert_eq!(store.meta("updates").await.unwrap(), news[0].id);
    assert!(
        store
            .due_kinds(us(13_000))
            .await
            .unwrap()
            .contains(&MessageKind::AlertUpdate)
    );
    let updates = store
        .claim_updates(us(13_000), chrono::TimeDelta::seconds(60), 10, &[])
        .await
        .unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(
        (
            updates[0].note.as_str(),
            updates[0].summary.as_str(),
            updates[0].person.as_str()
        ),
        (
            "resolved by dave at 00:00 UTC",
            alert.summary.as_str(),
            "alice"
        )
    );
    store
        .record_attempt(&AttemptResult {
            outbox_id: updates[0].id,
            at: us(13_500),
            ok: true,
            detail: "sent".into(),
            took_ms: 1,
            retry_at: None,
        })
        .await
        .unwrap();
    assert!(
        store
            .claim_updates(us(200_000_000), chrono::TimeDelta::seconds(60), 10, &[])
            .await
            .unwrap()
            .is_empty(),
        "sent once"
    );
}

/// A group commit with one row the database refuses: only that row's check fails, every
/// other check's pings are stored (see `Store::commit_batch_isolated`). `nul_fails`: the
/// backend cannot store a NUL in text (PostgreSQL).
async fn isolation_story(store: &Store, nul_fails: bool) {
    let project = store.create_project("isolation", us(1)).await.unwrap();
    let mut ids = Vec::new();
    for name in ["a", "bad", "c"] {
        ids.push(
            store
                .insert_check(&check(project.id, name, name))
                .await
                .unwrap(),
        );
    }
    let (a, bad, c) = (ids[0], ids[1], ids[2]);
    let up = |check_id: i64, n_pings: i64| StateUpdate {
        check_id,
        state: StateRow {
            status: Status::Up,
            n_pings,
            open_runs: "[]".into(),
            ..StateRow::default()
        },
    };
    let listed = |check_id: i64, head: i64| async move {
        store
            .list_pings(check_id, Some(head), 10)
            .await
            .unwrap()
            .len()
    };
    // The bad check's ping reuses a stored seq: refused by both backends.
    let first = store.max_ping_seq().await.unwrap() + 1;
    store
        .commit_batch(
            &Batch {
                pings: vec![ping(first, a, 1, None)],
                ..Batch::default()
            },
            us(0),
        )
        .await
        .unwrap();
    let batch = Batch {
        pings: vec![
            ping(first + 1, a, 2, None),
            ping(first, bad, 1, None),
            ping(first + 2, c, 1, None),
        ],
        states: vec![up(a, 2), up(bad, 1), up(c, 1)],
        ..Batch::default()
    };
    let committed = store.commit_batch_isolated(&batch, us(0)).await.unwrap();
    assert_eq!(
        committed
            .failed
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![bad]
    );
    assert_eq!(listed(a, first + 1).await, 2);
    assert_eq!(listed(c, first + 2).await, 1);
    let stored = store.check_by_id(c).await.unwrap().unwrap();
    assert_eq!(
        (stored.state.status.as_str(), stored.state.n_pings),
        ("up", 1)
    );
    let stored = store.check_by_id(bad).await.unwrap().unwrap();
    assert_eq!(
        stored.state.status,
        Status::New,
        "the bad check's state is not written"
    );

    // A NUL in a text column (a host), through the writer's path.
    let mut nul = ping(first + 4, bad, 1, None);
    nul.host = Some("web\0-1".into());
    let chained = |seq: i64, check_id: i64, n: i64, prev: i64| PingRow {
        prev_seq: Some(prev),
        ..ping(seq, check_id, n, None)
    };
    let batch = Batch {
        pings: vec![
            chained(first + 3, a, 3, first + 1),
            nul,
            chained(first + 5, c, 2, first + 2),
        ],
        ..Batch::default()
    };
    let committed = store.commit_batch_isolated(&batch, us(0)).await.unwrap();
    let failed: Vec<i64> = committed.failed.iter().map(|(id, _)| *id).collect();
    assert_eq!(failed, if nul_fails { vec![bad] } else { vec![] });
    assert_eq!(listed(a, first + 3).await, 3);
    assert_eq!(listed(c, first + 5).await, 2);

    // A batch that fails for every check is an error, as before.
    let batch = Batch {
        pings: vec![ping(first, a, 4, None), ping(first + 1, c, 3, None)],
        ..Batch::default()
    };
    assert!(store.commit_batch_isolated(&batch, us(0)).await.is_err());
}

#[tokio::test]
async fn sqlite_isolates_a_bad_row_in_a_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    isolation_story(&store, false).await;
}

#[tokio::test]
async fn postgres_isolates_a_bad_row_in_a_group_commit() {
    let db = PgDatabase::create().await;
    let store = Store::open(Some(&db.url), std::path::Path::new("unused"))
        .await
        .unwrap();
    isolation_story(&store, true).await;
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    story(store).await;
    // Reopening runs no migration twice.
    Store::open(None, dir.path()).await.unwrap();
}

#[tokio::test]
async fn postgres_conformance() {
    let db = PgDatabase::create().await;
    let store = Store::open(Some(&db.url), std::path::Path::new("unused"))
        .await
        .unwrap();
    assert_eq!(store.backend_name(), "postgres");
    story(store).await;
}

/// Several instances: a batch or checkpoint written under a lease commits only while its
/// writer holds that lease; one whose lease ran out or was taken over writes nothing.
#[tokio::test]
async fn postgres_writes_under_a_lease_only_while_it_is_held() {
    use keepwatch_store::Fence;
    let db = PgDatabase::create().await;
    let store = Store::open(Some(&db.url), std::path::Path::new("unused"))
        .await
        .unwrap();
    let project = store.create_project("fenced", us(0)).await.unwrap();
    let mut row = check(project.id, "fenced", "fenced");
    row.id = store.insert_check(&row).await.unwrap();
    let fence = |holder: &str| Fence {
        work: "deadlines",
        holder: holder.into(),
    };
    store
        .claim_lease("deadlines", "a", 1, us(0), us(10_000_000))
        .await
        .unwrap();
    let seq = store.max_ping_seq().await.unwrap() + 1;
    let batch = |seq: i64, holder: &str| Batch {
        pings: vec![ping(seq, row.id, 1, None)],
        fence: Some(fence(holder)),
        ..Batch::default()
    };
    store.commit_batch(&batch(seq, "a"), us(1)).await.unwrap();
    let refused = store.commit_batch(&batch(seq + 1, "b"), us(1)).await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("no longer holds the lease of deadlines"),
        "a writer that does not hold the lease is refused"
    );
    // After the lease ran out, its old holder writes nothing either, checkpoints included.
    assert!(
        store
            .commit_batch(&batch(seq + 1, "a"), us(10_000_001))
            .await
            .is_err()
    );
    assert!(
        store
            .checkpoint(&[], seq, Some(&fence("a")), us(10_000_001))
            .await
            .is_err()
    );
    assert_eq!(
        store.max_ping_seq().await.unwrap(),
        seq,
        "only the held write landed"
    );
    store
        .checkpoint(&[], seq, Some(&fence("a")), us(2))
        .await
        .unwrap();
    store.release_lease("deadlines", "a", us(3)).await.unwrap();
    store.close().await;
}

/// Check events act on alerts and move the pager's cursor in one transaction: a run that
/// fails leaves neither an alert nor a moved cursor (it is taken again, whole).
async fn event_intake_story(store: &Store) {
    use keepwatch_store::EventAlert;
    let project = store.create_project("intake", us(1)).await.unwrap();
    let trigger = |project_id, dedup_key| {
        let alert = NewAlert {
            project_id,
            service: "billing",
            dedup_key,
            summary: "nightly is down",
            source: AlertSource::Check,
            details: "{}",
        };
        EventAlert::Trigger(alert, Urgency::High)
    };
    let before = store.meta("intake_cursor").await.unwrap();
    let failing = [trigger(project.id, "check:a"), trigger(i64::MAX, "check:b")];
    let failed = store
        .intake_events(&failing, "intake_cursor", 10, us(1_000))
        .await;
    // A broken rule of the data (a project that does not exist): a conflict, not an outage.
    assert_eq!(
        failed
            .expect_err("an alert of no project was stored")
            .kind(),
        keepwatch_store::ErrorKind::Conflict
    );
    assert_eq!(store.meta("intake_cursor").await.unwrap(), before);
    let none = store.open_alert_by_dedup(project.id, "check:a").await;
    assert_eq!(none.unwrap(), None, "half a run was kept");

    let run = [
        trigger(project.id, "check:a"),
        trigger(project.id, "check:a"),
        EventAlert::Resolve {
            project_id: project.id,
            dedup_key: "check:a",
            who: "check recovered",
        },
        // A recovery with nothing open does nothing.
        EventAlert::Resolve {
            project_id: project.id,
            dedup_key: "check:none",
            who: "check recovered",
        },
    ];
    store
        .intake_events(&run, "intake_cursor", 10, us(2_000))
        .await
        .unwrap();
    assert_eq!(store.meta("intake_cursor").await.unwrap(), 10);
    let alerts = store.list_alerts(project.id, None, 10).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].status, AlertStatus::Resolved);
    let log = store.alert_log(alerts[0].id).await.unwrap();
    let kinds: Vec<&str> = log.iter().map(|entry| entry.kind.as_str()).collect();
    assert_eq!(kinds, ["triggered", "trigger_repeated", "resolved"]);
}

/// Fifty triggers with one dedup key at once: one alert, fifty log entries, no error
/// (the events API answers 202 to each of them, never a 503 for losing a race).
async fn concurrent_trigger_story(store: &Store) {
    let project = store.create_project("races", us(1)).await.unwrap();
    let triggers = (0..50).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .trigger_alert(&disk_full(project.id), Urgency::High, us(1_000 + n))
                .await
        })
    });
    let mut ids = Vec::new();
    let mut created = 0;
    for trigger in futures_util::future::join_all(triggers).await {
        let (alert, new) = trigger.unwrap().expect("a concurrent trigger failed");
        ids.push(alert.id);
        created += usize::from(new);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one alert for one dedup key: {ids:?}");
    assert_eq!(created, 1);
    let log = store.alert_log(ids[0]).await.unwrap();
    let kinds = |kind: &str| log.iter().filter(|entry| entry.kind == kind).count();
    assert_eq!((kinds("triggered"), kinds("trigger_repeated")), (1, 49));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_triggers_make_one_alert() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    concurrent_trigger_story(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_triggers_make_one_alert() {
    let db = PgDatabase::create().await;
    let store = Store::open(Some(&db.url), std::path::Path::new("unused"))
        .await
        .unwrap();
    concurrent_trigger_story(&store).await;
}

/// Incidents: created with their links, first log entry and messages in one transaction;
/// read by id, token, status and cadence; changed only if nobody changed them meanwhile;
/// alerts and checks attached once however often; their messages claimed and recorded like
/// every other outbox row; the recurrence and auto-declare queries.
async fn incident_story(store: &Store) {
    use keepwatch_core::incident::{IncidentStatus, Severity};
    use keepwatch_store::{MessageKind, NewIncident, NewIncidentLog, NewIncidentMessage};
    let project = store.create_project("incidents", us(1)).await.unwrap();
    let other = store
        .create_project("incidents-other", us(1))
        .await
        .unwrap();
    let max_before = store.max_alert_id().await.unwrap();
    let (alert, _) = store
        .trigger_alert(&disk_full(project.id), Urgency::High, us(1_000))
        .await
        .unwrap();
    assert_eq!(store.max_alert_id().await.unwrap(), alert.id);
    let after: Vec<i64> = store
        .alerts_after(max_before, 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(after, vec![alert.id]);
    assert!(
        store
            .unacked_alerts_before(us(2_000))
            .await
            .unwrap()
            .iter()
            .any(|a| a.id == alert.id),
        "an unacknowledged high-urgency alert in no incident"
    );
    assert!(
        !store
            .unacked_alerts_before(us(500))
            .await
            .unwrap()
            .iter()
            .any(|a| a.id == alert.id),
        "not yet old enough"
    );
    let message = |address: &str, due_at| NewIncidentMessage {
        kind: MessageKind::IncidentUpdate,
        person: String::new(),
        contact: "webhook".into(),
        address: address.into(),
        urgency: "low".into(),
        subject: "[SEV1] disk full: investigating".into(),
        text: format!("for {address}"),
        due_at,
    };
    let checks = vec!["3a1f6c8e-1111-4a53-9a43-0c1a2b3c4d01".to_string()];
    let new = NewIncident {
        project_id: project.id,
        title: "disk full",
        severity: Severity::Sev1,
        status: IncidentStatus::Investigating,
        owner: "alice",
        service: "billing",
        impact: "exports stall",
        stakeholder_groups: r#"["execs"]"#,
        extra: "[]",
        update_every: Some(1800),
        next_update_at: Some(us(1_800_000_000)),
        token: "incident-page-token-0123456789abcdef",
        declared_by: "alice",
        alerts: &[alert.id],
        checks: &checks,
    };
    let declared = NewIncidentLog {
        kind: "declared".into(),
        who: "alice".into(),
        status: Some("investigating".into()),
        text: "disk full".into(),
        ..Default::default()
    };
    let row = store
        .create_incident(
            &new,
            &declared,
            &[
                message("http://a.example/hook", us(2_000)),
                message("http://b.example/hook", us(2_000)),
            ],
            us(2_000),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.title.as_str(),
            row.severity,
            row.status,
            row.owner.as_str(),
            row.update_every,
            row.next_update_at,
            row.declared_at,
            row.last_update_at,
            row.resolved_at,
            row.cadence_stage,
        ),
        (
            "disk full",
            Severity::Sev1,
            IncidentStatus::Investigating,
            "alice",
            Some(1800),
            Some(us(1_800_000_000)),
            us(2_000),
            Some(us(2_000)),
            None,
            0,
        )
    );
    assert_eq!(store.incident(row.id).await.unwrap(), Some(row.clone()));
    assert_eq!(store.incident(row.id + 1000).await.unwrap(), None);
    assert_eq!(
        store.incident_by_token(&row.token).await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(store.incident_by_token("guess").await.unwrap(), None);
    assert_eq!(
        store.incident_alert_ids(row.id).await.unwrap(),
        vec![alert.id]
    );
    assert_eq!(store.incident_check_uuids(row.id).await.unwrap(), checks);
    assert_eq!(
        store.incidents_of_alert(alert.id).await.unwrap(),
        vec![row.id]
    );
    assert!(
        !store
            .unacked_alerts_before(us(2_000))
            .await
            .unwrap()
            .iter()
            .any(|a| a.id == alert.id),
        "an alert in an incident is not declared again"
    );
    let ids =
        |rows: Vec<keepwatch_store::IncidentRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .list_incidents(project.id, Some("open"), 10)
            .await
            .unwrap()),
        vec![row.id]
    );
    assert!(
        store
            .list_incidents(project.id, Some("resolved"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_incidents(other.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(ids(store.incidents_with_cadence().await.unwrap()).contains(&row.id));

    // Its messages are outbox rows: claimed once per lease, recorded per recipient.
    let messages = store.incident_messages(row.id).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert!(
        messages
            .iter()
            .all(|m| m.state == "pending" && m.attempts == 0)
    );
    assert_eq!(
        messages[0].text.as_deref(),
        Some("for http://a.example/hook")
    );
    let claimed = store
        .claim_incident_messages(
            MessageKind::IncidentUpdate,
            us(2_000),
            TimeDelta::seconds(30),
            10,
            &["http://b.example/hook".to_string()],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the excluded destination is left out");
    assert_eq!(
        (
            claimed[0].address.as_str(),
            claimed[0].title.as_str(),
            claimed[0].status.as_str()
        ),
        ("http://a.example/hook", "disk full", "investigating")
    );
    assert!(
        store
            .claim_incident_messages(
                MessageKind::IncidentUpdate,
                us(3_000),
                TimeDelta::seconds(30),
                10,
                &["http://b.example/hook".to_string()],
            )
            .await
            .unwrap()
            .is_empty(),
        "a leased message is not claimed twice"
    );
    assert!(
        store
            .claim_incident_messages(
                MessageKind::IncidentReminder,
                us(3_000),
                TimeDelta::seconds(30),
                10,
                &[],
            )
            .await
            .unwrap()
            .is_empty(),
        "kinds are claimed apart"
    );
    store
        .record_attempt(&AttemptResult {
            outbox_id: claimed[0].id,
            at: us(4_000),
            ok: true,
            detail: "HTTP 200".into(),
            took_ms: 2,
            retry_at: None,
        })
        .await
        .unwrap();
    let messages = store.incident_messages(row.id).await.unwrap();
    assert_eq!(
        (
            messages[0].state.as_str(),
            messages[0].attempts,
            messages[0].sent_at
        ),
        ("sent", 1, Some(us(4_000)))
    );
    assert_eq!(messages[1].state, "pending");

    // A change applies only to the incident as the caller read it.
    let mut changed = row.clone();
    changed.status = IncidentStatus::Identified;
    changed.next_update_at = Some(us(3_600_000_000));
    changed.last_update_at = Some(us(5_000));
    let update = NewIncidentLog {
        kind: "update".into(),
        who: "alice".into(),
        status: Some("identified".into()),
        text: "a stray process".into(),
        due_at: Some(us(1_800_000_000)),
        on_time: Some(true),
    };
    assert!(
        store
            .change_incident(
                &row,
                &changed,
                std::slice::from_ref(&update),
                &[],
                us(5_000)
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .change_incident(&row, &changed, &[update], &[], us(6_000))
            .await
            .unwrap(),
        "a stale read changes nothing"
    );
    assert_eq!(store.incident(row.id).await.unwrap(), Some(changed.clone()));
    let log = store.incident_log(row.id).await.unwrap();
    assert_eq!(
        log.iter()
            .map(|l| (l.kind.as_str(), l.at, l.on_time))
            .collect::<Vec<_>>(),
        vec![
            ("declared", us(2_000), None),
            ("update", us(5_000), Some(true))
        ],
        "one update logged, not two"
    );
    assert_eq!(log[1].due_at, Some(us(1_800_000_000)));

    // Attaching twice links once.
    for at in [us(7_000), us(8_000)] {
        store
            .attach_to_incident(
                row.id,
                &[alert.id],
                &["3a1f6c8e-2222-4a53-9a43-0c1a2b3c4d02".to_string()],
                None,
                &[],
                at,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.incident_alert_ids(row.id).await.unwrap(),
        vec![alert.id]
    );
    assert_eq!(store.incident_check_uuids(row.id).await.unwrap().len(), 2);

    // Resolved: out of the cadence, found for a recurrence only within the window.
    let mut resolved = changed.clone();
    resolved.status = IncidentStatus::Resolved;
    resolved.next_update_at = None;
    resolved.resolved_at = Some(us(10_000));
    assert!(
        store
            .change_incident(&changed, &resolved, &[], &[], us(10_000))
            .await
            .unwrap()
    );
    assert!(!ids(store.incidents_with_cadence().await.unwrap()).contains(&row.id));
    assert_eq!(
        ids(store
            .list_incidents(project.id, Some("resolved"), 10)
            .await
            .unwrap()),
        vec![row.id]
    );
    let recur = |since| store.incident_of_check_since(project.id, &checks[0], since);
    assert_eq!(recur(us(9_000)).await.unwrap().map(|r| r.id), Some(row.id));
    assert_eq!(
        recur(us(11_000)).await.unwrap(),
        None,
        "resolved before the window"
    );
    assert_eq!(
        store
            .incident_of_check_since(other.id, &checks[0], us(0))
            .await
            .unwrap(),
        None,
        "another project's incident"
    );
}
