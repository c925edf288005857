//! `keepwatch run` and `keepwatch ping`: the job side of the ping protocol.
//!
//! `run` wraps a job: it sends `/start` with a fresh run id, the host name and its pid, runs
//! the command with stdin, stdout and stderr passed through, keeps the last part of the
//! combined output (at most the server's `Ping-Body-Limit`), then sends the exit status with
//! that tail and exits with exactly the command's code (128+N when killed by signal N).
//! SIGINT, SIGTERM and SIGHUP are forwarded to the command. It never blocks or breaks the job:
//! the start ping waits at most `--start-timeout`, and a server that is down or answers errors
//! costs one line on stderr, never a changed exit code.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Exit code when the command cannot be started (as a shell reports "command not found").
pub const EXIT_CANNOT_RUN: i32 = 127;

#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The check: its UUID, or its slug together with --ping-key
    pub check: String,
    /// keepwatch server base URL
    #[arg(
        long,
        env = "KEEPWATCH_SERVER",
        default_value = "http://127.0.0.1:8000"
    )]
    pub server: String,
    /// The project's ping key, to address the check by slug
    #[arg(long, env = "KEEPWATCH_PING_KEY", hide_env_values = true)]
    pub ping_key: Option<String>,
}

impl Target {
    fn url(&self, suffix: &str) -> anyhow::Result<String> {
        let base = self.server.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!(
                "--server `{}` is not an http:// or https:// URL",
                self.server
            );
        }
        let check = match (uuid::Uuid::parse_str(&self.check), &self.ping_key) {
            (Ok(uuid), _) => uuid.hyphenated().to_string(),
            (Err(_), Some(key)) => format!("{key}/{}", self.check),
            (Err(_), None) => anyhow::bail!(
                "`{}` is not a check UUID; to use a slug, give --ping-key",
                self.check
            ),
        };
        Ok(format!("{base}/ping/{check}{suffix}"))
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// How long the start ping may hold up the job
    #[arg(long, default_value = "5", value_name = "SECONDS")]
    pub start_timeout: f64,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
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

fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
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
    let url = args.target.url(&suffix)?;
    let response = client(Duration::from_secs(10))?
        .post(&url)
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("the server answered {status}: {text}");
    }
    Ok(())
}

/// The last `limit` bytes written through it.
#[derive(Clone)]
struct Tail {
    bytes: Arc<Mutex<VecDeque<u8>>>,
    limit: usize,
}

impl Tail {
    fn push(&self, chunk: &[u8]) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        bytes.extend(chunk.iter().skip(chunk.len().saturating_sub(self.limit)));
        let excess = bytes.len().saturating_sub(self.limit);
        bytes.drain(..excess);
    }

    fn take(&self) -> Vec<u8> {
        self.bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// Copies a child's output to ours, keeping the tail. Memory stays bounded by the tail.
async fn pass_through(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    tail: Tail,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.push(&buffer[..n]);
                // A closed stdout must not stop the job: keep draining its pipe.
                let _ = to.write_all(&buffer[..n]).await;
                let _ = to.flush().await;
            }
        }
    }
}

/// `keepwatch run`: returns the exit code to exit with.
pub async fn run(args: RunArgs) -> i32 {
    let rid = uuid::Uuid::new_v4();
    let host = host_name();
    let pid = std::process::id();
    let identity = |url: &str| {
        let mut url = reqwest::Url::parse(url)?;
        url.query_pairs_mut()
            .append_pair("rid", &rid.to_string())
            .append_pair("host", &host)
            .append_pair("pid", &pid.to_string());
        anyhow::Ok(url)
    };
    // One line on stderr at most: a server that is down would otherwise be reported twice.
    let warned = std::sync::atomic::AtomicBool::new(false);
    let warn = |message: String| {
        if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("keepwatch: {message}");
        }
    };
    let http = client(Duration::from_secs_f64(args.start_timeout.clamp(0.1, 60.0)));
    let urls = (
        args.target.url("/start").and_then(|u| identity(&u)),
        args.target.url("").map(|u| u.to_string()),
    );
    let mut body_limit = 100_000usize;
    match (&http, &urls.0) {
        (Ok(http), Ok(url)) => match http.post(url.clone()).send().await {
            Ok(response) if response.status().is_success() => {
                if let Some(limit) = response
                    .headers()
                    .get("ping-body-limit")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                {
                    body_limit = limit;
                }
            }
            Ok(response) => warn(format!(
                "start ping answered {}; running the job anyway",
                response.status()
            )),
            Err(e) => warn(format!("start ping failed ({e}); running the job anyway")),
        },
        (Err(e), _) | (_, Err(e)) => warn(format!("{e:#}; running the job without pings")),
    }

    let tail = Tail {
        bytes: Arc::default(),
        limit: body_limit,
    };
    let (program, arguments) = args.command.split_first().expect("clap requires a command");
    let spawned = tokio::process::Command::new(program)
        .args(arguments)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let (code, outcome) = match spawned {
        Err(e) => {
            let message = format!("cannot run `{program}`: {e}");
            warn(message.clone());
            tail.push(format!("keepwatch: {message}\n").as_bytes());
            (EXIT_CANNOT_RUN, format!("/{EXIT_CANNOT_RUN}"))
        }
        Ok(mut child) => {
            let out = tokio::spawn(pass_through(
                child.stdout.take().expect("piped"),
                tokio::io::stdout(),
                tail.clone(),
            ));
            let err = tokio::spawn(pass_through(
                child.stderr.take().expect("piped"),
                tokio::io::stderr(),
                tail.clone(),
            ));
            let status = wait_forwarding_signals(&mut child).await;
            let _ = out.await;
            let _ = err.await;
            let code = match status {
                Ok(status) => exit_code(status),
                Err(e) => {
                    warn(format!("lost track of the command: {e}"));
                    1
                }
            };
            (code, format!("/{}", code.clamp(0, 255)))
        }
    };

    if let (Ok(http), Ok(url)) = (
        &http,
        identity(&format!(
            "{}{outcome}",
            urls.1.as_deref().unwrap_or_default()
        )),
    ) {
        let finish = http
            .post(url)
            .timeout(Duration::from_secs(10))
            .body(tail.take())
            .send()
            .await;
        match finish {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => warn(format!("finish ping answered {}", response.status())),
            Err(e) => warn(format!("finish ping failed ({e})")),
        }
    }
    code
}

/// The shell's convention: the exit code, or 128+N for a command killed by signal N.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Waits for the child, passing SIGINT, SIGTERM and SIGHUP on to it.
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let pid = child.id().map(|p| p as libc::pid_t);
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        let forward = tokio::select! {
            status = child.wait() => return status,
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
        };
        if let Some(pid) = pid {
            // SAFETY: kill(2) with our own child's pid and a valid signal number.
            unsafe {
                libc::kill(pid, forward);
            }
        }
    }
}
