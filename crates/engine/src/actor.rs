//! The engine's single owner of check state. Pings, deadline ticks, check changes from the
//! API and checkpoints are all commands to this one task, so they are applied in one order,
//! and each group of pings is committed in one transaction (group commit) before anyone is
//! told "OK". State changes are computed on copies and published only after the commit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keepwatch_core::check::{
    CheckState, Event, Outcome, PingInput, PingKind, RunIdentity, Status, Suppression,
};
use keepwatch_store::{
    Batch, CheckRow, Committed, EventRow, Fence, FlipRow, InboxKind, PingRow, StateUpdate, Store,
    StoreError, Timestamp,
};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use uuid::Uuid;

use crate::clock::Clock;
use crate::lease::{Lease, Work};
use crate::live::{LiveCheck, RulesInterner, deadline_of, state_from_row, state_to_row};
use crate::{CheckView, EngineConfig, EngineError, PingReply, PingRequest, Stats};

/// How many commands are taken into one group commit at most.
const MAX_BATCH: usize = 2048;
/// How many due checks are judged per transaction when many deadlines pass at once.
const TICK_CHUNK: usize = 1000;
/// How many check states one checkpoint step writes, and how many pings one sweep step looks
/// at, so neither holds the write lock for long between two ping batches.
const CHECKPOINT_STATES: usize = 500;
const SWEEP_ROWS: i64 = 2_000;
/// The pause between checkpoint steps while there is a backlog: short, so that steps of a
/// few milliseconds each keep up with tens of thousands of pings a second.
const CHECKPOINT_STEP: std::time::Duration = std::time::Duration::from_millis(10);
/// How often the owner of the checks looks for pings and check changes other instances
/// handed over: their pings count from when they were taken, so this only delays what pages
/// and the API show (and the owner looks again before judging any deadline).
const INBOX_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// A full sweep of the ping log starts at most this often.
const SWEEP_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// A ping dated this much before its arrival came late (from a spool).
const LATE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// After a late ping, a check is not judged for this long: a spool delivers a run's start
/// and finish one request after the other, and judging between them would raise a hung or
/// down alert for a run that in fact finished hours ago.
const SETTLE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

pub enum Command {
    Ping(Box<PingRequest>, Reply<PingReply>),
    Create(Box<CheckRow>, Reply<CheckRow>),
    /// New configuration for an existing check; its state is kept.
    Update(Box<CheckRow>, Reply<CheckRow>),
    Pause(i64, Reply<()>),
    Resume(i64, Reply<bool>),
    Delete(i64, Reply<()>),
    States(Vec<i64>, oneshot::Sender<Vec<Option<CheckView>>>),
    Stats(oneshot::Sender<Stats>),
    /// Write every pending state to the database (used at shutdown).
    Flush(oneshot::Sender<()>),
}

pub struct Actor {
    pub store: Store,
    /// Asked before judging deadlines (see [`crate::lease`]).
    lease: Arc<dyn Lease>,
    pub clock: Arc<dyn Clock>,
    pub config: EngineConfig,
    /// Fx hashing: SipHash was an eighth of start-up with a million checks. Keys are ids
    /// and UUIDs that only check creation inserts, so hash flooding is not a concern.
    pub checks: FxHashMap<i64, LiveCheck>,
    pub by_uuid: FxHashMap<Uuid, i64>,
    pub heap: BinaryHeap<Reverse<(Timestamp, i64)>>,
    pub interner: RulesInterner,
    /// The last ping sequence number committed.
    pub seq: i64,
    /// Checks whose stored state lags memory, with the first seq not in the stored state.
    pub dirty: FxHashMap<i64, i64>,
    /// Where the sweep of old pings is, and when the current sweep started.
    pub sweep_pos: i64,
    pub sweep_started: DateTime<Utc>,
    pub outbox_wake: Arc<Notify>,
    /// Wakes the pager when check events are committed (they may open or resolve alerts).
    pub events_wake: Arc<Notify>,
    /// Counts committed batches, so pages showing check states know to refresh.
    pub changes: Arc<watch::Sender<u64>>,
    /// Checks that received late pings, and until when they are left to settle.
    pub settling: FxHashMap<i64, Timestamp>,
    /// Sends a committed ping batch's replies and wake-ups (see [`spawn_replier`]).
    pub replier: std::sync::mpsc::Sender<Deferred>,
    /// Whether this instance owned the checks when it last looked (see `Actor::owns_checks`).
    owner: bool,
    /// The checks that depend on others (issue #21), and on which: while one is down, a
    /// check's down, failed and hung events are held back. Kept beside `checks`, not in each
    /// `LiveCheck`: few checks have any. May name checks deleted since: look them up.
    pub depends: FxHashMap<i64, Box<[Uuid]>>,
}

/// The events held back while a check depended on is down.
const HELD_KINDS: [&str; 3] = ["down", "failed", "hung"];

/// Work that follows a commit and need not hold up the next one.
pub type Deferred = Box<dyn FnOnce() + Send>;

/// A thread that runs the follow-up of each committed ping batch: the 200s (one task wake-up
/// per ping) and the dispatcher's and pager's wake-ups. On the engine's thread they delayed
/// the next commit; moved here, `bench/ping.sh` measured about 8% more pings per second. The
/// thread ends when the actor (the sender) is dropped.
fn spawn_replier() -> std::io::Result<std::sync::mpsc::Sender<Deferred>> {
    let (sender, jobs) = std::sync::mpsc::channel::<Deferred>();
    std::thread::Builder::new()
        .name("keepwatch-reply".into())
        .spawn(move || {
            for job in jobs {
                job();
            }
        })?;
    Ok(sender)
}

impl Actor {
    /// Wakes whoever reads what a committed batch wrote: the dispatcher for outbox rows, the
    /// pager for events.
    fn committed(&self, batch: &Batch, outbox_rows: u64) {
        self.wakes(batch, outbox_rows)();
    }

    /// The wake-ups of [`Self::committed`], to run later.
    fn wakes(&self, batch: &Batch, outbox_rows: u64) -> impl FnOnce() + Send + 'static {
        let outbox = (outbox_rows > 0).then(|| self.outbox_wake.clone());
        let events = (!batch.events.is_empty()).then(|| self.events_wake.clone());
        let changes = self.changes.clone();
        move || {
            changes.send_modify(|n| *n = n.wrapping_add(1));
            if let Some(outbox) = outbox {
                outbox.notify_one();
            }
            if let Some(events) = events {
                events.notify_one();
            }
        }
    }

    /// This process takes the deadlines over from another instance: its check state is the
    /// database's (as at a start-up: every check, and the pings after their checkpoint,
    /// whoever wrote them), not what it kept in memory while another instance judged them
    /// (checks created and pings taken there were never in it). Pings this process took and
    /// did not checkpoint are in the ping log and replayed too.
    async fn take_over(&mut self) {
        let started = std::time::Instant::now();
        match Actor::load(
            self.store.clone(),
            self.clock.clone(),
            self.config.clone(),
            self.outbox_wake.clone(),
            self.events_wake.clone(),
            self.lease.clone(),
            self.changes.clone(),
        )
        .await
        {
            Ok(fresh) => {
                *self = fresh;
                self.owner = true;
                self.release_after_restart().await;
                tracing::info!(
                    checks = self.checks.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "took the deadlines over: check state reloaded from the database"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "taking the deadlines over: cannot reload check state; judging the state in memory");
            }
        }
    }

    /// Loads every check and replays the pings that came after their last checkpoint.
    pub async fn load(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        outbox_wake: Arc<Notify>,
        events_wake: Arc<Notify>,
        lease: Arc<dyn Lease>,
        changes: Arc<watch::Sender<u64>>,
    ) -> Result<Actor, StoreError> {
        let count = usize::try_from(store.count_checks().await?).unwrap_or(0);
        let mut checks = FxHashMap::with_capacity_and_hasher(count, Default::default());
        let mut by_uuid = FxHashMap::with_capacity_and_hasher(count, Default::default());
        let mut interner = RulesInterner::default();
        let mut depends = FxHashMap::default();
        store
            .for_each_check(|row| {
                let deps = crate::live::depends_on(&row);
                if !deps.is_empty() {
                    depends.insert(row.id, deps);
                }
                if let Some(live) = live_check(&row, &mut interner) {
                    by_uuid.insert(live.uuid, row.id);
                    checks.insert(row.id, live);
                }
            })
            .await?;
        let mut dirty = FxHashMap::default();
        let mut replayed = 0u64;
        let replay_from = store.replay_from().await?;
        store
            .for_each_ping_after(replay_from, |ping| {
                let Some(live) = checks.get_mut(&ping.check_id) else {
                    return;
                };
                if ping.seq <= live.checkpoint_seq {
                    return;
                }
                if let Some(kind) = PingKind::from_code(&ping.kind) {
                    // Events of these pings were committed with them: replay only the state.
                    live.state
                        .apply_ping(&live.rules, &input_from_row(&ping, kind));
                    live.last_seq = Some(ping.seq);
                    dirty.entry(ping.check_id).or_insert(ping.seq);
                    replayed += 1;
                }
            })
            .await?;
        let seq = store.max_ping_seq().await?;
        let now = clock.now();
        tracing::info!(checks = checks.len(), replayed, "engine state loaded");
        let mut actor = Actor {
            store,
            clock,
            config,
            checks,
            by_uuid,
            heap: BinaryHeap::new(),
            interner,
            seq,
            dirty,
            sweep_pos: 0,
            sweep_started: now,
            outbox_wake,
            lease,
            events_wake,
            changes,
            settling: FxHashMap::default(),
            replier: spawn_replier()
                .map_err(|e| StoreError::task(format!("cannot start the reply thread: {e}")))?,
            owner: false,
            depends,
        };
        let ids: Vec<i64> = actor.checks.keys().copied().collect();
        for id in ids {
            actor.reschedule(id);
        }
        Ok(actor)
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut checkpoint_due = self.clock.now() + self.config.checkpoint_interval;
        // While another process holds the deadlines, they are looked at again a second later
        // (not at once, which would spin on a deadline already past).
        let mut deadlines_from = self.clock.now();
        // Whether this process judged deadlines last time it looked: one that takes them
        // over from another instance first reloads check state from the database.
        self.owner = self.lease.holds(Work::Deadlines);
        if self.owner {
            self.release_after_restart().await;
        }
        let shared = self.lease.shared_as().is_some();
        let mut inbox_due = self.clock.now();
        loop {
            let next_deadline = self.heap.peek().map(|Reverse((t, _))| t.to_datetime());
            let mut wake_at = match next_deadline {
                Some(t) if t < checkpoint_due => t.max(deadlines_from),
                _ => checkpoint_due,
            };
            if shared {
                wake_at = wake_at.min(inbox_due);
            }
            tokio::select! {
                biased;
                command = rx.recv() => {
                    let Some(first) = command else { break };
                    let mut commands = vec![first];
                    while commands.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(command) => commands.push(command),
                            Err(_) => break,
                        }
                    }
                    self.handle(commands).await;
                }
                _ = self.clock.sleep_until(wake_at) => {
                    let holds = self.owns_checks().await;
                    if holds {
                        if shared {
                            // Pings taken elsewhere before a deadline count before it is judged.
                            while self.apply_inbox().await {}
                        }
                        self.tick().await;
                    } else {
                        deadlines_from = self.clock.now() + Duration::from_secs(1);
                    }
                    inbox_due = self.clock.now() + INBOX_POLL;
                    if holds && self.clock.now() >= checkpoint_due {
                        let backlog = self.checkpoint().await;
                        let pause = if backlog { CHECKPOINT_STEP } else { self.config.checkpoint_interval };
                        checkpoint_due = self.clock.now() + pause;
                    }
                }
            }
        }
        self.flush().await;
    }

    async fn handle(&mut self, commands: Vec<Command>) {
        let mut pings = Vec::new();
        for command in commands {
            match command {
                Command::Ping(request, reply) => pings.push((request, reply)),
                other => {
                    // Keep the order: pings received before a change are committed first.
                    self.take_pings(std::mem::take(&mut pings)).await;
                    let owns = self.owns_checks().await;
                    match self.lease.shared_as() {
                        Some(instance) if !owns => {
                            let instance = instance.to_string();
                            self.handle_elsewhere(other, &instance).await;
                        }
                        _ => self.handle_other(other).await,
                    }
                }
            }
        }
        self.take_pings(pings).await;
    }

    /// Whether this instance owns the checks: applies pings, judges deadlines (the holder of
    /// the deadlines lease; the only instance always does). Asked before each of those, so
    /// an instance that has just taken them over first loads the checks' state from the
    /// database, and one that has lost them drops what it kept.
    async fn owns_checks(&mut self) -> bool {
        let holds = self.lease.holds(Work::Deadlines);
        if holds && !self.owner {
            self.take_over().await;
        }
        if !holds && self.owner {
            // The next owner loads the states from the database and replays the pings after
            // the mark: the ones kept here would overwrite newer ones.
            self.dirty.clear();
        }
        self.owner = holds;
        holds
    }

    /// What this instance's writes of check state depend on: still owning the checks when
    /// they commit (see [`keepwatch_store::Batch::fence`]).
    fn fence(&self) -> Option<Fence> {
        self.lease.shared_as().map(|instance| Fence {
            work: Work::Deadlines.name(),
            holder: instance.to_string(),
        })
    }

    /// Pings taken here: applied if this instance owns the checks, else handed to the owner.
    async fn take_pings(&mut self, pings: Vec<(Box<PingRequest>, Reply<PingReply>)>) {
        if pings.is_empty() {
            return;
        }
        let owns = self.owns_checks().await;
        match self.lease.shared_as() {
            Some(instance) if !owns => {
                let instance = instance.to_string();
                self.forward_pings(pings, &instance).await;
            }
            _ => self.commit_pings(pings, &[]).await,
        }
    }

    /// Hands pings to the instance that owns the checks: each is durable in the inbox before
    /// it is answered. Pings for checks that do not exist are answered 404 here, as the owner
    /// would.
    async fn forward_pings(
        &mut self,
        pings: Vec<(Box<PingRequest>, Reply<PingReply>)>,
        instance: &str,
    ) {
        let mut uuids: Vec<String> = pings.iter().map(|(r, _)| r.check.to_string()).collect();
        uuids.sort_unstable();
        uuids.dedup();
        let existing: FxHashMap<Uuid, i64> = match self.store.check_ids_by_uuid(&uuids).await {
            Ok(found) => found
                .into_iter()
                .filter_map(|(uuid, id)| Some((Uuid::parse_str(&uuid).ok()?, id)))
                .collect(),
            Err(e) => {
                for (_, reply) in pings {
                    let _ = reply.send(Err(EngineError::Unavailable(e.to_string())));
                }
                return;
            }
        };
        let now = self.clock.now();
        let mut entries = Vec::with_capacity(pings.len());
        let mut replies = Vec::with_capacity(pings.len());
        for (request, reply) in pings {
            let Some(&id) = existing.get(&request.check) else {
                let _ = reply.send(Ok(PingReply::NotFound));
                continue;
            };
            let answer = match request.kind {
                PingKind::Start => match self.rules_of(id).await {
                    Some(rules) => PingReply::Started(rules),
                    None => PingReply::Ok,
                },
                _ => PingReply::Ok,
            };
            entries.push(crate::inbox::ping_entry(*request, now, instance));
            replies.push((reply, answer));
        }
        match self.store.append_inbox(&entries).await {
            Ok(()) => {
                metrics::counter!("keepwatch_pings_forwarded_total")
                    .increment(entries.len() as u64);
                for (reply, answer) in replies {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, pings = entries.len(), "pings not handed to the owner");
                for (reply, _) in replies {
                    let _ = reply.send(Err(EngineError::Unavailable(e.to_string())));
                }
            }
        }
    }

    /// The rules of a check, read from the database if this instance has not seen it.
    async fn rules_of(&mut self, id: i64) -> Option<Arc<keepwatch_core::check::CheckRules>> {
        if let Some(live) = self.checks.get(&id) {
            return Some(live.rules.clone());
        }
        let row = self.store.check_by_id(id).await.ok()??;
        self.interner.get(&row).ok()
    }

    /// A check change through this instance's API while another instance owns the checks:
    /// the configuration is written here, the state is the owner's, who is told through the
    /// inbox (the change is durable there before it is answered).
    async fn handle_elsewhere(&mut self, command: Command, instance: &str) {
        let now = self.clock.now();
        let tell = |kind, uuid| crate::inbox::change_entry(kind, uuid, now, instance);
        match command {
            Command::Create(row, reply) => {
                let result = self.create(*row).await;
                let result = match result {
                    Ok(row) => self
                        .tell_owner(tell(InboxKind::Reload, self.uuid_of(row.id)))
                        .await
                        .map(|_| row),
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Update(row, reply) => {
                let result = async {
                    self.interner.get(&row).map_err(EngineError::Invalid)?;
                    let uuid = Uuid::parse_str(&row.uuid)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    self.store.update_check_config(&row).await?;
                    self.tell_owner(tell(InboxKind::Reload, uuid)).await?;
                    Ok(*row)
                }
                .await;
                let _ = reply.send(result);
            }
            Command::Delete(id, reply) => {
                let result = async {
                    let row = self
                        .store
                        .check_by_id(id)
                        .await?
                        .ok_or(EngineError::NotFound)?;
                    self.store.delete_check(id).await?;
                    let uuid = Uuid::parse_str(&row.uuid)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    if let Some(live) = self.checks.remove(&id) {
                        self.by_uuid.remove(&live.uuid);
                    }
                    self.tell_owner(tell(InboxKind::Reload, uuid)).await
                }
                .await;
                let _ = reply.send(result);
            }
            Command::Pause(id, reply) => {
                let result = async {
                    let row = self
                        .store
                        .check_by_id(id)
                        .await?
                        .ok_or(EngineError::NotFound)?;
                    let uuid = Uuid::parse_str(&row.uuid)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    self.tell_owner(tell(InboxKind::Pause, uuid)).await
                }
                .await;
                let _ = reply.send(result);
            }
            Command::Resume(id, reply) => {
                // Whether it was paused, as of the owner's last checkpoint.
                let result = async {
                    let row = self
                        .store
                        .check_by_id(id)
                        .await?
                        .ok_or(EngineError::NotFound)?;
                    let uuid = Uuid::parse_str(&row.uuid)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    let paused = row.state.status == Status::Paused;
                    if paused {
                        self.tell_owner(tell(InboxKind::Resume, uuid)).await?;
                    }
                    Ok(paused)
                }
                .await;
                let _ = reply.send(result);
            }
            Command::States(ids, reply) => {
                let _ = reply.send(self.stored_states(&ids).await);
            }
            other => self.handle_other(other).await,
        }
    }

    fn uuid_of(&self, id: i64) -> Uuid {
        self.checks.get(&id).map(|l| l.uuid).unwrap_or_default()
    }

    async fn tell_owner(&self, entry: keepwatch_store::InboxRow) -> Result<(), EngineError> {
        self.store.append_inbox(&[entry]).await?;
        Ok(())
    }

    /// Check states as the owner last wrote them (at most one checkpoint behind): what an
    /// instance that does not own the checks shows.
    async fn stored_states(&self, ids: &[i64]) -> Vec<Option<CheckView>> {
        let rows = match self.store.checks_by_ids(ids).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read check states; showing this instance's");
                return ids.iter().map(|id| self.view_of(*id)).collect();
            }
        };
        let mut by_id: FxHashMap<i64, CheckRow> = rows.into_iter().map(|r| (r.id, r)).collect();
        ids.iter()
            .map(|id| {
                let row = by_id.remove(id)?;
                Some(CheckView {
                    state: state_from_row(&row.state),
                    last_seq: row.state.last_seq,
                    rules: self.checks.get(id).map(|l| l.rules.clone()),
                })
            })
            .collect()
    }

    fn view_of(&self, id: i64) -> Option<CheckView> {
        self.checks.get(&id).map(|live| CheckView {
            state: live.state.clone(),
            last_seq: live.last_seq,
            rules: Some(live.rules.clone()),
        })
    }

    /// Applies what other instances handed over, in order: their pings in batches (each
    /// entry deleted with its batch), check changes one by one. Returns whether more wait.
    async fn apply_inbox(&mut self) -> bool {
        let rows = match self.store.inbox(MAX_BATCH as i64).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the inbox; will retry");
                return false;
            }
        };
        let more = rows.len() == MAX_BATCH;
        let mut pings = Vec::new();
        let mut ids = Vec::new();
        let mut done = Vec::new();
        for row in rows {
            let kind = InboxKind::parse(&row.kind);
            if kind != Some(InboxKind::Ping) {
                // Keep the order: the pings before a change are applied first.
                self.commit_pings(std::mem::take(&mut pings), &std::mem::take(&mut ids))
                    .await;
            }
            let (id, received) = (row.id, row.received_at.to_datetime());
            match kind {
                Some(InboxKind::Ping) => match crate::inbox::ping_of(row) {
                    Ok(request) => {
                        self.adopt(request.check).await;
                        let (reply, _) = oneshot::channel();
                        pings.push((Box::new(request), reply));
                        ids.push((id, received));
                    }
                    Err(e) => {
                        tracing::error!(entry = id, error = %e, "inbox entry unreadable; dropped");
                        done.push(id);
                    }
                },
                Some(change) => {
                    self.apply_change(change, &row.check_uuid).await;
                    done.push(id);
                }
                None => {
                    tracing::error!(entry = id, kind = %row.kind, "inbox entry of an unknown kind; dropped");
                    done.push(id);
                }
            }
        }
        self.commit_pings(pings, &ids).await;
        if let Err(e) = self.store.delete_inbox(&done).await {
            tracing::warn!(error = %e, "cannot delete applied inbox entries; they will be applied again");
        }
        more
    }

    /// Makes sure a check created through another instance is held here.
    async fn adopt(&mut self, uuid: Uuid) {
        if self.by_uuid.contains_key(&uuid) {
            return;
        }
        if let Ok(Some(row)) = self.store.check_by_uuid(&uuid.to_string()).await
            && let Some(live) = live_check(&row, &mut self.interner)
        {
            self.by_uuid.insert(uuid, row.id);
            self.set_depends(&row);
            self.checks.insert(row.id, live);
            self.reschedule(row.id);
        }
    }

    /// A check change made through another instance's API.
    async fn apply_change(&mut self, kind: InboxKind, uuid: &str) {
        let Ok(uuid) = Uuid::parse_str(uuid) else {
            return;
        };
        match kind {
            InboxKind::Reload => {
                let row = match self.store.check_by_uuid(&uuid.to_string()).await {
                    Ok(row) => row,
                    Err(e) => {
                        tracing::warn!(check = %uuid, error = %e, "cannot reload a changed check");
                        return;
                    }
                };
                match (row, self.by_uuid.get(&uuid).copied()) {
                    (None, Some(id)) => {
                        self.checks.remove(&id);
                        self.depends.remove(&id);
                        self.by_uuid.remove(&uuid);
                        self.dirty.remove(&id);
                        self.settling.remove(&id);
                    }
                    (Some(row), Some(id)) => {
                        let Ok(rules) = self.interner.get(&row) else {
                            return;
                        };
                        let live = self.checks.get_mut(&id).expect("by_uuid and checks agree");
                        live.rules = rules;
                        live.body_filter = crate::live::body_filter(&row);
                        live.scheduled_at = None;
                        self.set_depends(&row);
                        self.reschedule(id);
                    }
                    (Some(_), None) => self.adopt(uuid).await,
                    (None, None) => {}
                }
            }
            InboxKind::Pause | InboxKind::Resume => {
                self.adopt(uuid).await;
                let Some(&id) = self.by_uuid.get(&uuid) else {
                    return;
                };
                let result = if kind == InboxKind::Pause {
                    self.change_state(id, |state| state.pause()).await
                } else {
                    self.change_state(id, |state| state.resume()).await
                };
                if let Err(e) = result {
                    tracing::warn!(check = %uuid, error = %e, "a pause or resume from another instance failed");
                }
            }
            InboxKind::Ping => unreachable!("pings are batched by apply_inbox()"),
        }
    }

    async fn commit_pings(
        &mut self,
        pings: Vec<(Box<PingRequest>, Reply<PingReply>)>,
        from_inbox: &[(i64, DateTime<Utc>)],
    ) {
        if pings.is_empty() {
            return;
        }
        if self.lease.shared_as().is_some() {
            // Checks created through another instance since this one loaded them.
            let unknown: Vec<Uuid> = pings
                .iter()
                .map(|(request, _)| request.check)
                .filter(|uuid| !self.by_uuid.contains_key(uuid))
                .collect();
            for uuid in unknown {
                self.adopt(uuid).await;
            }
        }
        let started = Instant::now();
        let now = self.clock.now();
        // Fx hashing here too: SipHash on these per-ping lookups showed in instruction counts.
        let mut pending: FxHashMap<i64, (CheckState, Option<i64>)> = FxHashMap::default();
        let mut first_seq: FxHashMap<i64, i64> = FxHashMap::default();
        let mut flipped = Vec::new();
        let mut batch = Batch::default();
        let mut replies = Vec::with_capacity(pings.len());
        let mut kinds: FxHashMap<&'static str, u64> = FxHashMap::default();
        let mut late = Vec::new();
        let mut seq = self.seq;
        let mut dropped = Vec::new();
        for (i, (mut request, reply)) in pings.into_iter().enumerate() {
            // A ping from the inbox arrived when the other instance took it.
            let (entry, arrived) = match from_inbox.get(i) {
                Some((entry, arrived)) => (Some(*entry), *arrived),
                None => (None, now),
            };
            let Some(&id) = self.by_uuid.get(&request.check) else {
                let _ = reply.send(Ok(PingReply::NotFound));
                // Deleted since another instance took the ping.
                dropped.extend(entry);
                continue;
            };
            if let Some(entry) = entry {
                batch.inbox_done.push((id, entry));
            }
            let live = &self.checks[&id];
            let (state, last_seq) = pending
                .entry(id)
                .or_insert_with(|| (live.state.clone(), live.last_seq));
            // As Healthchecks decides a ping's kind: a non-POST ping to a POST-only check is
            // ignored; else the body's keywords decide, when the check filters bodies; a
            // paused check that resumes only by hand ignores every ping (recorded `ign`).
            if live.rules.post_only && request.method != "POST" {
                request.kind = PingKind::Ignored;
            } else if let Some(filter) = &live.body_filter {
                let body = request.body.as_deref().unwrap_or_default();
                request.kind = filter.classify(&String::from_utf8_lossy(body));
            }
            if state.status == Status::Paused && live.rules.manual_resume {
                request.kind = PingKind::Ignored;
            }
            // Never in the future: the server's clock orders deadlines.
            let at = request.at.map_or(arrived, |at| at.min(arrived));
            if at < arrived - LATE {
                late.push(id);
            }
            let input = PingInput {
                kind: request.kind,
                at,
                identity: request.identity.clone(),
                volume: request.volume,
                strays: std::mem::take(&mut request.strays),
                scan_skipped: request.scan_skipped.take(),
                snapshot: request.snapshot.take(),
            };
            let outcome = state.apply_ping(&live.rules, &input);
            // A starting runner learns when its run will count as hung and what to watch.
            let answer = match request.kind {
                PingKind::Start => PingReply::Started(live.rules.clone()),
                _ => PingReply::Ok,
            };
            seq += 1;
            first_seq.entry(id).or_insert(seq);
            let prev_seq = last_seq.replace(seq);
            *kinds.entry(request.kind.api_type()).or_default() += 1;
            batch.pings.push(ping_row(
                seq,
                id,
                prev_seq,
                state.n_pings,
                at.into(),
                *request,
                &outcome,
            ));
            if let Some((from, to)) = outcome.flip {
                batch.flips.push(flip_row(id, at.into(), from, to));
                flipped.push(id);
            }
            batch
                .events
                .extend(outcome.events.iter().map(|e| event_row(id, live.uuid, e)));
            replies.push((reply, answer));
        }
        // Counted per batch: a labelled counter lookup per ping showed in profiles.
        for (kind, count) in kinds {
            metrics::counter!("keepwatch_pings_total", "kind" => kind).increment(count);
        }
        flipped.sort_unstable();
        flipped.dedup();
        for id in &flipped {
            let (state, last_seq) = &pending[id];
            batch.states.push(StateUpdate {
                check_id: *id,
                state: state_to_row(state, *last_seq, seq),
            });
        }
        if !dropped.is_empty() {
            tracing::warn!(
                entries = dropped.len(),
                "pings from other instances for checks deleted since; dropped"
            );
            let _ = self.store.delete_inbox(&dropped).await;
        }
        if !self.depends.is_empty() && !batch.events.is_empty() {
            let states: FxHashMap<i64, &CheckState> = pending
                .iter()
                .map(|(id, (state, _))| (*id, state))
                .collect();
            let held = self.to_hold(&batch.events, &states).await;
            hold(&mut batch.events, held);
        }
        let recovered = recovered(&batch.flips);
        batch.fence = self.fence();
        let result = self.store.commit_batch_isolated(&batch, now.into()).await;
        metrics::histogram!("keepwatch_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("keepwatch_batch_pings").record(batch.pings.len() as f64);
        match result {
            Ok(Committed {
                outbox_rows,
                failed,
            }) => {
                self.seq = seq;
                let mut replies = replies;
                if !failed.is_empty() {
                    // Only the pings of the checks whose rows failed get the error; their
                    // state stays as it was (their seqs are left unused).
                    let error = |id: i64| failed.iter().find(|(f, _)| *f == id).map(|(_, e)| e);
                    let mut kept = Vec::with_capacity(replies.len());
                    for ((reply, answer), ping) in replies.into_iter().zip(&batch.pings) {
                        match error(ping.check_id) {
                            Some(e) => {
                                let _ = reply.send(Err(EngineError::Unavailable(e.clone())));
                            }
                            None => kept.push((reply, answer)),
                        }
                    }
                    replies = kept;
                    pending.retain(|id, _| error(*id).is_none());
                    late.retain(|id| error(*id).is_none());
                }
                for id in late {
                    self.settling.insert(id, Timestamp::from(now) + SETTLE);
                }
                for (id, (state, last_seq)) in pending {
                    let live = self.checks.get_mut(&id).expect("pending checks exist");
                    live.state = state;
                    live.last_seq = last_seq;
                    if flipped.binary_search(&id).is_ok() {
                        live.checkpoint_seq = seq;
                        self.dirty.remove(&id);
                    } else {
                        self.dirty.entry(id).or_insert(first_seq[&id]);
                    }
                    self.reschedule(id);
                }
                let wake = self.wakes(&batch, outbox_rows);
                let follow_up: Deferred = Box::new(move || {
                    wake();
                    for (reply, answer) in replies {
                        let _ = reply.send(Ok(answer));
                    }
                });
                // The thread is gone only if it panicked: then do it here.
                if let Err(std::sync::mpsc::SendError(follow_up)) = self.replier.send(follow_up) {
                    follow_up();
                }
                self.release_held(&recovered).await;
            }
            Err(e) => {
                tracing::error!(error = %e, pings = batch.pings.len(), "ping batch not committed");
                for (reply, _) in replies {
                    let _ = reply.send(Err(EngineError::Unavailable(e.to_string())));
                }
            }
        }
    }

    async fn handle_other(&mut self, command: Command) {
        match command {
            Command::Ping(..) => unreachable!("pings are batched by handle()"),
            Command::Create(row, reply) => {
                let _ = reply.send(self.create(*row).await);
            }
            Command::Update(row, reply) => {
                let _ = reply.send(self.update(*row).await);
            }
            Command::Pause(id, reply) => {
                let result = self.change_state(id, |state| state.pause()).await;
                let _ = reply.send(result.map(|_| ()));
            }
            Command::Resume(id, reply) => {
                let result = self.change_state(id, |state| state.resume()).await;
                let _ = reply.send(result.map(|outcome| outcome.flip.is_some()));
            }
            Command::Delete(id, reply) => {
                let result = self.store.delete_check(id).await.map_err(EngineError::from);
                if result.is_ok()
                    && let Some(live) = self.checks.remove(&id)
                {
                    self.by_uuid.remove(&live.uuid);
                    self.depends.remove(&id);
                    self.dirty.remove(&id);
                    self.settling.remove(&id);
                    // A deleted check holds nothing back any more.
                    if live.state.status == Status::Down {
                        let gone = FxHashSet::from_iter([live.uuid]);
                        self.release_held_by(&gone).await;
                    }
                }
                let _ = reply.send(result);
            }
            Command::States(ids, reply) => {
                let _ = reply.send(ids.iter().map(|id| self.view_of(*id)).collect());
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Command::Flush(reply) => {
                self.flush().await;
                let _ = reply.send(());
            }
        }
    }

    async fn create(&mut self, mut row: CheckRow) -> Result<CheckRow, EngineError> {
        let rules = self.interner.get(&row).map_err(EngineError::Invalid)?;
        let uuid = Uuid::parse_str(&row.uuid).map_err(|e| EngineError::Invalid(e.to_string()))?;
        row.state = state_to_row(&CheckState::default(), None, self.seq);
        row.id = self.store.insert_check(&row).await?;
        self.by_uuid.insert(uuid, row.id);
        self.checks.insert(
            row.id,
            LiveCheck {
                uuid,
                rules,
                state: CheckState::default(),
                last_seq: None,
                checkpoint_seq: self.seq,
                scheduled_at: None,
                body_filter: crate::live::body_filter(&row),
            },
        );
        self.set_depends(&row);
        // A new check has no deadline, unless it asked to be alerted if it never pings.
        self.reschedule(row.id);
        Ok(row)
    }

    async fn update(&mut self, mut row: CheckRow) -> Result<CheckRow, EngineError> {
        let rules = self.interner.get(&row).map_err(EngineError::Invalid)?;
        let Some(live) = self.checks.get(&row.id) else {
            return Err(EngineError::NotFound);
        };
        row.state = state_to_row(&live.state, live.last_seq, self.seq);
        self.store.update_check(&row).await?;
        let live = self.checks.get_mut(&row.id).expect("checked above");
        live.rules = rules;
        live.body_filter = crate::live::body_filter(&row);
        live.checkpoint_seq = self.seq;
        self.dirty.remove(&row.id);
        // A new schedule may move the deadline earlier: queue it afresh.
        live.scheduled_at = None;
        self.set_depends(&row);
        self.reschedule(row.id);
        Ok(row)
    }

    /// Applies a state change from the API (pause, resume) and commits it with its flip.
    async fn change_state(
        &mut self,
        id: i64,
        change: impl FnOnce(&mut CheckState) -> Outcome,
    ) -> Result<Outcome, EngineError> {
        let live = self.checks.get(&id).ok_or(EngineError::NotFound)?;
        let mut state = live.state.clone();
        let outcome = change(&mut state);
        let now = Timestamp::from(self.clock.now());
        let mut batch = Batch::default();
        if let Some((from, to)) = outcome.flip {
            batch.flips.push(flip_row(id, now, from, to));
        }
        batch.states.push(StateUpdate {
            check_id: id,
            state: state_to_row(&state, live.last_seq, self.seq),
        });
        batch.fence = self.fence();
        let outbox_rows = self.store.commit_batch(&batch, now).await?;
        self.committed(&batch, outbox_rows);
        let live = self.checks.get_mut(&id).expect("checked above");
        live.state = state;
        live.checkpoint_seq = self.seq;
        self.dirty.remove(&id);
        live.scheduled_at = None;
        self.reschedule(id);
        // A paused check is not down: what it held back goes out.
        self.release_held(&recovered(&batch.flips)).await;
        Ok(outcome)
    }

    /// Keeps what a check row says it depends on.
    fn set_depends(&mut self, row: &CheckRow) {
        let deps = crate::live::depends_on(row);
        if deps.is_empty() {
            self.depends.remove(&row.id);
        } else {
            self.depends.insert(row.id, deps);
        }
    }

    /// A check's dependency that is down, if any, as `states` (this batch's new states)
    /// or memory has it: its id and since when.
    fn dependency_down(
        &self,
        id: i64,
        states: &FxHashMap<i64, &CheckState>,
    ) -> Option<(i64, Option<DateTime<Utc>>)> {
        self.depends.get(&id)?.iter().find_map(|uuid| {
            let dep_id = *self.by_uuid.get(uuid)?;
            let dep = self.checks.get(&dep_id)?;
            let state = states.get(&dep_id).copied().unwrap_or(&dep.state);
            (state.status == Status::Down).then(|| (dep_id, state.down_since(&dep.rules)))
        })
    }

    /// Which of a batch's events to hold back, and why: down, failed and hung events of a
    /// check whose dependency is down; and the `up` that ends an outage whose alert was
    /// held back (its channels never heard of the outage).
    async fn to_hold(
        &self,
        events: &[EventRow],
        states: &FxHashMap<i64, &CheckState>,
    ) -> Vec<(usize, Suppression)> {
        let mut held = Vec::new();
        for (i, event) in events.iter().enumerate() {
            if !self.depends.contains_key(&event.check_id) {
                continue;
            }
            if HELD_KINDS.contains(&event.kind.as_str()) {
                if let Some((dep_id, since)) = self.dependency_down(event.check_id, states) {
                    let uuid = self.uuid_of(dep_id);
                    let name = self.name_of(dep_id).await;
                    held.push((i, Suppression::new(uuid, &name, since)));
                }
            } else if event.kind == "up"
                && let Some((_, _, payload)) = self.last_held(event.check_id).await
                && let Some(why) = payload.get("suppressed").cloned()
                && let Ok(mut why) = serde_json::from_value::<Suppression>(why)
            {
                why.reason = format!("its alert was held back ({})", why.reason);
                held.push((i, why));
            }
        }
        held
    }

    /// A check's name for people (its slug, else its UUID, when it has none).
    async fn name_of(&self, id: i64) -> String {
        match self.store.check_by_id(id).await {
            Ok(Some(row)) if !row.name.is_empty() => row.name,
            Ok(Some(row)) if !row.slug.is_empty() => row.slug,
            _ => self.uuid_of(id).to_string(),
        }
    }

    /// The check's latest down, failed, hung or up event, if it was held back and not
    /// released since: `(kind, at, payload)`.
    async fn last_held(&self, id: i64) -> Option<(String, Timestamp, serde_json::Value)> {
        let kinds = [HELD_KINDS.as_slice(), &["up"]].concat();
        let (_, kind, at, payload) = self
            .store
            .check_events(id, &kinds, 1)
            .await
            .ok()?
            .into_iter()
            .next()?;
        let payload: serde_json::Value = serde_json::from_str(&payload).ok()?;
        let held = kind != "up" && payload.get("suppressed").is_some_and(|s| !s.is_null());
        held.then_some((kind, at, payload))
    }

    /// After checks recovered: the alerts held back because of them, of checks still down
    /// with no other dependency down, are sent now (as new events saying they were held).
    async fn release_held(&mut self, recovered: &[i64]) {
        if recovered.is_empty() || self.depends.is_empty() {
            return;
        }
        let recovered: FxHashSet<Uuid> = recovered.iter().map(|id| self.uuid_of(*id)).collect();
        self.release_held_by(&recovered).await;
    }

    /// A release is committed after the batch that recorded the recovery: if the process
    /// died between the two, the alert would stay held. So the owner, once it has loaded the
    /// checks (start-up, takeover), releases what is still held though no dependency is down.
    async fn release_after_restart(&mut self) {
        let depended_on: FxHashSet<Uuid> = self.depends.values().flatten().copied().collect();
        self.release_held_by(&depended_on).await;
    }

    /// Releases the alerts held back because of the checks `gone` (recovered, paused or
    /// deleted): see [`Actor::release_held`].
    async fn release_held_by(&mut self, recovered: &FxHashSet<Uuid>) {
        if recovered.is_empty() || self.depends.is_empty() {
            return;
        }
        let now = self.clock.now();
        let none = FxHashMap::default();
        let mut batch = Batch::default();
        let mut waiting: Vec<i64> = self.depends.keys().copied().collect();
        waiting.sort_unstable();
        for id in waiting {
            let Some(live) = self.checks.get(&id) else {
                continue;
            };
            let on_recovered = self
                .depends
                .get(&id)
                .is_some_and(|deps| deps.iter().any(|uuid| recovered.contains(uuid)));
            if live.state.status != Status::Down
                || !on_recovered
                || self.dependency_down(id, &none).is_some()
            {
                continue;
            }
            let Some((kind, at, mut payload)) = self.last_held(id).await else {
                continue;
            };
            let Some(why) = payload
                .get("suppressed")
                .cloned()
                .and_then(|why| serde_json::from_value::<Suppression>(why).ok())
            else {
                continue;
            };
            if let Some(object) = payload.as_object_mut() {
                object.remove("suppressed");
                object.insert(
                    "released".into(),
                    serde_json::to_value(why.released(at.to_datetime(), now)).unwrap_or_default(),
                );
            }
            tracing::info!(check = %live.uuid, event = %kind, "alert held back by a dependency released");
            batch.events.push(EventRow {
                check_id: id,
                kind,
                at: now.into(),
                payload,
            });
        }
        if batch.events.is_empty() {
            return;
        }
        batch.fence = self.fence();
        match self.store.commit_batch(&batch, now.into()).await {
            Ok(outbox_rows) => self.committed(&batch, outbox_rows),
            Err(e) => tracing::error!(error = %e, "released alerts not committed"),
        }
    }

    /// Queues the check's next deadline unless an earlier entry is already queued (that one
    /// will fire, find nothing to do, and queue the real deadline then).
    fn reschedule(&mut self, id: i64) {
        let Some(live) = self.checks.get_mut(&id) else {
            return;
        };
        let Some(mut deadline) = deadline_of(live) else {
            return;
        };
        if let Some(until) = self.settling.get(&id) {
            deadline = deadline.max(*until);
        }
        if live.scheduled_at.is_none_or(|queued| deadline < queued) {
            live.scheduled_at = Some(deadline);
            self.heap.push(Reverse((deadline, id)));
        }
    }

    /// Judges every check whose deadline has passed: hung runs and missed pings.
    pub async fn tick(&mut self) {
        let now = self.clock.now();
        let now_ts = Timestamp::from(now);
        let mut due = Vec::new();
        while let Some(Reverse((t, id))) = self.heap.peek().copied() {
            if t > now_ts {
                break;
            }
            self.heap.pop();
            if let Some(live) = self.checks.get_mut(&id)
                && live.scheduled_at == Some(t)
            {
                live.scheduled_at = None;
                if due.is_empty() {
                    let lag = (now_ts - t).as_seconds_f64();
                    metrics::gauge!("keepwatch_engine_lag_seconds").set(lag);
                }
                due.push(id);
            }
        }
        // Checks still settling after late pings wait until they have settled.
        self.settling.retain(|_, until| *until > now_ts);
        due.retain(|id| !self.settling.contains_key(id));
        for id in self.settling.keys().copied().collect::<Vec<_>>() {
            if self
                .checks
                .get(&id)
                .is_some_and(|l| l.scheduled_at.is_none())
            {
                self.reschedule(id);
            }
        }
        for chunk in due.chunks(TICK_CHUNK) {
            self.judge(chunk, now).await;
        }
    }

    async fn judge(&mut self, ids: &[i64], now: DateTime<Utc>) {
        let now_ts = Timestamp::from(now);
        let mut batch = Batch::default();
        let mut changed = Vec::new();
        for id in ids {
            let live = &self.checks[id];
            let mut state = live.state.clone();
            let outcome = state.evaluate(&live.rules, now);
            if state == live.state {
                continue;
            }
            // Healthchecks dates a flip at the deadline that passed, not when it was noticed.
            let at = outcome
                .events
                .first()
                .map(|e| Timestamp::from(e.at))
                .unwrap_or(now_ts);
            if let Some((from, to)) = outcome.flip {
                batch.flips.push(flip_row(*id, at, from, to));
            }
            batch
                .events
                .extend(outcome.events.iter().map(|e| event_row(*id, live.uuid, e)));
            batch.states.push(StateUpdate {
                check_id: *id,
                state: state_to_row(&state, live.last_seq, self.seq),
            });
            changed.push((*id, state));
        }
        if !self.depends.is_empty() && !batch.events.is_empty() {
            let states: FxHashMap<i64, &CheckState> =
                changed.iter().map(|(id, state)| (*id, state)).collect();
            let held = self.to_hold(&batch.events, &states).await;
            hold(&mut batch.events, held);
        }
        let recovered = recovered(&batch.flips);
        batch.fence = self.fence();
        match self.store.commit_batch(&batch, now_ts).await {
            Ok(outbox_rows) => {
                for (id, state) in changed {
                    let live = self.checks.get_mut(&id).expect("judged checks exist");
                    live.state = state;
                    live.checkpoint_seq = self.seq;
                    self.dirty.remove(&id);
                }
                self.committed(&batch, outbox_rows);
                for id in ids {
                    self.reschedule(*id);
                }
                self.release_held(&recovered).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "deadline batch not committed; retrying in 1s");
                let retry = now_ts + chrono::TimeDelta::seconds(1);
                for id in ids {
                    if let Some(live) = self.checks.get_mut(id) {
                        live.scheduled_at = Some(retry);
                        self.heap.push(Reverse((retry, *id)));
                    }
                }
            }
        }
    }

    /// One checkpoint step: writes a slice of the check states that lag memory, moves the
    /// replay mark, and sweeps a slice of the ping log. Returns whether work is left.
    async fn checkpoint(&mut self) -> bool {
        let ids: Vec<i64> = self.dirty.keys().take(CHECKPOINT_STATES).copied().collect();
        let states: Vec<StateUpdate> = ids
            .iter()
            .filter_map(|id| {
                let live = self.checks.get(id)?;
                Some(StateUpdate {
                    check_id: *id,
                    state: state_to_row(&live.state, live.last_seq, self.seq),
                })
            })
            .collect();
        // Every ping before the first one a still-lagging state lacks is in the stored states.
        let lagging = self
            .dirty
            .iter()
            .filter(|(id, _)| !ids.contains(id))
            .map(|(_, first)| *first)
            .min();
        let replay_from = lagging.map_or(self.seq, |first| first - 1);
        if !states.is_empty() {
            let fence = self.fence();
            let now = Timestamp::from(self.clock.now());
            if let Err(e) = self
                .store
                .checkpoint(&states, replay_from, fence.as_ref(), now)
                .await
            {
                tracing::error!(error = %e, "checkpoint failed; will retry");
                return false;
            }
            for id in &ids {
                self.dirty.remove(id);
                if let Some(live) = self.checks.get_mut(id) {
                    live.checkpoint_seq = self.seq;
                }
            }
        }
        self.sweep().await;
        !self.dirty.is_empty() || self.sweep_pos <= self.seq
    }

    /// Deletes old pings (beyond the per-check limit, or of deleted checks) in one slice of
    /// the log; a full pass starts again at most every minute.
    async fn sweep(&mut self) {
        if self.sweep_pos > self.seq {
            if self.clock.now() - self.sweep_started < SWEEP_EVERY {
                return;
            }
            self.sweep_pos = 0;
            self.sweep_started = self.clock.now();
        }
        match self
            .store
            .prune_pings(self.sweep_pos, SWEEP_ROWS, self.config.ping_log_limit)
            .await
        {
            Ok((deleted, next)) => {
                metrics::counter!("keepwatch_pings_pruned_total").increment(deleted);
                self.sweep_pos = next.unwrap_or(self.seq + 1);
            }
            Err(e) => tracing::error!(error = %e, "ping sweep failed; will retry"),
        }
    }

    async fn flush(&mut self) {
        while !self.dirty.is_empty() {
            let before = self.dirty.len();
            self.checkpoint().await;
            if self.dirty.len() == before {
                break; // the database refuses; nothing more to do here
            }
        }
    }

    fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for live in self.checks.values() {
            *stats
                .by_status
                .entry(live.state.status.as_str())
                .or_default() += 1;
            if live.state.started() {
                stats.running += 1;
            }
        }
        stats.checks = self.checks.len();
        stats.last_seq = self.seq;
        stats
    }
}

/// A stored check as the engine holds it, or `None` (logged) when its row cannot be judged.
fn live_check(row: &CheckRow, interner: &mut RulesInterner) -> Option<LiveCheck> {
    let Ok(uuid) = Uuid::parse_str(&row.uuid) else {
        tracing::error!(check = row.id, "check has an invalid uuid; skipped");
        return None;
    };
    let rules = match interner.get(row) {
        Ok(rules) => rules,
        Err(e) => {
            tracing::error!(check = %uuid, error = %e, "check has an invalid schedule; skipped");
            return None;
        }
    };
    Some(LiveCheck {
        uuid,
        rules,
        state: state_from_row(&row.state),
        last_seq: row.state.last_seq,
        checkpoint_seq: row.state.checkpoint_seq,
        scheduled_at: None,
        body_filter: crate::live::body_filter(row),
    })
}

fn input_from_row(ping: &PingRow, kind: PingKind) -> PingInput {
    PingInput {
        kind,
        at: ping.at.to_datetime(),
        identity: RunIdentity {
            rid: ping.rid.as_deref().and_then(|r| Uuid::parse_str(r).ok()),
            host: ping.host.clone(),
            pid: ping.pid.and_then(|p| u32::try_from(p).ok()),
        },
        volume: ping.volume,
        // Strays only raise events, which were committed with the ping: none on replay. The
        // snapshot a log ping carried is not stored with it (the ping's body holds its text),
        // so a restart before the next checkpoint forgets it until the runner's next one.
        strays: Vec::new(),
        scan_skipped: None,
        snapshot: None,
    }
}

fn ping_row(
    seq: i64,
    check_id: i64,
    prev_seq: Option<i64>,
    n: i64,
    at: Timestamp,
    request: PingRequest,
    outcome: &Outcome,
) -> PingRow {
    PingRow {
        seq,
        check_id,
        prev_seq,
        n,
        at,
        kind: request.kind.code(),
        scheme: request.scheme,
        method: request.method,
        remote_addr: request.remote_addr,
        ua: request.user_agent,
        rid: request.identity.rid.map(|r| r.to_string()),
        host: request.identity.host,
        pid: request.identity.pid.map(i64::from),
        volume: request.volume,
        body: request.body,
        body_truncated: request.body_truncated,
        duration_ms: outcome.duration.map(|d| d.as_millis() as i64),
    }
}

fn flip_row(
    check_id: i64,
    at: Timestamp,
    from: keepwatch_core::check::Status,
    to: keepwatch_core::check::Status,
) -> FlipRow {
    FlipRow {
        check_id,
        at,
        old_status: from,
        new_status: to,
    }
}

/// The checks a batch's flips bring back from down.
fn recovered(flips: &[FlipRow]) -> Vec<i64> {
    flips
        .iter()
        .filter(|f| f.old_status == Status::Down && f.new_status != Status::Down)
        .map(|f| f.check_id)
        .collect()
}

/// Marks events as held back, with why.
fn hold(events: &mut [EventRow], held: Vec<(usize, Suppression)>) {
    for (i, why) in held {
        if let Some(object) = events[i].payload.as_object_mut() {
            tracing::info!(check = ?object.get("check_uuid"), event = %events[i].kind, reason = %why.reason, "event held back");
            object.insert(
                "suppressed".into(),
                serde_json::to_value(why).unwrap_or_default(),
            );
        }
    }
}

fn event_row(check_id: i64, check_uuid: Uuid, event: &Event) -> EventRow {
    let mut payload = serde_json::to_value(event).unwrap_or_default();
    if let Some(object) = payload.as_object_mut() {
        object.insert("check_uuid".into(), check_uuid.to_string().into());
    }
    EventRow {
        check_id,
        kind: event.kind.as_str().to_string(),
        at: event.at.into(),
        payload,
    }
}
