//! The lab: a prepared VM plus the tools a scenario job needs (cnitool, plugin directories),
//! and the check of every prerequisite with a message that says how to get it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Context, Error, Result};
use crate::harness::paths;
use crate::harness::tools;
use crate::harness::vm::{Vm, VmConfig};

/// The workspace binaries a "with tombstone" run puts on `CNI_PATH`.
pub const OUR_PLUGINS: &[&str] = &["tombstone"];
/// Our three plugins, for a run on `tombstone-ipvlan` + `tombstone-ipam` + `tombstone`.
pub const ALL_OUR_PLUGINS: &[&str] = &["tombstone", "tombstone-ipvlan", "tombstone-ipam"];
/// The Service scenario's traffic program (this crate's `cni-svc-probe`).
pub const SVC_PROBE: &str = "cni-svc-probe";

/// A VM ready to boot and a libcni client built for it.
pub struct Lab {
    pub vm: Vm,
    pub cnitool: PathBuf,
}

impl Lab {
    /// Checks root, finds qemu and the kernel, builds the initramfs and cnitool.
    pub fn prepare(config: VmConfig) -> Result<Lab> {
        if !is_root() {
            return Err(Error::missing(
                "the VM scenarios need root (9p export of / and CNI state inside the guest)",
            ));
        }
        let vm = Vm::prepare(config)?;
        let cnitool = tools::cnitool()?;
        Ok(Lab { vm, cnitool })
    }

    /// A `CNI_PATH` directory with the reference plugins and, when `with_ours`, the workspace's
    /// plugin binaries (rebuilt first when run under cargo, so they are not stale).
    pub fn plugin_dir(&self, with_ours: bool) -> Result<PathBuf> {
        if with_ours {
            build_our_plugins()?;
            tools::plugin_dir("with-ours", OUR_PLUGINS)
        } else {
            tools::plugin_dir("reference", &[])
        }
    }

    /// A `CNI_PATH` directory with the reference plugins and our three.
    pub fn all_plugins_dir(&self) -> Result<PathBuf> {
        build_our_plugins()?;
        tools::plugin_dir("ipvlan", ALL_OUR_PLUGINS)
    }

    /// The Service scenario's traffic program, rebuilt first when run under cargo.
    pub fn svc_probe(&self) -> Result<PathBuf> {
        own_binary(SVC_PROBE)
    }
}

/// This crate's binary `name` (`cni-svc-probe`, `cni-cri-scenario`, `cni-pause`), rebuilt first
/// when run under cargo.
pub fn own_binary(name: &str) -> Result<PathBuf> {
    if let Some(cargo) = std::env::var_os("CARGO") {
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "cni-conformance",
                "--bin",
                name,
            ])
            .current_dir(paths::workspace_root())
            .output()
            .with_context(|| format!("run cargo build for {name}"))?;
        if !out.status.success() {
            return Err(Error::new(format!(
                "cargo build --release -p cni-conformance --bin {name} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    let path = paths::release_dir().join(name);
    if !path.is_file() {
        return Err(Error::new(format!(
            "{} not found: build it first (`cargo build --release -p cni-conformance`)",
            path.display()
        )));
    }
    Ok(path)
}

pub fn is_root() -> bool {
    Path::new("/proc/self")
        .metadata()
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The lab for a VM test. Such tests are `#[ignore = "needs root and the VM: ..."]`: plain
/// `cargo test` lists them as ignored, `make test` includes them, and then a missing
/// prerequisite fails the test with what is missing and how to install it. There is no skip.
pub fn for_test(test: &str, config: VmConfig) -> Lab {
    match Lab::prepare(config) {
        Ok(lab) => lab,
        Err(e) if e.is_missing_prerequisite() => panic!(
            "{test}: VM prerequisite missing: {e} (run as root; `make deps` or \
             `bash conformance/vm/install-deps.sh` installs the packages)"
        ),
        Err(e) => panic!("{test}: preparing the VM failed: {e}"),
    }
}

/// For a test that needs root (network namespaces) but no VM; such tests are
/// `#[ignore = "needs root: ..."]`. Run without root (plain `cargo test --include-ignored` as
/// a normal user) it fails, naming the prerequisite; it never passes without running.
pub fn require_root(test: &str) {
    assert!(
        is_root(),
        "{test}: needs root (it creates network namespaces with `ip netns`): run `make test` \
         (or `cargo test -- --include-ignored`) as root"
    );
}

/// When run by cargo (`cargo test`, `cargo run`), brings the workspace's plugin binaries
/// (`tombstone`, `tombstone-ipvlan`, `tombstone-ipam`) up to date with `cargo build
/// --release`; otherwise uses what `make build` left.
pub fn build_our_plugins() -> Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "tombstone",
        "-p",
        "tombstone-ipam",
    ])
    .current_dir(paths::workspace_root());
    let out = cmd
        .output()
        .context("run cargo build for the plugin binaries")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let all_built = OUR_PLUGINS
            .iter()
            .all(|b| paths::release_dir().join(b).is_file());
        if !all_built {
            return Err(Error::new(format!(
                "cargo build --release -p tombstone -p tombstone-ipam failed:\n{stderr}"
            )));
        }
        // A work tree in the middle of an edit: the last good build still tells something.
        eprintln!(
            "cni-conformance: WARNING: cargo build of the plugins failed; using the \
             binaries already in {}:\n{stderr}",
            paths::release_dir().display()
        );
    }
    Ok(())
}
