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

mod cri;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cni_conformance::harness::paths;
use cri::client::{Cri, POD_NAMESPACE, Pod};
use cri::containerd::{self, Containerd, Setup};
use cri::node::{self, Probe};
use cri::record::{self, calls_for, ipam_allocations, recorded, result_ips};
use serde_json::{Value, json};
use tombstone_testkit::{eventually, require_root};

/// The two tests start runtimes and time them: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const HOLD_SECONDS: u64 = 5;
const REFERENCE: &str = "/usr/lib/cni";

fn our_binary(name: &str) -> String {
    let path = paths::release_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build it first (`make build`, i.e. cargo build --release --workspace --bins)",
        path.display()
    );
    path.display().to_string()
}

/// The pause image's archive, removed when dropped (even when the test fails).
struct ImageFile(PathBuf);

impl Drop for ImageFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Builds the pause image (our static `cni-pause`) in a fresh temporary file.
fn pause_image(tag: &str) -> ImageFile {
    let out = std::env::temp_dir().join(format!("cni-cri-{}-{tag}.oci.tar", std::process::id()));
    let file = ImageFile(out);
    cri::image::write_pause_image(Path::new(env!("CARGO_BIN_EXE_cni-pause")), &file.0);
    file
}

/// A conflist: `bridge` with `ipam`, then `chained` plugins.
fn conflist(name: &str, bridge: &str, ipam: Value, chained: Vec<Value>) -> String {
    let mut plugins =
        vec![json!({ "type": "bridge", "bridge": bridge, "isGateway": true, "ipam": ipam })];
    plugins.extend(chained);
    json!({ "cniVersion": "1.0.0", "name": name, "plugins": plugins }).to_string()
}

fn ip_of(cri: &mut Cri, id: &str) -> Ipv4Addr {
    let st = cri.status(id).unwrap_or_else(|e| panic!("{e}"));
    assert!(st.ready, "sandbox {id} is not ready: {st:?}");
    st.ip
        .parse()
        .unwrap_or_else(|_| panic!("sandbox {id}: no IPv4 pod IP in its status: {st:?}"))
}

/// Every address file `host-local` keeps in `dir` (named by the address).
fn host_local_allocations(dir: &Path) -> Vec<String> {
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

/// libcni's cached results (one file per attachment) in containerd's cache dir.
fn cached_results(ctr: &Containerd) -> Vec<String> {
    fs::read_dir(ctr.cni_cache.join("results"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// What must be left once every sandbox is removed: nothing of the pods.
fn assert_nothing_leaked(ctr: &Containerd, cri: &mut Cri, bridge: &str) {
    assert_eq!(
        cri.list().expect("ListPodSandbox"),
        Vec::<String>::new(),
        "sandboxes left"
    );
    assert_eq!(
        node::bridge_ports(bridge),
        Vec::<String>::new(),
        "veths left on {bridge}"
    );
    assert_eq!(
        cached_results(ctr),
        Vec::<String>::new(),
        "libcni results left"
    );
    assert!(
        eventually(10, || ctr.processes().is_empty()),
        "shims or sandbox processes left: {:?}",
        ctr.processes()
    );
    let leaf_cgroups: Vec<PathBuf> = ctr
        .cgroups()
        .into_iter()
        .filter(|p| !p.ends_with(ctr.cgroup_parent.trim_start_matches('/')))
        .collect();
    assert_eq!(leaf_cgroups, Vec::<PathBuf>::new(), "sandbox cgroups left");
}

#[test]
#[ignore = "needs root and containerd"]
fn cri_root_containerd_drives_the_tombstone_chain() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    containerd::require_tools();
    let t0 = Instant::now();
    let image = pause_image("scenario");
    let dir = containerd::dir_of("scenario");
    let rec = dir.join("calls");
    let marker = dir.join("fail-del-once");
    let ipam_dir = dir.join("ipam");
    let bridge = "cni-crit0";
    let prefix = "172.30.81.";
    // Two addresses: with both in use the next pod gets the one released longest ago
    // (tombstone-ipam's cool-down gives way rather than refuse a pod), within the hold.
    let ipam = json!({
        "type": "tombstone-ipam",
        "ranges": [[{ "subnet": "172.30.81.0/24", "rangeStart": "172.30.81.10",
                      "rangeEnd": "172.30.81.11", "gateway": "172.30.81.1" }]],
        "dataDir": ipam_dir, "reuseAfterSeconds": 60,
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
            bridge,
            subnet_prefix: prefix,
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
    let cg = ctr.cgroup_parent.clone();
    let pod = |name: &'static str, port: i32| Pod {
        name,
        cgroup_parent: &cg,
        host_port: port,
    };
    let run = |cri: &mut Cri, p: &Pod| {
        cri.run(p)
            .unwrap_or_else(|e| panic!("{e}\ncontainerd:\n{}", ctr.log_tail()))
    };
    let ok = |r: Result<(), String>| {
        r.unwrap_or_else(|e| panic!("{e}\ncontainerd:\n{}", ctr.log_tail()))
    };
    let mut netns_paths = Vec::new();

    // Run a and b: both reachable from the node.
    let (pa, pb) = (pod("a", 30081), pod("b", 30082));
    let a = run(&mut cri, &pa);
    let b = run(&mut cri, &pb);
    let (ip_a, ip_b) = (ip_of(&mut cri, &a), ip_of(&mut cri, &b));
    assert_ne!(ip_a, ip_b);
    assert_eq!(node::probe(ip_a), Probe::Reachable, "a at {ip_a}");
    assert_eq!(node::probe(ip_b), Probe::Reachable, "b at {ip_b}");
    let st_a = cri.status(&a).expect("status a");
    netns_paths.push(st_a.netns.clone());
    assert!(!st_a.netns.is_empty(), "no netns path in a's status");

    // What the runtime passed to tombstone at a's ADD.
    let calls = recorded(&rec);
    let add_a = calls_for(&calls, "ADD", &a);
    assert_eq!(add_a.len(), 1, "one ADD of a: {calls:?}");
    let env = &add_a[0].env;
    assert_eq!(
        env.get("CNI_IFNAME").map(String::as_str),
        Some("eth0"),
        "{env:?}"
    );
    assert_eq!(env.get("CNI_NETNS"), Some(&st_a.netns), "{env:?}");
    let args = record::cni_args(add_a[0]);
    for want in [
        "IgnoreUnknown=1".to_string(),
        format!("K8S_POD_NAMESPACE={POD_NAMESPACE}"),
        "K8S_POD_NAME=a".to_string(),
        format!("K8S_POD_INFRA_CONTAINER_ID={a}"),
        format!("K8S_POD_UID={}", pa.uid()),
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
        vec![ip_a.to_string()],
        "{stdin}"
    );
    assert_eq!(stdin["cniVersion"], "1.0.0");
    println!(
        "a's ADD: CNI_ARGS={} runtimeConfig={}",
        env["CNI_ARGS"], stdin["runtimeConfig"]
    );

    // Stop a: a tombstone, the node's send fails at once.
    ok(cri.stop(&a));
    let route = node::tombstone_of(ip_a).unwrap_or_else(|| panic!("no tombstone for {ip_a}"));
    assert!(route.starts_with("unreachable "), "{route}");
    assert_eq!(
        node::probe(ip_a),
        Probe::NoRouteToHost,
        "a's released {ip_a}"
    );
    let del_a = recorded(&rec);
    let del_a = calls_for(&del_a, "DEL", &a);
    assert_eq!(del_a.len(), 1, "one DEL for Stop: {del_a:?}");
    assert_eq!(
        result_ips(&del_a[0].stdin["prevResult"]),
        vec![ip_a.to_string()],
        "DEL's prevResult"
    );
    assert_eq!(
        del_a[0].stdin["runtimeConfig"]["portMappings"][0]["HostPort"],
        30081
    );

    // Stop a again: idempotent.
    ok(cri.stop(&a));
    assert!(
        node::tombstone_of(ip_a).is_some(),
        "the second Stop removed the tombstone"
    );

    // Run c: the pool's one free address is a's, still tombstoned: c's ADD lifts it.
    let pc = pod("c", 30083);
    let c = run(&mut cri, &pc);
    let ip_c = ip_of(&mut cri, &c);
    assert_eq!(ip_c, ip_a, "c should get a's released address");
    assert_eq!(node::tombstone_of(ip_c), None, "c's ADD left a's tombstone");
    assert_eq!(node::probe(ip_c), Probe::Reachable, "c at {ip_c}");
    netns_paths.push(cri.status(&c).expect("status c").netns);

    // Remove a late: its DEL buries nothing of c.
    ok(cri.remove(&a));
    assert_eq!(node::tombstone_of(ip_c), None, "a's Remove buried c");
    assert_eq!(node::probe(ip_c), Probe::Reachable, "c after a's Remove");

    // b's netns deleted under the runtime, then Stop: it succeeds, tombstone made.
    let ns_b = cri.status(&b).expect("status b").netns;
    netns_paths.push(ns_b.clone());
    let out = ctr.in_mount_ns(&["umount", &ns_b]);
    assert!(
        out.status.success(),
        "umount {ns_b}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_file(&ns_b).unwrap_or_else(|e| panic!("remove {ns_b}: {e}"));
    ok(cri.stop(&b));
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
    let del_b = calls_for(&calls, "DEL", &b);
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
    ok(cri.remove(&b));
    assert_eq!(
        node::bridge_ports(bridge).len(),
        1,
        "only c's veth: {:?}",
        node::bridge_ports(bridge)
    );

    // d gets b's address; its Stop fails once after the release; e gets the address; the
    // runtime's retried Stop of d must not bury e.
    let pd = pod("d", 30084);
    let d = run(&mut cri, &pd);
    let ip_d = ip_of(&mut cri, &d);
    assert_eq!(ip_d, ip_b, "d should get b's released address");
    assert_eq!(node::probe(ip_d), Probe::Reachable, "d at {ip_d}");
    netns_paths.push(cri.status(&d).expect("status d").netns);
    fs::write(&marker, "").expect("write the failure marker");
    let failed = cri.stop(&d);
    let err = failed.expect_err("d's Stop should fail once");
    assert!(err.contains("injected DEL failure"), "{err}");
    assert!(!marker.exists(), "the failing DEL did not run");
    assert!(
        node::tombstone_of(ip_d).is_some(),
        "no tombstone after the failed Stop of d"
    );
    let pe = pod("e", 30085);
    let e = run(&mut cri, &pe);
    let ip_e = ip_of(&mut cri, &e);
    assert_eq!(ip_e, ip_d, "e should get d's released address");
    assert_eq!(node::tombstone_of(ip_e), None);
    assert_eq!(node::probe(ip_e), Probe::Reachable, "e at {ip_e}");
    netns_paths.push(cri.status(&e).expect("status e").netns);
    ok(cri.stop(&d));
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
    ok(cri.remove(&d));
    assert_eq!(node::probe(ip_e), Probe::Reachable, "e after d's Remove");
    assert_eq!(node::probe(ip_c), Probe::Reachable, "c at the end");

    // The end: every pod stopped and removed; the tombstones end by themselves at their hold.
    for id in [&c, &e] {
        ok(cri.stop(id));
        ok(cri.remove(id));
    }
    assert_eq!(
        node::tombstones(prefix).len(),
        2,
        "{:?}",
        node::tombstones(prefix)
    );
    let waited = Instant::now();
    assert!(
        eventually(HOLD_SECONDS + 10, || node::tombstones(prefix).is_empty()),
        "tombstones past their hold: {:?}",
        node::tombstones(prefix)
    );
    println!(
        "tombstones gone {:.1} s after the last Stop (hold {HOLD_SECONDS} s)",
        waited.elapsed().as_secs_f64()
    );
    assert_nothing_leaked(&ctr, &mut cri, bridge);
    assert_eq!(
        ipam_allocations(&ipam_dir),
        Vec::<String>::new(),
        "IPAM allocations left"
    );
    for p in &netns_paths {
        assert!(!Path::new(p).exists(), "netns file {p} left");
    }
    println!("scenario: {:.1} s", t0.elapsed().as_secs_f64());
    drop(ctr);
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "needs root and containerd"]
fn cri_root_timings_beside_the_reference_chain() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    containerd::require_tools();
    const RUNS: usize = 7;
    let image = pause_image("bench");
    let loopback = ("loopback".to_string(), format!("{REFERENCE}/loopback"));
    let ours_dir = containerd::dir_of("ours");
    let ours = Containerd::start(
        Setup {
            name: "ours",
            conflist: conflist(
                "cri-ours",
                "cni-crib1",
                json!({ "type": "tombstone-ipam", "ranges": [[{ "subnet": "172.30.82.0/24" }]],
                        "dataDir": ours_dir.join("ipam") }),
                vec![json!({ "type": "tombstone", "holdSeconds": HOLD_SECONDS,
                             "stateDir": ours_dir.join("tombstone") })],
            ),
            bridge: "cni-crib1",
            subnet_prefix: "172.30.82.",
            plugins: vec![
                ("bridge".into(), format!("{REFERENCE}/bridge")),
                ("tombstone".into(), our_binary("tombstone")),
                ("tombstone-ipam".into(), our_binary("tombstone-ipam")),
                loopback.clone(),
            ],
        },
        &image.0,
    );
    let ref_dir = containerd::dir_of("reference");
    let reference = Containerd::start(
        Setup {
            name: "reference",
            conflist: conflist(
                "cri-reference",
                "cni-crib2",
                json!({ "type": "host-local", "ranges": [[{ "subnet": "172.30.83.0/24" }]],
                        "dataDir": ref_dir.join("ipam") }),
                vec![],
            ),
            bridge: "cni-crib2",
            subnet_prefix: "172.30.83.",
            plugins: vec![
                ("bridge".into(), format!("{REFERENCE}/bridge")),
                ("host-local".into(), format!("{REFERENCE}/host-local")),
                loopback,
            ],
        },
        &image.0,
    );
    let mut runtimes = [
        (&ours, Cri::connect(&ours.socket).expect("connect")),
        (
            &reference,
            Cri::connect(&reference.socket).expect("connect"),
        ),
    ];
    let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    let names = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"];
    // Interleaved: each round runs one pod on each runtime, so both see the same machine.
    for name in names.iter().take(RUNS + 1) {
        for (k, (ctr, cri)) in runtimes.iter_mut().enumerate() {
            let p = Pod {
                name,
                cgroup_parent: &ctr.cgroup_parent,
                host_port: 0,
            };
            let t = Instant::now();
            let id = cri
                .run(&p)
                .unwrap_or_else(|e| panic!("{e}\n{}", ctr.log_tail()));
            let run = t.elapsed();
            let ip = ip_of(cri, &id);
            assert_eq!(node::probe(ip), Probe::Reachable, "{name} at {ip}");
            let t = Instant::now();
            cri.stop(&id)
                .unwrap_or_else(|e| panic!("{e}\n{}", ctr.log_tail()));
            let stop = t.elapsed();
            cri.remove(&id)
                .unwrap_or_else(|e| panic!("{e}\n{}", ctr.log_tail()));
            // The first round warms caches (image, binaries): not counted.
            if *name != "p0" {
                times[k][0].push(run);
                times[k][1].push(stop);
            }
        }
    }
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "| CRI call, median of {RUNS} (containerd 1.6, runc, bridge) | bridge + host-local | bridge + tombstone-ipam + tombstone |"
    );
    println!("|---|---:|---:|");
    for (row, what) in ["RunPodSandbox", "StopPodSandbox"].iter().enumerate() {
        println!(
            "| {what} | {} | {} |",
            ms(median(&mut times[1][row])),
            ms(median(&mut times[0][row]))
        );
    }
    for (ctr, cri) in runtimes.iter_mut() {
        let bridge = if ctr.dir == ours_dir {
            "cni-crib1"
        } else {
            "cni-crib2"
        };
        assert_nothing_leaked(ctr, cri, bridge);
    }
    assert_eq!(
        ipam_allocations(&ours_dir.join("ipam")),
        Vec::<String>::new()
    );
    assert_eq!(
        host_local_allocations(&ref_dir.join("ipam")),
        Vec::<String>::new()
    );
    drop(runtimes);
    drop(ours);
    drop(reference);
}
