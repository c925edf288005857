//! PostgreSQL goes away underneath two running instances and comes back: pings get 503
//! while it is away (never a 200 that is not stored), every ping answered 200 before, during
//! and after is stored, and the instances recover by themselves.
//!
//! The outage is a TCP proxy on loopback between the instances and the machine's PostgreSQL
//! that drops every connection and refuses new ones, as a server that restarts or fails over
//! does; restarting the shared server itself would break the other tests running beside.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keepwatch_store::testing::PgDatabase;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::instances::Serve;

/// A loopback proxy to PostgreSQL that can be cut: every open connection is dropped and new
/// ones are closed at once until it is restored.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped on each cut: connections opened before it end.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (up2, generation2) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = generation2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            generation,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `url` with its `host:port` replaced by `hosts` (comma-separated, as libpq takes several),
/// and the `host:port` it named.
fn through(url: &str, hosts: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, path) = rest.split_once('/').unwrap();
    let (user, host) = match auth.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host.to_string()),
        None => (String::new(), auth.to_string()),
    };
    let host = if host.contains(':') {
        host
    } else {
        format!("{host}:5432")
    };
    (format!("{scheme}://{user}{hosts}/{path}"), host)
}

/// A ping sent: its check, run id, when it was answered, and the status (0: no answer).
type Sent = (String, String, Instant, u16);

/// How PostgreSQL fails underneath the instances.
enum Outage {
    /// The one host goes away for 6 s and comes back (a restart).
    Restart,
    /// The first of two hosts goes away for good; the second (a promoted standby, here the
    /// same server through another port) takes over.
    Failover,
}

/// Two instances under ping load through both; PostgreSQL fails as `outage` says. Every
/// ping answered 200 is stored, and pings are answered 200 again by themselves.
async fn story(outage: Outage) {
    crate::helpers::install_crypto();
    let db = PgDatabase::create().await;
    let (store, key) = crate::instances::project_on(&db.url).await;
    let (_, upstream) = through(&db.url, "127.0.0.1:1");
    let first = Proxy::start(upstream.clone()).await;
    let second = Proxy::start(upstream).await;
    let hosts = match outage {
        Outage::Restart => first.addr.to_string(),
        Outage::Failover => format!("{},{}", first.addr, second.addr),
    };
    let (url, _) = through(&db.url, &hosts);
    let url = format!("{url}?target_session_attrs=read-write");
    let mut instances = vec![
        Serve::start(&url, "kw-a", 3).await,
        Serve::start(&url, "kw-b", 3).await,
    ];
    let client = reqwest::Client::new();
    let mut checks = Vec::new();
    for i in 0..4 {
        let response = client
            .post(format!("{}/api/v3/checks/", instances[i % 2].url))
            .header("X-Api-Key", &key)
            .json(&json!({"name": format!("job-{i}"), "timeout": 3600}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let check: Value = response.json().await.unwrap();
        checks.push(check["uuid"].as_str().unwrap().to_string());
    }

    // Pings through both instances all along; each has its own run id.
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let mut loaders = Vec::new();
    for worker in 0..2 {
        let urls: Vec<String> = instances.iter().map(|i| i.url.clone()).collect();
        let (stop, answered, client, checks) = (
            stop.clone(),
            answered.clone(),
            client.clone(),
            checks.clone(),
        );
        loaders.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let uuid = &checks[n % checks.len()];
                let rid = uuid::Uuid::new_v4().to_string();
                let status = client
                    .post(format!("{}/ping/{uuid}?rid={rid}", urls[n % urls.len()]))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                answered
                    .lock()
                    .unwrap()
                    .push((uuid.clone(), rid, Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut_at = Instant::now();
    first.cut();
    let restored_at = match outage {
        Outage::Restart => {
            tokio::time::sleep(Duration::from_secs(6)).await;
            first.restore();
            Instant::now()
        }
        Outage::Failover => cut_at,
    };
    // Recovery: both instances answer pings with 200 again by themselves. It is timed from
    // the host's return (or loss, for a failover) to the last ping refused.
    let recovered = loop {
        let answered = answered.lock().unwrap().clone();
        let recent: Vec<&Sent> = answered.iter().rev().take(20).collect();
        if recent.len() == 20 && recent.iter().all(|a| a.3 == 200 && a.2 > restored_at) {
            let last_refused = answered
                .iter()
                .filter(|a| a.3 != 200 && a.2 > cut_at)
                .map(|a| a.2)
                .max()
                .unwrap_or(restored_at);
            break last_refused.saturating_duration_since(restored_at);
        }
        assert!(
            restored_at.elapsed() < Duration::from_secs(30),
            "no recovery 30 s after PostgreSQL came back: last answers {:?}\n{}\n{}",
            recent.iter().map(|a| a.3).collect::<Vec<_>>(),
            instances[0].log(),
            instances[1].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    // A ping answered after the cut settled (a second for requests in flight) and before the
    // restore could not have been stored: it must not be a 200.
    let during: Vec<u16> = answered
        .iter()
        .filter(|a| a.2 > cut_at + Duration::from_secs(1) && a.2 < restored_at)
        .map(|a| a.3)
        .collect();
    if let Outage::Restart = outage {
        assert!(!during.is_empty(), "pings were sent during the outage");
        assert!(
            during.iter().all(|s| *s == 503),
            "answers while PostgreSQL was away: {:?}",
            during.iter().collect::<std::collections::BTreeSet<_>>()
        );
    }
    let refused = answered
        .iter()
        .filter(|a| a.3 != 200 && a.2 > cut_at)
        .count();

    // Every 200 is stored.
    let deadline = Instant::now() + Duration::from_secs(20);
    for uuid in &checks {
        let expected: HashSet<&String> = answered
            .iter()
            .filter(|a| &a.0 == uuid && a.3 == 200)
            .map(|a| &a.1)
            .collect();
        loop {
            let stored: HashSet<String> = crate::instances::stored_rids(&store, uuid)
                .await
                .into_iter()
                .collect();
            let missing = expected
                .iter()
                .filter(|rid| !stored.contains(rid.as_str()))
                .count();
            if missing == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{uuid}: {missing} pings answered 200 are not stored"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let ok = answered.iter().filter(|a| a.3 == 200).count();
    let what = match outage {
        Outage::Restart => "PostgreSQL away for 6 s",
        Outage::Failover => "the first of two PostgreSQL hosts gone for good",
    };
    eprintln!(
        "{what}, two instances: {ok} pings answered 200 (all stored), {refused} refused (503) \
         after the cut; the last refused {recovered:?} after the host came back (or, for a failover, went away)"
    );
    for instance in &mut instances {
        instance.kill();
    }
}

#[tokio::test]
async fn postgres_restarting_gets_503s_loses_no_acknowledged_ping_and_is_recovered_from() {
    story(Outage::Restart).await;
}

#[tokio::test]
async fn postgres_failing_over_to_the_next_host_loses_no_acknowledged_ping() {
    story(Outage::Failover).await;
}

/// With `target_session_attrs=read-write`, a server that does not take writes (a standby;
/// here a database whose sessions are read-only) is refused with the reason, as libpq does.
#[tokio::test]
async fn a_read_only_server_is_refused_when_writes_are_asked_for() {
    let db = PgDatabase::create().await;
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    let url = format!("{}?target_session_attrs=read-write", db.url);
    let error = match keepwatch_store::Store::open(Some(&url), std::path::Path::new("unused")).await
    {
        Ok(_) => panic!("a read-only server was used for writes"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("read-only"), "{error}");
}
