//! Check configuration (written by the API) and check state (written by the engine).

use keepwatch_core::check::Status;

use crate::{
    Backend, CheckLabel, CheckRow, Result, StateRow, StateUpdate, Store, StoreError, Timestamp,
    with_read, with_tx,
};

macro_rules! check_columns {
    () => {
        "id, uuid, project_id, name, slug, tags, descr, kind, timeout_secs, grace_secs, schedule, \
         tz, max_runtime_secs, manual_resume, service, extra, created_at, status, down_reason, \
         last_ping, n_pings, last_duration_ms, open_runs, history, last_seq, checkpoint_seq, \
         notify_late, depends_on"
    };
}

/// The columns the engine loads, in the order of [`EngineRow`].
macro_rules! engine_columns {
    () => {
        "id, uuid, project_id, kind, timeout_secs, grace_secs, schedule, tz, max_runtime_secs, \
         manual_resume, extra, created_at, status, down_reason, last_ping, n_pings, \
         last_duration_ms, open_runs, history, last_seq, checkpoint_seq, notify_late, depends_on"
    };
}

/// One check as packed by the start-up query: a JSON array in `engine_columns!` order.
#[derive(serde::Deserialize)]
struct EngineRow {
    id: i64,
    uuid: String,
    project_id: i64,
    kind: String,
    timeout_secs: i64,
    grace_secs: i64,
    schedule: String,
    tz: String,
    max_runtime_secs: Option<i64>,
    /// SQLite gives 0/1, PostgreSQL true/false.
    manual_resume: serde_json::Value,
    extra: String,
    created_at: Timestamp,
    status: Status,
    down_reason: Option<String>,
    last_ping: Option<Timestamp>,
    n_pings: i64,
    last_duration_ms: Option<i64>,
    open_runs: String,
    history: String,
    last_seq: Option<i64>,
    checkpoint_seq: i64,
    /// SQLite gives 0/1, PostgreSQL true/false.
    notify_late: serde_json::Value,
    depends_on: String,
}

impl EngineRow {
    fn into_check(self) -> CheckRow {
        CheckRow {
            id: self.id,
            uuid: self.uuid,
            project_id: self.project_id,
            name: String::new(),
            slug: String::new(),
            tags: String::new(),
            descr: String::new(),
            kind: self.kind,
            timeout_secs: self.timeout_secs,
            grace_secs: self.grace_secs,
            schedule: self.schedule,
            tz: self.tz,
            max_runtime_secs: self.max_runtime_secs,
            manual_resume: self.manual_resume == true || self.manual_resume == 1,
            service: None,
            extra: self.extra,
            created_at: self.created_at,
            notify_late: self.notify_late == true || self.notify_late == 1,
            depends_on: self.depends_on,
            state: StateRow {
                status: self.status,
                down_reason: self.down_reason,
                last_ping: self.last_ping,
                n_pings: self.n_pings,
                last_duration_ms: self.last_duration_ms,
                open_runs: self.open_runs,
                history: self.history,
                last_seq: self.last_seq,
                checkpoint_seq: self.checkpoint_seq,
            },
        }
    }
}

/// Writes one state row inside a transaction; shared by the writer's batch and the checkpoint.
/// The statement behind [`write_state!`], also run by the SQLite writer.
pub(crate) const WRITE_STATE: &str = "UPDATE checks SET status = $1, down_reason = $2, last_ping = $3, n_pings = $4, \
     last_duration_ms = $5, open_runs = $6, history = $7, last_seq = $8, checkpoint_seq = $9 \
     WHERE id = $10";

macro_rules! write_state {
    ($tx:expr, $update:expr) => {
        sqlx::query($crate::checks::WRITE_STATE)
            .bind($update.state.status.as_str())
            .bind(&$update.state.down_reason)
            .bind($update.state.last_ping)
            .bind($update.state.n_pings)
            .bind($update.state.last_duration_ms)
            .bind(&$update.state.open_runs)
            .bind(&$update.state.history)
            .bind($update.state.last_seq)
            .bind($update.state.checkpoint_seq)
            .bind($update.check_id)
            .execute(&mut *$tx)
            .await?
    };
}
pub(crate) use write_state;

/// Writes a check's configuration columns in transaction `$tx`.
macro_rules! update_config {
    ($tx:ident, $check:expr) => {
        sqlx::query(
            "UPDATE checks SET name = $1, slug = $2, tags = $3, descr = $4, kind = $5, \
             timeout_secs = $6, grace_secs = $7, schedule = $8, tz = $9, max_runtime_secs = $10, \
             manual_resume = $11, service = $12, extra = $13, notify_late = $14, depends_on = $15 \
             WHERE id = $16",
        )
        .bind(&$check.name)
        .bind(&$check.slug)
        .bind(&$check.tags)
        .bind(&$check.descr)
        .bind(&$check.kind)
        .bind($check.timeout_secs)
        .bind($check.grace_secs)
        .bind(&$check.schedule)
        .bind(&$check.tz)
        .bind($check.max_runtime_secs)
        .bind($check.manual_resume)
        .bind(&$check.service)
        .bind(&$check.extra)
        .bind($check.notify_late)
        .bind(&$check.depends_on)
        .bind($check.id)
        .execute(&mut *$tx)
        .await?
    };
}

impl Store {
    /// Inserts a check (its `id` is ignored) and returns the new id.
    pub async fn insert_check(&self, check: &CheckRow) -> Result<i64> {
        Ok(with_tx!(self, |tx| {
            sqlx::query_scalar(
                "INSERT INTO checks (uuid, project_id, name, slug, tags, descr, kind, timeout_secs, \
                 grace_secs, schedule, tz, max_runtime_secs, manual_resume, service, extra, \
                 created_at, status, down_reason, last_ping, n_pings, last_duration_ms, open_runs, \
                 history, last_seq, checkpoint_seq, notify_late, depends_on) VALUES ($1, $2, $3, $4, \
                 $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
                 $23, $24, $25, $26, $27) RETURNING id",
            )
            .bind(&check.uuid)
            .bind(check.project_id)
            .bind(&check.name)
            .bind(&check.slug)
            .bind(&check.tags)
            .bind(&check.descr)
            .bind(&check.kind)
            .bind(check.timeout_secs)
            .bind(check.grace_secs)
            .bind(&check.schedule)
            .bind(&check.tz)
            .bind(check.max_runtime_secs)
            .bind(check.manual_resume)
            .bind(&check.service)
            .bind(&check.extra)
            .bind(check.created_at)
            .bind(check.state.status.as_str())
            .bind(&check.state.down_reason)
            .bind(check.state.last_ping)
            .bind(check.state.n_pings)
            .bind(check.state.last_duration_ms)
            .bind(&check.state.open_runs)
            .bind(&check.state.history)
            .bind(check.state.last_seq)
            .bind(check.state.checkpoint_seq)
            .bind(check.notify_late)
            .bind(&check.depends_on)
            .fetch_one(&mut *tx)
            .await?
        }))
    }

    /// Writes a check's configuration and state together (API updates, pause, resume).
    pub async fn update_check(&self, check: &CheckRow) -> Result<()> {
        with_tx!(self, |tx| {
            update_config!(tx, check);
            let update = StateUpdate {
                check_id: check.id,
                state: check.state.clone(),
            };
            write_state!(tx, update);
        });
        Ok(())
    }

    /// Writes a check's configuration and leaves its state to the engine that owns it (an
    /// instance that does not own the checks changes one through the API).
    pub async fn update_check_config(&self, check: &CheckRow) -> Result<()> {
        with_tx!(self, |tx| {
            update_config!(tx, check);
        });
        Ok(())
    }

    /// The checks with these ids that exist (in no particular order).
    pub async fn checks_by_ids(&self, ids: &[i64]) -> Result<Vec<CheckRow>> {
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let part: Vec<CheckRow> = with_read!(self, |pool| {
                let mut select = sqlx::QueryBuilder::new(concat!(
                    "SELECT ",
                    check_columns!(),
                    " FROM checks WHERE id IN ("
                ));
                let mut list = select.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                select.push(")");
                select.build_query_as().fetch_all(pool).await?
            });
            rows.extend(part);
        }
        Ok(rows)
    }

    /// Deletes a check with its flips, events and notifications. Its pings are left to the
    /// sweep ([`Store::prune_pings`]): finding them now would need an index on the hot table.
    pub async fn delete_check(&self, id: i64) -> Result<()> {
        with_tx!(self, |tx| {
            for sql in [
                "DELETE FROM events WHERE check_id = $1",
                "DELETE FROM checks WHERE id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
        });
        Ok(())
    }

    pub async fn check_by_uuid(&self, uuid: &str) -> Result<Option<CheckRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                check_columns!(),
                " FROM checks WHERE uuid = $1"
            ))
            .bind(uuid)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn check_by_id(&self, id: i64) -> Result<Option<CheckRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                check_columns!(),
                " FROM checks WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// What a list of a project's checks shows of each (the web UI's dashboard): five
    /// columns, not the row's twenty-six, since a 10,000-check page reads them all.
    pub async fn list_check_labels(&self, project_id: i64) -> Result<Vec<CheckLabel>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT id, uuid, name, tags, service FROM checks WHERE project_id = $1 ORDER BY id",
            )
            .bind(project_id)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn list_checks(&self, project_id: i64) -> Result<Vec<CheckRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                check_columns!(),
                " FROM checks WHERE project_id = $1 ORDER BY id"
            ))
            .bind(project_id)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn checks_by_slug(&self, project_id: i64, slug: &str) -> Result<Vec<CheckRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                check_columns!(),
                " FROM checks WHERE project_id = $1 AND slug = $2 ORDER BY id"
            ))
            .bind(project_id)
            .bind(slug)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Hands every check to `f`, in id order, for the engine's start-up: the columns that
    /// judge a check, with `name`, `slug`, `tags` and `descr` left empty.
    ///
    /// A million checks must load in well under 3 s. Streamed row by row, each row crossed
    /// a channel from the SQLite worker thread (11 s in all); so rows come packed, 10 000 to a
    /// JSON array built by the database, and are parsed here in one pass.
    pub async fn for_each_check(&self, mut f: impl FnMut(CheckRow)) -> Result<()> {
        const CHUNK: i64 = 10_000;
        let packed_sql = match self.backend {
            Backend::Sqlite { .. } => concat!(
                "SELECT json_group_array(json_array(",
                engine_columns!(),
                ")), MAX(id) FROM (SELECT * FROM checks WHERE id > $1 ORDER BY id LIMIT $2)"
            ),
            Backend::Postgres(_) => concat!(
                "SELECT json_agg(json_build_array(",
                engine_columns!(),
                ") ORDER BY id)::text, MAX(id) FROM (SELECT * FROM checks WHERE id > $1 ORDER BY id LIMIT $2) AS c"
            ),
        };
        let fetch = |after: i64| {
            let store = self.clone();
            // Spawned, so the database packs the next chunk while this one is parsed.
            tokio::spawn(async move {
                let chunk: (Option<String>, Option<i64>) = with_read!(store, |pool| {
                    sqlx::query_as(sqlx::AssertSqlSafe(packed_sql))
                        .bind(after)
                        .bind(CHUNK)
                        .fetch_one(pool)
                        .await?
                });
                Ok::<_, StoreError>(chunk)
            })
        };
        let mut next = fetch(0);
        loop {
            let chunk = next.await.map_err(|e| StoreError::task(e.to_string()))??;
            let (Some(packed), Some(last)) = chunk else {
                return Ok(());
            };
            next = fetch(last);
            let rows: Vec<EngineRow> = serde_json::from_str(&packed)
                .map_err(|e| StoreError(crate::Failure::Corrupt(e.to_string())))?;
            rows.into_iter().map(EngineRow::into_check).for_each(&mut f);
        }
    }

    /// How many checks a project has (its check limit is on this).
    pub async fn count_project_checks(&self, project_id: i64) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM checks WHERE project_id = $1")
                .bind(project_id)
                .fetch_one(pool)
                .await?
        }))
    }

    pub async fn count_checks(&self) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM checks")
                .fetch_one(pool)
                .await?
        }))
    }
}
