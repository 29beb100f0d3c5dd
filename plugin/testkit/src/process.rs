//! A program run as a runtime runs a plugin: exactly the environment it is given, its stdin
//! written, stdout and stderr read while it runs (no pipe can fill), and a timeout that kills
//! it and fails the test. One polling wait for every test that watches a child.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code, -1 when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// stdout as one JSON value; the test fails when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {:?}", self.stdout))
    }

    /// stdout as JSON, or `null` when it is empty.
    pub fn json_or_null(&self) -> Value {
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts success and an empty stdout (DEL, CHECK, GC, STATUS).
    pub fn ok_empty(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "stdout {} stderr {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "", "nothing but a result belongs on stdout");
        self
    }

    /// Asserts a failure with one CNI error object of `code` on stdout.
    pub fn err(&self, code: u64) -> Value {
        assert_ne!(self.code, 0, "expected failure, stdout {}", self.stdout);
        let v = self.json();
        assert_eq!(v["code"].as_u64(), Some(code), "{v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(v["cniVersion"].is_string(), "{v}");
        v
    }
}

/// Waits for `child` until `deadline`, polling briefly at first (most plugin runs take a
/// millisecond or two). `None`: still running at the deadline (the caller decides its fate).
pub fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut nap = Duration::from_micros(100);
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(5));
    }
}

/// Runs `cmd` with `stdin`; a run longer than `timeout` is killed and fails the test.
pub fn run(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Outcome {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    {
        let mut input = child.stdin.take().expect("piped stdin");
        // A plugin that exits before reading all of its stdin is not a test failure here.
        let _ = input.write_all(stdin);
    }
    let status = wait_until(&mut child, Instant::now() + timeout).expect("wait");
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {} s", timeout.as_secs());
    };
    Outcome {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// `args` run to completion, asserting success, returning stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` every 100 ms for up to `secs` seconds.
pub fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_feeds_stdin_and_reads_both_streams() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo oops >&2; exit 3"]);
        let o = run(cmd, b"{\"a\":1}", Duration::from_secs(10));
        assert_eq!(o.code, 3);
        assert_eq!(o.json()["a"], 1);
        assert_eq!(o.stderr, "oops\n");
    }

    #[test]
    fn wait_until_gives_up_at_the_deadline() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let t0 = Instant::now();
        let r = wait_until(&mut child, t0 + Duration::from_millis(100)).unwrap();
        assert!(r.is_none());
        assert!(t0.elapsed() < Duration::from_secs(2));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    #[should_panic(expected = "did not finish within 0 s")]
    fn run_kills_and_fails_on_timeout() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        run(cmd, b"", Duration::from_millis(200));
    }
}
