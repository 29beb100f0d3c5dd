//! Tombstone: CNI plugins for IPvlan pod networks with a cleanup guarantee.
//!
//! Floors, each importing only downward:
//! - [`tombstone`]: the chained plugin's verbs, and below them its pure logic (config,
//!   ledger, expiry);
//! - the edges: [`netlink`] (routes, neighbours), [`state`] (locked, atomically written
//!   state files);
//! - the ground: [`cni`] (spec 1.1 types, errors, skeleton) and [`logging`].

pub mod cni;
pub mod logging;
pub mod netlink;
pub mod state;
pub mod tombstone;
