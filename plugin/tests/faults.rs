//! Fault injection against the real kernel: for each `tombstone` operation (DEL, ADD lifting
//! a tombstone, `tombstone sweep`, GC), every call of every syscall it makes to the kernel or
//! the filesystem is made to fail in turn with `strace` (see `common/strace.rs`), each in a
//! fresh copy of the operation's starting state, and every run is judged:
//!
//! 1. exit non-zero with one CNI error object on stdout, or exit 0 with the state really the
//!    success state (exit 0 with anything else is a **false success**);
//! 2. afterwards every protocol-84 route is named by a ledger entry (no **stranded route**)
//!    and no entry that should survive is gone (no **lost ledger entry**). An entry whose
//!    route is missing is the documented intermediate state (DEL writes the entry before the
//!    route; ADD and the sweep delete the route before the entry): counted, not fatal, and
//!    the retry must heal it;
//! 3. the clean retry a runtime makes (DEL again; after a failed ADD its DEL, then the ADD)
//!    reaches the success state and leaves no temporary or stray file.
//!
//! Needs root and strace: `cargo test --release -p tombstone --test faults -- --include-ignored
//! --nocapture` prints the matrix of each operation and the totals.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::strace::{self, Answer, Op, Problems, Run, problem};
use common::*;
use serde_json::{Value, json};

/// A live tombstone of another pod, present in every starting state: nothing may lose it.
const BYSTANDER: &str = "10.10.0.9";
/// A protocol-84 route no ledger names (the sweep's starting state has it: an orphan).
const ORPHAN: &str = "10.10.0.8";
const POD: [&str; 2] = ["10.10.0.5/24", "fd10::5/64"];
const MAIN: u32 = 254;
const DANGLING: &str = "entries without their route (not fatal; healed by the retry)";
/// The files a state directory may hold once a retry has healed it.
const ALLOWED: [&str; 7] = [
    "pods.json",
    "pods.lock",
    "pods.d",
    "blue.json",
    "blue.lock",
    "blue.d",
    "state.dir.lock",
];

/// The files of the state directory that should not be there: beside [`ALLOWED`], what is
/// in a network's entry directory but an entry (a temporary file, one set aside).
fn strays(ns: &Netns) -> Vec<String> {
    let mut out = strace::stray_files(&ns.state_dir, &ALLOWED);
    out.extend(
        common::stray_files(&ns.state_dir)
            .into_iter()
            .filter(|f| f.contains('/')),
    );
    out
}

fn ip(s: &str) -> IpAddr {
    s.split('/').next().unwrap().parse().unwrap()
}

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

/// The (address, table) of every protocol-84 route of the namespace, both families.
fn routes(ns: &Netns) -> BTreeSet<(IpAddr, u32)> {
    let mut out = BTreeSet::new();
    for fam in ["-4", "-6"] {
        let text = ns.ip(&["-j", fam, "route", "show", "table", "all", "proto", "84"]);
        let list: Value = serde_json::from_str(&text).expect("ip -j prints JSON");
        for r in list.as_array().unwrap() {
            let table = match &r["table"] {
                Value::Null => MAIN,
                Value::String(s) if s == "main" => MAIN,
                Value::String(s) => s.parse().unwrap_or(0),
                Value::Number(n) => n.as_u64().unwrap_or(0) as u32,
                _ => 0,
            };
            out.insert((r["dst"].as_str().unwrap().parse().unwrap(), table));
        }
    }
    out
}

/// Every ledger of the state directory by head file name: the head's JSON with its entries
/// (see [`Ledgers::read`]), or why the head is unreadable.
fn ledgers(ns: &Netns) -> BTreeMap<String, Result<Value, String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&ns.state_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let v = std::fs::read(e.path())
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
            .map(|mut v| {
                for key in ["attachments", "tombstones"] {
                    if v.get(key).is_none() {
                        v[key] = json!([]);
                    }
                }
                for (file, entry) in entry_files(&ns.state_dir, stem) {
                    let key = match &file[..2] {
                        "t-" => "tombstones",
                        "a-" => "attachments",
                        _ => continue,
                    };
                    v[key].as_array_mut().unwrap().push(entry);
                }
                v
            });
        out.insert(name, v);
    }
    out
}

/// The (address, table) pairs a ledger's tombstones name (read loosely).
fn entries(l: &Value) -> BTreeSet<(IpAddr, u32)> {
    let mut out = BTreeSet::new();
    for t in l["tombstones"].as_array().into_iter().flatten() {
        let Some(ip) = t["ip"].as_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        for table in t["tables"].as_array().into_iter().flatten() {
            out.insert((ip, table.as_u64().unwrap_or(0) as u32));
        }
    }
    out
}

fn tombstoned(l: &Value) -> BTreeSet<IpAddr> {
    entries(l).into_iter().map(|(ip, _)| ip).collect()
}

/// The live attachment records (a record with `releasedAtMs` remembers a DEL that ran).
fn attachments(l: &Value) -> Vec<String> {
    let mut out: Vec<String> = l["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a.get("releasedAtMs").is_none())
        .map(|a| a["containerID"].as_str().unwrap_or("?").to_string())
        .collect();
    out.sort();
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// DEL of a pod with two addresses (and a neighbour entry), prevResult given.
    Del,
    /// ADD of a new pod given the two addresses while they are still tombstoned.
    Add,
    /// `tombstone sweep --state-dir D`: three expired tombstones in two networks, a live
    /// one, an orphan route.
    Sweep,
    /// GC with one of two attachments still valid.
    Gc,
    /// The first DEL on a node: no state directory yet, nothing else tombstoned.
    FirstDel,
}

struct Tomb(Kind);

fn conf(ns: &Netns, network: &str, extra: Value) -> Value {
    let mut c = ns.conf(extra);
    c["name"] = network.into();
    c
}

fn with_prev(mut c: Value, list: &[&str]) -> Value {
    c["prevResult"] = prev_result(list);
    c
}

fn must(o: Outcome, what: &str) -> Outcome {
    assert_eq!(o.code, 0, "setup {what}: {} {}", o.stdout, o.stderr);
    o
}

const GC_ENV: [(&str, &str); 4] = [
    ("CNI_COMMAND", "GC"),
    ("CNI_CONTAINERID", ""),
    ("CNI_IFNAME", ""),
    ("CNI_NETNS", ""),
];

impl Tomb {
    fn gc_conf(ns: &Netns) -> Value {
        let mut c = conf(ns, "pods", json!({}));
        c["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-b", "ifname": "eth0"}]);
        c
    }

    /// The success state of the operation (stdout aside).
    fn state_is_success(&self, ns: &Netns) -> Result<(), String> {
        let (want_routes, want_pods): (&[&str], &[&str]) = match self.0 {
            Kind::Del | Kind::Gc => (&[POD[0], POD[1], BYSTANDER], &[POD[0], POD[1], BYSTANDER]),
            Kind::Add | Kind::Sweep => (&[BYSTANDER], &[BYSTANDER]),
            Kind::FirstDel => (&POD, &POD),
        };
        let want: BTreeSet<(IpAddr, u32)> =
            ips(want_routes).into_iter().map(|i| (i, MAIN)).collect();
        let got = routes(ns);
        if got != want {
            return Err(format!("routes {got:?}, expected {want:?}"));
        }
        let ls = ledgers(ns);
        let pods = match ls.get("pods.json") {
            Some(Ok(v)) => v,
            other => return Err(format!("pods ledger: {other:?}")),
        };
        let want = ips(want_pods);
        if tombstoned(pods) != want {
            return Err(format!(
                "ledger tombstones {:?}, expected {want:?}",
                tombstoned(pods)
            ));
        }
        let att = attachments(pods);
        let want_att: &[&str] = match self.0 {
            Kind::Del | Kind::FirstDel => &[],
            Kind::Add => &["ctr-new"],
            Kind::Gc => &["ctr-b"],
            Kind::Sweep => &[],
        };
        if att != want_att {
            return Err(format!("ledger attachments {att:?}, expected {want_att:?}"));
        }
        match self.0 {
            Kind::Del => {
                let n = ns.neigh("10.10.0.5");
                if !n.trim().is_empty() {
                    return Err(format!("neighbour entry left: {n}"));
                }
            }
            Kind::Sweep => match ls.get("blue.json") {
                Some(Ok(v)) if tombstoned(v).is_empty() => {}
                other => return Err(format!("blue ledger: {other:?}")),
            },
            _ => {}
        }
        Ok(())
    }

    fn retry(&self, ns: &Netns, failed: &Run) -> Run {
        match self.0 {
            Kind::Add if !failed.ok() => {
                // The runtime's DEL after a failed ADD has no cached result: no prevResult.
                let del = ns.plugin_cmd(
                    &[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "ctr-new")],
                    conf(ns, "pods", json!({})).to_string().as_bytes(),
                    &[],
                );
                let d = strace::run(&del, strace::Trace::Off);
                if !d.ok() {
                    return d;
                }
                strace::run(&self.cmd(ns), strace::Trace::Off)
            }
            _ => strace::run(&self.cmd(ns), strace::Trace::Off),
        }
    }
}

impl Op<Netns> for Tomb {
    fn name(&self) -> String {
        match self.0 {
            Kind::Del => "tombstone DEL",
            Kind::Add => "tombstone ADD (lifting a tombstone)",
            Kind::Sweep => "tombstone sweep --state-dir D",
            Kind::Gc => "tombstone GC",
            Kind::FirstDel => "tombstone DEL, first on the node (no state directory)",
        }
        .into()
    }

    fn setup(&self, ns: &Netns) {
        for fam in ["-4", "-6"] {
            ns.ip(&[fam, "route", "flush", "table", "all", "proto", "84"]);
        }
        let _ = std::fs::remove_dir_all(&ns.state_dir);
        if self.0 == Kind::FirstDel {
            return;
        }
        let bystander = with_prev(
            conf(ns, "pods", json!({"holdSeconds": 3600})),
            &["10.10.0.9/24"],
        );
        must(ns.run("DEL", "ctr-z", &bystander), "bystander DEL");
        let pods = with_prev(conf(ns, "pods", json!({})), &POD);
        match self.0 {
            Kind::FirstDel => unreachable!("no starting state"),
            Kind::Del => {
                must(ns.run("ADD", "ctr-a", &pods), "ADD");
                ns.ip(&[
                    "neigh",
                    "replace",
                    "10.10.0.5",
                    "lladdr",
                    "02:00:00:00:00:05",
                    "dev",
                    "v0",
                    "nud",
                    "permanent",
                ]);
            }
            Kind::Add => {
                must(ns.run("DEL", "ctr-old", &pods), "DEL");
            }
            Kind::Sweep => {
                must(ns.run("DEL", "ctr-a", &pods), "DEL");
                let blue = with_prev(conf(ns, "blue", json!({})), &["10.10.0.7/24"]);
                must(ns.run("DEL", "ctr-b", &blue), "DEL blue");
                // Their holds are over: the ledgers say so.
                expire(&ns.state_dir, |a| a != ip(BYSTANDER));
                // An orphan: this state directory's full signature, named by no entry.
                let mark = ns.mark().to_string();
                ns.ip(&[
                    "route",
                    "add",
                    "unreachable",
                    ORPHAN,
                    "proto",
                    "84",
                    "metric",
                    &mark,
                ]);
            }
            Kind::Gc => {
                must(ns.run("ADD", "ctr-a", &pods), "ADD a");
                let b = with_prev(conf(ns, "pods", json!({})), &["10.10.0.6/24"]);
                must(ns.run("ADD", "ctr-b", &b), "ADD b");
            }
        }
    }

    fn cmd(&self, ns: &Netns) -> strace::Cmd {
        let pods = with_prev(conf(ns, "pods", json!({})), &POD);
        match self.0 {
            Kind::Del | Kind::FirstDel => ns.plugin_cmd(
                &[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "ctr-a")],
                pods.to_string().as_bytes(),
                &[],
            ),
            Kind::Add => ns.plugin_cmd(
                &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "ctr-new")],
                pods.to_string().as_bytes(),
                &[],
            ),
            Kind::Sweep => ns.plugin_cmd(
                &[],
                b"",
                &["sweep", "--state-dir", ns.state_dir.to_str().unwrap()],
            ),
            Kind::Gc => ns.plugin_cmd(&GC_ENV, Self::gc_conf(ns).to_string().as_bytes(), &[]),
        }
    }

    fn answer(&self) -> Answer {
        if self.0 == Kind::Sweep {
            Answer::Cli
        } else {
            Answer::Cni
        }
    }

    fn success(&self, ns: &Netns, r: &Run) -> Result<(), String> {
        match self.0 {
            Kind::Add => {
                let want = prev_result(&POD);
                match serde_json::from_str::<Value>(&r.stdout) {
                    Ok(v) if v == want => {}
                    _ => {
                        return Err(format!(
                            "stdout is not the prevResult: {:?}",
                            strace::clip(&r.stdout, 200)
                        ));
                    }
                }
            }
            Kind::Sweep => {
                let line = r.stdout.trim_end();
                if !(line.starts_with("networks ")
                    && line.ends_with("live 1")
                    && !line.contains('\n'))
                {
                    return Err(format!("stdout is not the sweep report: {:?}", r.stdout));
                }
            }
            Kind::Del | Kind::Gc | Kind::FirstDel => {
                if !r.stdout.is_empty() {
                    return Err(format!("stdout is not empty: {:?}", r.stdout));
                }
            }
        }
        self.state_is_success(ns)
    }

    fn problems(&self, ns: &Netns) -> Problems {
        let kernel = routes(ns);
        let mut named = BTreeSet::new();
        let mut lost = Vec::new();
        for (file, l) in ledgers(ns) {
            match l {
                Ok(v) => {
                    named.extend(entries(&v));
                    if file == "pods.json"
                        && self.0 != Kind::FirstDel
                        && !tombstoned(&v).contains(&ip(BYSTANDER))
                    {
                        lost.push(format!("{BYSTANDER} (another pod's live tombstone)"));
                    }
                }
                Err(e) => lost.push(format!("{file} unreadable: {e}")),
            }
        }
        if self.0 != Kind::FirstDel && !ns.state_file("pods").exists() {
            lost.push("pods.json is gone".into());
        }
        for f in strays(ns) {
            if f.contains(".corrupt-") {
                lost.push(format!("{f}: the ledger was set aside"));
            }
        }
        if self.0 != Kind::FirstDel && !kernel.contains(&(ip(BYSTANDER), MAIN)) {
            lost.push(format!("{BYSTANDER}: its live route is gone"));
        }
        let orphan_ok = |r: &(IpAddr, u32)| self.0 == Kind::Sweep && r.0 == ip(ORPHAN);
        let stranded: Vec<_> = kernel
            .difference(&named)
            .filter(|r| !orphan_ok(r))
            .collect();
        let dangling: Vec<_> = named.difference(&kernel).collect();
        vec![
            problem(
                "stranded routes",
                stranded.len(),
                format!("{stranded:?}"),
                true,
            ),
            problem("lost ledger entries", lost.len(), lost.join("; "), true),
            problem(DANGLING, dangling.len(), format!("{dangling:?}"), false),
        ]
    }

    fn heal(&self, ns: &Netns, failed: &Run) -> Result<(), String> {
        let r = self.retry(ns, failed);
        strace::retried(self, ns, &r)?;
        strace::no_strays(&strays(ns), "the state directory")
    }
}

#[test]
#[ignore = "needs root: network namespaces and strace"]
fn root_every_syscall_failing_at_every_call() {
    strace::require(true);
    let ops = [
        Tomb(Kind::Del),
        Tomb(Kind::Add),
        Tomb(Kind::Sweep),
        Tomb(Kind::Gc),
        Tomb(Kind::FirstDel),
    ];
    let report = strace::run_all(&ops, |_| Netns::new());
    let totals = format!(
        "TOTALS tombstone: injections tried {}, false successes {}, stranded routes {}, \
         lost ledger entries {}, panics/hangs/garbage {}, retries that did not heal {} \
         (entries left without their route, healed: {}); {:.0} s",
        report.count("injections tried"),
        report.count("false successes"),
        report.count("stranded routes"),
        report.count("lost ledger entries"),
        report.count("panics, hangs or garbage"),
        report.count("retries that did not heal"),
        report.count(DANGLING),
        report.elapsed.as_secs_f64()
    );
    println!("{totals}");
    report.assert_clean(&totals);
}
