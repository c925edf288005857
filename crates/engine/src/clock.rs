//! Time as an input. Production runs on [`SystemClock`]; tests and drills use [`ManualClock`]
//! and advance it, so a week of schedules runs in milliseconds and no test sleeps.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Completes once `now() >= t`.
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'_>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'_> {
        Box::pin(async move {
            // Sleep in slices so a wall-clock jump (NTP, suspend) is noticed within a minute.
            loop {
                let left = t - Utc::now();
                if left <= chrono::TimeDelta::zero() {
                    return;
                }
                let slice = left
                    .to_std()
                    .unwrap_or_default()
                    .min(std::time::Duration::from_secs(60));
                tokio::time::sleep(slice).await;
            }
        })
    }
}

/// A clock that moves only when told to.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    changed: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
            changed: watch::channel(start).0,
        }
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
        self.changed.send_replace(t);
    }

    pub fn advance(&self, by: chrono::TimeDelta) {
        let t = self.now() + by;
        self.set(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'_> {
        let mut changes = self.changed.subscribe();
        Box::pin(async move {
            while self.now() < t {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}
