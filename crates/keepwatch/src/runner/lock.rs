//! `--lock <file>`: an exclusive flock(2) for the run, as `flock(1)` takes it. The holder
//! writes its pid into the file so a refused run can name it. The lock's descriptor is
//! inherited by the job, so the lock lasts as long as the job even if the wrapper dies.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keepwatch_core::check::StrayProcess;

use super::procs;

/// How often a waiting run tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Holds the lock until dropped (or until the job, which inherits it, ends).
pub struct Held {
    _file: File,
}

pub enum Outcome {
    Acquired(Held),
    /// Another process holds the lock: who, as far as the lock file tells.
    Busy(StrayProcess),
}

/// Takes the lock, waiting up to `wait` for it.
pub async fn acquire(path: &Path, wait: Duration) -> std::io::Result<Outcome> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let give_up = Instant::now() + wait;
    loop {
        // SAFETY: flock on a descriptor we own.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if locked {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            inherit(&file)?;
            return Ok(Outcome::Acquired(Held { _file: file }));
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(error);
        }
        if Instant::now() >= give_up {
            return Ok(Outcome::Busy(holder(&mut file)));
        }
        tokio::time::sleep(RETRY_EVERY.min(give_up - Instant::now())).await;
    }
}

/// Clears close-on-exec so the job keeps the lock's descriptor.
fn inherit(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The process named in the lock file; when it cannot be looked at, the pid alone, dated
/// when the file was written.
fn holder(file: &mut File) -> StrayProcess {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    let pid = text.trim().parse::<u32>().unwrap_or(0);
    procs::describe(pid).unwrap_or_else(|| StrayProcess {
        pid,
        started_at: file
            .metadata()
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|_| Utc::now()),
        cmdline: "(not visible from here)".into(),
        watch: None,
    })
}
