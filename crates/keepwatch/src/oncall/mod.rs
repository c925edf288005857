//! `keepwatch drill` and `keepwatch oncall`: the on-call configuration file put to the
//! question "who gets paged when", with time as an input, so a Saturday 2 a.m. failure can be
//! replayed on a Tuesday afternoon.

use std::path::{Path, PathBuf};

use anyhow::Context;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use clap::Args;
use keepwatch_core::alert::paging::{Page, Urgency, UrgencyRule};
use keepwatch_core::alert::routing::{self, Notification, Routed};

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
    /// The on-call configuration file
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// The service the alert belongs to; with --check, the check's own `service` field
    #[arg(long, required_unless_present = "check")]
    pub service: Option<String>,
    /// The alert is this check's (UUID): its service is the one the file binds the check to,
    /// else --service, else `default`, else the file's only service, as the server decides;
    /// a service the file does not have is shown unrouted
    #[arg(long, value_name = "UUID")]
    pub check: Option<String>,
    /// When the alert fires (RFC 3339; times are printed in its offset)
    #[arg(long, value_name = "TIME")]
    pub at: String,
    /// Somebody acknowledges this long after the alert [default: nobody does]
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub ack_after: Option<Duration>,
    /// How long to follow the alert
    #[arg(long, default_value = "24h", value_parser = duration, value_name = "DURATION")]
    pub horizon: Duration,
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

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let minutes = (to - from).num_minutes();
    format!("+{}:{:02}", minutes / 60, minutes % 60)
}

/// `keepwatch drill`: prints the alert's timeline and the time to the first high-urgency page.
/// The timeline is [`routing::timeline`], which the engine's pager records as time passes.
pub fn drill(args: &DrillArgs) -> anyhow::Result<String> {
    let config = load(&args.file)?;
    let at = parse_at(&args.at)?;
    let offset = *at.offset();
    let triggered_at = at.to_utc();
    // A check's alert goes where the server would send it, known to the file or not; a
    // service named alone must be one of the file's (a typo would otherwise drill nothing).
    if let Some(check) = &args.check
        && uuid::Uuid::parse_str(check).is_err()
    {
        anyhow::bail!("--check: `{check}` is not a check UUID");
    }
    let service_name = match &args.check {
        Some(check) => routing::service_for(Some(&config), check, args.service.as_deref()),
        None => args.service.clone().unwrap_or_default(),
    };
    let service = config.services.get(&service_name);
    if service.is_none() && args.check.is_none() {
        let mut known: Vec<&String> = config.services.keys().collect();
        known.sort();
        anyhow::bail!(
            "no service `{service_name}` in {} (services: {known:?})",
            args.file.display()
        );
    }
    let urgency = routing::urgency(Some(&config), &service_name, triggered_at);
    if args.horizon > Duration::from_secs(31 * 86_400) {
        anyhow::bail!("--horizon: at most 31 days");
    }
    let horizon = TimeDelta::from_std(args.horizon).unwrap_or(TimeDelta::days(1));
    let until = match args.ack_after {
        Some(ack) => triggered_at + TimeDelta::from_std(ack).unwrap_or_default(),
        None => triggered_at + horizon,
    };
    let alert = routing::Alert {
        service: &service_name,
        check: args.check.as_deref(),
        triggered_at,
        urgency,
        // A drill has no check that stays down: re-notifications are the engine's.
        missed: None,
    };
    let entries = routing::timeline(Some(&config), &alert, until);
    let local = |t: DateTime<Utc>| t.with_timezone(&offset).format("%a %Y-%m-%d %H:%M");
    let mut out = match service {
        Some(service) => {
            let why = match &service.urgency {
                UrgencyRule::Always(_) => "always",
                UrgencyRule::SupportHours { inside, .. } if *inside == urgency => {
                    "inside support hours"
                }
                UrgencyRule::SupportHours { .. } => "outside support hours",
            };
            let mut out = format!(
                "Alert on service `{}` at {} (policy `{}`)\nurgency: {} ({why})",
                service.name,
                local(triggered_at),
                service.policy,
                urgency.as_str(),
            );
            match (urgency, service.raise_after) {
                (Urgency::Low, Some(after)) => out.push_str(&format!(
                    "; raised to high after {} min without acknowledgment\n",
                    after.num_minutes()
                )),
                (Urgency::Low, None) => out.push_str("; never raised (the service opted out)\n"),
                _ => out.push('\n'),
            }
            out
        }
        None => format!(
            "Alert on service `{service_name}` at {} (not in the file: no escalation policy)\n\
             urgency: {} (unknown service)\n",
            local(triggered_at),
            urgency.as_str(),
        ),
    };
    for entry in &entries {
        let line = match entry {
            Routed::Unrouted { .. } => "unrouted: nobody is paged".to_string(),
            Routed::Escalation(Page::Step { step, pass, .. }) => {
                format!("escalation step {step} (pass {pass})")
            }
            Routed::Escalation(Page::UrgencyRaised { .. }) => "urgency raised to high".to_string(),
            Routed::Escalation(Page::LastResort { .. }) => "last resort".to_string(),
            Routed::Escalation(Page::Unreached { who, urgency, .. }) => format!(
                "  NOBODY REACHED: {who} has no {} urgency rule or nobody on call",
                urgency.as_str()
            ),
            Routed::Notify(Notification {
                at,
                person,
                contact,
                address,
                urgency,
            }) => {
                let address = address
                    .as_deref()
                    .map_or(String::new(), |a| format!(" <{a}>"));
                // Where the person lives, if the file says: a 00:15 page is 08:15 in Berlin.
                let their_time = config.time_zones.get(person).map_or(String::new(), |tz| {
                    format!(
                        ", {} {}",
                        at.with_timezone(tz).format("%a %H:%M"),
                        tz.name()
                    )
                });
                format!(
                    "  notify {person} by {contact}{address} ({}{their_time})",
                    urgency.as_str()
                )
            }
            Routed::Suppressed(n) => format!(
                "  suppressed {} by {} ({}, maintenance window)",
                n.person,
                n.contact,
                n.urgency.as_str()
            ),
            Routed::Renotify { .. } | Routed::Reminder { .. } => {
                entry.log().map(|line| line.detail).unwrap_or_default()
            }
            // The timeline gives notifications as `Notify` or `Suppressed`.
            Routed::Escalation(Page::Notify { .. }) => continue,
        };
        out.push_str(&format!(
            "{:>6}  {}  {line}\n",
            elapsed(triggered_at, entry.at()),
            local(entry.at())
        ));
    }
    let first_high = entries.iter().find_map(|entry| match entry {
        Routed::Notify(n) if n.urgency == Urgency::High => Some(n),
        _ => None,
    });
    match first_high {
        Some(n) => out.push_str(&format!(
            "first high-urgency page: {} ({} by {})\n",
            elapsed(triggered_at, n.at),
            n.person,
            n.contact
        )),
        None => out.push_str("first high-urgency page: none\n"),
    }
    match args.ack_after {
        Some(_) => out.push_str(&format!(
            "acknowledged at {}: nothing more is sent\n",
            elapsed(triggered_at, until)
        )),
        None => {
            let notified = entries
                .iter()
                .filter(|entry| matches!(entry, Routed::Notify(_)))
                .count();
            out.push_str(&format!(
                "nobody acknowledged: {notified} notifications in {}\n",
                humantime::format_duration(args.horizon)
            ))
        }
    }
    Ok(out)
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
            file: path,
            service: Some("billing".into()),
            check: None,
            at: at.into(),
            ack_after: ack.map(|a| duration(a).unwrap()),
            horizon: duration("3h").unwrap(),
        }
    }

    #[test]
    fn the_readme_example_drills_a_saturday_night_in_denver() {
        let (_dir, path) = write(EXAMPLE);
        let out = drill(&drill_args(path.clone(), "2026-11-28T00:00:00-07:00", None)).unwrap();
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

    #[test]
    fn drills_show_maintenance_suppressions_and_unrouted_alerts_as_the_engine_records_them() {
        // Billing is in maintenance for the first 12 minutes of Saturday, Denver time.
        let window = "[[maintenance]]\nservice = \"billing\"\n\
             start = \"2026-11-28T00:00:00-07:00\"\nend = \"2026-11-28T00:12:00-07:00\"\n";
        let (_dir, path) = write(&format!("{EXAMPLE}\n{window}"));
        let mut args = drill_args(path.clone(), "2026-11-28T00:00:00-07:00", Some("20m"));
        let out = drill(&args).unwrap();
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
            drill(&args).unwrap(),
            "\
Alert on service `payroll` at Sat 2026-11-28 00:00 (not in the file: no escalation policy)
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
                .unwrap()
                .starts_with("Alert on service `billing`")
        );
        // A check that is not a UUID is a mistake, not a drill of some other service.
        args.check = Some("nightly-backup".into());
        assert_eq!(
            drill(&args).unwrap_err().to_string(),
            "--check: `nightly-backup` is not a check UUID"
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

    #[test]
    fn mistakes_in_the_file_are_named_with_where_they_are() {
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
                .unwrap_err()
                .to_string()
                .contains("--at `Saturday` is not an RFC 3339 time")
        );
        args.at = "2026-11-28T00:00:00Z".into();
        args.service = Some("payroll".into());
        assert!(
            drill(&args)
                .unwrap_err()
                .to_string()
                .contains("no service `payroll`")
        );
    }
}
