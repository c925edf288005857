//! `keepwatch drill` and `keepwatch oncall`: the on-call configuration file put to the
//! question "who gets paged when", with time as an input, so a Saturday 2 a.m. failure can be
//! replayed on a Tuesday afternoon.

use std::path::{Path, PathBuf};

use anyhow::Context;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use clap::Args;
use keepwatch_core::alert::drill;
use keepwatch_core::alert::routing;

use crate::runner::duration;
use keepwatch_core::oncall::config::OnCall;

/// Reads and checks an on-call file; errors start with the file name.
pub fn load(path: &Path) -> anyhow::Result<OnCall> {
    read(path).map(|(_, config)| config)
}

/// The file's text and the configuration it holds.
fn read(path: &Path) -> anyhow::Result<(String, OnCall)> {
    let text = crate::config::read_text(path)?;
    let config = OnCall::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    Ok((text, config))
}

/// "alice, bob", or "nobody".
fn who(users: &[String]) -> String {
    if users.is_empty() {
        "nobody".to_string()
    } else {
        users.join(", ")
    }
}

#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// The on-call configuration file [default: ask the server what is applied there]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Ask this server (the applied configuration, checks by UUID or slug) instead of a file
    #[arg(long, env = "KEEPWATCH_SERVER", default_value = crate::runner::DEFAULT_SERVER,
          num_args = 0..=1, default_missing_value = crate::runner::DEFAULT_SERVER, value_name = "URL")]
    pub server: String,
    /// An API key of the project (read-only is enough), to ask the server
    #[arg(long, env = "KEEPWATCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The service the alert belongs to; with --check, the check's own `service` field
    #[arg(long, required_unless_present = "check")]
    pub service: Option<String>,
    /// The alert is this check's (UUID, or slug: the server's checks, or a file's
    /// `[[checks]]`): its service is the one the configuration binds the check to, else the
    /// check's own, else `default`, else the only service, as the engine decides; a service
    /// the configuration does not have is shown unrouted
    #[arg(long, value_name = "UUID|SLUG")]
    pub check: Option<String>,
    /// What the check did
    #[arg(long, default_value = "down", value_parser = ["down", "failed", "hung", "overlap", "anomaly"])]
    pub event: String,
    /// When the alert fires (RFC 3339; times are printed in its offset) [default: now];
    /// with --sweep, when the swept week starts
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Somebody acknowledges this long after the alert [default: nobody does]
    #[arg(long, value_parser = duration, value_name = "DURATION", conflicts_with = "sweep")]
    pub ack_after: Option<Duration>,
    /// How long to follow the alert (each alert, in a sweep)
    #[arg(long, default_value = "24h", value_parser = duration, value_name = "DURATION")]
    pub horizon: Duration,
    /// Drill an alert at every --step of a week from --at (a check with a known schedule:
    /// at each of its deadlines) and print the time to the first high-urgency page as a table
    /// of days × hours, the worst start and the medians
    #[arg(long, value_parser = ["week"])]
    pub sweep: Option<String>,
    /// The step of a sweep
    #[arg(long, default_value = "1h", value_parser = duration, value_name = "DURATION")]
    pub step: Duration,
    /// text, or json (the API's answer)
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// Exit with status 3 if the alert (any start of a sweep) gets no high-urgency page
    /// within this time
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub fail_if_no_high_within: Option<Duration>,
    /// Exit with status 3 if the alert (any start of a sweep) pages nobody within this time
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub fail_if_no_page_within: Option<Duration>,
    /// Send the drill for real, now, through the server (a full-access key): the people and
    /// contacts its timeline names get real notifications marked "DRILL — not a real alert",
    /// each at its time, until someone acknowledges with the link in theirs; then print who
    /// was reached and how fast (exit 3 if nobody acknowledged within --wait)
    #[arg(long, conflicts_with_all = ["file", "at", "sweep", "ack_after"])]
    pub live: bool,
    /// With --live: how long to wait for an acknowledgment before printing the report
    /// [default: 30m]
    #[arg(long, value_parser = duration, value_name = "DURATION", requires = "live")]
    pub wait: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct OncallArgs {
    /// Read this on-call configuration file instead of asking the server
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub server: crate::runner::Server,
    /// An API key of the project (read-only is enough), to ask the server
    #[arg(long, env = "KEEPWATCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Only this schedule [default: all, by name]
    #[arg(long)]
    pub schedule: Option<String>,
    /// The time to ask about (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// List every shift from --at to this time instead
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only the shifts of this person (with --until or --ical)
    #[arg(long)]
    pub user: Option<String>,
    /// Print an iCalendar feed (RFC 5545) of the shifts from 7 days before --at to 90 days
    /// after, for a calendar app to import
    #[arg(long, conflicts_with = "until")]
    pub ical: bool,
}

fn parse_at(text: &str) -> anyhow::Result<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text).map_err(|_| {
        anyhow::anyhow!("--at `{text}` is not an RFC 3339 time such as 2026-11-28T00:00:00-07:00")
    })
}

/// The exit status of a drill whose `--fail-if-…` threshold is not met.
pub const DRILL_FAILED: u8 = 3;

fn minutes(d: Duration) -> i64 {
    (d.as_secs() / 60) as i64
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `keepwatch drill`: the alert's timeline (or a week sweep) and whether the thresholds
/// hold (`false`: exit [`DRILL_FAILED`]). The timeline is [`routing::timeline`], which the
/// engine's pager records as time passes; with a file it runs here, without one on the
/// server (`GET /api/v1/drill`) over the applied configuration.
pub async fn drill(args: &DrillArgs) -> anyhow::Result<(String, bool)> {
    let at = match &args.at {
        Some(text) => parse_at(text)?,
        None => Utc::now().fixed_offset(),
    };
    if args.horizon > Duration::from_secs(31 * 86_400) {
        anyhow::bail!("--horizon: at most 31 days");
    }
    if args.step < Duration::from_secs(60) {
        anyhow::bail!("--step: at least 1 minute");
    }
    if args.live {
        return live_drill(args).await;
    }
    let body = match &args.file {
        Some(file) => drill_file(args, file, at)?,
        None => drill_server(args, at).await?,
    };
    let failures: Vec<String> =
        serde_json::from_value(body["failures"].clone()).unwrap_or_default();
    let outcome: drill::Outcome = serde_json::from_value(body.clone())
        .context("the server's drill answer is not a drill report")?;
    let mut out = match args.format.as_str() {
        "json" => format!("{}\n", serde_json::to_string_pretty(&body)?),
        _ => match &outcome {
            drill::Outcome::Drill(report) => drill::text(report, *at.offset()),
            drill::Outcome::Sweep(sweep) => drill::sweep_text(sweep, *at.offset()),
        },
    };
    if args.format != "json" {
        for failure in &failures {
            out.push_str(&format!("FAIL: {failure}\n"));
        }
    }
    Ok((out, failures.is_empty()))
}

/// A drill over a file, here; the same JSON the server answers.
fn drill_file(
    args: &DrillArgs,
    file: &Path,
    at: DateTime<FixedOffset>,
) -> anyhow::Result<serde_json::Value> {
    let config = load(file)?;
    let event = drill::Event::parse(&args.event).unwrap_or(drill::Event::Down);
    // A check's alert goes where the server would send it, known to the file or not; a
    // service named alone must be one of the file's (a typo would otherwise drill nothing).
    let subject = match &args.check {
        Some(check) if uuid::Uuid::parse_str(check).is_ok() => drill::Subject {
            service: routing::service_for(Some(&config), check, args.service.as_deref()),
            check: Some(check.clone()),
            schedule: None,
            event,
        },
        Some(slug) => drill::Subject::declared(&config, slug, event).ok_or_else(|| {
            anyhow::anyhow!(
                "--check: `{slug}` is not a check UUID nor a slug of the file's [[checks]]"
            )
        })?,
        None => {
            let service = args.service.clone().unwrap_or_default();
            if !config.services.contains_key(&service) {
                let mut known: Vec<&String> = config.services.keys().collect();
                known.sort();
                anyhow::bail!(
                    "no service `{service}` in {} (services: {known:?})",
                    file.display()
                );
            }
            drill::Subject {
                service,
                check: None,
                schedule: None,
                event,
            }
        }
    };
    let options = drill::Options {
        at: at.to_utc(),
        ack_after: args.ack_after.map(delta),
        horizon: delta(args.horizon),
        sweep: args
            .sweep
            .as_ref()
            .map(|_| (TimeDelta::days(7), delta(args.step))),
    };
    let outcome = drill::run(Some(&config), &subject, &options);
    let failures = drill::failures(
        &outcome,
        args.fail_if_no_high_within.map(delta),
        args.fail_if_no_page_within.map(delta),
    );
    let mut body = serde_json::to_value(&outcome)?;
    body["failures"] = serde_json::json!(failures);
    Ok(body)
}

/// A drill on the server: `GET /api/v1/drill`.
async fn drill_server(
    args: &DrillArgs,
    at: DateTime<FixedOffset>,
) -> anyhow::Result<serde_json::Value> {
    let Some(key) = &args.api_key else {
        anyhow::bail!("give --api-key (or KEEPWATCH_API_KEY) to ask the server, or -f <FILE>");
    };
    let server = crate::runner::Server {
        server: args.server.clone(),
    };
    let base = server.base()?;
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/drill"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("at", &at.to_rfc3339());
        q.append_pair("event", &args.event);
        q.append_pair("horizon_minutes", &minutes(args.horizon).to_string());
        if let Some(service) = &args.service {
            q.append_pair("service", service);
        }
        if let Some(check) = &args.check {
            q.append_pair("check", check);
        }
        if let Some(ack) = args.ack_after {
            q.append_pair("ack_after_minutes", &minutes(ack).to_string());
        }
        if let Some(sweep) = &args.sweep {
            q.append_pair("sweep", sweep);
            q.append_pair("step_minutes", &minutes(args.step).to_string());
        }
        if let Some(high) = args.fail_if_no_high_within {
            q.append_pair("fail_if_no_high_within_minutes", &minutes(high).to_string());
        }
        if let Some(page) = args.fail_if_no_page_within {
            q.append_pair("fail_if_no_page_within_minutes", &minutes(page).to_string());
        }
    }
    let request = crate::runner::client()?
        .get(url)
        .header("X-Api-Key", key)
        .timeout(Duration::from_secs(60));
    crate::alert::send(request, base).await
}

/// `keepwatch drill --live`: starts the live drill on the server (`POST /api/v1/drill/live`),
/// then follows it (`GET /api/v1/drill/live/<id>`, every second) until someone acknowledges
/// or `--wait` passes, and prints its report; `false` if nobody acknowledged.
async fn live_drill(args: &DrillArgs) -> anyhow::Result<(String, bool)> {
    let Some(key) = &args.api_key else {
        anyhow::bail!("give --api-key (or KEEPWATCH_API_KEY, full access) for a live drill");
    };
    let server = crate::runner::Server {
        server: args.server.clone(),
    };
    let base = server.base()?;
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/drill/live"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("event", &args.event);
        q.append_pair("horizon_minutes", &minutes(args.horizon).to_string());
        if let Some(service) = &args.service {
            q.append_pair("service", service);
        }
        if let Some(check) = &args.check {
            q.append_pair("check", check);
        }
    }
    let client = crate::runner::client()?;
    let started = crate::alert::send(
        client
            .post(url)
            .header("X-Api-Key", key)
            .timeout(Duration::from_secs(60)),
        base,
    )
    .await?;
    let id = started["id"]
        .as_i64()
        .context("the server's answer has no drill id")?;
    eprintln!(
        "live drill #{id} started: {} notification(s) planned; waiting for an acknowledgment",
        started["notices"].as_array().map_or(0, Vec::len)
    );
    let wait = args.wait.unwrap_or(Duration::from_secs(30 * 60));
    let until = std::time::Instant::now() + wait;
    let mut drill = started;
    loop {
        if !drill["acknowledged_at"].is_null() || std::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        drill = crate::alert::send(
            client
                .get(format!("{base}/api/v1/drill/live/{id}"))
                .header("X-Api-Key", key)
                .timeout(Duration::from_secs(30)),
            base,
        )
        .await?;
    }
    let out = match args.format.as_str() {
        "json" => format!("{}\n", serde_json::to_string_pretty(&drill)?),
        _ => drill["text"].as_str().unwrap_or_default().to_string(),
    };
    Ok((out, !drill["acknowledged_at"].is_null()))
}

/// `keepwatch oncall`: who is on call at the time asked, until when, and who comes next.
/// `keepwatch oncall` without `-f`: asks the server (`GET /api/v1/oncall/`).
pub async fn oncall_from_server(args: &OncallArgs) -> anyhow::Result<String> {
    if args.until.is_some() || args.user.is_some() || args.ical {
        anyhow::bail!(
            "--until, --user and --ical read a file: give -f <FILE> (the server serves feeds at /ical/<token>.ics)"
        );
    }
    let Some(key) = &args.api_key else {
        anyhow::bail!("give --api-key (or KEEPWATCH_API_KEY) to ask the server, or -f <FILE>");
    };
    let at = match &args.at {
        Some(text) => parse_at(text)?,
        None => Utc::now().fixed_offset(),
    };
    let base = args.server.base()?;
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/oncall/"))?;
    url.query_pairs_mut().append_pair("at", &at.to_rfc3339());
    if let Some(schedule) = &args.schedule {
        url.query_pairs_mut().append_pair("schedule", schedule);
    }
    let request = crate::runner::client()?
        .get(url.clone())
        .header("X-Api-Key", key)
        .timeout(Duration::from_secs(10));
    let body = crate::alert::send(request, base).await?;
    let users = |v: &serde_json::Value| {
        let names: Vec<String> = serde_json::from_value(v.clone()).unwrap_or_default();
        who(&names)
    };
    let mut out = String::new();
    for entry in body["oncall"].as_array().into_iter().flatten() {
        let until = entry["until"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                t.with_timezone(at.offset())
                    .format("%a %Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "{}: {} until {until}, then {}\n",
            entry["schedule"].as_str().unwrap_or(""),
            users(&entry["users"]),
            users(&entry["next"])
        ));
    }
    if out.is_empty() {
        out.push_str("no schedules (apply an on-call file with keepwatch apply -f <FILE>)\n");
    }
    Ok(out)
}

/// `keepwatch oncall -f <FILE>`: who is on call at the time asked, until when, and who is next.
pub fn oncall(args: &OncallArgs) -> anyhow::Result<String> {
    let file = args.file.as_deref().context("-f <FILE> is required here")?;
    let config = load(file)?;
    let at = match &args.at {
        Some(text) => parse_at(text)?,
        None => Utc::now().fixed_offset(),
    };
    let offset = *at.offset();
    let now = at.to_utc();
    let mut names: Vec<&String> = config.schedules.keys().collect();
    names.sort();
    if let Some(only) = &args.schedule {
        if !config.schedules.contains_key(only) {
            anyhow::bail!(
                "no schedule `{only}` in {} (schedules: {names:?})",
                file.display()
            );
        }
        names.retain(|n| *n == only);
    }
    let local = |t: DateTime<Utc>| t.with_timezone(&offset).format("%a %Y-%m-%d %H:%M");
    let mut out = String::new();
    if let Some(user) = &args.user
        && !config.people.contains_key(user)
    {
        anyhow::bail!("no person `{user}` in {}", file.display());
    }
    let shifts_in = |name: &str, from, to| {
        let schedule = &config.schedules[name];
        match &args.user {
            Some(user) => schedule.shifts_of(user, from, to),
            None => schedule.shifts(from, to),
        }
    };
    if args.ical {
        let (from, to) = (now - TimeDelta::days(7), now + TimeDelta::days(90));
        // Several schedules in one feed: each event says which schedule it belongs to
        // (which also keeps the event ids of two schedules apart).
        let label = names.len() > 1 || args.user.is_some();
        let mut shifts: Vec<_> = names
            .iter()
            .flat_map(|name| {
                shifts_in(name, from, to).into_iter().map(move |mut s| {
                    if label {
                        s.users = vec![format!("{name}: {}", s.users.join(", "))];
                    }
                    s
                })
            })
            .collect();
        shifts.sort_by_key(|s| s.start);
        let title = match (&args.user, &args.schedule) {
            (Some(user), _) => format!("On call: {user}"),
            (None, Some(schedule)) => format!("On call: {schedule}"),
            (None, None) => "On call".to_string(),
        };
        let feed_id = title.to_lowercase().replace([' ', ':'], "-");
        return Ok(keepwatch_core::oncall::ical::feed(
            &title,
            &feed_id,
            &shifts,
            |s| s.users.join(", "),
            Utc::now(),
        ));
    }
    if let Some(until) = &args.until {
        let until = parse_at(until)?.to_utc();
        if until <= now || until - now > TimeDelta::days(366) {
            anyhow::bail!("--until must be after --at and at most a year later");
        }
        for name in names {
            for shift in shifts_in(name, now, until) {
                out.push_str(&format!(
                    "{name}  {} → {}  {}\n",
                    local(shift.start),
                    local(shift.end),
                    who(&shift.users)
                ));
            }
        }
        return Ok(out);
    }
    for name in names {
        let handover = config.schedules[name].handover(now);
        out.push_str(&format!(
            "{name}: {} until {}, then {}\n",
            who(&handover.users),
            local(handover.until),
            who(&handover.next)
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The on-call configuration file
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Show what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The project the configuration belongs to
    #[arg(long, default_value = "default")]
    pub project: String,
    /// Apply through this running server (PUT /api/v1/oncall/config) instead of writing the
    /// database directly; needed for a file that declares checks. The API key's project is
    /// the one changed (--project and the storage options are not used)
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// A full-access API key of the project, with --server
    #[arg(long, env = "KEEPWATCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// The on-call configuration file (its `[[checks]]` too; no history) [default: ask the
    /// server, which adds its checks and what it recorded]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Ask this server (GET /api/v1/audit) instead of reading a file
    #[arg(long, env = "KEEPWATCH_SERVER", default_value = crate::runner::DEFAULT_SERVER,
          num_args = 0..=1, default_missing_value = crate::runner::DEFAULT_SERVER, value_name = "URL")]
    pub server: String,
    /// An API key of the project (read-only is enough), to ask the server
    #[arg(long, env = "KEEPWATCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// text, or json (the API's answer)
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// Exit with status 3 if there is a finding at this level or worse
    #[arg(long, value_parser = ["warning", "error"])]
    pub fail_on: Option<String>,
    /// A high-urgency page must reach someone within this
    #[arg(long, default_value = "30m", value_parser = duration, value_name = "DURATION")]
    pub high_within: Duration,
    /// Audit as of this time (RFC 3339) [default: now]; with a file only
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

/// `keepwatch audit`: the findings, and whether `--fail-on` holds (`false`: exit 3).
pub async fn audit(args: &AuditArgs) -> anyhow::Result<(String, bool)> {
    use keepwatch_core::audit;
    let high = delta(args.high_within);
    let report = match &args.file {
        Some(file) => {
            let config = load(file)?;
            let now = match &args.at {
                Some(text) => parse_at(text)?.to_utc(),
                None => Utc::now(),
            };
            let checks = audit::declared_checks(&config, now);
            let settings = audit::Settings {
                high_within: high,
                ..audit::Settings::default()
            };
            audit::audit(&config, &checks, &audit::History::default(), now, &settings)
        }
        None => {
            let Some(key) = &args.api_key else {
                anyhow::bail!(
                    "give --api-key (or KEEPWATCH_API_KEY) to ask the server, or -f <FILE>"
                );
            };
            if args.at.is_some() {
                anyhow::bail!("--at audits a file: give -f <FILE>");
            }
            let server = crate::runner::Server {
                server: args.server.clone(),
            };
            let base = server.base()?;
            let url = format!(
                "{base}/api/v1/audit?high_within_minutes={}",
                high.num_minutes().max(1)
            );
            let request = crate::runner::client()?
                .get(url)
                .header("X-Api-Key", key)
                .timeout(Duration::from_secs(60));
            let body = crate::alert::send(request, base).await?;
            serde_json::from_value(body).context("the server's answer is not an audit report")?
        }
    };
    let out = match args.format.as_str() {
        "json" => format!("{}\n", serde_json::to_string_pretty(&report)?),
        _ => audit::text(&report),
    };
    let level = args.fail_on.as_deref().and_then(audit::Severity::parse);
    Ok((out, level.is_none_or(|level| !report.fails(level))))
}

/// `keepwatch apply --server`: the same through the server's API.
pub async fn apply_remote(args: &ApplyArgs) -> anyhow::Result<String> {
    let (text, _) = read(&args.file)?;
    let server = crate::runner::Server {
        server: args.server.clone().unwrap_or_default(),
    };
    let base = server.base()?;
    let key = args
        .api_key
        .as_deref()
        .context("--server needs --api-key (or KEEPWATCH_API_KEY), a full-access key")?;
    let dry_run = if args.dry_run { "?dry_run=1" } else { "" };
    let request = crate::runner::client()?
        .put(format!("{base}/api/v1/oncall/config{dry_run}"))
        .header("X-Api-Key", key)
        .header(
            "X-Keepwatch-User",
            std::env::var("USER").unwrap_or_default(),
        )
        .body(text)
        .timeout(Duration::from_secs(60));
    let body = crate::alert::send(request, base)
        .await
        .with_context(|| args.file.display().to_string())?;
    Ok(report(&body, args.dry_run))
}

/// What `keepwatch apply` prints, from the answer of `PUT /api/v1/oncall/config`.
fn report(body: &serde_json::Value, dry_run: bool) -> String {
    let text_of = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let list = |key: &str| body[key].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    if list("changes").is_empty() {
        out.push_str("no changes\n");
    }
    for change in list("changes") {
        out.push_str(&format!("{}\n", text_of(&change)));
    }
    if !list("unverified_contacts").is_empty() {
        out.push_str("unverified contacts (pages go to them, but no code has reached them yet):\n");
        for c in list("unverified_contacts") {
            out.push_str(&format!(
                "  {} {}\n",
                text_of(&c["person"]),
                text_of(&c["contact"])
            ));
        }
    }
    if let Ok(audit) =
        serde_json::from_value::<keepwatch_core::audit::Report>(body["audit"].clone())
    {
        out.push_str("audit:\n");
        out.push_str(&keepwatch_core::audit::text(&audit));
    }
    if dry_run {
        out.push_str("dry run: nothing was stored\n");
        return out;
    }
    out.push_str("calendar feeds:\n");
    for feed in list("calendar_feeds") {
        out.push_str(&format!(
            "  {} {}: {}\n",
            text_of(&feed["kind"]),
            text_of(&feed["name"]),
            text_of(&feed["url"])
        ));
    }
    out.push_str("integration keys (events API routing_key, /api/v1/alertmanager/<key>):\n");
    for key in list("integration_keys") {
        out.push_str(&format!(
            "  service {}: {}\n",
            text_of(&key["service"]),
            text_of(&key["key"])
        ));
    }
    out
}

/// `keepwatch apply`: checks the file, prints the changes, stores it (unless a dry run) and
/// prints the calendar feed paths.
pub async fn apply(
    store: &keepwatch_store::Store,
    project_id: i64,
    args: &ApplyArgs,
) -> anyhow::Result<String> {
    let (text, _) = read(&args.file)?;
    let applied = keepwatch_server::api::oncall_config::apply_config(
        store,
        None,
        project_id,
        &text,
        args.dry_run,
        &format!("cli ({})", std::env::var("USER").unwrap_or_default()),
        Utc::now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:?}"))?
    .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    Ok(report(
        &keepwatch_server::api::oncall_config::applied_json(&applied, "", args.dry_run),
        args.dry_run,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../examples/oncall.toml");

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oncall.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn drill_args(path: PathBuf, at: &str, ack: Option<&str>) -> DrillArgs {
        DrillArgs {
            file: Some(path),
            server: String::new(),
            api_key: None,
            service: Some("billing".into()),
            check: None,
            event: "down".into(),
            at: Some(at.into()),
            ack_after: ack.map(|a| duration(a).unwrap()),
            horizon: duration("3h").unwrap(),
            sweep: None,
            step: duration("1h").unwrap(),
            format: "text".into(),
            fail_if_no_high_within: None,
            fail_if_no_page_within: None,
            live: false,
            wait: None,
        }
    }

    async fn drill(args: &DrillArgs) -> anyhow::Result<String> {
        super::drill(args).await.map(|(out, _)| out)
    }

    #[tokio::test]
    async fn the_readme_example_drills_a_saturday_night_in_denver() {
        let (_dir, path) = write(EXAMPLE);
        let out = drill(&drill_args(path.clone(), "2026-11-28T00:00:00-07:00", None))
            .await
            .unwrap();
        let expected = "\
Alert on service `billing` at Sat 2026-11-28 00:00 (policy `billing`)
urgency: low (outside support hours); raised to high after 10 min without acknowledgment
 +0:00  Sat 2026-11-28 00:00  escalation step 1 (pass 1)
 +0:00  Sat 2026-11-28 00:00    notify alice by email <alice@example.com> (low)
 +0:10  Sat 2026-11-28 00:10  urgency raised to high
 +0:10  Sat 2026-11-28 00:10    notify alice by ntfy <https://ntfy.sh/alice-pages> (high)
 +0:10  Sat 2026-11-28 00:10    notify alice by email <alice@example.com> (high)
 +0:15  Sat 2026-11-28 00:15  escalation step 2 (pass 1)
 +0:15  Sat 2026-11-28 00:15    notify bob by ntfy <https://ntfy.sh/bob-pages> (high)
 +0:15  Sat 2026-11-28 00:15    notify alice by ntfy <https://ntfy.sh/alice-pages> (high)
 +0:30  Sat 2026-11-28 00:30  escalation step 1 (pass 2)
 +0:30  Sat 2026-11-28 00:30    notify alice by ntfy <https://ntfy.sh/alice-pages> (high)
 +0:30  Sat 2026-11-28 00:30    notify alice by email <alice@example.com> (high)
 +0:35  Sat 2026-11-28 00:35    notify alice by ntfy <https://ntfy.sh/alice-pages> (high)
 +0:45  Sat 2026-11-28 00:45  escalation step 2 (pass 2)
 +0:45  Sat 2026-11-28 00:45    notify bob by ntfy <https://ntfy.sh/bob-pages> (high)
 +1:00  Sat 2026-11-28 01:00  last resort
 +1:00  Sat 2026-11-28 01:00    notify lee by phone <https://hooks.example.com/page-lee> (high, Sat 09:00 Europe/Berlin)
first high-urgency page: +0:10 (alice by ntfy)
nobody acknowledged: 10 notifications in 3h
";
        assert_eq!(out, expected);
        // On a weekday afternoon the same failure is high urgency from the first page.
        let out = drill(&drill_args(
            path.clone(),
            "2026-11-27T14:00:00-07:00",
            Some("12m"),
        ))
        .await
        .unwrap();
        assert!(
            out.contains("urgency: high (inside support hours)\n"),
            "{out}"
        );
        assert!(
            out.contains("first high-urgency page: +0:00 (alice by ntfy)"),
            "{out}"
        );
        assert!(
            out.ends_with("acknowledged at +0:12: nothing more is sent\n"),
            "{out}"
        );
        assert!(!out.contains("step 2"), "acknowledged before step 2: {out}");
    }

    #[tokio::test]
    async fn drills_show_maintenance_suppressions_and_unrouted_alerts_as_the_engine_records_them() {
        // Billing is in maintenance for the first 12 minutes of Saturday, Denver time.
        let window = "[[maintenance]]\nservice = \"billing\"\n\
             start = \"2026-11-28T00:00:00-07:00\"\nend = \"2026-11-28T00:12:00-07:00\"\n";
        let (_dir, path) = write(&format!("{EXAMPLE}\n{window}"));
        let mut args = drill_args(path.clone(), "2026-11-28T00:00:00-07:00", Some("20m"));
        let out = drill(&args).await.unwrap();
        assert_eq!(
            out.lines().skip(2).collect::<Vec<_>>(),
            [
                " +0:00  Sat 2026-11-28 00:00  escalation step 1 (pass 1)",
                " +0:00  Sat 2026-11-28 00:00    suppressed alice by email (low, maintenance window)",
                " +0:10  Sat 2026-11-28 00:10  urgency raised to high",
                " +0:10  Sat 2026-11-28 00:10    suppressed alice by ntfy (high, maintenance window)",
                " +0:10  Sat 2026-11-28 00:10    suppressed alice by email (high, maintenance window)",
                " +0:15  Sat 2026-11-28 00:15  escalation step 2 (pass 1)",
                " +0:15  Sat 2026-11-28 00:15    notify bob by ntfy <https://ntfy.sh/bob-pages> (high)",
                " +0:15  Sat 2026-11-28 00:15    notify alice by ntfy <https://ntfy.sh/alice-pages> (high)",
                "first high-urgency page: +0:15 (bob by ntfy)",
                "acknowledged at +0:20: nothing more is sent",
            ]
        );
        // A check whose own service the file does not have: recorded, nobody paged.
        args.check = Some("0b6a5f0e-3c1d-4e8f-9a2b-7c4d5e6f7a8b".into());
        args.service = Some("payroll".into());
        args.ack_after = None;
        assert_eq!(
            drill(&args).await.unwrap(),
            "\
Alert on service `payroll` at Sat 2026-11-28 00:00 (not in the file: no escalation policy)
check 0b6a5f0e-3c1d-4e8f-9a2b-7c4d5e6f7a8b: down
urgency: high (unknown service)
 +0:00  Sat 2026-11-28 00:00  unrouted: nobody is paged
first high-urgency page: none
nobody acknowledged: 0 notifications in 3h
"
        );
        // Without its own service the check goes to the file's only one.
        args.service = None;
        assert!(
            drill(&args)
                .await
                .unwrap()
                .starts_with("Alert on service `billing`")
        );
        // A check that is not a UUID is a mistake, not a drill of some other service.
        args.check = Some("nightly-backup".into());
        assert_eq!(
            drill(&args).await.unwrap_err().to_string(),
            "--check: `nightly-backup` is not a check UUID nor a slug of the file's [[checks]]"
        );
    }

    #[test]
    fn oncall_says_who_until_when_and_who_is_next() {
        let (_dir, path) = write(EXAMPLE);
        let args = OncallArgs {
            file: Some(path),
            server: crate::runner::Server {
                server: "http://127.0.0.1:9".into(),
            },
            api_key: None,
            schedule: None,
            at: Some("2026-11-28T00:00:00-07:00".into()),
            until: None,
            user: None,
            ical: false,
        };
        assert_eq!(
            oncall(&args).unwrap(),
            "primary: alice until Mon 2026-11-30 09:00, then bob\n\
             secondary: bob until Mon 2026-11-30 09:00, then alice\n"
        );
    }

    #[test]
    fn oncall_lists_shifts_and_writes_a_feed() {
        let (_dir, path) = write(EXAMPLE);
        let mut args = OncallArgs {
            file: Some(path),
            server: crate::runner::Server {
                server: "http://127.0.0.1:9".into(),
            },
            api_key: None,
            schedule: Some("primary".into()),
            at: Some("2026-11-28T00:00:00-07:00".into()),
            until: Some("2026-12-14T09:00:00-07:00".into()),
            user: None,
            ical: false,
        };
        assert_eq!(
            oncall(&args).unwrap(),
            "primary  Sat 2026-11-28 00:00 → Mon 2026-11-30 09:00  alice\n\
             primary  Mon 2026-11-30 09:00 → Mon 2026-12-07 09:00  bob\n\
             primary  Mon 2026-12-07 09:00 → Mon 2026-12-14 09:00  alice\n"
        );
        args.user = Some("bob".into());
        assert_eq!(
            oncall(&args).unwrap(),
            "primary  Mon 2026-11-30 09:00 → Mon 2026-12-07 09:00  bob\n"
        );
        args.until = None;
        args.ical = true;
        let feed = oncall(&args).unwrap();
        assert!(
            feed.starts_with("BEGIN:VCALENDAR\r\n") && feed.contains("DTSTART:20261130T160000Z")
        );
        args.user = Some("nobody-here".into());
        assert!(
            oncall(&args)
                .unwrap_err()
                .to_string()
                .contains("no person `nobody-here`")
        );
    }

    #[tokio::test]
    async fn mistakes_in_the_file_are_named_with_where_they_are() {
        let cases = [
            (
                "[[people]]\nid = \"a\"\nphone = 1\n",
                "unknown field `phone`",
            ),
            ("[[people]]\nid = \"a\"\nphone = 1\n", "line 3"),
            (
                "[[schedules]]\nname = \"s\"\ntz = \"Mars/Olympus\"\n",
                "schedules[0] (s).tz: unknown time zone `Mars/Olympus`",
            ),
            (
                "[[schedules]]\nname = \"s\"\ntz = \"UTC\"\n[[schedules.layers]]\nname = \"l\"\nparticipants = []\nshift = \"1d\"\nstart = \"2026-11-02T09:00\"\n",
                "schedule `s`: layer `l` has no participants",
            ),
            (
                "[[schedules]]\nname = \"s\"\ntz = \"UTC\"\n[[schedules.layers]]\nname = \"l\"\nparticipants = [\"zed\"]\nshift = \"1d\"\nstart = \"2026-11-02T09:00\"\n",
                "layer `l`: unknown user `zed`",
            ),
            (
                "[[schedules]]\nname = \"s\"\ntz = \"UTC\"\n[[schedules.layers]]\nname = \"l\"\nparticipants = []\nshift = \"fortnight\"\nstart = \"2026-11-02T09:00\"\n",
                "schedules[0] (s).layers[0].shift: `fortnight` is not a shift length",
            ),
            (
                "[[policies]]\nname = \"p\"\nsteps = [{ targets = [\"user:ghost\"], delay = 5 }]\n",
                "policies[0] (p).steps[0].targets: unknown user `ghost`",
            ),
            (
                "[[policies]]\nname = \"p\"\nsteps = [{ targets = [\"team:ops\"], delay = 5 }]\n",
                "`team:ops` is not `user:<id>` or `schedule:<name>`",
            ),
            (
                // A policy cannot reference a policy (itself or another): no loops to follow.
                "[[policies]]\nname = \"p\"\nsteps = [{ targets = [\"policy:p\"], delay = 5 }]\n",
                "policies[0] (p).steps[0].targets: `policy:p` is not `user:<id>` or `schedule:<name>`",
            ),
            (
                "[[people]]\nid = \"a\"\ntz = \"Mars/Olympus\"\n",
                "people[0] (a).tz: unknown time zone `Mars/Olympus`",
            ),
            (
                "[[services]]\nname = \"x\"\npolicy = \"nope\"\n",
                "services[0] (x).policy: unknown policy `nope`",
            ),
            (
                "[[schedules]]\nname = \"s\"\ntz = \"UTC\"\n[[schedules]]\nname = \"s\"\ntz = \"UTC\"\n",
                "schedules[1] (s).name: `s` appears twice",
            ),
            (
                "[[people]]\nid = \"a\"\n[[policies]]\nname = \"p\"\nrepeat = 4294967295\nsteps = [{ targets = [\"user:a\"], delay = 5 }]\n",
                "policies[0] (p).repeat: 4294967295 is out of range (0 to 20)",
            ),
        ];
        for (text, expected) in cases {
            let (_dir, path) = write(text);
            let error = format!("{:#}", load(&path).expect_err(text));
            assert!(error.starts_with(&path.display().to_string()), "{error}");
            assert!(error.contains(expected), "{text}\n→ {error}");
        }
        let (_dir, path) = write(EXAMPLE);
        let mut args = drill_args(path, "Saturday", None);
        assert!(
            drill(&args)
                .await
                .unwrap_err()
                .to_string()
                .contains("--at `Saturday` is not an RFC 3339 time")
        );
        args.at = Some("2026-11-28T00:00:00Z".into());
        args.service = Some("payroll".into());
        assert!(
            drill(&args)
                .await
                .unwrap_err()
                .to_string()
                .contains("no service `payroll`")
        );
    }
}
