//! Incident figures (ignored by default; run in release, see bench/README.md):
//!
//! - one update to 1 000 webhook stakeholders on loopback (each its own host, 127.0.x.y, so
//!   each is its own destination as real stakeholders are): time from the API call until
//!   all 1 000 are delivered (target < 5 s on SQLite);
//! - the postmortem export of an incident whose check has 10 000 pings in its window (5 000
//!   runs, each finish with a body whose tail is shown; target < 1 s), as Markdown and as JSON.
//!
//! `cargo test --release -p keepwatch --test api incident_bench -- --ignored --nocapture`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{AppOptions, apply, engine_ping, spawn_app_with};

const STAKEHOLDERS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored in release"]
async fn incident_bench_update_to_1000_stakeholders() {
    let app = spawn_app_with(AppOptions::default()).await;
    // One receiver on every loopback address, on one port.
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    let members: Vec<String> = (0..STAKEHOLDERS)
        .map(|i| {
            format!(
                "  {{ webhook = \"http://127.0.{}.{}:{port}/hook\" }},",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    let file = format!(
        "{}stakeholders = [\"all\"]\n[[stakeholders]]\nname = \"all\"\nmembers = [\n{}\n]\n",
        crate::helpers::one_service(),
        members.join("\n")
    );
    apply(&app, &file).await;
    let (status, declared) = app
        .api(
            "POST",
            "/api/v1/incidents/",
            Some(&app.api_key),
            Some(json!({"title": "bench", "owner": "alice", "service": "billing"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{declared}");
    let id = declared["id"].as_i64().unwrap();
    wait_for(&received, STAKEHOLDERS).await;

    let started = Instant::now();
    let (status, _) = app
        .api(
            "POST",
            &format!("/api/v1/incidents/{id}/updates"),
            Some(&app.api_key),
            Some(json!({"status": "identified", "message": "the cause is known"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let queued = started.elapsed();
    wait_for(&received, 2 * STAKEHOLDERS).await;
    let delivered = started.elapsed();
    println!(
        "BENCH incident update to {STAKEHOLDERS} webhook stakeholders (SQLite): API answered in \
         {:.3} s, all delivered in {:.3} s",
        queued.as_secs_f64(),
        delivered.as_secs_f64()
    );
    // Every delivery is recorded too, one row per stakeholder.
    loop {
        let sent = app
            .store
            .incident_messages(id)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.kind == "incident_update" && m.state == "sent")
            .count();
        if sent == 2 * STAKEHOLDERS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{sent} recorded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "BENCH ... and every delivery recorded after {:.3} s",
        started.elapsed().as_secs_f64()
    );
    app.stop().await;
}

async fn wait_for(received: &AtomicUsize, n: usize) {
    let started = Instant::now();
    while received.load(Ordering::SeqCst) < n {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} of {n} delivered",
            received.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored in release"]
async fn incident_bench_export_with_10000_pings() {
    let app = spawn_app_with(AppOptions {
        ping_log_limit: Some(20_000),
        ..Default::default()
    })
    .await;
    apply(&app, &crate::helpers::one_service()).await;
    let check = app
        .create_check(
            json!({"name": "nightly", "timeout": 3600, "grace": 60, "service": "billing"}),
        )
        .await;
    let uuid = check["uuid"].as_str().unwrap().to_string();
    let parsed: uuid::Uuid = uuid.parse().unwrap();
    for i in 0..10_000 {
        let mut ping = engine_ping(parsed);
        if i % 2 == 0 {
            ping.kind = keepwatch_core::check::PingKind::Start;
        } else {
            ping.body = Some(
                format!("processed batch {i}\n{}\nrows done\n", "x".repeat(2000)).into_bytes(),
            );
        }
        app.engine.ping(ping).await.unwrap();
    }
    app.engine.flush().await.unwrap();
    let (status, declared) = app
        .api(
            "POST",
            "/api/v1/incidents/",
            Some(&app.api_key),
            Some(json!({"title": "bench", "owner": "alice", "checks": [uuid]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{declared}");
    let id = declared["id"].as_i64().unwrap();
    for format in ["markdown", "json"] {
        let started = Instant::now();
        let response = app
            .client
            .get(app.url(&format!(
                "/api/v1/incidents/{id}/export?format={format}&tz=America/Denver"
            )))
            .header("X-Api-Key", &app.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let took = started.elapsed();
        // 10 000 pings, every other one a start: 5 000 runs, each one entry.
        let runs = body.matches("nightly: run").count();
        assert!(runs >= 5_000, "{runs} runs in the {format} export");
        println!(
            "BENCH export of an incident with 10 000 pings in its window ({format}, {} KB): {:.3} s",
            body.len() / 1024,
            took.as_secs_f64()
        );
    }
    app.stop().await;
}
