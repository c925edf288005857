//! Storage for keepwatch: one [`Store`] over two backends, SQLite (the embedded default, a
//! file in the data directory) and PostgreSQL.
//!
//! Both backends run the same SQL text (runtime `sqlx::query` with `$N` placeholders); the
//! [`with_read!`] and [`with_tx!`] macros expand each call once per backend, so a query is
//! written once and type-checked against both drivers. Each backend has its own migrations
//! folder. The conformance suite in `tests/` runs against both.
//!
//! Modules by area: [`model`] (row types), `projects` (projects and API keys), `checks`
//! (check configuration and state), `pings` (the ping log, flips, the writer's batch and the
//! checkpoint), `channels`, `messages` (the outbox of everything sent: channel events and
//! pages), `alerts`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

mod alerts;
mod channels;
mod checkins;
mod checks;
mod contacts;
mod inbox;
mod incidents;
mod leases;
mod messages;
pub mod model;
mod oncall;
mod pg_hosts;
mod pings;
mod projects;
mod sqlite_writer;
pub mod testing;
mod time;
mod users;

pub use alerts::{AlertLogRow, AlertRow, CheckEvent, EventAlert, NewAlert, NewPage, PagingRecord};
pub use checkins::{CheckinDelivery, CheckinMessage, CheckinRow, NewCheckin};
pub use contacts::{CodeCheck, MAX_CODE_ATTEMPTS};
/// The domain enums the rows hold, for callers that need nothing else of core.
pub use inbox::{InboxKind, InboxRow};
pub use incidents::{
    IncidentDelivery, IncidentLogRow, IncidentMessageRow, IncidentRow, NewIncident, NewIncidentLog,
    NewIncidentMessage,
};
pub use keepwatch_core::alert::{AlertSource, AlertStatus, paging::Urgency};
pub use leases::LeaseRow;
pub use messages::{
    AlertMessageRow, AlertNews, DeliveryOutcome, MessageKind, NewUpdate, PageDelivery, PageOutcome,
    SentNow, UpdateDelivery,
};
pub use model::*;
pub use oncall::{AppliedBy, AppliedOnCall, FeedRow, HistoricConfig};
pub use projects::{ApiKeyScope, generate_secret, hash_api_key};
pub use time::Timestamp;
pub use users::{Membership, Session, User};

/// A storage error: its [`ErrorKind`], for callers to act on, and what happened, safe to log
/// (it never contains an API key). The drivers' errors stay inside the store.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(Failure);

/// What a caller can do about a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The row asked for is not there.
    NotFound,
    /// The write lost a race or broke a rule of the data (a unique key, a changed row):
    /// retrying as is will not help.
    Conflict,
    /// The database cannot serve now (down, full, corrupt): try again later.
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error("cannot read the free space of {path}: {source}")]
    FreeSpace {
        path: String,
        source: std::io::Error,
    },
    #[error("the data volume has {available} bytes free (less than {MIN_FREE_BYTES})")]
    DiskFull { available: u64 },
}

impl<E: Into<Failure>> From<E> for StoreError {
    fn from(error: E) -> StoreError {
        StoreError(error.into())
    }
}

impl StoreError {
    /// A write that lost a race or broke a rule of the data, in words for the log.
    pub fn conflict(message: impl Into<String>) -> StoreError {
        StoreError(Failure::Conflict(message.into()))
    }

    /// A background task (a thread, a blocking job) that failed.
    pub fn task(message: impl Into<String>) -> StoreError {
        StoreError(Failure::Task(message.into()))
    }

    pub fn kind(&self) -> ErrorKind {
        match &self.0 {
            Failure::Db(sqlx::Error::RowNotFound)
            | Failure::Sqlite(rusqlite::Error::QueryReturnedNoRows) => ErrorKind::NotFound,
            Failure::Conflict(_) => ErrorKind::Conflict,
            _ if self.is_about_a_row() => ErrorKind::Conflict,
            _ => ErrorKind::Unavailable,
        }
    }

    /// Whether the error is about one row's data (a constraint, a value the column cannot
    /// hold, such as a NUL in PostgreSQL text) rather than the database as a whole (a full
    /// disk, a lost connection): only then is committing a batch's rows check by check worth
    /// it (see `Store::commit_batch_isolated`).
    pub fn is_about_a_row(&self) -> bool {
        use rusqlite::ErrorCode;
        match &self.0 {
            Failure::Db(sqlx::Error::Encode(_)) => true,
            Failure::Db(sqlx::Error::Database(e)) => {
                if let Some(pg) = e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    // SQLSTATE classes 22 (data exception) and 23 (integrity constraint).
                    matches!(pg.code().get(..2), Some("22" | "23"))
                } else {
                    // SQLite's primary codes TOOBIG, CONSTRAINT, MISMATCH and RANGE.
                    e.code()
                        .and_then(|code| code.parse::<i32>().ok())
                        .is_some_and(|code| matches!(code & 0xff, 18 | 19 | 20 | 25))
                }
            }
            Failure::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch
            ),
            Failure::Sqlite(rusqlite::Error::ToSqlConversionFailure(_)) => true,
            _ => false,
        }
    }
}

/// Below this much free space on the SQLite data volume the health endpoint fails: a write
/// that fits in space an earlier failed write left allocated (WAL frames are overwritten in
/// place) succeeds on a full disk, so a tiny probe write alone can say "OK" while pings fail.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// Sets a `meta` value ($1 the key, $2 the value).
pub(crate) const SET_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone)]
enum Backend {
    /// SQLite allows one writer: writes go through a one-connection pool so they queue in the
    /// process instead of sleeping in SQLite's busy handler, except the ping writer's batches,
    /// which have their own connection (they wait in the busy handler only while another
    /// write, rare next to pings, holds the lock).
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
        /// Runs passive WAL checkpoints in the background (see `wal_checkpoint`).
        maintenance: SqlitePool,
        /// The ping writer's batch commits, on the engine's thread (see `sqlite_writer`).
        writer: Arc<sqlite_writer::SqliteWriter>,
        /// The directory of the database file, whose free space the health endpoint checks.
        dir: Arc<Path>,
    },
    Postgres(PgPool),
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Applied on-call configurations, parsed once per apply (see `oncall`).
    oncall_cache: Arc<oncall::OnCallCache>,
}

/// Runs `$body` with `$pool` bound to the backend's pool for reads.
macro_rules! with_read {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { read: $pool, .. } => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to the backend's pool for writes outside a transaction
/// (a single statement, which SQLite and PostgreSQL commit atomically on their own).
macro_rules! with_write {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { write: $pool, .. } => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction bound to `$tx`, committing when it returns `Ok`.
/// SQLite transactions start with `BEGIN IMMEDIATE` so they take the write lock up front
/// (a deferred transaction that upgrades fails at once with SQLITE_BUSY).
macro_rules! with_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { write, .. } => {
                let mut connection = write.acquire().await?;
                let result: $crate::Result<_> = async {
                    let mut $tx =
                        sqlx::Connection::begin_with(&mut *connection, "BEGIN IMMEDIATE").await?;
                    let value = $body;
                    $tx.commit().await?;
                    Ok(value)
                }
                .await;
                if result.is_err() {
                    $crate::discard_if_in_transaction(connection).await;
                }
                result?
            }
            $crate::Backend::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
        }
    };
}
pub(crate) use {with_read, with_tx, with_write};

/// Bytes free for keepwatch on the file system holding `dir` (root may use the reserved
/// blocks too).
fn free_bytes(dir: &Path) -> Result<u64> {
    let stat = rustix::fs::statvfs(dir).map_err(|e| {
        StoreError(Failure::FreeSpace {
            path: dir.display().to_string(),
            source: e.into(),
        })
    })?;
    let blocks = if rustix::process::geteuid().is_root() {
        stat.f_bfree
    } else {
        stat.f_bavail
    };
    Ok(blocks.saturating_mul(stat.f_frsize))
}

/// After a failed transaction on the SQLite write pool: closes the connection if sqlx still
/// counts a transaction open on it, so the pool opens a fresh one.
///
/// When a COMMIT fails with SQLITE_FULL, SQLite may have rolled the transaction back itself;
/// the ROLLBACK sqlx then queues fails ("no transaction is active") and leaves sqlx's
/// transaction depth at 1. Returned to the pool like that, the single write connection made
/// every later `BEGIN` fail ("attempted to call begin_with at non-zero transaction depth")
/// until a restart, long after the disk had room again.
async fn discard_if_in_transaction(mut connection: sqlx::pool::PoolConnection<sqlx::Sqlite>) {
    use sqlx::Connection;
    // The ping is answered after the queued rollback has run, so the depth read next is final.
    if connection.ping().await.is_err() || connection.is_in_transaction() {
        tracing::warn!("closing the SQLite write connection left in a failed transaction");
        let _ = connection.close().await;
    }
}

impl Store {
    /// Opens the database a URL names (`sqlite://…` or `postgres://…`), or the SQLite file
    /// `keepwatch.db` in `data_dir` when there is no URL. Runs pending migrations.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Store> {
        match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Store::open_postgres(url).await
            }
            Some(url) => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                Store::open_sqlite(Path::new(path)).await
            }
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| {
                    StoreError(Failure::DataDir {
                        path: data_dir.display().to_string(),
                        source,
                    })
                })?;
                Store::open_sqlite(&data_dir.join("keepwatch.db")).await
            }
        }
    }

    /// Opens (creating if needed) a SQLite file with WAL and `synchronous=FULL`: a commit has
    /// reached the disk when it returns, which is what "a ping answered 200 is durable" needs.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // The writer checkpoints the WAL itself once it holds 1000 pages (SQLite's default),
        // besides the passive checkpoints `wal_checkpoint` runs from another connection every
        // second. Those alone never catch up under sustained load (the writer keeps adding
        // frames while they copy), so the WAL grew without bound: 66 MB after 10 s of load.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "1000"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let writer = Arc::new(sqlite_writer::SqliteWriter::open(path)?);
        let maintenance = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Store {
            backend: Backend::Sqlite {
                read,
                write,
                maintenance,
                writer,
                dir: path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .into(),
            },
            oncall_cache: Arc::default(),
        })
    }

    /// Opens a PostgreSQL database. The URL may name several hosts and
    /// `target_session_attrs=read-write` (see `pg_hosts`): the pool follows the primary.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        let pool = pg_hosts::connect(pg_hosts::parse(url)?, 16).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Store {
            backend: Backend::Postgres(pool),
            oncall_cache: Arc::default(),
        })
    }

    /// "sqlite" or "postgres", for logs and the status endpoint.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A cheap round trip, for the health endpoint.
    pub async fn ping_db(&self) -> Result<()> {
        with_read!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// A tiny write in a transaction on every path writes take (on SQLite the sqlx write pool
    /// and the ping writer's connection), for the health endpoint: reads alone kept answering
    /// while a full disk failed every write.
    pub async fn probe_writes(&self, now: Timestamp) -> Result<()> {
        with_tx!(self, |tx| {
            sqlx::query(SET_META)
                .bind("write_probe")
                .bind(now)
                .execute(&mut *tx)
                .await?;
        });
        if let Backend::Sqlite { writer, dir, .. } = &self.backend {
            let available = free_bytes(dir)?;
            if available < MIN_FREE_BYTES {
                return Err(StoreError(Failure::DiskFull { available }));
            }
            let writer = writer.clone();
            // The writer blocks for its fsync; off the async workers.
            tokio::task::spawn_blocking(move || writer.probe(now))
                .await
                .map_err(|e| StoreError::task(e.to_string()))??;
        }
        Ok(())
    }

    /// SQLite: copies committed WAL pages into the database file without blocking writers
    /// (a PASSIVE checkpoint), so the writer's own checkpoints have little left to copy.
    /// Nothing to do on PostgreSQL.
    pub async fn wal_checkpoint(&self) -> Result<()> {
        if let Backend::Sqlite { maintenance, .. } = &self.backend {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(maintenance)
                .await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite {
                read,
                write,
                maintenance,
                ..
            } => {
                read.close().await;
                write.close().await;
                maintenance.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}
