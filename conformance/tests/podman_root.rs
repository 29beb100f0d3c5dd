//! The `tombstone` chain driven by podman (Debian's 4.x, CNI backend): a private podman (its
//! own root, runroot, config and CNI directories) runs pods from an offline root filesystem
//! (`--rootfs`, our `cni-pause`) on a network of the reference `bridge` with `tombstone-ipam`
//! and `tombstone` chained (conflist 1.0.0). **Needs root and podman** (`make deps`).
//!
//! What podman does to the chain: run, stop, stop again, a pod given a released address
//! (`--ip`), rm late, a netns deleted under podman (podman sends no DEL: the leak and its
//! documented cure, GC), a main-plugin DEL that fails once after releasing the address, and
//! the CNI_ARGS and `runtimeConfig` podman passes.

mod podman;

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cni_conformance::cri::node::{self, Probe};
use cni_conformance::cri::record::{self, calls_for, cni_args, ipam_allocations, recorded};
use cni_conformance::cri::scenario::our_binary;
use cni_conformance::harness::paths;
use podman::{Podman, Setup};
use serde_json::json;
use tombstone_testkit::{eventually, require_root};

const HOLD_SECONDS: u64 = 5;
const REFERENCE: &str = "/usr/lib/cni";
const NETWORK: &str = "tombstone-pods";
/// The conflist's file in the instance's directory.
const CONFLIST: &str = "net.d/10-podman-test.conflist";

fn ip_of(pm: &Podman, name: &str) -> Ipv4Addr {
    let ip = pm.inspect(
        name,
        &format!("{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}"),
    );
    ip.parse()
        .unwrap_or_else(|_| panic!("{name}: no IPv4 address in podman inspect: {ip:?}"))
}

fn netns_of(pm: &Podman, name: &str) -> String {
    let ns = pm.inspect(name, "{{.NetworkSettings.SandboxKey}}");
    assert!(ns.starts_with("/run/netns/"), "{name}'s netns: {ns:?}");
    ns
}

/// The full ids of every container podman knows on the network (`ps -a`: stopped ones too).
fn known_ids(pm: &Podman) -> Vec<String> {
    let out = pm
        .ok(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("network={NETWORK}"),
            "--format",
            "{{.ID}}",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    out.lines().map(str::to_string).collect()
}

/// Runs the README's GC for a podman network (its podman section's `sh` block) on this
/// instance: its podman, conflist and plugin directory in place of the machine's. Returns
/// the script's output.
fn readme_gc(pm: &Podman) -> String {
    let readme = fs::read_to_string(paths::workspace_root().join("README.md")).expect("README");
    let section = &readme[readme
        .find("\n### podman\n")
        .expect("README: no podman section")..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README's podman section: no sh block");
    for machine in [
        "/etc/cni/net.d/pods.conflist",
        "/opt/cni/bin",
        "network=pods",
    ] {
        assert!(block.contains(machine), "the README's GC lost {machine}");
    }
    let script = block
        .replace(
            "/etc/cni/net.d/pods.conflist",
            &pm.dir.join(CONFLIST).display().to_string(),
        )
        .replace("/opt/cni/bin", &pm.dir.join("bin").display().to_string())
        .replace("network=pods", &format!("network={NETWORK}"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -eu\n{}{script}", pm.shell_function()))
        .output()
        .expect("spawn bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the README's GC: {}\n{text}",
        out.status
    );
    println!("the README's GC:\n{text}");
    text
}

#[test]
#[ignore = "needs root and podman"]
fn podman_root_drives_the_tombstone_chain() {
    require_root();
    podman::require_tools();
    let t0 = Instant::now();
    let pause = Path::new(env!("CARGO_BIN_EXE_cni-pause"));
    let dir = podman::dir_of("scenario");
    let (rec, marker, ipam_dir) = (
        dir.join("calls"),
        dir.join("fail-del-once"),
        dir.join("ipam"),
    );
    let bridge = "cni-pmt0";
    let prefix = "172.30.84.";
    let conflist = json!({
        "cniVersion": "1.0.0", "name": NETWORK,
        "plugins": [
            { "type": "bridge", "bridge": bridge, "isGateway": true,
              "ipam": { "type": "tombstone-ipam",
                        "ranges": [[{ "subnet": "172.30.84.0/24", "rangeStart": "172.30.84.10",
                                      "rangeEnd": "172.30.84.11", "gateway": "172.30.84.1" }]],
                        "dataDir": ipam_dir, "reuseAfterSeconds": 60 } },
            { "type": "tombstone", "holdSeconds": HOLD_SECONDS, "stateDir": dir.join("tombstone"),
              "capabilities": { "portMappings": true } },
        ],
    });
    // `bridge` behind a DEL that fails once, after the real DEL released the address, while
    // the marker exists.
    let fail_once = format!(
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" = DEL ] && [ -e '{m}' ]; then\n  {REFERENCE}/bridge >/dev/null || exit $?\n  rm -f '{m}'\n  \
         echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"injected DEL failure, after the release\"}}'\n  exit 1\nfi\nexec {REFERENCE}/bridge\n",
        m = marker.display()
    );
    let pm = Podman::start(Setup {
        name: "scenario",
        conflist: conflist.to_string(),
        bridge,
        subnet_prefix: prefix,
        plugins: vec![
            ("bridge".into(), fail_once),
            (
                "tombstone".into(),
                record::recorder(&rec, &our_binary("tombstone")),
            ),
            ("tombstone-ipam".into(), our_binary("tombstone-ipam")),
        ],
    });
    let run = |name: &str, extra: &[&str]| {
        pm.run(name, NETWORK, pause, extra)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let ok = |args: &[&str]| pm.ok(args).unwrap_or_else(|e| panic!("{e}"));
    let mut netns_paths = Vec::new();

    // Run a and b: both reachable from the node.
    let a = run("a", &["-p", "30084:8080"]);
    let b = run("b", &[]);
    let (ip_a, ip_b) = (ip_of(&pm, "a"), ip_of(&pm, "b"));
    assert_ne!(ip_a, ip_b);
    assert_eq!(node::probe(ip_a), Probe::Reachable, "a at {ip_a}");
    assert_eq!(node::probe(ip_b), Probe::Reachable, "b at {ip_b}");
    let ns_a = netns_of(&pm, "a");
    netns_paths.push(ns_a.clone());

    // What podman passed to tombstone at a's ADD.
    let calls = recorded(&rec);
    let add_a = record::the_add(&calls, "a", &a, &ns_a, ip_a);
    // podman 4.3 passes its container name as K8S_POD_NAME (for the dnsname plugin) and
    // nothing of Kubernetes' other keys: a plugin keyed on K8S_POD_NAMESPACE sees none.
    assert_eq!(
        cni_args(add_a),
        vec!["IgnoreUnknown=1".to_string(), "K8S_POD_NAME=a".to_string()],
        "CNI_ARGS of a's ADD"
    );
    let stdin = &add_a.stdin;
    // podman writes the convention's camelCase, no empty hostIP (containerd 1.6 writes
    // Go's field names).
    assert_eq!(
        stdin["runtimeConfig"]["portMappings"],
        json!([{ "hostPort": 30084, "containerPort": 8080, "protocol": "tcp" }]),
        "runtimeConfig of a's ADD: {stdin}"
    );

    // Stop a: a tombstone, the node's send fails at once.
    ok(&["stop", "--time", "0", "a"]);
    node::assert_tombstoned(ip_a, "a's released address");
    record::the_del(&recorded(&rec), &a, ip_a, "hostPort", 30084);

    // Stop a again: nothing changes.
    ok(&["stop", "--time", "0", "a"]);
    assert!(
        node::tombstone_of(ip_a).is_some(),
        "the second stop removed the tombstone"
    );

    // Run c on a's released address (`--ip`): its ADD lifts a's tombstone.
    let c = run("c", &["--ip", &ip_a.to_string()]);
    let ip_c = ip_of(&pm, "c");
    assert_eq!(ip_c, ip_a, "c should get the address it asked for");
    node::assert_live(ip_c, "c's ADD on a's address");
    netns_paths.push(netns_of(&pm, "c"));
    let calls = recorded(&rec);
    let add_c = calls_for(&calls, "ADD", &c);
    assert_eq!(add_c.len(), 1, "{calls:?}");
    assert!(
        cni_args(add_c[0]).contains(&format!("IP={ip_a}")),
        "podman passes --ip as CNI_ARGS IP=: {:?}",
        cni_args(add_c[0])
    );

    // rm a late: it buries nothing of c.
    ok(&["rm", "a"]);
    let calls = recorded(&rec);
    assert_eq!(
        calls_for(&calls, "DEL", &a).len(),
        1,
        "podman tears a pod's network down once, at its first stop"
    );
    node::assert_live(ip_c, "c after a's rm");

    // b's netns deleted under podman, then stop: podman sends no DEL (its gap, the README's
    // podman section): no tombstone, the address stays allocated.
    let ns_b = netns_of(&pm, "b");
    netns_paths.push(ns_b.clone());
    let out = pm.in_mount_ns(&["umount", &ns_b]);
    assert!(
        out.status.success(),
        "umount {ns_b}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pm.in_mount_ns(&["rm", &ns_b]);
    assert!(out.status.success(), "rm {ns_b}");
    ok(&["stop", "--time", "0", "b"]);
    ok(&["rm", "b"]);
    let calls = recorded(&rec);
    assert_eq!(
        calls_for(&calls, "DEL", &b).len(),
        0,
        "podman now sends DEL without the netns: the README's podman section is stale"
    );
    assert_eq!(node::tombstone_of(ip_b), None, "a tombstone without a DEL?");
    let leaked = ipam_allocations(&ipam_dir);
    assert!(
        leaked.iter().any(|l| l.contains(&b)),
        "b's allocation should be left: {leaked:?}"
    );
    // Nothing answers at b's address any more and nothing refuses it either: the node's
    // packets wait for ARP on the bridge (the case a tombstone exists for).
    assert_eq!(node::probe(ip_b), Probe::Silent, "b's {ip_b} without a DEL");
    // The cure: GC with the containers podman still knows (c only).
    assert_eq!(known_ids(&pm), vec![c.clone()]);
    let out = readme_gc(&pm);
    // Debian's reference plugins (1.1.1) answer no GC; ours do.
    assert!(out.contains("GC of bridge failed"), "{out}");
    for ours in ["tombstone", "tombstone-ipam"] {
        assert!(!out.contains(&format!("GC of {ours} failed")), "{out}");
    }
    node::assert_tombstoned(ip_b, "b's address after GC");
    let left = ipam_allocations(&ipam_dir);
    assert!(
        !left.iter().any(|l| l.contains(&b)),
        "GC left b's allocation: {left:?}"
    );
    node::assert_live(ip_c, "c after GC");

    // d gets b's address; its stop's DEL fails once after the release; e asks for the
    // address; the DEL podman sends again (at rm) must not bury e.
    let d = run("d", &[]);
    let ip_d = ip_of(&pm, "d");
    assert_eq!(ip_d, ip_b, "d should get b's released address");
    assert_eq!(node::probe(ip_d), Probe::Reachable, "d at {ip_d}");
    netns_paths.push(netns_of(&pm, "d"));
    fs::write(&marker, "").expect("write the failure marker");
    // podman logs the failed teardown and reports the stop as done.
    ok(&["stop", "--time", "0", "d"]);
    assert!(!marker.exists(), "the failing DEL did not run");
    assert!(
        node::tombstone_of(ip_d).is_some(),
        "no tombstone after the failed DEL of d"
    );
    let _e = run("e", &["--ip", &ip_d.to_string()]);
    let ip_e = ip_of(&pm, "e");
    assert_eq!(ip_e, ip_d);
    node::assert_live(ip_e, "e's ADD on d's address");
    netns_paths.push(netns_of(&pm, "e"));
    ok(&["rm", "d"]);
    let calls = recorded(&rec);
    assert_eq!(
        calls_for(&calls, "DEL", &d).len(),
        1,
        "podman never sends a failed DEL again (rm neither)"
    );
    node::assert_live(ip_e, "e after d's rm");
    assert_eq!(node::probe(ip_c), Probe::Reachable, "c at the end");

    // The end: every pod stopped and removed; the tombstones end by themselves at their hold.
    for name in ["c", "e"] {
        ok(&["stop", "--time", "0", name]);
        ok(&["rm", name]);
    }
    let (made, secs) = node::outlive_tombstones(prefix, HOLD_SECONDS);
    assert_eq!(made, 2, "the last stops' tombstones");
    println!("tombstones gone {secs:.1} s after the last stop (hold {HOLD_SECONDS} s)");
    assert_eq!(ok(&["ps", "-aq"]), "", "containers left");
    assert_eq!(
        node::bridge_ports(bridge),
        Vec::<String>::new(),
        "veths left on {bridge}"
    );
    let cached: Vec<String> = fs::read_dir(&pm.cni_cache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // What podman's libcni keeps of the two attachments it never DEL-ed successfully (b's,
    // its netns gone; d's, its DEL failed): podman's own leak, read by nothing but a DEL.
    let mut want = vec![format!("{NETWORK}-{b}-eth0"), format!("{NETWORK}-{d}-eth0")];
    want.sort();
    let mut cached = cached;
    cached.sort();
    assert_eq!(cached, want, "libcni cache left");
    assert!(
        eventually(10, || pm.processes().is_empty()),
        "conmons or pod processes left: {:?}",
        pm.processes()
    );
    let leaf_cgroups: Vec<_> = pm
        .cgroups()
        .into_iter()
        .filter(|p| {
            let parent = pm.cgroup_parent.trim_start_matches('/');
            // podman's (cgroupfs) conmons share `<parent>/conmon`, which it never removes.
            !p.ends_with(parent) && !p.ends_with(format!("{parent}/conmon"))
        })
        .collect();
    assert_eq!(
        leaf_cgroups,
        Vec::<std::path::PathBuf>::new(),
        "cgroups left"
    );
    assert_eq!(
        ipam_allocations(&ipam_dir),
        Vec::<String>::new(),
        "IPAM allocations left"
    );
    for p in &netns_paths {
        let left = pm.in_mount_ns(&["test", "-e", p]);
        assert!(!left.status.success(), "netns file {p} left");
        assert!(!Path::new(p).exists(), "{p} made in the machine's /run");
    }
    // The machine's libcni cache saw nothing of ours (the private /var/lib did).
    for id in [&a, &b, &c, &d] {
        let f = Path::new("/var/lib/cni/results").join(format!("{NETWORK}-{id}-eth0"));
        assert!(!f.exists(), "{} written on the machine", f.display());
    }
    println!("scenario: {:.1} s", t0.elapsed().as_secs_f64());
    drop(pm);
}
