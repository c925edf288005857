//! What sends a rendered [`Request`]: [`LiveTransport`] over HTTP and SMTP, or a
//! [`RecordingTransport`] that keeps what it is given (tests, and later drills).
//!
//! The live transport refuses non-public destinations unless allowed (see
//! [`crate::destination`]), bounds every request by the delivery timeout, and maps what the
//! receiver did to one result: `Ok` with its answer (`HTTP 200`, `SMTP 250`), or a
//! [`Failure`] that says whether retrying can help and whether its detail may be shown to an
//! API caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;

use super::format::{Body, Request, one_line};
use crate::{EngineConfig, destination};

/// Connecting to a receiver may take at most this long (within the delivery timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a send returns: the receiver's answer, or why it failed.
pub type Sent<'a> = Pin<Box<dyn Future<Output = Result<String, Failure>> + Send + 'a>>;

/// Sends rendered requests.
pub trait Transport: Send + Sync {
    fn send(&self, request: Request) -> Sent<'_>;

    /// The longest one send may take, SMTP conversation included.
    fn timeout(&self) -> Duration;
}

/// A shared transport sends as the one it shares.
impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn send(&self, request: Request) -> Sent<'_> {
        (**self).send(request)
    }

    fn timeout(&self) -> Duration {
        (**self).timeout()
    }
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

/// Sends over HTTP (one client: timeouts, redirect policy, user agent, the public-address
/// resolver) and SMTP.
pub struct LiveTransport {
    http: reqwest::Client,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    allow_private: bool,
    timeout: Duration,
}

impl LiveTransport {
    pub fn new(config: &EngineConfig) -> Result<LiveTransport, String> {
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
        Ok(LiveTransport {
            http,
            smtp,
            allow_private,
            timeout,
        })
    }

    /// Posts; `Ok` with the status when it is a success. A private IP literal is refused
    /// here (names are refused by the resolver).
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Body,
    ) -> Result<String, Failure> {
        let mut request = self.http.post(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = match body {
            Body::Json(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes),
            Body::Form(fields) => request.form(&fields),
            Body::Text(text) => request.body(text),
        };
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

    /// Sends an email to one or more comma-separated addresses: plain text, with an HTML
    /// alternative when there is one (mail clients show the HTML, others the text).
    async fn email(
        &self,
        to: &str,
        subject: &str,
        body: String,
        html: Option<String>,
        message_id: Option<String>,
    ) -> Result<String, Failure> {
        let Some((transport, from)) = &self.smtp else {
            return Err("no SMTP server is configured (smtp.host) to send email".into());
        };
        // A subject is one line: a line break in it (from a check or alert name) would end
        // the header. Non-ASCII text is encoded by lettre.
        let mut builder = lettre::Message::builder()
            .from(from.clone())
            .subject(one_line(subject));
        if let Some(id) = message_id {
            builder = builder.message_id(Some(format!("<{id}>")));
        }
        for to in to.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let to: Mailbox = to
                .parse()
                .map_err(|e| Failure::permanent(format!("bad recipient `{to}`: {e}")))?;
            builder = builder.to(to);
        }
        let email = match html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(body, html)),
            None => builder.header(ContentType::TEXT_PLAIN).body(body),
        };
        let email = email.map_err(|e| Failure::permanent(format!("cannot build email: {e}")))?;
        let response = transport.send(email).await.map_err(|e| Failure {
            detail: format!("SMTP failed: {e}"),
            // A 5xx answer (unknown mailbox) will not change on a retry.
            permanent: e.is_permanent(),
            shareable: false,
        })?;
        Ok(format!("SMTP {}", response.code()))
    }
}

impl Transport for LiveTransport {
    fn send(&self, request: Request) -> Sent<'_> {
        Box::pin(async move {
            match request {
                Request::Email {
                    to,
                    subject,
                    body,
                    html,
                    message_id,
                } => self.email(&to, &subject, body, html, message_id).await,
                Request::Post { url, headers, body } => self.post(&url, &headers, body).await,
            }
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout + Duration::from_secs(1)
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

/// Keeps every request it is given and answers each with `recorded`: for tests of what would
/// be sent, and for drills, which must send nothing.
#[derive(Default)]
pub struct RecordingTransport {
    sent: Mutex<Vec<Request>>,
}

impl RecordingTransport {
    /// The requests sent so far, oldest first.
    pub fn sent(&self) -> Vec<Request> {
        self.sent.lock().expect("not poisoned").clone()
    }
}

impl Transport for RecordingTransport {
    fn send(&self, request: Request) -> Sent<'_> {
        self.sent.lock().expect("not poisoned").push(request);
        Box::pin(async { Ok("recorded".to_string()) })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
}
