//! `tombstone-ipam`: the IPAM plugin process.

use tombstone::cni::skel;
use tombstone_ipam::verbs::Ipam;

const ABOUT: &str = concat!(
    "CNI tombstone-ipam plugin v",
    env!("CARGO_PKG_VERSION"),
    "\nCNI protocol versions supported: 0.4.0, 1.0.0, 1.1.0"
);

fn main() {
    if std::env::var_os("CNI_COMMAND").is_none() {
        println!("{ABOUT}");
        std::process::exit(0);
    }
    std::process::exit(skel::run(&Ipam));
}
