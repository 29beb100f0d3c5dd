//! The agent's command line, pure logic: its own options, then the installer's (which it
//! passes on), with the settings that keep the entry, the sweep and the agent consistent.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tombstone_cni::suite::{DEFAULT_REUSE_AFTER_SECONDS, DEFAULT_STATE_DIR};

use crate::error::{InstallError, Result};
use crate::options::{self, NEW_ENTRY_HOLD_SECONDS, Options, Parsed};

pub const USAGE: &str = "\
usage: tombstone-install agent --root DIR [AGENT OPTIONS] [INSTALLER OPTIONS]

Installs as `tombstone-install` does, then stays: re-inserts the entry whenever the conf dir
changes, sweeps the state directory on a timer, serves /healthz, /readyz and /metrics.

agent options:
  --listen ADDR         where to serve HTTP [default: 127.0.0.1:9465]
  --sweep-every S       sweep the plugin's state directory every S seconds; 0: never (then
                        the entry keeps its own sweeper) [default: 10]
  --resync-every S      reconcile the conf dir every S seconds even with no event [default: 30]
  --scan-every S        read the state directory for /metrics every S seconds [default: 1]
  --uninstall-on-exit   on SIGTERM, remove everything installed (the uninstall path only;
                        never in a rolling update)

installer options: as `tombstone-install --help` says, but not --dry-run, --uninstall or
--systemd. The agent writes `stateDir` (default /run/cni/tombstone) into every entry, and
`sweeper: false` when it sweeps.";

#[derive(Debug, Clone, PartialEq)]
pub struct AgentOptions {
    pub install: Options,
    pub listen: SocketAddr,
    pub sweep_every: Option<Duration>,
    pub resync_every: Duration,
    pub scan_every: Duration,
    pub uninstall_on_exit: bool,
    /// Said at start, the agent goes on.
    pub warnings: Vec<String>,
}

impl AgentOptions {
    /// The plugin's state directory, as the plugin names it (the agent opens that very path:
    /// a tombstone route's metric is derived from it).
    pub fn state_dir(&self) -> &str {
        self.install.plugin["stateDir"]
            .as_str()
            .unwrap_or(DEFAULT_STATE_DIR)
    }
}

pub enum ParsedAgent {
    Run(Box<AgentOptions>),
    Help,
}

fn seconds(flag: &str, v: &str, min: u64) -> Result<u64> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (min..=86_400).contains(n))
        .ok_or_else(|| {
            InstallError::usage(format!("{flag} must be {min} to 86400 seconds, not {v:?}"))
        })
}

/// Every error is a usage one.
pub fn parse(args: &[String]) -> Result<ParsedAgent> {
    let mut listen: SocketAddr = "127.0.0.1:9465".parse().expect("a socket address");
    let (mut sweep, mut resync, mut scan, mut uninstall_on_exit) = (10, 30, 1, false);
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| InstallError::usage(format!("{flag} needs a value")))
        };
        match flag {
            "-h" | "--help" => return Ok(ParsedAgent::Help),
            "--listen" => {
                let v = value()?;
                listen = v.parse().map_err(|_| {
                    InstallError::usage(format!("--listen must be ADDRESS:PORT, not {v:?}"))
                })?;
            }
            "--sweep-every" => sweep = seconds(flag, &value()?, 0)?,
            "--resync-every" => resync = seconds(flag, &value()?, 1)?,
            "--scan-every" => scan = seconds(flag, &value()?, 1)?,
            "--uninstall-on-exit" => uninstall_on_exit = true,
            "--dry-run" | "--uninstall" | "--systemd" => {
                return Err(InstallError::usage(format!(
                    "{flag} is not an agent option: run `tombstone-install {flag}` instead"
                )));
            }
            _ => rest.push(a.clone()),
        }
    }
    let mut install = match options::parse(&rest)? {
        Parsed::Run(o) => *o,
        Parsed::Help | Parsed::Version => return Ok(ParsedAgent::Help),
    };
    install
        .plugin
        .entry("stateDir")
        .or_insert_with(|| Value::from(DEFAULT_STATE_DIR));
    let sweep_every = (sweep > 0).then(|| Duration::from_secs(sweep));
    if sweep_every.is_some() {
        install.plugin.insert("sweeper".into(), false.into());
    }
    let mut warnings = Vec::new();
    let hold = install
        .plugin
        .get("holdSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(NEW_ENTRY_HOLD_SECONDS);
    if hold + sweep >= DEFAULT_REUSE_AFTER_SECONDS {
        warnings.push(format!(
            "holdSeconds {hold} plus the sweep period {sweep}s is not below tombstone-ipam's \
             default reuseAfterSeconds ({DEFAULT_REUSE_AFTER_SECONDS}): a tombstone may end \
             after its address is handed out again; lower --hold-seconds or --sweep-every \
             (a network whose IPAM says a reuseAfterSeconds not above the hold is refused)"
        ));
    }
    Ok(ParsedAgent::Run(Box::new(AgentOptions {
        install,
        listen,
        sweep_every,
        resync_every: Duration::from_secs(resync),
        scan_every: Duration::from_secs(scan),
        uninstall_on_exit,
        warnings,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(args: &[&str]) -> Result<AgentOptions> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args)? {
            ParsedAgent::Run(o) => Ok(*o),
            ParsedAgent::Help => panic!("help"),
        }
    }

    #[test]
    fn the_entry_names_the_state_dir_and_no_sweeper_when_the_agent_sweeps() {
        let o = agent(&["--root", "/", "--listen=0.0.0.0:9999"]).unwrap();
        assert_eq!(o.state_dir(), DEFAULT_STATE_DIR);
        assert_eq!(o.install.plugin["sweeper"], false);
        assert_eq!(o.listen.port(), 9999);
        assert!(o.warnings.is_empty() && !o.uninstall_on_exit);
        let o = agent(&[
            "--root",
            "/",
            "--sweep-every",
            "0",
            "--plugin-state-dir",
            "/run/x",
        ])
        .unwrap();
        assert!(o.sweep_every.is_none() && !o.install.plugin.contains_key("sweeper"));
        assert_eq!(o.state_dir(), "/run/x");
    }

    #[test]
    fn a_hold_near_the_reuse_delay_is_warned_and_bad_options_refused() {
        let o = agent(&["--root", "/", "--hold-seconds", "55"]).unwrap();
        assert!(
            o.warnings[0].contains("reuseAfterSeconds"),
            "{:?}",
            o.warnings
        );
        for bad in [
            &["--dry-run"][..],
            &["--uninstall"],
            &["--sweep-every", "x"],
            &["--listen", "nope"],
            &["--resync-every", "0"],
        ] {
            let args: Vec<&str> = ["--root", "/"]
                .into_iter()
                .chain(bad.iter().copied())
                .collect();
            let e = agent(&args).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{bad:?}");
        }
        assert!(
            agent(&["--listen", "127.0.0.1:1"]).is_err(),
            "--root stays required"
        );
    }
}
