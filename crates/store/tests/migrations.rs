//! Upgrades keep what was queued: a database written by the version before the outbox of
//! messages (a pending channel notification with a failed attempt, a pending page) is
//! migrated with both still to send, on SQLite and PostgreSQL.

use std::path::Path;

use chrono::TimeDelta;
use keepwatch_core::alert::paging::Urgency;
use keepwatch_store::testing::PgDatabase;
use keepwatch_store::{NewPage, PagingRecord, Store, Timestamp};
use sqlx::migrate::Migrator;

/// A time, in microseconds since the epoch.
fn us(micros: i64) -> Timestamp {
    Timestamp::from_micros(micros)
}

/// The rows a server of the previous version left: a check whose `down` event waits for its
/// channel (one failed attempt so far), and an alert whose page to alice waits.
const BEFORE_UPGRADE: &[&str] = &[
    "INSERT INTO projects (id, uuid, name, ping_key, created_at) VALUES (1, 'p1', 'default', 'pk', 0)",
    "INSERT INTO checks (id, uuid, project_id, kind, timeout_secs, grace_secs, created_at) \
     VALUES (1, '6d3b5e2c-0000-4000-8000-000000000001', 1, 'simple', 60, 60, 0)",
    "INSERT INTO channels (id, uuid, project_id, name, kind, config, created_at) \
     VALUES (1, 'c1', 1, 'hook', 'webhook', '{\"url\": \"https://hooks.example/in\"}', 0)",
    "INSERT INTO events (id, check_id, kind, at, payload) VALUES (1, 1, 'down', 1000, '{}')",
    "INSERT INTO outbox (id, event_id, channel_id, state, attempts, next_attempt_at, created_at) \
     VALUES (7, 1, 1, 'pending', 1, 2000, 1000)",
    "INSERT INTO delivery_attempts (outbox_id, at, ok, detail, took_ms) \
     VALUES (7, 1500, FALSE, 'webhook answered HTTP 500', 3)",
    "INSERT INTO alerts (id, project_id, service, dedup_key, summary, source, details, status, \
     urgency, triggered_at, paged_until) \
     VALUES (1, 1, 'db', 'db1', 'disk full', 'events', '{}', 'triggered', 'high', 1000, 1000)",
    "INSERT INTO pages (id, alert_id, person, contact, address, urgency, next_attempt_at, created_at) \
     VALUES (1, 1, 'alice', 'hook', 'https://hooks.example/alice', 'high', 3000, 1000)",
];

/// The migrations of the version before the outbox of messages (0001 to 0005).
async fn previous_migrations(backend: &str) -> (tempfile::TempDir, Migrator) {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.as_str() < "0006" {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let migrator = Migrator::new(dir.path()).await.unwrap();
    (dir, migrator)
}

/// After the upgrade: the channel notification keeps its id, attempts and log; the page is
/// still due; a page recorded afterwards gets an id of its own.
async fn queued_messages_survive(store: &Store) {
    let deliveries = store.claim_due(us(10_000), us(20_000), 10).await.unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let delivery = &deliveries[0];
    assert_eq!(
        (
            delivery.outbox_id,
            delivery.attempts,
            delivery.event_kind.as_str()
        ),
        (7, 1, "down")
    );
    let attempts = store.list_attempts(&[7]).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].detail, "webhook answered HTTP 500");

    let pages = store
        .claim_pages(us(10_000), TimeDelta::microseconds(100_000), 10)
        .await
        .unwrap();
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(
        (pages[0].person.as_str(), pages[0].address.as_str()),
        ("alice", "https://hooks.example/alice")
    );
    let record = PagingRecord {
        alert_id: 1,
        paged_from: us(1000),
        paged_until: us(20_000),
        log: Vec::new(),
        pages: vec![NewPage {
            person: "bob".into(),
            contact: "hook".into(),
            address: "https://hooks.example/bob".into(),
            urgency: Urgency::High,
            due_at: us(20_000),
        }],
        raised_at: None,
    };
    assert!(store.record_paging(&record, us(20_000)).await.unwrap());
    let later = store
        .claim_pages(us(30_000), TimeDelta::microseconds(10_000), 10)
        .await
        .unwrap();
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!(later[0].person, "bob");
    assert!(![7, pages[0].id].contains(&later[0].id));
}

#[tokio::test]
async fn sqlite_upgrade_keeps_queued_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keepwatch.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let (_migrations, migrator) = previous_migrations("sqlite").await;
    migrator.run(&pool).await.unwrap();
    for sql in BEFORE_UPGRADE {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let store = Store::open(None, dir.path()).await.unwrap();
    queued_messages_survive(&store).await;
}

#[tokio::test]
async fn postgres_upgrade_keeps_queued_messages() {
    let db = PgDatabase::create().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let (_migrations, migrator) = previous_migrations("postgres").await;
    migrator.run(&pool).await.unwrap();
    for sql in BEFORE_UPGRADE {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let store = Store::open(Some(&db.url), Path::new("unused"))
        .await
        .unwrap();
    queued_messages_survive(&store).await;
}
