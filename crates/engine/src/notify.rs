//! Channels that deliver a notification: a generic webhook and email over SMTP.
//!
//! The message is built from the stored event and the check as it is now. Webhook bodies are
//! JSON; when the channel has a secret, `X-Keepwatch-Signature: sha256=<hex>` carries the
//! HMAC-SHA256 of the exact body bytes, so receivers can verify it came from us.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use keepwatch_store::{Delivery, Store};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{EngineConfig, destination};

/// Connecting to a receiver may take at most this long (within the delivery timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `text` on one line: control characters (line breaks, tabs, escapes) become spaces, so the
/// text can go in a header.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP (only for a relay on a trusted network or tests).
    None,
    /// Upgrade with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
}

#[derive(Deserialize)]
struct WebhookConfig {
    url: String,
    secret: Option<String>,
}

#[derive(Deserialize)]
struct EmailConfig {
    to: String,
}

/// The signature header value for a body: `sha256=<hex HMAC-SHA256>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a delivery did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the delivery log says.
    pub detail: String,
    /// Retrying cannot help (an unusable address, a refused destination): fail now.
    pub permanent: bool,
    /// `detail` says nothing about whether or how a host answered, so it may be shown to an
    /// API caller (a transport error would tell an open port from a closed one).
    pub shareable: bool,
}

impl Failure {
    /// A failure worth retrying; its detail stays in the delivery log.
    pub fn transient(detail: impl Into<String>) -> Failure {
        Failure {
            detail: detail.into(),
            permanent: false,
            shareable: false,
        }
    }

    /// An address or configuration that cannot be delivered to: no retries.
    pub fn permanent(detail: impl Into<String>) -> Failure {
        Failure {
            detail: detail.into(),
            permanent: true,
            shareable: true,
        }
    }
}

/// Messages the delivery code raises itself are about the address or the configuration
/// (`a telegram address needs ?chat_id=`): retrying cannot help.
impl From<&str> for Failure {
    fn from(detail: &str) -> Failure {
        Failure::permanent(detail)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// A failed HTTP request as the delivery log tells it: never the URL (it can hold a token,
/// as Telegram's does).
fn request_failure(error: reqwest::Error) -> Failure {
    if destination::is_refused(&error) {
        return Failure::permanent(destination::PRIVATE_REFUSED);
    }
    if error.is_builder() {
        return Failure::permanent(format!("cannot build the request: {}", error.without_url()));
    }
    let what = if error.is_timeout() {
        "no answer within the delivery timeout"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_redirect() {
        "too many redirects"
    } else {
        "the request failed"
    };
    // The innermost cause (`connection refused`, a TLS error) is what an operator needs.
    let mut cause: &dyn std::error::Error = &error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    Failure::transient(format!("request failed: {what} ({cause})"))
}

pub struct Notifier {
    http: reqwest::Client,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    store: Store,
    site_url: String,
    allow_private: bool,
    timeout: Duration,
}

impl Notifier {
    pub fn new(store: Store, config: &EngineConfig) -> Result<Notifier, String> {
        let timeout = config.delivery_timeout;
        let allow_private = config.allow_private_destinations;
        let mut http = reqwest::Client::builder()
            .timeout(timeout)
            // A receiver that does not accept the connection fails fast, not at the
            // overall timeout.
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .redirect(destination::redirect_policy(allow_private))
            .user_agent(concat!("keepwatch/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            http = http.dns_resolver(Arc::new(destination::PublicResolver));
        }
        let http = http
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        let smtp = match &config.smtp {
            Some(smtp) => Some(smtp_transport(smtp, timeout)?),
            None => None,
        };
        Ok(Notifier {
            http,
            smtp,
            store,
            site_url: config.site_url.clone(),
            allow_private,
            timeout,
        })
    }

    /// The HTTP client deliveries use (timeouts, redirect policy and user agent set). Send
    /// its requests with [`Notifier::execute`], which checks the destination.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The longest one delivery may take, SMTP conversation included.
    pub fn timeout(&self) -> Duration {
        self.timeout + Duration::from_secs(1)
    }

    /// Sends a request; `Ok` with the status when it is a success. A private IP literal is
    /// refused here (names are refused by the resolver).
    pub async fn execute(&self, request: reqwest::RequestBuilder) -> Result<String, Failure> {
        let request = request.build().map_err(request_failure)?;
        if !self.allow_private && destination::check_url(request.url()).is_err() {
            return Err(Failure::permanent(destination::PRIVATE_REFUSED));
        }
        let response = self.http.execute(request).await.map_err(request_failure)?;
        let status = response.status();
        if status.is_success() {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            Err(Failure {
                detail: format!("answered HTTP {}", status.as_u16()),
                permanent: false,
                shareable: true,
            })
        }
    }

    /// Sends a plain-text email to one or more comma-separated addresses.
    pub async fn email(&self, to: &str, subject: &str, body: &str) -> Result<String, Failure> {
        let Some((transport, from)) = &self.smtp else {
            return Err("no SMTP server is configured (smtp.host) to send email".into());
        };
        // A subject is one line: a line break in it (from a check or alert name) would end
        // the header. Non-ASCII text is encoded by lettre.
        let subject = one_line(subject);
        let mut builder = Message::builder().from(from.clone()).subject(subject);
        for to in to.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let to: Mailbox = to
                .parse()
                .map_err(|e| Failure::permanent(format!("bad recipient `{to}`: {e}")))?;
            builder = builder.to(to);
        }
        let email = builder
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| Failure::permanent(format!("cannot build email: {e}")))?;
        let response = transport.send(email).await.map_err(|e| Failure {
            detail: format!("SMTP failed: {e}"),
            // A 5xx answer (unknown mailbox) will not change on a retry.
            permanent: e.is_permanent(),
            shareable: false,
        })?;
        Ok(format!("SMTP {}", response.code()))
    }

    /// The JSON message for a delivery: the event, its runs and the check as it is now.
    pub async fn message(&self, delivery: &Delivery) -> Value {
        let payload: Value = serde_json::from_str(&delivery.payload).unwrap_or_default();
        let uuid = payload["check_uuid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let check = match self.store.check_by_uuid(&uuid).await {
            Ok(Some(row)) => json!({
                "uuid": row.uuid,
                "name": row.name,
                "slug": row.slug,
                "tags": row.tags,
                "desc": row.descr,
                "url": format!("{}/api/v3/checks/{}", self.site_url, row.uuid),
            }),
            _ => json!({ "uuid": uuid }),
        };
        let mut message = json!({
            "id": delivery.outbox_id,
            "event": delivery.event_kind,
            "at": payload["at"],
            "check": check,
            "run": payload["run"],
            "other_run": payload["other_run"],
            "exit_status": payload["exit_status"],
        });
        // Present only on the events that have them: overlaps beside strays, anomalies.
        for key in ["strays", "anomaly"] {
            if !payload[key].is_null() {
                message[key] = payload[key].clone();
            }
        }
        message
    }

    /// Sends one delivery. `Ok` carries a short description of the receiver's answer.
    pub async fn send(&self, delivery: &Delivery) -> Result<String, Failure> {
        let message = self.message(delivery).await;
        match delivery.channel_kind.as_str() {
            "webhook" => self.send_webhook(delivery, &message).await,
            "email" => self.send_email(delivery, &message).await,
            other => Err(Failure::permanent(format!(
                "unknown channel kind `{other}`"
            ))),
        }
    }

    /// Where a delivery goes, for the per-destination limit (see [`destination::Lanes`]).
    pub fn destination(delivery: &Delivery) -> String {
        match serde_json::from_str::<WebhookConfig>(&delivery.channel_config) {
            Ok(config) if delivery.channel_kind == "webhook" => {
                destination::destination_of(&config.url)
            }
            _ => "smtp".into(),
        }
    }

    async fn send_webhook(&self, delivery: &Delivery, message: &Value) -> Result<String, Failure> {
        let config: WebhookConfig = serde_json::from_str(&delivery.channel_config)
            .map_err(|e| Failure::permanent(format!("bad webhook config: {e}")))?;
        let body = serde_json::to_vec(message).map_err(|e| Failure::permanent(e.to_string()))?;
        let mut request = self
            .http
            .post(&config.url)
            .header("Content-Type", "application/json")
            .header("X-Keepwatch-Event", &delivery.event_kind)
            .header("X-Keepwatch-Delivery", delivery.outbox_id.to_string());
        if let Some(secret) = &config.secret {
            request = request.header("X-Keepwatch-Signature", sign(secret, &body));
        }
        self.execute(request.body(body)).await.map_err(|mut e| {
            if e.detail.starts_with("answered") {
                e.detail.insert_str(0, "webhook ");
            }
            e
        })
    }

    async fn send_email(&self, delivery: &Delivery, message: &Value) -> Result<String, Failure> {
        let config: EmailConfig = serde_json::from_str(&delivery.channel_config)
            .map_err(|e| Failure::permanent(format!("bad email config: {e}")))?;
        let name = message["check"]["name"].as_str().filter(|n| !n.is_empty());
        let name = name
            .or(message["check"]["uuid"].as_str())
            .unwrap_or("check");
        let subject = format!("[keepwatch] {name}: {}", headline(&delivery.event_kind));
        let body = format!(
            "{}\n\n{}\n",
            headline(&delivery.event_kind),
            serde_json::to_string_pretty(message).unwrap_or_default()
        );
        self.email(&config.to, &subject, &body).await
    }
}

fn headline(kind: &str) -> &'static str {
    match kind {
        "down" => "DOWN: the expected ping did not arrive in time",
        "failed" => "FAILED: the job reported a failure",
        "hung" => "HUNG: a run has not finished within its max runtime",
        "overlap" => "OVERLAP: a run started while another copy of the job was still running",
        "anomaly" => "ANOMALY: a run processed far less, or took far longer, than usual",
        "up" => "UP: the check is back",
        _ => "event",
    }
}

fn smtp_transport(
    config: &SmtpConfig,
    timeout: Duration,
) -> Result<(AsyncSmtpTransport<Tokio1Executor>, Mailbox), String> {
    let builder = match config.security {
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
        SmtpSecurity::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
                .map_err(|e| format!("smtp: {e}"))?
        }
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)
            .map_err(|e| format!("smtp: {e}"))?,
    };
    let mut builder = builder.port(config.port).timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let from: Mailbox = config
        .from
        .parse()
        .map_err(|e| format!("smtp.from `{}`: {e}", config.from))?;
    Ok((builder.build(), from))
}
