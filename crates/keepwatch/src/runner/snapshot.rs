//! The hung-run snapshot: what the job's processes are doing, taken by the runner (which is
//! still alive when the job hangs) shortly before the run's deadline and sent to the server,
//! whose hung alert carries it. Each process of the job's tree with its state, wait channel,
//! CPU time and open files; the other processes holding the same files open or locked
//! (/proc/<pid>/fd, /proc/locks); and processes matching watch patterns at that moment.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use keepwatch_core::check::{FileHolder, MAX_SNAPSHOT_ITEMS, RunSnapshot, SnapshotProcess};

use super::procs::{self, Watch};

/// Open files of a process, pipes, sockets and terminals left out: what another process can
/// also hold.
fn open_files(pid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut files: Vec<String> = entries
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_str()?.to_string();
            let shared = target.starts_with('/')
                && target != "/dev/null"
                && !target.starts_with("/dev/pts/")
                && !target.starts_with("/dev/tty");
            shared.then_some(target)
        })
        .collect();
    files.sort();
    files.dedup();
    files.truncate(MAX_SNAPSHOT_ITEMS);
    files
}

fn process(pid: u32) -> Option<SnapshotProcess> {
    // Fields 3 (state), 4 (parent), 14 and 15 (user and system time in clock ticks).
    let fields = procs::stat_fields(pid, &[3, 4, 14, 15])?;
    let ticks: u64 = fields[2].parse::<u64>().ok()? + fields[3].parse::<u64>().ok()?;
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    Some(SnapshotProcess {
        pid,
        ppid: fields[1].parse().ok()?,
        state: fields[0].clone(),
        // "0" when running or unknown.
        wchan: if wchan == "0" { String::new() } else { wchan },
        cpu_ms: ticks * 1000 / procs::ticks_per_second() as u64,
        cmdline: procs::printable(&procs::read_argv(pid)?.join(" ")),
        files: open_files(pid),
    })
}

/// A file as /proc/locks names it: device major:minor (hex) and inode.
fn lock_key(path: &str) -> Option<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    // glibc's gnu_dev_major/minor.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    Some((major, minor, meta.ino()))
}

/// The locks held (not waited for) in /proc/locks: (holder pid, kind, file key).
fn held_locks() -> Vec<(u32, String, (u64, u64, u64))> {
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; waiters have `->` after
            // the number.
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) == Some(&"->") {
                return None;
            }
            let pid: u32 = fields.get(4)?.parse().ok()?;
            let mut key = fields.get(5)?.split(':');
            let major = u64::from_str_radix(key.next()?, 16).ok()?;
            let minor = u64::from_str_radix(key.next()?, 16).ok()?;
            let inode = key.next()?.parse().ok()?;
            let kind = match *fields.get(1)? {
                "FLOCK" => "flock",
                "POSIX" => "posix",
                _ => "ofd",
            };
            Some((pid, kind.to_string(), (major, minor, inode)))
        })
        .collect()
}

/// Takes the snapshot of the job `job_pid`. `ignore` are the runner and its ancestors: they
/// share the job's files (its lock, its log) without being in its way.
pub fn take(
    job_pid: u32,
    command: &[String],
    watch: &[Watch],
    ignore: &HashSet<u32>,
) -> RunSnapshot {
    let mut tree = vec![job_pid];
    tree.extend(procs::descendants(job_pid));
    tree.truncate(MAX_SNAPSHOT_ITEMS);
    let processes: Vec<SnapshotProcess> = tree.iter().filter_map(|pid| process(*pid)).collect();
    let mut outside: HashSet<u32> = ignore.clone();
    outside.extend(&tree);

    // Each of the job's files, and who outside the job has it open or locked.
    let files: HashSet<&str> = processes
        .iter()
        .flat_map(|p| p.files.iter().map(String::as_str))
        .collect();
    let mut holders = Vec::new();
    let by_key: HashMap<(u64, u64, u64), &str> = files
        .iter()
        .filter_map(|file| Some((lock_key(file)?, *file)))
        .collect();
    let mut locked = HashSet::new();
    for (pid, how, key) in held_locks() {
        if let Some(file) = by_key.get(&key)
            && !outside.contains(&pid)
        {
            locked.insert((pid, file.to_string()));
            holders.push(holder(pid, file, &how));
        }
    }
    for pid in procs::pids().unwrap_or_default() {
        if outside.contains(&pid) || holders.len() >= MAX_SNAPSHOT_ITEMS {
            continue;
        }
        for file in open_files(pid) {
            if files.contains(file.as_str()) && !locked.contains(&(pid, file.clone())) {
                holders.push(holder(pid, &file, "open"));
            }
        }
    }
    holders.truncate(MAX_SNAPSHOT_ITEMS);
    let watched = procs::scan(command, watch, &outside).found;
    let summary = summary(&processes, &holders, &watched);
    RunSnapshot {
        taken_at: Utc::now(),
        summary,
        processes,
        holders,
        watched,
    }
}

fn holder(pid: u32, file: &str, how: &str) -> FileHolder {
    FileHolder {
        pid,
        cmdline: procs::read_argv(pid)
            .map(|argv| procs::printable(&argv.join(" ")))
            .unwrap_or_default(),
        file: file.to_string(),
        how: how.to_string(),
    }
}

/// `pid 21507 S in do_wait, 0.0 s CPU: /bin/bash /opt/jobs/nightly.sh; …; /var/lock/n
/// flock held by pid 26458: /bin/bash /opt/jobs/nightly.sh`
fn summary(
    processes: &[SnapshotProcess],
    holders: &[FileHolder],
    watched: &[keepwatch_core::check::StrayProcess],
) -> String {
    const SHOWN: usize = 3;
    let short = |text: &str| text.chars().take(80).collect::<String>();
    let mut parts: Vec<String> = processes
        .iter()
        .take(SHOWN)
        .map(|p| {
            let wait = match p.wchan.as_str() {
                "" => String::new(),
                wchan => format!(" in {wchan}"),
            };
            format!(
                "pid {} {}{wait}, {:.1} s CPU: {}",
                p.pid,
                p.state,
                p.cpu_ms as f64 / 1000.0,
                short(&p.cmdline)
            )
        })
        .collect();
    if processes.len() > SHOWN {
        parts.push(format!("{} more processes", processes.len() - SHOWN));
    }
    parts.extend(holders.iter().take(SHOWN).map(|h| {
        let how = match h.how.as_str() {
            "open" => "open in".to_string(),
            lock => format!("{lock} lock held by"),
        };
        format!("{} {how} pid {}: {}", h.file, h.pid, short(&h.cmdline))
    }));
    parts.extend(watched.iter().take(SHOWN).map(|w| {
        let why = match &w.watch {
            Some(pattern) => format!("matches '{pattern}'"),
            None => "same command".into(),
        };
        format!("also running ({why}): pid {} {}", w.pid, short(&w.cmdline))
    }));
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_waiting_on_a_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        std::fs::write(&lock, "").unwrap();
        let lock = lock.to_str().unwrap();
        // The rogue takes the lock and keeps it; the job waits for it.
        let mut rogue = std::process::Command::new("flock")
            .args([lock, "sleep", "30"])
            .spawn()
            .unwrap();
        let mut held = false;
        for _ in 0..200 {
            if held_locks().iter().any(|(pid, ..)| *pid == rogue.id()) {
                held = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(held, "flock(1) took the lock");
        let mut job = std::process::Command::new("flock")
            .args([lock, "true"])
            .spawn()
            .unwrap();
        let mut snapshot = None;
        for _ in 0..200 {
            let taken = take(job.id(), &[], &[], &procs::own_lineage());
            if taken.processes.first().is_some_and(|p| p.state == "S") {
                snapshot = Some(taken);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = (rogue.kill(), job.kill(), rogue.wait(), job.wait());
        let snapshot = snapshot.expect("the job went to sleep on the lock");
        let process = &snapshot.processes[0];
        assert_eq!(process.pid, job.id());
        assert!(process.files.iter().any(|f| f == lock), "{process:?}");
        let holder = snapshot
            .holders
            .iter()
            .find(|h| h.how == "flock")
            .expect("the lock's holder");
        assert_eq!((holder.pid, holder.file.as_str()), (rogue.id(), lock));
        assert!(
            snapshot.summary.contains("flock lock held by pid"),
            "{}",
            snapshot.summary
        );
    }
}
