//! The tests' kit, one for every crate of the workspace (a dev-dependency, never shipped;
//! the conformance harness, a test kit itself, links it): the root rule for privileged tests
//! ([`root`]), throwaway network namespaces ([`netns`]), a binary run as a runtime runs a
//! plugin, with a timeout ([`process`]), a podman of the test's own ([`podman`]), what the
//! runtimes' tests share ([`runtime`]), and the heavier kits: SIGKILL storms ([`kill`], and
//! the runtime they model, [`storm`]), strace fault injection ([`strace`]), fuzzing
//! ([`fuzz`]).
//! It knows no plugin: each crate's `tests/common` adds what is its own.
#![forbid(unsafe_code)]

pub mod fuzz;
pub mod kill;
pub mod netns;
pub mod podman;
pub mod process;
pub mod root;
pub mod runtime;
pub mod storm;
pub mod strace;

pub use netns::Netns;
pub use process::{Outcome, eventually, run, sh, wait_until};
pub use root::require_root;
