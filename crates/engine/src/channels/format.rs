//! What a message says, and how each kind of destination receives it.
//!
//! A [`Message`] is built once, whatever it goes to: a page (one alert, or a summary of
//! several to one address, each with its acknowledge and resolve links), a check's event for
//! a channel, or a plain text. [`render`] turns it into the [`Request`] one destination takes:
//! chat services get the title in bold and one line per alert with their own link syntax,
//! Teams an Adaptive Card, Telegram, Pushover and ntfy their buttons for a single alert, email
//! a subject and plain text, a webhook the message's JSON signed with its secret.

use base64::prelude::{BASE64_STANDARD, Engine as _};
use hmac::{Hmac, KeyInit, Mac};
use keepwatch_core::alert::paging::Urgency;
use keepwatch_core::oncall::ContactKind;
use keepwatch_store::{CheckRow, Delivery, PageDelivery};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::Failure;
use super::evidence::{Evidence, Outlook};
use super::gather::Explained;

/// A summary lists this many alerts at most, then how many more.
const SUMMARY_LINES: usize = 20;

/// One message, before it is rendered for a destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The headline: a chat message's bold first line, a push notification's title.
    pub title: String,
    /// An email's subject.
    pub subject: String,
    /// The text without markup: an email's body, and the text of a chat message that lists
    /// no alerts.
    pub text: String,
    /// An email's HTML part (the same words as `text`), when the message has one.
    pub html: Option<String>,
    /// A chat message's text below the title, when it differs from `text`: a single alert's
    /// evidence (its line with the links comes first), an event's sentence and evidence.
    pub chat: Option<String>,
    /// The alerts a page is about, with their links (empty for other messages).
    pub alerts: Vec<AlertLine>,
    /// A page at high urgency: ntfy and Pushover raise their priority.
    pub high: bool,
    /// What a webhook receives.
    pub json: Value,
    /// The headers a webhook receives beside it (what the message is, its id).
    pub headers: Vec<(&'static str, String)>,
}

/// An alert in a page, with its acknowledge and resolve links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertLine {
    pub id: i64,
    pub summary: String,
    pub service: String,
    pub acknowledge: String,
    pub resolve: String,
}

impl Message {
    /// A text with a title and no links (a contact verification code): chat services get the
    /// title in bold, a webhook `{"message": {"title", "text"}}`.
    pub fn plain(title: &str, text: &str) -> Message {
        Message {
            title: title.to_string(),
            subject: title.to_string(),
            text: text.to_string(),
            html: None,
            chat: None,
            alerts: Vec::new(),
            high: false,
            json: json!({"message": {"title": title, "text": text}}),
            headers: Vec::new(),
        }
    }

    /// A page to one person's address: one alert, or a summary of several (`links` are each
    /// alert's acknowledge and resolve links, `explained` each alert's evidence, in order).
    pub fn page(
        pages: &[&PageDelivery],
        links: &[(String, String)],
        explained: &[Explained],
    ) -> Message {
        let first = pages[0];
        let high = pages.iter().any(|p| p.urgency == Urgency::High);
        let urgency = if high { "HIGH" } else { "LOW" };
        let title = match (pages, explained) {
            (
                [_],
                [
                    Explained {
                        check: Some(name),
                        evidence,
                        ..
                    },
                ],
            ) => format!("[{urgency}] {name}: {}", evidence.headline),
            ([one], _) => format!("[{urgency}] {} ({})", one.summary, one.service),
            (many, _) => format!("[{urgency}] {} alerts for {}", many.len(), first.person),
        };
        let alerts: Vec<AlertLine> = pages
            .iter()
            .zip(links)
            .enumerate()
            .map(|(i, (p, (ack, resolve)))| AlertLine {
                id: p.alert_id,
                summary: explained
                    .get(i)
                    .map_or_else(|| p.summary.clone(), Explained::sentence),
                service: p.service.clone(),
                acknowledge: ack.clone(),
                resolve: resolve.clone(),
            })
            .collect();
        let one = |i: usize, p: &PageDelivery, (ack, resolve): &(String, String)| {
            let mut json = json!({
                "alert": {
                    "id": p.alert_id,
                    "summary": p.summary,
                    "service": p.service,
                    "dedup_key": p.dedup_key,
                    "status": p.status,
                },
                "urgency": p.urgency,
                "person": p.person,
                "links": { "acknowledge": ack, "resolve": resolve },
            });
            if let Some(e) = explained.get(i) {
                json["evidence"] = json!(e.evidence);
                json["outlook"] = json!(e.outlook);
            }
            json
        };
        let single = match (&alerts[..], explained) {
            ([alert], [e]) => Some((alert, e)),
            _ => None,
        };
        let (text, chat, html) = match single {
            Some((alert, e)) => {
                let sentence = e.sentence();
                let plain = block(&e.evidence, Some(&e.outlook), Fence::Indent);
                let mut text = format!("{sentence}\n\n{plain}");
                text.push_str(&format!(
                    "\nAcknowledge: {}\nResolve: {}\n",
                    alert.acknowledge, alert.resolve
                ));
                if let Some(snapshot) = &e.evidence.snapshot {
                    text.push_str(&format!("\nSnapshot:\n{}\n", snapshot.full));
                }
                text.push_str(&format!(
                    "\nAlert #{} on service {} ({})\n",
                    alert.id, alert.service, first.dedup_key
                ));
                let chat = block(&e.evidence, Some(&e.outlook), Fence::Backticks);
                let html = page_html(&title, alert, e);
                (text, Some(chat.trim_end().to_string()), Some(html))
            }
            None => (page_text(&alerts), None, None),
        };
        let json = match pages {
            [single] => one(0, single, &links[0]),
            many => json!({
                "summary_of": many.len(),
                "person": first.person,
                "urgency": if high { "high" } else { "low" },
                "pages": many.iter().zip(links).enumerate().map(|(i, (p, l))| one(i, p, l)).collect::<Vec<_>>(),
            }),
        };
        Message {
            subject: title.clone(),
            title,
            text,
            html,
            chat,
            alerts,
            high,
            json,
            headers: vec![("X-Keepwatch-Page", first.id.to_string())],
        }
    }

    /// A check's event for a channel: the event, its runs and the check as it is now
    /// (`check`, when it still exists), explained by `evidence` when there is one.
    pub fn event(
        delivery: &Delivery,
        check: Option<&CheckRow>,
        site_url: &str,
        evidence: Option<&Evidence>,
    ) -> Message {
        let payload: Value = serde_json::from_str(&delivery.payload).unwrap_or_default();
        let uuid = payload["check_uuid"].as_str().unwrap_or_default();
        let check = match check {
            Some(row) => json!({
                "uuid": row.uuid,
                "name": row.name,
                "slug": row.slug,
                "tags": row.tags,
                "desc": row.descr,
                // The check's page in the web UI (after sign-in), not an API URL.
                "url": format!("{site_url}/ui/checks/{}", row.uuid),
            }),
            None => json!({ "uuid": uuid }),
        };
        let mut json = json!({
            "id": delivery.outbox_id,
            "event": delivery.event_kind,
            "at": payload["at"],
            "check": check,
            "run": payload["run"],
            "other_run": payload["other_run"],
            "exit_status": payload["exit_status"],
        });
        // Present only on the events that have them: overlaps beside strays, anomalies,
        // what a hung run's runner sent, when a late check counts as down, and why an alert
        // held back by a dependency comes now.
        for key in [
            "strays", "anomaly", "snapshot", "watch", "down_at", "released",
        ] {
            if !payload[key].is_null() {
                json[key] = payload[key].clone();
            }
        }
        let name = json["check"]["name"].as_str().filter(|n| !n.is_empty());
        let name = name
            .or(json["check"]["uuid"].as_str())
            .unwrap_or("check")
            .to_string();
        let fallback = Evidence {
            headline: delivery.event_kind.clone(),
            sentence: headline(&delivery.event_kind).to_string(),
            host: None,
            output: Vec::new(),
            snapshot: None,
            watch: Vec::new(),
        };
        let evidence = evidence.unwrap_or(&fallback);
        json["evidence"] = json!(evidence);
        let title = format!("{name}: {}", evidence.headline);
        let sentence = format!("{name}: {}", evidence.sentence);
        let mut text = format!("{sentence}\n");
        let plain = block(evidence, None, Fence::Indent);
        if !plain.is_empty() {
            text.push_str(&format!("\n{plain}"));
        }
        if let Some(snapshot) = &evidence.snapshot {
            text.push_str(&format!("\nSnapshot:\n{}\n", snapshot.full));
        }
        if let Some(url) = json["check"]["url"].as_str() {
            text.push_str(&format!("\nCheck: {url}\n"));
        }
        json["text"] = json!(text);
        let html = event_html(&title, &sentence, evidence);
        let chat = block(evidence, None, Fence::Backticks);
        Message {
            subject: format!("[keepwatch] {title}"),
            text,
            html: Some(html),
            chat: Some(format!("{sentence}\n{chat}").trim_end().to_string()),
            title,
            alerts: Vec::new(),
            high: false,
            headers: vec![
                ("X-Keepwatch-Event", delivery.event_kind.clone()),
                ("X-Keepwatch-Delivery", delivery.outbox_id.to_string()),
            ],
            json,
        }
    }

    /// The text of a chat message: the alerts in `style` and a single alert's evidence, or
    /// the chat text of a message without alerts, or the plain text.
    fn chat_text(&self, style: fn(&AlertLine) -> String) -> String {
        match (&self.alerts[..], &self.chat) {
            ([], Some(chat)) => chat.clone(),
            ([], None) => self.text.clone(),
            (alerts, Some(chat)) => format!("{}\n{chat}", lines(alerts, style)),
            (alerts, None) => lines(alerts, style),
        }
    }

    /// The alert a page is about, when it is about one (buttons act on one alert).
    fn single(&self) -> Option<&AlertLine> {
        match self.alerts.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// One line per alert in `style`, the first [`SUMMARY_LINES`] of them.
fn lines(alerts: &[AlertLine], style: fn(&AlertLine) -> String) -> String {
    let mut out: Vec<String> = alerts.iter().take(SUMMARY_LINES).map(style).collect();
    if alerts.len() > SUMMARY_LINES {
        out.push(format!("… and {} more", alerts.len() - SUMMARY_LINES));
    }
    out.join("\n")
}

/// The plain text of a page: one line per alert with its links written out.
pub fn page_text(alerts: &[AlertLine]) -> String {
    lines(alerts, |a| {
        format!(
            "#{} {} ({}) — acknowledge: {} — resolve: {}",
            a.id, a.summary, a.service, a.acknowledge, a.resolve
        )
    })
}

/// How a block shows the lines of output.
#[derive(Clone, Copy)]
enum Fence {
    /// Indented by four spaces (plain text).
    Indent,
    /// In a ``` block (Slack, Discord, Teams and Telegram show it as code).
    Backticks,
}

/// The evidence below a message's first sentence, one fact a line: host, urgency and why,
/// what happens next, watched processes, the snapshot's summary, the last lines of output.
fn block(e: &Evidence, outlook: Option<&Outlook>, fence: Fence) -> String {
    let mut out = String::new();
    if let Some(host) = &e.host {
        out.push_str(&format!("Host: {host}\n"));
    }
    if let Some(o) = outlook {
        let urgency = o.urgency.as_str().to_uppercase();
        out.push_str(&format!("Urgency: {urgency}, {}\n", o.why));
        if let Some(next) = &o.next {
            out.push_str(&format!("Next: {next}\n"));
        }
    }
    for process in &e.watch {
        out.push_str(&format!("Watched: {process}\n"));
    }
    if let Some(snapshot) = &e.snapshot {
        out.push_str(&format!("Snapshot: {}\n", snapshot.summary));
    }
    if !e.output.is_empty() {
        out.push_str("Last output:\n");
        match fence {
            Fence::Indent => {
                for line in &e.output {
                    out.push_str(&format!("    {line}\n"));
                }
            }
            Fence::Backticks => {
                out.push_str(&format!("```\n{}\n```\n", e.output.join("\n")));
            }
        }
    }
    out
}

/// Text made safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML rows of the evidence (the same facts as [`block`]).
fn html_facts(e: &Evidence, outlook: Option<&Outlook>) -> String {
    let mut rows = String::new();
    let mut row = |name: &str, value: &str| {
        rows.push_str(&format!(
            "<tr><th align=\"left\">{name}</th><td>{}</td></tr>\n",
            escape(value)
        ));
    };
    if let Some(host) = &e.host {
        row("Host", host);
    }
    if let Some(o) = outlook {
        row(
            "Urgency",
            &format!("{}, {}", o.urgency.as_str().to_uppercase(), o.why),
        );
        if let Some(next) = &o.next {
            row("Next", next);
        }
    }
    for process in &e.watch {
        row("Watched", process);
    }
    if let Some(snapshot) = &e.snapshot {
        row("Snapshot", &snapshot.summary);
    }
    let mut out = String::new();
    if !rows.is_empty() {
        out.push_str(&format!("<table>\n{rows}</table>\n"));
    }
    if !e.output.is_empty() {
        out.push_str(&format!(
            "<p>Last output:</p>\n<pre>{}</pre>\n",
            escape(&e.output.join("\n"))
        ));
    }
    if let Some(snapshot) = &e.snapshot {
        out.push_str(&format!(
            "<p>Snapshot:</p>\n<pre>{}</pre>\n",
            escape(&snapshot.full)
        ));
    }
    out
}

/// A page's HTML part: the sentence, the evidence, and the links as buttons.
fn page_html(title: &str, alert: &AlertLine, e: &Explained) -> String {
    format!(
        "<html><body>\n<h2>{}</h2>\n<p>{}</p>\n{}<p><a href=\"{}\">Acknowledge</a> · \
         <a href=\"{}\">Resolve</a></p>\n<p>Alert #{} on service {}</p>\n</body></html>\n",
        escape(title),
        escape(&e.sentence()),
        html_facts(&e.evidence, Some(&e.outlook)),
        escape(&alert.acknowledge),
        escape(&alert.resolve),
        alert.id,
        escape(&alert.service),
    )
}

/// A channel event's HTML part.
fn event_html(title: &str, sentence: &str, e: &Evidence) -> String {
    format!(
        "<html><body>\n<h2>{}</h2>\n<p>{}</p>\n{}</body></html>\n",
        escape(title),
        escape(sentence),
        html_facts(e, None),
    )
}

fn headline(kind: &str) -> &'static str {
    match kind {
        "down" => "DOWN: the expected ping did not arrive in time",
        "failed" => "FAILED: the job reported a failure",
        "hung" => "HUNG: a run has not finished within its max runtime",
        "overlap" => "OVERLAP: a run started while another copy of the job was still running",
        "anomaly" => "ANOMALY: a run processed far less, or took far longer, than usual",
        "up" => "UP: the check is back",
        "late" => "LATE: the expected ping has not arrived yet; the check is in its grace period",
        _ => "event",
    }
}

/// Where a channel delivers: its kind and address (a webhook's secret as `#secret=` on its
/// URL, as a contact's).
pub fn channel_address(delivery: &Delivery) -> Result<(ContactKind, String), Failure> {
    #[derive(Deserialize)]
    struct WebhookConfig {
        url: String,
        secret: Option<String>,
    }
    #[derive(Deserialize)]
    struct EmailConfig {
        to: String,
    }
    match delivery.channel_kind.as_str() {
        "webhook" => {
            let config: WebhookConfig = serde_json::from_str(&delivery.channel_config)
                .map_err(|e| Failure::permanent(format!("bad webhook config: {e}")))?;
            let address = match config.secret {
                Some(secret) => format!("{}#secret={secret}", config.url),
                None => config.url,
            };
            Ok((ContactKind::Webhook, address))
        }
        "email" => {
            let config: EmailConfig = serde_json::from_str(&delivery.channel_config)
                .map_err(|e| Failure::permanent(format!("bad email config: {e}")))?;
            Ok((ContactKind::Email, config.to))
        }
        other => Err(Failure::permanent(format!(
            "unknown channel kind `{other}`"
        ))),
    }
}

fn markdown_line(a: &AlertLine) -> String {
    format!(
        "#{} {} ({}): [Acknowledge]({}) · [Resolve]({})",
        a.id, a.summary, a.service, a.acknowledge, a.resolve
    )
}

fn slack_line(a: &AlertLine) -> String {
    format!(
        "#{} {} ({}): <{}|Acknowledge> · <{}|Resolve>",
        a.id, a.summary, a.service, a.acknowledge, a.resolve
    )
}

/// What to send: an email, or an HTTP POST.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// To one or more comma-separated addresses.
    Email {
        to: String,
        subject: String,
        body: String,
        /// The HTML alternative of `body`, when the message has one.
        html: Option<String>,
        /// The Message-ID (without its angle brackets): the delivery id (see
        /// [`delivery_id`]); `None` lets the mail library make one.
        message_id: Option<String>,
    },
    Post {
        url: String,
        headers: Vec<(&'static str, String)>,
        body: Body,
    },
}

/// The Message-ID (without angle brackets) of the email of outbox row `outbox_id` sent by
/// the keepwatch at `site_url`: `keepwatch.<row>@<host of the site URL>`.
pub fn email_message_id(site_url: &str, outbox_id: i64) -> String {
    let host = reqwest::Url::parse(site_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "keepwatch".into());
    format!("keepwatch.{outbox_id}@{host}")
}

impl Request {
    /// The request carrying the stable id of the delivery of outbox row `outbox_id`: the
    /// same on every attempt, by whichever instance makes it, so a receiver can drop the rare
    /// duplicate (an instance that died after sending and before recording it, whose message
    /// another instance sends again). A POST gets the header `X-Keepwatch-Delivery: <row>`
    /// (a channel event's already has it: the `id` of its body); an email gets the
    /// Message-ID `<keepwatch.<row>@<host of the site URL>>`.
    pub fn with_delivery_id(mut self, site_url: &str, outbox_id: i64) -> Request {
        match &mut self {
            Request::Email { message_id, .. } => {
                *message_id = Some(email_message_id(site_url, outbox_id));
            }
            Request::Post { headers, .. } => {
                if !headers
                    .iter()
                    .any(|(name, _)| *name == "X-Keepwatch-Delivery")
                {
                    headers.push(("X-Keepwatch-Delivery", outbox_id.to_string()));
                }
            }
        }
        self
    }
}

/// The body of a POST.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// JSON, sent with `Content-Type: application/json`.
    Json(Vec<u8>),
    /// `application/x-www-form-urlencoded` fields.
    Form(Vec<(&'static str, String)>),
    /// Plain text.
    Text(String),
}

impl Body {
    fn json(value: &Value) -> Result<Body, Failure> {
        serde_json::to_vec(value)
            .map(Body::Json)
            .map_err(|e| Failure::permanent(e.to_string()))
    }
}

/// `message` as a destination of `kind` at `address` takes it. An address that lacks what its
/// kind needs (Telegram's chat, Pushover's token and user) is a permanent failure.
pub fn render(kind: ContactKind, address: &str, message: &Message) -> Result<Request, Failure> {
    let post = |url: &str, body: Body| Request::Post {
        url: url.to_string(),
        headers: Vec::new(),
        body,
    };
    let single = message.single();
    let title = &message.title;
    Ok(match kind {
        ContactKind::Email => Request::Email {
            to: address.to_string(),
            subject: message.subject.clone(),
            body: message.text.clone(),
            html: message.html.clone(),
            message_id: None,
        },
        ContactKind::Slack => {
            let text = message.chat_text(slack_line);
            post(
                address,
                Body::json(&json!({"text": format!("*{title}*\n{text}")}))?,
            )
        }
        ContactKind::Discord => {
            let text = message.chat_text(markdown_line);
            post(
                address,
                Body::json(&json!({"content": format!("**{title}**\n{text}")}))?,
            )
        }
        ContactKind::Teams => {
            let text = message.chat_text(markdown_line);
            post(address, Body::json(&teams_card(title, &text, single))?)
        }
        ContactKind::Telegram => {
            // `https://api.telegram.org/bot<token>/sendMessage?chat_id=<chat>`: the chat goes
            // in the body, as the Bot API's sendMessage takes it.
            let (url, chat) = split_query_param(address, "chat_id")
                .ok_or("a telegram address needs `?chat_id=<chat>`")?;
            let mut body = json!({
                "chat_id": chat,
                "text": truncate(&format!("{title}\n{}", message.text), 4096),
                "disable_web_page_preview": true,
            });
            if let Some(alert) = single {
                body["reply_markup"] = json!({"inline_keyboard": [[
                    {"text": "Acknowledge", "url": alert.acknowledge},
                    {"text": "Resolve", "url": alert.resolve},
                ]]});
            }
            post(&url, Body::json(&body)?)
        }
        ContactKind::Pushover => {
            // `https://api.pushover.net/1/messages.json?token=<app>&user=<user key>`: Pushover
            // takes both as form fields. High urgency is priority 1, which sounds through the
            // user's quiet hours.
            let missing = "a pushover address needs `?token=<app token>&user=<user key>`";
            let (url, token) = split_query_param(address, "token").ok_or(missing)?;
            let (_, user) = split_query_param(address, "user").ok_or(missing)?;
            let mut form = vec![
                ("token", token),
                ("user", user),
                ("title", truncate(title, 250)),
                ("message", truncate(&message.text, 1024)),
            ];
            if !message.alerts.is_empty() {
                form.push(("priority", if message.high { "1" } else { "0" }.into()));
            }
            if let Some(alert) = single {
                form.push(("url", alert.acknowledge.clone()));
                form.push(("url_title", "Acknowledge".into()));
            }
            post(&url, Body::Form(form))
        }
        ContactKind::Ntfy => {
            let mut headers = vec![("Title", ntfy_header(title))];
            if !message.alerts.is_empty() {
                headers.push(("Priority", if message.high { "5" } else { "3" }.into()));
                headers.push(("Tags", "rotating_light".into()));
            }
            // Buttons act on one alert; a summary lists its links in the text.
            let body = match single {
                Some(alert) => {
                    headers.push((
                        "Actions",
                        format!(
                            "view, Acknowledge, {}; view, Resolve, {}",
                            alert.acknowledge, alert.resolve
                        ),
                    ));
                    let evidence = message.chat.as_deref().unwrap_or_default();
                    format!("{}\n{evidence}", alert.summary)
                        .trim_end()
                        .to_string()
                }
                None => message.text.clone(),
            };
            Request::Post {
                url: address.to_string(),
                headers,
                body: Body::Text(body),
            }
        }
        ContactKind::Webhook => {
            // `https://host/path#secret=…`: the fragment never leaves this server; it keys
            // the signature.
            let (url, secret) = match address.split_once("#secret=") {
                Some((url, secret)) => (url, Some(secret)),
                None => (address, None),
            };
            let body =
                serde_json::to_vec(&message.json).map_err(|e| Failure::permanent(e.to_string()))?;
            let mut headers = message.headers.clone();
            if let Some(secret) = secret {
                headers.push(("X-Keepwatch-Signature", sign(secret, &body)));
            }
            Request::Post {
                url: url.to_string(),
                headers,
                body: Body::Json(body),
            }
        }
    })
}

/// The signature header value for a body: `sha256=<hex HMAC-SHA256>`, so a receiver can check
/// the body came from this server, unchanged.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `text` on one line: control characters (line breaks, tabs, escapes) become spaces, so the
/// text can go in a header.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A header value for ntfy from any text: on one line, and RFC 2047-encoded (which ntfy
/// decodes) when it is not plain ASCII, since an HTTP header value cannot carry it as is.
pub fn ntfy_header(text: &str) -> String {
    let text = one_line(text);
    if text.is_ascii() {
        text
    } else {
        format!("=?UTF-8?B?{}?=", BASE64_STANDARD.encode(text))
    }
}

/// A Teams message: an Adaptive Card, which Teams' Workflows webhooks and its older incoming
/// webhooks both accept, with Acknowledge and Resolve buttons for a single alert.
fn teams_card(title: &str, text: &str, alert: Option<&AlertLine>) -> Value {
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": title, "weight": "Bolder", "wrap": true},
            {"type": "TextBlock", "text": text, "wrap": true},
        ],
    });
    if let Some(alert) = alert {
        card["actions"] = json!([
            {"type": "Action.OpenUrl", "title": "Acknowledge", "url": alert.acknowledge},
            {"type": "Action.OpenUrl", "title": "Resolve", "url": alert.resolve},
        ]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": card,
        }],
    })
}

/// Splits `name=value` out of an address's query: the address without its query, and the
/// value. `None` when the address has no such parameter.
fn split_query_param(address: &str, name: &str) -> Option<(String, String)> {
    let url = reqwest::Url::parse(address).ok()?;
    let value = url.query_pairs().find(|(k, _)| k == name)?.1.into_owned();
    let mut bare = url;
    bare.set_query(None);
    Some((bare.to_string(), value))
}

/// At most `max` characters of `text`, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: i64) -> AlertLine {
        AlertLine {
            id,
            summary: format!("job {id} is down"),
            service: "billing".into(),
            acknowledge: format!("https://kw.example/a/{id}.ack"),
            resolve: format!("https://kw.example/a/{id}.resolve"),
        }
    }

    fn page(alerts: Vec<AlertLine>) -> Message {
        Message {
            title: "[HIGH] job 1 is down (billing)".into(),
            subject: "[keepwatch] [HIGH] job 1 is down (billing)".into(),
            text: page_text(&alerts),
            html: None,
            chat: None,
            alerts,
            high: true,
            json: json!({"alert": {"id": 1}}),
            headers: vec![("X-Keepwatch-Page", "7".into())],
        }
    }

    fn json_body(request: &Request) -> Value {
        match request {
            Request::Post {
                body: Body::Json(bytes),
                ..
            } => serde_json::from_slice(bytes).unwrap(),
            other => panic!("not a JSON post: {other:?}"),
        }
    }

    #[test]
    fn a_page_to_one_alert_carries_its_buttons_everywhere_a_channel_has_them() {
        let message = page(vec![alert(1)]);
        let slack = render(ContactKind::Slack, "https://hooks.slack.com/x", &message).unwrap();
        assert_eq!(
            json_body(&slack)["text"],
            "*[HIGH] job 1 is down (billing)*\n#1 job 1 is down (billing): \
             <https://kw.example/a/1.ack|Acknowledge> · <https://kw.example/a/1.resolve|Resolve>"
        );
        let teams = render(
            ContactKind::Teams,
            "https://x.webhook.office.com/w",
            &message,
        );
        let card = json_body(&teams.unwrap());
        assert_eq!(
            card["attachments"][0]["content"]["actions"][1]["url"],
            "https://kw.example/a/1.resolve"
        );
        let telegram = "https://api.telegram.org/bot1:A/sendMessage?chat_id=-5";
        let request = render(ContactKind::Telegram, telegram, &message).unwrap();
        let Request::Post { url, .. } = &request else {
            panic!("telegram is a post")
        };
        assert_eq!(url, "https://api.telegram.org/bot1:A/sendMessage");
        let body = json_body(&request);
        assert_eq!(body["chat_id"], "-5");
        assert_eq!(
            body["reply_markup"]["inline_keyboard"][0][0]["url"],
            "https://kw.example/a/1.ack"
        );
        let ntfy = render(ContactKind::Ntfy, "https://ntfy.sh/oncall", &message).unwrap();
        assert_eq!(
            ntfy,
            Request::Post {
                url: "https://ntfy.sh/oncall".into(),
                headers: vec![
                    ("Title", "[HIGH] job 1 is down (billing)".into()),
                    ("Priority", "5".into()),
                    ("Tags", "rotating_light".into()),
                    (
                        "Actions",
                        "view, Acknowledge, https://kw.example/a/1.ack; \
                         view, Resolve, https://kw.example/a/1.resolve"
                            .into()
                    ),
                ],
                body: Body::Text("job 1 is down".into()),
            }
        );
    }

    #[test]
    fn a_summary_lists_twenty_alerts_and_has_no_buttons() {
        let message = page((1..=25).map(alert).collect());
        let discord = render(ContactKind::Discord, "https://discord.com/api/w", &message);
        let content = json_body(&discord.unwrap())["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(content.lines().count(), 1 + 20 + 1);
        assert!(content.ends_with("… and 5 more"), "{content}");
        let ntfy = render(ContactKind::Ntfy, "https://ntfy.sh/oncall", &message).unwrap();
        let Request::Post { headers, body, .. } = ntfy else {
            panic!("ntfy is a post")
        };
        assert!(headers.iter().all(|(name, _)| *name != "Actions"));
        assert_eq!(body, Body::Text(message.text.clone()));
        let pushover = "https://api.pushover.net/1/messages.json?token=a&user=b";
        let Request::Post {
            body: Body::Form(form),
            ..
        } = render(ContactKind::Pushover, pushover, &message).unwrap()
        else {
            panic!("pushover is a form")
        };
        let fields: Vec<&str> = form.iter().map(|(name, _)| *name).collect();
        assert_eq!(fields, ["token", "user", "title", "message", "priority"]);
    }

    #[test]
    fn a_webhook_gets_the_json_signed_with_the_secret_of_its_address() {
        let message = page(vec![alert(1)]);
        let request = render(
            ContactKind::Webhook,
            "https://hooks.example/in#secret=s3cret",
            &message,
        )
        .unwrap();
        let Request::Post { url, headers, body } = request else {
            panic!("a webhook is a post")
        };
        assert_eq!(url, "https://hooks.example/in");
        let Body::Json(bytes) = body else {
            panic!("a webhook gets JSON")
        };
        assert_eq!(
            headers,
            vec![
                ("X-Keepwatch-Page", "7".to_string()),
                ("X-Keepwatch-Signature", sign("s3cret", &bytes)),
            ]
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap(),
            message.json
        );
    }

    #[test]
    fn a_plain_text_has_no_links_and_an_address_missing_its_parameters_is_refused() {
        let message = Message::plain("keepwatch: verify this contact", "Your code is 123456.");
        let slack = render(ContactKind::Slack, "https://hooks.slack.com/x", &message).unwrap();
        assert_eq!(
            json_body(&slack)["text"],
            "*keepwatch: verify this contact*\nYour code is 123456."
        );
        let email = render(ContactKind::Email, "bob@example.com", &message).unwrap();
        assert_eq!(
            email,
            Request::Email {
                to: "bob@example.com".into(),
                subject: "keepwatch: verify this contact".into(),
                body: "Your code is 123456.".into(),
                html: None,
                message_id: None,
            }
        );
        let refused = render(
            ContactKind::Telegram,
            "https://api.telegram.org/x",
            &message,
        );
        assert_eq!(
            refused.unwrap_err(),
            Failure::permanent("a telegram address needs `?chat_id=<chat>`")
        );
    }

    #[test]
    fn header_bound_text_stays_one_line_and_query_parameters_split_out() {
        assert_eq!(ntfy_header("db\r\nX-Evil: 1"), "db  X-Evil: 1");
        assert_eq!(ntfy_header("café"), "=?UTF-8?B?Y2Fmw6k=?=");
        assert_eq!(
            split_query_param("https://api.pushover.net/1/m?user=b", "token"),
            None
        );
        assert_eq!(split_query_param("not a url", "token"), None);
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    fn hung_page() -> Message {
        use crate::channels::evidence::Snapshot;
        let page = PageDelivery {
            id: 7,
            alert_id: 6,
            person: "alice".into(),
            contact: "email".into(),
            address: "alice@example.com".into(),
            urgency: Urgency::High,
            attempts: 0,
            summary: "Nightly: hung for 30 min".into(),
            service: "billing".into(),
            dedup_key: "check:0b6a".into(),
            status: keepwatch_core::alert::AlertStatus::Triggered,
            repeat: false,
        };
        let explained = Explained {
            check: Some("Nightly".into()),
            evidence: Evidence {
                headline: "hung for 1 h 02 min".into(),
                sentence: "hung: running for 1 h 02 min, usually 5 min; pid 21507 on web1".into(),
                host: Some("web1".into()),
                output: vec!["fetched 12 events".into(), "waiting for lock".into()],
                snapshot: Some(Snapshot {
                    summary: "2 processes".into(),
                    full: "21507 D flock".into(),
                }),
                watch: Vec::new(),
            },
            outlook: Outlook {
                urgency: Urgency::High,
                why: "raised from low after 10 min unacknowledged".into(),
                next: Some("Bob by phone at 02:15 MST if not acknowledged".into()),
            },
        };
        let links = [(
            "https://kw.example/a/6.ack".to_string(),
            "https://kw.example/a/6.resolve".to_string(),
        )];
        Message::page(&[&page], &links, &[explained])
    }

    /// One hung page in every format, exactly: a change to what a page says shows here.
    #[test]
    fn a_hung_page_reads_the_same_evidence_in_every_format() {
        let message = hung_page();
        let evidence = "Host: web1\n\
            Urgency: HIGH, raised from low after 10 min unacknowledged\n\
            Next: Bob by phone at 02:15 MST if not acknowledged\n\
            Snapshot: 2 processes\n\
            Last output:\n";
        let Request::Email {
            subject,
            body,
            html,
            ..
        } = render(ContactKind::Email, "alice@example.com", &message).unwrap()
        else {
            panic!("an email")
        };
        assert_eq!(subject, "[HIGH] Nightly: hung for 1 h 02 min");
        assert_eq!(
            body,
            format!(
                "Nightly: hung: running for 1 h 02 min, usually 5 min; pid 21507 on web1\n\n\
                 {evidence}    fetched 12 events\n    waiting for lock\n\n\
                 Acknowledge: https://kw.example/a/6.ack\n\
                 Resolve: https://kw.example/a/6.resolve\n\n\
                 Snapshot:\n21507 D flock\n\n\
                 Alert #6 on service billing (check:0b6a)\n"
            )
        );
        let html = html.unwrap();
        assert!(
            html.contains("<pre>fetched 12 events\nwaiting for lock</pre>")
                && html.contains("<a href=\"https://kw.example/a/6.ack\">Acknowledge</a>")
                && html.contains("<th align=\"left\">Next</th><td>Bob by phone at 02:15 MST if not acknowledged</td>"),
            "{html}"
        );
        let chat_evidence = format!("{evidence}```\nfetched 12 events\nwaiting for lock\n```");
        let slack = render(ContactKind::Slack, "https://hooks.slack.com/x", &message).unwrap();
        assert_eq!(
            json_body(&slack)["text"],
            format!(
                "*[HIGH] Nightly: hung for 1 h 02 min*\n\
                 #6 Nightly: hung: running for 1 h 02 min, usually 5 min; pid 21507 on web1 (billing): \
                 <https://kw.example/a/6.ack|Acknowledge> · <https://kw.example/a/6.resolve|Resolve>\n\
                 {chat_evidence}"
            )
        );
        let discord = render(ContactKind::Discord, "https://discord.com/api/w", &message);
        assert_eq!(
            json_body(&discord.unwrap())["content"],
            format!(
                "**[HIGH] Nightly: hung for 1 h 02 min**\n\
                 #6 Nightly: hung: running for 1 h 02 min, usually 5 min; pid 21507 on web1 (billing): \
                 [Acknowledge](https://kw.example/a/6.ack) · [Resolve](https://kw.example/a/6.resolve)\n\
                 {chat_evidence}"
            )
        );
        let teams = render(
            ContactKind::Teams,
            "https://x.webhook.office.com/w",
            &message,
        );
        let card = json_body(&teams.unwrap());
        assert_eq!(
            card["attachments"][0]["content"]["body"][1]["text"],
            json_body(&discord_of(&message))["content"]
                .as_str()
                .unwrap()
                .split_once('\n')
                .unwrap()
                .1
        );
        let telegram = "https://api.telegram.org/bot1:A/sendMessage?chat_id=-5";
        let body = json_body(&render(ContactKind::Telegram, telegram, &message).unwrap());
        assert_eq!(
            body["text"],
            format!("[HIGH] Nightly: hung for 1 h 02 min\n{}", message.text)
        );
        let pushover = "https://api.pushover.net/1/messages.json?token=a&user=b";
        let Request::Post {
            body: Body::Form(form),
            ..
        } = render(ContactKind::Pushover, pushover, &message).unwrap()
        else {
            panic!("pushover is a form")
        };
        assert_eq!(form[3], ("message", message.text.clone()));
        let ntfy = render(ContactKind::Ntfy, "https://ntfy.sh/oncall", &message).unwrap();
        let Request::Post { body, .. } = ntfy else {
            panic!("ntfy is a post")
        };
        assert_eq!(
            body,
            Body::Text(format!(
                "Nightly: hung: running for 1 h 02 min, usually 5 min; pid 21507 on web1\n{chat_evidence}"
            ))
        );
        let webhook = render(ContactKind::Webhook, "https://hooks.example/in", &message);
        let json = json_body(&webhook.unwrap());
        assert_eq!(
            json["evidence"]["sentence"],
            "hung: running for 1 h 02 min, usually 5 min; pid 21507 on web1"
        );
        assert_eq!(
            json["evidence"]["output"],
            json!(["fetched 12 events", "waiting for lock"])
        );
        assert_eq!(json["evidence"]["snapshot"]["full"], "21507 D flock");
        assert_eq!(
            json["outlook"],
            json!({
                "urgency": "high",
                "why": "raised from low after 10 min unacknowledged",
                "next": "Bob by phone at 02:15 MST if not acknowledged",
            })
        );
    }

    fn discord_of(message: &Message) -> Request {
        render(ContactKind::Discord, "https://discord.com/api/w", message).unwrap()
    }

    /// A channel's event email is readable text, with the evidence, and no JSON.
    #[test]
    fn a_channel_event_email_is_text_not_json() {
        let delivery = Delivery {
            outbox_id: 3,
            channel_id: 1,
            attempts: 0,
            event_kind: "overlap".into(),
            payload: json!({"kind": "overlap", "at": "2026-03-07T07:00:00Z", "check_uuid": "0b6a"})
                .to_string(),
            channel_kind: "email".into(),
            channel_name: "ops".into(),
            channel_config: json!({"to": "ops@example.com"}).to_string(),
        };
        let evidence = Evidence {
            headline: "another copy is running (pid 26458)".into(),
            sentence: "overlap: another copy is running since 23:58: pid 26458 `/bin/bash /opt/jobs/nightly.sh --all`".into(),
            host: Some("web1".into()),
            output: Vec::new(),
            snapshot: None,
            watch: Vec::new(),
        };
        let message = Message::event(&delivery, None, "https://kw.example", Some(&evidence));
        let Request::Email {
            subject,
            body,
            html,
            ..
        } = render(ContactKind::Email, "ops@example.com", &message).unwrap()
        else {
            panic!("an email")
        };
        assert_eq!(
            subject,
            "[keepwatch] 0b6a: another copy is running (pid 26458)"
        );
        assert_eq!(
            body,
            "0b6a: overlap: another copy is running since 23:58: pid 26458 \
             `/bin/bash /opt/jobs/nightly.sh --all`\n\nHost: web1\n"
        );
        assert!(html.unwrap().contains(
            "<p>0b6a: overlap: another copy is running since 23:58: pid 26458 \
             `/bin/bash /opt/jobs/nightly.sh --all`</p>"
        ));
        let webhook = render(ContactKind::Webhook, "https://hooks.example/in", &message);
        let json = json_body(&webhook.unwrap());
        assert_eq!(json["event"], "overlap");
        assert_eq!(json["evidence"]["host"], "web1");
    }
}
