//! Other processes on this host running the job's command line, read from Linux's /proc.
//! Elsewhere (no /proc) the scan finds nothing.

use std::path::Path;

use chrono::{DateTime, Utc};
use keepwatch_core::check::StrayProcess;

/// At most this many processes are reported; the oldest come first. With the cut below the
/// report stays under 4 KB, a header every proxy passes.
const MAX_REPORTED: usize = 8;
/// Command lines are cut to this many characters in reports.
const MAX_CMDLINE: usize = 256;

/// Processes other than `own_pid` whose arguments are `command`'s. The program is compared
/// by file name, so `/usr/bin/python3 etl.py` and `python3 etl.py` are the same job.
pub fn same_command(command: &[String], own_pid: u32) -> Vec<StrayProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<StrayProcess> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own_pid)
        .filter(|pid| read_argv(*pid).is_some_and(|argv| same_argv(&argv, command)))
        .filter_map(describe)
        .collect();
    found.sort_by_key(|p| p.started_at);
    found.truncate(MAX_REPORTED);
    found
}

/// A live process's start time and command line, if it exists.
pub fn describe(pid: u32) -> Option<StrayProcess> {
    let argv = read_argv(pid)?;
    // Printable ASCII only: the report travels in an HTTP header.
    let cmdline: String = argv
        .join(" ")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_CMDLINE)
        .collect();
    Some(StrayProcess {
        pid,
        started_at: start_time(pid)?,
        cmdline,
    })
}

/// The processes started by `pid`, its children's children and so on (from the parent pid
/// in /proc/<pid>/stat).
pub fn descendants(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, stat_field(p, 4)?.parse().ok()?)))
        .collect();
    let mut found = vec![pid];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        index += 1;
    }
    found.remove(0);
    found
}

/// Field `n` (counted from 1, as proc(5) does) of /proc/<pid>/stat.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, may hold spaces and parentheses: count from after it.
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    after_name
        .split(' ')
        .nth(n.checked_sub(3)?)
        .map(str::to_string)
}

fn read_argv(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    // Kernel threads and zombies have an empty command line.
    let argv: Vec<String> = match argv.as_slice() {
        [rest @ .., last] if last.is_empty() => rest.to_vec(),
        _ => argv,
    };
    (!argv.is_empty()).then_some(argv)
}

fn same_argv(argv: &[String], command: &[String]) -> bool {
    let program = |s: &String| Path::new(s).file_name().map(|n| n.to_os_string());
    argv.len() == command.len()
        && program(&argv[0]) == program(&command[0])
        && argv[1..] == command[1..]
}

/// Boot time plus the process's start in clock ticks (field 22 of /proc/<pid>/stat).
fn start_time(pid: u32) -> Option<DateTime<Utc>> {
    let ticks: i64 = stat_field(pid, 22)?.parse().ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf has no preconditions.
    let per_second = i64::from(u16::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?);
    let micros = boot * 1_000_000 + ticks * 1_000_000 / per_second.max(1);
    DateTime::from_timestamp_micros(micros)
}

/// "pid 4242, started 2026-11-26T22:01:05Z (3h 2m ago): /opt/jobs/nightly.sh"
pub fn report_line(process: &StrayProcess, now: DateTime<Utc>) -> String {
    let age = (now - process.started_at).to_std().unwrap_or_default();
    let age = humantime::format_duration(std::time::Duration::from_secs(age.as_secs()));
    format!(
        "pid {}, started {} ({age} ago): {}",
        process.pid,
        process
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        process.cmdline
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn programs_compare_by_file_name_and_arguments_exactly() {
        let job = strings(&["python3", "etl.py", "--full"]);
        assert!(same_argv(
            &strings(&["/usr/bin/python3", "etl.py", "--full"]),
            &job
        ));
        assert!(!same_argv(&strings(&["python3", "etl.py"]), &job));
        assert!(!same_argv(&strings(&["python3", "etl.py", "--fast"]), &job));
    }

    #[test]
    fn finds_a_live_process_with_the_same_command_and_its_start_time() {
        let marker = format!("keepwatch-procs-test-{}", std::process::id());
        let command = strings(&["sleep", "30", &marker]);
        // `sleep 30 <marker>` fails at once on the extra operand: run it through sh, which
        // keeps its own argv as given with -c. Two commands, so sh does not exec the last one
        // in its place (dash does), which would change the command line under the scan.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; exit 0", "sleep", "30", &marker])
            .spawn()
            .unwrap();
        let argv_of_sh = strings(&["sh", "-c", "sleep 30; exit 0", "sleep", "30", &marker]);
        let before = Utc::now() - chrono::TimeDelta::seconds(5);
        // Polled: seen once under load in CI, the scan right after spawn() found nothing.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = same_command(&argv_of_sh, std::process::id());
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let seen = read_argv(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}; the child's argv: {seen:?}");
        assert_eq!(found[0].pid, child.id());
        assert!(found[0].started_at >= before && found[0].started_at <= Utc::now());
        assert!(found[0].cmdline.ends_with(&marker));
        assert!(same_command(&command, std::process::id()).is_empty());
    }
}
