//! The IPAM's part of the SIGKILL storm: `tombstone-ipam` ADD and DEL killed at random
//! points (seeded, reproducible), the runtime modelled around them (a killed ADD is followed
//! by the runtime's DEL, a killed DEL is retried until it succeeds), and at checkpoints the
//! state must hold exactly the live attachments' addresses, each once, with no stray file.
//! Run with `cargo test --release -p tombstone-ipam --test storm -- --include-ignored
//! --nocapture` (`STORM_KILLS`, `STORM_SEED`: see the plugin's `tests/common/kill.rs`).

mod common;
use tombstone_testkit::kill;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use kill::{Calibration, Leaks, Prng, Ran, Tally};
use serde_json::Value;

const NET: &str = "storm";
const MAX_LIVE: usize = 8;

#[derive(Clone, Debug)]
struct Att {
    cid: String,
    ifname: &'static str,
    /// What its ADD returned.
    ips: Vec<IpAddr>,
}

const L_LEAKED: &str = "allocation of no live attachment";
const L_MISSING: &str = "live attachment without its allocation";
const L_TWICE_STATE: &str = "address allocated twice in the state";
const L_TWICE_ADD: &str = "address given to a second live attachment";
const L_STRAY: &str = "stray file in the state directory";
const L_UNREADABLE: &str = "state unreadable";

struct Storm {
    data: PathBuf,
    conf: String,
    rng: Prng,
    quota: usize,
    live: Vec<Att>,
    next_id: usize,
    add: Tally,
    del: Tally,
    cal_add: Calibration,
    cal_del: Calibration,
    plain: BTreeMap<&'static str, usize>,
    leaks: Leaks,
    failures: Vec<String>,
    strays_seen: BTreeSet<String>,
    checkpoints: usize,
    steps: usize,
    reused: usize,
    released: BTreeSet<IpAddr>,
}

impl Storm {
    fn command(&self, verb: &str, a: &Att) -> std::process::Command {
        command(
            &bin(),
            &[
                ("CNI_COMMAND", verb),
                ("CNI_CONTAINERID", &a.cid),
                ("CNI_NETNS", "/var/run/netns/test"),
                ("CNI_IFNAME", a.ifname),
                ("CNI_PATH", "/opt/cni/bin"),
            ],
        )
    }

    fn run(&self, verb: &str, a: &Att, kill_after: Option<Duration>) -> Ran {
        kill::run(self.command(verb, a), self.conf.as_bytes(), kill_after)
    }

    fn state_bytes(&self) -> BTreeMap<String, Vec<u8>> {
        let mut s = snapshot(&self.data, NET);
        s.remove("tmp");
        s
    }

    /// Where a killed run was: each file it changes is a temporary file, then a rename.
    fn stage(&self, before: &BTreeMap<String, Vec<u8>>, _ran: &Ran) -> &'static str {
        let tmp = state_dir(&self.data, NET).join("tmp").exists();
        if self.state_bytes() != *before {
            "state changed"
        } else if tmp {
            "temporary file written, not renamed"
        } else {
            "before its state write"
        }
    }

    fn del_until_ok(&mut self, a: &Att, kill_first: bool) {
        for attempt in 0.. {
            let kill_this = if attempt == 0 {
                kill_first
            } else {
                attempt < 4 && self.rng.percent(50)
            };
            let before = self.state_bytes();
            let delay = kill_this.then(|| self.cal_del.delay(&mut self.rng));
            let ran = self.run("DEL", a, delay);
            if delay.is_some() {
                let stage = self.stage(&before, &ran);
                self.del.record(&ran, stage);
            } else {
                self.cal_del.sample(ran.elapsed);
                *self.plain.entry("DEL").or_default() += 1;
            }
            if ran.killed {
                continue;
            }
            if ran.ok() {
                return;
            }
            self.failures.push(format!(
                "DEL {} (attempt {attempt}) failed: {} {}",
                a.cid, ran.stdout, ran.stderr
            ));
            if attempt > 10 {
                return;
            }
        }
    }

    fn add_step(&mut self, kill: bool) {
        self.next_id += 1;
        let mut a = Att {
            cid: format!("ipam-storm-{:05}", self.next_id),
            ifname: if self.rng.percent(25) { "net1" } else { "eth0" },
            ips: vec![],
        };
        let before = self.state_bytes();
        let delay = kill.then(|| self.cal_add.delay(&mut self.rng));
        let ran = self.run("ADD", &a, delay);
        if delay.is_some() {
            let stage = self.stage(&before, &ran);
            self.add.record(&ran, stage);
        } else {
            self.cal_add.sample(ran.elapsed);
            *self.plain.entry("ADD").or_default() += 1;
        }
        if !ran.killed && ran.ok() {
            let result: Value = serde_json::from_str(&ran.stdout).expect("ADD result");
            for ip in result["ips"].as_array().expect("ips") {
                let ip: IpAddr = ip["address"]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                if let Some(other) = self.live.iter().find(|o| o.ips.contains(&ip)) {
                    let what = format!("{ip} to {} while {} holds it", a.cid, other.cid);
                    self.leaks.found(L_TWICE_ADD, what);
                }
                if self.released.remove(&ip) {
                    self.reused += 1;
                }
                a.ips.push(ip);
            }
            self.live.push(a);
            return;
        }
        if !ran.killed {
            self.failures.push(format!(
                "ADD {} failed: {} {}",
                a.cid, ran.stdout, ran.stderr
            ));
        }
        let kill_del = self.rng.percent(50);
        self.del_until_ok(&a, kill_del);
    }

    fn del_step(&mut self, kill: bool) {
        let i = self.rng.below(self.live.len());
        let a = self.live.swap_remove(i);
        self.del_until_ok(&a, kill);
        self.released.extend(a.ips.iter().copied());
    }

    /// The state's allocations must be exactly the live attachments' addresses.
    fn checkpoint(&mut self) {
        self.checkpoints += 1;
        let at = format!("checkpoint {}", self.checkpoints);
        // Every file whole (one record each), so no address can be held twice.
        let allocated = match state(&self.data, NET) {
            Ok(st) => st.allocs,
            Err(e) => {
                self.leaks.found(L_UNREADABLE, format!("{e} at {at}"));
                return;
            }
        };
        let mut expected: BTreeMap<IpAddr, (String, String)> = BTreeMap::new();
        for a in &self.live {
            for ip in &a.ips {
                expected.insert(*ip, (a.cid.clone(), a.ifname.to_string()));
            }
        }
        for (ip, owner) in &allocated {
            if expected.get(ip) != Some(owner) {
                self.leaks
                    .found(L_LEAKED, format!("{ip} held by {owner:?} at {at}"));
            }
        }
        for (ip, owner) in &expected {
            if allocated.get(ip) != Some(owner) {
                self.leaks
                    .found(L_MISSING, format!("{ip} of {owner:?} at {at}"));
            }
        }
        for f in stray_files(&self.data) {
            if self.strays_seen.insert(f.clone()) {
                self.leaks.found(L_STRAY, format!("{f} at {at}"));
            }
        }
    }

    fn figures(&self, elapsed: Duration) -> String {
        let mut s = format!(
            "tombstone-ipam SIGKILL storm (seed {:#x}, {} kills wanted per operation): {} steps, \
             {} checkpoints, {} addresses given again after a release, {:.1} s\n",
            kill::seed(),
            self.quota,
            self.steps,
            self.checkpoints,
            self.reused,
            elapsed.as_secs_f64()
        );
        s += &format!(
            "  delay ranges (0 to 1.25 x median run, half in its last 45%): ADD {:?}, DEL {:?}\n",
            self.cal_add.max_delay, self.cal_del.max_delay
        );
        s += &format!("  {}\n", self.add.line("tombstone-ipam ADD"));
        s += &format!("  {}\n", self.del.line("tombstone-ipam DEL"));
        s += &format!("  runs without a kill: {:?}\n", self.plain);
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
}

/// The files of the data directory other than what tombstone-ipam keeps there:
/// `<network>/tombstone-ipam.lock` and the state directory `<network>/tombstone-ipam.d/`
/// with its records (ipam/src/store.rs; host-local's own files would also be allowed,
/// none are made here). A temporary file left by a killed write is a stray file once a
/// later call has run.
fn stray_files(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for net in std::fs::read_dir(data).into_iter().flatten().flatten() {
        let name = net.file_name().to_string_lossy().into_owned();
        if name != NET || !net.path().is_dir() {
            out.push(name);
            continue;
        }
        for e in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let f = e.file_name().to_string_lossy().into_owned();
            if f != "tombstone-ipam.d" && f != "tombstone-ipam.lock" {
                out.push(format!("{NET}/{f}"));
            }
        }
    }
    if let Ok(st) = state(data, NET) {
        out.extend(
            st.strays
                .iter()
                .map(|f| format!("{NET}/tombstone-ipam.d/{f}")),
        );
    }
    out.sort();
    out
}

#[test]
#[ignore = "slow: the SIGKILL storm (run by make test with the ignored tests)"]
fn storm_sigkill_add_del_leaks_no_address() {
    let started = Instant::now();
    let data = data_dir("storm");
    // Small ranges (13 IPv4, 14 IPv6 addresses for up to 8 live attachments) and a short
    // cool-down: addresses are given again all the time, and the cool-down is exercised.
    let conf = conf(
        "1.1.0",
        NET,
        &data,
        r#""ranges":[[{"subnet":"10.12.0.0/28","gateway":"10.12.0.1"}],[{"subnet":"fd12::/124"}]],"reuseAfterSeconds":1"#,
    );
    let mut st = Storm {
        data,
        conf,
        rng: Prng::new(kill::seed() ^ 0x1BA4),
        quota: kill::kills_per_operation(),
        live: vec![],
        next_id: 0,
        add: Tally::default(),
        del: Tally::default(),
        cal_add: Calibration::new(),
        cal_del: Calibration::new(),
        plain: BTreeMap::new(),
        leaks: Leaks::default(),
        failures: vec![],
        strays_seen: BTreeSet::new(),
        checkpoints: 0,
        steps: 0,
        reused: 0,
        released: BTreeSet::new(),
    };
    for k in [
        L_LEAKED,
        L_MISSING,
        L_TWICE_STATE,
        L_TWICE_ADD,
        L_STRAY,
        L_UNREADABLE,
    ] {
        st.leaks.kind(k);
    }
    for _ in 0..6 {
        st.add_step(false);
    }
    for _ in 0..2 {
        st.del_step(false);
    }
    let every = (st.quota / 3).max(20);
    let mut next_checkpoint = every;
    while st.add.kills < st.quota || st.del.kills < st.quota {
        st.steps += 1;
        let can_add = st.live.len() < MAX_LIVE;
        let mut choices = Vec::new();
        if st.add.kills < st.quota && can_add {
            choices.push("ADD");
        }
        if st.del.kills < st.quota && !st.live.is_empty() {
            choices.push("DEL");
        }
        let kill = !choices.is_empty() && !st.rng.percent(16);
        let op = match choices.is_empty() {
            false => *st.rng.pick(&choices),
            true if can_add => "ADD",
            true => "DEL",
        };
        match op {
            "ADD" => st.add_step(kill),
            _ => st.del_step(kill),
        }
        if st.add.kills + st.del.kills >= next_checkpoint {
            st.checkpoint();
            next_checkpoint += every;
            st.cal_add.forget_old(40);
            st.cal_del.forget_old(40);
        }
    }
    st.checkpoint();
    let figures = st.figures(started.elapsed());
    println!("{figures}");
    assert!(
        st.add.killed_before_exit > 0 && st.del.killed_before_exit > 0,
        "no kill landed inside a run: the delays are miscalibrated\n{figures}"
    );
    assert!(
        st.leaks.total() == 0 && st.failures.is_empty(),
        "the storm left leaks or failed operations\n{figures}"
    );
    let _ = std::fs::remove_dir_all(&st.data);
}
