//! The in-memory form of a check that the engine keeps for every check: just what judging
//! it needs (rules shared between checks with the same settings, state, deadline), so a
//! million checks fit in a few hundred MiB. Names, tags and descriptions stay in the database.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use keepwatch_core::check::{
    AnomalyRules, BodyFilter, CheckRules, CheckState, DownReason, OpenRun, RunHistory,
};
use keepwatch_core::schedule::Schedule;
use keepwatch_store::{CheckRow, StateRow, Timestamp};
use uuid::Uuid;

pub struct LiveCheck {
    pub uuid: Uuid,
    pub rules: Arc<CheckRules>,
    pub state: CheckState,
    /// The check's newest ping, the head of the chain its pings are listed by.
    pub last_seq: Option<i64>,
    /// Pings with a higher seq are not in the stored state yet.
    pub checkpoint_seq: i64,
    /// The deadline queued for this check; a heap entry with another time is stale.
    pub scheduled_at: Option<Timestamp>,
    /// Healthchecks' `filter_http_body`, when the check has it on (boxed: rare, and a
    /// million checks are kept in memory).
    pub body_filter: Option<Box<BodyFilter>>,
}

/// The UUIDs in a check's `depends_on` column (a JSON array; the API validated them).
pub fn depends_on(row: &CheckRow) -> Box<[Uuid]> {
    if row.depends_on == "[]" || row.depends_on.is_empty() {
        return Box::default();
    }
    serde_json::from_str::<Vec<Uuid>>(&row.depends_on)
        .unwrap_or_default()
        .into_boxed_slice()
}

/// The check's `filter_http_body` settings from `extra`, when it is on.
pub fn body_filter(row: &CheckRow) -> Option<Box<BodyFilter>> {
    if !row.extra.contains("filter_http_body") {
        return None;
    }
    let extra: serde_json::Value = serde_json::from_str(&row.extra).ok()?;
    if extra["filter_http_body"] != true {
        return None;
    }
    let text = |key: &str| extra[key].as_str().unwrap_or_default().to_string();
    Some(Box::new(BodyFilter {
        start_kw: text("start_kw"),
        success_kw: text("success_kw"),
        failure_kw: text("failure_kw"),
        default_fail: extra["filter_default_fail"] == true,
    }))
}

/// Builds check rules from a stored row.
pub fn rules_from_row(row: &CheckRow) -> Result<CheckRules, String> {
    let schedule = match row.kind.as_str() {
        "simple" => Schedule::Period(secs(row.timeout_secs)),
        _ => Schedule::parse_stored(&row.schedule, &row.tz).map_err(|e| e.to_string())?,
    };
    Ok(CheckRules {
        never_reported_by: never_reported_by(row, &schedule),
        schedule,
        grace: secs(row.grace_secs),
        max_runtime: row.max_runtime_secs.map(secs),
        manual_resume: row.manual_resume,
        post_only: post_only(row),
        anomaly: anomaly_rules(row),
        watch: watch_patterns(row),
        notify_late: row.notify_late,
    })
}

/// keepwatch's `watch` list (regular expressions for `keepwatch run`), kept in `extra`.
pub fn watch_patterns(row: &CheckRow) -> Vec<String> {
    if row.extra == "{}" {
        return Vec::new();
    }
    serde_json::from_str::<serde_json::Value>(&row.extra)
        .ok()
        .and_then(|extra| serde_json::from_value(extra["watch"].clone()).ok())
        .unwrap_or_default()
}

/// What makes a check's `never_reported_by` its own: its creation, when it asked for it.
fn rules_never_reported(row: &CheckRow) -> Option<Timestamp> {
    row.extra
        .contains("alert_if_never_pinged")
        .then_some(row.created_at)
}

/// The first expected time plus grace of a check that asked to be alerted if it never
/// pings (`alert_if_never_pinged` in `extra`: set through the v3 API, and for checks declared
/// in an on-call file).
fn never_reported_by(row: &CheckRow, schedule: &Schedule) -> Option<DateTime<Utc>> {
    if !row.extra.contains("alert_if_never_pinged") {
        return None;
    }
    let extra: serde_json::Value = serde_json::from_str(&row.extra).ok()?;
    if extra["alert_if_never_pinged"] != true {
        return None;
    }
    Some(schedule.next_after(row.created_at.to_datetime())? + secs(row.grace_secs))
}

/// `methods: "POST"` in the Healthchecks fields kept in `extra`.
fn post_only(row: &CheckRow) -> bool {
    row.extra != "{}"
        && serde_json::from_str::<serde_json::Value>(&row.extra)
            .is_ok_and(|extra| extra["methods"] == "POST")
}

/// keepwatch's `anomaly_volume_pct`, `anomaly_duration_pct` and `anomaly_short_pct`, kept in
/// `extra`.
pub fn anomaly_rules(row: &CheckRow) -> AnomalyRules {
    let mut rules = AnomalyRules::default();
    if row.extra == "{}" {
        return rules;
    }
    let Ok(extra) = serde_json::from_str::<serde_json::Value>(&row.extra) else {
        return rules;
    };
    let pct = |key: &str| extra[key].as_u64().and_then(|v| u32::try_from(v).ok());
    if let Some(v) = pct("anomaly_volume_pct") {
        rules.volume_below_pct = v;
    }
    if let Some(v) = pct("anomaly_duration_pct") {
        rules.duration_above_pct = v;
    }
    if let Some(v) = pct("anomaly_short_pct") {
        rules.duration_below_pct = v;
    }
    rules
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

/// Shares one `CheckRules` between checks with identical settings (most fleets have a
/// handful of distinct schedules), and parses each distinct schedule once.
#[derive(Default)]
pub struct RulesInterner {
    by_key: rustc_hash::FxHashMap<RulesKey, Arc<CheckRules>>,
}

/// What makes up a check's rules: for periods the timeout, for schedules the expression and
/// zone (left empty for periods, so building the key allocates nothing for them), then grace,
/// max runtime, manual resume, POST only, anomaly thresholds, watch patterns, the
/// creation of a check that asked for `never_reported`, and `notify_late`.
type RulesKey = (
    i64,
    String,
    String,
    i64,
    Option<i64>,
    bool,
    bool,
    AnomalyRules,
    Vec<String>,
    Option<Timestamp>,
    bool,
);

impl RulesInterner {
    pub fn get(&mut self, row: &CheckRow) -> Result<Arc<CheckRules>, String> {
        let (timeout, schedule, tz) = match row.kind.as_str() {
            "simple" => (row.timeout_secs, String::new(), String::new()),
            _ => (0, row.schedule.clone(), row.tz.clone()),
        };
        let key = (
            timeout,
            schedule,
            tz,
            row.grace_secs,
            row.max_runtime_secs,
            row.manual_resume,
            post_only(row),
            anomaly_rules(row),
            watch_patterns(row),
            // A check that waits for its first ping has rules of its own (its first time).
            rules_never_reported(row),
            row.notify_late,
        );
        if let Some(rules) = self.by_key.get(&key) {
            return Ok(rules.clone());
        }
        let rules = Arc::new(rules_from_row(row)?);
        self.by_key.insert(key, rules.clone());
        Ok(rules)
    }
}

pub fn state_from_row(row: &StateRow) -> CheckState {
    CheckState {
        status: row.status,
        down_reason: row.down_reason.as_deref().and_then(|r| match r {
            "missed" => Some(DownReason::Missed),
            "failed" => Some(DownReason::Failed),
            "hung" => Some(DownReason::Hung),
            "never_reported" => Some(DownReason::NeverReported),
            "late" => Some(DownReason::Late),
            _ => None,
        }),
        last_ping: row.last_ping.map(Timestamp::to_datetime),
        n_pings: row.n_pings,
        // Most checks have no open run: skip the JSON parser for them (start-up time).
        open_runs: match row.open_runs.as_str() {
            "[]" => Vec::new(),
            json => serde_json::from_str::<Vec<OpenRun>>(json).unwrap_or_default(),
        },
        last_duration: row
            .last_duration_ms
            .map(|ms| Duration::from_millis(ms.max(0) as u64)),
        history: match row.history.as_str() {
            "{}" | "" => RunHistory::default(),
            json => serde_json::from_str(json).unwrap_or_default(),
        },
    }
}

pub fn state_to_row(state: &CheckState, last_seq: Option<i64>, checkpoint_seq: i64) -> StateRow {
    StateRow {
        status: state.status,
        down_reason: state.down_reason.map(|r| {
            match r {
                DownReason::Missed => "missed",
                DownReason::Failed => "failed",
                DownReason::Hung => "hung",
                DownReason::NeverReported => "never_reported",
                DownReason::Late => "late",
            }
            .to_string()
        }),
        last_ping: state.last_ping.map(Timestamp::from),
        n_pings: state.n_pings,
        last_duration_ms: state.last_duration.map(|d| d.as_millis() as i64),
        open_runs: serde_json::to_string(&state.open_runs).unwrap_or_else(|_| "[]".into()),
        history: serde_json::to_string(&state.history).unwrap_or_else(|_| "{}".into()),
        last_seq,
        checkpoint_seq,
    }
}

/// The next deadline of a check.
pub fn deadline_of(check: &LiveCheck) -> Option<Timestamp> {
    check.state.next_deadline(&check.rules).map(Timestamp::from)
}
