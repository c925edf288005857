//! Load generator and measurement harness for keepwatch (see bench/README.md).
//!
//! - `setup`: create N checks through the API and write their ping paths to a file (wrk reads it).
//! - `populate`: write N checks (up, with deadlines) straight into a fresh SQLite data directory,
//!   for the start-up and memory figures.
//! - `detect`: with N active checks, make M checks miss their deadline and measure the time from
//!   each deadline (plus grace) to the delivery of its webhook notification.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::routing::post;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Setup {
        #[arg(long)]
        url: String,
        #[arg(long)]
        api_key: String,
        #[arg(long, default_value_t = 1000)]
        checks: usize,
        #[arg(long)]
        out: PathBuf,
    },
    Populate {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        checks: usize,
    },
    Detect {
        #[arg(long)]
        url: String,
        #[arg(long)]
        api_key: String,
        #[arg(long, default_value_t = 100_000)]
        active: usize,
        #[arg(long, default_value_t = 300)]
        victims: usize,
        /// A shell command run this many seconds after the first victim's ping (with
        /// `--then`): bench/instances.sh kills the lease holder so that the first deadlines
        /// pass while no instance holds the lease.
        #[arg(long, requires = "then")]
        after: Option<u64>,
        #[arg(long, requires = "after")]
        then: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Setup {
            url,
            api_key,
            checks,
            out,
        } => setup(&url, &api_key, checks, &out).await,
        Command::Populate { data_dir, checks } => populate(&data_dir, checks).await,
        Command::Detect {
            url,
            api_key,
            active,
            victims,
            after,
            then,
        } => {
            let disruption = after.zip(then).map(|(s, c)| (Duration::from_secs(s), c));
            detect(&url, &api_key, active, victims, disruption).await
        }
    }
}

async fn create_checks(
    url: &str,
    api_key: &str,
    count: usize,
    body: Value,
) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::new();
    let mut uuids = Vec::with_capacity(count);
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..count {
        let (client, url, key, mut body) = (
            client.clone(),
            url.to_string(),
            api_key.to_string(),
            body.clone(),
        );
        body["name"] = format!("bench-{i}").into();
        pending.spawn(async move {
            let response = client
                .post(format!("{url}/api/v3/checks/"))
                .header("X-Api-Key", key)
                .body(body.to_string())
                .send()
                .await?;
            let check: Value = response.json().await?;
            anyhow::Ok(
                check["uuid"]
                    .as_str()
                    .context("no uuid in answer")?
                    .to_string(),
            )
        });
        if pending.len() >= 32 {
            uuids.push(pending.join_next().await.context("task")???);
        }
    }
    while let Some(result) = pending.join_next().await {
        uuids.push(result??);
    }
    Ok(uuids)
}

async fn setup(url: &str, api_key: &str, checks: usize, out: &Path) -> anyhow::Result<()> {
    let uuids = create_checks(
        url,
        api_key,
        checks,
        json!({"timeout": 86400, "grace": 3600}),
    )
    .await?;
    let paths: Vec<String> = uuids.iter().map(|u| format!("/ping/{u}")).collect();
    std::fs::write(out, paths.join("\n") + "\n")?;
    println!("created {} checks, paths in {}", uuids.len(), out.display());
    Ok(())
}

async fn populate(data_dir: &Path, checks: usize) -> anyhow::Result<()> {
    let store = keepwatch_store::Store::open(None, data_dir).await?;
    let project = match store.project_by_name("default").await? {
        Some(p) => p,
        None => {
            store
                .create_project("default", keepwatch_store::Timestamp::now())
                .await?
        }
    };
    store.close().await;
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}/keepwatch.db", data_dir.display())).await?;
    let now = Utc::now().timestamp_micros();
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await?;
    for chunk_start in (0..checks).step_by(500) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO checks (uuid, project_id, name, kind, timeout_secs, grace_secs, created_at, status, last_ping, n_pings) ",
        );
        insert.push_values(
            chunk_start..(chunk_start + 500).min(checks),
            |mut row, i| {
                row.push_bind(uuid::Uuid::new_v4().to_string())
                    .push_bind(project.id)
                    .push_bind(format!("job-{i}"))
                    .push_bind("simple")
                    .push_bind(86_400 + (i % 3600) as i64)
                    .push_bind(3600_i64)
                    .push_bind(now)
                    .push_bind("up")
                    .push_bind(now)
                    .push_bind(1_i64);
            },
        );
        insert.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    println!(
        "wrote {checks} checks in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Each webhook notification with the time it arrived.
type Arrivals = Arc<Mutex<Vec<(DateTime<Utc>, Value)>>>;

async fn detect(
    url: &str,
    api_key: &str,
    active: usize,
    victims: usize,
    disruption: Option<(Duration, String)>,
) -> anyhow::Result<()> {
    // The webhook receiver records when each notification arrives.
    let arrivals: Arrivals = Arc::default();
    let sink = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((Utc::now(), body.0));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let channel: Value = client
        .post(format!("{url}/api/v3/channels/"))
        .header("X-Api-Key", api_key)
        .body(json!({"name": "bench-hook", "kind": "webhook", "url": hook}).to_string())
        .send()
        .await?
        .json()
        .await?;
    let channel = channel["id"].as_str().context("channel id")?.to_string();

    println!("creating {active} active checks…");
    let active_ids = create_checks(
        url,
        api_key,
        active,
        json!({"timeout": 86400, "grace": 3600}),
    )
    .await?;
    println!("pinging them…");
    ping_all(&client, url, &active_ids).await?;
    let victim_ids = create_checks(
        url,
        api_key,
        victims,
        json!({"timeout": 60, "grace": 60, "channels": channel}),
    )
    .await?;
    println!("pinging {victims} victims over 30 s, then letting them miss their deadlines…");
    if let Some((after, command)) = disruption {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            println!(
                "{} s after the first victim's ping: {command}",
                after.as_secs()
            );
            match tokio::process::Command::new("sh")
                .args(["-c", &command])
                .status()
                .await
            {
                Ok(status) if status.success() => {}
                other => eprintln!("`{command}` failed ({other:?}): the run is not disrupted"),
            }
        });
    }
    for chunk in victim_ids.chunks(victims.div_ceil(30).max(1)) {
        ping_all(&client, url, chunk).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let wait_until = std::time::Instant::now() + Duration::from_secs(180);
    while arrivals.lock().unwrap().len() < victims && std::time::Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    let mut latencies: Vec<f64> = arrivals
        .iter()
        .filter(|(_, message)| message["event"] == "down")
        .filter_map(|(arrived, message)| {
            let due = DateTime::parse_from_rfc3339(message["at"].as_str()?).ok()?;
            Some((*arrived - due.with_timezone(&Utc)).num_microseconds()? as f64 / 1e6)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let mut by_event: HashMap<String, usize> = HashMap::new();
    for (_, m) in &arrivals {
        *by_event
            .entry(m["event"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    println!(
        "notifications: {by_event:?} ({} of {victims} victims)",
        latencies.len()
    );
    anyhow::ensure!(!latencies.is_empty(), "no down notifications arrived");
    println!(
        "detection latency (deadline+grace -> webhook delivered), {} checks active: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        active + victims,
        pick(0.5),
        pick(0.99),
        latencies[latencies.len() - 1]
    );
    Ok(())
}

async fn ping_all(client: &reqwest::Client, url: &str, uuids: &[String]) -> anyhow::Result<()> {
    let mut pending = tokio::task::JoinSet::new();
    for uuid in uuids {
        let (client, target) = (client.clone(), format!("{url}/ping/{uuid}"));
        pending.spawn(async move { client.get(target).send().await.map(|r| r.status()) });
        if pending.len() >= 64 {
            pending.join_next().await.context("task")???;
        }
    }
    while let Some(result) = pending.join_next().await {
        result??;
    }
    Ok(())
}
