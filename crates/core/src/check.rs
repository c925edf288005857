//! The check state machine: a ping or the passing of time goes in, the new state and the
//! events to notify come out. No I/O and no clock: every function takes the time it runs at.
//!
//! The rules follow Healthchecks where Healthchecks has one, and add what it lacks:
//!
//! - A **new** check never goes down until its first ping; a **paused** one never does.
//! - After a ping (start, success or failure; not `log`), an **up** check is due again at the
//!   next expected time after that ping (period or schedule) and goes **down** (reason
//!   *missed*) when that time plus `grace` passes.
//! - `/fail` or a non-zero exit status puts the check **down** at once (reason *failed*).
//! - A started run that has not finished within `max_runtime` (or, if unset, within `grace` of
//!   its start, which is when Healthchecks would alert) is **hung**: an event is raised while it
//!   is still running, once per run, even if the check was already down.
//! - A run that starts while another identified run is open (a different run id, or a different
//!   host/pid) raises an **overlap** event naming both runs. Starts with no identity at all
//!   (plain `curl …/start`) replace the previous anonymous run, as Healthchecks does.
//! - The next success brings the check **up**; an event is raised only if it was down, so a
//!   first ping (new → up) or resuming a paused check notifies nobody, as in Healthchecks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schedule::Schedule;

/// At most this many runs are tracked as open per check; the oldest is forgotten first.
pub const MAX_OPEN_RUNS: usize = 16;

/// The durable status of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    New,
    Up,
    Down,
    Paused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Up => "up",
            Status::Down => "down",
            Status::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "new" => Status::New,
            "up" => Status::Up,
            "down" => Status::Down,
            "paused" => Status::Paused,
            _ => return None,
        })
    }
}

/// What a ping says, after the URL suffix is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    Success,
    Start,
    Fail,
    Log,
    /// `/ping/<uuid>/<0..255>`: 0 is a success, anything else a failure.
    Exit(u8),
    /// Recorded but without effect: a non-POST ping to a check that accepts only POST
    /// (Healthchecks' `methods: "POST"`).
    Ignored,
}

impl PingKind {
    /// The ping type as the Healthchecks API names it (`success`, `start`, `fail`, `log`).
    pub fn api_type(self) -> &'static str {
        match self {
            PingKind::Success | PingKind::Exit(0) => "success",
            PingKind::Start => "start",
            PingKind::Fail | PingKind::Exit(_) => "fail",
            PingKind::Log => "log",
            PingKind::Ignored => "ign",
        }
    }

    /// Stable code stored with the ping: `success`, `start`, `fail`, `log`, or `exit:<n>`.
    pub fn code(self) -> String {
        match self {
            PingKind::Exit(n) => format!("exit:{n}"),
            other => other.api_type().to_string(),
        }
    }

    pub fn from_code(code: &str) -> Option<PingKind> {
        Some(match code {
            "success" => PingKind::Success,
            "start" => PingKind::Start,
            "fail" => PingKind::Fail,
            "log" => PingKind::Log,
            "ign" => PingKind::Ignored,
            other => PingKind::Exit(other.strip_prefix("exit:")?.parse().ok()?),
        })
    }

    pub fn exit_status(self) -> Option<u8> {
        match self {
            PingKind::Exit(n) => Some(n),
            _ => None,
        }
    }
}

/// Who sent a start or finish: the run id and the process, when the sender says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub rid: Option<Uuid>,
    pub host: Option<String>,
    pub pid: Option<u32>,
}

impl RunIdentity {
    fn is_anonymous(&self) -> bool {
        self.rid.is_none() && (self.host.is_none() || self.pid.is_none())
    }

    /// True when both runs say who they are and they are not the same run.
    fn differs_from(&self, other: &RunIdentity) -> bool {
        if self.is_anonymous() || other.is_anonymous() {
            return false;
        }
        match (self.rid, other.rid) {
            (Some(a), Some(b)) => a != b,
            _ => self.host != other.host || self.pid != other.pid,
        }
    }
}

/// A run that has started and not yet finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRun {
    #[serde(flatten)]
    pub identity: RunIdentity,
    pub started_at: DateTime<Utc>,
    /// Set once a hung event was raised for this run, so it is raised once.
    #[serde(default)]
    pub hung: bool,
}

/// How a check is configured to be judged.
#[derive(Debug, Clone)]
pub struct CheckRules {
    pub schedule: Schedule,
    pub grace: Duration,
    pub max_runtime: Option<Duration>,
    /// A paused check stays paused when pinged (Healthchecks' `manual_resume`).
    pub manual_resume: bool,
    /// Only POST pings count; others are recorded as ignored (Healthchecks' `methods`).
    pub post_only: bool,
}

/// Why a check is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownReason {
    Missed,
    Failed,
    Hung,
}

/// The state of a check that pings and time change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckState {
    pub status: Status,
    pub down_reason: Option<DownReason>,
    /// The last start, success or failure ping (log pings do not count).
    pub last_ping: Option<DateTime<Utc>>,
    pub n_pings: i64,
    pub open_runs: Vec<OpenRun>,
    pub last_duration: Option<Duration>,
}

impl Default for CheckState {
    fn default() -> Self {
        CheckState {
            status: Status::New,
            down_reason: None,
            last_ping: None,
            n_pings: 0,
            open_runs: Vec::new(),
            last_duration: None,
        }
    }
}

/// A ping as the state machine sees it.
#[derive(Debug, Clone)]
pub struct PingInput {
    pub kind: PingKind,
    pub at: DateTime<Utc>,
    pub identity: RunIdentity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The deadline plus grace passed with no ping.
    Down,
    /// A `/fail` ping or a non-zero exit status.
    Failed,
    /// A run exceeded its max runtime while still running.
    Hung,
    /// A run started while another was still open.
    Overlap,
    /// The check came back after being down.
    Up,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Down => "down",
            EventKind::Failed => "failed",
            EventKind::Hung => "hung",
            EventKind::Overlap => "overlap",
            EventKind::Up => "up",
        }
    }
}

/// Something to notify about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    /// The run the event is about (the new run for an overlap, the stuck run when hung).
    pub run: Option<OpenRun>,
    /// For an overlap: the run that was already open.
    pub other_run: Option<OpenRun>,
    pub exit_status: Option<u8>,
}

impl Event {
    fn new(kind: EventKind, at: DateTime<Utc>) -> Event {
        Event {
            kind,
            at,
            run: None,
            other_run: None,
            exit_status: None,
        }
    }
}

/// What applying a ping or a tick changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<Event>,
    /// `(from, to)` when the status changed: Healthchecks calls this a flip.
    pub flip: Option<(Status, Status)>,
    /// For a finish ping matched to its start: how long the run took.
    pub duration: Option<Duration>,
}

impl CheckState {
    fn set_status(&mut self, to: Status, reason: Option<DownReason>, outcome: &mut Outcome) {
        if self.status != to {
            outcome.flip = Some((self.status, to));
            self.status = to;
        }
        self.down_reason = reason;
    }

    /// Applies one ping. The caller has already counted it as received.
    pub fn apply_ping(&mut self, rules: &CheckRules, ping: &PingInput) -> Outcome {
        let mut outcome = Outcome::default();
        self.n_pings += 1;
        if self.status == Status::Paused && rules.manual_resume {
            return outcome; // recorded, but a manually resumed check ignores pings
        }
        match ping.kind {
            PingKind::Log | PingKind::Ignored => {}
            PingKind::Start => {
                // As in Healthchecks, a start does not move `last_ping`: the schedule is
                // anchored on finishes.
                self.start_run(ping, &mut outcome);
            }
            PingKind::Success | PingKind::Fail | PingKind::Exit(_) => {
                self.last_ping = Some(ping.at);
                if let Some(run) = self.finish_run(&ping.identity) {
                    let took = (ping.at - run.started_at).to_std().unwrap_or_default();
                    outcome.duration = Some(took);
                    self.last_duration = Some(took);
                }
                let failed = matches!(ping.kind, PingKind::Fail | PingKind::Exit(1..));
                let was = self.status;
                if failed {
                    self.set_status(Status::Down, Some(DownReason::Failed), &mut outcome);
                    if was != Status::Down {
                        let mut event = Event::new(EventKind::Failed, ping.at);
                        event.exit_status = ping.kind.exit_status();
                        outcome.events.push(event);
                    }
                } else {
                    self.set_status(Status::Up, None, &mut outcome);
                    if was == Status::Down {
                        outcome.events.push(Event::new(EventKind::Up, ping.at));
                    }
                }
            }
        }
        outcome
    }

    fn start_run(&mut self, ping: &PingInput, outcome: &mut Outcome) {
        let new_run = OpenRun {
            identity: ping.identity.clone(),
            started_at: ping.at,
            hung: false,
        };
        if new_run.identity.is_anonymous() {
            self.open_runs.retain(|run| !run.identity.is_anonymous());
        } else if let Some(rid) = new_run.identity.rid {
            // The same run sending its start again is not a second run.
            self.open_runs.retain(|run| run.identity.rid != Some(rid));
        }
        if let Some(other) = self
            .open_runs
            .iter()
            .rev()
            .find(|run| run.identity.differs_from(&new_run.identity))
        {
            let mut event = Event::new(EventKind::Overlap, ping.at);
            event.run = Some(new_run.clone());
            event.other_run = Some(other.clone());
            outcome.events.push(event);
        }
        self.open_runs.push(new_run);
        if self.open_runs.len() > MAX_OPEN_RUNS {
            self.open_runs.remove(0);
        }
    }

    /// Removes and returns the run a finish ping belongs to: the one with its run id, or
    /// without one the latest anonymous run (Healthchecks matches by `rid` the same way).
    fn finish_run(&mut self, identity: &RunIdentity) -> Option<OpenRun> {
        let position = match identity.rid {
            Some(rid) => self
                .open_runs
                .iter()
                .rposition(|run| run.identity.rid == Some(rid)),
            None => self
                .open_runs
                .iter()
                .rposition(|run| run.identity.rid.is_none()),
        }?;
        Some(self.open_runs.remove(position))
    }

    /// When an up check goes down if nothing arrives: the next expected ping plus grace.
    pub fn going_down_after(&self, rules: &CheckRules) -> Option<DateTime<Utc>> {
        if self.status != Status::Up {
            return None;
        }
        Some(rules.schedule.next_after(self.last_ping?)? + rules.grace)
    }

    /// The next expected ping (the API's `next_ping`).
    pub fn next_expected(&self, rules: &CheckRules) -> Option<DateTime<Utc>> {
        if matches!(self.status, Status::New | Status::Paused) {
            return None;
        }
        rules.schedule.next_after(self.last_ping?)
    }

    fn hung_at(&self, rules: &CheckRules, run: &OpenRun) -> DateTime<Utc> {
        run.started_at + rules.max_runtime.unwrap_or(rules.grace)
    }

    fn has_running(&self) -> bool {
        self.open_runs.iter().any(|run| !run.hung)
    }

    /// The next instant at which [`CheckState::evaluate`] can change something, if any.
    pub fn next_deadline(&self, rules: &CheckRules) -> Option<DateTime<Utc>> {
        let hung = self
            .open_runs
            .iter()
            .filter(|run| !run.hung)
            .map(|run| self.hung_at(rules, run))
            .min();
        // While a run is going, the job did run: only its runtime is watched.
        let missed = if self.has_running() {
            None
        } else {
            self.going_down_after(rules)
        };
        hung.into_iter().chain(missed).min()
    }

    /// Applies the passing of time up to `now`: hung runs and missed deadlines.
    pub fn evaluate(&mut self, rules: &CheckRules, now: DateTime<Utc>) -> Outcome {
        let mut outcome = Outcome::default();
        let mut hung_runs = Vec::new();
        for index in 0..self.open_runs.len() {
            let run = &self.open_runs[index];
            if !run.hung && now >= self.hung_at(rules, run) {
                self.open_runs[index].hung = true;
                hung_runs.push(self.open_runs[index].clone());
            }
        }
        for run in hung_runs {
            let mut event = Event::new(EventKind::Hung, self.hung_at(rules, &run));
            event.run = Some(run);
            outcome.events.push(event);
            self.set_status(Status::Down, Some(DownReason::Hung), &mut outcome);
        }
        if !self.has_running()
            && let Some(deadline) = self.going_down_after(rules)
            && now >= deadline
        {
            self.set_status(Status::Down, Some(DownReason::Missed), &mut outcome);
            outcome.events.push(Event::new(EventKind::Down, deadline));
        }
        outcome
    }

    /// Pauses monitoring: no deadlines until the next ping or resume.
    pub fn pause(&mut self) -> Outcome {
        let mut outcome = Outcome::default();
        self.set_status(Status::Paused, None, &mut outcome);
        self.open_runs.clear();
        outcome
    }

    /// Resumes a paused check: it becomes new and waits for its first ping, as Healthchecks does.
    pub fn resume(&mut self) -> Outcome {
        let mut outcome = Outcome::default();
        if self.status == Status::Paused {
            self.set_status(Status::New, None, &mut outcome);
            self.last_ping = None;
        }
        outcome
    }

    /// True while a run is open and not yet hung (the API's `started`).
    pub fn started(&self) -> bool {
        self.has_running()
    }

    /// A run that is overdue but not yet judged shows as down; once judged (hung), the
    /// stored status rules, so a later success shows as up while the stray run is remembered.
    ///
    /// The status as the Healthchecks v3 API reports it at `now`: `new`, `up`, `grace`,
    /// `down` or `paused` (Healthchecks' `get_status()`; a running check shows `started: true`
    /// beside its status).
    pub fn api_status(&self, rules: &CheckRules, now: DateTime<Utc>) -> &'static str {
        let overdue_run = self
            .open_runs
            .iter()
            .any(|run| !run.hung && now >= self.hung_at(rules, run));
        if overdue_run {
            return "down";
        }
        match self.status {
            Status::New => "new",
            Status::Paused => "paused",
            Status::Down => "down",
            Status::Up => match (self.next_expected(rules), self.going_down_after(rules)) {
                (_, Some(down)) if now >= down => "down",
                (Some(grace_start), _) if now >= grace_start => "grace",
                _ => "up",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).unwrap()
    }

    fn hourly() -> CheckRules {
        CheckRules {
            schedule: Schedule::Period(Duration::from_secs(3600)),
            grace: Duration::from_secs(600),
            max_runtime: None,
            manual_resume: false,
            post_only: false,
        }
    }

    fn ping(kind: PingKind, at: DateTime<Utc>) -> PingInput {
        PingInput {
            kind,
            at,
            identity: RunIdentity::default(),
        }
    }

    fn run_ping(kind: PingKind, at: DateTime<Utc>, rid: u128, host: &str, pid: u32) -> PingInput {
        PingInput {
            kind,
            at,
            identity: RunIdentity {
                rid: Some(Uuid::from_u128(rid)),
                host: Some(host.into()),
                pid: Some(pid),
            },
        }
    }

    fn kinds(outcome: &Outcome) -> Vec<EventKind> {
        outcome.events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn first_success_is_a_silent_flip_and_sets_the_deadline() {
        let rules = hourly();
        let mut state = CheckState::default();
        assert_eq!(
            state.next_deadline(&rules),
            None,
            "new checks never go down"
        );
        let out = state.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        assert_eq!(out.flip, Some((Status::New, Status::Up)));
        assert!(out.events.is_empty());
        assert_eq!(state.next_deadline(&rules), Some(t(11, 10)));
        assert_eq!(state.api_status(&rules, t(10, 30)), "up");
        assert_eq!(state.api_status(&rules, t(11, 5)), "grace");
        assert_eq!(state.api_status(&rules, t(11, 10)), "down");
    }

    #[test]
    fn grace_expiry_goes_down_once_and_success_brings_it_up() {
        let rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        assert!(state.evaluate(&rules, t(11, 9)).events.is_empty());
        let out = state.evaluate(&rules, t(11, 10));
        assert_eq!(kinds(&out), [EventKind::Down]);
        assert_eq!(out.events[0].at, t(11, 10));
        assert_eq!(state.down_reason, Some(DownReason::Missed));
        assert!(
            state.evaluate(&rules, t(12, 0)).events.is_empty(),
            "alerts once"
        );
        assert_eq!(state.next_deadline(&rules), None);
        let out = state.apply_ping(&rules, &ping(PingKind::Exit(0), t(12, 0)));
        assert_eq!(kinds(&out), [EventKind::Up]);
        assert_eq!(state.status, Status::Up);
    }

    #[test]
    fn fail_and_nonzero_exit_go_down_at_once() {
        let rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        let out = state.apply_ping(&rules, &ping(PingKind::Exit(3), t(10, 5)));
        assert_eq!(kinds(&out), [EventKind::Failed]);
        assert_eq!(out.events[0].exit_status, Some(3));
        assert_eq!(state.down_reason, Some(DownReason::Failed));
        let out = state.apply_ping(&rules, &ping(PingKind::Fail, t(10, 6)));
        assert!(out.events.is_empty(), "already down: no second alert");
    }

    #[test]
    fn log_pings_change_nothing_but_the_count() {
        let rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        let out = state.apply_ping(&rules, &ping(PingKind::Log, t(10, 30)));
        assert_eq!(out, Outcome::default());
        assert_eq!(state.last_ping, Some(t(10, 0)));
        assert_eq!(state.n_pings, 2);
    }

    #[test]
    fn a_run_that_exceeds_max_runtime_is_hung_while_running() {
        let mut rules = hourly();
        rules.max_runtime = Some(Duration::from_secs(20 * 60));
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Success, t(9, 0)));
        state.apply_ping(&rules, &run_ping(PingKind::Start, t(10, 0), 1, "web1", 42));
        assert!(state.started());
        // Healthchecks' v3 status ignores the run until it is overdue: 10:00 was expected.
        assert_eq!(state.api_status(&rules, t(10, 5)), "grace");
        assert_eq!(state.next_deadline(&rules), Some(t(10, 20)));
        let out = state.evaluate(&rules, t(10, 20));
        assert_eq!(kinds(&out), [EventKind::Hung]);
        assert_eq!(out.events[0].run.as_ref().unwrap().identity.pid, Some(42));
        assert_eq!(state.down_reason, Some(DownReason::Hung));
        assert!(
            state.evaluate(&rules, t(11, 0)).events.is_empty(),
            "hung once"
        );
        // It finishes late: duration measured from its own start, and the check recovers.
        let out = state.apply_ping(
            &rules,
            &run_ping(PingKind::Success, t(10, 50), 1, "web1", 42),
        );
        assert_eq!(out.duration, Some(Duration::from_secs(50 * 60)));
        assert_eq!(kinds(&out), [EventKind::Up]);
        assert!(state.open_runs.is_empty());
    }

    #[test]
    fn without_max_runtime_a_run_hangs_after_grace_like_healthchecks() {
        let rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Success, t(9, 0)));
        state.apply_ping(&rules, &ping(PingKind::Start, t(10, 0)));
        assert_eq!(state.next_deadline(&rules), Some(t(10, 10)));
        assert_eq!(kinds(&state.evaluate(&rules, t(10, 10))), [EventKind::Hung]);
    }

    #[test]
    fn a_start_on_a_new_check_that_never_finishes_goes_down_like_healthchecks() {
        let rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Start, t(10, 0)));
        assert_eq!(state.last_ping, None, "a start does not move last_ping");
        assert_eq!(state.api_status(&rules, t(10, 10)), "down");
        let out = state.evaluate(&rules, t(10, 10));
        assert_eq!(kinds(&out), [EventKind::Hung]);
        assert_eq!(out.flip, Some((Status::New, Status::Down)));
    }

    #[test]
    fn a_hang_is_reported_even_when_the_check_was_already_down() {
        let rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Fail, t(9, 0)));
        state.apply_ping(&rules, &run_ping(PingKind::Start, t(10, 0), 7, "db2", 9));
        assert_eq!(kinds(&state.evaluate(&rules, t(10, 10))), [EventKind::Hung]);
    }

    #[test]
    fn a_second_identified_run_overlapping_the_first_names_both() {
        let rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &run_ping(PingKind::Start, t(0, 0), 1, "web1", 100));
        let out = state.apply_ping(&rules, &run_ping(PingKind::Start, t(0, 5), 2, "web2", 200));
        assert_eq!(kinds(&out), [EventKind::Overlap]);
        let event = &out.events[0];
        assert_eq!(
            event.run.as_ref().unwrap().identity.host.as_deref(),
            Some("web2")
        );
        assert_eq!(event.other_run.as_ref().unwrap().identity.pid, Some(100));
        assert_eq!(event.other_run.as_ref().unwrap().started_at, t(0, 0));
        // Finishing the first run leaves the second open and measured from its own start.
        let out = state.apply_ping(
            &rules,
            &run_ping(PingKind::Success, t(0, 8), 1, "web1", 100),
        );
        assert_eq!(out.duration, Some(Duration::from_secs(8 * 60)));
        assert_eq!(state.open_runs.len(), 1);
    }

    #[test]
    fn same_rid_again_or_anonymous_restarts_are_not_overlaps() {
        let rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &run_ping(PingKind::Start, t(0, 0), 1, "web1", 100));
        let out = state.apply_ping(&rules, &run_ping(PingKind::Start, t(0, 1), 1, "web1", 100));
        assert!(out.events.is_empty());
        assert_eq!(state.open_runs.len(), 1);
        let mut anon = CheckState::default();
        anon.apply_ping(&rules, &ping(PingKind::Start, t(0, 0)));
        let out = anon.apply_ping(&rules, &ping(PingKind::Start, t(0, 1)));
        assert!(out.events.is_empty());
        assert_eq!(anon.open_runs.len(), 1);
    }

    #[test]
    fn same_host_different_pid_without_rid_is_an_overlap() {
        let rules = hourly();
        let mut state = CheckState::default();
        let mut first = ping(PingKind::Start, t(0, 0));
        first.identity.host = Some("web1".into());
        first.identity.pid = Some(1);
        let mut second = first.clone();
        second.identity.pid = Some(2);
        state.apply_ping(&rules, &first);
        assert_eq!(
            kinds(&state.apply_ping(&rules, &second)),
            [EventKind::Overlap]
        );
    }

    #[test]
    fn paused_checks_resume_on_ping_unless_manual_resume() {
        let mut rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Success, t(9, 0)));
        state.pause();
        assert_eq!(state.next_deadline(&rules), None);
        let out = state.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        assert_eq!(out.flip, Some((Status::Paused, Status::Up)));
        assert!(out.events.is_empty());

        rules.manual_resume = true;
        state.pause();
        state.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        assert_eq!(state.status, Status::Paused);
        state.resume();
        assert_eq!(state.status, Status::New);
    }

    #[test]
    fn cron_check_deadline_is_next_fire_after_last_ping_plus_grace() {
        let rules = CheckRules {
            schedule: Schedule::parse("0 0 * * *", "America/Denver").unwrap(),
            grace: Duration::from_secs(3600),
            max_runtime: None,
            manual_resume: false,
            post_only: false,
        };
        let mut state = CheckState::default();
        // Friday 2026-11-27 00:02 MST = 07:02 UTC.
        let friday = Utc.with_ymd_and_hms(2026, 11, 27, 7, 2, 0).unwrap();
        state.apply_ping(&rules, &ping(PingKind::Success, friday));
        // Saturday 00:00 MST + 1h grace = 08:00 UTC Saturday.
        let expected = Utc.with_ymd_and_hms(2026, 11, 28, 8, 0, 0).unwrap();
        assert_eq!(state.next_deadline(&rules), Some(expected));
        let out = state.evaluate(&rules, expected);
        assert_eq!(kinds(&out), [EventKind::Down]);
    }
}
