//! The CRI scenario's steps, the same natively and in the VM: pods a and b run, a stopped (a
//! tombstone, the node gets "No route to host"), stopped again, c gets a's address (the
//! tombstone lifted, c reachable), a removed late; the [`Faults`] (b's netns deleted under the
//! runtime, a main-plugin DEL failing once, what the runtime passed to `tombstone`); the leak
//! check; and the medians of RunPodSandbox and StopPodSandbox over rounds between runtimes.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::fs;

use serde_json::json;
use tombstone_testkit::eventually;

use super::client::{Cri, POD_NAMESPACE, Pod};
use super::containerd::{self, Containerd};
use super::node::{self, Probe};
use super::record::{self, calls_for, recorded, result_ips};
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
    node::assert_tombstoned(ip_a, "a's released address");
    at(Step::StoppedA, &pods, cri);

    ok(ctr, cri.stop(&pods.a));
    assert!(
        node::tombstone_of(ip_a).is_some(),
        "the second Stop removed the tombstone"
    );

    pods.c = ok(ctr, cri.run(&pod(ctr, "c", 30083)));
    pods.ip_c = ip_of(cri, &pods.c);
    assert_eq!(pods.ip_c, ip_a, "c should get a's released address");
    node::assert_live(ip_a, "c's ADD on a's address");
    pods.netns.push(ok(ctr, cri.status(&pods.c)).netns);

    ok(ctr, cri.remove(&pods.a));
    node::assert_live(ip_a, "c after a's Remove");
    pods
}

/// The wrappers of the fault steps, in the instance's directory: the main plugin's DEL fails
/// once, after the real DEL released the address, while `marker` exists; `tombstone` records
/// its runs (environment and stdin) in `calls` before it execs the plugin.
#[derive(Debug, Clone)]
pub struct Faults {
    /// The main plugin's type (`bridge`, `ipvlan`, `tombstone-ipvlan`).
    pub main: String,
    pub calls: PathBuf,
    pub marker: PathBuf,
}

impl Faults {
    /// The faults of the instance called `instance` whose main plugin is `main`.
    pub fn new(instance: &str, main: &str) -> Faults {
        let dir = containerd::dir_of(instance);
        Faults {
            main: main.to_string(),
            calls: dir.join("calls"),
            marker: dir.join("fail-del-once"),
        }
    }

    /// The instance's plugins (for [`containerd::Setup::plugins`]): the main plugin (the
    /// binary `main_path`) behind the failing DEL, `tombstone` (`tombstone_path`) behind
    /// the recorder.
    pub fn plugins(&self, main_path: &str, tombstone_path: &str) -> Vec<(String, String)> {
        let fail_once = format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = DEL ] && [ -e '{m}' ]; then\n  '{main_path}' >/dev/null || exit $?\n  rm -f '{m}'\n  \
             echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"injected DEL failure, after the release\"}}'\n  exit 1\nfi\nexec '{main_path}'\n",
            m = self.marker.display()
        );
        vec![
            (self.main.clone(), fail_once),
            (
                "tombstone".to_string(),
                record::recorder(&self.calls, tombstone_path),
            ),
        ]
    }

    /// The [`reuse_after_stop`] checks of what the runtime passed to `tombstone`: at a's ADD
    /// its CNI_IFNAME, CNI_NETNS, CNI_ARGS, `runtimeConfig` (tombstone's conflist entry
    /// must have the `portMappings` capability) and `prevResult`; at a's first Stop one DEL
    /// with a's result and mapping.
    pub fn check_recorded(&self, ctr: &Containerd, step: Step, p: &Pods) {
        let calls = recorded(&self.calls);
        match step {
            Step::Running => {
                let add_a = record::the_add(&calls, "a", &p.a, &p.netns[0], p.ip_a);
                let args = record::cni_args(add_a);
                for want in [
                    "IgnoreUnknown=1".to_string(),
                    format!("K8S_POD_NAMESPACE={POD_NAMESPACE}"),
                    "K8S_POD_NAME=a".to_string(),
                    format!("K8S_POD_INFRA_CONTAINER_ID={}", p.a),
                    format!("K8S_POD_UID={}", pod(ctr, "a", 0).uid()),
                ] {
                    assert!(args.contains(&want), "CNI_ARGS lacks {want}: {args:?}");
                }
                let stdin = &add_a.stdin;
                // containerd 1.6 (go-cni) writes the mapping with Go's field names, not the
                // convention's camelCase ("hostPort", ...): plugins must not rely on either.
                assert_eq!(
                    stdin["runtimeConfig"]["portMappings"],
                    json!([{ "HostPort": 30081, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": "" }]),
                    "runtimeConfig of a's ADD: {stdin}"
                );
            }
            Step::StoppedA => record::the_del(&calls, &p.a, p.ip_a, "HostPort", 30081),
        }
    }

    /// After [`reuse_after_stop`] (b and c run): b's netns deleted under the runtime (unmounted
    /// and removed in containerd's mount namespace), then Stop b: it succeeds, b's address
    /// gets a tombstone, the node's send fails at once, the DEL had an empty CNI_NETNS;
    /// Remove b: only c's links are left on the node.
    pub fn netns_gone(&self, cri: &mut Cri, ctr: &Containerd, pods: &Pods) {
        let (b, ip_b, ns_b) = (&pods.b, pods.ip_b, &pods.netns[1]);
        let out = ctr.in_mount_ns(&["umount", ns_b]);
        assert!(
            out.status.success(),
            "umount {ns_b}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_file(ns_b).unwrap_or_else(|e| panic!("remove {ns_b}: {e}"));
        ok(ctr, cri.stop(b));
        node::assert_tombstoned(ip_b, "b's address, after its netns went");
        let calls = recorded(&self.calls);
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
        ok(ctr, cri.remove(b));
        let links = ctr.node_link.pod_links();
        assert_eq!(
            links.len(),
            ctr.node_link.links_per_pod(),
            "only c's links on the node: {links:?}"
        );
    }

    /// After [`Faults::netns_gone`]: d gets b's address; its Stop fails once (the main
    /// plugin's DEL, after it released the address), a tombstone is there; e gets the
    /// address without a tombstone and is reachable; the runtime's retried Stop of d carries
    /// d's cached prevResult (now e's address) and must not bury e; Remove d. Returns e's
    /// sandbox ID; the netns paths of d and e are added to `pods`.
    pub fn retried_stop(&self, cri: &mut Cri, ctr: &Containerd, pods: &mut Pods) -> String {
        let d = ok(ctr, cri.run(&pod(ctr, "d", 30084)));
        let ip_d = ip_of(cri, &d);
        assert_eq!(ip_d, pods.ip_b, "d should get b's released address");
        assert_eq!(node::probe(ip_d), Probe::Reachable, "d at {ip_d}");
        pods.netns.push(ok(ctr, cri.status(&d)).netns);
        fs::write(&self.marker, "").expect("write the failure marker");
        let err = cri.stop(&d).expect_err("d's Stop should fail once");
        assert!(err.contains("injected DEL failure"), "{err}");
        assert!(!self.marker.exists(), "the failing DEL did not run");
        assert!(
            node::tombstone_of(ip_d).is_some(),
            "no tombstone after the failed Stop of d"
        );
        let e = ok(ctr, cri.run(&pod(ctr, "e", 30085)));
        let ip_e = ip_of(cri, &e);
        assert_eq!(ip_e, ip_d, "e should get d's released address");
        node::assert_live(ip_e, "e's ADD on d's address");
        pods.netns.push(ok(ctr, cri.status(&e)).netns);
        ok(ctr, cri.stop(&d));
        let calls = recorded(&self.calls);
        let dels_d = calls_for(&calls, "DEL", &d);
        assert_eq!(dels_d.len(), 2, "the runtime retried d's DEL: {dels_d:?}");
        assert_eq!(
            result_ips(&dels_d[1].stdin["prevResult"]),
            vec![ip_e.to_string()],
            "the retried DEL carries the cached prevResult of d (now e's address)"
        );
        node::assert_live(ip_e, "e after d's retried Stop");
        ok(ctr, cri.remove(&d));
        assert_eq!(node::probe(ip_e), Probe::Reachable, "e after d's Remove");
        assert_eq!(
            node::probe(pods.ip_c),
            Probe::Reachable,
            "c after d's Remove"
        );
        e
    }
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
    node::outlive_tombstones(&ctr.subnet_prefix, hold)
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
