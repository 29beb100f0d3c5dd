//! The podman test's instance: the kit's own podman ([`tombstone_testkit::podman`]: private
//! root, runroot, configuration and mount namespace) with the test's CNI network in its
//! `net.d/` and its plugins in its `bin/`. Dropping it (even when the test fails) removes the
//! containers, then the bridge and the tombstone routes of the subnet, then the rest as the
//! kit does.

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;

use cni_conformance::cri::node::TOMBSTONE_PROTOCOL;
pub use tombstone_testkit::podman::dir_of;
use tombstone_testkit::podman::{Podman as Private, RUN_LIMITS};
use tombstone_testkit::runtime;

/// What one instance is made of.
pub struct Setup<'a> {
    /// A short name: its directory's and cgroup parent's suffix.
    pub name: &'a str,
    /// The network's conflist (JSON text); its `name` is the network podman runs pods on.
    pub conflist: String,
    /// The bridge the conflist's main plugin creates (deleted on drop).
    pub bridge: &'a str,
    /// The pod subnet's prefix ("172.30.84."): routes of its addresses are ours to remove.
    pub subnet_prefix: &'a str,
    /// CNI plugins: (name in the bin dir, target). A target that is a script's text (it
    /// starts with `#!`) is written as an executable file, else it is linked.
    pub plugins: Vec<(String, String)>,
}

pub struct Podman {
    inner: Private,
    /// libcni's cached results, as the holder's mount namespace sees at `/var/lib/cni/results`.
    pub cni_cache: PathBuf,
    bridge: String,
    subnet_prefix: String,
}

impl Deref for Podman {
    type Target = Private;
    fn deref(&self) -> &Private {
        &self.inner
    }
}

/// Fails the test naming the package when a tool is missing.
pub fn require_tools() {
    tombstone_testkit::podman::require_tools(&[
        ("jq", "--version", "jq"),
        ("bash", "--version", "bash"),
        ("ip", "-V", "iproute2"),
    ]);
    for plugin in ["bridge", "loopback"] {
        let p = Path::new("/usr/lib/cni").join(plugin);
        assert!(
            p.is_file(),
            "{} not found: install containernetworking-plugins (make deps)",
            p.display()
        );
    }
}

impl Podman {
    /// The kit's podman, with the setup's plugins and conflist.
    pub fn start(setup: Setup) -> Podman {
        let inner = Private::start(setup.name);
        let dir = &inner.dir;
        runtime::install_plugins(&dir.join("bin"), &setup.plugins);
        fs::write(dir.join("net.d/10-podman-test.conflist"), &setup.conflist)
            .expect("write the conflist");
        Podman {
            cni_cache: dir.join("varlib/cni/results"),
            bridge: setup.bridge.to_string(),
            subnet_prefix: setup.subnet_prefix.to_string(),
            inner,
        }
    }

    /// Runs a detached pod `name` on `network` from a root filesystem of its own holding
    /// `pause` (`--rootfs`), with `extra` flags; its full container id.
    pub fn run(
        &self,
        name: &str,
        network: &str,
        pause: &Path,
        extra: &[&str],
    ) -> Result<String, String> {
        let rootfs = self.dir.join(format!("rootfs-{name}"));
        for d in ["dev", "proc", "sys", "etc", "tmp", "run"] {
            fs::create_dir_all(rootfs.join(d)).expect("create the rootfs");
        }
        fs::copy(pause, rootfs.join("pause")).expect("copy pause into the rootfs");
        let rootfs = rootfs.display().to_string();
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--cgroup-parent",
            &self.cgroup_parent,
        ];
        args.extend(RUN_LIMITS);
        args.extend(extra);
        args.extend(["--rootfs", &rootfs, "/pause"]);
        self.ok(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // The containers first: their DELs put tombstone routes in, removed below.
        self.inner.remove_containers();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        runtime::remove_typed_routes(TOMBSTONE_PROTOCOL, &self.subnet_prefix);
    }
}
