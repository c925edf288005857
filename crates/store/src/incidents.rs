//! Incidents, their log (updates, notes, owner changes, reminders), their linked alerts and
//! checks, and the messages they send: stakeholder updates and owner reminders, queued in the
//! one outbox (kinds `incident_update` and `incident_reminder`) in the transaction that
//! records what caused them, one row per recipient, each with its own text and delivery
//! record.

use chrono::TimeDelta;
use keepwatch_core::incident::{IncidentStatus, Severity};

use crate::messages::MessageKind;
use crate::{Result, Store, Timestamp, with_read, with_tx};

const INCIDENT_COLUMNS: &str = "id, project_id, title, severity, status, owner, service, impact, \
     stakeholder_groups, extra, update_every, next_update_at, cadence_stage, token, declared_at, \
     declared_by, last_update_at, resolved_at, postmortem";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IncidentRow {
    pub id: i64,
    pub project_id: i64,
    pub title: String,
    #[sqlx(try_from = "String")]
    pub severity: Severity,
    #[sqlx(try_from = "String")]
    pub status: IncidentStatus,
    pub owner: String,
    pub service: String,
    pub impact: String,
    /// JSON array of group names.
    pub stakeholder_groups: String,
    /// JSON array of `{address, tz}`.
    pub extra: String,
    /// Seconds between updates; `None`: no cadence.
    pub update_every: Option<i64>,
    pub next_update_at: Option<Timestamp>,
    pub cadence_stage: i64,
    /// The stakeholder page's secret.
    pub token: String,
    pub declared_at: Timestamp,
    pub declared_by: String,
    pub last_update_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    /// JSON object.
    pub postmortem: String,
}

impl IncidentRow {
    pub fn update_interval(&self) -> Option<TimeDelta> {
        self.update_every.map(TimeDelta::seconds)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct IncidentLogRow {
    pub id: i64,
    pub incident_id: i64,
    pub at: Timestamp,
    pub kind: String,
    pub who: String,
    pub status: Option<String>,
    pub text: String,
    /// For an update: when it was due (it was on time if posted by then).
    pub due_at: Option<Timestamp>,
    pub on_time: Option<bool>,
}

/// A log entry to write with a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewIncidentLog {
    pub kind: String,
    pub who: String,
    pub status: Option<String>,
    pub text: String,
    pub due_at: Option<Timestamp>,
    pub on_time: Option<bool>,
}

/// A message to queue for one recipient: who, how, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncidentMessage {
    pub kind: MessageKind,
    pub person: String,
    pub contact: String,
    pub address: String,
    pub urgency: String,
    /// The subject.
    pub subject: String,
    pub text: String,
    /// When it is due (a reminder through a rule with a delay goes later).
    pub due_at: Timestamp,
}

/// A claimed incident message.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IncidentDelivery {
    pub id: i64,
    pub incident_id: i64,
    pub kind: String,
    pub person: String,
    pub contact: String,
    pub address: String,
    pub attempts: i64,
    pub note: String,
    pub text: String,
    pub title: String,
    pub severity: String,
    pub status: String,
}

/// An incident message as its log of deliveries shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct IncidentMessageRow {
    pub id: i64,
    pub kind: String,
    pub person: Option<String>,
    pub contact: Option<String>,
    pub address: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub note: Option<String>,
    pub text: Option<String>,
}

/// A new incident.
#[derive(Debug, Clone)]
pub struct NewIncident<'a> {
    pub project_id: i64,
    pub title: &'a str,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub owner: &'a str,
    pub service: &'a str,
    pub impact: &'a str,
    pub stakeholder_groups: &'a str,
    pub extra: &'a str,
    pub update_every: Option<i64>,
    pub next_update_at: Option<Timestamp>,
    pub token: &'a str,
    pub declared_by: &'a str,
    pub alerts: &'a [i64],
    pub checks: &'a [String],
}

macro_rules! insert_log {
    ($tx:expr, $incident:expr, $at:expr, $log:expr) => {
        sqlx::query(
            "INSERT INTO incident_log (incident_id, at, kind, who, status, text, due_at, on_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind($incident)
        .bind($at)
        .bind(&$log.kind)
        .bind(&$log.who)
        .bind(&$log.status)
        .bind(&$log.text)
        .bind($log.due_at)
        .bind($log.on_time)
        .execute(&mut *$tx)
        .await?
    };
}

macro_rules! insert_messages {
    ($tx:expr, $incident:expr, $messages:expr, $now:expr) => {
        for m in $messages {
            sqlx::query(
                "INSERT INTO messages (kind, destination, incident_id, person, contact, address, \
                 urgency, note, text, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $2, $6, $7, $8, $9, $10)",
            )
            .bind(m.kind.as_str())
            .bind(&m.address)
            .bind($incident)
            .bind(&m.person)
            .bind(&m.contact)
            .bind(&m.urgency)
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
    /// Creates an incident with its first log entry, links and messages, in one transaction.
    pub async fn create_incident(
        &self,
        new: &NewIncident<'_>,
        log: &NewIncidentLog,
        messages: &[NewIncidentMessage],
        now: Timestamp,
    ) -> Result<IncidentRow> {
        let id: i64 = with_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO incidents (project_id, title, severity, status, owner, service, impact, \
                 stakeholder_groups, extra, update_every, next_update_at, token, declared_at, \
                 declared_by, last_update_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $13) RETURNING id",
            )
            .bind(new.project_id)
            .bind(new.title)
            .bind(new.severity.as_str())
            .bind(new.status.as_str())
            .bind(new.owner)
            .bind(new.service)
            .bind(new.impact)
            .bind(new.stakeholder_groups)
            .bind(new.extra)
            .bind(new.update_every)
            .bind(new.next_update_at)
            .bind(new.token)
            .bind(now)
            .bind(new.declared_by)
            .fetch_one(&mut *tx)
            .await?;
            for alert in new.alerts {
                sqlx::query(
                    "INSERT INTO incident_alerts (incident_id, alert_id, attached_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(alert)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for check in new.checks {
                sqlx::query(
                    "INSERT INTO incident_checks (incident_id, check_uuid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(check)
                .execute(&mut *tx)
                .await?;
            }
            insert_log!(tx, id, now, log);
            insert_messages!(tx, id, messages, now);
            id
        });
        self.incident(id)
            .await?
            .ok_or_else(|| crate::StoreError::conflict("the incident vanished"))
    }

    /// Writes an incident's changed fields (`row` as it is now) if its status and cadence
    /// were still `was`'s, with log entries and messages, in one transaction. `false` when it
    /// changed meanwhile (the caller reads it again).
    pub async fn change_incident(
        &self,
        was: &IncidentRow,
        row: &IncidentRow,
        logs: &[NewIncidentLog],
        messages: &[NewIncidentMessage],
        now: Timestamp,
    ) -> Result<bool> {
        Ok(with_tx!(self, |tx| {
            let changed = sqlx::query(
                "UPDATE incidents SET title = $1, severity = $2, status = $3, owner = $4, impact = $5, \
                 stakeholder_groups = $6, extra = $7, update_every = $8, next_update_at = $9, \
                 cadence_stage = $10, last_update_at = $11, resolved_at = $12, postmortem = $13, \
                 token = $14 \
                 WHERE id = $15 AND status = $16 AND cadence_stage = $17 AND owner = $18 \
                 AND COALESCE(next_update_at, -1) = COALESCE($19, -1)",
            )
            .bind(&row.title)
            .bind(row.severity.as_str())
            .bind(row.status.as_str())
            .bind(&row.owner)
            .bind(&row.impact)
            .bind(&row.stakeholder_groups)
            .bind(&row.extra)
            .bind(row.update_every)
            .bind(row.next_update_at)
            .bind(row.cadence_stage)
            .bind(row.last_update_at)
            .bind(row.resolved_at)
            .bind(&row.postmortem)
            .bind(&row.token)
            .bind(was.id)
            .bind(was.status.as_str())
            .bind(was.cadence_stage)
            .bind(&was.owner)
            .bind(was.next_update_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if changed {
                for log in logs {
                    insert_log!(tx, was.id, now, log);
                }
                insert_messages!(tx, was.id, messages, now);
            }
            changed
        }))
    }

    pub async fn incident(&self, id: i64) -> Result<Option<IncidentRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn incident_by_token(&self, token: &str) -> Result<Option<IncidentRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE token = $1"
            )))
            .bind(token)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// A project's incidents, newest first: `open` (not resolved), `resolved` or all.
    pub async fn list_incidents(
        &self,
        project_id: i64,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<IncidentRow>> {
        let filter = match status {
            Some("open") => "AND status <> 'resolved'",
            Some("resolved") => "AND status = 'resolved'",
            _ => "",
        };
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE project_id = $1 {filter} \
                 ORDER BY id DESC LIMIT $2"
            )))
            .bind(project_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Open incidents with a next update due, for the cadence loop.
    pub async fn incidents_with_cadence(&self) -> Result<Vec<IncidentRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE next_update_at IS NOT NULL \
                 AND status <> 'resolved' ORDER BY next_update_at"
            )))
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn incident_log(&self, id: i64) -> Result<Vec<IncidentLogRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT id, incident_id, at, kind, who, status, text, due_at, on_time \
                 FROM incident_log WHERE incident_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn incident_alert_ids(&self, id: i64) -> Result<Vec<i64>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar(
                "SELECT alert_id FROM incident_alerts WHERE incident_id = $1 ORDER BY alert_id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn incident_check_uuids(&self, id: i64) -> Result<Vec<String>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar(
                "SELECT check_uuid FROM incident_checks WHERE incident_id = $1 ORDER BY check_uuid",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The incidents an alert belongs to.
    pub async fn incidents_of_alert(&self, alert_id: i64) -> Result<Vec<i64>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar(
                "SELECT incident_id FROM incident_alerts WHERE alert_id = $1 ORDER BY incident_id",
            )
            .bind(alert_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The newest incident of a project linked to check `uuid` that is open, or was resolved
    /// at or after `since`.
    pub async fn incident_of_check_since(
        &self,
        project_id: i64,
        uuid: &str,
        since: Timestamp,
    ) -> Result<Option<IncidentRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE project_id = $1 \
                 AND id IN (SELECT incident_id FROM incident_checks WHERE check_uuid = $2) \
                 AND (resolved_at IS NULL OR resolved_at >= $3) ORDER BY id DESC LIMIT 1"
            )))
            .bind(project_id)
            .bind(uuid)
            .bind(since)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Links alerts and checks to an incident, with a log entry and messages, in one
    /// transaction.
    pub async fn attach_to_incident(
        &self,
        incident_id: i64,
        alerts: &[i64],
        checks: &[String],
        log: Option<&NewIncidentLog>,
        messages: &[NewIncidentMessage],
        now: Timestamp,
    ) -> Result<()> {
        with_tx!(self, |tx| {
            for alert in alerts {
                sqlx::query(
                    "INSERT INTO incident_alerts (incident_id, alert_id, attached_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(incident_id)
                .bind(alert)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for check in checks {
                sqlx::query(
                    "INSERT INTO incident_checks (incident_id, check_uuid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(incident_id)
                .bind(check)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(log) = log {
                insert_log!(tx, incident_id, now, log);
            }
            insert_messages!(tx, incident_id, messages, now);
        });
        Ok(())
    }

    /// Every message of an incident, oldest first.
    pub async fn incident_messages(&self, id: i64) -> Result<Vec<IncidentMessageRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT id, kind, person, contact, address, state, attempts, created_at, sent_at, \
                 last_error, note, text FROM messages WHERE incident_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Claims up to `limit` due incident messages of `kind` for `lease`, leaving out those to
    /// `addresses`.
    pub async fn claim_incident_messages(
        &self,
        kind: MessageKind,
        now: Timestamp,
        lease: TimeDelta,
        limit: i64,
        addresses: &[String],
    ) -> Result<Vec<IncidentDelivery>> {
        let ids = self.claim(kind, now, now + lease, limit, addresses).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(with_read!(self, |pool| {
            let mut select = sqlx::QueryBuilder::new(
                "SELECT m.id, m.incident_id, m.kind, m.person, m.contact, m.address, m.attempts, \
                 COALESCE(m.note, '') AS note, COALESCE(m.text, '') AS text, i.title, i.severity, i.status \
                 FROM messages m JOIN incidents i ON i.id = m.incident_id \
                 WHERE m.state = 'pending' AND m.id IN (",
            );
            let mut list = select.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            select.push(") ORDER BY m.id");
            select.build_query_as().fetch_all(pool).await?
        }))
    }

    /// Alerts opened after alert id `after`, oldest first, with the project they belong to:
    /// the incident loop's recurrence and auto-declare look at each once.
    pub async fn alerts_after(&self, after: i64, limit: i64) -> Result<Vec<crate::AlertRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM alerts WHERE id > $1 ORDER BY id LIMIT $2",
                crate::alerts::ALERT_COLUMNS
            )))
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The newest alert's id (0 when there is none).
    pub async fn max_alert_id(&self) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM alerts")
                .fetch_one(pool)
                .await?
        }))
    }

    /// High-urgency alerts still triggered (never acknowledged) since before `before`, in no
    /// incident: candidates for a service's auto-declare.
    pub async fn unacked_alerts_before(&self, before: Timestamp) -> Result<Vec<crate::AlertRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM alerts WHERE status = 'triggered' AND urgency = 'high' \
                 AND triggered_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM incident_alerts ia WHERE ia.alert_id = alerts.id) \
                 ORDER BY id LIMIT 100",
                crate::alerts::ALERT_COLUMNS
            )))
            .bind(before)
            .fetch_all(pool)
            .await?
        }))
    }

    /// A check's events between two times, oldest first: `(at, kind, payload)`.
    pub async fn check_events_between(
        &self,
        check_id: i64,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(Timestamp, String, String)>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT at, kind, payload FROM events WHERE check_id = $1 AND at >= $2 AND at <= $3 \
                 ORDER BY at, id LIMIT 10000",
            )
            .bind(check_id)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The on-call configuration applies of a project between two times: `(at, by)`.
    pub async fn oncall_applies_between(
        &self,
        project_id: i64,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(Timestamp, String)>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT applied_at, applied_by FROM oncall_history WHERE project_id = $1 \
                 AND applied_at >= $2 AND applied_at <= $3 ORDER BY applied_at",
            )
            .bind(project_id)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?
        }))
    }
}
