//! Leases of background work between instances on one database: one row per kind of work,
//! claimed and renewed by one compare-and-set statement (see the engine's `lease`).

use crate::{Result, Store, Timestamp, with_read, with_write};

/// A lease as stored: who may do a kind of work, until when.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct LeaseRow {
    pub work: String,
    pub holder: String,
    pub version: i32,
    pub expires_at: Timestamp,
    pub acquired_at: Timestamp,
}

/// Claims or renews `work` for `holder` in one statement. The row is taken when it is free
/// (no row, or its lease ran out by `now`) or already `holder`'s; otherwise it stays with
/// whoever holds it. `version` is compared too: a claim with an older version than the row's
/// changes nothing (returns `None`), and a newer one raises the row's version, so an older
/// holder's next renewal fails and its lease runs out (the newer claimant takes it then).
const CLAIM: &str = "INSERT INTO leases (work, holder, version, expires_at, acquired_at) \
     VALUES ($1, $2, $3, $5, $4) \
     ON CONFLICT (work) DO UPDATE SET \
       holder = CASE WHEN leases.holder = excluded.holder OR leases.expires_at <= $4 \
                THEN excluded.holder ELSE leases.holder END, \
       acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at \
                WHEN leases.expires_at <= $4 THEN excluded.acquired_at \
                ELSE leases.acquired_at END, \
       expires_at = CASE WHEN leases.holder = excluded.holder OR leases.expires_at <= $4 \
                THEN excluded.expires_at ELSE leases.expires_at END, \
       version = excluded.version \
     WHERE leases.version <= excluded.version \
     RETURNING work, holder, version, expires_at, acquired_at";

impl Store {
    /// Claims or renews the lease of `work` for `holder` until `expires_at` (see [`CLAIM`]):
    /// the row as it is after the statement, whoever holds it, or `None` when the row has a
    /// newer version than `version` (this code must not do that work any more).
    pub async fn claim_lease(
        &self,
        work: &str,
        holder: &str,
        version: i32,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Option<LeaseRow>> {
        let row = with_write!(self, |pool| {
            sqlx::query_as::<_, LeaseRow>(CLAIM)
                .bind(work)
                .bind(holder)
                .bind(version)
                .bind(now)
                .bind(expires_at)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// Gives up `holder`'s lease of `work` (at shutdown): it runs out at `now`, so another
    /// instance takes the work on its next claim instead of after the lease.
    pub async fn release_lease(&self, work: &str, holder: &str, now: Timestamp) -> Result<()> {
        with_write!(self, |pool| {
            sqlx::query("UPDATE leases SET expires_at = $3 WHERE work = $1 AND holder = $2")
                .bind(work)
                .bind(holder)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Every lease, by work.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>> {
        let rows = with_read!(self, |pool| {
            sqlx::query_as::<_, LeaseRow>(
                "SELECT work, holder, version, expires_at, acquired_at FROM leases ORDER BY work",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}
