//! `tombstone-install agent`: the node agent a DaemonSet runs. It installs, then keeps the
//! entry in place as the primary CNI rewrites its files (inotify on the conf dir, debounced,
//! plus a periodic resync), sweeps the plugin's state directory on a timer, and serves
//! `/healthz`, `/readyz` and `/metrics` ([`serve`], [`metrics`]). It never exits on a bad file.

pub mod metrics;
pub mod opts;
pub mod serve;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inotify::{Inotify, WatchMask, Watches};
use signal_hook::consts::{SIGINT, SIGTERM};
use tombstone::chained::{now_ms, store, sweep};
use tombstone_cni::state::StateDir;

use crate::files::resolve;
use crate::run::{self, Outcome};
use metrics::{Scan, Stats};
use opts::{AgentOptions, ParsedAgent};

/// What the HTTP side reads.
pub struct Shared {
    pub stats: Stats,
    /// Why the agent is not ready (empty when ready).
    pub reasons: Vec<String>,
    /// The networks with the entry in place (`file: network`).
    pub managed: Vec<String>,
    /// The main loop's last turn.
    pub heartbeat: Instant,
}

enum Msg {
    ConfChanged,
    WatchLost,
    Stop(i32),
}

/// Events of the conf dir closer than this are one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How soon a failed install, or a conf dir not there to watch, is tried again.
const RETRY: Duration = Duration::from_secs(1);

fn log(line: impl AsRef<str>) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "tombstone-install agent: {}", line.as_ref());
}

/// `tombstone-install agent ARGS`: the exit status (0 after SIGTERM, 1 when it cannot start,
/// 2 on a bad command line).
pub fn main(args: &[String]) -> i32 {
    let o = match opts::parse(args) {
        Ok(ParsedAgent::Run(o)) => o,
        Ok(ParsedAgent::Help) => {
            println!("{}", opts::USAGE);
            return 0;
        }
        Err(e) => {
            log(format!("{e}\n\n{}", opts::USAGE));
            return e.exit_code();
        }
    };
    match Agent::start(*o) {
        Ok(mut a) => a.run(),
        Err(e) => {
            log(format!("cannot start: {e}"));
            1
        }
    }
}

struct Agent {
    o: AgentOptions,
    shared: Arc<Mutex<Shared>>,
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    watches: Option<Watches>,
    conf_dir: PathBuf,
    installed: bool,
    last_scan: Scan,
    /// The last reconcile's report, said again only when it changes.
    last_said: Vec<String>,
}

impl Agent {
    fn start(o: AgentOptions) -> Result<Agent, String> {
        let listener = std::net::TcpListener::bind(o.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", o.listen))?;
        let root = std::fs::canonicalize(&o.install.root)
            .map_err(|e| format!("--root {}: {e}", o.install.root.display()))?;
        let conf_dir = resolve(&root, &o.install.conf_dir, true).map_err(|e| e.to_string())?;
        let shared = Arc::new(Mutex::new(Shared {
            stats: Stats::default(),
            reasons: vec!["starting: not installed yet".into()],
            managed: Vec::new(),
            heartbeat: Instant::now(),
        }));
        let (tx, rx) = mpsc::channel();
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
            .map_err(|e| format!("cannot catch SIGTERM: {e}"))?;
        let stop = tx.clone();
        std::thread::spawn(move || {
            if let Some(s) = signals.forever().next() {
                let _ = stop.send(Msg::Stop(s));
            }
        });
        let http = shared.clone();
        std::thread::spawn(move || serve::serve(listener, http));
        log(format!(
            "listening on {}; conf dir {}; state dir {}",
            o.listen,
            conf_dir.display(),
            o.state_dir()
        ));
        for w in &o.warnings {
            log(format!("warning: {w}"));
        }
        Ok(Agent {
            o,
            shared,
            rx,
            tx,
            watches: None,
            conf_dir,
            installed: false,
            last_scan: Scan::new(),
            last_said: Vec::new(),
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&mut self) -> i32 {
        let now = Instant::now();
        let mut reconcile_at = Some(now);
        let mut resync_at = now + self.o.resync_every;
        let mut sweep_at = self.o.sweep_every.map(|d| now + d);
        let mut scan_at = now;
        let mut watch_at = now;
        loop {
            let now = Instant::now();
            self.shared().heartbeat = now;
            if self.watches.is_none() && now >= watch_at {
                self.watch();
                if self.watches.is_none() {
                    watch_at = now + RETRY;
                } else {
                    // Anything written before the watch was in place: look again.
                    reconcile_at.get_or_insert(now);
                }
            }
            if reconcile_at.is_some_and(|t| now >= t) || now >= resync_at {
                reconcile_at = None;
                resync_at = now + self.o.resync_every;
                if !self.reconcile() {
                    reconcile_at = Some(now + RETRY);
                }
            }
            if let Some(t) = sweep_at.filter(|t| now >= *t) {
                self.sweep();
                sweep_at = self.o.sweep_every.map(|d| t.max(now - d) + d);
            }
            if now >= scan_at {
                self.scan();
                scan_at = now + self.o.scan_every;
            }
            let mut next = resync_at.min(scan_at);
            for t in [reconcile_at, sweep_at].into_iter().flatten() {
                next = next.min(t);
            }
            if self.watches.is_none() {
                next = next.min(watch_at);
            }
            let wait = next.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Msg::ConfChanged) => {
                    reconcile_at.get_or_insert(Instant::now() + DEBOUNCE);
                }
                Ok(Msg::WatchLost) => {
                    log(format!(
                        "{} is gone; watching for it again",
                        self.conf_dir.display()
                    ));
                    self.watches = None;
                    watch_at = Instant::now();
                }
                Ok(Msg::Stop(sig)) => return self.stop(sig),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.stop(0),
            }
        }
    }

    /// Watches the conf dir (its events come as [`Msg::ConfChanged`]); a failure is counted,
    /// said once, and tried again.
    fn watch(&mut self) {
        let result = (|| -> std::io::Result<Watches> {
            let mut ino = Inotify::init()?;
            let mut watches = ino.watches();
            watches.add(
                &self.conf_dir,
                WatchMask::CREATE
                    | WatchMask::CLOSE_WRITE
                    | WatchMask::MODIFY
                    | WatchMask::MOVED_TO
                    | WatchMask::MOVED_FROM
                    | WatchMask::DELETE
                    | WatchMask::ATTRIB
                    | WatchMask::DELETE_SELF
                    | WatchMask::MOVE_SELF,
            )?;
            let tx = self.tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(events) = ino.read_events_blocking(&mut buf) else {
                        let _ = tx.send(Msg::WatchLost);
                        return;
                    };
                    let mut lost = false;
                    for e in events {
                        lost |= e.mask.intersects(
                            inotify::EventMask::DELETE_SELF
                                | inotify::EventMask::MOVE_SELF
                                | inotify::EventMask::IGNORED,
                        );
                    }
                    let msg = if lost {
                        Msg::WatchLost
                    } else {
                        Msg::ConfChanged
                    };
                    if tx.send(msg).is_err() || lost {
                        return;
                    }
                }
            });
            Ok(watches)
        })();
        match result {
            Ok(w) => {
                self.watches = Some(w);
                log(format!("watching {}", self.conf_dir.display()));
            }
            Err(e) => {
                let reason = format!("cannot watch {}: {e}", self.conf_dir.display());
                if !self.last_said.contains(&reason) {
                    log(&reason);
                    self.shared().stats.error("watch");
                }
                self.last_said = vec![reason];
            }
        }
    }

    /// The install (until one has succeeded), else the conf dir alone. Returns false when it
    /// failed and should be tried again soon.
    fn reconcile(&mut self) -> bool {
        let mut out = Vec::new();
        let (result, step) = if self.installed {
            (
                run::reconcile_conf_dir(&self.o.install, &mut out),
                "reconcile",
            )
        } else {
            (run::run(&self.o.install, &mut out), "install")
        };
        let text = String::from_utf8_lossy(&out).into_owned();
        match result {
            Ok(outcome) => {
                let first = !self.installed;
                self.installed = true;
                self.settle(&outcome, first, &text);
                true
            }
            Err(e) => {
                let reason = format!("{step} failed: {e}");
                if self.last_said != [reason.clone()] {
                    log(format!("{text}{reason}"));
                }
                self.last_said = vec![reason.clone()];
                let mut s = self.shared();
                s.stats.error(step);
                s.stats.ready = false;
                s.reasons = vec![reason];
                false
            }
        }
    }

    fn settle(&mut self, outcome: &Outcome, first: bool, text: &str) {
        let mut reasons = outcome.not_ready.clone();
        if outcome.managed.is_empty() && reasons.is_empty() {
            reasons.push(format!(
                "waiting for the primary CNI: no IPvlan-based network in {}{}",
                self.o.install.conf_dir.display(),
                if self.o.install.networks.is_empty() {
                    String::new()
                } else {
                    " named with --network".into()
                }
            ));
        }
        if first || outcome.changed > 0 || reasons != self.last_said {
            for line in text.lines().filter(|l| !l.starts_with("unchanged")) {
                log(line);
            }
            for r in &reasons {
                log(format!("not ready: {r}"));
            }
            if reasons.is_empty() {
                log(format!(
                    "ready: the entry is in place in {}",
                    outcome.managed.join(", ")
                ));
            }
        }
        self.last_said = reasons.clone();
        let mut s = self.shared();
        if first {
            s.stats.installs += 1;
        } else if outcome.changed > 0 {
            s.stats.reinserts += 1;
        }
        s.stats.ready = reasons.is_empty();
        s.stats.managed = outcome.managed.len() as u64;
        s.stats.not_ready = outcome.not_ready.len() as u64;
        s.managed = outcome.managed.clone();
        s.reasons = reasons;
    }

    fn state_dir(&self) -> Result<Option<StateDir>, String> {
        StateDir::existing(Path::new(self.o.state_dir())).map_err(|e| e.to_string())
    }

    /// One sweep of the state directory, as `tombstone sweep` does, in this process.
    fn sweep(&mut self) {
        self.scan();
        let started = Instant::now();
        let result = self.state_dir().and_then(|dir| match dir {
            None => Ok(sweep::SweepReport::default()),
            Some(dir) => {
                let nl = tombstone_kernel::Netlink::open()
                    .map_err(|e| format!("cannot open netlink: {e}"))?;
                sweep::sweep_all_in(&dir, &nl, now_ms(), false).map_err(|e| e.to_string())
            }
        });
        let took = started.elapsed().as_secs_f64();
        {
            let mut s = self.shared();
            s.stats.sweeps += 1;
            s.stats.sweep_seconds_sum += took;
            s.stats.last_sweep_seconds = took;
            match &result {
                Ok(r) => {
                    s.stats.orphans_removed += r.orphans as u64;
                    for _ in &r.errors {
                        s.stats.error("sweep");
                    }
                }
                Err(_) => s.stats.error("sweep"),
            }
        }
        match result {
            Ok(r) if r.errors.is_empty() => {
                if r.ended + r.orphans + r.dropped > 0 {
                    log(format!("sweep: {r}"));
                }
            }
            Ok(r) => log(format!("sweep: {r}; failures: {}", r.errors.join("; "))),
            Err(e) => log(format!("sweep failed: {e}")),
        }
        self.scan();
    }

    /// Reads every live tombstone (no lock, no write) and counts what changed since the
    /// last scan.
    fn scan(&mut self) {
        let result = self.state_dir().and_then(|dir| {
            let mut scan = Scan::new();
            let Some(dir) = dir else { return Ok(scan) };
            for stem in dir.records().map_err(|e| e.to_string())? {
                let Some(ledger) = store::peek(&dir, &stem).map_err(|e| e.to_string())? else {
                    continue;
                };
                for t in ledger.tombstones {
                    scan.insert(
                        (
                            ledger.network.clone(),
                            t.ip.to_string(),
                            t.container_id,
                            t.ifname,
                        ),
                        t.expires_at_ms,
                    );
                }
            }
            Ok(scan)
        });
        match result {
            Ok(scan) => {
                let delta = metrics::diff(&self.last_scan, &scan, now_ms());
                let mut s = self.shared();
                s.stats.add(&delta);
                s.stats.live = metrics::live(&scan);
                drop(s);
                self.last_scan = scan;
            }
            Err(e) => {
                log(format!(
                    "cannot read the state directory {}: {e}",
                    self.o.state_dir()
                ));
                self.shared().stats.error("scan");
            }
        }
    }

    /// SIGTERM or SIGINT: the entries stay (a rolling update's next pod takes over), unless
    /// `--uninstall-on-exit`.
    fn stop(&mut self, sig: i32) -> i32 {
        if !self.o.uninstall_on_exit {
            log(format!(
                "signal {sig}: stopping; the entries and binaries stay in place"
            ));
            return 0;
        }
        log(format!("signal {sig}: uninstalling (--uninstall-on-exit)"));
        let mut o = self.o.install.clone();
        o.uninstall = true;
        let mut out = Vec::new();
        let result = run::run(&o, &mut out);
        for line in String::from_utf8_lossy(&out).lines() {
            log(line);
        }
        match result {
            Ok(outcome) => outcome.exit_code(),
            Err(e) => {
                log(format!("uninstall failed: {e}"));
                e.exit_code()
            }
        }
    }
}
