//! The web UI over real HTTP: signing in, sessions and their cookie, CSRF, roles, one
//! project's user kept out of another's data, the dashboard updating from a ping, and the
//! alert page's buttons. (The same pages in a real browser: `tests/browser`.)

use std::collections::HashMap;

use keepwatch_core::user::Role;
use keepwatch_server::ui::session::hash_password;
use keepwatch_store::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

pub const PASSWORD: &str = "correct horse battery";

/// Creates a user with `role` in project `project` and returns their email.
pub async fn user(app: &TestApp, email: &str, project: &str, role: Role, person: &str) -> String {
    let hash = hash_password(PASSWORD).unwrap();
    let user = match app.store.user_by_email(email).await.unwrap() {
        Some(user) => user,
        None => app
            .store
            .create_user(email, &hash, person, Timestamp::default())
            .await
            .unwrap(),
    };
    let project = app.store.project_by_name(project).await.unwrap().unwrap();
    app.store
        .set_membership(user.id, project.id, role)
        .await
        .unwrap();
    email.to_string()
}

/// A browser's part, by hand: keeps cookies, does not follow redirects (tests look at them).
pub struct Session {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
    /// The raw `Set-Cookie` values seen, for the flags.
    pub set_cookies: Vec<String>,
}

impl Session {
    pub fn new(app: &TestApp) -> Session {
        Session {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let value = value.to_str().unwrap().to_string();
            let pair = value.split(';').next().unwrap();
            let (name, content) = pair.split_once('=').unwrap();
            if content.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.into(), content.into());
            }
            self.set_cookies.push(value);
        }
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, String, Option<String>) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&response);
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        (status, response.text().await.unwrap(), location)
    }

    pub async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&response);
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        (status, response.text().await.unwrap(), location)
    }

    /// The value of a hidden `csrf` input in a page.
    pub fn csrf_in(html: &str) -> String {
        let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        html[at..].split('"').next().unwrap().to_string()
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> (StatusCode, Option<String>) {
        let (_, login, _) = self.get("/ui/login?next=/ui/").await;
        let csrf = Self::csrf_in(&login);
        let (status, _, location) = self
            .post(
                "/ui/login",
                &[
                    ("csrf", &csrf),
                    ("email", email),
                    ("password", password),
                    ("next", "/ui/"),
                ],
            )
            .await;
        (status, location)
    }

    /// The CSRF token of the signed-in session (from any page).
    pub async fn csrf(&mut self, page: &str) -> String {
        let (status, html, _) = self.get(page).await;
        assert_eq!(status, StatusCode::OK, "{page}: {html}");
        Self::csrf_in(&html)
    }
}

#[tokio::test]
async fn sign_in_sets_a_safe_cookie_and_sign_out_ends_the_session() {
    let app = spawn_app().await;
    let email = user(&app, "ana@example.com", "default", Role::Admin, "ana").await;
    let mut browser = Session::new(&app);

    // Not signed in: pages send to the login page and back.
    let (status, _, location) = browser.get("/ui/p/default/alerts/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some("/ui/login?next=%2Fui%2Fp%2Fdefault%2Falerts%2F")
    );
    let (_, _, location) = browser.get("/").await;
    assert_eq!(location.as_deref(), Some("/ui/"));

    let (status, location) = browser.sign_in(&email, "wrong password!").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(location, None);
    let (status, location) = browser.sign_in("ANA@example.com ", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "emails compare case-blind");
    assert_eq!(location.as_deref(), Some("/ui/"));
    let session = browser
        .set_cookies
        .iter()
        .find(|c| c.starts_with("kw_session=") && !c.starts_with("kw_session=;"))
        .unwrap()
        .clone();
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Lax"), "{session}");
    assert!(session.contains("Path=/"), "{session}");
    // http://127.0.0.1: no Secure flag (the browser would drop the cookie); see the README.
    assert!(!session.contains("Secure"), "{session}");

    // One project: /ui/ goes straight to its dashboard.
    let (_, _, location) = browser.get("/ui/").await;
    assert_eq!(location.as_deref(), Some("/ui/p/default/"));
    let (status, html, _) = browser.get("/ui/p/default/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("ana@example.com"));

    let csrf = browser.csrf("/ui/p/default/").await;
    let (status, _, location) = browser.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/ui/login"));
    let (status, _, _) = browser.get("/ui/p/default/").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn login_needs_its_csrf_token_and_is_rate_limited() {
    let app = spawn_app().await;
    let email = user(&app, "ana@example.com", "default", Role::Admin, "").await;
    let mut browser = Session::new(&app);
    let (_, login, _) = browser.get("/ui/login").await;
    let csrf = Session::csrf_in(&login);
    // A cross-site form has neither the cookie's token nor ours.
    let (status, html, _) = browser
        .post(
            "/ui/login",
            &[
                ("csrf", "forged"),
                ("email", &email),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("form expired"), "{html}");
    // Five wrong passwords, then even the right one is refused for a while.
    for _ in 0..5 {
        let (status, _) = browser.sign_in(&email, "not the password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = browser.sign_in(&email, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let _ = csrf;
}

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_once() {
    let app = spawn_app().await;
    let setup = app
        .running
        .setup_url
        .clone()
        .expect("no user yet: a setup link");
    let path = setup.strip_prefix(&app.address).unwrap().to_string();
    let mut browser = Session::new(&app);
    let (status, html, _) = browser.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Create the first admin"));
    let (status, html, _) = browser
        .post(
            &path,
            &[("email", "root@example.com"), ("password", "short")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("at least 10 characters"), "{html}");
    let (status, _, location) = browser
        .post(
            &path,
            &[("email", "root@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/ui/login"));
    let (status, _, _) = browser.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the link works once");
    let (status, _) = browser.sign_in("root@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = browser.get("/ui/p/default/checks/new").await;
    assert_eq!(status, StatusCode::OK, "an admin of the default project");
}

#[tokio::test]
async fn a_user_of_one_project_cannot_read_another_projects_check() {
    let app = spawn_app().await;
    app.store
        .create_project("other", Timestamp::default())
        .await
        .unwrap();
    let uuid = app
        .create_check(json!({"name": "payroll", "timeout": 3600}))
        .await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let email = user(&app, "eve@example.com", "other", Role::Admin, "").await;
    let mut browser = Session::new(&app);
    browser.sign_in(&email, PASSWORD).await;
    for path in [
        format!("/ui/p/default/checks/{uuid}"),
        format!("/ui/p/other/checks/{uuid}"),
        "/ui/p/default/".to_string(),
        "/ui/p/default/alerts/".to_string(),
    ] {
        let (status, html, _) = browser.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!html.contains("payroll"), "{path}");
    }
    let csrf = browser.csrf("/ui/p/other/").await;
    let (status, _, _) = browser
        .post(
            &format!("/ui/p/other/checks/{uuid}/act"),
            &[("csrf", &csrf), ("action", "delete")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get_check(&uuid).await["name"], "payroll", "still there");
}

#[tokio::test]
async fn checks_are_created_edited_paused_and_shown_with_their_state() {
    let app = spawn_app().await;
    let email = user(&app, "ana@example.com", "default", Role::Admin, "").await;
    let mut browser = Session::new(&app);
    browser.sign_in(&email, PASSWORD).await;
    let csrf = browser.csrf("/ui/p/default/checks/new").await;
    let form = |schedule: &'static str| {
        vec![
            ("name", "nightly-events"),
            ("kind", "cron"),
            ("schedule", schedule),
            ("tz", "America/Denver"),
            ("grace", "30m"),
            ("max_runtime", "2h"),
            ("tags", "etl prod"),
            ("service", "billing"),
        ]
    };
    // A bad cron expression comes back with the parser's words and the fields kept.
    let mut bad = form("0 25 * * *");
    bad.push(("csrf", &csrf));
    let (status, html, _) = browser.post("/ui/p/default/checks/new", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("class=\"error\""), "{html}");
    assert!(html.contains("value=\"nightly-events\""));
    // Without the token: refused, nothing created.
    let (status, _, _) = browser
        .post("/ui/p/default/checks/new", &form("0 2 * * *"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, checks) = app.get("/api/v3/checks/").await;
    assert_eq!(checks["checks"].as_array().unwrap().len(), 0);

    let mut good = form("0 2 * * *");
    good.push(("csrf", &csrf));
    let (status, _, location) = browser.post("/ui/p/default/checks/new", &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    let uuid = location.rsplit('/').next().unwrap().to_string();
    let check = app.get_check(&uuid).await;
    assert_eq!(check["schedule"], "0 2 * * *");
    assert_eq!(check["tz"], "America/Denver");
    assert_eq!(check["grace"], 1800);
    assert_eq!(check["max_runtime"], 7200);
    assert_eq!(check["service"], "billing");

    let (status, html, _) = browser.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("02:00"), "the schedule in words: {html}");
    assert!(html.contains("(America/Denver)"));
    assert!(html.contains(&format!("keepwatch run --server {} {uuid}", app.address)));
    assert!(html.contains(">new</span>"));

    // The dashboard's table follows a ping.
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let (_, table, _) = browser.get("/ui/p/default/checks/table").await;
    assert!(table.contains("s-up\">up</span>"), "{table}");
    assert!(table.contains("nightly-events"));
    let (_, table, _) = browser.get("/ui/p/default/checks/table?state=down").await;
    assert!(table.contains("No check matches"), "{table}");

    // Pause from the page.
    let (status, _, _) = browser
        .post(
            &format!("/ui/p/default/checks/{uuid}/act"),
            &[("csrf", &csrf), ("action", "pause")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(app.get_check(&uuid).await["status"], "paused");

    // Edit: the period form.
    let (status, _, _) = browser
        .post(
            &format!("/ui/p/default/checks/{uuid}/edit"),
            &[
                ("csrf", &csrf),
                ("name", "nightly-events"),
                ("kind", "simple"),
                ("timeout", "1d"),
                ("grace", "1h"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let check = app.get_check(&uuid).await;
    assert_eq!(check["timeout"], 86_400);
    assert_eq!(check["max_runtime"], serde_json::Value::Null);

    // The cron preview: next runs, or the error.
    let (_, preview, _) = browser
        .get("/ui/p/default/cron?expr=30%203%20*%20*%201&tz=Europe/Berlin")
        .await;
    let preview: serde_json::Value = serde_json::from_str(&preview).unwrap();
    assert_eq!(preview["next"].as_array().unwrap().len(), 5);
    assert!(preview["next"][0].as_str().unwrap().contains("03:30"));
    let (_, preview, _) = browser.get("/ui/p/default/cron?expr=nope").await;
    assert!(preview.contains("error"), "{preview}");
}

#[tokio::test]
async fn a_viewer_reads_but_cannot_acknowledge_and_a_responder_can() {
    let app = spawn_app().await;
    let viewer = user(&app, "vic@example.com", "default", Role::Viewer, "").await;
    let responder = user(&app, "rob@example.com", "default", Role::Responder, "rob").await;
    let uuid = app
        .create_check(json!({"name": "backup", "timeout": 60, "grace": 60}))
        .await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    app.advance(chrono::TimeDelta::minutes(3));
    let id = crate::helpers::eventually(|| async {
        let (_, alerts) = app.get("/api/v1/alerts/").await;
        alerts["alerts"][0]["id"].as_i64()
    })
    .await;

    let mut vic = Session::new(&app);
    vic.sign_in(&viewer, PASSWORD).await;
    let (status, html, _) = vic.get(&format!("/ui/p/default/alerts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("backup"), "{html}");
    // The check's page lists its alert.
    let (_, check_page, _) = vic.get(&format!("/ui/p/default/checks/{uuid}")).await;
    assert!(
        check_page.contains(&format!("/ui/p/default/alerts/{id}\">#{id}")),
        "{check_page}"
    );
    assert!(!html.contains("value=\"ack\""), "no buttons for a viewer");
    let csrf = Session::csrf_in(&html);
    let (status, html, _) = vic
        .post(
            &format!("/ui/p/default/alerts/{id}/act"),
            &[("csrf", &csrf), ("action", "ack")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("(viewer) cannot"), "{html}");
    let (status, _, _) = vic.get("/ui/p/default/checks/new").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut rob = Session::new(&app);
    rob.sign_in(&responder, PASSWORD).await;
    let csrf = rob.csrf(&format!("/ui/p/default/alerts/{id}")).await;
    // A form without the session's token is refused.
    let (status, _, _) = rob
        .post(
            &format!("/ui/p/default/alerts/{id}/act"),
            &[("csrf", "x"), ("action", "ack")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = rob
        .post(
            &format!("/ui/p/default/alerts/{id}/act"),
            &[
                ("csrf", &csrf),
                ("action", "ack"),
                ("note", "looking at the NFS mount"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, alert) = app.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(alert["status"], "acknowledged");
    let (_, html, _) = rob.get(&format!("/ui/p/default/alerts/{id}")).await;
    assert!(
        html.contains("by rob (web)"),
        "the log names the person: {html}"
    );
    assert!(html.contains("looking at the NFS mount"));
}

#[tokio::test]
async fn the_stream_says_when_a_ping_changed_the_checks() {
    let app = spawn_app().await;
    let email = user(&app, "ana@example.com", "default", Role::Viewer, "").await;
    let uuid = app
        .create_check(json!({"name": "stream", "timeout": 3600}))
        .await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let mut browser = Session::new(&app);
    browser.sign_in(&email, PASSWORD).await;
    let mut response = browser
        .client
        .get(format!("{}/ui/p/default/stream", app.address))
        .header(COOKIE, browser.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let started = std::time::Instant::now();
    app.ping("GET", &format!("/ping/{uuid}"), None).await;
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), response.chunk())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("event: changed"), "{text}");
    eprintln!("ping to stream event: {:?}", started.elapsed());
    // Not signed in: 401 (a script is listening, not a person).
    let anonymous = reqwest::get(format!("{}/ui/p/default/stream", app.address))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// alice and bob rotate daily in `primary` (UTC, from 2026-11-01 09:00); policy `p` pages
/// whoever is on call; service `billing` is high urgency. Contacts are email addresses.
fn rotation_file() -> String {
    format!(
        "# the team's on-call file\n{}{}{}{}",
        crate::helpers::person("alice", &[("email", "alice@example.com")]),
        crate::helpers::person("bob", &[("email", "bob@example.com")]),
        crate::helpers::schedule(
            "primary",
            "UTC",
            &["alice", "bob"],
            "1d",
            "2026-11-01T09:00:00"
        ),
        crate::helpers::billing_pages(&["schedule:primary"]),
    )
}

#[tokio::test]
async fn an_override_in_two_clicks_changes_who_is_paged_and_the_file() {
    let app = spawn_app().await;
    app.apply_oncall_config(&rotation_file()).await;
    // Who is on call at the test clock's time (2026-11-26) follows from the rotation.
    let (covering, covered) = ("alice", "bob");
    let responder = user(
        &app,
        "rob@example.com",
        "default",
        Role::Responder,
        covering,
    )
    .await;
    let viewer = user(&app, "vic@example.com", "default", Role::Viewer, "").await;

    let mut rob = Session::new(&app);
    rob.sign_in(&responder, PASSWORD).await;
    let (status, html, _) = rob.get("/ui/p/default/oncall/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("On call now: <b>{covered}</b>")),
        "{html}"
    );
    assert!(html.contains("My shifts"), "{html}");
    assert!(
        html.contains("whoever is on call in primary"),
        "the policy in words"
    );
    // The first shift's cover form: its hidden fields, as the browser would post them.
    let form_at = html.find("oncall/override\" class=\"inline\"").unwrap();
    let form = &html[form_at..];
    let hidden = |name: &str| {
        let at = form.find(&format!("name=\"{name}\" value=\"")).unwrap() + name.len() + 15;
        form[at..].split('"').next().unwrap().to_string()
    };
    let (start, end, replaces) = (hidden("start"), hidden("end"), hidden("replaces"));
    assert_eq!(replaces, covered);
    let csrf = Session::csrf_in(&html);

    // A viewer cannot.
    let mut vic = Session::new(&app);
    vic.sign_in(&viewer, PASSWORD).await;
    let vic_csrf = vic.csrf("/ui/p/default/oncall/").await;
    let (status, _, _) = vic
        .post(
            "/ui/p/default/oncall/override",
            &[
                ("csrf", &vic_csrf),
                ("schedule", "primary"),
                ("user", "alice"),
                ("start", &start),
                ("end", &end),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Someone not in the file: refused with the reason, nothing stored.
    let (status, html, _) = rob
        .post(
            "/ui/p/default/oncall/override",
            &[
                ("csrf", &csrf),
                ("schedule", "primary"),
                ("user", "mallory"),
                ("start", &start),
                ("end", &end),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("`mallory` is not one"), "{html}");

    let (status, _, location) = rob
        .post(
            "/ui/p/default/oncall/override",
            &[
                ("csrf", &csrf),
                ("schedule", "primary"),
                ("user", covering),
                ("start", &start),
                ("end", &end),
                ("replaces", &replaces),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location:?}");
    // The pager's view (the same API `keepwatch oncall` reads) changed at once.
    let (_, who) = app.get("/api/v1/oncall/").await;
    assert_eq!(who["oncall"][0]["users"], json!([covering]), "{who}");
    // The applied file carries it, with its comments, for `keepwatch export`.
    let (_, source) = app.get_text(&app.api_key, "/api/v1/oncall/config").await;
    assert!(source.starts_with("# the team's on-call file"), "{source}");
    assert!(source.contains("override added in the web UI by rob@example.com"));
    assert!(
        source.contains(&format!("user = \"{covering}\"")),
        "{source}"
    );
    let (_, html, _) = rob.get("/ui/p/default/oncall/").await;
    assert!(
        html.contains(&format!("{covering} covers for {covered}")),
        "{html}"
    );
}

#[tokio::test]
async fn incidents_are_declared_updated_and_resolved_from_their_page() {
    let app = spawn_app().await;
    app.apply_oncall_config(&rotation_file()).await;
    let email = user(
        &app,
        "alice@example.com",
        "default",
        Role::Responder,
        "alice",
    )
    .await;
    let mut ana = Session::new(&app);
    ana.sign_in(&email, PASSWORD).await;
    let csrf = ana.csrf("/ui/p/default/incidents/").await;
    let (status, _, location) = ana
        .post(
            "/ui/p/default/incidents/",
            &[
                ("csrf", &csrf),
                ("title", "Nightly export stuck"),
                ("severity", "SEV2"),
                ("owner", "alice"),
                ("service", "billing"),
                ("impact", "Reports are a day old"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let page = location.unwrap();
    let id = page.rsplit('/').next().unwrap().to_string();
    let (_, html, _) = ana.get(&page).await;
    assert!(html.contains("Nightly export stuck"));
    assert!(
        html.contains("Next update due <b"),
        "SEV2 has a cadence: {html}"
    );
    assert!(html.contains("Reports are a day old"));
    assert!(html.contains("/s/"), "the stakeholder page link");

    let act = format!("/ui/p/default/incidents/{id}/act");
    // An empty message is refused with the engine's words, on the page.
    let (status, html, _) = ana
        .post(
            &act,
            &[("csrf", &csrf), ("action", "update"), ("message", " ")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("the message is empty"), "{html}");
    let (status, _, _) = ana
        .post(
            &act,
            &[
                ("csrf", &csrf),
                ("action", "update"),
                ("status", "identified"),
                ("message", "The NFS mount hangs; remounting"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = ana
        .post(
            &act,
            &[
                ("csrf", &csrf),
                ("action", "update"),
                ("status", "identified"),
                ("no_news", "1"),
                ("message", "rerunning the export by hand"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = ana
        .post(
            &act,
            &[
                ("csrf", &csrf),
                ("action", "resolve"),
                ("message", "The export caught up"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, incident) = app.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(incident["status"], "resolved");
    let kinds: Vec<&str> = incident["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"no_news"), "{kinds:?}");
    assert!(kinds.contains(&"all_clear"), "{kinds:?}");
    assert!(
        incident["log"].to_string().contains("alice (web)"),
        "the log names the person: {}",
        incident["log"]
    );
    // After the all-clear, an update is refused and the page says to reopen.
    let (status, html, _) = ana
        .post(
            &act,
            &[("csrf", &csrf), ("action", "update"), ("message", "x")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("reopen it first"), "{html}");
    let (status, markdown, _) = ana
        .get(&format!(
            "/ui/p/default/incidents/{id}/export?format=markdown"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(markdown.contains("Nightly export stuck"), "{markdown}");
}

#[tokio::test]
async fn the_drill_page_shows_the_timeline_and_the_week_heat_map_and_the_audit_links_fixes() {
    let app = spawn_app().await;
    app.apply_oncall_config(&rotation_file()).await;
    let email = user(&app, "vic@example.com", "default", Role::Viewer, "").await;
    let mut vic = Session::new(&app);
    vic.sign_in(&email, PASSWORD).await;
    let (status, html, _) = vic
        .get("/ui/p/default/drill?service=billing&event=down&at=2026-12-05T02:00&tz=America/Denver")
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("First high-urgency page:"), "{html}");
    assert!(
        html.contains("2026-12-05 02:00 MST"),
        "times in the asked zone: {html}"
    );
    let (status, html, _) = vic
        .get("/ui/p/default/drill?service=billing&sweep=week&tz=UTC")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("class=\"heat\""), "{html}");
    assert_eq!(html.matches("<th scope=\"row\">").count(), 7, "seven days");
    let (status, html, _) = vic.get("/ui/p/default/drill?service=nope").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("no service `nope`"), "{html}");

    // One person could be the only one: the audit says so and links the objects.
    let (status, html, _) = vic.get("/ui/p/default/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("How to fix:"), "{html}");
    assert!(
        html.contains("/ui/p/default/oncall/"),
        "findings link to the objects: {html}"
    );
}

#[tokio::test]
async fn links_in_messages_land_on_the_ui_page_of_their_project() {
    let app = spawn_app().await;
    app.store
        .create_project("other", Timestamp::default())
        .await
        .unwrap();
    let uuid = app
        .create_check(json!({"name": "linked", "timeout": 60, "grace": 60}))
        .await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let member = user(&app, "ana@example.com", "default", Role::Viewer, "").await;
    let outsider = user(&app, "eve@example.com", "other", Role::Admin, "").await;
    let mut browser = Session::new(&app);
    // Not signed in: the sign-in page, then back to the link.
    let (_, _, location) = browser.get(&format!("/ui/checks/{uuid}")).await;
    assert_eq!(
        location.unwrap(),
        format!("/ui/login?next=%2Fui%2Fchecks%2F{uuid}")
    );
    browser.sign_in(&member, PASSWORD).await;
    let (status, _, location) = browser.get(&format!("/ui/checks/{uuid}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("/ui/p/default/checks/{uuid}"));
    let mut eve = Session::new(&app);
    eve.sign_in(&outsider, PASSWORD).await;
    let (status, _, _) = eve.get(&format!("/ui/checks/{uuid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = eve.get("/ui/alerts/1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
