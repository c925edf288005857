//! A load run against the real binary, killed with SIGKILL mid-run: every ping that was
//! answered 200 must be in the database afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Mutex;

use crate::cli::start_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_ping_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    // Keep every ping so each acknowledged one can be looked up by its run id.
    let keep_all = ["--ping-log-limit", "1000000"];
    let (mut child, url, key) = start_server(&data, &keep_all);
    let key = key.unwrap();
    crate::helpers::install_crypto();
    let client = reqwest::Client::new();
    let mut uuids = Vec::new();
    for i in 0..8 {
        let response = client
            .post(format!("{url}/api/v3/checks/"))
            .header("X-Api-Key", &key)
            .body(json!({"name": format!("job-{i}")}).to_string())
            .send()
            .await
            .unwrap();
        let check: serde_json::Value = response.json().await.unwrap();
        uuids.push(check["uuid"].as_str().unwrap().to_string());
    }
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    // CI runs a short load; `bench/durability.sh` runs a longer one through the same test.
    let run_ms = std::env::var("KEEPWATCH_DURABILITY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let deadline = Instant::now() + Duration::from_millis(run_ms);
    let mut workers = Vec::new();
    for worker in 0..16 {
        let (client, url, uuids, acknowledged) = (
            client.clone(),
            url.clone(),
            uuids.clone(),
            acknowledged.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0usize;
            loop {
                let rid = uuid::Uuid::new_v4().to_string();
                let uuid = &uuids[(worker + i) % uuids.len()];
                i += 1;
                let sent = client
                    .post(format!("{url}/ping/{uuid}?rid={rid}"))
                    .body("payload")
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => acknowledged.lock().await.push(rid),
                    Ok(_) => {}
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Kill it mid-run, while the workers are still sending.
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(
        acknowledged.len() > 100,
        "the load run was too small: {}",
        acknowledged.len()
    );

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{data}/keepwatch.db"))
        .await
        .unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT rid FROM pings")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    let stored: std::collections::HashSet<String> = stored.into_iter().collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|rid| !stored.contains(*rid))
        .collect();
    println!(
        "durability: {} pings acknowledged, {} lost",
        acknowledged.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "{} acknowledged pings lost", lost.len());

    // The restarted server replays the log: its counts match what is stored.
    let (mut child, url, _) = start_server(&data, &keep_all);
    let response = client
        .get(format!("{url}/api/v3/checks/"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    let list: serde_json::Value = response.json().await.unwrap();
    let total: i64 = list["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["n_pings"].as_i64().unwrap())
        .sum();
    assert_eq!(total as usize, stored.len());
    child.kill().unwrap();
    child.wait().unwrap();
}
