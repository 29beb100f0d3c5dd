//! Routes: the host reject routes (/32, /128) tombstones are made of, installed, deleted
//! and dumped by their full signature; the FIB lookup of one address; and the unicast link
//! routes of the IPvlan plugin.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Cause, KernelError, Result};
use crate::socket::Netlink;

/// The routing table named `main`.
pub const MAIN_TABLE: u32 = 254;

/// The kinds of route that drop traffic, as the kernel names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectKind {
    /// ICMP "host unreachable" (IPv4) / "no route" (IPv6): senders fail at once.
    Unreachable,
    /// Silently dropped.
    Blackhole,
    /// ICMP "administratively prohibited".
    Prohibit,
}

impl RejectKind {
    pub const ALL: [RejectKind; 3] = [
        RejectKind::Unreachable,
        RejectKind::Blackhole,
        RejectKind::Prohibit,
    ];

    fn route_type(self) -> RouteType {
        match self {
            RejectKind::Unreachable => RouteType::Unreachable,
            RejectKind::Blackhole => RouteType::BlackHole,
            RejectKind::Prohibit => RouteType::Prohibit,
        }
    }

    fn from_route_type(t: RouteType) -> Option<RejectKind> {
        match t {
            RouteType::Unreachable => Some(RejectKind::Unreachable),
            RouteType::BlackHole => Some(RejectKind::Blackhole),
            RouteType::Prohibit => Some(RejectKind::Prohibit),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Unreachable => "unreachable",
            RejectKind::Blackhole => "blackhole",
            RejectKind::Prohibit => "prohibit",
        }
    }

    pub fn parse(s: &str) -> Option<RejectKind> {
        RejectKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A host route (/32 or /128) that rejects traffic to one address. Its key in the kernel is
/// (address, table, metric); protocol and metric together say whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostReject {
    pub ip: IpAddr,
    pub kind: RejectKind,
    pub table: u32,
    pub protocol: u8,
    pub metric: u32,
}

/// A route as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: Option<IpAddr>,
    pub prefix_len: u8,
    pub table: u32,
    pub protocol: u8,
    pub metric: u32,
    /// The reject kind, for reject routes; `None` for any other type.
    pub reject: Option<RejectKind>,
}

impl RouteEntry {
    /// Whether this is the host route of `ip` (/32 or /128).
    pub fn is_host_route_of(&self, ip: IpAddr) -> bool {
        self.dst == Some(ip) && self.prefix_len == host_prefix(ip)
    }

    /// The reject host route this entry is, if it is one (a /32 or /128 of a reject type:
    /// such a route forwards nowhere; IPv6 reports it on `lo`).
    pub fn as_host_reject(&self) -> Option<HostReject> {
        let ip = self.dst?;
        let kind = self.reject?;
        (self.prefix_len == host_prefix(ip)).then_some(HostReject {
            ip,
            kind,
            table: self.table,
            protocol: self.protocol,
            metric: self.metric,
        })
    }
}

/// The addresses of one family, in their order.
pub fn of_family(ips: &[IpAddr], ipv6: bool) -> Vec<IpAddr> {
    ips.iter()
        .copied()
        .filter(|ip| ip.is_ipv6() == ipv6)
        .collect()
}

pub fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn family(ipv6: bool) -> AddressFamily {
    if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn set_table(msg: &mut RouteMessage, table: u32) {
    msg.header.table = if table <= 255 {
        table as u8
    } else {
        RouteHeader::RT_TABLE_UNSPEC
    };
    msg.attributes.push(RouteAttribute::Table(table));
}

fn address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn reject_message(r: &HostReject) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(r.ip.is_ipv6());
    msg.header.destination_prefix_length = host_prefix(r.ip);
    msg.header.protocol = RouteProtocol::from(r.protocol);
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = r.kind.route_type();
    msg.attributes
        .push(RouteAttribute::Destination(address(r.ip)));
    set_table(&mut msg, r.table);
    if r.metric != 0 {
        msg.attributes.push(RouteAttribute::Priority(r.metric));
    }
    msg
}

fn describe(r: &HostReject) -> String {
    format!(
        "{} route for {} (table {}, metric {})",
        r.kind.as_str(),
        r.ip,
        r.table,
        r.metric
    )
}

fn entry_from(m: RouteMessage) -> RouteEntry {
    let mut entry = RouteEntry {
        dst: None,
        prefix_len: m.header.destination_prefix_length,
        table: m.header.table as u32,
        protocol: m.header.protocol.into(),
        metric: 0,
        reject: RejectKind::from_route_type(m.header.kind),
    };
    for a in m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => entry.dst = Some(ip.into()),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => entry.dst = Some(ip.into()),
            RouteAttribute::Table(t) => entry.table = t,
            RouteAttribute::Priority(p) => entry.metric = p,
            _ => {}
        }
    }
    entry
}

impl Netlink {
    /// Installs each route, replacing one with the same key (idempotent), pipelined.
    pub fn replace_routes(&self, routes: &[HostReject]) -> Vec<Result<()>> {
        self.per_route(
            routes,
            "install",
            |r| {
                (
                    RouteNetlinkMessage::NewRoute(reject_message(r)),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            },
            |e| (e == 0).then_some(()),
        )
    }

    /// Sends one request per route, pipelined, and reads each answer with `answer` (`None`:
    /// the errno is a failure of that route).
    fn per_route<T>(
        &self,
        routes: &[HostReject],
        verb: &str,
        request: impl Fn(&HostReject) -> (RouteNetlinkMessage, u16),
        answer: impl Fn(i32) -> Option<T>,
    ) -> Vec<Result<T>> {
        match self.acked(routes.iter().map(request).collect()) {
            Ok(answers) => routes
                .iter()
                .zip(answers)
                .map(|(r, e)| {
                    answer(e).ok_or_else(|| Cause::Errno(e).on(format!("{verb} {}", describe(r))))
                })
                .collect(),
            Err(c) => batch_failed(routes, verb, c),
        }
    }

    /// Installs one route (see [`Self::replace_routes`]).
    pub fn replace_route(&self, r: &HostReject) -> Result<()> {
        self.replace_routes(std::slice::from_ref(r)).remove(0)
    }

    /// Deletes each route by its full key (address, table, metric) and protocol, whatever
    /// its kind, pipelined. `Ok(false)`: there was none. A route of another protocol or
    /// metric is never matched: the kernel compares a delete's non-zero protocol.
    pub fn delete_routes(&self, routes: &[HostReject]) -> Vec<Result<bool>> {
        self.per_route(
            routes,
            "delete",
            |r| {
                let mut msg = reject_message(r);
                msg.header.kind = RouteType::Unspec;
                msg.header.scope = RouteScope::NoWhere;
                (RouteNetlinkMessage::DelRoute(msg), 0)
            },
            |e| match e {
                0 => Some(true),
                libc::ESRCH | libc::ENOENT => Some(false),
                _ => None,
            },
        )
    }

    /// Deletes one route (see [`Self::delete_routes`]).
    pub fn delete_route(&self, r: &HostReject) -> Result<bool> {
        self.delete_routes(std::slice::from_ref(r)).remove(0)
    }

    /// Dumps the routes of one family, filtered by the kernel on table and protocol
    /// (`None`: any), and again here (old kernels filter less).
    pub fn dump_routes(
        &self,
        ipv6: bool,
        table: Option<u32>,
        protocol: Option<u8>,
    ) -> Result<Vec<RouteEntry>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(ipv6);
        msg.header.protocol = RouteProtocol::from(protocol.unwrap_or(0));
        msg.header.kind = RouteType::Unspec;
        msg.header.scope = RouteScope::Universe;
        msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
        if let Some(t) = table {
            set_table(&mut msg, t);
        }
        let op = || {
            format!(
                "dump IPv{} routes{}{}",
                if ipv6 { 6 } else { 4 },
                table.map_or(String::new(), |t| format!(" of table {t}")),
                protocol.map_or(String::new(), |p| format!(" of protocol {p}"))
            )
        };
        let messages = match self.dump(RouteNetlinkMessage::GetRoute(msg)) {
            Ok(m) => m,
            // A strict dump of a table that does not exist (yet) is refused: it has no routes.
            Err(Cause::Errno(libc::ENOENT)) if table.is_some() => vec![],
            Err(c) => return Err(c.on(op())),
        };
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let RouteNetlinkMessage::NewRoute(m) = m else {
                return Err(
                    Cause::Malformed("a route dump returned another object".into()).on(op()),
                );
            };
            let e = entry_from(m);
            if table.is_none_or(|t| e.table == t) && protocol.is_none_or(|p| e.protocol == p) {
                out.push(e);
            }
        }
        Ok(out)
    }
}

/// What a FIB lookup of one address found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The matching entry, with its prefix, table and protocol.
    Route(RouteEntry),
    /// A route that answers with an error instead of an entry: unreachable, prohibit,
    /// blackhole or throw (the kernel reports those lookups as EHOSTUNREACH, EACCES,
    /// EINVAL, EAGAIN).
    Rejected,
    /// Nothing matches (ENETUNREACH).
    NoRoute,
}

impl Netlink {
    /// The route the kernel would use for traffic from this host to `ip`, as `ip route get
    /// fibmatch` shows it: one FIB lookup through the policy rules, whatever the size of
    /// the tables (no dump).
    pub fn lookup_route(&self, ip: IpAddr) -> Result<Lookup> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(ip.is_ipv6());
        msg.header.destination_prefix_length = host_prefix(ip);
        msg.header.kind = RouteType::Unspec;
        msg.header.scope = RouteScope::Universe;
        // IPv4 names the matching entry's table only when asked (RTM_F_LOOKUP_TABLE); IPv6
        // always does, and its strict check refuses that flag with EINVAL, which would read
        // as a blackhole.
        msg.header.flags = if ip.is_ipv6() {
            RouteFlags::FibMatch
        } else {
            RouteFlags::FibMatch | RouteFlags::LookupTable
        };
        msg.attributes
            .push(RouteAttribute::Destination(address(ip)));
        let op = || format!("look up the route of {ip}");
        match self.get(RouteNetlinkMessage::GetRoute(msg)) {
            Ok(RouteNetlinkMessage::NewRoute(m)) => Ok(Lookup::Route(entry_from(m))),
            Ok(_) => {
                Err(Cause::Malformed("a route lookup returned another object".into()).on(op()))
            }
            Err(Cause::Errno(libc::ENETUNREACH)) => Ok(Lookup::NoRoute),
            Err(Cause::Errno(libc::EHOSTUNREACH | libc::EACCES | libc::EINVAL | libc::EAGAIN)) => {
                Ok(Lookup::Rejected)
            }
            Err(c) => Err(c.on(op())),
        }
    }
}

/// Every request of a batch whose exchange failed: its outcome is unknown.
fn batch_failed<T>(routes: &[HostReject], verb: &str, c: Cause) -> Vec<Result<T>> {
    routes
        .iter()
        .map(|r| {
            Err(KernelError::new(
                format!("{verb} {}", describe(r)),
                c.clone(),
            ))
        })
        .collect()
}

// ---- Unicast routes through a link (the IPvlan plugin's pod and host routes) ----

/// A unicast route through one link (main table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRoute {
    pub dst: ipnetwork::IpNetwork,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
}

impl Netlink {
    /// Adds a unicast route through a link in the main table. Returns `false` when it
    /// exists (EEXIST).
    pub fn add_link_route(&self, r: &LinkRoute) -> Result<bool> {
        let op = || format!("add route {} via link #{}", r.dst, r.oif);
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(r.dst.is_ipv6());
        msg.header.destination_prefix_length = r.dst.prefix();
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = RouteScope::Universe;
        set_table(&mut msg, MAIN_TABLE);
        msg.attributes
            .push(RouteAttribute::Destination(address(r.dst.network())));
        msg.attributes.push(RouteAttribute::Oif(r.oif));
        match r.gateway {
            Some(gw) if gw.is_ipv6() != r.dst.is_ipv6() => {
                return Err(Cause::Invalid(format!(
                    "gateway {gw} is not of the destination's family"
                ))
                .on(op()));
            }
            Some(gw) => msg.attributes.push(RouteAttribute::Gateway(address(gw))),
            None => msg.header.scope = RouteScope::Link,
        }
        match self.ack(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(Cause::Errno(libc::EEXIST)) => Ok(false),
            Err(c) => Err(c.on(op())),
        }
    }

    /// The unicast routes of the main table (both families), with their output link.
    pub fn link_routes(&self) -> Result<Vec<LinkRoute>> {
        let mut out = Vec::new();
        for ipv6 in [false, true] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family(ipv6);
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
            set_table(&mut msg, MAIN_TABLE);
            let op = || {
                format!(
                    "dump IPv{} routes of the main table",
                    if ipv6 { 6 } else { 4 }
                )
            };
            let messages = self
                .dump(RouteNetlinkMessage::GetRoute(msg))
                .map_err(|c| c.on(op()))?;
            for m in messages {
                let RouteNetlinkMessage::NewRoute(m) = m else {
                    continue;
                };
                if m.header.kind != RouteType::Unicast {
                    continue;
                }
                let mut table = m.header.table as u32;
                let mut dst = None;
                let mut gateway = None;
                let mut oif = 0;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                            dst = Some(IpAddr::V4(*ip))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                            dst = Some(IpAddr::V6(*ip))
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => {
                            gateway = Some(IpAddr::V4(*ip))
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => {
                            gateway = Some(IpAddr::V6(*ip))
                        }
                        RouteAttribute::Oif(i) => oif = *i,
                        RouteAttribute::Table(t) => table = *t,
                        _ => {}
                    }
                }
                if table != MAIN_TABLE {
                    continue;
                }
                let unspecified = if ipv6 {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                };
                let ip = dst.unwrap_or(unspecified);
                let len = m.header.destination_prefix_length;
                let dst = ipnetwork::IpNetwork::new(ip, len).map_err(|e| {
                    Cause::Malformed(format!("a route with prefix {ip}/{len}: {e}")).on(op())
                })?;
                out.push(LinkRoute { dst, gateway, oif });
            }
        }
        Ok(out)
    }

    /// The output link of the default route (IPv4 first, then IPv6), if there is one.
    pub fn default_route_link(&self) -> Result<Option<u32>> {
        let routes = self.link_routes()?;
        for v6 in [false, true] {
            if let Some(r) = routes
                .iter()
                .find(|r| r.dst.prefix() == 0 && r.dst.is_ipv6() == v6 && r.oif != 0)
            {
                return Ok(Some(r.oif));
            }
        }
        Ok(None)
    }
}
