//! Real-kernel end-to-end testing of IPvlan CNI plugins, in three parts: [`spec`],
//! a conformance runner that judges any CNI plugin against the spec, and [`harness`], this
//! project's qemu VM with a real IPvlan kernel, a libcni client that drives plugins the way
//! runtimes do, and the scenarios that measure what the `tombstone` plugin changes; [`cri`],
//! a real containerd driven by our CRI client, natively and inside the VM.
#![forbid(unsafe_code)]

pub mod cri;
pub mod error;
pub mod harness;
pub mod spec;

pub use error::{Error, Result};
