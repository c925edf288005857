//! Signing in: passwords (argon2), sessions in an HTTP-only SameSite cookie, the CSRF token
//! every form carries, and the limit on login attempts.

use std::collections::HashMap;
use std::sync::Mutex;

use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use keepwatch_core::user::Role;
use keepwatch_store::{Membership, Session, Timestamp};

use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kw_session";
/// The login form's CSRF cookie (double submit: there is no session yet to hold a token).
pub const LOGIN_CSRF_COOKIE: &str = "kw_login_csrf";
/// How long a session lasts.
pub const SESSION_DAYS: i64 = 14;
/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Hashes a password with argon2id's defaults (a PHC string with its own salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches a stored PHC string.
pub fn verify_password(password: &str, stored: &str) -> bool {
    stored.parse::<PasswordHash>().is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash to verify against when the email is unknown, so a wrong email takes as long as a
/// wrong password and answers cannot tell which accounts exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

/// Checks a new password's length: the one rule NIST asks for.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > 1024 {
        return Err("the password must have at most 1024 bytes".into());
    }
    Ok(())
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HTTP-only, SameSite=Lax (links in emails still arrive signed in;
/// cross-site form posts do not carry it), Secure when the site is served over HTTPS.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = if state.config.site_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}

/// A signed-in user, with their session. As an extractor it sends anyone else to the login
/// page, and back here after.
pub struct UiUser {
    pub session: Session,
    pub token: String,
}

impl UiUser {
    pub fn email(&self) -> &str {
        &self.session.user.email
    }

    /// Who acts, as alert and incident logs name it: the user's person id from the on-call
    /// file, or their email, marked as the web UI.
    pub fn acting(&self) -> String {
        let who = if self.session.user.person.is_empty() {
            self.email()
        } else {
            &self.session.user.person
        };
        format!("{who} (web)")
    }

    /// The CSRF token this session's forms carry.
    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), Response> {
        match sent {
            Some(token) if constant_time_eq(token.as_bytes(), self.session.csrf.as_bytes()) => {
                Ok(())
            }
            _ => Err(super::error_page(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from keepwatch. Go back, reload the page and try again.",
            )),
        }
    }

    /// The user's role in a project (by name), or a 404 page as if it did not exist: one
    /// project's users learn nothing about another.
    pub async fn project(&self, state: &AppState, name: &str) -> Result<Membership, Response> {
        let memberships = state
            .store
            .memberships(self.session.user.id)
            .await
            .map_err(super::store_error)?;
        memberships
            .into_iter()
            .find(|m| m.project_name == name)
            .ok_or_else(|| super::error_page(StatusCode::NOT_FOUND, "No such page."))
    }
}

impl UiUser {
    /// What every form post checks first, in this order: the project is the user's (else
    /// "not found"), the form carries this session's CSRF token, the user's role there may
    /// do `what`.
    pub async fn may_post(
        &self,
        state: &AppState,
        project: &str,
        fields: &HashMap<String, String>,
        allowed: fn(Role) -> bool,
        what: &str,
    ) -> Result<Membership, Response> {
        let member = self.project(state, project).await?;
        self.check_csrf(fields.get("csrf").map(String::as_str))?;
        require(member.role, allowed, what)?;
        Ok(member)
    }
}

/// Refuses an action the role does not allow.
pub fn require(role: Role, allowed: fn(Role) -> bool, what: &str) -> Result<(), Response> {
    if allowed(role) {
        Ok(())
    } else {
        Err(super::error_page(
            StatusCode::FORBIDDEN,
            &format!("Your role in this project ({role}) cannot {what}."),
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for UiUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string);
        let now = Timestamp::from(state.engine.now());
        let session = match &token {
            Some(token) if token.len() == 40 => state
                .store
                .session(token, now)
                .await
                .map_err(super::store_error)?,
            _ => None,
        };
        match (session, token) {
            (Some(session), Some(token)) => Ok(UiUser { session, token }),
            _ => {
                // Fragments and event streams are fetched by script: a redirect would be
                // followed into a login page in the middle of a table.
                if parts.headers.contains_key("x-keepwatch-fragment")
                    || parts.uri.path().ends_with("/stream")
                {
                    return Err(StatusCode::UNAUTHORIZED.into_response());
                }
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/ui/");
                let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
                Err(Redirect::to(&format!("/ui/login?next={next}")).into_response())
            }
        }
    }
}

/// Where to go after signing in: only a page of the UI, never another site.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with("/ui/") && !next.starts_with("/ui//") => next,
        _ => "/ui/",
    }
}

/// Failed sign-ins per email and per client within a window: 5 per email and 20 per client
/// per 15 minutes, then refused (429) until the window passes. Successful sign-ins clear the
/// email's count.
pub struct LoginLimiter {
    window: Duration,
    per_email: u32,
    per_client: u32,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            window: Duration::from_secs(15 * 60),
            per_email: 5,
            per_client: 20,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl LoginLimiter {
    /// Whether this email or client has failed too often lately.
    pub fn blocked(&self, email: &str, client: &str) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        failures.retain(|_, (since, _)| since.elapsed() < window);
        let count = |key: String| failures.get(&key).map_or(0, |(_, n)| *n);
        count(format!("e:{email}")) >= self.per_email
            || count(format!("c:{client}")) >= self.per_client
    }

    pub fn failed(&self, email: &str, client: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in [format!("e:{email}"), format!("c:{client}")] {
            failures.entry(key).or_insert((Instant::now(), 0)).1 += 1;
        }
    }

    pub fn succeeded(&self, email: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&format!("e:{email}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse battery!", &hash));
        assert!(!verify_password("anything", "not a phc string"));
    }

    #[test]
    fn next_stays_on_the_ui() {
        assert_eq!(safe_next(Some("/ui/alerts/3")), "/ui/alerts/3");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("//evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn login_attempts_are_limited_per_email_and_per_client() {
        let limiter = LoginLimiter::default();
        for _ in 0..5 {
            assert!(!limiter.blocked("a@x", "1.2.3.4"));
            limiter.failed("a@x", "1.2.3.4");
        }
        assert!(limiter.blocked("a@x", "5.6.7.8"), "per email");
        assert!(!limiter.blocked("b@x", "1.2.3.4"), "the client has 15 left");
        limiter.succeeded("a@x");
        assert!(!limiter.blocked("a@x", "9.9.9.9"));
        for i in 0..15 {
            limiter.failed(&format!("c{i}@x"), "1.2.3.4");
        }
        assert!(limiter.blocked("new@x", "1.2.3.4"), "per client");
    }
}
