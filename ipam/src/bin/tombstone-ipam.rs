//! `tombstone-ipam`: the IPAM plugin process.

fn main() {
    tombstone_ipam::process::main(&tombstone_ipam::verbs::Ipam, env!("CARGO_PKG_VERSION"))
}
