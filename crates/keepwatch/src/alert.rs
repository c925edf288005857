//! `keepwatch alert list|show|ack|resolve|note`: alerts through the server's API.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Debug, Clone, Subcommand)]
pub enum AlertCommand {
    /// List the project's alerts, newest first
    List {
        /// open (default), triggered, acknowledged, resolved or all
        #[arg(long, default_value = "open")]
        status: String,
        #[command(flatten)]
        api: Api,
    },
    /// Show one alert: what happened in words (host, urgency and why, what happens next, the
    /// last lines of output, a hung run's snapshot), then its log (triggers, escalation steps,
    /// pages, acknowledgments)
    Show {
        id: i64,
        #[command(flatten)]
        api: Api,
    },
    /// Acknowledge an alert: escalation and pending notifications stop
    Ack {
        id: i64,
        #[command(flatten)]
        api: Api,
    },
    /// Resolve an alert
    Resolve {
        id: i64,
        #[command(flatten)]
        api: Api,
    },
    /// Add a note to an alert's log (what you found, what you did)
    ///
    /// Example: keepwatch alert note 42 "restarted the queue worker; watching" --as alice
    Note {
        id: i64,
        /// The note's text (at most 4000 characters)
        text: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Api {
    #[command(flatten)]
    pub server: crate::runner::Server,
    /// An API key of the project (full access to acknowledge, resolve or add a note)
    #[arg(long, env = "KEEPWATCH_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// The person to record as acting (an id from the on-call file, say); default: your
    /// login ($USER)
    #[arg(long = "as", value_name = "PERSON")]
    pub as_person: Option<String>,
}

async fn call(api: &Api, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
    call_with(api, method, path, None).await
}

/// `call` with a JSON body.
pub(crate) async fn call_with(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let base = api.server.base()?;
    let who = api
        .as_person
        .clone()
        .unwrap_or_else(|| std::env::var("USER").unwrap_or_default());
    let mut request = crate::runner::client()?
        .request(method, format!("{base}/api/v1/{path}"))
        .header("X-Api-Key", &api.api_key)
        .header("X-Keepwatch-User", who)
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request, base).await
}

/// A GET of keepwatch's API whose answer is text (an export): the text, or an error with the
/// server's message.
pub(crate) async fn call_text(api: &Api, path: &str) -> anyhow::Result<String> {
    let base = api.server.base()?;
    let response = crate::runner::client()?
        .get(format!("{base}/api/v1/{path}"))
        .header("X-Api-Key", &api.api_key)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let body: Value = serde_json::from_str(&text).unwrap_or_default();
        let why = body["error"].as_str().unwrap_or(text.trim());
        anyhow::bail!("the server answered {status}: {why}");
    }
    Ok(text)
}

/// Sends a request to keepwatch's API: its JSON answer, or an error with the server's message.
pub(crate) async fn send(request: reqwest::RequestBuilder, base: &str) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or_default();
    if !status.is_success() {
        // keepwatch answers `{"error": …}`; a proxy in between may answer anything.
        let why = body["error"].as_str().unwrap_or(text.trim());
        anyhow::bail!("the server answered {status}: {why}");
    }
    Ok(body)
}

fn line(alert: &Value) -> String {
    format!(
        "#{} {} {} [{}] {}  (service {}, since {})",
        alert["id"],
        alert["status"].as_str().unwrap_or(""),
        alert["urgency"].as_str().unwrap_or(""),
        alert["dedup_key"].as_str().unwrap_or(""),
        alert["summary"].as_str().unwrap_or(""),
        alert["service"].as_str().unwrap_or(""),
        alert["triggered_at"].as_str().unwrap_or(""),
    )
}

/// What an alert is about, as its pages say it: the sentence, host, urgency and why, what
/// happens next, watched processes, the snapshot's summary and the last lines of output.
fn evidence(alert: &Value) -> String {
    let e = &alert["evidence"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out = format!("  {}\n", text(&alert["sentence"]));
    let mut fact = |name: &str, value: String| {
        if !value.is_empty() {
            out.push_str(&format!("  {name}: {value}\n"));
        }
    };
    fact("host", text(&e["host"]));
    let o = &alert["outlook"];
    if !o.is_null() {
        fact(
            "urgency",
            format!("{}, {}", text(&o["urgency"]), text(&o["why"])),
        );
    }
    fact("next", text(&o["next"]));
    for process in e["watch"].as_array().into_iter().flatten() {
        fact("watched", text(process));
    }
    fact("snapshot", text(&e["snapshot"]["summary"]));
    let output = e["output"].as_array().cloned().unwrap_or_default();
    if !output.is_empty() {
        out.push_str("  last output:\n");
        for line in output {
            out.push_str(&format!("    {}\n", text(&line)));
        }
    }
    out
}

pub async fn run(command: AlertCommand) -> anyhow::Result<String> {
    match command {
        AlertCommand::List { status, api } => {
            let query = if status == "all" {
                String::new()
            } else {
                format!("?status={status}")
            };
            let body = call(&api, reqwest::Method::GET, &format!("alerts/{query}")).await?;
            let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
            if alerts.is_empty() {
                return Ok(format!("no {status} alerts\n"));
            }
            Ok(alerts.iter().map(|a| line(a) + "\n").collect())
        }
        AlertCommand::Show { id, api } => {
            let alert = call(&api, reqwest::Method::GET, &format!("alerts/{id}")).await?;
            let mut out = line(&alert) + "\n";
            out.push_str(&evidence(&alert));
            out.push_str("log:\n");
            for entry in alert["log"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  {} {} {} {}\n",
                    entry["at"].as_str().unwrap_or(""),
                    entry["kind"].as_str().unwrap_or(""),
                    entry["who"].as_str().unwrap_or(""),
                    entry["detail"].as_str().unwrap_or(""),
                ));
            }
            Ok(out)
        }
        AlertCommand::Ack { id, api } => {
            let alert = call(&api, reqwest::Method::POST, &format!("alerts/{id}/ack")).await?;
            Ok(line(&alert) + "\n")
        }
        AlertCommand::Resolve { id, api } => {
            let alert = call(&api, reqwest::Method::POST, &format!("alerts/{id}/resolve")).await?;
            Ok(line(&alert) + "\n")
        }
        AlertCommand::Note { id, text, api } => {
            let body = serde_json::json!({ "text": text });
            let path = format!("alerts/{id}/notes");
            let alert = call_with(&api, reqwest::Method::POST, &path, Some(body)).await?;
            Ok(line(&alert) + "\n")
        }
    }
}
