//! What a read-only API key is not shown: capabilities and secrets inside free text and
//! JSON (alert details and logs, delivery errors, feed URLs). As Healthchecks shows a
//! check's `unique_key` instead of its UUID to read-only keys (the UUID is the ping URL), a
//! UUID becomes the same `unique_key` here, so alerts still match their checks; a URL keeps
//! its scheme and host (the rest may hold a token: Telegram's bot token, Slack's hook path);
//! an email address keeps its domain, as `/api/v1/people/` shows contacts.

use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::Value;
use sha1::{Digest, Sha1};

static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r#"(?P<url>(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>[^/\s?#"'<>)]*)[^\s"'<>)]*)"#,
        r"|(?P<uuid>\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b)",
        r"|(?P<email>[^\s@<>()\[\]:;,]+@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+))",
    ))
    .expect("a valid pattern")
});

/// Healthchecks' `unique_key`: SHA-1 of the first 16 hex digits of the UUID.
pub fn unique_key(uuid: &str) -> String {
    let hex: String = uuid.replace('-', "").chars().take(16).collect();
    hex::encode(Sha1::digest(hex.as_bytes()))
}

/// `text` with its URLs, UUIDs and email addresses redacted.
pub fn text(text: &str) -> String {
    SECRET
        .replace_all(text, |c: &Captures| {
            if c.name("url").is_some() {
                // `user:password@` in the authority is a secret too.
                let host = &c["host"];
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                format!("{}://{host}/…", &c["scheme"])
            } else if let Some(uuid) = c.name("uuid") {
                unique_key(&uuid.as_str().to_ascii_lowercase())
            } else {
                format!("…@{}", &c["domain"])
            }
        })
        .into_owned()
}

/// Every string in `value` (keys too) redacted as [`text`] does.
pub fn json(value: &mut Value) {
    match value {
        Value::String(s) if SECRET.is_match(s) => *s = text(s),
        Value::Array(items) => items.iter_mut().for_each(json),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                json(&mut item);
                let key = if SECRET.is_match(&key) {
                    text(&key)
                } else {
                    key
                };
                map.insert(key, item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_scheme_and_host_uuids_become_unique_keys_emails_their_domain() {
        let uuid = "5AD6AAAB-77eb-4e2d-a580-83c894e15261";
        assert_eq!(
            text(&format!(
                "error sending request for url (https://api.telegram.org/bot123:ABC/sendMessage?x=1): 404; \
                 check:{uuid}; to alice.b+x@mail.example.com; https://u:pw@hooks.example.com"
            )),
            format!(
                "error sending request for url (https://api.telegram.org/…): 404; check:{}; to …@mail.example.com; https://hooks.example.com/…",
                unique_key(&uuid.to_ascii_lowercase())
            )
        );
        assert_eq!(text("alice via email"), "alice via email");
    }

    #[test]
    fn json_redacts_nested_strings_and_keys() {
        let mut value = serde_json::json!({
            "details": {"check_uuid": "5ad6aaab-77eb-4e2d-a580-83c894e15261", "n": 1},
            "list": ["http://h/p", true],
            "https://k/secret": null,
        });
        json(&mut value);
        let key = unique_key("5ad6aaab-77eb-4e2d-a580-83c894e15261");
        assert_eq!(
            value,
            serde_json::json!({
                "details": {"check_uuid": key, "n": 1},
                "list": ["http://h/…", true],
                "https://k/…": null,
            })
        );
    }
}
