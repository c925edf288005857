//! A person's contact: how an address is reached (by the contact's name, else by the address's
//! shape), and whether the address can be delivered to at all, so a file with an address no
//! page could reach is refused when applied instead of failing every page later.

use std::str::FromStr;

/// How a contact's address is reached, from its name and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactKind {
    Email,
    Slack,
    Ntfy,
    Discord,
    Teams,
    Telegram,
    Pushover,
    Webhook,
}

impl ContactKind {
    /// `email`, `slack`, `ntfy`, `discord`, `teams`, `telegram`, `pushover` and `webhook`
    /// contacts by name; otherwise an address with an `@` and no scheme is email, each
    /// service's own host is that service, and any other `http(s)://` URL is a generic webhook.
    pub fn of(name: &str, address: &str) -> Option<ContactKind> {
        let by_name = match name {
            "email" => Some(ContactKind::Email),
            "slack" => Some(ContactKind::Slack),
            "ntfy" => Some(ContactKind::Ntfy),
            "discord" => Some(ContactKind::Discord),
            "teams" => Some(ContactKind::Teams),
            "telegram" => Some(ContactKind::Telegram),
            "pushover" => Some(ContactKind::Pushover),
            "webhook" => Some(ContactKind::Webhook),
            _ => None,
        };
        let is_url = address.starts_with("https://") || address.starts_with("http://");
        by_name.or(if !is_url && address.contains('@') {
            Some(ContactKind::Email)
        } else if address.starts_with("https://hooks.slack.com/") {
            Some(ContactKind::Slack)
        } else if address.contains("discord.com/api/webhooks/") {
            Some(ContactKind::Discord)
        } else if address.contains(".webhook.office.com/") || address.contains(".logic.azure.com") {
            Some(ContactKind::Teams)
        } else if address.starts_with("https://api.telegram.org/") {
            Some(ContactKind::Telegram)
        } else if address.starts_with("https://api.pushover.net/") {
            Some(ContactKind::Pushover)
        } else if address.starts_with("https://ntfy.") {
            Some(ContactKind::Ntfy)
        } else if is_url {
            Some(ContactKind::Webhook)
        } else {
            None
        })
    }

    /// The kind of a contact whose address can be delivered to, or why it cannot: an email
    /// address must parse as the mailer parses it, every other kind needs an `http(s)` URL
    /// with a host, and Telegram and Pushover need the query parameters they are sent with.
    /// Syntax only: whether the host may be reached is decided when a page is delivered.
    pub fn check(name: &str, address: &str) -> Result<ContactKind, String> {
        let kind = ContactKind::of(name, address).ok_or_else(|| {
            format!(
                "`{address}` is not an email address or an http(s) URL \
                 (contacts are email, slack, discord, teams, telegram, pushover, ntfy or webhook)"
            )
        })?;
        if kind == ContactKind::Email {
            lettre::message::Mailbox::from_str(address)
                .map_err(|e| format!("`{address}` is not an email address ({e})"))?;
            return Ok(kind);
        }
        let url = url::Url::parse(address)
            .map_err(|e| format!("`{address}` is not an http(s) URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`{address}` is not an http(s) URL (scheme `{}`)",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{address}` has no host"));
        }
        let has = |param: &str| url.query_pairs().any(|(k, v)| k == param && !v.is_empty());
        let needs: &[&str] = match kind {
            ContactKind::Telegram => &["chat_id"],
            ContactKind::Pushover => &["token", "user"],
            _ => &[],
        };
        if let Some(missing) = needs.iter().find(|p| !has(p)) {
            let example = match kind {
                ContactKind::Telegram => {
                    "https://api.telegram.org/bot<token>/sendMessage?chat_id=<chat>"
                }
                _ => "https://api.pushover.net/1/messages.json?token=<app token>&user=<user key>",
            };
            return Err(format!(
                "`{address}` has no `{missing}` parameter (such as {example})"
            ));
        }
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliverable_addresses_pass_and_the_rest_say_why_not() {
        for (name, address, kind) in [
            ("email", "alice@example.com", ContactKind::Email),
            ("email", "Alice <alice@example.com>", ContactKind::Email),
            ("work", "alice@example.com", ContactKind::Email),
            (
                "webhook",
                "https://hooks.example.com/x#secret=s",
                ContactKind::Webhook,
            ),
            (
                "slack",
                "https://hooks.slack.com/services/T/B/X",
                ContactKind::Slack,
            ),
            (
                "telegram",
                "https://api.telegram.org/botT/sendMessage?chat_id=42",
                ContactKind::Telegram,
            ),
            (
                "pushover",
                "https://api.pushover.net/1/messages.json?token=a&user=b",
                ContactKind::Pushover,
            ),
            ("ntfy", "http://127.0.0.1:8080/alerts", ContactKind::Ntfy),
        ] {
            assert_eq!(
                ContactKind::check(name, address),
                Ok(kind),
                "{name} {address}"
            );
        }
        for (name, address, error) in [
            ("webhook", "hooks.example.com/x", "is not an http(s) URL"),
            ("slack", "ftp://hooks.slack.com/x", "scheme `ftp`"),
            ("discord", "https://", "is not an http(s) URL"),
            ("teams", "http://", "is not an http(s) URL"),
            ("ntfy", "ntfy.sh/alerts", "is not an http(s) URL"),
            ("email", "not an email", "is not an email address"),
            ("email", "alice@", "is not an email address"),
            (
                "phone",
                "555-1234",
                "is not an email address or an http(s) URL",
            ),
            (
                "telegram",
                "https://api.telegram.org/botT/sendMessage",
                "no `chat_id` parameter",
            ),
            (
                "pushover",
                "https://api.pushover.net/1/messages.json?token=a",
                "no `user` parameter",
            ),
            (
                "pushover",
                "https://api.pushover.net/1/messages.json?user=b",
                "no `token` parameter",
            ),
        ] {
            let e = ContactKind::check(name, address).unwrap_err();
            assert!(e.contains(error), "{name} {address}: {e}");
        }
    }
}
