//! Contact verification: a short code sent through a person's contact, entered back through
//! the API, proves the address reaches them.

use crate::{Result, Store, Timestamp, with_read, with_tx};

/// Wrong codes allowed for one sent code; after that a new code must be requested.
pub const MAX_CODE_ATTEMPTS: i64 = 5;

/// What entering a code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Verified,
    Wrong {
        attempts_left: i64,
    },
    /// No code was sent, or it was used up, expired, or sent to another address.
    NoCode,
    Expired,
    TooManyAttempts,
    AddressChanged,
}

/// Codes are stored hashed, as API keys are.
fn hash(code: &str) -> String {
    crate::hash_api_key(code.trim())
}

impl Store {
    /// Records a code sent to `address` for a person's contact, replacing any earlier one.
    pub async fn start_verification(
        &self,
        project_id: i64,
        person: &str,
        contact: &str,
        address: &str,
        code: &str,
        expires: Timestamp,
    ) -> Result<()> {
        with_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO contact_verifications \
                 (project_id, person, contact, address, code_hash, expires_at, attempts) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0) \
                 ON CONFLICT (project_id, person, contact) DO UPDATE SET \
                 address = excluded.address, code_hash = excluded.code_hash, \
                 expires_at = excluded.expires_at, attempts = 0",
            )
            .bind(project_id)
            .bind(person)
            .bind(contact)
            .bind(address)
            .bind(hash(code))
            .bind(expires)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// Checks a code entered for a person's contact whose address is now `address`.
    pub async fn check_verification(
        &self,
        project_id: i64,
        person: &str,
        contact: &str,
        address: &str,
        code: &str,
        now: Timestamp,
    ) -> Result<CodeCheck> {
        Ok(with_tx!(self, |tx| {
            let row: Option<(String, Option<String>, Timestamp, i64)> = sqlx::query_as(
                "SELECT address, code_hash, expires_at, attempts FROM contact_verifications \
                 WHERE project_id = $1 AND person = $2 AND contact = $3",
            )
            .bind(project_id)
            .bind(person)
            .bind(contact)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None | Some((_, None, _, _)) => CodeCheck::NoCode,
                Some((sent_to, _, _, _)) if sent_to != address => CodeCheck::AddressChanged,
                Some((_, _, expires, _)) if now > expires => CodeCheck::Expired,
                Some((_, _, _, attempts)) if attempts >= MAX_CODE_ATTEMPTS => {
                    CodeCheck::TooManyAttempts
                }
                Some((_, Some(expected), _, _)) if expected == hash(code) => {
                    sqlx::query(
                        "UPDATE contact_verifications SET code_hash = NULL, \
                         verified_address = address, verified_at = $4 \
                         WHERE project_id = $1 AND person = $2 AND contact = $3",
                    )
                    .bind(project_id)
                    .bind(person)
                    .bind(contact)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    CodeCheck::Verified
                }
                Some((_, _, _, attempts)) => {
                    sqlx::query(
                        "UPDATE contact_verifications SET attempts = attempts + 1 \
                         WHERE project_id = $1 AND person = $2 AND contact = $3",
                    )
                    .bind(project_id)
                    .bind(person)
                    .bind(contact)
                    .execute(&mut *tx)
                    .await?;
                    CodeCheck::Wrong {
                        attempts_left: MAX_CODE_ATTEMPTS - attempts - 1,
                    }
                }
            }
        }))
    }

    /// The verified contacts of a project: `(person, contact, address verified)`.
    pub async fn verified_contacts(
        &self,
        project_id: i64,
    ) -> Result<Vec<(String, String, String)>> {
        Ok(with_read!(self, |pool| {
            sqlx::query_as(
                "SELECT person, contact, verified_address FROM contact_verifications \
                 WHERE project_id = $1 AND verified_address IS NOT NULL \
                 ORDER BY person, contact",
            )
            .bind(project_id)
            .fetch_all(pool)
            .await?
        }))
    }
}
