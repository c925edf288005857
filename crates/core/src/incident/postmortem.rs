//! The postmortem of an incident: its whole timeline in order (pings and runs of its checks,
//! alerts and their logs, messages sent or failed, updates, notes, configuration applies),
//! the figures people ask for first (time to detect, to page, to acknowledge, to the first
//! stakeholder update and to the all-clear; updates on time), then the written postmortem.
//!
//! The engine gathers the entries from the store; assembling, measuring and rendering them
//! happens here, so a snapshot test pins every format.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What an entry counts as for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Marker {
    /// Something went wrong: a missed deadline, a failed run, a hung or overlapping run.
    Failure,
    /// An alert was opened.
    Alert,
    /// A page reached a person.
    Page,
    Acknowledged,
    /// A stakeholder update was posted; whether it came by its due time.
    Update {
        on_time: bool,
    },
    AllClear,
}

/// One line of the timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    /// `ping`, `run`, `check`, `alert`, `message`, `incident`, `update`, `note`, `reminder`,
    /// `config`.
    pub kind: String,
    /// Who or what: a host and pid, a person, an address.
    pub who: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<Marker>,
    /// When the marker happened, when not at `at` (a run is shown at its start, its failure
    /// counts when it failed or hung).
    #[serde(skip)]
    pub marker_at: Option<DateTime<Utc>>,
    /// For a `run` entry: the run's figures (see [`super::runs`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<Box<super::runs::Run>>,
}

/// An action item: what to do, and who does it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionItem {
    pub text: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub done: bool,
}

/// The written part, edited through the API and `keepwatch incident postmortem`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Postmortem {
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub root_cause: String,
    #[serde(default)]
    pub contributing_factors: Vec<String>,
    #[serde(default)]
    pub action_items: Vec<ActionItem>,
}

/// The incident's own fields, as the export's header shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub owner: String,
    pub impact: String,
    pub service: String,
    pub declared_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The linked checks, by name.
    pub checks: Vec<String>,
    pub alerts: Vec<i64>,
}

/// The figures, each as the time it happened (the durations are measured from the first
/// failure, or from the first alert when no failure is known).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub first_failure: Option<DateTime<Utc>>,
    pub first_alert: Option<DateTime<Utc>>,
    pub first_page: Option<DateTime<Utc>>,
    pub first_ack: Option<DateTime<Utc>>,
    pub first_update: Option<DateTime<Utc>>,
    pub all_clear: Option<DateTime<Utc>>,
    pub updates: usize,
    pub updates_on_time: usize,
}

impl Figures {
    /// Measured over the entries' markers (the first of each).
    pub fn of(entries: &[Entry]) -> Figures {
        let mut f = Figures::default();
        let first = |slot: &mut Option<DateTime<Utc>>, at| {
            if slot.is_none_or(|t| at < t) {
                *slot = Some(at);
            }
        };
        for e in entries {
            match e.marker {
                Some(Marker::Failure) => first(&mut f.first_failure, e.marker_at.unwrap_or(e.at)),
                Some(Marker::Alert) => first(&mut f.first_alert, e.at),
                Some(Marker::Page) => first(&mut f.first_page, e.at),
                Some(Marker::Acknowledged) => first(&mut f.first_ack, e.at),
                Some(Marker::Update { on_time }) => {
                    first(&mut f.first_update, e.at);
                    f.updates += 1;
                    f.updates_on_time += usize::from(on_time);
                }
                Some(Marker::AllClear) => f.all_clear = Some(e.at),
                None => {}
            }
        }
        f
    }

    /// Where the durations count from.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.first_failure.or(self.first_alert)
    }

    /// `(name, label, at, after start)`, in the order they are shown.
    pub fn rows(&self) -> Vec<(&'static str, &'static str, Option<DateTime<Utc>>)> {
        vec![
            (
                "time_to_detect",
                "Time to detect (first failure → first alert)",
                self.first_alert,
            ),
            ("time_to_first_page", "Time to first page", self.first_page),
            ("time_to_acknowledge", "Time to acknowledge", self.first_ack),
            (
                "time_to_first_update",
                "Time to first stakeholder update",
                self.first_update,
            ),
            ("time_to_all_clear", "Time to all-clear", self.all_clear),
        ]
    }

    fn after_start(&self, at: Option<DateTime<Utc>>) -> Option<TimeDelta> {
        Some(at? - self.start()?)
    }
}

/// A duration as people read it: `4m 05s`, `2h 03m`, `1d 2h 03m`.
pub fn human(d: TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, minutes, seconds) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h {minutes:02}m")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else {
        format!("{minutes}m {seconds:02}s")
    }
}

/// A whole export: header, ordered timeline, figures, postmortem.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub header: Header,
    pub entries: Vec<Entry>,
    pub figures: Figures,
    pub postmortem: Postmortem,
}

impl Export {
    /// Puts the entries in time order (stable: entries at the same time keep the order they
    /// were gathered in) and measures the figures.
    pub fn new(header: Header, mut entries: Vec<Entry>, postmortem: Postmortem) -> Export {
        entries.sort_by_key(|e| e.at);
        let figures = Figures::of(&entries);
        Export {
            header,
            entries,
            figures,
            postmortem,
        }
    }

    fn time(at: DateTime<Utc>, tz: Tz) -> String {
        at.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }

    /// The export as JSON, times in RFC 3339 UTC and in `tz`.
    pub fn json(&self, tz: Tz) -> Value {
        let time = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let figures: serde_json::Map<String, Value> = self
            .figures
            .rows()
            .into_iter()
            .map(|(name, _, at)| {
                (
                    name.to_string(),
                    json!({
                        "at": at.map(time),
                        "seconds": self.figures.after_start(at).map(|d| d.num_seconds()),
                    }),
                )
            })
            .collect();
        json!({
            "incident": {
                "id": self.header.id,
                "title": self.header.title,
                "severity": self.header.severity,
                "status": self.header.status,
                "owner": self.header.owner,
                "impact": self.header.impact,
                "service": self.header.service,
                "declared_at": time(self.header.declared_at),
                "resolved_at": self.header.resolved_at.map(time),
                "checks": self.header.checks,
                "alerts": self.header.alerts,
            },
            "tz": tz.name(),
            "figures": {
                "first_failure": self.figures.first_failure.map(time),
                "first_alert": self.figures.first_alert.map(time),
                "measures": figures,
                "updates": self.figures.updates,
                "updates_on_time": self.figures.updates_on_time,
            },
            "timeline": self.entries.iter().map(|e| json!({
                "at": time(e.at),
                "local": Export::time(e.at, tz),
                "kind": e.kind,
                "who": e.who,
                "text": e.text,
                "marker": e.marker,
                "run": e.run,
            })).collect::<Vec<_>>(),
            "postmortem": self.postmortem,
        })
    }

    /// The export as Markdown, times in `tz`.
    pub fn markdown(&self, tz: Tz) -> String {
        let h = &self.header;
        let mut out = format!("# Incident #{}: {}\n\n", h.id, md_inline(&h.title));
        out.push_str(&format!("- Severity: {}\n", h.severity));
        out.push_str(&format!("- Status: {}\n", h.status));
        out.push_str(&format!("- Owner: {}\n", md_inline(&h.owner)));
        if !h.service.is_empty() {
            out.push_str(&format!("- Service: {}\n", md_inline(&h.service)));
        }
        if !h.impact.is_empty() {
            out.push_str(&format!("- Impact: {}\n", md_inline(&h.impact)));
        }
        out.push_str(&format!(
            "- Declared: {}\n",
            Export::time(h.declared_at, tz)
        ));
        if let Some(at) = h.resolved_at {
            out.push_str(&format!("- Resolved: {}\n", Export::time(at, tz)));
        }
        if !h.checks.is_empty() {
            out.push_str(&format!("- Checks: {}\n", md_inline(&h.checks.join(", "))));
        }
        if !h.alerts.is_empty() {
            let alerts: Vec<String> = h.alerts.iter().map(|a| format!("#{a}")).collect();
            out.push_str(&format!("- Alerts: {}\n", alerts.join(", ")));
        }
        out.push_str("\n## Figures\n\n| Measure | At | After the first failure |\n|---|---|---|\n");
        for (_, label, at) in self.figures.rows() {
            out.push_str(&format!(
                "| {label} | {} | {} |\n",
                at.map_or("—".into(), |t| Export::time(t, tz)),
                self.figures.after_start(at).map_or("—".into(), human)
            ));
        }
        out.push_str(&format!(
            "\nStakeholder updates: {}, {} on time.\n",
            self.figures.updates, self.figures.updates_on_time
        ));
        out.push_str(&format!("\n## Timeline ({})\n\n", tz.name()));
        for e in &self.entries {
            let who = if e.who.is_empty() {
                String::new()
            } else {
                format!(" ({})", md_inline(&e.who))
            };
            out.push_str(&format!(
                "- `{}` **{}**{who}: {}\n",
                Export::time(e.at, tz),
                e.kind,
                md_block(&e.text)
            ));
        }
        let p = &self.postmortem;
        out.push_str("\n## Postmortem\n\n### Summary\n\n");
        out.push_str(&or_none(&p.summary));
        out.push_str("\n\n### Root cause\n\n");
        out.push_str(&or_none(&p.root_cause));
        out.push_str("\n\n### Contributing factors\n\n");
        if p.contributing_factors.is_empty() {
            out.push_str("(none written)\n");
        }
        for f in &p.contributing_factors {
            out.push_str(&format!("- {}\n", md_inline(f)));
        }
        out.push_str("\n### Action items\n\n");
        if p.action_items.is_empty() {
            out.push_str("(none written)\n");
        }
        for a in &p.action_items {
            let owner = if a.owner.is_empty() {
                String::new()
            } else {
                format!(" — {}", md_inline(&a.owner))
            };
            out.push_str(&format!(
                "- [{}] {}{owner}\n",
                if a.done { "x" } else { " " },
                md_inline(&a.text)
            ));
        }
        out
    }

    /// The export as one HTML page, times in `tz`.
    pub fn html(&self, tz: Tz) -> String {
        let h = &self.header;
        let mut out = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Incident #{} postmortem</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;line-height:1.4}}\
             td,th{{border-bottom:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}}\
             table{{border-collapse:collapse}} pre{{white-space:pre-wrap;margin:0}}</style></head><body>\n\
             <h1>Incident #{}: {}</h1>\n<ul>\n",
            h.id,
            h.id,
            escape(&h.title)
        );
        for (name, value) in [
            ("Severity", h.severity.clone()),
            ("Status", h.status.clone()),
            ("Owner", h.owner.clone()),
            ("Service", h.service.clone()),
            ("Impact", h.impact.clone()),
            ("Declared", Export::time(h.declared_at, tz)),
            (
                "Resolved",
                h.resolved_at.map_or(String::new(), |t| Export::time(t, tz)),
            ),
            ("Checks", h.checks.join(", ")),
        ] {
            if !value.is_empty() {
                out.push_str(&format!("<li>{name}: {}</li>\n", escape(&value)));
            }
        }
        out.push_str("</ul>\n<h2>Figures</h2>\n<table><tr><th>Measure</th><th>At</th><th>After the first failure</th></tr>\n");
        for (_, label, at) in self.figures.rows() {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(label),
                at.map_or("—".into(), |t| Export::time(t, tz)),
                self.figures.after_start(at).map_or("—".into(), human)
            ));
        }
        out.push_str(&format!(
            "</table>\n<p>Stakeholder updates: {}, {} on time.</p>\n<h2>Timeline ({})</h2>\n<table>\n",
            self.figures.updates,
            self.figures.updates_on_time,
            tz.name()
        ));
        for e in &self.entries {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>\n",
                Export::time(e.at, tz),
                escape(&e.kind),
                escape(&e.who),
                escape(&e.text)
            ));
        }
        let p = &self.postmortem;
        out.push_str(&format!(
            "</table>\n<h2>Postmortem</h2>\n<h3>Summary</h3>\n<p>{}</p>\n<h3>Root cause</h3>\n<p>{}</p>\n<h3>Contributing factors</h3>\n<ul>\n",
            escape(&or_none(&p.summary)),
            escape(&or_none(&p.root_cause))
        ));
        for f in &p.contributing_factors {
            out.push_str(&format!("<li>{}</li>\n", escape(f)));
        }
        out.push_str("</ul>\n<h3>Action items</h3>\n<ul>\n");
        for a in &p.action_items {
            out.push_str(&format!(
                "<li>{}{}{}</li>\n",
                if a.done { "✔ " } else { "" },
                escape(&a.text),
                if a.owner.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", escape(&a.owner))
                }
            ));
        }
        out.push_str("</ul>\n</body></html>\n");
        out
    }
}

fn or_none(text: &str) -> String {
    if text.trim().is_empty() {
        "(not written yet)".into()
    } else {
        text.trim().to_string()
    }
}

/// Text on one Markdown line (line breaks become ` / `).
fn md_inline(text: &str) -> String {
    text.trim().replace("\r\n", "\n").replace('\n', " / ")
}

/// Text in a list item: further lines indented under it.
fn md_block(text: &str) -> String {
    text.trim().replace("\r\n", "\n").replace('\n', "\n  ")
}

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, m, 0).unwrap()
    }

    fn entry(
        at: DateTime<Utc>,
        kind: &str,
        who: &str,
        text: &str,
        marker: Option<Marker>,
    ) -> Entry {
        Entry {
            at,
            kind: kind.into(),
            who: who.into(),
            text: text.into(),
            marker,
            ..Default::default()
        }
    }

    fn example() -> Export {
        let header = Header {
            id: 7,
            title: "Nightly billing export".into(),
            severity: "SEV1".into(),
            status: "resolved".into(),
            owner: "bob".into(),
            impact: "Client events not processed".into(),
            service: "billing".into(),
            declared_at: at(5, 7, 20),
            resolved_at: Some(at(6, 10, 0)),
            checks: vec!["nightly-export".into()],
            alerts: vec![42],
        };
        let mut start = crate::incident::runs::RunPing {
            at: at(5, 6, 58),
            kind: "start".into(),
            host: Some("db1".into()),
            pid: Some(4242),
            ..Default::default()
        };
        let finish = crate::incident::runs::RunPing {
            at: at(5, 7, 5),
            kind: "exit:1".into(),
            body: Some("exporting\nERROR: lock held by pid 977\n".into()),
            ..start.clone()
        };
        start.body = None;
        let run =
            crate::incident::runs::timeline("nightly-export", &[start, finish], &[], at(6, 11, 0));
        let entries = vec![
            run[0].clone(),
            entry(
                at(6, 10, 0),
                "update",
                "bob",
                "All clear: fixed",
                Some(Marker::AllClear),
            ),
            entry(
                at(5, 7, 5),
                "check",
                "nightly-export",
                "missed its run due 00:00 (grace 5m)",
                Some(Marker::Failure),
            ),
            entry(
                at(5, 7, 6),
                "alert",
                "",
                "#42 opened: nightly-export is down",
                Some(Marker::Alert),
            ),
            entry(
                at(5, 7, 6),
                "message",
                "alice via email",
                "page sent",
                Some(Marker::Page),
            ),
            entry(
                at(5, 7, 15),
                "alert",
                "alice",
                "#42 acknowledged",
                Some(Marker::Acknowledged),
            ),
            entry(
                at(5, 7, 30),
                "update",
                "alice",
                "Investigating: looking\nat logs",
                Some(Marker::Update { on_time: true }),
            ),
            entry(
                at(5, 8, 45),
                "update",
                "alice",
                "No news",
                Some(Marker::Update { on_time: false }),
            ),
            entry(
                at(5, 12, 0),
                "incident",
                "alice",
                "owner changed to bob",
                None,
            ),
        ];
        Export::new(
            header,
            entries,
            Postmortem {
                summary: "The export did not run.".into(),
                root_cause: "A stray process held the lock.".into(),
                contributing_factors: vec!["Alerts were low urgency".into()],
                action_items: vec![ActionItem {
                    text: "Alert on overlap".into(),
                    owner: "bob".into(),
                    done: false,
                }],
            },
        )
    }

    #[test]
    fn markdown_export_snapshot() {
        let md = example().markdown("America/Denver".parse().unwrap());
        let expected = "# Incident #7: Nightly billing export

- Severity: SEV1
- Status: resolved
- Owner: bob
- Service: billing
- Impact: Client events not processed
- Declared: 2026-12-05 00:20:00 MST
- Resolved: 2026-12-06 03:00:00 MST
- Checks: nightly-export
- Alerts: #42

## Figures

| Measure | At | After the first failure |
|---|---|---|
| Time to detect (first failure → first alert) | 2026-12-05 00:06:00 MST | 1m 00s |
| Time to first page | 2026-12-05 00:06:00 MST | 1m 00s |
| Time to acknowledge | 2026-12-05 00:15:00 MST | 10m 00s |
| Time to first stakeholder update | 2026-12-05 00:30:00 MST | 25m 00s |
| Time to all-clear | 2026-12-06 03:00:00 MST | 1d 2h 55m |

Stakeholder updates: 2, 1 on time.

## Timeline (America/Denver)

- `2026-12-04 23:58:00 MST` **run** (db1 pid 4242): nightly-export: run failed after 7m 00s, exit status 1
  output:
  > exporting
  > ERROR: lock held by pid 977
- `2026-12-05 00:05:00 MST` **check** (nightly-export): missed its run due 00:00 (grace 5m)
- `2026-12-05 00:06:00 MST` **alert**: #42 opened: nightly-export is down
- `2026-12-05 00:06:00 MST` **message** (alice via email): page sent
- `2026-12-05 00:15:00 MST` **alert** (alice): #42 acknowledged
- `2026-12-05 00:30:00 MST` **update** (alice): Investigating: looking
  at logs
- `2026-12-05 01:45:00 MST` **update** (alice): No news
- `2026-12-05 05:00:00 MST` **incident** (alice): owner changed to bob
- `2026-12-06 03:00:00 MST` **update** (bob): All clear: fixed

## Postmortem

### Summary

The export did not run.

### Root cause

A stray process held the lock.

### Contributing factors

- Alerts were low urgency

### Action items

- [ ] Alert on overlap — bob
";
        assert_eq!(md, expected);
    }

    #[test]
    fn json_export_is_ordered_and_complete() {
        let export = example();
        let json = export.json(Tz::UTC);
        let timeline = json["timeline"].as_array().unwrap();
        assert_eq!(timeline.len(), 9);
        assert_eq!(timeline[0]["run"]["exit_status"], 1);
        assert_eq!(timeline[0]["run"]["duration_seconds"], 420.0);
        assert_eq!(
            timeline[0]["run"]["output_tail"][1],
            "ERROR: lock held by pid 977"
        );
        let times: Vec<&str> = timeline.iter().map(|e| e["at"].as_str().unwrap()).collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted);
        assert_eq!(
            json["figures"]["measures"]["time_to_acknowledge"]["seconds"],
            600
        );
        assert_eq!(json["figures"]["updates_on_time"], 1);
        assert_eq!(json["postmortem"]["action_items"][0]["owner"], "bob");
        let html = export.html(Tz::UTC);
        assert!(html.contains("<h1>Incident #7: Nightly billing export</h1>"));
    }
}
