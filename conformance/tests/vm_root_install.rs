//! `tombstone-install` on a node, end to end in the VM (root, qemu, Debian's kernel: see
//! `conformance/README.md`): install, pods through the patched conflist with the libcni
//! client, install again (nothing changes), uninstall (everything back as it was).

use std::collections::BTreeMap;
use std::path::Path;

use cni_conformance::harness::lab::{self, Lab};
use cni_conformance::harness::vm::VmConfig;
use cni_conformance::harness::{paths, scenario};

const INSTALL_SH: &str = include_str!("../jobs/install.sh");
const REFERENCE: &str = "/usr/lib/cni";

#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_install_drive_pods_reinstall_and_uninstall() {
    let lab = lab("vm_root_install_drive_pods_reinstall_and_uninstall");
    let release = paths::release_dir();
    for bin in ["tombstone", "tombstone-ipam", "tombstone-install"] {
        assert!(
            release.join(bin).is_file(),
            "{bin} not built in {}",
            release.display()
        );
    }
    assert!(
        Path::new(REFERENCE).join("ipvlan").is_file(),
        "reference plugins missing"
    );
    let body = format!(
        "{INSTALL_SH}\nRELEASE='{}'\nREFERENCE='{REFERENCE}'\n( install_e2e ) || echo \"FAIL install exited $?\"\nnode_down\nexit 0\n",
        release.display()
    );
    let job = scenario::run_adhoc(&lab, &body).unwrap_or_else(|e| panic!("VM job: {e}"));
    let out = job.output;
    println!("{out}");
    assert_eq!(job.status, 0, "job exited {}:\n{out}", job.status);
    assert!(
        !out.lines().any(|l| l.starts_with("FAIL ")),
        "a step failed:\n{out}"
    );
    let results: BTreeMap<&str, &str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT install "))
        .filter_map(|l| l.split_once(' ').or(Some((l, ""))))
        .collect();
    let get = |k: &str| results.get(k).copied().unwrap_or("<missing>").trim();
    let expect = [
        ("install_rc", "0"),
        ("patched", "1"),
        ("other_untouched", "yes"),
        ("proto_name", "yes"),
        ("reach_a_from_b", "yes"),
        ("route_after_del", "unreachable"),
        ("listed_by_name", "1"),
        ("install_again_rc", "0"),
        ("install_again_same", "yes"),
        ("uninstall_rc", "0"),
        ("conf_restored", "yes"),
        ("bins_left", ""),
        ("proto_name_after", "yes"),
    ];
    for (key, want) in expect {
        assert_eq!(get(key), want, "{key}; job output:\n{out}");
    }
    let bins = get("binaries");
    assert!(
        bins.contains("tombstone ") && bins.contains("tombstone-ipam"),
        "{bins}"
    );
}

/// The lab; a missing prerequisite fails the test (see [`lab::for_test`]).
fn lab(test: &str) -> Lab {
    lab::for_test(test, VmConfig::default())
}
