//! Delivers the outbox. Rows are claimed with a lease (see the store), sent concurrently,
//! and every attempt is recorded. A failure is retried after `retry_base × 2^attempts`
//! (at most an hour) until `max_attempts`, then the row is marked failed; a permanent failure
//! (a refused destination, an unusable address) is marked failed at once.
//!
//! Sends run in a pool that refills as each one finishes: at most `delivery_concurrency` at
//! once and [`PER_DESTINATION`](crate::destination::PER_DESTINATION) to one receiver
//! ([`Lanes`]), each bounded by the delivery timeout. A destination with
//! [`HELD_PER_DESTINATION`] rows in hand gets no more until one finishes (its rows stay in the
//! outbox for later claims), so a slow or hanging receiver holds up only its own deliveries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keepwatch_store::{AttemptResult, Delivery, MessageKind, Store, from_micros, to_micros};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::EngineConfig;
use crate::channels::format::channel_address;
use crate::channels::{Failure, Message, Transport, render};
use crate::clock::Clock;
use crate::destination::destination_of;
use crate::destination::{HELD_PER_DESTINATION, HELD_PER_SLOT, Held, Lanes};

/// How long a claim holds. A claimed row waits at most `HELD_PER_DESTINATION /
/// PER_DESTINATION` delivery timeouts (plus one claim's worth) for its turn, well within it;
/// a row whose lease ran out while it waited here is still this process's (see `held`).
const LEASE: Duration = Duration::from_secs(120);
const IDLE_POLL: Duration = Duration::from_secs(30);

pub struct Dispatcher {
    store: Store,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    wake: Arc<Notify>,
    transport: Arc<dyn Transport>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        wake: Arc<Notify>,
        transport: Arc<dyn Transport>,
    ) -> Dispatcher {
        Dispatcher {
            transport,
            store,
            clock,
            config,
            wake,
        }
    }

    pub async fn run(self) {
        let lanes = Lanes::new(self.config.delivery_concurrency);
        let max_held = self.config.delivery_concurrency.max(1) * HELD_PER_SLOT;
        let mut sends: JoinSet<()> = JoinSet::new();
        // Outbox rows in hand, left out of claims by channel.
        let mut held: Held<i64> = Held::default();
        loop {
            while let Some(done) = sends.try_join_next_with_id() {
                held.release(done);
            }
            let room = max_held.saturating_sub(held.sends());
            if room == 0 {
                if let Some(done) = sends.join_next_with_id().await {
                    held.release(done);
                }
                continue;
            }
            let now = self.clock.now();
            let busy = held.busy();
            let claimed = self
                .store
                .claim_due_except(
                    to_micros(now),
                    to_micros(now + LEASE),
                    room.min(HELD_PER_DESTINATION) as i64,
                    &busy,
                )
                .await;
            let deliveries = match claimed {
                Ok(deliveries) => deliveries,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim notifications");
                    self.idle(Some(now + Duration::from_secs(1)), &mut sends, &mut held)
                        .await;
                    continue;
                }
            };
            if let Ok(depth) = self.store.outbox_depth().await {
                metrics::gauge!("keepwatch_outbox_pending").set(depth as f64);
            }
            if deliveries.is_empty() {
                // Rows of busy destinations may be due already: those wait for a send to
                // finish, not for their due time.
                let next = self
                    .store
                    .next_message_due(MessageKind::ChannelEvent)
                    .await
                    .ok()
                    .flatten()
                    .map(from_micros)
                    .filter(|next| *next > now);
                self.idle(next, &mut sends, &mut held).await;
                continue;
            }
            for delivery in deliveries {
                // Claimed again after its lease ran out while it waited here: still ours, and
                // already on its way.
                if held.holds(delivery.outbox_id) {
                    continue;
                }
                let (outbox_id, channel_id) = (delivery.outbox_id, delivery.channel_id);
                // Where it goes, for the per-destination limit (an unusable channel fails
                // when it is sent).
                let destination = channel_address(&delivery)
                    .map_or_else(|_| "smtp".into(), |(_, address)| destination_of(&address));
                let task =
                    sends.spawn(self.deliver(lanes.clone(), destination.clone(), delivery.clone()));
                held.add(vec![(outbox_id, channel_id)], destination, task.id());
            }
        }
    }

    /// Sends one row when its destination has a free lane, and records the attempt.
    fn deliver(
        &self,
        lanes: Lanes,
        destination: String,
        delivery: Delivery,
    ) -> impl Future<Output = ()> + Send + 'static {
        let transport = self.transport.clone();
        let store = self.store.clone();
        let clock = self.clock.clone();
        let config = self.config.clone();
        async move {
            let (outcome, took) = lanes
                .run(&destination, async {
                    let started = Instant::now();
                    let send = send(&*transport, &store, &config.site_url, &delivery);
                    let outcome = tokio::time::timeout(transport.timeout(), send)
                        .await
                        .unwrap_or_else(|_| {
                            Err(Failure::transient("no answer within the delivery timeout"))
                        });
                    (outcome, started.elapsed())
                })
                .await;
            let at = clock.now();
            let attempts = delivery.attempts + 1;
            let retry_at = retry_after(&config, delivery.attempts, &outcome)
                .map(|delay| to_micros(at + delay));
            let (ok, detail) = match outcome {
                Ok(detail) => (true, detail),
                Err(failure) => (false, failure.detail),
            };
            metrics::counter!("keepwatch_deliveries_total", "outcome" => if ok { "ok" } else { "error" })
                .increment(1);
            if !ok {
                tracing::warn!(outbox = delivery.outbox_id, channel = %delivery.channel_name, attempts, error = %detail, "delivery failed");
            }
            let result = AttemptResult {
                outbox_id: delivery.outbox_id,
                at: to_micros(at),
                ok,
                detail,
                took_ms: took.as_millis() as i64,
                retry_at,
            };
            if let Err(e) = store.record_attempt(&result).await {
                tracing::error!(error = %e, "cannot record delivery attempt");
            }
        }
    }

    /// Waits until woken by a new outbox row, until `next` (a retry coming due), until a
    /// send finishes (its destination may take more now), or a poll.
    async fn idle(
        &self,
        next: Option<chrono::DateTime<chrono::Utc>>,
        sends: &mut JoinSet<()>,
        held: &mut Held<i64>,
    ) {
        let poll = self.clock.now() + IDLE_POLL;
        let until = next.map_or(poll, |n| n.min(poll));
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = self.clock.sleep_until(until) => {}
            Some(done) = sends.join_next_with_id() => {
                held.release(done);
            }
        }
    }
}

/// When a failed send is tried again, `attempts` attempts before it: after `retry_base ×
/// 2^attempts` (at most an hour). `None` when it succeeded, when retrying cannot help, or when
/// it was the last attempt.
pub(crate) fn retry_after(
    config: &EngineConfig,
    attempts: i64,
    outcome: &Result<String, Failure>,
) -> Option<Duration> {
    let failure = outcome.as_ref().err()?;
    if failure.permanent || attempts + 1 >= config.max_attempts {
        return None;
    }
    let factor = 2u32.saturating_pow(attempts.clamp(0, 20) as u32);
    Some(
        config
            .retry_base
            .saturating_mul(factor)
            .min(Duration::from_secs(3600)),
    )
}

/// Sends one channel event: the message built from the event and the check as it is now.
/// `Ok` carries a short description of the receiver's answer.
async fn send(
    transport: &dyn Transport,
    store: &Store,
    site_url: &str,
    delivery: &Delivery,
) -> Result<String, Failure> {
    let (kind, address) = channel_address(delivery)?;
    let payload: serde_json::Value = serde_json::from_str(&delivery.payload).unwrap_or_default();
    let uuid = payload["check_uuid"].as_str().unwrap_or_default();
    let check = store.check_by_uuid(uuid).await.ok().flatten();
    let message = Message::event(delivery, check.as_ref(), site_url);
    let request = render(kind, &address, &message)?;
    transport.send(request).await.map_err(|mut e| {
        if e.detail.starts_with("answered") {
            e.detail.insert_str(0, "webhook ");
        }
        e
    })
}
