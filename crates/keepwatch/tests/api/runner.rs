//! `keepwatch run` and `keepwatch ping` as real child processes against the real server.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Receiver, TestApp, eventually, spawn_app};

/// `keepwatch` with a spool of its own, so tests never share one (nor use the user's).
fn command(spool: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_keepwatch"));
    command
        .args(args)
        .env_remove("KEEPWATCH_SERVER")
        .env_remove("KEEPWATCH_PING_KEY")
        .env("KEEPWATCH_SPOOL_DIR", spool);
    command
}

async fn keepwatch(args: &[&str]) -> Output {
    let spool = tempfile::tempdir().unwrap();
    command(spool.path(), args).output().await.unwrap()
}

/// `keepwatch run <uuid> --server <the app> <args…>`.
async fn run_check(app: &TestApp, uuid: &str, args: &[&str]) -> Output {
    let mut all = vec!["run", uuid, "--server", &app.address];
    all.extend_from_slice(args);
    keepwatch(&all).await
}

/// `run <uuid> --server <server> <options…> -- <job…>`: the arguments of `keepwatch run`.
fn run_args<'a>(
    uuid: &'a str,
    server: &'a str,
    options: &[&'a str],
    job: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["run", uuid, "--server", server];
    args.extend_from_slice(options);
    args.push("--");
    args.extend_from_slice(job);
    args
}

/// A job that is a shell script.
fn sh(script: &str) -> [&str; 3] {
    ["sh", "-c", script]
}

async fn keepwatch_with(spool: &Path, args: &[&str]) -> Output {
    command(spool, args).output().await.unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// keepwatch's stderr, which must be one clear line whatever went wrong.
fn one_line(out: &Output) -> String {
    let stderr = stderr(out);
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    stderr
}

async fn run(app: &TestApp, uuid: &str, script: &str) -> Output {
    keepwatch(&run_args(uuid, &app.address, &[], &sh(script))).await
}

pub async fn body_of(app: &TestApp, ping: &Value) -> String {
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
    app.create_check_uuid(json!({"name": "job", "channels": "*"}))
        .await
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
    let pings = app.pings(&uuid).await;
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
    assert_eq!(app.pings(&uuid).await[0]["exit_status"], 3);
    assert_eq!(app.get_check(&uuid).await["status"], "down");

    let out = run(&app, &uuid, "kill -TERM $$").await;
    assert_eq!(out.status.code(), Some(143), "128 + SIGTERM");
    assert_eq!(app.pings(&uuid).await[0]["exit_status"], 143);

    let out = run_check(&app, &uuid, &["--", "/no/such/command"]).await;
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("keepwatch: cannot run `/no/such/command`"),
        "{stderr}"
    );
    let last = &app.pings(&uuid).await[0];
    assert_eq!(last["exit_status"], 127);
    assert!(body_of(&app, last).await.contains("cannot run"));
}

#[tokio::test]
async fn a_server_that_is_down_never_changes_the_job() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let uuid = uuid::Uuid::new_v4().to_string();
    let out = keepwatch(&run_args(
        &uuid,
        &dead,
        &["--start-timeout", "1"],
        &sh("echo ran; exit 5"),
    ))
    .await;
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(out.stdout, b"ran\n");
    let stderr = one_line(&out);
    assert!(
        stderr.starts_with("keepwatch: cannot reach the server") && stderr.contains("spooled"),
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
    let last = &app.pings(&uuid).await[0];
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
        .args(run_args(
            &uuid,
            &app.address,
            &[],
            &sh("trap 'exit 42' TERM; while true; do sleep 0.05; done"),
        ))
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
    assert_eq!(app.pings(&uuid).await[0]["exit_status"], 42);
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

fn dead_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    address
}

fn date_of(ping: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(ping["date"].as_str().unwrap())
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn pings_spooled_while_the_server_is_down_are_delivered_in_order_with_their_times() {
    let app = spawn_app().await;
    let uuid = new_check(&app).await;
    let spool = tempfile::tempdir().unwrap();
    let dead = dead_server();
    let run_against = |server: String, script: &'static str| {
        let (spool, uuid) = (spool.path().to_owned(), uuid.clone());
        async move {
            let args = run_args(&uuid, &server, &[], &sh(script));
            keepwatch_with(&spool, &args).await
        }
    };

    // The server is down: the job runs, and both pings wait in the spool.
    let first = run_against(dead.clone(), "echo first").await;
    assert_eq!(first.status.code(), Some(0));
    let first_done = chrono::Utc::now();
    let listed = keepwatch_with(spool.path(), &["spool", "list"]).await;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.lines().next().unwrap().contains("/start?rid="));
    assert!(app.pings(&uuid).await.is_empty());

    // The next run delivers them before its own pings.
    let second = run_against(app.address.clone(), "echo second").await;
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(stderr(&second), "");

    // Down again, then `keepwatch spool flush` once it is back.
    let third = run_against(dead.clone(), "echo third; exit 4").await;
    assert_eq!(third.status.code(), Some(4));
    let third_done = chrono::Utc::now();
    // A flush while the server is still down keeps everything and says so.
    let failed = keepwatch_with(spool.path(), &["spool", "flush", "--server", &dead]).await;
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&failed.stdout),
        "delivered 0, rejected 0, waiting 2\n"
    );
    assert!(stderr(&failed).contains("cannot reach the server"));
    let flushed = keepwatch_with(spool.path(), &["spool", "flush", "--server", &app.address]).await;
    assert!(flushed.status.success(), "{}", stderr(&flushed));
    assert_eq!(
        String::from_utf8_lossy(&flushed.stdout),
        "delivered 2, rejected 0, waiting 0\n"
    );
    assert!(
        keepwatch_with(spool.path(), &["spool", "list"])
            .await
            .stdout
            .is_empty()
    );

    let mut pings = app.pings(&uuid).await;
    pings.reverse(); // oldest first
    let types: Vec<&str> = pings.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["start", "success", "start", "success", "start", "fail"]
    );
    let bodies = [
        body_of(&app, &pings[1]).await,
        body_of(&app, &pings[3]).await,
        body_of(&app, &pings[5]).await,
    ];
    assert_eq!(bodies, ["first\n", "second\n", "third\n"]);
    // Each ping keeps the time it was made, not the time it arrived.
    let dates: Vec<_> = pings.iter().map(date_of).collect();
    assert!(dates.is_sorted(), "{dates:?}");
    assert!(dates[1] <= first_done, "spooled finish dated {}", dates[1]);
    assert!(dates[5] <= third_done);
    assert_eq!(pings[0]["rid"], pings[1]["rid"]);
    assert!(
        pings[1]["duration"].is_number(),
        "start and finish still pair up"
    );
    let check = app.get_check(&uuid).await;
    assert_eq!(check["status"], "down", "the last run failed");
}

/// A server that answers every request with 500, or accepts and never answers.
async fn broken_server(hang: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            if hang {
                held.push(socket);
                continue;
            }
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    address
}

#[tokio::test]
async fn a_server_that_answers_500_or_hangs_never_holds_up_the_job() {
    for hang in [false, true] {
        let server = broken_server(hang).await;
        let spool = tempfile::tempdir().unwrap();
        let uuid = uuid::Uuid::new_v4().to_string();
        let started = std::time::Instant::now();
        let out = keepwatch_with(
            spool.path(),
            &run_args(
                &uuid,
                &server,
                &["--start-timeout", "300ms", "--finish-timeout", "300ms"],
                &sh("echo ran; exit 6"),
            ),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(6), "hang={hang}");
        assert_eq!(out.stdout, b"ran\n");
        let stderr = one_line(&out);
        let expected = if hang {
            "no answer within 0.3s"
        } else {
            "answered 500"
        };
        assert!(stderr.contains(expected), "{stderr}");
        assert!(took < Duration::from_secs(5), "held up for {took:?}");
        let spooled = std::fs::read_dir(spool.path())
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().path().extension() == Some("ping".as_ref()))
            .count();
        assert_eq!(spooled, 2, "start and finish wait for a server that works");
    }
}

#[tokio::test]
async fn a_stray_process_running_the_same_command_is_reported_at_the_next_start() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let uuid = new_check(&app).await;
    // The same command line twice; only the environment makes the stray live long.
    let marker = format!("nightly-{uuid}");
    // Two commands: sh must not exec sleep in its own place (dash does for the last command).
    let script = "sleep \"${STRAY_SLEEP:-0}\"; exit 0";
    let mut stray = tokio::process::Command::new("sh")
        .args(["-c", script, &marker])
        .env("STRAY_SLEEP", "60")
        .spawn()
        .unwrap();
    let stray_pid = stray.id().unwrap();
    let out = run_check(&app, &uuid, &["--", "sh", "-c", script, &marker]).await;
    stray.kill().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let overlap = hook.next().await.json();
    assert_eq!(overlap["event"], "overlap");
    let strays = overlap["strays"].as_array().unwrap();
    assert_eq!(strays.len(), 1, "{overlap}");
    assert_eq!(strays[0]["pid"], stray_pid);
    assert!(strays[0]["cmdline"].as_str().unwrap().ends_with(&marker));
    assert!(strays[0]["started_at"].is_string());
    let start = app.pings(&uuid).await.pop().unwrap();
    assert_eq!(start["type"], "start");
    assert!(
        body_of(&app, &start)
            .await
            .contains("other processes are running this command")
    );
}

#[tokio::test]
async fn a_held_lock_stops_the_run_names_the_holder_and_can_be_waited_for() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let uuid = new_check(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("job.lock");
    let lock = lock.to_str().unwrap();
    let spool = dir.path().join("spool");
    // Not `sleep 60`: another test runs that at the same time, and the holder's start would
    // report it as a stray run of the same command.
    let holder = command(
        &spool,
        &run_args(&uuid, &app.address, &["--lock", lock], &["sleep", "61"]),
    )
    .spawn()
    .unwrap();
    let holder_pid = holder.id().unwrap();
    eventually(|| async { (app.get_check(&uuid).await["started"] == true).then_some(()) }).await;

    let refused = run_check(&app, &uuid, &["--lock", lock, "--", "true"]).await;
    assert_eq!(refused.status.code(), Some(75), "{}", stderr(&refused));
    let message = one_line(&refused);
    assert!(
        message.contains(&format!("locked by pid {holder_pid}")),
        "{message}"
    );
    let overlap = hook.next().await.json();
    assert_eq!(overlap["event"], "overlap");
    assert_eq!(overlap["strays"][0]["pid"], holder_pid);
    assert!(
        overlap["strays"][0]["cmdline"]
            .as_str()
            .unwrap()
            .contains("sleep 61")
    );
    let log = &app.pings(&uuid).await[0];
    assert_eq!(
        log["type"], "log",
        "a refused run is logged, not counted as a run"
    );

    // A run willing to wait gets the lock once the holder's job ends.
    let waiter = command(
        &spool,
        &run_args(
            &uuid,
            &app.address,
            &["--lock", lock, "--lock-wait", "30s"],
            &["echo", "got it"],
        ),
    )
    .output();
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        send_signal(holder_pid, 15);
    };
    let (waited, ()) = tokio::join!(waiter, release);
    let waited = waited.unwrap();
    assert_eq!(waited.status.code(), Some(0), "{}", stderr(&waited));
    assert_eq!(waited.stdout, b"got it\n");
    assert_eq!(
        holder.wait_with_output().await.unwrap().status.code(),
        Some(143)
    );
}

#[tokio::test]
async fn a_run_that_processed_far_less_than_usual_raises_an_anomaly() {
    let app = spawn_app().await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let uuid = new_check(&app).await;
    for rows in [100, 120, 90, 10] {
        let script = format!("echo loading; echo 'loaded {rows} rows'");
        let out = run_check(
            &app,
            &uuid,
            &[
                "--volume-regex",
                r"loaded (\d+) rows",
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(app.pings(&uuid).await[0]["volume"], rows);
    }
    let anomaly = hook.next().await.json();
    assert_eq!(anomaly["event"], "anomaly", "{anomaly}");
    assert_eq!(anomaly["anomaly"]["metric"], "volume");
    assert_eq!(anomaly["anomaly"]["value"], 10.0);
    assert_eq!(anomaly["anomaly"]["median"], 100.0);
    assert_eq!(anomaly["anomaly"]["threshold_pct"], 50);
    let check = app.get_check(&uuid).await;
    assert_eq!(
        check["status"], "up",
        "an anomaly alerts; the run still succeeded"
    );
    // Issue 17: an anomalous run stays out of the baseline, so the next low night is judged
    // against normal ones (this was [100, 120, 90, 10] before).
    assert_eq!(check["run_history"]["volumes"], json!([100, 120, 90]));

    // --volume-file: the number the job wrote during this run.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("count");
    let file = file.to_str().unwrap();
    let script = format!("echo 1,234 > {file}");
    let args = run_args(&uuid, &app.address, &["--volume-file", file], &sh(&script));
    assert_eq!(keepwatch(&args).await.status.code(), Some(0));
    assert_eq!(app.pings(&uuid).await[0]["volume"], 1234);
    // A stale file (not written by this run) reports no volume, and says so once.
    let args = run_args(&uuid, &app.address, &["--volume-file", file], &["true"]);
    let out = keepwatch(&args).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("was not written by this run"),
        "{}",
        stderr(&out)
    );
    assert_eq!(app.pings(&uuid).await[0]["volume"], json!(null));
}

#[tokio::test]
async fn a_job_past_its_timeout_is_killed_and_reported_as_failed() {
    let app = spawn_app().await;
    let uuid = new_check(&app).await;
    let out = run_check(&app, &uuid, &["--timeout", "300ms", "--", "sleep", "60"]).await;
    assert_eq!(out.status.code(), Some(124));
    assert!(stderr(&out).contains("--timeout 300ms"), "{}", stderr(&out));
    let last = &app.pings(&uuid).await[0];
    assert_eq!(last["type"], "fail");
    assert!(
        body_of(&app, last)
            .await
            .contains("killed after running longer than --timeout")
    );
    assert_eq!(app.get_check(&uuid).await["status"], "down");

    // A job that ignores SIGTERM gets SIGKILL after --kill-after.
    let started = std::time::Instant::now();
    let out = run_check(
        &app,
        &uuid,
        &[
            "--timeout",
            "200ms",
            "--kill-after",
            "300ms",
            "--",
            "sh",
            "-c",
            "trap '' TERM; while :; do sleep 0.05; done",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(124));
    assert!(started.elapsed() < Duration::from_secs(10));

    // What the job started is stopped with it: the `sleep` under `sh` does not keep the
    // output open until --kill-after (10 s by default) runs out.
    let started = std::time::Instant::now();
    let out = run_check(
        &app,
        &uuid,
        &["--timeout", "300ms", "--", "sh", "-c", "sleep 60; exit 0"],
    )
    .await;
    assert_eq!(out.status.code(), Some(124));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[tokio::test]
async fn bad_runner_options_are_refused_before_anything_runs() {
    for (args, expected) in [
        (
            vec!["--timeout", "soon"],
            "invalid value 'soon' for '--timeout",
        ),
        (
            vec!["--volume-regex", "(unclosed"],
            "invalid value '(unclosed'",
        ),
        (vec!["--lock-wait", "5s"], "--lock <FILE>"),
    ] {
        let mut all = vec!["run"];
        all.extend(args);
        all.extend([
            "00000000-0000-0000-0000-000000000000",
            "--",
            "touch",
            "/tmp/never",
        ]);
        let out = keepwatch(&all).await;
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
}

#[tokio::test]
async fn a_broken_spool_costs_one_line_never_the_job() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the spool directory should be: nothing can be written under it.
    let not_a_dir = dir.path().join("spool");
    std::fs::write(&not_a_dir, "").unwrap();
    let uuid = uuid::Uuid::new_v4().to_string();
    let out = keepwatch_with(
        &not_a_dir,
        &run_args(&uuid, &dead_server(), &[], &sh("echo ran; exit 9")),
    )
    .await;
    assert_eq!(out.status.code(), Some(9));
    assert_eq!(out.stdout, b"ran\n");
    let stderr = one_line(&out);
    assert!(
        stderr.contains("is unusable") && stderr.contains("the ping is lost"),
        "{stderr}"
    );
}

#[tokio::test]
async fn streaming_hundreds_of_megabytes_keeps_memory_bounded() {
    let app = spawn_app().await;
    let uuid = new_check(&app).await;
    let spool = tempfile::tempdir().unwrap();
    // The runner's own peak resident set, from wait4 in a small parent (python3). Not
    // getrusage(RUSAGE_CHILDREN) or wait4 here: a child spawned with vfork carries the
    // high-water mark of this test process, servers of other tests included, into its own.
    const PEAK: &str = "import os, subprocess, sys\n\
        child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n\
        _, status, usage = os.wait4(child.pid, 0)\n\
        print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)";
    let out = tokio::process::Command::new("python3")
        .args(["-c", PEAK, env!("CARGO_BIN_EXE_keepwatch")])
        .args(run_args(
            &uuid,
            &app.address,
            &[],
            &sh("head -c 300000000 /dev/zero; echo END"),
        ))
        .env_remove("KEEPWATCH_SERVER")
        .env("KEEPWATCH_SPOOL_DIR", spool.path())
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let (code, peak_kib) = printed.trim().split_once(' ').unwrap();
    assert_eq!(code, "0", "{}", String::from_utf8_lossy(&out.stderr));
    let peak_mib = peak_kib.parse::<u64>().unwrap() / 1024;
    assert!(
        peak_mib < 64,
        "peak RSS {peak_mib} MiB while passing 300 MB through"
    );
    let last = &app.pings(&uuid).await[0];
    assert!(body_of(&app, last).await.ends_with("\0END\n"));
}

/// The open alert with this dedup key (`check:<uuid>` for down, failed and hung,
/// `check:<uuid>:overlap`), once the pager has opened it.
async fn open_alert(app: &TestApp, dedup_key: &str) -> Value {
    eventually(|| async {
        // The full key: a read-only one sees check UUIDs redacted.
        let (_, body) = app.get("/api/v1/alerts/?status=open").await;
        body["alerts"]
            .as_array()?
            .iter()
            .find(|alert| alert["dedup_key"] == dedup_key)
            .cloned()
    })
    .await
}

/// Waits until `pid` runs `program` (past its exec), as /proc shows it.
async fn wait_for_exec(pid: u32, program: &str) {
    eventually(|| async {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        cmdline.starts_with(program.as_bytes()).then_some(())
    })
    .await
}

/// An executable shell script in `dir`.
fn script(dir: &Path, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_stray_copy_of_a_shebang_script_is_named_in_the_overlap_alert() {
    let app = spawn_app().await;
    let uuid = new_check(&app).await;
    let dir = tempfile::tempdir().unwrap();
    // Two commands: sh must not exec sleep in its own place.
    let job = script(
        dir.path(),
        "nightly.sh",
        "#!/bin/sh\nsleep \"${STRAY_SLEEP:-0}\"; exit 0\n",
    );
    // The stray: the same script started directly, which /proc shows as `/bin/sh <script>`.
    let mut stray = tokio::process::Command::new(&job)
        .arg("--all")
        .env("STRAY_SLEEP", "60")
        .spawn()
        .unwrap();
    let stray_pid = stray.id().unwrap();
    wait_for_exec(stray_pid, "/bin/sh").await;
    let out = run_check(&app, &uuid, &["--", &job, "--all"]).await;
    stray.kill().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let alert = open_alert(&app, &format!("check:{uuid}:overlap")).await;
    let strays = alert["details"]["strays"].as_array().unwrap();
    assert_eq!(strays.len(), 1, "{alert}");
    assert_eq!(strays[0]["pid"], stray_pid);
    assert_eq!(strays[0]["cmdline"], format!("/bin/sh {job} --all"));
    // The run is the job's own process, not keepwatch's.
    let start = app.pings(&uuid).await.pop().unwrap();
    assert_eq!(alert["details"]["run"]["pid"], start["pid"]);
}

#[tokio::test]
async fn watch_patterns_name_matching_processes_from_the_flag_and_from_the_check() {
    let app = spawn_app().await;
    let marker = format!(
        "rogue-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let mut rogue = tokio::process::Command::new("sh")
        .args(["-c", "sleep 60; exit 0", &marker])
        .spawn()
        .unwrap();
    let rogue_pid = rogue.id().unwrap();
    wait_for_exec(rogue_pid, "sh").await;
    let pattern = format!("^sh -c .* {marker}$");

    // --watch on the command line: named at the start.
    let uuid = new_check(&app).await;
    let out = run_check(&app, &uuid, &["--watch", &pattern, "--", "true"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let alert = open_alert(&app, &format!("check:{uuid}:overlap")).await;
    let strays = alert["details"]["strays"].as_array().unwrap();
    assert_eq!(strays.len(), 1, "{alert}");
    assert_eq!(
        (strays[0]["pid"].clone(), strays[0]["watch"].clone()),
        (json!(rogue_pid), json!(pattern))
    );
    let start = app.pings(&uuid).await.pop().unwrap();
    assert!(
        body_of(&app, &start)
            .await
            .contains("processes matching watch patterns are running")
    );

    // The check's own `watch` list: the runner learns it from the start's answer.
    let (status, body) = app
        .post(
            "/api/v3/checks/",
            Some(json!({"name": "watched", "watch": ["(unclosed"]})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with(
            "json validation error: watch pattern `(unclosed` is not a regular expression"
        ),
        "{body}"
    );
    let check = app
        .create_check(json!({"name": "watched", "watch": [pattern], "channels": "*"}))
        .await;
    assert_eq!(check["watch"], json!([pattern]));
    let watched = check["uuid"].as_str().unwrap();
    let out = run_check(&app, watched, &["--", "true"]).await;
    rogue.kill().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = eventually(|| async {
        let pings = app.pings(watched).await;
        pings.into_iter().find(|p| p["type"] == "log")
    })
    .await;
    assert!(
        body_of(&app, &log)
            .await
            .contains(&format!("pid {rogue_pid}"))
    );
    // The log ping raises an overlap on the second check, naming the rogue.
    let alert = open_alert(&app, &format!("check:{watched}:overlap")).await;
    let strays = &alert["details"]["strays"];
    assert_eq!(
        (strays[0]["pid"].clone(), strays[0]["watch"].clone()),
        (json!(rogue_pid), json!(pattern))
    );
}

#[tokio::test]
async fn a_hung_run_s_alert_carries_the_snapshot_of_the_job_and_who_holds_its_lock() {
    let app = spawn_app().await;
    let check = app
        .create_check(json!({"name": "job", "timeout": 3600, "grace": 60, "max_runtime": 600, "channels": "*"}))
        .await;
    let uuid = check["uuid"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("lock");
    std::fs::write(&lock, "").unwrap();
    let lock = lock.to_str().unwrap();
    // The rogue holds the lock the job waits for (-o: flock itself, not its `sleep`).
    let mut rogue = tokio::process::Command::new("flock")
        .args(["-o", lock, "sleep", "60"])
        .spawn()
        .unwrap();
    let rogue_pid = rogue.id().unwrap();
    eventually(|| async {
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        locks
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(&rogue_pid.to_string()))
            .then_some(())
    })
    .await;
    // The snapshot is due 599 s before the 600 s max runtime: a second after the start.
    let spool = tempfile::tempdir().unwrap();
    let runner = command(
        spool.path(),
        &run_args(
            uuid,
            &app.address,
            &["--snapshot-before", "599s"],
            &["flock", lock, "true"],
        ),
    )
    .spawn()
    .unwrap();
    let runner_pid = runner.id().unwrap();
    let snapshot_ping = eventually(|| async {
        let pings = app.pings(uuid).await;
        pings.into_iter().find(|p| p["type"] == "log")
    })
    .await;
    let start = app.pings(uuid).await.pop().unwrap();
    assert_eq!(start["type"], "start");
    let job_pid = start["pid"].as_u64().unwrap();
    assert_ne!(
        job_pid,
        u64::from(runner_pid),
        "the job's pid, not keepwatch's"
    );
    assert_eq!(snapshot_ping["rid"], start["rid"]);

    // The deadline passes (the server's clock): the hung alert carries the snapshot.
    app.advance(chrono::TimeDelta::seconds(600));
    let alert = open_alert(&app, &format!("check:{uuid}")).await;
    let details = &alert["details"];
    assert_eq!(details["run"]["pid"], job_pid);
    let snapshot = &details["snapshot"];
    let job = &snapshot["processes"][0];
    assert_eq!(job["pid"], job_pid, "{snapshot}");
    assert_eq!(job["state"], "S", "{snapshot}");
    assert!(job["cmdline"].as_str().unwrap().starts_with("flock "));
    assert!(job["files"].as_array().unwrap().contains(&json!(lock)));
    let holder = snapshot["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["how"] == "flock")
        .unwrap_or_else(|| panic!("{snapshot}"));
    assert_eq!(
        (holder["pid"].clone(), holder["file"].clone()),
        (json!(rogue_pid), json!(lock))
    );
    let summary = snapshot["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("pid {job_pid} S"))
            && summary.contains(&format!("{lock} flock lock held by pid {rogue_pid}")),
        "{summary}"
    );
    // The rogue goes, the job gets its lock and finishes; keepwatch exits with its status.
    rogue.kill().await.unwrap();
    let out = runner.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn a_run_without_a_way_to_ping_says_how_to_fix_it_and_still_runs_the_job() {
    let out = keepwatch(&["run", "nightly", "--", "sh", "-c", "echo ran; exit 3"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"ran\n");
    let line = one_line(&out);
    assert!(
        line.contains("give --ping-key or set KEEPWATCH_PING_KEY")
            && line.contains("running the job without pings"),
        "{line}"
    );
    let uuid = uuid::Uuid::new_v4().to_string();
    let out = keepwatch(&run_args(&uuid, "", &[], &["sh", "-c", "exit 4"])).await;
    assert_eq!(out.status.code(), Some(4));
    let line = one_line(&out);
    assert!(line.contains("set --server or KEEPWATCH_SERVER"), "{line}");
}

/// `keepwatch run` says on its start ping when it could not look for stray processes
/// (`X-Keepwatch-Scan-Skipped`); the audit reports it for the check until a start that
/// could look.
#[tokio::test]
async fn the_audit_reports_a_run_that_could_not_look_for_strays_until_one_that_could() {
    let app = crate::helpers::spawn_app().await;
    crate::helpers::apply(&app, &crate::helpers::one_service()).await;
    let uuid = app
        .create_check_uuid(
            serde_json::json!({"name": "nightly", "timeout": 86400, "grace": 3600,
            "service": "billing"}),
        )
        .await;
    let scan_findings = || async {
        app.engine.flush().await.unwrap();
        let (status, report) = app.get("/api/v1/audit").await;
        assert_eq!(status, axum::http::StatusCode::OK, "{report}");
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["id"] == "stray-scan-skipped")
            .cloned()
            .collect::<Vec<serde_json::Value>>()
    };
    assert_eq!(scan_findings().await, Vec::<serde_json::Value>::new());

    let start = |skipped: Option<&'static str>| {
        let mut request = app.client.post(app.url(&format!(
            "/ping/{uuid}/start?rid=6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b&host=web1&pid=42"
        )));
        if let Some(why) = skipped {
            request = request.header("X-Keepwatch-Scan-Skipped", why);
        }
        request.send()
    };
    assert_eq!(
        start(Some("cannot read /proc: permission denied"))
            .await
            .unwrap()
            .status(),
        200
    );
    let found = scan_findings().await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0]["objects"],
        serde_json::json!([format!("check:{uuid}")])
    );
    assert_eq!(found[0]["severity"], "warning");
    let summary = found[0]["summary"].as_str().unwrap();
    assert_eq!(
        summary,
        "`keepwatch run` could not look for stray processes of check `nightly` at its newest \
         run (2026-11-26 12:00 UTC): cannot read /proc: permission denied"
    );
    // It finishes: still the newest run's word.
    app.ping(
        "GET",
        &format!("/ping/{uuid}?rid=6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"),
        None,
    )
    .await;
    assert_eq!(scan_findings().await.len(), 1);
    // The next run could look.
    app.advance(chrono::TimeDelta::hours(1));
    assert_eq!(start(None).await.unwrap().status(), 200);
    assert_eq!(scan_findings().await, Vec::<serde_json::Value>::new());
}
