//! The rounds of the background loops (the pager, the dispatcher), counted, so a caller can
//! wait until they have caught up with everything due now: [`crate::Engine::settled`]. Tests
//! use it to say "nothing more was sent" without sleeping.

use tokio::sync::{Notify, watch};

/// Where a loop is: rounds started and finished, and whether the last finished round found
/// nothing to do and nothing under way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub started: u64,
    pub finished: u64,
    pub idle: bool,
}

/// Kept by a loop: reports its rounds.
pub struct Rounds(watch::Sender<Round>);

impl Rounds {
    pub fn new() -> Rounds {
        Rounds(watch::Sender::new(Round::default()))
    }

    /// What others watch.
    pub fn watch(&self) -> watch::Receiver<Round> {
        self.0.subscribe()
    }

    pub fn start(&self) {
        self.0.send_modify(|round| round.started += 1);
    }

    pub fn finish(&self, idle: bool) {
        self.0.send_modify(|round| {
            round.finished = round.started;
            round.idle = idle;
        });
    }
}

impl Default for Rounds {
    fn default() -> Rounds {
        Rounds::new()
    }
}

/// Wakes a loop and waits for a round of it that started after this call to finish; returns
/// whether that round was idle. `None` if the loop has stopped.
pub async fn next_round(rounds: &watch::Receiver<Round>, wake: &Notify) -> Option<bool> {
    let mut rounds = rounds.clone();
    // A round under way now began before the call: the one after it is wanted.
    let after = rounds.borrow_and_update().started + 1;
    wake.notify_one();
    let round = rounds.wait_for(|r| r.finished >= after).await.ok()?;
    Some(round.idle)
}
