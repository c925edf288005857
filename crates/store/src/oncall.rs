//! A project's on-call configuration as applied (its source text, parsed once per apply and
//! shared by the server and the pager) and the unguessable tokens of its calendar feeds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keepwatch_core::oncall::config::OnCall;

use crate::projects::generate_secret;
use crate::{Result, Store, StoreError, Timestamp, with_read, with_tx};

/// The configuration applied to a project, as parsed after that apply.
#[derive(Debug)]
pub struct AppliedOnCall {
    pub source: String,
    /// When it was applied, to the microsecond; strictly increasing per project, so it is also
    /// the version the cache is keyed by.
    pub applied_at: Timestamp,
    /// The parsed configuration, or why the stored text no longer parses (it did when
    /// applied: a file of another keepwatch version).
    pub config: std::result::Result<OnCall, String>,
    /// The file as JSON, for the read views of the API.
    pub json: std::result::Result<serde_json::Value, String>,
}

impl AppliedOnCall {
    fn parse(source: String, applied_at: Timestamp) -> AppliedOnCall {
        AppliedOnCall {
            // Checked when applied; read back without the checks an earlier version lacked.
            config: OnCall::parse_applied(&source).map_err(|e| format!("{e:#}")),
            json: toml::from_str(&source).map_err(|e| e.to_string()),
            source,
            applied_at,
        }
    }
}

/// Parsed configurations by project, with the version each was parsed from. A read checks
/// the stored version (one small query) and parses only after an apply: a large file costs
/// its parse once, not on every request and pager round.
#[derive(Default)]
pub(crate) struct OnCallCache {
    entries: std::sync::Mutex<HashMap<i64, Arc<AppliedOnCall>>>,
    /// One parse at a time: concurrent readers after an apply wait for it, not parse again.
    parsing: tokio::sync::Mutex<()>,
    parses: AtomicU64,
}

impl OnCallCache {
    fn get(&self, project_id: i64, version: Timestamp) -> Option<Arc<AppliedOnCall>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&project_id)
            .filter(|e| e.applied_at == version)
            .cloned()
    }
}

/// Who applied a configuration, and the changes it made (the lines `keepwatch apply`
/// prints), for the history and the logs of the alerts open then.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppliedBy<'a> {
    pub who: &'a str,
    pub changes: &'a [String],
}

impl AppliedBy<'_> {
    /// What an open alert's log says of the apply.
    fn log_line(&self) -> String {
        let mut line = String::from("on-call configuration applied");
        if !self.changes.is_empty() {
            line.push_str(&format!(" ({})", self.changes.join("; ")));
        }
        line + ": pending steps follow the new file"
    }
}

/// A configuration as it was applied at some time.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HistoricConfig {
    pub source: String,
    pub applied_at: Timestamp,
    pub applied_by: String,
}

/// A calendar feed: `/ical/<token>.ics` serves the shifts of a schedule or of a person.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FeedRow {
    pub token: String,
    pub project_id: i64,
    /// `schedule` or `person`.
    pub kind: String,
    pub name: String,
}

impl Store {
    /// The configuration applied to a project, parsed (once per apply: later calls share
    /// it); `None` when nothing was applied. The parse runs on the blocking pool, off the
    /// async workers.
    pub async fn oncall(&self, project_id: i64) -> Result<Option<Arc<AppliedOnCall>>> {
        let cache = &self.oncall_cache;
        let Some(version) = self.oncall_version(project_id).await? else {
            let mut entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.remove(&project_id);
            return Ok(None);
        };
        if let Some(hit) = cache.get(project_id, version) {
            return Ok(Some(hit));
        }
        let _one = cache.parsing.lock().await;
        // Applied again while this waited: read what is stored now.
        let row: Option<(String, Timestamp)> = with_read!(self, |pool| {
            sqlx::query_as("SELECT source, applied_at FROM oncall_configs WHERE project_id = $1")
                .bind(project_id)
                .fetch_optional(pool)
                .await?
        });
        let Some((source, applied_at)) = row else {
            return Ok(None);
        };
        if let Some(hit) = cache.get(project_id, applied_at) {
            return Ok(Some(hit));
        }
        let parsed = tokio::task::spawn_blocking(move || AppliedOnCall::parse(source, applied_at))
            .await
            .map_err(|e| StoreError::task(format!("parsing the on-call configuration: {e}")))?;
        cache.parses.fetch_add(1, Ordering::Relaxed);
        let parsed = Arc::new(parsed);
        let mut entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(project_id, parsed.clone());
        Ok(Some(parsed))
    }

    /// How many times this store parsed an applied configuration (for tests and metrics).
    pub fn oncall_parses(&self) -> u64 {
        self.oncall_cache.parses.load(Ordering::Relaxed)
    }

    async fn oncall_version(&self, project_id: i64) -> Result<Option<Timestamp>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT applied_at FROM oncall_configs WHERE project_id = $1")
                .bind(project_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Every project's applied version (`applied_at`), for the pager to notice applies.
    pub async fn oncall_versions(&self) -> Result<Vec<(i64, Timestamp)>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as("SELECT project_id, applied_at FROM oncall_configs")
                .fetch_all(pool)
                .await?
        }))
    }

    pub async fn oncall_source(&self, project_id: i64) -> Result<Option<String>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT source FROM oncall_configs WHERE project_id = $1")
                .bind(project_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Stores the configuration and gives every schedule and person (`(kind, name)`) a feed
    /// token if it has none yet, in one transaction; returns the project's feeds. A changed
    /// file is logged in each open alert of the project (the pager re-plans them from it).
    /// `applied_at` is the version: it becomes `now`, or one more than before if that is
    /// not later (two applies in the same microsecond are still two versions).
    pub async fn apply_oncall(
        &self,
        project_id: i64,
        source: &str,
        feeds: &[(&str, &str)],
        by: &AppliedBy<'_>,
        now: Timestamp,
    ) -> Result<Vec<FeedRow>> {
        with_tx!(self, |tx| {
            let old: Option<String> =
                sqlx::query_scalar("SELECT source FROM oncall_configs WHERE project_id = $1")
                    .bind(project_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let applied_at: Timestamp = sqlx::query_scalar(
                "INSERT INTO oncall_configs (project_id, source, applied_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (project_id) DO UPDATE SET source = excluded.source, \
                 applied_at = CASE WHEN excluded.applied_at > oncall_configs.applied_at \
                 THEN excluded.applied_at ELSE oncall_configs.applied_at + 1 END \
                 RETURNING applied_at",
            )
            .bind(project_id)
            .bind(source)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO oncall_history (project_id, applied_at, source, applied_by, changes) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(project_id)
            .bind(applied_at)
            .bind(source)
            .bind(by.who)
            .bind(serde_json::to_string(by.changes).expect("a list of strings"))
            .execute(&mut *tx)
            .await?;
            if old.as_deref() != Some(source) {
                sqlx::query(
                    "INSERT INTO alert_log (alert_id, at, kind, who, detail) \
                     SELECT id, $2, 'config_applied', $3, $4 \
                     FROM alerts WHERE project_id = $1 AND status <> 'resolved' ORDER BY id",
                )
                .bind(project_id)
                .bind(applied_at)
                .bind(by.who)
                .bind(by.log_line())
                .execute(&mut *tx)
                .await?;
            }
            for (kind, name) in feeds {
                sqlx::query(
                    "INSERT INTO calendar_feeds (token, project_id, kind, name) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (project_id, kind, name) DO NOTHING",
                )
                .bind(generate_secret(32))
                .bind(project_id)
                .bind(kind)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
        });
        self.feeds(project_id).await
    }

    /// The configuration in force at `at`: the last one applied at or before it.
    pub async fn oncall_at(
        &self,
        project_id: i64,
        at: Timestamp,
    ) -> Result<Option<HistoricConfig>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT source, applied_at, applied_by FROM oncall_history \
                 WHERE project_id = $1 AND applied_at <= $2 ORDER BY applied_at DESC, id DESC LIMIT 1",
            )
            .bind(project_id)
            .bind(at)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn feeds(&self, project_id: i64) -> Result<Vec<FeedRow>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT token, project_id, kind, name FROM calendar_feeds WHERE project_id = $1 \
                 ORDER BY kind, name",
            )
            .bind(project_id)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn feed_by_token(&self, token: &str) -> Result<Option<FeedRow>> {
        // No token has one, and PostgreSQL fails a query that binds one (a 503 for a URL
        // with `%00` in it, instead of a 404).
        if token.contains('\0') {
            return Ok(None);
        }
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT token, project_id, kind, name FROM calendar_feeds WHERE token = $1",
            )
            .bind(token)
            .fetch_optional(pool)
            .await?
        }))
    }
}
