//! A large on-call file (about 360 KB: many people, schedules, rotations and overrides) is
//! parsed once per apply, and the reads that compute shifts and handovers from it run off
//! the async workers: a ping is answered while they work.

use axum::http::StatusCode;
use chrono::TimeDelta;

use crate::helpers::{TestApp, spawn_app, t0};

/// A generated on-call file of about 360 KB: `people` people, 30 schedules of 4 layers
/// (hourly to daily rotations, one layer restricted to office hours) and 78 overrides
/// each, one policy and one service.
pub fn large_file() -> String {
    let people = 150;
    let mut file = String::new();
    for p in 0..people {
        file.push_str(&format!(
            "[[people]]\nid = \"person-{p:03}\"\ntz = \"America/Denver\"\n\
             contacts = {{ email = \"person-{p:03}@example.com\", webhook = \"https://hooks.example.com/page/{p:03}\" }}\n\
             rules = [{{ urgency = \"high\", contact = \"email\", after = 0 }}, \
             {{ urgency = \"high\", contact = \"webhook\", after = 5 }}]\n"
        ));
    }
    let start = t0();
    for s in 0..30 {
        file.push_str(&format!(
            "[[schedules]]\nname = \"schedule-{s:02}\"\ntz = \"America/Denver\"\n"
        ));
        for (l, shift) in ["1h", "2h", "4h", "1d"].iter().enumerate() {
            let participants: Vec<String> = (0..20)
                .map(|i| format!("\"person-{:03}\"", (s * 7 + l * 31 + i) % people))
                .collect();
            file.push_str(&format!(
                "[[schedules.layers]]\nname = \"layer-{l}\"\nparticipants = [{}]\n\
                 shift = \"{shift}\"\nstart = \"2026-11-02T09:00\"\n",
                participants.join(", ")
            ));
            if l == 2 {
                file.push_str(
                    "within = [{ days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"], \
                     start = \"09:00\", end = \"17:00\" }]\n",
                );
            }
        }
        for o in 0..78 {
            // Three hours every six, each by another person: none overlaps another of the
            // same person.
            let from = start + TimeDelta::hours(6 * o);
            file.push_str(&format!(
                "[[schedules.overrides]]\nuser = \"person-{:03}\"\nstart = \"{}\"\nend = \"{}\"\n",
                (s + o as usize * 13) % people,
                from.to_rfc3339(),
                (from + TimeDelta::hours(3)).to_rfc3339()
            ));
        }
    }
    file.push_str(
        "[[policies]]\nname = \"p\"\nsteps = [{ targets = [\"schedule:schedule-00\"], delay = 10 }]\n\
         [[services]]\nname = \"billing\"\npolicy = \"p\"\nurgency = \"high\"\n",
    );
    file
}

async fn get(app: &TestApp, path: &str) -> StatusCode {
    app.get_text(&app.read_key, path).await.0
}

#[tokio::test]
async fn a_large_file_is_parsed_once_per_apply_whatever_reads_it() {
    let app = spawn_app().await;
    let file = large_file();
    assert!((300_000..400_000).contains(&file.len()), "{}", file.len());
    app.apply_oncall_config(&file).await;
    let parses = app.store.oncall_parses();
    let project = app.store.project_by_name("default").await.unwrap().unwrap();
    let feed = app.store.feeds(project.id).await.unwrap();
    let feed = &feed.iter().find(|f| f.kind == "schedule").unwrap().token;
    for path in [
        "/api/v1/oncall/".to_string(),
        "/api/v1/oncall/?schedule=schedule-03".into(),
        "/api/v1/schedules/".into(),
        "/api/v1/schedules/schedule-01".into(),
        "/api/v1/people/person-001".into(),
        "/api/v1/services/billing".into(),
        format!("/ical/{feed}.ics"),
    ] {
        assert_eq!(get(&app, &path).await, StatusCode::OK, "{path}");
    }
    // The pager reads it too, for an alert.
    app.advance(TimeDelta::seconds(1));
    assert_eq!(get(&app, "/api/v1/oncall/").await, StatusCode::OK);
    assert_eq!(
        app.store.oncall_parses(),
        parses + 1,
        "one parse for all the reads"
    );
    // Another apply (even of the same text) is another version: parsed once more.
    app.apply_oncall_config(&file).await;
    assert_eq!(get(&app, "/api/v1/oncall/").await, StatusCode::OK);
    assert_eq!(get(&app, "/api/v1/schedules/").await, StatusCode::OK);
    assert_eq!(app.store.oncall_parses(), parses + 2);
}

/// On this test's one-thread runtime, work done on an async worker would hold up every
/// other request until it ends: the ping would finish after the expensive reads.
#[tokio::test]
async fn a_ping_is_answered_while_expensive_on_call_reads_run() {
    let app = spawn_app().await;
    app.apply_oncall_config(&large_file()).await;
    let check = app.create_check(serde_json::json!({"name": "c"})).await;
    let ping_path = format!(
        "/ping/{}",
        check["ping_url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
    );
    // Warm the cache: what is measured is the reads' computing, not the parse.
    assert_eq!(get(&app, "/api/v1/services/").await, StatusCode::OK);
    let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut reads = Vec::new();
    let (from, to) = (t0(), t0() + TimeDelta::days(366));
    for path in [
        format!(
            "/api/v1/schedules/schedule-00?from={}&to={}",
            urlencode(&from.to_rfc3339()),
            urlencode(&to.to_rfc3339())
        ),
        format!(
            "/api/v1/schedules/schedule-01?from={}&to={}",
            urlencode(&from.to_rfc3339()),
            urlencode(&to.to_rfc3339())
        ),
    ] {
        let (client, url, key, done) = (
            app.client.clone(),
            app.url(&path),
            app.read_key.clone(),
            done.clone(),
        );
        reads.push(tokio::spawn(async move {
            let response = client
                .get(url)
                .header("X-Api-Key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.bytes().await.unwrap();
            done.lock().unwrap().push("read");
        }));
    }
    // Let the reads reach the server before the ping is sent (each takes far longer to
    // compute: a year of hourly shifts).
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (status, _, _) = app.ping("GET", &ping_path, None).await;
    assert_eq!(status, StatusCode::OK);
    done.lock().unwrap().push("ping");
    for read in reads {
        read.await.unwrap();
    }
    let order = done.lock().unwrap().clone();
    assert_eq!(order[0], "ping", "the ping waited for a read: {order:?}");
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
