//! The binary's commands: `cron`, `project create`, `api-key create`, config errors, and
//! `serve` printing its URL and first API key.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

fn keepwatch(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args(args)
        .env_remove("KEEPWATCH_DATABASE_URL")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn cron_prints_next_fire_times_across_dst() {
    let (ok, out, _) = keepwatch(&[
        "cron",
        "30 2 * * *",
        "--tz",
        "America/Denver",
        "--after",
        "2026-03-07T00:00:00Z",
        "--count",
        "3",
    ]);
    assert!(ok);
    assert_eq!(
        out,
        "2026-03-07T02:30:00-07:00\n2026-03-08T03:00:00-06:00\n2026-03-09T02:30:00-06:00\n"
    );
    let (ok, out, _) = keepwatch(&[
        "cron",
        "Mon..Fri 09:00",
        "--tz",
        "Europe/London",
        "--after",
        "2026-11-27T10:00:00Z",
        "--count",
        "2",
    ]);
    assert!(ok);
    assert_eq!(
        out,
        "2026-11-30T09:00:00+00:00\n2026-12-01T09:00:00+00:00\n"
    );
}

#[test]
fn cron_errors_point_at_the_bad_part() {
    let (ok, _, err) = keepwatch(&["cron", "0 25 * * *"]);
    assert!(!ok);
    assert!(err.contains("field 2 (hour) `25` is invalid"), "{err}");
    let (ok, _, err) = keepwatch(&["cron", "0 0 * * *", "--tz", "Mars/Olympus"]);
    assert!(!ok);
    assert!(err.contains("unknown time zone `Mars/Olympus`"), "{err}");
    let (ok, _, err) = keepwatch(&["cron", "0 0 * * *", "--after", "yesterday"]);
    assert!(!ok);
    assert!(
        err.contains("--after: `yesterday` is not an RFC 3339 time"),
        "{err}"
    );
}

#[tokio::test]
async fn project_and_api_key_commands_print_only_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (ok, ping_key, err) = keepwatch(&["project", "create", "billing", "--data-dir", data]);
    assert!(ok, "{err}");
    let ping_key = ping_key.trim_end().to_string();
    assert_eq!(ping_key.len(), 22);
    let (ok, key, _) = keepwatch(&[
        "api-key",
        "create",
        "--project",
        "billing",
        "--read-only",
        "--data-dir",
        data,
    ]);
    assert!(ok);
    let (ok, _, err) = keepwatch(&["project", "create", "billing", "--data-dir", data]);
    assert!(!ok);
    assert!(err.contains("project `billing` already exists"), "{err}");
    let (ok, _, err) = keepwatch(&["api-key", "create", "--project", "nope", "--data-dir", data]);
    assert!(!ok);
    assert!(err.contains("no project named `nope`"), "{err}");

    let store = keepwatch_store::Store::open(None, dir.path())
        .await
        .unwrap();
    let scope = store.api_key_scope(key.trim_end()).await.unwrap().unwrap();
    assert!(scope.read_only);
    assert_eq!(
        store
            .project_by_ping_key(&ping_key)
            .await
            .unwrap()
            .unwrap()
            .name,
        "billing"
    );
    let billing = store.project_by_name("billing").await.unwrap().unwrap();
    drop(store);
    let (ok, out, err) = keepwatch(&["project", "list", "--data-dir", data]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("billing\t{}\n", billing.uuid));
}

/// The commands that talk to a running server say which server they could not reach.
#[test]
fn api_commands_name_a_server_they_cannot_reach() {
    // A loopback port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/oncall.toml");
    let key = ["--api-key", "0123456789abcdef0123456789abcdef"];
    for args in [
        vec!["oncall", "--server", &server],
        vec!["apply", "-f", example, "--server", &server],
        vec!["alert", "list", "--server", &server],
    ] {
        let (ok, _, err) = keepwatch(&[&args[..], &key[..]].concat());
        assert!(!ok, "{args:?}");
        assert!(
            err.contains(&format!("cannot reach {server}")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_configuration_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let file = dir.path().join("keepwatch.toml");
    for (contents, expected) in [
        ("listen = \"nope\"\n", "listen: `nope` is not an address"),
        ("lisen = \"127.0.0.1:1\"\n", "unknown field `lisen`"),
        ("ping_body_limit = \"big\"\n", "ping_body_limit"),
        (
            "[smtp]\nhost = \"mail\"\nsecurity = \"ssl\"\n",
            "smtp.security: `ssl` is not one of starttls, tls, none",
        ),
        (
            "log_format = \"xml\"\n",
            "log_format: `xml` is not one of text, json",
        ),
        (
            "[notifications]\npage_rate_limit = 0\n",
            "notifications.page_rate_limit: 0 is out of range (1-1000)",
        ),
        (
            "[notifications]\npage_rate_window_secs = 86401\n",
            "notifications.page_rate_window_secs: 86401 is out of range (1-86400)",
        ),
    ] {
        std::fs::write(&file, contents).unwrap();
        let (ok, _, err) = keepwatch(&[
            "serve",
            "--data-dir",
            data,
            "--config",
            file.to_str().unwrap(),
        ]);
        assert!(!ok, "{contents}");
        assert!(err.contains(expected), "{contents}: {err}");
    }
    // A file that is not UTF-8 is refused saying where, as an editor would show it.
    std::fs::write(&file, b"# ok\nlisten = \"caf\xe9\"\n").unwrap();
    let (ok, _, err) = keepwatch(&[
        "serve",
        "--data-dir",
        data,
        "--config",
        file.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("keepwatch.toml: line 2, column 14 (byte 18) is not valid UTF-8"),
        "{err}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args(["serve", "--data-dir", data])
        .env("KEEPWATCH_LISTEN", "999.1.1.1:80")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("listen: `999.1.1.1:80` is not an address")
    );
    let (ok, _, err) = keepwatch(&["serve", "--database-url", "mysql://x", "--data-dir", data]);
    assert!(!ok);
    assert!(
        err.contains("database_url: `mysql://x` is not a postgres:// or sqlite: URL"),
        "{err}"
    );
}

/// Starts `keepwatch serve` on a free port and returns the child, its URL and the API key.
pub fn start_server(
    data_dir: &str,
    extra: &[&str],
) -> (std::process::Child, String, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir])
        .args(extra)
        .env_remove("KEEPWATCH_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("keepwatch is listening on ")
        .expect(&first)
        .to_string();
    let _ping_key = lines.next().unwrap().unwrap();
    let third = lines.next().unwrap().unwrap();
    let api_key = third
        .strip_prefix("  API key (full access, shown once): ")
        .map(str::to_string);
    (child, url, api_key)
}

#[test]
fn serve_prints_the_url_and_a_key_on_first_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut child, url, key) = start_server(data, &[]);
    assert!(url.starts_with("http://127.0.0.1:"));
    assert_eq!(key.as_ref().map(String::len), Some(32));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines
            .next()
            .unwrap()
            .unwrap()
            .starts_with("keepwatch is listening on")
    );
    assert!(lines.next().unwrap().unwrap().contains("ping key"));
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "  API keys: create one with `keepwatch api-key create`"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_second_server_on_the_same_sqlite_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut first, _url, _key) = start_server(data, &[]);
    let output = Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data])
        .env_remove("KEEPWATCH_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "another keepwatch (pid {}) is already serving the SQLite database in {data}",
        first.id()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(String::from_utf8_lossy(&output.stdout).is_empty());
    // Other commands still work beside the server.
    let (ok, out, err) = keepwatch(&["project", "create", "billing", "--data-dir", data]);
    assert!(ok, "{out}{err}");
    // The lock dies with its holder, however it ends (SIGKILL here): the next start works.
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut second, url, _) = start_server(data, &[]);
    assert!(url.starts_with("http://127.0.0.1:"));
    second.kill().unwrap();
    second.wait().unwrap();
}

/// The binary as a child of an async test, with `api_key` (if any) as KEEPWATCH_API_KEY.
pub async fn keepwatch_async(args: &[&str], api_key: Option<&str>) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_keepwatch"));
    command.args(args).env_remove("KEEPWATCH_API_KEY");
    if let Some(key) = api_key {
        command.env("KEEPWATCH_API_KEY", key);
    }
    command.output().await.unwrap()
}

#[tokio::test]
async fn apply_stores_the_oncall_file_idempotently_and_serves_feeds_and_oncall() {
    let app = spawn_app().await;
    let data_dir = app.data_dir.to_str().unwrap().to_string();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/oncall.toml");
    // Nothing applied yet: export says so.
    let out = keepwatch_async(&["export", "--data-dir", &data_dir], None).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no on-call configuration applied to project `default`")
    );

    let apply = |extra: &'static [&'static str]| {
        let data_dir = data_dir.clone();
        async move {
            let mut args = vec!["apply", "-f", example, "--data-dir", &data_dir];
            args.extend_from_slice(extra);
            let out = keepwatch_async(&args, None).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let dry = apply(&["--dry-run"]).await;
    assert!(
        dry.contains("+ schedule primary\n") && dry.ends_with("dry run: nothing was stored\n"),
        "{dry}"
    );
    let first = apply(&[]).await;
    assert!(
        first.starts_with("+ person alice\n+ person bob\n+ person lee\n+ schedule primary\n"),
        "{first}"
    );
    let again = apply(&[]).await;
    assert!(
        again.starts_with("no changes\n"),
        "applying twice changes nothing: {again}"
    );
    let feed_path = again
        .lines()
        .find_map(|l| l.strip_prefix("  schedule primary: "))
        .unwrap()
        .to_string();

    // The feed needs no API key (calendar apps cannot send one); its token is the secret.
    let response = app.client.get(app.url(&feed_path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/calendar; charset=utf-8"
    );
    let body = response.text().await.unwrap();
    assert!(
        body.contains("X-WR-CALNAME:On call: primary") && body.contains("SUMMARY:alice"),
        "{body}"
    );
    let missing = app
        .client
        .get(app.url("/ical/not-a-token.ics"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let (status, body) = app
        .api(
            "GET",
            "/api/v1/oncall/?schedule=primary&at=2026-11-28T07:00:00Z",
            // (a read-only key is not shown feed URLs: see readonly.rs)
            Some(&app.api_key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["oncall"][0]["users"], json!(["alice"]));
    assert_eq!(body["oncall"][0]["next"], json!(["bob"]));
    assert_eq!(body["oncall"][0]["until"], "2026-11-30T16:00:00+00:00");
    assert!(
        body["oncall"][0]["ical_url"]
            .as_str()
            .unwrap()
            .ends_with(&feed_path)
    );
    let (status, _) = app.api("GET", "/api/v1/oncall/", None, None).await;
    assert_eq!(status, 401);
    let (status, body) = app.get("/api/v1/oncall/?at=tomorrow").await;
    assert_eq!(
        (status.as_u16(), body["error"].clone()),
        (400, json!("at `tomorrow` is not an RFC 3339 time"))
    );

    // `keepwatch oncall` without a file asks the server.
    let out = keepwatch_async(
        &[
            "oncall",
            "--server",
            &app.address,
            "--at",
            "2026-11-28T00:00:00-07:00",
        ],
        Some(&app.read_key),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "primary: alice until Mon 2026-11-30 09:00, then bob\n\
         secondary: bob until Mon 2026-11-30 09:00, then alice\n"
    );
    let out = keepwatch_async(
        &[
            "oncall",
            "--server",
            &app.address,
            "--api-key",
            "0123456789abcdef0123456789abcdef",
        ],
        None,
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401 Unauthorized: wrong api key"));

    let out = keepwatch_async(&["oncall", "--server", &app.address], None).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --api-key (or KEEPWATCH_API_KEY)"));
    let (status, body) = app.get_read_only("/api/v1/oncall/?schedule=tertiary").await;
    assert_eq!(
        (status.as_u16(), body["error"].clone()),
        (400, json!("no schedule `tertiary`"))
    );

    // export gives back the file as applied.
    let out = keepwatch_async(&["export", "--data-dir", &data_dir], None).await;
    assert_eq!(out.stdout, std::fs::read(example).unwrap());
}

/// Applies examples/oncall.toml with the CLI and opens an alert on its `billing` service
/// through the events API with the integration key `apply` printed.
async fn apply_example_and_trigger_disk_alert(app: &TestApp) {
    let data_dir = app.data_dir.to_str().unwrap().to_string();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/oncall.toml");
    let out = keepwatch_async(&["apply", "-f", example, "--data-dir", &data_dir], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = String::from_utf8(out.stdout).unwrap();
    let key = applied
        .lines()
        .find_map(|l| l.strip_prefix("  service billing: "))
        .unwrap_or_else(|| panic!("no integration key in: {applied}"))
        .to_string();
    let event = json!({
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": "db1-disk",
        "payload": {"summary": "disk full on db1", "source": "db1", "severity": "error"},
    });
    let (status, _) = app.send_event(event).await;
    assert_eq!(status.as_u16(), 202);
}

#[tokio::test]
async fn apply_prints_integration_keys_and_alert_commands_act_through_the_api() {
    let app = spawn_app().await;
    apply_example_and_trigger_disk_alert(&app).await;

    let alert = |args: &[&str], key: &str| {
        let mut all: Vec<String> = vec!["alert".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["--server".into(), app.address.clone()]);
        let key = key.to_string();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            keepwatch_async(&all, Some(&key)).await
        }
    };
    let out = alert(&["list"], &app.read_key).await;
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    let line = listed.lines().next().unwrap();
    assert!(
        line.contains("triggered") && line.contains("disk full on db1"),
        "{listed}"
    );
    let id = line.trim_start_matches('#').split(' ').next().unwrap();

    // A read-only key cannot acknowledge.
    let out = alert(&["ack", id], &app.read_key).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = alert(&["ack", id], &app.api_key).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("acknowledged"));
    let out = alert(&["show", id], &app.read_key).await;
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains(" acknowledged api"), "{shown}");
    // What happened, in the words of its pages, before the log.
    assert!(
        shown.contains("\n  disk full on db1\n  host: db1\n  urgency: low, triggered outside support hours (America/Denver)\nlog:\n"),
        "{shown}"
    );
    let out = alert(&["resolve", id], &app.api_key).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("resolved"));
    let out = alert(&["list"], &app.read_key).await;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "no open alerts\n");
    let out = alert(&["ack", "999999"], &app.api_key).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

/// The server's log, redirected to a file: one INFO line for each alert opened, page sent or
/// failed, acknowledgment and resolution, in plain text (no terminal colour codes).
#[tokio::test]
async fn the_log_tells_alerts_pages_and_acknowledgments_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("keepwatch.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keepwatch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("KEEPWATCH_DATABASE_URL")
        .env_remove("KEEPWATCH_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap();
    let url = url
        .strip_prefix("keepwatch is listening on ")
        .unwrap()
        .to_string();
    let _ping_key = lines.next().unwrap().unwrap();
    let key = lines.next().unwrap().unwrap();
    let key = key
        .strip_prefix("  API key (full access, shown once): ")
        .unwrap()
        .to_string();

    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/oncall/alice-on-billing.toml"
    );
    let out = keepwatch_async(&["apply", "-f", fixture, "--server", &url], Some(&key)).await;
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let routing_key = printed
        .lines()
        .find_map(|l| l.strip_prefix("  service billing: "))
        .unwrap_or_else(|| panic!("{printed}"))
        .to_string();
    crate::helpers::install_crypto();
    let client = reqwest::Client::new();
    let event = crate::helpers::disk_event(&routing_key, "trigger");
    let answer = client
        .post(format!("{url}/api/v1/events"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let read_log = || std::fs::read_to_string(&log_path).unwrap();
    // No SMTP server is configured: alice's email page fails, and the log says so.
    crate::helpers::eventually(|| async { read_log().contains("page failed").then_some(()) }).await;
    let acked = client
        .post(format!("{url}/api/v1/alerts/1/ack"))
        .header("X-Api-Key", &key)
        .header("X-Keepwatch-User", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 200);
    let resolved = client
        .post(format!("{url}/api/v1/alerts/1/resolve"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();

    let log = read_log();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
    for (level, what, fields) in [
        ("INFO", "alert triggered", "alert=1"),
        ("WARN", "page failed", "person=\"alice\""),
        ("INFO", "acknowledgment", "who=\"api (alice)\""),
        ("INFO", "resolution", "who=\"api\""),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(level) && l.contains(what) && l.contains(fields)),
            "no {level} `{what}` line with {fields}:\n{log}"
        );
    }
}

/// Every apply is kept: who applied which file when, in the logs of the alerts open then,
/// and the file in force at any time through the API and `keepwatch export --at`.
#[tokio::test]
async fn every_apply_is_recorded_and_export_at_returns_the_file_as_it_was() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oncall.toml");
    let first = crate::helpers::one_service();
    std::fs::write(&path, &first).unwrap();
    let path = path.to_str().unwrap();
    let apply = || async {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_keepwatch"));
        command
            .args(["apply", "-f", path, "--server", &app.address])
            .env("KEEPWATCH_API_KEY", &app.api_key)
            .env("USER", "dana");
        let out = command.output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let printed = apply().await;
    let routing_key = printed
        .lines()
        .find_map(|l| l.strip_prefix("  service billing: "))
        .unwrap()
        .to_string();
    let event = crate::helpers::disk_event(&routing_key, "trigger");
    app.send_event(event).await;

    // An hour later bob joins the file, while the alert is open.
    app.advance(chrono::TimeDelta::hours(1));
    let second = format!("{first}[[people]]\nid = \"bob\"\n");
    std::fs::write(path, &second).unwrap();
    assert!(apply().await.starts_with("+ person bob\n"));
    let (_, alert) = app.get("/api/v1/alerts/1").await;
    let applied: Vec<(&str, &str)> = alert["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "config_applied")
        .map(|e| (e["who"].as_str().unwrap(), e["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        applied,
        [(
            "api (dana)",
            "on-call configuration applied (+ person bob): pending steps follow the new file"
        )]
    );

    // The file as it was half an hour after the first apply, and who applied it.
    let at = (crate::helpers::t0() + chrono::TimeDelta::minutes(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let response = app
        .client
        .get(app.url(&format!("/api/v1/oncall/config?at={at}")))
        .header("X-Api-Key", &app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-keepwatch-applied-by"], "api (dana)");
    assert_eq!(response.text().await.unwrap(), first);
    for (query, status) in [("yesterday", 400), ("2020-01-01T00:00:00Z", 404)] {
        let response = app
            .client
            .get(app.url(&format!("/api/v1/oncall/config?at={query}")))
            .header("X-Api-Key", &app.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{query}");
    }
    // The same from the CLI, straight from the database.
    let data_dir = app.data_dir.to_str().unwrap();
    let out = keepwatch_async(&["export", "--at", &at, "--data-dir", data_dir], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), first);
    assert!(String::from_utf8_lossy(&out.stderr).contains("by api (dana)"));
    let out = keepwatch_async(&["export", "--data-dir", data_dir], None).await;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), second);
}

#[tokio::test]
async fn incident_commands_declare_update_resolve_and_export_through_the_binary() {
    let app = spawn_app().await;
    apply_example_and_trigger_disk_alert(&app).await;
    let (_, alerts) = app
        .api("GET", "/api/v1/alerts/", Some(&app.read_key), None)
        .await;
    let alert_id = alerts["alerts"][0]["id"]
        .as_i64()
        .expect("the event opened an alert");

    let incident = |args: &[&str], key: &str| {
        let mut all: Vec<String> = vec!["incident".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["--server".into(), app.address.clone()]);
        let key = key.to_string();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let out = keepwatch_async(&all, Some(&key)).await;
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
    };
    let alert = alert_id.to_string();
    let (ok, out, err) = incident(
        &[
            "declare",
            "--alert",
            &alert,
            "--severity",
            "SEV2",
            "--owner",
            "alice",
            "--impact",
            "Invoices are not sent",
        ],
        &app.api_key,
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("#1"), "{out}");
    let (ok, out, err) = incident(&["list"], &app.read_key).await;
    assert!(
        ok && out.contains("disk full on db1") && out.contains("alice"),
        "{out}{err}"
    );
    // The next update in the zone asked for, with its offset (default: the machine's zone).
    let (ok, out, err) = incident(&["list", "--tz", "Asia/Tokyo"], &app.read_key).await;
    assert!(ok && out.contains(" JST (UTC+09:00))"), "{out}{err}");
    let (ok, _, err) = incident(&["list", "--tz", "Mars/Olympus"], &app.read_key).await;
    assert!(
        !ok && err.contains("unknown time zone `Mars/Olympus`"),
        "{err}"
    );
    let (ok, out, err) = incident(
        &[
            "update",
            "1",
            "--status",
            "identified",
            "-m",
            "db1's volume is full",
        ],
        &app.api_key,
    )
    .await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = incident(
        &["update", "1", "--no-news", "-m", "growing the volume"],
        &app.api_key,
    )
    .await;
    assert!(ok, "{out}{err}");
    // An owner who is not in the file, and an empty message: refused, saying why.
    let (ok, _, err) = incident(&["owner", "1", "zoe"], &app.api_key).await;
    assert!(!ok && err.contains("zoe"), "{err}");
    let (ok, _, err) = incident(&["update", "1", "-m", " "], &app.api_key).await;
    assert!(!ok && err.contains("message"), "{err}");
    let (ok, out, err) = incident(&["resolve", "1", "-m", "volume grown"], &app.api_key).await;
    assert!(ok && out.contains("resolved"), "{out}{err}");
    let (ok, _, err) = incident(&["update", "1", "-m", "still fine"], &app.api_key).await;
    assert!(!ok && err.contains("reopen"), "{err}");
    let (ok, out, err) = incident(
        &[
            "export",
            "1",
            "--format",
            "markdown",
            "--tz",
            "America/Denver",
        ],
        &app.read_key,
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("# Incident #1: disk full on db1"), "{out}");
    assert!(out.contains("db1's volume is full"), "{out}");
    assert!(
        out.contains("no news: [identified] growing the volume"),
        "{out}"
    );
    assert!(out.contains("volume grown"), "{out}");
    app.stop().await;
}
