//! `tombstone-ipvlan` on a real IPvlan kernel (the VM), driven through libcni's cnitool with
//! `tombstone-ipam` and `tombstone`: modes, the gateway port, failure injection, concurrency,
//! the seed scenario on our three plugins, STATUS, GC, `mtu`, `linkInContainer`, a dual-stack
//! gateway port, and the benchmark beside the reference chain.
//! **Needs root and the VM tools** (`conformance/vm/install-deps.sh`), hence `vm_root_`.
//! One boot for the functional checks, one for the benchmark.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cni_conformance::harness::lab::{self, Lab};
use cni_conformance::harness::scenario::{self, Results};
use cni_conformance::harness::tools;
use cni_conformance::harness::vm::VmConfig;

const IPVLAN_SH: &str = include_str!("../jobs/ipvlan.sh");
/// The binaries on the job's `CNI_PATH` besides the reference plugins.
const OURS: &[&str] = &["tombstone", "tombstone-ipvlan", "tombstone-ipam"];

/// Builds our three plugins (under cargo) and returns a `CNI_PATH` dir with them and the
/// reference plugins.
fn plugin_dir() -> PathBuf {
    lab::build_our_plugins().expect("build the plugins");
    tools::plugin_dir("ipvlan", OURS).expect("plugin dir")
}

/// Boots once and runs `calls` (shell lines) after the ipvlan job library.
fn run(lab: &Lab, calls: &str) -> (Results, String) {
    let dir = plugin_dir();
    let quoted = format!("'{}'", dir.display());
    let body = format!("{IPVLAN_SH}\nexport CNI_PATH={quoted}\nOURS={quoted}\n{calls}\nexit 0\n");
    let t = Instant::now();
    let job = scenario::run_adhoc(lab, &body).unwrap_or_else(|e| panic!("VM job: {e}"));
    println!("(boot + job {:.0} s)", t.elapsed().as_secs_f64());
    assert_eq!(job.status, 0, "job exited {}:\n{}", job.status, job.output);
    (Results::parse(&job.output), job.output)
}

fn expect(r: &Results, out: &str, variant: &str, key: &str, want: &str) {
    assert_eq!(
        r.get(variant, key),
        want,
        "{variant} {key}; job output:\n{out}"
    );
}

#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_ipvlan_modes_failures_concurrency_and_seed_chain() {
    let lab = lab("vm_root_ipvlan_modes_failures_concurrency_and_seed_chain");
    let (r, out) = run(
        &lab,
        "for m in l2 l3 l3s; do ( iv_mode $m ) || echo \"FAIL $m iv_mode exited $?\"; iv_node_down; done\n\
         ( iv_failures ) || echo \"FAIL fail iv_failures exited $?\"; iv_node_down\n\
         ( iv_concurrent ) || echo \"FAIL concurrent exited $?\"; iv_node_down\n\
         ( iv_seed ) || echo \"FAIL chain iv_seed exited $?\"; iv_node_down\n\
         ( iv_status_gc_options ) || echo \"FAIL options iv_status_gc_options exited $?\"; iv_node_down",
    );
    println!("{out}");
    assert!(
        r.failures.is_empty(),
        "failed steps {:?}:\n{out}",
        r.failures
    );

    // ADD/CHECK/DEL in each mode; the gateway port gives host<->pod; pod<->pod.
    for m in ["l2", "l3", "l3s"] {
        expect(&r, &out, m, "mode_a", m);
        expect(&r, &out, m, "announce_a", "1");
        let gw = r.get(m, "gw_port");
        assert!(
            gw.starts_with("gw_") && gw.len() == 11,
            "{m}: gateway port {gw:?}"
        );
        expect(&r, &out, m, "gw_addr", "10.10.0.1/24");
        expect(&r, &out, m, "gw_up", "1");
        assert!(
            r.get(m, "host_route").contains(&format!("dev {gw}")),
            "{m}: host route {:?}",
            r.get(m, "host_route")
        );
        assert!(
            r.get(m, "pod_route")
                .starts_with("default via 10.10.0.1 dev eth0"),
            "{m}: pod route {:?}",
            r.get(m, "pod_route")
        );
        expect(&r, &out, m, "result_iface", "1");
        for key in ["a_to_b", "b_to_a", "host_to_a", "host_to_b", "a_to_gw"] {
            expect(&r, &out, m, key, "yes");
        }
        expect(&r, &out, m, "check", "ok");
        expect(&r, &out, m, "check_tampered", "failed");
        expect(&r, &out, m, "del_again", "ok");
        expect(&r, &out, m, "allocations_after_del_a", "1");
        expect(&r, &out, m, "allocations_end", "0");
        expect(&r, &out, m, "stray_links", "");
        // Never torn down by a pod's DEL.
        expect(&r, &out, m, "gw_port_after", gw);
    }

    // Failure injection: no link, no allocation.
    let f = "fail";
    expect(&r, &out, f, "ipam_error_add", "failed");
    expect(&r, &out, f, "ipam_error_links", "");
    expect(&r, &out, f, "exhausted_add", "failed");
    expect(&r, &out, f, "exhausted_links", "");
    expect(&r, &out, f, "exhausted_allocations", "1");
    expect(&r, &out, f, "badns_add", "failed");
    expect(&r, &out, f, "notns_add", "failed");
    expect(&r, &out, f, "collision_add", "failed");
    expect(&r, &out, f, "collision_links", "eth0");
    expect(&r, &out, f, "collision_kind", "dummy");
    expect(&r, &out, f, "failures_allocations", "0");
    for k in ["k1", "k2"] {
        let links = r.get(f, &format!("killed_links_{k}"));
        assert!(
            links.starts_with("tsi"),
            "killed mid-ADD: the link should still be under its temporary name: {links:?}\n{out}"
        );
    }
    expect(&r, &out, f, "killed_allocations", "2");
    expect(&r, &out, f, "killed_retry_add", "ok");
    expect(&r, &out, f, "killed_retry_links", "eth0");
    expect(&r, &out, f, "killed_links_after_del", "|");
    expect(&r, &out, f, "killed_allocations_after_del", "0");
    expect(&r, &out, f, "master_gone_del", "ok");
    expect(&r, &out, f, "master_gone_allocations", "0");
    expect(&r, &out, f, "stray_links", "");

    // 20 concurrent ADDs, one gateway port, then 20 concurrent DELs.
    let c = "concurrent";
    for (key, want) in [
        ("adds_ok", "20"),
        ("distinct_addrs", "20"),
        ("gw_ports", "1"),
        ("gw_addrs", "1"),
        ("allocations", "20"),
        ("host_reaches", "20"),
        ("dels_ok", "20"),
        ("pods_with_links", "0"),
        ("allocations_end", "0"),
    ] {
        expect(&r, &out, c, key, want);
    }

    // The seed scenario on tombstone-ipvlan + tombstone-ipam + tombstone.
    let s = "chain";
    for key in ["b_to_a", "host_to_a", "a_to_host"] {
        expect(&r, &out, s, key, "yes");
    }
    expect(&r, &out, s, "route_at_del_4", "unreachable");
    expect(&r, &out, s, "forwarded_4", "0");
    let sender = r.get(s, "host_sender_4");
    assert!(
        sender.contains("No route to host") || sender.contains("unreachable"),
        "host sender: {sender}"
    );
    assert_ne!(
        r.get(s, "next_addr_4"),
        r.get(s, "released_4"),
        "cool-down: {out}"
    );
    expect(&r, &out, s, "reuse_add", "ok");
    expect(&r, &out, s, "reuse_addr_4", r.get(s, "released_4"));
    expect(&r, &out, s, "reuse_from_pod_4", "yes");
    expect(&r, &out, s, "reuse_from_host_4", "yes");
    expect(&r, &out, s, "reuse_check", "ok");
    expect(&r, &out, s, "stray_links", "");
    expect(&r, &out, s, "allocations_end", "0");

    // STATUS, run directly (cniVersion 1.1.0): ok with the master up, code 50 with it down or
    // missing, whether configured or taken from the default route (which goes with its link).
    let st = "status";
    for key in ["up_default_rc", "up_master_rc", "up_again_rc"] {
        expect(&r, &out, st, key, "0");
    }
    expect(&r, &out, st, "up_default_stdout", "0");
    for case in [
        "down_master",
        "down_default",
        "missing_master",
        "missing_default",
    ] {
        expect(&r, &out, st, &format!("{case}_rc"), "1");
        expect(&r, &out, st, &format!("{case}_code"), "50");
    }
    expect(&r, &out, st, "down_master_msg", "master eth0 is down");
    expect(&r, &out, st, "missing_master_msg", "master eth0 not found");

    // GC, run directly with a conflist-derived 1.1.0 config listing pod g1 of g1 and g2:
    // g2's allocation is released (into the cool-down), g1's kept and g1 still works.
    let g = "gc";
    for (key, want) in [
        ("allocations_before", "2"),
        ("gc_rc", "0"),
        ("gc_stdout", "0"),
        ("allocations_after", "1"),
        ("kept_g1", "1"),
        ("kept_g2", "0"),
        ("released_g2", "1"),
        ("g1_reachable", "yes"),
        ("g1_check", "ok"),
        ("g3_got_g2", "no"),
        ("allocations_end", "0"),
        ("stray_links", ""),
    ] {
        expect(&r, &out, g, key, want);
    }

    // mtu: the pod link gets the configured MTU, the master keeps its own.
    let m = "mtu";
    expect(&r, &out, m, "pod_mtu", "1400");
    expect(&r, &out, m, "master_mtu", "1500");
    expect(&r, &out, m, "host_to_pod", "yes");
    expect(&r, &out, m, "check", "ok");
    expect(&r, &out, m, "allocations_end", "0");

    // linkInContainer: the pod link is a slave of the pod's own m0; no gateway port.
    let l = "lic";
    for (key, want) in [
        ("add", "ok"),
        ("pod_links", "m0 eth0"),
        ("pod_parent", "eth0@m0"),
        ("pod_kind", "ipvlan"),
        ("pod_addr", "10.10.0.2"),
        ("gw_port", ""),
        ("host_links", ""),
        ("status_rc", "0"),
        ("check", "ok"),
        ("del", "ok"),
        ("pod_links_after_del", "m0"),
        ("allocations_end", "0"),
    ] {
        expect(&r, &out, l, key, want);
    }
    assert!(
        r.get(l, "pod_route")
            .starts_with("default via 10.10.0.1 dev eth0"),
        "linkInContainer pod route {:?}",
        r.get(l, "pod_route")
    );

    // Dual stack: one gateway port holding both gateways; IPv6 pod <-> host and pod <-> pod.
    let d = "dual";
    expect(&r, &out, d, "gw_ports", "1");
    expect(&r, &out, d, "gw_addrs", "10.10.0.1/24 fd00:10::1/64");
    assert!(
        r.get(d, "pod_route6")
            .starts_with("default via fd00:10::1 dev eth0"),
        "IPv6 pod route {:?}",
        r.get(d, "pod_route6")
    );
    assert!(
        r.get(d, "host_route6").contains(" dev gw_"),
        "IPv6 host route {:?}",
        r.get(d, "host_route6")
    );
    for key in ["a_to_gw6", "host_to_a6", "a_to_b6", "a_to_gw4"] {
        expect(&r, &out, d, key, "yes");
    }
    expect(&r, &out, d, "check", "ok");
    expect(&r, &out, d, "allocations_end", "0");
    expect(&r, &out, d, "stray_links", "");
}

/// ADD and DEL latency of whole chains as cnitool sees them, interleaved in one VM:
/// the reference `ipvlan` + `host-local`, ours (`tombstone-ipvlan` + `tombstone-ipam`), and
/// ours with `tombstone` chained; then the user-space instructions of every process of the
/// reference chain and of our whole chain (callgrind, `iv_callgrind`). Prints tables; the
/// targets are our whole chain's ADD+DEL at most 0.8x the reference's latency inside libcni
/// and at most a third of its instructions (figures, never asserted).
#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_ipvlan_benchmark_beside_reference_chain() {
    let lab = lab("vm_root_ipvlan_benchmark_beside_reference_chain");
    let runs: u32 = std::env::var("IPVLAN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let (r, out) = run(
        &lab,
        &format!(
            "( iv_bench {runs} ) || echo \"FAIL bench exited $?\"\niv_exec_cost {runs}\n\
             ( iv_callgrind ) || echo \"FAIL bench iv_callgrind exited $?\""
        ),
    );
    assert!(
        r.failures.is_empty(),
        "failed steps {:?}:\n{out}",
        r.failures
    );
    let ms = |net: &str, op: &str, stat: &str| -> f64 {
        r.number("bench", &format!("{net}_{op}_{stat}_us"))
            .unwrap_or_else(|| panic!("no {net} {op} {stat}:\n{out}")) as f64
            / 1000.0
    };
    let mut table = String::from(
        "| chain (through cnitool, TCG VM) | ADD median | ADD mean | DEL median | DEL mean | ADD ratio to reference (median) | DEL ratio (median) |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (net, label) in [
        ("reference", "ipvlan + host-local (reference)"),
        ("ours", "tombstone-ipvlan + tombstone-ipam"),
        ("ourchain", "tombstone-ipvlan + tombstone-ipam + tombstone"),
    ] {
        table.push_str(&format!(
            "| {label} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} | {:.2} |\n",
            ms(net, "add", "median"),
            ms(net, "add", "mean"),
            ms(net, "del", "median"),
            ms(net, "del", "mean"),
            ms(net, "add", "median") / ms("reference", "add", "median"),
            ms(net, "del", "median") / ms("reference", "del", "median"),
        ));
    }
    // The same runs as libcni sees them: the time inside AddNetworkList / DelNetworkList,
    // without the client's own process start (the same in every chain).
    let mut lib = String::from(
        "| chain (time inside libcni, TCG VM) | ADD median | DEL median | ADD+DEL median | ADD ratio to reference | DEL ratio | ADD+DEL ratio |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (net, label) in [
        ("reference", "ipvlan + host-local (reference)"),
        ("ours", "tombstone-ipvlan + tombstone-ipam"),
        ("ourchain", "tombstone-ipvlan + tombstone-ipam + tombstone"),
    ] {
        lib.push_str(&format!(
            "| {label} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} | {:.2} | {:.2} |\n",
            ms(net, "addlib", "median"),
            ms(net, "dellib", "median"),
            ms(net, "podlib", "median"),
            ms(net, "addlib", "median") / ms("reference", "addlib", "median"),
            ms(net, "dellib", "median") / ms("reference", "dellib", "median"),
            ms(net, "podlib", "median") / ms("reference", "podlib", "median"),
        ));
    }
    // Every process of a chain under callgrind: one ADD and one DEL, after a warm-up.
    let instr = |net: &str, op: &str| -> u64 {
        r.number("bench", &format!("{net}_{op}_instr"))
            .unwrap_or_else(|| panic!("no {net} {op} instruction count:\n{out}")) as u64
    };
    let procs = |net: &str, op: &str| r.get("bench", &format!("{net}_{op}_procs"));
    let mut cg = String::from(
        "| chain (callgrind, every process, TCG VM) | ADD instructions | processes | DEL instructions | processes | ADD+DEL | ratio to reference |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (net, label) in [
        ("reference", "ipvlan + host-local (reference)"),
        ("ourchain", "tombstone-ipvlan + tombstone-ipam + tombstone"),
    ] {
        let pod = instr(net, "add") + instr(net, "del");
        let reference = instr("reference", "add") + instr("reference", "del");
        cg.push_str(&format!(
            "| {label} | {:.1} k | {} | {:.1} k | {} | {:.1} k | {:.3} |\n",
            instr(net, "add") as f64 / 1000.0,
            procs(net, "add"),
            instr(net, "del") as f64 / 1000.0,
            procs(net, "del"),
            pod as f64 / 1000.0,
            pod as f64 / reference as f64,
        ));
    }
    // The job's notes name each process's count: `add ourchain: tombstone-ipam.123 159412`.
    let per_process: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("# [bench] add ") || l.starts_with("# [bench] del "))
        .collect();
    assert!(!per_process.is_empty(), "no per-process count:\n{out}");
    println!(
        "{runs} runs of each chain, interleaved\n{table}\n{lib}\n{cg}\ncallgrind, per process:\n{}\n",
        per_process.join("\n")
    );
    let mut exec = String::from("| one process start (VERSION) | median |\n|---|---:|\n");
    for bin in [
        "ipvlan",
        "host-local",
        "tombstone-ipvlan",
        "tombstone-ipam",
        "tombstone",
    ] {
        let us = r
            .number("bench", &format!("exec_{bin}_median_us"))
            .unwrap_or(-1);
        exec.push_str(&format!("| {bin} | {:.1} ms |\n", us as f64 / 1000.0));
    }
    println!("{exec}");
    assert_eq!(r.get("bench", "stray_links"), "", "{out}");
    assert_eq!(r.get("bench", "allocations_end"), "0 0", "{out}");
    assert_eq!(r.get("bench", "cg_stray_links"), "", "{out}");
}

/// The lab; a missing prerequisite fails the test (see [`lab::for_test`]). The benchmark's
/// guest gets 2 GiB: valgrind runs the Go plugins there.
fn lab(test: &str) -> Lab {
    let memory_mib = if test.contains("benchmark") {
        2048
    } else {
        1024
    };
    lab::for_test(
        test,
        VmConfig {
            timeout: Duration::from_secs(1800),
            memory_mib,
            ..VmConfig::default()
        },
    )
}
