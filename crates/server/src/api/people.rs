//! The people of the applied on-call configuration (`/api/v1/people/`), and the verification
//! of their contacts: a six-digit code sent through a contact and typed back shows the
//! address reaches someone (`keepwatch contact send-code` / `verify`). Contact addresses hold
//! webhook URLs and tokens, so a read-only key sees only their host or domain.

use axum::extract::{Path, State};
use chrono::TimeDelta;
use serde::Deserialize;
use serde_json::{Value, json};

use super::oncall_config::{
    answer, config, entry, json_of, nothing_applied, parsed, section, stored, unverified_contacts,
};
use crate::auth::{FullKey, ReadKey};
use crate::error::ApiError;
use crate::state::AppState;
use axum::response::{IntoResponse, Response};

/// A person as the API shows them: contact addresses are shown only to a full-access key
/// (they hold webhook URLs and tokens); a read-only key sees the host or the domain.
/// `verified` names each contact whose current address a verification code has reached.
fn person_view(mut person: Value, full: bool, unverified: &[(String, String)]) -> Value {
    let id = person["id"].as_str().unwrap_or_default().to_string();
    let mut verified = serde_json::Map::new();
    if let Some(contacts) = person["contacts"].as_object_mut() {
        for (contact, address) in contacts.iter_mut() {
            let text = address.as_str().unwrap_or_default().to_string();
            if !full {
                *address = Value::String(redact(&text));
            }
            let pending = unverified.iter().any(|(p, c)| *p == id && c == contact);
            verified.insert(contact.clone(), Value::Bool(!pending));
        }
    }
    person["verified"] = Value::Object(verified);
    person
}

/// `https://hooks.slack.com/services/…` → `https://hooks.slack.com/…`;
/// `alice@example.com` → `…@example.com`.
fn redact(address: &str) -> String {
    if let Some((scheme, rest)) = address.split_once("://") {
        let host = rest.split('/').next().unwrap_or_default();
        format!("{scheme}://{host}/…")
    } else if let Some((_, domain)) = address.rsplit_once('@') {
        format!("…@{domain}")
    } else {
        "…".into()
    }
}

/// `GET /api/v1/people/`.
pub async fn people(
    State(state): State<AppState>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let applied = stored(&state, scope.project_id).await?;
    let config = json_of(&applied)?;
    let unverified = unverified_contacts(&state.store, scope.project_id, parsed(&applied)?).await?;
    let people: Vec<Value> = section(config, "people")
        .into_iter()
        .map(|p| person_view(p, !scope.read_only, &unverified))
        .collect();
    Ok(answer(&scope, json!({ "people": people })))
}

/// `GET /api/v1/people/{id}`: the person and the schedules they are in.
pub async fn person(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ReadKey(scope): ReadKey,
) -> Result<Response, ApiError> {
    let applied = stored(&state, scope.project_id).await?;
    let config = json_of(&applied)?;
    let parsed = parsed(&applied)?;
    let unverified = unverified_contacts(&state.store, scope.project_id, parsed).await?;
    let mut person = person_view(
        entry(config, "people", "id", &id)?,
        !scope.read_only,
        &unverified,
    );
    let mut schedules: Vec<&String> = parsed
        .schedules
        .iter()
        .filter(|(_, s)| {
            s.layers.iter().any(|l| l.participants.contains(&id))
                || s.overrides.iter().any(|o| o.user == id)
        })
        .map(|(name, _)| name)
        .collect();
    schedules.sort();
    person["schedules"] = json!(schedules);
    Ok(answer(&scope, person))
}

/// How long a verification code stays valid.
const CODE_LIFETIME: TimeDelta = TimeDelta::minutes(15);

/// A person's contact address from the applied configuration, or a 404 naming what is missing.
async fn contact_address(
    state: &AppState,
    project_id: i64,
    person: &str,
    contact: &str,
) -> Result<String, ApiError> {
    let applied = config(state, project_id)
        .await?
        .ok_or_else(nothing_applied)?;
    let config = parsed(&applied)?;
    if !config.people.contains_key(person) {
        return Err(ApiError::Missing(format!(
            "no people entry with id `{person}`"
        )));
    }
    config
        .contact_address(person, contact)
        .map(str::to_string)
        .ok_or_else(|| ApiError::Missing(format!("`{person}` has no contact `{contact}`")))
}

/// `POST /api/v1/people/{id}/contacts/{contact}/send-code` (full-access key): sends a
/// six-digit code through the contact, valid for 15 minutes. 202, or 502 when the contact
/// could not be reached (which is what verification is for).
pub async fn send_code(
    State(state): State<AppState>,
    Path((person, contact)): Path<(String, String)>,
    FullKey(scope): FullKey,
) -> Result<Response, ApiError> {
    match send_code_to(&state, scope.project_id, &person, &contact).await? {
        Ok((address, expires)) => Ok((
            axum::http::StatusCode::ACCEPTED,
            axum::Json(json!({"sent_to": redact(&address), "expires_at": expires.to_rfc3339()})),
        )
            .into_response()),
        Err(reason) => Ok((
            axum::http::StatusCode::BAD_GATEWAY,
            axum::Json(json!({"error": format!("could not send the code: {reason}")})),
        )
            .into_response()),
    }
}

/// Sends a verification code through a contact (the API's send-code, and the web UI's
/// "send a test"): the address and when the code expires, or why it could not be sent.
async fn send_code_to(
    state: &AppState,
    project_id: i64,
    person: &str,
    contact: &str,
) -> Result<Result<(String, chrono::DateTime<chrono::Utc>), String>, ApiError> {
    let address = contact_address(state, project_id, person, contact).await?;
    let random = u32::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..4]
            .try_into()
            .expect("4 bytes"),
    );
    let code = format!("{:06}", random % 1_000_000);
    let expires = state.engine.now() + CODE_LIFETIME;
    state
        .store
        .start_verification(project_id, person, contact, &address, &code, expires.into())
        .await?;
    let text = format!(
        "Your keepwatch verification code for {person}'s contact `{contact}` is {code}. \
         It is valid for {} minutes.",
        CODE_LIFETIME.num_minutes()
    );
    if let Err(e) = state
        .engine
        .send_verification_code(person, contact, &address, &text)
        .await
    {
        // A transport error would tell an open port from a closed one: only say that the
        // address could not be reached (the server log has the detail).
        let reason = if e.shareable {
            e.detail
        } else {
            tracing::info!(person, contact, error = %e, "verification code not delivered");
            "the contact's address could not be reached".to_string()
        };
        return Ok(Err(reason));
    }
    Ok(Ok((address, expires)))
}

/// The web UI's "send a test": a verification code through the contact.
pub(crate) async fn send_code_for(
    state: &AppState,
    project_id: i64,
    person: &str,
    contact: &str,
) -> Result<(), ApiError> {
    send_code_to(state, project_id, person, contact)
        .await?
        .map(|_| ())
        .map_err(|reason| ApiError::ConflictWith(format!("could not send the code: {reason}")))
}

/// The web UI's code form: checks a code typed back; the error says why it is refused.
pub(crate) async fn verify_code_for(
    state: &AppState,
    project_id: i64,
    person: &str,
    contact: &str,
    code: &str,
) -> Result<(), ApiError> {
    match check_code(state, project_id, person, contact, code).await? {
        Ok(()) => Ok(()),
        Err((_, message)) => Err(ApiError::ConflictWith(message)),
    }
}

#[derive(Deserialize)]
pub struct CodeBody {
    code: String,
}

/// `POST /api/v1/people/{id}/contacts/{contact}/verify` with `{"code": "…"}` (full-access
/// key): 200 `{"verified": true}`, or 400 / 409 / 429 saying why not.
pub async fn verify_code(
    State(state): State<AppState>,
    Path((person, contact)): Path<(String, String)>,
    FullKey(scope): FullKey,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let CodeBody { code } = serde_json::from_slice(&body).map_err(|_| {
        ApiError::BadRequest("the body must be {\"code\": \"<the code you received>\"}".into())
    })?;
    match check_code(&state, scope.project_id, &person, &contact, &code).await? {
        Ok(()) => Ok(
            axum::Json(json!({"person": person, "contact": contact, "verified": true}))
                .into_response(),
        ),
        Err((status, message)) => {
            Ok((status, axum::Json(json!({ "error": message }))).into_response())
        }
    }
}

/// Checks a verification code: `Ok` when verified, else the status and why.
async fn check_code(
    state: &AppState,
    project_id: i64,
    person: &str,
    contact: &str,
    code: &str,
) -> Result<Result<(), (axum::http::StatusCode, String)>, ApiError> {
    use axum::http::StatusCode;
    use keepwatch_store::CodeCheck;
    let address = contact_address(state, project_id, person, contact).await?;
    let now = state.engine.now().into();
    let check = state
        .store
        .check_verification(project_id, person, contact, &address, code, now)
        .await?;
    let (status, message) = match check {
        CodeCheck::Verified => return Ok(Ok(())),
        CodeCheck::Wrong { attempts_left } => (
            StatusCode::BAD_REQUEST,
            format!("wrong code ({attempts_left} tries left)"),
        ),
        CodeCheck::NoCode => (
            StatusCode::BAD_REQUEST,
            "no code is pending for this contact; request one with send-code".into(),
        ),
        CodeCheck::Expired => (
            StatusCode::BAD_REQUEST,
            "the code has expired; request a new one with send-code".into(),
        ),
        CodeCheck::TooManyAttempts => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong codes; request a new one with send-code".into(),
        ),
        CodeCheck::AddressChanged => (
            StatusCode::CONFLICT,
            "the contact's address changed since the code was sent; request a new one".into(),
        ),
    };
    Ok(Err((status, message)))
}
