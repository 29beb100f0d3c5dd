//! `cni-conformance`: runs the real-kernel scenarios in a qemu VM and prints their tables.
//!
//! ```text
//! cni-conformance demo [--hand-made]   seed scenario: reference plugins vs + tombstone, then
//!                                      the Service scenario
//! cni-conformance service              the Service scenario alone (ClusterIP, NodePort)
//! cni-conformance dual-stack           the seed in an IPv4+IPv6 pod subnet
//! cni-conformance modes                the seed in IPvlan modes l3 and l3s
//! cni-conformance churn [--seed N]     50 pods added/deleted in random order
//! cni-conformance job '<shell>'        an ad hoc shell job in the VM (jobs/lib.sh loaded)
//! cni-conformance check ...            the CNI spec conformance runner (see check_cli.rs)
//! ```
//! Options: `--verbose` prints the job's whole output; `--timeout SECS` bounds each boot.

use std::process::ExitCode;
use std::time::Duration;

use cni_conformance::harness::lab::Lab;
use cni_conformance::harness::scenario::{self, Chain, Churn, Mode, Report, Settings, Variant};
use cni_conformance::harness::vm::VmConfig;
use cni_conformance::{Error, Result};

const USAGE: &str = "usage: cni-conformance [--verbose] [--timeout SECS] \
                     demo [--hand-made] | service | dual-stack | modes | churn [--seed N] | job '<shell>'";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cni-conformance: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    if args.first().map(String::as_str) == Some("check") {
        return cni_conformance::spec::check_cli::main(&args[1..]);
    }
    let mut verbose = false;
    let mut hand_made = false;
    let mut seed: Option<u64> = None;
    let mut config = VmConfig::default();
    let mut words = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--verbose" | "-v" => verbose = true,
            "--hand-made" => hand_made = true,
            "--seed" => seed = Some(parse_num(it.next(), "--seed")?),
            "--timeout" => config.timeout = Duration::from_secs(parse_num(it.next(), "--timeout")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => words.push(a),
        }
    }
    let Some(command) = words.first().cloned() else {
        return Err(Error::new(USAGE));
    };
    let settings = Settings::default();
    let lab = Lab::prepare(config)?;
    let report = match command.as_str() {
        "demo" => {
            let after = if hand_made {
                Variant::new("handmade", Mode::L2, false, Chain::HandMade)
            } else {
                Variant::new("tombstone", Mode::L2, false, Chain::Tombstone)
            };
            let variants = [
                Variant::new("baseline", Mode::L2, false, Chain::Reference),
                after,
            ];
            println!(
                "Seed scenario on kernel {} in a qemu VM: pods a and b on an IPvlan L2 network, a deleted,\n\
                 then traffic to a's released address. Reference ipvlan + host-local, then with {} ...\n",
                lab.vm.kernel.version,
                if hand_made {
                    "a hand-made unreachable route"
                } else {
                    "tombstone chained"
                }
            );
            let r = scenario::run_seed(&lab, &variants, &settings)?;
            print_report(&r, verbose, Report::seed_table);
            let forwarded = |v: &str| r.results.get(v, "forwarded_4").to_string();
            println!(
                "In short: after a pod is deleted, traffic to its address loops through the gateway \
                 port ({} datagrams forwarded for {} pings) without; {} with {}.",
                forwarded("baseline"),
                settings.pings,
                forwarded(&variants[1].name),
                variants[1].name
            );
            if !r.results.failures.is_empty() {
                r
            } else {
                println!();
                service(&lab, verbose)?
            }
        }
        "service" => service(&lab, verbose)?,
        "dual-stack" => {
            let variants = [
                Variant::new("baseline", Mode::L2, true, Chain::Reference),
                Variant::new("tombstone", Mode::L2, true, Chain::Tombstone),
            ];
            let r = scenario::run_seed(&lab, &variants, &settings)?;
            print_report(&r, verbose, Report::seed_table);
            r
        }
        "modes" => {
            let variants = [
                Variant::new("l3-baseline", Mode::L3, false, Chain::Reference),
                Variant::new("l3-tombstone", Mode::L3, false, Chain::Tombstone),
                Variant::new("l3s-baseline", Mode::L3s, false, Chain::Reference),
                Variant::new("l3s-tombstone", Mode::L3s, false, Chain::Tombstone),
            ];
            let r = scenario::run_seed(&lab, &variants, &settings)?;
            print_report(&r, verbose, Report::seed_table);
            r
        }
        "churn" => {
            let mut churn = Churn::default();
            if let Some(s) = seed {
                churn.seed = s;
            }
            let r = scenario::run_churn(&lab, &churn, &settings)?;
            println!("churn seed: {:#x}", churn.seed);
            print_report(&r, verbose, Report::churn_table);
            r
        }
        "job" => {
            let body = words.get(1).ok_or_else(|| Error::new(USAGE))?;
            let out = scenario::run_adhoc(&lab, body)?;
            print!("{}", out.output);
            println!(
                "(exit status {} after {:.1} s)",
                out.status,
                out.elapsed.as_secs_f64()
            );
            return Ok(());
        }
        other => return Err(Error::new(format!("unknown command {other:?}\n{USAGE}"))),
    };
    if report.results.failures.is_empty() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{} step(s) failed: {}",
            report.results.failures.len(),
            report.results.failures.join("; ")
        )))
    }
}

/// The Service scenario's variants: the reference chain without and with `tombstone`, and
/// our three plugins.
fn service_variants() -> [Variant; 3] {
    [
        Variant::new("baseline", Mode::L2, false, Chain::Reference),
        Variant::new("tombstone", Mode::L2, false, Chain::Tombstone),
        Variant::new("ours", Mode::L2, false, Chain::Ours),
    ]
}

fn service(lab: &Lab, verbose: bool) -> Result<Report> {
    let settings = Settings {
        hold_seconds: 30,
        ..Settings::default()
    };
    println!(
        "Service scenario on kernel {}: the host reaches pod a through a ClusterIP and a NodePort,\n\
         pod c through the ClusterIP (kube-proxy-like nftables DNAT, masquerade for the NodePort);\n\
         a is deleted, {:.0} s later the Service is switched to pod b ...\n",
        lab.vm.kernel.version,
        f64::from(settings.svc_watch_del_ms) / 1000.0
    );
    let r = scenario::run_service(lab, &service_variants(), &settings)?;
    print_report(&r, verbose, Report::service_table);
    Ok(r)
}

fn print_report(r: &Report, verbose: bool, table: fn(&Report) -> String) {
    if verbose {
        println!("{}", r.job.output);
    }
    println!("{}", table(r));
    println!("(one VM boot, {:.0} s)", r.elapsed().as_secs_f64());
}

fn parse_num(v: Option<String>, flag: &str) -> Result<u64> {
    let v = v.ok_or_else(|| Error::new(format!("{flag} needs a value")))?;
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|e| Error::new(format!("{flag} {v}: {e}")))
}
