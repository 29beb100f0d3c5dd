//! `tombstone-ipam`: the IPAM plugin process.

fn main() {
    tombstone_cni::skel::plugin_main(&tombstone_ipam::verbs::Ipam, env!("CARGO_PKG_VERSION"))
}
