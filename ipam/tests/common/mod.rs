//! The `tombstone-ipam` tests' own helpers over the workspace's test kit: the built binary
//! (or the reference host-local) run as a runtime runs it, configs, state files.

#![allow(dead_code)]

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

pub fn state_file(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(name).join("tombstone-ipam.json")
}

pub fn address(out: &Out, i: usize) -> String {
    out.json["ips"][i]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {}", out.stdout))
        .to_string()
}
