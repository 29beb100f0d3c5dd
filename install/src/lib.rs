//! `tombstone-install`: puts the tombstone CNI plugins on a node and takes them off again.
//!
//! Floors, each importing only downward:
//! - [`agent`]: the node agent (install, watch, sweep, HTTP), over [`run`];
//! - [`run`]: install and uninstall, planned then applied; [`check`]: `--check`, the node
//!   read (through [`run`]'s reader, the plugin's store, netlink) for [`doctor`]'s checks;
//! - pure logic, no I/O: [`confdir`] (which files the runtime loads), [`conflist`] (the
//!   conflist edit), [`diff`] (unified diffs for `--dry-run`), [`host`] (protocol name and
//!   systemd unit texts), [`doctor`] (the checks of `--check` and its report), [`options`];
//! - the edge: [`files`] (paths resolved under `--root`, atomic replacement);
//! - under every floor: [`error`] (the one error type, with context and details).
#![forbid(unsafe_code)]

pub mod agent;
pub mod check;
pub mod confdir;
pub mod conflist;
pub mod diff;
pub mod doctor;
pub mod error;
pub mod files;
pub mod host;
pub mod options;
pub mod run;
