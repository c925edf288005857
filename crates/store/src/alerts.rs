//! Alerts, their append-only log, and the pages (notifications to people) the pager sends.
//!
//! An alert is opened by a trigger and stays open (triggered, then perhaps acknowledged)
//! until it is resolved; a unique partial index keeps one open alert per dedup key. The pager
//! records each stretch of an alert's timeline (escalation steps, urgency changes, pages)
//! together with the `paged_until` mark, and only while the alert is still triggered: an
//! acknowledgment committed first wins, and nothing after it is paged.

use keepwatch_core::alert::paging::Urgency;
use keepwatch_core::alert::{AlertSource, AlertStatus};

use crate::projects::generate_secret;
use crate::{Result, Store, Timestamp, with_read, with_tx};

pub(crate) const ALERT_COLUMNS: &str = "id, project_id, service, dedup_key, summary, source, details, status, \
     urgency, triggered_at, acknowledged_at, resolved_at, paged_until, raised_at";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub project_id: i64,
    pub service: String,
    pub dedup_key: String,
    pub summary: String,
    #[sqlx(try_from = "String")]
    pub source: AlertSource,
    /// JSON object.
    pub details: String,
    #[sqlx(try_from = "String")]
    pub status: AlertStatus,
    /// The current urgency: high once the pager raised it (`raised_at`).
    #[sqlx(try_from = "String")]
    pub urgency: Urgency,
    pub triggered_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub paged_until: Timestamp,
    /// When the pager raised the alert from low to high urgency.
    pub raised_at: Option<Timestamp>,
}

impl AlertRow {
    /// The urgency at the trigger, which the alert's timeline is computed from: low for an
    /// alert raised since.
    pub fn triggered_urgency(&self) -> Urgency {
        if self.raised_at.is_some() {
            Urgency::Low
        } else {
            self.urgency
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AlertLogRow {
    pub at: Timestamp,
    pub kind: String,
    pub who: String,
    pub detail: String,
}

/// A new alert, as a trigger describes it (its urgency is the service's, decided by the
/// engine).
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    pub project_id: i64,
    pub service: &'a str,
    pub dedup_key: &'a str,
    pub summary: &'a str,
    pub source: AlertSource,
    /// JSON object.
    pub details: &'a str,
}

/// A notification to queue: who, through which contact, at what urgency, due when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPage {
    pub person: String,
    pub contact: String,
    pub address: String,
    pub urgency: Urgency,
    pub due_at: Timestamp,
}

/// A stretch of one alert's timeline for the pager to record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PagingRecord {
    pub alert_id: i64,
    /// The alert's `paged_until` this stretch was computed from: it is recorded only if the
    /// mark is still there (another instance, or an earlier round, may have moved it).
    pub paged_from: Timestamp,
    /// Everything up to this time is handled.
    pub paged_until: Timestamp,
    /// `(at, kind, who, detail)`.
    pub log: Vec<(Timestamp, String, String, String)>,
    pub pages: Vec<NewPage>,
    /// When the stretch raised the alert's urgency to high, if it did.
    pub raised_at: Option<Timestamp>,
}

macro_rules! log_entry {
    ($tx:expr, $alert:expr, $at:expr, $kind:expr, $who:expr, $detail:expr) => {
        sqlx::query(
            "INSERT INTO alert_log (alert_id, at, kind, who, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($alert)
        .bind($at)
        .bind($kind)
        .bind($who)
        .bind($detail)
        .execute(&mut *$tx)
        .await?
    };
}
pub(crate) use log_entry;

/// Inside a transaction: the id of the open alert with a dedup key, if any.
macro_rules! open_alert_in {
    ($tx:expr, $project_id:expr, $dedup_key:expr) => {{
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM alerts \
             WHERE project_id = $1 AND dedup_key = $2 AND status <> 'resolved'",
        )
        .bind($project_id)
        .bind($dedup_key)
        .fetch_optional(&mut *$tx)
        .await?;
        open
    }};
}

/// Inside a transaction: opens an alert, or attaches the trigger to the open alert with the
/// same key (logged as repeated). Evaluates to `(id, created)`. `ON CONFLICT` waits for a
/// concurrent insert of the same key to commit and then does nothing, where a plain insert
/// would fail on the unique index; the open alert can be resolved between the insert and the
/// lookup, and the next insert then succeeds.
macro_rules! trigger_in {
    ($tx:expr, $new:expr, $urgency:expr, $now:expr) => {{
        let (new, urgency, now): (&NewAlert<'_>, Urgency, Timestamp) = ($new, $urgency, $now);
        let mut attempts = 0;
        loop {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO alerts (project_id, service, dedup_key, summary, source, details, \
                 status, urgency, triggered_at, paged_until) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'triggered', $7, $8, $9) \
                 ON CONFLICT (project_id, dedup_key) WHERE status <> 'resolved' DO NOTHING \
                 RETURNING id",
            )
            .bind(new.project_id)
            .bind(new.service)
            .bind(new.dedup_key)
            .bind(new.summary)
            .bind(new.source.as_str())
            .bind(new.details)
            .bind(urgency.as_str())
            .bind(now)
            // Pages due at the trigger itself are still to be sent.
            .bind(now - chrono::TimeDelta::microseconds(1))
            .fetch_optional(&mut *$tx)
            .await?;
            if let Some(id) = inserted {
                let detail = format!("{} ({} urgency)", new.summary, urgency);
                log_entry!($tx, id, now, "triggered", new.source.as_str(), detail);
                break (id, true);
            }
            let open = open_alert_in!($tx, new.project_id, new.dedup_key);
            if let Some(id) = open {
                log_entry!(
                    $tx,
                    id,
                    now,
                    "trigger_repeated",
                    new.source.as_str(),
                    new.summary
                );
                break (id, false);
            }
            attempts += 1;
            if attempts == 3 {
                return Err($crate::StoreError::conflict(format!(
                    "the open alert for `{}` kept changing as it was triggered",
                    new.dedup_key
                )));
            }
        }
    }};
}

/// Inside a transaction: moves alert `$id` to `$to` (`acknowledged` from triggered, `resolved`
/// from open), logs it and cancels its pending pages. Evaluates to whether it moved.
macro_rules! close_in {
    ($tx:expr, $id:expr, $who:expr, $now:expr, $to:expr) => {{
        let (id, who, now, to): (i64, &str, Timestamp, &str) = ($id, $who, $now, $to);
        let update = match to {
            "acknowledged" => {
                "UPDATE alerts SET status = $1, acknowledged_at = $2 \
                 WHERE id = $3 AND status = 'triggered'"
            }
            _ => "UPDATE alerts SET status = $1, resolved_at = $2 WHERE id = $3 AND status <> 'resolved'",
        };
        let changed = sqlx::query(update)
            .bind(to)
            .bind(now)
            .bind(id)
            .execute(&mut *$tx)
            .await?
            .rows_affected()
            > 0;
        if changed {
            log_entry!($tx, id, now, to, who, "");
            let cancelled = sqlx::query(
                "UPDATE messages SET state = 'cancelled' \
                 WHERE alert_id = $1 AND kind = 'page' AND state = 'pending'",
            )
            .bind(id)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if cancelled > 0 {
                log_entry!($tx, id, now, "pages_cancelled", "", cancelled.to_string());
            }
        }
        changed
    }};
}

/// What a check event does to the alerts: open one at an urgency (or attach to the open
/// one), or resolve the open one with this key, if any.
#[derive(Debug, Clone)]
pub enum EventAlert<'a> {
    Trigger(NewAlert<'a>, Urgency),
    Resolve {
        project_id: i64,
        dedup_key: &'a str,
        who: &'a str,
    },
    /// A log entry on the open alert with this key, if any (a hung run that finished late).
    Log {
        project_id: i64,
        dedup_key: &'a str,
        kind: &'a str,
        who: &'a str,
        detail: String,
    },
}

impl Store {
    /// Opens an alert, or, when one is open under the same dedup key, logs the repeated
    /// trigger on it. Returns the alert and whether it is new.
    pub async fn trigger_alert(
        &self,
        new: &NewAlert<'_>,
        urgency: Urgency,
        now: Timestamp,
    ) -> Result<(AlertRow, bool)> {
        let (id, created) = with_tx!(self, |tx| trigger_in!(tx, new, urgency, now));
        let alert = self.alert(id).await?.ok_or_else(|| {
            crate::StoreError::conflict(format!("alert {id} was deleted as it was triggered"))
        })?;
        Ok((alert, created))
    }

    /// Applies what a run of check events does to the alerts and moves the meta `cursor` to
    /// `through` (the last event's id), in one transaction: an event is acted on once, even
    /// if the process stops in between.
    pub async fn intake_events(
        &self,
        actions: &[EventAlert<'_>],
        cursor: &str,
        through: i64,
        now: Timestamp,
    ) -> Result<()> {
        with_tx!(self, |tx| {
            for action in actions {
                match action {
                    EventAlert::Trigger(new, urgency) => {
                        trigger_in!(tx, new, *urgency, now);
                    }
                    EventAlert::Resolve {
                        project_id,
                        dedup_key,
                        who,
                    } => {
                        let open = open_alert_in!(tx, project_id, dedup_key);
                        if let Some(id) = open {
                            close_in!(tx, id, who, now, "resolved");
                        }
                    }
                    EventAlert::Log {
                        project_id,
                        dedup_key,
                        kind,
                        who,
                        detail,
                    } => {
                        let open = open_alert_in!(tx, project_id, dedup_key);
                        if let Some(id) = open {
                            log_entry!(tx, id, now, *kind, *who, detail);
                        }
                    }
                }
            }
            sqlx::query(crate::SET_META)
                .bind(cursor)
                .bind(through)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// Adds a responder's note to an alert's log; `false` if there is no such alert.
    pub async fn add_alert_note(
        &self,
        id: i64,
        who: &str,
        text: &str,
        now: Timestamp,
    ) -> Result<bool> {
        Ok(with_tx!(self, |tx| {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM alerts WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                log_entry!(tx, id, now, "note", who, text);
            }
            exists.is_some()
        }))
    }

    /// Acknowledges a triggered alert: escalation stops and pending pages are cancelled.
    /// `None` if there is no such alert; the alert unchanged if it was not triggered.
    pub async fn acknowledge_alert(
        &self,
        id: i64,
        who: &str,
        now: Timestamp,
    ) -> Result<Option<AlertRow>> {
        with_tx!(self, |tx| close_in!(tx, id, who, now, "acknowledged"));
        self.alert(id).await
    }

    /// Resolves an open alert; pending pages are cancelled.
    pub async fn resolve_alert(
        &self,
        id: i64,
        who: &str,
        now: Timestamp,
    ) -> Result<Option<AlertRow>> {
        with_tx!(self, |tx| close_in!(tx, id, who, now, "resolved"));
        self.alert(id).await
    }

    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The alerts with these ids, in the order of `ids` (missing ones left out).
    pub async fn alerts_by_id(&self, ids: &[i64]) -> Result<Vec<AlertRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<AlertRow> = with_read!(self, |pool| {
            // Built per backend: a query builder is typed by its database.
            let mut select = sqlx::QueryBuilder::new(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE id IN ("
            ));
            let mut list = select.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            select.push(")");
            select.build_query_as().fetch_all(pool).await?
        });
        Ok(ids
            .iter()
            .filter_map(|id| rows.iter().find(|row| row.id == *id).cloned())
            .collect())
    }

    pub async fn open_alert_by_dedup(
        &self,
        project_id: i64,
        dedup_key: &str,
    ) -> Result<Option<AlertRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE project_id = $1 AND dedup_key = $2 \
                 AND status <> 'resolved'"
            )))
            .bind(project_id)
            .bind(dedup_key)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// A project's alerts, newest first; `status` filters (`open` means not resolved).
    pub async fn list_alerts(
        &self,
        project_id: i64,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AlertRow>> {
        let filter = match status {
            Some("open") => " AND status <> 'resolved'",
            Some("triggered") => " AND status = 'triggered'",
            Some("acknowledged") => " AND status = 'acknowledged'",
            Some("resolved") => " AND status = 'resolved'",
            _ => "",
        };
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE project_id = $1{filter} ORDER BY id DESC LIMIT $2"
            )))
            .bind(project_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Triggered alerts with an id above `after` (the pager's work list; 0 for all).
    pub async fn triggered_alerts(&self, after: i64) -> Result<Vec<AlertRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE status = 'triggered' AND id > $1 ORDER BY id"
            )))
            .bind(after)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Adds `kind` entries to alerts' logs at `at`, `(alert, who, detail)` each, in one
    /// transaction.
    pub async fn log_alerts(
        &self,
        entries: &[(i64, String, String)],
        kind: &str,
        at: Timestamp,
    ) -> Result<()> {
        with_tx!(self, |tx| {
            for (alert, who, detail) in entries {
                log_entry!(tx, *alert, at, kind, who, detail);
            }
        });
        Ok(())
    }

    pub async fn alert_log(&self, id: i64) -> Result<Vec<AlertLogRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT at, kind, who, detail FROM alert_log WHERE alert_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Records a stretch of an alert's timeline: log entries and pages, and moves
    /// `paged_until` from `paged_from` (compare-and-set), only if the alert is still triggered
    /// and its mark is still `paged_from`. Returns whether it was recorded.
    pub async fn record_paging(&self, paging: &PagingRecord, now: Timestamp) -> Result<bool> {
        Ok(self
            .record_pagings(std::slice::from_ref(paging), now)
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// [`Store::record_paging`] for many alerts in one transaction (one fsync for a round of
    /// the pager, not one per alert). The marks, log entries and pages are written by
    /// multi-row statements of a few fixed sizes (each prepared once): a burst of 10,000
    /// alerts is a few hundred statements, not 40,000. At most one record per alert (the
    /// pager walks each alert once a round): the marks are set together.
    pub async fn record_pagings(
        &self,
        pagings: &[PagingRecord],
        now: Timestamp,
    ) -> Result<Vec<bool>> {
        let open = with_tx!(self, |tx| {
            // Compare-and-set every mark; the alerts whose mark moved are the ones recorded.
            let mut open = std::collections::HashSet::new();
            for chunk in fixed_chunks(pagings) {
                let mut update =
                    sqlx::QueryBuilder::new("UPDATE alerts SET paged_until = v.column3 FROM (");
                update.push_values(chunk, |mut row, paging| {
                    row.push_bind(paging.alert_id)
                        .push_bind(paging.paged_from)
                        .push_bind(paging.paged_until);
                });
                update.push(
                    ") AS v WHERE alerts.id = v.column1 AND alerts.status = 'triggered' \
                     AND alerts.paged_until = v.column2 RETURNING alerts.id",
                );
                let ids: Vec<i64> = update.build_query_scalar().fetch_all(&mut *tx).await?;
                open.extend(ids);
            }
            let recorded: Vec<&PagingRecord> = pagings
                .iter()
                .filter(|p| open.contains(&p.alert_id))
                .collect();
            for paging in &recorded {
                if let Some(raised_at) = paging.raised_at {
                    sqlx::query(
                        "UPDATE alerts SET urgency = 'high', raised_at = $1 \
                         WHERE id = $2 AND raised_at IS NULL",
                    )
                    .bind(raised_at)
                    .bind(paging.alert_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let log: Vec<_> = recorded
                .iter()
                .flat_map(|p| p.log.iter().map(move |entry| (p.alert_id, entry)))
                .collect();
            for chunk in fixed_chunks(&log) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO alert_log (alert_id, at, kind, who, detail) ",
                );
                insert.push_values(chunk, |mut row, (alert, (at, kind, who, detail))| {
                    row.push_bind(*alert)
                        .push_bind(*at)
                        .push_bind(kind)
                        .push_bind(who)
                        .push_bind(detail);
                });
                insert.build().execute(&mut *tx).await?;
            }
            let pages: Vec<_> = recorded
                .iter()
                .flat_map(|p| p.pages.iter().map(move |page| (p.alert_id, page)))
                .collect();
            for chunk in fixed_chunks(&pages) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO messages (kind, destination, alert_id, person, contact, address, \
                     urgency, next_attempt_at, created_at) ",
                );
                insert.push_values(chunk, |mut row, (alert, page)| {
                    row.push("'page'")
                        .push_bind(&page.address)
                        .push_bind(*alert)
                        .push_bind(&page.person)
                        .push_bind(&page.contact)
                        .push_bind(&page.address)
                        .push_bind(page.urgency.as_str())
                        .push_bind(page.due_at)
                        .push_bind(now);
                });
                insert.build().execute(&mut *tx).await?;
            }
            open
        });
        Ok(pagings.iter().map(|p| open.contains(&p.alert_id)).collect())
    }

    /// A named process-wide secret, made on first use.
    pub async fn secret(&self, name: &str) -> Result<String> {
        let fresh = generate_secret(48);
        with_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&fresh)
            .execute(&mut *tx)
            .await?;
        });
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?
        }))
    }

    /// Check events after `after` (by id), oldest first, with the check's project, UUID,
    /// name and service: what the pager turns into alerts.
    pub async fn check_events_after(&self, after: i64, limit: i64) -> Result<Vec<CheckEvent>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT e.id, e.kind, e.at, e.payload, c.project_id, c.uuid, c.name, c.service \
                 FROM events e JOIN checks c ON c.id = e.check_id WHERE e.id > $1 ORDER BY e.id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// A check's events, newest first, at most `limit`: `(id, kind, at, payload)`. With
    /// `kinds`, only events of those kinds.
    pub async fn check_events(
        &self,
        check_id: i64,
        kinds: &[&str],
        limit: i64,
    ) -> Result<Vec<(i64, String, Timestamp, String)>> {
        Ok(with_read!(self, |pool| {
            let mut select = sqlx::QueryBuilder::new(
                "SELECT id, kind, at, payload FROM events WHERE check_id = ",
            );
            select.push_bind(check_id);
            if !kinds.is_empty() {
                select.push(" AND kind IN (");
                let mut list = select.separated(", ");
                for kind in kinds {
                    list.push_bind(*kind);
                }
                select.push(")");
            }
            select.push(" ORDER BY id DESC LIMIT ");
            select.push_bind(limit);
            select.build_query_as().fetch_all(pool).await?
        }))
    }

    /// A small counter kept in `meta` (e.g. the pager's event cursor), 0 if unset.
    pub async fn meta(&self, key: &str) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?
                .unwrap_or(0)
        }))
    }

    pub async fn set_meta(&self, key: &str, value: i64) -> Result<()> {
        with_tx!(self, |tx| {
            sqlx::query(crate::SET_META)
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }
}

/// A check event joined with its check, for the pager.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CheckEvent {
    pub id: i64,
    pub kind: String,
    pub at: Timestamp,
    pub payload: String,
    pub project_id: i64,
    pub uuid: String,
    pub name: String,
    pub service: Option<String>,
}

/// Splits `items` into chunks of the sizes in [`BATCH_SIZES`] only, largest first, so each
/// multi-row statement has one of a few shapes and is prepared once.
fn fixed_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = BATCH_SIZES.into_iter().find(|s| *s <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// Rows per multi-row statement (at most 9 parameters a row: 64 rows stay far below both
/// backends' parameter limits).
const BATCH_SIZES: [usize; 4] = [64, 16, 4, 1];
