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
/// How far back missed shift check-ins count.
const MISSED_CHECKINS_SINCE: TimeDelta = TimeDelta::days(30);

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
        scan_skipped: history.scan_skipped.clone(),
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
    let missed_checkins = store
        .missed_checkins(project_id, (now - MISSED_CHECKINS_SINCE).into())
        .await?
        .into_iter()
        .map(|c| (c.person, c.schedule, c.shift_start.to_datetime()))
        .collect();
    Ok((
        checks,
        History {
            verified: Some(verified),
            contacts: tally(&pages),
            channels: tally(&channels),
            missed_checkins,
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

/// Who resolves an audit alert whose finding a later audit no longer reports.
pub const RESOLVED_BY: &str = "audit (finding gone)";

/// How often each project is audited when nothing is applied.
pub const AUDIT_EVERY: TimeDelta = TimeDelta::days(1);

/// The dedup key of the alert an error-level finding raises: one open alert per finding,
/// however many audits find it again.
pub fn alert_key(finding: &keepwatch_core::audit::Finding) -> String {
    format!("audit:{}:{}", finding.id, finding.objects.join(","))
}

/// The service an error-level finding's alert goes to: the service it names, else the one an
/// alert of no check would go to (`default`, or the only service).
fn service_of(config: &OnCall, finding: &keepwatch_core::audit::Finding) -> String {
    finding
        .objects
        .iter()
        .filter_map(|o| o.strip_prefix("service:"))
        .find(|s| config.services.contains_key(*s))
        .map(str::to_string)
        .unwrap_or_else(|| keepwatch_core::alert::routing::service_for(Some(config), "", None))
}

/// The watcher watched: audits each project with an applied configuration daily and after
/// every apply, on the engine's clock, and raises an alert for each error-level finding; the
/// alert resolves itself at the first audit that no longer reports the finding.
pub struct Auditor {
    store: Store,
    clock: std::sync::Arc<dyn crate::Clock>,
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    pager_wake: std::sync::Arc<tokio::sync::Notify>,
    lease: std::sync::Arc<dyn crate::lease::Lease>,
    rounds: crate::rounds::Rounds,
    /// Per project: the applied version audited last, and when.
    done: std::collections::HashMap<i64, (keepwatch_store::Timestamp, DateTime<Utc>)>,
}

impl Auditor {
    pub fn new(
        store: Store,
        clock: std::sync::Arc<dyn crate::Clock>,
        wake: std::sync::Arc<tokio::sync::Notify>,
        pager_wake: std::sync::Arc<tokio::sync::Notify>,
        lease: std::sync::Arc<dyn crate::lease::Lease>,
    ) -> Auditor {
        Auditor {
            store,
            clock,
            wake,
            pager_wake,
            lease,
            rounds: crate::rounds::Rounds::new(),
            done: std::collections::HashMap::new(),
        }
    }

    pub fn rounds(&self) -> tokio::sync::watch::Receiver<crate::rounds::Round> {
        self.rounds.watch()
    }

    pub async fn run(mut self) {
        loop {
            let round_start = self.clock.now();
            self.rounds.start();
            let mut idle = true;
            if self.lease.holds(crate::lease::Work::Audit) {
                match self.step().await {
                    Ok(audited) => idle = audited == 0,
                    Err(e) => tracing::warn!(error = %e, "audit round failed"),
                }
            }
            self.rounds.finish(idle);
            // The next audit falls due a day after the last (an apply wakes it sooner); an
            // hour at most, for projects applied for the first time elsewhere.
            let next = self
                .done
                .values()
                .map(|(_, at)| *at + AUDIT_EVERY)
                .min()
                .unwrap_or(round_start + TimeDelta::hours(1))
                .min(round_start + TimeDelta::hours(1));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.clock.sleep_until(next) => {}
            }
        }
    }

    /// Audits the projects that are due; returns how many.
    pub async fn step(&mut self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut audited = 0;
        for (project_id, version) in self.store.oncall_versions().await? {
            let due = self
                .done
                .get(&project_id)
                .is_none_or(|(v, at)| *v != version || now - *at >= AUDIT_EVERY);
            if !due {
                continue;
            }
            self.done.insert(project_id, (version, now));
            let Some(applied) = self.store.oncall(project_id).await? else {
                continue;
            };
            if applied.config.is_err() {
                continue;
            }
            let (checks, history) = gather(&self.store, project_id, now).await?;
            let for_audit = applied.clone();
            let report = tokio::task::spawn_blocking(move || {
                let config = for_audit.config.as_ref().ok()?;
                Some(audit::audit(
                    config,
                    &checks,
                    &history,
                    now,
                    &Settings::default(),
                ))
            })
            .await
            .map_err(|e| StoreError::task(format!("audit failed: {e}")))?;
            let (Some(report), Ok(config)) = (report, applied.config.as_ref()) else {
                continue;
            };
            audited += 1;
            tracing::info!(
                project_id,
                errors = report.errors,
                warnings = report.warnings,
                "audit"
            );
            let errors: Vec<&keepwatch_core::audit::Finding> = report
                .findings
                .iter()
                .filter(|f| f.severity == keepwatch_core::audit::Severity::Error)
                .collect();
            // The alerts of findings this audit no longer reports (fixed, accepted, now a
            // warning) resolve themselves, and the people paged hear of it.
            let keys: std::collections::HashSet<String> =
                errors.iter().map(|f| alert_key(f)).collect();
            let mut resolved = false;
            for open in self
                .store
                .list_alerts(project_id, Some("open"), 500)
                .await?
                .into_iter()
                .filter(|a| a.source == keepwatch_core::alert::AlertSource::Audit)
                .filter(|a| !keys.contains(&a.dedup_key))
            {
                self.store
                    .resolve_alert(open.id, RESOLVED_BY, now.into())
                    .await?;
                tracing::info!(project_id, alert = open.id, key = %open.dedup_key, "audit finding gone: alert resolved");
                resolved = true;
            }
            for finding in errors {
                let service = service_of(config, finding);
                let key = alert_key(finding);
                let summary = format!("audit: {}", finding.summary);
                let details = serde_json::to_string(finding).unwrap_or_default();
                let alert = keepwatch_store::NewAlert {
                    project_id,
                    service: &service,
                    dedup_key: &key,
                    summary: &summary,
                    source: keepwatch_core::alert::AlertSource::Audit,
                    details: &details,
                };
                let urgency = keepwatch_core::alert::routing::urgency(Some(config), &service, now);
                self.store
                    .trigger_alert(&alert, urgency, now.into())
                    .await?;
            }
            if report.errors > 0 || resolved {
                self.pager_wake.notify_one();
            }
        }
        Ok(audited)
    }
}
