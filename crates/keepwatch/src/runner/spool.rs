//! The spool: pings the server did not take (unreachable, timed out, or a 5xx) wait here, one
//! file each, and are delivered in the order they were made, with their original time in
//! `ts`, by the next `keepwatch run` or by `keepwatch spool flush`.
//!
//! A file is `<micros since epoch>-<pid>-<n>.ping`: one JSON line (the path and query to
//! send, headers, the original time), then the body. It is written under a temporary name
//! and renamed, so a crash never leaves half a ping. A ping the server rejects for good
//! (a 4xx other than 408 and 429: the check was deleted, say) is moved to `rejected/` rather
//! than dropped.
//!
//! The directory must be this user's own and not writable by others (it is created 0700):
//! without `HOME` it is a predictable path under /tmp that another local user could create
//! first, to read the pings (their URLs are the checks' secrets) or plant some. A spooled
//! entry is replayed only if it is a ping of the configured server: a path starting with
//! `/ping/` (never a URL, `//host` or `@host`), with only keepwatch's own headers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

const EXTENSION: &str = "ping";

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// `/ping/<check>[/suffix]?…&ts=…`, relative to the server, so a spool follows the
    /// server to its new address.
    path: String,
    headers: Vec<(String, String)>,
    at: DateTime<Utc>,
}

/// One ping to send: where, which headers, what body.
#[derive(Debug, Clone)]
pub struct Ping {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub struct Spool {
    pub dir: PathBuf,
}

/// What a flush did.
#[derive(Debug, Default)]
pub struct Flushed {
    pub delivered: usize,
    pub rejected: usize,
    /// Pings still waiting (the server is still down, or another flush holds the spool).
    pub left: usize,
    /// Why the flush stopped early.
    pub stopped: Option<String>,
}

/// Why a ping was not delivered.
pub enum SendError {
    /// Worth trying again later: no connection, a timeout, a 5xx, 408 or 429.
    Retry(String),
    /// The server said no for good (another 4xx, or a request that cannot be built).
    Rejected(String),
}

/// Sends one ping; `Ok` carries the response's `Ping-Body-Limit`, if any.
/// What the server's answer to a ping tells the runner.
#[derive(Debug, Default)]
pub struct Answer {
    /// `Ping-Body-Limit`: the largest body it keeps.
    pub body_limit: Option<usize>,
    /// `X-Keepwatch-Max-Runtime` (on a start): when the run counts as hung.
    pub max_runtime: Option<Duration>,
    /// `X-Keepwatch-Watch` (on a start): the check's own watch patterns.
    pub watch: Vec<String>,
}

impl Answer {
    fn of(headers: &reqwest::header::HeaderMap) -> Answer {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        };
        Answer {
            body_limit: text("ping-body-limit").and_then(|v| v.parse().ok()),
            max_runtime: text("x-keepwatch-max-runtime")
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs),
            watch: text("x-keepwatch-watch")
                .and_then(|v| serde_json::from_str(v).ok())
                .unwrap_or_default(),
        }
    }
}

pub async fn send(
    http: &reqwest::Client,
    base: &str,
    ping: &Ping,
    timeout: Duration,
) -> Result<Answer, SendError> {
    let mut request = http
        .post(format!("{base}{}", ping.path))
        .timeout(timeout.max(Duration::from_millis(50)))
        .body(ping.body.clone());
    for (name, value) in &ping.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(Answer::of(response.headers())),
        // 408 and 429 say "try again later", like a 5xx.
        Ok(response)
            if response.status().is_client_error()
                && !matches!(response.status().as_u16(), 408 | 429) =>
        {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            Err(SendError::Rejected(format!(
                "the server answered {status}: {}",
                text.trim()
            )))
        }
        Ok(response) => Err(SendError::Retry(format!(
            "the server answered {}",
            response.status()
        ))),
        Err(e) if e.is_timeout() => Err(SendError::Retry(format!(
            "no answer within {:.1}s",
            timeout.as_secs_f64()
        ))),
        // A request that cannot even be built will never be sent.
        Err(e) if e.is_builder() => Err(SendError::Rejected(format!("bad request ({e})"))),
        Err(e) => Err(SendError::Retry(format!("cannot reach the server ({e})"))),
    }
}

/// A spooled entry is sent to the configured server only: its path is appended to the
/// server's URL, so it must be a `/ping/…` path (an `@host` or `//host` would send it, with
/// its check's secret, elsewhere), and it may carry keepwatch's own headers only.
fn validate(header: &Header) -> Result<(), String> {
    let path = &header.path;
    let clean = path.chars().all(|c| c.is_ascii_graphic() && c != '\\');
    if !path.starts_with("/ping/") || path.starts_with("/ping//") || !clean {
        return Err(format!("path `{}` is not /ping/…", path.escape_debug()));
    }
    if let Some((name, _)) = header.headers.iter().find(|(name, value)| {
        !name.to_ascii_lowercase().starts_with("x-keepwatch-")
            || value.chars().any(char::is_control)
    }) {
        return Err(format!(
            "header `{}` is not one keepwatch sends",
            name.escape_debug()
        ));
    }
    Ok(())
}

impl Spool {
    /// `$KEEPWATCH_SPOOL_DIR` or `--spool-dir`, else `$XDG_STATE_HOME/keepwatch/spool`, else
    /// `~/.local/state/keepwatch/spool`, else a per-user directory under /tmp.
    pub fn default_dir() -> PathBuf {
        if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
            return PathBuf::from(state).join("keepwatch/spool");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|s| !s.is_empty()) {
            return PathBuf::from(home).join(".local/state/keepwatch/spool");
        }
        // SAFETY: getuid has no preconditions.
        PathBuf::from(format!("/tmp/keepwatch-spool-{}", unsafe {
            libc::getuid()
        }))
    }

    /// Creates the directory (0700) if it is missing, and checks it is private.
    fn ensure_private(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        self.check_private()
    }

    /// Refuses a directory owned by another user, or writable by its group or by others.
    fn check_private(&self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.dir)?;
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let why = if !meta.is_dir() {
            Some("it is not a directory".to_string())
        } else if meta.uid() != uid {
            Some(format!(
                "it belongs to uid {}, not to this user (uid {uid}), who could read or plant pings",
                meta.uid()
            ))
        } else if meta.mode() & 0o022 != 0 {
            Some(format!(
                "its group or other users may write to it (mode {:o}); chmod 700 it",
                meta.mode() & 0o777
            ))
        } else {
            None
        };
        match why {
            None => Ok(()),
            Some(why) => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("refusing the spool directory {}: {why}", self.dir.display()),
            )),
        }
    }

    /// Keeps a ping for later, stamped with the time it was made.
    pub fn push(&self, ping: &Ping, at: DateTime<Utc>) -> std::io::Result<PathBuf> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        self.ensure_private()?;
        let separator = if ping.path.contains('?') { '&' } else { '?' };
        let header = Header {
            path: format!(
                "{}{separator}ts={}",
                ping.path,
                at.to_rfc3339_opts(SecondsFormat::Micros, true)
            ),
            headers: ping.headers.clone(),
            at,
        };
        let name = format!(
            "{:020}-{}-{:04}",
            at.timestamp_micros(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut content = serde_json::to_vec(&header)?;
        content.push(b'\n');
        content.extend_from_slice(&ping.body);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(format!("{name}.{EXTENSION}"));
        std::fs::write(&temporary, content)?;
        std::fs::rename(&temporary, &path)?;
        Ok(path)
    }

    /// The waiting pings, oldest first. A missing directory is an empty spool.
    pub fn pending(&self) -> std::io::Result<Vec<PathBuf>> {
        match self.check_private() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            checked => checked?,
        }
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == EXTENSION) {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Reads one spooled ping: its original time and what to send.
    pub fn read(path: &Path) -> std::io::Result<(DateTime<Utc>, Ping)> {
        let content = std::fs::read(path)?;
        let split = content
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(content.len());
        let header: Header = serde_json::from_slice(&content[..split])?;
        validate(&header).map_err(|why| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a ping of this server: {why}"),
            )
        })?;
        let body = content.get(split + 1..).unwrap_or_default().to_vec();
        Ok((
            header.at,
            Ping {
                path: header.path,
                headers: header.headers,
                body,
            },
        ))
    }

    /// Delivers waiting pings in order until the spool is empty, the server fails, or
    /// `budget` runs out. Only one flush runs at a time; a second one leaves the spool alone.
    pub async fn flush(&self, http: &reqwest::Client, base: &str, budget: Duration) -> Flushed {
        let give_up = Instant::now() + budget;
        let mut flushed = Flushed::default();
        let pending = match self.pending() {
            Ok(pending) => pending,
            Err(e) => {
                flushed.stopped = Some(format!("cannot read {}: {e}", self.dir.display()));
                return flushed;
            }
        };
        if pending.is_empty() {
            return flushed;
        }
        let _guard = match self.flush_lock() {
            Ok(Some(guard)) => guard,
            Ok(None) => {
                flushed.left = pending.len();
                flushed.stopped = Some("another process is flushing the spool".into());
                return flushed;
            }
            Err(e) => {
                flushed.left = pending.len();
                flushed.stopped = Some(format!("cannot lock {}: {e}", self.dir.display()));
                return flushed;
            }
        };
        // Listed again under the lock: the previous holder may have sent some.
        let pending = self.pending().unwrap_or_default();
        for (index, path) in pending.iter().enumerate() {
            let remaining = give_up.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                flushed.left = pending.len() - index;
                flushed.stopped = Some("out of time".into());
                break;
            }
            let ping = match Spool::read(path) {
                Ok((_, ping)) => ping,
                Err(e) => {
                    self.reject(path);
                    flushed.rejected += 1;
                    flushed.stopped = Some(format!("unreadable {}: {e}", path.display()));
                    continue;
                }
            };
            match send(http, base, &ping, remaining).await {
                Ok(_) => {
                    let _ = std::fs::remove_file(path);
                    flushed.delivered += 1;
                }
                Err(SendError::Rejected(why)) => {
                    self.reject(path);
                    flushed.rejected += 1;
                    flushed.stopped = Some(why);
                }
                Err(SendError::Retry(why)) => {
                    flushed.left = pending.len() - index;
                    flushed.stopped = Some(why);
                    break;
                }
            }
        }
        flushed
    }

    fn reject(&self, path: &Path) {
        let rejected = self.dir.join("rejected");
        let moved = std::fs::create_dir_all(&rejected).and_then(|_| {
            std::fs::rename(path, rejected.join(path.file_name().unwrap_or_default()))
        });
        if moved.is_err() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// An exclusive, non-blocking lock on `<dir>/.flush.lock`; `None` if someone holds it.
    fn flush_lock(&self) -> std::io::Result<Option<std::fs::File>> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(".flush.lock"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            Ok(Some(file))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_come_back_in_the_order_they_were_spooled_with_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool {
            dir: dir.path().join("spool"),
        };
        assert!(spool.pending().unwrap().is_empty(), "missing dir is empty");
        let t0 = Utc::now();
        for (i, suffix) in ["/start?rid=1", "/0?rid=1", ""].iter().enumerate() {
            let ping = Ping {
                path: format!("/ping/abc{suffix}"),
                headers: vec![("x-keepwatch-strays".into(), "[]".into())],
                body: format!("body {i}\nline two").into_bytes(),
            };
            spool
                .push(&ping, t0 + chrono::TimeDelta::milliseconds(i as i64))
                .unwrap();
        }
        let pending = spool.pending().unwrap();
        assert_eq!(pending.len(), 3);
        let (at, first) = Spool::read(&pending[0]).unwrap();
        assert_eq!(at, t0);
        assert!(first.path.starts_with("/ping/abc/start?rid=1&ts="));
        assert_eq!(first.body, b"body 0\nline two");
        let (_, last) = Spool::read(&pending[2]).unwrap();
        assert!(last.path.starts_with("/ping/abc?ts="), "{}", last.path);
        assert_eq!(last.headers[0].0, "x-keepwatch-strays");
    }

    #[test]
    fn a_spool_directory_of_another_user_or_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool {
            dir: dir.path().join("spool"),
        };
        let ping = Ping {
            path: "/ping/abc".into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        spool.push(&ping, Utc::now()).unwrap();
        let mode = std::fs::metadata(&spool.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "created private");
        std::fs::set_permissions(&spool.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = spool.push(&ping, Utc::now()).unwrap_err().to_string();
        assert!(error.contains("may write to it (mode 777)"), "{error}");
        let error = spool.pending().unwrap_err().to_string();
        assert!(error.starts_with("refusing the spool directory"), "{error}");
        std::fs::set_permissions(&spool.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Pre-created by another user (as root, the tests can give it away).
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            std::os::unix::fs::chown(&spool.dir, Some(65534), Some(65534)).unwrap();
            let error = spool.pending().unwrap_err().to_string();
            assert!(
                error.contains("belongs to uid 65534, not to this user"),
                "{error}"
            );
            assert!(spool.push(&ping, Utc::now()).is_err());
        }
    }

    #[test]
    fn spooled_entries_that_are_not_pings_of_this_server_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool {
            dir: dir.path().join("spool"),
        };
        spool.ensure_private().unwrap();
        for (n, (path, headers, why)) in [
            ("@evil.example/ping/abc", vec![], "is not /ping/"),
            ("//evil.example/ping/abc", vec![], "is not /ping/"),
            ("https://evil.example/ping/abc", vec![], "is not /ping/"),
            ("/ping//evil.example/x", vec![], "is not /ping/"),
            ("/ping/abc\r\nHost: evil", vec![], "is not /ping/"),
            ("/api/v3/checks/", vec![], "is not /ping/"),
            (
                "/ping/abc",
                vec![("Authorization".to_string(), "Bearer x".to_string())],
                "header `Authorization` is not one keepwatch sends",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let header = Header {
                path: path.to_string(),
                headers,
                at: Utc::now(),
            };
            let mut content = serde_json::to_vec(&header).unwrap();
            content.push(b'\n');
            let file = spool.dir.join(format!("{n:020}-1-0000.ping"));
            std::fs::write(&file, content).unwrap();
            let error = Spool::read(&file).unwrap_err().to_string();
            assert!(
                error.starts_with("not a ping of this server") && error.contains(why),
                "{path}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn a_flush_moves_a_planted_entry_to_rejected_without_sending_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool {
            dir: dir.path().join("spool"),
        };
        spool.ensure_private().unwrap();
        let header = Header {
            path: "@127.0.0.1:9/ping/abc".into(),
            headers: Vec::new(),
            at: Utc::now(),
        };
        let planted = spool.dir.join("00000000000000000001-1-0000.ping");
        std::fs::write(&planted, serde_json::to_vec(&header).unwrap()).unwrap();
        let flushed = spool
            .flush(
                &super::super::client().unwrap(),
                "http://keepwatch.invalid",
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(
            (flushed.delivered, flushed.rejected, flushed.left),
            (0, 1, 0)
        );
        assert!(
            flushed
                .stopped
                .unwrap()
                .contains("not a ping of this server")
        );
        assert!(
            spool
                .dir
                .join("rejected/00000000000000000001-1-0000.ping")
                .exists()
        );
    }
}
