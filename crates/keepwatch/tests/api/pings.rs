//! The ping protocol, compared with Healthchecks' recorded answers.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_ping_form_answers_like_healthchecks() {
    let app = spawn_app().await;
    let check = app
        .create_check(json!({"name": "Nightly events", "slug": "nightly-events"}))
        .await;
    let uuid = check["uuid"].as_str().unwrap();
    let rid = "05b551e0-ffff-409d-8ba6-2e8967262584";

    for (method, path, status, body) in [
        ("GET", format!("/ping/{uuid}/start?rid={rid}"), 200, "OK"),
        ("POST", format!("/ping/{uuid}/0?rid={rid}"), 200, "OK"),
        ("GET", format!("/ping/{uuid}/fail"), 200, "OK"),
        ("GET", format!("/ping/{uuid}/log"), 200, "OK"),
        ("GET", format!("/ping/{uuid}"), 200, "OK"),
        ("GET", format!("/ping/{uuid}/"), 200, "OK"),
        ("PUT", format!("/ping/{uuid}/7"), 200, "OK"),
        ("GET", format!("/ping/{uuid}/255"), 200, "OK"),
        (
            "GET",
            format!("/ping/{uuid}/256"),
            400,
            "invalid url format",
        ),
        (
            "GET",
            format!("/ping/{uuid}?rid=nope"),
            400,
            "invalid uuid format",
        ),
        (
            "GET",
            format!("/ping/{uuid}?rid={}", rid.to_uppercase()),
            200,
            "OK",
        ),
        (
            "GET",
            "/ping/7280d984-4630-4ae9-b52a-8dc9d87b6864".to_string(),
            404,
            "not found",
        ),
        (
            "GET",
            format!("/ping/{}/nightly-events", app.ping_key),
            200,
            "OK",
        ),
        (
            "GET",
            format!("/ping/{}/nightly-events/start", app.ping_key),
            200,
            "OK",
        ),
        (
            "GET",
            format!("/ping/{}/nightly-events/3", app.ping_key),
            200,
            "OK",
        ),
        (
            "GET",
            format!("/ping/{}/no-such-slug", app.ping_key),
            404,
            "not found",
        ),
        (
            "GET",
            "/ping/nosuchpingkey0000000000/nightly-events".to_string(),
            404,
            "not found",
        ),
        ("GET", format!("/ping/{uuid}/nonsense"), 404, "not found"),
    ] {
        let (got, headers, text) = app.ping(method, &path, None).await;
        assert_eq!(got.as_u16(), status, "{method} {path}: {text}");
        assert_eq!(text, body, "{method} {path}");
        assert_eq!(
            headers["content-type"], "text/html; charset=utf-8",
            "{path}"
        );
        if status == 200 {
            assert_eq!(headers["ping-body-limit"], "100000");
            assert_eq!(headers["access-control-allow-origin"], "*");
        }
    }
    // A malformed UUID matches no route: Django's generic 404 page.
    let (status, _, text) = app.ping("GET", "/ping/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("<h1>Not Found</h1>"));

    assert_eq!(
        app.get_check(uuid).await["status"],
        "down",
        "the last finish was exit status 3"
    );

    // HEAD is recorded too (a success), with no body but the headers a GET gets, its
    // length included (Healthchecks' Django sets it from the body it then leaves out).
    let (status, headers, text) = app.ping("HEAD", &format!("/ping/{uuid}"), None).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, ""));
    assert_eq!(headers["ping-body-limit"], "100000");
    assert_eq!(headers["content-length"], "2");

    let check = app.get_check(uuid).await;
    // start, 0, fail, log, success×2 (the second with an upper-case rid), 7, 255, slug×3,
    // HEAD = 13 pings counted.
    assert_eq!(check["n_pings"], 13);
    assert_eq!(check["status"], "up");
}

#[tokio::test]
async fn create_1_provisions_a_check_once_and_ambiguous_slugs_conflict() {
    let app = spawn_app().await;
    let hook = crate::helpers::Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let path = format!("/ping/{}/brand-new-job?create=1", app.ping_key);
    let (status, headers, text) = app.ping("GET", &path, None).await;
    assert_eq!((status, text.as_str()), (StatusCode::CREATED, "Created"));
    assert_eq!(headers["ping-body-limit"], "100000");
    let (status, _, text) = app.ping("GET", &path, None).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "OK"),
        "second time it exists"
    );
    let (_, list) = app.get("/api/v3/checks/?slug=brand-new-job").await;
    let created = &list["checks"][0];
    assert_eq!(created["name"], "brand-new-job");
    assert_eq!(created["n_pings"], 2);
    assert_ne!(
        created["channels"], "",
        "auto-provisioned checks get every channel"
    );
    // create=1 only means the exact string "1".
    let (status, _, _) = app
        .ping(
            "GET",
            &format!("/ping/{}/other?create=yes", app.ping_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    app.create_check(json!({"name": "a", "slug": "twin"})).await;
    app.create_check(json!({"name": "b", "slug": "twin"})).await;
    let (status, _, text) = app
        .ping("GET", &format!("/ping/{}/twin", app.ping_key), None)
        .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::CONFLICT, "ambiguous slug")
    );
}

#[tokio::test]
async fn bodies_are_stored_up_to_the_limit_then_truncated_and_marked() {
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        ping_body_limit: Some(1000),
        ..Default::default()
    })
    .await;
    let uuid = app.create_check_uuid(json!({"name": "x"})).await;
    let (status, headers, _) = app
        .ping(
            "POST",
            &format!("/ping/{uuid}/log"),
            Some(b"small output".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["ping-body-limit"], "1000");
    let big = vec![b'x'; 3 * 1024 * 1024];
    let (status, _, text) = app
        .ping("POST", &format!("/ping/{uuid}/fail"), Some(big))
        .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "OK"),
        "oversized bodies are never rejected"
    );

    let pings = app.pings(&uuid).await;
    assert_eq!(pings[0]["type"], "fail");
    assert_eq!(pings[0]["body_truncated"], true);
    assert_eq!(pings[1]["body_truncated"], false);
    let body_url = pings[0]["body_url"].as_str().unwrap();
    let response = app
        .client
        .get(body_url)
        .header("X-Api-Key", &app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.bytes().await.unwrap().len(), 1000);
    let (_, _, text) = app
        .ping("GET", &format!("/api/v3/checks/{uuid}/pings/2/body"), None)
        .await;
    assert!(text.contains("missing api key"));
}

#[tokio::test]
async fn host_pid_volume_and_run_ids_are_recorded_and_validated() {
    let app = spawn_app().await;
    let uuid = app.create_check_uuid(json!({"name": "etl"})).await;
    let rid = "6f1c2d3e-0000-4000-8000-000000000001";
    let start = app
        .client
        .get(app.url(&format!("/ping/{uuid}/start?rid={rid}")))
        .header("X-Keepwatch-Host", "web1")
        .header("X-Keepwatch-Pid", "4242")
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200);
    app.advance(chrono::TimeDelta::seconds(90));
    let (status, _, _) = app
        .ping(
            "GET",
            &format!("/ping/{uuid}/0?rid={rid}&host=web1&pid=4242&volume=1200"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for (query, message) in [
        ("pid=-1", "invalid pid"),
        ("pid=abc", "invalid pid"),
        ("volume=1.5", "invalid volume"),
        ("volume=-3", "invalid volume"),
        ("ts=yesterday", "invalid ts"),
        ("ts=-5", "invalid ts"),
    ] {
        let (status, _, text) = app
            .ping("GET", &format!("/ping/{uuid}?{query}"), None)
            .await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::BAD_REQUEST, message),
            "{query}"
        );
    }
    let pings = app.pings(&uuid).await;
    let finish = &pings[0];
    assert_eq!(finish["host"], "web1");
    assert_eq!(finish["pid"], 4242);
    assert_eq!(finish["volume"], 1200);
    assert_eq!(finish["rid"], rid);
    assert_eq!(finish["duration"], 90.0);
    assert_eq!(pings[1]["host"], "web1");
    let check = app.get_check(&uuid).await;
    assert_eq!(check["last_duration"], 90);
    assert_eq!(check["status"], "up");
}

#[tokio::test]
async fn a_post_only_check_records_other_methods_as_ignored() {
    let app = spawn_app().await;
    let uuid = app
        .create_check_uuid(json!({"name": "p", "methods": "POST"}))
        .await;
    let (status, _, text) = app.ping("GET", &format!("/ping/{uuid}/fail"), None).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "OK"));
    let check = app.get_check(&uuid).await;
    assert_eq!(
        (check["status"].clone(), check["n_pings"].clone()),
        (json!("new"), json!(1))
    );
    app.ping("POST", &format!("/ping/{uuid}"), None).await;
    assert_eq!(app.get_check(&uuid).await["status"], "up");
    assert_eq!(app.pings(&uuid).await[1]["type"], "ign");
}

#[tokio::test]
async fn a_late_ping_keeps_its_own_time_and_strays_are_validated() {
    let app = spawn_app().await;
    let uuid = app.create_check_uuid(json!({"name": "late"})).await;
    // A ping made an hour ago, delivered now from a spool; and one dated in the future.
    let (status, _, _) = app
        .ping(
            "POST",
            &format!("/ping/{uuid}?ts=2026-11-26T11:00:00.5Z"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = app
        .ping("POST", &format!("/ping/{uuid}/log?ts=4102444800"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let pings = app.pings(&uuid).await;
    assert_eq!(pings[1]["date"], "2026-11-26T11:00:00.500000+00:00");
    assert_eq!(
        pings[0]["date"], "2026-11-26T12:00:00.000000+00:00",
        "a time in the future counts as now"
    );
    assert_eq!(
        app.get_check(&uuid).await["last_ping"],
        "2026-11-26T11:00:00+00:00"
    );

    for header in ["not json", r#"[{"pid": 1}]"#] {
        let response = app
            .client
            .post(app.url(&format!("/ping/{uuid}/start")))
            .header("X-Keepwatch-Strays", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{header}");
        assert_eq!(response.text().await.unwrap(), "invalid X-Keepwatch-Strays");
    }
}

#[tokio::test]
async fn pings_past_the_router_and_through_it_are_recorded_alike() {
    let app = spawn_app().await;
    let uuid = app.create_check_uuid(json!({"name": "paths"})).await;
    // Plain paths are answered without the router; a percent-encoded one goes through it
    // (it decodes the segment, as Django does) and must be answered the same.
    let encoded = format!("%{:02X}{}", uuid.as_bytes()[0], &uuid[1..]);
    for (method, path) in [
        ("POST", format!("/ping/{uuid}")),
        ("POST", format!("/ping/{encoded}")),
        ("POST", format!("/ping/{encoded}/start")),
        ("POST", format!("/ping/{uuid}/0")),
        ("HEAD", format!("/ping/{encoded}")),
    ] {
        let (status, headers, text) = app.ping(method, &path, Some(b"body".to_vec())).await;
        let body = if method == "HEAD" { "" } else { "OK" };
        assert_eq!((status, text.as_str()), (StatusCode::OK, body), "{path}");
        assert_eq!(headers["ping-body-limit"], "100000", "{path}");
        assert_eq!(headers["content-length"], "2", "{method} {path}");
    }
    // Shapes of no ping route still get the router's 404.
    for path in [
        format!("/ping/{uuid}/start/extra"),
        format!("/ping//{uuid}"),
        format!("/ping/{uuid}//"),
        "/ping/".to_string(),
    ] {
        let (status, _, _) = app.ping("GET", &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let forwarded = app
        .client
        .get(app.url(&format!("/ping/{uuid}/log")))
        .header("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);
    let pings = app.pings(&uuid).await;
    let addresses: Vec<&str> = pings
        .iter()
        .map(|p| p["remote_addr"].as_str().unwrap())
        .collect();
    // Newest first: the forwarded log ping, then the five above.
    assert_eq!(addresses[0], "203.0.113.7");
    assert_eq!(addresses[1..], ["127.0.0.1"; 5]);
    assert_eq!(pings[4]["type"], "success", "the percent-encoded ping");
    assert_eq!(pings[3]["type"], "start");
}
