//! The real-kernel harness of this project: a qemu [`vm`] booting the distribution's kernel
//! (which has IPvlan) over a copy-on-write view of the host, its initramfs ([`cpio`]), the
//! tools it needs ([`tools`]), the build outputs it runs ([`paths`]), one-VM-per-test set-up
//! ([`lab`]), and the seed [`scenario`] that measures what the `tombstone` plugin changes.

pub mod cpio;
pub mod lab;
pub mod paths;
pub mod scenario;
pub mod tools;
pub mod vm;
