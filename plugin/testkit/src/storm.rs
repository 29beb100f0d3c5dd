//! The runtime a SIGKILL storm models around its killed runs ([`kill`] gives the runs): each
//! operation's kills and delay calibration ([`Op`]), a DEL retried until it succeeds
//! ([`Retry`]), the steps and checkpoints ([`Model`], driven by [`drive`]), and the figures
//! and verdict. Names no binary: the plugins' and the IPAM's storms share it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::kill::{self, Calibration, Leaks, Prng, Ran, Tally};

/// One operation of the storm (an ADD, a DEL, a sweep): its kills and its runs without one.
pub struct Op {
    /// What the runtime calls it ("DEL"), in the figures.
    pub verb: &'static str,
    /// Its line's name in the figures ("tombstone DEL").
    pub name: &'static str,
    pub tally: Tally,
    pub cal: Calibration,
    /// Runs without a kill.
    pub plain: usize,
}

impl Op {
    pub fn new(verb: &'static str, name: &'static str) -> Op {
        Op {
            verb,
            name,
            tally: Tally::default(),
            cal: Calibration::new(),
            plain: 0,
        }
    }

    pub fn kills(&self) -> usize {
        self.tally.kills
    }

    /// After a checkpoint: the delays forget all but the last 40 runs (the machine's load
    /// changes during a storm).
    fn keep_recent(&mut self) {
        self.cal.forget_old(40);
    }

    /// The kill delay of a run (drawn from the calibration) when `kill`.
    pub fn delay(&self, kill: bool, rng: &mut Prng) -> Option<Duration> {
        kill.then(|| self.cal.delay(rng))
    }

    /// Counts a run: a killed one (`stage`: where it was) in the tally, one without a kill
    /// in the calibration.
    pub fn record(&mut self, ran: &Ran, stage: Option<&'static str>) {
        match stage {
            Some(stage) => self.tally.record(ran, stage),
            None => {
                self.cal.sample(ran.elapsed);
                self.plain += 1;
            }
        }
    }
}

/// A runtime's DEL, retried until it succeeds: the first attempt is killed when
/// `kill_first`, a retry half the time (the first three); it gives up after 12 failures.
pub struct Retry {
    attempt: usize,
    kill_first: bool,
}

impl Retry {
    pub fn new(kill_first: bool) -> Retry {
        Retry {
            attempt: 0,
            kill_first,
        }
    }

    /// Whether the next attempt is to be killed.
    pub fn kill_next(&self, rng: &mut Prng) -> bool {
        if self.attempt == 0 {
            self.kill_first
        } else {
            self.attempt < 4 && rng.percent(50)
        }
    }

    /// After an attempt of `what` ("DEL ctr-1"): true when the retries end (it succeeded,
    /// or failed too often); a failure not of our kill goes to `failures`.
    pub fn over(&mut self, ran: &Ran, what: &str, failures: &mut Vec<String>) -> bool {
        let attempt = self.attempt;
        self.attempt += 1;
        if ran.killed {
            return false;
        }
        if ran.ok() {
            return true;
        }
        failures.push(format!(
            "{what} (attempt {attempt}) failed: {} {}",
            ran.stdout, ran.stderr
        ));
        attempt > 10
    }
}

/// What every storm keeps besides its model of the attachments.
pub struct Storm {
    pub rng: Prng,
    /// The kills each operation gets.
    pub quota: usize,
    pub leaks: Leaks,
    pub failures: Vec<String>,
    /// Stray files already reported (each once).
    pub strays_seen: BTreeSet<String>,
    pub checkpoints: usize,
    pub steps: usize,
    next_checkpoint: usize,
}

impl Storm {
    /// A storm of the seed's sequence (xored with `salt`), whose leaks are of `kinds`.
    pub fn new(salt: u64, kinds: &[&'static str]) -> Storm {
        let mut leaks = Leaks::default();
        for k in kinds {
            leaks.kind(k);
        }
        let quota = kill::kills_per_operation();
        Storm {
            rng: Prng::new(kill::seed() ^ salt),
            quota,
            leaks,
            failures: Vec::new(),
            strays_seen: BTreeSet::new(),
            checkpoints: 0,
            steps: 0,
            next_checkpoint: checkpoint_every(quota),
        }
    }

    /// The next step (counted): one of `choices` (the operations with kills to go, killed
    /// but one step in six: those runs keep the delays calibrated to the machine's load),
    /// or, when none is left, `fallback`, run to its end.
    fn choose(&mut self, choices: &[&'static str], fallback: &'static str) -> (&'static str, bool) {
        self.steps += 1;
        let kill = !choices.is_empty() && !self.rng.percent(16);
        let op = match choices.is_empty() {
            false => *self.rng.pick(choices),
            true => fallback,
        };
        (op, kill)
    }

    /// Whether a checkpoint is due after `kills` kills in all (then the next is counted from
    /// here).
    fn checkpoint_due(&mut self, kills: usize) -> bool {
        if kills < self.next_checkpoint {
            return false;
        }
        self.next_checkpoint += checkpoint_every(self.quota);
        true
    }

    /// The next checkpoint's name, counted.
    pub fn checkpoint_name(&mut self) -> String {
        self.checkpoints += 1;
        format!("checkpoint {}", self.checkpoints)
    }

    /// Records `kind` for each of `files` not seen before, `at` a checkpoint.
    pub fn strays(&mut self, kind: &'static str, files: Vec<String>, at: &str) {
        for f in files {
            if self.strays_seen.insert(f.clone()) {
                self.leaks.found(kind, format!("{f} at {at}"));
            }
        }
    }

    /// A run of `what` ("sweep") that failed by itself goes to the failures.
    pub fn failed_unless_killed(&mut self, ran: &Ran, what: &str) {
        if !ran.killed && !ran.ok() {
            self.failures
                .push(format!("{what} failed: {} {}", ran.stdout, ran.stderr));
        }
    }

    /// The figures: `title` (`about` added to its counts), then each of `ops`.
    pub fn figures(&self, title: &str, about: &str, ops: &[&Op], elapsed: Duration) -> String {
        let mut s = format!(
            "{title} SIGKILL storm (seed {:#x}, {} kills wanted per operation): {} steps, \
             {} checkpoints, {about}{:.1} s\n",
            kill::seed(),
            self.quota,
            self.steps,
            self.checkpoints,
            elapsed.as_secs_f64()
        );
        let ranges: Vec<String> = ops
            .iter()
            .map(|o| format!("{} {:?}", o.verb, o.cal.max_delay))
            .collect();
        s += &format!(
            "  delay ranges (0 to 1.25 x median run, half in its last 45%): {}\n",
            ranges.join(", ")
        );
        for o in ops {
            s += &format!("  {}\n", o.tally.line(o.name));
        }
        let plain: BTreeMap<&str, usize> = ops
            .iter()
            .filter(|o| o.plain > 0)
            .map(|o| (o.verb, o.plain))
            .collect();
        s += &format!("  runs without a kill: {plain:?}\n");
        s += &format!(
            "  leaks found: {} (0 expected)\n{}",
            self.leaks.total(),
            self.leaks.report()
        );
        s += &format!("  failed operations: {}\n", self.failures.len());
        for f in self.failures.iter().take(5) {
            s += &format!("      e.g. {f}\n");
        }
        s
    }

    /// The verdict: a kill landed inside a run of each of `landed` (else the delays are
    /// miscalibrated), and no leak, no failed operation.
    pub fn assert_clean(&self, landed: &[&Op], figures: &str) {
        assert!(
            landed.iter().all(|o| o.tally.killed_before_exit > 0),
            "no kill landed inside a run: the delays are miscalibrated\n{figures}"
        );
        assert!(
            self.leaks.total() == 0 && self.failures.is_empty(),
            "the storm left leaks or failed operations\n{figures}"
        );
    }
}

/// What [`drive`] reads and counts of a model: its kit, its operations (ADD and DEL first:
/// the steps are chosen in this order, then the others), how many attachments are live.
pub type Parts<'a> = (&'a mut Storm, Vec<&'a mut Op>, usize);

/// A storm's model of the runtime around the killed runs: its live attachments and the steps
/// of its operations, driven by [`drive`].
pub trait Model {
    fn parts(&mut self) -> Parts<'_>;
    /// One step of the operation `verb`, its run killed when `kill`.
    fn step(&mut self, verb: &str, kill: bool);
    /// Whether an operation other than ADD and DEL has work to be killed in now.
    fn worth_a_kill(&mut self, _verb: &str) -> bool {
        true
    }
    /// After the warm-up's ADDs and DELs.
    fn warmed_up(&mut self) {}
    /// After each step (and its recovery): the model's checks of the moment.
    fn after_step(&mut self) {}
    /// The model's checks of the state, at a checkpoint.
    fn checkpoint(&mut self);
}

/// Drives `m`: a warm-up without kills (6 ADDs, 2 DELs: the delay ranges come from these
/// runs), then steps (`Storm::choose`) until every operation has had its quota of kills,
/// with at most `max_live` live attachments; a checkpoint every third of a quota of kills
/// (at least 20) and one at the end.
pub fn drive(m: &mut impl Model, max_live: usize) {
    for _ in 0..6 {
        m.step("ADD", false);
    }
    for _ in 0..2 {
        m.step("DEL", false);
    }
    m.warmed_up();
    loop {
        let (kit, ops, live) = m.parts();
        let quota = kit.quota;
        let kills: Vec<(&'static str, usize)> = ops.iter().map(|o| (o.verb, o.kills())).collect();
        if kills.iter().all(|&(_, k)| k >= quota) {
            break;
        }
        let can_add = live < max_live;
        let mut choices = Vec::new();
        for &(verb, k) in &kills {
            let wanted = k < quota
                && match verb {
                    "ADD" => can_add,
                    "DEL" => live > 0,
                    other => m.worth_a_kill(other),
                };
            if wanted {
                choices.push(verb);
            }
        }
        let fallback = if can_add { "ADD" } else { "DEL" };
        let (op, kill) = m.parts().0.choose(&choices, fallback);
        m.step(op, kill);
        m.after_step();
        let (kit, ops, _) = m.parts();
        if kit.checkpoint_due(ops.iter().map(|o| o.kills()).sum()) {
            m.checkpoint();
            for op in m.parts().1 {
                op.keep_recent();
            }
        }
    }
    m.checkpoint();
}

/// Kills between two checkpoints.
fn checkpoint_every(quota: usize) -> usize {
    (quota / 3).max(20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn ran(killed: bool, code: i32) -> Ran {
        Ran {
            killed,
            status: ExitStatus::from_raw(if killed { 9 } else { code << 8 }),
            stdout: String::new(),
            stderr: "why".into(),
            elapsed: Duration::from_millis(1),
            pid: 1,
        }
    }

    #[test]
    fn a_retry_ends_on_success_goes_on_after_a_kill_and_gives_up_after_12_failures() {
        let mut failures = Vec::new();
        let mut r = Retry::new(true);
        assert!(r.kill_next(&mut Prng::new(1)));
        assert!(!r.over(&ran(true, 0), "DEL c", &mut failures));
        assert!(r.over(&ran(false, 0), "DEL c", &mut failures));
        assert!(failures.is_empty());
        let mut r = Retry::new(false);
        assert!(!r.kill_next(&mut Prng::new(1)));
        let ends: Vec<bool> = (0..12)
            .map(|_| r.over(&ran(false, 1), "DEL c", &mut failures))
            .collect();
        assert_eq!(ends.iter().position(|e| *e), Some(11));
        assert_eq!(failures.len(), 12);
        assert_eq!(failures[0], "DEL c (attempt 0) failed:  why");
    }

    #[test]
    fn an_op_tallies_killed_runs_and_calibrates_on_the_others() {
        let mut op = Op::new("DEL", "x DEL");
        assert_eq!(op.delay(false, &mut Prng::new(1)), None);
        op.record(&ran(true, 0), Some("before its write"));
        op.record(&ran(false, 0), None);
        assert_eq!(
            (op.kills(), op.tally.killed_before_exit, op.plain),
            (1, 1, 1)
        );
        assert_eq!(op.cal.max_delay, Duration::from_millis(1).mul_f64(1.25));
    }
}
