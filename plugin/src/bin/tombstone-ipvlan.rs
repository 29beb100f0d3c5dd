//! `tombstone-ipvlan`: the IPvlan main CNI plugin with the node's gateway port.

fn main() {
    tombstone_cni::skel::plugin_main(
        &tombstone::ipvlan::verbs::IpvlanPlugin,
        env!("CARGO_PKG_VERSION"),
    )
}
