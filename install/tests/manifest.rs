//! The DaemonSet manifest validates against the Kubernetes schemas, offline, with
//! `kubernetes-validate` (PyPI; `install/ci-deps.sh` puts it in `install/.venv`). The schema
//! test needs the tool, hence `#[ignore]`: `make test` includes it, and then a missing tool
//! fails it. What the installer relies on is checked without the tool, and so is the reading
//! of the manifest the image test runs the container by (`common::daemonset`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::daemonset::{self, added_capabilities, command, host_mounts, memory_limit, settings};

fn validator() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/kubernetes-validate");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("kubernetes-validate"))
                .find(|p| p.is_file())
        })
        .expect("kubernetes-validate is missing: run `bash install/ci-deps.sh` (or `make deps`)")
}

#[test]
fn daemonset_manifest_has_what_the_installer_relies_on() {
    let text = daemonset::text();
    // What the installer side relies on, whatever the schema allows.
    for needle in [
        "kind: DaemonSet",
        "kind: ConfigMap",
        "hostNetwork: true",
        "- /opt/tombstone/bin/tombstone-install\n            - agent\n            - --root\n            - /host\n",
        "- --plugin-state-dir\n            - $(STATE_DIR)\n",
        "- --hold-seconds\n            - $(HOLD_SECONDS)\n",
        "- --sweep-every\n            - $(SWEEP_EVERY)\n",
        "- --listen\n            - $(LISTEN)\n",
        "path: /healthz\n              port: 9465\n",
        "path: /readyz\n              port: 9465\n",
        "add: [\"NET_ADMIN\", \"CHOWN\", \"DAC_OVERRIDE\", \"FOWNER\"]",
        "mountPath: /run/cni\n",
        "mountPath: /host/opt/cni/bin",
        "mountPath: /host/etc/cni/net.d",
        "mountPath: /host/etc/iproute2",
        "mountPath: /host/var/lib/tombstone-install",
    ] {
        assert!(text.contains(needle), "the manifest lacks {needle:?}");
    }
    // One place for the settings: the ConfigMap, read by the agent.
    assert_eq!(
        text.matches("/run/cni/tombstone").count(),
        1,
        "the state directory is named more than once"
    );
    assert_eq!(
        text.matches("configMapRef:\n                name: tombstone-settings")
            .count(),
        1,
        "the agent reads the settings"
    );
    // The hold stays below tombstone-ipam's default reuseAfterSeconds (60).
    let hold: u64 = text
        .split("HOLD_SECONDS: \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("HOLD_SECONDS in the ConfigMap");
    let sweep: u64 = text
        .split("SWEEP_EVERY: \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("SWEEP_EVERY in the ConfigMap");
    assert!(hold + sweep < tombstone_cni::suite::DEFAULT_REUSE_AFTER_SECONDS);
}

#[test]
#[ignore = "needs kubernetes-validate: bash install/ci-deps.sh (make deps)"]
fn daemonset_manifest_matches_the_kubernetes_schemas() {
    let out = Command::new(validator())
        .args(["--strict", "--kubernetes-version", "1.37.0"])
        .arg(daemonset::path())
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("passed for resource daemonset/tombstone"),
        "{report}"
    );
    assert!(
        report.contains("passed for resource serviceaccount/tombstone"),
        "{report}"
    );
}

#[test]
fn the_manifest_reads_as_the_image_test_runs_it() {
    let text = daemonset::text();
    let s = settings(&text);
    assert!(
        s.iter()
            .any(|(k, v)| k == "STATE_DIR" && v == "/run/cni/tombstone"),
        "{s:?}"
    );
    let cmd = command(&text, &s);
    assert_eq!(
        cmd[..4],
        [
            "/opt/tombstone/bin/tombstone-install",
            "agent",
            "--root",
            "/host"
        ]
    );
    assert!(!cmd.iter().any(|a| a.contains("$(")), "{cmd:?}");
    let mounts = host_mounts(&text);
    assert!(
        mounts.contains(&("/etc/cni/net.d".into(), "/host/etc/cni/net.d".into())),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&("/run/cni".into(), "/run/cni".into())),
        "{mounts:?}"
    );
    assert_eq!(mounts.len(), 5, "{mounts:?}");
    assert!(added_capabilities(&text).contains(&"NET_ADMIN".to_string()));
    assert_eq!(memory_limit(&text), "64Mi");
    assert_eq!(daemonset::grace_period_seconds(&text), "10");
}
