//! The skeleton every binary runs: read the environment and stdin, dispatch the verb to the
//! plugin, write the result or one error object to stdout, and set the exit status. Panics
//! become an internal error object instead of a crash. [`start`] is each process's entry.

use std::io::{ErrorKind, IsTerminal, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use crate::config::NetConf;
use crate::env::{Attachment, Command, Env};
use crate::error::{CniError, IoContext, Result, code};
use crate::logging;
use crate::version::{self, LATEST};

/// Stdin larger than this is refused (code 6) rather than read into memory.
const MAX_STDIN: u64 = 16 << 20;

/// One invocation: the validated environment and the decoded config.
#[derive(Debug)]
pub struct Invocation {
    pub env: Env,
    pub conf: NetConf,
}

impl Invocation {
    /// The attachment of an ADD, DEL or CHECK (the skeleton guarantees one for those verbs).
    pub fn attachment(&self) -> &Attachment {
        self.env
            .attachment
            .as_ref()
            .expect("attachment verbs always carry an attachment")
    }
}

/// What a plugin implements: one method per verb. ADD returns the result object.
pub trait Plugin {
    /// The name logs carry.
    fn name(&self) -> &str;
    /// The spec versions it speaks, oldest first (VERSION lists them; a config naming another
    /// is refused with code 1).
    fn versions(&self) -> &'static [&'static str] {
        version::SUPPORTED
    }
    fn add(&self, inv: &Invocation) -> Result<Value>;
    fn del(&self, inv: &Invocation) -> Result<()>;
    fn check(&self, inv: &Invocation) -> Result<()>;
    fn gc(&self, inv: &Invocation) -> Result<()>;
    fn status(&self, inv: &Invocation) -> Result<()>;
}

/// What the process prints on stdout and exits with.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub stdout: String,
    pub exit_code: i32,
}

/// The text a plugin binary prints on stderr when run without `CNI_COMMAND`, in the
/// reference plugins' words.
pub fn about(name: &str, version: &str, versions: &[&str]) -> String {
    format!(
        "CNI {name} plugin v{version}\nCNI protocol versions supported: {}",
        versions.join(", ")
    )
}

/// A plugin binary's whole `main` (through [`start`]): with `CNI_COMMAND` set, runs the
/// plugin as a CNI process; without, prints [`about`] on stderr and exits 0, as the reference
/// plugins do.
pub fn plugin_main(plugin: &dyn Plugin, version: &str) -> ! {
    start(|| {
        if std::env::var_os("CNI_COMMAND").is_none() {
            let _ = std::io::stderr().write_all(
                format!("{}\n", about(plugin.name(), version, plugin.versions())).as_bytes(),
            );
            return 0;
        }
        run(plugin)
    })
}

/// The start and end of every binary of ours, which enter at C `main` (`#![no_main]`) rather
/// than through std's `fn main`, whose runtime set-up would first look up the main thread's
/// stack guard by parsing `/proc/self/maps` (about 40 000 instructions, a third of a VERSION's).
/// Does here what of that set-up our processes rely on: file descriptors 0, 1 and 2 open (on
/// `/dev/null` when the parent closed one, so that no state file can become "stdout"), a write
/// to a closed pipe an `EPIPE` error rather than a fatal `SIGPIPE` (std ignores the signal; here
/// it is blocked, which the kernel treats alike for a write and which std's `Command` clears in
/// every child, as it does std's `SIG_IGN`), a panic that escapes `main` exit status 101, and
/// stdout flushed at exit. Left out with the guard lookup: std's message on a stack overflow
/// (the process still dies of `SIGSEGV`), and the main thread's name in a panic's message on
/// stderr (`<unnamed>` for `main`; the error object on stdout is the same).
pub fn start(main: impl FnOnce() -> i32) -> ! {
    open_standard_fds();
    let mut pipe = nix::sys::signal::SigSet::empty();
    pipe.add(nix::sys::signal::Signal::SIGPIPE);
    if pipe.thread_block().is_err() {
        // Cannot fail with a valid set; a process that could not block it must not go on
        // believing that a closed pipe is an error it will see.
        std::process::abort();
    }
    let code = catch_unwind(AssertUnwindSafe(main)).unwrap_or(101);
    // Flushes stdout, as returning from std's `fn main` does.
    std::process::exit(code)
}

/// Opens `/dev/null` on each of fds 0, 1 and 2 that is closed, as std's runtime does; aborts,
/// as std does, when that is impossible, since any file opened later would take its place.
fn open_standard_fds() {
    use nix::fcntl::{FcntlArg, fcntl};
    use std::os::fd::{AsFd, BorrowedFd, IntoRawFd};
    let closed = |fd: BorrowedFd<'_>| fcntl(fd, FcntlArg::F_GETFD) == Err(nix::errno::Errno::EBADF);
    let open = [
        !closed(std::io::stdin().as_fd()),
        !closed(std::io::stdout().as_fd()),
        !closed(std::io::stderr().as_fd()),
    ];
    // The lowest free descriptor is the closed one: those below it are open by then.
    for _ in open.into_iter().filter(|is_open| !is_open) {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            Ok(f) => {
                let _ = f.into_raw_fd();
            }
            Err(_) => std::process::abort(),
        }
    }
}

/// Runs the plugin as a CNI process and returns the exit status for `main`.
pub fn run(plugin: &dyn Plugin) -> i32 {
    let env = Env::from_process();
    let stdin = read_stdin(env.as_ref().map(|e| e.command).ok());
    let outcome = dispatch(plugin, env, stdin);
    deliver(&mut std::io::stdout().lock(), &outcome)
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
            .unwrap_or_else(|| LATEST.to_string());
        let _ = out
            .write_all(format!("{}\n", e.to_json(&version)).as_bytes())
            .and_then(|_| out.flush());
    }
    1
}

fn read_stdin(command: Option<Command>) -> Result<Vec<u8>> {
    let stdin = std::io::stdin();
    // VERSION may come from a person at a terminal; everything else needs a config.
    if command == Some(Command::Version) && stdin.is_terminal() {
        return Ok(vec![]);
    }
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut buf)
        .context("reading the config from stdin")?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(CniError::decode(format!(
            "stdin is larger than {MAX_STDIN} bytes"
        )));
    }
    Ok(buf)
}

/// The whole protocol, minus process I/O: testable without spawning.
pub fn dispatch(plugin: &dyn Plugin, env: Result<Env>, stdin: Result<Vec<u8>>) -> Outcome {
    logging::init(plugin.name(), log::LevelFilter::Info);
    let mut version_for_errors = LATEST.to_string();
    let result = catch_unwind(AssertUnwindSafe(|| {
        dispatch_inner(plugin, env, stdin, &mut version_for_errors)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(CniError::new(code::INTERNAL, "internal error").with_details(what))
    });
    match result {
        Ok(Some(v)) => Outcome {
            stdout: format!("{v}\n"),
            exit_code: 0,
        },
        Ok(None) => Outcome {
            stdout: String::new(),
            exit_code: 0,
        },
        Err(e) => {
            log::error!("{}", e);
            Outcome {
                stdout: format!("{}\n", e.to_json(&version_for_errors)),
                exit_code: 1,
            }
        }
    }
}

fn dispatch_inner(
    plugin: &dyn Plugin,
    env: Result<Env>,
    stdin: Result<Vec<u8>>,
    version_for_errors: &mut String,
) -> Result<Option<Value>> {
    // Stdin is decoded once, for all three uses below.
    let decoded = stdin.map(|bytes| serde_json::from_slice::<Value>(&bytes));
    let requested = match &decoded {
        Ok(Ok(Value::Object(m))) => m.get("cniVersion").and_then(Value::as_str),
        _ => None,
    }
    .map(str::to_string);
    // Errors before the config is read still answer in the runtime's version when we can.
    if let Some(v) = &requested
        && version::check_supported_by(v, plugin.versions()).is_ok()
    {
        v.clone_into(version_for_errors);
    }
    let env = env?;
    let decoded = decoded?;
    if env.command == Command::Version {
        return Ok(Some(version::version_info(
            requested.as_deref(),
            plugin.versions(),
        )));
    }
    let conf = NetConf::from_decoded(decoded)?;
    version::check_supported_by(&conf.cni_version, plugin.versions())?;
    let level = match conf.raw.get("logLevel") {
        None | Some(Value::Null) => log::LevelFilter::Info,
        Some(Value::String(s)) => logging::parse_level(s).ok_or_else(|| {
            CniError::config(format!("invalid logLevel {s:?}"))
                .with_details(format!("expected {}", logging::LEVELS))
        })?,
        Some(_) => return Err(CniError::config("logLevel must be a string")),
    };
    log::set_max_level(level);
    version::check_allows(&conf.cni_version, env.command)?;
    let inv = Invocation { env, conf };
    match inv.env.command {
        Command::Add => plugin.add(&inv).map(Some),
        Command::Del => plugin.del(&inv).map(|_| None),
        Command::Check => plugin.check(&inv).map(|_| None),
        Command::Gc => plugin.gc(&inv).map(|_| None),
        Command::Status => plugin.status(&inv).map(|_| None),
        Command::Version => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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

    struct Echo;
    impl Plugin for Echo {
        fn name(&self) -> &str {
            "echo"
        }
        fn add(&self, inv: &Invocation) -> Result<Value> {
            Ok(inv.conf.prev_result().cloned().unwrap_or(Value::Null))
        }
        fn del(&self, _: &Invocation) -> Result<()> {
            Err(CniError::io("disk on fire"))
        }
        fn check(&self, _: &Invocation) -> Result<()> {
            panic!("boom")
        }
        fn gc(&self, _: &Invocation) -> Result<()> {
            Ok(())
        }
        fn status(&self, _: &Invocation) -> Result<()> {
            Ok(())
        }
    }

    fn run_with(command: &str, stdin: &str) -> (Value, i32) {
        let m: HashMap<&str, &str> = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/n"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/bin"),
        ]
        .into();
        let env = Env::from_lookup(|k| m.get(k).map(|s| s.to_string()));
        let o = dispatch(&Echo, env, Ok(stdin.as_bytes().to_vec()));
        let v = if o.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&o.stdout).expect("stdout is one JSON value")
        };
        (v, o.exit_code)
    }

    #[test]
    fn add_prints_the_result() {
        let (v, rc) = run_with(
            "ADD",
            r#"{"cniVersion":"1.0.0","name":"n","prevResult":{"cniVersion":"1.0.0","ips":[]}}"#,
        );
        assert_eq!(rc, 0);
        assert_eq!(v["ips"], serde_json::json!([]));
    }

    #[test]
    fn errors_are_one_object_in_the_configs_version() {
        let (v, rc) = run_with("DEL", r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(rc, 1);
        assert_eq!(v["code"], 5);
        assert_eq!(v["cniVersion"], "1.0.0");
        let (v, _) = run_with("DEL", "{nope");
        assert_eq!(
            (v["code"].as_u64(), v["cniVersion"].as_str()),
            (Some(6), Some(LATEST))
        );
    }

    #[test]
    fn a_panic_is_an_internal_error_object() {
        let (v, rc) = run_with("CHECK", r#"{"cniVersion":"1.1.0","name":"n"}"#);
        assert_eq!(rc, 1);
        assert_eq!(v["code"], 999);
        assert_eq!(v["details"], "boom");
    }

    #[test]
    fn gc_and_status_need_1_1() {
        let (v, rc) = run_with("STATUS", r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!((v["code"].as_u64(), rc), (Some(1), 1));
        let (v, rc) = run_with("STATUS", r#"{"cniVersion":"1.1.0","name":"n"}"#);
        assert_eq!((v, rc), (Value::Null, 0));
    }

    #[test]
    fn version_needs_no_config() {
        let (v, rc) = run_with("VERSION", "");
        assert_eq!(rc, 0);
        assert_eq!(
            v["supportedVersions"],
            serde_json::json!([
                "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
            ])
        );
        let (v, _) = run_with("VERSION", r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(v["cniVersion"], "1.0.0");
    }

    #[test]
    fn about_names_the_plugin_and_every_version() {
        assert_eq!(
            about("x", "1.2.3", version::CHAINED),
            "CNI x plugin v1.2.3\nCNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        );
    }

    #[test]
    fn check_needs_0_4_0() {
        for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
            let (out, rc) = run_with("CHECK", &format!(r#"{{"cniVersion":"{v}","name":"n"}}"#));
            assert_eq!((out["code"].as_u64(), rc), (Some(1), 1), "{v}");
            assert_eq!(out["cniVersion"], v);
            assert!(out["msg"].as_str().unwrap().contains("CHECK"), "{out}");
        }
        // 0.4.0 reaches the plugin (whose CHECK panics).
        let (out, _) = run_with("CHECK", r#"{"cniVersion":"0.4.0","name":"n"}"#);
        assert_eq!(out["code"], 999);
    }

    #[test]
    fn every_old_version_reaches_add_and_del() {
        for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
            let (out, rc) = run_with("ADD", &format!(r#"{{"cniVersion":"{v}","name":"n"}}"#));
            assert_eq!((out, rc), (Value::Null, 0), "{v}");
            let (out, _) = run_with("DEL", &format!(r#"{{"cniVersion":"{v}","name":"n"}}"#));
            assert_eq!(out["code"], 5, "{v}: the plugin's own error");
        }
    }

    /// A plugin that speaks fewer versions than the suite.
    struct Narrow;
    impl Plugin for Narrow {
        fn name(&self) -> &str {
            "narrow"
        }
        fn versions(&self) -> &'static [&'static str] {
            version::CHAINED
        }
        fn add(&self, _: &Invocation) -> Result<Value> {
            Ok(Value::Null)
        }
        fn del(&self, _: &Invocation) -> Result<()> {
            Ok(())
        }
        fn check(&self, _: &Invocation) -> Result<()> {
            Ok(())
        }
        fn gc(&self, _: &Invocation) -> Result<()> {
            Ok(())
        }
        fn status(&self, _: &Invocation) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_plugins_own_versions_are_what_it_accepts_and_lists() {
        let m: HashMap<&str, &str> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/n"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/bin"),
        ]
        .into();
        let env = || Env::from_lookup(|k| m.get(k).map(|s| s.to_string()));
        let o = dispatch(
            &Narrow,
            env(),
            Ok(br#"{"cniVersion":"0.2.0","name":"n"}"#.to_vec()),
        );
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!((v["code"].as_u64(), o.exit_code), (Some(1), 1));
        assert_eq!(v["cniVersion"], LATEST, "0.2.0 is not one it speaks");
        let o = dispatch(
            &Narrow,
            env(),
            Ok(br#"{"cniVersion":"0.3.1","name":"n"}"#.to_vec()),
        );
        assert_eq!(o.exit_code, 0);
        let version = Env::from_lookup(|k| (k == "CNI_COMMAND").then(|| "VERSION".to_string()));
        let o = dispatch(&Narrow, version, Ok(vec![]));
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["supportedVersions"], serde_json::json!(version::CHAINED));
    }

    #[test]
    fn bad_log_level_is_code_7() {
        let (v, _) = run_with(
            "GC",
            r#"{"cniVersion":"1.1.0","name":"n","logLevel":"loud"}"#,
        );
        assert_eq!(v["code"], 7);
    }
}
