//! The web UI: server-rendered pages under `/ui/` for people signed in with a password.
//!
//! - [`session`]: passwords, sessions, CSRF tokens, the login limit, the `UiUser` extractor.
//! - [`checks`]: the dashboard (live over server-sent events) and each check's page and form.
//! - [`alerts`]: open and recent alerts, one alert with its log and buttons.
//! - [`incidents`]: the list, one incident with its composer, countdown and timeline.
//! - [`oncall`]: schedules (now, next, two weeks, overrides), policies, services, people.
//! - [`readiness`]: the drill with its week heat map, and the audit's findings.
//!
//! Templates are askama files under `crates/server/templates/ui/`, compiled into the binary
//! and escaped by default; the stylesheet and the one small script are under `static/`.
//! Pages load nothing from elsewhere and no inline script or style (see [`page`]'s CSP).
//!
//! Handlers answer with a page whether they succeed or not, so their helpers return
//! `Result<_, Response>`: the error is the page to show (hence the lint allowed below).
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keepwatch_core::user::Role;
use keepwatch_store::{StoreError, Timestamp};
use serde::Deserialize;
use std::collections::HashMap;

use crate::peer::PeerAddr;
use crate::state::AppState;

pub mod alerts;
pub mod checks;
pub mod incidents;
pub mod oncall;
pub mod readiness;
pub mod session;

use session::{LOGIN_CSRF_COOKIE, SESSION_COOKIE, UiUser};

/// A form's fields; each handler reads the ones it knows.
pub type FormFields = axum::Form<HashMap<String, String>>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/", get(home))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/setup/{token}", get(setup_form).post(setup))
        .route("/ui/static/app.css", get(stylesheet))
        .route("/ui/static/app.js", get(script))
        .route("/ui/checks/{uuid}", get(check_link))
        .route("/ui/alerts/{id}", get(alert_link))
        .route("/ui/p/{project}/", get(checks::dashboard))
        .route("/ui/p/{project}/checks/table", get(checks::table))
        .route("/ui/p/{project}/stream", get(checks::stream))
        .route(
            "/ui/p/{project}/checks/new",
            get(checks::new_form).post(checks::create),
        )
        .route("/ui/p/{project}/cron", get(checks::cron_preview))
        .route("/ui/p/{project}/checks/{uuid}", get(checks::detail))
        .route(
            "/ui/p/{project}/checks/{uuid}/edit",
            get(checks::edit_form).post(checks::edit),
        )
        .route("/ui/p/{project}/checks/{uuid}/act", post(checks::act))
        .route("/ui/p/{project}/alerts/", get(alerts::list))
        .route("/ui/p/{project}/alerts/{id}", get(alerts::detail))
        .route("/ui/p/{project}/alerts/{id}/act", post(alerts::act))
        .route(
            "/ui/p/{project}/incidents/",
            get(incidents::list).post(incidents::declare),
        )
        .route("/ui/p/{project}/incidents/{id}", get(incidents::detail))
        .route("/ui/p/{project}/incidents/{id}/act", post(incidents::act))
        .route(
            "/ui/p/{project}/incidents/{id}/export",
            get(incidents::export),
        )
        .route("/ui/p/{project}/drill", get(readiness::drill))
        .route("/ui/p/{project}/audit", get(readiness::audit))
        .route("/ui/p/{project}/oncall/", get(oncall::overview))
        .route(
            "/ui/p/{project}/oncall/override",
            post(oncall::create_override),
        )
        .route(
            "/ui/p/{project}/oncall/people/{person}/test",
            post(oncall::test_contact),
        )
}

/// What every signed-in page shows around its content: who, where, the CSRF token.
pub struct Frame {
    pub email: String,
    pub csrf: String,
    pub project: String,
    pub role: Role,
    pub projects: Vec<String>,
    /// The navigation entry to highlight.
    pub section: &'static str,
}

impl Frame {
    pub async fn new(
        state: &AppState,
        user: &UiUser,
        project: &keepwatch_store::Membership,
        section: &'static str,
    ) -> Result<Frame, Response> {
        let projects = state
            .store
            .memberships(user.session.user.id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|m| m.project_name)
            .collect();
        Ok(Frame {
            email: user.email().to_string(),
            csrf: user.csrf().to_string(),
            project: project.project_name.clone(),
            role: project.role,
            projects,
            section,
        })
    }

    pub fn can_respond(&self) -> bool {
        self.role.can_respond()
    }

    pub fn can_admin(&self) -> bool {
        self.role.can_admin()
    }

    /// `/ui/p/<project>`, for links.
    pub fn base(&self) -> String {
        format!("/ui/p/{}", self.project)
    }
}

/// A rendered page with the headers every UI page carries: it is never cached (it shows
/// state), never framed (it has buttons that act), loads only our own script and style.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    let html = match template.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "a UI page could not be rendered");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut response = (status, Html(html)).into_response();
    secure_headers(response.headers_mut());
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[derive(Template)]
#[template(path = "ui/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A page that says one thing: not found, refused, failed.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    page(status, &MessagePage { title, message })
}

pub fn store_error(e: StoreError) -> Response {
    tracing::error!(error = %e, "a UI page could not read the database");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The database did not answer. Try again in a moment.",
    )
}

pub fn engine_error(e: keepwatch_engine::EngineError) -> Response {
    use keepwatch_engine::EngineError;
    match e {
        EngineError::NotFound => return error_page(StatusCode::NOT_FOUND, "Not found."),
        EngineError::Invalid(message) | EngineError::Conflict(message) => {
            return error_page(StatusCode::UNPROCESSABLE_ENTITY, &message);
        }
        _ => {}
    }
    tracing::error!(error = %e, "a UI page could not reach the engine");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The engine did not answer. Try again in a moment.",
    )
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// `/ui/`: the user's project, or a choice of them.
async fn home(State(state): State<AppState>, user: UiUser) -> Response {
    let memberships = match state.store.memberships(user.session.user.id).await {
        Ok(m) => m,
        Err(e) => return store_error(e),
    };
    match memberships.as_slice() {
        [only] => Redirect::to(&format!("/ui/p/{}/", only.project_name)).into_response(),
        [] => error_page(
            StatusCode::OK,
            "You are signed in but belong to no project yet. Ask an admin to add you \
             (keepwatch user create … --project NAME --role responder).",
        ),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|m| format!("{} ({})", m.project_name, m.role))
                .collect();
            page(
                StatusCode::OK,
                &ProjectsPage {
                    title: "Projects",
                    projects: many.iter().map(|m| m.project_name.clone()).collect(),
                    labels: names,
                },
            )
        }
    }
}

/// `/ui/checks/<uuid>`: the link messages carry for a check (they do not know the project's
/// name): the check's page in its project, for a user of that project; "no such page"
/// otherwise, as for a check that does not exist.
async fn check_link(
    State(state): State<AppState>,
    axum::extract::Path(uuid): axum::extract::Path<String>,
    user: UiUser,
) -> Response {
    let row = match state.store.check_by_uuid(&uuid.to_ascii_lowercase()).await {
        Ok(row) => row,
        Err(e) => return store_error(e),
    };
    match row {
        Some(row) => {
            in_project(
                &state,
                &user,
                row.project_id,
                &format!("checks/{}", row.uuid),
            )
            .await
        }
        None => error_page(StatusCode::NOT_FOUND, "No such page."),
    }
}

/// `/ui/alerts/<id>`: an alert's page in its project (linked from the pages' confirmation
/// page).
async fn alert_link(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    user: UiUser,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(StatusCode::NOT_FOUND, "No such page.");
    };
    match state.store.alert(id).await {
        Ok(Some(alert)) => {
            in_project(&state, &user, alert.project_id, &format!("alerts/{id}")).await
        }
        Ok(None) => error_page(StatusCode::NOT_FOUND, "No such page."),
        Err(e) => store_error(e),
    }
}

async fn in_project(state: &AppState, user: &UiUser, project_id: i64, rest: &str) -> Response {
    match state.store.memberships(user.session.user.id).await {
        Ok(memberships) => match memberships.iter().find(|m| m.project_id == project_id) {
            Some(m) => Redirect::to(&format!("/ui/p/{}/{rest}", m.project_name)).into_response(),
            None => error_page(StatusCode::NOT_FOUND, "No such page."),
        },
        Err(e) => store_error(e),
    }
}

#[derive(Template)]
#[template(path = "ui/projects.html")]
struct ProjectsPage {
    title: &'static str,
    projects: Vec<String>,
    labels: Vec<String>,
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage<'a> {
    title: &'a str,
    csrf: &'a str,
    next: &'a str,
    email: &'a str,
    error: &'a str,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// `GET /ui/login`: the form, with a fresh double-submit CSRF token.
async fn login_form(State(state): State<AppState>, Query(query): Query<NextQuery>) -> Response {
    let csrf = keepwatch_store::generate_secret(32);
    let next = session::safe_next(query.next.as_deref());
    login_page(&state, StatusCode::OK, &csrf, next, "", "")
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    csrf: &str,
    next: &str,
    email: &str,
    error: &str,
) -> Response {
    let mut response = page(
        status,
        &LoginPage {
            title: "Sign in to keepwatch",
            csrf,
            next,
            email,
            error,
        },
    );
    if let Ok(value) =
        HeaderValue::from_str(&session::set_cookie(state, LOGIN_CSRF_COOKIE, csrf, 3600))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /ui/login`.
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    axum::Form(form): FormFields,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let next = session::safe_next(Some(field("next"))).to_string();
    let email = field("email").trim().to_lowercase();
    let fresh_csrf = keepwatch_store::generate_secret(32);
    let cookie_csrf = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if cookie_csrf.is_empty() || cookie_csrf != field("csrf") {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            &fresh_csrf,
            &next,
            &email,
            "The sign-in form expired. Please sign in again.",
        );
    }
    let limiter = state.login_limiter();
    if limiter.blocked(&email, &peer.0) {
        return login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &fresh_csrf,
            &next,
            &email,
            "Too many failed sign-ins. Wait 15 minutes and try again.",
        );
    }
    let user = match state.store.user_by_email(&email).await {
        Ok(user) => user,
        Err(e) => return store_error(e),
    };
    let password = field("password").to_string();
    let stored = user.as_ref().map_or_else(
        || session::dummy_hash().to_string(),
        |u| u.password_hash.clone(),
    );
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let matches = tokio::task::spawn_blocking(move || session::verify_password(&password, &stored))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(user) if matches => user,
        _ => {
            limiter.failed(&email, &peer.0);
            return login_page(
                &state,
                StatusCode::UNAUTHORIZED,
                &fresh_csrf,
                &next,
                &email,
                "Wrong email or password.",
            );
        }
    };
    limiter.succeeded(&email);
    let now = state.engine.now();
    let expires = now + chrono::Duration::days(session::SESSION_DAYS);
    let (token, _) = match state
        .store
        .create_session(user.id, Timestamp::from(now), Timestamp::from(expires))
        .await
    {
        Ok(session) => session,
        Err(e) => return store_error(e),
    };
    let mut response = Redirect::to(&next).into_response();
    let cookie = session::set_cookie(
        &state,
        SESSION_COOKIE,
        &token,
        session::SESSION_DAYS * 86_400,
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /ui/logout`: ends the session here and in the database.
async fn logout(
    State(state): State<AppState>,
    user: UiUser,
    axum::Form(form): FormFields,
) -> Response {
    if let Err(refused) = user.check_csrf(form.get("csrf").map(String::as_str)) {
        return refused;
    }
    if let Err(e) = state.store.delete_session(&user.token).await {
        return store_error(e);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&session::set_cookie(&state, SESSION_COOKIE, "", 0)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Template)]
#[template(path = "ui/setup.html")]
struct SetupPage<'a> {
    title: &'a str,
    email: &'a str,
    person: &'a str,
    error: &'a str,
}

/// `GET /ui/setup/<token>`: the one-time link `serve` prints while there is no user.
async fn setup_form(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    if !state.setup_token_matches(&token) {
        return error_page(
            StatusCode::NOT_FOUND,
            "This setup link is not valid (it works once, while keepwatch has no user).",
        );
    }
    page(
        StatusCode::OK,
        &SetupPage {
            title: "Create the first admin",
            email: "",
            person: "",
            error: "",
        },
    )
}

/// `POST /ui/setup/<token>`: creates the first admin, an admin of every project, and signs
/// them in. The link dies with it.
async fn setup(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
    axum::Form(form): FormFields,
) -> Response {
    if !state.setup_token_matches(&token) {
        return error_page(
            StatusCode::NOT_FOUND,
            "This setup link is not valid (it works once, while keepwatch has no user).",
        );
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("").trim();
    let email = field("email").to_lowercase();
    let person = field("person");
    let again = |error: &str| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &SetupPage {
                title: "Create the first admin",
                email: &email,
                person,
                error,
            },
        )
    };
    if !email.contains('@') || email.len() > 254 {
        return again("Enter the email address you will sign in with.");
    }
    let password = form.get("password").cloned().unwrap_or_default();
    if let Err(e) = session::check_new_password(&password) {
        return again(&e);
    }
    match state.store.user_count().await {
        Ok(0) => {}
        Ok(_) => {
            state.clear_setup_token();
            return error_page(StatusCode::NOT_FOUND, "keepwatch already has users.");
        }
        Err(e) => return store_error(e),
    }
    let hash = match tokio::task::spawn_blocking(move || session::hash_password(&password)).await {
        Ok(Ok(hash)) => hash,
        _ => return again("The password could not be hashed; try again."),
    };
    let now = state.engine.now();
    let user = match state
        .store
        .create_user(&email, &hash, person, Timestamp::from(now))
        .await
    {
        Ok(user) => user,
        Err(e) => return store_error(e),
    };
    state.clear_setup_token();
    let projects = match state.store.list_projects().await {
        Ok(p) => p,
        Err(e) => return store_error(e),
    };
    for project in projects {
        if let Err(e) = state
            .store
            .set_membership(user.id, project.id, Role::Admin)
            .await
        {
            return store_error(e);
        }
    }
    Redirect::to("/ui/login").into_response()
}
