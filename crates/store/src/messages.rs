//! The outbox of messages: everything keepwatch sends, in one table with one claim.
//!
//! A message has a kind: a check's event to a channel (created by [`Store::commit_batch`] in
//! the transaction that changed the check), or a page to a person's contact (created by
//! [`Store::record_pagings`] with the stretch of the alert's timeline it belongs to). Due rows
//! are claimed by pushing their `next_attempt_at` forward by a lease: a dispatcher that dies
//! mid-send leaves the row to be retried when the lease ends, so a message is never lost (it
//! may, rarely, be sent twice; receivers get an id to dedupe). The rows of a destination that
//! has all it can take (`destination`: `channel:<id>`, or the address) are left out of a
//! claim, so they do not crowd out the others. Every attempt is recorded: a channel event's in
//! `message_attempts`, a page's in its alert's log.

use chrono::TimeDelta;
use keepwatch_core::alert::AlertStatus;
use keepwatch_core::alert::paging::Urgency;

use crate::alerts::log_entry;
use crate::{
    AttemptResult, AttemptRow, Backend, Delivery, NotificationRow, Result, Store, Timestamp,
    with_read, with_tx,
};

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A check's event, to one of its channels.
    ChannelEvent,
    /// An alert's notification, to a person's contact.
    Page,
    /// A code that proves a contact reaches its person, sent at once (the person waits for
    /// it), never queued.
    VerificationCode,
    /// A short note to a person who was paged for an alert: it was resolved, it recovered, its
    /// hung run finished late.
    AlertUpdate,
    /// A status update of an incident, to one stakeholder (its text written for them).
    IncidentUpdate,
    /// A reminder to an incident's owner (or, escalated, the next in line) that an update is
    /// due.
    IncidentReminder,
    /// A shift check-in to the person whose shift starts, or the notice of a missed one to
    /// the person on call before and the schedule's fallback (its text written when queued).
    Checkin,
    /// A notification of a live drill (`keepwatch drill --live`), sent at once and recorded
    /// with its attempt, apart from alerts.
    Drill,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::ChannelEvent => "channel_event",
            MessageKind::Page => "page",
            MessageKind::VerificationCode => "verification_code",
            MessageKind::AlertUpdate => "alert_update",
            MessageKind::IncidentUpdate => "incident_update",
            MessageKind::IncidentReminder => "incident_reminder",
            MessageKind::Checkin => "checkin",
            MessageKind::Drill => "drill",
        }
    }
}

/// A message sent at once rather than queued, and how its one attempt went.
#[derive(Debug, Clone)]
pub struct SentNow<'a> {
    pub kind: MessageKind,
    pub person: &'a str,
    pub contact: &'a str,
    pub address: &'a str,
    pub at: Timestamp,
    pub ok: bool,
    pub detail: &'a str,
    pub took_ms: i64,
}

/// `$4` is a JSON array of destinations left out (they have all they can take). High-urgency
/// rows come first (`high` sorts before `low`), so a claim with little room never leaves a
/// high page behind low ones. The index `messages_claim` hands the rows out in this order
/// (the unary `+` keeps SQLite from picking `messages_due` for the time range and sorting every
/// due row instead).
const CLAIM_SQLITE: &str = "UPDATE messages SET next_attempt_at = $1 WHERE id IN \
     (SELECT id FROM messages WHERE state = 'pending' AND kind = $5 AND +next_attempt_at <= $2 \
      AND destination NOT IN (SELECT value FROM json_each($4)) \
      ORDER BY urgency, next_attempt_at LIMIT $3) RETURNING id";

/// PostgreSQL: several instances may claim at once; SKIP LOCKED keeps them apart.
const CLAIM_POSTGRES: &str = "UPDATE messages SET next_attempt_at = $1 WHERE id IN \
     (SELECT id FROM messages WHERE state = 'pending' AND kind = $5 AND +next_attempt_at <= $2 \
      AND destination NOT IN (SELECT json_array_elements_text($4::text::json)) \
      ORDER BY urgency, next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id";

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub struct PageOutcome<'a> {
    pub page: &'a PageDelivery,
    pub ok: bool,
    pub detail: String,
    /// When to try again after a failure; `None` gives up.
    pub retry_at: Option<Timestamp>,
}

/// A page claimed for delivery, with what the message needs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PageDelivery {
    pub id: i64,
    pub alert_id: i64,
    pub person: String,
    pub contact: String,
    pub address: String,
    #[sqlx(try_from = "String")]
    pub urgency: Urgency,
    pub attempts: i64,
    pub summary: String,
    pub service: String,
    pub dedup_key: String,
    #[sqlx(try_from = "String")]
    pub status: AlertStatus,
    /// A page of this alert already reached this address: a repeat, which a rate limit may
    /// fold into a summary (a first page is never held back).
    pub repeat: bool,
}

/// An alert log entry people who were paged hear of: `resolved`, `finished_late`, or a check
/// event that came while the alert was open (`trigger_repeated` by `check`: the next run
/// failed, say), which would otherwise add to the log only.
/// One delivery's outcome, for the audit (see [`crate::Store::delivery_outcomes`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryOutcome {
    /// `person/contact` for a page, the channel's name for a channel message.
    pub name: String,
    pub state: String,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertNews {
    /// The log entry's id (the pager's cursor).
    pub id: i64,
    pub alert_id: i64,
    pub at: Timestamp,
    pub kind: String,
    pub who: String,
    pub detail: String,
}

/// An alert update to queue for one person's contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpdate {
    pub alert_id: i64,
    pub person: String,
    pub contact: String,
    pub address: String,
    pub urgency: Urgency,
    pub note: String,
}

/// A claimed alert update, with what its message needs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UpdateDelivery {
    pub id: i64,
    pub alert_id: i64,
    pub person: String,
    pub contact: String,
    pub address: String,
    #[sqlx(try_from = "String")]
    pub urgency: Urgency,
    pub attempts: i64,
    pub note: String,
    pub summary: String,
    pub service: String,
    /// The alert's status now: an update about an alert still open carries its links.
    #[sqlx(try_from = "String")]
    pub status: AlertStatus,
}

/// A page of an alert, as its log of deliveries shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertMessageRow {
    pub id: i64,
    pub person: Option<String>,
    pub contact: Option<String>,
    pub address: Option<String>,
    pub urgency: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// What the message said (plain text), once it was sent.
    pub text: Option<String>,
}

impl Store {
    /// Starts meta `cursor` at the end of the alert log if it is not set yet, so a new
    /// reader of the log (the pager's alert updates) does not act on entries from before it
    /// existed.
    pub async fn start_log_cursor(&self, cursor: &str) -> Result<()> {
        with_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO meta (key, value) SELECT $1, COALESCE(MAX(id), 0) FROM alert_log \
                 WHERE true ON CONFLICT (key) DO NOTHING",
            )
            .bind(cursor)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// The [`AlertNews`] log entries after `after` (by id), oldest first.
    pub async fn alert_news_after(&self, after: i64, limit: i64) -> Result<Vec<AlertNews>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT id, alert_id, at, kind, who, detail FROM alert_log \
                 WHERE kind IN ('resolved', 'finished_late', 'trigger_repeated') AND id > $1 \
                 AND (kind <> 'trigger_repeated' OR who = 'check') ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The people a page of the alert reached, each with the highest urgency they were paged
    /// at (`high` sorts before `low`).
    pub async fn paged_people(&self, alert_id: i64) -> Result<Vec<(String, Urgency)>> {
        let rows: Vec<(String, String)> = with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT person, MIN(urgency) FROM messages \
                 WHERE alert_id = $1 AND kind = 'page' AND state = 'sent' \
                 GROUP BY person ORDER BY person",
            )
            .bind(alert_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(person, urgency)| {
                let urgency = Urgency::parse(&urgency).unwrap_or(Urgency::High);
                (person, urgency)
            })
            .collect())
    }

    /// Queues alert updates, due at `now`, and moves meta `cursor` to `through`, in one
    /// transaction: each log entry is told once.
    pub async fn queue_updates(
        &self,
        updates: &[NewUpdate],
        cursor: &str,
        through: i64,
        now: Timestamp,
    ) -> Result<()> {
        with_tx!(self, |tx| {
            for update in updates {
                sqlx::query(
                    "INSERT INTO messages (kind, destination, alert_id, person, contact, address, \
                     urgency, note, next_attempt_at, created_at) \
                     VALUES ('alert_update', $4, $1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(update.alert_id)
                .bind(&update.person)
                .bind(&update.contact)
                .bind(&update.address)
                .bind(update.urgency.as_str())
                .bind(&update.note)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(crate::SET_META)
                .bind(cursor)
                .bind(through)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// Claims up to `limit` due alert updates for `lease`, leaving out those to `addresses`.
    pub async fn claim_updates(
        &self,
        now: Timestamp,
        lease: TimeDelta,
        limit: i64,
        addresses: &[String],
    ) -> Result<Vec<UpdateDelivery>> {
        let ids = self
            .claim(MessageKind::AlertUpdate, now, now + lease, limit, addresses)
            .await?;
        let mut updates = Vec::with_capacity(ids.len());
        for id in ids {
            let update: Option<UpdateDelivery> = with_read!(self, |pool| {
                sqlx::query_as(
                    "SELECT m.id, m.alert_id, m.person, m.contact, m.address, m.urgency, m.attempts, \
                     m.note, a.summary, a.service, a.status \
                     FROM messages m JOIN alerts a ON a.id = m.alert_id \
                     WHERE m.id = $1 AND m.state = 'pending'",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
            });
            updates.extend(update);
        }
        Ok(updates)
    }

    /// Claims up to `limit` due messages of `kind` until `lease_until`, leaving out those
    /// to `except` destinations. Returns their ids.
    pub(crate) async fn claim(
        &self,
        kind: MessageKind,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        except: &[String],
    ) -> Result<Vec<i64>> {
        let except = serde_json::to_string(except).expect("a list of strings");
        let claim = match self.backend {
            Backend::Sqlite { .. } => CLAIM_SQLITE,
            Backend::Postgres(_) => CLAIM_POSTGRES,
        };
        Ok(with_tx!(self, |tx| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(claim))
                .bind(lease_until)
                .bind(now)
                .bind(limit)
                .bind(&except)
                .bind(kind.as_str())
                .fetch_all(&mut *tx)
                .await?
        }))
    }

    /// Claims up to `limit` due channel events until `lease_until` and returns them with
    /// the event and channel they need.
    pub async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        self.claim_due_except(now, lease_until, limit, &[]).await
    }

    /// As [`Store::claim_due`], leaving out the rows of `channels` (the dispatcher's
    /// destinations that have all they can take), so they do not crowd out the others.
    pub async fn claim_due_except(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        channels: &[i64],
    ) -> Result<Vec<Delivery>> {
        let except: Vec<String> = channels.iter().map(|id| format!("channel:{id}")).collect();
        self.claim_channel_events(now, lease_until, limit, &except)
            .await
    }

    /// As [`Store::claim_due`], leaving out the rows of the `except` destinations
    /// (`channel:<id>`; other keys match no channel event).
    pub async fn claim_channel_events(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        except: &[String],
    ) -> Result<Vec<Delivery>> {
        let ids = self
            .claim(MessageKind::ChannelEvent, now, lease_until, limit, except)
            .await?;
        let mut deliveries = Vec::with_capacity(ids.len());
        for id in ids {
            let delivery: Option<Delivery> = with_read!(self, |pool| {
                sqlx::query_as(
                    "SELECT m.id AS outbox_id, m.channel_id, m.attempts, e.kind AS event_kind, e.payload, \
                     c.kind AS channel_kind, c.name AS channel_name, c.config AS channel_config \
                     FROM messages m JOIN events e ON e.id = m.event_id JOIN channels c ON c.id = m.channel_id \
                     WHERE m.id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
            });
            deliveries.extend(delivery);
        }
        Ok(deliveries)
    }

    /// Stores one attempt and moves the row on: sent, retried later, or failed for good.
    pub async fn record_attempt(&self, result: &AttemptResult) -> Result<()> {
        let (state, next) = match (result.ok, result.retry_at) {
            (true, _) => ("sent", result.at),
            (false, Some(retry_at)) => ("pending", retry_at),
            (false, None) => ("failed", result.at),
        };
        let error = (!result.ok).then_some(&result.detail);
        with_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO message_attempts (message_id, at, ok, detail, took_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(result.outbox_id)
            .bind(result.at)
            .bind(result.ok)
            .bind(&result.detail)
            .bind(result.took_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE messages SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
                 last_error = COALESCE($3, last_error), sent_at = $4 WHERE id = $5",
            )
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(result.ok.then_some(result.at))
            .bind(result.outbox_id)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// Keeps what a channel event's message said, before it goes out: shown with its
    /// delivery record.
    pub async fn record_message_text(&self, id: i64, text: &str) -> Result<()> {
        with_tx!(self, |tx| {
            sqlx::query("UPDATE messages SET text = $1 WHERE id = $2")
                .bind(text)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// An alert's pages, oldest first, with what each said.
    pub async fn alert_messages(&self, alert_id: i64) -> Result<Vec<AlertMessageRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT m.id, m.person, m.contact, m.address, m.urgency, m.state, m.attempts, \
                 m.created_at, m.sent_at, m.last_error, \
                 CASE WHEN m.text_with IS NULL THEN m.text ELSE t.text END AS text \
                 FROM messages m LEFT JOIN messages t ON t.id = m.text_with \
                 WHERE m.alert_id = $1 ORDER BY m.id",
            )
            .bind(alert_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Number of messages not yet delivered (the outbox depth metric).
    pub async fn outbox_depth(&self) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE state = 'pending'")
                .fetch_one(pool)
                .await?
        }))
    }

    /// A check's notifications, newest first, for the API.
    pub async fn list_notifications(
        &self,
        check_id: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT m.id AS outbox_id, e.kind AS event_kind, e.at AS event_at, c.uuid AS channel_uuid, \
                 c.name AS channel_name, m.state, m.attempts, m.next_attempt_at, m.last_error, m.text \
                 FROM messages m JOIN events e ON e.id = m.event_id JOIN channels c ON c.id = m.channel_id \
                 WHERE e.check_id = $1 ORDER BY m.id DESC LIMIT $2",
            )
            .bind(check_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Every attempt for the given outbox rows, oldest first.
    pub async fn list_attempts(&self, outbox_ids: &[i64]) -> Result<Vec<AttemptRow>> {
        let mut out = Vec::new();
        for id in outbox_ids {
            let rows: Vec<AttemptRow> = with_read!(self, |pool| {
                sqlx::query_as(
                    "SELECT message_id AS outbox_id, at, ok, detail, took_ms FROM message_attempts WHERE message_id = $1 ORDER BY id",
                )
                .bind(id)
                .fetch_all(pool)
                .await?
            });
            out.extend(rows);
        }
        Ok(out)
    }

    /// Claims up to `limit` due pages for `lease`.
    pub async fn claim_pages(
        &self,
        now: Timestamp,
        lease: TimeDelta,
        limit: i64,
    ) -> Result<Vec<PageDelivery>> {
        self.claim_pages_except(now, lease, limit, &[]).await
    }

    /// As [`Store::claim_pages`], leaving out the pages to `addresses` (the pager's
    /// destinations that have all they can take), so they do not crowd out the others.
    pub async fn claim_pages_except(
        &self,
        now: Timestamp,
        lease: TimeDelta,
        limit: i64,
        addresses: &[String],
    ) -> Result<Vec<PageDelivery>> {
        let ids = self
            .claim(MessageKind::Page, now, now + lease, limit, addresses)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(with_read!(self, |pool| {
            // Built per backend: a query builder is typed by its database.
            let mut select = sqlx::QueryBuilder::new(
                "SELECT m.id, m.alert_id, m.person, m.contact, m.address, m.urgency, m.attempts, \
                 a.summary, a.service, a.dedup_key, a.status, \
                 EXISTS (SELECT 1 FROM messages p WHERE p.alert_id = m.alert_id \
                  AND p.address = m.address AND p.kind = 'page' AND p.state = 'sent') AS repeat \
                 FROM messages m JOIN alerts a ON a.id = m.alert_id WHERE m.state = 'pending' AND m.id IN (",
            );
            let mut list = select.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            select.push(") ORDER BY m.id");
            select.build_query_as().fetch_all(pool).await?
        }))
    }

    /// Records delivery attempts of the pages of one message (a page, or a summary of several)
    /// and their outcomes in their alerts' logs, in one transaction. A page of an alert
    /// acknowledged meanwhile is left cancelled. `text`, what the message said, is stored once,
    /// with the first page; the others point to it (a summary of 100 pages is one text, not
    /// 100 copies).
    pub async fn finish_pages(
        &self,
        outcomes: &[PageOutcome<'_>],
        text: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        let Some(first) = outcomes.first().map(|o| o.page.id) else {
            return Ok(());
        };
        with_tx!(self, |tx| {
            for outcome in outcomes {
                let (page, ok) = (outcome.page, outcome.ok);
                let state = match (ok, outcome.retry_at) {
                    (true, _) => "sent",
                    (false, Some(_)) => "pending",
                    (false, None) => "failed",
                };
                sqlx::query(
                    "UPDATE messages SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
                     last_error = $3, sent_at = $4, \
                     text = CASE WHEN id = $7 THEN COALESCE($6, text) ELSE text END, \
                     text_with = CASE WHEN id = $7 OR $6 IS NULL THEN text_with ELSE $7 END \
                     WHERE id = $5 AND state = 'pending'",
                )
                .bind(state)
                .bind(outcome.retry_at.unwrap_or(now))
                .bind((!ok).then_some(&outcome.detail))
                .bind(ok.then_some(now))
                .bind(page.id)
                .bind(text)
                .bind(first)
                .execute(&mut *tx)
                .await?;
                let kind = if ok { "notified" } else { "notify_failed" };
                let who = format!("{} via {}", page.person, page.contact);
                log_entry!(tx, page.alert_id, now, kind, who, &outcome.detail);
            }
        });
        Ok(())
    }

    /// Records a message sent at once (see [`SentNow`]) and its attempt. Its text is not
    /// kept: a verification code's holds the code.
    pub async fn record_sent_now(&self, sent: &SentNow<'_>) -> Result<i64> {
        let state = if sent.ok { "sent" } else { "failed" };
        Ok(with_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO messages (kind, destination, person, contact, address, state, attempts, \
                 next_attempt_at, last_error, created_at, sent_at) \
                 VALUES ($1, $4, $2, $3, $4, $5, 1, $6, $7, $6, $8) RETURNING id",
            )
            .bind(sent.kind.as_str())
            .bind(sent.person)
            .bind(sent.contact)
            .bind(sent.address)
            .bind(state)
            .bind(sent.at)
            .bind((!sent.ok).then_some(sent.detail))
            .bind(sent.ok.then_some(sent.at))
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO message_attempts (message_id, at, ok, detail, took_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(sent.at)
            .bind(sent.ok)
            .bind(sent.detail)
            .bind(sent.took_ms)
            .execute(&mut *tx)
            .await?;
            id
        }))
    }

    /// The outcomes of a project's deliveries created after `since`, oldest first, at most
    /// the newest 5 000 of each: pages as `("person/contact", state, last error)` and channel
    /// messages as `(channel name, state, last error)`; `state` is `sent` or `failed` (the
    /// audit's failing contacts and channels).
    pub async fn delivery_outcomes(
        &self,
        project_id: i64,
        since: Timestamp,
    ) -> Result<(Vec<DeliveryOutcome>, Vec<DeliveryOutcome>)> {
        let pages: Vec<DeliveryOutcome> = with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT COALESCE(m.person, '') || '/' || COALESCE(m.contact, '') AS name, m.state, m.last_error \
                 FROM messages m JOIN alerts a ON a.id = m.alert_id \
                 WHERE a.project_id = $1 AND m.kind = 'page' AND m.created_at > $2 \
                 AND m.state IN ('sent', 'failed') ORDER BY m.id DESC LIMIT 5000",
            )
            .bind(project_id)
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        let channels: Vec<DeliveryOutcome> = with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT c.name, m.state, m.last_error \
                 FROM messages m JOIN channels c ON c.id = m.channel_id \
                 WHERE c.project_id = $1 AND m.kind = 'channel_event' AND m.created_at > $2 \
                 AND m.state IN ('sent', 'failed') ORDER BY m.id DESC LIMIT 5000",
            )
            .bind(project_id)
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        let oldest_first = |mut rows: Vec<DeliveryOutcome>| {
            rows.reverse();
            rows
        };
        Ok((oldest_first(pages), oldest_first(channels)))
    }

    /// The messages of `kind` to `address`, newest first: their ids and states.
    pub async fn messages_to(
        &self,
        kind: MessageKind,
        address: &str,
    ) -> Result<Vec<(i64, String)>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT id, state FROM messages WHERE kind = $1 AND address = $2 ORDER BY id DESC",
            )
            .bind(kind.as_str())
            .bind(address)
            .fetch_all(pool)
            .await?
        }))
    }

    /// When messages went to `address` after `since` (a summary of several pages is one
    /// message), oldest first: what its rate limit counts.
    pub async fn page_sends_since(
        &self,
        address: &str,
        since: Timestamp,
    ) -> Result<Vec<Timestamp>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar(
                "SELECT DISTINCT sent_at FROM messages WHERE address = $1 AND kind = 'page' \
                 AND sent_at > $2 ORDER BY sent_at",
            )
            .bind(address)
            .bind(since)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The kinds of message with a row due at `now`: a read, so a dispatcher round claims
    /// (a write) only what has something to claim.
    pub async fn due_kinds(&self, now: Timestamp) -> Result<Vec<MessageKind>> {
        // One index probe per kind (`messages_claim`; `+` as in the claim), not a scan of every
        // due row.
        const DUE_KINDS: &str = "SELECT \
            EXISTS (SELECT 1 FROM messages WHERE state = 'pending' AND kind = 'channel_event' \
             AND +next_attempt_at <= $1), \
            EXISTS (SELECT 1 FROM messages WHERE state = 'pending' AND kind = 'page' \
             AND +next_attempt_at <= $1), \
            EXISTS (SELECT 1 FROM messages WHERE state = 'pending' AND kind = 'alert_update' \
             AND +next_attempt_at <= $1), \
            EXISTS (SELECT 1 FROM messages WHERE state = 'pending' AND kind = 'incident_update' \
             AND +next_attempt_at <= $1), \
            EXISTS (SELECT 1 FROM messages WHERE state = 'pending' AND kind = 'incident_reminder' \
             AND +next_attempt_at <= $1), \
            EXISTS (SELECT 1 FROM messages WHERE state = 'pending' AND kind = 'checkin' \
             AND +next_attempt_at <= $1)";
        let kinds = [
            MessageKind::ChannelEvent,
            MessageKind::Page,
            MessageKind::AlertUpdate,
            MessageKind::IncidentUpdate,
            MessageKind::IncidentReminder,
            MessageKind::Checkin,
        ];
        #[allow(clippy::type_complexity)]
        let (events, pages, updates, incident_updates, reminders, checkins): (
            bool,
            bool,
            bool,
            bool,
            bool,
            bool,
        ) = with_read!(self, |pool| {
            sqlx::query_as(DUE_KINDS).bind(now).fetch_one(pool).await?
        });
        Ok(kinds
            .into_iter()
            .zip([
                events,
                pages,
                updates,
                incident_updates,
                reminders,
                checkins,
            ])
            .filter_map(|(kind, due)| due.then_some(kind))
            .collect())
    }

    /// The earliest time a pending message of any kind is due.
    pub async fn next_due(&self) -> Result<Option<Timestamp>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM messages WHERE state = 'pending'")
                .fetch_one(pool)
                .await?
        }))
    }

    /// The earliest time a pending message of `kind` is due.
    pub async fn next_message_due(&self, kind: MessageKind) -> Result<Option<Timestamp>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar(
                "SELECT MIN(next_attempt_at) FROM messages WHERE state = 'pending' AND kind = $1",
            )
            .bind(kind.as_str())
            .fetch_one(pool)
            .await?
        }))
    }
}
