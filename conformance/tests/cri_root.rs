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

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use cni_conformance::cri::client::Cri;
use cni_conformance::cri::containerd::{self, Containerd, NodeLink, Setup};
use cni_conformance::cri::image::PauseImage;
use cni_conformance::cri::scenario::{self, ok, our_binary};
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
    let faults = scenario::Faults::new("scenario", "bridge");
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
    // `bridge` behind a DEL that fails once, `tombstone` behind a recorder of its runs.
    let mut plugins = faults.plugins(&format!("{REFERENCE}/bridge"), &our_binary("tombstone"));
    plugins.extend([
        ("tombstone-ipam".into(), our_binary("tombstone-ipam")),
        ("loopback".into(), format!("{REFERENCE}/loopback")),
    ]);
    let ctr = Containerd::start(
        Setup {
            name: "scenario",
            conflist: conflist("cri-tombstone", bridge, ipam, vec![tombstone]),
            node_link: NodeLink::Bridge(bridge.into()),
            subnet_prefix: "172.30.81.",
            plugins,
        },
        &image.0,
    );
    let mut cri = Cri::connect(&ctr.socket).unwrap_or_else(|e| panic!("{e}\n{}", ctr.log_tail()));

    // The shared steps (a and b, Stop a twice, c on a's address, Remove a late), with what
    // the runtime passed to tombstone at a's ADD and at its first Stop; then the faults.
    let mut pods = scenario::reuse_after_stop(&mut cri, &ctr, |step, p, _| {
        faults.check_recorded(&ctr, step, p)
    });
    faults.netns_gone(&mut cri, &ctr, &pods);
    let e = faults.retried_stop(&mut cri, &ctr, &mut pods);

    // The end: every pod stopped and removed; the tombstones end by themselves at their hold.
    let (made, took) =
        scenario::stop_all_and_outlive_tombstones(&mut cri, &ctr, &[&pods.c, &e], HOLD_SECONDS);
    assert_eq!(made, 2, "tombstones after the last Stop");
    println!("tombstones gone {took:.1} s after the last Stop (hold {HOLD_SECONDS} s)");
    scenario::assert_nothing_leaked(&ctr, &mut cri, &pods.netns);
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
