//! The CNI spec layer shared by every binary of the suite: environment, config, results,
//! errors, version negotiation and the skeleton that turns a plugin into a process; below the
//! plugins' own logic, beside nothing of the kernel. Also the edges every plugin needs that are
//! not netlink: [`logging`], locked state files ([`state`]), IPAM delegation ([`delegate`]),
//! and the suite's shared constants ([`suite`]).
#![forbid(unsafe_code)]

pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod logging;
pub mod result;
pub mod skel;
pub mod state;
pub mod suite;
pub mod version;

pub use config::NetConf;
pub use env::{Attachment, Command, Env};
pub use error::{CniError, IoContext, Result, code};
pub use result::CniResult;
pub use skel::{Invocation, Plugin};
