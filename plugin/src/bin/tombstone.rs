//! `tombstone`: the chained CNI plugin (with `CNI_COMMAND` set) or its subcommands.

use tombstone::cni::skel;
use tombstone::tombstone::{cli, plugin::TombstonePlugin};

const ABOUT: &str = concat!(
    "CNI tombstone plugin v",
    env!("CARGO_PKG_VERSION"),
    "\nCNI protocol versions supported: 0.4.0, 1.0.0, 1.1.0"
);

fn main() {
    let code = if std::env::var_os("CNI_COMMAND").is_some() {
        skel::run(&TombstonePlugin)
    } else {
        let args: Vec<String> = std::env::args().skip(1).collect();
        cli::run(&args, ABOUT)
    };
    std::process::exit(code);
}
