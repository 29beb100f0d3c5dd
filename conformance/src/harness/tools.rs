//! The programs a scenario drives inside the guest: `cnitool` (built here from the
//! distribution's libcni source, offline) and a CNI plugin directory holding the reference
//! plugins beside the workspace's own binaries.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Context, Error, Result};
use crate::harness::paths;
use crate::harness::vm::which;

/// Where Debian's `golang-github-appc-cni-dev` puts the libcni source (a GOPATH tree).
pub const GOCODE: &str = "/usr/share/gocode";
/// Where Debian's `containernetworking-plugins` puts the reference plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

const CNITOOL_SOURCE: &str = include_str!("../../cnitool/main.go");

/// Builds `cnitool` (once per source version) and returns its path.
pub fn cnitool() -> Result<PathBuf> {
    let go = which("go").ok_or_else(|| {
        Error::missing("go not found: install golang-go (conformance/vm/install-deps.sh)")
    })?;
    let libcni = Path::new(GOCODE).join("src/github.com/containernetworking/cni/libcni");
    if !libcni.is_dir() {
        return Err(Error::missing(format!(
            "libcni source not found at {}: install golang-github-appc-cni-dev \
             (conformance/vm/install-deps.sh)",
            libcni.display()
        )));
    }
    let dir = paths::cache_dir().join("cnitool");
    let bin = dir.join(format!("cnitool-{:016x}", fnv1a(CNITOOL_SOURCE.as_bytes())));
    if bin.is_file() {
        return Ok(bin);
    }
    // One build at a time (test threads, processes): flock on a file beside it.
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let lock_path = dir.join("build.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("lock {}", lock_path.display()))?;
    if bin.is_file() {
        return Ok(bin);
    }
    // A GOPATH of our own (for the build's package dir), then the distribution's source tree.
    let gopath = dir.join("gopath");
    let src = gopath.join("src/cnitool");
    fs::create_dir_all(&src).with_context(|| format!("create {}", src.display()))?;
    fs::write(src.join("main.go"), CNITOOL_SOURCE)
        .with_context(|| format!("write {}", src.join("main.go").display()))?;
    let tmp = paths::unique_tmp(&dir, "cnitool");
    let out = Command::new(go)
        .args(["build", "-o"])
        .arg(&tmp)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", format!("{}:{GOCODE}", gopath.display()))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0")
        .output()
        .context("run go build for cnitool")?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "go build of cnitool failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    fs::rename(&tmp, &bin).with_context(|| format!("rename to {}", bin.display()))?;
    Ok(bin)
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// A directory for `CNI_PATH` with links to the reference plugins and to `ours` (binary names
/// in the workspace's release dir). Ours win over a reference plugin of the same name.
pub fn plugin_dir(name: &str, ours: &[&str]) -> Result<PathBuf> {
    let reference = Path::new(REFERENCE_PLUGINS);
    for needed in ["ipvlan", "host-local"] {
        if !reference.join(needed).is_file() {
            return Err(Error::missing(format!(
                "reference plugin {needed} not found in {}: install containernetworking-plugins \
                 (conformance/vm/install-deps.sh)",
                reference.display()
            )));
        }
    }
    let dir = paths::cache_dir().join("cni-bin").join(name);
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let mut links: Vec<(PathBuf, std::ffi::OsString)> = Vec::new();
    let entries =
        fs::read_dir(reference).with_context(|| format!("read {}", reference.display()))?;
    for entry in entries.flatten() {
        if !ours.iter().any(|o| entry.file_name().to_str() == Some(o)) {
            links.push((entry.path(), entry.file_name()));
        }
    }
    for bin in ours {
        let path = paths::release_dir().join(bin);
        if !path.is_file() {
            return Err(Error::new(format!(
                "plugin binary {} not found: build it first (`make build`, i.e. \
                 cargo build --release --workspace --bins)",
                path.display()
            )));
        }
        links.push((path, bin.into()));
    }
    // Each link is made under a unique name and renamed into place: test threads may prepare
    // the same directory at once.
    for (target, name) in links {
        let tmp = paths::unique_tmp(&dir, "link");
        symlink(&target, &tmp)
            .with_context(|| format!("link {} into {}", target.display(), dir.display()))?;
        let link = dir.join(&name);
        fs::rename(&tmp, &link).with_context(|| format!("rename to {}", link.display()))?;
    }
    Ok(dir)
}
