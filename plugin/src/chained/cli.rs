//! The subcommands outside CNI: `tombstone sweep` (for a timer) and `tombstone list`.

use crate::errors::KernelResult;
use std::net::IpAddr;
use std::path::PathBuf;

use super::store;
use super::sweep::{SweepReport, sweep_all_in};
use super::{DEFAULT_STATE_DIR, now_ms, sweeper};
use tombstone_cni::state::StateDir;
use tombstone_cni::{CniError, Result};

pub const USAGE: &str = "\
usage: tombstone sweep [--state-dir DIR] [--keep-orphans | --until-empty]
       tombstone list  [--state-dir DIR] [--json]

Without CNI_COMMAND in the environment, runs one of these subcommands:
  sweep   end expired tombstones of every network, drop ledger entries without a route,
          and delete routes of the tombstone protocol that no ledger names (orphans);
          --until-empty keeps sweeping, each time the next tombstone expires, until none
          is left (the background sweeper a DEL starts; one per state directory)
  list    show live tombstones: address, network, attachment, time left";

struct Opts {
    state_dir: PathBuf,
    json: bool,
    keep_orphans: bool,
    until_empty: bool,
}

fn parse(args: &[String]) -> std::result::Result<Opts, String> {
    let mut o = Opts {
        state_dir: DEFAULT_STATE_DIR.into(),
        json: false,
        keep_orphans: false,
        until_empty: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--state-dir" => {
                o.state_dir = it.next().ok_or("--state-dir needs a directory")?.into();
            }
            "--json" => o.json = true,
            "--keep-orphans" => o.keep_orphans = true,
            "--until-empty" => o.until_empty = true,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if !o.state_dir.is_absolute() {
        return Err("--state-dir must be an absolute path".into());
    }
    Ok(o)
}

/// Runs a subcommand; returns the exit status.
pub fn run(args: &[String], about: &str) -> i32 {
    let Some((cmd, rest)) = args.split_first() else {
        complain(about);
        return 0;
    };
    if matches!(cmd.as_str(), "-h" | "--help" | "help") {
        return exit(say(&format!("{about}\n\n{USAGE}\n")));
    }
    if matches!(cmd.as_str(), "-V" | "--version" | "version") {
        return exit(say(&format!("{about}\n")));
    }
    let opts = match parse(rest) {
        Ok(o) => o,
        Err(e) => {
            complain(&format!("tombstone: {e}\n{USAGE}"));
            return 2;
        }
    };
    tombstone_cni::logging::init("tombstone", log::LevelFilter::Info);
    let result = match cmd.as_str() {
        "sweep" if opts.until_empty => sweeper::run_until_empty(&opts.state_dir),
        "sweep" => sweep_all(&opts).and_then(|r| say(&format!("{r}\n"))),
        "list" => list(&opts),
        other => {
            complain(&format!("tombstone: unknown subcommand {other:?}\n{USAGE}"));
            return 2;
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            complain(&format!("tombstone {cmd}: {e}"));
            1
        }
    }
}

/// The state directory to read. A missing default directory means no tombstone was ever
/// made; a missing directory named on the command line is a mistake worth saying.
fn state_dir(o: &Opts) -> Result<Option<StateDir>> {
    match StateDir::existing(&o.state_dir)? {
        Some(d) => Ok(Some(d)),
        None if o.state_dir == std::path::Path::new(DEFAULT_STATE_DIR) => Ok(None),
        None => Err(CniError::io(format!(
            "state directory {} does not exist",
            o.state_dir.display()
        ))),
    }
}

fn sweep_all(o: &Opts) -> Result<SweepReport> {
    // A timer may sweep before the first DEL made the directory: nothing to do yet.
    let Some(dir) = StateDir::existing(&o.state_dir)? else {
        return Ok(SweepReport::default());
    };
    let nl = tombstone_kernel::Netlink::open().cni()?;
    let report = sweep_all_in(&dir, &nl, now_ms(), o.keep_orphans)?;
    if !report.errors.is_empty() {
        return Err(
            CniError::netlink(format!("{report}; {} failures", report.errors.len()))
                .with_details(report.errors.join("; ")),
        );
    }
    Ok(report)
}

/// One live tombstone, for `list`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub ip: IpAddr,
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub route_type: &'static str,
    pub tables: Vec<u32>,
    pub expires_in_seconds: f64,
}

/// Every tombstone of the state directory, read without a lock and without writing (each
/// entry is replaced atomically, so each is whole; the list is not one instant's).
pub fn rows(dir: &StateDir) -> Result<Vec<Row>> {
    let now = now_ms();
    let mut out = Vec::new();
    for stem in dir.records()? {
        let Some(ledger) = store::peek(dir, &stem)? else {
            continue;
        };
        let network = ledger.network.clone();
        for t in ledger.tombstones {
            out.push(Row {
                ip: t.ip,
                network: network.clone(),
                container_id: t.container_id,
                ifname: t.ifname,
                route_type: t.route_type.as_str(),
                tables: t.tables,
                expires_in_seconds: (t.expires_at_ms.saturating_sub(now)) as f64 / 1000.0,
            });
        }
    }
    out.sort_by(|a, b| (&a.network, a.ip).cmp(&(&b.network, b.ip)));
    Ok(out)
}

fn list(o: &Opts) -> Result<()> {
    let rows = match state_dir(o)? {
        Some(dir) => rows(&dir)?,
        None => vec![],
    };
    if o.json {
        let text = serde_json::to_string_pretty(&rows).expect("rows serialize");
        return say(&format!("{text}\n"));
    }
    let mut out = format!(
        "{:<40} {:<16} {:<30} {:<12} {:<10} {:>9}\n",
        "IP", "NETWORK", "ATTACHMENT", "TYPE", "TABLES", "LEFT"
    );
    for r in &rows {
        let tables = r
            .tables
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let attachment = format!("{}/{}", short(&r.container_id), r.ifname);
        out += &format!(
            "{:<40} {:<16} {:<30} {:<12} {:<10} {:>8.1}s\n",
            r.ip.to_string(),
            r.network,
            attachment,
            r.route_type,
            tables,
            r.expires_in_seconds
        );
    }
    say(&out)
}

/// Prints on stderr, never panicking (the exit status says what matters).
fn complain(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn exit(r: Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            complain(&format!("tombstone: {e}"));
            1
        }
    }
}

/// Prints on stdout; a failed write is an error (exit 1), never a panic or an exit 0.
fn say(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| CniError::io(format!("cannot write to stdout: {e}")))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
