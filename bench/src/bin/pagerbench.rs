//! Notification throughput of the pager, in process, on a real SQLite file, delivering to a
//! webhook receiver on loopback.
//!
//! 1. Burst: N alerts (default 10,000) triggered at once on a service whose policy pages one
//!    person by webhook at step 1: how many alerts per second the pager escalates and hands
//!    to the receiver until all N have arrived (as summaries: one message per delivery round).
//! 2. Steady, with those N alerts still open: M more alerts (default 3,000) whose step 2
//!    falls due spread over 60 s: p50/p99/max from each step's due time to its arrival.
//!
//! Usage: pagerbench [--alerts N] [--steady M]        (bench/pager.sh builds and runs it)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use chrono::{TimeDelta, Utc};
use clap::Parser;
use keepwatch_engine::channels::{LiveTransport, Transport};
use keepwatch_engine::delivery::{Dispatcher, LinkSigner};
use keepwatch_engine::lease::SoleInstance;
use keepwatch_engine::pager::Pager;
use keepwatch_engine::{EngineConfig, SystemClock};
use keepwatch_store::{NewAlert, Store, Timestamp};
use serde_json::Value;
use tokio::sync::Notify;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    alerts: usize,
    #[arg(long, default_value_t = 3_000)]
    steady: usize,
}

/// Messages received (a summary counts once).
static MESSAGES: AtomicUsize = AtomicUsize::new(0);

/// Arrival times by alert id.
type Arrivals = Arc<Mutex<HashMap<i64, Vec<chrono::DateTime<Utc>>>>>;

async fn receiver(arrivals: Arrivals) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let arrivals = arrivals.clone();
            async move {
                let at = Utc::now();
                // One page, or a summary of several (`pages`).
                if let Ok(message) = serde_json::from_slice::<Value>(&body) {
                    let pages = match message["pages"].as_array() {
                        Some(pages) => pages.clone(),
                        None => vec![message],
                    };
                    let mut arrivals = arrivals.lock().unwrap();
                    for id in pages.iter().filter_map(|p| p["alert"]["id"].as_i64()) {
                        arrivals.entry(id).or_default().push(at);
                    }
                    MESSAGES.fetch_add(1, Ordering::Relaxed);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// How long after `due_at` step 2 of alert `id` arrived (a step-1 page arrives well before).
fn step_two(
    arrivals: &HashMap<i64, Vec<chrono::DateTime<Utc>>>,
    id: &i64,
    due_at: &chrono::DateTime<Utc>,
) -> Option<TimeDelta> {
    let from = *due_at - TimeDelta::seconds(1);
    arrivals
        .get(id)?
        .iter()
        .find(|at| **at >= from)
        .map(|at| *at - *due_at)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store = Store::open(None, dir.path()).await?;
    let project = store.create_project("bench", Timestamp::now()).await?;
    let arrivals: Arrivals = Arc::default();
    let url = receiver(arrivals.clone()).await?;
    let config = format!(
        r#"
[[people]]
id = "oncall"
contacts = {{ webhook = "{url}" }}
rules = [{{ urgency = "high", contact = "webhook", after = 0 }}]
[[policies]]
name = "p"
steps = [{{ targets = ["user:oncall"], delay = 10 }}, {{ targets = ["user:oncall"], delay = 10 }}]
[[services]]
name = "s"
policy = "p"
urgency = "high"
"#
    );
    store
        .apply_oncall(
            project.id,
            &config,
            &[],
            &keepwatch_store::AppliedBy::default(),
            Timestamp::now(),
        )
        .await?;
    let trigger = |key: String, at: Timestamp| {
        let store = store.clone();
        async move {
            let new = NewAlert {
                project_id: project.id,
                service: "s",
                dedup_key: &key,
                summary: "bench",
                source: keepwatch_store::AlertSource::Events,
                details: "{}",
            };
            store
                .trigger_alert(&new, keepwatch_store::Urgency::High, at)
                .await
                .map(|(alert, _)| alert)
        }
    };

    // 1. Burst.
    let now = Timestamp::now();
    let mut burst = Vec::with_capacity(args.alerts);
    for i in 0..args.alerts {
        burst.push(trigger(format!("burst-{i}"), now).await?.id);
    }
    let engine = EngineConfig {
        site_url: "http://127.0.0.1:8000".into(),
        // One person takes every page here: the per-address rate limit (5 messages per 15
        // minutes by default) would hold the burst back; this measures the pager's own speed.
        page_rate_limit: u32::MAX,
        // The receiver is on loopback.
        allow_private_destinations: true,
        ..EngineConfig::default()
    };
    let notifier: Arc<dyn Transport> =
        Arc::new(LiveTransport::new(&engine).map_err(anyhow::Error::msg)?);
    let messages = Arc::new(Notify::new());
    let pager = Pager::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(Notify::new()),
        messages.clone(),
        Arc::new(SoleInstance),
    )
    .await?;
    let links = LinkSigner {
        secret: store.secret("alert_links").await?.into(),
        site_url: engine.site_url.clone(),
    };
    let dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(SystemClock),
        engine,
        messages,
        notifier,
        links,
        Arc::new(SoleInstance),
    );
    let started = Instant::now();
    tokio::spawn(pager.run());
    tokio::spawn(dispatcher.run());
    loop {
        let count = {
            let arrivals = arrivals.lock().unwrap();
            burst.iter().filter(|id| arrivals.contains_key(id)).count()
        };
        if count == burst.len() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {count} of {} burst pages arrived in 10 min",
            burst.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "burst: {} alerts escalated and delivered in {took:.2} s = {:.0} alerts/s ({} messages: pages to one person in one round go out as one summary)",
        burst.len(),
        burst.len() as f64 / took,
        MESSAGES.load(Ordering::Relaxed)
    );

    // 2. Steady, with the burst's alerts still open (their step 2 is 10 min away): step 2 of
    // each new alert falls due at an even pace over 60 s, starting 5 s from now.
    let step = TimeDelta::minutes(10);
    let start = Utc::now() + TimeDelta::seconds(5);
    let mut due = HashMap::new();
    for i in 0..args.steady {
        let due_at = start + TimeDelta::microseconds((60_000_000 * i / args.steady.max(1)) as i64);
        let alert = trigger(format!("steady-{i}"), (due_at - step).into()).await?;
        // Step 1 is in the past: mark it handled, so only step 2 is measured. The running
        // pager may have walked the new alert first (the mark moved: a compare-and-set
        // refuses), and then its step-1 page arrives now, before step 2 is due; only arrivals
        // from a second before the due time count below.
        let done = keepwatch_store::PagingRecord {
            alert_id: alert.id,
            paged_from: alert.paged_until,
            paged_until: Timestamp::now(),
            ..Default::default()
        };
        store.record_paging(&done, Timestamp::now()).await?;
        due.insert(alert.id, due_at);
    }
    let open = store
        .list_alerts(project.id, Some("open"), 1_000_000)
        .await?
        .len();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let count = {
            let arrivals = arrivals.lock().unwrap();
            due.iter()
                .filter(|(id, due_at)| step_two(&arrivals, id, due_at).is_some())
                .count()
        };
        if count == due.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {count} of {} steady pages arrived",
            due.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrivals = arrivals.lock().unwrap();
    let mut delays: Vec<f64> = due
        .iter()
        .filter_map(|(id, due_at)| step_two(&arrivals, id, due_at))
        .map(|delay| delay.num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .collect();
    delays.sort_by(f64::total_cmp);
    println!(
        "steady: {} step-2 pages over 60 s with {open} alerts open: due → delivered p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
