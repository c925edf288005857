//! Channels, the notification outbox and its delivery attempts.
//!
//! Outbox rows are created by [`Store::commit_batch`] in the transaction that changed the
//! check. The dispatcher claims due rows by pushing their `next_attempt_at` forward by a lease:
//! a dispatcher that dies mid-send leaves the row to be retried when the lease ends, so a
//! notification is never lost (it may, rarely, be sent twice; receivers get an id to dedupe).

use uuid::Uuid;

use crate::{
    AttemptResult, AttemptRow, Backend, ChannelRow, Delivery, NotificationRow, Result, Store,
    with_read, with_tx,
};

/// `$4` is a JSON array of channel ids left out (their destination is busy).
const CLAIM_SQLITE: &str = "UPDATE outbox SET next_attempt_at = $1 WHERE id IN \
     (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $2 \
      AND channel_id NOT IN (SELECT value FROM json_each($4)) \
      ORDER BY next_attempt_at LIMIT $3) RETURNING id";

/// PostgreSQL: several instances may claim at once; SKIP LOCKED keeps them apart.
const CLAIM_POSTGRES: &str = "UPDATE outbox SET next_attempt_at = $1 WHERE id IN \
     (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $2 \
      AND channel_id NOT IN (SELECT value::bigint FROM json_array_elements_text($4::text::json)) \
      ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id";

impl Store {
    pub async fn create_channel(
        &self,
        project_id: i64,
        name: &str,
        kind: &str,
        config: &str,
        now_us: i64,
    ) -> Result<ChannelRow> {
        let uuid = Uuid::new_v4().to_string();
        let id: i64 = with_tx!(self, |tx| {
            sqlx::query_scalar(
                "INSERT INTO channels (uuid, project_id, name, kind, config, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&uuid)
            .bind(project_id)
            .bind(name)
            .bind(kind)
            .bind(config)
            .bind(now_us)
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(ChannelRow {
            id,
            uuid,
            project_id,
            name: name.to_string(),
            kind: kind.to_string(),
            config: config.to_string(),
        })
    }

    pub async fn list_channels(&self, project_id: i64) -> Result<Vec<ChannelRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as("SELECT id, uuid, project_id, name, kind, config FROM channels WHERE project_id = $1 ORDER BY id")
                .bind(project_id)
                .fetch_all(pool)
                .await?
        }))
    }

    pub async fn delete_channel(&self, id: i64) -> Result<()> {
        with_tx!(self, |tx| {
            sqlx::query("DELETE FROM channels WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// Replaces the set of channels a check notifies.
    pub async fn set_check_channels(&self, check_id: i64, channel_ids: &[i64]) -> Result<()> {
        with_tx!(self, |tx| {
            sqlx::query("DELETE FROM check_channels WHERE check_id = $1")
                .bind(check_id)
                .execute(&mut *tx)
                .await?;
            for channel_id in channel_ids {
                sqlx::query("INSERT INTO check_channels (check_id, channel_id) VALUES ($1, $2)")
                    .bind(check_id)
                    .bind(channel_id)
                    .execute(&mut *tx)
                    .await?;
            }
        });
        Ok(())
    }

    /// The channels a check notifies.
    pub async fn check_channels(&self, check_id: i64) -> Result<Vec<ChannelRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id, c.uuid, c.project_id, c.name, c.kind, c.config FROM channels c \
                 JOIN check_channels cc ON cc.channel_id = c.id WHERE cc.check_id = $1 ORDER BY c.id",
            )
            .bind(check_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Claims up to `limit` due outbox rows until `lease_until_us` and returns them with the
    /// event and channel they need.
    pub async fn claim_due(
        &self,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        self.claim_due_except(now_us, lease_until_us, limit, &[])
            .await
    }

    /// As [`Store::claim_due`], leaving out the rows of `channels` (the dispatcher's
    /// destinations that have all they can take), so they do not crowd out the others.
    pub async fn claim_due_except(
        &self,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
        channels: &[i64],
    ) -> Result<Vec<Delivery>> {
        let except = serde_json::to_string(channels).expect("a list of numbers");
        let claim = match self.backend {
            Backend::Sqlite { .. } => CLAIM_SQLITE,
            Backend::Postgres(_) => CLAIM_POSTGRES,
        };
        let ids: Vec<i64> = with_tx!(self, |tx| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(claim))
                .bind(lease_until_us)
                .bind(now_us)
                .bind(limit)
                .bind(&except)
                .fetch_all(&mut *tx)
                .await?
        });
        let mut deliveries = Vec::with_capacity(ids.len());
        for id in ids {
            let delivery: Option<Delivery> = with_read!(self, |pool| {
                sqlx::query_as(
                    "SELECT o.id AS outbox_id, o.channel_id, o.attempts, e.kind AS event_kind, e.payload, \
                     c.kind AS channel_kind, c.name AS channel_name, c.config AS channel_config \
                     FROM outbox o JOIN events e ON e.id = o.event_id JOIN channels c ON c.id = o.channel_id \
                     WHERE o.id = $1",
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
                "INSERT INTO delivery_attempts (outbox_id, at, ok, detail, took_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(result.outbox_id)
            .bind(result.at)
            .bind(result.ok)
            .bind(&result.detail)
            .bind(result.took_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE outbox SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
                 last_error = COALESCE($3, last_error) WHERE id = $4",
            )
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(result.outbox_id)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// When the earliest pending outbox row is due, if any.
    pub async fn next_outbox_due(&self) -> Result<Option<i64>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'")
                .fetch_one(pool)
                .await?
        }))
    }

    /// Number of notifications not yet delivered (the outbox depth metric).
    pub async fn outbox_depth(&self) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
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
                "SELECT o.id AS outbox_id, e.kind AS event_kind, e.at AS event_at, c.uuid AS channel_uuid, \
                 c.name AS channel_name, o.state, o.attempts, o.next_attempt_at, o.last_error \
                 FROM outbox o JOIN events e ON e.id = o.event_id JOIN channels c ON c.id = o.channel_id \
                 WHERE e.check_id = $1 ORDER BY o.id DESC LIMIT $2",
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
                    "SELECT outbox_id, at, ok, detail, took_ms FROM delivery_attempts WHERE outbox_id = $1 ORDER BY id",
                )
                .bind(id)
                .fetch_all(pool)
                .await?
            });
            out.extend(rows);
        }
        Ok(out)
    }
}
