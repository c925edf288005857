//! Shift check-ins (see `keepwatch_core::oncall::checkin`): one row per person and shift
//! start, opened with its messages in one transaction, acknowledged by the person, or missed
//! (with the notices to the person on call before and the fallback).

use chrono::TimeDelta;

use crate::messages::MessageKind;
use crate::{Result, Store, Timestamp, with_read, with_tx};

/// A check-in as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct CheckinRow {
    pub id: i64,
    #[serde(skip)]
    pub project_id: i64,
    pub schedule: String,
    pub person: String,
    pub shift_start: Timestamp,
    pub shift_end: Timestamp,
    pub due_at: Timestamp,
    /// `pending`, `acknowledged` or `missed`.
    pub state: String,
    /// JSON array: who is told if it is missed.
    #[serde(skip)]
    pub told: String,
    pub acknowledged_at: Option<Timestamp>,
    pub acknowledged_by: Option<String>,
    pub created_at: Timestamp,
}

/// A check-in to open.
#[derive(Debug, Clone)]
pub struct NewCheckin<'a> {
    pub project_id: i64,
    pub schedule: &'a str,
    pub person: &'a str,
    pub shift_start: Timestamp,
    pub shift_end: Timestamp,
    pub due_at: Timestamp,
    pub told: &'a [String],
}

/// A check-in message to queue: to whom, through which contact, what it says, when.
#[derive(Debug, Clone)]
pub struct CheckinMessage {
    pub person: String,
    pub contact: String,
    pub address: String,
    pub subject: String,
    pub text: String,
    pub due_at: Timestamp,
}

/// A claimed check-in message.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CheckinDelivery {
    pub id: i64,
    pub checkin_id: i64,
    pub person: String,
    pub contact: String,
    pub address: String,
    pub attempts: i64,
    pub note: String,
    pub text: String,
}

const COLUMNS: &str = "id, project_id, schedule, person, shift_start, shift_end, due_at, state, \
     told, acknowledged_at, acknowledged_by, created_at";

macro_rules! queue {
    ($tx:expr, $checkin:expr, $messages:expr, $now:expr) => {
        for m in $messages {
            sqlx::query(
                "INSERT INTO messages (kind, destination, checkin_id, person, contact, address, \
                 urgency, note, text, next_attempt_at, created_at) \
                 VALUES ('checkin', $1, $2, $3, $4, $1, 'high', $5, $6, $7, $8)",
            )
            .bind(&m.address)
            .bind($checkin)
            .bind(&m.person)
            .bind(&m.contact)
            .bind(&m.subject)
            .bind(&m.text)
            .bind(m.due_at)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

impl Store {
    /// Opens the check-in of a shift start and queues its messages (`messages` writes them
    /// for the new id), in one transaction; `None` if it was opened before.
    pub async fn open_checkin(
        &self,
        new: &NewCheckin<'_>,
        messages: &(dyn Fn(i64) -> Vec<CheckinMessage> + Send + Sync),
        now: Timestamp,
    ) -> Result<Option<i64>> {
        let told = serde_json::to_string(new.told).expect("a list of strings");
        Ok(with_tx!(self, |tx| {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO checkins (project_id, schedule, person, shift_start, shift_end, due_at, \
                 told, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (project_id, schedule, person, shift_start) DO NOTHING RETURNING id",
            )
            .bind(new.project_id)
            .bind(new.schedule)
            .bind(new.person)
            .bind(new.shift_start)
            .bind(new.shift_end)
            .bind(new.due_at)
            .bind(&told)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = id {
                queue!(tx, id, &messages(id), now);
            }
            id
        }))
    }

    pub async fn checkin(&self, id: i64) -> Result<Option<CheckinRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM checkins WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// A project's check-ins, newest first.
    pub async fn checkins(&self, project_id: i64, limit: i64) -> Result<Vec<CheckinRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM checkins WHERE project_id = $1 ORDER BY id DESC LIMIT $2"
            )))
            .bind(project_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// A project's check-ins missed with shifts that started after `since`, oldest first.
    pub async fn missed_checkins(
        &self,
        project_id: i64,
        since: Timestamp,
    ) -> Result<Vec<CheckinRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM checkins WHERE project_id = $1 AND state = 'missed' \
                 AND shift_start > $2 ORDER BY shift_start"
            )))
            .bind(project_id)
            .bind(since)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Acknowledges a check-in in `who`'s name (its pending messages to the person are
    /// cancelled). A missed one keeps its state and records the late acknowledgment; a
    /// second acknowledgment changes nothing. `None` if there is no such check-in.
    pub async fn acknowledge_checkin(
        &self,
        id: i64,
        who: &str,
        now: Timestamp,
    ) -> Result<Option<CheckinRow>> {
        with_tx!(self, |tx| {
            sqlx::query(
                "UPDATE checkins SET acknowledged_at = $1, acknowledged_by = $2, \
                 state = CASE WHEN state = 'pending' THEN 'acknowledged' ELSE state END \
                 WHERE id = $3 AND acknowledged_at IS NULL",
            )
            .bind(now)
            .bind(who)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE messages SET state = 'cancelled' WHERE checkin_id = $1 AND state = 'pending' \
                 AND person = (SELECT person FROM checkins WHERE id = $1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        });
        self.checkin(id).await
    }

    /// Pending check-ins due at `now` or before.
    pub async fn due_checkins(&self, now: Timestamp) -> Result<Vec<CheckinRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM checkins WHERE state = 'pending' AND due_at <= $1 ORDER BY id"
            )))
            .bind(now)
            .fetch_all(pool)
            .await?
        }))
    }

    /// When the next pending check-in falls due.
    pub async fn next_checkin_due(&self) -> Result<Option<Timestamp>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT MIN(due_at) FROM checkins WHERE state = 'pending'")
                .fetch_one(pool)
                .await?
        }))
    }

    /// Records a pending check-in as missed, cancels its messages still pending and queues
    /// `notices`, in one transaction; `false` if it was no longer pending.
    pub async fn miss_checkin(
        &self,
        id: i64,
        notices: &[CheckinMessage],
        now: Timestamp,
    ) -> Result<bool> {
        Ok(with_tx!(self, |tx| {
            let changed = sqlx::query(
                "UPDATE checkins SET state = 'missed' WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if changed {
                sqlx::query(
                    "UPDATE messages SET state = 'cancelled' WHERE checkin_id = $1 AND state = 'pending'",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                queue!(tx, id, notices, now);
            }
            changed
        }))
    }

    /// Claims up to `limit` due check-in messages for `lease`, leaving out those to
    /// `addresses`.
    pub async fn claim_checkin_messages(
        &self,
        now: Timestamp,
        lease: TimeDelta,
        limit: i64,
        addresses: &[String],
    ) -> Result<Vec<CheckinDelivery>> {
        let ids = self
            .claim(MessageKind::Checkin, now, now + lease, limit, addresses)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<CheckinDelivery> = with_read!(self, |pool| {
                sqlx::query_as(
                    "SELECT id, checkin_id, person, contact, address, attempts, \
                     COALESCE(note, '') AS note, COALESCE(text, '') AS text \
                     FROM messages WHERE id = $1 AND state = 'pending'",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
            });
            out.extend(row);
        }
        Ok(out)
    }

    /// The messages of a check-in, oldest first: `(person, contact, state)`.
    pub async fn checkin_messages(&self, id: i64) -> Result<Vec<(String, String, String)>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT person, contact, state FROM messages WHERE checkin_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }
}
