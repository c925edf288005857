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
//! - A check with `notify_late` raises a low-urgency **late** event once when it enters its
//!   grace period (its expected time passed with no ping), dated at the grace start; a ping
//!   during grace ends it quietly, and the down event follows as before if grace passes.
//! - A started run that has not finished within `max_runtime` (or, if unset, within `grace` of
//!   its start, which is when Healthchecks would alert) is **hung**: an event is raised while it
//!   is still running, once per run, even if the check was already down.
//! - A run that starts while another identified run is open (a different run id, or a different
//!   host/pid) raises an **overlap** event naming both runs. Starts with no identity at all
//!   (plain `curl …/start`) replace the previous anonymous run, as Healthchecks does.
//! - A ping that names *stray* processes (other processes on the host running the same command,
//!   found by `keepwatch run`) raises an **overlap** event naming them.
//! - The next success brings the check **up**; an event is raised only if it was down, so a
//!   first ping (new → up) or resuming a paused check notifies nobody, as in Healthchecks.
//! - A successful run whose volume (items processed) is below a fraction of the median of the
//!   check's last [`HISTORY_LEN`] baseline runs, or whose duration is above a multiple of
//!   theirs (or, when configured, below a fraction of theirs), raises an **anomaly** event; at
//!   least [`MIN_HISTORY`] earlier runs are needed, and durations are judged only once their
//!   median reaches [`MIN_DURATION_MEDIAN_MS`]. A run that reports no volume when the last
//!   [`HISTORY_LEN`] successful runs did is an anomaly too.
//! - The baseline stays honest: only successful runs that were neither hung nor anomalous
//!   enter it, so a few bad nights never make a hang look normal.
//! - `keepwatch run` may send a **snapshot** of a run's processes (a `log` ping with the run's
//!   id) shortly before the run's deadline; the hung event carries the latest one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schedule::Schedule;

/// At most this many runs are tracked as open per check; the oldest is forgotten first.
pub const MAX_OPEN_RUNS: usize = 16;
/// How many successful runs the anomaly medians are taken over.
pub const HISTORY_LEN: usize = 10;
/// How many earlier successful runs a median needs before a run is judged against it.
pub const MIN_HISTORY: usize = 3;
/// Default anomaly thresholds: volume below 50% of the median, duration above 300% of it;
/// a duration below a percent of the median is judged only when configured.
pub const DEFAULT_VOLUME_BELOW_PCT: u32 = 50;
pub const DEFAULT_DURATION_ABOVE_PCT: u32 = 300;
pub const DEFAULT_DURATION_BELOW_PCT: u32 = 0;
/// Runs whose median is shorter than this are not judged by duration: for a job of a few
/// milliseconds, network jitter alone is several times the median.
pub const MIN_DURATION_MEDIAN_MS: f64 = 1000.0;

crate::text_enum::text_enum! {
    /// The durable status of a check.
    #[derive(Default)]
    pub enum Status {
        #[default]
        New = "new",
        Up = "up",
        Down = "down",
        Paused = "paused",
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
    /// Why the runner could not look for other copies of the job or watched processes, when
    /// it could not: a run that names no stray is then not evidence that there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_skipped: Option<String>,
    /// The latest snapshot of the run's processes the runner sent (see [`RunSnapshot`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Box<RunSnapshot>>,
}

/// Healthchecks' `filter_http_body`: an HTTP ping's kind comes from keywords in its body
/// (comma-separated lists, each keyword matched as a case-sensitive substring): a failure
/// keyword makes it a failure, else a success keyword a success, else a start keyword a
/// start; a body with none is a failure with `default_fail`, else ignored. It applies
/// whatever the URL said (`/start`, `/fail`, `/<exit status>`), not to a ping already ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyFilter {
    pub start_kw: String,
    pub success_kw: String,
    pub failure_kw: String,
    pub default_fail: bool,
}

impl BodyFilter {
    pub fn classify(&self, body: &str) -> PingKind {
        let any = |keywords: &str| {
            keywords
                .split(',')
                .map(str::trim)
                .any(|k| !k.is_empty() && body.contains(k))
        };
        if any(&self.failure_kw) {
            PingKind::Fail
        } else if any(&self.success_kw) {
            PingKind::Success
        } else if any(&self.start_kw) {
            PingKind::Start
        } else if self.default_fail {
            PingKind::Fail
        } else {
            PingKind::Ignored
        }
    }
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
    pub anomaly: AnomalyRules,
    /// Regular expressions for `keepwatch run` to match other processes' command lines with
    /// (besides its own `--watch`): matches are reported like stray copies of the job.
    pub watch: Vec<String>,
    /// When a check that has never pinged raises `never_reported`: its first expected time
    /// plus grace, for checks declared in an on-call file or created with
    /// `alert_if_never_pinged` (`None`: stay `new` quietly, as Healthchecks does).
    pub never_reported_by: Option<DateTime<Utc>>,
    /// Raise a `late` event when an up check enters its grace period (issue #21).
    pub notify_late: bool,
}

impl CheckRules {
    /// How long after its start a run counts as hung: `max_runtime`, or `grace` without one.
    pub fn hung_after(&self) -> Duration {
        self.max_runtime.unwrap_or(self.grace)
    }
}

/// When a successful run is anomalous, in percent of the median of recent successful runs;
/// 0 turns a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnomalyRules {
    pub volume_below_pct: u32,
    pub duration_above_pct: u32,
    /// A run shorter than this percent of the median (off by default: many jobs finish
    /// early when there is little to do).
    pub duration_below_pct: u32,
}

impl Default for AnomalyRules {
    fn default() -> Self {
        AnomalyRules {
            volume_below_pct: DEFAULT_VOLUME_BELOW_PCT,
            duration_above_pct: DEFAULT_DURATION_ABOVE_PCT,
            duration_below_pct: DEFAULT_DURATION_BELOW_PCT,
        }
    }
}

/// The volumes and durations of the last baseline runs (successful, neither hung nor
/// anomalous), oldest first; and whether the newest run could look for stray processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHistory {
    /// When the newest run started and why `keepwatch run` could not look for other copies
    /// of the job or watched processes then; `None` when it looked (or the start did not
    /// come from `keepwatch run`). The audit reports it (`stray-scan-skipped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_skipped: Option<(DateTime<Utc>, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub durations_ms: Vec<u64>,
    /// How many successful runs in a row reported a volume (counted up to [`HISTORY_LEN`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub volume_streak: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Adds a value to a bounded history, forgetting the oldest.
fn remember<T>(values: &mut Vec<T>, value: T) {
    values.push(value);
    if values.len() > HISTORY_LEN {
        values.remove(0);
    }
}

/// The median of the values, as a float (the mean of the middle two for an even count).
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// The anomaly `rule` finds in `value` against the median of `baseline`: `*_below` when the
/// value is below `pct` percent of it, `*_above` when above. `pct` 0 turns the rule off; a
/// median needs [`MIN_HISTORY`] runs and must reach `min_median`.
fn judge(
    rule: &str,
    pct: u32,
    value: f64,
    baseline: impl Iterator<Item = f64>,
    min_median: f64,
) -> Option<Anomaly> {
    let baseline: Vec<f64> = baseline.collect();
    let runs = baseline.len();
    if pct == 0 || runs < MIN_HISTORY {
        return None;
    }
    let median = median(baseline.into_iter())?;
    let threshold = median * f64::from(pct) / 100.0;
    let below = rule.ends_with("_below");
    let out = if below {
        value < threshold
    } else {
        value > threshold
    };
    if median < min_median || !out {
        return None;
    }
    let (metric, figure) = if rule.starts_with("volume") {
        ("volume", thousands as fn(f64) -> String)
    } else {
        ("duration", seconds as fn(f64) -> String)
    };
    Some(Anomaly {
        metric: metric.into(),
        rule: rule.into(),
        value: Some(value),
        median,
        runs,
        threshold_pct: pct,
        summary: format!(
            "{metric} {}, median of the last {runs} runs {} ({} {pct}% of it)",
            figure(value),
            figure(median),
            if below { "below" } else { "above" },
        ),
    })
}

/// `1234567.0` as `1,234,567` (fractions rounded).
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// Milliseconds as `2.5 s` or `12 min 5 s`.
fn seconds(ms: f64) -> String {
    let secs = ms / 1000.0;
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let whole = secs.round() as u64;
        match (whole / 3600, whole % 3600 / 60, whole % 60) {
            (0, m, 0) => format!("{m} min"),
            (0, m, s) => format!("{m} min {s} s"),
            (h, m, _) => format!("{h} h {m:02} min"),
        }
    }
}

/// Another process on the host that may get in the job's way, as `keepwatch run` saw it: one
/// running the same command line (a copy), or one matching a `--watch` pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrayProcess {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub cmdline: String,
    /// The `--watch` pattern the command line matched; absent for a copy of the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
}

/// At most this many processes, files and holders are taken from one snapshot.
pub const MAX_SNAPSHOT_ITEMS: usize = 64;

/// What a run's processes were doing, sent by `keepwatch run` shortly before the run's
/// deadline while the job still runs: the evidence a hung alert carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSnapshot {
    pub taken_at: DateTime<Utc>,
    /// One line for people: `pid 21507 bash S (wait4), 0.1 s CPU; … holds /var/lock/x with pid 3`.
    pub summary: String,
    /// The job's process tree, the job itself first.
    pub processes: Vec<SnapshotProcess>,
    /// Other processes on the host holding a file or a lock the job's processes hold.
    #[serde(default)]
    pub holders: Vec<FileHolder>,
    /// Processes matching `--watch` patterns, and copies of the job's command, at that moment.
    #[serde(default)]
    pub watched: Vec<StrayProcess>,
}

impl RunSnapshot {
    /// True when every list is within [`MAX_SNAPSHOT_ITEMS`]: a snapshot is kept in the check's
    /// state, so its size is bounded.
    pub fn within_limits(&self) -> bool {
        self.processes.len() <= MAX_SNAPSHOT_ITEMS
            && self.holders.len() <= MAX_SNAPSHOT_ITEMS
            && self.watched.len() <= MAX_SNAPSHOT_ITEMS
            && self
                .processes
                .iter()
                .all(|p| p.files.len() <= MAX_SNAPSHOT_ITEMS)
    }
}

/// One process of a snapshot, from /proc/<pid>/{stat,wchan,cmdline,fd}.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProcess {
    pub pid: u32,
    pub ppid: u32,
    /// The kernel's state letter: `R` running, `S` sleeping, `D` waiting on I/O, `T` stopped,
    /// `Z` zombie.
    pub state: String,
    /// The kernel function a sleeping process waits in (`do_wait`, `pipe_read`, …), if known.
    #[serde(default)]
    pub wchan: String,
    /// User plus system CPU time so far.
    pub cpu_ms: u64,
    pub cmdline: String,
    /// Open files (targets of /proc/<pid>/fd), pipes and sockets left out.
    #[serde(default)]
    pub files: Vec<String>,
}

/// A process outside the job holding one of the job's files open, or a lock on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHolder {
    pub pid: u32,
    pub cmdline: String,
    pub file: String,
    /// `open`, or the lock it holds: `flock` or `posix`.
    pub how: String,
}

/// What made a run anomalous, with the figures a message needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// `volume` or `duration`.
    pub metric: String,
    /// Which rule: `volume_below`, `volume_missing`, `duration_above` or `duration_below`.
    pub rule: String,
    /// The run's volume (items) or duration (milliseconds); absent when it reported none.
    pub value: Option<f64>,
    /// The median of the baseline runs, in the same unit.
    pub median: f64,
    /// How many runs the median is taken over.
    pub runs: usize,
    /// The threshold in percent of the median (0 for `volume_missing`).
    pub threshold_pct: u32,
    /// The figures in words: `volume 12, median of the last 10 runs 1,000 (threshold 50%)`.
    pub summary: String,
}

/// Why a check is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownReason {
    Missed,
    Failed,
    Hung,
    /// Not down: a check that asked for it (see [`CheckRules::never_reported_by`]) is still
    /// `new` past its first expected time plus grace. Kept with the `new` status, so its
    /// alert is raised once.
    #[serde(rename = "never_reported")]
    NeverReported,
    /// Not down: an up check in its grace period whose `late` event was raised. Kept with the
    /// `up` status, so the event is raised once; the next ping clears it.
    Late,
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
    pub history: RunHistory,
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
            history: RunHistory::default(),
        }
    }
}

/// A ping as the state machine sees it.
#[derive(Debug, Clone)]
pub struct PingInput {
    pub kind: PingKind,
    pub at: DateTime<Utc>,
    pub identity: RunIdentity,
    /// Items the run processed, when the sender says.
    pub volume: Option<i64>,
    /// Other processes running the same command or matching a watch pattern, when the
    /// sender looked.
    pub strays: Vec<StrayProcess>,
    /// Why the sender could not look for such processes, when it could not.
    pub scan_skipped: Option<String>,
    /// On a `log` ping: a snapshot of the run's processes (see [`RunSnapshot`]).
    pub snapshot: Option<Box<RunSnapshot>>,
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
    /// A check that asked for it never pinged by its first expected time plus grace.
    #[serde(rename = "never_reported")]
    NeverReported,
    /// A run started while another was still open, or beside stray processes.
    Overlap,
    /// A successful run processed too little or took too long against its recent median.
    Anomaly,
    /// The check came back after being down.
    Up,
    /// An up check with `notify_late` entered its grace period: low urgency, for its
    /// channels only.
    Late,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Down => "down",
            EventKind::Failed => "failed",
            EventKind::Hung => "hung",
            EventKind::NeverReported => "never_reported",
            EventKind::Overlap => "overlap",
            EventKind::Anomaly => "anomaly",
            EventKind::Up => "up",
            EventKind::Late => "late",
        }
    }
}

/// Something to notify about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    /// The run the event is about (the new run for an overlap, the stuck run when hung).
    pub run: Option<OpenRun>,
    /// For an overlap: the run that was already open.
    pub other_run: Option<OpenRun>,
    pub exit_status: Option<u8>,
    /// For an overlap: processes outside keepwatch running the same command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strays: Vec<StrayProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<Anomaly>,
    /// For a hung run: the latest snapshot of its processes, when the runner sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Box<RunSnapshot>>,
    /// For a late check: when it counts as down if nothing arrives (the grace end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_at: Option<DateTime<Utc>>,
    /// Held back: a check this one depends on was down (the engine sets it; no channel or
    /// page hears of the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppression>,
    /// An alert held back earlier, sent now that the check it depends on recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Suppression>,
}

/// Why an event was held back (or is released): the check depended on, and when it went down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// The check depended on.
    pub by: Uuid,
    pub name: String,
    /// When it went down, as far as its state tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// In words: `suppressed: depends on backup, down since 2026-11-26T12:10:00Z`.
    pub reason: String,
}

impl Suppression {
    pub fn new(by: Uuid, name: &str, since: Option<DateTime<Utc>>) -> Suppression {
        let since_text = since.map_or(String::new(), |t| {
            format!(", down since {}", t.format("%Y-%m-%dT%H:%M:%SZ"))
        });
        Suppression {
            by,
            name: name.to_string(),
            since,
            reason: format!("suppressed: depends on {name}{since_text}"),
        }
    }

    /// The note of a released alert: held back since `held_at`, and why.
    pub fn released(&self, held_at: DateTime<Utc>, now: DateTime<Utc>) -> Suppression {
        let since = self.since.map_or(String::new(), |t| {
            format!(", down since {}", t.format("%Y-%m-%dT%H:%M:%SZ"))
        });
        Suppression {
            reason: format!(
                "held back since {} because it depends on {}{since}; {} recovered at {}",
                held_at.format("%Y-%m-%dT%H:%M:%SZ"),
                self.name,
                self.name,
                now.format("%Y-%m-%dT%H:%M:%SZ"),
            ),
            ..self.clone()
        }
    }
}

/// The first cycle through `start` in a dependency graph (`deps` gives the checks a check
/// depends on), as the path `start, …, start`; `None` if there is none.
pub fn dependency_cycle(start: &str, deps: &dyn Fn(&str) -> Vec<String>) -> Option<Vec<String>> {
    fn walk(
        at: &str,
        start: &str,
        deps: &dyn Fn(&str) -> Vec<String>,
        path: &mut Vec<String>,
        seen: &mut std::collections::HashSet<String>,
    ) -> bool {
        for next in deps(at) {
            if next == start {
                path.push(next);
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(&next, start, deps, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = std::collections::HashSet::new();
    walk(start, start, deps, &mut path, &mut seen).then_some(path)
}

impl Event {
    fn new(kind: EventKind, at: DateTime<Utc>) -> Event {
        Event {
            kind,
            at,
            run: None,
            other_run: None,
            exit_status: None,
            strays: Vec::new(),
            anomaly: None,
            snapshot: None,
            down_at: None,
            suppressed: None,
            released: None,
        }
    }
}

/// What applying a ping or a tick changed.
#[derive(Debug, Clone, Default, PartialEq)]
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
            PingKind::Ignored => {}
            PingKind::Log => {
                if let Some(snapshot) = &ping.snapshot {
                    self.keep_snapshot(&ping.identity, snapshot);
                }
                // `keepwatch run --lock` sends a log naming the lock holder when it does not
                // run, and `keepwatch run` one naming processes that match the check's own
                // watch patterns (it learns them from the start ping's answer).
                if !ping.strays.is_empty() {
                    let mut event = Event::new(EventKind::Overlap, ping.at);
                    event.strays = ping.strays.clone();
                    outcome.events.push(event);
                }
            }
            PingKind::Start => {
                // As in Healthchecks, a start does not move `last_ping`: the schedule is
                // anchored on finishes.
                self.start_run(ping, &mut outcome);
            }
            PingKind::Success | PingKind::Fail | PingKind::Exit(_) => {
                // A spooled ping delivered late carries its own, earlier time.
                self.last_ping = self.last_ping.max(Some(ping.at));
                let mut was_hung = false;
                if let Some(run) = self.finish_run(&ping.identity) {
                    let took = (ping.at - run.started_at).to_std().unwrap_or_default();
                    outcome.duration = Some(took);
                    self.last_duration = Some(took);
                    was_hung = run.hung;
                }
                let failed = matches!(ping.kind, PingKind::Fail | PingKind::Exit(1..));
                let was = self.status;
                // A first ping after `never_reported`: its alert can resolve.
                let was_unreported = self.down_reason == Some(DownReason::NeverReported);
                if failed {
                    self.set_status(Status::Down, Some(DownReason::Failed), &mut outcome);
                    if was != Status::Down {
                        let mut event = Event::new(EventKind::Failed, ping.at);
                        event.exit_status = ping.kind.exit_status();
                        outcome.events.push(event);
                    }
                } else {
                    self.set_status(Status::Up, None, &mut outcome);
                    if was == Status::Down || was_unreported {
                        outcome.events.push(Event::new(EventKind::Up, ping.at));
                    }
                    self.judge_run(rules, ping, outcome.duration, was_hung, &mut outcome);
                }
            }
        }
        outcome
    }

    /// Compares a successful run with the median of the baseline runs, then adds it to the
    /// baseline if it was a normal run: not hung and not anomalous.
    fn judge_run(
        &mut self,
        rules: &CheckRules,
        ping: &PingInput,
        duration: Option<Duration>,
        was_hung: bool,
        outcome: &mut Outcome,
    ) {
        let history = &self.history;
        let volumes = || history.volumes.iter().map(|v| *v as f64);
        let durations = || history.durations_ms.iter().map(|v| *v as f64);
        let ms = duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut anomalies = Vec::new();
        match ping.volume {
            Some(volume) => anomalies.extend(judge(
                "volume_below",
                rules.anomaly.volume_below_pct,
                volume as f64,
                volumes(),
                0.0,
            )),
            None if history.volume_streak as usize >= HISTORY_LEN => {
                let median = median(volumes()).unwrap_or_default();
                let runs = HISTORY_LEN;
                anomalies.push(Anomaly {
                    metric: "volume".into(),
                    rule: "volume_missing".into(),
                    value: None,
                    median,
                    runs,
                    threshold_pct: 0,
                    summary: format!(
                        "reported no volume; each of the last {runs} runs did (median {})",
                        thousands(median)
                    ),
                });
            }
            None => {}
        }
        if let Some(ms) = ms {
            for (rule, pct) in [
                ("duration_above", rules.anomaly.duration_above_pct),
                ("duration_below", rules.anomaly.duration_below_pct),
            ] {
                anomalies.extend(judge(
                    rule,
                    pct,
                    ms as f64,
                    durations(),
                    MIN_DURATION_MEDIAN_MS,
                ));
            }
        }
        self.history.volume_streak = match ping.volume {
            Some(_) => (self.history.volume_streak + 1).min(HISTORY_LEN as u32),
            None => 0,
        };
        if !was_hung && anomalies.is_empty() {
            if let Some(volume) = ping.volume {
                remember(&mut self.history.volumes, volume);
            }
            if let Some(ms) = ms {
                remember(&mut self.history.durations_ms, ms);
            }
        }
        for anomaly in anomalies {
            let mut event = Event::new(EventKind::Anomaly, ping.at);
            event.exit_status = ping.kind.exit_status();
            event.anomaly = Some(anomaly);
            outcome.events.push(event);
        }
    }

    /// Keeps a snapshot on the open run it belongs to (by run id, else by host and pid).
    fn keep_snapshot(&mut self, identity: &RunIdentity, snapshot: &RunSnapshot) {
        let run = self
            .open_runs
            .iter_mut()
            .rev()
            .find(|run| match identity.rid {
                Some(rid) => run.identity.rid == Some(rid),
                None => {
                    !identity.is_anonymous()
                        && run.identity.host == identity.host
                        && run.identity.pid == identity.pid
                }
            });
        if let Some(run) = run {
            run.snapshot = Some(Box::new(snapshot.clone()));
        }
    }

    fn start_run(&mut self, ping: &PingInput, outcome: &mut Outcome) {
        self.history.scan_skipped = ping.scan_skipped.clone().map(|why| (ping.at, why));
        let new_run = OpenRun {
            identity: ping.identity.clone(),
            started_at: ping.at,
            hung: false,
            scan_skipped: ping.scan_skipped.clone(),
            snapshot: None,
        };
        if new_run.identity.is_anonymous() {
            self.open_runs.retain(|run| !run.identity.is_anonymous());
        } else if let Some(rid) = new_run.identity.rid {
            // The same run sending its start again is not a second run.
            self.open_runs.retain(|run| run.identity.rid != Some(rid));
        }
        let other = self
            .open_runs
            .iter()
            .rev()
            .find(|run| run.identity.differs_from(&new_run.identity));
        if other.is_some() || !ping.strays.is_empty() {
            let mut event = Event::new(EventKind::Overlap, ping.at);
            event.run = Some(new_run.clone());
            event.other_run = other.cloned();
            event.strays = ping.strays.clone();
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

    /// Since when a down check is down, as far as its state tells: the missed deadline, the
    /// failure, or the hung run's deadline. `None` when it is not down.
    pub fn down_since(&self, rules: &CheckRules) -> Option<DateTime<Utc>> {
        if self.status != Status::Down {
            return None;
        }
        match self.down_reason? {
            DownReason::Missed => Some(rules.schedule.next_after(self.last_ping?)? + rules.grace),
            DownReason::Hung => self
                .open_runs
                .iter()
                .filter(|run| run.hung)
                .map(|run| self.hung_at(rules, run))
                .min(),
            DownReason::Failed | DownReason::NeverReported | DownReason::Late => self.last_ping,
        }
    }

    /// The next expected ping (the API's `next_ping`).
    pub fn next_expected(&self, rules: &CheckRules) -> Option<DateTime<Utc>> {
        if matches!(self.status, Status::New | Status::Paused) {
            return None;
        }
        rules.schedule.next_after(self.last_ping?)
    }

    fn hung_at(&self, rules: &CheckRules, run: &OpenRun) -> DateTime<Utc> {
        run.started_at + rules.hung_after()
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
        hung.into_iter()
            .chain(missed)
            .chain(self.never_reported_at(rules))
            .chain(self.late_at(rules))
            .min()
    }

    /// When an up check with `notify_late` raises `late`: its next expected ping (the grace
    /// start), unless it did already, a run is going, or it has no grace to be late in.
    fn late_at(&self, rules: &CheckRules) -> Option<DateTime<Utc>> {
        if !rules.notify_late
            || rules.grace.is_zero()
            || self.status != Status::Up
            || self.down_reason.is_some()
            || self.has_running()
        {
            return None;
        }
        self.next_expected(rules)
    }

    /// When a check still `new` raises `never_reported`, unless it did already.
    fn never_reported_at(&self, rules: &CheckRules) -> Option<DateTime<Utc>> {
        if self.status != Status::New || self.down_reason.is_some() || self.n_pings > 0 {
            return None;
        }
        rules.never_reported_by
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
        for mut run in hung_runs {
            let mut event = Event::new(EventKind::Hung, self.hung_at(rules, &run));
            event.snapshot = run.snapshot.take();
            event.run = Some(run);
            outcome.events.push(event);
            self.set_status(Status::Down, Some(DownReason::Hung), &mut outcome);
        }
        if let Some(by) = self.never_reported_at(rules)
            && now >= by
        {
            // Still `new` (Healthchecks' status); the reason marks the alert as raised.
            self.down_reason = Some(DownReason::NeverReported);
            outcome
                .events
                .push(Event::new(EventKind::NeverReported, by));
        }
        if let Some(late) = self.late_at(rules)
            && now >= late
            && let Some(down_at) = self.going_down_after(rules)
            && now < down_at
        {
            // Still `up`; the reason marks the late event as raised. Past the grace end there
            // is no late event: the down event below says more.
            self.down_reason = Some(DownReason::Late);
            let mut event = Event::new(EventKind::Late, late);
            event.down_at = Some(down_at);
            outcome.events.push(event);
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
            anomaly: AnomalyRules::default(),
            watch: Vec::new(),
            never_reported_by: None,
            notify_late: false,
        }
    }

    fn ping(kind: PingKind, at: DateTime<Utc>) -> PingInput {
        PingInput {
            kind,
            at,
            identity: RunIdentity::default(),
            volume: None,
            strays: Vec::new(),
            scan_skipped: None,
            snapshot: None,
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
            volume: None,
            strays: Vec::new(),
            scan_skipped: None,
            snapshot: None,
        }
    }

    fn kinds(outcome: &Outcome) -> Vec<EventKind> {
        outcome.events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_check_that_never_pings_raises_never_reported_once_and_its_first_ping_clears_it() {
        let rules = CheckRules {
            never_reported_by: Some(t(11, 10)),
            ..hourly()
        };
        let mut state = CheckState::default();
        assert_eq!(state.next_deadline(&rules), Some(t(11, 10)));
        assert!(state.evaluate(&rules, t(11, 9)).events.is_empty());
        let out = state.evaluate(&rules, t(11, 10));
        assert_eq!(kinds(&out), [EventKind::NeverReported]);
        assert_eq!(out.events[0].at, t(11, 10));
        // Still `new`, as Healthchecks says; raised once.
        assert_eq!((state.status, out.flip), (Status::New, None));
        assert_eq!(state.down_reason, Some(DownReason::NeverReported));
        assert_eq!(state.next_deadline(&rules), None);
        assert!(state.evaluate(&rules, t(12, 0)).events.is_empty());
        // The first ping: up, and an `up` event resolves the alert.
        let out = state.apply_ping(&rules, &ping(PingKind::Success, t(12, 5)));
        assert_eq!(kinds(&out), [EventKind::Up]);
        assert_eq!((state.status, state.down_reason), (Status::Up, None));
        // Without the setting a new check waits quietly.
        let mut quiet = CheckState::default();
        assert_eq!(quiet.next_deadline(&hourly()), None);
        assert!(quiet.evaluate(&hourly(), t(23, 0)).events.is_empty());
    }

    #[test]
    fn notify_late_raises_late_once_at_the_grace_start_then_down_at_its_end() {
        let rules = CheckRules {
            notify_late: true,
            ..hourly()
        };
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        // Expected at 11:00, grace 10 min: the first deadline is the grace start.
        assert_eq!(state.next_deadline(&rules), Some(t(11, 0)));
        assert!(state.evaluate(&rules, t(10, 59)).events.is_empty());
        let out = state.evaluate(&rules, t(11, 0));
        assert_eq!(kinds(&out), [EventKind::Late]);
        assert_eq!(out.events[0].at, t(11, 0));
        assert_eq!(out.events[0].down_at, Some(t(11, 10)));
        // Still up, no flip; raised once.
        assert_eq!((state.status, out.flip), (Status::Up, None));
        assert_eq!(state.api_status(&rules, t(11, 1)), "grace");
        assert_eq!(state.next_deadline(&rules), Some(t(11, 10)));
        assert!(state.evaluate(&rules, t(11, 5)).events.is_empty());
        // Grace passes: down, as without the setting.
        let out = state.evaluate(&rules, t(11, 10));
        assert_eq!(kinds(&out), [EventKind::Down]);
        assert_eq!(state.down_reason, Some(DownReason::Missed));
        // Recovery and the next cycle: late again, once.
        let out = state.apply_ping(&rules, &ping(PingKind::Success, t(11, 30)));
        assert_eq!(kinds(&out), [EventKind::Up]);
        assert_eq!(state.next_deadline(&rules), Some(t(12, 30)));
        assert_eq!(kinds(&state.evaluate(&rules, t(12, 31))), [EventKind::Late]);
    }

    #[test]
    fn a_ping_in_grace_ends_late_quietly_and_without_the_setting_there_is_no_late() {
        let rules = CheckRules {
            notify_late: true,
            ..hourly()
        };
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        assert_eq!(kinds(&state.evaluate(&rules, t(11, 0))), [EventKind::Late]);
        let out = state.apply_ping(&rules, &ping(PingKind::Success, t(11, 5)));
        assert!(out.events.is_empty(), "no recovery for a late check");
        assert_eq!(out.flip, None);
        assert_eq!((state.status, state.down_reason), (Status::Up, None));
        // No down at the old grace end: the next late is an hour after the ping.
        assert!(state.evaluate(&rules, t(11, 10)).events.is_empty());
        assert_eq!(state.next_deadline(&rules), Some(t(12, 5)));

        // Without `notify_late` the grace start is no deadline and raises nothing.
        let mut quiet = CheckState::default();
        quiet.apply_ping(&hourly(), &ping(PingKind::Success, t(10, 0)));
        assert_eq!(quiet.next_deadline(&hourly()), Some(t(11, 10)));
        assert!(quiet.evaluate(&hourly(), t(11, 5)).events.is_empty());
        assert_eq!(
            kinds(&quiet.evaluate(&hourly(), t(11, 10))),
            [EventKind::Down]
        );

        // Noticed only after the grace end (the engine was stopped): down, no late.
        let mut missed = CheckState::default();
        missed.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        assert_eq!(
            kinds(&missed.evaluate(&rules, t(11, 30))),
            [EventKind::Down]
        );
    }

    #[test]
    fn dependency_cycles_are_found_through_the_start() {
        let graph = |of: &str| -> Vec<String> {
            match of {
                "a" => vec!["b".into()],
                "b" => vec!["c".into(), "d".into()],
                "d" => vec!["a".into()],
                "x" => vec!["b".into()],
                _ => vec![],
            }
        };
        assert_eq!(
            dependency_cycle("a", &graph),
            Some(vec!["a".into(), "b".into(), "d".into(), "a".into()])
        );
        // x leads into the cycle but is not on it.
        assert_eq!(dependency_cycle("x", &graph), None);
        assert_eq!(dependency_cycle("c", &graph), None);
        let down = Suppression::new(Uuid::nil(), "backup", Some(t(12, 10)));
        assert_eq!(
            down.reason,
            "suppressed: depends on backup, down since 2026-11-26T12:10:00Z"
        );
        assert_eq!(
            down.released(t(12, 20), t(13, 0)).reason,
            "held back since 2026-11-26T12:20:00Z because it depends on backup, down since \
             2026-11-26T12:10:00Z; backup recovered at 2026-11-26T13:00:00Z"
        );
        let mut state = CheckState::default();
        state.apply_ping(&hourly(), &ping(PingKind::Success, t(10, 0)));
        assert_eq!(state.down_since(&hourly()), None);
        state.evaluate(&hourly(), t(11, 30));
        assert_eq!(state.down_since(&hourly()), Some(t(11, 10)));
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
    fn a_body_filter_classifies_by_keywords_failure_first() {
        let filter = BodyFilter {
            start_kw: "BEGIN".into(),
            success_kw: "ALL OK, done ".into(),
            failure_kw: "ERROR,panic".into(),
            default_fail: false,
        };
        assert_eq!(filter.classify("BEGIN backup"), PingKind::Start);
        assert_eq!(filter.classify("backup done"), PingKind::Success);
        assert_eq!(
            filter.classify("done, but ERROR on 2 files"),
            PingKind::Fail
        );
        assert_eq!(filter.classify("thread main panicked"), PingKind::Fail);
        assert_eq!(filter.classify("error in lower case"), PingKind::Ignored);
        assert_eq!(filter.classify(""), PingKind::Ignored);
        let strict = BodyFilter {
            default_fail: true,
            ..filter
        };
        assert_eq!(strict.classify("no keyword"), PingKind::Fail);
        assert_eq!(BodyFilter::default().classify(", ,"), PingKind::Ignored);
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
            anomaly: AnomalyRules::default(),
            watch: Vec::new(),
            never_reported_by: None,
            notify_late: false,
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

    fn finish_with_volume(
        state: &mut CheckState,
        rules: &CheckRules,
        at: DateTime<Utc>,
        volume: i64,
    ) -> Outcome {
        let mut input = ping(PingKind::Exit(0), at);
        input.volume = Some(volume);
        state.apply_ping(rules, &input)
    }

    #[test]
    fn a_run_far_below_the_median_volume_is_an_anomaly() {
        let rules = hourly();
        let history = |state: &mut CheckState| {
            for (hour, volume) in [(1, 1000), (2, 1200), (3, 900)] {
                let out = finish_with_volume(state, &rules, t(hour, 0), volume);
                assert!(out.events.is_empty(), "too little history to judge yet");
            }
        };
        // The median of 900, 1000, 1200 is 1000; 50% of it is 500, which is not below.
        let mut state = CheckState::default();
        history(&mut state);
        assert!(
            finish_with_volume(&mut state, &rules, t(4, 0), 500)
                .events
                .is_empty()
        );
        let mut state = CheckState::default();
        history(&mut state);
        let out = finish_with_volume(&mut state, &rules, t(4, 0), 499);
        assert_eq!(kinds(&out), [EventKind::Anomaly]);
        let anomaly = out.events[0].anomaly.as_ref().unwrap();
        assert_eq!(anomaly.metric, "volume");
        assert_eq!(
            (anomaly.value, anomaly.median, anomaly.threshold_pct),
            (Some(499.0), 1000.0, 50)
        );
        assert_eq!(
            state.status,
            Status::Up,
            "an anomaly alerts without changing the status"
        );
    }

    #[test]
    fn volume_history_keeps_the_last_ten_successful_runs_only() {
        let rules = hourly();
        let mut state = CheckState::default();
        for i in 0..15 {
            finish_with_volume(&mut state, &rules, t(1, i), 10 + i64::from(i));
        }
        assert_eq!(state.history.volumes, (15..25).collect::<Vec<i64>>());
        // A failed run's volume is neither judged nor remembered.
        let mut failed = ping(PingKind::Exit(1), t(2, 0));
        failed.volume = Some(0);
        assert_eq!(
            kinds(&state.apply_ping(&rules, &failed)),
            [EventKind::Failed]
        );
        assert_eq!(state.history.volumes.len(), 10);
    }

    #[test]
    fn a_run_far_above_the_median_duration_is_an_anomaly_unless_turned_off() {
        let mut rules = hourly();
        let mut state = CheckState::default();
        let run = |state: &mut CheckState, rules: &CheckRules, n: u32, minutes: u32| {
            state.apply_ping(
                rules,
                &run_ping(PingKind::Start, t(n, 0), n.into(), "web1", n),
            );
            state.apply_ping(
                rules,
                &run_ping(PingKind::Success, t(n, minutes), n.into(), "web1", n),
            )
        };
        for n in 1..=3 {
            assert!(run(&mut state, &rules, n, 10).events.is_empty());
        }
        // 30 minutes is 300% of the 10-minute median: not above it.
        assert!(run(&mut state, &rules, 4, 30).events.is_empty());
        let out = run(&mut state, &rules, 5, 31);
        assert_eq!(kinds(&out), [EventKind::Anomaly]);
        assert_eq!(out.events[0].anomaly.as_ref().unwrap().metric, "duration");
        assert_eq!(
            out.events[0].anomaly.as_ref().unwrap().value,
            Some(31.0 * 60_000.0)
        );
        rules.anomaly.duration_above_pct = 0;
        assert!(run(&mut state, &rules, 6, 59).events.is_empty());
    }

    #[test]
    fn a_start_beside_stray_processes_is_an_overlap_naming_them() {
        let rules = hourly();
        let mut state = CheckState::default();
        let stray = StrayProcess {
            pid: 4242,
            started_at: t(0, 0),
            cmdline: "/opt/jobs/nightly.sh --full".into(),
            watch: None,
        };
        let mut start = run_ping(PingKind::Start, t(1, 0), 1, "web1", 77);
        start.strays = vec![stray.clone()];
        let out = state.apply_ping(&rules, &start);
        assert_eq!(kinds(&out), [EventKind::Overlap]);
        assert_eq!(out.events[0].strays, std::slice::from_ref(&stray));
        assert_eq!(out.events[0].other_run, None);
        // A run that did not take its lock says so with a log ping naming the holder.
        let mut refused = ping(PingKind::Log, t(1, 5));
        refused.strays = vec![stray];
        assert_eq!(
            kinds(&state.apply_ping(&rules, &refused)),
            [EventKind::Overlap]
        );
        assert_eq!(state.open_runs.len(), 1, "a refused run opens nothing");
    }

    /// Starts run `n` at hour `n` and finishes it `minutes` later with `volume`.
    fn timed_run(
        state: &mut CheckState,
        rules: &CheckRules,
        n: u32,
        minutes: u32,
        volume: Option<i64>,
    ) -> Outcome {
        state.apply_ping(
            rules,
            &run_ping(PingKind::Start, t(n, 0), n.into(), "web1", n),
        );
        let mut finish = run_ping(PingKind::Success, t(n, minutes), n.into(), "web1", n);
        finish.volume = volume;
        state.apply_ping(rules, &finish)
    }

    #[test]
    fn hung_failed_and_anomalous_runs_stay_out_of_the_baseline() {
        let mut rules = hourly();
        rules.max_runtime = Some(Duration::from_secs(30 * 60));
        let mut state = CheckState::default();
        for n in 1..=3 {
            timed_run(&mut state, &rules, n, 10, Some(1000));
        }
        // Run 4 hangs (past 30 min), then finishes at 50 min: alerted, never a baseline run.
        state.apply_ping(&rules, &run_ping(PingKind::Start, t(4, 0), 4, "web1", 4));
        assert_eq!(kinds(&state.evaluate(&rules, t(4, 30))), [EventKind::Hung]);
        let mut late = run_ping(PingKind::Success, t(4, 50), 4, "web1", 4);
        late.volume = Some(1000);
        let out = state.apply_ping(&rules, &late);
        assert_eq!(kinds(&out), [EventKind::Up, EventKind::Anomaly]);
        // A failed run (killed, timed out, non-zero exit) is not judged or remembered.
        state.apply_ping(&rules, &run_ping(PingKind::Start, t(5, 0), 5, "web1", 5));
        state.apply_ping(
            &rules,
            &run_ping(PingKind::Exit(137), t(5, 1), 5, "web1", 5),
        );
        // An anomalous volume is not remembered either.
        let out = timed_run(&mut state, &rules, 6, 10, Some(12));
        assert_eq!(kinds(&out), [EventKind::Up, EventKind::Anomaly]);
        assert_eq!(out.events[1].anomaly.as_ref().unwrap().rule, "volume_below");
        assert_eq!(state.history.durations_ms, [600_000; 3]);
        assert_eq!(state.history.volumes, [1000; 3]);
        // So the same low volume keeps being an anomaly, night after night.
        let out = timed_run(&mut state, &rules, 7, 10, Some(12));
        let anomaly = out.events[0].anomaly.as_ref().unwrap();
        assert_eq!(
            (anomaly.value, anomaly.median, anomaly.runs),
            (Some(12.0), 1000.0, 3)
        );
        assert_eq!(
            anomaly.summary,
            "volume 12, median of the last 3 runs 1,000 (below 50% of it)"
        );
    }

    #[test]
    fn a_run_far_shorter_than_usual_is_an_anomaly_only_when_configured() {
        let mut rules = hourly();
        let mut state = CheckState::default();
        for n in 1..=3 {
            timed_run(&mut state, &rules, n, 20, None);
        }
        assert!(timed_run(&mut state, &rules, 4, 1, None).events.is_empty());
        assert_eq!(state.history.durations_ms.len(), 4, "off: a normal run");
        rules.anomaly.duration_below_pct = 10;
        // 2 min is exactly 10% of the 20 min median: not below it.
        assert!(timed_run(&mut state, &rules, 5, 2, None).events.is_empty());
        let out = timed_run(&mut state, &rules, 6, 1, None);
        assert_eq!(kinds(&out), [EventKind::Anomaly]);
        let anomaly = out.events[0].anomaly.as_ref().unwrap();
        assert_eq!(anomaly.rule, "duration_below");
        assert_eq!(anomaly.value, Some(60_000.0));
        assert_eq!(anomaly.median, 1_200_000.0);
        assert_eq!(
            anomaly.summary,
            "duration 1 min, median of the last 5 runs 20 min (below 10% of it)"
        );
    }

    #[test]
    fn a_run_without_volume_after_ten_that_had_one_is_an_anomaly_once() {
        let rules = hourly();
        let mut state = CheckState::default();
        for n in 1..=9 {
            timed_run(&mut state, &rules, n, 10, Some(1000));
        }
        // Nine runs with a volume are not enough to expect one.
        assert!(
            timed_run(&mut state, &rules, 10, 10, None)
                .events
                .is_empty()
        );
        for n in 11..=20 {
            timed_run(&mut state, &rules, n, 10, Some(1000));
        }
        let out = timed_run(&mut state, &rules, 21, 10, None);
        assert_eq!(kinds(&out), [EventKind::Anomaly]);
        let anomaly = out.events[0].anomaly.as_ref().unwrap();
        assert_eq!(
            (anomaly.rule.as_str(), anomaly.value, anomaly.median),
            ("volume_missing", None, 1000.0)
        );
        assert_eq!(
            anomaly.summary,
            "reported no volume; each of the last 10 runs did (median 1,000)"
        );
        assert!(
            timed_run(&mut state, &rules, 22, 10, None)
                .events
                .is_empty(),
            "said once, not every run after"
        );
    }

    fn snapshot(pid: u32) -> RunSnapshot {
        RunSnapshot {
            taken_at: t(10, 19),
            summary: format!("pid {pid} bash S (do_wait)"),
            processes: vec![SnapshotProcess {
                pid,
                ppid: 1,
                state: "S".into(),
                wchan: "do_wait".into(),
                cpu_ms: 40,
                cmdline: "/bin/bash /opt/jobs/nightly.sh".into(),
                files: vec!["/var/lock/nightly".into()],
            }],
            holders: vec![FileHolder {
                pid: 26458,
                cmdline: "/bin/bash /opt/jobs/nightly.sh".into(),
                file: "/var/lock/nightly".into(),
                how: "flock".into(),
            }],
            watched: Vec::new(),
        }
    }

    #[test]
    fn the_hung_event_carries_the_latest_snapshot_of_its_run() {
        let mut rules = hourly();
        rules.max_runtime = Some(Duration::from_secs(20 * 60));
        let mut state = CheckState::default();
        let mut start = run_ping(PingKind::Start, t(10, 0), 1, "web1", 42);
        start.scan_skipped = Some("no /proc on this system".into());
        state.apply_ping(&rules, &start);
        state.apply_ping(&rules, &run_ping(PingKind::Start, t(10, 1), 2, "web2", 43));
        for (pid, minute) in [(41, 10), (42, 19)] {
            let mut log = run_ping(PingKind::Log, t(10, minute), 1, "web1", 42);
            log.snapshot = Some(Box::new(snapshot(pid)));
            assert!(state.apply_ping(&rules, &log).events.is_empty());
        }
        let out = state.evaluate(&rules, t(10, 20));
        assert_eq!(kinds(&out), [EventKind::Hung]);
        let event = &out.events[0];
        assert_eq!(event.snapshot.as_deref(), Some(&snapshot(42)));
        let run = event.run.as_ref().unwrap();
        assert_eq!(run.snapshot, None, "carried once, beside the run");
        assert_eq!(run.scan_skipped.as_deref(), Some("no /proc on this system"));
        // The newest start (web2's) looked: nothing kept for the audit.
        assert_eq!(state.history.scan_skipped, None);
        let json = serde_json::to_value(event).unwrap();
        assert_eq!(json["snapshot"]["processes"][0]["pid"], 42);
        assert_eq!(json["snapshot"]["holders"][0]["how"], "flock");
        // The other run got none.
        let out = state.evaluate(&rules, t(10, 21));
        assert_eq!(out.events[0].snapshot, None);
    }

    #[test]
    fn a_late_delivered_ping_never_moves_last_ping_back() {
        let rules = hourly();
        let mut state = CheckState::default();
        state.apply_ping(&rules, &ping(PingKind::Success, t(10, 0)));
        state.apply_ping(&rules, &ping(PingKind::Success, t(9, 0)));
        assert_eq!(state.last_ping, Some(t(10, 0)));
    }
}
