//! The CRI test's kit: our CRI [`client`], a private [`containerd`], the offline pause
//! [`image`], and what the [`node`] sees of pod addresses, and
//! the [`record`] of what the runtime passed to a plugin.

pub mod client;
pub mod containerd;
pub mod image;
pub mod node;
pub mod record;
