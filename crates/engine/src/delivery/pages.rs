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
use crate::channels::{Failure, Message, render};

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
    /// The acknowledge and resolve links of an alert, valid for [`LINK_LIFETIME`] from `now`.
    pub fn links(&self, alert_id: i64, now: DateTime<Utc>) -> (String, String) {
        let expires = now + LINK_LIFETIME;
        let base = self.site_url.trim_end_matches('/');
        let link = |action| {
            format!(
                "{base}/a/{}",
                link_token(&self.secret, alert_id, action, expires)
            )
        };
        (link("ack"), link("resolve"))
    }
}

/// A signed, expiring link token for `action` (`ack` or `resolve`) on an alert:
/// `<alert>.<action>.<expires unix seconds>.<HMAC-SHA256 hex>`.
pub fn link_token(secret: &str, alert_id: i64, action: &str, expires: DateTime<Utc>) -> String {
    let claim = format!("{alert_id}.{action}.{}", expires.timestamp());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(claim.as_bytes());
    format!("{claim}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a link token: the alert and action it grants, or why not.
pub fn verify_link(
    secret: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(i64, String), &'static str> {
    let mut parts = token.splitn(4, '.');
    let (Some(alert), Some(action), Some(expires), Some(signature)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("this link is malformed");
    };
    let (Ok(alert_id), Ok(expires)) = (alert.parse::<i64>(), expires.parse::<i64>()) else {
        return Err("this link is malformed");
    };
    let Ok(signature) = hex::decode(signature) else {
        return Err("this link is malformed");
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{alert_id}.{action}.{expires}").as_bytes());
    if mac.verify_slice(&signature).is_err() || !matches!(action, "ack" | "resolve") {
        return Err("this link is not valid");
    }
    if now.timestamp() > expires {
        return Err("this link has expired");
    }
    Ok((alert_id, action.to_string()))
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
    let result = context
        .lanes
        .run(&destination, async {
            tokio::time::timeout(timeout, send_page(&context, &links, &refs, now))
                .await
                .unwrap_or_else(|_| {
                    Err(Failure::transient("no answer within the delivery timeout"))
                })
        })
        .await;
    let result = match (result, pages.len()) {
        (Ok(detail), n) if n > 1 => Ok(format!("{detail} (in a summary of {n})")),
        (result, _) => result,
    };
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
                deferred: false,
            }
        })
        .collect();
    if let Err(e) = context.store.finish_pages(&outcomes, started).await {
        tracing::error!(error = %e, "cannot record page deliveries");
    }
}

/// Sends one message to one address: a page, or a summary of several.
async fn send_page(
    context: &Context,
    links: &LinkSigner,
    pages: &[&PageDelivery],
    now: DateTime<Utc>,
) -> Result<String, Failure> {
    let page = pages[0];
    let kind = ContactKind::of(&page.contact, &page.address).ok_or_else(|| {
        Failure::permanent(format!(
            "contact `{}` (`{}`) is not an email address or URL",
            page.contact, page.address
        ))
    })?;
    let links: Vec<(String, String)> = pages.iter().map(|p| links.links(p.alert_id, now)).collect();
    let request = render(kind, &page.address, &Message::page(pages, &links))?;
    context.transport.send(request).await
}
