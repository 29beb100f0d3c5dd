//! What a runtime passed to a plugin: a wrapper script that records each run's CNI_*
//! environment and stdin before it execs the plugin, and readers of those records, of the
//! results' addresses and of the allocations `tombstone-ipam` and `host-local` keep.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::Value;

/// What one plugin run was given: its CNI_* environment and its stdin.
#[derive(Debug)]
pub struct Call {
    pub env: BTreeMap<String, String>,
    pub stdin: Value,
}

/// A plugin script recording its runs in `dir`, then exec-ing `plugin` with the same stdin.
pub fn recorder(dir: &Path, plugin: &str) -> String {
    format!(
        "#!/bin/sh\nset -e\nmkdir -p '{rec}'\nn=\"$(date +%s%N)-$$\"\nenv | grep '^CNI_' > '{rec}'/\"$n.env\" || true\n\
         cat > '{rec}'/\"$n.stdin\"\nexec '{plugin}' < '{rec}'/\"$n.stdin\"\n",
        rec = dir.display()
    )
}

/// The runs the recording wrapper saw, in order.
pub fn recorded(dir: &Path) -> Vec<Call> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".env")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let env = fs::read_to_string(dir.join(format!("{n}.env"))).unwrap_or_default();
            let stdin = fs::read_to_string(dir.join(format!("{n}.stdin"))).unwrap_or_default();
            Call {
                env: env
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                stdin: serde_json::from_str(&stdin).unwrap_or(Value::Null),
            }
        })
        .collect()
}

/// The recorded runs of `command` for container `id`.
pub fn calls_for<'a>(calls: &'a [Call], command: &str, id: &str) -> Vec<&'a Call> {
    calls
        .iter()
        .filter(|c| {
            c.env.get("CNI_COMMAND").map(String::as_str) == Some(command)
                && c.env.get("CNI_CONTAINERID").map(String::as_str) == Some(id)
        })
        .collect()
}

/// The `CNI_ARGS` pairs of a run.
pub fn cni_args(call: &Call) -> Vec<String> {
    call.env
        .get("CNI_ARGS")
        .map(|s| s.split(';').map(str::to_string).collect())
        .unwrap_or_default()
}

/// The IPv4 addresses of a result (`prevResult`).
pub fn result_ips(v: &Value) -> Vec<String> {
    v["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect()
}

/// The one ADD of pod `name` (container `id`) in `calls`, checked: on `eth0` in `netns`, its
/// `prevResult` holding `ip`, at cniVersion 1.0.0 (the conflists'); printed, for the
/// runtime's own checks of its CNI_ARGS and `runtimeConfig`.
pub fn the_add<'a>(calls: &'a [Call], name: &str, id: &str, netns: &str, ip: Ipv4Addr) -> &'a Call {
    let adds = calls_for(calls, "ADD", id);
    assert_eq!(adds.len(), 1, "one ADD of {name}: {calls:?}");
    let (env, stdin) = (&adds[0].env, &adds[0].stdin);
    assert_eq!(
        env.get("CNI_IFNAME").map(String::as_str),
        Some("eth0"),
        "{env:?}"
    );
    assert_eq!(
        env.get("CNI_NETNS").map(String::as_str),
        Some(netns),
        "{env:?}"
    );
    assert_eq!(
        result_ips(&stdin["prevResult"]),
        vec![ip.to_string()],
        "{stdin}"
    );
    assert_eq!(stdin["cniVersion"], "1.0.0");
    println!(
        "{name}'s ADD: CNI_ARGS={} runtimeConfig={}",
        env["CNI_ARGS"], stdin["runtimeConfig"]
    );
    adds[0]
}

/// The one DEL of container `id` in `calls` (its first stop), checked: its `prevResult`
/// holding `ip`, its first port mapping's `port_key` (the runtime's spelling of the host
/// port) `host_port`.
pub fn the_del(calls: &[Call], id: &str, ip: Ipv4Addr, port_key: &str, host_port: u16) {
    let dels = calls_for(calls, "DEL", id);
    assert_eq!(dels.len(), 1, "one DEL for the stop: {dels:?}");
    let stdin = &dels[0].stdin;
    assert_eq!(
        result_ips(&stdin["prevResult"]),
        vec![ip.to_string()],
        "DEL's prevResult"
    );
    assert_eq!(
        stdin["runtimeConfig"]["portMappings"][0][port_key],
        host_port
    );
}

/// Every allocation `tombstone-ipam` records in `dir` (files `ip-*` holding an `"a"` record).
pub fn ipam_allocations(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for net in fs::read_dir(dir).into_iter().flatten().flatten() {
        let state = net.path().join("tombstone-ipam.d");
        for f in fs::read_dir(&state).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let text = fs::read_to_string(f.path()).unwrap_or_default();
            if name.starts_with("ip-") && text.starts_with("[\"a\"") {
                found.push(format!("{name}: {text}"));
            }
        }
    }
    found
}

/// Every address file `host-local` keeps in `dir` (named by the address).
pub fn host_local_allocations(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for net in fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in fs::read_dir(net.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::IpAddr>().is_ok() {
                found.push(name);
            }
        }
    }
    found
}

/// The allocations either IPAM (`tombstone-ipam`, `host-local`) keeps in its data dir `dir`.
pub fn allocations(dir: &Path) -> Vec<String> {
    let mut found = ipam_allocations(dir);
    found.extend(host_local_allocations(dir));
    found
}
