//! The CRI scenario inside the IPvlan VM: Debian's containerd 1.6 and runc in the guest,
//! driven by our CRI client (`cni-cri-scenario`, on the same `cri::scenario` steps as the
//! native `tests/cri_root.rs`, the fault steps included), on the reference `ipvlan` +
//! `host-local` + `tombstone` and on our three plugins; then RunPodSandbox/StopPodSandbox timings of both beside the bare
//! reference chain, from the same boot. **Needs root, the VM tools and containerd**
//! (`make deps`), hence `vm_root_`.

use std::time::Duration;

use cni_conformance::harness::lab;
use cni_conformance::harness::scenario::{self, Results};
use cni_conformance::harness::vm::VmConfig;

const CRI_SH: &str = include_str!("../jobs/cri.sh");

#[test]
#[ignore = "needs root, QEMU, a Debian kernel with IPvlan, busybox, containerd, runc, the reference plugins (make deps)"]
fn vm_root_cri_containerd_drives_both_ipvlan_chains() {
    let test = "vm_root_cri_containerd_drives_both_ipvlan_chains";
    let lab = lab::for_test(
        test,
        VmConfig {
            timeout: Duration::from_secs(1800),
            memory_mib: 2048,
            ..VmConfig::default()
        },
    );
    lab::build_our_plugins().expect("build the plugins");
    lab::own_binary("cni-pause").expect("cni-pause");
    let bin = lab::own_binary("cni-cri-scenario").expect("cni-cri-scenario");
    let rounds: u32 = std::env::var("CRI_VM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let body = format!(
        "{CRI_SH}\nCRI_SCENARIO='{}'\nCRI_ROUNDS={rounds}\n( cri_run ) || echo \"FAIL cri cri_run exited $?\"\nexit 0\n",
        bin.display()
    );
    let job = scenario::run_adhoc(&lab, &body).unwrap_or_else(|e| panic!("VM job: {e}"));
    let out = &job.output;
    println!("{out}\n(boot + job {:.0} s)", job.elapsed.as_secs_f64());
    assert_eq!(job.status, 0, "job exited {}:\n{out}", job.status);
    let r = Results::parse(out);
    assert!(
        r.failures.is_empty(),
        "failed steps {:?}:\n{out}",
        r.failures
    );
    for chain in ["reference", "ours"] {
        for step in ["reuse", "netns_gone", "retried_stop"] {
            assert_eq!(r.get(chain, step), "ok", "{chain} {step}:\n{out}");
        }
        assert_eq!(r.get(chain, "tombstones_made"), "2", "{chain}:\n{out}");
        assert_eq!(r.get(chain, "leaks"), "none", "{chain}:\n{out}");
        let ips: Vec<&str> = r.get(chain, "a_b_c").split(' ').collect();
        assert_eq!(ips.len(), 3, "{chain}:\n{out}");
        assert_eq!(ips[0], ips[2], "{chain}: c got a's address:\n{out}");
    }
    for chain in ["baseline", "reference", "ours"] {
        for call in ["run", "stop"] {
            let key = format!("{chain}_{call}_ms");
            let ms: f64 = r
                .get("timing", &key)
                .parse()
                .unwrap_or_else(|_| panic!("no {key}:\n{out}"));
            assert!(ms > 0.0, "{key}: {ms}");
        }
    }
    assert_eq!(r.get("timing", "leaks"), "none", "{out}");
    assert_eq!(r.get("cri", "stray_links"), "", "{out}");
}
