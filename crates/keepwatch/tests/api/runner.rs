//! `keepwatch run` and `keepwatch ping` as real child processes against the real server.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Receiver, TestApp, eventually, spawn_app};

async fn keepwatch(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args(args)
        .env_remove("KEEPWATCH_SERVER")
        .output()
        .await
        .unwrap()
}

async fn run(app: &TestApp, uuid: &str, script: &str) -> Output {
    keepwatch(&[
        "run",
        uuid,
        "--server",
        &app.address,
        "--",
        "sh",
        "-c",
        script,
    ])
    .await
}

async fn pings(app: &TestApp, uuid: &str) -> Vec<Value> {
    let (_, body) = app
        .api(
            "GET",
            &format!("/api/v3/checks/{uuid}/pings/"),
            Some(&app.api_key),
            None,
        )
        .await;
    body["pings"].as_array().unwrap().clone()
}

async fn body_of(app: &TestApp, ping: &Value) -> String {
    let url = ping["body_url"].as_str().unwrap();
    app.client
        .get(url)
        .header("X-Api-Key", &app.api_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn new_check(app: &TestApp) -> String {
    app.create_check(json!({"name": "job", "channels": "*"}))
        .await["uuid"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_successful_job_is_passed_through_and_reported_with_its_output() {
    let app = spawn_app().await;
    let uuid = new_check(&app).await;
    let out = run(&app, &uuid, "echo hello; echo oops >&2").await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(
        out.stderr, b"oops\n",
        "nothing of keepwatch's own on stderr"
    );
    let pings = pings(&app, &uuid).await;
    assert_eq!(
        (pings[0]["type"].clone(), pings[1]["type"].clone()),
        (json!("success"), json!("start"))
    );
    assert_eq!(pings[0]["rid"], pings[1]["rid"]);
    assert!(pings[0]["duration"].is_number());
    assert!(pings[0]["host"].is_string() && pings[0]["pid"].is_number());
    let body = body_of(&app, &pings[0]).await;
    assert!(body.contains("hello") && body.contains("oops"), "{body}");
    assert_eq!(app.get_check(&uuid).await["status"], "up");
}

#[tokio::test]
async fn exit_codes_signals_and_missing_commands_are_kept_and_reported() {
    let app = spawn_app().await;
    let uuid = new_check(&app).await;
    let out = run(&app, &uuid, "exit 3").await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(pings(&app, &uuid).await[0]["exit_status"], 3);
    assert_eq!(app.get_check(&uuid).await["status"], "down");

    let out = run(&app, &uuid, "kill -TERM $$").await;
    assert_eq!(out.status.code(), Some(143), "128 + SIGTERM");
    assert_eq!(pings(&app, &uuid).await[0]["exit_status"], 143);

    let out = keepwatch(&[
        "run",
        &uuid,
        "--server",
        &app.address,
        "--",
        "/no/such/command",
    ])
    .await;
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("keepwatch: cannot run `/no/such/command`"),
        "{stderr}"
    );
    let last = &pings(&app, &uuid).await[0];
    assert_eq!(last["exit_status"], 127);
    assert!(body_of(&app, last).await.contains("cannot run"));
}

#[tokio::test]
async fn a_server_that_is_down_never_changes_the_job() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let uuid = uuid::Uuid::new_v4().to_string();
    let out = keepwatch(&[
        "run",
        &uuid,
        "--server",
        &dead,
        "--start-timeout",
        "1",
        "--",
        "sh",
        "-c",
        "echo ran; exit 5",
    ])
    .await;
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(out.stdout, b"ran\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    assert!(
        stderr.starts_with("keepwatch: start ping failed"),
        "{stderr}"
    );
    // A bad server URL or an unknown check: the same, the job still runs.
    let out = keepwatch(&["run", "not-a-uuid", "--server", &dead, "--", "true"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --ping-key"));
}

#[tokio::test]
async fn only_the_tail_of_a_large_output_is_sent() {
    let app = spawn_app().await;
    let uuid = new_check(&app).await;
    // 3 MB of output, then a marker: the body holds the last 100 000 bytes.
    let out = run(
        &app,
        &uuid,
        "head -c 3000000 /dev/zero | tr '\\0' x; echo END",
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout.len(), 3_000_004);
    let last = &pings(&app, &uuid).await[0];
    let body = body_of(&app, last).await;
    assert_eq!(body.len(), 100_000);
    assert!(body.ends_with("xEND\n"));
    assert_eq!(
        last["body_truncated"], false,
        "the runner trims to the announced limit itself"
    );
}

#[tokio::test]
async fn two_runs_at_once_raise_an_overlap_naming_both_processes() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let uuid = new_check(&app).await;
    let (a, b) = tokio::join!(run(&app, &uuid, "sleep 0.5"), run(&app, &uuid, "sleep 0.5"));
    assert_eq!((a.status.code(), b.status.code()), (Some(0), Some(0)));
    let overlap = hook.next().await.json();
    assert_eq!(overlap["event"], "overlap");
    assert_ne!(overlap["run"]["pid"], overlap["other_run"]["pid"]);
    assert_ne!(overlap["run"]["rid"], overlap["other_run"]["rid"]);
}

#[tokio::test]
async fn sigterm_is_forwarded_to_the_job() {
    let app = spawn_app().await;
    let uuid = new_check(&app).await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args([
            "run",
            &uuid,
            "--server",
            &app.address,
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once the start ping is in, the job is running.
    eventually(|| async { (app.get_check(&uuid).await["n_pings"] == 1).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // let sh install its trap
    send_signal(child.id().unwrap(), 15);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(42),
        "the job's own answer to SIGTERM"
    );
    assert_eq!(pings(&app, &uuid).await[0]["exit_status"], 42);
}

fn send_signal(pid: u32, signal: i32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn ping_sends_one_signal() {
    let app = spawn_app().await;
    let uuid = new_check(&app).await;
    let out = keepwatch(&[
        "ping",
        &uuid,
        "fail",
        "--server",
        &app.address,
        "--data",
        "disk full",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.get_check(&uuid).await["status"], "down");
    let out = keepwatch(&[
        "ping",
        "nightly",
        "--server",
        &app.address,
        "--ping-key",
        &app.ping_key,
    ])
    .await;
    assert!(!out.status.success(), "no such slug");
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = keepwatch(&["ping", &uuid, "bogus", "--server", &app.address]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("`bogus` is not one of"));
    let out = keepwatch(&["ping", &uuid, "--server", &app.address]).await;
    assert!(out.status.success());
    assert_eq!(app.get_check(&uuid).await["status"], "up");
}
