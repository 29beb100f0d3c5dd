//! `tombstone-ipvlan`: the IPvlan main CNI plugin with the node's gateway port.

use tombstone::cni::skel;
use tombstone::ipvlan::verbs::IpvlanPlugin;

const ABOUT: &str = concat!(
    "CNI tombstone-ipvlan plugin v",
    env!("CARGO_PKG_VERSION"),
    "\nCNI protocol versions supported: 0.4.0, 1.0.0, 1.1.0"
);

fn main() {
    if std::env::var_os("CNI_COMMAND").is_none() {
        eprintln!("{ABOUT}");
        std::process::exit(1);
    }
    std::process::exit(skel::run(&IpvlanPlugin));
}
