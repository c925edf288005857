//! One seam every background loop asks before a round: may this process do that work now?
//!
//! With one process (SQLite, or a single instance on PostgreSQL) the answer is always yes
//! ([`SoleInstance`]). Several instances on one PostgreSQL database will take turns through a
//! lease kept in the database, behind the same trait, so no loop changes when it comes.

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

/// Whether this process may do a kind of work now. Cheap: called before every round.
pub trait Lease: Send + Sync {
    fn holds(&self, work: Work) -> bool;
}

/// The only instance: it always may.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoleInstance;

impl Lease for SoleInstance {
    fn holds(&self, _work: Work) -> bool {
        true
    }
}
