//! The spool: pings the server did not take (unreachable, timed out, or a 5xx) wait here, one
//! file each, and are delivered in the order they were made, with their original time in
//! `ts`, by the next `keepwatch run` or by `keepwatch spool flush`.
//!
//! A file is `<micros since epoch>-<pid>-<n>.ping`: one JSON line (the path and query to
//! send, headers, the original time), then the body. It is written under a temporary name
//! and renamed, so a crash never leaves half a ping. A ping the server rejects for good
//! (a 4xx other than 408 and 429: the check was deleted, say) is moved to `rejected/` rather
//! than dropped.

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
pub async fn send(
    http: &reqwest::Client,
    base: &str,
    ping: &Ping,
    timeout: Duration,
) -> Result<Option<usize>, SendError> {
    let mut request = http
        .post(format!("{base}{}", ping.path))
        .timeout(timeout.max(Duration::from_millis(50)))
        .body(ping.body.clone());
    for (name, value) in &ping.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(response
            .headers()
            .get("ping-body-limit")
            .and_then(|v| v.to_str().ok()?.parse().ok())),
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

    /// Keeps a ping for later, stamped with the time it was made.
    pub fn push(&self, ping: &Ping, at: DateTime<Utc>) -> std::io::Result<PathBuf> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        std::fs::create_dir_all(&self.dir)?;
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
}
