//! The `tombstone` chain driven by a real container runtime: a private containerd (Debian's
//! 1.6, its own root, state, sockets and CNI directories) runs pod sandboxes through its CRI
//! API with our client, the reference `bridge` as main plugin, `tombstone-ipam` and
//! `tombstone` chained (conflist 1.0.0), and an offline pause image of our own. **Needs root
//! and containerd** (`make deps` installs it); a missing tool fails the test.
//!
//! What a kubelet does to the chain: Run, Stop, Stop again, Remove late, a netns deleted
//! under the runtime, a main-plugin DEL that fails once after releasing the address (the
//! runtime retries it while a new pod holds that address), and the CNI_ARGS and
//! `runtimeConfig` the runtime passes. Then the timings of RunPodSandbox and StopPodSandbox
//! beside the reference chain (`bridge` + `host-local`).

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use cni_conformance::cri::client::{Cri, POD_NAMESPACE};
use cni_conformance::cri::containerd::{self, Containerd, NodeLink, Setup};
use cni_conformance::cri::image::PauseImage;
use cni_conformance::cri::node::{self, Probe};
use cni_conformance::cri::record::{self, calls_for, recorded, result_ips};
use cni_conformance::cri::scenario::{self, Step, ip_of, ok, our_binary, pod};
use cni_conformance::harness::tools::REFERENCE_PLUGINS as REFERENCE;
use serde_json::{Value, json};
use tombstone_testkit::require_root;

/// The two tests start runtimes and time them: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const HOLD_SECONDS: u64 = 5;
/// The reference plugins the tests run.
const NEEDED: &[&str] = &["bridge", "host-local"];

/// Builds the pause image (our static `cni-pause`) in a fresh temporary file.
fn pause_image(tag: &str) -> PauseImage {
    PauseImage::write(Path::new(env!("CARGO_BIN_EXE_cni-pause")), tag)
}

/// A conflist: `bridge` with `ipam`, then `chained` plugins.
fn conflist(name: &str, bridge: &str, ipam: Value, chained: Vec<Value>) -> String {
    let mut plugins =
        vec![json!({ "type": "bridge", "bridge": bridge, "isGateway": true, "ipam": ipam })];
    plugins.extend(chained);
    json!({ "cniVersion": "1.0.0", "name": name, "plugins": plugins }).to_string()
}

#[test]
#[ignore = "needs root and containerd"]
fn cri_root_containerd_drives_the_tombstone_chain() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    containerd::require_tools(NEEDED);
    let t0 = Instant::now();
    let image = pause_image("scenario");
    let dir = containerd::dir_of("scenario");
    let rec = dir.join("calls");
    let marker = dir.join("fail-del-once");
    let bridge = "cni-crit0";
    // Two addresses: with both in use the next pod gets the one released longest ago
    // (tombstone-ipam's cool-down gives way rather than refuse a pod), within the hold.
    let ipam = json!({
        "type": "tombstone-ipam",
        "ranges": [[{ "subnet": "172.30.81.0/24", "rangeStart": "172.30.81.10",
                      "rangeEnd": "172.30.81.11", "gateway": "172.30.81.1" }]],
        "dataDir": containerd::ipam_dir("scenario"), "reuseAfterSeconds": 60,
    });
    let tombstone = json!({
        "type": "tombstone", "holdSeconds": HOLD_SECONDS, "stateDir": dir.join("tombstone"),
        "capabilities": { "portMappings": true },
    });
    // `tombstone` behind a recorder of its environment and stdin; `bridge` behind a DEL
    // that fails once, after the real DEL released the address, while the marker exists.
    let recorder = record::recorder(&rec, &our_binary("tombstone"));
    let fail_once = format!(
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" = DEL ] && [ -e '{m}' ]; then\n  {REFERENCE}/bridge >/dev/null || exit $?\n  rm -f '{m}'\n  \
         echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"injected DEL failure, after the release\"}}'\n  exit 1\nfi\nexec {REFERENCE}/bridge\n",
        m = marker.display()
    );
    let ctr = Containerd::start(
        Setup {
            name: "scenario",
            conflist: conflist("cri-tombstone", bridge, ipam, vec![tombstone]),
            node_link: NodeLink::Bridge(bridge.into()),
            subnet_prefix: "172.30.81.",
            plugins: vec![
                ("bridge".into(), fail_once),
                ("tombstone".into(), recorder),
                ("tombstone-ipam".into(), our_binary("tombstone-ipam")),
                ("loopback".into(), format!("{REFERENCE}/loopback")),
            ],
        },
        &image.0,
    );
    let mut cri = Cri::connect(&ctr.socket).unwrap_or_else(|e| panic!("{e}\n{}", ctr.log_tail()));

    // The shared steps (a and b, Stop a twice, c on a's address, Remove a late), with what
    // the runtime passed to tombstone at a's ADD and at its first Stop.
    let pods = scenario::reuse_after_stop(&mut cri, &ctr, |step, p, _| match step {
        Step::Running => {
            let calls = recorded(&rec);
            let add_a = calls_for(&calls, "ADD", &p.a);
            assert_eq!(add_a.len(), 1, "one ADD of a: {calls:?}");
            let env = &add_a[0].env;
            assert_eq!(
                env.get("CNI_IFNAME").map(String::as_str),
                Some("eth0"),
                "{env:?}"
            );
            assert_eq!(env.get("CNI_NETNS"), Some(&p.netns[0]), "{env:?}");
            let args = record::cni_args(add_a[0]);
            for want in [
                "IgnoreUnknown=1".to_string(),
                format!("K8S_POD_NAMESPACE={POD_NAMESPACE}"),
                "K8S_POD_NAME=a".to_string(),
                format!("K8S_POD_INFRA_CONTAINER_ID={}", p.a),
                format!("K8S_POD_UID={}", pod(&ctr, "a", 0).uid()),
            ] {
                assert!(args.contains(&want), "CNI_ARGS lacks {want}: {args:?}");
            }
            let stdin = &add_a[0].stdin;
            // containerd 1.6 (go-cni) writes the mapping with Go's field names, not the
            // convention's camelCase ("hostPort", ...): plugins must not rely on either spelling.
            assert_eq!(
                stdin["runtimeConfig"]["portMappings"],
                json!([{ "HostPort": 30081, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": "" }]),
                "runtimeConfig of a's ADD: {stdin}"
            );
            assert_eq!(
                result_ips(&stdin["prevResult"]),
                vec![p.ip_a.to_string()],
                "{stdin}"
            );
            assert_eq!(stdin["cniVersion"], "1.0.0");
            println!(
                "a's ADD: CNI_ARGS={} runtimeConfig={}",
                env["CNI_ARGS"], stdin["runtimeConfig"]
            );
        }
        Step::StoppedA => {
            let calls = recorded(&rec);
            let del_a = calls_for(&calls, "DEL", &p.a);
            assert_eq!(del_a.len(), 1, "one DEL for Stop: {del_a:?}");
            assert_eq!(
                result_ips(&del_a[0].stdin["prevResult"]),
                vec![p.ip_a.to_string()],
                "DEL's prevResult"
            );
            assert_eq!(
                del_a[0].stdin["runtimeConfig"]["portMappings"][0]["HostPort"],
                30081
            );
        }
    });
    let (b, c, ip_b, ip_c) = (&pods.b, &pods.c, pods.ip_b, pods.ip_c);
    let mut netns_paths = pods.netns.clone();

    // b's netns deleted under the runtime, then Stop: it succeeds, tombstone made.
    let ns_b = pods.netns[1].clone();
    let out = ctr.in_mount_ns(&["umount", &ns_b]);
    assert!(
        out.status.success(),
        "umount {ns_b}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_file(&ns_b).unwrap_or_else(|e| panic!("remove {ns_b}: {e}"));
    ok(&ctr, cri.stop(b));
    assert!(
        node::tombstone_of(ip_b).is_some(),
        "no tombstone for b's {ip_b} after its netns went"
    );
    assert_eq!(
        node::probe(ip_b),
        Probe::NoRouteToHost,
        "b's released {ip_b}"
    );
    let calls = recorded(&rec);
    let del_b = calls_for(&calls, "DEL", b);
    assert_eq!(del_b.len(), 1, "{del_b:?}");
    assert_eq!(
        del_b[0]
            .env
            .get("CNI_NETNS")
            .map(String::as_str)
            .unwrap_or(""),
        "",
        "CNI_NETNS of a gone netns"
    );
    ok(&ctr, cri.remove(b));
    assert_eq!(
        node::bridge_ports(bridge).len(),
        1,
        "only c's veth: {:?}",
        node::bridge_ports(bridge)
    );

    // d gets b's address; its Stop fails once after the release; e gets the address; the
    // runtime's retried Stop of d must not bury e.
    let d = ok(&ctr, cri.run(&pod(&ctr, "d", 30084)));
    let ip_d = ip_of(&mut cri, &d);
    assert_eq!(ip_d, ip_b, "d should get b's released address");
    assert_eq!(node::probe(ip_d), Probe::Reachable, "d at {ip_d}");
    netns_paths.push(ok(&ctr, cri.status(&d)).netns);
    fs::write(&marker, "").expect("write the failure marker");
    let failed = cri.stop(&d);
    let err = failed.expect_err("d's Stop should fail once");
    assert!(err.contains("injected DEL failure"), "{err}");
    assert!(!marker.exists(), "the failing DEL did not run");
    assert!(
        node::tombstone_of(ip_d).is_some(),
        "no tombstone after the failed Stop of d"
    );
    let e = ok(&ctr, cri.run(&pod(&ctr, "e", 30085)));
    let ip_e = ip_of(&mut cri, &e);
    assert_eq!(ip_e, ip_d, "e should get d's released address");
    assert_eq!(node::tombstone_of(ip_e), None);
    assert_eq!(node::probe(ip_e), Probe::Reachable, "e at {ip_e}");
    netns_paths.push(ok(&ctr, cri.status(&e)).netns);
    ok(&ctr, cri.stop(&d));
    let calls = recorded(&rec);
    let dels_d = calls_for(&calls, "DEL", &d);
    assert_eq!(dels_d.len(), 2, "the runtime retried d's DEL: {dels_d:?}");
    assert_eq!(
        result_ips(&dels_d[1].stdin["prevResult"]),
        vec![ip_e.to_string()],
        "the retried DEL carries the cached prevResult of d (now e's address)"
    );
    assert_eq!(
        node::tombstone_of(ip_e),
        None,
        "the retried Stop of d buried e"
    );
    assert_eq!(
        node::probe(ip_e),
        Probe::Reachable,
        "e after d's retried Stop"
    );
    ok(&ctr, cri.remove(&d));
    assert_eq!(node::probe(ip_e), Probe::Reachable, "e after d's Remove");
    assert_eq!(node::probe(ip_c), Probe::Reachable, "c at the end");

    // The end: every pod stopped and removed; the tombstones end by themselves at their hold.
    let (made, took) =
        scenario::stop_all_and_outlive_tombstones(&mut cri, &ctr, &[c, &e], HOLD_SECONDS);
    assert_eq!(made, 2, "tombstones after the last Stop");
    println!("tombstones gone {took:.1} s after the last Stop (hold {HOLD_SECONDS} s)");
    scenario::assert_nothing_leaked(&ctr, &mut cri, &netns_paths);
    println!("scenario: {:.1} s", t0.elapsed().as_secs_f64());
    drop(ctr);
}

#[test]
#[ignore = "needs root and containerd"]
fn cri_root_timings_beside_the_reference_chain() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    containerd::require_tools(NEEDED);
    const RUNS: usize = 7;
    let image = pause_image("bench");
    let loopback = ("loopback".to_string(), format!("{REFERENCE}/loopback"));
    let reference = Containerd::start(
        Setup {
            name: "reference",
            conflist: conflist(
                "cri-reference",
                "cni-crib2",
                json!({ "type": "host-local", "ranges": [[{ "subnet": "172.30.83.0/24" }]],
                        "dataDir": containerd::ipam_dir("reference") }),
                vec![],
            ),
            node_link: NodeLink::Bridge("cni-crib2".into()),
            subnet_prefix: "172.30.83.",
            plugins: vec![
                ("bridge".into(), format!("{REFERENCE}/bridge")),
                ("host-local".into(), format!("{REFERENCE}/host-local")),
                loopback.clone(),
            ],
        },
        &image.0,
    );
    let ours = Containerd::start(
        Setup {
            name: "ours",
            conflist: conflist(
                "cri-ours",
                "cni-crib1",
                json!({ "type": "tombstone-ipam", "ranges": [[{ "subnet": "172.30.82.0/24" }]],
                        "dataDir": containerd::ipam_dir("ours") }),
                vec![json!({ "type": "tombstone", "holdSeconds": HOLD_SECONDS,
                             "stateDir": containerd::dir_of("ours").join("tombstone") })],
            ),
            node_link: NodeLink::Bridge("cni-crib1".into()),
            subnet_prefix: "172.30.82.",
            plugins: vec![
                ("bridge".into(), format!("{REFERENCE}/bridge")),
                ("tombstone".into(), our_binary("tombstone")),
                ("tombstone-ipam".into(), our_binary("tombstone-ipam")),
                loopback,
            ],
        },
        &image.0,
    );
    let mut runtimes = [
        (&reference, ok(&reference, Cri::connect(&reference.socket))),
        (&ours, ok(&ours, Cri::connect(&ours.socket))),
    ];
    let t = scenario::timings(&mut runtimes, RUNS);
    println!(
        "{}",
        scenario::timing_table(
            &format!("CRI call, median of {RUNS} (containerd 1.6, runc, bridge)"),
            &["bridge + host-local", "bridge + tombstone-ipam + tombstone"],
            &t
        )
    );
    for (ctr, cri) in runtimes.iter_mut() {
        scenario::assert_nothing_leaked(ctr, cri, &[]);
    }
    drop(runtimes);
    drop(ours);
    drop(reference);
}
