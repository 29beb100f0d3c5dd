//! Real-kernel scenarios in a qemu VM (IPvlan needs the distribution's kernel, which the VM
//! boots). **Need root and the VM tools** (`conformance/vm/install-deps.sh`, run by
//! `make deps`), hence `vm_root_` in every name.
//!
//! Plain `cargo test` lists them as ignored; `make test` includes them, and a missing
//! prerequisite then fails the test with what to install. Boots are serialised (a lock file
//! in the target dir), so the tests can run in parallel threads without skewing each other's
//! timings.

use std::time::{Duration, Instant};

use cni_conformance::harness::lab::{self, Lab};
use cni_conformance::harness::scenario::{self, Chain, Churn, Mode, Report, Settings, Variant};
use cni_conformance::harness::vm::VmConfig;

fn seed(lab: &Lab, variants: &[Variant]) -> Report {
    let t = Instant::now();
    let report = scenario::run_seed(lab, variants, &Settings::default())
        .unwrap_or_else(|e| panic!("seed scenario: {e}"));
    println!("{}", report.seed_table());
    println!(
        "(boot + job {:.0} s; {:.0} s with the wait for other tests' boots)",
        report.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    assert!(
        report.results.failures.is_empty(),
        "failed steps {:?}; job output:\n{}",
        report.results.failures,
        report.job.output
    );
    report
}

/// What every variant must show, with or without tombstone: the address can be used again.
fn assert_reuse_works(r: &Report, variant: &str, families: &[&str]) {
    let res = &r.results;
    let out = &r.job.output;
    assert_eq!(res.get(variant, "reuse_add"), "ok", "{variant}: {out}");
    assert_eq!(res.get(variant, "rehold_add"), "ok", "{variant}: {out}");
    assert_eq!(res.get(variant, "reuse_check"), "ok", "{variant}: {out}");
    for f in families {
        for key in [
            "reuse_from_pod",
            "reuse_from_host",
            "rehold_from_pod",
            "rehold_from_host",
        ] {
            assert_eq!(
                res.get(variant, &format!("{key}_{f}")),
                "yes",
                "{variant} {key}_{f}: {out}"
            );
        }
        assert_eq!(
            res.get(variant, &format!("reuse_addr_{f}")),
            res.get(variant, &format!("released_{f}")),
            "{variant}: the new pod did not get the released IPv{f} address"
        );
    }
    assert_eq!(
        res.get(variant, "stray_links"),
        "",
        "{variant}: links leaked"
    );
    assert_eq!(
        res.get(variant, "ipam_held"),
        "",
        "{variant}: addresses leaked"
    );
}

/// What tombstone must do in every mode: a route at DEL, nothing forwarded, immediate
/// failure for local senders, and gone after its hold.
fn assert_tombstone_effect(r: &Report, variant: &str, families: &[&str]) {
    let res = &r.results;
    let out = &r.job.output;
    for f in families {
        assert_eq!(
            res.get(variant, &format!("route_at_del_{f}")),
            "unreachable",
            "{variant}: {out}"
        );
        assert_eq!(
            res.number(variant, &format!("forwarded_{f}")),
            Some(0),
            "{variant}: {out}"
        );
        assert!(
            res.get(variant, &format!("host_sender_{f}"))
                .contains("No route to host")
                || res
                    .get(variant, &format!("host_sender_{f}"))
                    .contains("unreachable"),
            "{variant}: host-side sender did not fail at once: {}",
            res.get(variant, &format!("host_sender_{f}"))
        );
        assert_eq!(
            res.get(variant, &format!("route_at_third_del_{f}")),
            "unreachable",
            "{variant}: {out}"
        );
        assert_eq!(
            res.get(variant, &format!("route_after_hold_{f}")),
            "none",
            "{variant}: {out}"
        );
    }
}

#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_harness_returns_job_output_and_status() {
    let lab = lab("vm_root_harness_returns_job_output_and_status");
    let out = scenario::run_adhoc(
        &lab,
        "echo hello from $(uname -r); ip link add d0 type dummy && \
         ip link add g0 link d0 type ipvlan mode l2 && echo ipvlan-ok; exit 7",
    )
    .expect("boot");
    assert_eq!(out.status, 7, "{}", out.console);
    assert!(
        out.output
            .contains(&format!("hello from {}", lab.vm.kernel.version)),
        "{}",
        out.output
    );
    assert!(out.output.contains("ipvlan-ok"), "{}", out.output);
    assert!(!out.output.contains('\r'));
    println!("boot + job {:.1} s", out.elapsed.as_secs_f64());
}

#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_harness_kills_a_boot_at_its_timeout() {
    let lab = lab("vm_root_harness_kills_a_boot_at_its_timeout");
    let mut vm = lab.vm.clone();
    vm.config.timeout = Duration::from_secs(2);
    // The error says which bound was hit; the wall time would include waiting for the
    // boot lock while other tests boot.
    let err = vm
        .run_job("timeout", "sleep 600")
        .expect_err("a 2 s boot cannot finish");
    assert!(err.to_string().contains("timed out after 2s"), "{err}");
}

/// The seed scenario of issue 3: IPvlan L2, reference plugins alone, then `tombstone` chained.
#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_seed_l2_loop_baseline_vs_tombstone() {
    let lab = lab("vm_root_seed_l2_loop_baseline_vs_tombstone");
    let r = seed(
        &lab,
        &[
            Variant::new("baseline", Mode::L2, false, Chain::Reference),
            Variant::new("tombstone", Mode::L2, false, Chain::Tombstone),
        ],
    );
    let baseline = r.results.number("baseline", "forwarded_4").unwrap_or(-1);
    assert!(
        baseline > 0,
        "baseline must show the loop (forwarded {baseline}): {}",
        r.job.output
    );
    assert_reuse_works(&r, "baseline", &["4"]);
    assert_reuse_works(&r, "tombstone", &["4"]);
    assert_tombstone_effect(&r, "tombstone", &["4"]);
}

/// The seed in a dual-stack pod subnet: the IPv6 loop and its /128 tombstone.
#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_dual_stack_ipv6_baseline_vs_tombstone() {
    let lab = lab("vm_root_dual_stack_ipv6_baseline_vs_tombstone");
    let r = seed(
        &lab,
        &[
            Variant::new("baseline", Mode::L2, true, Chain::Reference),
            Variant::new("tombstone", Mode::L2, true, Chain::Tombstone),
        ],
    );
    for f in ["4", "6"] {
        let n = r
            .results
            .number("baseline", &format!("forwarded_{f}"))
            .unwrap_or(-1);
        assert!(n > 0, "IPv{f} baseline must show the loop (forwarded {n})");
    }
    assert_reuse_works(&r, "baseline", &["4", "6"]);
    assert_reuse_works(&r, "tombstone", &["4", "6"]);
    assert_tombstone_effect(&r, "tombstone", &["4", "6"]);
}

/// Modes l3 and l3s do not loop upstream; tombstone must not break anything there.
#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_modes_l3_l3s_tombstone_breaks_nothing() {
    let lab = lab("vm_root_modes_l3_l3s_tombstone_breaks_nothing");
    let r = seed(
        &lab,
        &[
            Variant::new("l3-baseline", Mode::L3, false, Chain::Reference),
            Variant::new("l3-tombstone", Mode::L3, false, Chain::Tombstone),
            Variant::new("l3s-baseline", Mode::L3s, false, Chain::Reference),
            Variant::new("l3s-tombstone", Mode::L3s, false, Chain::Tombstone),
        ],
    );
    for v in [
        "l3-baseline",
        "l3-tombstone",
        "l3s-baseline",
        "l3s-tombstone",
    ] {
        assert_reuse_works(&r, v, &["4"]);
    }
    for v in ["l3-tombstone", "l3s-tombstone"] {
        assert_tombstone_effect(&r, v, &["4"]);
    }
}

/// 50 pods added and deleted in random order (fixed seed) with address reuse.
#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_churn_50_pods_no_leak_no_stale_tombstone() {
    let lab = lab("vm_root_churn_50_pods_no_leak_no_stale_tombstone");
    let churn = Churn::default();
    let t = Instant::now();
    let r = scenario::run_churn(&lab, &churn, &Settings::default())
        .unwrap_or_else(|e| panic!("churn: {e}"));
    println!("{}", r.churn_table());
    println!(
        "(boot + job {:.0} s; {:.0} s with the wait for other tests' boots; seed {:#x})",
        r.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64(),
        churn.seed
    );
    let res = &r.results;
    let out = &r.job.output;
    assert!(res.failures.is_empty(), "{:?}\n{out}", res.failures);
    assert_eq!(
        res.number("churn", "adds"),
        Some(churn.pods as i64),
        "{out}"
    );
    assert!(
        res.number("churn", "reused").unwrap_or(0) > 0,
        "no address was reused: {out}"
    );
    for zero in [
        "op_failures",
        "unreachable_after_add",
        "del_without_tombstone",
        "live_unreachable",
        "check_failures",
        "tombstones_after_hold",
    ] {
        assert_eq!(res.number("churn", zero), Some(0), "{zero}: {out}");
    }
    for empty in ["stray_links", "ipam_held", "cached_results", "stray_routes"] {
        assert_eq!(res.get("churn", empty), "", "{empty}: {out}");
    }
}

/// The lab; a missing prerequisite fails the test (see [`lab::for_test`]).
fn lab(test: &str) -> Lab {
    lab::for_test(test, VmConfig::default())
}
