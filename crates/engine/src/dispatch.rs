//! Delivers the outbox. Rows are claimed with a lease (see the store), sent concurrently,
//! and every attempt is recorded. A failure is retried after `retry_base × 2^attempts`
//! (at most an hour) until `max_attempts`, then the row is marked failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keepwatch_store::{AttemptResult, Store, from_micros, to_micros};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::EngineConfig;
use crate::clock::Clock;
use crate::notify::Notifier;

const LEASE: Duration = Duration::from_secs(120);
const IDLE_POLL: Duration = Duration::from_secs(30);

pub struct Dispatcher {
    store: Store,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    wake: Arc<Notify>,
    notifier: Arc<Notifier>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        wake: Arc<Notify>,
        notifier: Arc<Notifier>,
    ) -> Dispatcher {
        Dispatcher {
            notifier,
            store,
            clock,
            config,
            wake,
        }
    }

    pub async fn run(self) {
        loop {
            let now = self.clock.now();
            let claimed = self
                .store
                .claim_due(
                    to_micros(now),
                    to_micros(now + LEASE),
                    self.config.delivery_concurrency as i64,
                )
                .await;
            let deliveries = match claimed {
                Ok(deliveries) => deliveries,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim notifications");
                    self.idle(Some(now + Duration::from_secs(1))).await;
                    continue;
                }
            };
            if let Ok(depth) = self.store.outbox_depth().await {
                metrics::gauge!("keepwatch_outbox_pending").set(depth as f64);
            }
            if deliveries.is_empty() {
                let next = self
                    .store
                    .next_outbox_due()
                    .await
                    .ok()
                    .flatten()
                    .map(from_micros);
                self.idle(next).await;
                continue;
            }
            let mut sends = JoinSet::new();
            for delivery in deliveries {
                let notifier = self.notifier.clone();
                let store = self.store.clone();
                let clock = self.clock.clone();
                let config = self.config.clone();
                sends.spawn(async move {
                    let started = Instant::now();
                    let outcome = notifier.send(&delivery).await;
                    let at = clock.now();
                    let attempts = delivery.attempts + 1;
                    let (ok, detail, permanent) = match outcome {
                        Ok(detail) => (true, detail, false),
                        Err(failure) => (false, failure.detail, failure.permanent),
                    };
                    metrics::counter!("keepwatch_deliveries_total", "outcome" => if ok { "ok" } else { "error" })
                        .increment(1);
                    let retry_at = (!ok && !permanent && attempts < config.max_attempts).then(|| {
                        let factor = 2u32.saturating_pow(delivery.attempts.clamp(0, 20) as u32);
                        let delay = config.retry_base.saturating_mul(factor).min(Duration::from_secs(3600));
                        to_micros(at + delay)
                    });
                    if !ok {
                        tracing::warn!(outbox = delivery.outbox_id, channel = %delivery.channel_name, attempts, error = %detail, "delivery failed");
                    }
                    let result = AttemptResult {
                        outbox_id: delivery.outbox_id,
                        at: to_micros(at),
                        ok,
                        detail,
                        took_ms: started.elapsed().as_millis() as i64,
                        retry_at,
                    };
                    if let Err(e) = store.record_attempt(&result).await {
                        tracing::error!(error = %e, "cannot record delivery attempt");
                    }
                });
            }
            while sends.join_next().await.is_some() {}
        }
    }

    /// Waits until woken by a new outbox row, until `next` (a retry coming due), or a poll.
    async fn idle(&self, next: Option<chrono::DateTime<chrono::Utc>>) {
        let poll = self.clock.now() + IDLE_POLL;
        let until = next.map_or(poll, |n| n.min(poll));
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = self.clock.sleep_until(until) => {}
        }
    }
}
