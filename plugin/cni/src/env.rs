//! The CNI environment: `CNI_COMMAND` and the variables each verb requires, validated before
//! any of them names a file or reaches the kernel.

use std::path::PathBuf;

use crate::error::{CniError, Result};

/// The verbs of CNI spec 1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::env(format!("unknown CNI_COMMAND {other:?}"))
                    .with_details("expected one of ADD, DEL, CHECK, GC, STATUS, VERSION"));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// Whether the verb acts on one attachment (container ID + interface).
    pub fn is_attachment_verb(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// One attachment: a container's interface on a network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// The validated environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// Set for ADD, DEL and CHECK.
    pub attachment: Option<Attachment>,
    /// Required for ADD and CHECK; optional for DEL (the netns may be gone).
    pub netns: Option<PathBuf>,
    /// `CNI_ARGS`, split into pairs.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Result<Env> {
        Env::from_lookup(|k| std::env::var(k).ok())
    }

    /// Parses an environment given as a lookup function, applying the spec's per-verb rules
    /// (as libcni's skeleton enforces them: CNI_PATH for ADD, DEL, CHECK and GC).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let command = Command::parse(
            &get("CNI_COMMAND").ok_or_else(|| CniError::env("CNI_COMMAND is not set"))?,
        )?;
        let require = |k: &str| {
            get(k).ok_or_else(|| CniError::env(format!("{k} is required for {}", command.as_str())))
        };
        let mut env = Env {
            command,
            attachment: None,
            netns: None,
            args: vec![],
            path: vec![],
        };
        if command.is_attachment_verb() {
            let container_id = require("CNI_CONTAINERID")?;
            validate_container_id(&container_id)?;
            let ifname = require("CNI_IFNAME")?;
            validate_ifname(&ifname)?;
            env.attachment = Some(Attachment {
                container_id,
                ifname,
            });
            env.netns = match command {
                Command::Del => get("CNI_NETNS"),
                _ => Some(require("CNI_NETNS")?),
            }
            .map(PathBuf::from);
        }
        if matches!(
            command,
            Command::Add | Command::Del | Command::Check | Command::Gc
        ) {
            let path = require("CNI_PATH")?;
            env.path = split_path(&path);
        } else if let Some(path) = get("CNI_PATH") {
            env.path = split_path(&path);
        }
        if let Some(args) = get("CNI_ARGS") {
            env.args = parse_args(&args)?;
        }
        Ok(env)
    }

    /// The value of a `CNI_ARGS` key.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn split_path(s: &str) -> Vec<PathBuf> {
    s.split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// `K=V;K=V` as libcni writes it. An empty string yields no pairs.
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::env(format!("CNI_ARGS: invalid pair {pair:?}"))
                .with_details("expected KEY=VALUE pairs separated by ';'")),
        })
        .collect()
}

/// libcni's rule: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (upper case allowed).
pub fn validate_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::env(format!("invalid CNI_CONTAINERID {id:?}"))
            .with_details("must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"))
    }
}

/// Linux's rule for interface names: 1..=15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = |why: &str| Err(CniError::env(format!("invalid CNI_IFNAME {name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 15 {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("reserved name");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return bad("contains '/', ':', whitespace or a control character");
    }
    Ok(())
}

/// libcni's rule for network names (the same pattern as container IDs).
pub fn validate_network_name(name: &str) -> Result<()> {
    validate_container_id(name)
        .map_err(|_| CniError::config(format!("invalid network name {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "Abc-1.2_x"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ("CNI_ARGS", "IP=10.1.0.5;K8S_POD_NAME=a"),
    ];

    #[test]
    fn add_env_parses() {
        let e = env(ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.attachment.as_ref().unwrap().container_id, "Abc-1.2_x");
        assert_eq!(e.path.len(), 2);
        assert_eq!(e.arg("IP"), Some("10.1.0.5"));
        assert_eq!(e.arg("nope"), None);
    }

    #[test]
    fn each_required_variable_is_code_4() {
        for missing in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_PATH",
        ] {
            let pairs: Vec<_> = ADD.iter().copied().filter(|(k, _)| *k != missing).collect();
            let err = env(&pairs).unwrap_err();
            assert_eq!(err.code, 4, "{missing}");
            assert!(err.msg.contains(missing), "{}", err.msg);
        }
    }

    #[test]
    fn del_tolerates_missing_netns_and_status_needs_only_the_command() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ])
        .unwrap();
        assert_eq!(e.netns, None);
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap_err().code, 4);
        assert!(env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")]).is_ok());
    }

    #[test]
    fn unknown_verb_is_code_4() {
        assert_eq!(env(&[("CNI_COMMAND", "add")]).unwrap_err().code, 4);
        assert_eq!(env(&[("CNI_COMMAND", "FROB")]).unwrap_err().code, 4);
    }

    #[test]
    fn container_ids() {
        for ok in ["a", "A", "0abc", "Pod_1.2-3", &"x".repeat(200)] {
            assert!(validate_container_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "_a", "a/b", "a b", "../x", "a\n", "é"] {
            assert_eq!(validate_container_id(bad).unwrap_err().code, 4, "{bad:?}");
        }
    }

    #[test]
    fn ifnames() {
        for ok in ["eth0", "a", "net1.100", "123456789012345"] {
            assert!(validate_ifname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "1234567890123456",
        ] {
            assert_eq!(validate_ifname(bad).unwrap_err().code, 4, "{bad:?}");
        }
    }

    #[test]
    fn cni_args() {
        assert_eq!(parse_args("").unwrap(), vec![]);
        assert_eq!(parse_args("A=1;B=").unwrap().len(), 2);
        assert_eq!(parse_args("A=1;;B=2").unwrap().len(), 2);
        assert_eq!(parse_args("A").unwrap_err().code, 4);
        assert_eq!(parse_args("=1").unwrap_err().code, 4);
    }
}
