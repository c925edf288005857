//! Other processes on this host that may get in the job's way, read from Linux's /proc:
//! copies of the job's command (an interpreted script matches whatever interpreter runs it),
//! and processes whose command line matches a `--watch` pattern. Where the scan cannot look
//! (no /proc, or other users' processes hidden), it says so instead of finding nothing.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use keepwatch_core::check::StrayProcess;
use regex::Regex;

/// At most this many processes are reported; the oldest come first. With the cut below the
/// report stays under 4 KB, a header every proxy passes.
const MAX_REPORTED: usize = 8;
/// Command lines are cut to this many characters in reports.
const MAX_CMDLINE: usize = 256;

/// A `--watch` pattern (or one of the check's `watch` list).
#[derive(Debug, Clone)]
pub struct Watch {
    pub pattern: String,
    pub regex: Regex,
}

/// What one pass over /proc found, and why it could not look everywhere, if it could not.
#[derive(Debug, Default)]
pub struct Scan {
    pub found: Vec<StrayProcess>,
    pub skipped: Option<String>,
}

/// The pids of live processes, or why they cannot be listed.
pub fn pids() -> Result<Vec<u32>, String> {
    let entries = std::fs::read_dir("/proc").map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no /proc on this system".to_string(),
        _ => format!("cannot read /proc ({e})"),
    })?;
    Ok(entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect())
}

/// Processes other than those in `exclude` that run `command` (compared as [`JobForm`]s) or
/// whose command line matches one of `watch`.
pub fn scan(command: &[String], watch: &[Watch], exclude: &HashSet<u32>) -> Scan {
    let pids = match pids() {
        Ok(pids) => pids,
        Err(why) => {
            return Scan {
                found: Vec::new(),
                skipped: Some(why),
            };
        }
    };
    let cwd = std::env::current_dir().ok();
    // No command: only the watch patterns are looked for.
    let job = (!command.is_empty()).then(|| JobForm::of(command, cwd.as_deref(), Resolve::Ours));
    let mut found: Vec<StrayProcess> = pids
        .into_iter()
        .filter(|pid| !exclude.contains(pid))
        .filter_map(|pid| {
            let argv = read_argv(pid)?;
            let watched = watch
                .iter()
                .find(|w| w.regex.is_match(&argv.join(" ")))
                .map(|w| w.pattern.clone());
            let copy = || {
                let Some(job) = &job else { return false };
                // Cheap first: the job's arguments end the command line.
                if argv.len() <= job.args.len() || !argv.ends_with(&job.args) {
                    return false;
                }
                let their_cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
                job.matches(&JobForm::of(
                    &argv,
                    their_cwd.as_deref(),
                    Resolve::Theirs(pid),
                ))
            };
            // A copy of the job is named as such even when a pattern matches it too.
            let watched = if copy() { None } else { Some(watched?) };
            let mut process = describe(pid)?;
            process.watch = watched;
            Some(process)
        })
        .collect();
    found.sort_by_key(|p| p.started_at);
    found.truncate(MAX_REPORTED);
    Scan {
        found,
        skipped: hidden_processes(),
    }
}

/// Why other users' processes are invisible to this one, when /proc is mounted with
/// `hidepid` and we are not root.
fn hidden_processes() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return None;
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let options = mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(1) == Some(&"/proc") && fields.get(2) == Some(&"proc")).then(|| fields[3])
    })?;
    let hidepid = options
        .split(',')
        .find_map(|o| o.strip_prefix("hidepid="))?;
    (!matches!(hidepid, "0" | "off")).then(|| {
        format!("/proc is mounted with hidepid={hidepid}: other users' processes are not visible")
    })
}

/// The runner's own pid and its ancestors (the shell or cron that started it), which a
/// `--watch` pattern naming the job would otherwise match.
pub fn own_lineage() -> HashSet<u32> {
    let mut lineage = HashSet::new();
    let mut pid = std::process::id();
    while pid > 1 && lineage.insert(pid) {
        pid = match stat_field(pid, 4).and_then(|p| p.parse().ok()) {
            Some(parent) => parent,
            None => break,
        };
    }
    lineage
}

/// A live process's start time and command line, if it exists.
pub fn describe(pid: u32) -> Option<StrayProcess> {
    let argv = read_argv(pid)?;
    Some(StrayProcess {
        pid,
        started_at: start_time(pid)?,
        cmdline: printable(&argv.join(" ")),
        watch: None,
    })
}

/// Printable ASCII only, cut to [`MAX_CMDLINE`]: reports travel in HTTP headers.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_CMDLINE)
        .collect()
}

/// The processes started by `pid`, its children's children and so on (from the parent pid
/// in /proc/<pid>/stat).
pub fn descendants(pid: u32) -> Vec<u32> {
    let Ok(pids) = pids() else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = pids
        .into_iter()
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
pub fn stat_field(pid: u32, n: usize) -> Option<String> {
    stat_fields(pid, &[n]).map(|mut fields| fields.remove(0))
}

/// Fields `ns` of /proc/<pid>/stat, read once.
pub fn stat_fields(pid: u32, ns: &[usize]) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, may hold spaces and parentheses: count from after it.
    let after_name: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    ns.iter()
        .map(|n| after_name.get(n.checked_sub(3)?).map(|s| s.to_string()))
        .collect()
}

pub fn read_argv(pid: u32) -> Option<Vec<String>> {
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

/// Where paths in an argv are resolved: our own command (PATH for a bare program name), or
/// another process's (its /proc/<pid>/exe for a program).
#[derive(Clone, Copy)]
enum Resolve {
    Ours,
    Theirs(u32),
    #[cfg(test)]
    Nowhere,
}

/// A command line reduced to what identifies the job: the program or, for an interpreter
/// running a script, the script; then the arguments. `bash /opt/jobs/nightly.sh --all`,
/// `/opt/jobs/nightly.sh --all` (a shebang script, which /proc shows as the first) and
/// `sh ./nightly.sh --all` run from /opt/jobs are all the same job.
#[derive(Debug, PartialEq)]
struct JobForm {
    file_name: Option<OsString>,
    /// The program's or script's real path, when it could be resolved.
    path: Option<PathBuf>,
    args: Vec<String>,
}

impl JobForm {
    fn of(argv: &[String], cwd: Option<&Path>, resolve: Resolve) -> JobForm {
        let name = |s: &str| Path::new(s).file_name().map(|n| n.to_os_string());
        // A script path is looked up as the interpreter does: relative to the working
        // directory (never PATH).
        let in_cwd = |s: &str| {
            let path = Path::new(s);
            let full = match cwd {
                _ if path.is_absolute() => path.to_path_buf(),
                Some(cwd) => cwd.join(path),
                None => return None,
            };
            std::fs::canonicalize(full).ok()
        };
        if let Some(script) = script_index(argv) {
            return JobForm {
                file_name: name(&argv[script]),
                path: in_cwd(&argv[script]),
                args: argv[script + 1..].to_vec(),
            };
        }
        let program = &argv[0];
        let path = match resolve {
            _ if interpreter(program).is_some() => None,
            Resolve::Ours if program.contains('/') => in_cwd(program),
            Resolve::Ours => which(program),
            Resolve::Theirs(pid) => std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
            #[cfg(test)]
            Resolve::Nowhere => None,
        };
        JobForm {
            file_name: name(program),
            path,
            args: argv[1..].to_vec(),
        }
    }

    /// The same file name and arguments, and the same real path where both are known.
    fn matches(&self, other: &JobForm) -> bool {
        self.file_name == other.file_name
            && self.args == other.args
            && match (&self.path, &other.path) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
}

/// The interpreters whose first non-option argument is a script file.
#[derive(Clone, Copy, PartialEq)]
enum Interpreter {
    Shell,
    Python,
    Perl,
    Node,
    Ruby,
    Php,
    Lua,
}

/// `python3.11` → Python: the file name without its version suffix.
fn interpreter(program: &str) -> Option<Interpreter> {
    let name = Path::new(program).file_name()?.to_str()?;
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    Some(match base {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "yash" | "busybox" => {
            Interpreter::Shell
        }
        "python" | "pypy" => Interpreter::Python,
        "perl" => Interpreter::Perl,
        "node" | "nodejs" => Interpreter::Node,
        "ruby" => Interpreter::Ruby,
        "php" => Interpreter::Php,
        "lua" | "luajit" => Interpreter::Lua,
        _ => return None,
    })
}

/// Where the script is in an interpreter's argv: after the interpreter's options. `None`
/// when argv[0] is no interpreter, or it runs code given inline (`sh -c`, `python3 -m`,
/// `perl -e`) or from stdin.
fn script_index(argv: &[String]) -> Option<usize> {
    let kind = interpreter(&argv[0])?;
    // busybox runs the applet named next: `busybox sh script.sh`.
    let first = match Path::new(&argv[0]).file_name()?.to_str()? {
        "busybox" => 2,
        _ => 1,
    };
    let mut i = first;
    while let Some(arg) = argv.get(i) {
        if arg == "--" {
            return (i + 1 < argv.len()).then_some(i + 1);
        }
        if arg == "-"
            || !(arg.starts_with('-') || (kind == Interpreter::Shell && arg.starts_with('+')))
        {
            return (arg != "-").then_some(i);
        }
        let inline_code = match kind {
            // A short cluster with `c` (`-c`, `-ec`) or `s` (read stdin).
            Interpreter::Shell => !arg.starts_with("--") && arg[1..].contains(['c', 's']),
            Interpreter::Python => arg.starts_with("-c") || arg.starts_with("-m"),
            Interpreter::Perl => arg.starts_with("-e") || arg.starts_with("-E"),
            Interpreter::Node => {
                matches!(arg.as_str(), "-e" | "-p" | "--eval" | "--print")
            }
            Interpreter::Ruby | Interpreter::Lua => arg.starts_with("-e"),
            Interpreter::Php => arg == "-r",
        };
        if inline_code {
            return None;
        }
        // Options whose value is the next argument.
        let takes_value = match kind {
            Interpreter::Shell => matches!(arg.as_str(), "-o" | "+o" | "-O" | "+O"),
            Interpreter::Python => matches!(arg.as_str(), "-W" | "-X"),
            Interpreter::Node => matches!(
                arg.as_str(),
                "-r" | "--require" | "--import" | "--loader" | "--experimental-loader"
            ),
            Interpreter::Ruby => matches!(arg.as_str(), "-I" | "-r"),
            Interpreter::Perl => matches!(arg.as_str(), "-I" | "-M"),
            Interpreter::Php => matches!(arg.as_str(), "-c" | "-d" | "-f"),
            Interpreter::Lua => matches!(arg.as_str(), "-l"),
        };
        // `php -f script.php`: the value is the script.
        if kind == Interpreter::Php && arg == "-f" {
            return (i + 1 < argv.len()).then_some(i + 1);
        }
        i += if takes_value { 2 } else { 1 };
    }
    None
}

/// Boot time plus the process's start in clock ticks (field 22 of /proc/<pid>/stat).
fn start_time(pid: u32) -> Option<DateTime<Utc>> {
    let ticks: i64 = stat_field(pid, 22)?.parse().ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())?;
    let micros = boot * 1_000_000 + ticks * 1_000_000 / ticks_per_second();
    DateTime::from_timestamp_micros(micros)
}

pub fn ticks_per_second() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    i64::from(u16::try_from(per_second).unwrap_or(100)).max(1)
}

/// "pid 4242, started 2026-11-26T22:01:05Z (3h 2m ago): /opt/jobs/nightly.sh"
pub fn report_line(process: &StrayProcess, now: DateTime<Utc>) -> String {
    let age = (now - process.started_at).to_std().unwrap_or_default();
    let age = humantime::format_duration(std::time::Duration::from_secs(age.as_secs()));
    let why = match &process.watch {
        Some(pattern) => format!(" [matches --watch '{pattern}']"),
        None => String::new(),
    };
    format!(
        "pid {}, started {} ({age} ago): {}{why}",
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

    fn same(a: &[&str], b: &[&str]) -> bool {
        let form = |argv: &[&str]| JobForm::of(&strings(argv), None, Resolve::Nowhere);
        form(a).matches(&form(b))
    }

    #[test]
    fn programs_compare_by_file_name_and_arguments_exactly() {
        let job = ["python3", "etl.py", "--full"];
        assert!(same(&["/usr/bin/python3", "etl.py", "--full"], &job));
        assert!(!same(&["python3", "etl.py"], &job));
        assert!(!same(&["python3", "etl.py", "--fast"], &job));
    }

    #[test]
    fn a_script_matches_whichever_interpreter_runs_it() {
        let job = ["/opt/jobs/nightly.sh", "--all"];
        for seen in [
            &["/bin/bash", "/opt/jobs/nightly.sh", "--all"][..],
            &["sh", "-e", "/opt/jobs/nightly.sh", "--all"],
            &["/usr/bin/dash", "/opt/jobs/nightly.sh", "--all"],
            &[
                "bash",
                "-o",
                "pipefail",
                "--",
                "/opt/jobs/nightly.sh",
                "--all",
            ],
            &["/usr/bin/python3.11", "-u", "/opt/jobs/nightly.sh", "--all"],
            &["perl", "-w", "/opt/jobs/nightly.sh", "--all"],
            &["node", "--require", "x", "/opt/jobs/nightly.sh", "--all"],
            &["ruby", "/opt/jobs/nightly.sh", "--all"],
            &["php", "-f", "/opt/jobs/nightly.sh", "--all"],
            &["zsh", "/opt/jobs/nightly.sh", "--all"],
        ] {
            assert!(same(seen, &job), "{seen:?}");
            assert!(same(&job, seen), "{seen:?}");
        }
        // The reverse: the job given with its interpreter, a copy started directly.
        assert!(same(&["bash", "nightly.sh"], &["/bin/sh", "./nightly.sh"]));
        for other in [
            &["/bin/bash", "/opt/jobs/nightly.sh"][..],
            &["/bin/bash", "/opt/jobs/nightly.sh", "--all", "--again"],
            &["/bin/bash", "/opt/jobs/other.sh", "--all"],
            &["bash", "-c", "/opt/jobs/nightly.sh --all"],
            &["python3", "-m", "nightly.sh", "--all"],
            &["perl", "-e", "1", "/opt/jobs/nightly.sh", "--all"],
            &["vim", "/opt/jobs/nightly.sh", "--all"],
        ] {
            assert!(!same(other, &job), "{other:?}");
        }
    }

    #[test]
    fn a_relative_script_is_found_from_each_process_s_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("job.sh"), "#!/bin/sh\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/job.sh"), "#!/bin/sh\n").unwrap();
        let at = |cwd: &Path, argv: &[&str]| JobForm::of(&strings(argv), Some(cwd), Resolve::Ours);
        let ours = at(dir.path(), &["bash", "job.sh"]);
        assert!(ours.matches(&at(dir.path(), &["/bin/sh", "./job.sh"])));
        let absolute = dir.path().join("job.sh");
        assert!(ours.matches(&at(Path::new("/"), &["sh", absolute.to_str().unwrap()])));
        // Another script of the same name elsewhere is another job.
        assert!(!ours.matches(&at(&dir.path().join("sub"), &["/bin/sh", "./job.sh"])));
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
        let ours = own_lineage();
        // Polled: seen once under load in CI, the scan right after spawn() found nothing; and
        // sh's fork for `sleep` carries sh's argv for the moment before it execs.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = scan(&argv_of_sh, &[], &ours).found;
            if found.len() == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let watch = Watch {
            pattern: marker.clone(),
            regex: Regex::new(&regex::escape(&marker)).unwrap(),
        };
        let watched = scan(&command, std::slice::from_ref(&watch), &ours).found;
        let seen = read_argv(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}; the child's argv: {seen:?}");
        assert_eq!(found[0].pid, child.id());
        assert_eq!(found[0].watch, None);
        assert!(found[0].started_at >= before && found[0].started_at <= Utc::now());
        assert!(found[0].cmdline.ends_with(&marker));
        assert!(scan(&command, &[], &ours).found.is_empty());
        // Not a copy of `sleep 30 <marker>`, but it matches the pattern (so may sh's fork
        // for `sleep`, for the moment before it execs).
        let sh = watched.iter().find(|p| p.pid == child.id());
        assert_eq!(
            sh.and_then(|p| p.watch.as_deref()),
            Some(marker.as_str()),
            "{watched:?}"
        );
    }
}
