//! The ping writer's own SQLite connection, driven synchronously by the engine's thread.
//!
//! sqlx runs each SQLite connection on a worker thread and answers through channels, so a
//! group commit cost two thread hand-offs besides the insert and the fsync; under load the
//! engine then waited for a CPU twice per batch. This connection is called directly by the
//! thread that builds the batch: prepared statements, one `BEGIN IMMEDIATE … COMMIT`, and the
//! commit returns once the WAL is synced (`synchronous=FULL`). Every other query goes
//! through sqlx; the SQL text here is the same as the PostgreSQL path in `pings.rs`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Batch, Result, StateUpdate, Timestamp};

pub(crate) struct SqliteWriter {
    connection: Mutex<Connection>,
}

impl SqliteWriter {
    /// Opens the file the sqlx pools use, after the migrations ran.
    pub(crate) fn open(path: &Path) -> Result<SqliteWriter> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        // WAL and FULL: the commit has reached the disk when it returns. The writer also
        // checkpoints the WAL itself once it holds 1000 pages, which the passive checkpoints
        // from another connection alone never do under sustained load.
        connection.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA wal_autocheckpoint = 1000;",
        )?;
        Ok(SqliteWriter {
            connection: Mutex::new(connection),
        })
    }

    /// A panic while holding the lock may leave a transaction open; [`in_transaction`] rolls
    /// it back first, so a poisoned lock still guards a usable connection.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes check states from memory and moves the `replay_from` mark (see
    /// `Store::checkpoint`). Prepared statements on this thread: through sqlx, a checkpoint
    /// of a thousand states held pings up for tens of milliseconds.
    pub(crate) fn checkpoint(&self, states: &[StateUpdate], replay_from: i64) -> Result<()> {
        in_transaction(&self.lock(), |tx| {
            write_states(tx, states)?;
            tx.prepare_cached(crate::SET_META)?
                .execute(params!["replay_from", replay_from])?;
            Ok(())
        })
    }

    /// One sweep step (see `Store::prune_pings`), between two ping batches on the same thread.
    pub(crate) fn prune(&self, from: i64, rows: i64, keep: i64) -> Result<(u64, Option<i64>)> {
        in_transaction(&self.lock(), |tx| {
            let next: Option<i64> = tx
                .prepare_cached(crate::pings::NEXT_SWEEP_START)?
                .query_row(params![from, rows], |row| row.get(0))
                .optional()?;
            let deleted = tx
                .prepare_cached(crate::pings::PRUNE_PINGS)?
                .execute(params![from, next.unwrap_or(i64::MAX), keep])?;
            Ok((deleted as u64, next))
        })
    }

    /// The health endpoint's write, through this connection (see `Store::probe_writes`).
    pub(crate) fn probe(&self, now: Timestamp) -> Result<()> {
        in_transaction(&self.lock(), |tx| {
            tx.prepare_cached(crate::SET_META)?
                .execute(params!["write_probe", now])?;
            Ok(())
        })
    }

    /// Commits one batch in one transaction; returns the number of outbox rows created. Blocks
    /// the calling thread for the insert and the fsync.
    pub(crate) fn commit(&self, batch: &Batch, now: Timestamp) -> Result<u64> {
        in_transaction(&self.lock(), |tx| {
            let mut outbox_rows = 0;
            let mut insert_ping = tx.prepare_cached(concat!(
                "INSERT INTO pings (",
                crate::pings::ping_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ))?;
            for p in &batch.pings {
                insert_ping.execute(params![
                    p.seq,
                    p.check_id,
                    p.prev_seq,
                    p.n,
                    p.at,
                    p.kind,
                    p.scheme,
                    p.method,
                    p.remote_addr,
                    p.ua,
                    p.rid,
                    p.host,
                    p.pid,
                    p.volume,
                    p.body,
                    p.body_truncated,
                    p.duration_ms,
                ])?;
            }
            write_states(tx, &batch.states)?;
            let mut delete_entry = tx.prepare_cached(crate::pings::DELETE_INBOX_ENTRY)?;
            for (_, entry) in &batch.inbox_done {
                delete_entry.execute(params![entry])?;
            }
            let mut insert_flip = tx.prepare_cached(crate::pings::INSERT_FLIP)?;
            for flip in &batch.flips {
                insert_flip.execute(params![
                    flip.check_id,
                    flip.at,
                    flip.old_status.as_str(),
                    flip.new_status.as_str()
                ])?;
            }
            let mut insert_event = tx.prepare_cached(crate::pings::INSERT_EVENT)?;
            let mut insert_outbox = tx.prepare_cached(crate::pings::INSERT_OUTBOX)?;
            for event in &batch.events {
                let event_id: i64 = insert_event.query_row(
                    params![
                        event.check_id,
                        event.kind,
                        event.at,
                        event.payload.to_string()
                    ],
                    |row| row.get(0),
                )?;
                if !event.held_back() {
                    outbox_rows +=
                        insert_outbox.execute(params![event_id, now, event.check_id])? as u64;
                }
            }
            Ok(outbox_rows)
        })
    }
}

/// Runs `work` in one `BEGIN IMMEDIATE … COMMIT`, rolled back if `work` or the commit fails.
/// The two statements are prepared once and cached: rusqlite's `Transaction` parses them
/// again for every batch, which showed in the writer's instruction counts.
fn in_transaction<T>(
    connection: &Connection,
    work: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    // Left open only by a panic in an earlier `work`.
    if !connection.is_autocommit() {
        connection.execute_batch("ROLLBACK")?;
    }
    connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let result = work(connection).and_then(|value| {
        connection.prepare_cached("COMMIT")?.execute([])?;
        Ok(value)
    });
    if result.is_err() && !connection.is_autocommit() {
        // The error being returned is the one to report; a failed rollback adds nothing.
        let _ = connection.execute_batch("ROLLBACK");
    }
    result
}

fn write_states(tx: &Connection, states: &[StateUpdate]) -> Result<()> {
    let mut write_state = tx.prepare_cached(crate::checks::WRITE_STATE)?;
    for update in states {
        let s = &update.state;
        write_state.execute(params![
            s.status.as_str(),
            s.down_reason,
            s.last_ping,
            s.n_pings,
            s.last_duration_ms,
            s.open_runs,
            s.history,
            s.last_seq,
            s.checkpoint_seq,
            update.check_id,
        ])?;
    }
    Ok(())
}
