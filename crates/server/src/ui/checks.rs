//! Checks in the web UI: the dashboard (filterable, live over server-sent events), one
//! check's page (schedule in words, next runs, runs chart, pings, open runs, snippets), and
//! the form that creates and edits checks through the API's own validation.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::Stream;
use std::sync::Arc;

use keepwatch_core::check::{CheckRules, CheckState, DownReason};
use keepwatch_core::schedule::Schedule;
use keepwatch_core::user::Role;
use keepwatch_engine::CheckView;
use keepwatch_engine::live::rules_from_row;
use keepwatch_store::{CheckLabel, CheckRow};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::session::{UiUser, require};
use super::{FormFields, Frame, either, error_page, page, store_error};
use crate::api::checks::{live_states, save_from_spec};
use crate::state::AppState;

/// Rows per dashboard page: a 10,000-check project's first load stays small; problems
/// come first, so the first page is the one that matters at 2 a.m.
const PAGE_ROWS: usize = 100;

/// The states a person reads, worst first (the dashboard's order).
pub const STATES: [&str; 7] = ["down", "hung", "late", "running", "new", "up", "paused"];

/// The rules a check is judged by: the engine's parsed copy, else parsed from the row.
fn rules_of(row: &CheckRow, view: &CheckView) -> Option<Arc<CheckRules>> {
    view.rules
        .clone()
        .or_else(|| rules_from_row(row).ok().map(Arc::new))
}

/// A check's state in one word: new, up, late, down, running, hung or paused.
pub fn state_word(
    rules: Option<&CheckRules>,
    live: &CheckState,
    now: DateTime<Utc>,
) -> &'static str {
    let Some(rules) = rules else {
        return "new";
    };
    let hung =
        live.open_runs.iter().any(|run| run.hung) || live.down_reason == Some(DownReason::Hung);
    match live.api_status(rules, now) {
        "paused" => "paused",
        "down" if hung || !live.open_runs.is_empty() => "hung",
        "down" => "down",
        "grace" if !live.open_runs.is_empty() => "running",
        "grace" => "late",
        _ if !live.open_runs.is_empty() => "running",
        "new" => "new",
        _ => "up",
    }
}

/// "3 min ago" / "in 2 h" from `now`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let span = span_words(secs.unsigned_abs());
    if secs.abs() < 5 {
        "just now".into()
    } else if secs < 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// Seconds as one rounded unit: "45 s", "12 min", "3 h", "2 days".
pub fn span_words(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3_600 => format!("{} min", secs / 60),
        3_600..172_800 => format!("{} h", secs / 3_600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// A time for a title attribute or a table: `2026-12-06 02:14 UTC`.
pub fn absolute(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// One dashboard row.
pub struct CheckLine {
    pub uuid: String,
    pub name: String,
    pub state: &'static str,
    pub tags: Vec<String>,
    pub service: String,
    pub last_ping: String,
    pub last_ping_title: String,
    pub next: String,
    /// The last runs' durations as an inline SVG (numbers only, so it is marked safe).
    pub strip: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct Filter {
    #[serde(default)]
    tag: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    page: usize,
}

impl Filter {
    /// The query string that keeps this filter (for the table refresh and page links).
    fn query(&self, page: usize) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("tag", &self.tag),
            ("state", &self.state),
            ("service", &self.service),
        ] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        if page > 0 {
            query.append_pair("page", &page.to_string());
        }
        query.finish()
    }
}

/// The dashboard's table and what it was filtered by.
pub struct Table {
    pub lines: Vec<CheckLine>,
    /// (state, count) over the whole project, worst first.
    pub counts: Vec<(&'static str, usize)>,
    pub total: usize,
    pub shown_from: usize,
    pub matching: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub query: String,
    pub tags: Vec<String>,
    pub services: Vec<String>,
}

async fn build_table(
    state: &AppState,
    project_id: i64,
    filter: &Filter,
) -> Result<Table, Response> {
    // Labels from the database, states and parsed rules from the engine's memory: the
    // whole row of 10,000 checks, or 10,000 schedules parsed, made a page take 1.4 s.
    let rows = state
        .store
        .list_check_labels(project_id)
        .await
        .map_err(store_error)?;
    let views = state
        .engine
        .states(rows.iter().map(|r| r.id).collect())
        .await
        .map_err(super::engine_error)?;
    // A check deleted between the two reads is left out.
    let live: Vec<(&CheckLabel, CheckView)> = rows
        .iter()
        .zip(views)
        .filter_map(|(row, view)| Some((row, view?)))
        .collect();
    let now = state.engine.now();
    let mut tags: Vec<String> = Vec::new();
    let mut services: Vec<String> = Vec::new();
    let mut counts = [0usize; STATES.len()];
    let mut matching = Vec::new();
    for (row, view) in &live {
        let rules = view.rules.clone();
        let word = state_word(rules.as_deref(), &view.state, now);
        let rank = STATES.iter().position(|s| *s == word).unwrap_or(0);
        counts[rank] += 1;
        for tag in row.tags.split_whitespace() {
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_string());
            }
        }
        let service = row.service.clone().unwrap_or_default();
        if !service.is_empty() && !services.contains(&service) {
            services.push(service.clone());
        }
        let keep = (filter.tag.is_empty() || row.tags.split_whitespace().any(|t| t == filter.tag))
            && (filter.state.is_empty() || filter.state == word)
            && (filter.service.is_empty() || filter.service == service);
        if keep {
            matching.push((rank, row, &view.state, rules, word));
        }
    }
    tags.sort();
    services.sort();
    matching.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let pages = matching.len().div_ceil(PAGE_ROWS).max(1);
    let page = filter.page.min(pages - 1);
    let from = page * PAGE_ROWS;
    let lines = matching
        .iter()
        .skip(from)
        .take(PAGE_ROWS)
        .map(|(_, row, live, rules, word)| line(row, live, rules.as_deref(), word, now))
        .collect();
    Ok(Table {
        lines,
        counts: STATES.iter().copied().zip(counts).collect(),
        total: live.len(),
        shown_from: from,
        matching: matching.len(),
        prev: (page > 0).then(|| filter.query(page - 1)),
        next: (page + 1 < pages).then(|| filter.query(page + 1)),
        query: filter.query(page),
        tags,
        services,
    })
}

fn line(
    row: &CheckLabel,
    live: &CheckState,
    rules: Option<&CheckRules>,
    word: &'static str,
    now: DateTime<Utc>,
) -> CheckLine {
    let next = rules
        .and_then(|rules| live.next_expected(rules))
        .filter(|_| word != "paused" && word != "new")
        .map(|t| relative(t, now))
        .unwrap_or_else(|| "—".into());
    CheckLine {
        uuid: row.uuid.clone(),
        name: if row.name.is_empty() {
            row.uuid.clone()
        } else {
            row.name.clone()
        },
        state: word,
        tags: row.tags.split_whitespace().map(str::to_string).collect(),
        service: row.service.clone().unwrap_or_default(),
        last_ping: live
            .last_ping
            .map(|t| relative(t, now))
            .unwrap_or_else(|| "never".into()),
        last_ping_title: live
            .last_ping
            .map(|t| absolute(t, Tz::UTC))
            .unwrap_or_default(),
        next,
        strip: strip(&live.history.durations_ms),
    }
}

/// The last runs' durations as bars, scaled to the longest; empty when there are none.
fn strip(durations_ms: &[u64]) -> String {
    if durations_ms.is_empty() {
        return String::new();
    }
    let max = durations_ms.iter().copied().max().unwrap_or(1).max(1);
    let mut svg = String::from(
        "<svg class=\"strip\" viewBox=\"0 0 100 20\" width=\"100\" height=\"20\" role=\"img\" aria-label=\"durations of the last runs\">",
    );
    let runs = durations_ms.iter().rev().take(20).rev();
    for (i, d) in runs.enumerate() {
        let h = (d * 18 / max).max(1);
        svg.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"4\" height=\"{h}\"><title>{}</title></rect>",
            i * 5,
            20 - h,
            duration_words(*d)
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Milliseconds for people: "850 ms", "12.4 s", "3 min 5 s".
pub fn duration_words(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

#[derive(Template)]
#[template(path = "ui/dashboard.html")]
struct DashboardPage {
    title: String,
    frame: Frame,
    table: Table,
    filter: Filter,
}

#[derive(Template)]
#[template(path = "ui/checks_table.html")]
struct TableFragment {
    frame: Frame,
    table: Table,
}

/// `GET /ui/p/<project>/`: every check, worst first.
pub async fn dashboard(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(filter): Query<Filter>,
    user: UiUser,
) -> Response {
    let member = match user.project(&state, &project).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let frame = match Frame::new(&state, &user, &member, "checks").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let table = match build_table(&state, member.project_id, &filter).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    page(
        StatusCode::OK,
        &DashboardPage {
            title: format!("Checks · {project}"),
            frame,
            table,
            filter,
        },
    )
}

/// `GET /ui/p/<project>/checks/table`: the table alone, fetched by the page's script when
/// the stream says something changed.
pub async fn table(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(filter): Query<Filter>,
    user: UiUser,
) -> Response {
    let member = match user.project(&state, &project).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let frame = match Frame::new(&state, &user, &member, "checks").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match build_table(&state, member.project_id, &filter).await {
        Ok(table) => page(StatusCode::OK, &TableFragment { frame, table }),
        Err(r) => r,
    }
}

/// `GET /ui/p/<project>/stream`: server-sent events, one `changed` event (at most every
/// 250 ms) after the engine commits pings or deadlines, and a `tick` each 30 s so states
/// that change with time alone (late, down) show too.
pub async fn stream(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: UiUser,
) -> Response {
    if let Err(r) = user.project(&state, &project).await {
        return r;
    }
    let changes = state.engine.subscribe();
    let events = futures_util::stream::unfold(changes, |mut changes| async move {
        let event = tokio::select! {
            changed = changes.changed() => {
                changed.ok()?;
                // Many pings in a burst make one refresh.
                tokio::time::sleep(Duration::from_millis(250)).await;
                changes.mark_unchanged();
                Event::default().event("changed").data("checks")
            }
            () = tokio::time::sleep(Duration::from_secs(30)) => {
                Event::default().event("changed").data("tick")
            }
        };
        Some((Ok::<_, Infallible>(event), changes))
    });
    sse(events)
}

fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// A pings-log line on the check's page.
pub struct PingLine {
    pub n: i64,
    pub at: String,
    pub ago: String,
    pub kind: String,
    pub class: &'static str,
    pub source: String,
    pub duration: String,
    pub body: String,
}

pub struct RunLine {
    pub started: String,
    pub who: String,
    pub hung: bool,
    pub scan_skipped: String,
    pub snapshot: String,
    pub strays: Vec<String>,
}

pub struct FlipLine {
    pub at: String,
    pub from: String,
    pub to: String,
}

#[derive(Template)]
#[template(path = "ui/check.html")]
struct CheckPage {
    title: String,
    frame: Frame,
    uuid: String,
    name: String,
    slug: String,
    state: &'static str,
    down_reason: String,
    schedule_words: String,
    schedule_expr: String,
    grace: String,
    max_runtime: String,
    service: String,
    tags: Vec<String>,
    desc: String,
    paused: bool,
    next_fires: Vec<String>,
    chart: String,
    pings: Vec<PingLine>,
    runs: Vec<RunLine>,
    flips: Vec<FlipLine>,
    /// This check's recent alerts: (id, status, summary, when).
    alerts: Vec<(i64, String, String, String)>,
    ping_url: String,
    snippet_curl: String,
    snippet_run: String,
    snippet_crontab: String,
    snippet_systemd: String,
}

/// The check named by the URL, if it is this project's.
async fn find(state: &AppState, project_id: i64, uuid: &str) -> Result<CheckRow, Response> {
    let row = state
        .store
        .check_by_uuid(&uuid.to_ascii_lowercase())
        .await
        .map_err(store_error)?;
    match row {
        Some(row) if row.project_id == project_id => Ok(row),
        // Another project's check is "not found", as one that does not exist.
        _ => Err(error_page(StatusCode::NOT_FOUND, "No such check.")),
    }
}

/// `GET /ui/p/<project>/checks/<uuid>`.
pub async fn detail(
    State(state): State<AppState>,
    Path((project, uuid)): Path<(String, String)>,
    user: UiUser,
) -> Response {
    match detail_page(&state, &project, &uuid, &user).await {
        Ok(r) | Err(r) => r,
    }
}

async fn detail_page(
    state: &AppState,
    project: &str,
    uuid: &str,
    user: &UiUser,
) -> Result<Response, Response> {
    let member = user.project(state, project).await?;
    let frame = Frame::new(state, user, &member, "checks").await?;
    let row = find(state, member.project_id, uuid).await?;
    let view = live_states(state, std::slice::from_ref(&row))
        .await
        .map_err(|e| error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message()))?
        .remove(0);
    let rules = rules_of(&row, &view);
    let live = view.state;
    let now = state.engine.now();
    let word = state_word(rules.as_deref(), &live, now);
    let tz: Tz = row.tz.parse().unwrap_or(Tz::UTC);
    let mut next_fires = Vec::new();
    let (schedule_words, schedule_expr) = match &rules {
        Some(rules) => {
            let mut t = now;
            for _ in 0..5 {
                match rules.schedule.next_after(t) {
                    Some(next) => {
                        next_fires.push(format!(
                            "{} ({})",
                            absolute(next, rules.schedule.tz().unwrap_or(tz)),
                            relative(next, now)
                        ));
                        t = next;
                    }
                    None => break,
                }
            }
            (
                rules.schedule.describe(),
                rules.schedule.expr().unwrap_or("").to_string(),
            )
        }
        None => (
            "(the stored schedule does not parse)".into(),
            row.schedule.clone(),
        ),
    };
    let pings_rows = state
        .store
        .list_pings(row.id, view.last_seq, 50)
        .await
        .map_err(store_error)?;
    let mut pings = Vec::with_capacity(pings_rows.len());
    for (i, p) in pings_rows.iter().enumerate() {
        // Bodies of the latest pings only: each is a read of its own.
        let body = if i < 10 {
            state
                .store
                .ping(row.id, view.last_seq, 50, p.n)
                .await
                .map_err(store_error)?
                .and_then(|p| p.body)
                .map(|b| {
                    let text = String::from_utf8_lossy(&b);
                    let mut text: String = text.chars().take(2_000).collect();
                    if p.body_truncated || b.len() > 2_000 {
                        text.push_str("\n[…]");
                    }
                    text
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        let at: DateTime<Utc> = p.at.into();
        let class = match p.kind.as_str() {
            "success" | "exit:0" => "ok",
            "start" => "start",
            "log" => "log",
            "ign" => "log",
            _ => "bad",
        };
        pings.push(PingLine {
            n: p.n,
            at: absolute(at, tz),
            ago: relative(at, now),
            kind: p.kind.clone(),
            class,
            source: [p.method.as_str(), p.remote_addr.as_str(), p.ua.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" · "),
            duration: p
                .duration_ms
                .map(|d| duration_words(u64::try_from(d).unwrap_or(0)))
                .unwrap_or_default(),
            body,
        });
    }
    let runs = live
        .open_runs
        .iter()
        .map(|run| RunLine {
            started: format!(
                "{} ({})",
                absolute(run.started_at, tz),
                relative(run.started_at, now)
            ),
            who: [
                run.identity.host.clone(),
                run.identity.pid.map(|p| format!("pid {p}")),
                run.identity.rid.map(|r| format!("rid {r}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
            hung: run.hung,
            scan_skipped: run.scan_skipped.clone().unwrap_or_default(),
            snapshot: run
                .snapshot
                .as_ref()
                .map(|s| s.summary.clone())
                .unwrap_or_default(),
            strays: run
                .snapshot
                .as_ref()
                .map(|s| {
                    s.watched
                        .iter()
                        .map(|p| {
                            format!(
                                "pid {} since {}: {}",
                                p.pid,
                                absolute(p.started_at, tz),
                                p.cmdline
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let week_ago = now - chrono::Duration::days(30);
    let flips = state
        .store
        .list_flips(row.id, week_ago.into(), now.into())
        .await
        .map_err(store_error)?
        .into_iter()
        .take(20)
        .map(|f| FlipLine {
            at: absolute(f.at.into(), tz),
            from: f.old_status.to_string(),
            to: f.new_status.to_string(),
        })
        .collect();
    // Its alerts (down, hung, overlap, anomaly …), newest first, among the project's latest.
    let key = format!("check:{}", row.uuid);
    let alerts = state
        .store
        .list_alerts(row.project_id, None, 500)
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|a| a.dedup_key == key || a.dedup_key.starts_with(&format!("{key}:")))
        .take(10)
        .map(|a| {
            (
                a.id,
                a.status.to_string(),
                a.summary,
                relative(a.triggered_at.into(), now),
            )
        })
        .collect();
    let ping_url = format!("{}/{}", state.config.ping_url, row.uuid);
    let site = &state.config.site_url;
    // cron reads the line in the machine's zone; CRON_TZ (cronie, systemd-cron) makes it
    // fire when the check expects it.
    let cron_line = if row.kind == "cron" && row.tz != "UTC" {
        format!("CRON_TZ={}\n{}", row.tz, row.schedule)
    } else if row.kind == "cron" {
        row.schedule.clone()
    } else {
        "0 * * * *".into()
    };
    let name = if row.name.is_empty() {
        row.uuid.clone()
    } else {
        row.name.clone()
    };
    let page_view = CheckPage {
        title: format!("{name} · {project}"),
        frame,
        snippet_curl: format!(
            "curl -fsS -m 10 --retry 5 -o /dev/null {ping_url}/start\n/path/to/job.sh\ncurl -fsS -m 10 --retry 5 -o /dev/null {ping_url}/$?"
        ),
        snippet_run: format!(
            "keepwatch run --server {site} {} -- /path/to/job.sh",
            row.uuid
        ),
        snippet_crontab: format!(
            "{cron_line} keepwatch run --server {site} {} -- /path/to/job.sh",
            row.uuid
        ),
        snippet_systemd: format!(
            "[Service]\nType=oneshot\nExecStart=/usr/local/bin/keepwatch run --server {site} {} -- /path/to/job.sh",
            row.uuid
        ),
        uuid: row.uuid.clone(),
        name,
        slug: if row.slug.is_empty() {
            "none (ping it by UUID)".into()
        } else {
            row.slug.clone()
        },
        state: word,
        down_reason: match live.down_reason {
            Some(DownReason::Missed) => "the expected ping did not come".into(),
            Some(DownReason::Failed) => "the last run failed".into(),
            Some(DownReason::Hung) => "a run did not finish within its max runtime".into(),
            Some(DownReason::NeverReported) => "it has never pinged".into(),
            Some(DownReason::Late) => "late: its expected ping has not come yet".into(),
            None => String::new(),
        },
        schedule_words,
        schedule_expr,
        grace: span_words(u64::try_from(row.grace_secs).unwrap_or(0)),
        max_runtime: row
            .max_runtime_secs
            .map(|s| span_words(u64::try_from(s).unwrap_or(0)))
            .unwrap_or_else(|| "none (hangs go unseen)".into()),
        service: row.service.clone().unwrap_or_default(),
        tags: row.tags.split_whitespace().map(str::to_string).collect(),
        desc: row.descr.clone(),
        paused: word == "paused",
        next_fires,
        chart: chart(&live.history.durations_ms, &live.history.volumes),
        pings,
        runs,
        flips,
        alerts,
        ping_url,
    };
    Ok(page(StatusCode::OK, &page_view))
}

/// Durations as bars and volumes as a line over the last runs, server-rendered SVG with
/// labelled axes; empty when there is no history.
fn chart(durations_ms: &[u64], volumes: &[i64]) -> String {
    if durations_ms.is_empty() && volumes.is_empty() {
        return String::new();
    }
    let (w, h, left, bottom) = (600usize, 180usize, 60usize, 20usize);
    let plot_h = h - bottom - 10;
    let n = durations_ms.len().max(volumes.len()).max(1);
    // One run is one bar, not the whole width.
    let step = ((w - left) / n).min(40);
    let max_d = durations_ms.iter().copied().max().unwrap_or(1).max(1);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"duration and volume of the last {n} runs\">\
         <text x=\"0\" y=\"12\" class=\"axis\">{}</text><text x=\"0\" y=\"{}\" class=\"axis\">0</text>",
        duration_words(max_d),
        h - bottom
    );
    for (i, d) in durations_ms.iter().enumerate() {
        let bar = (*d as usize * plot_h / max_d as usize).max(1);
        svg.push_str(&format!(
            "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bar}\"><title>run {}: {}</title></rect>",
            left + i * step,
            h - bottom - bar,
            step.saturating_sub(2).max(1),
            i + 1,
            duration_words(*d)
        ));
    }
    if volumes.len() > 1 {
        let max_v = volumes.iter().copied().max().unwrap_or(1).max(1);
        let points: Vec<String> = volumes
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let y = h - bottom - (usize::try_from(*v).unwrap_or(0) * plot_h / max_v as usize);
                format!("{},{y}", left + i * step + step / 2)
            })
            .collect();
        svg.push_str(&format!(
            "<polyline class=\"volume\" fill=\"none\" points=\"{}\"><title>volume, up to {max_v}</title></polyline>",
            points.join(" ")
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{left}\" y=\"{h}\" class=\"axis\">oldest</text><text x=\"{}\" y=\"{h}\" class=\"axis\">latest</text></svg>",
        w - 40
    ));
    svg
}

/// The check form's fields, as shown (and shown again with an error).
#[derive(Default)]
pub struct CheckForm {
    pub name: String,
    pub slug: String,
    pub kind: String,
    pub schedule: String,
    pub tz: String,
    pub timeout: String,
    pub grace: String,
    pub max_runtime: String,
    pub service: String,
    pub tags: String,
    pub desc: String,
}

impl CheckForm {
    fn from_fields(form: &std::collections::HashMap<String, String>) -> CheckForm {
        let field = |name: &str| {
            form.get(name)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        CheckForm {
            name: field("name"),
            slug: field("slug"),
            kind: field("kind"),
            schedule: field("schedule"),
            tz: field("tz"),
            timeout: field("timeout"),
            grace: field("grace"),
            max_runtime: field("max_runtime"),
            service: field("service"),
            tags: field("tags"),
            desc: field("desc"),
        }
    }

    fn from_row(row: &CheckRow) -> CheckForm {
        CheckForm {
            name: row.name.clone(),
            slug: row.slug.clone(),
            kind: row.kind.clone(),
            schedule: if row.kind == "cron" {
                row.schedule.clone()
            } else {
                String::new()
            },
            tz: row.tz.clone(),
            timeout: span_input(row.timeout_secs),
            grace: span_input(row.grace_secs),
            max_runtime: row.max_runtime_secs.map(span_input).unwrap_or_default(),
            service: row.service.clone().unwrap_or_default(),
            tags: row.tags.clone(),
            desc: row.descr.clone(),
        }
    }

    /// The API's JSON body for these fields; durations are written as `1h`, `90s`, `30m`.
    fn spec(&self) -> Result<Value, String> {
        let mut body = Map::new();
        body.insert("name".into(), self.name.clone().into());
        if !self.slug.is_empty() {
            body.insert("slug".into(), self.slug.clone().into());
        }
        body.insert("tags".into(), self.tags.clone().into());
        body.insert("desc".into(), self.desc.clone().into());
        body.insert("service".into(), self.service.clone().into());
        if self.kind == "cron" {
            body.insert("schedule".into(), self.schedule.clone().into());
            body.insert(
                "tz".into(),
                if self.tz.is_empty() { "UTC" } else { &self.tz }.into(),
            );
        } else {
            body.insert("timeout".into(), seconds("period", &self.timeout)?.into());
        }
        body.insert("grace".into(), seconds("grace", &self.grace)?.into());
        if self.max_runtime.is_empty() {
            body.insert("max_runtime".into(), Value::Null);
        } else {
            body.insert(
                "max_runtime".into(),
                seconds("max runtime", &self.max_runtime)?.into(),
            );
        }
        Ok(Value::Object(body))
    }
}

/// Seconds as the form shows them: `1h`, `30m`, `90s`.
fn span_input(secs: i64) -> String {
    if secs % 3_600 == 0 {
        format!("{}h", secs / 3_600)
    } else if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// A duration field: `90`, `90s`, `30m`, `1h 30m`, `2d`.
fn seconds(what: &str, text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(n);
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| format!("{what}: `{text}` is not a duration (write 90s, 30m, 1h or 2d)"))
}

#[derive(Template)]
#[template(path = "ui/check_form.html")]
struct CheckFormPage {
    title: String,
    frame: Frame,
    form: CheckForm,
    uuid: String,
    error: String,
}

fn form_page(
    status: StatusCode,
    frame: Frame,
    form: CheckForm,
    uuid: &str,
    error: &str,
) -> Response {
    page(
        status,
        &CheckFormPage {
            title: if uuid.is_empty() {
                "New check".into()
            } else {
                format!("Edit {}", form.name)
            },
            frame,
            form,
            uuid: uuid.to_string(),
            error: error.to_string(),
        },
    )
}

/// `GET /ui/p/<project>/checks/new`.
pub async fn new_form(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: UiUser,
) -> Response {
    let run = async {
        let member = user.project(&state, &project).await?;
        require(member.role, Role::can_admin, "create checks")?;
        let frame = Frame::new(&state, &user, &member, "checks").await?;
        let form = CheckForm {
            kind: "cron".into(),
            schedule: "0 2 * * *".into(),
            tz: "UTC".into(),
            timeout: "1d".into(),
            grace: "1h".into(),
            max_runtime: "2h".into(),
            ..CheckForm::default()
        };
        Ok::<_, Response>(form_page(StatusCode::OK, frame, form, "", ""))
    };
    either(run.await)
}

/// `POST /ui/p/<project>/checks/new`.
pub async fn create(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: UiUser,
    axum::Form(fields): FormFields,
) -> Response {
    save_form(&state, &project, None, &user, &fields).await
}

/// `GET /ui/p/<project>/checks/<uuid>/edit`.
pub async fn edit_form(
    State(state): State<AppState>,
    Path((project, uuid)): Path<(String, String)>,
    user: UiUser,
) -> Response {
    let run = async {
        let member = user.project(&state, &project).await?;
        require(member.role, Role::can_admin, "edit checks")?;
        let frame = Frame::new(&state, &user, &member, "checks").await?;
        let row = find(&state, member.project_id, &uuid).await?;
        Ok::<_, Response>(form_page(
            StatusCode::OK,
            frame,
            CheckForm::from_row(&row),
            &row.uuid,
            "",
        ))
    };
    either(run.await)
}

/// `POST /ui/p/<project>/checks/<uuid>/edit`.
pub async fn edit(
    State(state): State<AppState>,
    Path((project, uuid)): Path<(String, String)>,
    user: UiUser,
    axum::Form(fields): FormFields,
) -> Response {
    save_form(&state, &project, Some(&uuid), &user, &fields).await
}

async fn save_form(
    state: &AppState,
    project: &str,
    uuid: Option<&str>,
    user: &UiUser,
    fields: &std::collections::HashMap<String, String>,
) -> Response {
    let run = async {
        let member = user
            .may_post(
                state,
                project,
                fields,
                Role::can_admin,
                "create or edit checks",
            )
            .await?;
        let existing = match uuid {
            Some(uuid) => Some(find(state, member.project_id, uuid).await?),
            None => None,
        };
        let form = CheckForm::from_fields(fields);
        let shown_uuid = existing
            .as_ref()
            .map(|r| r.uuid.clone())
            .unwrap_or_default();
        let saved = match form.spec() {
            Ok(body) => save_from_spec(state, member.project_id, existing, &body)
                .await
                .map_err(|e| e.message()),
            Err(e) => Err(e),
        };
        match saved {
            Ok(check) => {
                let uuid = check["uuid"].as_str().unwrap_or_default();
                Ok(Redirect::to(&format!("/ui/p/{project}/checks/{uuid}")).into_response())
            }
            Err(error) => {
                let frame = Frame::new(state, user, &member, "checks").await?;
                Ok(form_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    frame,
                    form,
                    &shown_uuid,
                    &error,
                ))
            }
        }
    };
    either(run.await)
}

/// `POST /ui/p/<project>/checks/<uuid>/act`: `action` = pause, resume or delete.
pub async fn act(
    State(state): State<AppState>,
    Path((project, uuid)): Path<(String, String)>,
    user: UiUser,
    axum::Form(fields): FormFields,
) -> Response {
    let run = async {
        let member = user
            .may_post(
                &state,
                &project,
                &fields,
                Role::can_admin,
                "pause, resume or delete checks",
            )
            .await?;
        let row = find(&state, member.project_id, &uuid).await?;
        let engine_error = super::engine_error;
        match fields.get("action").map(String::as_str) {
            Some("pause") => state.engine.pause(row.id).await.map_err(engine_error)?,
            Some("resume") => {
                state.engine.resume(row.id).await.map_err(engine_error)?;
            }
            Some("delete") => {
                state
                    .engine
                    .delete_check(row.id)
                    .await
                    .map_err(engine_error)?;
                return Ok(Redirect::to(&format!("/ui/p/{project}/")).into_response());
            }
            _ => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "Unknown action: pause, resume or delete.",
                ));
            }
        }
        Ok(Redirect::to(&format!("/ui/p/{project}/checks/{}", row.uuid)).into_response())
    };
    either(run.await)
}

#[derive(Deserialize)]
pub struct CronQuery {
    #[serde(default)]
    expr: String,
    #[serde(default)]
    tz: String,
}

/// `GET /ui/p/<project>/cron?expr=…&tz=…`: the next five runs of a cron expression as a
/// JSON list, or its error, for the form's preview as you type (the same parser as checks).
pub async fn cron_preview(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(query): Query<CronQuery>,
    user: UiUser,
) -> Response {
    if let Err(r) = user.project(&state, &project).await {
        return r;
    }
    let tz = if query.tz.trim().is_empty() {
        "UTC"
    } else {
        query.tz.trim()
    };
    let body = match Schedule::parse(&query.expr, tz) {
        Ok(schedule) => {
            let zone = schedule.tz().unwrap_or(Tz::UTC);
            let mut t = state.engine.now();
            let mut next = Vec::new();
            for _ in 0..5 {
                let Some(at) = schedule.next_after(t) else {
                    break;
                };
                next.push(absolute(at, zone));
                t = at;
            }
            json!({ "words": schedule.describe(), "next": next })
        }
        Err(e) => json!({ "error": e.to_string() }),
    };
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_durations_read_as_words() {
        assert_eq!(span_words(45), "45 s");
        assert_eq!(span_words(600), "10 min");
        assert_eq!(span_words(7_200), "2 h");
        assert_eq!(span_words(3 * 86_400), "3 days");
        assert_eq!(duration_words(850), "850 ms");
        assert_eq!(duration_words(12_400), "12.4 s");
        assert_eq!(duration_words(185_000), "3 min 5 s");
    }

    #[test]
    fn form_durations_accept_units_and_refuse_words() {
        assert_eq!(seconds("grace", "90"), Ok(90));
        assert_eq!(seconds("grace", "30m"), Ok(1_800));
        assert_eq!(seconds("grace", "1h 30m"), Ok(5_400));
        assert!(
            seconds("grace", "soon")
                .unwrap_err()
                .contains("grace: `soon`")
        );
        assert_eq!(span_input(7_200), "2h");
        assert_eq!(span_input(90), "90s");
    }

    #[test]
    fn the_strip_scales_to_the_longest_run() {
        assert_eq!(strip(&[]), "");
        let svg = strip(&[1_000, 2_000]);
        assert!(
            svg.contains("height=\"9\"") && svg.contains("height=\"18\""),
            "{svg}"
        );
    }
}
