//! Pages: which of the claimed pages go out together (a rate limit folds repeats into a
//! summary; nothing waits), and the signed acknowledge and resolve links each carries.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use keepwatch_core::oncall::ContactKind;
use keepwatch_store::{PageDelivery, PageOutcome, Store, StoreError, Timestamp};
use sha2::Sha256;

use super::{Context, retry_after};
use crate::EngineConfig;
use crate::channels::{Failure, Message, gather, render};

/// This many pages (or more) to one address in one round go out as one summary message.
pub const SUMMARY_AT: usize = 3;
/// Acknowledgment links in notifications stay valid this long.
pub const LINK_LIFETIME: TimeDelta = TimeDelta::days(7);

/// Makes the acknowledge and resolve links of an alert.
#[derive(Clone)]
pub struct LinkSigner {
    pub secret: std::sync::Arc<str>,
    pub site_url: String,
}

impl LinkSigner {
    /// The acknowledge and resolve links of an alert sent to `person`, valid for
    /// [`LINK_LIFETIME`] from `now`.
    pub fn links(&self, alert_id: i64, person: &str, now: DateTime<Utc>) -> (String, String) {
        let expires = now + LINK_LIFETIME;
        let base = self.site_url.trim_end_matches('/');
        let link = |action| {
            let token = link_token(&self.secret, alert_id, person, action, expires);
            format!("{base}/a/{token}")
        };
        (link("ack"), link("resolve"))
    }

    /// The link that acknowledges shift check-in `id`, sent to `person`.
    pub fn checkin_link(&self, id: i64, person: &str, now: DateTime<Utc>) -> String {
        let token = link_token(&self.secret, id, person, "checkin", now + LINK_LIFETIME);
        format!("{}/a/{token}", self.site_url.trim_end_matches('/'))
    }
}

/// What a valid link grants: an action on an alert, in the name of the person it was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkGrant {
    /// The alert's id; the check-in's for `checkin`, the live drill's for `drill`.
    pub alert_id: i64,
    /// `ack`, `resolve`, `checkin` (acknowledges a shift check-in) or `drill` (acknowledges
    /// a live drill).
    pub action: String,
    /// The person the link was sent to; `None` for a link made before links named them.
    pub person: Option<String>,
}

/// A signed, expiring link token for `action` (`ack` or `resolve`) on an alert, sent to
/// `person`: `<alert>.<action>.<expires unix seconds>.<person, hex>.<HMAC-SHA256 hex>` (hex
/// keeps a person's id, whatever its characters, out of the dots and the URL's syntax).
pub fn link_token(
    secret: &str,
    alert_id: i64,
    person: &str,
    action: &str,
    expires: DateTime<Utc>,
) -> String {
    let claim = format!(
        "{alert_id}.{action}.{}.{}",
        expires.timestamp(),
        hex::encode(person)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(claim.as_bytes());
    format!("{claim}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a link token: what it grants, or why not. Tokens of the earlier form without the
/// person (`<alert>.<action>.<expires>.<signature>`, valid for a week after they were sent)
/// are still honoured.
pub fn verify_link(
    secret: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<LinkGrant, &'static str> {
    const MALFORMED: &str = "this link is malformed";
    let (claim, signature) = token.rsplit_once('.').ok_or(MALFORMED)?;
    let parts: Vec<&str> = claim.split('.').collect();
    let (alert, action, expires, person) = match parts[..] {
        [alert, action, expires] => (alert, action, expires, None),
        [alert, action, expires, person] => (alert, action, expires, Some(person)),
        _ => return Err(MALFORMED),
    };
    let (Ok(alert_id), Ok(expires)) = (alert.parse::<i64>(), expires.parse::<i64>()) else {
        return Err(MALFORMED);
    };
    let person = match person.map(hex::decode) {
        None => None,
        Some(Ok(bytes)) => Some(String::from_utf8(bytes).map_err(|_| MALFORMED)?),
        Some(Err(_)) => return Err(MALFORMED),
    };
    let signature = hex::decode(signature).map_err(|_| MALFORMED)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(claim.as_bytes());
    if mac.verify_slice(&signature).is_err()
        || !matches!(action, "ack" | "resolve" | "checkin" | "drill")
    {
        return Err("this link is not valid");
    }
    if now.timestamp() > expires {
        return Err("this link has expired");
    }
    Ok(LinkGrant {
        alert_id,
        action: action.to_string(),
        person,
    })
}

/// The messages to send for the pages claimed at `now`. Nothing waits: the first page of
/// each alert to an address goes out at once, alone (or with the round's others to that
/// address when there are [`SUMMARY_AT`] or more: one message, sent now). Each address takes
/// `page_rate_limit` messages per `page_rate_window`; beyond that, a round's repeats (pages of
/// alerts the address already heard of) fold into one summary, sent at once rather than at
/// the end of the window, and their alerts' logs say so. `recent` holds when messages to each
/// address started (the caller adds those it starts); an address not in it yet is read from
/// the store (the `sent_at` of its pages is when their message started), so a restart does
/// not reset its window.
pub(super) async fn plan(
    store: &Store,
    config: &EngineConfig,
    recent: &mut HashMap<String, VecDeque<Timestamp>>,
    pages: Vec<PageDelivery>,
    now: DateTime<Utc>,
) -> Result<Vec<Vec<PageDelivery>>, StoreError> {
    let mut by_address: Vec<Vec<PageDelivery>> = Vec::new();
    for page in pages {
        match by_address
            .iter_mut()
            .find(|group| group[0].address == page.address)
        {
            Some(group) => group.push(page),
            None => by_address.push(vec![page]),
        }
    }
    let window = TimeDelta::from_std(config.page_rate_window).unwrap_or(TimeDelta::minutes(15));
    let limit = config.page_rate_limit.max(1) as usize;
    let mut messages = Vec::new();
    let mut folded: Vec<PageDelivery> = Vec::new();
    for group in by_address {
        if group.len() >= SUMMARY_AT {
            messages.push(group);
            continue;
        }
        let address = group[0].address.clone();
        let since = Timestamp::from(now - window);
        let sent = match recent.entry(address.clone()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(store.page_sends_since(&address, since).await?.into()),
        };
        while sent.front().is_some_and(|at| *at <= since) {
            sent.pop_front();
        }
        let (repeats, firsts): (Vec<PageDelivery>, Vec<PageDelivery>) =
            group.into_iter().partition(|page| page.repeat);
        // First pages are never held back, but they use up the window's room.
        let room = limit.saturating_sub(sent.len() + firsts.len());
        messages.extend(firsts.into_iter().map(|page| vec![page]));
        if repeats.len() > room {
            folded.extend(repeats.iter().cloned());
            messages.push(repeats);
        } else {
            messages.extend(repeats.into_iter().map(|page| vec![page]));
        }
    }
    if !folded.is_empty() {
        let detail = format!(
            "{limit} messages to this address within {}: repeats go out in one summary",
            humantime::format_duration(config.page_rate_window)
        );
        let log: Vec<(i64, String, String)> = folded
            .iter()
            .map(|page| {
                let who = format!("{} via {}", page.person, page.contact);
                (page.alert_id, who, detail.clone())
            })
            .collect();
        store.log_alerts(&log, "rate_limited", now.into()).await?;
    }
    Ok(messages)
}

/// Sends one message (a page, or a summary of several) when its destination has a free lane,
/// and records the outcome of each of its pages. `started` (the round's time, a microsecond
/// apart for each message of the round) is when its pages count as sent for the address's
/// rate limit; links are valid from `now`.
pub(super) async fn send(
    context: Context,
    links: LinkSigner,
    destination: String,
    pages: Vec<PageDelivery>,
    now: DateTime<Utc>,
    started: Timestamp,
) {
    let refs: Vec<&PageDelivery> = pages.iter().collect();
    let timeout = context.transport.timeout();
    let (result, text) = context
        .lanes
        .run(&destination, async {
            tokio::time::timeout(timeout, send_page(&context, &links, &refs, now))
                .await
                .unwrap_or_else(|_| {
                    let failure = Failure::transient("no answer within the delivery timeout");
                    (Err(failure), String::new())
                })
        })
        .await;
    // The text goes with the delivery records (not when nothing was made).
    let text = (!text.is_empty()).then_some(text);
    let result = match (result, pages.len()) {
        (Ok(detail), n) if n > 1 => Ok(format!("{detail} (in a summary of {n})")),
        (result, _) => result,
    };
    let ids: Vec<i64> = pages.iter().map(|p| p.alert_id).collect();
    let (person, contact) = (&pages[0].person, &pages[0].contact);
    match &result {
        Ok(detail) => {
            tracing::info!(alerts = ?ids, person, contact, detail, "page sent")
        }
        Err(failure) => {
            tracing::warn!(alerts = ?ids, person, contact, error = %failure.detail, "page failed")
        }
    }
    let finished = context.clock.now();
    let outcomes: Vec<PageOutcome> = pages
        .iter()
        .map(|page| {
            let retry_at = retry_after(&context.config, page.attempts, &result)
                .map(|delay: Duration| Timestamp::from(finished + delay));
            let (ok, detail) = match result.clone() {
                Ok(detail) => (true, detail),
                Err(failure) => (false, failure.detail),
            };
            PageOutcome {
                page,
                ok,
                detail,
                retry_at,
            }
        })
        .collect();
    if let Err(e) = context
        .store
        .finish_pages(&outcomes, text.as_deref(), started)
        .await
    {
        tracing::error!(error = %e, "cannot record page deliveries");
    }
}

/// Sends one message to one address: a page, or a summary of several.
/// Returns how the sending went and the message's text (empty if none was made).
async fn send_page(
    context: &Context,
    links: &LinkSigner,
    pages: &[&PageDelivery],
    now: DateTime<Utc>,
) -> (Result<String, Failure>, String) {
    let page = pages[0];
    let Some(kind) = ContactKind::of(&page.contact, &page.address) else {
        let why = format!(
            "contact `{}` (`{}`) is not an email address or URL",
            page.contact, page.address
        );
        return (Err(Failure::permanent(why)), String::new());
    };
    let links: Vec<(String, String)> = pages
        .iter()
        .map(|p| links.links(p.alert_id, &p.person, now))
        .collect();
    // Each alert explained as of now (its rows read in one query); when one cannot be read,
    // the message goes out with the alerts' summaries.
    let ids: Vec<i64> = pages.iter().map(|p| p.alert_id).collect();
    let explained = match context.store.alerts_by_id(&ids).await {
        Ok(alerts) if alerts.len() == pages.len() => gather::alerts(&context.store, &alerts, now)
            .await
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let message = Message::page(pages, &links, &explained);
    // A summary goes with the id of its first page.
    let sent = match render(kind, &page.address, &message) {
        Ok(request) => {
            let request = request.with_delivery_id(&context.config.site_url, page.id);
            context.transport.send(request).await
        }
        Err(failure) => Err(failure),
    };
    (sent, message.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_link_grants_its_action_in_the_name_of_its_person_until_it_expires() {
        let now = at("2026-12-05T02:00:00Z");
        let expires = now + LINK_LIFETIME;
        let token = link_token("s3cret", 42, "alice.o'neil", "ack", expires);
        let grant = verify_link("s3cret", &token, now).unwrap();
        assert_eq!(
            grant,
            LinkGrant {
                alert_id: 42,
                action: "ack".into(),
                person: Some("alice.o'neil".into()),
            }
        );
        assert_eq!(
            verify_link("other", &token, now),
            Err("this link is not valid")
        );
        // Another person's name on the same signature is refused.
        let forged = token.replace(&hex::encode("alice.o'neil"), &hex::encode("bob"));
        assert_eq!(
            verify_link("s3cret", &forged, now),
            Err("this link is not valid")
        );
        assert_eq!(
            verify_link("s3cret", &token, expires + TimeDelta::seconds(1)),
            Err("this link has expired")
        );
        for garbage in [
            "",
            "1.ack",
            "x.ack.1.00.ff",
            "1.ack.1.zz.ff",
            "1.ack.1.00.zz",
        ] {
            assert_eq!(
                verify_link("s3cret", garbage, now),
                Err("this link is malformed"),
                "{garbage}"
            );
        }
    }

    #[test]
    fn a_link_sent_before_links_named_their_person_still_works() {
        let now = at("2026-12-05T02:00:00Z");
        let claim = format!("7.resolve.{}", (now + LINK_LIFETIME).timestamp());
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(claim.as_bytes());
        let token = format!("{claim}.{}", hex::encode(mac.finalize().into_bytes()));
        let grant = verify_link("s3cret", &token, now).unwrap();
        assert_eq!((grant.alert_id, grant.person), (7, None));
    }
}
