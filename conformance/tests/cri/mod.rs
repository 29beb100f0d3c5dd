//! The CRI test's kit: our CRI [`client`], a private [`containerd`], the offline pause
//! [`image`], and what the [`node`] sees of pod addresses.

pub mod client;
pub mod containerd;
pub mod image;
pub mod node;
