//! `cni-conformance`: runs the real-kernel scenarios.

use std::process::ExitCode;

use cni_conformance::vm::{Vm, VmConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let vm = match Vm::prepare(VmConfig::default()) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("cni-conformance: {e}");
            return ExitCode::FAILURE;
        }
    };
    let script = args.first().cloned().unwrap_or_else(|| "uname -a; ip link add d0 type dummy; ip link add g0 link d0 type ipvlan mode l2 && echo IPVLAN-OK; exit 3".into());
    match vm.run_job("adhoc", &script) {
        Ok(out) => {
            println!("{}", out.output);
            println!("status {} in {:?}", out.status, out.elapsed);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cni-conformance: {e}");
            ExitCode::FAILURE
        }
    }
}
