//! `cni-pause`: the sandbox ("pause") process of the CRI test's pod image. It holds the pod's
//! namespaces and does nothing else: it waits for SIGTERM or SIGINT and exits 0, reaping any
//! child that ends meanwhile (it is PID 1 of the pod). Built static, like every binary of the
//! workspace, so the image needs no C library.

use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

fn main() -> ExitCode {
    // The signals are blocked and taken with sigwait: no handler, no unsafe code, and PID 1's
    // default of ignoring unhandled signals does not apply to a waited-for signal.
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        eprintln!("cni-pause: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(_) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cni-pause: sigwait: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Reaps every child that has ended, without blocking.
fn reap() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
