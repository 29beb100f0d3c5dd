//! The Service scenario on a real IPvlan kernel (the VM): the host reaches pod a through a
//! ClusterIP and a NodePort, pod c through the ClusterIP (kube-proxy-like DNAT); a is deleted,
//! then the Service is switched to pod b. Reference plugins without and with `tombstone`, and
//! our three plugins. **Needs root and the VM tools** (`conformance/vm/install-deps.sh`).

use cni_conformance::harness::lab;
use cni_conformance::harness::scenario::{self, Chain, Mode, Settings, Variant};
use cni_conformance::harness::vm::VmConfig;

#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins, conntrack, nftables (make deps)"]
fn vm_root_service_clusterip_nodeport_across_a_del() {
    let lab = lab::for_test(
        "vm_root_service_clusterip_nodeport_across_a_del",
        VmConfig::default(),
    );
    let settings = Settings {
        hold_seconds: 30,
        ..Settings::default()
    };
    let variants = [
        Variant::new("baseline", Mode::L2, false, Chain::Reference),
        Variant::new("tombstone", Mode::L2, false, Chain::Tombstone),
        Variant::new("ours", Mode::L2, false, Chain::Ours),
    ];
    let report = scenario::run_service(&lab, &variants, &settings)
        .unwrap_or_else(|e| panic!("Service scenario: {e}"));
    let table = report.service_table();
    println!("{}\n{table}", report.job.output);
    let r = &report.results;
    assert!(
        r.failures.is_empty(),
        "failed steps: {:?}\n{table}",
        r.failures
    );
    let num = |v: &str, k: &str| {
        r.number(v, k)
            .unwrap_or_else(|| panic!("{v} {k}: {:?}\n{table}", r.get(v, k)))
    };
    for v in ["baseline", "tombstone", "ours"] {
        assert!(
            num(v, "conntrack_a_before") > 0,
            "{v}: flows to a tracked\n{table}"
        );
        assert_eq!(
            r.get(v, "nodeport_src_at_a"),
            "10.10.0.1",
            "{v}: NodePort SNAT\n{table}"
        );
    }
    // Without tombstone: the flows' entries outlive the DEL and keep translating to a's
    // address after the switch, so nothing reaches b.
    for k in ["conntrack_a_after_del", "conntrack_a_end"] {
        assert!(num("baseline", k) > 0, "baseline {k}\n{table}");
    }
    // Pod c's ClusterIP flow loops through the gateway port (each datagram forwarded again
    // at every hop of its TTL); the host's own flows are black-holed without an error.
    assert!(
        num("baseline", "forwarded_4") > 0,
        "baseline: the loop\n{table}"
    );
    assert!(
        num("baseline", "forwarded_pod_udp") > 0,
        "baseline: pod c's flow loops\n{table}"
    );
    for p in ["clusterip", "nodeport"] {
        assert!(
            !r.get("baseline", &format!("{p}_sees"))
                .contains("EHOSTUNREACH"),
            "baseline {p}: nothing tells the client\n{table}"
        );
    }
    for p in ["clusterip", "nodeport", "pod"] {
        assert_eq!(
            r.get("baseline", &format!("{p}_to_b_ms")),
            "none",
            "baseline {p}\n{table}"
        );
    }
    // With tombstone (either chain): nothing forwarded to a's address, no entry of it left,
    // every flow at b soon after the switch (the rules in place: switch_ms, plus a second).
    for v in ["tombstone", "ours"] {
        assert_eq!(num(v, "forwarded_4"), 0, "{v}: forwarded\n{table}");
        for k in [
            "forwarded_clusterip_udp",
            "forwarded_nodeport_udp",
            "forwarded_clusterip_tcp",
            "forwarded_pod_udp",
            "conntrack_a_after_del",
            "conntrack_a_at_switch",
            "conntrack_a_end",
        ] {
            assert_eq!(num(v, k), 0, "{v} {k}\n{table}");
        }
        assert_eq!(r.get(v, "route_at_del"), "unreachable", "{v}\n{table}");
        let bound = num(v, "switch_ms") + 1000;
        for p in ["clusterip", "nodeport", "pod"] {
            let ms = num(v, &format!("{p}_to_b_ms"));
            assert!(
                ms <= bound,
                "{v} {p}: b reached {ms} ms after the switch\n{table}"
            );
        }
        for p in ["clusterip", "nodeport"] {
            assert!(
                r.get(v, &format!("{p}_sees")).ends_with("EHOSTUNREACH"),
                "{v} {p}: the client is told at once\n{table}"
            );
        }
    }
}
