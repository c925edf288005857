//! Three `keepwatch serve` processes on one PostgreSQL database, every request spread over
//! all of them, and the instance that owns the checks killed with SIGKILL again and again
//! under load: every ping answered 200 is counted, every run that hangs is alerted and paged
//! exactly once, and duplicates are counted by delivery id.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keepwatch_store::testing::PgDatabase;
use serde_json::{Value, json};

use crate::helpers::{alice_by_webhook, install_crypto};
use crate::instances::Serve;

/// Kills of the owner; the lease is the shortest allowed.
const KILLS: usize = 10;
const LEASE_SECS: u32 = 3;

/// A webhook endpoint that keeps every delivery: its `X-Keepwatch-Delivery` id and body.
#[derive(Clone, Default)]
struct Deliveries(Arc<Mutex<Vec<(String, Value)>>>);

impl Deliveries {
    async fn serve(&self) -> String {
        let kept = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let kept = kept.clone();
                    async move {
                        let id = headers
                            .get("x-keepwatch-delivery")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        kept.0.lock().unwrap().push((id, body));
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    }

    /// Per check uuid (`uuids_of` a body: a page may tell several alerts at once): distinct
    /// delivery ids, and how many deliveries repeated an id already received.
    fn by_check(
        &self,
        uuids_of: impl Fn(&Value) -> Vec<String>,
    ) -> (HashMap<String, usize>, usize) {
        let all = self.0.lock().unwrap().clone();
        let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
        let mut repeated = 0;
        for (id, body) in all {
            for uuid in uuids_of(&body) {
                if !ids.entry(uuid).or_default().insert(id.clone()) {
                    repeated += 1;
                }
            }
        }
        (
            ids.into_iter().map(|(k, v)| (k, v.len())).collect(),
            repeated,
        )
    }
}

/// Which of `uuids` a body names (a page names the checks of its alerts in their details).
fn mentioned(v: &Value, uuids: &[String]) -> Vec<String> {
    let text = v.to_string();
    uuids
        .iter()
        .filter(|u| text.contains(u.as_str()))
        .cloned()
        .collect()
}

fn holder_of_deadlines(status: &Value) -> Option<String> {
    status["leases"]
        .as_array()?
        .iter()
        .find(|l| l["work"] == "deadlines")
        .and_then(|l| l["holder"].as_str().map(str::to_string))
}

#[tokio::test]
async fn three_instances_lose_no_ping_and_page_each_hung_run_once_through_ten_sigkills() {
    install_crypto();
    let db = PgDatabase::create().await;
    let (store, key) = crate::instances::project_on(&db.url).await;
    let client = reqwest::Client::new();
    let channel_hook = Deliveries::default();
    let page_hook = Deliveries::default();
    let channel_url = channel_hook.serve().await;
    let page_url = page_hook.serve().await;

    let mut generation = 0;
    let mut instances = Vec::new();
    for name in ["a", "b", "c"] {
        instances.push(Serve::start(&db.url, &format!("kw-{name}0"), LEASE_SECS).await);
    }
    let urls = Arc::new(Mutex::new(
        instances.iter().map(|i| i.url.clone()).collect::<Vec<_>>(),
    ));
    let api = |url: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{url}{path}"))
            .header("X-Api-Key", &key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };

    // Service `billing` pages alice through a webhook at once; every check also tells a
    // webhook channel.
    let oncall = alice_by_webhook("webhook", &page_url, 0);
    let response = client
        .put(format!("{}/api/v1/oncall/config", instances[0].url))
        .header("X-Api-Key", &key)
        .body(oncall)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let response = api(
        &instances[1].url,
        reqwest::Method::POST,
        "/api/v3/channels/",
        Some(json!({"name": "hook", "kind": "webhook", "url": channel_url})),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);

    // Steady checks take the load; a run of each doomed check starts during the kills and
    // hangs (max_runtime 2 s). Checks are created through every instance.
    let mut steady = Vec::new();
    let mut doomed = Vec::new();
    for i in 0..24 {
        let url = &instances[i % 3].url;
        let (name, body) = if i < 6 {
            (format!("steady-{i}"), json!({"timeout": 3600}))
        } else {
            (
                format!("doomed-{i}"),
                json!({"timeout": 3600, "max_runtime": 2, "service": "billing", "channels": "*"}),
            )
        };
        let mut body = body;
        body["name"] = json!(name);
        let response = api(url, reqwest::Method::POST, "/api/v3/checks/", Some(body))
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let check: Value = response.json().await.unwrap();
        let uuid = check["uuid"].as_str().unwrap().to_string();
        if i < 6 {
            steady.push(uuid)
        } else {
            doomed.push(uuid)
        }
    }

    // The load: steady pings round-robin over the instances, each with its own run id, so
    // the pings stored can be matched to the 200s answered.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered: Arc<Mutex<HashMap<String, HashSet<String>>>> = Arc::default();
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut loaders = Vec::new();
    for worker in 0..4 {
        let (stop, answered, failed, urls) =
            (stop.clone(), answered.clone(), failed.clone(), urls.clone());
        let (client, steady) = (client.clone(), steady.clone());
        loaders.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let url = {
                    let urls = urls.lock().unwrap();
                    urls[n % urls.len()].clone()
                };
                let uuid = &steady[n % steady.len()];
                let rid = uuid::Uuid::new_v4().to_string();
                let sent = client
                    .post(format!("{url}/ping/{uuid}?rid={rid}"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        answered
                            .lock()
                            .unwrap()
                            .entry(uuid.clone())
                            .or_default()
                            .insert(rid);
                    }
                    _ => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // The kills: find the owner, SIGKILL it, start a new instance in its place, and wait
    // until another holds the deadlines. Doomed runs start through any instance meanwhile.
    let mut started = Vec::new();
    let mut takeovers = Vec::new();
    let mut next_doomed = doomed.iter();
    for round in 0..KILLS {
        let holder = loop {
            let mut found = None;
            for instance in &instances {
                if let Some(status) = instance.status(&client).await {
                    found = holder_of_deadlines(&status);
                    break;
                }
            }
            if let Some(holder) = found
                && instances.iter().any(|i| i.id == holder)
            {
                break holder;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Two runs start (one just before the kill, through an instance that lives on).
        for instance in instances.iter().filter(|i| i.id != holder).take(2) {
            if let Some(uuid) = next_doomed.next() {
                let response = client
                    .post(format!("{}/ping/{uuid}/start", instance.url))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                started.push(uuid.clone());
            }
        }
        let at = instances.iter().position(|i| i.id == holder).unwrap();
        instances[at].kill();
        let killed = Instant::now();
        generation += 1;
        let name = format!("kw-{}{generation}", ["a", "b", "c"][at]);
        instances[at] = Serve::start(&db.url, &name, LEASE_SECS).await;
        *urls.lock().unwrap() = instances.iter().map(|i| i.url.clone()).collect();
        loop {
            let status = instances[(at + 1) % 3].status(&client).await;
            if let Some(new) = status.as_ref().and_then(holder_of_deadlines)
                && new != holder
            {
                takeovers.push(killed.elapsed());
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "round {round}: no takeover"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for loader in loaders {
        loader.await.unwrap();
    }

    // Every 200 is a stored ping, and no ping is stored twice. (A ping may be stored and its
    // answer lost, when the instance died before sending it: counted, not an error.)
    let answered = answered.lock().unwrap().clone();
    let total: usize = answered.values().map(HashSet::len).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut unanswered = 0;
    for uuid in &steady {
        let expected = answered.get(uuid).cloned().unwrap_or_default();
        loop {
            let rids = crate::instances::stored_rids(&store, uuid).await;
            let stored: HashSet<String> = rids.iter().cloned().collect();
            assert_eq!(
                stored.len(),
                rids.len(),
                "a ping of {uuid} was stored twice"
            );
            if stored.is_superset(&expected) {
                unanswered += stored.len() - expected.len();
                break;
            }
            if Instant::now() > deadline {
                for instance in &instances {
                    eprintln!("--- {} ---\n{}", instance.id, instance.log());
                }
                panic!(
                    "{uuid}: {} pings answered 200 are not stored",
                    expected.difference(&stored).count()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Every run that hung is told to the channel once and paged once (by delivery id).
    let deadline = Instant::now() + Duration::from_secs(40);
    let (channel, channel_repeats, pages, page_repeats) = loop {
        let hung = |v: &Value| match (&v["event"], v["check"]["uuid"].as_str()) {
            (event, Some(uuid)) if event == "hung" => vec![uuid.to_string()],
            _ => Vec::new(),
        };
        let (channel, channel_repeats) = channel_hook.by_check(hung);
        let (pages, page_repeats) = page_hook.by_check(|v| mentioned(v, &started));
        let done = started
            .iter()
            .all(|u| channel.get(u) >= Some(&1) && pages.get(u) >= Some(&1));
        if done {
            break (channel, channel_repeats, pages, page_repeats);
        }
        assert!(
            Instant::now() < deadline,
            "hung runs {started:?}: channel {channel:?}, pages {pages:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    takeovers.sort();
    eprintln!(
        "{KILLS} SIGKILLs: {total} pings answered 200 (all stored, none twice), {} refused or cut \
         while an instance died ({unanswered} of them stored); {} hung runs; takeover p50 {:?}, max {:?}; repeated delivery ids: \
         channel {channel_repeats}, pages {page_repeats}",
        failed.load(std::sync::atomic::Ordering::Relaxed),
        started.len(),
        takeovers[takeovers.len() / 2],
        takeovers.last().unwrap(),
    );
    for uuid in &started {
        let bodies: Vec<(String, Value)> = channel_hook
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, body)| body.to_string().contains(uuid.as_str()))
            .cloned()
            .collect();
        assert_eq!(
            channel.get(uuid),
            Some(&1),
            "channel deliveries of {uuid}: {bodies:?}"
        );
        assert_eq!(pages.get(uuid), Some(&1), "pages for {uuid}: {pages:?}");
    }
    assert!(total > 200, "the load ran: {total} pings");
    for instance in &mut instances {
        instance.kill();
    }
}
