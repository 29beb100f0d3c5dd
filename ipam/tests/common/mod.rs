//! The `tombstone-ipam` tests' own helpers over the workspace's test kit: the built binary
//! (or the reference host-local) run as a runtime runs it, configs, state files.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tombstone-ipam"))
}

/// The reference host-local, where a distribution puts it (`HOST_LOCAL` overrides). The
/// tests that need it are `#[ignore]`d; included (`make test`), they fail without it.
pub fn host_local() -> PathBuf {
    if let Ok(p) = std::env::var("HOST_LOCAL") {
        return PathBuf::from(p);
    }
    ["/usr/lib/cni/host-local", "/opt/cni/bin/host-local"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "the reference host-local plugin is missing (not in /usr/lib/cni or /opt/cni/bin, \
             no HOST_LOCAL): install containernetworking-plugins (`make deps`)",
        )
}

/// A fresh data directory for one test.
pub fn data_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tombstone-ipam-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Debug)]
pub struct Out {
    pub rc: i32,
    pub stdout: String,
    pub json: Value,
    pub stderr: String,
}

/// `program` with exactly `env` (entries with an empty value left out) and logs on stderr.
pub fn command(program: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("TOMBSTONE_LOG", "stderr");
    for (k, v) in env {
        if !v.is_empty() {
            cmd.env(k, v);
        }
    }
    cmd
}

/// One invocation; `env` entries with an empty value are left out. 60 s at most.
pub fn run_with(program: &Path, env: &[(&str, &str)], stdin: &str) -> Out {
    let o = tombstone_testkit::run(
        command(program, env),
        stdin.as_bytes(),
        std::time::Duration::from_secs(60),
    );
    Out {
        rc: o.code,
        json: o.json_or_null(),
        stdout: o.stdout,
        stderr: o.stderr,
    }
}

pub fn attach_env<'a>(command: &'a str, cid: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", "/var/run/netns/test"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

pub fn add(conf: &str, cid: &str) -> Out {
    run_with(&bin(), &attach_env("ADD", cid), conf)
}

pub fn del(conf: &str, cid: &str) -> Out {
    run_with(&bin(), &attach_env("DEL", cid), conf)
}

pub fn gc(conf: &str) -> Out {
    run_with(
        &bin(),
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
        conf,
    )
}

pub fn status(conf: &str) -> Out {
    run_with(&bin(), &[("CNI_COMMAND", "STATUS")], conf)
}

/// A network config with the given `ipam` body fields (without braces).
pub fn conf(version: &str, name: &str, data_dir: &Path, ipam: &str) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"{name}","type":"ipvlan","ipam":{{"type":"tombstone-ipam","dataDir":"{}",{ipam}}}}}"#,
        data_dir.display()
    )
}

/// The state's directory (format 2: one file per address; ipam/src/store.rs).
pub fn state_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(name).join("tombstone-ipam.d")
}

/// Every file of the state directory and its bytes: a snapshot to compare.
pub fn snapshot(data_dir: &Path, name: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = state_dir(data_dir, name);
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (n, bytes)
        })
        .collect()
}

/// The state as its files say, read here independently of the crate's reader.
#[derive(Debug, Default, PartialEq)]
pub struct State {
    /// Address -> (container ID, ifname).
    pub allocs: BTreeMap<IpAddr, (String, String)>,
    /// Address -> release time.
    pub released: BTreeMap<IpAddr, u64>,
    pub cursors: BTreeMap<u64, IpAddr>,
    /// Files that are none of the state's (a temporary file left behind, say).
    pub strays: Vec<String>,
}

fn one_line(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let line = text.strip_suffix('\n').ok_or("no final newline")?;
    if line.contains('\n') {
        return Err("more than one line".into());
    }
    serde_json::from_str(line).map_err(|e| format!("{e}: {line:?}"))
}

/// Reads every file of the state directory; any file that is not well-formed is an error.
pub fn state(data_dir: &Path, name: &str) -> Result<State, String> {
    let dir = state_dir(data_dir, name);
    let mut st = State::default();
    let marker = std::fs::read(dir.join("format")).map_err(|e| format!("format: {e}"))?;
    let m = one_line(&marker)?;
    if m["format"] != "tombstone-ipam" || m["version"] != 2 || m["network"] != name {
        return Err(format!("bad marker {m}"));
    }
    let ip_of = |v: &Value| -> Result<IpAddr, String> {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad address {v}"))
    };
    for (file, bytes) in snapshot(data_dir, name) {
        let bad = |e: String| format!("{file}: {e}");
        if let Some(a) = file.strip_prefix("ip-") {
            let r = one_line(&bytes).map_err(bad)?;
            let ip = ip_of(&r[1]).map_err(bad)?;
            if a.parse::<IpAddr>() != Ok(ip) {
                return Err(bad(format!("holds {ip}")));
            }
            match (r[0].as_str(), r.as_array().map(Vec::len)) {
                (Some("a"), Some(4)) => {
                    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                    st.allocs.insert(ip, (s(&r[2]), s(&r[3])));
                }
                (Some("r"), Some(3)) => {
                    st.released
                        .insert(ip, r[2].as_u64().ok_or_else(|| bad("time".into()))?);
                }
                _ => return Err(bad(format!("bad record {r}"))),
            }
        } else if file.starts_with("cursor-") {
            let r = one_line(&bytes).map_err(bad)?;
            st.cursors.insert(
                r[1].as_u64().unwrap_or(u64::MAX),
                ip_of(&r[2]).map_err(bad)?,
            );
        } else if file.starts_with("ctr-") {
            for line in String::from_utf8_lossy(&bytes).lines() {
                serde_json::from_str::<Value>(line).map_err(|e| bad(e.to_string()))?;
            }
        } else if file != "format" {
            st.strays.push(file);
        }
    }
    Ok(st)
}

pub fn address(out: &Out, i: usize) -> String {
    out.json["ips"][i]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {}", out.stdout))
        .to_string()
}
