//! The start-up of the binaries, seen in their syscalls (`strace`) and through what std's
//! runtime set-up used to give them: a call that logs nothing looks for no syslog socket, a
//! line logged to stderr leaves in one `write`, the main thread's stack guard is not looked up
//! in `/proc/self/maps`; a closed stdout is an error answer, not a death by `SIGPIPE`; a closed
//! stdin is `/dev/null`, not a descriptor for the next file opened.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::strace::{self, Cmd};

const IPVLAN: &str = env!("CARGO_BIN_EXE_tombstone-ipvlan");
const VERSION_IN: &str = r#"{"cniVersion":"1.0.0"}"#;

/// A DEL of `tombstone-ipvlan` whose pod netns is gone: it succeeds, and its only record is a
/// debug line.
fn ipvlan_del(log_level: &str) -> Cmd {
    Cmd::new(IPVLAN)
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", "startup-test")
        .env("CNI_NETNS", "/nonexistent/netns/of/startup-test")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/nonexistent")
        .stdin(format!(
            r#"{{"cniVersion":"1.0.0","name":"startup","type":"ipvlan","master":"eth0","logLevel":"{log_level}"}}"#
        ))
}

fn version(bin: &str) -> Cmd {
    Cmd::new(bin)
        .env("CNI_COMMAND", "VERSION")
        .stdin(VERSION_IN)
}

/// Runs `cmd` under strace, its trace in a directory of its own (tests run in parallel).
fn record(cmd: &Cmd) -> (strace::Run, Vec<(String, String)>) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tombstone-startup-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let out = strace::record(cmd, &dir);
    std::fs::remove_dir_all(&dir).expect("remove scratch dir");
    out
}

/// Runs `cmd` under strace; it must succeed. Returns its stderr and its calls.
fn traced(cmd: &Cmd) -> (String, Vec<(String, String)>) {
    let (run, calls) = record(cmd);
    assert!(run.ok(), "{}", run.summary());
    assert!(!calls.is_empty(), "strace recorded nothing");
    (run.stderr, calls)
}

fn unix_sockets(calls: &[(String, String)]) -> Vec<&str> {
    calls
        .iter()
        .filter(|(name, line)| (name == "socket" && line.contains("AF_UNIX")) || name == "connect")
        .map(|(_, line)| line.as_str())
        .collect()
}

#[test]
#[ignore = "needs strace"]
fn a_call_that_logs_nothing_looks_for_no_syslog_socket() {
    strace::require(false);
    for cmd in [version(common::BIN), version(IPVLAN), ipvlan_del("info")] {
        let (stderr, calls) = traced(&cmd);
        assert_eq!(stderr, "", "{cmd:?} logged");
        let sockets = unix_sockets(&calls);
        assert!(
            sockets.is_empty(),
            "{cmd:?} looked for syslog: {sockets:#?}"
        );
    }
}

#[test]
#[ignore = "needs strace"]
fn a_line_logged_to_stderr_is_one_write() {
    strace::require(false);
    let (stderr, calls) = traced(&ipvlan_del("debug").env("TOMBSTONE_LOG", "stderr"));
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].contains(": DEBUG: DEL: the netns is gone"),
        "{stderr:?}"
    );
    let writes: Vec<&str> = calls
        .iter()
        .filter(|(name, line)| name == "write" && line.starts_with("write(2,"))
        .map(|(_, line)| line.as_str())
        .collect();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let sockets = unix_sockets(&calls);
    assert!(
        sockets.is_empty(),
        "TOMBSTONE_LOG=stderr, yet: {sockets:#?}"
    );
}

#[test]
#[ignore = "needs strace"]
fn syslog_is_looked_for_once_for_many_records() {
    strace::require(false);
    // Records: the debug line of the gone netns, then the error of the IPAM that cannot run.
    let mut cmd = ipvlan_del("debug");
    cmd.stdin = br#"{"cniVersion":"1.0.0","name":"startup","type":"ipvlan","master":"eth0","logLevel":"debug","ipam":{"type":"no-such-ipam"}}"#.to_vec();
    let (run, calls) = record(&cmd);
    assert_ne!(run.code, Some(0), "the IPAM cannot run: {}", run.summary());
    let connects: Vec<&str> = unix_sockets(&calls)
        .into_iter()
        .filter(|l| l.starts_with("connect("))
        .collect();
    assert!(!connects.is_empty(), "no syslog socket looked for");
    let mut paths = connects.clone();
    paths.sort();
    paths.dedup();
    assert_eq!(
        paths.len(),
        connects.len(),
        "a socket tried twice: {connects:#?}"
    );
    // Without a syslog socket the records are on stderr: all of them, from one probe.
    let lines = run.stderr.lines().count();
    assert!(
        run.stderr.is_empty() || lines >= 2,
        "expected both records: {:?}",
        run.stderr
    );
}

#[test]
#[ignore = "needs strace"]
fn the_stack_guard_is_not_looked_up() {
    strace::require(false);
    for bin in [common::BIN, IPVLAN] {
        let (_, calls) = traced(&version(bin));
        let maps: Vec<&str> = calls
            .iter()
            .filter(|(_, line)| line.contains("/proc/self/maps"))
            .map(|(_, line)| line.as_str())
            .collect();
        assert!(maps.is_empty(), "{bin}: {maps:#?}");
    }
}

#[test]
fn a_closed_stdout_is_an_error_exit_not_sigpipe() {
    for bin in [common::BIN, IPVLAN] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut child = Command::new(bin)
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .env("TOMBSTONE_LOG", "stderr")
            .stdin(Stdio::piped())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(VERSION_IN.as_bytes()).unwrap();
        }
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{bin}: {status:?} {stderr}");
        assert!(
            stderr.contains("cannot write the answer to stdout"),
            "{bin}: {stderr}"
        );
    }
}

#[test]
fn a_closed_stdin_reads_as_empty() {
    for bin in [common::BIN, IPVLAN] {
        // The shell closes fd 0 and execs the binary: VERSION with an empty config.
        let out = Command::new("sh")
            .args(["-c", r#"exec "$0" <&-"#, bin])
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("supportedVersions"),
            "{bin}: {:?} {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
