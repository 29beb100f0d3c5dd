//! `tombstone-ipam`: the IPAM plugin process.
// The test harness brings its own `main` (the crate has no tests of its own).
#![cfg_attr(not(test), no_main)]

/// The process entry, at C `main` rather than std's `fn main`: see `skel::start`, which does
/// what of std's runtime set-up the process relies on.
// SAFETY: the one `main` symbol of this executable (the crate is `no_main`), with the
// signature C calls it with; it reads no arguments (std takes them from the C runtime itself).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main() -> std::ffi::c_int {
    tombstone_cni::skel::plugin_main(&tombstone_ipam::verbs::Ipam, env!("CARGO_PKG_VERSION"))
}
