//! The CRI scenario's steps, the same natively and in the VM: pods a and b run, a stopped (a
//! tombstone, the node gets "No route to host"), stopped again, c gets a's address (the
//! tombstone lifted, c reachable), a removed late; the leak check; and the medians of
//! RunPodSandbox and StopPodSandbox over rounds interleaved between runtimes.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tombstone_testkit::eventually;

use super::client::{Cri, Pod};
use super::containerd::Containerd;
use super::node::{self, Probe};
use super::record;
use crate::harness::paths;

/// The pods of [`reuse_after_stop`]: sandbox IDs, addresses, and every netns path seen.
#[derive(Debug, Clone)]
pub struct Pods {
    pub a: String,
    pub b: String,
    pub c: String,
    pub ip_a: Ipv4Addr,
    pub ip_b: Ipv4Addr,
    pub ip_c: Ipv4Addr,
    pub netns: Vec<String>,
}

/// Where [`reuse_after_stop`] stops for its caller's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// a and b run and are reachable (c not yet run).
    Running,
    /// a was stopped once: its tombstone is there.
    StoppedA,
}

/// The path of our release binary `name` (a plugin, `cni-pause`), which must be built.
pub fn our_binary(name: &str) -> String {
    let path = paths::release_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build it first (`make build`, i.e. cargo build --release --workspace --bins)",
        path.display()
    );
    path.display().to_string()
}

/// A CRI call's result, or a panic with the error and containerd's log.
pub fn ok<T>(ctr: &Containerd, r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}\ncontainerd:\n{}", ctr.log_tail()))
}

/// A ready sandbox's IPv4 address, from PodSandboxStatus.
pub fn ip_of(cri: &mut Cri, id: &str) -> Ipv4Addr {
    let st = cri.status(id).unwrap_or_else(|e| panic!("{e}"));
    assert!(st.ready, "sandbox {id} is not ready: {st:?}");
    st.ip
        .parse()
        .unwrap_or_else(|_| panic!("sandbox {id}: no IPv4 pod IP in its status: {st:?}"))
}

/// The pod `name` of `ctr` (its UID is `uid-<name>`) with a host port mapping.
pub fn pod<'a>(ctr: &'a Containerd, name: &'a str, host_port: i32) -> Pod<'a> {
    Pod {
        name,
        cgroup_parent: &ctr.cgroup_parent,
        host_port,
    }
}

/// Run a and b (host ports 30081, 30082): both reachable from the node; Stop a: a tombstone,
/// the node's send fails at once; Stop a again: the tombstone stays; Run c (30083): the pool's
/// one free address is a's, c's ADD lifts its tombstone and the node reaches c; Remove a
/// late: c keeps its route. The conflist's pool must have two addresses. `at` is called at
/// each [`Step`] for the caller's own checks.
pub fn reuse_after_stop(
    cri: &mut Cri,
    ctr: &Containerd,
    mut at: impl FnMut(Step, &Pods, &mut Cri),
) -> Pods {
    let a = ok(ctr, cri.run(&pod(ctr, "a", 30081)));
    let b = ok(ctr, cri.run(&pod(ctr, "b", 30082)));
    let (ip_a, ip_b) = (ip_of(cri, &a), ip_of(cri, &b));
    assert_ne!(ip_a, ip_b);
    assert_eq!(node::probe(ip_a), Probe::Reachable, "a at {ip_a}");
    assert_eq!(node::probe(ip_b), Probe::Reachable, "b at {ip_b}");
    let mut netns = Vec::new();
    for id in [&a, &b] {
        let ns = ok(ctr, cri.status(id)).netns;
        assert!(!ns.is_empty(), "no netns path in {id}'s status");
        netns.push(ns);
    }
    let mut pods = Pods {
        a,
        b,
        c: String::new(),
        ip_a,
        ip_b,
        ip_c: Ipv4Addr::UNSPECIFIED,
        netns,
    };
    at(Step::Running, &pods, cri);

    ok(ctr, cri.stop(&pods.a));
    let route = node::tombstone_of(ip_a).unwrap_or_else(|| panic!("no tombstone for {ip_a}"));
    assert!(route.starts_with("unreachable "), "{route}");
    assert_eq!(
        node::probe(ip_a),
        Probe::NoRouteToHost,
        "a's released {ip_a}"
    );
    at(Step::StoppedA, &pods, cri);

    ok(ctr, cri.stop(&pods.a));
    assert!(
        node::tombstone_of(ip_a).is_some(),
        "the second Stop removed the tombstone"
    );

    pods.c = ok(ctr, cri.run(&pod(ctr, "c", 30083)));
    pods.ip_c = ip_of(cri, &pods.c);
    assert_eq!(pods.ip_c, ip_a, "c should get a's released address");
    assert_eq!(node::tombstone_of(ip_a), None, "c's ADD left a's tombstone");
    assert_eq!(node::probe(ip_a), Probe::Reachable, "c at {ip_a}");
    pods.netns.push(ok(ctr, cri.status(&pods.c)).netns);

    ok(ctr, cri.remove(&pods.a));
    assert_eq!(node::tombstone_of(ip_a), None, "a's Remove buried c");
    assert_eq!(node::probe(ip_a), Probe::Reachable, "c after a's Remove");
    pods
}

/// Stops and removes `ids`, then waits for the tombstones of the instance's subnet to end by
/// themselves within `hold` (and a margin): how many there were after the last Stop, and the
/// seconds they took to go.
pub fn stop_all_and_outlive_tombstones(
    cri: &mut Cri,
    ctr: &Containerd,
    ids: &[&str],
    hold: u64,
) -> (usize, f64) {
    for id in ids {
        ok(ctr, cri.stop(id));
        ok(ctr, cri.remove(id));
    }
    let prefix = &ctr.subnet_prefix;
    let made = node::tombstones(prefix).len();
    let waited = Instant::now();
    assert!(
        eventually(hold + 10, || node::tombstones(prefix).is_empty()),
        "tombstones past their hold: {:?}",
        node::tombstones(prefix)
    );
    (made, waited.elapsed().as_secs_f64())
}

/// What must be left once every sandbox is removed: nothing of the pods (sandboxes, pod
/// links on the node, libcni results, shims and sandbox processes, cgroups, IPAM
/// allocations, the `netns` files).
pub fn assert_nothing_leaked(ctr: &Containerd, cri: &mut Cri, netns: &[String]) {
    assert_eq!(
        cri.list().expect("ListPodSandbox"),
        Vec::<String>::new(),
        "sandboxes left"
    );
    assert_eq!(
        ctr.node_link.pod_links(),
        Vec::<String>::new(),
        "pod links left on {:?}",
        ctr.node_link
    );
    assert_eq!(
        ctr.cached_results(),
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
    assert_eq!(
        record::allocations(&ctr.ipam_dir),
        Vec::<String>::new(),
        "IPAM allocations left"
    );
    for p in netns {
        assert!(!Path::new(p).exists(), "netns file {p} left");
    }
}

/// The medians of one runtime's calls.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub run: Duration,
    pub stop: Duration,
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `rounds` + 1 rounds of Run, probe (reachable), Stop, Remove; each round runs one pod on
/// each runtime in turn, so all see the same machine; the first round (warming the image and
/// binaries) is not counted. The medians, in the runtimes' order.
pub fn timings(runtimes: &mut [(&Containerd, Cri)], rounds: usize) -> Vec<Timing> {
    let mut times = vec![(Vec::new(), Vec::new()); runtimes.len()];
    for round in 0..=rounds {
        let name = format!("p{round}");
        for (k, (ctr, cri)) in runtimes.iter_mut().enumerate() {
            let t = Instant::now();
            let id = ok(ctr, cri.run(&pod(ctr, &name, 0)));
            let run = t.elapsed();
            let ip = ip_of(cri, &id);
            assert_eq!(node::probe(ip), Probe::Reachable, "{name} at {ip}");
            let t = Instant::now();
            ok(ctr, cri.stop(&id));
            let stop = t.elapsed();
            ok(ctr, cri.remove(&id));
            if round > 0 {
                times[k].0.push(run);
                times[k].1.push(stop);
            }
        }
    }
    times
        .iter_mut()
        .map(|(run, stop)| Timing {
            run: median(run),
            stop: median(stop),
        })
        .collect()
}

/// The timings as a Markdown table: `caption` heads the first column, one column per chain.
pub fn timing_table(caption: &str, chains: &[&str], t: &[Timing]) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut out = format!("| {caption} | {} |\n|---|", chains.join(" | "));
    out.push_str(&"---:|".repeat(chains.len()));
    out.push('\n');
    for (what, f) in [
        (
            "RunPodSandbox",
            (|t: &Timing| t.run) as fn(&Timing) -> Duration,
        ),
        ("StopPodSandbox", |t: &Timing| t.stop),
    ] {
        let cells: Vec<String> = t.iter().map(|t| ms(f(t))).collect();
        out.push_str(&format!("| {what} | {} |\n", cells.join(" | ")));
    }
    out
}
