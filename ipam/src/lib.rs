//! `tombstone-ipam`: a drop-in for the reference `host-local` IPAM (same config, same
//! result) with a cool-down for released addresses, GC, STATUS and crash-safe versioned
//! state.
//!
//! Floors, each importing only downward:
//! - [`verbs`]: ADD, DEL, CHECK, GC, STATUS;
//! - [`store`]: the state file on disk and the import of host-local's files (the only I/O);
//! - pure logic: [`pool`] (allocation, cool-down, release), [`config`], [`range`],
//!   [`record`] (the state file format), [`import`] (host-local's file contents);
//! - the ground: `tombstone-cni` (spec types, skeleton, `state`).
#![forbid(unsafe_code)]

pub mod config;
pub mod import;
pub mod pool;
pub mod range;
pub mod record;
pub mod store;
pub mod verbs;
