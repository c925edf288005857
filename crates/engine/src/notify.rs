//! Channels that deliver a notification: a generic webhook and email over SMTP.
//!
//! The message is built from the stored event and the check as it is now. Webhook bodies are
//! JSON; when the channel has a secret, `X-Keepwatch-Signature: sha256=<hex>` carries the
//! HMAC-SHA256 of the exact body bytes, so receivers can verify it came from us.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use keepwatch_store::{Delivery, Store};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

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

pub struct Notifier {
    http: reqwest::Client,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    store: Store,
    site_url: String,
}

impl Notifier {
    pub fn new(
        store: Store,
        smtp: Option<&SmtpConfig>,
        timeout: Duration,
        site_url: String,
    ) -> Result<Notifier, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("keepwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        let smtp = match smtp {
            Some(config) => Some(smtp_transport(config, timeout)?),
            None => None,
        };
        Ok(Notifier {
            http,
            smtp,
            store,
            site_url,
        })
    }

    /// The HTTP client deliveries use (timeout and user agent set).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends a plain-text email to one or more comma-separated addresses.
    pub async fn email(&self, to: &str, subject: &str, body: &str) -> Result<String, String> {
        let Some((transport, from)) = &self.smtp else {
            return Err("no SMTP server is configured (smtp.host) to send email".into());
        };
        let mut builder = Message::builder().from(from.clone()).subject(subject);
        for to in to.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let to: Mailbox = to
                .parse()
                .map_err(|e| format!("bad recipient `{to}`: {e}"))?;
            builder = builder.to(to);
        }
        let email = builder
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| format!("cannot build email: {e}"))?;
        let response = transport
            .send(email)
            .await
            .map_err(|e| format!("SMTP failed: {e}"))?;
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
    pub async fn send(&self, delivery: &Delivery) -> Result<String, String> {
        let message = self.message(delivery).await;
        match delivery.channel_kind.as_str() {
            "webhook" => self.send_webhook(delivery, &message).await,
            "email" => self.send_email(delivery, &message).await,
            other => Err(format!("unknown channel kind `{other}`")),
        }
    }

    async fn send_webhook(&self, delivery: &Delivery, message: &Value) -> Result<String, String> {
        let config: WebhookConfig = serde_json::from_str(&delivery.channel_config)
            .map_err(|e| format!("bad webhook config: {e}"))?;
        let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        let mut request = self
            .http
            .post(&config.url)
            .header("Content-Type", "application/json")
            .header("X-Keepwatch-Event", &delivery.event_kind)
            .header("X-Keepwatch-Delivery", delivery.outbox_id.to_string());
        if let Some(secret) = &config.secret {
            request = request.header("X-Keepwatch-Signature", sign(secret, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("webhook request failed: {e}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            Err(format!("webhook answered HTTP {}", status.as_u16()))
        }
    }

    async fn send_email(&self, delivery: &Delivery, message: &Value) -> Result<String, String> {
        let config: EmailConfig = serde_json::from_str(&delivery.channel_config)
            .map_err(|e| format!("bad email config: {e}"))?;
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
