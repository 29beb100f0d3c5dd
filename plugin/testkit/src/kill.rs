//! SIGKILL storms: a seeded deterministic PRNG, a process killed after a chosen delay, and
//! the figures (kills per operation, how many landed before the process exited, at which
//! stage of its work). Names no binary: the plugins' and the IPAM's storms share it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// splitmix64: small, fast, and the same sequence for the same seed on every machine.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// Uniform in `0..=max`.
    pub fn duration(&mut self, max: Duration) -> Duration {
        let ns = max.as_nanos() as u64;
        Duration::from_nanos(self.next_u64() % (ns + 1))
    }
}

/// `STORM_SEED` (decimal or 0x-hex), else a fixed seed: a run is reproducible.
pub fn seed() -> u64 {
    match std::env::var("STORM_SEED") {
        Ok(s) => {
            let s = s.trim();
            s.strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16))
                .unwrap_or_else(|| s.parse())
                .unwrap_or_else(|e| panic!("STORM_SEED={s:?}: {e}"))
        }
        Err(_) => 0x5EED_0084,
    }
}

/// `STORM_KILLS`: the SIGKILLs of the whole storm, shared evenly by its five operations
/// (tombstone DEL, ADD, sweep; tombstone-ipam ADD, DEL). Default 2000.
pub fn storm_kills() -> usize {
    std::env::var("STORM_KILLS")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("STORM_KILLS={s:?}: {e}"))
        })
        .unwrap_or(2000)
}

/// The kills each of the five operations gets.
pub fn kills_per_operation() -> usize {
    storm_kills().div_ceil(5).max(1)
}

/// How one run ended.
pub struct Ran {
    /// Killed by our SIGKILL before it exited by itself.
    pub killed: bool,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Spawn to reaped.
    pub elapsed: Duration,
    pub pid: u32,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
}

/// Spawns `cmd` (stdin, stdout and stderr are set here), writes `stdin`, and, when `kill_after`
/// is given, sends SIGKILL that long after the spawn.
pub fn run(mut cmd: Command, stdin: &[u8], kill_after: Option<Duration>) -> Ran {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    {
        // A child killed before it reads its stdin makes this write fail: not our failure.
        let mut pipe = child.stdin.take().unwrap();
        let _ = pipe.write_all(stdin);
    }
    if let Some(delay) = kill_after {
        // A sleep, not a spin: on a 2-core machine a spinning parent would slow the child,
        // and the delays would no longer match the calibration (runs measured while the
        // parent waits).
        std::thread::sleep((start + delay).saturating_duration_since(Instant::now()));
        // On an exited (not yet reaped) child this is a no-op, never another process.
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    Ran {
        killed: out.status.signal() == Some(9),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
        pid,
    }
}

/// The delay range for an operation: 0 to 1.25 times the median duration of its runs
/// without a kill, so most kills land inside the process and some after its exit. Half the
/// delays are drawn from the last part of that range (0.55 to 1 of it): a plugin's state
/// write and kernel calls come after its start-up, at the end of its life.
pub struct Calibration {
    samples: Vec<Duration>,
    pub max_delay: Duration,
}

impl Default for Calibration {
    fn default() -> Self {
        Self::new()
    }
}

impl Calibration {
    pub fn new() -> Calibration {
        Calibration {
            samples: Vec::new(),
            max_delay: Duration::from_millis(3),
        }
    }

    pub fn sample(&mut self, d: Duration) {
        self.samples.push(d);
        let mut s = self.samples.clone();
        s.sort();
        self.max_delay = s[s.len() / 2].mul_f64(1.25);
    }

    pub fn delay(&self, rng: &mut Prng) -> Duration {
        if rng.percent(50) {
            rng.duration(self.max_delay)
        } else {
            self.max_delay.mul_f64(0.55) + rng.duration(self.max_delay.mul_f64(0.45))
        }
    }

    /// Keeps the last `n` samples (the machine's load changes during a run).
    pub fn forget_old(&mut self, n: usize) {
        let len = self.samples.len();
        if len > n {
            self.samples.drain(..len - n);
        }
    }
}

/// The figures of one operation.
#[derive(Default)]
pub struct Tally {
    pub kills: usize,
    pub killed_before_exit: usize,
    /// Where the killed run was, as the state and the kernel show it afterwards.
    pub stages: BTreeMap<&'static str, usize>,
}

impl Tally {
    pub fn record(&mut self, ran: &Ran, stage: &'static str) {
        self.kills += 1;
        if ran.killed {
            self.killed_before_exit += 1;
        }
        *self.stages.entry(stage).or_default() += 1;
    }

    pub fn line(&self, name: &str) -> String {
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(
            "{name:<22} kills {:>5}  killed before exit {:>5} ({:>5.1}%)  stages: {}",
            self.kills,
            self.killed_before_exit,
            100.0 * self.killed_before_exit as f64 / self.kills.max(1) as f64,
            stages.join(", ")
        )
    }
}

/// Leaks found, by kind (every count 0 expected), with the first few examples of each.
#[derive(Default)]
pub struct Leaks {
    pub counts: BTreeMap<&'static str, usize>,
    pub examples: BTreeMap<&'static str, Vec<String>>,
}

impl Leaks {
    /// Declares a kind, so the figures show it with 0.
    pub fn kind(&mut self, kind: &'static str) {
        self.counts.entry(kind).or_default();
    }

    pub fn found(&mut self, kind: &'static str, what: String) {
        *self.counts.entry(kind).or_default() += 1;
        let ex = self.examples.entry(kind).or_default();
        if ex.len() < 5 {
            ex.push(what);
        }
    }

    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    pub fn report(&self) -> String {
        let mut s = String::new();
        for (k, n) in &self.counts {
            s += &format!("  leak {k:<44} {n}\n");
            for e in self.examples.get(k).into_iter().flatten() {
                s += &format!("      e.g. {e}\n");
            }
        }
        s
    }
}

/// A process in flight, for tests that start many at once.
pub struct Flight {
    pub label: String,
    child: std::process::Child,
    start: Instant,
}

/// How a process in flight ended.
pub struct Landed {
    pub label: String,
    /// `None`: it did not exit before the deadline (it was then killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// For one that hung: its pid and the kernel function it was waiting in.
    pub hung: Option<String>,
}

impl Landed {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn describe(&self) -> String {
        match (&self.hung, self.status) {
            (Some(h), _) => format!("{}: HUNG ({h}) after {:?}", self.label, self.elapsed),
            (None, Some(s)) => format!(
                "{}: {s} after {:?}, stdout {:?}, stderr {:?}",
                self.label,
                self.elapsed,
                self.stdout.trim(),
                tail(&self.stderr)
            ),
            (None, None) => unreachable!(),
        }
    }
}

fn tail(s: &str) -> &str {
    let s = s.trim();
    &s[s.len().saturating_sub(400)..]
}

/// Spawns `cmd` with `stdin` written and closed; it runs while the caller spawns others.
pub fn launch(mut cmd: Command, stdin: &[u8], label: impl Into<String>) -> Flight {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let _ = child.stdin.take().unwrap().write_all(stdin);
    Flight {
        label: label.into(),
        child,
        start,
    }
}

/// What a process waits in: its pid and `wchan`, and for each `flock` it waits for, the
/// file (looked up by inode in `dir`) and the process holding it.
pub fn waiting_in(pid: u32, dir: Option<&std::path::Path>) -> String {
    use std::os::unix::fs::MetadataExt;
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    // "1: FLOCK  ADVISORY  WRITE 23178 fe:00:10019225 0 EOF", waiters with "->" after the id.
    let parse = |l: &str| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let waiting = w.get(1) == Some(&"->");
        let w = if waiting { &w[2..] } else { &w[1..] };
        let holder: u32 = w.get(3)?.parse().ok()?;
        let inode: u64 = w.get(4)?.rsplit(':').next()?.parse().ok()?;
        Some((waiting, holder, inode))
    };
    let entries: Vec<(bool, u32, u64)> = locks.lines().filter_map(parse).collect();
    let file_of = |inode: u64| {
        dir.and_then(|d| std::fs::read_dir(d).ok())
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.metadata().is_ok_and(|m| m.ino() == inode))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("inode {inode}"))
    };
    let cmdline = |p: u32| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    };
    let mut s = format!("pid {pid} in {wchan:?}");
    let held: Vec<String> = entries
        .iter()
        .filter(|e| !e.0 && e.1 == pid)
        .map(|e| file_of(e.2))
        .collect();
    if !held.is_empty() {
        let more = held.len().saturating_sub(6);
        s += &format!(
            ", holding {} locks: {}",
            held.len(),
            held[..held.len() - more].join(" ")
        );
        if more > 0 {
            s += &format!(" and {more} more");
        }
    }
    for &(_, _, inode) in entries.iter().filter(|e| e.0 && e.1 == pid) {
        let holders: Vec<String> = entries
            .iter()
            .filter(|e| !e.0 && e.2 == inode)
            .map(|e| format!("pid {} ({})", e.1, cmdline(e.1)))
            .collect();
        s += &format!(
            ", waiting for the lock of {} held by {}",
            file_of(inode),
            holders.join(", ")
        );
    }
    s
}

/// Waits for every flight until `deadline`; one still running then is a hang: it is
/// described, killed and reaped.
pub fn land_all(
    flights: Vec<Flight>,
    deadline: Instant,
    dir: Option<&std::path::Path>,
) -> Vec<Landed> {
    use std::io::Read;
    let mut pending = flights;
    let mut out = Vec::new();
    loop {
        let mut still = Vec::new();
        for mut f in pending {
            match f.child.try_wait().expect("try_wait") {
                Some(status) => {
                    let mut stdout = String::new();
                    let mut stderr = String::new();
                    if let Some(mut o) = f.child.stdout.take() {
                        let _ = o.read_to_string(&mut stdout);
                    }
                    if let Some(mut e) = f.child.stderr.take() {
                        let _ = e.read_to_string(&mut stderr);
                    }
                    out.push(Landed {
                        label: f.label,
                        status: Some(status),
                        stdout,
                        stderr,
                        elapsed: f.start.elapsed(),
                        hung: None,
                    });
                }
                None => still.push(f),
            }
        }
        pending = still;
        if pending.is_empty() {
            return out;
        }
        if Instant::now() >= deadline {
            for mut f in pending {
                let hung = waiting_in(f.child.id(), dir);
                let _ = f.child.kill();
                let _ = f.child.wait();
                out.push(Landed {
                    label: f.label,
                    status: None,
                    stdout: String::new(),
                    stderr: String::new(),
                    elapsed: f.start.elapsed(),
                    hung: Some(hung),
                });
            }
            return out;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
