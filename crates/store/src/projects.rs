//! Projects (each with its ping key) and API keys (stored as SHA-256 hashes).

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Project, Result, Store, StoreError, Timestamp, with_read, with_tx};

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A random secret of `len` characters from `[a-z0-9]`, from the OS random source (via v4
/// UUIDs, which carry 122 random bits each).
pub fn generate_secret(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in Uuid::new_v4().as_bytes().iter().take(15) {
            if out.len() == len {
                break;
            }
            // 252 = 7 * 36: rejecting the top values keeps the characters uniform.
            if *byte < 252 {
                out.push(ALPHABET[(*byte % 36) as usize] as char);
            }
        }
    }
    out
}

/// How API keys are stored and looked up: hex SHA-256 of the key.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether an API key may change things or only read them, and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyScope {
    pub project_id: i64,
    pub read_only: bool,
    /// Empty for a key created without a name.
    pub key_name: String,
}

impl Store {
    /// Creates a project with a fresh ping key. Names are unique.
    pub async fn create_project(&self, name: &str, now: Timestamp) -> Result<Project> {
        if self.project_by_name(name).await?.is_some() {
            return Err(StoreError::conflict(format!(
                "project `{name}` already exists"
            )));
        }
        let uuid = Uuid::new_v4().to_string();
        let ping_key = generate_secret(22);
        let id: i64 = with_tx!(self, |tx| {
            sqlx::query_scalar(
                "INSERT INTO projects (uuid, name, ping_key, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(&uuid)
            .bind(name)
            .bind(&ping_key)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(Project {
            id,
            uuid,
            name: name.to_string(),
            ping_key,
        })
    }

    pub async fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as("SELECT id, uuid, name, ping_key FROM projects WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn project_by_ping_key(&self, ping_key: &str) -> Result<Option<Project>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as("SELECT id, uuid, name, ping_key FROM projects WHERE ping_key = $1")
                .bind(ping_key)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn project_by_id(&self, id: i64) -> Result<Option<Project>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as("SELECT id, uuid, name, ping_key FROM projects WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as("SELECT id, uuid, name, ping_key FROM projects ORDER BY id")
                .fetch_all(pool)
                .await?
        }))
    }

    /// Creates an API key for a project and returns the key itself, which is shown once.
    /// `name` (may be empty) says whose or what it is in the logs of what it does.
    pub async fn create_api_key(
        &self,
        project_id: i64,
        read_only: bool,
        name: &str,
        now: Timestamp,
    ) -> Result<String> {
        let key = generate_secret(32);
        with_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO api_keys (project_id, key_hash, read_only, created_at, name) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(project_id)
            .bind(hash_api_key(&key))
            .bind(read_only)
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        });
        Ok(key)
    }

    /// The project and scope of an API key, if it exists.
    pub async fn api_key_scope(&self, key: &str) -> Result<Option<ApiKeyScope>> {
        let row: Option<(i64, bool, String)> = with_read!(self, |pool| {
            sqlx::query_as("SELECT project_id, read_only, name FROM api_keys WHERE key_hash = $1")
                .bind(hash_api_key(key))
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(project_id, read_only, key_name)| ApiKeyScope {
            project_id,
            read_only,
            key_name,
        }))
    }
}
