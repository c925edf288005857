//! Why a message was sent, in words: what happened (one sentence per event kind, from the
//! check event's payload and the check's recent history), the host, the last lines of
//! output, a hung run's snapshot and watched processes when the runner sent them, the
//! urgency and why, and what happens next if nobody acknowledges.
//!
//! Everything here is pure: the facts come in (gathered from the store by
//! [`super::gather`]), words come out. Every format (email, chat, push, webhook) and
//! `keepwatch alert show` use the same [`Evidence`] and [`Outlook`], so they cannot disagree.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use keepwatch_core::alert::AlertStatus;
use keepwatch_core::alert::paging::{Page, Urgency, UrgencyRule};
use keepwatch_core::alert::routing::{self, Routed};
use keepwatch_core::oncall::config::OnCall;
use keepwatch_store::AlertRow;
use serde::Serialize;
use serde_json::Value;

/// A message shows this many lines of output at most (the last ones).
pub const OUTPUT_LINES: usize = 10;

/// What is known about the check an event is about, beside the event itself.
#[derive(Debug, Clone)]
pub struct CheckFacts {
    pub name: String,
    /// The check's time zone (UTC for checks without one): times are written in it.
    pub tz: Tz,
    pub grace: TimeDelta,
    /// The last successful ping at or before the event.
    pub last_success: Option<DateTime<Utc>>,
    /// The median duration of its recent successful runs, and how many there are.
    pub usual_duration: Option<(TimeDelta, usize)>,
    /// How many recent runs the volume median is of.
    pub volume_runs: usize,
    /// The body of the last ping that carried output, at or before the event.
    pub output: Option<String>,
    /// The host of the last ping that named one, at or before the event (a failure reported
    /// without a start has no run to name it).
    pub host: Option<String>,
}

/// What happened, in words, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Short, for a subject: `hung for 1 h 02 min`.
    pub headline: String,
    /// One sentence: `hung: running for 1 h 02 min, usually 5 min; pid 21507 on web1`.
    pub sentence: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The last lines of output (at most [`OUTPUT_LINES`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    /// A hung run's snapshot: one line, and the whole of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
    /// Processes matching the run's watch patterns, one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub summary: String,
    pub full: String,
}

/// An alert's urgency, why it is that, and what happens next if nobody acknowledges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outlook {
    pub urgency: Urgency,
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The evidence of a check event (`kind`, its JSON `payload`) as of `now`.
pub fn explain(kind: &str, payload: &Value, check: &CheckFacts, now: DateTime<Utc>) -> Evidence {
    let tz = check.tz;
    let at = time(&payload["at"]).unwrap_or(now);
    let run = &payload["run"];
    let other = &payload["other_run"];
    let (headline, sentence) = match kind {
        "down" => {
            let expected = (at - check.grace).with_timezone(&tz);
            let last = match check.last_success {
                Some(t) => format!(
                    "last success {}, {} ago",
                    t.with_timezone(&tz).format("%a %H:%M"),
                    span(at - t)
                ),
                None => "no successful run yet".into(),
            };
            let missed = format!("missed its {} run", expected.format("%H:%M"));
            (missed.clone(), format!("{missed} ({}); {last}", tz.name()))
        }
        "failed" => {
            let (failed, mut sentence) = match payload["exit_status"].as_u64() {
                Some(status) => {
                    let failed = format!("failed with exit status {status}");
                    (failed.clone(), failed)
                }
                None => ("failed".into(), "failed: the job reported a failure".into()),
            };
            if let Some(started) = time(&run["started_at"]) {
                sentence.push_str(&format!(" after {}", span(at - started)));
            }
            if let Some(process) = process(run) {
                sentence.push_str(&format!("; {process}"));
            }
            (failed, sentence)
        }
        "hung" => {
            let running = time(&run["started_at"]).map(|started| span(now - started));
            let running = running.unwrap_or_else(|| "past its max runtime".into());
            let mut sentence = format!("hung: running for {running}");
            if let Some((usual, _)) = check.usual_duration {
                sentence.push_str(&format!(", usually {}", span(usual)));
            }
            if let Some(process) = process(run) {
                sentence.push_str(&format!("; {process}"));
            }
            (format!("hung for {running}"), sentence)
        }
        "overlap" => {
            let mut copies = Vec::new();
            if let Some(started) = time(&other["started_at"]) {
                let who = process(other).unwrap_or_else(|| "a run without a pid".into());
                copies.push(format!(
                    "another run is still open since {}: {who}",
                    started.with_timezone(&tz).format("%H:%M")
                ));
            }
            for stray in payload["strays"].as_array().into_iter().flatten() {
                let since = time(&stray["started_at"])
                    .map(|t| format!(" since {}", t.with_timezone(&tz).format("%H:%M")))
                    .unwrap_or_default();
                copies.push(format!(
                    "another copy is running{since}: pid {} `{}`",
                    stray["pid"],
                    stray["cmdline"].as_str().unwrap_or("")
                ));
            }
            if copies.is_empty() {
                copies.push("another copy of the job is running".into());
            }
            let headline = match payload["strays"][0]["pid"].as_u64() {
                Some(pid) => format!("another copy is running (pid {pid})"),
                None => "another copy is running".into(),
            };
            (headline, format!("overlap: {}", copies.join("; ")))
        }
        "anomaly" if payload["anomaly"]["rule"] == "volume_missing" => {
            let runs = payload["anomaly"]["runs"].as_u64().unwrap_or(10);
            (
                "reported no volume".into(),
                format!("anomaly: the run reported no volume, where each of the last {runs} did"),
            )
        }
        "anomaly" => {
            let anomaly = &payload["anomaly"];
            let value = anomaly["value"].as_f64().unwrap_or_default();
            let median = anomaly["median"].as_f64().unwrap_or_default();
            let ms = |v: f64| span(TimeDelta::milliseconds(v as i64));
            let (did, usual, runs) = match anomaly["metric"].as_str() {
                Some("duration") => (
                    format!("took {}", ms(value)),
                    ms(median),
                    check.usual_duration.map_or(0, |(_, n)| n),
                ),
                _ => (
                    format!("processed {} events", number(value)),
                    number(median),
                    check.volume_runs,
                ),
            };
            // The runs the engine took the median over, when the event says.
            let runs = anomaly["runs"].as_u64().map_or(runs, |n| n as usize);
            let of = match runs {
                0 => "recent runs".to_string(),
                1 => "the last run".to_string(),
                n => format!("the last {n} runs"),
            };
            (
                format!("{did}, usually {usual}"),
                format!("anomaly: {did}, median of {of} {usual}"),
            )
        }
        "up" => ("back up".into(), "up: the check is back".into()),
        "late" => {
            // Dated at the grace start, which is when the ping was expected.
            let expected = at.with_timezone(&tz);
            let down_at = time(&payload["down_at"]).unwrap_or(at + check.grace);
            (
                format!("LATE, expected {}", expected.format("%H:%M")),
                format!(
                    "LATE (not down yet): expected at {} ({}); it counts as down at {} if no \
                     ping arrives",
                    expected.format("%a %H:%M"),
                    tz.name(),
                    down_at.with_timezone(&tz).format("%a %H:%M")
                ),
            )
        }
        "never_reported" => {
            let expected = (at - check.grace).with_timezone(&tz);
            (
                "never reported".into(),
                format!(
                    "never reported: no ping since it was created; its first run was due {} ({})",
                    expected.format("%a %H:%M"),
                    tz.name()
                ),
            )
        }
        other => (other.to_string(), other.to_string()),
    };
    // An alert held back while a check it depends on was down, sent now: say why it is late,
    // in every message that tells it (channels and pages).
    let mut sentence = sentence;
    if let Some(note) = payload["released"]["reason"].as_str() {
        sentence.push_str(&format!(" ({note})"));
    }
    let host = run["host"].as_str().or(other["host"].as_str());
    let host = host.or(check.host.as_deref());
    let output = check.output.as_deref().map(last_lines).unwrap_or_default();
    Evidence {
        headline,
        sentence,
        host: host.map(str::to_string),
        output,
        snapshot: snapshot(&payload["snapshot"]),
        watch: watch(payload),
    }
}

/// The evidence of an alert that comes from no check (the events API, Alertmanager): its
/// summary, and the host its details name.
pub fn explain_other(summary: &str, details: &Value) -> Evidence {
    let host = ["host", "source", "instance"]
        .iter()
        .find_map(|key| details[key].as_str().or(details["labels"][key].as_str()));
    Evidence {
        headline: summary.to_string(),
        sentence: summary.to_string(),
        host: host.map(str::to_string),
        output: Vec::new(),
        snapshot: None,
        watch: Vec::new(),
    }
}

/// An alert's summary from its check event, with no history at hand (written once, at the
/// trigger): `nightly: hung for 1 h 02 min`.
pub fn summary(name: &str, kind: &str, payload: &Value) -> String {
    let facts = CheckFacts {
        name: name.to_string(),
        tz: Tz::UTC,
        grace: TimeDelta::zero(),
        last_success: None,
        usual_duration: None,
        volume_runs: 0,
        output: None,
        host: None,
    };
    let at = time(&payload["at"]).unwrap_or_default();
    let headline = match kind {
        // Without the check's grace and time zone the run's time would be wrong.
        "down" => "missed its run".to_string(),
        _ => explain(kind, payload, &facts, at).headline,
    };
    format!("{name}: {headline}")
}

/// The alert's urgency and why, and what happens next if nobody acknowledges: the next
/// notification of its timeline under `config` (times in `tz`).
pub fn outlook(
    config: Option<&OnCall>,
    alert: &AlertRow,
    check: Option<&str>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Outlook {
    let triggered_at = alert.triggered_at.to_datetime();
    let service = config.and_then(|c| c.services.get(&alert.service));
    let why = match (alert.raised_at, service) {
        (Some(raised), _) => format!(
            "raised from low after {} unacknowledged",
            span(raised.to_datetime() - triggered_at)
        ),
        (None, None) => format!("service `{}` has no urgency rule", alert.service),
        (None, Some(service)) => match &service.urgency {
            UrgencyRule::Always(urgency) => {
                format!("service `{}` is always {urgency}", alert.service)
            }
            UrgencyRule::SupportHours { tz, inside, .. } => {
                let side = if alert.triggered_urgency() == *inside {
                    "inside"
                } else {
                    "outside"
                };
                format!("triggered {side} support hours ({})", tz.name())
            }
        },
    };
    let next = (alert.status == AlertStatus::Triggered).then(|| {
        let routed = routing::Alert {
            service: &alert.service,
            check,
            triggered_at,
            urgency: alert.triggered_urgency(),
            // The next person paged is what a page says; renotifying a missed run is not.
            missed: None,
        };
        let at = |t: DateTime<Utc>| t.with_timezone(&tz).format("%H:%M %Z").to_string();
        let timeline = routing::timeline(config, &routed, now + TimeDelta::days(1));
        let next = timeline.iter().find_map(|entry| match entry {
            _ if entry.at() <= now => None,
            Routed::Notify(n) => Some(format!(
                "{} by {} at {} if not acknowledged",
                n.person,
                n.contact,
                at(n.at)
            )),
            Routed::Escalation(Page::UrgencyRaised { at: raise }) => Some(format!(
                "raised to high urgency at {} if not acknowledged",
                at(*raise)
            )),
            _ => None,
        });
        match (next, timeline.first()) {
            (Some(next), _) => next,
            (None, Some(Routed::Unrouted { .. })) => {
                format!(
                    "nobody is paged: service `{}` has no escalation policy",
                    alert.service
                )
            }
            (None, _) => "nobody else is paged".into(),
        }
    });
    Outlook {
        urgency: alert.urgency,
        why,
        next,
    }
}

/// A run's process, as far as it says: `pid 21507 on web1: /opt/jobs/nightly.sh --all`.
fn process(run: &Value) -> Option<String> {
    let pid = run["pid"].as_u64();
    let host = run["host"].as_str();
    let command = run["cmdline"].as_str().or(run["command"].as_str());
    let mut out = match (pid, host) {
        (Some(pid), Some(host)) => format!("pid {pid} on {host}"),
        (Some(pid), None) => format!("pid {pid}"),
        (None, Some(host)) => format!("on {host}"),
        (None, None) => return None,
    };
    if let Some(command) = command.filter(|c| !c.is_empty()) {
        out.push_str(&format!(": {command}"));
    }
    Some(out)
}

/// A hung run's snapshot as the runner sent it: a text, or a JSON object (its `summary`, or
/// how many processes it lists).
fn snapshot(value: &Value) -> Option<Snapshot> {
    match value {
        Value::Null => None,
        Value::String(text) if text.trim().is_empty() => None,
        Value::String(text) => Some(Snapshot {
            summary: text.lines().next().unwrap_or_default().to_string(),
            full: text.clone(),
        }),
        other => {
            let processes = ["processes", "tree"]
                .iter()
                .find_map(|key| other[key].as_array().map(Vec::len));
            let summary = match (other["summary"].as_str(), processes) {
                (Some(summary), _) => summary.to_string(),
                (None, Some(n)) => format!("{n} processes"),
                (None, None) => "attached".to_string(),
            };
            Some(Snapshot {
                summary,
                full: serde_json::to_string_pretty(other).unwrap_or_default(),
            })
        }
    }
}

/// The processes a run's watch patterns matched, one line each.
fn watch(payload: &Value) -> Vec<String> {
    let matches = payload["watch"]
        .as_array()
        .or(payload["watch_matches"].as_array());
    matches
        .into_iter()
        .flatten()
        .map(|m| match m {
            Value::String(text) => text.clone(),
            m => {
                let mut line = match m["pid"].as_u64() {
                    Some(pid) => format!("pid {pid} `{}`", m["cmdline"].as_str().unwrap_or("")),
                    None => m.to_string(),
                };
                if let Some(pattern) = m["pattern"].as_str() {
                    line.push_str(&format!(" matches `{pattern}`"));
                }
                line
            }
        })
        .collect()
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?;
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
}

/// The last [`OUTPUT_LINES`] non-empty lines of a run's output.
fn last_lines(output: &str) -> Vec<String> {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let skip = lines.len().saturating_sub(OUTPUT_LINES);
    lines[skip..].iter().map(|l| l.to_string()).collect()
}

/// A length of time as people say it: `45 s`, `5 min`, `1 h 02 min`, `2 days`.
pub fn span(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{mins} min"),
        3600..86_400 => format!("{hours} h {mins:02} min"),
        86_400..172_800 if hours > 0 => format!("1 day {hours} h"),
        86_400..172_800 => "1 day".into(),
        _ => format!("{days} days"),
    }
}

/// A count with thousands separators: `1,000`; a fraction keeps one decimal.
pub fn number(value: f64) -> String {
    if value.fract() != 0.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{}", value.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn nightly() -> CheckFacts {
        CheckFacts {
            name: "Nightly client events".into(),
            tz: "America/Denver".parse().unwrap(),
            grace: TimeDelta::minutes(1),
            // Thursday 00:04 in Denver.
            last_success: Some(utc("2026-03-05T07:04:00Z")),
            usual_duration: Some((TimeDelta::minutes(5), 10)),
            volume_runs: 10,
            output: Some("starting\n\nfetched 12 events\nwrote 12 rows  \n".into()),
            host: None,
        }
    }

    /// Each event kind's headline and sentence, exactly.
    #[test]
    fn every_event_kind_says_what_happened_in_a_sentence() {
        let check = nightly();
        let run = json!({"rid": null, "host": "web1", "pid": 21507, "started_at": "2026-03-07T06:58:00Z"});
        let cases = [
            (
                "down",
                json!({"kind": "down", "at": "2026-03-07T07:01:00Z"}),
                "2026-03-07T07:01:00Z",
                "missed its 00:00 run",
                "missed its 00:00 run (America/Denver); last success Thu 00:04, 1 day 23 h ago",
            ),
            (
                "failed",
                json!({"kind": "failed", "at": "2026-03-07T07:02:30Z", "run": run, "exit_status": 3}),
                "2026-03-07T07:02:30Z",
                "failed with exit status 3",
                "failed with exit status 3 after 4 min; pid 21507 on web1",
            ),
            (
                "hung",
                json!({"kind": "hung", "at": "2026-03-07T07:28:00Z", "run": run}),
                "2026-03-07T08:00:00Z",
                "hung for 1 h 02 min",
                "hung: running for 1 h 02 min, usually 5 min; pid 21507 on web1",
            ),
            (
                "overlap",
                json!({"kind": "overlap", "at": "2026-03-07T07:00:00Z", "run": run,
                       "strays": [{"pid": 26458, "started_at": "2026-03-07T06:58:00Z",
                                   "cmdline": "/bin/bash /opt/jobs/nightly.sh --all"}]}),
                "2026-03-07T07:00:00Z",
                "another copy is running (pid 26458)",
                "overlap: another copy is running since 23:58: pid 26458 `/bin/bash /opt/jobs/nightly.sh --all`",
            ),
            (
                "anomaly",
                json!({"kind": "anomaly", "at": "2026-03-07T07:05:00Z", "run": run,
                       "anomaly": {"metric": "volume", "value": 12.0, "median": 1000.0, "threshold_pct": 50}}),
                "2026-03-07T07:05:00Z",
                "processed 12 events, usually 1,000",
                "anomaly: processed 12 events, median of the last 10 runs 1,000",
            ),
            (
                "anomaly",
                json!({"kind": "anomaly", "at": "2026-03-07T07:05:00Z",
                       "anomaly": {"metric": "duration", "value": 2_700_000.0, "median": 300_000.0, "threshold_pct": 300}}),
                "2026-03-07T07:05:00Z",
                "took 45 min, usually 5 min",
                "anomaly: took 45 min, median of the last 10 runs 5 min",
            ),
            (
                "anomaly",
                json!({"kind": "anomaly", "at": "2026-03-07T07:05:00Z",
                       "anomaly": {"metric": "volume", "rule": "volume_missing", "median": 1000.0, "runs": 10}}),
                "2026-03-07T07:05:00Z",
                "reported no volume",
                "anomaly: the run reported no volume, where each of the last 10 did",
            ),
            (
                "never_reported",
                json!({"kind": "never_reported", "at": "2026-03-07T07:01:00Z"}),
                "2026-03-07T07:01:00Z",
                "never reported",
                "never reported: no ping since it was created; its first run was due Sat 00:00 (America/Denver)",
            ),
            (
                "late",
                json!({"kind": "late", "at": "2026-03-07T07:00:00Z", "down_at": "2026-03-07T07:01:00Z"}),
                "2026-03-07T07:00:00Z",
                "LATE, expected 00:00",
                "LATE (not down yet): expected at Sat 00:00 (America/Denver); it counts as down at Sat 00:01 if no ping arrives",
            ),
            (
                "up",
                json!({"kind": "up", "at": "2026-03-07T07:05:00Z"}),
                "2026-03-07T07:05:00Z",
                "back up",
                "up: the check is back",
            ),
        ];
        for (kind, payload, now, headline, sentence) in cases {
            let e = explain(kind, &payload, &check, utc(now));
            assert_eq!(
                (e.headline.as_str(), e.sentence.as_str()),
                (headline, sentence)
            );
        }
        let down = explain(
            "down",
            &json!({"at": "2026-03-07T07:01:00Z"}),
            &check,
            utc("2026-03-07T07:01:00Z"),
        );
        assert_eq!(
            down.output,
            ["starting", "fetched 12 events", "wrote 12 rows"]
        );
    }

    #[test]
    fn a_snapshot_and_watched_processes_are_shown_when_the_runner_sent_them() {
        let payload = json!({
            "at": "2026-03-07T07:28:00Z",
            "run": {"host": "web1", "pid": 21507, "started_at": "2026-03-07T06:58:00Z"},
            "snapshot": {"processes": [{"pid": 21507}, {"pid": 21508}], "holders": []},
            "watch": [{"pid": 26458, "cmdline": "rsync -a /data", "pattern": "rsync"}, "pid 9 `x`"],
        });
        let e = explain("hung", &payload, &nightly(), utc("2026-03-07T07:28:00Z"));
        let snapshot = e.snapshot.unwrap();
        assert_eq!(snapshot.summary, "2 processes");
        assert!(snapshot.full.contains("21508"), "{}", snapshot.full);
        assert_eq!(
            e.watch,
            ["pid 26458 `rsync -a /data` matches `rsync`", "pid 9 `x`"]
        );
        let text = json!({"snapshot": "D state: 21507 waits on flock\nmore"});
        assert_eq!(
            snapshot_of(&text),
            Some("D state: 21507 waits on flock".into())
        );
    }

    fn snapshot_of(payload: &Value) -> Option<String> {
        snapshot(&payload["snapshot"]).map(|s| s.summary)
    }

    #[test]
    fn spans_and_numbers_read_as_people_say_them() {
        let cases = [
            (45, "45 s"),
            (300, "5 min"),
            (3720, "1 h 02 min"),
            (90_000, "1 day 1 h"),
            (200_000, "2 days"),
        ];
        for (secs, text) in cases {
            assert_eq!(span(TimeDelta::seconds(secs)), text);
        }
        assert_eq!(number(1000.0), "1,000");
        assert_eq!(number(1234567.0), "1,234,567");
        assert_eq!(number(12.0), "12");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(
            summary("nightly", "down", &json!({})),
            "nightly: missed its run"
        );
        assert_eq!(
            summary("nightly", "failed", &json!({"exit_status": 2})),
            "nightly: failed with exit status 2"
        );
    }
}
