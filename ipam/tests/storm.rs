//! The IPAM's part of the SIGKILL storm: `tombstone-ipam` ADD and DEL killed at random
//! points (seeded, reproducible), the runtime modelled around them (a killed ADD is followed
//! by the runtime's DEL, a killed DEL is retried until it succeeds), and at checkpoints the
//! state must hold exactly the live attachments' addresses, each once, with no stray file.
//! Run with `cargo test --release -p tombstone-ipam --test storm -- --include-ignored
//! --nocapture` (`STORM_KILLS`, `STORM_SEED`: see `tombstone_testkit::kill`).

mod common;
use tombstone_testkit::{kill, storm};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use kill::Ran;
use serde_json::Value;
use storm::{Model, Op, Retry};

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
    kit: storm::Storm,
    live: Vec<Att>,
    next_id: usize,
    add: Op,
    del: Op,
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

    /// DEL of `a` until it succeeds, as a runtime retries it ([`Retry`]).
    fn del_until_ok(&mut self, a: &Att, kill_first: bool) {
        let mut retry = Retry::new(kill_first);
        let what = format!("DEL {}", a.cid);
        loop {
            let kill = retry.kill_next(&mut self.kit.rng);
            let before = self.state_bytes();
            let delay = self.del.delay(kill, &mut self.kit.rng);
            let ran = self.run("DEL", a, delay);
            let stage = delay.map(|_| self.stage(&before, &ran));
            self.del.record(&ran, stage);
            if retry.over(&ran, &what, &mut self.kit.failures) {
                return;
            }
        }
    }

    fn add_step(&mut self, kill: bool) {
        self.next_id += 1;
        let mut a = Att {
            cid: format!("ipam-storm-{:05}", self.next_id),
            ifname: if self.kit.rng.percent(25) {
                "net1"
            } else {
                "eth0"
            },
            ips: vec![],
        };
        let before = self.state_bytes();
        let delay = self.add.delay(kill, &mut self.kit.rng);
        let ran = self.run("ADD", &a, delay);
        let stage = delay.map(|_| self.stage(&before, &ran));
        self.add.record(&ran, stage);
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
                    self.kit.leaks.found(L_TWICE_ADD, what);
                }
                if self.released.remove(&ip) {
                    self.reused += 1;
                }
                a.ips.push(ip);
            }
            self.live.push(a);
            return;
        }
        self.kit
            .failed_unless_killed(&ran, &format!("ADD {}", a.cid));
        let kill_del = self.kit.rng.percent(50);
        self.del_until_ok(&a, kill_del);
    }

    fn del_step(&mut self, kill: bool) {
        let i = self.kit.rng.below(self.live.len());
        let a = self.live.swap_remove(i);
        self.del_until_ok(&a, kill);
        self.released.extend(a.ips.iter().copied());
    }

    /// The state's allocations must be exactly the live attachments' addresses.
    fn checkpoint(&mut self) {
        let at = self.kit.checkpoint_name();
        // Every file whole (one record each), so no address can be held twice.
        let allocated = match state(&self.data, NET) {
            Ok(st) => st.allocs,
            Err(e) => {
                self.kit.leaks.found(L_UNREADABLE, format!("{e} at {at}"));
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
                self.kit
                    .leaks
                    .found(L_LEAKED, format!("{ip} held by {owner:?} at {at}"));
            }
        }
        for (ip, owner) in &expected {
            if allocated.get(ip) != Some(owner) {
                self.kit
                    .leaks
                    .found(L_MISSING, format!("{ip} of {owner:?} at {at}"));
            }
        }
        let strays = stray_files(&self.data);
        self.kit.strays(L_STRAY, strays, &at);
    }

    fn figures(&self, elapsed: Duration) -> String {
        let reused = format!("{} addresses given again after a release, ", self.reused);
        let ops = [&self.add, &self.del];
        self.kit.figures("tombstone-ipam", &reused, &ops, elapsed)
    }
}

impl Model for Storm {
    fn parts(&mut self) -> storm::Parts<'_> {
        (
            &mut self.kit,
            vec![&mut self.add, &mut self.del],
            self.live.len(),
        )
    }

    fn step(&mut self, verb: &str, kill: bool) {
        match verb {
            "ADD" => self.add_step(kill),
            _ => self.del_step(kill),
        }
    }

    fn checkpoint(&mut self) {
        Storm::checkpoint(self);
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
        kit: storm::Storm::new(
            0x1BA4,
            &[
                L_LEAKED,
                L_MISSING,
                L_TWICE_STATE,
                L_TWICE_ADD,
                L_STRAY,
                L_UNREADABLE,
            ],
        ),
        live: vec![],
        next_id: 0,
        add: Op::new("ADD", "tombstone-ipam ADD"),
        del: Op::new("DEL", "tombstone-ipam DEL"),
        reused: 0,
        released: BTreeSet::new(),
    };
    storm::drive(&mut st, MAX_LIVE);
    let figures = st.figures(started.elapsed());
    println!("{figures}");
    st.kit.assert_clean(&[&st.add, &st.del], &figures);
    let _ = std::fs::remove_dir_all(&st.data);
}
