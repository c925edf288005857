//! The OpenAPI document served at `/api/openapi.json`, checked against the running server by
//! schemathesis (a schema-driven fuzzer; `.ci/run` installs it with pip): with a bounded
//! number of generated requests per operation, no answer is a 5xx and every answer matches
//! its schema. The server is seeded first so the requests reach real checks, alerts,
//! incidents and people, not only 404s.

use serde_json::{Value, json};

use crate::helpers::{TestApp, apply, one_service, spawn_app};

/// Requests generated per operation (bounded: the whole run takes a few minutes).
const EXAMPLES: &str = "12";

/// What schemathesis cannot know from the schema, per operation: the ids of the seeded
/// objects, and the checks that do not apply (each says why).
fn config(check: &str, ping_key: &str, incident: i64, alert: i64) -> String {
    format!(
        r#"
[[operations]]
include-path-regex = "^/api/v3/checks/\\{{code\\}}"
exclude-method = "DELETE"
parameters = {{ code = "{check}" }}

[[operations]]
include-path-regex = "^/api/v1/alerts/"
parameters = {{ id = "{alert}" }}

[[operations]]
include-path-regex = "^/api/v1/incidents/\\{{id\\}}"
parameters = {{ id = "{incident}" }}

[[operations]]
include-path-regex = "^/api/v1/people/"
parameters = {{ id = "alice", contact = "email" }}

[[operations]]
include-path-regex = "^/api/v1/(policies|services)/"
parameters = {{ name = "billing" }}

[[operations]]
include-path-regex = "^/ping/\\{{uuid\\}}"
parameters = {{ uuid = "{check}" }}

[[operations]]
include-path-regex = "^/ping/\\{{ping_key\\}}"
parameters = {{ ping_key = "{ping_key}", slug = "nightly" }}

# Pings and the health check answer every method, as Healthchecks does: no 405 to expect.
[[operations]]
include-path-regex = "^/(ping/|api/v3/status/)"
checks.unsupported_method.enabled = false

# A 502 is the documented answer when the contact cannot be reached (no SMTP server here).
[[operations]]
include-operation-id = "sendCode"
checks.not_a_server_error.enabled = false

# Valid by the schema but refused on what only the server knows: a service, schedule, person,
# alert, check or integration key that must exist, an IANA time zone, a cron expression that
# fires, a regular expression, `to` after `from`, a TOML file, the verification code (and
# after five wrong codes, its 429), a project's read-only key (Prometheus endpoint).
[[operations]]
include-operation-id-regex = "^(projectMetrics|projectChecksMetrics|projectMetricsBearer|drill|startLiveDrill|whoIsOnCall|getSchedule|exportIncident|createCheck|updateCheck|sendEvent|enqueueEvent|declareIncident|incidentOwner|incidentAlerts|incidentUpdates|verifyCode|putOnCallConfig|ping.*)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"#
    )
}

/// Checks, pings, a channel, the on-call file, an alert and an incident.
async fn seed(app: &TestApp) -> (String, i64, i64) {
    let integration_key = apply(app, &one_service()).await;
    let check = app
        .create_check(
            json!({"name": "nightly", "slug": "nightly", "tags": "prod etl",
                             "timeout": 3600, "service": "billing"}),
        )
        .await;
    let uuid = check["uuid"].as_str().unwrap().to_string();
    app.create_check(json!({"name": "backup", "schedule": "0 3 * * *", "tz": "Europe/Kyiv"}))
        .await;
    for path in ["/start", "", "/fail", "/3"] {
        app.ping(
            "POST",
            &format!("/ping/{uuid}{path}"),
            Some(b"log line".to_vec()),
        )
        .await;
    }
    let (status, _) = app
        .post(
            "/api/v3/channels/",
            Some(json!({"name": "hook", "kind": "webhook", "url": "https://hooks.invalid/x"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, event) = app
        .send_event(
            json!({"routing_key": integration_key, "event_action": "trigger",
                           "dedup_key": "db1-disk",
                           "payload": {"summary": "disk full on db1", "source": "db1",
                                       "severity": "critical"}}),
        )
        .await;
    assert_eq!(status, 202, "{event}");
    let (_, alerts) = app.get("/api/v1/alerts/").await;
    let alert = alerts["alerts"][0]["id"].as_i64().expect("an alert");
    let (status, incident) = app
        .post(
            "/api/v1/incidents/",
            Some(
                json!({"title": "disk full", "severity": "SEV2", "service": "billing",
                        "alerts": [alert]}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{incident}");
    (uuid, incident["id"].as_i64().unwrap(), alert)
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_every_answer_matches_the_openapi_document() {
    let app = spawn_app().await;
    let (status, document) = app.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let (check, incident, alert) = seed(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config(&check, &app.ping_key, incident, alert)).unwrap();

    let run = tokio::process::Command::new("schemathesis")
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(app.url("/api/openapi.json"))
        .args(["--url", &app.address])
        .args(["-H", &format!("X-Api-Key: {}", app.api_key)])
        .args(["--max-examples", EXAMPLES])
        .args(["--seed", "1"])
        .args(["--no-color"])
        // Its database of past failures and its reports stay in the temporary directory.
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("this test needs schemathesis (pip install schemathesis; .ci/run does it): {e}")
        });
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{out}\n{err}"
    );
    // It ran the operations (not an empty or unparsed document).
    let summary: Value = json!(out.lines().rev().take(15).collect::<Vec<_>>());
    assert!(
        out.contains("passed") || out.contains("Passed"),
        "{summary}"
    );
    eprintln!(
        "{}",
        out.lines().rev().take(12).collect::<Vec<_>>().join("\n")
    );
}
