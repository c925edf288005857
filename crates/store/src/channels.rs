//! Channels (where a check's events go: a webhook, an email address) and which checks notify
//! which. Their messages are in [`crate::messages`].

use uuid::Uuid;

use crate::{ChannelRow, Result, Store, Timestamp, with_read, with_tx};

impl Store {
    pub async fn create_channel(
        &self,
        project_id: i64,
        name: &str,
        kind: &str,
        config: &str,
        now: Timestamp,
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
            .bind(now)
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
}
