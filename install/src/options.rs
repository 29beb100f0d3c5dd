//! The command line, parsed and validated before anything is read or written.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tombstone_cni::suite::MAX_HOLD_SECONDS;

use crate::error::{InstallError, Result};

pub const USAGE: &str = "\
usage: tombstone-install --root DIR [OPTIONS]
       tombstone-install --check [--root DIR] [--conf-dir DIR] [--network NAME] [--json]

Installs the tombstone CNI plugins on a node: copies the binaries into the CNI bin
directory, adds the `tombstone` plugin right after the main plugin of IPvlan-based networks
(or of the networks named), registers the route protocol name `tombstone`, and with
--systemd sets up the periodic sweep. Every step is idempotent; --uninstall undoes them.

options:
  --root DIR            the node's root directory, required: `--root /` for this host,
                        `--root /host` for a DaemonSet's host mount; every path below is
                        resolved under it as a chroot would (links never lead out of it)
  --from DIR            where the binaries to install are [default: this program's directory]
  --bin-dir DIR         the CNI bin directory [default: /opt/cni/bin]
  --conf-dir DIR        the CNI configuration directory [default: /etc/cni/net.d]
  --network NAME        edit only this network (repeatable) [default: every network whose
                        main plugin is `ipvlan` or `tombstone-ipvlan`]
  --hold-seconds N      the plugin's holdSeconds (1..86400) [default for a new entry: 30,
                        below tombstone-ipam's default reuseAfterSeconds of 60]
  --route-type TYPE     the plugin's routeType: unreachable, blackhole or prohibit
  --table ID            a table to tombstone in, a number or `main` (repeatable)
  --no-flush-neighbors  the plugin's flushNeighbors: false
  --plugin-state-dir D  the plugin's stateDir (absolute); the sweep must sweep the same one
  --external-sweeper    the plugin's sweeper: false (a timer or a DaemonSet sweeps)
  --skip-binaries       leave the bin directory alone
  --systemd             also write the tombstone-sweep service and timer
  --dry-run             print what would change (unified diffs), write nothing
  --uninstall           remove the entries, binaries, protocol name and units
  --check               change nothing: check the node (each network the runtime loads,
                        the tombstone entry, versions, state directory, live tombstones,
                        sweeper, policy rules, gateway port) [--root default: /]
  --json                with --check: the report as JSON
  -h, --help            this text
  -V, --version         the installer's version

exit status: 0 done, 1 error, 2 bad command line, 3 done but some network not ready (each
said on a `not ready` line: left as it was, the others were installed); with --check: 0 no
problem found, 1 a problem found (or a check that could not run), 2 bad command line";

/// `holdSeconds` of a new entry when `--hold-seconds` is not given: below `tombstone-ipam`'s
/// default `reuseAfterSeconds`, so the tombstone has ended (even one sweep period late) before
/// the IPAM may hand the address out again. The plugin's own default equals the IPAM's.
pub const NEW_ENTRY_HOLD_SECONDS: u64 = 30;
const _: () =
    assert!(NEW_ENTRY_HOLD_SECONDS + 10 < tombstone_cni::suite::DEFAULT_REUSE_AFTER_SECONDS);

/// Paths on the node: every one is absolute and is joined under `root` before use.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub root: PathBuf,
    pub from: Option<PathBuf>,
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub networks: Vec<String>,
    /// The plugin options to write into the entry (config keys, in the order given).
    pub plugin: Map<String, Value>,
    pub skip_binaries: bool,
    pub systemd: bool,
    pub dry_run: bool,
    pub uninstall: bool,
    /// `--check`, and its `--json`.
    pub check: bool,
    pub json: bool,
}

impl Options {
    /// The keys of a new entry: the options given, and the installer's default hold.
    pub fn new_entry(&self) -> Map<String, Value> {
        let mut m = self.plugin.clone();
        m.entry("holdSeconds")
            .or_insert_with(|| NEW_ENTRY_HOLD_SECONDS.into());
        m
    }
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

/// Every error is a [`Kind::Usage`](crate::error::Kind::Usage) one.
pub fn parse(args: &[String]) -> Result<Parsed> {
    let mut o = Options {
        root: "/".into(),
        from: None,
        bin_dir: "/opt/cni/bin".into(),
        conf_dir: "/etc/cni/net.d".into(),
        networks: Vec::new(),
        plugin: Map::new(),
        skip_binaries: false,
        systemd: false,
        dry_run: false,
        uninstall: false,
        check: false,
        json: false,
    };
    if args.is_empty() {
        return Err(InstallError::usage("no arguments: nothing was done"));
    }
    let mut root_given = false;
    let mut tables = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| InstallError::usage(format!("{flag} needs {what}"))),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--root" => {
                o.root = value("a directory")?.into();
                root_given = true;
            }
            "--from" => o.from = Some(value("a directory")?.into()),
            "--bin-dir" => o.bin_dir = value("a directory")?.into(),
            "--conf-dir" => o.conf_dir = value("a directory")?.into(),
            "--network" => {
                let n = value("a network name")?;
                if n.is_empty() {
                    return Err(InstallError::usage("--network needs a non-empty name"));
                }
                o.networks.push(n);
            }
            "--hold-seconds" => {
                let v = value("a number of seconds")?;
                let n: u64 = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_HOLD_SECONDS).contains(n))
                    .ok_or_else(|| {
                        InstallError::usage(format!(
                            "--hold-seconds must be 1 to {MAX_HOLD_SECONDS}, not {v:?}"
                        ))
                    })?;
                o.plugin.insert("holdSeconds".into(), n.into());
            }
            "--route-type" => {
                let v = value("a route type")?;
                if !["unreachable", "blackhole", "prohibit"].contains(&v.as_str()) {
                    return Err(InstallError::usage(format!(
                        "--route-type must be unreachable, blackhole or prohibit, not {v:?}"
                    )));
                }
                o.plugin.insert("routeType".into(), v.into());
            }
            "--table" => {
                let v = value("a table")?;
                let t = match v.as_str() {
                    "main" => Value::from("main"),
                    s => match s.parse::<u32>() {
                        Ok(n) if !matches!(n, 0 | 253 | 255) => Value::from(n),
                        _ => {
                            return Err(InstallError::usage(format!(
                                "--table must be `main` or a table number other than 0, 253, 255, not {v:?}"
                            )));
                        }
                    },
                };
                if !tables.contains(&t) {
                    tables.push(t);
                }
                o.plugin
                    .insert("tables".into(), Value::Array(tables.clone()));
            }
            "--no-flush-neighbors" => {
                o.plugin.insert("flushNeighbors".into(), false.into());
            }
            "--plugin-state-dir" => {
                let v = value("a directory")?;
                if !Path::new(&v).is_absolute() {
                    return Err(InstallError::usage(format!(
                        "--plugin-state-dir must be absolute, not {v:?}"
                    )));
                }
                o.plugin.insert("stateDir".into(), v.into());
            }
            "--external-sweeper" => {
                o.plugin.insert("sweeper".into(), false.into());
            }
            "--skip-binaries" => o.skip_binaries = true,
            "--systemd" => o.systemd = true,
            "--dry-run" => o.dry_run = true,
            "--uninstall" => o.uninstall = true,
            "--check" => o.check = true,
            "--json" => o.json = true,
            other => return Err(InstallError::usage(format!("unknown option {other:?}"))),
        }
    }
    for (name, p) in [("--bin-dir", &o.bin_dir), ("--conf-dir", &o.conf_dir)] {
        if !p.is_absolute() {
            return Err(InstallError::usage(format!(
                "{name} must be an absolute path, not {p:?}"
            )));
        }
    }
    if o.json && !o.check {
        return Err(InstallError::usage("--json goes with --check"));
    }
    if o.check && (o.uninstall || o.dry_run || o.systemd) {
        return Err(InstallError::usage(
            "--check changes nothing: not with --uninstall, --dry-run or --systemd",
        ));
    }
    if !root_given && !o.check {
        return Err(InstallError::usage(
            "--root is required: `--root /` to change this host, `--root DIR` for a node \
             mounted at DIR",
        ));
    }
    if o.root.as_os_str().is_empty() {
        return Err(InstallError::usage("--root must not be empty"));
    }
    Ok(Parsed::Run(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args)? {
            Parsed::Run(o) => Ok(*o),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&["--root", "/"]).unwrap();
        assert_eq!(o.root, PathBuf::from("/"));
        assert_eq!(o.bin_dir, PathBuf::from("/opt/cni/bin"));
        assert_eq!(o.conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert!(o.plugin.is_empty() && o.networks.is_empty() && !o.dry_run);
        assert_eq!(o.new_entry()["holdSeconds"], NEW_ENTRY_HOLD_SECONDS);
        let o = run(&["--root", "/", "--hold-seconds", "5", "--external-sweeper"]).unwrap();
        assert_eq!(
            serde_json::to_string(&o.new_entry()).unwrap(),
            r#"{"holdSeconds":5,"sweeper":false}"#
        );
    }

    #[test]
    fn the_root_is_never_implied() {
        for args in [&[][..], &["--dry-run"], &["--uninstall", "--skip-binaries"]] {
            let e = run(args).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{args:?}");
        }
        assert!(
            run(&["--dry-run"])
                .unwrap_err()
                .to_string()
                .contains("--root")
        );
    }

    #[test]
    fn plugin_options_in_order() {
        let o = run(&[
            "--root=/",
            "--route-type=blackhole",
            "--hold-seconds",
            "30",
            "--table",
            "main",
            "--table",
            "100",
            "--table",
            "main",
            "--no-flush-neighbors",
            "--network",
            "pods",
            "--network=other",
        ])
        .unwrap();
        assert_eq!(
            serde_json::to_string(&o.plugin).unwrap(),
            r#"{"routeType":"blackhole","holdSeconds":30,"tables":["main",100],"flushNeighbors":false}"#
        );
        assert_eq!(o.networks, ["pods", "other"]);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--hold-seconds", "0"][..],
            &["--hold-seconds", "86401"],
            &["--hold-seconds", "x"],
            &["--route-type", "drop"],
            &["--table", "255"],
            &["--table", "-1"],
            &["--bin-dir", "relative"],
            &["--plugin-state-dir", "run/x"],
            &["--network", ""],
            &["--network"],
            &["--frobnicate"],
        ] {
            let with_root: Vec<&str> = ["--root", "/"]
                .into_iter()
                .chain(bad.iter().copied())
                .collect();
            let e = run(&with_root).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{bad:?}");
            assert!(e.to_string().contains(bad[0]), "{bad:?}: {e}");
        }
        assert_eq!(parse(&["-h".into()]).unwrap(), Parsed::Help);
    }

    #[test]
    fn check_takes_the_host_root_by_default() {
        let o = run(&["--check", "--json"]).unwrap();
        assert!(o.check && o.json);
        assert_eq!(o.root, PathBuf::from("/"));
        for bad in [
            &["--json"][..],
            &["--check", "--uninstall"],
            &["--check", "--dry-run"],
        ] {
            let e = run(bad).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{bad:?}");
        }
    }
}
