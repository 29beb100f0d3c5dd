//! Test helpers: throwaway network namespaces, and the built binary run as a runtime runs
//! it (environment + stdin), inside one.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_tombstone");

/// Tests that need root are `#[ignore = "needs root: ..."]`: plain `cargo test` lists them
/// as ignored; `make test` (`--include-ignored`) runs them, and without root they fail here,
/// naming the prerequisite. They never pass without running.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (it creates network namespaces with `ip netns`): run `make test` \
         (or `cargo test -- --include-ignored`) as root"
    );
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh network namespace with `lo` up and a veth pair `v0`/`v1` (a stand-in for the
/// pod-facing device: the plugin's work does not depend on the device type), removed on drop.
pub struct Netns {
    pub name: String,
    pub state_dir: PathBuf,
}

impl Netns {
    /// A namespace for a test that needs root; fails the test without root (see
    /// [`require_root`]).
    pub fn for_root_test() -> Netns {
        require_root();
        Netns::new()
    }

    pub fn new() -> Netns {
        let name = unique("ts-");
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns {
            state_dir: std::env::temp_dir().join(format!("{name}-state")),
            name,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        ns.ip(&["link", "set", "v0", "up"]);
        ns.ip(&["link", "set", "v1", "up"]);
        ns.ip(&["addr", "add", "10.10.0.1/24", "dev", "v0"]);
        ns.ip(&["-6", "addr", "add", "fd10::1/64", "dev", "v0", "nodad"]);
        ns
    }

    /// `ip -n NS ARGS...`, asserting success, returning stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Our routes, both families, every table: sorted lines of `ip route show proto 84`.
    pub fn tombstones(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for fam in ["-4", "-6"] {
            let out = self.ip(&[fam, "route", "show", "table", "all", "proto", "84"]);
            lines.extend(out.lines().map(|l| l.trim().to_string()));
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
            s += &self.ip(args);
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

    pub fn state_file(&self, network: &str) -> PathBuf {
        self.state_dir.join(format!("{network}.json"))
    }

    pub fn ledger(&self, network: &str) -> Value {
        let bytes = std::fs::read(self.state_file(network)).expect("ledger exists");
        serde_json::from_slice(&bytes).expect("ledger is JSON")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {:?}", self.stdout))
    }

    /// Asserts success and an empty stdout (DEL, CHECK, GC, STATUS).
    pub fn ok_empty(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "stdout {} stderr {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "", "nothing but a result belongs on stdout");
        self
    }

    /// Asserts a failure with one CNI error object of `code` on stdout.
    pub fn err(&self, code: u64) -> Value {
        assert_ne!(self.code, 0, "expected failure, stdout {}", self.stdout);
        let v = self.json();
        assert_eq!(v["code"].as_u64(), Some(code), "{v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(v["cniVersion"].is_string(), "{v}");
        v
    }
}

pub fn run_in(netns: Option<&str>, env: &[(&str, &str)], stdin: &[u8], args: &[&str]) -> Outcome {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let defaults = [
        ("CNI_CONTAINERID", "ctr-a"),
        ("CNI_NETNS", "/var/run/netns/pod"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        ("TOMBSTONE_LOG", "stderr"),
    ];
    for (k, v) in defaults {
        cmd.env(k, v);
    }
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
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

/// Polls `cond` every 100 ms for up to `secs` seconds.
pub fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    cond()
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
