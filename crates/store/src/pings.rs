//! The ping log, flips, the writer's batch commit and the checkpoint.
//!
//! The writer appends pings to `ping_inbox`, which has no secondary index, so a commit dirties
//! only the pages at the end of the table (see LIMITS in the design notes: an index on the hot
//! table cut throughput 2.5×). The checkpoint later moves rows into the indexed `pings` table
//! in large batches, together with the in-memory check states they produced. At start-up the
//! engine replays the inbox rows newer than each check's `checkpoint_seq`.

use futures_util::TryStreamExt;
use sqlx::QueryBuilder;

use crate::checks::write_state;
use crate::{Batch, FlipRow, PingRow, Result, StateUpdate, Store, with_read, with_tx};

macro_rules! ping_columns {
    () => {
        "seq, check_id, n, at, kind, scheme, method, remote_addr, ua, rid, host, pid, volume, \
         body, body_truncated, duration_ms"
    };
}

/// Same as `ping_columns!` but with the body replaced by an empty value when present, for
/// listings that only say whether a body exists.
macro_rules! ping_columns_without_body {
    () => {
        "seq, check_id, n, at, kind, scheme, method, remote_addr, ua, rid, host, pid, volume, \
         substr(body, 1, 0) AS body, body_truncated, duration_ms"
    };
}

/// SQLite accepts at most 32766 bound values per statement; 16 columns × 1000 rows stays well
/// inside it (and inside PostgreSQL's 65535).
const INSERT_CHUNK: usize = 1000;

impl Store {
    /// Commits one writer batch in one transaction: pings, changed states, flips, and events
    /// with one outbox row per channel attached to the event's check. Returns the number of
    /// outbox rows created, so the caller can wake the dispatcher.
    pub async fn commit_batch(&self, batch: &Batch, now_us: i64) -> Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        Ok(with_tx!(self, |tx| {
            for chunk in batch.pings.chunks(INSERT_CHUNK) {
                let mut insert =
                    QueryBuilder::new(concat!("INSERT INTO ping_inbox (", ping_columns!(), ") "));
                insert.push_values(chunk, |mut row, p| {
                    row.push_bind(p.seq)
                        .push_bind(p.check_id)
                        .push_bind(p.n)
                        .push_bind(p.at)
                        .push_bind(&p.kind)
                        .push_bind(&p.scheme)
                        .push_bind(&p.method)
                        .push_bind(&p.remote_addr)
                        .push_bind(&p.ua)
                        .push_bind(&p.rid)
                        .push_bind(&p.host)
                        .push_bind(p.pid)
                        .push_bind(p.volume)
                        .push_bind(&p.body)
                        .push_bind(p.body_truncated)
                        .push_bind(p.duration_ms);
                });
                insert.build().execute(&mut *tx).await?;
            }
            for update in &batch.states {
                write_state!(tx, update);
            }
            for flip in &batch.flips {
                sqlx::query("INSERT INTO flips (check_id, at, old_status, new_status) VALUES ($1, $2, $3, $4)")
                    .bind(flip.check_id)
                    .bind(flip.at)
                    .bind(&flip.old_status)
                    .bind(&flip.new_status)
                    .execute(&mut *tx)
                    .await?;
            }
            let mut outbox_rows = 0;
            for event in &batch.events {
                let event_id: i64 = sqlx::query_scalar(
                    "INSERT INTO events (check_id, kind, at, payload) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(event.check_id)
                .bind(&event.kind)
                .bind(event.at)
                .bind(event.payload.to_string())
                .fetch_one(&mut *tx)
                .await?;
                outbox_rows += sqlx::query(
                    "INSERT INTO outbox (event_id, channel_id, state, attempts, next_attempt_at, created_at) \
                     SELECT $1, channel_id, 'pending', 0, $2, $2 FROM check_channels WHERE check_id = $3",
                )
                .bind(event_id)
                .bind(now_us)
                .bind(event.check_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            outbox_rows
        }))
    }

    /// The highest ping sequence number stored, or 0.
    pub async fn max_ping_seq(&self) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar(
                "SELECT MAX(s) FROM (SELECT MAX(seq) AS s FROM ping_inbox UNION ALL SELECT MAX(seq) AS s FROM pings) AS m",
            )
            .fetch_one(pool)
            .await
            .map(|v: Option<i64>| v.unwrap_or(0))?
        }))
    }

    /// The lowest sequence number still in the inbox, if any.
    pub async fn min_inbox_seq(&self) -> Result<Option<i64>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT MIN(seq) FROM ping_inbox")
                .fetch_one(pool)
                .await?
        }))
    }

    /// Streams inbox pings in sequence order (start-up replay). Bodies are not read.
    pub async fn for_each_inbox_ping(&self, mut f: impl FnMut(PingRow)) -> Result<()> {
        with_read!(self, |pool| {
            let mut rows = sqlx::query_as::<_, PingRow>(concat!(
                "SELECT ",
                ping_columns_without_body!(),
                " FROM ping_inbox ORDER BY seq"
            ))
            .fetch(pool);
            while let Some(row) = rows.try_next().await? {
                f(row);
            }
        });
        Ok(())
    }

    /// Writes check states taken from memory, then moves inbox rows up to `move_upto` into the
    /// indexed `pings` table, then forgets pings older than each `(check, n)` in `prune`.
    /// States go first: a crash in between leaves rows in the inbox that the replay skips,
    /// because each state records the `checkpoint_seq` it includes.
    pub async fn checkpoint(
        &self,
        states: &[StateUpdate],
        move_upto: i64,
        prune: &[(i64, i64)],
    ) -> Result<()> {
        with_tx!(self, |tx| {
            for update in states {
                write_state!(tx, update);
            }
            sqlx::query(concat!(
                "INSERT INTO pings (",
                ping_columns!(),
                ") SELECT ",
                ping_columns!(),
                " FROM ping_inbox WHERE seq <= $1"
            ))
            .bind(move_upto)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM ping_inbox WHERE seq <= $1")
                .bind(move_upto)
                .execute(&mut *tx)
                .await?;
            for (check_id, below_n) in prune {
                sqlx::query("DELETE FROM pings WHERE check_id = $1 AND n < $2")
                    .bind(check_id)
                    .bind(below_n)
                    .execute(&mut *tx)
                    .await?;
            }
        });
        Ok(())
    }

    /// A check's most recent pings, newest first. Bodies are replaced by an empty value when
    /// present; fetch one with [`Store::ping`].
    pub async fn list_pings(&self, check_id: i64, limit: i64) -> Result<Vec<PingRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT * FROM (SELECT ",
                ping_columns_without_body!(),
                " FROM pings WHERE check_id = $1 UNION ALL SELECT ",
                ping_columns_without_body!(),
                " FROM ping_inbox WHERE check_id = $1) AS p ORDER BY n DESC LIMIT $2"
            ))
            .bind(check_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// One ping of a check by its number, with its body.
    pub async fn ping(&self, check_id: i64, n: i64) -> Result<Option<PingRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                ping_columns!(),
                " FROM pings WHERE check_id = $1 AND n = $2 UNION ALL SELECT ",
                ping_columns!(),
                " FROM ping_inbox WHERE check_id = $1 AND n = $2"
            ))
            .bind(check_id)
            .bind(n)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// A check's flips between two times (inclusive), newest first.
    pub async fn list_flips(
        &self,
        check_id: i64,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<FlipRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT check_id, at, old_status, new_status FROM flips \
                 WHERE check_id = $1 AND at >= $2 AND at <= $3 ORDER BY at DESC, id DESC LIMIT 1000",
            )
            .bind(check_id)
            .bind(from_us)
            .bind(to_us)
            .fetch_all(pool)
            .await?
        }))
    }
}
