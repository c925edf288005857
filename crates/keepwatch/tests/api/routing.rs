//! `keepwatch drill` and the engine route alike: the same on-call file and alerts, once through
//! the drill (the binary, its printed timeline) and once through the real engine on a manual
//! clock with a recording transport, moved on minute by minute; the two timelines must agree
//! entry by entry (time, kind, who), maintenance windows and an unrouted alert included.

use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, DurationRound, NaiveDateTime, TimeDelta, Utc};
use keepwatch_engine::channels::RecordingTransport;
use keepwatch_engine::{Engine, EngineConfig, ManualClock};
use keepwatch_store::Store;
use keepwatch_store::testing::PgDatabase;

use crate::helpers::{engine_ping, eventually};

const EXAMPLE: &str = include_str!("../../../../examples/oncall.toml");

/// Billing (the example's only service) is in maintenance for the first 12 minutes of the
/// third scenario.
const WINDOW: &str = "[[maintenance]]\nservice = \"billing\"\n\
     start = \"2026-11-28T10:00:00Z\"\nend = \"2026-11-28T10:12:00Z\"\n";

/// `(time, kind, who)`: one entry of an alert's log, or of a drill's timeline.
type Entry = (DateTime<Utc>, String, String);

enum Alert {
    /// From the events API, on the example's service.
    Billing,
    /// A check of service `payroll`, which the file does not have: unrouted.
    Payroll,
}

struct Scenario {
    what: &'static str,
    at: &'static str,
    alert: Alert,
    /// How long both follow the alert.
    minutes: i64,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        what: "Friday 14:00 in Denver: high, two steps, a repeat and the last resort",
        at: "2026-11-27T21:00:00Z",
        alert: Alert::Billing,
        minutes: 90,
    },
    Scenario {
        what: "Saturday 00:00 in Denver: low, raised after 10 minutes",
        at: "2026-11-28T07:00:00Z",
        alert: Alert::Billing,
        minutes: 90,
    },
    Scenario {
        what: "Saturday 03:00 in Denver, in maintenance until 03:12",
        at: "2026-11-28T10:00:00Z",
        alert: Alert::Billing,
        minutes: 40,
    },
    Scenario {
        what: "a check whose service the file does not have",
        at: "2026-11-28T12:00:00Z",
        alert: Alert::Payroll,
        minutes: 10,
    },
];

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// The timeline `keepwatch drill` prints, as entries: `+0:10  Sat 2026-11-28 00:10  <what>`,
/// times in UTC (the drills are asked in UTC).
fn drill(file: &std::path::Path, args: &[&str]) -> Vec<Entry> {
    let output = Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .arg("drill")
        .arg("-f")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut entries = Vec::new();
    for line in out.lines() {
        if !line
            .get(..6)
            .is_some_and(|e| e.trim_start().starts_with('+'))
        {
            continue;
        }
        let at = NaiveDateTime::parse_from_str(&line[8..28], "%a %Y-%m-%d %H:%M")
            .unwrap()
            .and_utc();
        let what = line[30..].trim_start();
        let words: Vec<&str> = what.split(' ').collect();
        let (kind, who) = match words[..] {
            ["escalation", "step", ..] => ("escalation_step", String::new()),
            ["urgency", "raised", ..] => ("urgency_raised", String::new()),
            ["last", "resort"] => ("last_resort", String::new()),
            ["unrouted:", ..] => ("unrouted", String::new()),
            // A sent notification is logged by the dispatcher as `notified`.
            ["notify", person, "by", contact, ..] => {
                ("notified", format!("{person} via {contact}"))
            }
            ["suppressed", person, "by", contact, ..] => {
                ("suppressed", format!("{person} via {contact}"))
            }
            ["NOBODY", "REACHED:", ..] => {
                let who = what["NOBODY REACHED: ".len()..].split(" has no ").next();
                ("unreached", who.unwrap().to_string())
            }
            _ => panic!("a drill line this test does not know: {line}"),
        };
        entries.push((at, kind.to_string(), who));
    }
    entries
}

/// At the same minute the engine logs the pager's entries before the dispatcher's and sends
/// in its claim order, while a drill lists a step before what it causes: both are compared in
/// one order.
fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort();
    entries
}

async fn drill_and_engine_agree(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oncall.toml");
    let text = format!("{EXAMPLE}\n{WINDOW}");
    std::fs::write(&file, &text).unwrap();

    let start = utc(SCENARIOS[0].at) - TimeDelta::hours(1);
    let store = Store::open(database_url, dir.path()).await.unwrap();
    let project = store.create_project("default", start.into()).await.unwrap();
    keepwatch_server::api::oncall_config::apply_config(
        &store, None, project.id, &text, false, "test", start,
    )
    .await
    .unwrap()
    .unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let transport = Arc::new(RecordingTransport::default());
    let (engine, _tasks) = Engine::start_with(
        store.clone(),
        clock.clone(),
        EngineConfig::default(),
        transport.clone(),
    )
    .await
    .unwrap();

    let mut notified = 0;
    for scenario in &SCENARIOS {
        let at = utc(scenario.at);
        let (alert, drill_args) = match scenario.alert {
            Alert::Billing => {
                clock.set(at);
                let trigger = keepwatch_store::NewAlert {
                    project_id: project.id,
                    service: "billing",
                    dedup_key: scenario.at,
                    summary: scenario.what,
                    source: keepwatch_core::alert::AlertSource::Events,
                    details: "{}",
                };
                let (alert, _) = engine.trigger(&trigger).await.unwrap();
                (alert, vec!["--service".to_string(), "billing".to_string()])
            }
            Alert::Payroll => {
                // Pinged two minutes before: down (a minute late, a minute of grace) at `at`.
                clock.set(at - TimeDelta::minutes(2));
                let mut row =
                    keepwatch_server::api::checks::new_check_row(project.id, engine.now());
                row.service = Some("payroll".into());
                row.timeout_secs = 60;
                row.grace_secs = 60;
                let check = engine.create_check(row).await.unwrap();
                engine
                    .ping(engine_ping(check.uuid.parse().unwrap()))
                    .await
                    .unwrap();
                engine.settled().await;
                clock.set(at);
                let dedup = format!("check:{}", check.uuid);
                let alert = eventually(|| {
                    let (store, dedup) = (store.clone(), dedup.clone());
                    async move { store.open_alert_by_dedup(project.id, &dedup).await.unwrap() }
                })
                .await;
                let args = ["--check", &check.uuid, "--service", "payroll"];
                (alert, args.map(str::to_string).to_vec())
            }
        };
        assert_eq!(alert.triggered_at.to_datetime(), at, "{}", scenario.what);
        // The engine, minute by minute: each minute's round and sends finish before the next.
        for _ in 0..scenario.minutes {
            engine.settled().await;
            clock.advance(TimeDelta::minutes(1));
        }
        // Acknowledged at the end of the drill's horizon: nothing more is sent for it.
        engine.acknowledge(alert.id, "the test").await.unwrap();
        let log = store.alert_log(alert.id).await.unwrap();
        let recorded: Vec<Entry> = log
            .into_iter()
            .filter(|entry| !["triggered", "acknowledged"].contains(&entry.kind.as_str()))
            // To the minute, as drills print: the dispatcher logs sends of one round a
            // microsecond apart.
            .map(|entry| {
                let at = entry.at.to_datetime().duration_trunc(TimeDelta::minutes(1));
                (at.unwrap(), entry.kind, entry.who)
            })
            .collect();

        let mut args = drill_args;
        let horizon = format!("{}m", scenario.minutes);
        args.extend(["--at", scenario.at, "--horizon", &horizon].map(str::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let drilled = drill(&file, &args);
        assert_eq!(
            sorted(recorded.clone()),
            sorted(drilled.clone()),
            "{}: the engine's log, then the drill",
            scenario.what
        );

        // The scenario shows what it is about.
        let kinds: Vec<&str> = drilled.iter().map(|(_, kind, _)| kind.as_str()).collect();
        let has = |kind: &str| kinds.contains(&kind);
        match scenario.at {
            "2026-11-27T21:00:00Z" => {
                assert!(has("last_resort") && !has("urgency_raised"), "{kinds:?}");
                let steps = kinds.iter().filter(|k| **k == "escalation_step").count();
                assert_eq!(steps, 4, "two steps, twice");
            }
            "2026-11-28T07:00:00Z" => assert!(has("urgency_raised"), "{kinds:?}"),
            "2026-11-28T10:00:00Z" => assert!(has("suppressed") && has("notified"), "{kinds:?}"),
            _ => assert_eq!(kinds, ["unrouted"]),
        }
        notified += kinds.iter().filter(|k| **k == "notified").count();
    }
    // Every notification logged went through the transport, and nothing else did.
    engine.settled().await;
    assert_eq!(transport.sent().len(), notified);
}

#[tokio::test]
async fn the_drill_and_the_engine_agree_entry_by_entry_on_sqlite() {
    drill_and_engine_agree(None).await;
}

#[tokio::test]
async fn the_drill_and_the_engine_agree_entry_by_entry_on_postgres() {
    let db = PgDatabase::create().await;
    drill_and_engine_agree(Some(&db.url)).await;
}
