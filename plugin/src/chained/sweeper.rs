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
use super::store;
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

/// The sweeper's body: sweep, sleep until the next expiry, until no tombstone is left. A
/// wake-up with nothing due and no file changed since the last sweep reads no entry: the
/// sweeper's cost between expiries does not grow with the tombstones it waits on.
pub fn run_until_empty(state_dir: &Path) -> Result<()> {
    let dir = StateDir::open(state_dir)?;
    let nl = tombstone_kernel::Netlink::open().cni()?;
    loop {
        let Some(lock) = dir.try_lock(LOCK)? else {
            return Ok(());
        };
        let mut last: Option<Swept> = None;
        loop {
            let now = now_ms();
            // Taken before the sweep: a change made while it runs shows at the next wake.
            let seen = fingerprint(&dir)?;
            let next = match last.as_ref().filter(|l| l.still_holds(&seen, now)) {
                Some(l) => l.next_expiry_ms,
                None => {
                    let report = sweep_all_in(&dir, &nl, now, false)?;
                    let Some(next) = report.next_expiry_ms else {
                        break;
                    };
                    last = Some(Swept {
                        seen,
                        at_ms: now,
                        next_expiry_ms: next,
                    });
                    next
                }
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

/// However unchanged the files, a sweep at least this often: it also finds what changed
/// in the kernel alone (a route an operator deleted, an orphan).
const SWEEP_AT_LEAST_EVERY_MS: u64 = 60_000;
/// A modification time this close to when it was read may hide a later change made in the
/// same tick of the file system's clock (as git's "racy clean" entries): not trusted.
const MTIME_TICK_MS: u64 = 1_000;

/// The modification times, in ms since the epoch, of the state directory (a head written
/// or removed) and of every network's entry directory (an entry created, replaced or
/// removed), by network.
type Fingerprint = Vec<(String, Option<u64>)>;

fn fingerprint(dir: &StateDir) -> Result<Fingerprint> {
    let ms = |t: Option<std::time::SystemTime>| {
        t.map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
    };
    let mut out = vec![(String::new(), ms(store::changed_at(dir.path())?))];
    for stem in dir.records()? {
        let at = ms(store::entries_changed_at(dir, &stem)?);
        out.push((stem, at));
    }
    Ok(out)
}

/// What the last sweep saw and concluded.
#[derive(Debug)]
struct Swept {
    seen: Fingerprint,
    at_ms: u64,
    next_expiry_ms: u64,
}

impl Swept {
    /// Whether a sweep now would change nothing: nothing is due, no file changed since
    /// (and none so recently before that the change could hide), and the last sweep is
    /// recent.
    fn still_holds(&self, now: &Fingerprint, now_ms: u64) -> bool {
        let racy = self
            .seen
            .iter()
            .any(|(_, t)| t.is_some_and(|t| t + MTIME_TICK_MS >= self.at_ms));
        now_ms < self.next_expiry_ms
            && now_ms < self.at_ms + SWEEP_AT_LEAST_EVERY_MS
            && *now == self.seen
            && !racy
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

#[cfg(test)]
mod tests {
    use super::*;

    fn swept(seen: &[(&str, Option<u64>)]) -> Swept {
        Swept {
            seen: seen.iter().map(|(s, t)| (s.to_string(), *t)).collect(),
            at_ms: 100_000,
            next_expiry_ms: 130_000,
        }
    }

    #[test]
    fn a_wake_up_reads_again_only_when_something_may_have_changed() {
        let fp = |v: &[(&str, Option<u64>)]| -> Fingerprint {
            v.iter().map(|(s, t)| (s.to_string(), *t)).collect()
        };
        let same = [("", Some(50_000)), ("pods", Some(60_000))];
        let last = swept(&same);
        assert!(last.still_holds(&fp(&same), 105_000));
        // Due: the next expiry has come.
        assert!(!last.still_holds(&fp(&same), 130_000));
        // An entry written, a network added or removed.
        assert!(!last.still_holds(&fp(&[("", Some(50_000)), ("pods", Some(105_000))]), 105_000));
        assert!(!last.still_holds(&fp(&[("", Some(50_000))]), 105_000));
        assert!(!last.still_holds(&fp(&[("", Some(50_000)), ("pods", None)]), 105_000));
        // A sweep a minute at least.
        let long = Swept {
            next_expiry_ms: 10_000_000,
            ..swept(&same)
        };
        assert!(long.still_holds(&fp(&same), 159_999));
        assert!(!long.still_holds(&fp(&same), 160_000));
        // A change within a tick of the last sweep could hide another: not trusted.
        let racy = [("", Some(50_000)), ("pods", Some(99_500))];
        assert!(!swept(&racy).still_holds(&fp(&racy), 105_000));
    }
}
