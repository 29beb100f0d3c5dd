//! Fault injection: for `tombstone-ipam` ADD (of a pod whose index bucket is new, and of one
//! whose line is appended to an existing bucket), DEL and the first ADD on a node (no data
//! directory yet), every call of every syscall the process makes to the filesystem (and the
//! kernel) is made to fail in turn with `strace` (the engine is the `tombstone` crate's
//! `tests/common/strace.rs`), each from a fresh copy of the starting state, and every run is
//! judged: one CNI error object and a non-zero exit, or exit 0 with the state really the
//! success state (else a **false success**); afterwards no address allocated twice and no
//! allocation lost; the runtime's clean retry (after a failed ADD: its DEL, then the ADD)
//! reaches the success state, the allocator then hands a further pod an unused address, and
//! no temporary or stray file is left.
//!
//! `cargo test --release -p tombstone-ipam --test faults -- --include-ignored --nocapture`
//! prints the matrices and the totals. Needs strace (not root).

mod common;
use tombstone_testkit::strace;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use strace::{Cmd, Op, Problems, Run, problem};

const NET: &str = "pods";
const RANGES: &str = r#""ranges":[[{"subnet":"10.20.0.0/24","gateway":"10.20.0.1"}]]"#;
/// The network directory's entries that are ours (the state directory's own files are
/// checked by `common::state`).
const ALLOWED: [&str; 2] = ["tombstone-ipam.d", "tombstone-ipam.lock"];
const NEW: &str = "ctr-new";

/// A worker's data directory.
struct Data {
    root: PathBuf,
}

impl Data {
    fn new(tag: &str) -> Data {
        Data {
            root: common::data_dir(&format!("faults-{tag}")),
        }
    }
    fn net_dir(&self) -> PathBuf {
        self.root.join(NET)
    }
    fn conf(&self) -> String {
        common::conf("1.1.0", NET, &self.root, RANGES)
    }
    fn cmd(&self, verb: &str, cid: &str) -> Cmd {
        let mut c = Cmd::new(common::bin()).stdin(self.conf());
        for (k, v) in common::attach_env(verb, cid) {
            c = c.env(k, v);
        }
        c.env("TOMBSTONE_LOG", "stderr")
    }
    fn run(&self, verb: &str, cid: &str) -> Run {
        strace::run(&self.cmd(verb, cid), strace::Trace::Off)
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The allocations of the state (address -> holders), or why it cannot be used.
fn allocations(dir: &Path) -> Result<BTreeMap<IpAddr, Vec<String>>, String> {
    let st = common::state(dir, NET)?;
    Ok(st
        .allocs
        .into_iter()
        .map(|(ip, (cid, _))| (ip, vec![cid]))
        .collect())
}

fn released(dir: &Path) -> Vec<IpAddr> {
    common::state(dir, NET)
        .map(|st| st.released.into_keys().collect())
        .unwrap_or_default()
}

/// The address an ADD printed.
fn result_ip(stdout: &str) -> Result<IpAddr, String> {
    let v: Value = serde_json::from_str(stdout)
        .map_err(|_| format!("stdout is not a result: {:?}", strace::clip(stdout, 200)))?;
    let addr = v["ips"][0]["address"]
        .as_str()
        .ok_or_else(|| format!("no address in {v}"))?;
    let ip: IpAddr = addr
        .split('/')
        .next()
        .unwrap()
        .parse()
        .map_err(|_| addr.to_string())?;
    if !addr.ends_with("/24") || v["ips"].as_array().map(Vec::len) != Some(1) {
        return Err(format!("unexpected ips {}", v["ips"]));
    }
    Ok(ip)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// ADD of a new pod: a and c hold addresses, b's is cooling down.
    Add,
    /// The same, the new pod's index line appended to the bucket that holds a's.
    Append,
    /// DEL of b: a, b and c hold addresses.
    Del,
    /// The first ADD on a node: no data directory yet.
    First,
}

/// The operation and its starting state (the state file a real run produced).
struct Ipam {
    kind: Kind,
    /// The state directory's files, `None` for `First`.
    state: Option<BTreeMap<String, Vec<u8>>>,
    /// The starting holders: container -> address.
    held: BTreeMap<String, IpAddr>,
    /// The container ID of the pod an ADD starts.
    new: String,
}

impl Ipam {
    fn new(kind: Kind) -> Ipam {
        let d = Data::new(&format!("template-{}", kind as u8));
        let mut held = BTreeMap::new();
        if kind != Kind::First {
            for cid in ["ctr-a", "ctr-b", "ctr-c"] {
                let r = d.run("ADD", cid);
                assert!(r.ok(), "template ADD {cid}: {}", r.summary());
                held.insert(cid.to_string(), result_ip(&r.stdout).unwrap());
            }
        }
        if matches!(kind, Kind::Add | Kind::Append) {
            let r = d.run("DEL", "ctr-b");
            assert!(r.ok(), "template DEL: {}", r.summary());
        }
        let state = (kind != Kind::First).then(|| common::snapshot(&d.root, NET));
        let bucket = tombstone_ipam::store::ctr_name;
        let new = match kind {
            Kind::Append => (0..)
                .map(|i| format!("{NEW}-{i}"))
                .find(|id| bucket(id) == bucket("ctr-a"))
                .unwrap(),
            _ => NEW.to_string(),
        };
        Ipam {
            kind,
            state,
            held,
            new,
        }
    }

    /// The holders that must keep their address through the operation.
    fn bystanders(&self) -> Vec<(&str, IpAddr)> {
        ["ctr-a", "ctr-c"]
            .iter()
            .filter_map(|c| self.held.get(*c).map(|ip| (*c, *ip)))
            .collect()
    }

    /// The success state: the bystanders as they were, plus (ADD) the new pod at `ip`.
    fn state_is_success(&self, d: &Data, new_ip: Option<IpAddr>) -> Result<(), String> {
        let allocs = allocations(&d.root)?;
        let mut want: BTreeMap<IpAddr, Vec<String>> = self
            .bystanders()
            .into_iter()
            .map(|(c, ip)| (ip, vec![c.to_string()]))
            .collect();
        if let Some(ip) = new_ip {
            if want.contains_key(&ip) {
                return Err(format!("{ip} was handed out while allocated"));
            }
            want.insert(ip, vec![self.new.clone()]);
        }
        if allocs != want {
            return Err(format!("allocations {allocs:?}, expected {want:?}"));
        }
        let b = self.held.get("ctr-b");
        match self.kind {
            Kind::Add | Kind::Append if new_ip.is_some() && new_ip == b.copied() => {
                Err("the cooling address was handed out while others were free".into())
            }
            Kind::Del if !b.is_some_and(|ip| released(&d.root).contains(ip)) => {
                Err("the released address has no cool-down record".into())
            }
            _ => Ok(()),
        }
    }
}

impl Op<Data> for Ipam {
    fn name(&self) -> String {
        match self.kind {
            Kind::Add => "tombstone-ipam ADD",
            Kind::Append => "tombstone-ipam ADD, its index line appended to an existing bucket",
            Kind::Del => "tombstone-ipam DEL",
            Kind::First => "tombstone-ipam ADD, first on the node (no data directory)",
        }
        .into()
    }

    fn setup(&self, d: &Data) {
        let dir = d.net_dir();
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(state) = &self.state {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            let layout = common::state_dir(&d.root, NET);
            std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&layout)
                .unwrap();
            let lock = [(dir.join(ALLOWED[1]), &[][..])];
            let files = state.iter().map(|(n, b)| (layout.join(n), &b[..]));
            for (path, bytes) in lock.into_iter().chain(files) {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .unwrap();
                std::io::Write::write_all(&mut f, bytes).unwrap();
            }
        }
    }

    fn cmd(&self, d: &Data) -> Cmd {
        match self.kind {
            Kind::Add | Kind::Append | Kind::First => d.cmd("ADD", &self.new),
            Kind::Del => d.cmd("DEL", "ctr-b"),
        }
    }

    fn success(&self, d: &Data, r: &Run) -> Result<(), String> {
        match self.kind {
            Kind::Add | Kind::Append | Kind::First => {
                let ip = result_ip(&r.stdout)?;
                self.state_is_success(d, Some(ip))
            }
            Kind::Del => {
                if !r.stdout.is_empty() {
                    return Err(format!("stdout is not empty: {:?}", r.stdout));
                }
                self.state_is_success(d, None)
            }
        }
    }

    fn problems(&self, d: &Data) -> Problems {
        let (lost, doubled) = match allocations(&d.root) {
            Err(_) if self.kind == Kind::First && !common::state_dir(&d.root, NET).exists() => {
                (vec![], vec![])
            }
            Err(e) => (
                self.bystanders()
                    .iter()
                    .map(|(c, ip)| format!("{c} {ip} (state unusable: {e})"))
                    .collect(),
                vec![],
            ),
            Ok(allocs) => {
                let lost = self
                    .bystanders()
                    .iter()
                    .filter(|(c, ip)| allocs.get(ip).is_none_or(|h| !h.iter().any(|x| x == c)))
                    .map(|(c, ip)| format!("{c} {ip}"))
                    .collect();
                let mut holders: BTreeMap<&str, usize> = BTreeMap::new();
                for h in allocs.values().flatten() {
                    *holders.entry(h).or_default() += 1;
                }
                let doubled = allocs
                    .iter()
                    .filter(|(_, h)| h.len() > 1)
                    .map(|(ip, h)| format!("{ip} held by {h:?}"))
                    .chain(
                        holders
                            .iter()
                            .filter(|(_, n)| **n > 1)
                            .map(|(h, n)| format!("{h} holds {n} addresses of one range")),
                    )
                    .collect();
                (lost, doubled)
            }
        };
        vec![
            problem("lost allocations", lost.len(), lost.join("; "), true),
            problem(
                "doubled allocations",
                doubled.len(),
                doubled.join("; "),
                true,
            ),
        ]
    }

    fn heal(&self, d: &Data, failed: &Run) -> Result<(), String> {
        let r = match self.kind {
            Kind::Add | Kind::Append | Kind::First if !failed.ok() => {
                let del = d.run("DEL", &self.new);
                if !del.ok() {
                    return Err(format!("the runtime's DEL failed: {}", del.summary()));
                }
                d.run("ADD", &self.new)
            }
            _ => strace::run(&self.cmd(d), strace::Trace::Off),
        };
        strace::retried(self, d, &r)?;
        // The allocator agrees: a further pod gets an address nobody holds.
        let before = allocations(&d.root)?;
        let probe = d.run("ADD", "ctr-probe");
        let ip = result_ip(&probe.stdout)?;
        if before.contains_key(&ip) {
            return Err(format!("a further ADD was given {ip}, which is held"));
        }
        if !d.run("DEL", "ctr-probe").ok() {
            return Err("the further pod's DEL failed".into());
        }
        let mut stray = strace::stray_files(&d.net_dir(), &ALLOWED);
        stray.extend(common::state(&d.root, NET)?.strays);
        strace::no_strays(&stray, "the data directory")
    }
}

#[test]
#[ignore = "needs strace"]
fn every_syscall_failing_at_every_call() {
    strace::require(false);
    let ops = [
        Ipam::new(Kind::Add),
        Ipam::new(Kind::Append),
        Ipam::new(Kind::Del),
        Ipam::new(Kind::First),
    ];
    let report = strace::run_all(&ops, |w| Data::new(&format!("w{w}")));
    let totals = format!(
        "TOTALS tombstone-ipam: injections tried {}, false successes {}, lost or doubled \
         allocations {} / {}, panics/hangs/garbage {}, retries that did not heal {}; {:.0} s",
        report.count("injections tried"),
        report.count("false successes"),
        report.count("lost allocations"),
        report.count("doubled allocations"),
        report.count("panics, hangs or garbage"),
        report.count("retries that did not heal"),
        report.elapsed.as_secs_f64()
    );
    println!("{totals}");
    report.assert_clean(&totals);
}
