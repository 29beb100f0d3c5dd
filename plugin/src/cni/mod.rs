//! The CNI spec 1.1 layer shared by every binary: environment, config, results, errors,
//! version negotiation, and the skeleton that turns a plugin into a process.

pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod skel;
pub mod version;

pub use config::NetConf;
pub use env::{Attachment, Command, Env};
pub use error::{CniError, Result, code};
pub use result::CniResult;
pub use skel::{Invocation, Plugin};
