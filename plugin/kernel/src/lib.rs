//! The kernel edge of the tombstone plugins, and nothing else: a blocking rtnetlink facade
//! split by object ([`route`], [`rule`], [`neighbour`], [`link`], [`address`]) over one socket type
//! ([`Netlink`]), connection tracking over ctnetlink ([`conntrack`]), and network-namespace
//! entry ([`netns`]). Every request's ack is read and checked, every dump is complete or an
//! error ([`KernelError`]); callers never build netlink messages and never see a CNI type.
#![forbid(unsafe_code)]

pub mod address;
pub mod conntrack;
mod error;
pub mod link;
pub mod neighbour;
pub mod netns;
pub mod route;
pub mod rule;
mod socket;

pub use conntrack::Conntrack;
pub use error::{Cause, KernelError, Result};
pub use socket::Netlink;

pub use link::{IpvlanMode, IpvlanSpec, Link};
pub use route::{
    HostReject, LinkRoute, Lookup, MAIN_TABLE, RejectKind, RouteEntry, host_prefix, of_family,
};
pub use rule::{Rule, RuleKind};
