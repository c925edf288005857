//! Leases of background work between instances on one PostgreSQL database: two lease
//! managers on one database (as two instances would be), time advanced by hand.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use keepwatch_engine::lease::{DbLeases, Lease, LeaseSettings, Work};
use keepwatch_engine::{Clock, ManualClock};
use keepwatch_store::Store;
use keepwatch_store::testing::PgDatabase;

fn settings(instance: &str) -> LeaseSettings {
    LeaseSettings {
        duration: Duration::from_secs(10),
        renew_every: Duration::from_secs(2),
        instance: Some(instance.into()),
    }
}

async fn setup() -> (PgDatabase, Store, Arc<ManualClock>) {
    let db = PgDatabase::create().await;
    let store = Store::open_postgres(&db.url).await.expect("open");
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
    ));
    (db, store, clock)
}

fn holders(a: &DbLeases, b: &DbLeases) -> Vec<(Work, bool, bool)> {
    Work::ALL
        .iter()
        .map(|w| (*w, a.holds(*w), b.holds(*w)))
        .collect()
}

#[tokio::test]
async fn one_instance_holds_each_work_and_another_takes_over_within_the_lease() {
    let (_db, store, clock) = setup().await;
    let a = DbLeases::new(store.clone(), clock.clone(), settings("a"));
    let b = DbLeases::new(store.clone(), clock.clone(), settings("b"));
    a.round().await.unwrap();
    b.round().await.unwrap();
    // The first claimant holds every work; the other none.
    for (work, by_a, by_b) in holders(&a, &b) {
        assert!(by_a && !by_b, "{work:?}: a {by_a}, b {by_b}");
    }
    // Both renew on their timer: nothing moves, for as long as a renews.
    for _ in 0..20 {
        clock.advance(TimeDelta::seconds(2));
        a.round().await.unwrap();
        b.round().await.unwrap();
        for (work, by_a, by_b) in holders(&a, &b) {
            assert!(by_a && !by_b, "{work:?}: a {by_a}, b {by_b}");
        }
    }
    let rows = store.leases().await.unwrap();
    assert_eq!(rows.len(), Work::ALL.len());
    assert!(rows.iter().all(|r| r.holder == "a"));
    // a dies (stops renewing) right after a renewal. b keeps claiming every 2 s; it must
    // not hold anything while a's lease runs, and must hold everything within 10 s.
    let died = clock.now();
    let mut took_over = None;
    for step in 1..=10 {
        clock.advance(TimeDelta::seconds(2));
        // a's own view: it stops holding when its lease runs out, renewed or not.
        b.round().await.unwrap();
        let now = clock.now();
        let b_holds = Work::ALL.iter().all(|w| b.holds(*w));
        let a_holds = Work::ALL.iter().any(|w| a.holds(*w));
        assert!(!(a_holds && b_holds), "both hold at step {step}");
        if b_holds && took_over.is_none() {
            took_over = Some(now - died);
        }
    }
    let took_over = took_over.expect("b never took over");
    assert!(
        took_over <= TimeDelta::seconds(10),
        "took over after {took_over}"
    );
    assert!(
        took_over >= TimeDelta::seconds(8),
        "took over before a's lease ran out: {took_over}"
    );
    // a comes back (a pause, not a death): it sees b holds everything and does nothing.
    a.round().await.unwrap();
    for (work, by_a, by_b) in holders(&a, &b) {
        assert!(!by_a && by_b, "{work:?}: a {by_a}, b {by_b}");
    }
    let view = a.view();
    assert!(
        view.iter()
            .all(|v| v.holder.as_deref() == Some("b") && !v.mine)
    );
}

#[tokio::test]
async fn a_holder_that_cannot_renew_stops_at_its_lease_end() {
    let (_db, store, clock) = setup().await;
    let a = DbLeases::new(store.clone(), clock.clone(), settings("a"));
    a.round().await.unwrap();
    assert!(a.holds(Work::Deadlines));
    // Written lease: 10 s - 2 s (the next claimant polls every 2 s).
    clock.advance(TimeDelta::milliseconds(7_999));
    assert!(a.holds(Work::Deadlines));
    clock.advance(TimeDelta::milliseconds(1));
    assert!(!a.holds(Work::Deadlines), "held past the lease it wrote");
    // Renewing again takes it back (nobody else claimed it).
    a.round().await.unwrap();
    assert!(a.holds(Work::Deadlines));
}

#[tokio::test]
async fn a_newer_version_takes_the_work_and_the_older_stops() {
    let (_db, store, clock) = setup().await;
    let old = DbLeases::new(store.clone(), clock.clone(), settings("old"));
    let new = DbLeases::new(store.clone(), clock.clone(), settings("new"))
        .with_version(Work::Alerting, 2);
    old.round().await.unwrap();
    assert!(old.holds(Work::Alerting));
    // The new binary starts: it raises the version but waits for the old lease to run out,
    // so the two never alert at once.
    new.round().await.unwrap();
    assert!(old.holds(Work::Alerting) && !new.holds(Work::Alerting));
    // The old one's next renewal fails: it stops at once...
    clock.advance(TimeDelta::seconds(2));
    old.round().await.unwrap();
    assert!(!old.holds(Work::Alerting), "old code kept alerting");
    assert!(
        old.view()
            .iter()
            .any(|v| v.work == "alerting" && v.outdated)
    );
    // ...and the other works, at the same version, stay with it.
    assert!(old.holds(Work::Delivery) && !new.holds(Work::Delivery));
    // The new one takes alerting once the old lease has run out.
    clock.advance(TimeDelta::seconds(6));
    new.round().await.unwrap();
    assert!(new.holds(Work::Alerting));
    // The old one never takes it back, even when the new one dies.
    clock.advance(TimeDelta::seconds(60));
    old.round().await.unwrap();
    assert!(!old.holds(Work::Alerting));
    assert!(old.holds(Work::Delivery), "old still does the works it may");
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let (_db, store, clock) = setup().await;
    let a = DbLeases::new(store.clone(), clock.clone(), settings("a"));
    let b = DbLeases::new(store.clone(), clock.clone(), settings("b"));
    a.round().await.unwrap();
    b.round().await.unwrap();
    assert!(!b.holds(Work::Delivery));
    a.release().await;
    assert!(!a.holds(Work::Delivery));
    b.round().await.unwrap();
    assert!(Work::ALL.iter().all(|w| b.holds(*w)));
}

#[tokio::test]
async fn settings_that_cannot_renew_in_time_are_refused() {
    let bad = LeaseSettings {
        duration: Duration::from_secs(3),
        renew_every: Duration::from_secs(2),
        instance: None,
    };
    assert!(bad.validate().unwrap_err().contains("too rarely"));
    assert!(LeaseSettings::default().validate().is_ok());
}
