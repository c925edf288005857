//! The audit of a project as the server sees it: [`keepwatch_core::audit`] over the applied
//! configuration, the project's checks (schedules, pings, recent run durations) and what the
//! store recorded (verified contacts, delivery outcomes of the last 7 days, missed shift
//! check-ins). The API, `keepwatch apply` and the daily audit loop all call [`audit_project`].

use chrono::{DateTime, TimeDelta, Utc};
use keepwatch_core::audit::{self, CheckFacts, History, Report, Settings};
use keepwatch_core::check::RunHistory;
use keepwatch_core::oncall::config::OnCall;
use keepwatch_store::{CheckRow, Store, StoreError};

/// How far back delivery outcomes count.
const DELIVERIES_SINCE: TimeDelta = TimeDelta::days(7);

/// What the audit knows of a stored check; `None` if its schedule no longer parses.
pub fn check_facts(row: &CheckRow) -> Option<CheckFacts> {
    let rules = crate::live::rules_from_row(row).ok()?;
    let history: RunHistory = serde_json::from_str(&row.state.history).unwrap_or_default();
    Some(CheckFacts {
        id: row.uuid.clone(),
        name: if row.name.is_empty() {
            row.uuid.clone()
        } else {
            row.name.clone()
        },
        service: row.service.clone(),
        schedule: rules.schedule,
        cron: row.kind != "simple",
        grace: TimeDelta::from_std(rules.grace).unwrap_or_default(),
        max_runtime: rules.max_runtime.and_then(|d| TimeDelta::from_std(d).ok()),
        last_ping: row.state.last_ping.map(|t| t.to_datetime()),
        created_at: row.created_at.to_datetime(),
        recent_durations: history
            .durations_ms
            .iter()
            .map(|ms| TimeDelta::milliseconds(*ms as i64))
            .collect(),
    })
}

/// The project's checks and history, for the audit.
pub async fn gather(
    store: &Store,
    project_id: i64,
    now: DateTime<Utc>,
) -> Result<(Vec<CheckFacts>, History), StoreError> {
    let checks = store
        .list_checks(project_id)
        .await?
        .iter()
        .filter_map(check_facts)
        .collect();
    let verified = store
        .verified_contacts(project_id)
        .await?
        .into_iter()
        .map(|(person, contact, _)| (person, contact))
        .collect();
    let (pages, channels) = store
        .delivery_outcomes(project_id, (now - DELIVERIES_SINCE).into())
        .await?;
    let tally = |rows: &[keepwatch_store::DeliveryOutcome]| {
        audit::tally(rows.iter().map(|r| {
            (
                r.name.as_str(),
                r.state == "failed",
                r.last_error.as_deref(),
            )
        }))
    };
    Ok((
        checks,
        History {
            verified: Some(verified),
            contacts: tally(&pages),
            channels: tally(&channels),
            missed_checkins: Vec::new(),
        },
    ))
}

/// Audits a project's applied configuration `config` at `now`.
pub async fn audit_project(
    store: &Store,
    project_id: i64,
    config: &OnCall,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Result<Report, StoreError> {
    let (checks, history) = gather(store, project_id, now).await?;
    Ok(audit::audit(config, &checks, &history, now, settings))
}
