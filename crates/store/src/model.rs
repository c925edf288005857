//! Row types shared by both backends. Every time is a [`Timestamp`].

use keepwatch_core::check::Status;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Project {
    pub id: i64,
    pub uuid: String,
    pub name: String,
    pub ping_key: String,
}

/// A check as a list shows it: id, UUID, name, tags and service.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CheckLabel {
    pub id: i64,
    pub uuid: String,
    pub name: String,
    pub tags: String,
    pub service: Option<String>,
}

/// A check's configuration and its last stored state.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CheckRow {
    pub id: i64,
    pub uuid: String,
    pub project_id: i64,
    pub name: String,
    pub slug: String,
    pub tags: String,
    pub descr: String,
    /// `simple`, `cron` or `oncalendar`.
    pub kind: String,
    pub timeout_secs: i64,
    pub grace_secs: i64,
    pub schedule: String,
    pub tz: String,
    pub max_runtime_secs: Option<i64>,
    pub manual_resume: bool,
    pub service: Option<String>,
    /// JSON object of the Healthchecks fields keepwatch stores but does not act on, and of
    /// settings read by the engine only (`methods`, `anomaly_volume_pct`, …).
    pub extra: String,
    pub created_at: Timestamp,
    /// keepwatch: send a low-urgency `late` notice to the check's channels when it enters
    /// its grace period (issue #21).
    pub notify_late: bool,
    /// keepwatch: JSON array of the UUIDs of the checks this one depends on; while one is
    /// down, this check's alerts are held back.
    pub depends_on: String,
    #[sqlx(flatten)]
    pub state: StateRow,
}

/// The state columns of a check.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, sqlx::FromRow)]
pub struct StateRow {
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub down_reason: Option<String>,
    pub last_ping: Option<Timestamp>,
    pub n_pings: i64,
    pub last_duration_ms: Option<i64>,
    /// JSON array of open runs.
    pub open_runs: String,
    /// JSON object: the volumes and durations of the last successful runs.
    pub history: String,
    /// The check's newest ping: the head of the chain its pings are listed by.
    pub last_seq: Option<i64>,
    /// Pings with a higher seq are not reflected in this state yet (replayed at start-up).
    pub checkpoint_seq: i64,
}

/// A check's state row keyed by check, as the writer and the checkpointer store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUpdate {
    pub check_id: i64,
    pub state: StateRow,
}

/// One received ping.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PingRow {
    /// Global order of pings, assigned by the writer.
    pub seq: i64,
    pub check_id: i64,
    /// The previous ping of the same check.
    pub prev_seq: Option<i64>,
    /// Per-check ping number (Healthchecks' `n`).
    pub n: i64,
    pub at: Timestamp,
    /// `success`, `start`, `fail`, `log` or `exit:<n>`.
    pub kind: String,
    pub scheme: String,
    pub method: String,
    pub remote_addr: String,
    pub ua: String,
    pub rid: Option<String>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub volume: Option<i64>,
    pub body: Option<Vec<u8>>,
    pub body_truncated: bool,
    pub duration_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FlipRow {
    pub check_id: i64,
    pub at: Timestamp,
    #[sqlx(try_from = "String")]
    pub old_status: Status,
    #[sqlx(try_from = "String")]
    pub new_status: Status,
}

/// A check event to route to the check's channels.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub check_id: i64,
    pub kind: String,
    pub at: Timestamp,
    pub payload: serde_json::Value,
}

impl EventRow {
    /// A check event held back because a check it depends on is down: recorded, but its
    /// check's channels are not told.
    pub fn held_back(&self) -> bool {
        self.payload.get("suppressed").is_some_and(|s| !s.is_null())
    }
}

/// Everything one writer transaction commits: pings, the states they changed, flips, events.
#[derive(Debug, Default)]
pub struct Batch {
    pub pings: Vec<PingRow>,
    pub states: Vec<StateUpdate>,
    pub flips: Vec<FlipRow>,
    pub events: Vec<EventRow>,
    /// Several instances: the lease this batch must be written under. The transaction locks
    /// the lease row and writes nothing unless `holder` still holds it (an instance whose lease
    /// ran out mid-commit must not write beside the one that took over).
    pub fence: Option<Fence>,
    /// Inbox entries these pings came from (`(check_id, entry id)`): deleted in the same
    /// transaction, so a ping another instance took is applied once.
    pub inbox_done: Vec<(i64, i64)>,
}

/// A lease a write depends on (see [`Batch::fence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub work: &'static str,
    pub holder: String,
}

/// What [`Store::commit_batch_isolated`](crate::Store::commit_batch_isolated) stored.
#[derive(Debug, Default)]
pub struct Committed {
    /// Outbox rows created (the dispatcher has work if above 0).
    pub outbox_rows: u64,
    /// Checks whose rows were not stored, with why; every other check's rows were.
    pub failed: Vec<(i64, String)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.pings.is_empty()
            && self.states.is_empty()
            && self.flips.is_empty()
            && self.events.is_empty()
            && self.inbox_done.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChannelRow {
    pub id: i64,
    pub uuid: String,
    pub project_id: i64,
    pub name: String,
    /// `webhook` or `email`.
    pub kind: String,
    /// JSON, per kind.
    pub config: String,
}

/// An outbox row claimed for delivery, with what is needed to send it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Delivery {
    pub outbox_id: i64,
    pub channel_id: i64,
    pub attempts: i64,
    pub event_kind: String,
    pub payload: String,
    pub channel_kind: String,
    pub channel_name: String,
    pub channel_config: String,
}

/// What happened to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub outbox_id: i64,
    pub at: Timestamp,
    pub ok: bool,
    pub detail: String,
    pub took_ms: i64,
    /// When to try again after a failure; `None` gives up (or, when `ok`, is ignored).
    pub retry_at: Option<Timestamp>,
}

/// A notification and its delivery history, for the API.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NotificationRow {
    pub outbox_id: i64,
    pub event_kind: String,
    pub event_at: Timestamp,
    pub channel_uuid: String,
    pub channel_name: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    /// What the message said, once it was sent.
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRow {
    pub outbox_id: i64,
    pub at: Timestamp,
    pub ok: bool,
    pub detail: String,
    pub took_ms: i64,
}
