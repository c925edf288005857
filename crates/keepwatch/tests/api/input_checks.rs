//! Input the database cannot store (a NUL character: PostgreSQL text cannot hold one) or
//! should not (megabytes of tags) is refused at the edge with a 400 that names the field, on
//! every input: pings, the v3 API, the on-call file, the events API and Alertmanager.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, apply, one_service, spawn_app};

/// Applies `file` with the full-access key; the status and the answer.
async fn put_config(app: &TestApp, file: &str) -> (StatusCode, Value) {
    app.put_oncall_config(&app.api_key, "", file.to_string())
        .await
}

#[tokio::test]
async fn a_nul_in_a_ping_is_refused_with_400_naming_the_field() {
    let app = spawn_app().await;
    let uuid = app.create_check_uuid(json!({"name": "n"})).await;
    let (status, _, body) = app
        .ping("GET", &format!("/ping/{uuid}?host=web%001"), None)
        .await;
    assert_eq!((status.as_u16(), body.as_str()), (400, "invalid host"));
    // A body is stored as bytes: a NUL in it is fine.
    let (status, _, _) = app
        .ping("POST", &format!("/ping/{uuid}"), Some(b"a\0b".to_vec()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.pings(&uuid).await.len(),
        1,
        "only the good ping is stored"
    );
}

#[tokio::test]
async fn the_v3_api_refuses_nul_long_tags_and_schedules_that_never_fire() {
    let app = spawn_app().await;
    let post = |body: Value| {
        let app = &app;
        async move { app.post("/api/v3/checks/", Some(body)).await }
    };
    for (field, body) in [
        ("name", json!({"name": "a\u{0}b"})),
        ("tags", json!({"tags": "prod \u{0}"})),
        ("desc", json!({"desc": "\u{0}"})),
        ("service", json!({"service": "billing\u{0}"})),
        ("subject", json!({"subject": "\u{0}"})),
    ] {
        let (status, answer) = post(body).await;
        assert_eq!(
            (status, answer),
            (
                StatusCode::BAD_REQUEST,
                json!({"error": format!("json validation error: {field} contains a NUL character")})
            )
        );
    }
    let (status, answer) = post(json!({"tags": "t".repeat(501)})).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "json validation error: tags is too long"})
        )
    );
    let (status, answer) = post(json!({"desc": "d".repeat(10_001)})).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "json validation error: desc is too long"})
        )
    );
    let (status, answer) = post(json!({"schedule": "0 0 30 2 *"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        json!({
            "error": "json validation error: schedule is not a valid cron or OnCalendar expression",
            "detail": "cron `0 0 30 2 *` never fires"
        })
    );
    // At the limits, accepted.
    let check = app
        .create_check(
            json!({"tags": "t".repeat(500), "desc": "d".repeat(10_000), "schedule": "0 0 29 2 *"}),
        )
        .await;
    assert_eq!(check["tags"].as_str().unwrap().len(), 500);
    // Updates are checked the same way.
    let path = check["update_url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&app.address)
        .to_string();
    let (status, answer) = app.post(&path, Some(json!({"name": "\u{0}"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test]
async fn the_on_call_file_refuses_nul_and_checks_that_never_fire() {
    let app = spawn_app().await;
    let escaped = one_service().replace("name = \"billing\"", "name = \"bil\\u0000ling\"");
    assert_eq!(
        put_config(&app, &escaped).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "services[0].name: contains a NUL character"})
        )
    );
    let never = format!(
        "{}[[checks]]\nslug = \"feb30\"\nschedule = \"0 0 30 2 *\"\n",
        one_service()
    );
    let (status, body) = put_config(&app, &never).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("checks[0] (feb30): cron `0 0 30 2 *` never fires"),
        "{body}"
    );
    let long_tags = format!(
        "{}[[checks]]\nslug = \"t\"\ntags = \"{}\"\n",
        one_service(),
        "t".repeat(501)
    );
    let (status, body) = put_config(&app, &long_tags).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("checks[0] (t): json validation error: tags is too long"),
        "{body}"
    );
}

#[tokio::test]
async fn an_on_call_file_not_utf8_or_too_large_is_refused_saying_where_and_how_large() {
    let app = spawn_app().await;
    let put = |body: Vec<u8>| app.put_oncall_config(&app.api_key, "", body);
    let mut latin1 = one_service().as_bytes().to_vec();
    latin1.extend_from_slice(b"# caf\xe9\n");
    let line = one_service().lines().count() + 1;
    let (status, body) = put(latin1.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        format!(
            "the configuration is not UTF-8 text: line {line}, column 6 (byte {}) is not valid UTF-8",
            latin1.len() - 2
        )
    );
    let (status, body) = put(vec![b'#'; 2 * 1024 * 1024 + 1]).await;
    assert_eq!(status, 413);
    assert_eq!(
        body["error"],
        "the configuration is larger than 2097152 bytes, the most accepted"
    );
}

#[tokio::test]
async fn the_events_api_and_alertmanager_refuse_nul_naming_the_field() {
    let app = spawn_app().await;
    let key = apply(&app, &one_service()).await;
    let (status, answer) = app
        .send_event(json!({
            "routing_key": key, "event_action": "trigger",
            "payload": {"summary": "disk \u{0} full", "source": "db1", "severity": "critical"}
        }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer["errors"],
        json!(["'payload.summary' contains a NUL character"])
    );
    let (status, answer) = app
        .api(
            "POST",
            &format!("/api/v1/alertmanager/{key}"),
            None,
            Some(json!({
                "version": "4", "groupKey": "{}:{a=\"\u{0}\"}", "status": "firing",
                "alerts": [], "commonLabels": {"alertname": "x"}
            })),
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            json!("groupKey contains a NUL character")
        )
    );
    let (status, body) = app.get_read_only("/api/v1/alerts/").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"alerts": []})));
}

/// On PostgreSQL a NUL reaching a group commit failed the whole batch: innocent pings on
/// other checks got 503. Now the NUL pings get 400 and every other ping 200.
#[tokio::test]
async fn nul_pings_under_concurrent_load_on_postgres_fail_no_other_ping() {
    let db = keepwatch_store::testing::PgDatabase::create().await;
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let good = app.create_check(json!({"name": "good"})).await["ping_url"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = app.create_check(json!({"name": "bad"})).await["ping_url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400 {
        let client = app.client.clone();
        let url = if i % 4 == 0 {
            format!("{bad}?host=x%00y")
        } else {
            format!("{good}?host=web{i}")
        };
        tasks.spawn(async move { (i % 4 == 0, client.get(url).send().await.unwrap().status()) });
    }
    let (mut good_ok, mut nul_refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            (false, status) if status == 200 => good_ok += 1,
            (true, status) if status == 400 => nul_refused += 1,
            (nul, status) => panic!(
                "a {} ping answered {status}",
                if nul { "NUL" } else { "good" }
            ),
        }
    }
    assert_eq!((good_ok, nul_refused), (300, 100));
    let uuid = good.rsplit('/').next().unwrap();
    assert_eq!(app.get_check(uuid).await["n_pings"], 300);

    // Past the edge (straight into the engine, as a future input path might): a NUL row in
    // a group commit fails only its own ping; the HTTP pings batched with it are stored.
    let bad_uuid: uuid::Uuid = bad.rsplit('/').next().unwrap().parse().unwrap();
    let nul_ping = || keepwatch_engine::PingRequest {
        identity: keepwatch_core::check::RunIdentity {
            rid: None,
            host: Some("x\0y".into()),
            pid: None,
        },
        ..crate::helpers::engine_ping(bad_uuid)
    };
    // Each task: good, good, NUL, good, so NUL rows land in batches with good pings.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (client, engine, good) = (app.client.clone(), app.engine.clone(), good.clone());
        let request = nul_ping();
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            let mut request = Some(request);
            for step in 0..4 {
                if step == 2 {
                    let ok = engine.ping(request.take().unwrap()).await.is_ok();
                    outcomes.push(("nul", ok));
                } else {
                    let status = client.get(&good).send().await.unwrap().status();
                    outcomes.push(("good", status == 200));
                }
            }
            outcomes
        });
    }
    let mut outcomes = std::collections::BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        for outcome in result.unwrap() {
            *outcomes.entry(outcome).or_insert(0) += 1;
        }
    }
    assert_eq!(
        outcomes,
        [(("good", true), 300), (("nul", false), 100)].into(),
        "no good ping fails with the bad ones"
    );
    assert_eq!(app.get_check(uuid).await["n_pings"], 600);

    // Elsewhere on PostgreSQL: a NUL in a key in the path is an unknown key (was 503), and
    // one in a channel's name a 400.
    let (status, _) = app
        .api("POST", "/api/v1/alertmanager/a%00b", None, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let status = app
        .client
        .get(app.url("/ical/a%00b.ics"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    let (status, answer) = app
        .post(
            "/api/v3/channels/",
            Some(json!({"name": "ops\u{0}", "kind": "email", "to": "a@example.com"})),
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "json validation error: name contains a NUL character"})
        )
    );
}

/// Sends `head` (request line and headers, bytes as given) and returns the status and body.
async fn raw_request(app: &TestApp, head: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(head).await.unwrap();
    stream
        .write_all(b"Host: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[tokio::test]
async fn ping_headers_that_are_not_text_are_refused_and_user_agents_kept() {
    let app = spawn_app().await;
    let uuid = app.create_check_uuid(json!({"name": "h"})).await;
    let request = |header: &[u8]| {
        let mut head = format!("GET /ping/{uuid} HTTP/1.1\r\n").into_bytes();
        head.extend_from_slice(header);
        head.extend_from_slice(b"\r\n");
        head
    };
    assert_eq!(
        raw_request(&app, &request(b"X-Keepwatch-Host: caf\xe9")).await,
        (400, "invalid host".into())
    );
    assert_eq!(
        raw_request(&app, &request(b"X-Keepwatch-Pid: \xff1")).await,
        (400, "invalid pid".into())
    );
    // A NUL in a header is refused before any handler sees it.
    assert_eq!(
        raw_request(&app, &request(b"X-Keepwatch-Host: a\0b"))
            .await
            .0,
        400
    );
    // A user agent is stored whatever its bytes; a UTF-8 host header is taken.
    assert_eq!(
        raw_request(
            &app,
            &request(b"User-Agent: caf\xc3\xa9 \xff\r\nX-Keepwatch-Host: h\xc3\xb4te")
        )
        .await,
        (200, "OK".into())
    );
    let pings = app.pings(&uuid).await;
    assert_eq!(pings.len(), 1, "{pings:?}");
    assert_eq!(pings[0]["ua"], "café \u{fffd}");
    assert_eq!(pings[0]["host"], "hôte");
}

/// Fields of the wrong type are refused, never read as something else (a schema-driven
/// fuzzer of the OpenAPI document found each of these accepted).
#[tokio::test]
async fn mistyped_or_unstorable_fields_are_refused_not_read_as_something_else() {
    let app = spawn_app().await;
    // A webhook secret that is not a string would have left the channel unsigned.
    let (status, body) = app
        .post(
            "/api/v3/channels/",
            Some(
                json!({"name": "hook", "kind": "webhook", "url": "https://hooks.invalid/x",
                        "secret": 12345}),
            ),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "json validation error: secret is not a string"
    );
    // A channel name is up to 100 characters, not bytes.
    let name = "é".repeat(100);
    let (status, body) = app
        .post(
            "/api/v3/channels/",
            Some(json!({"name": name, "kind": "webhook", "url": "https://hooks.invalid/x"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], name.as_str());
    let (status, _) = app
        .post(
            "/api/v3/channels/",
            Some(json!({"name": "é".repeat(101), "kind": "webhook", "url": "https://hooks.invalid/x"})),
        )
        .await;
    assert_eq!(status, 400);

    // A drill of a slug holding a NUL is a 400 (PostgreSQL cannot even look it up).
    apply(&app, &one_service()).await;
    let (status, body) = app.get("/api/v1/drill?check=a%00b").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("NUL"), "{body}");

    // An incident update whose no_news is not a boolean is refused, not sent as an update.
    let (status, declared) = app
        .post(
            "/api/v1/incidents/",
            Some(json!({"title": "disk full", "severity": "SEV2", "service": "billing"})),
        )
        .await;
    assert_eq!(status, 201, "{declared}");
    let id = declared["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/v1/incidents/{id}/updates"),
            Some(json!({"no_news": "yes", "message": "still looking"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "`no_news` must be true or false");
    // The key may come in the body of a postmortem edit, as on every route taking JSON.
    let (status, body) = app
        .post(
            &format!("/api/v1/incidents/{id}/postmortem"),
            Some(json!({"api_key": app.api_key, "root_cause": "a full disk"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["postmortem"]["root_cause"], "a full disk", "{body}");
}
