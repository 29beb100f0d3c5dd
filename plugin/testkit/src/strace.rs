//! Fault injection against the real kernel with `strace`: a plugin operation is first run
//! under `strace -f -o FILE` to count its calls of each syscall, then once per syscall and
//! call index with that one call failing (`-e inject=SC:error=ERRNO:when=N`), and every run is
//! judged: a proper failure (one error answer, non-zero exit) or a true success, a state that
//! is still consistent, and a clean retry that heals.
//!
//! Shared by the `tombstone` and `tombstone-ipam` fault tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// SIGKILL to the whole process group `pgid` (the traced plugin and strace).
fn kill_group(pgid: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Each syscall a plugin makes to the kernel or the filesystem that is injected, with a
/// realistic errno for it. Syscalls the processes do not make are simply never injected
/// (the counting run decides); names unknown on an architecture are ignored (`?`).
///
/// Nothing is skipped for happening before stdin is read: the only such calls of ours are
/// the runtime's start-up read of `/proc/self/maps` (`openat`, `newfstatat`, `read`: the
/// stack guard's bounds), and a binary must still do its job when that fails.
pub const SYSCALLS: &[(&str, &str)] = &[
    // Netlink (and the syslog socket, tried before logging falls back to stderr).
    ("socket", "EMFILE"),
    ("bind", "EADDRINUSE"),
    ("getsockname", "ENOBUFS"),
    ("setsockopt", "ENOMEM"),
    ("sendto", "ENOBUFS"),
    ("sendmsg", "ENOBUFS"),
    ("recvfrom", "ENOBUFS"),
    ("recvmsg", "ENOBUFS"),
    // Files.
    ("open", "EACCES"),
    ("openat", "EACCES"),
    ("read", "EIO"),
    ("write", "ENOSPC"),
    ("lseek", "EIO"),
    ("rename", "EIO"),
    ("renameat", "EIO"),
    ("renameat2", "EIO"),
    ("fdatasync", "EIO"),
    ("fsync", "EIO"),
    ("flock", "EINTR"),
    ("unlink", "EIO"),
    ("unlinkat", "EIO"),
    ("symlink", "ENOSPC"),
    ("symlinkat", "ENOSPC"),
    ("readlink", "EIO"),
    ("readlinkat", "EIO"),
    ("mkdir", "ENOSPC"),
    ("mkdirat", "ENOSPC"),
    ("fstat", "EIO"),
    ("newfstatat", "EIO"),
    ("statx", "EIO"),
    ("getdents64", "EIO"),
    ("fchmod", "EPERM"),
    ("ftruncate", "EIO"),
];

/// At most this many call indices of one syscall are injected per operation: all of them up
/// to the bound; beyond it the first `CAP - 8` and the last 8 (the start-up and the final
/// writes are where state changes; the middle of a long run repeats the same calls).
pub const CAP: usize = 48;

/// One run may take this long before it counts as a hang.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// Fails (never skips) when a prerequisite is missing: root when `root`, and `strace`.
pub fn require(root: bool) {
    if root {
        crate::require_root();
    }
    let ok = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "this test needs strace (Debian package `strace`; `make deps` installs it)"
    );
}

/// A process to run as a runtime runs a plugin: program, arguments, environment (the only
/// variables it gets, besides `PATH`), stdin, optionally inside a network namespace.
#[derive(Debug, Clone, Default)]
pub struct Cmd {
    pub netns: Option<String>,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Cmd {
        Cmd {
            program: program.into(),
            ..Cmd::default()
        }
    }
    pub fn netns(mut self, ns: &str) -> Cmd {
        self.netns = Some(ns.to_string());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn args(mut self, args: &[&str]) -> Cmd {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = bytes.into();
        self
    }
}

/// One injected failure: the `when`-th call (from 1) of `syscall` fails with `errno`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub syscall: &'static str,
    pub errno: &'static str,
    pub when: usize,
}

pub enum Trace<'a> {
    Off,
    /// Every syscall written to this file.
    Record(&'a Path),
    Inject(&'a Fault),
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit status, `None` when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    pub fn summary(&self) -> String {
        format!(
            "exit {:?} signal {:?}{} stdout {:?} stderr {:?}",
            self.code,
            self.signal,
            if self.timed_out { " TIMED OUT" } else { "" },
            clip(&self.stdout, 300),
            clip(self.stderr.trim_end(), 300)
        )
    }
}

pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// Runs `cmd` (under strace when `trace` says so), killing its process group after
/// [`RUN_TIMEOUT`].
pub fn run(cmd: &Cmd, trace: Trace<'_>) -> Run {
    let mut argv: Vec<String> = Vec::new();
    if let Some(ns) = &cmd.netns {
        argv.extend(["ip", "netns", "exec", ns].map(String::from));
    }
    match trace {
        Trace::Off => {}
        Trace::Record(file) => {
            argv.extend(["strace", "-f", "-qq", "-o"].map(String::from));
            argv.push(file.display().to_string());
        }
        Trace::Inject(f) => {
            argv.extend(["strace", "-f", "-qq", "-o", "/dev/null", "-e"].map(String::from));
            argv.push(format!("trace={}", f.syscall));
            argv.push("-e".into());
            argv.push(format!(
                "inject={}:error={}:when={}",
                f.syscall, f.errno, f.when
            ));
        }
    }
    argv.push(cmd.program.display().to_string());
    argv.extend(cmd.args.iter().cloned());
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().unwrap();
    let input = cmd.stdin.clone();
    // A process that fails before reading stdin closes it: a write error is no concern here.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut timed_out = false;
    let status = match crate::wait_until(&mut child, deadline).expect("wait") {
        Some(s) => s,
        None => {
            timed_out = true;
            kill_group(pid);
            child.wait().expect("wait")
        }
    };
    if timed_out {
        // Whatever the process group left behind (the tracee) goes too.
        kill_group(pid);
    }
    let _ = feeder.join();
    Run {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `cmd` under `strace -f -o` and returns the run and every syscall line, in order.
pub fn record(cmd: &Cmd, scratch: &Path) -> (Run, Vec<(String, String)>) {
    let file = scratch.join(format!("trace-{}", std::process::id()));
    let r = run(cmd, Trace::Record(&file));
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    let mut calls = Vec::new();
    for line in text.lines() {
        // "<pid> <name>(<args>) = <ret>"; resumed halves and signal lines are not calls.
        let rest = line.split_once(' ').map_or(line, |(_, r)| r).trim_start();
        let Some(name) = rest.split('(').next() else {
            continue;
        };
        if name.is_empty()
            || rest.len() == name.len()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        calls.push((name.to_string(), rest.to_string()));
    }
    (r, calls)
}

/// The calls of a trace (as [`record`] returns them) where an injected failure means
/// nothing: reads and writes of an eventfd, the async runtime's wake-up counter (a write
/// there can only fail when the 64-bit counter would overflow; tokio then panics by design).
/// Their index in the trace's list.
pub fn meaningless(calls: &[(String, String)]) -> Vec<usize> {
    let mut eventfds: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (i, (name, line)) in calls.iter().enumerate() {
        let fd = line
            .split_once('(')
            .and_then(|(_, a)| a.split([',', ')']).next())
            .unwrap_or("")
            .trim()
            .to_string();
        let ret = line.rsplit_once(" = ").map(|(_, r)| r.trim().to_string());
        match name.as_str() {
            "eventfd2" | "eventfd" => eventfds.extend(ret),
            "close" => eventfds.retain(|f| *f != fd),
            "read" | "write" if eventfds.contains(&fd) => out.push(i),
            _ => {}
        }
    }
    out
}

/// The call indices of a syscall made `n` times that are injected (see [`CAP`]).
pub fn indices(n: usize) -> Vec<usize> {
    if n <= CAP {
        (1..=n).collect()
    } else {
        (1..=CAP - 8).chain(n - 7..=n).collect()
    }
}

/// What a plugin process answers with when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A CNI plugin: one error object `{cniVersion, code, msg, ...}` on stdout.
    Cni,
    /// A subcommand: nothing on stdout, a message on stderr.
    Cli,
}

/// Checks a failed run's answer: non-zero exit with the proper error form.
pub fn check_error(answer: Answer, r: &Run) -> Result<(), String> {
    if r.stderr.contains("panicked at") {
        return Err("panicked".into());
    }
    match answer {
        Answer::Cni => {
            let v: Value = serde_json::from_str(&r.stdout)
                .map_err(|e| format!("stdout is not one JSON object ({e})"))?;
            let code = v["code"]
                .as_u64()
                .ok_or("error object without an integer code")?;
            if v["msg"].as_str().is_none_or(|m| m.is_empty()) {
                return Err("error object without a msg".into());
            }
            if !v["cniVersion"].is_string() {
                return Err("error object without a cniVersion".into());
            }
            if code == 999 {
                return Err("internal error (code 999: a caught panic)".into());
            }
            Ok(())
        }
        Answer::Cli => {
            if !r.stdout.is_empty() {
                return Err("a failed subcommand printed on stdout".into());
            }
            if r.stderr.trim().is_empty() {
                return Err("a failed subcommand said nothing on stderr".into());
            }
            Ok(())
        }
    }
}

/// Something counted in a state after a run (e.g. 3 "stranded routes"); a `fatal` one
/// fails the test and marks the run `I`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub name: &'static str,
    pub n: usize,
    pub detail: String,
    pub fatal: bool,
}

pub type Problems = Vec<Problem>;

pub fn problem(name: &'static str, n: usize, detail: impl Into<String>, fatal: bool) -> Problem {
    Problem {
        name,
        n,
        detail: detail.into(),
        fatal,
    }
}

/// One operation under test, run in a worker's context `C` (a namespace, a directory).
pub trait Op<C>: Sync {
    fn name(&self) -> String;
    /// Puts the context in the operation's starting state (the same every time).
    fn setup(&self, c: &C);
    /// The process under test.
    fn cmd(&self, c: &C) -> Cmd;
    fn answer(&self) -> Answer {
        Answer::Cni
    }
    /// After an exit 0: whether the state (and stdout) is really the success state.
    fn success(&self, c: &C, r: &Run) -> Result<(), String>;
    /// After any run: what is inconsistent (stranded, lost, doubled...). Counters with
    /// names listed by the test as fatal fail it.
    fn problems(&self, c: &C) -> Problems;
    /// The clean retry a runtime would make after `r` (without injection); it must reach
    /// the success state and leave no temporary or stray files.
    fn heal(&self, c: &C, r: &Run) -> Result<(), String>;
}

/// The verdict of one injection.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub letter: char,
    pub notes: Vec<String>,
    pub problems: Problems,
}

/// Runs one injection: setup, the injected run, the checks, the retry.
pub fn judge<C>(op: &dyn Op<C>, c: &C, f: &Fault) -> Verdict {
    op.setup(c);
    let r = run(&op.cmd(c), Trace::Inject(f));
    let mut notes = Vec::new();
    let mut letter = if r.timed_out {
        notes.push("hang: killed after the timeout".into());
        'X'
    } else if r.signal.is_some() {
        notes.push(format!("killed by signal {:?}", r.signal));
        'X'
    } else if r.ok() {
        match op.success(c, &r) {
            Ok(()) => 'S',
            Err(why) => {
                notes.push(format!("exit 0 but {why}"));
                'F'
            }
        }
    } else {
        match check_error(op.answer(), &r) {
            Ok(()) => 'E',
            Err(why) => {
                notes.push(format!("exit {:?}: {why}", r.code));
                'X'
            }
        }
    };
    if letter == 'E' {
        let msg = serde_json::from_str::<Value>(&r.stdout)
            .ok()
            .and_then(|v| v["msg"].as_str().map(str::to_string))
            .unwrap_or_else(|| clip(r.stderr.trim().lines().last().unwrap_or(""), 160));
        notes.push(format!("error: {msg}"));
    }
    let problems: Problems = op.problems(c).into_iter().filter(|p| p.n > 0).collect();
    if problems.iter().any(|p| p.fatal) && matches!(letter, 'E' | 'S') {
        letter = 'I';
    }
    for p in &problems {
        notes.push(format!("after the run: {} {} ({})", p.n, p.name, p.detail));
    }
    if let Err(why) = op.heal(c, &r) {
        if matches!(letter, 'E' | 'S') {
            letter = 'H';
        }
        notes.push(format!("retry did not heal: {why}"));
    }
    if letter != 'E' && letter != 'S' {
        notes.push(format!("the injected run: {}", r.summary()));
    }
    Verdict {
        letter,
        notes,
        problems,
    }
}

struct Job {
    op: usize,
    fault: Fault,
    /// The call as the counting run traced it.
    call: String,
    /// Not injected: see [`meaningless`].
    skip: bool,
}

/// The outcome of a whole matrix.
pub struct Report {
    pub text: String,
    pub counts: BTreeMap<String, usize>,
    /// The names of the fatal problems found.
    pub fatal: BTreeSet<&'static str>,
    pub elapsed: Duration,
}

/// The verdicts that fail a test, as [`Report::counts`] names them.
const FAILING: [&str; 4] = [
    "false successes",
    "panics, hangs or garbage",
    "inconsistent states (after an honest answer)",
    "retries that did not heal",
];

impl Report {
    pub fn count(&self, k: &str) -> usize {
        self.counts.get(k).copied().unwrap_or(0)
    }

    /// What fails the test (the failing verdicts, then the fatal problems), with its count.
    pub fn failing(&self) -> Vec<String> {
        FAILING
            .iter()
            .chain(&self.fatal)
            .filter(|k| self.count(k) > 0)
            .map(|k| format!("{k} {}", self.count(k)))
            .collect()
    }

    /// Fails the test, `totals` first, when anything does ([`Report::failing`]).
    pub fn assert_clean(&self, totals: &str) {
        let failing = self.failing();
        assert!(failing.is_empty(), "{totals}\n{}", failing.join(", "));
    }
}

/// [`run_matrix`] of `ops` with [`workers`] workers and the system's temporary directory
/// for the counting runs; the matrix is printed.
pub fn run_all<C, O: Op<C>>(ops: &[O], ctx: impl Fn(usize) -> C + Sync) -> Report {
    let ops: Vec<&dyn Op<C>> = ops.iter().map(|o| o as &dyn Op<C>).collect();
    let report = run_matrix(&ops, ctx, workers(), &std::env::temp_dir());
    println!("{}", report.text);
    report
}

/// What every [`Op::heal`] checks of the retry `r`: it succeeded, in the success state.
pub fn retried<C>(op: &(impl Op<C> + ?Sized), c: &C, r: &Run) -> Result<(), String> {
    if !r.ok() {
        return Err(format!("the retry failed: {}", r.summary()));
    }
    op.success(c, r)
}

/// After a retry: no file of `stray` is left in `place` ("the state directory").
pub fn no_strays(stray: &[String], place: &str) -> Result<(), String> {
    if stray.is_empty() {
        Ok(())
    } else {
        Err(format!("files left in {place}: {stray:?}"))
    }
}

/// Counts, injects and judges every operation, `workers` injections at a time (each worker
/// with its own context from `ctx`). Returns the printed matrix and the totals.
pub fn run_matrix<C>(
    ops: &[&dyn Op<C>],
    ctx: impl Fn(usize) -> C + Sync,
    workers: usize,
    scratch: &Path,
) -> Report {
    let start = Instant::now();
    let mut text = String::new();
    let mut jobs = Vec::new();
    let mut not_injected: Vec<String> = Vec::new();
    {
        let c = ctx(0);
        for (i, op) in ops.iter().enumerate() {
            op.setup(&c);
            let (r, calls) = record(&op.cmd(&c), scratch);
            assert!(
                r.ok() && op.success(&c, &r).is_ok(),
                "{}: the run without injection must succeed: {} / {:?}",
                op.name(),
                r.summary(),
                op.success(&c, &r)
            );
            let problems: Problems = op.problems(&c).into_iter().filter(|p| p.n > 0).collect();
            assert!(problems.is_empty(), "{}: {problems:?}", op.name());
            let skip = meaningless(&calls);
            let mut by_name: BTreeMap<&str, Vec<(&str, bool)>> = BTreeMap::new();
            for (k, (name, line)) in calls.iter().enumerate() {
                by_name
                    .entry(name)
                    .or_default()
                    .push((line, skip.contains(&k)));
            }
            for &(sc, errno) in SYSCALLS {
                let Some(lines) = by_name.get(sc) else {
                    continue;
                };
                for when in indices(lines.len()) {
                    let (line, skip) = lines[when - 1];
                    jobs.push(Job {
                        op: i,
                        fault: Fault {
                            syscall: sc,
                            errno,
                            when,
                        },
                        call: clip(line, 160),
                        skip,
                    });
                }
            }
            let others: Vec<String> = by_name
                .iter()
                .filter(|(n, _)| !SYSCALLS.iter().any(|(s, _)| s == *n))
                .map(|(n, l)| format!("{n} {}", l.len()))
                .collect();
            not_injected.push(others.join(", "));
        }
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Verdict)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..workers.max(1) {
            let (jobs, next, results, ctx) = (&jobs, &next, &results, &ctx);
            s.spawn(move || {
                let c = ctx(w + 1);
                loop {
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(j) else { break };
                    let v = if job.skip {
                        Verdict {
                            letter: '.',
                            notes: vec![],
                            problems: vec![],
                        }
                    } else {
                        judge(ops[job.op], &c, &job.fault)
                    };
                    results.lock().unwrap().push((j, v));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(j, _)| *j);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut fatal = BTreeSet::new();
    for (i, op) in ops.iter().enumerate() {
        let mine: Vec<(&Job, &Verdict)> = results
            .iter()
            .map(|(j, v)| (&jobs[*j], v))
            .filter(|(j, _)| j.op == i)
            .collect();
        let _ = writeln!(
            text,
            "\n== {} ({} injections; S true success, E error answer, F FALSE SUCCESS, \
             X panic/hang/garbage, I inconsistent state, H retry did not heal, \
             . not injected: an eventfd)",
            op.name(),
            mine.iter().filter(|(j, _)| !j.skip).count()
        );
        let mut rows: Vec<(&str, &str, String)> = Vec::new();
        for (j, v) in &mine {
            match rows.last_mut() {
                Some(r) if r.0 == j.fault.syscall => r.2.push(v.letter),
                _ => rows.push((j.fault.syscall, j.fault.errno, v.letter.to_string())),
            }
        }
        for (sc, errno, letters) in rows {
            let grouped: Vec<String> = letters
                .as_bytes()
                .chunks(10)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            let _ = writeln!(
                text,
                "  {sc:<12} {errno:<10} {:>3}  {}",
                letters.len(),
                grouped.join(" ")
            );
        }
        let _ = writeln!(
            text,
            "  not injected (not kernel or file state): {}",
            not_injected[i]
        );
        let mut per_op: BTreeMap<char, usize> = BTreeMap::new();
        for (j, v) in mine.iter().filter(|(j, _)| !j.skip) {
            *per_op.entry(v.letter).or_default() += 1;
            for p in &v.problems {
                *counts.entry(p.name.to_string()).or_default() += p.n;
                if p.fatal {
                    fatal.insert(p.name);
                }
            }
            if !matches!(v.letter, 'S' | 'E') || !v.problems.is_empty() {
                let _ = writeln!(
                    text,
                    "  {} {}#{} ({}) on: {}",
                    v.letter, j.fault.syscall, j.fault.when, j.fault.errno, j.call
                );
                for n in &v.notes {
                    let _ = writeln!(text, "      {n}");
                }
            }
        }
        let _ = writeln!(
            text,
            "  {}: {}",
            op.name(),
            per_op
                .iter()
                .map(|(l, n)| format!("{l} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (l, n) in per_op {
            let key = match l {
                'S' => "true successes",
                'E' => "error answers",
                'F' => "false successes",
                'X' => "panics, hangs or garbage",
                'I' => "inconsistent states (after an honest answer)",
                'H' => "retries that did not heal",
                _ => "other",
            };
            *counts.entry(key.to_string()).or_default() += n;
        }
    }
    let tried = results.iter().filter(|(j, _)| !jobs[*j].skip).count();
    counts.insert("injections tried".into(), tried);
    Report {
        text,
        counts,
        fatal,
        elapsed: start.elapsed(),
    }
}

/// The files of a directory whose names are not in `allowed` (temporary files, leftovers).
pub fn stray_files(dir: &Path, allowed: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !allowed.contains(&n.as_str()))
        .collect();
    out.sort();
    out
}

/// How many injections run at once: `FAULT_WORKERS`, else 4 (the runs mostly wait on the
/// kernel and on process start-up).
pub fn workers() -> usize {
    std::env::var("FAULT_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(counts: &[(&str, usize)], fatal: &[&'static str]) -> Report {
        Report {
            text: String::new(),
            counts: counts.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            fatal: fatal.iter().copied().collect(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn failing_names_the_failing_verdicts_and_the_fatal_problems_found() {
        let r = report(
            &[
                ("injections tried", 9),
                ("error answers", 4),
                ("false successes", 1),
                ("retries that did not heal", 0),
                ("stranded routes", 2),
                ("entries left without their route", 3),
            ],
            &["stranded routes"],
        );
        assert_eq!(r.failing(), ["false successes 1", "stranded routes 2"]);
        assert!(report(&[("error answers", 4)], &[]).failing().is_empty());
    }

    #[test]
    #[should_panic(expected = "TOTALS x\npanics, hangs or garbage 1")]
    fn assert_clean_fails_with_the_totals() {
        report(&[("panics, hangs or garbage", 1)], &[]).assert_clean("TOTALS x");
    }
}
