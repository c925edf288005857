//! On-call in the web UI: who is on call now and next in each schedule, the coming two
//! weeks of shifts with a "cover this shift" button (an override in two clicks), the
//! signed-in user's own shifts, policies and services in words, people with their contacts,
//! rules and verification (and a test message), and the calendar feed URLs.
//!
//! An override made here is written into the applied on-call file (kept with its comments)
//! and applied as `keepwatch apply` would: the pager and the drill use it at once, and
//! `keepwatch export` shows it so the file in git can catch up.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use keepwatch_core::alert::paging::{EscalationPolicy, Target, UrgencyRule};
use keepwatch_core::oncall::OnCallSchedule;
use keepwatch_core::oncall::config::OnCall;
use keepwatch_core::user::Role;

use super::checks::absolute;
use super::session::{UiUser, require};
use super::{FormFields, Frame, error_page, page, store_error};
use crate::api::oncall_config::{apply_config, unverified_contacts};
use crate::state::AppState;

/// How far ahead the calendar shows shifts.
const CALENDAR_DAYS: i64 = 14;

pub struct ShiftLine {
    pub start: String,
    pub end: String,
    /// RFC 3339, for the cover form.
    pub start_at: String,
    pub end_at: String,
    pub users: String,
    pub first_user: String,
    pub overridden: bool,
}

pub struct ScheduleView {
    pub name: String,
    pub tz: String,
    pub now: String,
    pub until: String,
    pub next: String,
    pub feed: String,
    pub shifts: Vec<ShiftLine>,
    pub overrides: Vec<String>,
}

pub struct PersonView {
    pub id: String,
    pub tz: String,
    /// (contact name, address shown, verified)
    pub contacts: Vec<(String, String, bool)>,
    pub rules: Vec<String>,
    pub feed: String,
}

#[derive(Template)]
#[template(path = "ui/oncall.html")]
struct OnCallPage {
    title: String,
    frame: Frame,
    applied: bool,
    schedules: Vec<ScheduleView>,
    mine: Vec<String>,
    person: String,
    people_ids: Vec<String>,
    policies: Vec<(String, Vec<String>)>,
    services: Vec<(String, Vec<String>)>,
    people: Vec<PersonView>,
    notice: String,
}

fn who(users: &[String]) -> String {
    if users.is_empty() {
        "nobody".into()
    } else {
        users.join(", ")
    }
}

fn target(t: &Target) -> String {
    match t {
        Target::User(id) => format!("person {id}"),
        Target::Schedule(name) => format!("whoever is on call in {name}"),
    }
}

/// A policy in sentences: "Step 1, at once: …", "then after 15 min: …", repeats, last resort.
pub fn policy_words(policy: &EscalationPolicy) -> Vec<String> {
    let mut lines = Vec::new();
    let mut after = 0u32;
    for (i, step) in policy.steps.iter().enumerate() {
        let targets: Vec<String> = step.targets.iter().map(target).collect();
        let when = if i == 0 {
            "at once".to_string()
        } else {
            format!("{after} min after the first page, if nobody acknowledged")
        };
        lines.push(format!("Step {}, {when}: {}", i + 1, targets.join(" and ")));
        after += step.delay_minutes;
    }
    lines.push(match policy.repeat {
        0 => "Does not repeat.".to_string(),
        n => format!("Repeats {n} more time(s) if nobody acknowledges."),
    });
    lines.push(match &policy.last_resort {
        Some(t) => format!("Last resort: {}.", target(t)),
        None => "No last resort.".into(),
    });
    lines
}

fn urgency_words(rule: &UrgencyRule) -> String {
    match rule {
        UrgencyRule::Always(u) => format!("always {u} urgency"),
        UrgencyRule::SupportHours {
            tz,
            windows,
            inside,
            outside,
        } => {
            let hours: Vec<String> = windows
                .iter()
                .map(|w| {
                    let days: Vec<String> = w.days.iter().map(|d| d.to_string()).collect();
                    format!(
                        "{} {}–{}",
                        days.join(","),
                        w.start.format("%H:%M"),
                        w.end.format("%H:%M")
                    )
                })
                .collect();
            format!(
                "{inside} urgency in support hours ({} {tz}), {outside} outside",
                hours.join("; ")
            )
        }
    }
}

fn services_words(config: &OnCall) -> Vec<(String, Vec<String>)> {
    let mut names: Vec<&String> = config.services.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let s = &config.services[name];
            let mut lines = vec![
                format!("Escalation policy: {}", s.policy),
                format!("Urgency: {}", urgency_words(&s.urgency)),
            ];
            lines.push(match s.raise_after {
                Some(d) => format!(
                    "A low-urgency alert nobody acknowledges is raised to high after {} min.",
                    d.num_minutes()
                ),
                None => "Low-urgency alerts are never raised to high.".into(),
            });
            if !s.checks.is_empty() {
                lines.push(format!("{} check(s) bound in the file.", s.checks.len()));
            }
            (name.clone(), lines)
        })
        .collect()
}

/// What a viewer may see of an address (it may hold a webhook token).
fn shown_address(address: &str, full: bool) -> String {
    if full {
        return address.to_string();
    }
    if let Some((scheme, rest)) = address.split_once("://") {
        format!(
            "{scheme}://{}/…",
            rest.split('/').next().unwrap_or_default()
        )
    } else if let Some((_, domain)) = address.rsplit_once('@') {
        format!("…@{domain}")
    } else {
        "…".into()
    }
}

fn schedule_view(schedule: &OnCallSchedule, now: DateTime<Utc>, feed: String) -> ScheduleView {
    let tz = schedule.tz;
    let handover = schedule.handover(now);
    let shifts = schedule
        .shifts(now, now + TimeDelta::days(CALENDAR_DAYS))
        .into_iter()
        .map(|s| ShiftLine {
            start: absolute(s.start, tz),
            end: absolute(s.end, tz),
            start_at: s.start.to_rfc3339(),
            end_at: s.end.to_rfc3339(),
            overridden: schedule
                .overrides
                .iter()
                .any(|o| o.start < s.end && o.end > s.start && s.users.contains(&o.user)),
            first_user: s.users.first().cloned().unwrap_or_default(),
            users: who(&s.users),
        })
        .collect();
    let overrides = schedule
        .overrides
        .iter()
        .filter(|o| o.end > now)
        .map(|o| {
            format!(
                "{} covers{} from {} to {}",
                o.user,
                o.replaces
                    .as_ref()
                    .map(|r| format!(" for {r}"))
                    .unwrap_or_default(),
                absolute(o.start, tz),
                absolute(o.end, tz)
            )
        })
        .collect();
    ScheduleView {
        name: schedule.name.clone(),
        tz: tz.to_string(),
        now: who(&handover.users),
        until: absolute(handover.until, tz),
        next: who(&handover.next),
        feed,
        shifts,
        overrides,
    }
}

/// `GET /ui/p/<project>/oncall/`.
pub async fn overview(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: UiUser,
) -> Response {
    render(&state, &project, &user, StatusCode::OK, "").await
}

async fn render(
    state: &AppState,
    project: &str,
    user: &UiUser,
    status: StatusCode,
    notice: &str,
) -> Response {
    let run = async {
        let member = user.project(state, project).await?;
        let frame = Frame::new(state, user, &member, "oncall").await?;
        let applied = state
            .store
            .oncall(member.project_id)
            .await
            .map_err(store_error)?;
        let config = applied.as_deref().and_then(|a| a.config.as_ref().ok());
        let Some(config) = config else {
            return Ok(page(
                status,
                &OnCallPage {
                    title: format!("On-call · {project}"),
                    frame,
                    applied: false,
                    schedules: Vec::new(),
                    mine: Vec::new(),
                    person: String::new(),
                    people_ids: Vec::new(),
                    policies: Vec::new(),
                    services: Vec::new(),
                    people: Vec::new(),
                    notice: notice.to_string(),
                },
            ));
        };
        let now = state.engine.now();
        let feeds = state
            .store
            .feeds(member.project_id)
            .await
            .map_err(store_error)?;
        let site = &state.config.site_url;
        let feed = |kind: &str, name: &str| {
            feeds
                .iter()
                .find(|f| f.kind == kind && f.name == name)
                .map(|f| format!("{site}/ical/{}.ics", f.token))
                .unwrap_or_default()
        };
        let mut names: Vec<&String> = config.schedules.keys().collect();
        names.sort();
        let schedules = names
            .iter()
            .map(|name| schedule_view(&config.schedules[*name], now, feed("schedule", name)))
            .collect();
        let person = user.session.user.person.clone();
        let mut mine = Vec::new();
        if !person.is_empty() {
            for name in &names {
                let schedule = &config.schedules[*name];
                for shift in schedule.shifts_of(&person, now, now + TimeDelta::days(CALENDAR_DAYS))
                {
                    mine.push(format!(
                        "{name}: {} to {}",
                        absolute(shift.start, schedule.tz),
                        absolute(shift.end, schedule.tz)
                    ));
                }
            }
        }
        let mut policy_names: Vec<&String> = config.policies.keys().collect();
        policy_names.sort();
        let policies = policy_names
            .into_iter()
            .map(|name| (name.clone(), policy_words(&config.policies[name])))
            .collect();
        let unverified = unverified_contacts(&state.store, member.project_id, config)
            .await
            .map_err(store_error)?;
        let mut people_ids: Vec<String> = config.people.keys().cloned().collect();
        people_ids.sort();
        let full = member.role.can_respond();
        let people = people_ids
            .iter()
            .map(|id| {
                let mut contacts: Vec<(String, String, bool)> = config
                    .contacts
                    .get(id)
                    .map(|c| {
                        c.iter()
                            .map(|(name, address)| {
                                let pending = unverified.iter().any(|(p, n)| p == id && n == name);
                                (name.clone(), shown_address(address, full), !pending)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                contacts.sort();
                let rules = config.people[id]
                    .rules
                    .iter()
                    .map(|r| {
                        format!(
                            "{} urgency: {} {}",
                            r.urgency,
                            r.contact,
                            if r.delay_minutes == 0 {
                                "at once".to_string()
                            } else {
                                format!("after {} min", r.delay_minutes)
                            }
                        )
                    })
                    .collect();
                PersonView {
                    id: id.clone(),
                    tz: config
                        .time_zones
                        .get(id)
                        .map(|tz| tz.to_string())
                        .unwrap_or_default(),
                    contacts,
                    rules,
                    feed: feed("person", id),
                }
            })
            .collect();
        Ok::<_, Response>(page(
            status,
            &OnCallPage {
                title: format!("On-call · {project}"),
                frame,
                applied: true,
                schedules,
                mine,
                person,
                people_ids,
                policies,
                services: services_words(config),
                people,
                notice: notice.to_string(),
            },
        ))
    };
    match run.await {
        Ok(r) | Err(r) => r,
    }
}

/// Parses a form time: RFC 3339 (the cover buttons), or `datetime-local` (`2026-12-06T22:00`)
/// read in the schedule's zone.
fn form_time(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").ok()?;
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Adds an override to schedule `schedule` of the on-call file `source`, keeping the rest
/// of the file (comments, order) as it was.
pub fn add_override(
    source: &str,
    schedule: &str,
    user: &str,
    replaces: Option<&str>,
    start: DateTime<Tz>,
    end: DateTime<Tz>,
    note: &str,
) -> Result<String, String> {
    use toml_edit::{DocumentMut, Item, Table, value};
    let mut doc: DocumentMut = source
        .parse()
        .map_err(|e| format!("the applied file does not parse: {e}"))?;
    let schedules = doc
        .get_mut("schedules")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or("the file has no [[schedules]]")?;
    let entry = schedules
        .iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(schedule))
        .ok_or_else(|| format!("no schedule named `{schedule}`"))?;
    let mut table = Table::new();
    table.insert("user", value(user));
    if let Some(replaces) = replaces.filter(|r| !r.is_empty()) {
        table.insert("replaces", value(replaces));
    }
    table.insert("start", value(start.to_rfc3339()));
    table.insert("end", value(end.to_rfc3339()));
    table.decor_mut().set_prefix(format!("# {note}\n"));
    match entry.get_mut("overrides") {
        None => {
            let mut list = toml_edit::ArrayOfTables::new();
            list.push(table);
            entry.insert("overrides", Item::ArrayOfTables(list));
        }
        Some(Item::ArrayOfTables(list)) => list.push(table),
        Some(Item::Value(toml_edit::Value::Array(list))) => {
            list.push(table.into_inline_table());
        }
        Some(_) => return Err(format!("`{schedule}`.overrides is not a list")),
    }
    Ok(doc.to_string())
}

/// `POST /ui/p/<project>/oncall/override`: `schedule`, `user`, `start`, `end`, optional
/// `replaces`. Responders and admins.
pub async fn create_override(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: UiUser,
    axum::Form(fields): FormFields,
) -> Response {
    let run = async {
        let member = user.project(&state, &project).await?;
        user.check_csrf(fields.get("csrf").map(String::as_str))?;
        require(member.role, Role::can_respond, "create overrides")?;
        let field = |name: &str| fields.get(name).map(|v| v.trim()).unwrap_or("");
        let applied = state
            .store
            .oncall(member.project_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| error_page(StatusCode::NOT_FOUND, "No on-call file is applied."))?;
        let config = applied
            .config
            .as_ref()
            .map_err(|e| error_page(StatusCode::CONFLICT, e))?;
        let name = field("schedule");
        let Some(schedule) = config.schedules.get(name) else {
            return Err(error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("No schedule named `{name}`."),
            ));
        };
        let who = field("user");
        if !config.people.contains_key(who) {
            return Ok(render(
                &state,
                &project,
                &user,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("Choose a person from the file to cover the shift (`{who}` is not one)."),
            )
            .await);
        }
        let (Some(start), Some(end)) = (
            form_time(field("start"), schedule.tz),
            form_time(field("end"), schedule.tz),
        ) else {
            return Ok(render(
                &state,
                &project,
                &user,
                StatusCode::UNPROCESSABLE_ENTITY,
                "The override needs a start and an end time.",
            )
            .await);
        };
        if end <= start {
            return Ok(render(
                &state,
                &project,
                &user,
                StatusCode::UNPROCESSABLE_ENTITY,
                "The override must end after it starts.",
            )
            .await);
        }
        let now = state.engine.now();
        let note = format!(
            "override added in the web UI by {} on {}",
            user.email(),
            absolute(now, Tz::UTC)
        );
        let replaces = Some(field("replaces")).filter(|r| !r.is_empty() && *r != who);
        let text = add_override(
            &applied.source,
            name,
            who,
            replaces,
            start.with_timezone(&schedule.tz),
            end.with_timezone(&schedule.tz),
            &note,
        )
        .map_err(|e| error_page(StatusCode::CONFLICT, &e))?;
        let acting = format!("{} (web)", user.email());
        match apply_config(
            &state.store,
            Some(&state.engine),
            member.project_id,
            &text,
            false,
            &acting,
            now,
        )
        .await
        .map_err(|e| error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message()))?
        {
            Ok(_) => Ok(Redirect::to(&format!("/ui/p/{project}/oncall/")).into_response()),
            Err(e) => Ok(render(
                &state,
                &project,
                &user,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("The override was not saved: {e}"),
            )
            .await),
        }
    };
    match run.await {
        Ok(r) | Err(r) => r,
    }
}

/// `POST /ui/p/<project>/oncall/people/<id>/test`: sends a verification code through one
/// contact (`contact`), a test that the address reaches the person; typing the code back
/// (`code`) marks the contact verified.
pub async fn test_contact(
    State(state): State<AppState>,
    Path((project, person)): Path<(String, String)>,
    user: UiUser,
    axum::Form(fields): FormFields,
) -> Response {
    let run = async {
        let member = user.project(&state, &project).await?;
        user.check_csrf(fields.get("csrf").map(String::as_str))?;
        require(member.role, Role::can_respond, "send test notifications")?;
        let contact = fields.get("contact").map(|c| c.trim()).unwrap_or("");
        let code = fields.get("code").map(|c| c.trim()).unwrap_or("");
        let notice = if code.is_empty() {
            match crate::api::people::send_code_for(&state, member.project_id, &person, contact)
                .await
            {
                Ok(()) => format!(
                    "A test message with a six-digit code went to {person}'s {contact}. Type the code below to mark it verified."
                ),
                Err(e) => format!("The test message was not sent: {}", e.message()),
            }
        } else {
            match crate::api::people::verify_code_for(
                &state,
                member.project_id,
                &person,
                contact,
                code,
            )
            .await
            {
                Ok(()) => format!("{person}'s {contact} is verified."),
                Err(e) => format!("Not verified: {}", e.message()),
            }
        };
        Ok::<_, Response>(render(&state, &project, &user, StatusCode::OK, &notice).await)
    };
    match run.await {
        Ok(r) | Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# the team's file
[[people]]
id = "ana"

[[schedules]]
name = "primary" # comment kept
tz = "America/Denver"

[[schedules]]
name = "secondary"
tz = "UTC"
overrides = [{ user = "ana", start = "2026-12-01T00:00:00Z", end = "2026-12-02T00:00:00Z" }]
"#;

    #[test]
    fn overrides_are_added_to_the_right_schedule_and_keep_the_file() {
        let tz: Tz = "America/Denver".parse().unwrap();
        let start = tz.with_ymd_and_hms(2026, 12, 5, 18, 0, 0).unwrap();
        let end = tz.with_ymd_and_hms(2026, 12, 6, 8, 0, 0).unwrap();
        let out = add_override(FILE, "primary", "ana", Some("bob"), start, end, "by ana").unwrap();
        assert!(out.starts_with("# the team's file"));
        assert!(out.contains("name = \"primary\" # comment kept"));
        let parsed: toml::Table = out.parse().unwrap();
        let primary = &parsed["schedules"].as_array().unwrap()[0];
        let o = &primary["overrides"].as_array().unwrap()[0];
        assert_eq!(o["user"].as_str(), Some("ana"));
        assert_eq!(o["replaces"].as_str(), Some("bob"));
        assert_eq!(o["start"].as_str(), Some("2026-12-05T18:00:00-07:00"));
        let out = add_override(FILE, "secondary", "ana", None, start, end, "x").unwrap();
        let parsed: toml::Table = out.parse().unwrap();
        let secondary = &parsed["schedules"].as_array().unwrap()[1];
        assert_eq!(secondary["overrides"].as_array().unwrap().len(), 2);
        assert!(add_override(FILE, "nope", "ana", None, start, end, "x").is_err());
    }

    #[test]
    fn form_times_read_in_the_schedule_zone() {
        let tz: Tz = "America/Denver".parse().unwrap();
        let t = form_time("2026-12-05T18:00", tz).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-06T01:00:00+00:00");
        let t = form_time("2026-12-05T18:00:00Z", tz).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-05T18:00:00+00:00");
        assert!(form_time("tomorrow", tz).is_none());
    }
}
