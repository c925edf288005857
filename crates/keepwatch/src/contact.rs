//! `keepwatch contact send-code|verify`: prove that a person's contact reaches them.

use clap::Subcommand;
use serde_json::json;

use crate::alert::{Api, call_with};

#[derive(Debug, Clone, Subcommand)]
pub enum ContactCommand {
    /// Send a six-digit code through the contact (valid for 15 minutes)
    SendCode {
        /// The person's id in the on-call file
        person: String,
        /// The contact's name in the person's `contacts`
        contact: String,
        #[command(flatten)]
        api: Api,
    },
    /// Enter the code the contact received
    Verify {
        /// The person's id in the on-call file
        person: String,
        /// The contact's name in the person's `contacts`
        contact: String,
        /// The six-digit code the contact received
        code: String,
        #[command(flatten)]
        api: Api,
    },
}

pub async fn run(command: ContactCommand) -> anyhow::Result<String> {
    match command {
        ContactCommand::SendCode {
            person,
            contact,
            api,
        } => {
            let path = format!("people/{person}/contacts/{contact}/send-code");
            let sent = call_with(&api, reqwest::Method::POST, &path, None).await?;
            Ok(format!(
                "code sent to {} (valid until {})\n",
                sent["sent_to"].as_str().unwrap_or(""),
                sent["expires_at"].as_str().unwrap_or("")
            ))
        }
        ContactCommand::Verify {
            person,
            contact,
            code,
            api,
        } => {
            let path = format!("people/{person}/contacts/{contact}/verify");
            call_with(
                &api,
                reqwest::Method::POST,
                &path,
                Some(json!({ "code": code })),
            )
            .await?;
            Ok(format!("{person} {contact}: verified\n"))
        }
    }
}
