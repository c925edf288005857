//! `keepwatch import healthchecks`: copies a Healthchecks project's checks into keepwatch
//! through keepwatch's v3 API, each under its own UUID, so ping URLs and crontabs keep
//! working once only their base URL changes.
//!
//! Through the API, not into the database: the running server's engine owns each check's
//! state (as `keepwatch apply` with checks goes through `--server`), and the API validates
//! every field as it does for any client. keepwatch's `POST /api/v3/checks/` takes a `uuid`
//! for this (its own extension; Healthchecks picks UUIDs itself).
//!
//! Idempotent: a check already in keepwatch under its UUID is compared field by field and
//! updated only if something differs. Each check is one create (fields and channels
//! together) and, if paused, a pause; a pause that fails deletes the check just created, so
//! nothing is left half-written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Subcommand)]
pub enum ImportCommand {
    /// Copy a Healthchecks project's checks into keepwatch under their own UUIDs
    #[command(after_help = "\
Reads the checks from Healthchecks' API (--url, --api-key: the project's full API key, since
a read-only key does not show UUIDs) or from a saved `GET /api/v3/checks/` answer (--file;
--channels-file for a saved `GET /api/v3/channels/`), and creates or updates each in the
keepwatch project of --to-api-key, through the server at --to: name, slug, tags, desc,
schedule/tz or timeout, grace, methods, manual_resume, keywords and filters, paused state.
Channels: Healthchecks' API gives a channel's kind and name, never its address. A check's
email or webhook channel is attached to the keepwatch channel of the same kind and name if
there is one (create it first: POST /api/v3/channels/); every other channel is reported as
not migrated, with its kind and name. Nothing is invented.
Running it again changes nothing (each check: unchanged); a check changed in Healthchecks
since is updated. --dry-run prints the same report and writes nothing.
Exit status: 0; 1 if any check failed (the others are imported) or the input is unusable.
Examples:
  keepwatch import healthchecks --url https://healthchecks.example.com --api-key … --to http://127.0.0.1:8000 --to-api-key …
  keepwatch import healthchecks --file checks.json --channels-file channels.json --dry-run
  curl -s -H \"X-Api-Key: $HC_KEY\" https://healthchecks.io/api/v3/checks/ > checks.json")]
    Healthchecks(HealthchecksArgs),
}

#[derive(Debug, Clone, Args)]
pub struct HealthchecksArgs {
    /// Healthchecks' base URL, e.g. https://healthchecks.io
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub url: Option<String>,
    /// The Healthchecks project's API key (full access: a read-only key hides the UUIDs)
    #[arg(long, env = "HEALTHCHECKS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A saved answer of Healthchecks' `GET /api/v3/checks/`, instead of --url
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A saved answer of Healthchecks' `GET /api/v3/channels/` (with --file), to attach
    /// channels; without it, imported checks' channels are left as they are
    #[arg(long, value_name = "FILE", requires = "file")]
    pub channels_file: Option<PathBuf>,
    /// The keepwatch server to import into
    #[arg(long, alias = "server", env = "KEEPWATCH_SERVER", value_name = "URL",
          default_value = crate::runner::DEFAULT_SERVER)]
    pub to: String,
    /// A full-access API key of the keepwatch project to import into
    #[arg(long, env = "KEEPWATCH_API_KEY", hide_env_values = true)]
    pub to_api_key: String,
    /// Print what would be created and updated; write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// A Healthchecks channel as its API lists it.
#[derive(Debug, Clone)]
struct HcChannel {
    id: String,
    name: String,
    kind: String,
}

/// What the import read from Healthchecks.
struct Source {
    checks: Vec<Map<String, Value>>,
    /// `None` when no channel list was given.
    channels: Option<Vec<HcChannel>>,
}

/// Runs the import; the report, and whether every check was imported.
pub async fn run(command: ImportCommand) -> anyhow::Result<(String, bool)> {
    let ImportCommand::Healthchecks(args) = command;
    let source = read_source(&args).await?;
    let keepwatch = Keepwatch::new(&args)?;
    import(&source, &keepwatch, args.dry_run).await
}

async fn read_source(args: &HealthchecksArgs) -> anyhow::Result<Source> {
    if let Some(path) = &args.file {
        let text = crate::config::read_text(path)?;
        let checks = checks_of(&text, &path.display().to_string())?;
        let channels = match &args.channels_file {
            Some(path) => Some(channels_of(
                &crate::config::read_text(path)?,
                &path.display().to_string(),
            )?),
            None => None,
        };
        return Ok(Source { checks, channels });
    }
    let url = args.url.as_deref().unwrap_or_default();
    let base = url.trim_end_matches('/').trim_end_matches("/api/v3");
    if reqwest::Url::parse(base).is_err()
        || !(base.starts_with("http://") || base.starts_with("https://"))
    {
        bail!("--url `{url}` is not an http:// or https:// URL");
    }
    let key = args.api_key.as_deref().context(
        "--url needs --api-key (or HEALTHCHECKS_API_KEY): the Healthchecks project's API key",
    )?;
    let client = crate::runner::client()?;
    let get = |path: &'static str| {
        let client = client.clone();
        let address = format!("{base}{path}");
        async move {
            let response = client
                .get(&address)
                .header("X-Api-Key", key)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .with_context(|| format!("cannot reach Healthchecks at {address}"))?;
            let status = response.status();
            let body = response
                .text()
                .await
                .with_context(|| format!("{address}: the answer broke off"))?;
            match status {
                StatusCode::OK => Ok((address, body)),
                StatusCode::UNAUTHORIZED => bail!(
                    "Healthchecks refused --api-key ({address}: 401 {}); give the project's API \
                     key (Settings → API Access)",
                    error_text(&body)
                ),
                other => bail!(
                    "{address}: Healthchecks answered {other}: {}",
                    error_text(&body)
                ),
            }
        }
    };
    let (address, body) = get("/api/v3/checks/").await?;
    let checks = checks_of(&body, &address)?;
    // Channels need the full key too; with a read-only key `checks_of` has refused already.
    let (address, body) = get("/api/v3/channels/").await?;
    let channels = Some(channels_of(&body, &address)?);
    Ok(Source { checks, channels })
}

/// An error answer's text: its `error` field, or its first 200 characters.
fn error_text(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v["error"].is_string() => {
            let mut text = v["error"].as_str().unwrap_or_default().to_string();
            if let Some(detail) = v["detail"].as_str() {
                text.push_str(&format!(" ({detail})"));
            }
            text
        }
        _ => {
            let text: String = body.trim().chars().take(200).collect();
            if text.is_empty() {
                "(empty body)".into()
            } else {
                text
            }
        }
    }
}

/// The checks of a `GET /api/v3/checks/` answer; refuses a read-only key's (no UUIDs).
fn checks_of(text: &str, source: &str) -> anyhow::Result<Vec<Map<String, Value>>> {
    let value: Value = serde_json::from_str(text)
        .with_context(|| format!("{source}: not JSON (a saved GET /api/v3/checks/ answer?)"))?;
    let Some(items) = value.get("checks").and_then(Value::as_array) else {
        bail!("{source}: not a Healthchecks checks list (no \"checks\" array)");
    };
    let mut checks = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(check) = item.as_object() else {
            bail!("{source}: checks[{i}] is not an object");
        };
        if check.get("uuid").is_none() && check.get("unique_key").is_some() {
            bail!(
                "{source}: the checks have `unique_key` instead of `uuid`: they were read with a \
                 read-only API key. keepwatch needs each check's UUID (its ping URL); use the \
                 project's full API key"
            );
        }
        checks.push(check.clone());
    }
    Ok(checks)
}

fn channels_of(text: &str, source: &str) -> anyhow::Result<Vec<HcChannel>> {
    let value: Value = serde_json::from_str(text)
        .with_context(|| format!("{source}: not JSON (a saved GET /api/v3/channels/ answer?)"))?;
    let Some(items) = value.get("channels").and_then(Value::as_array) else {
        bail!("{source}: not a Healthchecks channels list (no \"channels\" array)");
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .with_context(|| format!("{source}: channels[{i}] has no string `{name}`"))
            };
            Ok(HcChannel {
                id: field("id")?,
                name: field("name")?,
                kind: field("kind")?,
            })
        })
        .collect()
}

/// The keepwatch server, through its v3 API.
struct Keepwatch {
    base: String,
    key: String,
    client: reqwest::Client,
}

/// An answer: status and JSON body (`Null` if not JSON).
struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Keepwatch {
    fn new(args: &HealthchecksArgs) -> anyhow::Result<Keepwatch> {
        let base = crate::runner::Server {
            server: args.to.clone(),
        }
        .base()
        .map_err(|_| anyhow::anyhow!("--to `{}` is not an http:// or https:// URL", args.to))?
        .to_string();
        Ok(Keepwatch {
            base,
            key: args.to_api_key.clone(),
            client: crate::runner::client()?,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let address = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method, &address)
            .header("X-Api-Key", &self.key)
            .header("X-Keepwatch-User", "import healthchecks")
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach keepwatch at {address}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{address}: the answer broke off"))?;
        if status == StatusCode::UNAUTHORIZED {
            bail!(
                "keepwatch refused --to-api-key ({address}: 401 {}); give a full-access key of \
                 the project to import into (keepwatch api-key create)",
                error_text(&text)
            );
        }
        Ok(Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        })
    }
}

/// The fields keepwatch is given for a Healthchecks check, as the API takes them.
fn desired(check: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let text = |name: &str| -> Result<Option<String>, String> {
        match check.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{name}` is not a string")),
        }
    };
    for name in ["name", "slug", "tags", "desc", "methods", "start_kw"] {
        if let Some(v) = text(name)? {
            out.insert(name.into(), v.into());
        }
    }
    // Healthchecks before 2.x had only `subject`/`subject_fail`: they are the keywords,
    // matched against email subjects.
    match (text("success_kw")?, text("subject")?) {
        (Some(kw), _) => {
            out.insert("success_kw".into(), kw.into());
        }
        (None, Some(subject)) => {
            out.insert("success_kw".into(), subject.into());
        }
        (None, None) => {}
    }
    match (text("failure_kw")?, text("subject_fail")?) {
        (Some(kw), _) => {
            out.insert("failure_kw".into(), kw.into());
        }
        (None, Some(subject)) => {
            out.insert("failure_kw".into(), subject.into());
        }
        (None, None) => {}
    }
    if check.get("filter_subject").is_none() && check.get("success_kw").is_none() {
        let on = ["success_kw", "failure_kw"].iter().any(|k| {
            out.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        });
        out.insert("filter_subject".into(), on.into());
    }
    for name in [
        "manual_resume",
        "filter_subject",
        "filter_body",
        "filter_http_body",
        "filter_default_fail",
    ] {
        match check.get(name) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Bool(_)) => {
                out.insert(name.into(), v.clone());
            }
            Some(_) => return Err(format!("`{name}` is not true or false")),
        }
    }
    let seconds = |name: &str| -> Result<Option<i64>, String> {
        match check.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("`{name}` is not a whole number of seconds")),
        }
    };
    if let Some(grace) = seconds("grace")? {
        out.insert("grace".into(), grace.into());
    }
    match (text("schedule")?, seconds("timeout")?) {
        (Some(schedule), _) => {
            let tz = text("tz")?.unwrap_or_else(|| "UTC".into());
            let tz = keepwatch_server::api::check_spec::canonical_tz(&tz).to_string();
            if let Err(e) = keepwatch_core::schedule::Schedule::parse(&schedule, &tz) {
                return Err(format!("schedule `{schedule}` (tz {tz}) is not valid: {e}"));
            }
            out.insert("schedule".into(), schedule.into());
            out.insert("tz".into(), tz.into());
        }
        (None, Some(timeout)) => {
            out.insert("timeout".into(), timeout.into());
        }
        (None, None) => return Err("it has neither `schedule` nor `timeout`".into()),
    }
    Ok(out)
}

/// The fields whose keepwatch value differs from the wanted one.
fn differences(wanted: &Map<String, Value>, current: &Value) -> Vec<String> {
    wanted
        .iter()
        .filter(|(name, value)| {
            let have = &current[name.as_str()];
            if name.as_str() == "channels" {
                return sorted_ids(have.as_str().unwrap_or_default())
                    != sorted_ids(value.as_str().unwrap_or_default());
            }
            have != *value
        })
        .map(|(name, _)| name.clone())
        .collect()
}

fn sorted_ids(list: &str) -> Vec<&str> {
    let mut ids: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
    ids.sort_unstable();
    ids
}

/// What became of a Healthchecks channel.
enum ChannelFate {
    /// Attached through this keepwatch channel (its id).
    Attached(String),
    NotMigrated(String),
}

/// Healthchecks' channel kinds that keepwatch reaches through a person's on-call contact,
/// with the contact's name.
const CONTACT_KINDS: &[(&str, &str)] = &[
    ("slack", "slack"),
    ("discord", "discord"),
    ("msteams", "teams"),
    ("msteamsw", "teams"),
    ("telegram", "telegram"),
    ("po", "pushover"),
    ("ntfy", "ntfy"),
];

fn channel_fate(channel: &HcChannel, keepwatch: &[HcChannel]) -> ChannelFate {
    if matches!(channel.kind.as_str(), "email" | "webhook") {
        let same: Vec<&HcChannel> = keepwatch
            .iter()
            .filter(|k| k.kind == channel.kind && k.name == channel.name)
            .collect();
        return match same.as_slice() {
            [one] => ChannelFate::Attached(one.id.clone()),
            [] => ChannelFate::NotMigrated(format!(
                "needs its address (Healthchecks' API does not give it): create a keepwatch \
                 {} channel named \"{}\" (POST /api/v3/channels/), then import again to attach it",
                channel.kind, channel.name
            )),
            _ => ChannelFate::NotMigrated(format!(
                "several keepwatch {} channels are named \"{}\"; rename all but one, then import \
                 again",
                channel.kind, channel.name
            )),
        };
    }
    if let Some((_, contact)) = CONTACT_KINDS.iter().find(|(k, _)| *k == channel.kind) {
        return ChannelFate::NotMigrated(format!(
            "needs its address (Healthchecks' API does not give it): keepwatch reaches {contact} \
             through a person's `{contact}` contact in the on-call file"
        ));
    }
    ChannelFate::NotMigrated(format!("keepwatch has no {} channels", channel.kind))
}

#[derive(Default)]
struct Tally {
    created: usize,
    updated: usize,
    unchanged: usize,
    failed: usize,
}

async fn import(
    source: &Source,
    keepwatch: &Keepwatch,
    dry_run: bool,
) -> anyhow::Result<(String, bool)> {
    // keepwatch's channels; this also checks the key before anything else (channels need a
    // full-access key, as writes do).
    let answer = keepwatch
        .call(Method::GET, "/api/v3/channels/", None)
        .await?;
    if answer.status != StatusCode::OK {
        bail!(
            "{}/api/v3/channels/: keepwatch answered {}: {}",
            keepwatch.base,
            answer.status,
            error_text(&answer.text)
        );
    }
    let kw_channels = channels_of(&answer.text, "keepwatch's channels")?;
    // Healthchecks channel id → keepwatch channel id, for those attached.
    let mut attach: BTreeMap<String, String> = BTreeMap::new();
    let mut out = String::new();
    let mut channel_lines = String::new();
    let (mut attached, mut not_migrated) = (0, 0);
    match &source.channels {
        Some(channels) => {
            for channel in channels {
                let head = format!("{} {} \"{}\"", channel.id, channel.kind, channel.name);
                match channel_fate(channel, &kw_channels) {
                    ChannelFate::Attached(id) => {
                        attached += 1;
                        channel_lines.push_str(&format!(
                            "  attached      {head} → keepwatch channel {id}\n"
                        ));
                        attach.insert(channel.id.clone(), id);
                    }
                    ChannelFate::NotMigrated(why) => {
                        not_migrated += 1;
                        channel_lines.push_str(&format!("  not migrated  {head}: {why}\n"));
                    }
                }
            }
        }
        None => channel_lines.push_str(
            "  not read: give --channels-file (a saved GET /api/v3/channels/) to attach them; \
             the checks' channels are left as they are\n",
        ),
    }
    let mut tally = Tally::default();
    // Creates refused for the create rate are retried; one refused for a minute stops that.
    let mut waits = Waits::default();
    out.push_str("checks:\n");
    for check in &source.checks {
        let name = check
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uuid_text = check
            .get("uuid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uuid = match uuid::Uuid::parse_str(uuid_text) {
            Ok(uuid) if uuid_text.len() == 36 => uuid.hyphenated().to_string(),
            _ => {
                tally.failed += 1;
                out.push_str(&format!(
                    "  failed     {:36}  {name}: `uuid` is missing or not a UUID ({uuid_text:?})\n",
                    "?"
                ));
                continue;
            }
        };
        let line = |word: &str, rest: &str| format!("  {word:<9}  {uuid}  {name}{rest}\n");
        let mut wanted = match desired(check) {
            Ok(wanted) => wanted,
            Err(why) => {
                tally.failed += 1;
                out.push_str(&line("failed", &format!(": {why}; nothing written")));
                continue;
            }
        };
        if let Some(channels) = &source.channels {
            let ids: Vec<&str> = check
                .get("channels")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .collect();
            let mut mine: Vec<&str> = ids
                .iter()
                .filter_map(|id| attach.get(*id).map(String::as_str))
                .collect();
            mine.sort_unstable();
            mine.dedup();
            wanted.insert("channels".into(), mine.join(",").into());
            for id in ids {
                if !channels.iter().any(|c| c.id == id) {
                    channel_lines.push_str(&format!(
                        "  not migrated  {id} (of check {uuid}): not in the channels list\n"
                    ));
                    not_migrated += 1;
                }
            }
        }
        let paused = check.get("status").and_then(Value::as_str) == Some("paused");
        // A network error here fails this check, not the run: the lines of the checks
        // already written must still be printed.
        let current = match keepwatch
            .call(Method::GET, &format!("/api/v3/checks/{uuid}"), None)
            .await
        {
            Ok(current) => current,
            Err(e) => {
                tally.failed += 1;
                out.push_str(&line("failed", &format!(": {e:#}")));
                continue;
            }
        };
        let outcome = match current.status {
            StatusCode::OK => {
                let mut changed = differences(&wanted, &current.body);
                let is_paused = current.body["status"] == "paused";
                if paused != is_paused {
                    changed.push(if paused { "paused" } else { "resumed" }.into());
                }
                if changed.is_empty() {
                    tally.unchanged += 1;
                    Ok(line("unchanged", ""))
                } else if dry_run {
                    tally.updated += 1;
                    Ok(line("would update", &format!(": {}", changed.join(", "))))
                } else {
                    update(keepwatch, &uuid, &wanted, paused, is_paused)
                        .await
                        .map(|()| {
                            tally.updated += 1;
                            line("updated", &format!(": {}", changed.join(", ")))
                        })
                }
            }
            StatusCode::NOT_FOUND if dry_run => {
                tally.created += 1;
                Ok(line("would create", if paused { " (paused)" } else { "" }))
            }
            StatusCode::NOT_FOUND => create(keepwatch, &uuid, wanted, paused, &mut waits)
                .await
                .map(|()| {
                    tally.created += 1;
                    line("created", if paused { " (paused)" } else { "" })
                }),
            StatusCode::FORBIDDEN => Err(
                "a check of another keepwatch project has this UUID; nothing written".to_string(),
            ),
            other => Err(format!(
                "keepwatch answered {other}: {}",
                error_text(&current.text)
            )),
        };
        match outcome {
            Ok(text) => out.push_str(&text),
            Err(why) => {
                tally.failed += 1;
                out.push_str(&line("failed", &format!(": {why}")));
            }
        }
    }
    out.push_str("channels:\n");
    out.push_str(&channel_lines);
    let verb = |word: &str| {
        if dry_run {
            format!("would {word}")
        } else {
            format!("{word}d")
        }
    };
    out.push_str(&format!(
        "{} {}, {} {}, unchanged {}, failed {}; channels attached {attached}, not migrated \
         {not_migrated}{}\n",
        verb("create"),
        tally.created,
        verb("update"),
        tally.updated,
        tally.unchanged,
        tally.failed,
        if dry_run {
            " (dry run: nothing was written)"
        } else {
            ""
        }
    ));
    Ok((out, tally.failed == 0))
}

/// An error answer as a sentence.
fn refusal(answer: &Answer) -> String {
    format!(
        "keepwatch answered {}: {}",
        answer.status,
        error_text(&answer.text)
    )
}

/// Retrying creates that keepwatch refused for its create rate.
#[derive(Default)]
struct Waits {
    /// A create was refused for a whole minute: the check limit, not the rate; no more waits.
    given_up: bool,
    /// The user was told once that creates wait.
    told: bool,
}

/// How long to wait before a refused create is tried again, and for how long in all: the
/// create rate (`check_create_rate` a minute, 120 by default) refills its bucket evenly.
const CREATE_RETRY: Duration = Duration::from_millis(250);
const CREATE_PATIENCE: Duration = Duration::from_secs(61);

async fn create(
    keepwatch: &Keepwatch,
    uuid: &str,
    mut wanted: Map<String, Value>,
    paused: bool,
    waits: &mut Waits,
) -> Result<(), String> {
    wanted.insert("uuid".into(), uuid.into());
    let body = Value::Object(wanted);
    let started = std::time::Instant::now();
    let answer = loop {
        let answer = keepwatch
            .call(Method::POST, "/api/v3/checks/", Some(&body))
            .await
            .map_err(|e| format!("{e:#}"))?;
        // 403 on create: the project's check limit or its create rate (checks a minute).
        if answer.status == StatusCode::FORBIDDEN && !waits.given_up {
            if started.elapsed() < CREATE_PATIENCE {
                if !waits.told {
                    waits.told = true;
                    eprintln!(
                        "keepwatch refuses creates for now (its check_create_rate a minute): \
                         going on at its pace"
                    );
                }
                tokio::time::sleep(CREATE_RETRY).await;
                continue;
            }
            waits.given_up = true;
        }
        break answer;
    };
    match answer.status {
        StatusCode::CREATED => {}
        StatusCode::FORBIDDEN => {
            return Err(
                "keepwatch refused to create it: the project has its limit of checks \
                 (--check-limit) or created its allowance this minute (--check-create-rate); \
                 nothing written"
                    .into(),
            );
        }
        _ => return Err(format!("{}; nothing written", refusal(&answer))),
    }
    if paused {
        let pause = keepwatch
            .call(Method::POST, &format!("/api/v3/checks/{uuid}/pause"), None)
            .await;
        let failed = match &pause {
            Ok(answer) if answer.status == StatusCode::OK => None,
            Ok(answer) => Some(refusal(answer)),
            Err(e) => Some(format!("{e:#}")),
        };
        if let Some(why) = failed {
            // Not left half-written: the check goes again.
            let undone = keepwatch
                .call(Method::DELETE, &format!("/api/v3/checks/{uuid}"), None)
                .await
                .is_ok_and(|a| a.status == StatusCode::OK);
            return Err(if undone {
                format!("pausing it failed ({why}); the check was deleted again")
            } else {
                format!(
                    "pausing it failed ({why}), and so did deleting it: it is in keepwatch, not paused"
                )
            });
        }
    }
    Ok(())
}

async fn update(
    keepwatch: &Keepwatch,
    uuid: &str,
    wanted: &Map<String, Value>,
    paused: bool,
    is_paused: bool,
) -> Result<(), String> {
    let answer = keepwatch
        .call(
            Method::POST,
            &format!("/api/v3/checks/{uuid}"),
            Some(&Value::Object(wanted.clone())),
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
    if answer.status != StatusCode::OK {
        return Err(format!("{}; nothing written", refusal(&answer)));
    }
    if paused != is_paused {
        let action = if paused { "pause" } else { "resume" };
        let answer = keepwatch
            .call(
                Method::POST,
                &format!("/api/v3/checks/{uuid}/{action}"),
                Some(&json!({})),
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
        if answer.status != StatusCode::OK {
            return Err(format!(
                "its fields were updated but {action} failed: {}",
                refusal(&answer)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_subject_fields_become_keywords() {
        let check = json!({"name": "a", "timeout": 3600, "subject": "OK", "subject_fail": ""});
        let wanted = desired(check.as_object().unwrap()).unwrap();
        assert_eq!(wanted["success_kw"], "OK");
        assert_eq!(wanted["failure_kw"], "");
        assert_eq!(wanted["filter_subject"], true);
    }

    #[test]
    fn a_bad_schedule_or_field_is_named() {
        let check = json!({"name": "a", "schedule": "0 25 * * *", "tz": "UTC"});
        let error = desired(check.as_object().unwrap()).unwrap_err();
        assert!(
            error.contains("schedule `0 25 * * *` (tz UTC) is not valid"),
            "{error}"
        );
        let check = json!({"name": "a", "timeout": "soon"});
        let error = desired(check.as_object().unwrap()).unwrap_err();
        assert_eq!(error, "`timeout` is not a whole number of seconds");
        let check = json!({"name": "a", "schedule": "0 0 * * *", "tz": "Europe/Kiev"});
        assert_eq!(
            desired(check.as_object().unwrap()).unwrap()["tz"],
            "Europe/Kyiv"
        );
    }

    #[test]
    fn channels_attach_only_to_a_keepwatch_channel_of_the_same_kind_and_name() {
        let hc = |kind: &str, name: &str| HcChannel {
            id: "x".into(),
            name: name.into(),
            kind: kind.into(),
        };
        let keepwatch = [hc("webhook", "listener"), hc("email", "ops")];
        assert!(matches!(
            channel_fate(&hc("webhook", "listener"), &keepwatch),
            ChannelFate::Attached(_)
        ));
        let ChannelFate::NotMigrated(why) = channel_fate(&hc("email", "listener"), &keepwatch)
        else {
            panic!("an email channel named like a webhook one is not it")
        };
        assert!(why.starts_with("needs its address"), "{why}");
        let ChannelFate::NotMigrated(why) = channel_fate(&hc("po", "phone"), &keepwatch) else {
            panic!()
        };
        assert!(why.contains("`pushover` contact"), "{why}");
        let ChannelFate::NotMigrated(why) = channel_fate(&hc("pd", "pager"), &keepwatch) else {
            panic!()
        };
        assert_eq!(why, "keepwatch has no pd channels");
    }
}
