//! `--check`, the pure half: each check of a node, from facts gathered elsewhere
//! ([`crate::check`]) to findings (ok, info, unknown, warning, problem, error), and the report
//! as a table for people or JSON for scripts. No I/O.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Serialize;
use serde_json::{Map, Value};
use tombstone::chained::config::TombstoneConf;
use tombstone::ipvlan::config::{IpvlanConf, gateway_port_name};
use tombstone_cni::NetConf;
use tombstone_cni::suite::{IPAM_TYPE, IPVLAN_TYPE, TOMBSTONE_TYPE};
use tombstone_cni::version::SUPPORTED;
use tombstone_kernel::{Link, MAIN_TABLE, Rule, RuleKind};

use crate::conflist::Network;

/// The version of the JSON report's schema: a field removed or changed in meaning makes it
/// the next number; fields are only ever added within one.
pub const SCHEMA: u32 = 1;
/// A tombstone expired this long ago and still in its ledger says no sweep ran: the
/// periodic sweep runs every 10 s, the background sweeper wakes at most 5 s late.
pub const OVERDUE_MS: u64 = 30_000;
/// The local table: it holds only this host's own addresses, never a pod's.
const LOCAL_TABLE: u32 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Nothing to check here, said so.
    Info,
    /// Cannot be told from this node's files and kernel.
    Unknown,
    Warning,
    /// Something is wrong: exit status 1.
    Problem,
    /// A check could not run (a read or a dump failed): exit status 1.
    Error,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Unknown => "unknown",
            Status::Warning => "warning",
            Status::Problem => "PROBLEM",
            Status::Error => "ERROR",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The network it is about; `None` for the node or a file.
    pub network: Option<String>,
    /// The configuration file, as the node names it.
    pub file: Option<String>,
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
}

/// Findings, in the order checked.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// 0 when nothing is a problem or an error, else 1.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.findings.iter().any(|f| f.status >= Status::Problem))
    }

    pub fn problems(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.status >= Status::Problem)
            .count()
    }

    /// The stable JSON form: `{"schema":1,"ok":..,"problems":N,"findings":[..]}`.
    pub fn json(&self) -> Value {
        serde_json::json!({
            "schema": SCHEMA,
            "ok": self.exit_code() == 0,
            "problems": self.problems(),
            "findings": self.findings,
        })
    }

    /// A table: network, check, status, detail (wrapped under its column), then a summary.
    pub fn table(&self) -> String {
        let net_w = self
            .findings
            .iter()
            .map(|f| f.network.as_deref().unwrap_or("-").len())
            .chain([7])
            .max()
            .unwrap_or(7)
            .min(24);
        let mut out = format!(
            "{:<net_w$}  {:<10}  {:<7}  DETAIL\n",
            "NETWORK", "CHECK", "STATUS"
        );
        for f in &self.findings {
            let mut detail = f.detail.clone();
            if let Some(file) = &f.file
                && f.check == "network"
            {
                detail = format!("{file}: {detail}");
            }
            out += &format!(
                "{:<net_w$}  {:<10}  {:<7}  {}\n",
                f.network.as_deref().unwrap_or("-"),
                f.check,
                f.status.as_str(),
                detail
            );
        }
        out += &match self.problems() {
            0 => "no problem found\n".to_string(),
            n => format!("{n} problem(s) found\n"),
        };
        out
    }
}

/// A finding's status and detail, before it is given its network and file.
pub type Verdict = (Status, String);

/// Where the `tombstone` entry is: right after the main plugin (ok), later in the list (ok:
/// its DEL still runs before the main plugin's), missing, before the main plugin
/// (misplaced: its DEL would run after the address was released), or there twice.
pub fn position(net: &Network) -> Verdict {
    let entries: Vec<usize> = (0..net.types.len())
        .filter(|&i| net.types[i] == TOMBSTONE_TYPE)
        .collect();
    let main = net.main_type().unwrap_or("");
    match (entries.as_slice(), net.main_plugin()) {
        (_, None) => (
            Status::Problem,
            "no main plugin: the list holds only tombstone entries".into(),
        ),
        ([], _) => (
            Status::Problem,
            format!("missing: no tombstone entry after the main plugin {main:?}"),
        ),
        ([_, _, ..], _) => (
            Status::Problem,
            format!(
                "duplicated: {} tombstone entries (plugins {:?}); one belongs right after {main:?}",
                entries.len(),
                entries
            ),
        ),
        ([t], Some(m)) if *t < m => (
            Status::Problem,
            format!(
                "misplaced: before the main plugin {main:?}, so its DEL runs after the address \
                 was released"
            ),
        ),
        ([t], Some(m)) if *t == m + 1 => (Status::Ok, format!("right after {main:?}")),
        ([t], Some(_)) => (
            Status::Ok,
            format!(
                "plugin {t}, after {main:?} with {:?} between (its DEL still runs before the \
                 main plugin's)",
                net.types[net.main_plugin().unwrap_or(0) + 1..*t].to_vec()
            ),
        ),
    }
}

/// Whether every plugin of the suite in the list serves the list's `cniVersion`: the chained
/// `tombstone` the installer's rule ([`Network::version_problem`]), `tombstone-ipvlan` and
/// `tombstone-ipam` theirs. Other plugins are not ours to vouch for (said so).
pub fn versions(net: &Network) -> Verdict {
    let v = net.cni_version.as_deref().unwrap_or("");
    let mut ours = Vec::new();
    let mut bad = Vec::new();
    if net.tombstone_index().is_some() {
        ours.push(TOMBSTONE_TYPE);
        if let Some(why) = net.version_problem() {
            bad.push(format!("{TOMBSTONE_TYPE}: {why}"));
        }
    }
    for t in net.referenced_types() {
        let t = t.as_str();
        if (t == IPVLAN_TYPE || t == IPAM_TYPE) && !ours.contains(&t) {
            ours.push(if t == IPVLAN_TYPE {
                IPVLAN_TYPE
            } else {
                IPAM_TYPE
            });
            if !SUPPORTED.contains(&v) {
                bad.push(format!(
                    "{t}: cniVersion {v:?}: it serves {}",
                    SUPPORTED.join(", ")
                ));
            }
        }
    }
    let others: Vec<&str> = net
        .types
        .iter()
        .map(String::as_str)
        .filter(|t| !ours.contains(t))
        .collect();
    let others = if others.is_empty() {
        String::new()
    } else {
        format!(" (not checked: {})", others.join(", "))
    };
    match (bad.is_empty(), ours.is_empty()) {
        (false, _) => (Status::Problem, format!("{}{others}", bad.join("; "))),
        (true, true) => (Status::Info, format!("no plugin of ours{others}")),
        (true, false) => (
            Status::Ok,
            format!("cniVersion {v} served by {}{others}", ours.join(", ")),
        ),
    }
}

/// The entry's `holdSeconds` against a `tombstone-ipam`'s `reuseAfterSeconds`: the
/// installer's rule, from the same function ([`Network::hold_problem`]).
pub fn hold(net: &Network) -> Verdict {
    let none = Map::new();
    match (net.ipam_reuse_after(), net.hold_problem(&none, &none)) {
        (_, Some(why)) => (Status::Problem, why),
        (Some(reuse), None) => (
            Status::Ok,
            format!(
                "holdSeconds {} below the IPAM's reuseAfterSeconds {reuse}",
                net.hold_after(&none, &none)
            ),
        ),
        (None, None) => (
            Status::Info,
            format!(
                "holdSeconds {}; no {IPAM_TYPE} in the list: the IPAM's reuse delay is not known",
                net.hold_after(&none, &none)
            ),
        ),
    }
}

/// A plugin of the list as the runtime hands it over: its object with the list's `name`
/// and `cniVersion`.
fn netconf(net: &Network, i: usize) -> Result<NetConf, String> {
    let mut m = net
        .plugin(i)
        .cloned()
        .ok_or_else(|| format!("plugin {i} is not an object"))?;
    m.insert("name".into(), net.name.clone().into());
    if let Some(v) = &net.cni_version {
        m.insert("cniVersion".into(), v.clone().into());
    }
    let bytes = serde_json::to_vec(&Value::Object(m)).map_err(|e| e.to_string())?;
    NetConf::parse(&bytes).map_err(|e| e.msg)
}

/// The entry's config, read by the plugin's own parser (what its ADD would refuse is said
/// here). `None` when the list has no entry.
pub fn entry_conf(net: &Network) -> Option<Result<TombstoneConf, String>> {
    let i = net.tombstone_index()?;
    Some(netconf(net, i).and_then(|c| TombstoneConf::from_netconf(&c).map_err(|e| e.msg)))
}

/// The pod subnets of the main plugin's IPAM, as its config names them: `ranges[][].subnet`
/// and `subnet` (host-local, tombstone-ipam), `range` and `ipRanges[].range` (whereabouts),
/// `addresses[].address` (static). Empty when the IPAM takes them from elsewhere (a node's
/// podCIDR, an API).
pub fn pod_subnets(net: &Network) -> Vec<IpNetwork> {
    let Some(ipam) = net
        .main_plugin()
        .and_then(|i| net.plugin(i))
        .and_then(|p| p.get("ipam"))
    else {
        return Vec::new();
    };
    let mut texts: Vec<&str> = Vec::new();
    fn s(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str)
    }
    texts.extend(s(ipam.get("subnet")));
    texts.extend(s(ipam.get("range")));
    for set in ipam
        .get("ranges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for r in set.as_array().into_iter().flatten() {
            texts.extend(s(r.get("subnet")));
        }
    }
    for r in ipam
        .get("ipRanges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        texts.extend(s(r.get("range")));
    }
    for a in ipam
        .get("addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        texts.extend(s(a.get("address")));
    }
    let mut out: Vec<IpNetwork> = Vec::new();
    for t in texts {
        if let Ok(n) = t.parse::<IpNetwork>() {
            // The network itself, not an address in it (static's `10.0.0.5/24`).
            if let Ok(n) = IpNetwork::new(n.network(), n.prefix())
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
    }
    out
}

/// Whether the prefixes `a/alen` and `b` share an address.
fn overlaps(a: IpAddr, alen: u8, b: &IpNetwork) -> bool {
    let Ok(a) = IpNetwork::new(a, alen) else {
        return false;
    };
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

/// Whether `a/alen` holds the whole of `b`.
fn covers(a: IpAddr, alen: u8, b: &IpNetwork) -> bool {
    IpNetwork::new(a, alen).is_ok_and(|a| {
        a.is_ipv4() == b.is_ipv4() && a.prefix() <= b.prefix() && a.contains(b.network())
    })
}

/// The rules that would send a lookup for an address of `subnet` to a table the entry does
/// not tombstone in, before the kernel reaches the `main` rule (the lowest-priority rule
/// `from all lookup main`; every rule when there is none): a route there for a pod address
/// (a default route is enough) bypasses its tombstone. Rules to the local table, to a VRF's
/// table, `goto`, `nop` and reject rules are not lookups that can bypass it.
pub fn shadowing_rules<'a>(rules: &'a [Rule], subnet: &IpNetwork, tables: &[u32]) -> Vec<&'a Rule> {
    let family: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.ipv6 == subnet.is_ipv6())
        .collect();
    let main = family
        .iter()
        .filter(|r| {
            r.kind == RuleKind::Lookup(MAIN_TABLE)
                && r.dst.is_none()
                && !r.invert
                && r.selects_by_destination_only()
                && r.suppress_prefix_len.is_none()
        })
        .map(|r| r.priority)
        .min()
        .unwrap_or(u32::MAX);
    family
        .into_iter()
        .filter(|r| r.priority < main)
        .filter(
            |r| matches!(r.kind, RuleKind::Lookup(t) if t != LOCAL_TABLE && !tables.contains(&t)),
        )
        .filter(|r| match (r.dst, r.invert) {
            (None, _) => true,
            (Some((a, l)), false) => overlaps(a, l, subnet),
            // `not to X`: selects the subnet unless X holds all of it.
            (Some((a, l)), true) => !covers(a, l, subnet),
        })
        .collect()
}

/// The policy-rule check of one subnet.
pub fn rules_verdict(rules: &[Rule], subnet: &IpNetwork, tables: &[u32]) -> Verdict {
    let bad = shadowing_rules(rules, subnet, tables);
    let tables_s = tables
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if bad.is_empty() {
        return (
            Status::Ok,
            format!(
                "{subnet}: every rule before main looks up a table the entry lists ({tables_s}) or none"
            ),
        );
    }
    let said: Vec<String> = bad
        .iter()
        .map(|r| {
            let RuleKind::Lookup(t) = r.kind else {
                unreachable!("only lookups shadow")
            };
            format!("{}: {} lookup {t}", r.priority, r.selector())
        })
        .collect();
    (
        Status::Problem,
        format!(
            "{subnet}: rule {} sends lookups before main to a table the entry does not list \
             (tables {tables_s}): a route there bypasses the tombstones; add the table to \
             \"tables\"",
            said.join("; rule ")
        ),
    )
}

/// What of the state directory could be seen.
#[derive(Debug, Clone, PartialEq)]
pub enum StateFacts {
    /// No such directory: no tombstone was ever made (the plugin creates it 0700).
    Missing,
    /// Something else than a directory (a symbolic link is never followed).
    NotADirectory(String),
    Dir {
        uid: u32,
        mode: u32,
    },
    Unreadable(String),
}

/// The state directory: a directory owned by root (the runtime runs plugins as root), mode
/// 0700 (the plugin tightens a looser one on its next call, and says so).
pub fn state_dir(path: &str, facts: &StateFacts) -> Verdict {
    match facts {
        StateFacts::Missing => (
            Status::Ok,
            format!("{path} not there yet (made by the first DEL that buries an address)"),
        ),
        StateFacts::NotADirectory(what) => (
            Status::Problem,
            format!("{path} is {what}, not a directory: every DEL of the network fails"),
        ),
        StateFacts::Dir { uid, .. } if *uid != 0 => (
            Status::Problem,
            format!("{path} belongs to uid {uid}, not root: the plugin refuses it"),
        ),
        StateFacts::Dir { mode, .. } if mode & 0o077 != 0 => (
            Status::Warning,
            format!(
                "{path} has mode {mode:o}: others could plant records; the plugin tightens it \
                 to 700 on its next call"
            ),
        ),
        StateFacts::Dir { mode, .. } => (Status::Ok, format!("{path}, root, mode {mode:o}")),
        StateFacts::Unreadable(why) => (Status::Error, format!("{path}: {why}")),
    }
}

/// Live tombstones of a network: `expires_at_ms` of each, read from its ledger.
pub fn tombstones(count_expiries: &Result<Vec<u64>, String>, now_ms: u64) -> Verdict {
    match count_expiries {
        Err(why) => (Status::Problem, format!("ledger unreadable: {why}")),
        Ok(e) => {
            let overdue = e.iter().filter(|&&x| x + OVERDUE_MS < now_ms).count();
            if overdue > 0 {
                (
                    Status::Problem,
                    format!(
                        "{} live, {overdue} expired more than {} s ago and still there: no \
                         sweep ran",
                        e.len(),
                        OVERDUE_MS / 1000
                    ),
                )
            } else {
                (Status::Ok, format!("{} live", e.len()))
            }
        }
    }
}

/// A process that sweeps: `tombstone sweep` (a timer's run or the background sweeper) or
/// the installer's agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweeping {
    pub pid: u32,
    pub what: String,
    /// The state directory it sweeps; `None`: every entry's (the agent).
    pub state_dir: Option<String>,
}

/// What `argv` is, if it sweeps.
pub fn sweeping(pid: u32, argv: &[String]) -> Option<Sweeping> {
    let base = |s: &String| s.rsplit('/').next().unwrap_or("").to_string();
    let prog = base(argv.first()?);
    let flag = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
            .or_else(|| {
                argv.iter()
                    .find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_string))
            })
    };
    match prog.as_str() {
        "tombstone" if argv.get(1).is_some_and(|a| a == "sweep") => Some(Sweeping {
            pid,
            what: argv.join(" "),
            state_dir: Some(
                flag("--state-dir")
                    .unwrap_or_else(|| tombstone_cni::suite::DEFAULT_STATE_DIR.to_string()),
            ),
        }),
        "tombstone-install" if argv.iter().skip(1).any(|a| a == "agent" || a == "--agent") => {
            Some(Sweeping {
                pid,
                what: argv.join(" "),
                state_dir: None,
            })
        }
        _ => None,
    }
}

/// The sweep's systemd units, as found under the root.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimerFacts {
    pub timer: bool,
    /// Linked from `timers.target.wants` (`systemctl enable`).
    pub enabled: bool,
    /// The state directory the service sweeps (its `--state-dir`, else the default); `None`
    /// when there is no service file.
    pub service_state_dir: Option<String>,
}

/// The state directory of the service file's `ExecStart` line.
pub fn service_state_dir(service: &str) -> String {
    service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .and_then(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.iter()
                .position(|a| *a == "--state-dir")
                .and_then(|i| w.get(i + 1))
                .map(|s| s.to_string())
        })
        .unwrap_or_else(|| tombstone_cni::suite::DEFAULT_STATE_DIR.to_string())
}

/// Whether something ends this network's tombstones: the plugin's own sweeper (default), or,
/// with `"sweeper": false`, a sweep process or the timer for its state directory. A sweeper
/// this node's files and processes do not show (a DaemonSet in another PID namespace) is
/// `unknown`, never assumed.
pub fn sweeper(
    builtin: bool,
    state_dir: &str,
    procs: &Result<Vec<Sweeping>, String>,
    timer: &TimerFacts,
) -> Verdict {
    if builtin {
        return (
            Status::Ok,
            "the plugin's own: each DEL that buries starts `tombstone sweep --until-empty`".into(),
        );
    }
    let procs = match procs {
        Ok(p) => p,
        Err(why) => return (Status::Unknown, format!("cannot list processes: {why}")),
    };
    if let Some(p) = procs
        .iter()
        .find(|p| p.state_dir.as_deref().is_none_or(|d| d == state_dir))
    {
        return (
            Status::Ok,
            format!("\"sweeper\": false; running: pid {} ({})", p.pid, p.what),
        );
    }
    match (&timer.service_state_dir, timer.timer, timer.enabled) {
        (Some(d), true, true) if d == state_dir => (
            Status::Ok,
            format!("\"sweeper\": false; the tombstone-sweep timer is enabled for {d}"),
        ),
        (Some(d), true, _) if d != state_dir => (
            Status::Problem,
            format!(
                "\"sweeper\": false, and the tombstone-sweep timer sweeps {d}, not this \
                 network's {state_dir}"
            ),
        ),
        (_, true, false) => (
            Status::Problem,
            "\"sweeper\": false, and the tombstone-sweep timer is installed but not enabled".into(),
        ),
        (None, true, _) => (
            Status::Problem,
            "\"sweeper\": false, and the tombstone-sweep timer has no service".into(),
        ),
        _ => (
            Status::Unknown,
            format!(
                "\"sweeper\": false, and no sweep process (of this PID namespace) or \
                 tombstone-sweep timer was found for {state_dir}: a sweeper elsewhere cannot \
                 be seen from here"
            ),
        ),
    }
}

/// What is checked of the main plugin's links in the host netns: `tombstone-ipvlan` keeps a
/// gateway port (an IPvlan slave of the master named after the network); the reference
/// `ipvlan` and Terway keep none.
pub enum PortCheck {
    /// Look this link up and hand it to [`gateway_port`].
    Port(String),
    NotApplicable(Verdict),
}

pub fn port_check(net: &Network) -> PortCheck {
    let main = net.main_type().unwrap_or("");
    if main != IPVLAN_TYPE {
        return PortCheck::NotApplicable((
            Status::Info,
            format!("main plugin {main:?} keeps no gateway port: nothing to check"),
        ));
    }
    let conf = net
        .main_plugin()
        .ok_or_else(|| "no main plugin".to_string())
        .and_then(|i| netconf(net, i))
        .and_then(|c| IpvlanConf::from_netconf(&c).map_err(|e| e.msg));
    match conf {
        Err(why) => PortCheck::NotApplicable((
            Status::Problem,
            format!("{IPVLAN_TYPE} refuses its config: {why}"),
        )),
        Ok(c) if !c.gateway_port => PortCheck::NotApplicable((
            Status::Info,
            if c.link_in_container {
                "linkInContainer: the master is in the pod; no gateway port".into()
            } else {
                "\"gatewayPort\": false: no gateway port".into()
            },
        )),
        Ok(_) => PortCheck::Port(gateway_port_name(&net.name)),
    }
}

/// The gateway port as found (`None`: no link of that name).
pub fn gateway_port(name: &str, link: Option<&Link>) -> Verdict {
    match link {
        None => (
            Status::Problem,
            format!(
                "gateway port {name} not found in this netns: pods of this node cannot reach \
                 their gateway until the next ADD makes it again"
            ),
        ),
        Some(l) if l.kind.as_deref() != Some("ipvlan") => (
            Status::Problem,
            format!(
                "{name} exists but is a {} link, not an IPvlan slave: the plugin leaves it alone \
                 and every ADD fails",
                l.kind.as_deref().unwrap_or("plain")
            ),
        ),
        Some(l) if !l.up => (Status::Problem, format!("gateway port {name} is down")),
        Some(_) => (Status::Ok, format!("gateway port {name} is up")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conflist::parse;

    fn rule(prio: u32, table: u32) -> Rule {
        Rule::new(false, prio, RuleKind::Lookup(table))
    }

    fn default_rules() -> Vec<Rule> {
        vec![rule(0, 255), rule(32766, 254), rule(32767, 253)]
    }

    /// Calico's and Flannel's lists: not IPvlan-based, and none of ours.
    const CALICO: &str = r#"{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[
        {"type":"calico","ipam":{"type":"calico-ipam"}},{"type":"bandwidth"},{"type":"portmap"}]}"#;
    const FLANNEL: &str = r#"{"name":"cbr0","cniVersion":"0.3.1","plugins":[
        {"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap"}]}"#;
    /// The reference ipvlan plugin with host-local, as the installer leaves it.
    const REFERENCE: &str = r#"{"name":"pods","cniVersion":"1.0.0","plugins":[
        {"type":"ipvlan","master":"eth0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.10.0.0/24"}]]}},
        {"type":"tombstone","holdSeconds":30,"tables":["main",100]},
        {"type":"portmap"}]}"#;
    const OURS: &str = r#"{"name":"pods","cniVersion":"1.1.0","plugins":[
        {"type":"tombstone-ipvlan","master":"eth0","ipam":{"type":"tombstone-ipam","subnet":"10.20.0.0/16","reuseAfterSeconds":60}},
        {"type":"tombstone","holdSeconds":90}]}"#;

    #[test]
    fn positions() {
        let st = |t: &str| position(&parse(t).unwrap());
        assert_eq!(
            st(REFERENCE),
            (Status::Ok, r#"right after "ipvlan""#.into())
        );
        assert!(st(CALICO).1.starts_with("missing"));
        let (s, d) = st(r#"{"name":"n","plugins":[{"type":"tombstone"},{"type":"ipvlan"}]}"#);
        assert_eq!(s, Status::Problem);
        assert!(d.starts_with("misplaced"), "{d}");
        let (s, d) = st(
            r#"{"name":"n","plugins":[{"type":"ipvlan"},{"type":"tombstone"},{"type":"tombstone"}]}"#,
        );
        assert_eq!(s, Status::Problem);
        assert!(d.starts_with("duplicated: 2"), "{d}");
        let (s, d) = st(
            r#"{"name":"n","plugins":[{"type":"ipvlan"},{"type":"portmap"},{"type":"tombstone"}]}"#,
        );
        assert_eq!(s, Status::Ok);
        assert!(d.contains("portmap"), "{d}");
    }

    #[test]
    fn versions_and_hold_use_the_installers_rules() {
        let n = parse(REFERENCE).unwrap();
        let (s, d) = versions(&n);
        assert_eq!(s, Status::Ok, "{d}");
        assert!(d.contains("not checked: ipvlan, portmap"), "{d}");
        assert_eq!(versions(&parse(CALICO).unwrap()).0, Status::Info);
        let old = REFERENCE.replace("1.0.0", "0.2.0");
        let (s, d) = versions(&parse(&old).unwrap());
        assert_eq!(s, Status::Problem);
        assert!(d.contains("0.2.0"), "{d}");
        // OURS: hold 90 against reuseAfterSeconds 60, the installer's own refusal.
        let n = parse(OURS).unwrap();
        let (s, d) = hold(&n);
        assert_eq!(s, Status::Problem);
        assert_eq!(d, n.hold_problem(&Map::new(), &Map::new()).unwrap());
        assert_eq!(hold(&parse(REFERENCE).unwrap()).0, Status::Info);
        let ok = OURS.replace("90", "30");
        assert_eq!(hold(&parse(&ok).unwrap()).0, Status::Ok);
    }

    #[test]
    fn the_entry_is_read_by_the_plugins_parser() {
        let c = entry_conf(&parse(REFERENCE).unwrap()).unwrap().unwrap();
        assert_eq!(c.tables, vec![254, 100]);
        assert_eq!(c.hold_seconds, 30);
        assert!(c.sweeper);
        assert!(entry_conf(&parse(CALICO).unwrap()).is_none());
        let bad = REFERENCE.replace(r#""tables":["main",100]"#, r#""tables":[255]"#);
        let e = entry_conf(&parse(&bad).unwrap()).unwrap().unwrap_err();
        assert!(e.contains("255"), "{e}");
    }

    #[test]
    fn subnets_of_each_ipam() {
        let sub = |t: &str| -> Vec<String> {
            pod_subnets(&parse(t).unwrap())
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(sub(REFERENCE), ["10.10.0.0/24"]);
        assert_eq!(sub(OURS), ["10.20.0.0/16"]);
        assert!(sub(CALICO).is_empty());
        let wb = r#"{"name":"w","plugins":[{"type":"ipvlan","ipam":{"type":"whereabouts","range":"192.168.2.0/24"}}]}"#;
        assert_eq!(sub(wb), ["192.168.2.0/24"]);
        let st = r#"{"name":"s","plugins":[{"type":"ipvlan","ipam":{"type":"static","addresses":[{"address":"10.1.2.3/24"},{"address":"fd00::5/64"}]}}]}"#;
        assert_eq!(sub(st), ["10.1.2.0/24", "fd00::/64"]);
    }

    #[test]
    fn a_rule_before_main_to_an_unlisted_table_shadows() {
        let subnet: IpNetwork = "10.10.0.0/24".parse().unwrap();
        let main = [254];
        assert!(shadowing_rules(&default_rules(), &subnet, &main).is_empty());
        assert_eq!(
            rules_verdict(&default_rules(), &subnet, &main).0,
            Status::Ok
        );

        let mut rules = default_rules();
        let mut to_pods = rule(100, 100);
        to_pods.dst = Some(("10.10.0.0".parse().unwrap(), 16));
        let mut elsewhere = rule(101, 101);
        elsewhere.dst = Some(("192.168.0.0".parse().unwrap(), 16));
        let mut marked = rule(102, 102);
        marked.fwmark = Some((0x200, 0xf00));
        let after_main = rule(40000, 103);
        let mut not_pods = rule(104, 104);
        not_pods.dst = Some(("10.0.0.0".parse().unwrap(), 8));
        not_pods.invert = true;
        let mut v6 = rule(105, 105);
        v6.ipv6 = true;
        rules.extend([to_pods, elsewhere, marked, after_main, not_pods, v6]);
        let bad: Vec<u32> = shadowing_rules(&rules, &subnet, &main)
            .iter()
            .map(|r| r.priority)
            .collect();
        assert_eq!(bad, [100, 102]);
        // Listed tables are tombstoned: no shadow.
        assert_eq!(shadowing_rules(&rules, &subnet, &[254, 100, 102]).len(), 0);
        let (s, d) = rules_verdict(&rules, &subnet, &main);
        assert_eq!(s, Status::Problem);
        assert!(
            d.contains("100: from all to 10.10.0.0/16 lookup 100"),
            "{d}"
        );
        assert!(
            d.contains("102: from all fwmark 0x200/0xf00 lookup 102"),
            "{d}"
        );
        // No main rule: every rule counts.
        let only = [rule(5000, 7)];
        assert_eq!(shadowing_rules(&only, &subnet, &main).len(), 1);
    }

    #[test]
    fn state_dir_and_tombstones() {
        let p = "/run/cni/tombstone";
        assert_eq!(state_dir(p, &StateFacts::Missing).0, Status::Ok);
        let ok = StateFacts::Dir {
            uid: 0,
            mode: 0o700,
        };
        assert_eq!(state_dir(p, &ok).0, Status::Ok);
        let loose = StateFacts::Dir {
            uid: 0,
            mode: 0o755,
        };
        assert_eq!(state_dir(p, &loose).0, Status::Warning);
        let theirs = StateFacts::Dir {
            uid: 1000,
            mode: 0o700,
        };
        assert_eq!(state_dir(p, &theirs).0, Status::Problem);
        assert_eq!(
            state_dir(p, &StateFacts::NotADirectory("a symbolic link".into())).0,
            Status::Problem
        );
        let now = 1_000_000;
        assert_eq!(
            tombstones(&Ok(vec![now + 5_000, now - 1_000]), now),
            (Status::Ok, "2 live".into())
        );
        let (s, d) = tombstones(&Ok(vec![now - OVERDUE_MS - 1]), now);
        assert_eq!(s, Status::Problem);
        assert!(d.contains("no sweep ran"), "{d}");
        assert_eq!(tombstones(&Err("bad".into()), now).0, Status::Problem);
    }

    #[test]
    fn sweepers_seen_and_unseen() {
        let argv = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let p = sweeping(
            7,
            &argv("/opt/cni/bin/tombstone sweep --until-empty --state-dir /x"),
        );
        assert_eq!(p.as_ref().unwrap().state_dir.as_deref(), Some("/x"));
        let d = sweeping(8, &argv("tombstone sweep")).unwrap();
        assert_eq!(d.state_dir.as_deref(), Some("/run/cni/tombstone"));
        assert!(sweeping(9, &argv("/usr/bin/tombstone-install agent --root /host")).is_some());
        assert!(sweeping(9, &argv("tombstone list")).is_none());
        assert!(sweeping(9, &argv("tombstone-install --root /")).is_none());

        let none = TimerFacts::default();
        assert_eq!(sweeper(true, "/x", &Ok(vec![]), &none).0, Status::Ok);
        assert_eq!(sweeper(false, "/x", &Ok(vec![]), &none).0, Status::Unknown);
        assert_eq!(
            sweeper(false, "/x", &Ok(vec![p.clone().unwrap()]), &none).0,
            Status::Ok
        );
        assert_eq!(
            sweeper(false, "/y", &Ok(vec![p.unwrap()]), &none).0,
            Status::Unknown
        );
        let timer = |enabled, dir: &str| TimerFacts {
            timer: true,
            enabled,
            service_state_dir: Some(dir.into()),
        };
        assert_eq!(
            sweeper(false, "/x", &Ok(vec![]), &timer(true, "/x")).0,
            Status::Ok
        );
        assert_eq!(
            sweeper(false, "/x", &Ok(vec![]), &timer(true, "/run/cni/tombstone")).0,
            Status::Problem
        );
        assert_eq!(
            sweeper(false, "/x", &Ok(vec![]), &timer(false, "/x")).0,
            Status::Problem
        );
        let service = crate::host::service(std::path::Path::new("/opt/cni/bin"), Some("/x"));
        assert_eq!(service_state_dir(&service), "/x");
        let service = crate::host::service(std::path::Path::new("/opt/cni/bin"), None);
        assert_eq!(service_state_dir(&service), "/run/cni/tombstone");
    }

    #[test]
    fn gateway_ports_per_main_plugin() {
        assert!(matches!(
            port_check(&parse(REFERENCE).unwrap()),
            PortCheck::NotApplicable((Status::Info, _))
        ));
        let PortCheck::Port(name) = port_check(&parse(OURS).unwrap()) else {
            panic!("tombstone-ipvlan keeps a port")
        };
        assert_eq!(name, gateway_port_name("pods"));
        let off = OURS.replace(
            r#""master":"eth0""#,
            r#""master":"eth0","gatewayPort":false"#,
        );
        assert!(matches!(
            port_check(&parse(&off).unwrap()),
            PortCheck::NotApplicable((Status::Info, _))
        ));
        assert_eq!(gateway_port(&name, None).0, Status::Problem);
        let mut l = Link {
            name: name.clone(),
            kind: Some("ipvlan".into()),
            up: true,
            ..Default::default()
        };
        assert_eq!(gateway_port(&name, Some(&l)).0, Status::Ok);
        l.up = false;
        assert_eq!(gateway_port(&name, Some(&l)).0, Status::Problem);
        l.kind = Some("dummy".into());
        assert!(gateway_port(&name, Some(&l)).1.contains("dummy"));
    }

    #[test]
    fn multus_delegates_are_checked_as_the_runtime_runs_them() {
        use crate::confdir::{Listed, Verdict, select};
        let multus = format!(
            r#"{{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","delegates":[{FLANNEL}],"clusterNetwork":"pods"}}"#
        );
        let files: Vec<Listed> = [
            ("00-multus.conf", multus.as_str()),
            ("10-pods.conflist", REFERENCE),
        ]
        .iter()
        .map(|(n, t)| Listed {
            name: n.to_string(),
            text: t.to_string(),
            net: parse(t),
        })
        .collect();
        let mut seen = Vec::new();
        for v in select(std::path::Path::new("/etc/cni/net.d"), &files, &[]) {
            match v {
                Verdict::Skipped { net, via, .. } => {
                    assert!(via.unwrap().contains("Multus delegate 0"));
                    seen.push(format!("{} {:?}", net.name, position(&net).0));
                }
                Verdict::Edit(t) => {
                    assert!(t.via.unwrap().contains("clusterNetwork"));
                    seen.push(format!("{} {:?}", t.net.name, position(&t.net).0));
                }
                _ => {}
            }
        }
        assert_eq!(seen, ["cbr0 Problem", "pods Ok"]);
    }

    #[test]
    fn report_forms() {
        let mut r = Report::default();
        r.findings.push(Finding {
            network: Some("pods".into()),
            file: Some("/etc/cni/net.d/10-pods.conflist".into()),
            check: "position",
            status: Status::Ok,
            detail: "right after".into(),
        });
        assert_eq!(r.exit_code(), 0);
        assert!(r.table().ends_with("no problem found\n"));
        r.findings.push(Finding {
            network: None,
            file: None,
            check: "rules",
            status: Status::Error,
            detail: "dump failed".into(),
        });
        assert_eq!(r.exit_code(), 1);
        let j = r.json();
        assert_eq!(j["schema"], 1);
        assert_eq!(j["ok"], false);
        assert_eq!(j["problems"], 1);
        assert_eq!(j["findings"][1]["status"], "error");
        assert_eq!(j["findings"][0]["network"], "pods");
        assert!(r.table().contains("ERROR"));
    }
}
