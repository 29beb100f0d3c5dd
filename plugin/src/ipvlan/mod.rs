//! `tombstone-ipvlan`, the IPvlan main plugin that keeps the node's gateway port. Pure logic
//! first ([`config`]: keys and link names; [`plan`]: what a result asks of the kernel), then
//! the verbs ([`verbs`]), which alone touch the kernel and delegate to IPAM, ADD as a
//! transaction ([`undo`]).

pub mod config;
pub mod plan;
pub mod undo;
pub mod verbs;
