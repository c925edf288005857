//! Web UI users, their role in each project, and their sessions.
//!
//! A session's cookie token is a random secret stored only as its SHA-256, as API keys are,
//! so a copy of the database does not sign anyone in.

use keepwatch_core::user::Role;

use crate::projects::{generate_secret, hash_api_key};
use crate::{Result, Store, StoreError, Timestamp, with_read, with_tx, with_write};

/// A web UI user.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    /// The argon2 PHC string.
    pub password_hash: String,
    /// The person id in the on-call file, or empty.
    pub person: String,
}

/// A user's role in one project.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Membership {
    pub project_id: i64,
    pub project_name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
}

/// A signed-in session: who, and the token its forms must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub expires_at: Timestamp,
}

impl Store {
    /// Creates a user. Emails are unique (compared as given, lower-cased by the caller).
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        person: &str,
        now: Timestamp,
    ) -> Result<User> {
        if self.user_by_email(email).await?.is_some() {
            return Err(StoreError::conflict(format!(
                "a user with email `{email}` already exists"
            )));
        }
        let id: i64 = with_tx!(self, |tx| {
            sqlx::query_scalar(
                "INSERT INTO users (email, password_hash, person, created_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(email)
            .bind(password_hash)
            .bind(person)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(User {
            id,
            email: email.to_string(),
            password_hash: password_hash.to_string(),
            person: person.to_string(),
        })
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as("SELECT id, email, password_hash, person FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(pool)
                .await?
        }))
    }

    pub async fn user_count(&self) -> Result<i64> {
        Ok(with_read!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(pool)
                .await?
        }))
    }

    /// Changes a user's password and ends their sessions.
    pub async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()> {
        with_tx!(self, |tx| {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(password_hash)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// Gives a user a role in a project (replacing the one they had).
    pub async fn set_membership(&self, user_id: i64, project_id: i64, role: Role) -> Result<()> {
        with_write!(self, |pool| {
            sqlx::query(
                "INSERT INTO memberships (user_id, project_id, role) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, project_id) DO UPDATE SET role = excluded.role",
            )
            .bind(user_id)
            .bind(project_id)
            .bind(role.as_str())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The projects a user belongs to, by name.
    pub async fn memberships(&self, user_id: i64) -> Result<Vec<Membership>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT m.project_id, p.name AS project_name, m.role FROM memberships m \
                 JOIN projects p ON p.id = m.project_id WHERE m.user_id = $1 ORDER BY p.name",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Starts a session; returns the cookie token (stored only as its hash) and the CSRF token.
    pub async fn create_session(
        &self,
        user_id: i64,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(String, String)> {
        let token = generate_secret(40);
        let csrf = generate_secret(32);
        with_tx!(self, |tx| {
            // Expired sessions go when anyone signs in; nothing else needs to sweep them.
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(hash_api_key(&token))
            .bind(user_id)
            .bind(&csrf)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        });
        Ok((token, csrf))
    }

    /// The session a cookie token names, if it exists and has not expired.
    pub async fn session(&self, token: &str, now: Timestamp) -> Result<Option<Session>> {
        let row: Option<(i64, String, String, String, String, Timestamp)> =
            with_read!(self, |pool| {
                sqlx::query_as(
                    "SELECT u.id, u.email, u.password_hash, u.person, s.csrf, s.expires_at \
                     FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2",
                )
                .bind(hash_api_key(token))
                .bind(now)
                .fetch_optional(pool)
                .await?
            });
        Ok(row.map(
            |(id, email, password_hash, person, csrf, expires_at)| Session {
                user: User {
                    id,
                    email,
                    password_hash,
                    person,
                },
                csrf,
                expires_at,
            },
        ))
    }

    /// Ends a session (sign out).
    pub async fn delete_session(&self, token: &str) -> Result<()> {
        with_write!(self, |pool| {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(hash_api_key(token))
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
