//! Every spec version a runtime may speak, against the built binaries: `tombstone` chained in a
//! 0.3.0 or 0.3.1 list (Calico's, Flannel's, Cilium's and Multus's conflists still say so) runs
//! ADD and DEL (the DEL without `prevResult`, as libcni sends it before 0.4.0), refuses CHECK
//! with code 1, and answers in the list's format; a mistyped config value names its key, an
//! unknown one is a warning naming it. The `root_` tests need a network namespace.

mod common;

use common::*;
use serde_json::{Value, json};

const IPVLAN: &str = env!("CARGO_BIN_EXE_tombstone-ipvlan");
const OLD: [&str; 2] = ["0.3.0", "0.3.1"];

/// A 0.3.x main plugin's result: `ips[].version` and the interface index.
fn prev_0_3(v: &str, ips: &[&str]) -> Value {
    json!({
        "cniVersion": v,
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:05", "sandbox": "/var/run/netns/pod"}],
        "ips": ips.iter().map(|a| json!({
            "version": if a.contains(':') { "6" } else { "4" },
            "address": a, "gateway": if a.contains(':') { "fd10::1" } else { "10.10.0.1" },
            "interface": 0,
        })).collect::<Vec<_>>(),
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.10.0.1"}],
        "dns": {}
    })
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_a_0_3_x_list_adds_and_deletes_without_prev_result() {
    for v in OLD {
        let ns = Netns::for_root_test();
        let mut add = ns.conf(json!({"cniVersion": v}));
        add["prevResult"] = prev_0_3(v, &["10.10.0.5/24", "fd10::5/64"]);
        let out = ns.run("ADD", "ctr-a", &add);
        assert_eq!(out.code, 0, "{v}: {} {}", out.stdout, out.stderr);
        // The result is the list's format: prevResult unchanged, `version` on every IP.
        let r = out.json();
        assert_eq!(r, add["prevResult"], "{v}");
        assert_eq!(r["ips"][1]["version"], "6");
        assert_eq!(r["ips"][1]["interface"], 0);

        // CHECK does not exist before 0.4.0: code 1, as libcni's skeleton answers.
        let e = ns.run("CHECK", "ctr-a", &add).err(1);
        assert_eq!(e["cniVersion"], v);
        assert!(e["msg"].as_str().unwrap().contains("CHECK"), "{e}");

        // libcni before 0.4.0 sends DEL without prevResult: the ADD's record names the IPs.
        let del = ns.conf(json!({"cniVersion": v}));
        ns.run("DEL", "ctr-a", &del).ok_empty();
        assert_eq!(
            ns.tombstones(),
            [
                "unreachable 10.10.0.5",
                "unreachable fd10::5 dev lo pref medium"
            ],
            "{v}"
        );
        ns.run("DEL", "ctr-a", &del).ok_empty();
        // A new pod given the address lifts the tombstone.
        let out = ns.run("ADD", "ctr-b", &add);
        assert_eq!(out.code, 0, "{v}: {}", out.stdout);
        assert!(ns.tombstones().is_empty(), "{v}");
    }
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_a_1_x_prev_result_in_a_0_3_1_list_is_answered_in_0_3_1() {
    let ns = Netns::for_root_test();
    let mut add = ns.conf(json!({"cniVersion": "0.3.1"}));
    add["prevResult"] = prev_result(&["10.10.0.5/24"]);
    let r = ns.run("ADD", "ctr-a", &add).json();
    assert_eq!(r["cniVersion"], "0.3.1");
    assert_eq!(r["ips"][0]["version"], "4");
    assert_eq!(r["ips"][0]["address"], "10.10.0.5/24");
    assert_eq!(r["vendorKey"], json!({"kept": true}));
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_an_unknown_key_is_a_warning_naming_the_key_it_misspells() {
    let ns = Netns::for_root_test();
    let mut add = ns.conf_with_prev(
        json!({"holdSecond": 30, "bandwidth": {"x": 1}}),
        &["10.10.0.5/24"],
    );
    add["runtimeConfig"] = json!({"portMappings": []});
    add["capabilities"] = json!({"portMappings": true});
    let out = ns.run("ADD", "ctr-a", &add);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains(r#"unknown config key "holdSecond""#)
            && out.stderr.contains(r#"did you mean "holdSeconds"?"#),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(r#""bandwidth""#), "{}", out.stderr);
    for runtime in [
        "runtimeConfig",
        "capabilities",
        "prevResult",
        "cniVersion",
        "stateDir",
    ] {
        assert!(
            !out.stderr.contains(&format!("{runtime:?}")),
            "{runtime}: {}",
            out.stderr
        );
    }
}

/// VERSION, a refused version, a refused CHECK and a mistyped key: all before any state or
/// kernel access, so no root is needed.
fn run(bin: &str, command: &str, stdin: &Value) -> tombstone_testkit::Outcome {
    let mut cmd = std::process::Command::new(bin);
    runtime_env(&mut cmd, &[("CNI_COMMAND", command)]);
    tombstone_testkit::run(
        cmd,
        stdin.to_string().as_bytes(),
        std::time::Duration::from_secs(60),
    )
}

#[test]
fn version_lists_each_binarys_versions() {
    let all = json!([
        "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
    ]);
    let chained = json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
    for (bin, want) in [(BIN, &chained), (IPVLAN, &all)] {
        let out = run(bin, "VERSION", &json!({"cniVersion": "0.3.1"}));
        assert_eq!(out.code, 0, "{bin}");
        assert_eq!(out.json()["supportedVersions"], *want, "{bin}");
        assert_eq!(out.json()["cniVersion"], "0.3.1", "{bin}");
    }
}

#[test]
fn the_chained_plugin_refuses_lists_older_than_0_3_0() {
    for v in ["0.1.0", "0.2.0"] {
        let conf = json!({"cniVersion": v, "name": "pods", "type": "tombstone"});
        for verb in ["ADD", "DEL"] {
            let out = run(BIN, verb, &conf);
            assert_eq!(
                (out.code, out.json()["code"].as_u64()),
                (1, Some(1)),
                "{v} {verb}"
            );
            let msg = out.json()["msg"].as_str().unwrap().to_string();
            assert!(msg.contains("0.3.0"), "{msg}");
        }
    }
}

#[test]
fn check_is_refused_before_0_4_0_by_every_binary() {
    for bin in [BIN, IPVLAN] {
        for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
            let mut conf = json!({"cniVersion": v, "name": "pods", "type": "x", "master": "v0"});
            conf["prevResult"] = prev_0_3(v, &["10.10.0.5/24"]);
            let out = run(bin, "CHECK", &conf);
            let want = if bin == BIN && v < "0.3.0" {
                "0.3.0"
            } else {
                "CHECK"
            };
            assert_eq!(out.json()["code"], 1, "{bin} {v}: {}", out.stdout);
            assert!(
                out.json()["msg"].as_str().unwrap().contains(want),
                "{bin} {v}: {}",
                out.stdout
            );
        }
    }
}

#[test]
fn a_mistyped_value_names_its_key() {
    for (bin, key, value) in [
        (BIN, "holdSeconds", json!("30")),
        (BIN, "flushNeighbors", json!("yes")),
        (BIN, "tables", json!(["local"])),
        (IPVLAN, "mtu", json!("1500")),
        (IPVLAN, "linkInContainer", json!(1)),
    ] {
        let mut conf = json!({"cniVersion": "0.3.1", "name": "pods", "type": "x"});
        conf[key] = value;
        conf["prevResult"] = prev_0_3("0.3.1", &["10.10.0.5/24"]);
        let out = run(bin, "ADD", &conf);
        let e = out.json();
        assert_eq!(
            (out.code, e["code"].as_u64()),
            (1, Some(7)),
            "{key}: {}",
            out.stdout
        );
        assert!(e["msg"].as_str().unwrap().contains(key), "{key}: {e}");
    }
}
