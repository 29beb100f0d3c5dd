//! The seam between the verbs and the outside: what the verbs ask of the kernel
//! ([`Kernel`]) and where they get it and the time from ([`Edges`]). The real edges are a
//! netlink connection and the system clock; tests put a recording fake in their place to
//! check the ordering rules without root.

use std::net::IpAddr;

use tombstone_kernel::{Conntrack, HostReject, Lookup, Netlink, Result, RouteEntry};

/// The kernel operations the tombstone verbs make, with the real facade's semantics.
pub trait Kernel {
    fn replace_routes(&self, routes: &[HostReject]) -> Vec<Result<()>>;
    fn delete_routes(&self, routes: &[HostReject]) -> Vec<Result<bool>>;
    fn dump_routes(
        &self,
        ipv6: bool,
        table: Option<u32>,
        protocol: Option<u8>,
    ) -> Result<Vec<RouteEntry>>;
    fn flush_neighbours(&self, ips: &[IpAddr]) -> Result<usize>;
    /// Deletes the conntrack entries of `ips` (see [`Conntrack::flush`]).
    fn flush_conntrack(&self, ips: &[IpAddr]) -> Result<usize>;
    /// The route the kernel would use for `ip` (see [`Netlink::lookup_route`]).
    fn lookup_route(&self, ip: IpAddr) -> Result<Lookup>;
}

impl Kernel for Netlink {
    fn replace_routes(&self, routes: &[HostReject]) -> Vec<Result<()>> {
        Netlink::replace_routes(self, routes)
    }
    fn delete_routes(&self, routes: &[HostReject]) -> Vec<Result<bool>> {
        Netlink::delete_routes(self, routes)
    }
    fn dump_routes(
        &self,
        ipv6: bool,
        table: Option<u32>,
        protocol: Option<u8>,
    ) -> Result<Vec<RouteEntry>> {
        Netlink::dump_routes(self, ipv6, table, protocol)
    }
    fn flush_neighbours(&self, ips: &[IpAddr]) -> Result<usize> {
        Netlink::flush_neighbours(self, ips)
    }
    /// Over a ctnetlink connection of its own, opened in the calling thread's namespace
    /// (the one the routing connection was opened in: the verbs never change it).
    fn flush_conntrack(&self, ips: &[IpAddr]) -> Result<usize> {
        Conntrack::open()?.flush(ips)
    }
    fn lookup_route(&self, ip: IpAddr) -> Result<Lookup> {
        Netlink::lookup_route(self, ip)
    }
}

/// Opens a kernel connection.
pub type OpenKernel = Box<dyn Fn() -> Result<Box<dyn Kernel>>>;

/// Where the verbs get the kernel and the time.
pub struct Edges {
    pub kernel: OpenKernel,
    /// Milliseconds since the Unix epoch.
    pub now_ms: Box<dyn Fn() -> u64>,
}

impl Edges {
    /// A netlink connection in the calling thread's namespace, and the system clock.
    pub fn real() -> Edges {
        Edges {
            kernel: Box::new(|| Ok(Box::new(Netlink::open()?) as Box<dyn Kernel>)),
            now_ms: Box::new(super::now_ms),
        }
    }
}
