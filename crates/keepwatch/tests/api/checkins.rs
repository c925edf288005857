//! Shift check-ins through the real server: the check-in reaches the person whose shift
//! starts on their webhook, its signed link acknowledges it (nobody else hears), and a missed
//! one tells the person on call before and the fallback, is listed as missed and reported by
//! the audit. Manual clock, receivers on loopback.

use axum::http::StatusCode;
use chrono::{TimeDelta, TimeZone, Utc};
use serde_json::Value;

use crate::helpers::{AppOptions, Receiver, person, spawn_app_with};

fn file(alice: &str, bob: &str, carol: &str) -> String {
    format!(
        "{}{}{}\
         [[schedules]]\nname = \"primary\"\ntz = \"America/Denver\"\n\
         checkin = {{ within = \"15m\", fallback = \"carol\" }}\n\
         [[schedules.layers]]\nname = \"weekly\"\nparticipants = [\"alice\", \"bob\"]\n\
         shift = \"1w\"\nstart = \"2026-11-30T09:00\"\n\
         [[policies]]\nname = \"p\"\nsteps = [{{ targets = [\"schedule:primary\"], delay = 10 }}]\n\
         repeat = 1\nlast_resort = \"user:carol\"\n\
         [[services]]\nname = \"billing\"\npolicy = \"p\"\n",
        person("alice", &[("webhook", alice)]),
        person("bob", &[("webhook", bob)]),
        person("carol", &[("webhook", carol)]).replace(
            "id = \"carol\"\n",
            "id = \"carol\"\ntz = \"Europe/Paris\"\n"
        ),
    )
}

#[tokio::test]
async fn a_check_in_is_acknowledged_by_its_link_and_a_missed_one_tells_the_previous_person_and_the_fallback()
 {
    check_ins(None).await;
}

#[tokio::test]
async fn check_ins_on_postgres() {
    let db = keepwatch_store::testing::PgDatabase::create().await;
    check_ins(Some(db.url.clone())).await;
}

async fn check_ins(database_url: Option<String>) {
    let app = spawn_app_with(AppOptions {
        database_url,
        // Mon 7 Dec 08:00 in Denver: alice has been on call for a week.
        start: Some(Utc.with_ymd_and_hms(2026, 12, 7, 15, 0, 0).unwrap()),
        ..AppOptions::default()
    })
    .await;
    let (mut alice, mut bob, mut carol) = (
        Receiver::start(vec![]).await,
        Receiver::start(vec![]).await,
        Receiver::start(vec![]).await,
    );
    app.apply_oncall_config(&file(&alice.url, &bob.url, &carol.url))
        .await;
    app.engine.settled().await;
    assert!(alice.is_empty() && bob.is_empty() && carol.is_empty());

    // 09:00 Denver: bob's shift starts and his check-in arrives.
    app.advance(TimeDelta::hours(1));
    let checkin = bob.next().await;
    assert_eq!(checkin.headers["x-keepwatch-checkin"], "1");
    let checkin = checkin.json();
    assert_eq!(checkin["to"], "bob");
    assert_eq!(
        checkin["subject"],
        "Check in for your on-call shift on primary"
    );
    let text = checkin["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "Your on-call shift on schedule primary starts Mon 7 Dec 09:00 MST and runs until \
             Mon 14 Dec 09:00 MST.\nPlease confirm you can be reached by Mon 7 Dec 09:15 MST"
        ),
        "{text}"
    );
    let link = text
        .lines()
        .find(|l| l.contains("/a/"))
        .unwrap_or_else(|| panic!("no link: {text}"))
        .to_string();
    assert!(link.starts_with(&app.address), "{link}");

    // The link shows the shift; only its POST checks in.
    let page = app.client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("I can be reached") && html.contains("primary"),
        "{html}"
    );
    let (status, list) = app.get_read_only("/api/v1/checkins/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["checkins"][0]["state"], "pending", "{list}");
    assert_eq!(
        list["checkins"][0]["told_if_missed"],
        serde_json::json!(["alice", "carol"])
    );
    app.advance(TimeDelta::minutes(4));
    let done = app.client.post(&link).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("Checked in for your shift on primary")
    );
    let (_, list) = app.get_read_only("/api/v1/checkins/").await;
    assert_eq!(list["checkins"][0]["state"], "acknowledged", "{list}");
    assert_eq!(list["checkins"][0]["acknowledged_by"], "bob (link)");
    assert_eq!(
        list["checkins"][0]["acknowledged_at"],
        "2026-12-07T16:04:00Z"
    );
    // Past the deadline: nobody else hears.
    app.advance(TimeDelta::minutes(20));
    app.engine.settled().await;
    assert!(alice.is_empty() && bob.is_empty() && carol.is_empty());

    // Mon 14 Dec 09:00: alice's turn; she does not answer.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 14, 16, 0, 0).unwrap());
    let asked = alice.next().await.json();
    assert_eq!(asked["checkin"]["id"], 2);
    app.advance(TimeDelta::minutes(15));
    let to_bob = bob.next().await.json();
    assert_eq!(
        to_bob["subject"],
        "alice did not check in for their on-call shift on primary"
    );
    assert_eq!(
        to_bob["text"],
        "alice's on-call shift on schedule primary started Mon 14 Dec 09:00 MST and runs until \
         Mon 21 Dec 09:00 MST. alice did not confirm they can be reached by Mon 14 Dec 09:15 MST.\n\
         You are told because you were on call before them, bob: reach alice, or cover the \
         shift (an override in the on-call file) until they can be reached.\n"
    );
    let to_carol = carol.next().await.json();
    let text = to_carol["text"].as_str().unwrap();
    assert!(
        text.contains("started Mon 14 Dec 17:00 CET")
            && text.contains("because you are the schedule's fallback, carol"),
        "{text}"
    );
    app.engine.settled().await;
    assert!(alice.is_empty() && bob.is_empty() && carol.is_empty());
    let (_, list) = app.get_read_only("/api/v1/checkins/").await;
    assert_eq!(list["checkins"][0]["state"], "missed", "{list}");

    // The audit names alice.
    let (status, report) = app.get_read_only("/api/v1/audit").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let missed: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "missed-checkin")
        .collect();
    assert_eq!(missed.len(), 1, "{report}");
    assert_eq!(missed[0]["objects"], serde_json::json!(["person:alice"]));

    // Acknowledged late through the API: recorded, still missed. Bad ids and keys refused.
    let (status, late) = app.post("/api/v1/checkins/2/ack", None).await;
    assert_eq!(status, StatusCode::OK, "{late}");
    assert_eq!(late["state"], "missed");
    assert_eq!(late["acknowledged_by"], "api");
    assert_eq!(
        app.post("/api/v1/checkins/99/ack", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/api/v1/checkins/x/ack", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = app
        .api("POST", "/api/v1/checkins/2/ack", Some(&app.read_key), None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a read-only key cannot check in"
    );
    let other = crate::helpers::other_project_key(&app).await;
    let (status, _) = app
        .api("POST", "/api/v1/checkins/2/ack", Some(&other), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The same through the binary.
    let out = crate::cli::keepwatch_async(
        &["checkin", "list", "--server", &app.address],
        Some(&app.read_key),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "#2 primary alice 2026-12-14T16:00:00Z..2026-12-21T16:00:00Z missed (acknowledged by api \
         at 2026-12-14T16:15:00Z)\n#1 primary bob 2026-12-07T16:00:00Z..2026-12-14T16:00:00Z \
         acknowledged (acknowledged by bob (link) at 2026-12-07T16:04:00Z)\n"
    );
    let out = crate::cli::keepwatch_async(
        &["checkin", "ack", "7", "--server", &app.address],
        Some(&app.api_key),
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no check-in with id `7`"), "{err}");
    // A forged link is refused.
    let forged = format!("{}/a/2.checkin.9999999999.616c696365.00", app.address);
    assert_eq!(app.client.post(&forged).send().await.unwrap().status(), 403);
}
