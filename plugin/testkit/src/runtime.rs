//! What the tests of a container runtime of their own (podman, containerd) share: the check
//! that its tools are installed, the processes it leaves (the runtime's monitors and their
//! children), the cgroups under its parent and the routes its pods' DELs put in, for the leak
//! checks and the clean-up.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Fails the test naming the Debian package when one of `tools` (tool, its version flag, its
/// package) is missing.
pub fn require_tools(tools: &[(&str, &str, &str)]) {
    for &(tool, version, package) in tools {
        let found = Command::new(tool)
            .arg(version)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool} {version}` failed: install {package} (conformance/vm/install-deps.sh, \
             run by `make deps`)"
        );
    }
}

/// The live processes whose command line (NUL-separated, as in `/proc/PID/cmdline`) `is_root`
/// accepts, then their children; zombies are not counted.
pub fn processes(is_root: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let mut roots = Vec::new();
    let mut parents = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        if fields.next() == Some("Z") {
            continue;
        }
        if is_root(&fs::read(entry.path().join("cmdline")).unwrap_or_default()) {
            roots.push(pid);
        }
        if let Some(ppid) = fields.next().and_then(|p| p.parse::<u32>().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut all = roots.clone();
    all.extend(
        parents
            .iter()
            .filter(|(_, pp)| roots.contains(pp))
            .map(|(p, _)| *p),
    );
    all
}

/// Cgroup directories under `parent` (a path below the cgroup root), in every hierarchy,
/// deepest first.
pub fn cgroups(parent: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for h in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        walk_dirs(&h.path().join(parent.trim_start_matches('/')), &mut found);
    }
    found
}

/// `dir` and every directory under it, deepest first.
fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_dirs(&e.path(), out);
        }
    }
    out.push(dir.to_path_buf());
}

/// SIGKILLs what `processes` lists, up to three rounds 200 ms apart, until it lists nothing.
pub fn kill_until_gone(processes: impl Fn() -> Vec<u32>) {
    for _ in 0..3 {
        let pids = processes();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The routes of the main table of `protocol` whose destination (the second field: routes of a
/// type, `unreachable 172.30.81.10 ...`) starts with `prefix`, as `ip -o route` prints them.
pub fn typed_routes(protocol: u8, prefix: &str) -> Result<Vec<String>, String> {
    let out = Command::new("ip")
        .args(["-o", "route", "show", "table", "main", "proto"])
        .arg(protocol.to_string())
        .output()
        .map_err(|e| format!("spawn ip route: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip route show: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|d| d.starts_with(prefix))
        })
        .map(str::to_string)
        .collect())
}

/// Deletes what [`typed_routes`] lists (a clean-up's best effort, as in a `Drop`: what cannot
/// be listed or deleted is left).
pub fn remove_typed_routes(protocol: u8, prefix: &str) {
    for line in typed_routes(protocol, prefix).unwrap_or_default() {
        let _ = Command::new("ip")
            .args(["route", "del"])
            .args(line.split_whitespace())
            .output();
    }
}

/// Fills a runtime's CNI `bin` directory: each `(name, target)` is a symlink to the binary
/// `target`, or, when `target` starts with `#!`, a script of that text.
pub fn install_plugins(bin: &Path, plugins: &[(String, String)]) {
    for (name, target) in plugins {
        let path = bin.join(name);
        if target.starts_with("#!") {
            fs::write(&path, target).expect("write a plugin script");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .expect("chmod a plugin script");
        } else {
            std::os::unix::fs::symlink(target, &path).expect("link a plugin");
        }
    }
}
