//! The ping log, flips, the writer's batch commit, the checkpoint and the sweep.
//!
//! The writer appends to `pings`, which has no secondary index: a commit dirties only the
//! pages at the end of the table (LIMITS in the design notes: an index on the hot table cut
//! throughput 2.5×). A check's pings are chained by `prev_seq` from the check's `last_seq`,
//! so listing the last hundred is a hundred primary-key lookups. The checkpoint writes check
//! states from memory and moves the `replay_from` mark; the sweep deletes old pings by seq
//! range.

use futures_util::TryStreamExt;
use sqlx::QueryBuilder;

use crate::Fence;
use crate::checks::write_state;
use crate::{
    Backend, Batch, Committed, FlipRow, PingRow, Result, StateUpdate, Store, Timestamp, with_read,
    with_tx, with_write,
};

macro_rules! ping_columns {
    () => {
        "seq, check_id, prev_seq, n, at, kind, scheme, method, remote_addr, ua, rid, host, pid, \
         volume, body, body_truncated, duration_ms"
    };
}
pub(crate) use ping_columns;

pub(crate) const INSERT_FLIP: &str =
    "INSERT INTO flips (check_id, at, old_status, new_status) VALUES ($1, $2, $3, $4)";
pub(crate) const INSERT_EVENT: &str =
    "INSERT INTO events (check_id, kind, at, payload) VALUES ($1, $2, $3, $4) RETURNING id";
/// In transaction `$tx`: locks the lease row of `$fence` until the transaction ends (a claim
/// by another instance waits for it) and fails unless `$fence.holder` holds it at `$now`.
macro_rules! hold_fence {
    ($tx:ident, $fence:expr, $now:expr) => {
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM leases WHERE work = $1 AND holder = $2 AND expires_at > $3 FOR UPDATE",
        )
        .bind($fence.work)
        .bind(&$fence.holder)
        .bind($now)
        .fetch_optional(&mut *$tx)
        .await?;
        if held.is_none() {
            return Err(crate::StoreError::task(format!(
                "this instance no longer holds the lease of {}: another has taken the work over",
                $fence.work
            )));
        }
    };
}

pub(crate) const DELETE_INBOX_ENTRY: &str = "DELETE FROM inbox WHERE id = $1";

/// Where a sweep step that starts at seq `$1` and looks at `$2` pings ends.
pub(crate) const NEXT_SWEEP_START: &str =
    "SELECT seq FROM pings WHERE seq >= $1 ORDER BY seq LIMIT 1 OFFSET $2";
/// Deletes pings in `[$1, $2)` of deleted checks or more than `$3` behind their check's count.
pub(crate) const PRUNE_PINGS: &str = "DELETE FROM pings WHERE seq >= $1 AND seq < $2 AND \
     n <= COALESCE((SELECT c.n_pings FROM checks c WHERE c.id = pings.check_id), n + $3) - $3";
/// One message per channel attached to the event's check.
pub(crate) const INSERT_OUTBOX: &str = "INSERT INTO messages (kind, destination, event_id, channel_id, next_attempt_at, created_at) \
     SELECT 'channel_event', 'channel:' || channel_id, $1, channel_id, $2, $2 FROM check_channels WHERE check_id = $3";

/// Same as `ping_columns!` but with the body replaced by an empty value when present, for
/// listings that only say whether a body exists.
macro_rules! ping_columns_without_body {
    () => {
        "seq, check_id, prev_seq, n, at, kind, scheme, method, remote_addr, ua, rid, host, pid, \
         volume, substr(body, 1, 0) AS body, body_truncated, duration_ms"
    };
}

/// The pings of a check, newest first, by walking its chain from `$1` at most `$2` steps.
macro_rules! chain {
    ($columns:expr) => {
        concat!(
            "WITH RECURSIVE chain(seq, depth) AS (SELECT CAST($1 AS BIGINT), 1 UNION ALL \
             SELECT p.prev_seq, c.depth + 1 FROM pings p JOIN chain c ON p.seq = c.seq \
             WHERE p.prev_seq IS NOT NULL AND c.depth < CAST($2 AS BIGINT)) SELECT ",
            $columns,
            " FROM pings WHERE seq IN (SELECT seq FROM chain) AND check_id = $3 ORDER BY seq DESC"
        )
    };
}

/// Multi-row inserts in a transaction use these sizes only, so each statement is prepared
/// once and cached.
const INSERT_SIZES: [usize; 4] = [64, 16, 4, 1];

/// A batch of only pings, up to this many, is written by one INSERT in autocommit mode: one
/// round trip to the database instead of four (BEGIN, INSERTs, COMMIT), and just as atomic
/// and durable. (SQLite allows 32766 bound values per statement: 17 × 1000 fits.)
const SINGLE_INSERT_MAX: usize = 1000;

macro_rules! push_pings {
    ($insert:expr, $pings:expr) => {
        $insert.push_values($pings, |mut row, p| {
            row.push_bind(p.seq)
                .push_bind(p.check_id)
                .push_bind(p.prev_seq)
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
        })
    };
}

impl Store {
    /// Commits one writer batch in one transaction: pings, changed states, flips, and events
    /// with one outbox row per channel attached to the event's check. Returns the number of
    /// outbox rows created, so the caller can wake the dispatcher.
    ///
    /// On SQLite the commit runs on the calling thread without yielding (the engine calls it
    /// from its own thread; see `sqlite_writer`).
    pub async fn commit_batch(&self, batch: &Batch, now: Timestamp) -> Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        if let Backend::Sqlite { writer, .. } = &self.backend {
            return writer.commit(batch, now);
        }
        let only_pings = batch.states.is_empty()
            && batch.flips.is_empty()
            && batch.events.is_empty()
            && batch.inbox_done.is_empty()
            && batch.fence.is_none();
        if only_pings && batch.pings.len() <= SINGLE_INSERT_MAX {
            with_write!(self, |pool| {
                let mut insert =
                    QueryBuilder::new(concat!("INSERT INTO pings (", ping_columns!(), ") "));
                push_pings!(insert, &batch.pings);
                insert.build().execute(pool).await?;
            });
            return Ok(0);
        }
        Ok(with_tx!(self, |tx| {
            if let Some(fence) = &batch.fence {
                hold_fence!(tx, fence, now);
            }
            let mut rest = &batch.pings[..];
            while !rest.is_empty() {
                let size = INSERT_SIZES
                    .into_iter()
                    .find(|s| *s <= rest.len())
                    .unwrap_or(1);
                let (chunk, tail) = rest.split_at(size);
                rest = tail;
                let mut insert =
                    QueryBuilder::new(concat!("INSERT INTO pings (", ping_columns!(), ") "));
                push_pings!(insert, chunk);
                insert.build().execute(&mut *tx).await?;
            }
            for update in &batch.states {
                write_state!(tx, update);
            }
            for flip in &batch.flips {
                sqlx::query(INSERT_FLIP)
                    .bind(flip.check_id)
                    .bind(flip.at)
                    .bind(flip.old_status.as_str())
                    .bind(flip.new_status.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            for (_, entry) in &batch.inbox_done {
                sqlx::query(DELETE_INBOX_ENTRY)
                    .bind(entry)
                    .execute(&mut *tx)
                    .await?;
            }
            let mut outbox_rows = 0;
            for event in &batch.events {
                let event_id: i64 = sqlx::query_scalar(INSERT_EVENT)
                    .bind(event.check_id)
                    .bind(&event.kind)
                    .bind(event.at)
                    .bind(event.payload.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
                if !event.held_back() {
                    outbox_rows += sqlx::query(INSERT_OUTBOX)
                        .bind(event_id)
                        .bind(now)
                        .bind(event.check_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
            }
            outbox_rows
        }))
    }

    /// [`Store::commit_batch`] for a batch of many requests: if the batch as a whole fails
    /// because of a row's data, each check's rows are committed on their own, so a row that cannot be stored fails
    /// only the pings of its own check (an error is returned only if every check failed, a
    /// full disk say). On PostgreSQL one ping with a NUL in a text column failed a whole
    /// group commit: 37% of the pings of other checks got a 503.
    ///
    /// A check's rows stay together: its pings are chained (`prev_seq`, `n`) and its state,
    /// flips and events follow from all of them.
    pub async fn commit_batch_isolated(&self, batch: &Batch, now: Timestamp) -> Result<Committed> {
        let whole = match self.commit_batch(batch, now).await {
            Ok(outbox_rows) => {
                return Ok(Committed {
                    outbox_rows,
                    failed: Vec::new(),
                });
            }
            Err(e) => e,
        };
        let mut checks: Vec<i64> = batch.pings.iter().map(|p| p.check_id).collect();
        checks.extend(batch.states.iter().map(|s| s.check_id));
        checks.extend(batch.flips.iter().map(|f| f.check_id));
        checks.extend(batch.events.iter().map(|e| e.check_id));
        checks.sort_unstable();
        checks.dedup();
        // A full disk or a lost connection fails every check's rows as well: retrying them
        // one by one would only repeat the failure (and its fsyncs) per check.
        if checks.len() < 2 || !whole.is_about_a_row() {
            return Err(whole);
        }
        let total = checks.len();
        let mut committed = Committed::default();
        for check_id in checks {
            let part = Batch {
                pings: rows_of(&batch.pings, check_id, |p| p.check_id),
                states: rows_of(&batch.states, check_id, |s| s.check_id),
                flips: rows_of(&batch.flips, check_id, |f| f.check_id),
                events: rows_of(&batch.events, check_id, |e| e.check_id),
                inbox_done: rows_of(&batch.inbox_done, check_id, |d| d.0),
                fence: batch.fence.clone(),
            };
            match self.commit_batch(&part, now).await {
                Ok(outbox_rows) => committed.outbox_rows += outbox_rows,
                Err(e) => {
                    tracing::error!(check = check_id, error = %e, "rows of one check not committed");
                    committed.failed.push((check_id, e.to_string()));
                }
            }
        }
        if committed.failed.len() == total {
            return Err(whole);
        }
        Ok(committed)
    }

    /// The highest ping sequence number stored, or 0.
    pub async fn max_ping_seq(&self) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT MAX(seq) FROM pings")
                .fetch_one(pool)
                .await
                .map(|v: Option<i64>| v.unwrap_or(0))?
        }))
    }

    /// Pings after this seq may be missing from stored check states (see [`Store::checkpoint`]).
    pub async fn replay_from(&self) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'replay_from'")
                .fetch_optional(pool)
                .await?
                .unwrap_or(0)
        }))
    }

    /// Streams pings with a seq above `after`, in order (start-up replay). Bodies are not read.
    pub async fn for_each_ping_after(&self, after: i64, mut f: impl FnMut(PingRow)) -> Result<()> {
        with_read!(self, |pool| {
            let mut rows = sqlx::query_as::<_, PingRow>(concat!(
                "SELECT ",
                ping_columns_without_body!(),
                " FROM pings WHERE seq > $1 ORDER BY seq"
            ))
            .bind(after)
            .fetch(pool);
            while let Some(row) = rows.try_next().await? {
                f(row);
            }
        });
        Ok(())
    }

    /// Writes check states taken from memory and records that every ping up to
    /// `replay_from` is reflected in the stored states.
    ///
    /// On SQLite this runs on the calling thread without yielding, like [`Store::commit_batch`].
    pub async fn checkpoint(
        &self,
        states: &[StateUpdate],
        replay_from: i64,
        fence: Option<&Fence>,
        now: Timestamp,
    ) -> Result<()> {
        if let Backend::Sqlite { writer, .. } = &self.backend {
            return writer.checkpoint(states, replay_from);
        }
        with_tx!(self, |tx| {
            if let Some(fence) = fence {
                hold_fence!(tx, fence, now);
            }
            for update in states {
                write_state!(tx, update);
            }
            sqlx::query(crate::SET_META)
                .bind("replay_from")
                .bind(replay_from)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// One step of the sweep: looks at the next `rows` pings from seq `from` on and deletes
    /// those of deleted checks and those more than `keep` pings behind their check's stored
    /// count. Returns how many were deleted and where the next step starts (`None`: the log
    /// ends within this step). Counting rows rather than seqs keeps every step short (it
    /// holds the write lock between two ping batches) and skips stretches already swept.
    ///
    /// On SQLite this runs on the calling thread without yielding, like [`Store::commit_batch`].
    pub async fn prune_pings(&self, from: i64, rows: i64, keep: i64) -> Result<(u64, Option<i64>)> {
        if let Backend::Sqlite { writer, .. } = &self.backend {
            return writer.prune(from, rows, keep);
        }
        Ok(with_tx!(self, |tx| {
            let next: Option<i64> = sqlx::query_scalar(NEXT_SWEEP_START)
                .bind(from)
                .bind(rows)
                .fetch_optional(&mut *tx)
                .await?;
            let deleted = sqlx::query(PRUNE_PINGS)
                .bind(from)
                .bind(next.unwrap_or(i64::MAX))
                .bind(keep)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            (deleted, next)
        }))
    }

    /// A check's most recent pings, newest first, walking back from `head` (the check's last
    /// ping). Bodies are replaced by an empty value when present; fetch one with [`Store::ping`].
    pub async fn list_pings(
        &self,
        check_id: i64,
        head: Option<i64>,
        limit: i64,
    ) -> Result<Vec<PingRow>> {
        let Some(head) = head else {
            return Ok(Vec::new());
        };
        Ok(with_read!(self, |pool| {
            sqlx::query_as(chain!(ping_columns_without_body!()))
                .bind(head)
                .bind(limit)
                .bind(check_id)
                .fetch_all(pool)
                .await?
        }))
    }

    /// One ping of a check by its number, with its body, among its last `limit` pings.
    pub async fn ping(
        &self,
        check_id: i64,
        head: Option<i64>,
        limit: i64,
        n: i64,
    ) -> Result<Option<PingRow>> {
        let recent = self.list_pings(check_id, head, limit).await?;
        let Some(seq) = recent.iter().find(|p| p.n == n).map(|p| p.seq) else {
            return Ok(None);
        };
        Ok(with_read!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                ping_columns!(),
                " FROM pings WHERE seq = $1"
            ))
            .bind(seq)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The end of the bodies of these pings (at most `max` bytes each, read as UTF-8 with
    /// invalid bytes replaced), with whether the stored body was longer or was cut at
    /// ingest. Pings without a body are left out. Reads 500 pings per query.
    pub async fn ping_body_tails(
        &self,
        seqs: &[i64],
        max: usize,
    ) -> Result<std::collections::HashMap<i64, (String, bool)>> {
        let mut out = std::collections::HashMap::new();
        for chunk in seqs.chunks(500) {
            let rows: Vec<(i64, Vec<u8>, i64, bool)> = match &self.backend {
                crate::Backend::Sqlite { read, .. } => {
                    let mut select = sqlx::QueryBuilder::new(format!(
                        "SELECT seq, CAST(substr(body, -{max}) AS BLOB), length(body), \
                         body_truncated FROM pings WHERE length(body) > 0 AND seq IN ("
                    ));
                    let mut list = select.separated(", ");
                    for seq in chunk {
                        list.push_bind(*seq);
                    }
                    select.push(")");
                    select.build_query_as().fetch_all(read).await?
                }
                crate::Backend::Postgres(pool) => {
                    let mut select = sqlx::QueryBuilder::new(format!(
                        "SELECT seq, substring(body from greatest(length(body) - {max} + 1, 1)), \
                         CAST(length(body) AS BIGINT), body_truncated FROM pings \
                         WHERE length(body) > 0 AND seq IN ("
                    ));
                    let mut list = select.separated(", ");
                    for seq in chunk {
                        list.push_bind(*seq);
                    }
                    select.push(")");
                    select.build_query_as().fetch_all(pool).await?
                }
            };
            for (seq, tail, len, truncated) in rows {
                let cut = truncated || len as usize > tail.len();
                out.insert(seq, (String::from_utf8_lossy(&tail).into_owned(), cut));
            }
        }
        Ok(out)
    }

    /// A check's flips between two times (inclusive), newest first.
    pub async fn list_flips(
        &self,
        check_id: i64,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<FlipRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT check_id, at, old_status, new_status FROM flips \
                 WHERE check_id = $1 AND at >= $2 AND at <= $3 ORDER BY at DESC, id DESC LIMIT 1000",
            )
            .bind(check_id)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?
        }))
    }
}

/// The rows of one check, in batch order.
fn rows_of<T: Clone>(rows: &[T], check_id: i64, of: impl Fn(&T) -> i64) -> Vec<T> {
    rows.iter().filter(|r| of(r) == check_id).cloned().collect()
}
