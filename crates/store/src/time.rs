//! [`Timestamp`], the one type of every time the store reads and writes.

use std::fmt;
use std::ops::{Add, Sub};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// A moment, stored as microseconds since the Unix epoch (UTC), so that both databases hold
/// the same plain integers and compare them exactly. Converts to and from
/// `DateTime<Utc>`, the type the rest of keepwatch computes with; serialises as the integer.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The moment as a `DateTime<Utc>` (the epoch for a value out of chrono's range, which
    /// the store never writes).
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    /// The current time of the system clock (for the CLI; the engine has its own clock).
    pub fn now() -> Timestamp {
        Utc::now().into()
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Timestamp {
        Timestamp(at.timestamp_micros())
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(at: Timestamp) -> DateTime<Utc> {
        at.to_datetime()
    }
}

impl Add<TimeDelta> for Timestamp {
    type Output = Timestamp;
    fn add(self, delta: TimeDelta) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(delta.num_microseconds().unwrap_or(i64::MAX)),
        )
    }
}

impl Sub<TimeDelta> for Timestamp {
    type Output = Timestamp;
    fn sub(self, delta: TimeDelta) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(delta.num_microseconds().unwrap_or(i64::MAX)),
        )
    }
}

impl Sub for Timestamp {
    type Output = TimeDelta;
    fn sub(self, earlier: Timestamp) -> TimeDelta {
        TimeDelta::microseconds(self.0.saturating_sub(earlier.0))
    }
}

/// For the ping writer's own SQLite connection.
impl rusqlite::ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.0.into())
    }
}

/// RFC 3339 with microseconds, as the API shows times.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime().to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways_to_the_microsecond() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T02:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let stamp = Timestamp::from(at);
        assert_eq!(stamp.as_micros(), at.timestamp_micros());
        assert_eq!(stamp.to_datetime(), at);
        assert_eq!(stamp + TimeDelta::seconds(1) - stamp, TimeDelta::seconds(1));
        assert_eq!(
            serde_json::to_string(&stamp).unwrap(),
            stamp.as_micros().to_string()
        );
    }
}
