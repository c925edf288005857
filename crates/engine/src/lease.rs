//! One seam every background loop asks before a round: may this process do that work now?
//!
//! With one process (SQLite) the answer is always yes ([`SoleInstance`]). On PostgreSQL the
//! instances take turns through leases kept in the database ([`DbLeases`]), as GoAlert's
//! engine modules do with their processing locks: one row per kind of work, claimed and
//! renewed by one compare-and-set statement, so at most one instance does each loop's work,
//! and when its holder dies another takes it over within the lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keepwatch_store::{Store, StoreError};
use tokio::sync::Notify;

use crate::clock::Clock;

/// The work a loop does, each under its own lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    /// Judging check deadlines (the actor's tick).
    Deadlines,
    /// Turning check events into alerts and walking their timelines (the pager).
    Alerting,
    /// Sending the outbox (the dispatcher).
    Delivery,
    /// Incident update reminders, recurrences and auto-declare (the incident loop).
    Incidents,
    /// Database housekeeping.
    Housekeeping,
    /// The daily audit of each project's setup (and after every apply).
    Audit,
    /// Shift check-ins: sent when shifts start, missed ones told.
    Checkins,
}

impl Work {
    pub const ALL: [Work; 7] = [
        Work::Deadlines,
        Work::Alerting,
        Work::Delivery,
        Work::Incidents,
        Work::Housekeeping,
        Work::Audit,
        Work::Checkins,
    ];

    /// The name of its lease (the `leases` table, the status endpoint, metrics).
    pub fn name(self) -> &'static str {
        match self {
            Work::Deadlines => "deadlines",
            Work::Alerting => "alerting",
            Work::Delivery => "delivery",
            Work::Incidents => "incidents",
            Work::Housekeeping => "housekeeping",
            Work::Audit => "audit",
            Work::Checkins => "checkins",
        }
    }

    /// The version of this binary's code for the work. Raise it when a change must not run
    /// beside the old code (a new meaning of rows the loop reads): once a newer binary has
    /// claimed the work, older ones stop doing it, and do not take it back.
    pub fn version(self) -> i32 {
        1
    }
}

/// Whether this process may do a kind of work now. Cheap: called before every round.
pub trait Lease: Send + Sync {
    fn holds(&self, work: Work) -> bool;

    /// This instance's id when several instances share the database; `None` for the only one
    /// (which owns every check, so never hands pings to another through the inbox).
    fn shared_as(&self) -> Option<&str> {
        None
    }

    /// How soon another instance takes a dead holder's work over (`None`: no other).
    fn takeover_within(&self) -> Option<Duration> {
        None
    }
}

/// The only instance: it always may.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoleInstance;

impl Lease for SoleInstance {
    fn holds(&self, _work: Work) -> bool {
        true
    }
}

/// How leases are kept between instances on one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The longest time between a holder's death and another instance taking its work over.
    pub duration: Duration,
    /// How often leases are renewed (and free ones claimed); well inside `duration`.
    pub renew_every: Duration,
    /// This instance's id in the `leases` table: unique among the instances. `None`: made
    /// from the host name, the pid and a random suffix.
    pub instance: Option<String>,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            duration: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            instance: None,
        }
    }
}

impl LeaseSettings {
    /// `renew_every` must leave time for a renewal to arrive before the lease runs out.
    pub fn validate(&self) -> Result<(), String> {
        if self.duration.is_zero() || self.renew_every.is_zero() {
            return Err("the lease and its renewal interval must be more than 0".into());
        }
        if self.renew_every * 3 > self.duration {
            return Err(format!(
                "leases are renewed every {:?}: too rarely for a lease of {:?} (renew at least 3 times a lease)",
                self.renew_every, self.duration
            ));
        }
        Ok(())
    }
}

/// A default instance id: `host:pid:random`.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "keepwatch".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
}

/// A lease as this instance last saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseView {
    pub work: &'static str,
    /// Who holds it (possibly an instance whose lease ran out and nobody took it yet).
    pub holder: Option<String>,
    /// The version of the code that holds it (the row's version).
    pub version: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    /// This instance may do the work now.
    pub mine: bool,
    /// This instance's code is older than the row's: it will not take the work.
    pub outdated: bool,
}

#[derive(Debug, Clone, Default)]
struct Seen {
    holder: Option<String>,
    version: Option<i32>,
    expires_at: Option<DateTime<Utc>>,
    mine_until: Option<DateTime<Utc>>,
    outdated: bool,
}

/// Leases in the database (PostgreSQL with several instances). [`DbLeases::round`] claims
/// and renews every kind of work in one statement each; [`DbLeases::run`] does it every
/// `renew_every`. The lease written runs out `duration - renew_every` after the claim, and
/// free leases are claimed every `renew_every`, so another instance takes over at most
/// `duration` after the holder's last renewal. The holder stops saying it holds the work when
/// the lease it wrote runs out by its own clock, whether or not it could renew (the database
/// unreachable): instances' clocks must agree (NTP) to well within the lease.
pub struct DbLeases {
    store: Store,
    clock: Arc<dyn Clock>,
    instance: String,
    settings: LeaseSettings,
    versions: HashMap<Work, i32>,
    seen: Mutex<HashMap<Work, Seen>>,
    wakes: Mutex<HashMap<Work, Vec<Arc<Notify>>>>,
}

impl DbLeases {
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: LeaseSettings) -> DbLeases {
        let instance = settings
            .instance
            .clone()
            .unwrap_or_else(default_instance_id);
        DbLeases {
            store,
            clock,
            instance,
            settings,
            versions: Work::ALL.iter().map(|w| (*w, w.version())).collect(),
            seen: Mutex::default(),
            wakes: Mutex::default(),
        }
    }

    /// Claims `work` as another version of the code would (tests of rolling upgrades).
    pub fn with_version(mut self, work: Work, version: i32) -> DbLeases {
        self.versions.insert(work, version);
        self
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// `notify` is woken when this instance takes `work` over (its loop may be waiting long).
    pub fn wake_on_acquire(&self, work: Work, notify: Arc<Notify>) {
        self.wakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(work)
            .or_default()
            .push(notify);
    }

    /// One claim or renewal of every kind of work. A failed statement leaves that lease as
    /// it was: held until it runs out, then not.
    pub async fn round(&self) -> Result<(), StoreError> {
        let mut failed = None;
        for work in Work::ALL {
            let now = self.clock.now();
            let ttl = self
                .settings
                .duration
                .saturating_sub(self.settings.renew_every);
            let until = now + ttl;
            let version = self.versions[&work];
            let claimed = self
                .store
                .claim_lease(
                    work.name(),
                    &self.instance,
                    version,
                    now.into(),
                    until.into(),
                )
                .await;
            let row = match claimed {
                Ok(row) => row,
                Err(e) => {
                    tracing::warn!(work = work.name(), error = %e, "cannot claim or renew a lease");
                    failed = Some(e);
                    continue;
                }
            };
            let acquired = {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                let entry = seen.entry(work).or_default();
                let held_before = entry.mine_until.is_some_and(|t| now < t);
                *entry = match row {
                    Some(row) => {
                        let mine = row.holder == self.instance;
                        let expires_at: DateTime<Utc> = row.expires_at.into();
                        Seen {
                            mine_until: mine.then_some(expires_at),
                            holder: Some(row.holder),
                            version: Some(row.version),
                            expires_at: Some(expires_at),
                            outdated: false,
                        }
                    }
                    None => {
                        if !entry.outdated {
                            tracing::warn!(
                                work = work.name(),
                                version,
                                "a newer version of keepwatch does this work: this instance stops doing it"
                            );
                        }
                        Seen {
                            outdated: true,
                            ..Seen::default()
                        }
                    }
                };
                let mine = entry.mine_until.is_some();
                if mine != held_before {
                    tracing::info!(
                        work = work.name(),
                        instance = %self.instance,
                        "{}",
                        if mine { "lease taken" } else { "lease lost" }
                    );
                }
                mine && !held_before
            };
            if acquired {
                let wakes = self.wakes.lock().unwrap_or_else(|e| e.into_inner());
                for notify in wakes.get(&work).into_iter().flatten() {
                    notify.notify_one();
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Renews every `renew_every` (on its clock) until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            let _ = self.round().await;
            let next = self.clock.now() + self.settings.renew_every;
            self.clock.sleep_until(next).await;
        }
    }

    /// Gives up every lease this instance holds (at shutdown, once its loops have stopped),
    /// so others take the work on their next claim.
    pub async fn release(&self) {
        let now = self.clock.now();
        let held: Vec<Work> = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.iter_mut()
                .filter_map(|(work, s)| s.mine_until.take().map(|_| *work))
                .collect()
        };
        for work in held {
            if let Err(e) = self
                .store
                .release_lease(work.name(), &self.instance, now.into())
                .await
            {
                tracing::warn!(work = work.name(), error = %e, "cannot release a lease");
            }
        }
    }

    /// Every lease as this instance last saw it.
    pub fn view(&self) -> Vec<LeaseView> {
        let now = self.clock.now();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        Work::ALL
            .iter()
            .map(|work| {
                let s = seen.get(work).cloned().unwrap_or_default();
                LeaseView {
                    work: work.name(),
                    holder: s.holder,
                    version: s.version,
                    expires_at: s.expires_at,
                    mine: s.mine_until.is_some_and(|t| now < t),
                    outdated: s.outdated,
                }
            })
            .collect()
    }
}

impl Lease for DbLeases {
    fn holds(&self, work: Work) -> bool {
        let now = self.clock.now();
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&work)
            .and_then(|s| s.mine_until)
            .is_some_and(|t| now < t)
    }

    fn shared_as(&self) -> Option<&str> {
        Some(&self.instance)
    }

    fn takeover_within(&self) -> Option<Duration> {
        Some(self.settings.duration)
    }
}
