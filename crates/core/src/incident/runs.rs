//! The runs of a check in a postmortem's window: each start ping paired with the finish ping
//! that ends it (by run id, or without one the latest anonymous run, as the check state
//! machine and Healthchecks pair them), shown as one timeline entry with its duration, exit
//! status and the tail of its output; runs that overlapped another, were restarted before
//! they finished, hung, or had not finished when the window ends are named as such. Pings
//! that are not part of a run in the window (simple pings, `log`, `ign`, a finish whose start
//! is before the window) stay single `ping` entries.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::postmortem::{Entry, Marker, human};

/// How many lines of a run's output the export shows, and how long each may be.
pub const TAIL_LINES: usize = 5;
pub const TAIL_LINE_CHARS: usize = 160;

/// A ping as the export reads it (oldest first).
#[derive(Debug, Clone, Default)]
pub struct RunPing {
    pub at: DateTime<Utc>,
    /// `start`, `success`, `fail`, `exit:<n>`, `log`, `ign`.
    pub kind: String,
    pub rid: Option<String>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub remote_addr: String,
    pub volume: Option<i64>,
    /// The end of the body (the store reads at most a few KB of it); `None` when empty.
    pub body: Option<String>,
    /// The body was longer than what is in `body` (cut at ingest or when read).
    pub body_cut: bool,
}

/// A run the engine knows hung: when, and which run (its start and run id).
#[derive(Debug, Clone, PartialEq)]
pub struct HungRun {
    pub at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub rid: Option<String>,
}

/// What a run entry carries in the JSON export.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Run {
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    /// `succeeded`, `failed`, `hung`, `unfinished` (still open at the end of the window) or
    /// `restarted` (a new anonymous start came before its finish).
    pub outcome: String,
    /// The exit status when the finish said (`exit:<n>`; `/fail` has none).
    pub exit_status: Option<i64>,
    pub hung_at: Option<DateTime<Utc>>,
    /// The other runs it overlapped, by their start time.
    pub overlapped: Vec<DateTime<Utc>>,
    pub rid: Option<String>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub volume: Option<i64>,
    /// The last lines of the finish ping's body.
    pub output_tail: Vec<String>,
    /// Lines of output before the tail that are not shown.
    pub output_lines_hidden: usize,
    /// The output was cut before its beginning (by the ping size limit or the export).
    pub output_cut: bool,
}

struct Open {
    start: RunPing,
    overlapped: Vec<DateTime<Utc>>,
}

/// One check's timeline entries for `pings` (oldest first): runs and leftover pings.
/// `end` is the end of the window (runs open then are `unfinished`, or `hung`).
pub fn timeline(
    check: &str,
    pings: &[RunPing],
    hung: &[HungRun],
    end: DateTime<Utc>,
) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    for p in pings {
        match p.kind.as_str() {
            "start" => {
                // A new anonymous start replaces an open anonymous run (the finish would be
                // paired with the newer one): the older run is shown as restarted.
                if p.rid.is_none()
                    && let Some(i) = open.iter().rposition(|r| r.start.rid.is_none())
                {
                    let old = open.remove(i);
                    entries.push(run_entry(check, old, None, Some(p.at), hung));
                }
                for other in &mut open {
                    other.overlapped.push(p.at);
                }
                let overlapped = open.iter().map(|o| o.start.at).collect();
                open.push(Open {
                    start: p.clone(),
                    overlapped,
                });
            }
            "success" | "fail" | "" => finish(check, p, &mut open, &mut entries, hung),
            kind if kind.starts_with("exit:") => finish(check, p, &mut open, &mut entries, hung),
            _ => entries.push(ping_entry(check, p)),
        }
    }
    for run in open {
        entries.push(run_entry(check, run, None, None, hung).with_end(end));
    }
    entries
}

fn finish(
    check: &str,
    p: &RunPing,
    open: &mut Vec<Open>,
    entries: &mut Vec<Entry>,
    hung: &[HungRun],
) {
    let position = match &p.rid {
        Some(rid) => open
            .iter()
            .rposition(|r| r.start.rid.as_deref() == Some(rid.as_str())),
        None => open.iter().rposition(|r| r.start.rid.is_none()),
    };
    match position {
        Some(i) => {
            let run = open.remove(i);
            entries.push(run_entry(check, run, Some(p), None, hung));
        }
        None => entries.push(ping_entry(check, p)),
    }
}

trait WithEnd {
    fn with_end(self, end: DateTime<Utc>) -> Entry;
}

impl WithEnd for Entry {
    /// An open run's text says until when it was seen open.
    fn with_end(mut self, end: DateTime<Utc>) -> Entry {
        if let Some(run) = &self.run
            && run.outcome == "unfinished"
        {
            self.text.push_str(&format!(
                " (still open {} after its start when the window ends)",
                human(end - run.started_at)
            ));
        }
        self
    }
}

fn who(p: &RunPing) -> String {
    match (&p.host, p.pid) {
        (Some(h), Some(pid)) => format!("{h} pid {pid}"),
        (Some(h), None) => h.clone(),
        _ => p.remote_addr.clone(),
    }
}

fn failed(kind: &str) -> bool {
    kind == "fail" || kind.strip_prefix("exit:").is_some_and(|code| code != "0")
}

/// A ping that is not part of a run in the window.
fn ping_entry(check: &str, p: &RunPing) -> Entry {
    let mut text = format!("{check}: {}", p.kind);
    if let Some(rid) = &p.rid {
        text.push_str(&format!(" run {rid}"));
    }
    if let Some(v) = p.volume {
        text.push_str(&format!(", volume {v}"));
    }
    let (tail, hidden, cut) = tail(p);
    text.push_str(&tail_text(&tail, hidden, cut));
    Entry {
        at: p.at,
        kind: "ping".into(),
        who: who(p),
        text,
        marker: failed(&p.kind).then_some(Marker::Failure),
        ..Default::default()
    }
}

fn run_entry(
    check: &str,
    run: Open,
    end: Option<&RunPing>,
    restarted_at: Option<DateTime<Utc>>,
    hung: &[HungRun],
) -> Entry {
    let start = &run.start;
    let hung_at = hung
        .iter()
        .find(|h| h.started_at == start.at && h.rid == start.rid)
        .map(|h| h.at);
    let exit_status = end.and_then(|e| e.kind.strip_prefix("exit:")?.parse().ok());
    let outcome = match end {
        Some(e) if failed(&e.kind) => "failed",
        Some(_) if hung_at.is_some() => "hung",
        Some(_) => "succeeded",
        None if hung_at.is_some() => "hung",
        None if restarted_at.is_some() => "restarted",
        None => "unfinished",
    };
    let (output_tail, output_lines_hidden, output_cut) = end.map(tail).unwrap_or_default();
    let info = Run {
        started_at: start.at,
        finished_at: end.map(|e| e.at),
        duration_seconds: end.map(|e| (e.at - start.at).num_milliseconds() as f64 / 1000.0),
        outcome: outcome.into(),
        exit_status,
        hung_at,
        overlapped: run.overlapped.clone(),
        rid: start.rid.clone(),
        host: start.host.clone(),
        pid: start.pid,
        volume: end.and_then(|e| e.volume),
        output_tail,
        output_lines_hidden,
        output_cut,
    };
    let mut text = format!("{check}: run");
    if let Some(rid) = &info.rid {
        text.push_str(&format!(" {rid}"));
    }
    match (end, outcome) {
        (Some(e), _) => {
            let status = match (&info.exit_status, e.kind.as_str()) {
                (Some(code), _) => format!("exit status {code}"),
                (None, "fail") => "reported failure".into(),
                _ => "success".into(),
            };
            text.push_str(&format!(
                " {outcome} after {}, {status}",
                human_precise(e.at - start.at)
            ));
        }
        (None, "restarted") => text.push_str(&format!(
            " restarted: a new start came {} later, before any finish",
            human_precise(restarted_at.unwrap_or(start.at) - start.at)
        )),
        (None, _) => text.push_str(&format!(" {outcome}: no finish ping")),
    }
    if let Some(at) = hung_at {
        text.push_str(&format!(
            "; HUNG: past its max runtime {} after its start",
            human_precise(at - start.at)
        ));
    }
    if !info.overlapped.is_empty() {
        let starts: Vec<String> = info
            .overlapped
            .iter()
            .map(|t| t.format("%H:%M:%S UTC").to_string())
            .collect();
        text.push_str(&format!(
            "; OVERLAPPING: ran at the same time as the run(s) started {}",
            starts.join(", ")
        ));
    }
    if let Some(v) = info.volume {
        text.push_str(&format!(", volume {v}"));
    }
    text.push_str(&tail_text(
        &info.output_tail,
        info.output_lines_hidden,
        info.output_cut,
    ));
    let failure_at = match outcome {
        "failed" => end.map(|e| e.at),
        "hung" => hung_at,
        _ if !info.overlapped.is_empty() => info.overlapped.iter().copied().max(),
        _ => None,
    };
    Entry {
        at: start.at,
        kind: "run".into(),
        who: who(start),
        text,
        marker: failure_at.map(|_| Marker::Failure),
        marker_at: failure_at,
        run: Some(Box::new(info)),
    }
}

/// `4m 05s` but with the seconds kept for short runs: `0.8 s`, `12.0 s`.
fn human_precise(d: chrono::TimeDelta) -> String {
    if d < chrono::TimeDelta::minutes(1) {
        format!("{:.1} s", d.num_milliseconds().max(0) as f64 / 1000.0)
    } else {
        human(d)
    }
}

/// The last [`TAIL_LINES`] lines of a ping's body (each at most [`TAIL_LINE_CHARS`]), how
/// many lines before them are not shown, and whether the body was cut before its beginning.
fn tail(p: &RunPing) -> (Vec<String>, usize, bool) {
    let Some(body) = &p.body else {
        return (Vec::new(), 0, p.body_cut);
    };
    let lines: Vec<&str> = body.trim_end().lines().collect();
    if lines.iter().all(|l| l.trim().is_empty()) {
        return (Vec::new(), 0, p.body_cut);
    }
    let hidden = lines.len().saturating_sub(TAIL_LINES);
    let shown = lines[hidden..]
        .iter()
        .map(|line| {
            let line = line.trim_end();
            if line.chars().count() > TAIL_LINE_CHARS {
                let cut: String = line.chars().take(TAIL_LINE_CHARS).collect();
                format!("{cut} […]")
            } else {
                line.to_string()
            }
        })
        .collect();
    (shown, hidden, p.body_cut)
}

fn tail_text(lines: &[String], hidden: usize, cut: bool) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut head = String::from("\noutput");
    match (hidden, cut) {
        (0, false) => {}
        (0, true) => head.push_str(" (its beginning was cut)"),
        (n, false) => head.push_str(&format!(
            " (last {} lines; {n} earlier not shown)",
            lines.len()
        )),
        (n, true) => head.push_str(&format!(
            " (last {} lines; {n} earlier and the beginning cut)",
            lines.len()
        )),
    }
    head.push(':');
    for line in lines {
        head.push_str(&format!("\n> {line}"));
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, h, m, s).unwrap()
    }

    fn ping(at: DateTime<Utc>, kind: &str) -> RunPing {
        RunPing {
            at,
            kind: kind.into(),
            remote_addr: "10.0.0.1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_start_and_its_finish_are_one_run_with_duration_exit_status_and_output_tail() {
        let mut end = ping(t(0, 4, 5), "exit:3");
        end.body = Some((1..=12).map(|i| format!("line {i}\n")).collect());
        let mut start = ping(t(0, 0, 0), "start");
        start.host = Some("db1".into());
        start.pid = Some(42);
        let entries = timeline("nightly", &[start, end], &[], t(1, 0, 0));
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.kind, "run");
        assert_eq!(e.at, t(0, 0, 0));
        assert_eq!(e.who, "db1 pid 42");
        assert_eq!(
            e.text,
            "nightly: run failed after 4m 05s, exit status 3\n\
             output (last 5 lines; 7 earlier not shown):\n\
             > line 8\n> line 9\n> line 10\n> line 11\n> line 12"
        );
        assert_eq!(e.marker, Some(Marker::Failure));
        assert_eq!(e.marker_at, Some(t(0, 4, 5)));
        let run = e.run.as_ref().unwrap();
        assert_eq!(run.duration_seconds, Some(245.0));
        assert_eq!(run.exit_status, Some(3));
        assert_eq!(run.output_lines_hidden, 7);
    }

    #[test]
    fn runs_pair_by_rid_and_overlapping_runs_are_named() {
        let mut a = ping(t(0, 0, 0), "start");
        a.rid = Some("a".into());
        let mut b = ping(t(0, 1, 0), "start");
        b.rid = Some("b".into());
        let mut a_end = ping(t(0, 3, 0), "success");
        a_end.rid = Some("a".into());
        let mut b_end = ping(t(0, 2, 0), "exit:0");
        b_end.rid = Some("b".into());
        let entries = timeline("job", &[a, b, b_end, a_end], &[], t(1, 0, 0));
        let texts: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "job: run b succeeded after 1m 00s, exit status 0; OVERLAPPING: ran at the same \
                 time as the run(s) started 00:00:00 UTC",
                "job: run a succeeded after 3m 00s, success; OVERLAPPING: ran at the same time \
                 as the run(s) started 00:01:00 UTC",
            ]
        );
    }

    #[test]
    fn hung_restarted_unfinished_and_lone_pings() {
        let hung_start = ping(t(0, 0, 0), "start");
        let restart = ping(t(0, 30, 0), "start");
        let lone = ping(t(0, 40, 0), "log");
        let mut long_line = ping(t(0, 50, 0), "fail");
        long_line.rid = Some("zz".into());
        long_line.body = Some("x".repeat(200));
        long_line.body_cut = true;
        let hung = [HungRun {
            at: t(0, 10, 0),
            started_at: t(0, 0, 0),
            rid: None,
        }];
        let entries = timeline(
            "job",
            &[hung_start, restart, lone, long_line],
            &hung,
            t(1, 0, 0),
        );
        let texts: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts[0],
            "job: run hung: no finish ping; HUNG: past its max runtime 10m 00s after its start"
        );
        assert_eq!(entries[0].marker_at, Some(t(0, 10, 0)));
        assert_eq!(texts[1], "job: log");
        assert_eq!(
            texts[2],
            format!(
                "job: fail run zz\noutput (its beginning was cut):\n> {} […]",
                "x".repeat(160)
            )
        );
        assert_eq!(entries[2].marker, Some(Marker::Failure));
        assert_eq!(
            texts[3],
            "job: run unfinished: no finish ping (still open 30m 00s after its start when the \
             window ends)"
        );
        let restarted = timeline(
            "job",
            &[ping(t(0, 0, 0), "start"), ping(t(0, 5, 0), "start")],
            &[],
            t(0, 6, 0),
        );
        assert_eq!(
            restarted[0].text,
            "job: run restarted: a new start came 5m 00s later, before any finish"
        );
    }
}
