//! Several instances on one PostgreSQL database: each background loop runs on one instance
//! at a time (leases), and the status endpoint and metrics say which.

use keepwatch_store::testing::PgDatabase;
use serde_json::Value;

use crate::helpers::{AppOptions, TestApp, eventually, spawn_app_with};

async fn status_json(app: &TestApp) -> (u16, Value) {
    let response = app
        .client
        .get(app.url("/api/v3/status/"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap())
}

fn holders(status: &Value) -> Vec<(String, String, bool)> {
    status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["work"].as_str().unwrap().to_string(),
                l["holder"].as_str().unwrap_or("").to_string(),
                l["mine"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_instances_share_the_loops_through_leases_and_say_who_holds_them() {
    let db = PgDatabase::create().await;
    let a = spawn_app_with(AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let b = spawn_app_with(AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let (code, sa) = status_json(&a).await;
    assert_eq!(code, 200);
    assert_eq!(sa["status"], "ok");
    assert_eq!(sa["backend"], "postgres");
    let (_, sb) = status_json(&b).await;
    let a_id = sa["instance"].as_str().unwrap().to_string();
    let b_id = sb["instance"].as_str().unwrap().to_string();
    assert_ne!(a_id, b_id);
    // a started first: it holds all seven loops; b sees a as their holder and runs none.
    let ha = holders(&sa);
    assert_eq!(ha.len(), 7);
    assert!(
        ha.iter().all(|(_, holder, mine)| *holder == a_id && *mine),
        "{sa}"
    );
    assert!(
        holders(&sb)
            .iter()
            .all(|(_, holder, mine)| *holder == a_id && !*mine),
        "{sb}"
    );
    // The plain answer is Healthchecks' "OK", unchanged.
    let plain = a.client.get(a.url("/api/v3/status/")).send().await.unwrap();
    assert_eq!(plain.text().await.unwrap(), "OK");
    // Metrics: each instance says which loops it runs.
    let metrics = a
        .client
        .get(a.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let held = format!("keepwatch_lease_held{{work=\"delivery\",instance=\"{a_id}\"}} 1");
    assert!(metrics.contains(&held), "{metrics}");
    let metrics = b
        .client
        .get(b.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let not_held = format!("keepwatch_lease_held{{work=\"delivery\",instance=\"{b_id}\"}} 0");
    assert!(metrics.contains(&not_held), "{metrics}");

    // a shuts down: it gives its leases up, and b takes them on its next renewal.
    a.stop().await;
    let sb = eventually(|| async {
        let (_, sb) = status_json(&b).await;
        holders(&sb)
            .iter()
            .all(|(_, h, mine)| *h == b_id && *mine)
            .then_some(sb)
    })
    .await;
    assert_eq!(sb["instance"], b_id.as_str());
    b.stop().await;
}

#[tokio::test]
async fn sqlite_status_names_no_leases() {
    let app = spawn_app_with(AppOptions::default()).await;
    let (code, status) = status_json(&app).await;
    assert_eq!(code, 200);
    assert_eq!(status["backend"], "sqlite");
    assert!(status["leases"].is_null() && status["instance"].is_null());
    app.stop().await;
}

/// Active/standby: pings and API calls go to a; b started before the check was created on a
/// and never saw it or its ping. Once a is gone and b holds the deadlines, b judges the check
/// from the database's state.
#[tokio::test]
async fn the_instance_that_takes_the_deadlines_over_judges_checks_it_never_saw() {
    let db = PgDatabase::create().await;
    let a = spawn_app_with(AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let b = spawn_app_with(AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let mut hook = crate::helpers::Receiver::start(vec![]).await;
    a.webhook_channel(&hook, None).await;
    let uuid = a
        .create_check_uuid(
            serde_json::json!({"name": "standby", "timeout": 60, "grace": 60, "channels": "*"}),
        )
        .await;
    let (status, _, _) = a.ping("GET", &format!("/ping/{uuid}"), None).await;
    assert_eq!(status, 200);
    let (_, sb) = status_json(&b).await;
    let b_id = sb["instance"].as_str().unwrap().to_string();
    a.stop().await;
    eventually(|| async {
        let (_, sb) = status_json(&b).await;
        holders(&sb)
            .iter()
            .all(|(_, h, mine)| *h == b_id && *mine)
            .then_some(())
    })
    .await;
    // b's clock passes the check's deadline and grace: b, which never saw the check, alerts.
    b.advance(chrono::TimeDelta::seconds(121));
    let down = hook.next().await.json();
    assert_eq!(down["event"], "down");
    assert_eq!(down["check"]["uuid"], uuid.as_str());
    assert_eq!(b.get_check(&uuid).await["status"], "down");
    b.stop().await;
}

/// The run ids of every ping stored for the check `uuid`, in order (a ping stored twice
/// appears twice).
pub(crate) async fn stored_rids(store: &keepwatch_store::Store, uuid: &str) -> Vec<String> {
    let check = store.check_by_uuid(uuid).await.unwrap().unwrap();
    let pings = store
        .list_pings(check.id, check.state.last_seq, 1_000_000)
        .await
        .unwrap();
    pings.iter().filter_map(|p| p.rid.clone()).collect()
}

/// The store of a fresh PostgreSQL database with a project and its full-access key, for
/// tests that run `keepwatch serve` processes on it.
pub(crate) async fn project_on(url: &str) -> (keepwatch_store::Store, String) {
    use keepwatch_store::{Store, Timestamp};
    let store = Store::open(Some(url), std::path::Path::new("unused"))
        .await
        .unwrap();
    let project = store
        .create_project("default", Timestamp::default())
        .await
        .unwrap();
    let key = store
        .create_api_key(project.id, false, "", Timestamp::default())
        .await
        .unwrap();
    (store, key)
}

/// A `keepwatch serve` process on `db_url` with `--instance-id id` and a lease of `lease`
/// seconds, on a free loopback port, with its own data directory.
pub(crate) struct Serve {
    child: std::process::Child,
    pub(crate) url: String,
    pub(crate) id: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    pub(crate) async fn start(db_url: &str, id: &str, lease: u32) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Output to a file: the server prints more than its first lines, and a closed pipe
        // would end it.
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_keepwatch"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(["--database-url", db_url, "--instance-id", id])
            .args([
                "--lease-secs",
                &lease.to_string(),
                "--allow-private-destinations",
                // Every ping kept, so a test can find each one answered 200.
                "--ping-log-limit",
                "1000000",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        eventually(|| async {
            reqwest::get(format!("{url}/api/v3/status/"))
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        Serve {
            child,
            url,
            id: id.to_string(),
            _dir: dir,
        }
    }

    /// `/api/v3/status/` as JSON (with the leases), or `None` if the instance does not answer.
    pub(crate) async fn status(&self, client: &reqwest::Client) -> Option<Value> {
        let response = client
            .get(format!("{}/api/v3/status/", self.url))
            .header("Accept", "application/json")
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// What it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("serve.log")).unwrap_or_default()
    }

    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The holder dies by SIGKILL (it gives nothing up): the other `keepwatch serve` takes every
/// loop over once the dead one's lease has run out, and no sooner. Real processes, a real
/// lease (the shortest allowed, 3 s) on the wall clock.
#[tokio::test]
async fn sigkill_of_the_lease_holder_hands_its_loops_over_within_the_lease() {
    crate::helpers::install_crypto();
    let db = PgDatabase::create().await;
    let mut a = Serve::start(&db.url, "kw-a", 3).await;
    let mut b = Serve::start(&db.url, "kw-b", 3).await;
    let client = reqwest::Client::new();
    let before = b.status(&client).await.unwrap();
    assert_eq!(before["instance"], "kw-b");
    assert!(
        holders(&before)
            .iter()
            .all(|(_, h, mine)| h == "kw-a" && !mine),
        "{before}"
    );
    a.kill();
    let killed = std::time::Instant::now();
    let after = eventually(|| async {
        let s = b.status(&client).await?;
        holders(&s)
            .iter()
            .all(|(_, h, mine)| h == "kw-b" && *mine)
            .then_some(s)
    })
    .await;
    let took = killed.elapsed();
    eprintln!("takeover after SIGKILL: {took:?}");
    assert!(
        took >= std::time::Duration::from_millis(1500),
        "taken over while the dead holder's lease still ran: {took:?} {after}"
    );
    // The lease bounds it at 3 s after the last renewal; the slack is for the polling and a
    // loaded machine.
    assert!(
        took <= std::time::Duration::from_millis(4000),
        "took {took:?} (lease 3 s)"
    );
    b.kill();
}

/// Lets the instances' clocks run `secs` seconds together in small steps, as the wall clock
/// would: leases are renewed and the loops (the inbox, deadlines) take their turns.
async fn run_clock(apps: &[&TestApp], secs: i64) {
    for _ in 0..secs * 5 {
        for app in apps {
            app.advance(chrono::TimeDelta::milliseconds(200));
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// a owns the checks (it holds the deadlines); b takes pings and API calls too. b's pings are
/// durable in the inbox before b answers 200 and a applies them once; checks created,
/// changed, paused and deleted through b are a's to judge at once.
#[tokio::test]
async fn pings_and_check_changes_through_any_instance_reach_the_owner() {
    let db = PgDatabase::create().await;
    let a = spawn_app_with(AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let b = spawn_app_with(AppOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let mut hook = crate::helpers::Receiver::start(vec![]).await;
    a.webhook_channel(&hook, None).await;
    let inbox = || async { a.store.inbox(100).await.unwrap().len() };

    // A check created on a, pinged through b: a applies the ping (with its body) once.
    let on_a = a
        .create_check_uuid(
            serde_json::json!({"name": "on-a", "timeout": 3600, "grace": 60, "channels": "*"}),
        )
        .await;
    let (status, _, body) = b
        .ping("POST", &format!("/ping/{on_a}"), Some(b"from b".to_vec()))
        .await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "OK"));
    assert_eq!(inbox().await, 1, "durable in the inbox before the 200");
    run_clock(&[&a, &b], 1).await;
    let pings = eventually(|| async { Some(a.pings(&on_a).await).filter(|p| p.len() == 1) }).await;
    assert_eq!(pings[0]["type"], "success");
    assert_eq!(
        inbox().await,
        0,
        "applied entries are deleted with their batch"
    );
    assert_eq!(a.get_check(&on_a).await["status"], "up");
    // b shows the state the owner checkpointed.
    run_clock(&[&a, &b], 2).await;
    let seen =
        eventually(|| async { Some(b.get_check(&on_a).await).filter(|c| c["status"] == "up") })
            .await;
    assert_eq!(seen["n_pings"], 1);
    // b says that what it shows is the owner's checkpoint, and whose; a, the owner, does not.
    let state_header = |app: &TestApp, path: String| {
        let request = app
            .client
            .get(app.url(&path))
            .header("X-Api-Key", &app.api_key);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response
                .headers()
                .get("x-keepwatch-state")
                .map(|v| v.to_str().unwrap().to_string())
        }
    };
    let holds_deadlines = |app: &TestApp| {
        let (instance, leases) = app.engine.leases().unwrap();
        let mine = leases.iter().any(|l| l.work == "deadlines" && l.mine);
        (instance, mine)
    };
    let (owner, other) = match (holds_deadlines(&a), holds_deadlines(&b)) {
        ((id, true), (_, false)) => ((&a, id), &b),
        ((_, false), (id, true)) => ((&b, id), &a),
        views => panic!("one instance holds the deadlines: {views:?}"),
    };
    for path in [
        format!("/api/v3/checks/{on_a}"),
        "/api/v3/checks/".to_string(),
    ] {
        assert_eq!(
            state_header(other, path.clone()).await.as_deref(),
            Some(format!("checkpoint; owner={}", owner.1).as_str())
        );
        assert_eq!(state_header(owner.0, path).await, None);
    }
    // A ping through b for a check that does not exist is a 404 there, as on the owner.
    let missing = uuid::Uuid::new_v4();
    let (status, _, _) = b.ping("GET", &format!("/ping/{missing}"), None).await;
    assert_eq!(status, 404);

    // A check created through b pings through a at once (a reads it on its first ping).
    let on_b = b
        .create_check_uuid(
            serde_json::json!({"name": "on-b", "timeout": 60, "grace": 60, "channels": "*"}),
        )
        .await;
    let (status, _, _) = a.ping("GET", &format!("/ping/{on_b}"), None).await;
    assert_eq!(status, 200);
    // Its period is changed through b: a judges it by the new one (300 s, not 60 s).
    let (status, _) = b
        .api(
            "POST",
            &format!("/api/v3/checks/{on_b}"),
            Some(&b.api_key),
            Some(serde_json::json!({"timeout": 300})),
        )
        .await;
    assert_eq!(status, 200);
    // Pings keep coming through b meanwhile.
    for _ in 0..3 {
        run_clock(&[&a, &b], 60).await;
        let (status, _, _) = b.ping("GET", &format!("/ping/{on_a}"), None).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        a.get_check(&on_b).await["status"],
        "up",
        "judged by the old period"
    );
    assert!(hook.is_empty());
    run_clock(&[&a, &b], 181).await;
    let down = hook.next().await.json();
    assert_eq!(
        (down["event"].as_str(), down["check"]["uuid"].as_str()),
        (Some("down"), Some(on_b.as_str()))
    );

    // Paused through b: the owner applies it; resumed through b likewise.
    let (status, _) = b
        .api(
            "POST",
            &format!("/api/v3/checks/{on_a}/pause"),
            Some(&b.api_key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    run_clock(&[&a, &b], 1).await;
    let paused =
        eventually(|| async { Some(a.get_check(&on_a).await).filter(|c| c["status"] == "paused") })
            .await;
    assert_eq!(paused["status"], "paused");

    // Deleted through b: a forgets it, and pings to it are 404 on every instance.
    let (status, _) = b
        .api(
            "DELETE",
            &format!("/api/v3/checks/{on_b}"),
            Some(&b.api_key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    run_clock(&[&a, &b], 1).await;
    for app in [&a, &b] {
        let (status, _, _) = app.ping("GET", &format!("/ping/{on_b}"), None).await;
        assert_eq!(status, 404);
    }
    assert_eq!(inbox().await, 0);
    a.stop().await;
    b.stop().await;
}
