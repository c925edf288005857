//! `keepwatch checkin list|ack`: shift check-ins (a schedule's `checkin = { within, fallback }`)
//! through the server's API.

use clap::Subcommand;
use serde_json::Value;

use crate::alert::{Api, call_with};

#[derive(Debug, Clone, Subcommand)]
pub enum CheckinCommand {
    /// The project's recent check-ins, newest first
    List {
        #[command(flatten)]
        api: Api,
    },
    /// Confirm you can be reached for the shift of check-in <id> (as its link does)
    Ack {
        /// The check-in's number, as its message names it
        id: i64,
        #[command(flatten)]
        api: Api,
    },
}

/// `#2 primary alice 2026-12-14T16:00:00Z..2026-12-21T16:00:00Z missed (acknowledged by …)`
fn line(c: &Value) -> String {
    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
    let mut out = format!(
        "#{} {} {} {}..{} {}",
        c["id"],
        s("schedule"),
        s("person"),
        s("shift_start"),
        s("shift_end"),
        s("state")
    );
    if let Some(by) = c["acknowledged_by"].as_str() {
        out.push_str(&format!(
            " (acknowledged by {by} at {})",
            s("acknowledged_at")
        ));
    }
    out.push('\n');
    out
}

pub async fn run(command: CheckinCommand) -> anyhow::Result<String> {
    match command {
        CheckinCommand::List { api } => {
            let list = call_with(&api, reqwest::Method::GET, "checkins/", None).await?;
            let rows = list["checkins"].as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                return Ok("no check-ins yet\n".into());
            }
            Ok(rows.iter().map(line).collect())
        }
        CheckinCommand::Ack { id, api } => {
            let path = format!("checkins/{id}/ack");
            let row = call_with(&api, reqwest::Method::POST, &path, None).await?;
            Ok(line(&row))
        }
    }
}
