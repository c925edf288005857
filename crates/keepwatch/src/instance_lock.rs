//! One `keepwatch serve` per SQLite database: the server holds an exclusive lock on a file
//! beside the database for as long as it runs, and a second one started on the same data
//! directory is refused, naming the directory and the pid of the one that holds it. The
//! lock is the kernel's (flock): it goes when the process does, however it ends, so a crash
//! leaves nothing to clean up. Other commands (`user create`, `api-key create` …) do not take
//! it: they may run beside the server.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The lock file of the SQLite database `serve` opens; `None` on PostgreSQL (several
/// instances may share it).
pub fn lock_path(database_url: Option<&str>, data_dir: &Path) -> Option<PathBuf> {
    match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => None,
        Some(url) => {
            let file = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let file = file.split('?').next().unwrap_or(file);
            Some(PathBuf::from(format!("{file}.lock")))
        }
        None => Some(data_dir.join("keepwatch.lock")),
    }
}

/// Takes the lock at `path` (creating its directory and the file), or fails naming the
/// directory and the pid written by the holder.
pub fn acquire(path: &Path) -> anyhow::Result<File> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let holder = match pid.trim() {
                "" => "another keepwatch".to_string(),
                pid => format!("another keepwatch (pid {pid})"),
            };
            bail!(
                "{holder} is already serving the SQLite database in {}: one instance per SQLite database (the lock is {}). Stop it first, or run several instances on PostgreSQL (--database-url postgres://…)",
                dir.display(),
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    write!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(file)
}
