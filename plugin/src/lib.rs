//! Tombstone's two plugins: the chained `tombstone` ([`chained`]) and the IPvlan main plugin
//! `tombstone-ipvlan` ([`ipvlan`]), each its verbs over its pure config and planning logic.
//!
//! Below them, two crates and nothing else: `tombstone-cni` (the spec layer, state files,
//! delegation, logging, suite constants; no kernel) and `tombstone-kernel` (netlink by object,
//! namespace entry). The kernel's typed errors become CNI errors in one place, [`errors`].
#![forbid(unsafe_code)]

pub mod chained;
pub mod errors;
pub mod ipvlan;
