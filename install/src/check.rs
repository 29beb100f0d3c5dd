//! `--check`, the gathering half: reads the node (the configuration directory through the
//! installer's own reader and [`confdir::select`], state directories and ledgers through the
//! plugin's store, processes, the sweep's units, policy rules and links over netlink) and
//! hands each fact to its check in [`doctor`].

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tombstone::chained::store;
use tombstone_cni::state::StateDir;
use tombstone_kernel::{Netlink, Rule};

use crate::confdir::{self, Verdict};
use crate::conflist::Network;
use crate::doctor::{self, Finding, PortCheck, Report, StateFacts, Status, Sweeping, TimerFacts};
use crate::error::Result;
use crate::files::{read_opt, resolve};
use crate::host;
use crate::options::Options;
use crate::run::{Paths, read_confs};

/// Where `systemctl enable` links the timer.
const TIMER_WANTS: &str = "/etc/systemd/system/timers.target.wants/tombstone-sweep.timer";

/// The facts read once per run, on first use.
struct Node<'a> {
    p: &'a Paths,
    procs: Option<std::result::Result<Vec<Sweeping>, String>>,
    timer: Option<TimerFacts>,
    nl: Option<std::result::Result<Netlink, String>>,
    rules: BTreeMap<bool, std::result::Result<Vec<Rule>, String>>,
}

/// Checks the node; a failure to read the configuration directory at all is an error, every
/// other failure is a finding.
pub fn check(o: &Options) -> Result<Report> {
    let p = Paths::new(o)?;
    let dir = read_confs(&p)?;
    let shown_dir = p.shown(&p.conf);
    let mut node = Node {
        p: &p,
        procs: None,
        timer: None,
        nl: None,
        rules: BTreeMap::new(),
    };
    let mut r = Report::default();
    let file_of = |i: usize| shown_dir.join(&dir.listed[i].name).display().to_string();
    let file_finding = |r: &mut Report, file: Option<String>, status, detail: String| {
        r.findings.push(Finding {
            network: None,
            file,
            check: "network",
            status,
            detail,
        })
    };
    if dir.listed.is_empty() {
        file_finding(
            &mut r,
            None,
            Status::Warning,
            format!("no network configuration in {}", shown_dir.display()),
        );
    }
    for v in confdir::select(&shown_dir, &dir.listed, &o.networks) {
        match v {
            Verdict::NotReady { file, why } => {
                file_finding(&mut r, Some(file_of(file)), Status::Warning, why)
            }
            Verdict::Ignored { file, why } => file_finding(
                &mut r,
                Some(file_of(file)),
                Status::Info,
                format!("not loaded: {why}"),
            ),
            Verdict::Warning(w) => file_finding(&mut r, None, Status::Warning, w),
            Verdict::Skipped { file, net, via, .. } if net.tombstone_index().is_none() => {
                r.findings.push(Finding {
                    network: Some(net.name.clone()),
                    file: Some(file_of(file)),
                    check: "network",
                    status: Status::Info,
                    detail: format!(
                        "{}main plugin {:?} is not IPvlan-based: no tombstone entry needed",
                        via.map_or(String::new(), |v| format!("{v}; ")),
                        net.main_type().unwrap_or("")
                    ),
                })
            }
            Verdict::Skipped { file, net, via, .. } => {
                network(&mut node, &mut r, &file_of(file), &net, via.as_deref())
            }
            Verdict::Edit(t) => network(
                &mut node,
                &mut r,
                &file_of(t.file),
                &t.net,
                t.via.as_deref(),
            ),
        }
    }
    Ok(r)
}

/// Every check of one network the runtime loads.
fn network(node: &mut Node, r: &mut Report, file: &str, net: &Network, via: Option<&str>) {
    let mut say = |check: &'static str, (status, detail): doctor::Verdict| {
        r.findings.push(Finding {
            network: Some(net.name.clone()),
            file: Some(file.to_string()),
            check,
            status,
            detail,
        })
    };
    say(
        "network",
        (
            Status::Info,
            format!(
                "main plugin {:?}{}",
                net.main_type().unwrap_or(""),
                via.map_or(String::new(), |v| format!("; {v}"))
            ),
        ),
    );
    say("position", doctor::position(net));
    say("version", doctor::versions(net));
    match doctor::port_check(net) {
        PortCheck::NotApplicable(v) => say("port", v),
        PortCheck::Port(name) => {
            let v = match node.netlink().map(|nl| nl.link_by_name(&name)) {
                Err(why) => (Status::Error, why),
                Ok(Err(e)) => (Status::Error, e.to_string()),
                Ok(Ok(link)) => doctor::gateway_port(&name, link.as_ref()),
            };
            say("port", v)
        }
    }
    let conf = match doctor::entry_conf(net) {
        None => return,
        Some(Err(why)) => {
            say(
                "entry",
                (
                    Status::Problem,
                    format!("the tombstone plugin refuses its config: {why}"),
                ),
            );
            return;
        }
        Some(Ok(c)) => c,
    };
    say("hold", doctor::hold(net));
    let state_dir = conf.state_dir.display().to_string();
    let (facts, readable) = node.state_facts(&conf.state_dir);
    say("state", doctor::state_dir(&state_dir, &facts));
    match readable {
        Ok(Some(dir)) => {
            let expiries = store::peek(&dir, &store::stem(&net.name))
                .map(|l| {
                    l.map_or(Vec::new(), |l| {
                        l.tombstones.iter().map(|t| t.expires_at_ms).collect()
                    })
                })
                .map_err(|e| e.msg);
            say(
                "tombstones",
                doctor::tombstones(&expiries, tombstone::chained::now_ms()),
            );
        }
        Ok(None) => say(
            "tombstones",
            (Status::Ok, "none (no state directory)".into()),
        ),
        Err(why) => say("tombstones", (Status::Unknown, why)),
    }
    let (procs, timer) = node.sweepers();
    say(
        "sweeper",
        doctor::sweeper(conf.sweeper, &state_dir, procs, timer),
    );
    let subnets = doctor::pod_subnets(net);
    if subnets.is_empty() {
        say(
            "rules",
            (
                Status::Unknown,
                "the IPAM's config names no subnet (it takes them from elsewhere): policy \
                 rules not checked"
                    .into(),
            ),
        );
    }
    for s in subnets {
        let v = match node.rules(s.is_ipv6()) {
            Ok(rules) => doctor::rules_verdict(rules, &s, &conf.tables),
            Err(why) => (Status::Error, why.clone()),
        };
        say("rules", v);
    }
}

impl Node<'_> {
    fn netlink(&mut self) -> std::result::Result<&Netlink, String> {
        self.nl
            .get_or_insert_with(|| Netlink::open().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn rules(&mut self, ipv6: bool) -> &std::result::Result<Vec<Rule>, String> {
        if !self.rules.contains_key(&ipv6) {
            let got = self
                .netlink()
                .and_then(|nl| nl.dump_rules(ipv6).map_err(|e| e.to_string()));
            self.rules.insert(ipv6, got);
        }
        &self.rules[&ipv6]
    }

    /// The state directory as found, and the directory to read ledgers from: `Ok(None)`
    /// when it is not there, an error saying why its ledgers are not read. A directory with
    /// a loose mode is not opened (opening tightens it: a check writes nothing).
    fn state_facts(
        &self,
        state_dir: &Path,
    ) -> (StateFacts, std::result::Result<Option<StateDir>, String>) {
        let path = match resolve(&self.p.root, state_dir, false) {
            Ok(p) => p,
            Err(e) => return (StateFacts::Unreadable(e.to_string()), Err(e.to_string())),
        };
        let facts = match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFacts::Missing,
            Err(e) => StateFacts::Unreadable(e.to_string()),
            Ok(m) if m.file_type().is_symlink() => {
                StateFacts::NotADirectory("a symbolic link".into())
            }
            Ok(m) if !m.is_dir() => StateFacts::NotADirectory("a file".into()),
            Ok(m) => StateFacts::Dir {
                uid: m.uid(),
                mode: m.mode() & 0o7777,
            },
        };
        let readable = match &facts {
            StateFacts::Missing => Ok(None),
            StateFacts::Dir { uid, mode } if *mode & 0o077 == 0 => {
                let euid = nix::unistd::Uid::effective().as_raw();
                if *uid != euid {
                    Err(format!(
                        "ledgers not read: the directory belongs to uid {uid}, this check runs \
                         as uid {euid}"
                    ))
                } else {
                    StateDir::existing(&path).map_err(|e| e.msg)
                }
            }
            StateFacts::Dir { .. } => Err("ledgers not read until the mode is 700".into()),
            _ => Err("ledgers not read".into()),
        };
        (facts, readable)
    }

    fn sweepers(&mut self) -> (&std::result::Result<Vec<Sweeping>, String>, &TimerFacts) {
        if self.procs.is_none() {
            self.procs = Some(processes());
        }
        if self.timer.is_none() {
            self.timer = Some(timer_facts(self.p));
        }
        (
            self.procs.as_ref().expect("set above"),
            self.timer.as_ref().expect("set above"),
        )
    }
}

/// The sweeping processes of this PID namespace (`/proc/*/cmdline`; one that exits meanwhile
/// is passed over).
fn processes() -> std::result::Result<Vec<Sweeping>, String> {
    let entries = fs::read_dir("/proc").map_err(|e| format!("cannot list /proc: {e}"))?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.extend(doctor::sweeping(pid, &argv));
    }
    out.sort_by_key(|s| s.pid);
    Ok(out)
}

/// The sweep's units under the root, as `--systemd` writes them.
fn timer_facts(p: &Paths) -> TimerFacts {
    let read = |node_path: &str| {
        p.file(node_path)
            .ok()
            .and_then(|f| read_opt(&f).ok().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    TimerFacts {
        timer: read(host::TIMER_PATH).is_some(),
        enabled: p
            .file(TIMER_WANTS)
            .is_ok_and(|f| fs::symlink_metadata(f).is_ok()),
        service_state_dir: read(host::SERVICE_PATH).map(|s| doctor::service_state_dir(&s)),
    }
}
