//! Limits on creating checks, per project: how many a project may have (`check_limit`, as
//! Healthchecks' per-account limit; auto-provisioning by `?create=1` may go to twice that, as
//! in Healthchecks) and how fast they may be created (`check_create_rate` a minute, a token
//! bucket on the engine's clock), so a leaked ping key cannot fill the database.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use keepwatch_store::{Store, StoreError};

/// Why a check is not created.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The project has its limit of checks.
    Limit,
    /// The project created its allowance of checks in the last minute.
    Rate,
}

/// Per-project token buckets of check creations.
#[derive(Default)]
pub struct CreationRate {
    buckets: Mutex<HashMap<i64, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

impl CreationRate {
    /// Takes one creation from the project's bucket (`per_minute` deep, refilled at
    /// `per_minute` a minute); false if it is empty.
    pub fn take(&self, project_id: i64, per_minute: u32, now: DateTime<Utc>) -> bool {
        let capacity = f64::from(per_minute);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(project_id).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = (now - bucket.at).as_seconds_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * capacity / 60.0).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A project's limits on creating checks (from the server's settings) and the buckets that
/// count its creations.
pub struct CheckQuota {
    check_limit: i64,
    per_minute: u32,
    rate: CreationRate,
}

impl CheckQuota {
    pub fn new(check_limit: i64, per_minute: u32) -> CheckQuota {
        CheckQuota {
            check_limit,
            per_minute,
            rate: CreationRate::default(),
        }
    }

    /// Whether the project may create a check at `now`; `auto` for `?create=1` (twice the
    /// limit).
    pub async fn may_create(
        &self,
        store: &Store,
        now: DateTime<Utc>,
        project_id: i64,
        auto: bool,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let limit = self.check_limit * if auto { 2 } else { 1 };
        let count = store.count_project_checks(project_id).await?;
        let refusal = if count >= limit {
            Some(Refusal::Limit)
        } else if !self.rate.take(project_id, self.per_minute, now) {
            Some(Refusal::Rate)
        } else {
            None
        };
        match refusal {
            None => Ok(Ok(())),
            Some(refusal) => {
                // Healthchecks' answer says nothing (403 or 404): the log says why.
                tracing::warn!(
                    project_id,
                    checks = count,
                    check_limit = self.check_limit,
                    check_create_rate = self.per_minute,
                    ?refusal,
                    auto,
                    "check not created"
                );
                Ok(Err(refusal))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    #[test]
    fn a_bucket_holds_a_minutes_allowance_and_refills_over_the_minute() {
        let rate = CreationRate::default();
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        assert!((0..3).all(|_| rate.take(1, 3, t0)));
        assert!(!rate.take(1, 3, t0));
        // Another project has its own bucket.
        assert!(rate.take(2, 3, t0));
        // One creation back every 20 s.
        assert!(!rate.take(1, 3, t0 + TimeDelta::seconds(19)));
        assert!(rate.take(1, 3, t0 + TimeDelta::seconds(20)));
        assert!(!rate.take(1, 3, t0 + TimeDelta::seconds(20)));
        // Never more than the allowance, however long it waited.
        let later = t0 + TimeDelta::hours(1);
        assert!((0..3).all(|_| rate.take(1, 3, later)));
        assert!(!rate.take(1, 3, later));
    }
}
