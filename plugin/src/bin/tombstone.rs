//! `tombstone`: the chained CNI plugin (with `CNI_COMMAND` set) or its subcommands.

use tombstone::chained::{cli, plugin::TombstonePlugin, port::Edges};
use tombstone_cni::skel;

fn main() {
    let code = if std::env::var_os("CNI_COMMAND").is_some() {
        skel::run(&TombstonePlugin::new(Edges::real()))
    } else {
        let args: Vec<String> = std::env::args().skip(1).collect();
        cli::run(&args, &skel::about("tombstone", env!("CARGO_PKG_VERSION")))
    };
    std::process::exit(code);
}
