//! How a message reaches a person or a receiver, in two halves:
//!
//! - [`format`]: what a message says ([`Message`]: an alert page or a summary of several, a
//!   check's event for a channel, a plain text such as a verification code) and how each kind
//!   of destination receives it (Slack, Discord, Teams, Telegram, Pushover, ntfy, email, a
//!   signed webhook): [`render`] makes the [`Request`] to send.
//! - [`transport`]: what sends a [`Request`]: the [`LiveTransport`] (HTTP with the
//!   destination checks, SMTP), or a [`RecordingTransport`] that keeps what it is given, for
//!   tests and drills. Either answers with what the receiver said, or a [`Failure`].
//!
//! - [`evidence`]: why a message is sent, in words (pure), from the facts [`gather`] reads:
//!   every format above, and the API's alert view, say the same.
//!
//! Pages, channel events and verification codes all go through here: one set of formats, one
//! signing routine, one mapping of a receiver's answer to a result.

pub mod evidence;
pub mod format;
pub mod gather;
pub mod transport;

pub use format::{AlertLine, Body, Message, Request, one_line, render, sign};
pub use transport::{Failure, LiveTransport, RecordingTransport, Transport};

use keepwatch_core::oncall::ContactKind;

/// Sends a short text with no links through a contact (a contact verification code): the
/// same channels and formats as pages, without their buttons.
pub async fn send_plain(
    transport: &dyn Transport,
    contact: &str,
    address: &str,
    title: &str,
    text: &str,
) -> Result<String, Failure> {
    let kind = ContactKind::of(contact, address).ok_or_else(|| {
        Failure::permanent(format!(
            "contact `{contact}` (`{address}`) is not an email address or URL"
        ))
    })?;
    let request = render(kind, address, &Message::plain(title, text))?;
    transport.send(request).await
}
