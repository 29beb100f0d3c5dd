//! `tombstone-ipam`: the IPAM plugin process.

fn main() {
    tombstone::cni::skel::plugin_main(&tombstone_ipam::verbs::Ipam, env!("CARGO_PKG_VERSION"))
}
