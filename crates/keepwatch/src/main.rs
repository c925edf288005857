//! The `keepwatch` binary: the service (`serve`) and the commands around it.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use keepwatch_core::schedule::Schedule;
use keepwatch_engine::SystemClock;
use keepwatch_server::app::{self, AppConfig};
use keepwatch_store::{Store, Timestamp};

mod alert;
mod checkin;
mod config;
mod contact;
mod import;
mod incident;
mod instance_lock;
mod oncall;
mod runner;

use config::{ServeArgs, StorageArgs};

const EXAMPLES: &str = "\
Examples:
  keepwatch serve                                   # SQLite in ./keepwatch-data, on 127.0.0.1:8000
  keepwatch serve --database-url postgres://localhost/keepwatch --listen 0.0.0.0:8000
  keepwatch project create billing                  # prints the new project's ping key
  keepwatch api-key create --project billing --read-only
  keepwatch import healthchecks --url https://healthchecks.example.com --api-key … --to-api-key …
  keepwatch cron '30 2 * * *' --tz America/Denver --count 5
  keepwatch run 5ad6aaab-77eb-4e2d-a580-83c894e15261 -- /opt/jobs/nightly.sh
  keepwatch drill -f oncall.toml --service billing --at 2026-11-28T02:00:00-07:00";

#[derive(Parser)]
#[command(name = "keepwatch", version, about = "Cron-job monitoring, on-call paging and incident communication in one binary.", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the service: ping API, Management API, engine and notifications
    #[command(after_help = "\
Examples:
  keepwatch serve
  keepwatch serve --data-dir /var/lib/keepwatch --listen 0.0.0.0:8000 --site-url https://keepwatch.example.com
  KEEPWATCH_DATABASE_URL=postgres://keepwatch@db/keepwatch keepwatch serve
  keepwatch serve --config /etc/keepwatch.toml --log-format json
  keepwatch serve --idle-timeout 2m --header-read-timeout 5s --max-connections 2000
  keepwatch serve --allow-private-destinations    # webhooks to receivers on your own network
  keepwatch serve --database-url postgres://kw@db/kw --instance-id kw-a --lease-secs 10
One server per SQLite data directory: a second one is refused (the lock file keepwatch.lock).
Several servers may share one PostgreSQL database; see the README's \"Several instances\".")]
    Serve(ServeArgs),
    /// Manage projects
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Manage web UI users: create one, give a role in a project, reset a password
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API keys
    #[command(name = "api-key")]
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Run a job and report its start, exit status, duration and output tail to its check
    #[command(after_help = "\
Exit status: the command's own (128+N if killed by signal N); 127 if it cannot be started;
124 if --timeout killed it; 75 if --lock was held by another process and it did not run.
Pings the server does not take are spooled and delivered, in order and with their original
times, by the next run or by `keepwatch spool flush`.
Other copies of the command (a script matches whatever interpreter runs it: `/bin/bash
/opt/jobs/nightly.sh` is a copy of `/opt/jobs/nightly.sh`) and processes matching --watch or
the check's `watch` list are named in the start ping (an overlap alert). Shortly before the
run counts as hung (the check's max_runtime, told by the server), a snapshot of the job's
processes (state, wait channel, CPU time, open files, who else holds them or their locks) is
sent; the hung alert carries it. If it cannot look (no /proc, hidepid), it says so.
Examples:
  keepwatch run 5ad6aaab-77eb-4e2d-a580-83c894e15261 -- /opt/jobs/nightly.sh --full
  KEEPWATCH_SERVER=https://keepwatch.example.com KEEPWATCH_PING_KEY=… keepwatch run nightly-events -- ./etl
  keepwatch run --lock /run/lock/etl.lock --timeout 2h --volume-regex 'loaded ([0-9]+) rows' nightly-etl -- ./etl
  keepwatch run --volume-file /tmp/export.count exports -- ./export.sh
  keepwatch run --watch 'client-events' --watch '^/usr/bin/rsync' nightly -- /opt/jobs/nightly.sh
crontab:
  0 0 * * * keepwatch run --server http://keepwatch:8000 5ad6aaab-77eb-4e2d-a580-83c894e15261 -- /opt/jobs/nightly.sh")]
    Run(runner::RunArgs),
    /// Send one signal to a check: success, start, fail, log or an exit status
    #[command(after_help = "\
Examples:
  keepwatch ping 5ad6aaab-77eb-4e2d-a580-83c894e15261
  keepwatch ping nightly-events fail --ping-key … --data 'disk full'
  ./backup.sh 2>&1 | keepwatch ping 5ad6aaab-77eb-4e2d-a580-83c894e15261 log --data -")]
    Ping(runner::PingArgs),
    /// Deliver or list the pings `keepwatch run` could not send
    #[command(after_help = "\
Examples:
  keepwatch spool list
  keepwatch spool flush --server https://keepwatch.example.com
  */5 * * * * keepwatch spool flush     # crontab: deliver even when no job runs for a while")]
    Spool {
        #[command(subcommand)]
        command: runner::SpoolCommand,
    },
    /// Replay an alert at a chosen time, or every hour of a week: who is paged when, by what
    #[command(after_help = "\
Prints the alert's timeline: escalation steps, every notification with its contact and
urgency, urgency raising, the last resort, and the time to the first high-urgency page. It
runs the engine's own routing: notifications inside a maintenance window show as suppressed,
an alert for a service the configuration does not have as unrouted. With -f it reads a file;
without, it asks the server (--server, --api-key) about the configuration applied there
and finds checks by UUID or slug; a check that depends on a check down right now
(depends_on) shows HELD BACK: its alert would wait until that check recovers.
--sweep week drills an alert at every --step (1h) of the week from --at (a check whose
schedule is known: at each of its deadlines) and prints a table of days × hours of the time
to the first high-urgency page (`-`: none), the worst start and the medians.
Exit status: 0; 3 if --fail-if-no-high-within / --fail-if-no-page-within is not met for the
alert (for any start of a sweep); 1 on an error.
Examples:
  keepwatch drill -f oncall.toml --service billing --at 2026-11-28T02:00:00-07:00
  keepwatch drill -f oncall.toml --service billing --at 2026-11-30T14:00:00-07:00 --ack-after 12m
  keepwatch drill -f oncall.toml --check nightly-events --event hung --at 2026-11-28T00:00:00-07:00
  keepwatch drill --server https://keepwatch.example.com --api-key … --check 6d3b5e2c-1f0a-4c1e-9b7a-2f4d8e9c0a11
  keepwatch drill -f oncall.toml --service billing --sweep week --at 2026-11-30T00:00:00-07:00
  keepwatch drill -f oncall.toml --check nightly-events --sweep week --fail-if-no-high-within 30m   # CI
  keepwatch drill -f oncall.toml --service billing --at 2026-11-28T00:00:00-07:00 --format json
Live drill (--live, through the server, full-access key): the timeline from now is sent for
real, each notification at its time, marked \"DRILL — not a real alert\" in its title and
first line, recorded as drill messages (no alert is opened); the people acknowledge with the
link in it as they would a page; the first acknowledgment stops the rest. The command waits
for it (--wait, 30m) and prints who was reached, through what, and how fast (exit 3: nobody
acknowledged). The same over the API: POST /api/v1/drill/live?service=…, then GET
/api/v1/drill/live/<id>.
  keepwatch drill --live --service billing --server https://keepwatch.example.com --api-key …
  keepwatch drill --live --check nightly-events --wait 15m --format json")]
    Drill(oncall::DrillArgs),
    /// Check the on-call setup: who can be reached, when, and what goes unseen
    #[command(after_help = "\
Each finding has an id, a severity (error: a page can fail to reach anyone in time), the
objects involved, why it matters and how to fix it. With -f it audits the file (and the checks
it declares); without, it asks the server (--server, --api-key), which adds its checks, their
pings and run durations, verified contacts and failing deliveries. Accept a finding on purpose
in the file:
  [[accepted]]
  id = \"single-person-policy\"
  objects = [\"policy:billing\"]     # leave out for all of the rule's findings
  reason = \"Lee covers billing alone until the hire in January\"
  until = \"2027-01-31\"
Exit status: 0; 3 if --fail-on is given and a finding at that level or worse is reported; 1 on
an error.
Examples:
  keepwatch audit -f oncall.toml
  keepwatch audit -f oncall.toml --fail-on error          # CI for the on-call repository
  KEEPWATCH_API_KEY=… keepwatch audit --server https://keepwatch.example.com --format json")]
    Audit(oncall::AuditArgs),
    /// Print who is on call at a time (default: now), until when, and who is next
    #[command(after_help = "\
Without -f it asks the server (--server, --api-key) about the configuration applied there.
Examples:
  KEEPWATCH_API_KEY=… keepwatch oncall --server https://keepwatch.example.com
  keepwatch oncall -f oncall.toml
  keepwatch oncall -f oncall.toml --schedule primary --at 2026-12-24T23:00:00-07:00
  keepwatch oncall -f oncall.toml --at 2026-12-01T00:00:00Z --until 2027-01-01T00:00:00Z --user alice
  keepwatch oncall -f oncall.toml --user alice --ical > alice-oncall.ics")]
    Oncall(oncall::OncallArgs),
    /// List, show, acknowledge and resolve alerts (through the server's API)
    #[command(after_help = "\
Examples:
  keepwatch alert list --api-key …
  keepwatch alert show 42
  keepwatch alert ack 42          # stops escalation and pending notifications
  keepwatch alert resolve 42
The API key can come from KEEPWATCH_API_KEY, the server from --server or KEEPWATCH_SERVER.")]
    Alert {
        #[command(subcommand)]
        command: alert::AlertCommand,
    },
    /// Incidents: declare, post status updates to stakeholders on a cadence, hand over,
    /// resolve (all clear), notes, postmortem and its export (through the server's API)
    #[command(after_help = "\
Examples:
  keepwatch incident declare --alert 42 --severity SEV1 --owner alice --impact \"Client events are not processed\"
  keepwatch incident update 7 --status identified -m \"A stray process holds the job's lock; stopping it\"
  keepwatch incident update 7 --no-news -m \"rerunning the export by hand\"
  keepwatch incident owner 7 bob
  keepwatch incident resolve 7 -m \"The export caught up\"
  keepwatch incident export 7 --format markdown --tz America/Denver > postmortem.md
  keepwatch incident list --tz Europe/Paris     # next updates in Paris time (default: this machine's zone)
The API key can come from KEEPWATCH_API_KEY, the server from --server or KEEPWATCH_SERVER.")]
    Incident {
        #[command(subcommand)]
        command: incident::IncidentCommand,
        /// The time zone of the times printed (an IANA name): the next update in the
        /// summary line (default: this machine's zone, from TZ or /etc/localtime) and the
        /// export's (default UTC); the offset is always shown, e.g. `2026-12-05 13:48 MST (UTC-07:00)`
        #[arg(long, global = true, value_name = "ZONE")]
        tz: Option<String>,
    },
    /// Shift check-ins: list them, or confirm you can be reached for your shift (through the
    /// server's API)
    #[command(after_help = "\
A schedule asks for check-ins in the on-call file:
  [[schedules]]
  name = \"primary\"
  tz = \"America/Denver\"
  checkin = { within = \"15m\", fallback = \"carol\" }
When a person's shift starts, keepwatch sends them a check-in through their high-urgency rules,
with a link that confirms it. If it is not confirmed within `within`, the person on call
before and the fallback are told, and `keepwatch audit` reports the missed check-in.
Examples:
  keepwatch checkin list --api-key …
  keepwatch checkin ack 12        # the number the check-in message names
The API key can come from KEEPWATCH_API_KEY, the server from --server or KEEPWATCH_SERVER.")]
    Checkin {
        #[command(subcommand)]
        command: checkin::CheckinCommand,
    },
    /// Verify a person's contact with a code sent through it (through the server's API)
    #[command(after_help = "\
Unverified contacts are still paged; `keepwatch apply` and GET /api/v1/people/ list them.
Examples:
  keepwatch contact send-code alice slack --api-key …
  keepwatch contact verify alice slack 482913
The API key (full access) can come from KEEPWATCH_API_KEY, the server from --server or
KEEPWATCH_SERVER.")]
    Contact {
        #[command(subcommand)]
        command: contact::ContactCommand,
    },
    /// Move checks from another service into keepwatch (Healthchecks: under their own UUIDs,
    /// through the server's API)
    Import {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Apply an on-call configuration file: print what changes, then store it
    #[command(after_help = "\
Applying the same file twice changes nothing. Prints the calendar feed path of every schedule
and person (serve it under the site URL: https://keepwatch.example.com/ical/<token>.ics) and
each service's integration key (the events API's routing_key, /api/v1/alertmanager/<key>),
and the contacts no verification code has reached yet (keepwatch contact send-code). The same
over HTTP: PUT /api/v1/oncall/config with the file as the body.
A file that declares [[checks]] is applied through the running server (--server, --api-key),
which creates and updates them.
A file is refused, naming the field (and for contacts the line), when a contact could not be
delivered to (email must be an address, the other kinds http(s) URLs with a host, Telegram's
with ?chat_id=, Pushover's with ?token=&user=), a name holds a control character, or a number
is out of range (delay, after, raise_after 0-10080 minutes; repeat 0-20). Open alerts follow
the applied file at once: pending steps fall due at their new times, and each alert's log
records the apply.
Examples:
  keepwatch apply -f oncall.toml --dry-run
  KEEPWATCH_API_KEY=… keepwatch apply -f oncall.toml --server https://keepwatch.example.com
  keepwatch apply -f oncall.toml --project billing --database-url postgres://keepwatch@db/keepwatch")]
    Apply {
        #[command(flatten)]
        args: oncall::ApplyArgs,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Print the on-call configuration file as last applied, or as it was at a time
    #[command(after_help = "Examples:\n  keepwatch export > oncall.toml\n  \
        keepwatch export --at 2026-12-05T02:00:00Z   # the file in force at 2 a.m. UTC")]
    Export {
        /// The project the configuration belongs to
        #[arg(long, default_value = "default")]
        project: String,
        /// The file in force at this time (RFC 3339); who applied it, and when, go to stderr
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Print the next fire times of a cron or OnCalendar expression
    #[command(after_help = "\
Examples:
  keepwatch cron '0 0 * * *' --tz America/Denver
  keepwatch cron '30 2 * * *' --tz America/Denver --after 2026-03-07T00:00:00Z --count 3
  keepwatch cron 'Mon..Fri 09:00' --tz Europe/London")]
    Cron {
        /// The expression, as in a check's `schedule` field
        expr: String,
        /// IANA time zone the expression is read in
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Start after this RFC 3339 time [default: now]
        #[arg(long, value_name = "TIME")]
        after: Option<String>,
        /// How many fire times to print
        #[arg(long, default_value_t = 10)]
        count: usize,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project and print its ping key (for /ping/<ping-key>/<slug> URLs)
    #[command(after_help = "Example:\n  keepwatch project create billing")]
    Create {
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// List the projects: name and UUID (the UUID of Healthchecks-style Prometheus URLs,
    /// /projects/<uuid>/metrics/<read-only key>)
    #[command(after_help = "Example:\n  keepwatch project list --data-dir /var/lib/keepwatch")]
    List {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a web UI user, or give an existing one a role in a project (the password is
    /// read from standard input, or from KEEPWATCH_PASSWORD)
    #[command(after_help = "\
Roles: admin (everything), responder (acknowledge, resolve, notes, overrides, incident
updates), viewer (reads only). A user sees only the projects they have a role in.
Examples:
  keepwatch user create --admin ops@example.com            # prompts for the password on stdin
  echo \"$PASSWORD\" | keepwatch user create ana@example.com --project billing --role responder --person ana
  keepwatch user create --role viewer --project billing cto@example.com   # existing user: adds the role")]
    Create {
        /// The email address the user signs in with
        email: String,
        /// Admin of every project (the first user, typically)
        #[arg(long, conflicts_with_all = ["role", "project"])]
        admin: bool,
        /// Project the role is in
        #[arg(long, default_value = "default")]
        project: String,
        /// admin, responder or viewer
        #[arg(long, default_value = "responder")]
        role: String,
        /// The person id in the on-call file this user is (for "my shifts" and "alerts paging me")
        #[arg(long, default_value = "")]
        person: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Set a user's password (read from standard input or KEEPWATCH_PASSWORD); ends their sessions
    #[command(
        after_help = "Example:\n  keepwatch user password ana@example.com < new-password.txt"
    )]
    Password {
        email: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key and print it (it is stored hashed and cannot be shown again)
    #[command(
        after_help = "Examples:\n  keepwatch api-key create\n  keepwatch api-key create --project billing --read-only\n  \
            keepwatch api-key create --name ci   # its actions are logged as \"api key ci\""
    )]
    Create {
        /// Project the key belongs to
        #[arg(long, default_value = "default")]
        project: String,
        /// The key can read checks but not change them
        #[arg(long)]
        read_only: bool,
        /// What the key is for or whose it is, recorded with what it does
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

/// mimalloc: glibc's malloc and free were a tenth of the server's CPU on the ping path
/// (allocations made by the HTTP workers and freed by the engine's thread).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Run(args) = cli.command {
        // The wrapper exits with the job's own code, whatever happened to the pings.
        return Ok(ExitCode::from(runner::run(args).await.clamp(0, 255) as u8));
    }
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Project {
            command: ProjectCommand::Create { name, storage },
        } => {
            let store = open_store(&storage).await?;
            validate_name(&name)?;
            let project = store.create_project(&name, Timestamp::now()).await?;
            println!("{}", project.ping_key);
            Ok(())
        }
        Command::Project {
            command: ProjectCommand::List { storage },
        } => {
            let store = open_store(&storage).await?;
            for project in store.list_projects().await? {
                println!("{}\t{}", project.name, project.uuid);
            }
            Ok(())
        }
        Command::User { command } => user_command(command).await,
        Command::ApiKey {
            command:
                ApiKeyCommand::Create {
                    project,
                    read_only,
                    name,
                    storage,
                },
        } => {
            let store = open_store(&storage).await?;
            let project = project_named(&store, &project).await?;
            if name.chars().count() > 100 || name.chars().any(char::is_control) {
                anyhow::bail!("--name: at most 100 characters, none of them control characters");
            }
            let key = store
                .create_api_key(project.id, read_only, &name, Timestamp::now())
                .await?;
            println!("{key}");
            Ok(())
        }
        Command::Cron {
            expr,
            tz,
            after,
            count,
        } => cron(&expr, &tz, after.as_deref(), count),
        Command::Run(_) => Ok(()),
        Command::Apply { args, .. } if args.server.is_some() => {
            print!("{}", oncall::apply_remote(&args).await?);
            Ok(())
        }
        Command::Apply { args, storage } => {
            let store = open_store(&storage).await?;
            let project = project_named(&store, &args.project).await?;
            print!("{}", oncall::apply(&store, project.id, &args).await?);
            Ok(())
        }
        Command::Export {
            project,
            at: Some(at),
            storage,
        } => {
            let at = DateTime::parse_from_rfc3339(&at)
                .with_context(|| format!("--at: `{at}` is not an RFC 3339 time"))?
                .with_timezone(&Utc);
            let store = open_store(&storage).await?;
            let project = project_named(&store, &project).await?;
            let Some(then) = store.oncall_at(project.id, at.into()).await? else {
                anyhow::bail!(
                    "no on-call configuration was applied to project `{}` at or before {}",
                    project.name,
                    at.to_rfc3339()
                );
            };
            eprintln!(
                "applied {} by {}",
                then.applied_at.to_datetime().to_rfc3339(),
                if then.applied_by.is_empty() {
                    "an earlier keepwatch"
                } else {
                    &then.applied_by
                }
            );
            print!("{}", then.source);
            Ok(())
        }
        Command::Export {
            project, storage, ..
        } => {
            let store = open_store(&storage).await?;
            let project = project_named(&store, &project).await?;
            match store.oncall_source(project.id).await? {
                Some(source) => print!("{source}"),
                None => anyhow::bail!(
                    "no on-call configuration applied to project `{}` (keepwatch apply -f <file>)",
                    project.name
                ),
            }
            Ok(())
        }
        Command::Audit(args) => {
            let (out, passed) = oncall::audit(&args).await?;
            print!("{out}");
            return Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(oncall::DRILL_FAILED)
            });
        }
        Command::Drill(args) => {
            let (out, passed) = oncall::drill(&args).await?;
            print!("{out}");
            return Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(oncall::DRILL_FAILED)
            });
        }
        Command::Oncall(args) if args.file.is_some() => {
            oncall::oncall(&args).map(|out| print!("{out}"))
        }
        Command::Alert { command } => alert::run(command).await.map(|out| print!("{out}")),
        Command::Incident { command, tz } => {
            incident::run(command, tz).await.map(|out| print!("{out}"))
        }
        Command::Contact { command } => contact::run(command).await.map(|out| print!("{out}")),
        Command::Checkin { command } => checkin::run(command).await.map(|out| print!("{out}")),
        Command::Oncall(args) => oncall::oncall_from_server(&args)
            .await
            .map(|out| print!("{out}")),
        Command::Spool { command } => {
            return Ok(if runner::spool_command(command).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Ping(args) => runner::ping(args).await,
        Command::Import { command } => {
            let (out, complete) = import::run(command).await?;
            print!("{out}");
            return Ok(if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
    .map(|()| ExitCode::SUCCESS)
}

/// The project of that name; `default` is created on first use, as `serve` does.
async fn project_named(store: &Store, name: &str) -> anyhow::Result<keepwatch_store::Project> {
    match store.project_by_name(name).await? {
        Some(p) => Ok(p),
        None if name == "default" => Ok(ensure_default_project(store).await?.0),
        None => anyhow::bail!(
            "no project named `{name}` (create it with: keepwatch project create {name})"
        ),
    }
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        anyhow::bail!("project name must be 1-100 printable characters");
    }
    Ok(())
}

/// A new password from KEEPWATCH_PASSWORD or the first line of standard input.
fn read_password() -> anyhow::Result<String> {
    let password = match std::env::var("KEEPWATCH_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                eprint!("password (at least 10 characters; it is shown as you type): ");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    keepwatch_server::ui::session::check_new_password(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

async fn user_command(command: UserCommand) -> anyhow::Result<()> {
    use keepwatch_core::user::Role;
    use keepwatch_server::ui::session::hash_password;
    match command {
        UserCommand::Create {
            email,
            admin,
            project,
            role,
            person,
            storage,
        } => {
            let email = email.trim().to_lowercase();
            if !email.contains('@') || email.len() > 254 {
                anyhow::bail!("`{email}` is not an email address");
            }
            let role = if admin {
                Role::Admin
            } else {
                Role::parse(&role).ok_or_else(|| {
                    anyhow::anyhow!("--role: `{role}` is not one of admin, responder, viewer")
                })?
            };
            let store = open_store(&storage).await?;
            let projects = if admin {
                ensure_default_project(&store).await?;
                store.list_projects().await?
            } else {
                vec![project_named(&store, &project).await?]
            };
            let user = match store.user_by_email(&email).await? {
                Some(user) => user,
                None => {
                    let hash = hash_password(&read_password()?).map_err(anyhow::Error::msg)?;
                    store
                        .create_user(&email, &hash, &person, Timestamp::now())
                        .await?
                }
            };
            for project in &projects {
                store.set_membership(user.id, project.id, role).await?;
                println!("{email}: {role} of project `{}`", project.name);
            }
            Ok(())
        }
        UserCommand::Password { email, storage } => {
            let store = open_store(&storage).await?;
            let email = email.trim().to_lowercase();
            let user = store
                .user_by_email(&email)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user with email `{email}`"))?;
            let hash = hash_password(&read_password()?).map_err(anyhow::Error::msg)?;
            store.set_password(user.id, &hash).await?;
            println!("{email}: password changed; their sessions are ended");
            Ok(())
        }
    }
}

async fn open_store(args: &StorageArgs) -> anyhow::Result<Store> {
    let file = config::read_file(args.config.as_deref())?;
    let (data_dir, database_url) = config::storage(args, &file);
    Store::open(database_url.as_deref(), &data_dir)
        .await
        .with_context(|| match &database_url {
            Some(_) => "cannot open the database given by database_url".to_string(),
            None => format!("cannot open the database in {}", data_dir.display()),
        })
}

/// Creates the `default` project on first start; returns it and, when new, a full API key.
async fn ensure_default_project(
    store: &Store,
) -> anyhow::Result<(keepwatch_store::Project, Option<String>)> {
    if let Some(project) = store.project_by_name("default").await? {
        return Ok((project, None));
    }
    let now = Timestamp::now();
    let project = store.create_project("default", now).await?;
    let key = store.create_api_key(project.id, false, "", now).await?;
    Ok((project, Some(key)))
}

fn cron(expr: &str, tz: &str, after: Option<&str>, count: usize) -> anyhow::Result<()> {
    let schedule = Schedule::parse(expr, tz).map_err(|e| anyhow::anyhow!("{e}"))?;
    let zone = schedule.tz().unwrap_or(chrono_tz::UTC);
    let mut t = match after {
        Some(a) => DateTime::parse_from_rfc3339(a)
            .map_err(|e| anyhow::anyhow!("--after: `{a}` is not an RFC 3339 time ({e})"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    for _ in 0..count {
        match schedule.next_after(t) {
            Some(next) => {
                println!("{}", next.with_timezone(&zone).to_rfc3339());
                t = next;
            }
            None => break,
        }
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Each connection is a file: the usual soft limit of 1024 is too few to serve many
    // clients, and the hard limit is there to be asked for.
    let open_files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let settings = config::resolve(&args, open_files)?;
    init_logging(settings.json_logs);
    let for_connections = open_files.saturating_sub(config::RESERVED_FILES);
    if settings.limits.max_connections as u64 > for_connections {
        // Allowed: accepting backs off while no file is free, but the database and
        // deliveries may then fail to open theirs.
        tracing::warn!(
            max_connections = settings.limits.max_connections,
            open_files,
            "max_connections is more than the open-file limit leaves for connections ({for_connections}); raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections"
        );
    }
    // One server per SQLite database: held until the process ends.
    let _lock = match instance_lock::lock_path(settings.database_url.as_deref(), &settings.data_dir)
    {
        Some(path) => Some(instance_lock::acquire(&path)?),
        None => None,
    };
    // reqwest is built without a default TLS provider; ring is ours (see STACK notes).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = std::time::Instant::now();
    let running = app::start(AppConfig {
        database_url: settings.database_url.clone(),
        data_dir: settings.data_dir.clone(),
        listen: settings.listen,
        site_url: Some(settings.site_url.clone()),
        clock: Arc::new(SystemClock),
        engine: settings.engine.clone(),
        ping_body_limit: settings.ping_body_limit,
        limits: settings.limits,
        check_limit: settings.check_limit,
        check_create_rate: settings.check_create_rate,
        metrics_key: settings.metrics_key.clone(),
    })
    .await?;
    let (project, new_key) = ensure_default_project(&running.store).await?;
    let address = running.addr;
    tracing::info!(backend = running.store.backend_name(), %address, open_files, max_connections = settings.limits.max_connections, ready_ms = started.elapsed().as_millis() as u64, "keepwatch ready");
    println!("keepwatch is listening on http://{address}");
    println!(
        "  ping key of project `{}`: {}",
        project.name, project.ping_key
    );
    match new_key {
        Some(key) => println!("  API key (full access, shown once): {key}"),
        None => println!("  API keys: create one with `keepwatch api-key create`"),
    }
    println!("  web UI: open {}/ui/", running.site_url);
    if let Some(setup) = &running.setup_url {
        println!("  no user yet: create the first admin at {setup} (works once),");
        println!("    or with `keepwatch user create --admin EMAIL`");
    }
    running.serve_until(shutdown_signal()).await
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEPWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: a redirected log file gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
