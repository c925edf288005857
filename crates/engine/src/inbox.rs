//! A ping as one instance hands it to the instance that owns the checks, through the store's
//! inbox (several instances on PostgreSQL; see `Actor::forward_pings` and
//! `Actor::apply_inbox`).

use chrono::{DateTime, Utc};
use keepwatch_core::check::{PingKind, RunIdentity, RunSnapshot, StrayProcess};
use keepwatch_store::{InboxKind, InboxRow, Timestamp};
use serde::{Deserialize, Serialize};

use crate::PingRequest;

/// A ping's fields but its check and body (columns of their own).
#[derive(Serialize, Deserialize)]
struct ForwardedPing {
    kind: String,
    identity: RunIdentity,
    scheme: String,
    method: String,
    remote_addr: String,
    user_agent: String,
    volume: Option<i64>,
    body_truncated: bool,
    /// When the ping happened, if earlier than its arrival at the instance that took it (a
    /// spool); the arrival is the entry's `received_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    strays: Vec<StrayProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scan_skipped: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<Box<RunSnapshot>>,
}

/// The inbox entry for a ping taken at `now` by `instance`.
pub fn ping_entry(request: PingRequest, now: DateTime<Utc>, instance: &str) -> InboxRow {
    let at = request.at.map(|at| at.min(now));
    let fields = ForwardedPing {
        kind: request.kind.code(),
        identity: request.identity,
        scheme: request.scheme,
        method: request.method,
        remote_addr: request.remote_addr,
        user_agent: request.user_agent,
        volume: request.volume,
        body_truncated: request.body_truncated,
        at,
        strays: request.strays,
        scan_skipped: request.scan_skipped,
        snapshot: request.snapshot,
    };
    InboxRow {
        id: 0,
        kind: InboxKind::Ping.as_str().into(),
        check_uuid: request.check.to_string(),
        received_at: Timestamp::from(now),
        instance: instance.into(),
        // Serializing these plain fields cannot fail.
        request: serde_json::to_string(&fields).unwrap_or_default(),
        body: request.body,
    }
}

/// The inbox entry asking the owner to apply a check change made by `instance`.
pub fn change_entry(
    kind: InboxKind,
    check: uuid::Uuid,
    now: DateTime<Utc>,
    instance: &str,
) -> InboxRow {
    InboxRow {
        id: 0,
        kind: kind.as_str().into(),
        check_uuid: check.to_string(),
        received_at: Timestamp::from(now),
        instance: instance.into(),
        request: String::new(),
        body: None,
    }
}

/// The ping an inbox entry holds, or why it cannot be read. It arrived at `row.received_at`.
pub fn ping_of(row: InboxRow) -> Result<PingRequest, String> {
    let check = uuid::Uuid::parse_str(&row.check_uuid).map_err(|e| e.to_string())?;
    let fields: ForwardedPing = serde_json::from_str(&row.request).map_err(|e| e.to_string())?;
    let kind =
        PingKind::from_code(&fields.kind).ok_or_else(|| format!("ping kind {:?}", fields.kind))?;
    Ok(PingRequest {
        check,
        kind,
        identity: fields.identity,
        scheme: fields.scheme,
        method: fields.method,
        remote_addr: fields.remote_addr,
        user_agent: fields.user_agent,
        volume: fields.volume,
        body: row.body,
        body_truncated: fields.body_truncated,
        at: fields.at,
        strays: fields.strays,
        scan_skipped: fields.scan_skipped,
        snapshot: fields.snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_survives_the_inbox_with_its_time_and_body() {
        let now = Utc::now();
        let request = PingRequest {
            check: uuid::Uuid::new_v4(),
            kind: PingKind::Exit(3),
            identity: RunIdentity::default(),
            scheme: "https".into(),
            method: "POST".into(),
            remote_addr: "192.0.2.1".into(),
            user_agent: "curl".into(),
            volume: Some(7),
            body: Some(b"tail of the log".to_vec()),
            body_truncated: true,
            at: None,
            strays: Vec::new(),
            scan_skipped: Some("no /proc".into()),
            snapshot: None,
        };
        let check = request.check;
        let entry = ping_entry(request, now, "b");
        assert_eq!(entry.kind, "ping");
        assert_eq!(entry.received_at, Timestamp::from(now));
        let back = ping_of(entry).unwrap();
        assert_eq!(back.check, check);
        assert_eq!(back.kind, PingKind::Exit(3));
        assert_eq!(back.at, None, "dated by its arrival, the entry's");
        assert_eq!(back.body.as_deref(), Some(&b"tail of the log"[..]));
        assert!(back.body_truncated);
        assert_eq!(back.volume, Some(7));
        assert_eq!(back.scan_skipped.as_deref(), Some("no /proc"));
    }

    #[test]
    fn an_unreadable_entry_says_why() {
        let mut entry = change_entry(InboxKind::Ping, uuid::Uuid::new_v4(), Utc::now(), "b");
        entry.request = "{".into();
        assert!(ping_of(entry).is_err());
    }
}
