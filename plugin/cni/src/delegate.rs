//! Delegation to another plugin (IPAM) found on `CNI_PATH`, as libcni's `invoke` does it: the
//! same environment with `CNI_COMMAND` replaced, the given config on stdin, the result or
//! the error object read from stdout. The delegate's stderr is ours, passed on line by line
//! as it comes, on success as on failure: its warnings reach the runtime's log.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use serde_json::Value;

use crate::{CniError, Command, Env, Result, code};

/// A plugin type names a file in a `CNI_PATH` directory: no path separators, not `.`/`..`.
pub fn validate_type(t: &str) -> Result<()> {
    let ok = !t.is_empty()
        && t.len() <= 255
        && t != "."
        && t != ".."
        && !t.contains('/')
        && !t.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CniError::config(format!("invalid plugin type {t:?}")))
    }
}

/// The first executable file named `plugin_type` in the `CNI_PATH` directories.
pub fn find(env: &Env, plugin_type: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    validate_type(plugin_type)?;
    env.path
        .iter()
        .map(|dir| dir.join(plugin_type))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| {
            CniError::new(
                code::DELEGATE_FAILURE,
                format!("plugin {plugin_type:?} not found in CNI_PATH"),
            )
        })
}

/// How much of a delegate's stderr a failure's details keep (the whole of it is passed on).
const DETAILS_MAX: usize = 2000;
/// The longest piece of a line without its end that is held before it is passed on anyway.
const LINE_MAX: usize = 64 * 1024;

/// Copies `from` to `to` until end of file, each line in one write (so that it never mixes
/// with a record of ours), a line longer than [`LINE_MAX`] in pieces; a last line without
/// its end gets one. Keeps reading when `to` fails (a closed stderr must not block the
/// delegate on a full pipe). Returns the first [`DETAILS_MAX`] bytes, for a failure's details.
pub fn pass_through(from: impl Read, to: &mut dyn Write) -> Vec<u8> {
    let mut from = BufReader::with_capacity(LINE_MAX, from);
    let mut head = Vec::new();
    let mut line = Vec::new();
    let mut writable = true;
    loop {
        let done = match from.fill_buf() {
            Ok([]) => true,
            Ok(buf) => {
                let buf = &buf[..buf.len().min(LINE_MAX - line.len())];
                let (used, end) = match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                line.extend_from_slice(&buf[..used]);
                from.consume(used);
                if !end && line.len() < LINE_MAX {
                    continue;
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => true,
        };
        if done && !line.is_empty() && !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        if !line.is_empty() {
            let room = DETAILS_MAX.saturating_sub(head.len());
            head.extend_from_slice(&line[..room.min(line.len())]);
            writable = writable && to.write_all(&line).and_then(|()| to.flush()).is_ok();
            line.clear();
        }
        if done {
            return head;
        }
    }
}

/// Runs `plugin_type` with `command` and `stdin`. Returns the parsed stdout when it printed
/// something on success (ADD's result), `None` otherwise. Its stderr goes to ours as it comes
/// ([`pass_through`]). A failure keeps the delegate's own code when it is one of the spec's
/// (below 100, e.g. 7 or 50), else becomes code 104; the message names the delegate, the
/// details are its error object's or else the start of its stderr.
pub fn run(env: &Env, plugin_type: &str, command: Command, stdin: &[u8]) -> Result<Option<Value>> {
    let bin = find(env, plugin_type)?;
    let what = format!("{plugin_type} {}", command.as_str());
    let failed = |e: std::io::Error| {
        CniError::new(code::DELEGATE_FAILURE, format!("cannot run {what}: {e}"))
    };
    // Its stderr is drained from the start, whatever it does with its other pipes; the thread
    // exists before the delegate does, so that the delegate never runs with nobody reading.
    let (reader, writer) = std::io::pipe().map_err(failed)?;
    let stderr = std::thread::Builder::new()
        .name("delegate stderr".into())
        .spawn(move || pass_through(reader, &mut std::io::stderr()))
        .map_err(failed)?;
    let child = Process::new(&bin)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(writer)
        .spawn();
    // The command, and our copy of the pipe's write end with it, is gone: the thread ends
    // when the delegate's copies close.
    let out = child.map_err(failed).and_then(|mut child| {
        if let Some(mut pipe) = child.stdin.take() {
            // A delegate that exits without reading is reported by its status, not as EPIPE.
            let _ = pipe.write_all(stdin);
        }
        child
            .wait_with_output()
            .map_err(|e| CniError::new(code::DELEGATE_FAILURE, format!("wait for {what}: {e}")))
    });
    // Joined before anything of ours is logged: the delegate's lines come first.
    let stderr = stderr.join().unwrap_or_default();
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        if stdout.trim().is_empty() {
            return Ok(None);
        }
        return serde_json::from_str(&stdout).map(Some).map_err(|e| {
            CniError::new(code::DELEGATE_FAILURE, format!("{what}: unreadable result"))
                .with_details(format!("{e}: {}", stdout.trim()))
        });
    }
    Err(delegate_error(
        &what,
        &stdout,
        &String::from_utf8_lossy(&stderr),
        out.status.code(),
    ))
}

/// The error a failed delegate becomes, from its stdout (an error object) or its stderr.
pub fn delegate_error(what: &str, stdout: &str, stderr: &str, status: Option<i32>) -> CniError {
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(stdout)
        && let Some(c) = obj.get("code").and_then(Value::as_u64)
    {
        let msg = obj.get("msg").and_then(Value::as_str).unwrap_or("");
        let details = obj.get("details").and_then(Value::as_str).unwrap_or("");
        let own = if c < 100 {
            c as u32
        } else {
            code::DELEGATE_FAILURE
        };
        return CniError::new(own, format!("{what} failed: {msg} (code {c})"))
            .with_details(details);
    }
    let text = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    CniError::new(
        code::DELEGATE_FAILURE,
        format!(
            "{what} failed (exit {})",
            status.map_or("by signal".into(), |s| s.to_string())
        ),
    )
    .with_details(text.chars().take(2000).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_types_cannot_name_paths() {
        for ok in ["host-local", "tombstone-ipam", "a.b"] {
            assert!(validate_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "/bin/sh", "a b", "a\n"] {
            assert_eq!(validate_type(bad).unwrap_err().code, 7, "{bad:?}");
        }
    }

    /// A writer that fails every write after the first `ok`, counting the attempts.
    struct Failing {
        ok: usize,
        attempts: usize,
        writes: Vec<Vec<u8>>,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.attempts += 1;
            if self.writes.len() >= self.ok {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.writes.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stderr_is_passed_on_one_whole_line_per_write() {
        let mut to = Failing {
            ok: usize::MAX,
            attempts: 0,
            writes: Vec::new(),
        };
        let long = "x".repeat(LINE_MAX + 10);
        let input = format!("first\n\nsecond line\n{long}\nlast, unended");
        let head = pass_through(input.as_bytes(), &mut to);
        let writes: Vec<String> = to
            .writes
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(writes[..3], ["first\n", "\n", "second line\n"]);
        // A line longer than LINE_MAX goes in pieces, nothing of it lost.
        assert_eq!(writes[3].len(), LINE_MAX);
        assert_eq!(writes[4], format!("{}\n", "x".repeat(10)));
        assert_eq!(writes[5], "last, unended\n");
        assert_eq!(writes.len(), 6);
        assert_eq!(head.len(), DETAILS_MAX);
        assert!(head.starts_with(b"first\n\nsecond line\nxxx"));
    }

    #[test]
    fn a_failing_stderr_does_not_stop_the_reading() {
        let mut to = Failing {
            ok: 1,
            attempts: 0,
            writes: Vec::new(),
        };
        let input = "one\ntwo\nthree\n".repeat(10_000);
        let mut from = input.as_bytes();
        let head = pass_through(&mut from, &mut to);
        assert!(from.is_empty(), "all of it was read");
        assert_eq!(to.writes, [b"one\n".to_vec()]);
        assert_eq!(to.attempts, 2, "no write tried after the failed one");
        assert!(head.starts_with(b"one\ntwo\nthree\n"));
    }

    #[test]
    fn delegate_errors_keep_spec_codes_and_name_the_delegate() {
        let e = delegate_error(
            "ipam ADD",
            r#"{"cniVersion":"1.1.0","code":103,"msg":"no address left","details":"10.0.0.0/30"}"#,
            "",
            Some(1),
        );
        assert_eq!(e.code, code::DELEGATE_FAILURE);
        assert!(
            e.msg.contains("no address left") && e.msg.contains("103"),
            "{}",
            e.msg
        );
        assert_eq!(e.details, "10.0.0.0/30");
        let e = delegate_error("ipam STATUS", r#"{"code":50,"msg":"full"}"#, "", Some(1));
        assert_eq!(e.code, 50);
        let e = delegate_error("ipam ADD", "", "panic: boom", Some(2));
        assert_eq!(e.code, code::DELEGATE_FAILURE);
        assert_eq!(e.details, "panic: boom");
    }
}
