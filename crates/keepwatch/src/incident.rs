//! `keepwatch incident declare|list|show|update|owner|resolve|reopen|note|postmortem|attach|
//! page|export`: incidents through the server's API (`/api/v1/incidents/`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::alert::{Api, call_with};

#[derive(Debug, Clone, Subcommand)]
pub enum IncidentCommand {
    /// Declare an incident, from alerts or by hand; its stakeholders hear of it at once
    ///
    /// Example: keepwatch incident declare --alert 42 --severity SEV1 --owner alice
    ///   --impact "Client events since midnight are not processed"
    Declare {
        /// Alerts to link (their checks are linked too); repeat for several
        #[arg(long = "alert", value_name = "ID")]
        alerts: Vec<i64>,
        /// Default: the first alert's summary
        #[arg(long)]
        title: Option<String>,
        /// SEV1 … SEV4 (default SEV2); sets the default update interval
        #[arg(long)]
        severity: Option<String>,
        /// investigating (default), identified or monitoring
        #[arg(long)]
        status: Option<String>,
        /// A person of the on-call file; default: who the service's policy reaches first now
        #[arg(long)]
        owner: Option<String>,
        /// The impact, in a sentence
        #[arg(long)]
        impact: Option<String>,
        /// The service (default: the first alert's)
        #[arg(long)]
        service: Option<String>,
        /// Check UUIDs to link; repeat for several
        #[arg(long = "check", value_name = "UUID")]
        checks: Vec<String>,
        /// Stakeholder groups of the on-call file (default: the service's); repeat
        #[arg(long = "group", value_name = "NAME")]
        groups: Vec<String>,
        /// Another stakeholder: an email address or a Slack/Teams/Discord/webhook URL, with
        /// `|<time zone>` for the times in their updates; repeat
        #[arg(long = "stakeholder", value_name = "ADDRESS[|TZ]")]
        stakeholders: Vec<String>,
        /// The update interval (`30m`, `2h`, `none`); default: the severity's
        #[arg(long)]
        update_every: Option<String>,
        /// The first message to stakeholders (default: the impact)
        #[arg(short, long)]
        message: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// List incidents, newest first
    List {
        /// open (default), resolved or all
        #[arg(long, default_value = "open")]
        status: String,
        #[command(flatten)]
        api: Api,
    },
    /// Show an incident: its fields, next update due, the log and every message sent
    Show {
        id: i64,
        #[command(flatten)]
        api: Api,
    },
    /// Post a status update to every stakeholder
    ///
    /// Examples:
    ///   keepwatch incident update 7 --status identified -m "A stray process holds the lock"
    ///   keepwatch incident update 7 --no-news -m "rerunning the export by hand"
    Update {
        id: i64,
        /// investigating, identified, monitoring (resolved: use `resolve`)
        #[arg(long)]
        status: Option<String>,
        /// What is happening (with --no-news: what is being done)
        #[arg(short, long)]
        message: String,
        /// "No new information since <last update>. We are still …: <message>. Next update by …"
        #[arg(long)]
        no_news: bool,
        #[command(flatten)]
        api: Api,
    },
    /// Hand the incident (and its update reminders) to another person of the file
    Owner {
        id: i64,
        person: String,
        #[command(flatten)]
        api: Api,
    },
    /// All clear: resolve the incident with a final message to every stakeholder
    Resolve {
        id: i64,
        #[arg(short, long)]
        message: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Reopen a resolved incident (stakeholders are told; the cadence starts again)
    Reopen {
        id: i64,
        #[arg(short, long)]
        message: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Add a timestamped note (responders only; stakeholders do not get it)
    Note {
        id: i64,
        text: String,
        #[command(flatten)]
        api: Api,
    },
    /// Edit the postmortem fields
    ///
    /// Example: keepwatch incident postmortem 7 --root-cause "a stray process held the lock"
    ///   --factor "alerts were low urgency" --action "alert on overlap|bob"
    Postmortem {
        id: i64,
        #[arg(long)]
        summary: Option<String>,
        #[arg(long)]
        root_cause: Option<String>,
        /// A contributing factor; repeat (replaces the list)
        #[arg(long = "factor")]
        factors: Vec<String>,
        /// An action item, `text|owner`; repeat (replaces the list)
        #[arg(long = "action")]
        actions: Vec<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Link more alerts to an incident
    Attach {
        id: i64,
        #[arg(long = "alert", value_name = "ID", required = true)]
        alerts: Vec<i64>,
        #[command(flatten)]
        api: Api,
    },
    /// Revoke the stakeholder page's link and print the new one
    Page {
        id: i64,
        #[command(flatten)]
        api: Api,
    },
    /// The postmortem: the whole timeline, figures and postmortem fields
    ///
    /// Example: keepwatch incident export 7 --format markdown --tz America/Denver > pm.md
    Export {
        id: i64,
        /// markdown, json or html (its times in --tz, default UTC)
        #[arg(long, default_value = "markdown")]
        format: String,
        #[command(flatten)]
        api: Api,
    },
}

/// Where the summary line's times are shown: a named zone, or the machine's local offset
/// when its zone has no name keepwatch knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Named(Tz),
    Local,
}

impl Zone {
    /// `--tz` if given (refused if unknown), else the machine's zone: `TZ`, else the name
    /// `/etc/localtime` links to, else the local offset.
    pub fn resolve(tz: Option<&str>) -> anyhow::Result<Zone> {
        if let Some(tz) = tz {
            return tz.parse::<Tz>().map(Zone::Named).map_err(|_| {
                anyhow::anyhow!(
                    "unknown time zone `{tz}` (give an IANA name such as America/Denver)"
                )
            });
        }
        let link = std::fs::read_link("/etc/localtime").ok();
        Ok(Zone::of_machine(
            std::env::var("TZ").ok().as_deref(),
            link.as_deref().and_then(|p| p.to_str()),
        ))
    }

    fn of_machine(tz_env: Option<&str>, localtime_link: Option<&str>) -> Zone {
        let named = |name: &str| name.trim_start_matches(':').parse::<Tz>().ok();
        tz_env
            .and_then(named)
            .or_else(|| localtime_link?.split("zoneinfo/").nth(1).and_then(named))
            .map_or(Zone::Local, Zone::Named)
    }

    /// `2026-12-05 13:48 MST (UTC-07:00)`; `2026-12-05 13:48 (UTC-07:00)` for an unnamed zone.
    pub fn show(self, at: DateTime<Utc>) -> String {
        match self {
            Zone::Named(tz) => at
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M %Z (UTC%:z)")
                .to_string(),
            Zone::Local => at
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M (UTC%:z)")
                .to_string(),
        }
    }
}

fn line(i: &Value, zone: Zone) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let next = match i["next_update_due"].as_str() {
        Some(at) => at
            .parse::<DateTime<Utc>>()
            .map_or(at.to_string(), |at| zone.show(at)),
        None => "—".into(),
    };
    format!(
        "#{} {} {} {}  (owner {}, next update {next}){}\n",
        i["id"],
        text(&i["severity"]).to_uppercase(),
        text(&i["status"]),
        text(&i["title"]),
        text(&i["owner"]),
        i["page_url"]
            .as_str()
            .map_or(String::new(), |u| format!("\n  stakeholder page: {u}")),
    )
}

fn show(i: &Value, zone: Zone) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut out = line(i, zone);
    if !text(&i["impact"]).is_empty() {
        out.push_str(&format!("  impact: {}\n", text(&i["impact"])));
    }
    out.push_str(&format!(
        "  service: {}  stakeholders: {}  update every: {}\n  alerts: {}  checks: {}\nlog:\n",
        text(&i["service"]),
        i["stakeholders"],
        i["update_every"].as_str().unwrap_or("none"),
        i["alerts"],
        i["checks"],
    ));
    for l in i["log"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {} {} {} {}{}\n",
            text(&l["at"]),
            text(&l["kind"]),
            text(&l["who"]),
            l["status"]
                .as_str()
                .map_or(String::new(), |s| format!("[{s}] ")),
            text(&l["text"]),
        ));
    }
    out.push_str("messages:\n");
    for m in i["messages"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {} {} to {} via {} ({}): {} after {} attempt(s){}\n",
            text(&m["created_at"]),
            text(&m["kind"]),
            text(&m["to"]),
            text(&m["contact"]),
            text(&m["address"]),
            text(&m["state"]),
            m["attempts"],
            m["last_error"]
                .as_str()
                .map_or(String::new(), |e| format!(", last error: {e}")),
        ));
    }
    out
}

/// `address|tz` → `{address, tz}`.
fn stakeholder(text: &str) -> Value {
    match text.rsplit_once('|') {
        Some((address, tz)) => json!({"address": address.trim(), "tz": tz.trim()}),
        None => json!({"address": text.trim()}),
    }
}

pub async fn run(command: IncidentCommand, tz: Option<String>) -> anyhow::Result<String> {
    use reqwest::Method;
    let zone = Zone::resolve(tz.as_deref())?;
    match command {
        IncidentCommand::Declare {
            alerts,
            title,
            severity,
            status,
            owner,
            impact,
            service,
            checks,
            groups,
            stakeholders,
            update_every,
            message,
            api,
        } => {
            let mut body = json!({
                "alerts": alerts,
                "checks": checks,
                "extra_stakeholders": stakeholders.iter().map(|s| stakeholder(s)).collect::<Vec<_>>(),
            });
            for (name, value) in [
                ("title", title),
                ("severity", severity),
                ("status", status),
                ("owner", owner),
                ("impact", impact),
                ("service", service),
                ("update_every", update_every),
                ("message", message),
            ] {
                if let Some(value) = value {
                    body[name] = json!(value);
                }
            }
            if !groups.is_empty() {
                body["stakeholders"] = json!(groups);
            }
            let i = call_with(&api, Method::POST, "incidents/", Some(body)).await?;
            Ok(format!("declared {}", line(&i, zone)))
        }
        IncidentCommand::List { status, api } => {
            let body = call_with(
                &api,
                Method::GET,
                &format!("incidents/?status={status}"),
                None,
            )
            .await?;
            let list = body["incidents"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                return Ok(format!("no {status} incidents\n"));
            }
            Ok(list.iter().map(|i| line(i, zone)).collect())
        }
        IncidentCommand::Show { id, api } => {
            let i = call_with(&api, Method::GET, &format!("incidents/{id}"), None).await?;
            Ok(show(&i, zone))
        }
        IncidentCommand::Update {
            id,
            status,
            message,
            no_news,
            api,
        } => {
            let body = json!({"status": status, "message": message, "no_news": no_news});
            let i = call_with(
                &api,
                Method::POST,
                &format!("incidents/{id}/updates"),
                Some(body),
            )
            .await?;
            Ok(format!("update posted: {}", line(&i, zone)))
        }
        IncidentCommand::Owner { id, person, api } => {
            let body = json!({"owner": person});
            let i = call_with(
                &api,
                Method::POST,
                &format!("incidents/{id}/owner"),
                Some(body),
            )
            .await?;
            Ok(line(&i, zone))
        }
        IncidentCommand::Resolve { id, message, api } => {
            let i = call_with(
                &api,
                Method::POST,
                &format!("incidents/{id}/resolve"),
                Some(json!({"message": message})),
            )
            .await?;
            Ok(format!("all clear sent: {}", line(&i, zone)))
        }
        IncidentCommand::Reopen { id, message, api } => {
            let i = call_with(
                &api,
                Method::POST,
                &format!("incidents/{id}/reopen"),
                Some(json!({"message": message})),
            )
            .await?;
            Ok(format!("reopened: {}", line(&i, zone)))
        }
        IncidentCommand::Note { id, text, api } => {
            let i = call_with(
                &api,
                Method::POST,
                &format!("incidents/{id}/notes"),
                Some(json!({"text": text})),
            )
            .await?;
            Ok(line(&i, zone))
        }
        IncidentCommand::Postmortem {
            id,
            summary,
            root_cause,
            factors,
            actions,
            api,
        } => {
            let mut body = json!({});
            if let Some(s) = summary {
                body["summary"] = json!(s);
            }
            if let Some(r) = root_cause {
                body["root_cause"] = json!(r);
            }
            if !factors.is_empty() {
                body["contributing_factors"] = json!(factors);
            }
            if !actions.is_empty() {
                body["action_items"] = json!(
                    actions
                        .iter()
                        .map(|a| match a.rsplit_once('|') {
                            Some((text, owner)) =>
                                json!({"text": text.trim(), "owner": owner.trim()}),
                            None => json!({"text": a.trim()}),
                        })
                        .collect::<Vec<_>>()
                );
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                anyhow::bail!("give at least one of --summary, --root-cause, --factor or --action");
            }
            let i = call_with(
                &api,
                Method::POST,
                &format!("incidents/{id}/postmortem"),
                Some(body),
            )
            .await?;
            Ok(format!(
                "postmortem saved: {}\n",
                serde_json::to_string_pretty(&i["postmortem"])?
            ))
        }
        IncidentCommand::Attach { id, alerts, api } => {
            let i = call_with(
                &api,
                Method::POST,
                &format!("incidents/{id}/alerts"),
                Some(json!({"alerts": alerts})),
            )
            .await?;
            Ok(line(&i, zone))
        }
        IncidentCommand::Page { id, api } => {
            let i = call_with(&api, Method::POST, &format!("incidents/{id}/page"), None).await?;
            Ok(format!(
                "the old link is revoked; new stakeholder page: {}\n",
                i["page_url"].as_str().unwrap_or("")
            ))
        }
        IncidentCommand::Export { id, format, api } => {
            let mut path = format!("incidents/{id}/export?format={format}");
            if let Some(tz) = tz {
                // Checked above (Zone::resolve); the name as the server spells it.
                path.push_str(&format!("&tz={}", tz.replace('+', "%2B")));
            }
            crate::alert::call_text(&api, &path).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_next_update_is_shown_in_the_zone_with_its_offset() {
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 20, 48, 24).unwrap();
        let denver = Zone::resolve(Some("America/Denver")).unwrap();
        assert_eq!(denver.show(at), "2026-12-05 13:48 MST (UTC-07:00)");
        assert_eq!(
            Zone::resolve(Some("Asia/Kolkata")).unwrap().show(at),
            "2026-12-06 02:18 IST (UTC+05:30)"
        );
        assert!(
            Zone::resolve(Some("Mars/Olympus"))
                .unwrap_err()
                .to_string()
                .contains("unknown time zone `Mars/Olympus`")
        );
        let line = line(
            &json!({"id": 7, "severity": "sev1", "status": "identified", "title": "export",
                    "owner": "alice", "next_update_due": "2026-12-05T20:48:24Z"}),
            denver,
        );
        assert_eq!(
            line,
            "#7 SEV1 identified export  (owner alice, next update 2026-12-05 13:48 MST (UTC-07:00))\n"
        );
    }

    #[test]
    fn the_machine_zone_comes_from_tz_then_the_localtime_link() {
        let paris = Zone::Named(chrono_tz::Europe::Paris);
        assert_eq!(Zone::of_machine(Some("Europe/Paris"), None), paris);
        assert_eq!(Zone::of_machine(Some(":Europe/Paris"), None), paris);
        assert_eq!(
            Zone::of_machine(None, Some("/usr/share/zoneinfo/Europe/Paris")),
            paris
        );
        assert_eq!(
            Zone::of_machine(Some("nonsense"), Some("../usr/share/zoneinfo/Europe/Paris")),
            paris
        );
        assert_eq!(Zone::of_machine(None, None), Zone::Local);
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 20, 48, 0).unwrap();
        assert!(Zone::Local.show(at).contains("(UTC"), "offset shown");
    }
}
