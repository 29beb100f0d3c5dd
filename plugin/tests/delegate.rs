//! `tombstone-ipvlan` and the IPAM it delegates to, seen from the runtime: the delegate's
//! stderr is on ours, on success as on failure, all of it, and a delegate that writes much
//! there never waits on a full pipe, even when our own stderr is closed. The delegate is a
//! small shell IPAM written by each test in a directory of its own (`CNI_PATH`); the verbs
//! are those that reach IPAM without a pod link: DEL of a pod whose netns is gone, and GC.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tombstone_testkit::{Outcome, wait_until};

const IPVLAN: &str = env!("CARGO_BIN_EXE_tombstone-ipvlan");
const WARNING: &str = "script-ipam: WARN: pool 10.10.0.0/24 is 95% allocated";

/// A `CNI_PATH` directory holding one IPAM, `script-ipam`, whose body is `script` (after it
/// has read its stdin); removed on drop.
struct CniPath(PathBuf);

impl CniPath {
    fn new(script: &str) -> CniPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tombstone-delegate-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let bin = dir.join("script-ipam");
        std::fs::write(&bin, format!("#!/bin/sh\ncat >/dev/null\n{script}\n")).expect("write");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        CniPath(dir)
    }

    /// `tombstone-ipvlan` about to run `verb` with this IPAM, as a runtime runs it.
    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new(IPVLAN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", "delegate-test")
            .env("CNI_NETNS", "/nonexistent/netns/of/delegate-test")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.0)
            .env("TOMBSTONE_LOG", "stderr");
        cmd
    }

    fn run(&self, verb: &str) -> Outcome {
        tombstone_testkit::run(self.command(verb), CONF.as_bytes(), Duration::from_secs(60))
    }
}

impl Drop for CniPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CONF: &str = r#"{"cniVersion":"1.1.0","name":"delegate","type":"tombstone-ipvlan","master":"lo","ipam":{"type":"script-ipam"}}"#;

#[test]
fn a_delegates_warning_on_success_is_on_our_stderr() {
    let path = CniPath::new(&format!("echo '{WARNING}' >&2"));
    for verb in ["DEL", "GC"] {
        let out = path.run(verb);
        out.ok_empty();
        assert!(
            out.stderr.lines().any(|l| l == WARNING),
            "{verb}: the IPAM's warning is lost: {:?}",
            out.stderr
        );
    }
}

#[test]
fn a_failed_delegates_stderr_is_on_our_stderr_and_in_the_details() {
    let path = CniPath::new("echo 'script-ipam: cannot lock its data' >&2; exit 3");
    let out = path.run("DEL");
    let e = out.err(104);
    assert!(
        e["details"]
            .as_str()
            .unwrap()
            .contains("script-ipam: cannot lock its data"),
        "{e}"
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l == "script-ipam: cannot lock its data"),
        "{:?}",
        out.stderr
    );
}

/// Far more than a pipe holds (64 KiB): 20 000 numbered lines, then the warning.
const FLOOD: &str = "i=0; while [ $i -lt 20000 ]; do echo \"script-ipam: line $i\" >&2; \
                     i=$((i+1)); done; echo 'script-ipam: last line' >&2";

#[test]
fn a_delegate_that_floods_stderr_loses_no_line() {
    let path = CniPath::new(FLOOD);
    let out = path.run("DEL");
    out.ok_empty();
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("script-ipam: "))
        .collect();
    assert_eq!(
        lines.len(),
        20_001,
        "{}",
        &out.stderr[..out.stderr.len().min(500)]
    );
    for (i, l) in lines[..20_000].iter().enumerate() {
        assert_eq!(*l, format!("script-ipam: line {i}"));
    }
    assert_eq!(lines[20_000], "script-ipam: last line");
}

#[test]
fn a_delegate_that_floods_a_closed_stderr_does_not_block() {
    let path = CniPath::new(FLOOD);
    // Our stderr is a pipe nobody reads any more: every write of ours fails (EPIPE).
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = path
        .command("DEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(writer)
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(CONF.as_bytes()).unwrap();
    }
    let status = wait_until(&mut child, Instant::now() + Duration::from_secs(60)).expect("wait");
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("DEL is blocked on the delegate's stderr");
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "{status:?}: {stdout}");
    assert_eq!(stdout, "");
}
