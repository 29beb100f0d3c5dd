//! `tombstone`: the chained CNI plugin (with `CNI_COMMAND` set) or its subcommands.
// The test harness brings its own `main` (the crate has no tests of its own).
#![cfg_attr(not(test), no_main)]

/// The process entry, at C `main` rather than std's `fn main`: see `skel::start`, which does
/// what of std's runtime set-up the process relies on.
// SAFETY: the one `main` symbol of this executable (the crate is `no_main`), with the
// signature C calls it with; it reads no arguments (std takes them from the C runtime itself).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main() -> std::ffi::c_int {
    use tombstone::chained::{cli, plugin::TombstonePlugin, port::Edges};
    use tombstone_cni::{skel, version};
    skel::start(|| {
        if std::env::var_os("CNI_COMMAND").is_some() {
            skel::run(&TombstonePlugin::new(Edges::real()))
        } else {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let about = skel::about("tombstone", env!("CARGO_PKG_VERSION"), version::CHAINED);
            cli::run(&args, &about)
        }
    })
}
