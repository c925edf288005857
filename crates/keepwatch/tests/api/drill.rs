//! `keepwatch drill` against a server (`GET /api/v1/drill` over the applied configuration, a
//! check found by slug) and against the same file: the same timeline and the same sweep.

use std::process::Command;

use reqwest::StatusCode;

use crate::helpers::spawn_app;

const EXAMPLE: &str = include_str!("../../../../examples/oncall.toml");

/// The example plus a nightly check of billing's, declared in the file.
fn with_nightly() -> String {
    format!(
        "{EXAMPLE}\n[[checks]]\nslug = \"nightly-events\"\nschedule = \"0 0 * * *\"\n\
         tz = \"America/Denver\"\ngrace = 1800\nservice = \"billing\"\n"
    )
}

/// `(exit code, stdout, stderr)` of the binary.
pub fn keepwatch(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args(args)
        .env_remove("KEEPWATCH_SERVER")
        .env_remove("KEEPWATCH_API_KEY")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// The lines after the header (the header names the check by slug or by UUID).
fn timeline(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.starts_with("check ")).collect()
}

/// The binary runs while the test waits for it: the server needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_on_the_server_matches_the_drill_of_the_file_it_applied() {
    let app = spawn_app().await;
    let text = with_nightly();
    app.apply_oncall_config(&text).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oncall.toml");
    std::fs::write(&file, &text).unwrap();
    let file = file.to_str().unwrap();
    let at = "2026-11-28T00:30:00-07:00";
    let server = ["--server", &app.address, "--api-key", &app.api_key];
    let common = ["--check", "nightly-events", "--event", "failed", "--at", at];
    let (code, remote, err) = keepwatch(&[&["drill"][..], &server, &common].concat());
    assert_eq!(code, 0, "{err}");
    // A read-only key is enough; it is not shown the addresses.
    let read = ["--server", &app.address, "--api-key", &app.read_key];
    let (code, redacted, err) = keepwatch(&[&["drill"][..], &read, &common].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        redacted.contains("notify alice by email <…@example.com> (low)"),
        "{redacted}"
    );
    let (code, local, err) = keepwatch(&[&["drill", "-f", file][..], &common].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(timeline(&remote), timeline(&local));
    assert!(
        remote.contains("urgency: low (outside support hours)"),
        "{remote}"
    );
    assert!(remote.contains(": failed\n"), "{remote}");
    assert!(local.contains("check nightly-events: failed\n"), "{local}");

    // A sweep of the check: its deadlines (00:30 Denver each night), from both.
    let sweep = [
        "--check",
        "nightly-events",
        "--sweep",
        "week",
        "--at",
        "2026-11-30T00:00:00-07:00",
        "--fail-if-no-high-within",
        "5m",
    ];
    let (code, remote, _) = keepwatch(&[&["drill"][..], &server, &sweep].concat());
    assert_eq!(code, 3, "raised after 10 minutes: not within 5: {remote}");
    let (code, local, _) = keepwatch(&[&["drill", "-f", file][..], &sweep].concat());
    assert_eq!(code, 3);
    // The same, but for the header's check (by UUID on the server, by slug in the file).
    assert_eq!(
        remote.lines().skip(1).collect::<Vec<_>>(),
        local.lines().skip(1).collect::<Vec<_>>()
    );
    assert!(
        remote.contains("FAIL: no high-urgency page within 5m for 7 of 7 start times"),
        "{remote}"
    );
    let monday = remote.lines().find(|l| l.starts_with("Mon")).unwrap();
    let cells: Vec<&str> = monday.split_whitespace().skip(2).collect();
    assert_eq!(cells[0], "10m", "{remote}");
    assert!(cells[1..].iter().all(|c| *c == "."), "{remote}");

    // JSON, as the API answers.
    let (code, json, _) = keepwatch(
        &[
            &["drill"][..],
            &server,
            &["--service", "billing", "--at", at, "--format", "json"],
        ]
        .concat(),
    );
    assert_eq!(code, 0);
    let body: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(body["kind"], "drill");
    assert_eq!(body["first_high_page"]["after_minutes"], 10);
    assert_eq!(body["first_high_page"]["person"], "alice");
    assert_eq!(body["failures"], serde_json::json!([]));

    // Mistakes are named.
    for (query, expected) in [
        (
            "check=no-such-check",
            "no check with UUID or slug `no-such-check`",
        ),
        ("service=payroll", "no service `payroll`"),
        (
            "service=billing&event=exploded",
            "event: `exploded` is not down",
        ),
        (
            "service=billing&at=saturday",
            "at: `saturday` is not an RFC 3339 time",
        ),
        (
            "service=billing&sweep=month",
            "sweep: `month` is not `week`",
        ),
        (
            "service=billing&horizon_minutes=0",
            "horizon_minutes: 0 is out of range",
        ),
        ("", "give service=<name> or check=<uuid|slug>"),
    ] {
        let (status, body) = app
            .api(
                "GET",
                &format!("/api/v1/drill?{query}"),
                Some(&app.read_key),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.to_string().contains(expected), "{query}: {body}");
    }
    let (status, _) = app
        .api("GET", "/api/v1/drill?service=billing", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// DESIGN.md's story: the weekend mistake, drilled, swept and audited; then fixed as the
/// audit says, and clean.
#[test]
fn the_weekend_mistake_is_drilled_swept_and_audited_then_fixed() {
    let mistake = include_str!("../../../../examples/weekend-mistake.toml");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oncall.toml");
    std::fs::write(&file, mistake).unwrap();
    let file = file.to_str().unwrap();
    let saturday = [
        "--check",
        "client-events",
        "--at",
        "2026-11-28T00:00:00-07:00",
    ];
    let (code, out, err) = keepwatch(&[&["drill", "-f", file][..], &saturday].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("first high-urgency page: none\n"), "{out}");
    assert!(
        out.contains("support hours start Mon 2026-11-30 09:00 (+57:00)"),
        "{out}"
    );
    let sweep = [
        "--check",
        "client-events",
        "--sweep",
        "week",
        "--at",
        "2026-11-23T00:00:00-07:00",
        "--fail-if-no-high-within",
        "30m",
    ];
    let (code, out, _) = keepwatch(&[&["drill", "-f", file][..], &sweep].concat());
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("worst: an alert at Sat 2026-11-28 00:30: no high-urgency page; nobody is woken until support hours start Mon 2026-11-30 09:00"),
        "{out}"
    );
    let audit = ["--at", "2026-11-23T00:00:00-07:00", "--fail-on", "error"];
    let (code, out, _) = keepwatch(&[&["audit", "-f", file][..], &audit].concat());
    assert_eq!(code, 3, "{out}");
    for cause in [
        "ERROR high-urgency-unreachable [service:events]",
        "WARNING urgency-raising-off [service:events]",
        "WARNING no-repeat-no-last-resort [policy:events]",
        "WARNING off-hours-share [person:morgan, schedule:support]",
        "WARNING cron-no-max-runtime [check:client-events]",
    ] {
        assert!(out.contains(cause), "{cause}\n{out}");
    }
    assert!(
        out.contains("worst: an alert at Sat 00:30 (America/Denver)"),
        "{out}"
    );

    // Fixed as the findings say: raising on, a repeat and a last resort, the off-hours
    // rotated among three, a max runtime.
    let fixed = mistake
        .replace(
            "raise_after = 0                   # never raised",
            "raise_after = 10",
        )
        .replace("repeat = 0", "repeat = 1\nlast_resort = \"user:dana\"")
        .replace(
            "participants = [\"morgan\"]\nshift = \"1w\"",
            "participants = [\"morgan\", \"dana\", \"eli\"]\nshift = \"1d\"",
        )
        .replace("grace = 1800\n", "grace = 1800\nmax_runtime = 7200\n");
    std::fs::write(file, &fixed).unwrap();
    let (code, out, err) = keepwatch(&[&["drill", "-f", file][..], &saturday].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("first high-urgency page: +0:10 (dana by ntfy)"),
        "{out}"
    );
    let (code, out, _) = keepwatch(&[&["drill", "-f", file][..], &sweep].concat());
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = keepwatch(&[&["audit", "-f", file][..], &audit].concat());
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "0 errors, 0 warnings, 0 accepted\n");
}

/// The server audits what is applied, with its checks: `apply` answers the audit, `GET
/// /api/v1/audit` and `keepwatch audit --server` report it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_audits_the_applied_file_and_its_checks() {
    let app = spawn_app().await;
    let mistake = include_str!("../../../../examples/weekend-mistake.toml");
    let (status, dry) = app
        .put_oncall_config(&app.api_key, "?dry_run=1", mistake.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert!(dry["audit"]["errors"].as_u64().unwrap() >= 1, "{dry}");
    let applied = app.apply_oncall_config(mistake).await;
    let ids: Vec<&str> = applied["audit"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"high-urgency-unreachable"), "{ids:?}");
    assert!(ids.contains(&"cron-no-max-runtime"), "{ids:?}");
    // Nobody verified a contact on this server.
    assert!(ids.contains(&"no-verified-high-contact"), "{ids:?}");
    let (status, body) = app
        .api("GET", "/api/v1/audit", Some(&app.read_key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let summaries = |body: &serde_json::Value| -> Vec<String> {
        body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["summary"].as_str().unwrap().to_string())
            .collect()
    };
    // The same findings; the check by slug when applied, by UUID once created.
    assert_eq!(summaries(&body), summaries(&applied["audit"]));
    assert!(applied["audit"].to_string().contains("check:client-events"));
    let (status, body) = app
        .api(
            "GET",
            "/api/v1/audit?high_within_minutes=0",
            Some(&app.read_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (code, out, err) = keepwatch(&[
        "audit",
        "--server",
        &app.address,
        "--api-key",
        &app.read_key,
        "--fail-on",
        "error",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("ERROR high-urgency-unreachable [service:events]"),
        "{out}"
    );
}

/// The server audits after every apply and daily, on its clock, and raises an alert for an
/// error-level finding (once: a later audit that finds it again adds to the same alert); the
/// alert resolves itself once an audit no longer finds it.
#[tokio::test]
async fn the_server_raises_an_alert_for_an_error_finding_after_apply_and_daily() {
    let app = spawn_app().await;
    let project = app.store.project_by_name("default").await.unwrap().unwrap();
    let mistake = include_str!("../../../../examples/weekend-mistake.toml");
    app.apply_oncall_config(mistake).await;
    app.engine.settled().await;
    let key = "audit:high-urgency-unreachable:service:events";
    let alert = app
        .store
        .open_alert_by_dedup(project.id, key)
        .await
        .unwrap()
        .expect("an alert for the error finding");
    assert_eq!(alert.service, "events");
    assert_eq!(alert.source.as_str(), "audit");
    assert!(
        alert
            .summary
            .starts_with("audit: an alert of service `events`"),
        "{}",
        alert.summary
    );
    let triggers = |log: &[keepwatch_store::AlertLogRow]| {
        log.iter()
            .filter(|e| e.kind == "triggered" || e.kind == "trigger_repeated")
            .count()
    };
    assert_eq!(triggers(&app.store.alert_log(alert.id).await.unwrap()), 1);
    // Half a day later: not due again.
    app.advance(chrono::TimeDelta::hours(12));
    app.engine.settled().await;
    assert_eq!(triggers(&app.store.alert_log(alert.id).await.unwrap()), 1);
    // A day after the first: audited again, the same alert.
    app.advance(chrono::TimeDelta::hours(12));
    app.engine.settled().await;
    assert_eq!(triggers(&app.store.alert_log(alert.id).await.unwrap()), 2);
    let open = app
        .store
        .open_alert_by_dedup(project.id, key)
        .await
        .unwrap();
    assert_eq!(open.map(|a| a.id), Some(alert.id));
    // Warnings raise nothing.
    let warnings = app
        .store
        .list_alerts(project.id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.dedup_key.starts_with("audit:"))
        .count();
    assert_eq!(warnings, 1);

    // Fixed as the finding says (urgency raising on): the next audit, right after the apply,
    // no longer finds it, and the alert resolves itself.
    app.advance(chrono::TimeDelta::hours(1));
    app.apply_oncall_config(&mistake.replace("raise_after = 0 ", "raise_after = 10"))
        .await;
    app.engine.settled().await;
    let after = app.store.alert(alert.id).await.unwrap().unwrap();
    assert_eq!(after.status.as_str(), "resolved");
    let log = app.store.alert_log(alert.id).await.unwrap();
    let resolved = log.iter().find(|e| e.kind == "resolved").unwrap();
    assert_eq!(resolved.who, "audit (finding gone)");
    assert_eq!(
        app.store
            .open_alert_by_dedup(project.id, key)
            .await
            .unwrap()
            .map(|a| a.id),
        None
    );
    // A day later, still fixed: nothing opens again. The mistake back: a new alert.
    app.advance(chrono::TimeDelta::hours(24));
    app.engine.settled().await;
    assert_eq!(
        app.store
            .open_alert_by_dedup(project.id, key)
            .await
            .unwrap()
            .map(|a| a.id),
        None
    );
    app.apply_oncall_config(mistake).await;
    app.engine.settled().await;
    let again = app
        .store
        .open_alert_by_dedup(project.id, key)
        .await
        .unwrap()
        .expect("raised again");
    assert_ne!(again.id, alert.id);
}

/// `keepwatch drill --live`: real notifications, marked as a drill, to the people the
/// timeline names (webhooks on loopback); the first is acknowledged with its link; the
/// command prints who was reached and how fast; no alert is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_drill_notifies_for_real_marked_as_a_drill_and_reports_the_acknowledgment() {
    use crate::helpers::{Receiver, person};
    let app = spawn_app().await;
    let (mut alice, mut bob) = (Receiver::start(vec![]).await, Receiver::start(vec![]).await);
    let file = format!(
        "{}{}[[policies]]\nname = \"p\"\nsteps = [{{ targets = [\"user:alice\"], delay = 10 }}, \
         {{ targets = [\"user:bob\"], delay = 10 }}]\n\
         [[services]]\nname = \"billing\"\npolicy = \"p\"\n",
        person("alice", &[("webhook", &alice.url)]),
        person("bob", &[("webhook", &bob.url)]),
    );
    app.apply_oncall_config(&file).await;
    // A read-only key cannot start one; a drill needs a service or a check.
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/drill/live?service=billing",
            Some(&app.read_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app.post("/api/v1/drill/live?service=payroll", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let command = {
        let (address, key) = (app.address.clone(), app.api_key.clone());
        tokio::spawn(async move {
            crate::cli::keepwatch_async(
                &[
                    "drill",
                    "--live",
                    "--service",
                    "billing",
                    "--server",
                    &address,
                    "--wait",
                    "1m",
                ],
                Some(&key),
            )
            .await
        })
    };
    let page = alice.next().await.json();
    assert_eq!(
        page["message"]["title"],
        "DRILL — not a real alert: service billing"
    );
    let text = page["message"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("DRILL — not a real alert. Nothing is wrong: this is live drill #1"),
        "{text}"
    );
    let link = text
        .lines()
        .find(|l| l.contains("/a/"))
        .unwrap()
        .to_string();
    let shown = app
        .client
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shown.contains("Acknowledge the drill"), "{shown}");
    app.advance(chrono::TimeDelta::minutes(3));
    let done = app.client.post(&link).send().await.unwrap();
    assert_eq!(done.status(), 200);
    let output = command.await.unwrap();
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("\n  +0:00 alice by webhook (high): sent"),
        "{out}"
    );
    assert!(
        out.contains("reached: alice\nacknowledged by alice (link) at +0:03"),
        "{out}"
    );
    // Bob's turn passes: he is not paged. No alert was opened.
    app.advance(chrono::TimeDelta::minutes(10));
    let report = crate::helpers::eventually(|| async {
        let (status, report) = app.get_read_only("/api/v1/drill/live/1").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        (report["finished"] == true).then_some(report)
    })
    .await;
    assert_eq!(report["acknowledged_by"], "alice (link)");
    assert_eq!(report["notices"][1]["person"], "bob");
    assert_eq!(report["notices"][1]["state"], "skipped");
    assert!(bob.is_empty());
    let (_, alerts) = app.get_read_only("/api/v1/alerts/").await;
    assert_eq!(alerts["alerts"], serde_json::json!([]));
    assert_eq!(
        app.get_read_only("/api/v1/drill/live/7").await.0,
        StatusCode::NOT_FOUND
    );
}
