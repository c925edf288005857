//! The inbox: what instances that do not own the checks hand to the one that does (several
//! instances on PostgreSQL). An entry is durable once [`Store::append_inbox`] returns, so an
//! instance may answer a ping 200 then; the owner reads entries in order and deletes each in
//! the transaction that applies it (a ping batch's, see [`crate::Batch::inbox_done`]).

use sqlx::QueryBuilder;

use crate::{Result, Store, Timestamp, with_read, with_write};

/// What an entry asks the owner to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxKind {
    /// Apply a ping taken by another instance.
    Ping,
    /// Read the check's configuration again (created, changed or deleted elsewhere).
    Reload,
    Pause,
    Resume,
}

impl InboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxKind::Ping => "ping",
            InboxKind::Reload => "reload",
            InboxKind::Pause => "pause",
            InboxKind::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<InboxKind> {
        [
            InboxKind::Ping,
            InboxKind::Reload,
            InboxKind::Pause,
            InboxKind::Resume,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One entry of the inbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InboxRow {
    /// Set by the database (ignored when appending): the order entries are applied in.
    pub id: i64,
    pub kind: String,
    pub check_uuid: String,
    pub received_at: Timestamp,
    pub instance: String,
    /// A ping's fields as JSON (empty for other kinds).
    pub request: String,
    pub body: Option<Vec<u8>>,
}

/// Bound parameters per row: PostgreSQL takes at most 65,535 in a statement.
const INBOX_PARAMS: usize = 6;

impl Store {
    /// Appends entries in one transaction: when this returns `Ok`, all of them are durable.
    pub async fn append_inbox(&self, rows: &[InboxRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        with_write!(self, |pool| {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(60_000 / INBOX_PARAMS) {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO inbox (kind, check_uuid, received_at, instance, request, body) ",
                );
                insert.push_values(chunk, |mut row, entry| {
                    row.push_bind(&entry.kind)
                        .push_bind(&entry.check_uuid)
                        .push_bind(entry.received_at)
                        .push_bind(&entry.instance)
                        .push_bind(&entry.request)
                        .push_bind(&entry.body);
                });
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The oldest `limit` entries, in the order they were appended.
    pub async fn inbox(&self, limit: i64) -> Result<Vec<InboxRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as::<_, InboxRow>(
                "SELECT id, kind, check_uuid, received_at, instance, request, body \
                 FROM inbox ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Deletes applied entries that were not part of a ping batch (check changes).
    pub async fn delete_inbox(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        with_write!(self, |pool| {
            let mut delete = QueryBuilder::new("DELETE FROM inbox WHERE id IN (");
            let mut list = delete.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            delete.push(")");
            delete.build().execute(pool).await?;
        });
        Ok(())
    }

    /// How many entries wait (the status endpoint and `/metrics`).
    pub async fn inbox_depth(&self) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM inbox")
                .fetch_one(pool)
                .await?
        }))
    }

    /// The ids of the checks among `uuids` that exist now, by uuid.
    pub async fn check_ids_by_uuid(&self, uuids: &[String]) -> Result<Vec<(String, i64)>> {
        let mut found = Vec::new();
        for chunk in uuids.chunks(1000) {
            let rows: Vec<(String, i64)> = with_read!(self, |pool| {
                let mut select = QueryBuilder::new("SELECT uuid, id FROM checks WHERE uuid IN (");
                let mut list = select.separated(", ");
                for uuid in chunk {
                    list.push_bind(uuid);
                }
                select.push(")");
                select.build_query_as().fetch_all(pool).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }
}
