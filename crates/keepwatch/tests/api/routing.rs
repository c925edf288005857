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

/// Billing (the example's service) is in maintenance for the first 12 minutes of the
/// fourth scenario; more services for the others: `batch` is low and never raised, `ops`
/// pages Bob alone three times over, `nag` reminds the first step every 20 minutes. The
/// scenarios reach nobody at times on purpose: the audit's errors are accepted, so the
/// server raises no alert of its own.
const EXTRA: &str = "[[maintenance]]\nservice = \"billing\"\n\
     start = \"2026-11-28T10:00:00Z\"\nend = \"2026-11-28T10:12:00Z\"\n\
     [[policies]]\nname = \"single\"\nsteps = [{ targets = [\"user:bob\"], delay = 10 }]\nrepeat = 2\n\
     [[services]]\nname = \"batch\"\npolicy = \"billing\"\nurgency = \"low\"\nraise_after = 0\n\
     [[services]]\nname = \"ops\"\npolicy = \"single\"\nurgency = \"high\"\n\
     [[services]]\nname = \"nag\"\npolicy = \"single\"\nurgency = \"high\"\nremind_after = \"20m\"\n\
     [[accepted]]\nid = \"high-urgency-unreachable\"\nreason = \"scenarios\"\nuntil = \"2030-01-01\"\n\
     [[accepted]]\nid = \"schedule-gap\"\nreason = \"scenarios\"\nuntil = \"2030-01-01\"\n\
     [[accepted]]\nid = \"step-resolves-to-nobody\"\nreason = \"scenarios\"\nuntil = \"2030-01-01\"\n";

/// `(time, kind, who)`: one entry of an alert's log, or of a drill's timeline.
type Entry = (DateTime<Utc>, String, String);

enum Alert {
    /// From the events API, on this service.
    Service(&'static str),
    /// A check with this `service` of its own, down at the scenario's time.
    Check(&'static str),
}

struct Scenario {
    what: &'static str,
    at: &'static str,
    alert: Alert,
    /// How long both follow the alert.
    minutes: i64,
    /// Acknowledged after `minutes` (the drill's --ack-after), not just followed that long.
    ack: bool,
}

const fn scenario(
    what: &'static str,
    at: &'static str,
    alert: Alert,
    minutes: i64,
    ack: bool,
) -> Scenario {
    Scenario {
        what,
        at,
        alert,
        minutes,
        ack,
    }
}

/// In time order: the engine's clock only moves forward.
const SCENARIOS: [Scenario; 10] = [
    scenario(
        "Monday 07:00 in Denver, before the rotations start: both schedules reach nobody, the last resort is raised to high",
        "2026-11-23T14:00:00Z",
        Alert::Service("billing"),
        70,
        false,
    ),
    scenario(
        "Friday 14:00 in Denver: high, two steps, a repeat and the last resort",
        "2026-11-27T21:00:00Z",
        Alert::Service("billing"),
        90,
        false,
    ),
    scenario(
        "Saturday 00:00 in Denver: low, raised after 10 minutes",
        "2026-11-28T07:00:00Z",
        Alert::Service("billing"),
        90,
        false,
    ),
    scenario(
        "Saturday 03:00 in Denver, in maintenance until 03:12",
        "2026-11-28T10:00:00Z",
        Alert::Service("billing"),
        40,
        false,
    ),
    scenario(
        "a check whose service the file does not have",
        "2026-11-28T12:00:00Z",
        Alert::Check("payroll"),
        10,
        false,
    ),
    scenario(
        "Saturday 07:00 in Denver, acknowledged midway (20 minutes, in step 2)",
        "2026-11-28T14:00:00Z",
        Alert::Service("billing"),
        20,
        true,
    ),
    scenario(
        "low and never raised: the last resort has no low-urgency rule",
        "2026-11-28T16:00:00Z",
        Alert::Service("batch"),
        70,
        false,
    ),
    scenario(
        "one person, repeated twice, no last resort",
        "2026-11-28T18:00:00Z",
        Alert::Service("ops"),
        40,
        false,
    ),
    scenario(
        "a check of a service the file has, acknowledged after 15 minutes",
        "2026-11-28T20:00:00Z",
        Alert::Check("ops"),
        15,
        true,
    ),
    scenario(
        "reminders every 20 minutes after the policy ran out",
        "2026-11-28T22:00:00Z",
        Alert::Service("nag"),
        50,
        false,
    ),
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
            ["open", "for", ..] => ("reminder", String::new()),
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
    let text = format!("{EXAMPLE}\n{EXTRA}");
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
            Alert::Service(service) => {
                clock.set(at);
                let trigger = keepwatch_store::NewAlert {
                    project_id: project.id,
                    service,
                    dedup_key: scenario.at,
                    summary: scenario.what,
                    source: keepwatch_core::alert::AlertSource::Events,
                    details: "{}",
                };
                let (alert, _) = engine.trigger(&trigger).await.unwrap();
                (alert, vec!["--service".to_string(), service.to_string()])
            }
            Alert::Check(service) => {
                // Pinged 61 minutes before: down (an hour's period, a minute of grace) at
                // `at`, and not missing another run while the scenario lasts.
                clock.set(at - TimeDelta::minutes(61));
                let mut row =
                    keepwatch_server::api::checks::new_check_row(project.id, engine.now());
                row.service = Some(service.into());
                row.timeout_secs = 3600;
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
                let args = ["--check", &check.uuid, "--service", service];
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
        let span = format!("{}m", scenario.minutes);
        let follow = if scenario.ack {
            "--ack-after"
        } else {
            "--horizon"
        };
        args.extend(["--at", scenario.at, follow, &span].map(str::to_string));
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
        let count = |kind: &str| kinds.iter().filter(|k| **k == kind).count();
        match scenario.at {
            "2026-11-23T14:00:00Z" => {
                assert!(has("unreached") && has("urgency_raised"), "{kinds:?}");
                assert!(has("last_resort") && has("notified"), "{kinds:?}");
            }
            "2026-11-27T21:00:00Z" => {
                assert!(has("last_resort") && !has("urgency_raised"), "{kinds:?}");
                assert_eq!(count("escalation_step"), 4, "two steps, twice");
            }
            "2026-11-28T07:00:00Z" => assert!(has("urgency_raised"), "{kinds:?}"),
            "2026-11-28T10:00:00Z" => assert!(has("suppressed") && has("notified"), "{kinds:?}"),
            "2026-11-28T12:00:00Z" => assert_eq!(kinds, ["unrouted"]),
            "2026-11-28T14:00:00Z" => {
                // Step 2 started at +15; acknowledged at +20: no repeat, no last resort.
                assert_eq!(count("escalation_step"), 2, "{kinds:?}");
                assert!(!has("last_resort"), "{kinds:?}");
            }
            "2026-11-28T16:00:00Z" => {
                assert!(!has("urgency_raised") && has("last_resort"), "{kinds:?}");
                assert_eq!(
                    drilled.last().unwrap().1,
                    "unreached",
                    "lee has no low rule"
                );
            }
            "2026-11-28T18:00:00Z" => {
                assert_eq!(count("escalation_step"), 3, "{kinds:?}");
                assert_eq!(count("notified"), 3, "{kinds:?}");
                assert!(!has("last_resort"), "{kinds:?}");
            }
            "2026-11-28T20:00:00Z" => {
                assert_eq!(count("escalation_step"), 2, "{kinds:?}");
                assert!(
                    drilled
                        .iter()
                        .all(|(_, _, who)| who.is_empty() || who == "bob via ntfy")
                );
            }
            _ => assert_eq!(count("reminder"), 2, "{kinds:?}"),
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
