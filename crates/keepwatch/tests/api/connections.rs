//! Connection timeouts and the connection cap: idle, slowloris and slow-body connections are
//! closed while pings keep being answered; connections past the cap wait, and are served
//! once others close; accept errors (no file descriptor left) are waited out.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keepwatch_server::ConnectionLimits;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{AppOptions, TestApp, spawn_app_with};

const HEADER: Duration = Duration::from_millis(800);
const IDLE: Duration = Duration::from_millis(1600);
const BODY: Duration = Duration::from_millis(800);

async fn app_with_short_timeouts() -> TestApp {
    spawn_app_with(AppOptions {
        limits: Some(ConnectionLimits {
            header_read_timeout: HEADER,
            idle_timeout: IDLE,
            body_read_timeout: BODY,
            ..ConnectionLimits::default()
        }),
        ..AppOptions::default()
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or 10 s pass, which fails the test);
/// returns what was read and when the close came.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Instant) {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&read).into(), Instant::now());
            }
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for 10 s (read so far: {:?})",
                String::from_utf8_lossy(&read)
            ),
        }
    }
}

/// The tick the watchdog looks at connections with: a close can come this much late.
fn slack() -> Duration {
    HEADER.min(IDLE) / 4 + Duration::from_millis(300)
}

#[tokio::test]
async fn idle_slowloris_and_slow_body_connections_are_closed_while_pings_answer() {
    let app = app_with_short_timeouts().await;
    let check = app.create_check(json!({"name": "nightly"})).await;
    let uuid = check["ping_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    // Connected, never a byte: the first request's headers are due HEADER after accept.
    let idle = async {
        let mut stream = connect(&app).await;
        let opened = Instant::now();
        let (read, closed) = read_until_closed(&mut stream).await;
        assert_eq!(read, "");
        closed - opened
    };
    // One request answered, then silence: closed IDLE after the answer.
    let kept_alive = async {
        let mut stream = connect(&app).await;
        stream
            .write_all(format!("GET /ping/{uuid} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        let answered = Instant::now();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
        let (_, closed) = read_until_closed(&mut stream).await;
        closed - answered
    };
    // Slowloris: a header line every 200 ms, never the end of the headers.
    let slowloris = async {
        let mut stream = connect(&app).await;
        let opened = Instant::now();
        stream
            .write_all(format!("GET /ping/{uuid} HTTP/1.1\r\n").as_bytes())
            .await
            .unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let drip = async {
            for i in 0.. {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if writer
                    .write_all(format!("X-{i}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        };
        let closed = async {
            let mut buf = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut buf))
                .await
                .expect("the server kept a slowloris connection open for 10 s");
            (read, buf)
        };
        let (_, buf) = tokio::select! {
            result = closed => result,
            _ = drip => unreachable!(),
        };
        assert_eq!(
            String::from_utf8_lossy(&buf),
            "",
            "no answer to half a request"
        );
        opened.elapsed()
    };
    // Slow body: 100 bytes announced, 5 a time every 200 ms. The ping is stored with what
    // came and answered when the body's time is up, and the connection is closed.
    let slow_body = async {
        let mut stream = connect(&app).await;
        stream
            .write_all(
                format!("POST /ping/{uuid} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let headers_sent = Instant::now();
        let (mut reader, mut writer) = stream.into_split();
        let drip = async {
            for _ in 0..19 {
                if writer.write_all(b"slow ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            std::future::pending::<()>().await
        };
        let closed = async {
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut buf))
                .await
                .expect("the server kept a slow-body connection open for 10 s");
            buf
        };
        let buf = tokio::select! {
            buf = closed => buf,
            _ = drip => unreachable!(),
        };
        assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200 OK"));
        headers_sent.elapsed()
    };
    // Meanwhile pings on fresh connections are answered as usual.
    let pings = async {
        let client = reqwest::Client::new();
        let mut answered = 0;
        for _ in 0..20 {
            let response = client
                .get(app.url(&format!("/ping/{uuid}")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            answered += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        answered
    };
    let (idle, kept_alive, slowloris, slow_body, answered) =
        tokio::join!(idle, kept_alive, slowloris, slow_body, pings);
    assert_eq!(answered, 20);
    for (what, took, timeout) in [
        ("idle", idle, HEADER),
        ("kept-alive", kept_alive, IDLE),
        ("slowloris", slowloris, HEADER),
        ("slow body", slow_body, BODY),
    ] {
        assert!(
            took >= timeout - Duration::from_millis(50) && took <= timeout + slack(),
            "{what} connection closed after {took:?}, timeout {timeout:?}"
        );
    }
    let stored = app.pings(&uuid).await;
    let partial = stored
        .iter()
        .find(|p| p["method"] == "POST")
        .expect("the slow-body ping is stored");
    let body = crate::runner::body_of(&app, partial).await;
    assert!(body.starts_with("slow slow "), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_connection_past_the_cap_is_served_once_another_closes() {
    let app = spawn_app_with(AppOptions {
        limits: Some(ConnectionLimits {
            max_connections: 3,
            ..ConnectionLimits::default()
        }),
        ..AppOptions::default()
    })
    .await;
    // Created on a connection that is not kept: the three below are the only ones open.
    let response = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(app.url("/api/v3/checks/"))
        .header("X-Api-Key", &app.api_key)
        .body(json!({"name": "capped"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let check: serde_json::Value = response.json().await.unwrap();
    let ping_url = check["ping_url"].as_str().unwrap().to_string();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&app).await);
    }
    // A new connection waits in the backlog while the cap is reached...
    let client = reqwest::Client::new();
    let mut pending = Box::pin(client.get(&ping_url).send());
    // (the held connections send nothing: their header timeout is the default 10 s)
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut pending)
            .await
            .is_err(),
        "a fourth connection was served with max_connections = 3"
    );
    // ...and is served as soon as one of the three closes.
    drop(held.pop());
    let response = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the waiting ping was not served after a connection closed")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(held);
    assert_eq!(app.pings(check["uuid"].as_str().unwrap()).await.len(), 1);
    app.stop().await;
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// `keepwatch serve` with 64 open files at most and a cap above that: accepting fails with
/// EMFILE. The server neither stops nor spins, and serves again once connections close.
#[tokio::test]
async fn out_of_file_descriptors_the_server_waits_and_serves_again() {
    crate::helpers::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("prlimit")
        .args(["--nofile=64:64", env!("CARGO_BIN_EXE_keepwatch")])
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "1000",
        ])
        .args(["--header-read-timeout", "2s", "--data-dir"])
        .arg(dir.path())
        .env_remove("KEEPWATCH_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs");
    let mut stdout = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let url = stdout
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("keepwatch is listening on ")
        .unwrap()
        .to_string();
    let ping_key = stdout.next().unwrap().unwrap();
    let ping_key = ping_key.rsplit(' ').next().unwrap().to_string();
    let address = url.trim_start_matches("http://").to_string();
    // More connections than the server has files: the rest wait in the backlog, accept
    // failing with EMFILE meanwhile.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(&address).await.unwrap());
    }
    let cpu_before = cpu_seconds(child.id());
    let client = reqwest::Client::new();
    let ping = client
        .get(format!("{url}/ping/{ping_key}/job?create=1"))
        .send();
    // The held connections send nothing: they are closed after the header timeout (2 s),
    // files free up, the waiting connections are accepted, the ping among them.
    let response = tokio::time::timeout(Duration::from_secs(20), ping)
        .await
        .expect("no answer after the idle connections were closed")
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cpu = cpu_seconds(child.id()) - cpu_before;
    assert!(cpu < 1.0, "the server used {cpu} s of CPU backing off");
    assert!(child.try_wait().unwrap().is_none(), "the server exited");
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("cannot accept connections"), "{log}");
    drop(held);
}

#[test]
fn bad_connection_and_check_limit_settings_name_the_key() {
    for (args, message) in [
        (
            ["--header-read-timeout", "0s"],
            "header_read_timeout: `0s` is out of range (1s-1h)",
        ),
        (
            ["--idle-timeout", "soon"],
            "idle_timeout: `soon` is not a duration (e.g. 10s, 2m)",
        ),
        (
            ["--body-read-timeout", "2h"],
            "body_read_timeout: `2h` is out of range (1s-1h)",
        ),
        (
            ["--max-connections", "0"],
            "max_connections: must be at least 1",
        ),
        (
            ["--check-limit", "0"],
            "check_limit: 0 is out of range (1-10000000)",
        ),
        (
            ["--check-create-rate", "0"],
            "check_create_rate: 0 is out of range (1-100000)",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_keepwatch"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains(message), "{err}");
    }
}
