//! A recording fake of the kernel, for unit tests of the verbs' ordering rules without
//! root: routes live in memory, every request is counted (one per route, dump or flush),
//! any request can be made to fail by its index, and a hook sees each request before it
//! is applied (to look at the ledger on disk at that moment). Never used by the binaries.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::rc::Rc;

use super::port::{Edges, Kernel};
use tombstone_kernel::{Cause, HostReject, KernelError, Lookup, RejectKind, Result, RouteEntry};

fn kernel_error(op: &str) -> KernelError {
    KernelError::new(op, Cause::Errno(5))
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Replace(HostReject),
    Delete(HostReject),
    Dump { ipv6: bool },
    Flush(Vec<IpAddr>),
    FlushConntrack(Vec<IpAddr>),
    Lookup(IpAddr),
}

type Hook = Box<dyn FnMut(&Call)>;

#[derive(Default)]
pub struct State {
    /// Our routes: (ip, table, metric) -> kind and protocol.
    pub routes: BTreeSet<(IpAddr, u32, u32, u8, RejectKind)>,
    /// Routes of other protocols (an operator's), reported by dumps and lookups, never
    /// touched.
    pub foreign: Vec<RouteEntry>,
    pub calls: Vec<Call>,
    /// Fail the request with this index (0-based, counting every request).
    pub fail_at: Option<usize>,
    pub hook: Option<Hook>,
    pub now_ms: u64,
}

impl State {
    /// Our routes as a dump reports them.
    fn entries(&self) -> impl Iterator<Item = RouteEntry> + '_ {
        self.routes.iter().map(|&(ip, t, m, p, k)| RouteEntry {
            dst: Some(ip),
            prefix_len: tombstone_kernel::host_prefix(ip),
            table: t,
            protocol: p,
            metric: m,
            reject: Some(k),
        })
    }
}

/// The fake, shared between the test and the plugin it is given to.
#[derive(Clone, Default)]
pub struct Fake(pub Rc<RefCell<State>>);

impl Fake {
    pub fn edges(&self) -> Edges {
        let k = self.clone();
        let c = self.clone();
        Edges {
            kernel: Box::new(move || Ok(Box::new(k.clone()) as Box<dyn Kernel>)),
            now_ms: Box::new(move || c.0.borrow().now_ms),
        }
    }

    /// Records the call, runs the hook, and says whether it fails.
    fn call(&self, call: Call) -> bool {
        let mut hook = self.0.borrow_mut().hook.take();
        if let Some(h) = hook.as_mut() {
            h(&call);
        }
        let mut s = self.0.borrow_mut();
        s.hook = hook;
        let index = s.calls.len();
        s.calls.push(call);
        s.fail_at == Some(index)
    }

    pub fn count(&self) -> usize {
        self.0.borrow().calls.len()
    }

    /// Our routes as (ip, table, metric).
    pub fn keys(&self) -> BTreeSet<(IpAddr, u32, u32)> {
        self.0
            .borrow()
            .routes
            .iter()
            .map(|&(ip, t, m, _, _)| (ip, t, m))
            .collect()
    }
}

impl Kernel for Fake {
    fn replace_routes(&self, routes: &[HostReject]) -> Vec<Result<()>> {
        routes
            .iter()
            .map(|r| {
                if self.call(Call::Replace(*r)) {
                    return Err(kernel_error("install route"));
                }
                let mut s = self.0.borrow_mut();
                s.routes
                    .retain(|&(ip, t, m, _, _)| (ip, t, m) != (r.ip, r.table, r.metric));
                s.routes
                    .insert((r.ip, r.table, r.metric, r.protocol, r.kind));
                Ok(())
            })
            .collect()
    }

    fn delete_routes(&self, routes: &[HostReject]) -> Vec<Result<bool>> {
        routes
            .iter()
            .map(|r| {
                if self.call(Call::Delete(*r)) {
                    return Err(kernel_error("delete route"));
                }
                let mut s = self.0.borrow_mut();
                let before = s.routes.len();
                s.routes.retain(|&(ip, t, m, p, _)| {
                    (ip, t, m, p) != (r.ip, r.table, r.metric, r.protocol)
                });
                Ok(s.routes.len() != before)
            })
            .collect()
    }

    fn dump_routes(
        &self,
        ipv6: bool,
        table: Option<u32>,
        protocol: Option<u8>,
    ) -> Result<Vec<RouteEntry>> {
        if self.call(Call::Dump { ipv6 }) {
            return Err(kernel_error("dump routes"));
        }
        let s = self.0.borrow();
        let ours = s.entries();
        Ok(ours
            .chain(s.foreign.iter().cloned())
            .filter(|r| r.dst.is_some_and(|d| d.is_ipv6() == ipv6))
            .filter(|r| table.is_none_or(|t| r.table == t))
            .filter(|r| protocol.is_none_or(|p| r.protocol == p))
            .collect())
    }

    fn flush_neighbours(&self, ips: &[IpAddr]) -> Result<usize> {
        if self.call(Call::Flush(ips.to_vec())) {
            return Err(kernel_error("flush neighbours"));
        }
        Ok(0)
    }

    fn flush_conntrack(&self, ips: &[IpAddr]) -> Result<usize> {
        if self.call(Call::FlushConntrack(ips.to_vec())) {
            return Err(kernel_error("flush conntrack entries"));
        }
        Ok(0)
    }

    /// A FIB lookup over host routes only: the lowest metric wins; a reject route answers
    /// nothing, as the kernel's does.
    fn lookup_route(&self, ip: IpAddr) -> Result<Lookup> {
        if self.call(Call::Lookup(ip)) {
            return Err(kernel_error("look up route"));
        }
        let s = self.0.borrow();
        let ours = s.entries();
        let best = ours
            .chain(s.foreign.iter().cloned())
            .filter(|r| r.is_host_route_of(ip))
            .min_by_key(|r| r.metric);
        Ok(match best {
            None => Lookup::NoRoute,
            Some(r) if r.reject.is_some() => Lookup::Rejected,
            Some(r) => Lookup::Route(r),
        })
    }
}
