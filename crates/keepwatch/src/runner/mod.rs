//! `keepwatch run`, `keepwatch ping` and `keepwatch spool`: the job side of the ping protocol.
//!
//! `run` wraps a job: it starts the command with stdin, stdout and stderr passed through and
//! sends `/start` with a fresh run id, the host name, the job's pid and any other process
//! already running the same command (an interpreted script matches whatever interpreter runs
//! it) or matching a `--watch` pattern, or why it could not look; then sends the exit status
//! with the duration, the volume and the last part of the combined output (at most the
//! server's `Ping-Body-Limit`), and exits with exactly the command's code (128+N when killed
//! by signal N). SIGINT, SIGTERM and SIGHUP are forwarded to the command.
//!
//! The start's answer says when the run counts as hung (`X-Keepwatch-Max-Runtime`) and the
//! check's own watch patterns; shortly before that deadline, if the job still runs, the
//! runner sends a snapshot of its processes (see [`snapshot`]), which the hung alert carries.
//!
//! It never blocks or breaks the job: the start ping waits at most `--start-timeout`; pings
//! the server does not take are spooled and sent later in order; and a server that is down,
//! a bad URL or a broken spool costs one line on stderr, never a changed exit code.

mod lock;
mod output;
mod procs;
mod snapshot;
mod spool;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use keepwatch_core::check::StrayProcess;
use tokio::io::AsyncReadExt;

use output::{Tail, VolumeMatcher};
use procs::Watch;
use spool::{Answer, Ping, SendError, Spool};

/// Exit code when the command cannot be started (as a shell reports "command not found").
pub const EXIT_CANNOT_RUN: i32 = 127;
/// Exit code when `--timeout` killed the command (as `timeout(1)` exits).
pub const EXIT_TIMED_OUT: i32 = 124;
/// Exit code when `--lock` is held by another process and the command was not run
/// (`EX_TEMPFAIL` from sysexits.h).
pub const EXIT_LOCKED: i32 = 75;
/// Where pings go when neither --server nor KEEPWATCH_SERVER says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8000";

#[derive(Debug, Clone, Args)]
pub struct Server {
    /// keepwatch server base URL
    #[arg(
        long,
        env = "KEEPWATCH_SERVER",
        default_value = DEFAULT_SERVER
    )]
    pub server: String,
}

impl Server {
    pub fn base(&self) -> anyhow::Result<&str> {
        let base = self.server.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base);
        if !(base.starts_with("http://") || base.starts_with("https://")) || parsed.is_err() {
            anyhow::bail!(
                "--server `{}` is not an http:// or https:// URL; set --server or \
                 KEEPWATCH_SERVER to the keepwatch server's URL",
                self.server
            );
        }
        Ok(base)
    }
}

#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The check: its UUID, or its slug together with --ping-key
    pub check: String,
    #[command(flatten)]
    pub server: Server,
    /// The project's ping key, to address the check by slug
    #[arg(long, env = "KEEPWATCH_PING_KEY", hide_env_values = true)]
    pub ping_key: Option<String>,
}

impl Target {
    /// `/ping/<uuid>` or `/ping/<ping-key>/<slug>`, then the suffix.
    fn path(&self, suffix: &str) -> anyhow::Result<String> {
        let check = match (uuid::Uuid::parse_str(&self.check), &self.ping_key) {
            (Ok(uuid), _) => uuid.hyphenated().to_string(),
            (Err(_), Some(key)) => format!("{key}/{}", self.check),
            (Err(_), None) => anyhow::bail!(
                "`{}` is not a check UUID; to use a slug, give --ping-key or set \
                 KEEPWATCH_PING_KEY",
                self.check
            ),
        };
        Ok(format!("/ping/{check}{suffix}"))
    }
}

#[derive(Debug, Clone, Args)]
pub struct SpoolArgs {
    /// Where pings the server did not take wait for delivery; it must be this user's own and
    /// not writable by others (it is created 0700)
    /// [default: $XDG_STATE_HOME/keepwatch/spool or ~/.local/state/keepwatch/spool,
    /// without either /tmp/keepwatch-spool-<uid>]
    #[arg(long, env = "KEEPWATCH_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
}

impl SpoolArgs {
    fn spool(&self) -> Spool {
        Spool {
            dir: self.spool_dir.clone().unwrap_or_else(Spool::default_dir),
        }
    }
}

pub fn duration(s: &str) -> Result<Duration, String> {
    // Ten years: longer ones overflow the clock arithmetic and are never meant.
    const MAX: Duration = Duration::from_secs(10 * 366 * 86_400);
    let parsed = match s.parse::<f64>() {
        Ok(seconds) => Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())?,
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("{e} (examples: 30, 90s, 5m, 1h30m)"))?,
    };
    if parsed > MAX {
        return Err("at most 10 years".into());
    }
    Ok(parsed)
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub spool: SpoolArgs,
    /// How long the start ping (and delivering spooled pings before it) may hold up the job
    #[arg(long, default_value = "5s", value_parser = duration, value_name = "DURATION")]
    pub start_timeout: Duration,
    /// How long the finish ping (and delivering spooled pings before it) may take
    #[arg(long, default_value = "10s", value_parser = duration, value_name = "DURATION")]
    pub finish_timeout: Duration,
    /// Run under an exclusive lock on this file; if another process holds it, do not run
    /// the command, report an overlap naming the holder, and exit 75
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// With --lock: wait this long for the lock before giving up
    #[arg(long, value_parser = duration, value_name = "DURATION", requires = "lock")]
    pub lock_wait: Option<Duration>,
    /// Kill the command (SIGTERM, then SIGKILL after --kill-after) when it runs this long,
    /// report the run as failed, and exit 124
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// With --timeout: how long after SIGTERM to send SIGKILL
    #[arg(long, default_value = "10s", value_parser = duration, value_name = "DURATION")]
    pub kill_after: Duration,
    /// A file the job writes the number of items it processed to
    #[arg(long, value_name = "PATH", conflicts_with = "volume_regex")]
    pub volume_file: Option<PathBuf>,
    /// A regular expression matched on each output line; the last match's first group (or
    /// the whole match) is the number of items processed
    #[arg(long, value_name = "REGEX")]
    pub volume_regex: Option<regex::Regex>,
    /// Also report any other process whose command line matches this regular expression,
    /// at the start (an overlap alert names it) and in the hung snapshot; repeatable. The
    /// check's own `watch` list is added to these
    #[arg(long = "watch", value_name = "PATTERN", value_parser = watch_pattern)]
    pub watch: Vec<Watch>,
    /// How long before the run counts as hung (the check's max runtime, which the server
    /// tells at the start) to send the snapshot of the job's processes
    #[arg(long, default_value = "5s", value_parser = duration, value_name = "DURATION")]
    pub snapshot_before: Duration,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn watch_pattern(s: &str) -> Result<Watch, String> {
    let regex = regex::Regex::new(s).map_err(|e| e.to_string())?;
    Ok(Watch {
        pattern: s.to_string(),
        regex,
    })
}

#[derive(Debug, Clone, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub target: Target,
    /// success, start, fail, log, or an exit status 0-255
    #[arg(default_value = "success")]
    pub signal: String,
    /// Body to send; `-` reads standard input
    #[arg(long)]
    pub data: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SpoolCommand {
    /// Deliver the spooled pings, oldest first, with their original times
    #[command(after_help = "Exit status: 0 when the spool is empty afterwards, 1 otherwise.")]
    Flush {
        #[command(flatten)]
        server: Server,
        #[command(flatten)]
        spool: SpoolArgs,
        /// Give up after this long
        #[arg(long, default_value = "60s", value_parser = duration, value_name = "DURATION")]
        timeout: Duration,
    },
    /// List the spooled pings, oldest first: time, then what will be sent
    List {
        #[command(flatten)]
        spool: SpoolArgs,
    },
}

pub fn client() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("keepwatch-run/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// `keepwatch ping`: one signal; exits non-zero if the server did not take it.
pub async fn ping(args: PingArgs) -> anyhow::Result<()> {
    let suffix = match args.signal.as_str() {
        "success" => String::new(),
        "start" | "fail" | "log" => format!("/{}", args.signal),
        n if n.parse::<u8>().is_ok() => format!("/{n}"),
        other => anyhow::bail!(
            "`{other}` is not one of success, start, fail, log or an exit status 0-255"
        ),
    };
    let body = match args.data.as_deref() {
        None => Vec::new(),
        Some("-") => {
            let mut input = Vec::new();
            tokio::io::stdin().read_to_end(&mut input).await?;
            input
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    let base = args.target.server.base()?;
    let ping = Ping {
        path: args.target.path(&suffix)?,
        headers: Vec::new(),
        body,
    };
    match spool::send(&client()?, base, &ping, Duration::from_secs(10)).await {
        Ok(_) => Ok(()),
        Err(SendError::Retry(why) | SendError::Rejected(why)) => anyhow::bail!(why),
    }
}

/// `keepwatch spool flush|list`.
pub async fn spool_command(command: SpoolCommand) -> anyhow::Result<bool> {
    match command {
        SpoolCommand::Flush {
            server,
            spool,
            timeout,
        } => {
            let spool = spool.spool();
            let flushed = spool.flush(&client()?, server.base()?, timeout).await;
            println!(
                "delivered {}, rejected {}, waiting {}",
                flushed.delivered, flushed.rejected, flushed.left
            );
            if let Some(why) = &flushed.stopped {
                eprintln!("keepwatch: {why}");
            }
            Ok(flushed.left == 0)
        }
        SpoolCommand::List { spool } => {
            let spool = spool.spool();
            let pending = spool
                .pending()
                .with_context(|| format!("cannot read {}", spool.dir.display()))?;
            for path in pending {
                let (at, ping) = Spool::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                println!(
                    "{}  {}  ({} bytes)",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    ping.path,
                    ping.body.len()
                );
            }
            Ok(true)
        }
    }
}

/// Says what went wrong on stderr, once: a server that is down would otherwise be reported
/// for every ping of the run.
#[derive(Default)]
struct Warning {
    said: bool,
}

impl Warning {
    fn say(&mut self, message: impl std::fmt::Display) {
        if !std::mem::replace(&mut self.said, true) {
            eprintln!("keepwatch: {message}");
        }
    }
}

/// Sends pings for one run, in order: while older pings wait in the spool, new ones queue
/// behind them.
struct Reporter {
    http: Option<reqwest::Client>,
    base: Option<String>,
    spool: Spool,
    warning: Warning,
}

impl Reporter {
    /// Delivers what the spool holds, then `ping`; whatever cannot go now is spooled with
    /// the time `at`. Returns the server's answer when it took the ping.
    async fn report(&mut self, ping: Ping, at: DateTime<Utc>, budget: Duration) -> Option<Answer> {
        let (Some(http), Some(base)) = (&self.http, &self.base) else {
            return None;
        };
        let give_up = Instant::now() + budget;
        let flushed = self.spool.flush(http, base, budget).await;
        let result = if flushed.left > 0 {
            Err(SendError::Retry(format!(
                "{} older pings still wait in {} ({})",
                flushed.left,
                self.spool.dir.display(),
                flushed.stopped.unwrap_or_default()
            )))
        } else {
            let remaining = give_up.saturating_duration_since(Instant::now());
            spool::send(http, base, &ping, remaining).await
        };
        // The default server is a guess: say how to name the real one.
        let hint = if base == DEFAULT_SERVER {
            format!(" (no --server or KEEPWATCH_SERVER was given, so {DEFAULT_SERVER} was tried)")
        } else {
            String::new()
        };
        match result {
            Ok(answer) => Some(answer),
            Err(SendError::Rejected(why)) => {
                self.warning.say(format!("{why}; the ping is dropped"));
                None
            }
            Err(SendError::Retry(why)) => {
                match self.spool.push(&ping, at) {
                    Ok(_) => self.warning.say(format!(
                        "{why}{hint}; pings are spooled in {} for later",
                        self.spool.dir.display()
                    )),
                    Err(e) => self.warning.say(format!(
                        "{why}{hint}, and the spool {} is unusable ({e}); the ping is lost",
                        self.spool.dir.display()
                    )),
                }
                None
            }
        }
    }
}

/// `keepwatch run`: returns the exit code to exit with.
pub async fn run(args: RunArgs) -> i32 {
    let mut warning = Warning::default();
    let rid = uuid::Uuid::new_v4();
    let host = host_name();
    let own_pid = std::process::id();
    let identity = format!("rid={rid}&host={}&pid={own_pid}", encode(&host));
    let base = args.target.server.base().map(str::to_string);
    let paths = args
        .target
        .path("/start")
        .and_then(|start| Ok((start, args.target.path("")?)));
    let http = client();
    let (base, paths, http) = match (base, paths, http) {
        (Ok(base), Ok(paths), Ok(http)) => (Some(base), Some(paths), Some(http)),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            warning.say(format!("{e:#}; running the job without pings"));
            (None, None, None)
        }
    };
    let mut reporter = Reporter {
        http,
        base,
        spool: args.spool.spool(),
        warning,
    };

    let _lock = match &args.lock {
        None => None,
        Some(path) => match lock::acquire(path, args.lock_wait.unwrap_or_default()).await {
            Ok(lock::Outcome::Acquired(held)) => Some(held),
            Ok(lock::Outcome::Busy(holder)) => {
                let now = Utc::now();
                let line = format!(
                    "{} is locked by {}; the job was not run",
                    path.display(),
                    procs::report_line(&holder, now)
                );
                // This is the run's one line: a failing report after it says nothing more.
                reporter.warning.say(&line);
                if let Some((_, finish)) = &paths {
                    let ping = Ping {
                        path: format!("{finish}/log?{identity}"),
                        headers: strays_header(std::slice::from_ref(&holder)),
                        body: format!("keepwatch: {line}\n").into_bytes(),
                    };
                    reporter.report(ping, now, args.start_timeout).await;
                }
                return EXIT_LOCKED;
            }
            Err(e) => {
                // The lock is a safety the user asked for: without it, do not run.
                eprintln!(
                    "keepwatch: cannot lock {}: {e}; the job was not run",
                    path.display()
                );
                return EXIT_LOCKED;
            }
        },
    };

    // Looked for before the job starts, so the job itself is not among them; the runner
    // and the shell or cron that started it are left out (a --watch pattern naming the job
    // would match their command lines).
    let lineage = procs::own_lineage();
    let mut watch = args.watch.clone();
    let scan = procs::scan(&args.command, &watch, &lineage);
    if let Some(why) = &scan.skipped {
        eprintln!("keepwatch: could not look for other copies of the job: {why}");
    }
    let started_at = Utc::now();
    let started = SystemTime::now();
    let started_instant = tokio::time::Instant::now();
    let volume_file_before = args.volume_file.as_deref().and_then(file_version);
    let tail = Tail::new(100_000);
    let volume_matcher = args.volume_regex.clone().map(VolumeMatcher::new);
    let (program, arguments) = args.command.split_first().expect("clap requires a command");
    let spawned = tokio::process::Command::new(program)
        .args(arguments)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    // Pings name the job's own process, not this wrapper (which stays in its place when the
    // job cannot start).
    let job_pid = spawned.as_ref().ok().and_then(|child| child.id());
    let identity = format!(
        "rid={rid}&host={}&pid={}",
        encode(&host),
        job_pid.unwrap_or(own_pid)
    );
    let mut answer = Answer::default();
    if let Some((start, _)) = &paths {
        let ping = Ping {
            path: format!("{start}?{identity}"),
            headers: scan_headers(&scan),
            body: scan_report(&scan, started_at).into_bytes(),
        };
        if let Some(given) = reporter.report(ping, started_at, args.start_timeout).await {
            answer = given;
        }
    }
    if let Some(limit) = answer.body_limit {
        tail.set_limit(limit);
    }
    // The check's own watch patterns, learned just now: looked for at once.
    let mut job_tree = lineage.clone();
    job_tree.extend(job_pid);
    let added = check_watch(&answer.watch, &watch, &mut reporter.warning);
    if !added.is_empty()
        && let Some((_, finish)) = &paths
    {
        let found = procs::scan(&[], &added, &job_tree);
        if !found.found.is_empty() {
            let ping = Ping {
                path: format!("{finish}/log?{identity}"),
                headers: scan_headers(&found),
                body: scan_report(&found, Utc::now()).into_bytes(),
            };
            reporter.report(ping, Utc::now(), args.start_timeout).await;
        }
    }
    watch.extend(added);
    // The snapshot, shortly before the run counts as hung.
    let snapshot_task = match (
        &reporter.http,
        &reporter.base,
        &paths,
        answer.max_runtime,
        job_pid,
    ) {
        (Some(http), Some(base), Some((_, finish)), Some(hung_after), Some(job_pid)) => {
            let at = started_instant + hung_after.saturating_sub(args.snapshot_before);
            let send = SnapshotSend {
                http: http.clone(),
                url: format!("{base}{finish}/log?{identity}"),
                job_pid,
                command: args.command.clone(),
                watch: watch.clone(),
                ignore: lineage.clone(),
            };
            Some(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                send.send().await;
            }))
        }
        _ => None,
    };
    let (code, suffix) = match spawned {
        Err(e) => {
            let message = format!("cannot run `{program}`: {e}");
            eprintln!("keepwatch: {message}");
            tail.push(format!("keepwatch: {message}\n").as_bytes());
            (EXIT_CANNOT_RUN, format!("/{EXIT_CANNOT_RUN}"))
        }
        Ok(mut child) => {
            let out = tokio::spawn(output::pass_through(
                child.stdout.take().expect("piped"),
                tokio::io::stdout(),
                tail.clone(),
                volume_matcher.clone(),
            ));
            let err = tokio::spawn(output::pass_through(
                child.stderr.take().expect("piped"),
                tokio::io::stderr(),
                tail.clone(),
                volume_matcher.clone(),
            ));
            let waited = wait(&mut child, args.timeout, args.kill_after).await;
            let drained = async {
                let _ = out.await;
                let _ = err.await;
            };
            if matches!(waited, Ok((_, true))) {
                // What the killed job left running may hold its output open: stop copying.
                let _ = tokio::time::timeout(args.kill_after, drained).await;
            } else {
                drained.await;
            }
            match waited {
                Ok((_, true)) => {
                    let limit = humantime::format_duration(args.timeout.unwrap_or_default());
                    let message = format!("killed after running longer than --timeout {limit}");
                    eprintln!("keepwatch: {message}");
                    tail.push(format!("\nkeepwatch: {message}\n").as_bytes());
                    (EXIT_TIMED_OUT, "/fail".to_string())
                }
                Ok((status, false)) => {
                    let code = exit_code(status);
                    (code, format!("/{}", code.clamp(0, 255)))
                }
                Err(e) => {
                    eprintln!("keepwatch: lost track of the command: {e}");
                    (1, "/1".to_string())
                }
            }
        }
    };

    let volume = match &args.volume_file {
        Some(path) => volume_from_file(path, started, volume_file_before, &mut reporter.warning),
        None => volume_matcher.as_ref().and_then(VolumeMatcher::volume),
    };
    if let Some((_, finish)) = &paths {
        let mut path = format!("{finish}{suffix}?{identity}");
        if let Some(volume) = volume {
            path.push_str(&format!("&volume={volume}"));
        }
        let ping = Ping {
            path,
            headers: Vec::new(),
            body: tail.take(),
        };
        reporter.report(ping, Utc::now(), args.finish_timeout).await;
    }
    if let Some(task) = snapshot_task {
        task.abort();
    }
    code
}

/// The headers of a ping reporting a scan: the processes found, or why it could not look.
fn scan_headers(scan: &procs::Scan) -> Vec<(String, String)> {
    let mut headers = strays_header(&scan.found);
    if let Some(why) = &scan.skipped {
        headers.push(("x-keepwatch-scan-skipped".into(), procs::printable(why)));
    }
    headers
}

/// The body lines of a ping reporting a scan.
fn scan_report(scan: &procs::Scan, now: DateTime<Utc>) -> String {
    let mut body = String::new();
    let (copies, watched): (Vec<_>, Vec<_>) = scan.found.iter().partition(|p| p.watch.is_none());
    if !copies.is_empty() {
        body.push_str("keepwatch: other processes are running this command:\n");
        for stray in copies {
            body.push_str(&format!("  {}\n", procs::report_line(stray, now)));
        }
    }
    if !watched.is_empty() {
        body.push_str("keepwatch: processes matching watch patterns are running:\n");
        for stray in watched {
            body.push_str(&format!("  {}\n", procs::report_line(stray, now)));
        }
    }
    if let Some(why) = &scan.skipped {
        body.push_str(&format!(
            "keepwatch: could not look for other copies: {why}\n"
        ));
    }
    body
}

/// The check's watch patterns that `--watch` does not already give, compiled; a pattern
/// that is not a regular expression here costs a line on stderr.
fn check_watch(patterns: &[String], given: &[Watch], warning: &mut Warning) -> Vec<Watch> {
    patterns
        .iter()
        .filter(|p| !given.iter().any(|w| &w.pattern == *p))
        .filter_map(|p| match watch_pattern(p) {
            Ok(watch) => Some(watch),
            Err(e) => {
                warning.say(format!("the check's watch pattern `{p}` is unusable: {e}"));
                None
            }
        })
        .collect()
}

/// What the snapshot task needs: it runs beside the job and is dropped when the job ends.
struct SnapshotSend {
    http: reqwest::Client,
    url: String,
    job_pid: u32,
    command: Vec<String>,
    watch: Vec<Watch>,
    ignore: std::collections::HashSet<u32>,
}

impl SnapshotSend {
    /// Takes the snapshot and sends it once; it is not spooled (late, it is no use).
    async fn send(self) {
        let SnapshotSend {
            http,
            url,
            job_pid,
            command,
            watch,
            ignore,
        } = self;
        let taken =
            tokio::task::spawn_blocking(move || snapshot::take(job_pid, &command, &watch, &ignore))
                .await;
        let Ok(snapshot) = taken else { return };
        let Ok(body) = serde_json::to_vec(&snapshot) else {
            return;
        };
        let sent = http
            .post(url)
            .timeout(Duration::from_secs(10))
            .header("x-keepwatch-snapshot", "1")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => eprintln!(
                "keepwatch: the snapshot of the running job was not taken: the server answered {}",
                response.status()
            ),
            Err(e) => eprintln!("keepwatch: the snapshot of the running job was not sent: {e}"),
        }
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", [("v", value)])
        .map(|url| url.query().unwrap_or_default()[2..].to_string())
        .unwrap_or_default()
}

fn strays_header(strays: &[StrayProcess]) -> Vec<(String, String)> {
    if strays.is_empty() {
        return Vec::new();
    }
    vec![(
        "x-keepwatch-strays".into(),
        serde_json::to_string(strays).unwrap_or_default(),
    )]
}

/// What tells one version of a file from another: inode, size, modification time.
type FileVersion = (u64, u64, Option<SystemTime>);

fn file_version(path: &std::path::Path) -> Option<FileVersion> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()))
}

/// The number in `--volume-file`, if the job wrote it during this run: the file changed
/// since the start, or was modified after it (file times can lag the clock, so a change is
/// enough).
fn volume_from_file(
    path: &std::path::Path,
    started: SystemTime,
    before: Option<FileVersion>,
    warning: &mut Warning,
) -> Option<i64> {
    let after = file_version(path);
    let fresh = after.is_some_and(|version| {
        Some(version) != before || version.2.is_some_and(|modified| modified >= started)
    });
    if !fresh {
        warning.say(format!(
            "--volume-file {} was not written by this run; no volume reported",
            path.display()
        ));
        return None;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let volume = output::parse_count(&text);
    if volume.is_none() {
        warning.say(format!(
            "--volume-file {} does not hold a count of items: `{}`",
            path.display(),
            text.trim().chars().take(40).collect::<String>()
        ));
    }
    volume
}

/// The shell's convention: the exit code, or 128+N for a command killed by signal N.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Waits for the child, passing SIGINT, SIGTERM and SIGHUP on to it, and enforcing
/// `--timeout`: SIGTERM when it passes, SIGKILL `kill_after` later. The flag says whether
/// the timeout killed it.
async fn wait(
    child: &mut tokio::process::Child,
    timeout: Option<Duration>,
    kill_after: Duration,
) -> std::io::Result<(std::process::ExitStatus, bool)> {
    use tokio::signal::unix::{SignalKind, signal};
    let pid = child.id().map(|p| p as libc::pid_t);
    let send = |signal: libc::c_int| {
        if let Some(pid) = pid {
            // SAFETY: kill(2) with our own child's pid and a valid signal number.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    };
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    // Far enough to never fire when there is no timeout.
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let mut deadline = timeout.map_or(far, |t| tokio::time::Instant::now() + t);
    let mut timed_out = false;
    loop {
        let forward = tokio::select! {
            status = child.wait() => return Ok((status?, timed_out)),
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
            _ = tokio::time::sleep_until(deadline) => {
                let signal = if timed_out { libc::SIGKILL } else { libc::SIGTERM };
                timed_out = true;
                deadline = if signal == libc::SIGKILL { far } else { tokio::time::Instant::now() + kill_after };
                // What the job started goes too, as `timeout(1)` does by signalling its group:
                // `bash job.sh` dying would otherwise leave its `sleep` or `rsync` running.
                for descendant in pid.map_or_else(Vec::new, |p| procs::descendants(p as u32)) {
                    // SAFETY: kill(2) with a pid from /proc and a valid signal number.
                    unsafe {
                        libc::kill(descendant as libc::pid_t, signal);
                    }
                }
                signal
            }
        };
        send(forward);
    }
}
