//! `tombstone-ipam`: a drop-in for the reference `host-local` IPAM (same config, same
//! result) with a cool-down for released addresses, GC, STATUS and crash-safe versioned
//! state.
//!
//! Floors, each importing only downward:
//! - [`verbs`]: ADD, DEL, CHECK, GC, STATUS;
//! - [`store`]: the state on disk, one small file per address (the only I/O with
//!   [`legacy`], which reads the older state file and host-local's files to migrate them);
//! - pure logic: [`pool`] (allocation, cool-down, release), [`config`], [`range`],
//!   [`record`] (the record lines), [`import`] (host-local's file contents);
//! - the ground: `tombstone-cni` (spec types, skeleton, `state`).
#![forbid(unsafe_code)]

pub mod config;
pub mod import;
pub mod legacy;
pub mod pool;
pub mod range;
pub mod record;
pub mod store;
pub mod verbs;
