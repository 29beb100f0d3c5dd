//! The DaemonSet manifest (`deploy/daemonset.yaml`) read for what a runtime needs to run its
//! container as the kubelet would: the ConfigMap's settings, the command line with `$(VAR)`
//! expanded from them, the host mounts, the added capabilities, the memory limit, the grace
//! period. Pure text
//! reading of the manifest's own layout (block style, one container), no YAML library.

use std::path::{Path, PathBuf};

pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/daemonset.yaml")
}

pub fn text() -> String {
    std::fs::read_to_string(path()).expect("read deploy/daemonset.yaml")
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').to_string()
}

/// The lines under the first `key:` line found after a line equal to `after` (trimmed),
/// more indented than it; comments and blank lines left out.
fn block<'a>(text: &'a str, after: &str, key: &str) -> Vec<&'a str> {
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim() != after)
        .skip_while(|l| l.trim() != format!("{key}:"));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no {key}: after {after} in the manifest"));
    let depth = indent(head);
    lines
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .take_while(|l| indent(l) > depth)
        .collect()
}

/// A block of `- name: X` items: each item's name and the value of its `field`
/// (found in the item's own lines, at any depth).
fn named(lines: &[&str], field: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut name = None;
    for l in lines {
        let t = l.trim_start();
        if let Some(n) = t.strip_prefix("- name:") {
            name = Some(unquote(n));
        } else if let Some(v) = t.strip_prefix(&format!("{field}:"))
            && let Some(n) = name.take()
        {
            out.push((n, unquote(v)));
        }
    }
    out
}

/// The ConfigMap's `data`, in its order.
pub fn settings(text: &str) -> Vec<(String, String)> {
    block(text, "kind: ConfigMap", "data")
        .iter()
        .map(|l| {
            let (k, v) = l
                .trim()
                .split_once(':')
                .expect("KEY: value in the ConfigMap");
            (k.to_string(), unquote(v))
        })
        .collect()
}

/// The container's command, each `$(VAR)` replaced by `settings`' VAR, as the kubelet does.
pub fn command(text: &str, settings: &[(String, String)]) -> Vec<String> {
    block(text, "kind: DaemonSet", "command")
        .iter()
        .map(|l| {
            let mut arg = unquote(l.trim().strip_prefix("- ").expect("- ARG"));
            for (k, v) in settings {
                arg = arg.replace(&format!("$({k})"), v);
            }
            arg
        })
        .collect()
}

/// Each host mount as (the host's path, the container's path).
pub fn host_mounts(text: &str) -> Vec<(String, String)> {
    let mounts = named(&block(text, "kind: DaemonSet", "volumeMounts"), "mountPath");
    let volumes = named(&block(text, "kind: DaemonSet", "volumes"), "path");
    mounts
        .into_iter()
        .map(|(name, mount)| {
            let host = volumes
                .iter()
                .find(|(v, _)| *v == name)
                .unwrap_or_else(|| panic!("volume {name} has no hostPath"))
                .1
                .clone();
            (host, mount)
        })
        .collect()
}

/// The capabilities the container adds (it drops all others).
pub fn added_capabilities(text: &str) -> Vec<String> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("add:"))
        .expect("capabilities: add: [...] in the manifest");
    serde_json::from_str(line.trim()).expect("add: a JSON-style list")
}

/// The pod's `terminationGracePeriodSeconds`: how long a stop waits before SIGKILL.
pub fn grace_period_seconds(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .map(unquote)
        .expect("terminationGracePeriodSeconds in the manifest")
}

/// The container's memory limit as the manifest says it (`64Mi`).
pub fn memory_limit(text: &str) -> String {
    block(text, "kind: DaemonSet", "limits")
        .iter()
        .find_map(|l| l.trim().strip_prefix("memory:"))
        .map(unquote)
        .expect("resources: limits: memory:")
}
