//! The `tombstone` tests' own helpers over the workspace's test kit: a namespace set up as a
//! node for the chained plugin (a veth pair, a state directory), the built binary run as a
//! runtime runs it inside one, and readings of its ledgers and routes.
#![allow(dead_code, unused_imports)]

pub use tombstone_testkit::{Outcome, eventually, kill, require_root, sh, storm, strace};

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_tombstone");

/// A fresh network namespace with `lo` up and a veth pair `v0`/`v1` (a stand-in for the
/// pod-facing device: the plugin's work does not depend on the device type), removed on drop.
pub struct Netns {
    pub name: String,
    pub state_dir: PathBuf,
    ns: tombstone_testkit::Netns,
}

impl Netns {
    /// A namespace for a test that needs root; fails the test without root (see
    /// [`require_root`]).
    pub fn for_root_test() -> Netns {
        require_root();
        Netns::new()
    }

    pub fn new() -> Netns {
        let inner = tombstone_testkit::Netns::new("ts-");
        let ns = Netns {
            state_dir: std::env::temp_dir().join(format!("{}-state", inner.name)),
            name: inner.name.clone(),
            ns: inner,
        };
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        ns.ip(&["link", "set", "v0", "up"]);
        ns.ip(&["link", "set", "v1", "up"]);
        ns.ip(&["addr", "add", "10.10.0.1/24", "dev", "v0"]);
        ns.ip(&["-6", "addr", "add", "fd10::1/64", "dev", "v0", "nodad"]);
        ns
    }

    /// `ip -n NS ARGS...`, asserting success, returning stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        self.ns.ip(args)
    }

    /// The route metric that marks this namespace's state directory's tombstones.
    pub fn mark(&self) -> u32 {
        tombstone::chained::dir_mark(&tombstone_cni::state::normalize(&self.state_dir).unwrap())
    }

    /// Our routes, both families, every table: sorted lines of `ip route show proto 84`,
    /// with this state directory's metric left out (routes of another metric keep theirs).
    pub fn tombstones(&self) -> Vec<String> {
        let ours = format!(" metric {}", self.mark());
        let mut lines = Vec::new();
        for fam in ["-4", "-6"] {
            let out = self.ip(&[fam, "route", "show", "table", "all", "proto", "84"]);
            lines.extend(out.lines().map(|l| l.trim().replace(&ours, "")));
        }
        lines.sort();
        lines
    }

    /// Every route and neighbour entry of the namespace (for "nothing changed").
    pub fn kernel_snapshot(&self) -> String {
        let mut s = String::new();
        for args in [
            &["-4", "route", "show", "table", "all"][..],
            &["-6", "route", "show", "table", "all"],
            &["-4", "neigh", "show"],
            &["-6", "neigh", "show", "nud", "permanent"],
        ] {
            // Link-local addresses come and go with IPv6 DAD on their own time: not ours.
            for line in self.ip(args).lines().filter(|l| !l.contains("fe80:")) {
                s += line;
                s.push('\n');
            }
        }
        s
    }

    /// Adds a neighbour entry (`ip` picks ARP or NDP from the address) in state `nud`.
    pub fn neigh_add(&self, ip: &str, lladdr: &str, dev: &str, nud: &str) {
        self.ip(&["neigh", "add", ip, "lladdr", lladdr, "dev", dev, "nud", nud]);
    }

    pub fn neigh(&self, ip: &str) -> String {
        self.ip(&["neigh", "show", "to", ip])
    }

    pub fn conf(&self, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.1.0",
            "name": "pods",
            "type": "tombstone",
            "stateDir": self.state_dir,
            // Tests drive expiry themselves; the background sweeper has a test of its own.
            "sweeper": false,
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    /// [`Self::conf`] with a main plugin's `prevResult` for `ips`.
    pub fn conf_with_prev(&self, extra: Value, ips: &[&str]) -> Value {
        let mut c = self.conf(extra);
        c["prevResult"] = prev_result(ips);
        c
    }

    pub fn run(&self, verb: &str, container: &str, conf: &Value) -> Outcome {
        self.run_env(
            &[("CNI_COMMAND", verb), ("CNI_CONTAINERID", container)],
            conf.to_string().as_bytes(),
        )
    }

    /// Runs the plugin in the namespace with a runtime's default environment, overridden
    /// (or removed, with an empty value) by `env`.
    pub fn run_env(&self, env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        run_in(Some(&self.name), env, stdin, &[])
    }

    /// The plugin run in the namespace as [`Self::run_env`] runs it (the same default
    /// environment, overridden or removed by `env`), as a command for [`strace::run`].
    pub fn plugin_cmd(&self, env: &[(&str, &str)], stdin: &[u8], args: &[&str]) -> strace::Cmd {
        let mut vars: Vec<(String, String)> = RUNTIME_ENV
            .iter()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.extend(
            env.iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        strace::Cmd {
            env: vars,
            ..strace::Cmd::new(BIN)
                .netns(&self.name)
                .args(args)
                .stdin(stdin)
        }
    }

    pub fn state_file(&self, network: &str) -> PathBuf {
        self.state_dir.join(format!("{network}.json"))
    }

    /// A network's ledger as its files say: the head with every entry (see [`Ledgers::read`]).
    pub fn ledger(&self, network: &str) -> Value {
        let name = format!("{network}.json");
        Ledgers::read(&self.state_dir)
            .files
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .expect("ledger exists")
    }

    /// The plugin binary as a runtime starts it, in this namespace: entered with `setns`
    /// between fork and exec (what `ip netns exec` does, without `ip`'s own start-up before
    /// the plugin, so a kill delay counts from the plugin's start). The environment is
    /// [`run_in`]'s runtime defaults, overridden (or removed, with an empty value) by `env`.
    pub fn command(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let fd: OwnedFd = std::fs::File::open(format!("/run/netns/{}", self.name))
            .expect("open the namespace")
            .into();
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        runtime_env(&mut cmd, env);
        // SAFETY: the closure only makes the setns system call (async-signal-safe) on an
        // fd it owns; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
        cmd
    }

    /// A CNI invocation of the plugin (see [`Self::command`]).
    pub fn cni(&self, verb: &str, container: &str, ifname: &str) -> Command {
        self.command(
            &[
                ("CNI_COMMAND", verb),
                ("CNI_CONTAINERID", container),
                ("CNI_IFNAME", ifname),
            ],
            &[],
        )
    }

    /// Every host route (a /32 or /128) of protocol 84 in the namespace, both families,
    /// every table, as (address, table).
    pub fn routes84(&self) -> BTreeSet<(IpAddr, u32)> {
        let mut out = BTreeSet::new();
        for fam in ["-4", "-6"] {
            let text = self.ip(&["-j", fam, "route", "show", "table", "all", "proto", "84"]);
            let routes: Value = serde_json::from_str(&text).expect("ip -j prints JSON");
            for r in routes.as_array().into_iter().flatten() {
                let dst = r["dst"].as_str().unwrap_or_default();
                let (addr, len) = match dst.split_once('/') {
                    Some((a, l)) => (a, l.parse::<u8>().unwrap_or(0)),
                    None => (dst, if fam == "-4" { 32 } else { 128 }),
                };
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                if len != if ip.is_ipv4() { 32 } else { 128 } {
                    continue;
                }
                out.insert((ip, table_of(&r["table"])));
            }
        }
        out
    }
}

/// A table as `ip -j` prints it: absent or "main" is 254, else its number.
fn table_of(v: &Value) -> u32 {
    match v {
        Value::Null => 254,
        Value::String(s) if s == "main" => 254,
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("table {s:?}")),
        Value::Number(n) => n.as_u64().unwrap() as u32,
        other => panic!("table {other}"),
    }
}

/// What the ledgers of a state directory say, read the way `tombstone list` reads them.
#[derive(Debug, Default)]
pub struct Ledgers {
    /// File name to parsed ledger.
    pub files: Vec<(String, Value)>,
}

impl Ledgers {
    /// Every network of `dir` (none when the directory does not exist): its head
    /// `<name>.json` with the entries of `<name>.d/` added as its `attachments` and
    /// `tombstones` (beside any an older head held inline), read straight from the files.
    pub fn read(dir: &Path) -> Ledgers {
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let mut v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|err| panic!("{name} is not JSON ({err})"));
            for key in ["attachments", "tombstones"] {
                if v.get(key).is_none() {
                    v[key] = json!([]);
                }
            }
            for (file, entry) in entry_files(dir, stem) {
                let key = if file.starts_with("t-") {
                    "tombstones"
                } else if file.starts_with("a-") {
                    "attachments"
                } else {
                    continue;
                };
                v[key].as_array_mut().unwrap().push(entry);
            }
            files.push((name, v));
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ledgers { files }
    }

    /// Every tombstone: (address, tables, containerID, ifname, network).
    pub fn tombstones(&self) -> Vec<(IpAddr, Vec<u32>, String, String, String)> {
        let mut out = Vec::new();
        for (_, l) in &self.files {
            for t in l["tombstones"].as_array().into_iter().flatten() {
                out.push((
                    t["ip"].as_str().unwrap().parse().unwrap(),
                    t["tables"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap() as u32)
                        .collect(),
                    t["containerID"].as_str().unwrap().to_string(),
                    t["ifname"].as_str().unwrap().to_string(),
                    l["network"].as_str().unwrap().to_string(),
                ));
            }
        }
        out
    }

    /// The (address, table) pairs the tombstones name.
    pub fn named(&self) -> BTreeSet<(IpAddr, u32)> {
        self.tombstones()
            .into_iter()
            .flat_map(|(ip, tables, ..)| tables.into_iter().map(move |t| (ip, t)))
            .collect()
    }

    /// Every attachment record: (containerID, ifname, sorted addresses).
    /// The live attachment records (a record with `releasedAtMs` is the memory of a DEL
    /// that ran, kept so that a repeated DEL starts no new hold).
    pub fn attachments(&self) -> BTreeSet<(String, String, Vec<IpAddr>)> {
        let mut out = BTreeSet::new();
        for (_, l) in &self.files {
            for a in l["attachments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a.get("releasedAtMs").is_none())
            {
                let mut ips: Vec<IpAddr> = a["ips"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().parse().unwrap())
                    .collect();
                ips.sort();
                out.insert((
                    a["containerID"].as_str().unwrap().to_string(),
                    a["ifname"].as_str().unwrap().to_string(),
                    ips,
                ));
            }
        }
        out
    }
}

/// Ends holds by hand: every tombstone of `dir` whose address `which` accepts gets an
/// `expiresAtMs` in the past (the ledger is rewritten in place; call it while no plugin
/// runs on the directory). Returns the addresses whose holds were ended.
pub fn expire(dir: &Path, mut which: impl FnMut(IpAddr) -> bool) -> Vec<IpAddr> {
    let mut ended = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        for (file, mut t) in entry_files(dir, stem) {
            if !file.starts_with("t-") {
                continue;
            }
            let ip: IpAddr = t["ip"].as_str().unwrap().parse().unwrap();
            if which(ip) {
                t["expiresAtMs"] = json!(1);
                ended.push(ip);
                write_tombstone_entry(&dir.join(format!("{stem}.d")).join(&file), &t);
            }
        }
    }
    ended
}

/// The entry files (`*.json`) of a network's `<stem>.d/`, parsed, by file name. A
/// tombstone's link record (its text `[routeType, tables, metric, expiresAtMs, ifname,
/// containerID]`, its address in its name) is given in a version 3 file's object form.
pub fn entry_files(dir: &Path, stem: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let entries = dir.join(format!("{stem}.d"));
    for e in std::fs::read_dir(entries).into_iter().flatten().flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(entry) = file.strip_suffix(".json") else {
            continue;
        };
        let is_link = e.file_type().is_ok_and(|t| t.is_symlink());
        let bytes = if is_link {
            std::fs::read_link(e.path()).map(|t| t.into_os_string().into_encoded_bytes())
        } else {
            std::fs::read(e.path())
        };
        let Ok(bytes) = bytes else {
            continue;
        };
        let v: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|err| panic!("{stem}.d/{file} is not JSON ({err})"));
        let v = match (is_link, entry.strip_prefix("t-")) {
            (false, _) => v,
            (true, Some(ip)) => json!({
                "ip": ip.replace("%2E", ".").replace("%3A", ":"),
                "routeType": v[0], "tables": v[1], "metric": v[2], "expiresAtMs": v[3],
                "ifname": v[4], "containerID": v[5],
            }),
            (true, None) => panic!("{stem}.d/{file} is a link but no tombstone"),
        };
        out.push((file, v));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes a tombstone entry as the plugin does: a link record of `t` (in the object form
/// [`entry_files`] gives), replacing what is at `path`.
pub fn write_tombstone_entry(path: &Path, t: &Value) {
    let text = json!([
        t["routeType"],
        t["tables"],
        t["metric"],
        t["expiresAtMs"],
        t["ifname"],
        t["containerID"]
    ])
    .to_string();
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(text, path).unwrap();
}

/// The files of a state directory other than what the plugin keeps there: `<name>.json`,
/// `<name>.lock` and the directory `<name>.d` of its entries (plugin/cni/src/state.rs,
/// plugin/src/chained/store.rs) for a name of `[A-Za-z0-9_%-]` (an encoded network name),
/// `sweeper.bg.lock`, the background sweeper's, and `state.dir.lock`, the directory's own
/// (shared by the verbs, taken alone by a sweep); in `<name>.d`, entries `[tah]-<name>.json`.
/// Anything else (a `*.tmp<pid>` left by a killed write, a `*.corrupt-*`, a STATUS probe) is
/// a stray file, named relative to `dir`.
pub fn stray_files(dir: &Path) -> Vec<String> {
    let encoded = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_%-".contains(&b))
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".d")
            && encoded(stem)
            && e.path().is_dir()
        {
            for f in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                let file = f.file_name().to_string_lossy().into_owned();
                let entry = file.strip_suffix(".json").is_some_and(|s| {
                    ["t-", "a-", "h-"]
                        .iter()
                        .any(|p| s.strip_prefix(p).is_some_and(encoded))
                });
                if !entry {
                    out.push(format!("{name}/{file}"));
                }
            }
            continue;
        }
        let stem = name
            .strip_suffix(".json")
            .or_else(|| name.strip_suffix(".lock"));
        if !(stem.is_some_and(encoded) || name == "sweeper.bg.lock" || name == "state.dir.lock") {
            out.push(name);
        }
    }
    out.sort();
    out
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// What a runtime sets for every invocation (tests override them).
pub const RUNTIME_ENV: [(&str, &str); 5] = [
    ("CNI_CONTAINERID", "ctr-a"),
    ("CNI_NETNS", "/var/run/netns/pod"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_PATH", "/opt/cni/bin"),
    ("TOMBSTONE_LOG", "stderr"),
];

/// A runtime's environment and nothing else: `PATH`, [`RUNTIME_ENV`], then `env` (an empty
/// value removes the variable).
pub fn runtime_env(cmd: &mut Command, env: &[(&str, &str)]) {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in RUNTIME_ENV {
        cmd.env(k, v);
    }
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
}

/// The plugin run once as a runtime runs it, in `netns` when given; 60 s at most.
pub fn run_in(netns: Option<&str>, env: &[(&str, &str)], stdin: &[u8], args: &[&str]) -> Outcome {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(args);
    runtime_env(&mut cmd, env);
    tombstone_testkit::run(cmd, stdin, std::time::Duration::from_secs(60))
}

/// A main plugin's result for one pod, with spec 1.1 fields the plugin does not model.
pub fn prev_result(ips: &[&str]) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:05", "sandbox": "/var/run/netns/pod", "socketPath": "/run/x.sock"}],
        "ips": ips.iter().map(|a| json!({"address": a, "interface": 0})).collect::<Vec<_>>(),
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.10.0.1", "mtu": 1400, "table": 100, "scope": 0, "priority": 5}],
        "dns": {"nameservers": ["10.10.0.10"]},
        "vendorKey": {"kept": true}
    })
}

/// The processes whose command line contains every one of `words`.
pub fn processes_with(words: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if words.iter().all(|w| cmdline.contains(w)) {
            out.push(pid);
        }
    }
    out
}

/// Every file of a directory with its bytes (for "state unchanged").
pub fn dir_snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
