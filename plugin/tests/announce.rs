//! The announcement of a reused address on ADD, against the real kernel: `tombstone-ipvlan`'s
//! own configuration of the pod link (`configure_pod_link`, which does not depend on the link
//! being IPvlan, absent from some kernels) run on a veth in a pod namespace, and a neighbour in
//! another namespace that still holds the address's old MAC, as it would after the address's
//! previous pod. The neighbour must take the pod's MAC from the gratuitous ARP (IPv4) and the
//! unsolicited neighbour advertisement (IPv6), long before its entry could expire; the same
//! link brought up without our configuration leaves it with the old one. Needs root.

mod common;

use common::{eventually, require_root};
use serde_json::json;
use tombstone::ipvlan::plan::Plan;
use tombstone::ipvlan::verbs::configure_pod_link;
use tombstone_cni::result::CniResult;
use tombstone_kernel::netns::NetNs;
use tombstone_testkit::Netns;

const OLD_MAC: &str = "02:00:00:00:00:99";
const POD: [&str; 2] = ["10.77.0.5/24", "fd77::5/64"];

/// A pod namespace holding `a0`, down, whose peer `b0` is up in a neighbour namespace that
/// believes the pod's addresses to be at [`OLD_MAC`].
fn pod_and_neighbour() -> (Netns, Netns) {
    let pod = Netns::new("ts-pod-");
    let peer = Netns::new("ts-peer-");
    pod.ip(&[
        "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", &peer.name,
    ]);
    peer.ip(&["link", "set", "b0", "up"]);
    peer.ip(&["addr", "add", "10.77.0.1/24", "dev", "b0"]);
    peer.ip(&["-6", "addr", "add", "fd77::1/64", "dev", "b0", "nodad"]);
    for a in POD {
        let ip = a.split('/').next().unwrap();
        peer.ip(&[
            "neigh",
            "add",
            ip,
            "lladdr",
            OLD_MAC,
            "dev",
            "b0",
            "nud",
            "reachable",
        ]);
    }
    (pod, peer)
}

fn mac(ns: &Netns, dev: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", dev])).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

/// The MAC the neighbour holds for `ip` (empty when it holds none).
fn neighbour_mac(peer: &Netns, ip: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&peer.ip(&["-j", "neigh", "show", ip, "dev", "b0"])).unwrap();
    v[0]["lladdr"].as_str().unwrap_or_default().to_string()
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_add_announces_the_pods_addresses_to_its_neighbours() {
    require_root();
    let (pod, peer) = pod_and_neighbour();
    let ns = NetNs::open(&pod.path()).expect("open the pod's netns");
    let nl = ns.netlink().expect("netlink in the pod");
    let link = nl.link_by_name("a0").unwrap().expect("a0");
    let result = CniResult::from_value(&json!({
        "cniVersion": "1.0.0",
        "ips": [
            {"address": POD[0], "gateway": "10.77.0.1"},
            {"address": POD[1], "gateway": "fd77::1"}
        ]
    }))
    .unwrap();
    let plan = Plan::from_result(&result).unwrap();
    let link = configure_pod_link(&ns, &nl, &link, &plan, "eth0").expect("configure");
    assert!(link.up && link.name == "eth0", "{link:?}");
    for (family, key) in [("ipv4", "arp_notify"), ("ipv6", "ndisc_notify")] {
        let value = pod.exec(&["cat", &format!("/proc/sys/net/{family}/conf/eth0/{key}")]);
        assert_eq!(value.trim(), "1", "{family} {key}");
    }
    let want = mac(&pod, "eth0");
    // REACHABLE lasts 15 to 45 s and the old MAC would not answer a probe: a neighbour that
    // has the new one within 5 s (IPv6 waits for DAD, 1 s) had it announced.
    for a in POD {
        let ip = a.split('/').next().unwrap();
        assert!(
            eventually(5, || neighbour_mac(&peer, ip) == want),
            "{ip}: the neighbour still holds {} (the pod is at {want})",
            neighbour_mac(&peer, ip)
        );
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_without_the_announcement_the_neighbour_keeps_the_old_mac() {
    require_root();
    let (pod, peer) = pod_and_neighbour();
    for a in POD {
        pod.ip(&["addr", "add", a, "dev", "a0"]);
    }
    pod.ip(&["link", "set", "a0", "up"]);
    // As long as the positive test waits, and then some.
    std::thread::sleep(std::time::Duration::from_secs(6));
    for a in POD {
        let ip = a.split('/').next().unwrap();
        assert_eq!(neighbour_mac(&peer, ip), OLD_MAC, "{ip}");
    }
}
