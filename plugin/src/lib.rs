//! Tombstone: CNI plugins for IPvlan pod networks with a cleanup guarantee.
//!
//! Floors, each importing only downward:
//! - [`tombstone`]: the chained plugin's verbs, and below them its pure logic (config,
//!   ledger, expiry);
//! - [`ipvlan`]: the IPvlan main plugin's verbs, over its pure config and planning logic;
//! - the edges: the kernel (the `tombstone-kernel` crate: netlink by object, namespace
//!   entry; its errors become CNI errors in [`errors`]), [`delegate`] (IPAM on
//!   `CNI_PATH`), [`state`] (locked, atomically written state files);
//! - the ground: [`cni`] (spec 1.1 types, errors, skeleton) and [`logging`].

pub mod cni;
pub mod delegate;
pub mod errors;
pub mod ipvlan;
pub mod logging;
pub mod state;
pub mod tombstone;
