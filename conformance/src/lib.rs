//! Real-kernel end-to-end testing of IPvlan CNI plugins: a qemu VM harness that boots the
//! distribution's kernel (which has IPvlan) over a copy-on-write view of the host, a libcni
//! client to drive plugins the way runtimes do, and the scenarios that measure what the
//! `tombstone` plugin changes.
#![forbid(unsafe_code)]

pub mod check_cli;
pub mod checks;
pub mod cpio;
pub mod error;
pub mod lab;
pub mod paths;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod target;
pub mod tools;
pub mod vm;

pub use error::{Error, Result};
