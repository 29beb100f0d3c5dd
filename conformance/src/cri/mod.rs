//! The CRI kit, run natively (`tests/cri_root.rs`) and inside the IPvlan VM (the
//! `cni-cri-scenario` binary): our CRI [`client`], a private [`containerd`], the offline pause
//! [`image`], what the [`node`] sees of pod addresses, the [`record`] of what the runtime
//! passed to a plugin, and the [`scenario`] steps and timings both runs share. Its checks
//! panic with what failed, as a test's assertions do.

pub mod client;
pub mod containerd;
pub mod image;
pub mod node;
pub mod record;
pub mod scenario;
