//! Reads from the store what [`super::evidence`] needs to explain an alert or a check event:
//! the check (its name, time zone, grace and run history), its last success and last output,
//! and the project's on-call configuration. The I/O half; the words are made in `evidence`.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use keepwatch_core::alert::AlertSource;
use keepwatch_core::check::{RunHistory, RunSnapshot};
use keepwatch_core::oncall::config::OnCall;
use keepwatch_store::{AlertRow, CheckRow, Store, StoreError};
use serde::Serialize;
use serde_json::Value;

use super::evidence::{self, CheckFacts, Evidence, Outlook};

/// How many of a check's latest pings are searched for its last success and output.
const PINGS_SEARCHED: i64 = 50;

/// An alert, explained: what it is about and what happens next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explained {
    /// The check's name, when the alert comes from one.
    pub check: Option<String>,
    pub evidence: Evidence,
    pub outlook: Outlook,
}

/// Explains an alert as of `now`.
pub async fn alert(
    store: &Store,
    alert: &AlertRow,
    now: DateTime<Utc>,
) -> Result<Explained, StoreError> {
    let applied = store.oncall(alert.project_id).await?;
    let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
    alert_under(store, alert, config, now).await
}

/// Explains the alerts of one message (a page, or a summary of several) as of `now`: the
/// project's on-call configuration is read once, not once per alert.
pub async fn alerts(
    store: &Store,
    alerts: &[AlertRow],
    now: DateTime<Utc>,
) -> Result<Vec<Explained>, StoreError> {
    let mut applied = None;
    let mut explained = Vec::with_capacity(alerts.len());
    for alert in alerts {
        if applied
            .as_ref()
            .is_none_or(|(project, _)| *project != alert.project_id)
        {
            applied = Some((alert.project_id, store.oncall(alert.project_id).await?));
        }
        let config = applied
            .as_ref()
            .and_then(|(_, a)| a.as_deref())
            .and_then(|a| a.config.as_ref().ok());
        explained.push(alert_under(store, alert, config, now).await?);
    }
    Ok(explained)
}

/// Explains an alert under an on-call configuration.
async fn alert_under(
    store: &Store,
    alert: &AlertRow,
    config: Option<&OnCall>,
    now: DateTime<Utc>,
) -> Result<Explained, StoreError> {
    let details: Value = serde_json::from_str(&alert.details).unwrap_or_default();
    let check = match (alert.source, details["check_uuid"].as_str()) {
        (AlertSource::Check, Some(uuid)) => store.check_by_uuid(uuid).await?,
        _ => None,
    };
    let (name, evidence, tz) = match &check {
        Some(row) => {
            let kind = details["kind"].as_str().unwrap_or_default();
            let facts = check_facts(store, row, &details).await?;
            let evidence = evidence::explain(kind, &details, &facts, now);
            (Some(facts.name), evidence, facts.tz)
        }
        None => (
            None,
            evidence::explain_other(&alert.summary, &details),
            Tz::UTC,
        ),
    };
    let check_uuid = check.as_ref().map(|c| c.uuid.as_str());
    let outlook = evidence::outlook(config, alert, check_uuid, tz, now);
    Ok(Explained {
        check: name,
        evidence,
        outlook,
    })
}

/// Explains a check event (`kind`, its JSON payload) of `check` as of `now`.
pub async fn event(
    store: &Store,
    check: &CheckRow,
    kind: &str,
    payload: &Value,
    now: DateTime<Utc>,
) -> Result<(CheckFacts, Evidence), StoreError> {
    let facts = check_facts(store, check, payload).await?;
    let evidence = evidence::explain(kind, payload, &facts, now);
    Ok((facts, evidence))
}

/// The check's facts as of its event (`payload["at"]`): the last success and the last
/// output at or before it.
pub async fn check_facts(
    store: &Store,
    check: &CheckRow,
    payload: &Value,
) -> Result<CheckFacts, StoreError> {
    let at = payload["at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(DateTime::<Utc>::MAX_UTC, |t| t.to_utc());
    let pings = store
        .list_pings(check.id, check.state.last_seq, PINGS_SEARCHED)
        .await?;
    // A ping a moment after the event (its own finish ping) still belongs to it.
    let until = at + TimeDelta::seconds(1);
    let before: Vec<_> = pings
        .iter()
        .filter(|p| p.at.to_datetime() <= until)
        .collect();
    let last_success = before
        .iter()
        .find(|p| matches!(p.kind.as_str(), "success" | "exit:0"))
        .map(|p| p.at.to_datetime());
    let host = before.iter().find_map(|p| p.host.clone());
    // The last output: the newest body that is not a hung run's snapshot (the runner sends
    // those as log pings; they have their own place in the page) nor a start ping's (the
    // runner's report of other copies, which the evidence names; the job had no output yet).
    let mut output = None;
    for with_body in before
        .iter()
        .filter(|p| p.body.is_some() && p.kind != "start")
        .take(3)
    {
        let ping = store
            .ping(check.id, check.state.last_seq, PINGS_SEARCHED, with_body.n)
            .await?;
        let Some(body) = ping.and_then(|p| p.body) else {
            continue;
        };
        if with_body.kind == "log" && serde_json::from_slice::<RunSnapshot>(&body).is_ok() {
            continue;
        }
        output = Some(String::from_utf8_lossy(&body).into_owned());
        break;
    }
    let history: RunHistory = serde_json::from_str(&check.state.history).unwrap_or_default();
    let durations: Vec<i64> = history.durations_ms.iter().map(|d| *d as i64).collect();
    let usual_duration =
        median(&durations).map(|ms| (TimeDelta::milliseconds(ms), durations.len()));
    Ok(CheckFacts {
        name: if check.name.is_empty() {
            check.uuid.clone()
        } else {
            check.name.clone()
        },
        tz: check.tz.parse().unwrap_or(Tz::UTC),
        grace: TimeDelta::seconds(check.grace_secs),
        last_success,
        usual_duration,
        volume_runs: history.volumes.len(),
        output,
        host,
    })
}

fn median(values: &[i64]) -> Option<i64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2),
    }
}

impl Explained {
    /// The sentence with the check's name before it: `nightly: missed its 00:00 run (…)`.
    pub fn sentence(&self) -> String {
        match &self.check {
            Some(name) => format!("{name}: {}", self.evidence.sentence),
            None => self.evidence.sentence.clone(),
        }
    }
}
