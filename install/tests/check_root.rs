//! `tombstone-install --check`, whole process, as root in a throwaway network namespace over
//! a temporary `--root`: a healthy node exits 0; a policy rule that shadows the pod subnet, a
//! missing gateway port and a tombstone no sweep ended are each reported, with exit 1.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tombstone_testkit::Netns;

const INSTALLER: &str = env!("CARGO_BIN_EXE_tombstone-install");

/// The reference ipvlan plugin with host-local and the entry, on the dummy master `eth0`.
const REFERENCE: &str = r#"{"name":"pods","cniVersion":"1.0.0","plugins":[
    {"type":"ipvlan","master":"eth0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.10.0.0/24"}]]}},
    {"type":"tombstone","holdSeconds":30}]}"#;
const OURS: &str = r#"{"name":"pods","cniVersion":"1.1.0","plugins":[
    {"type":"tombstone-ipvlan","master":"eth0","ipam":{"type":"tombstone-ipam","subnet":"10.10.0.0/24"}},
    {"type":"tombstone","holdSeconds":30}]}"#;

struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn root(tag: &str, conflist: &str) -> Root {
    let d = std::env::temp_dir().join(format!("ts-check-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("etc/cni/net.d")).unwrap();
    fs::write(d.join("etc/cni/net.d/10-pods.conflist"), conflist).unwrap();
    Root(d)
}

/// A node's namespace: `lo` and the master `eth0` (a veth end: this kernel may lack dummy) up.
fn node() -> Netns {
    let ns = Netns::new("tschk");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns
}

/// Runs the check in the namespace: exit status, and the JSON report.
fn check(ns: &Netns, root: &Path) -> (i32, Value) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, INSTALLER, "--check", "--json", "--root",
        ])
        .arg(root)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

/// The findings of one check, as (status, detail).
fn findings(report: &Value, check: &str) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .map(|f| {
            (
                f["status"].as_str().unwrap().to_string(),
                f["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_healthy_node_then_a_rule_that_shadows_the_pod_subnet() {
    tombstone_testkit::require_root();
    let ns = node();
    let r = root("rule", REFERENCE);
    let (code, report) = check(&ns, &r.0);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["problems"], 0);
    for c in ["position", "version", "state", "tombstones", "sweeper"] {
        assert_eq!(findings(&report, c)[0].0, "ok", "{c}: {report:#}");
    }
    assert_eq!(
        findings(&report, "rules"),
        [(
            "ok".to_string(),
            "10.10.0.0/24: every rule before main looks up a table the entry lists (254) or none"
                .to_string()
        )]
    );
    assert_eq!(
        findings(&report, "port")[0].0,
        "info",
        "the reference plugin keeps none"
    );

    ns.ip(&[
        "rule",
        "add",
        "pref",
        "100",
        "to",
        "10.10.0.0/16",
        "lookup",
        "100",
    ]);
    let (code, report) = check(&ns, &r.0);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["ok"], false);
    let rules = findings(&report, "rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].0, "problem");
    assert!(
        rules[0]
            .1
            .contains("100: from all to 10.10.0.0/16 lookup 100"),
        "{}",
        rules[0].1
    );
    // Once the entry tombstones in that table too, the rule is no longer a problem.
    let listed = REFERENCE.replace(
        r#""holdSeconds":30"#,
        r#""holdSeconds":30,"tables":["main",100]"#,
    );
    fs::write(r.0.join("etc/cni/net.d/10-pods.conflist"), listed).unwrap();
    let (code, report) = check(&ns, &r.0);
    assert_eq!(code, 0, "{report:#}");
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_missing_gateway_port_is_reported() {
    tombstone_testkit::require_root();
    let ns = node();
    let r = root("port", OURS);
    let (code, report) = check(&ns, &r.0);
    assert_eq!(code, 1, "{report:#}");
    let port = findings(&report, "port");
    assert_eq!(port[0].0, "problem", "{report:#}");
    assert!(
        port[0].1.contains("gw_") && port[0].1.contains("not found"),
        "{}",
        port[0].1
    );
    // Everything else about this network is fine: the port is the one problem.
    assert_eq!(report["problems"], 1, "{report:#}");
}

#[test]
#[ignore = "needs root: network namespaces, a root-owned state directory"]
fn a_tombstone_no_sweep_ended_is_reported() {
    tombstone_testkit::require_root();
    let ns = node();
    let r = root("stale", REFERENCE);
    // The plugin's layout (see its store): a head, and one tombstone expired long ago.
    let dir = r.0.join("run/cni/tombstone");
    let mkdir = |p: &Path| {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p)
            .unwrap()
    };
    mkdir(&dir);
    mkdir(&dir.join("pods.d"));
    let write = |p: PathBuf, text: &str| {
        use std::io::Write;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap()
    };
    write(
        dir.join("pods.json"),
        r#"{"version":3,"network":"pods","tables":[254]}"#,
    );
    let stem = tombstone_cni::state::encode_stem("10.10.0.5");
    write(
        dir.join(format!("pods.d/t-{stem}.json")),
        r#"{"ip":"10.10.0.5","routeType":"unreachable","tables":[254],"metric":3000,"expiresAtMs":1000,"containerID":"c1","ifname":"eth0"}"#,
    );
    // And one as this version writes it: a link record, its address in its name.
    std::os::unix::fs::symlink(
        r#"["unreachable",[254],3000,1000,"eth0","c2"]"#,
        dir.join(format!(
            "pods.d/t-{}.json",
            tombstone_cni::state::encode_stem("10.10.0.6")
        )),
    )
    .unwrap();
    let (code, report) = check(&ns, &r.0);
    assert_eq!(code, 1, "{report:#}");
    let t = findings(&report, "tombstones");
    assert_eq!(t[0].0, "problem", "{report:#}");
    assert!(t[0].1.starts_with("2 live, 2 expired"), "{}", t[0].1);
    assert_eq!(findings(&report, "state")[0].0, "ok", "{report:#}");

    // A ledger of a format this build cannot read is said, not skipped.
    fs::write(dir.join("pods.json"), r#"{"version":99,"network":"pods"}"#).unwrap();
    let (code, report) = check(&ns, &r.0);
    assert_eq!(code, 1, "{report:#}");
    let t = findings(&report, "tombstones");
    assert!(t[0].1.contains("format version 99"), "{}", t[0].1);
}
