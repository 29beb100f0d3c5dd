//! Crash and concurrency proofs of `tombstone` against the real kernel, each in a fresh
//! network namespace: a SIGKILL storm with the runtime modelled around it, 200 concurrent
//! DEL/ADD/GC with a `tables` change in between, sweeps racing DELs of new networks, and two
//! state directories on one node. Root only; run with
//! `cargo test --release -p tombstone --test storm -- --include-ignored --nocapture`
//! (`STORM_KILLS`, `STORM_SEED`: see `common::kill`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::kill::{self, Landed, Prng, Ran};
use common::storm::{self, Model, Op, Retry};
use common::*;
use serde_json::{Value, json};

/// The storm tombstones in two tables, so a kill can also land between two routes.
const TABLES: [u32; 2] = [254, 100];
const MAX_LIVE: usize = 8;

/// One attachment of the modelled runtime.
#[derive(Clone, Debug)]
struct Att {
    cid: String,
    ifname: &'static str,
    ips: Vec<IpAddr>,
}

impl Att {
    fn cidrs(&self) -> Vec<String> {
        self.ips
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(_) => format!("{ip}/24"),
                IpAddr::V6(_) => format!("{ip}/64"),
            })
            .collect()
    }

    fn key(&self) -> (String, String, Vec<IpAddr>) {
        let mut ips = self.ips.clone();
        ips.sort();
        (self.cid.clone(), self.ifname.to_string(), ips)
    }
}

fn prev_of(ips: &[String]) -> Value {
    prev_result(&ips.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The runtime, the address pool (an IPAM that reuses addresses across attachments at
/// once, so ADDs keep meeting tombstones) and the figures.
struct Storm<'a> {
    ns: &'a Netns,
    kit: storm::Storm,
    live: Vec<Att>,
    free: Vec<IpAddr>,
    /// Released by a DEL that succeeded and not given out since: must be tombstoned.
    must: BTreeSet<IpAddr>,
    /// May be tombstoned (its hold was ended by hand, or its DEL followed a killed ADD).
    may: BTreeSet<IpAddr>,
    next_id: usize,
    del: Op,
    add: Op,
    sweep: Op,
    unnamed_seen: BTreeSet<(IpAddr, u32)>,
    live_tombstoned_seen: BTreeSet<(IpAddr, u32)>,
}

const L_UNNAMED_BETWEEN: &str = "route unnamed by any ledger (between ops)";
const L_LIVE_TOMBSTONED: &str = "address of a live attachment tombstoned";
const L_UNNAMED: &str = "route unnamed by any ledger (checkpoint)";
const L_NO_ROUTE: &str = "ledger tombstone without its route";
const L_MISSING: &str = "released address without its tombstones";
const L_NEVER_RELEASED: &str = "tombstone of an address never released";
const L_RECORD_DEAD: &str = "attachment record of no live attachment";
const L_RECORD_MISSING: &str = "live attachment without its record";
const L_ROUTE_AFTER: &str = "route left after every hold ended";
const L_TOMB_AFTER: &str = "tombstone left after every hold ended";
const L_STRAY: &str = "stray file in the state directory";

impl<'a> Storm<'a> {
    fn new(ns: &'a Netns) -> Storm<'a> {
        let mut free: Vec<IpAddr> = (10..26)
            .map(|i| format!("10.10.0.{i}").parse().unwrap())
            .collect();
        free.extend((0x10..0x18).map(|i| format!("fd10::{i:x}").parse::<IpAddr>().unwrap()));
        let kinds = [
            L_UNNAMED_BETWEEN,
            L_LIVE_TOMBSTONED,
            L_UNNAMED,
            L_NO_ROUTE,
            L_MISSING,
            L_NEVER_RELEASED,
            L_RECORD_DEAD,
            L_RECORD_MISSING,
            L_ROUTE_AFTER,
            L_TOMB_AFTER,
            L_STRAY,
        ];
        Storm {
            ns,
            kit: storm::Storm::new(0, &kinds),
            live: Vec::new(),
            free,
            must: BTreeSet::new(),
            may: BTreeSet::new(),
            next_id: 0,
            del: Op::new("DEL", "tombstone DEL"),
            add: Op::new("ADD", "tombstone ADD"),
            sweep: Op::new("sweep", "tombstone sweep"),
            unnamed_seen: BTreeSet::new(),
            live_tombstoned_seen: BTreeSet::new(),
        }
    }

    fn conf(&self, prev: Option<&Att>) -> Value {
        let mut c = self
            .ns
            .conf(json!({"tables": ["main", 100], "holdSeconds": 3600}));
        if let Some(a) = prev {
            c["prevResult"] = prev_of(&a.cidrs());
        }
        c
    }

    fn dir(&self) -> &std::path::Path {
        &self.ns.state_dir
    }

    fn ledgers(&self) -> Ledgers {
        Ledgers::read(self.dir())
    }

    /// A new attachment with free addresses: an IPv4 one, and half the time an IPv6 one;
    /// mostly addresses still tombstoned, so the ADD has work to be killed in.
    fn new_attachment(&mut self) -> Option<Att> {
        let mut ips = Vec::new();
        for v6 in [false, true] {
            if v6 && !self.kit.rng.percent(50) {
                continue;
            }
            let fam: Vec<IpAddr> = self
                .free
                .iter()
                .copied()
                .filter(|ip| ip.is_ipv6() == v6)
                .collect();
            if fam.is_empty() {
                return None;
            }
            let buried: Vec<IpAddr> = fam
                .iter()
                .copied()
                .filter(|ip| self.must.contains(ip) || self.may.contains(ip))
                .collect();
            let ip = if !buried.is_empty() && self.kit.rng.percent(70) {
                *self.kit.rng.pick(&buried)
            } else {
                *self.kit.rng.pick(&fam)
            };
            ips.push(ip);
        }
        self.free.retain(|ip| !ips.contains(ip));
        self.next_id += 1;
        Some(Att {
            cid: format!("storm-{:05}", self.next_id),
            ifname: if self.kit.rng.percent(25) {
                "net1"
            } else {
                "eth0"
            },
            ips,
        })
    }

    fn release(&mut self, a: &Att, surely_tombstoned: bool) {
        for ip in &a.ips {
            if surely_tombstoned {
                self.must.insert(*ip);
                self.may.remove(ip);
            } else {
                self.may.insert(*ip);
                self.must.remove(ip);
            }
            self.free.push(*ip);
        }
    }

    fn run(&self, verb: &str, a: &Att, conf: &Value, kill_after: Option<Duration>) -> Ran {
        kill::run(
            self.ns.cni(verb, &a.cid, a.ifname),
            conf.to_string().as_bytes(),
            kill_after,
        )
    }

    /// Whether the killed run left a temporary ledger file (`<name>.json.tmp`: the head's,
    /// or an entry's in `pods.d/`; one writer at a time holds the network's lock).
    fn left_tmp(&self, _ran: &Ran) -> bool {
        let tmp = |n: &std::ffi::OsStr| n.to_string_lossy().ends_with(".json.tmp");
        self.dir().join("pods.json.tmp").exists()
            || std::fs::read_dir(self.dir().join("pods.d"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| tmp(&e.file_name()))
    }

    /// Where a killed DEL of `a` was.
    fn del_stage(&self, a: &Att, ran: &Ran) -> &'static str {
        if self.left_tmp(ran) {
            return "temporary ledger written, not renamed";
        }
        let l = self.ledgers();
        let written = l.tombstones().iter().any(|(ip, _, cid, ifname, _)| {
            a.ips.contains(ip) && *cid == a.cid && ifname == a.ifname
        });
        let routes = self.ns.routes84();
        let want = a.ips.len() * TABLES.len();
        let installed = a
            .ips
            .iter()
            .flat_map(|ip| TABLES.iter().map(move |t| (*ip, *t)))
            .filter(|r| routes.contains(r))
            .count();
        match (written, installed) {
            (false, _) => "before its ledger write",
            (true, 0) => "ledger written, no route yet",
            (true, n) if n < want => "ledger written, some routes",
            _ => "every route installed",
        }
    }

    /// DEL of `a` until it succeeds, as a runtime retries it ([`Retry`]: the first attempt
    /// killed when `kill_first`). `cached`: the runtime has the attachment's result (a
    /// retried DEL sends it; the DEL after a failed ADD has none).
    fn del_until_ok(&mut self, a: &Att, kill_first: bool, cached: bool) {
        let mut retry = Retry::new(kill_first);
        let what = format!("DEL {}", a.cid);
        loop {
            let kill = retry.kill_next(&mut self.kit.rng);
            // A runtime that lost its cache sends no prevResult: the ledger's record answers.
            let with_prev = cached && self.kit.rng.percent(80);
            let conf = self.conf(with_prev.then_some(a));
            let delay = self.del.delay(kill, &mut self.kit.rng);
            let ran = self.run("DEL", a, &conf, delay);
            let stage = delay.map(|_| self.del_stage(a, &ran));
            self.del.record(&ran, stage);
            if retry.over(&ran, &what, &mut self.kit.failures) {
                return;
            }
        }
    }

    /// Where a killed ADD of `a` was; `had`: how many of its routes existed before.
    fn add_stage(&self, a: &Att, had: usize, ran: &Ran) -> &'static str {
        if self.left_tmp(ran) {
            return "temporary ledger written, not renamed";
        }
        let l = self.ledgers();
        let recorded = l
            .attachments()
            .iter()
            .any(|(cid, ifname, _)| *cid == a.cid && ifname == a.ifname);
        let routes = self.ns.routes84();
        let left = routes.iter().filter(|(ip, _)| a.ips.contains(ip)).count();
        let named = l.tombstones().iter().any(|(ip, ..)| a.ips.contains(ip));
        if !recorded {
            "before its attachment record"
        } else if left > 0 && left == had {
            "recorded, no route removed yet"
        } else if left > 0 {
            "recorded, some routes removed"
        } else if named {
            "routes removed, ledger not yet"
        } else if had > 0 {
            "routes removed, ledger updated"
        } else {
            "recorded, nothing to remove"
        }
    }

    /// ADD of a new attachment (killed when `kill`); a failed ADD is followed by the
    /// runtime's DEL, retried until it succeeds.
    fn add_step(&mut self, kill: bool) {
        let Some(a) = self.new_attachment() else {
            return;
        };
        let had = self
            .ns
            .routes84()
            .iter()
            .filter(|(ip, _)| a.ips.contains(ip))
            .count();
        let conf = self.conf(Some(&a));
        let delay = self.add.delay(kill, &mut self.kit.rng);
        let ran = self.run("ADD", &a, &conf, delay);
        let stage = delay.map(|_| self.add_stage(&a, had, &ran));
        self.add.record(&ran, stage);
        if !ran.killed && ran.ok() {
            for ip in &a.ips {
                self.must.remove(ip);
                self.may.remove(ip);
            }
            self.live.push(a);
            return;
        }
        self.kit
            .failed_unless_killed(&ran, &format!("ADD {}", a.cid));
        let kill_del = self.kit.rng.percent(50);
        self.del_until_ok(&a, kill_del, false);
        self.release(&a, false);
    }

    fn del_step(&mut self, kill: bool) {
        let i = self.kit.rng.below(self.live.len());
        let a = self.live.swap_remove(i);
        self.del_until_ok(&a, kill, true);
        self.release(&a, true);
    }

    /// A sweep as a timer runs it (killed when `kill`), after some holds were ended by hand
    /// so it has work to be killed in.
    fn sweep_step(&mut self, kill: bool) {
        let chosen: BTreeSet<IpAddr> = self
            .ledgers()
            .tombstones()
            .iter()
            .map(|t| t.0)
            .filter(|_| self.kit.rng.percent(60))
            .collect();
        let ended = expire(self.dir(), |ip| chosen.contains(&ip));
        for ip in ended {
            self.must.remove(&ip);
            self.may.insert(ip);
        }
        let before: BTreeSet<(IpAddr, u32)> = self
            .ns
            .routes84()
            .into_iter()
            .filter(|(ip, _)| chosen.contains(ip))
            .collect();
        let dir = self.dir().to_str().unwrap().to_string();
        let delay = self.sweep.delay(kill, &mut self.kit.rng);
        let ran = kill::run(
            self.ns.command(&[], &["sweep", "--state-dir", &dir]),
            b"",
            delay,
        );
        let stage = delay.map(|_| {
            let routes = self.ns.routes84();
            let gone = before.iter().filter(|r| !routes.contains(r)).count();
            let still_named = self
                .ledgers()
                .tombstones()
                .iter()
                .filter(|t| chosen.contains(&t.0))
                .count();
            if self.left_tmp(&ran) {
                "temporary ledger written, not renamed"
            } else if chosen.is_empty() {
                "nothing expired"
            } else if gone == 0 && still_named == chosen.len() {
                "before any route deleted"
            } else if still_named > 0 {
                "routes deleted, ledger not saved"
            } else {
                "ledger saved"
            }
        });
        self.sweep.record(&ran, stage);
        self.kit.failed_unless_killed(&ran, "sweep");
    }

    /// After every operation (and its recovery): no route that no ledger names, no
    /// tombstone on a live attachment's address.
    fn check_between(&mut self) {
        let routes = self.ns.routes84();
        let named = self.ledgers().named();
        for r in routes.difference(&named) {
            if self.unnamed_seen.insert(*r) {
                let what = format!("{} table {} (after step {})", r.0, r.1, self.kit.steps);
                self.kit.leaks.found(L_UNNAMED_BETWEEN, what);
            }
        }
        let live: BTreeSet<IpAddr> = self.live.iter().flat_map(|a| a.ips.clone()).collect();
        for r in routes.iter().filter(|(ip, _)| live.contains(ip)) {
            if self.live_tombstoned_seen.insert(*r) {
                let what = format!("{} table {} (after step {})", r.0, r.1, self.kit.steps);
                self.kit.leaks.found(L_LIVE_TOMBSTONED, what);
            }
        }
    }

    fn plain_sweep(&mut self) {
        let dir = self.dir().to_str().unwrap().to_string();
        let ran = kill::run(
            self.ns.command(&[], &["sweep", "--state-dir", &dir]),
            b"",
            None,
        );
        self.sweep.record(&ran, None);
        self.kit.failed_unless_killed(&ran, "sweep");
    }

    /// A timer's sweep heals what killed runs left; then the ledger must equal the kernel
    /// and the model, and once every hold is ended nothing may be left.
    fn checkpoint(&mut self) {
        let at = self.kit.checkpoint_name();
        self.plain_sweep();
        let l = self.ledgers();
        let routes = self.ns.routes84();
        let named = l.named();
        for r in routes.difference(&named) {
            self.kit
                .leaks
                .found(L_UNNAMED, format!("{} table {} at {at}", r.0, r.1));
        }
        for r in named.difference(&routes) {
            self.kit
                .leaks
                .found(L_NO_ROUTE, format!("{} table {} at {at}", r.0, r.1));
        }
        for ip in self.must.clone() {
            for t in TABLES {
                if !named.contains(&(ip, t)) || !routes.contains(&(ip, t)) {
                    self.kit
                        .leaks
                        .found(L_MISSING, format!("{ip} table {t} at {at}"));
                }
            }
        }
        for (ip, ..) in l.tombstones() {
            if !self.must.contains(&ip) && !self.may.contains(&ip) {
                self.kit
                    .leaks
                    .found(L_NEVER_RELEASED, format!("{ip} at {at}"));
            }
        }
        let records = l.attachments();
        let expected: BTreeSet<_> = self.live.iter().map(Att::key).collect();
        for r in records.difference(&expected) {
            self.kit
                .leaks
                .found(L_RECORD_DEAD, format!("{r:?} at {at}"));
        }
        for r in expected.difference(&records) {
            self.kit
                .leaks
                .found(L_RECORD_MISSING, format!("{r:?} at {at}"));
        }
        // End every hold.
        expire(self.dir(), |_| true);
        self.plain_sweep();
        for r in self.ns.routes84() {
            self.kit
                .leaks
                .found(L_ROUTE_AFTER, format!("{} table {} at {at}", r.0, r.1));
        }
        for (ip, tables, cid, ..) in self.ledgers().tombstones() {
            self.kit
                .leaks
                .found(L_TOMB_AFTER, format!("{ip} {tables:?} of {cid} at {at}"));
        }
        self.must.clear();
        self.may.clear();
        self.unnamed_seen.clear();
        let strays = stray_files(self.dir());
        self.kit.strays(L_STRAY, strays, &at);
    }

    fn figures(&self, elapsed: Duration) -> String {
        let ops = [&self.del, &self.add, &self.sweep];
        self.kit.figures("tombstone", "", &ops, elapsed)
    }
}

impl Model for Storm<'_> {
    fn parts(&mut self) -> storm::Parts<'_> {
        let ops = vec![&mut self.add, &mut self.del, &mut self.sweep];
        (&mut self.kit, ops, self.live.len())
    }

    fn step(&mut self, verb: &str, kill: bool) {
        match verb {
            "ADD" => self.add_step(kill),
            "DEL" => self.del_step(kill),
            _ => self.sweep_step(kill),
        }
    }

    /// A sweep with no tombstone to end has little to be killed in: mostly skip those.
    fn worth_a_kill(&mut self, _sweep: &str) -> bool {
        !self.ledgers().tombstones().is_empty() || self.kit.rng.percent(20)
    }

    fn warmed_up(&mut self) {
        self.plain_sweep();
        self.plain_sweep();
    }

    fn after_step(&mut self) {
        self.check_between();
    }

    fn checkpoint(&mut self) {
        Storm::checkpoint(self);
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn storm_sigkill_del_add_sweep_leaks_nothing() {
    require_root();
    let ns = Netns::new();
    let started = Instant::now();
    let mut st = Storm::new(&ns);
    storm::drive(&mut st, MAX_LIVE);
    let figures = st.figures(started.elapsed());
    println!("{figures}");
    st.kit.assert_clean(&[&st.del, &st.add], &figures);
}

// ---------------------------------------------------------------------------------------
// 200 concurrent DEL/ADD/GC on one network, with a `tables` change in between.

/// One process of a wave.
struct Job {
    verb: &'static str,
    cid: String,
    ips: Vec<String>,
    /// GC: the valid attachments.
    valid: Vec<String>,
}

fn v4(i: usize) -> String {
    format!("10.10.0.{}/24", 10 + i)
}

/// The old attachments' addresses: IPv4, and every fifth also IPv6.
fn old_ips(i: usize) -> Vec<String> {
    let mut ips = vec![v4(i)];
    if i.is_multiple_of(5) {
        ips.push(format!("fd10::{:x}/64", 0x10 + i));
    }
    ips
}

fn launch_wave(
    ns: &Netns,
    rng: &mut Prng,
    mut jobs: Vec<Job>,
    tables: [Value; 2],
    wave: &str,
) -> Vec<Landed> {
    rng.shuffle(&mut jobs);
    let half = jobs.len() / 2;
    let mut flights = Vec::new();
    for (n, j) in jobs.iter().enumerate() {
        // The config changes midway through the spawns.
        let t = &tables[usize::from(n >= half)];
        let mut conf = ns.conf(json!({"tables": t, "holdSeconds": 3600}));
        if !j.ips.is_empty() {
            conf["prevResult"] = prev_of(&j.ips);
        }
        let cmd = if j.verb == "GC" {
            conf["cni.dev/valid-attachments"] = j
                .valid
                .iter()
                .map(|c| json!({"containerID": c, "ifname": "eth0"}))
                .collect();
            ns.command(
                &[
                    ("CNI_COMMAND", "GC"),
                    ("CNI_CONTAINERID", ""),
                    ("CNI_IFNAME", ""),
                    ("CNI_NETNS", ""),
                ],
                &[],
            )
        } else {
            ns.cni(j.verb, &j.cid, "eth0")
        };
        let label = format!("{wave} #{n} {} {} tables {t}", j.verb, j.cid);
        flights.push(kill::launch(cmd, conf.to_string().as_bytes(), label));
    }
    kill::land_all(
        flights,
        Instant::now() + Duration::from_secs(60),
        Some(&ns.state_dir),
    )
}

#[test]
#[ignore = "needs root: network namespaces"]
fn concurrent_200_del_add_gc_with_a_tables_change_leave_the_ledger_equal_to_the_kernel() {
    require_root();
    let ns = Netns::new();
    let mut rng = Prng::new(kill::seed());
    let started = Instant::now();
    let old = |i: usize| format!("old-{i:02}");
    let new = |i: usize| format!("new-{i:02}");
    let again = |i: usize| format!("reuse-{i:02}");
    // 50 live attachments.
    for i in 0..50 {
        let conf = ns.conf_with_prev(
            json!({"holdSeconds": 3600}),
            &old_ips(i).iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let out = ns.run("ADD", &old(i), &conf);
        assert_eq!(out.code, 0, "ADD {}: {} {}", old(i), out.stdout, out.stderr);
    }
    let mut landed = Vec::new();
    // Wave 1 (100 at once): old-00..24 deleted twice (a runtime's retry), under both
    // configs; 25 ADDs of new attachments; 25 GCs that know old-00..24 are gone.
    let mut jobs = Vec::new();
    let valid1: Vec<String> = (25..50).map(old).chain((0..25).map(new)).collect();
    for i in 0..25 {
        for _ in 0..2 {
            jobs.push(Job {
                verb: "DEL",
                cid: old(i),
                ips: old_ips(i),
                valid: vec![],
            });
        }
        jobs.push(Job {
            verb: "ADD",
            cid: new(i),
            ips: vec![format!("10.10.0.{}/24", 100 + i)],
            valid: vec![],
        });
        jobs.push(Job {
            verb: "GC",
            cid: String::new(),
            ips: vec![],
            valid: valid1.clone(),
        });
    }
    landed.extend(launch_wave(
        &ns,
        &mut rng,
        jobs,
        [json!(["main", 100]), json!(["main"])],
        "wave 1",
    ));
    // Wave 2 (100 at once): the addresses old-00..24 released are given to new attachments;
    // old-25..49 deleted twice; 25 GCs. The config changes back midway.
    let mut jobs = Vec::new();
    let valid2: Vec<String> = (0..25).map(new).chain((0..25).map(again)).collect();
    for i in 0..25 {
        jobs.push(Job {
            verb: "ADD",
            cid: again(i),
            ips: old_ips(i),
            valid: vec![],
        });
        for _ in 0..2 {
            jobs.push(Job {
                verb: "DEL",
                cid: old(25 + i),
                ips: old_ips(25 + i),
                valid: vec![],
            });
        }
        jobs.push(Job {
            verb: "GC",
            cid: String::new(),
            ips: vec![],
            valid: valid2.clone(),
        });
    }
    landed.extend(launch_wave(
        &ns,
        &mut rng,
        jobs,
        [json!(["main"]), json!(["main", 100])],
        "wave 2",
    ));

    let mut problems: Vec<String> = landed
        .iter()
        .filter(|l| !l.ok())
        .map(Landed::describe)
        .collect();
    let hung = landed.iter().filter(|l| l.hung.is_some()).count();
    let failed = problems.len() - hung;
    let routes = ns.routes84();
    let ledgers = Ledgers::read(&ns.state_dir);
    let named = ledgers.named();
    for r in routes.difference(&named) {
        problems.push(format!("route {} table {} is named by no ledger", r.0, r.1));
    }
    for r in named.difference(&routes) {
        problems.push(format!(
            "ledger names {} table {}, the kernel has no such route",
            r.0, r.1
        ));
    }
    let tombstoned: BTreeSet<IpAddr> = ledgers.tombstones().iter().map(|t| t.0).collect();
    let mut live: Vec<(String, Vec<String>)> = (0..25)
        .map(|i| (new(i), vec![format!("10.10.0.{}/24", 100 + i)]))
        .collect();
    live.extend((0..25).map(|i| (again(i), old_ips(i))));
    for (cid, ips) in &live {
        for cidr in ips {
            let ip: IpAddr = cidr.split('/').next().unwrap().parse().unwrap();
            if tombstoned.contains(&ip) || routes.iter().any(|r| r.0 == ip) {
                let tables: Vec<u32> = routes.iter().filter(|r| r.0 == ip).map(|r| r.1).collect();
                problems.push(format!(
                    "{ip}: last operation ADD ({cid}), still tombstoned (routes in tables {tables:?}, ledger {})",
                    tombstoned.contains(&ip)
                ));
            }
        }
    }
    for i in 25..50 {
        for cidr in old_ips(i) {
            let ip: IpAddr = cidr.split('/').next().unwrap().parse().unwrap();
            if !routes.contains(&(ip, 254)) {
                problems.push(format!(
                    "{ip}: last operation DEL ({}), no tombstone",
                    old(i)
                ));
            }
        }
    }
    let records: BTreeSet<String> = ledgers.attachments().into_iter().map(|r| r.0).collect();
    let want: BTreeSet<String> = live.iter().map(|l| l.0.clone()).collect();
    if records != want {
        problems.push(format!(
            "attachment records differ from the live attachments: extra {:?}, missing {:?}",
            records.difference(&want).collect::<Vec<_>>(),
            want.difference(&records).collect::<Vec<_>>()
        ));
    }
    let mut checks_failed = 0;
    for (cid, ips) in &live {
        let conf = ns.conf_with_prev(
            json!({"tables": ["main"]}),
            &ips.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let out = ns.run("CHECK", cid, &conf);
        if out.code != 0 {
            checks_failed += 1;
            problems.push(format!("CHECK {cid} failed: {}", out.stdout.trim()));
        }
    }
    let figures = format!(
        "200 concurrent DEL/ADD/GC (+50 ADDs before): {} processes, {} failed, {} hung, \
         {} protocol-84 routes, {} named by the ledger, {} CHECKs of 50 failed, {:.1} s",
        landed.len(),
        failed,
        hung,
        routes.len(),
        named.len(),
        checks_failed,
        started.elapsed().as_secs_f64()
    );
    println!("{figures}");
    for p in problems.iter().take(40) {
        println!("  {p}");
    }
    assert!(
        problems.is_empty(),
        "{figures}\n{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// Sweeps never deadlock.

#[test]
#[ignore = "needs root: network namespaces"]
fn sweeps_and_the_background_sweeper_never_deadlock_with_dels_of_new_networks() {
    require_root();
    let ns = Netns::new();
    let dir = ns.state_dir.to_str().unwrap().to_string();
    let run_for = Duration::from_secs(12);
    let timeout = Duration::from_secs(15);
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let counter = AtomicUsize::new(0);
    let runs: Mutex<BTreeMap<&str, usize>> = Mutex::new(BTreeMap::new());
    let bad: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let seed = kill::seed();
    // One run at a time per thread, each with a deadline: a hang is reported, not waited.
    let one = |cmd: std::process::Command, stdin: Vec<u8>, label: String, kind: &'static str| {
        let landed = kill::land_all(
            vec![kill::launch(cmd, &stdin, label)],
            Instant::now() + timeout,
            Some(&ns.state_dir),
        );
        *runs.lock().unwrap().entry(kind).or_default() += 1;
        let l = &landed[0];
        if !l.ok() {
            bad.lock().unwrap().push(l.describe());
            if l.hung.is_some() {
                stop.store(true, Ordering::SeqCst);
            }
        }
    };
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (ns, stop, counter, one) = (&ns, &stop, &counter, &one);
            s.spawn(move || {
                let mut rng = Prng::new(seed ^ (t + 1));
                while !stop.load(Ordering::SeqCst) && started.elapsed() < run_for {
                    // A new network per DEL: a new ledger appears while sweeps hold others;
                    // random names, so it sorts anywhere among them.
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let net = format!("n{:08x}", rng.next_u64() as u32);
                    let ip = format!("10.11.{}.{}/24", n / 200, n % 200 + 1);
                    let conf = ns.conf_with_prev(
                        json!({"name": net, "holdSeconds": 1, "sweeper": true}),
                        &[&ip],
                    );
                    one(
                        ns.cni("DEL", &format!("c{n}"), "eth0"),
                        conf.to_string().into_bytes(),
                        format!("DEL of network {net}"),
                        "DEL",
                    );
                }
            });
        }
        for t in 0..3 {
            let (ns, stop, one, dir) = (&ns, &stop, &one, &dir);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) && started.elapsed() < run_for {
                    one(
                        ns.command(&[], &["sweep", "--state-dir", dir]),
                        vec![],
                        format!("sweep (thread {t})"),
                        "sweep",
                    );
                }
            });
        }
    });
    // The background sweeper ends the last holds (1 s) and exits by itself.
    let sweeper_exited = eventually(timeout.as_secs(), || {
        processes_with(&["--until-empty", &dir]).is_empty()
    });
    let mut bad = bad.into_inner().unwrap();
    if !sweeper_exited {
        for pid in processes_with(&["--until-empty", &dir]) {
            bad.push(format!(
                "background sweeper HUNG: {}",
                kill::waiting_in(pid, Some(&ns.state_dir))
            ));
            // Ours (started by a DEL of this test): ended by its id.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let networks = Ledgers::read(&ns.state_dir).files.len();
    let figures = format!(
        "sweeps vs DELs of new networks: runs {:?}, {} networks, background sweeper exited: \
         {sweeper_exited}, {} failed or hung, {:.1} s",
        runs.lock().unwrap(),
        networks,
        bad.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{figures}");
    assert!(bad.is_empty(), "{figures}\n  {}", bad.join("\n  "));
    assert!(runs.lock().unwrap().get("sweep").copied().unwrap_or(0) > 3);
}

// ---------------------------------------------------------------------------------------
// Two state directories; protocol-84 routes that no ledger configured.

#[test]
#[ignore = "needs root: network namespaces"]
fn a_sweep_of_one_state_directory_spares_another_and_routes_no_config_names() {
    require_root();
    let ns = Netns::new();
    let [a, b, c] = ["a", "b", "c"].map(|d| ns.state_dir.join(d));
    std::fs::create_dir_all(&c).unwrap();
    // Routes of protocol 84 that no tombstone config made: a `via` route, and reject routes
    // in a table no config names.
    ns.ip(&[
        "route",
        "add",
        "10.20.0.5/32",
        "via",
        "10.10.0.2",
        "proto",
        "84",
    ]);
    ns.ip(&[
        "route",
        "add",
        "unreachable",
        "10.30.0.7",
        "table",
        "777",
        "proto",
        "84",
    ]);
    ns.ip(&[
        "-6",
        "route",
        "add",
        "unreachable",
        "fd30::7",
        "table",
        "777",
        "proto",
        "84",
    ]);
    let foreign = ns.ip(&["-4", "route", "show", "table", "all", "proto", "84"])
        + &ns.ip(&["-6", "route", "show", "table", "all", "proto", "84"]);
    let del = |net: &str, dir: &std::path::Path, ip: &str| {
        let conf = ns.conf_with_prev(
            json!({"name": net, "stateDir": dir, "holdSeconds": 600, "sweeper": true}),
            &[ip],
        );
        ns.run("DEL", &format!("ctr-{net}"), &conf).ok_empty();
    };
    del("alpha", &a, "10.10.0.5/24");
    let alpha = ("10.10.0.5".parse::<IpAddr>().unwrap(), 254);
    let beta = ("10.10.0.6".parse::<IpAddr>().unwrap(), 254);
    // Each route reported once, when first seen gone.
    let problems = std::cell::RefCell::new(Vec::<String>::new());
    let gone = std::cell::RefCell::new(BTreeSet::<String>::new());
    let look = |when: &str| {
        let mut missing = Vec::new();
        let routes = ns.routes84();
        for (what, r) in [
            ("alpha's live tombstone", alpha),
            ("beta's live tombstone", beta),
        ] {
            if (!when.starts_with("before beta") || r != beta) && !routes.contains(&r) {
                missing.push(format!("{what} ({} table {})", r.0, r.1));
            }
        }
        let now = ns.ip(&["-4", "route", "show", "table", "all", "proto", "84"])
            + &ns.ip(&["-6", "route", "show", "table", "all", "proto", "84"]);
        for line in foreign.lines() {
            if !now.lines().any(|l| l == line) {
                missing.push(format!("the route no config names ({})", line.trim()));
            }
        }
        for m in missing {
            if gone.borrow_mut().insert(m.clone()) {
                problems
                    .borrow_mut()
                    .push(format!("{m} was removed: seen {when}"));
            }
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    look("before beta's DEL, 0.3 s after alpha's (alpha's background sweeper)");
    del("beta", &b, "10.10.0.6/24");
    // Beta's background sweeper (its own state directory) runs at once.
    std::thread::sleep(Duration::from_millis(500));
    look("0.5 s after beta's DEL (beta's background sweeper)");
    for (name, d) in [("b", &b), ("c (empty)", &c), ("a", &a)] {
        let out = run_in(
            Some(&ns.name),
            &[],
            b"",
            &["sweep", "--state-dir", d.to_str().unwrap()],
        );
        if out.code != 0 {
            let failed = format!("sweep of {name} failed: {}", out.stderr);
            problems.borrow_mut().push(failed);
        }
        look(&format!("after `tombstone sweep --state-dir {name}`"));
    }
    // Alpha's background sweeper wakes at most 5 s after its last pass.
    std::thread::sleep(Duration::from_millis(5500));
    look("5.5 s later (both background sweepers)");
    let mut problems = problems.into_inner();
    for (net, d, r) in [("alpha", &a, alpha), ("beta", &b, beta)] {
        let named = Ledgers::read(d).named();
        if !named.contains(&r) {
            problems.push(format!("{net}'s ledger lost its tombstone of {}", r.0));
        }
    }
    // The sweepers stay (holds of 600 s): end them, by their ids (this test's DELs started them).
    for d in [&a, &b] {
        for pid in processes_with(&["--until-empty", d.to_str().unwrap()]) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    println!(
        "two state directories: {} problems{}",
        problems.len(),
        problems
            .iter()
            .map(|p| format!("\n  {p}"))
            .collect::<String>()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
