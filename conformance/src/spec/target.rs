//! A conformance target: one plugin binary, the network config it runs with, and its kind
//! (main, IPAM or chained), read from a small JSON file.
//!
//! ```json
//! { "name": "macvlan", "kind": "main", "binary": "${REFERENCE}/macvlan",
//!   "cniPath": ["${REFERENCE}"], "setup": [["ip", "link", "add", "cnic0", "type", "dummy"]],
//!   "config": { "cniVersion": "1.0.0", "name": "cnic", "type": "macvlan", ... },
//!   "prevResult": { ... }, "uniqueAddresses": true, "requires": ["ipvlan"],
//!   "env": { "SOME_LOG": "stderr" } }
//! ```
//! Strings may use `${WORKSPACE}`, `${RELEASE}` (the workspace's release binaries) and
//! `${REFERENCE}` (the reference plugins: `CNI_REFERENCE_DIR`, else the first of
//! `/usr/lib/cni` and `/opt/cni/bin` that holds the named binary). In `config` and
//! `prevResult`, `${STATE}` is a scratch directory of the check (removed after it), and in
//! `prevResult`, `${NETNS}`, `${IFNAME}` and `${CONTAINERID}` are the attachment's.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Context, Error, Result};
use crate::harness::paths;

/// Directories searched for the reference plugins after `CNI_REFERENCE_DIR`.
pub const REFERENCE_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Creates the interface in the container (the first plugin of a list).
    Main,
    /// A delegated IP address management plugin: abbreviated results, no interfaces.
    Ipam,
    /// Runs after a main plugin and receives its result as `prevResult`.
    Chained,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind> {
        match s {
            "main" => Ok(Kind::Main),
            "ipam" => Ok(Kind::Ipam),
            "chained" => Ok(Kind::Chained),
            other => Err(Error::new(format!(
                "kind {other:?}: expected main, ipam or chained"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Main => "main",
            Kind::Ipam => "ipam",
            Kind::Chained => "chained",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    pub binary: PathBuf,
    /// `CNI_PATH` given to the plugin (where it finds delegated plugins).
    pub cni_path: Vec<PathBuf>,
    /// Commands run in the check's host network namespace before the plugin (e.g. a master).
    pub setup: Vec<Vec<String>>,
    /// The plugin configuration as the runtime derives it (cniVersion, name, type, ...).
    pub config: Value,
    /// Chained targets: the result of the plugins before this one.
    pub prev_result: Option<Value>,
    /// Concurrent ADDs must hand out distinct addresses (false for e.g. `static`).
    pub unique_addresses: bool,
    /// Link kinds the kernel must support (e.g. `ipvlan`): checks are not applicable without.
    pub requires: Vec<String>,
    /// Extra environment for the plugin (e.g. a log switch), beside `PATH` and `CNI_*`.
    pub env: Vec<(String, String)>,
    /// Where the target file was (relative paths resolve against it).
    pub source: Option<PathBuf>,
}

impl Target {
    pub fn load(path: &Path) -> Result<Target> {
        let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("parse target file {}", path.display()))?;
        let mut t = Target::from_json(&v, path.parent())
            .map_err(|e| Error::new(format!("target file {}: {e}", path.display())))?;
        t.source = Some(path.to_path_buf());
        Ok(t)
    }

    /// Builds a target from its JSON description; relative paths resolve against `base`.
    pub fn from_json(v: &Value, base: Option<&Path>) -> Result<Target> {
        let field = |k: &str| v.get(k).and_then(Value::as_str);
        let kind = Kind::parse(field("kind").ok_or_else(|| Error::new("missing \"kind\""))?)?;
        let binary = resolve_path(
            field("binary").ok_or_else(|| Error::new("missing \"binary\""))?,
            base,
        )?;
        let config = v
            .get("config")
            .filter(|c| c.is_object())
            .cloned()
            .ok_or_else(|| Error::new("missing \"config\" object"))?;
        let name = field("name")
            .map(str::to_string)
            .or_else(|| binary.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "target".into());
        let cni_path = match v.get("cniPath") {
            Some(Value::Array(dirs)) => dirs
                .iter()
                .filter_map(Value::as_str)
                .map(|d| resolve_path(d, base))
                .collect::<Result<Vec<_>>>()?,
            _ => binary.parent().map(Path::to_path_buf).into_iter().collect(),
        };
        let setup = match v.get("setup") {
            Some(Value::Array(cmds)) => cmds
                .iter()
                .map(|c| {
                    c.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .ok_or_else(|| Error::new("\"setup\" holds lists of words"))
                })
                .collect::<Result<Vec<Vec<String>>>>()?,
            _ => Vec::new(),
        };
        let prev_result = v.get("prevResult").filter(|p| p.is_object()).cloned();
        if kind == Kind::Chained && prev_result.is_none() {
            return Err(Error::new(
                "a chained target needs a \"prevResult\" fixture",
            ));
        }
        Ok(Target {
            name,
            kind,
            binary,
            cni_path,
            setup,
            config,
            prev_result,
            unique_addresses: v
                .get("uniqueAddresses")
                .and_then(Value::as_bool)
                .unwrap_or(kind != Kind::Chained),
            requires: v
                .get("requires")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            env: v
                .get("env")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, x)| x.as_str().map(|x| (k.clone(), x.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            source: None,
        })
    }

    /// The `cniVersion` of the target's config (what checks use unless they pick another).
    pub fn config_version(&self) -> String {
        self.config
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("1.0.0")
            .to_string()
    }
}

/// The directory holding the reference plugins, preferring one that has `plugin`.
pub fn reference_dir(plugin: Option<&str>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("CNI_REFERENCE_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    dirs.extend(REFERENCE_DIRS.iter().map(PathBuf::from));
    match plugin {
        Some(p) => dirs.into_iter().find(|d| d.join(p).is_file()),
        None => dirs.into_iter().find(|d| d.is_dir()),
    }
}

/// Expands `${WORKSPACE}`, `${RELEASE}` and `${REFERENCE}`; a relative result is taken
/// relative to `base`.
pub fn resolve_path(s: &str, base: Option<&Path>) -> Result<PathBuf> {
    let mut out = s.replace("${WORKSPACE}", &paths::workspace_root().to_string_lossy());
    out = out.replace("${RELEASE}", &paths::release_dir().to_string_lossy());
    if out.contains("${REFERENCE}") {
        let rest = out
            .split("${REFERENCE}")
            .nth(1)
            .unwrap_or("")
            .trim_start_matches('/');
        let plugin = (!rest.is_empty()).then_some(rest);
        let dir = reference_dir(plugin)
            .or_else(|| reference_dir(None))
            .ok_or_else(|| {
                Error::missing(
                    "no reference CNI plugins found (set CNI_REFERENCE_DIR, or install \
                     containernetworking-plugins: make deps)",
                )
            })?;
        out = out.replace("${REFERENCE}", &dir.to_string_lossy());
    }
    let p = PathBuf::from(out);
    Ok(match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    })
}

/// Replaces `${KEY}` in every string of `v` (keys untouched).
pub fn substitute(v: &Value, vars: &[(&str, &str)]) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (k, val) in vars {
                s = s.replace(&format!("${{{k}}}"), val);
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute(x, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}
