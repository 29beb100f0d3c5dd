//! The background sweeper: so that a tombstone ends when its hold does even when no other
//! CNI call and no timer comes, a DEL that buries something makes sure one `tombstone sweep
//! --until-empty` runs for its state directory. At most one runs per directory (it holds a
//! lock for its lifetime); it sleeps until the next expiry, sweeps, and exits when no
//! tombstone is left. Disable it with `"sweeper": false` where a timer runs the sweep.

use crate::errors::KernelResult;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::now_ms;
use super::sweep::sweep_all_in;
use tombstone_cni::Result;
use tombstone_cni::state::StateDir;

/// The sweeper's lock record. Network stems never contain `.` (it is percent-encoded), so
/// this cannot be a network's.
const LOCK: &str = "sweeper.bg";
/// The longest sleep: a tombstone buried meanwhile with a shorter hold waits at most this.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// Starts a sweeper for the directory unless one is running. Never fails the caller: a
/// sweeper that cannot start is logged, and the next invocation or a timer sweeps instead.
pub fn ensure_running(dir: &StateDir) {
    match dir.try_lock(LOCK) {
        Ok(Some(free)) => drop(free),
        Ok(None) => return,
        Err(e) => {
            log::warn!("sweeper: {e}");
            return;
        }
    }
    let spawned = Command::new("/proc/self/exe")
        .args(["sweep", "--until-empty", "--state-dir"])
        .arg(dir.path())
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a runtime that kills the plugin's group spares it.
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        log::warn!("sweeper: cannot start: {e}");
    }
}

/// The sweeper's body: sweep, sleep until the next expiry, until no tombstone is left.
pub fn run_until_empty(state_dir: &Path) -> Result<()> {
    let dir = StateDir::open(state_dir)?;
    let nl = tombstone_kernel::Netlink::open().cni()?;
    loop {
        let Some(lock) = dir.try_lock(LOCK)? else {
            return Ok(());
        };
        loop {
            let report = sweep_all_in(&dir, &nl, now_ms(), false)?;
            let Some(next) = report.next_expiry_ms else {
                break;
            };
            let wait = Duration::from_millis(next.saturating_sub(now_ms()));
            std::thread::sleep(wait.clamp(Duration::from_millis(200), MAX_SLEEP));
        }
        drop(lock);
        // A DEL that buried something just before the unlock saw a sweeper still running
        // and started none: look once more now that the lock is free.
        if !any_tombstone(&dir)? {
            return Ok(());
        }
    }
}

fn any_tombstone(dir: &StateDir) -> Result<bool> {
    for stem in dir.records()? {
        if super::store::has_tombstones(dir, &stem)? {
            return Ok(true);
        }
    }
    Ok(false)
}
