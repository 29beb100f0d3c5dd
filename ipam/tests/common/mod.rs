//! Running the built binary as a runtime would: environment plus config on stdin.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// One invocation; `env` entries with an empty value are left out.
pub fn run_with(program: &Path, env: &[(&str, &str)], stdin: &str) -> Out {
    let mut cmd = command(program, env);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(o.stdout).unwrap();
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout {stdout:?}: {e}"))
    };
    Out {
        rc: o.status.code().unwrap_or(-1),
        stdout,
        json,
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
