//! A project's on-call configuration as applied (its source text; the engine parses it) and
//! the unguessable tokens of its calendar feeds.

use crate::projects::generate_secret;
use crate::{Result, Store, with_read, with_tx};

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
    pub async fn oncall_source(&self, project_id: i64) -> Result<Option<String>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT source FROM oncall_configs WHERE project_id = $1")
                .bind(project_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Stores the configuration and gives every schedule and person (`(kind, name)`) a feed
    /// token if it has none yet, in one transaction; returns the project's feeds.
    pub async fn apply_oncall(
        &self,
        project_id: i64,
        source: &str,
        feeds: &[(&str, &str)],
        now_us: i64,
    ) -> Result<Vec<FeedRow>> {
        with_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO oncall_configs (project_id, source, applied_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (project_id) DO UPDATE SET source = excluded.source, \
                 applied_at = excluded.applied_at",
            )
            .bind(project_id)
            .bind(source)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
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
