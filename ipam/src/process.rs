//! The process around the verbs: environment and stdin in, [`skel::dispatch`] for the
//! protocol, the answer out. Writing the answer is checked: a result that does not reach
//! stdout (a full disk, a closed pipe) is a failure, never an exit 0 with nothing printed,
//! which a runtime could take for success while the address it never learnt stays allocated.

use std::io::{ErrorKind, IsTerminal, Read, Write};

use tombstone::cni::skel::{self, Outcome, Plugin};
use tombstone::cni::{CniError, Command, Env, Result};

/// Stdin larger than this is refused (code 6), as the shared skeleton does.
const MAX_STDIN: u64 = 16 << 20;

/// The whole `main` of a plugin binary: with `CNI_COMMAND` set, one CNI invocation; without,
/// the "about" text on stderr and exit 0, as the reference plugins do.
pub fn main(plugin: &dyn Plugin, version: &str) -> ! {
    if std::env::var_os("CNI_COMMAND").is_none() {
        eprintln!("{}", skel::about(plugin.name(), version));
        std::process::exit(0);
    }
    let env = Env::from_process();
    let stdin = read_stdin(env.as_ref().map(|e| e.command).ok());
    let outcome = skel::dispatch(plugin, env, stdin);
    let code = deliver(&mut std::io::stdout().lock(), &outcome);
    std::process::exit(code)
}

fn read_stdin(command: Option<Command>) -> Result<Vec<u8>> {
    let stdin = std::io::stdin();
    // VERSION may come from a person at a terminal; everything else needs a config.
    if command == Some(Command::Version) && stdin.is_terminal() {
        return Ok(vec![]);
    }
    let mut buf = Vec::new();
    stdin.lock().take(MAX_STDIN + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(CniError::decode(format!(
            "stdin is larger than {MAX_STDIN} bytes"
        )));
    }
    Ok(buf)
}

/// Writes the outcome and returns the exit status. When the answer cannot be written, the
/// status is 1, and if none of it got out an error object is tried in its place (the
/// original one for a failure, an I/O error for a result): a second write may succeed where
/// the first did not; when it does not, the status still tells.
pub fn deliver(out: &mut dyn Write, o: &Outcome) -> i32 {
    let bytes = o.stdout.as_bytes();
    let mut written = 0;
    let failed = loop {
        if written == bytes.len() {
            match out.flush() {
                Ok(()) => return o.exit_code,
                Err(e) => break e,
            }
        }
        match out.write(&bytes[written..]) {
            Ok(0) => break ErrorKind::WriteZero.into(),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break e,
        }
    };
    let e = CniError::io(format!("cannot write the answer to stdout: {failed}"));
    log::error!("{e}");
    if written == 0 && o.exit_code != 0 {
        // An error object: the same again (it says what went wrong in the first place).
        let _ = out.write_all(bytes).and_then(|_| out.flush());
    } else if written == 0 {
        let version = serde_json::from_str::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
            .unwrap_or_else(|| tombstone::cni::version::LATEST.to_string());
        let _ = out
            .write_all(format!("{}\n", e.to_json(&version)).as_bytes())
            .and_then(|_| out.flush());
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails the first `fail` writes, then accepts at most `chunk` bytes a write.
    struct Flaky {
        fail: usize,
        chunk: usize,
        got: Vec<u8>,
        fail_after_first: bool,
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.fail > 0 || (self.fail_after_first && !self.got.is_empty()) {
                self.fail = self.fail.saturating_sub(1);
                return Err(ErrorKind::StorageFull.into());
            }
            let n = buf.len().min(self.chunk);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn result() -> Outcome {
        Outcome {
            stdout: "{\"cniVersion\":\"1.0.0\",\"ips\":[]}\n".into(),
            exit_code: 0,
        }
    }

    #[test]
    fn a_result_that_reaches_stdout_keeps_its_status() {
        let mut w = Flaky {
            fail: 0,
            chunk: 7,
            got: vec![],
            fail_after_first: false,
        };
        assert_eq!(deliver(&mut w, &result()), 0);
        assert_eq!(w.got, result().stdout.as_bytes());
    }

    #[test]
    fn a_result_that_cannot_be_written_is_a_failure_with_an_error_object() {
        let mut w = Flaky {
            fail: 1,
            chunk: 1 << 20,
            got: vec![],
            fail_after_first: false,
        };
        assert_eq!(deliver(&mut w, &result()), 1);
        let v: serde_json::Value = serde_json::from_slice(&w.got).unwrap();
        assert_eq!(v["code"], 5);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["msg"].as_str().unwrap().contains("cannot write"));
    }

    #[test]
    fn an_error_object_that_cannot_be_written_is_tried_once_more() {
        let mut w = Flaky {
            fail: 1,
            chunk: 1 << 20,
            got: vec![],
            fail_after_first: false,
        };
        let o = Outcome {
            stdout: "{\"cniVersion\":\"1.0.0\",\"code\":103,\"msg\":\"no address\"}\n".into(),
            exit_code: 1,
        };
        assert_eq!(deliver(&mut w, &o), 1);
        assert_eq!(w.got, o.stdout.as_bytes());
    }

    #[test]
    fn a_half_written_result_is_a_failure_and_nothing_is_appended() {
        let mut w = Flaky {
            fail: 0,
            chunk: 5,
            got: vec![],
            fail_after_first: true,
        };
        assert_eq!(deliver(&mut w, &result()), 1);
        assert_eq!(w.got, &result().stdout.as_bytes()[..5]);
    }

    #[test]
    fn an_empty_answer_writes_nothing() {
        let mut w = Flaky {
            fail: 1,
            chunk: 1,
            got: vec![],
            fail_after_first: false,
        };
        let o = Outcome {
            stdout: String::new(),
            exit_code: 0,
        };
        assert_eq!(deliver(&mut w, &o), 0);
        assert!(w.got.is_empty());
    }
}
