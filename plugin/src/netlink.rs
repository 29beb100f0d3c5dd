//! The one netlink facade: a blocking surface over rtnetlink (a current-thread tokio runtime
//! inside). Callers name routes and neighbours by what they are; nobody else builds messages.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::cni::{CniError, Result};

const ESRCH: i32 = nix::libc::ESRCH;
const ENOENT: i32 = nix::libc::ENOENT;

/// The routing table named `main`.
pub const MAIN_TABLE: u32 = 254;

/// The kinds of route that drop traffic, as the kernel names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectKind {
    /// ICMP "host unreachable" (IPv4) / "no route" (IPv6): senders fail at once.
    Unreachable,
    /// Silently dropped.
    Blackhole,
    /// ICMP "administratively prohibited".
    Prohibit,
}

impl RejectKind {
    fn route_type(self) -> RouteType {
        match self {
            RejectKind::Unreachable => RouteType::Unreachable,
            RejectKind::Blackhole => RouteType::BlackHole,
            RejectKind::Prohibit => RouteType::Prohibit,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Unreachable => "unreachable",
            RejectKind::Blackhole => "blackhole",
            RejectKind::Prohibit => "prohibit",
        }
    }
}

/// A host route (/32 or /128) that rejects traffic to one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostReject {
    pub ip: IpAddr,
    pub kind: RejectKind,
    pub table: u32,
    pub protocol: u8,
}

/// A route as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: Option<IpAddr>,
    pub prefix_len: u8,
    pub table: u32,
    pub protocol: u8,
    pub kind: u8,
}

impl RouteEntry {
    /// Whether this is the host route of `ip` (/32 or /128).
    pub fn is_host_route_of(&self, ip: IpAddr) -> bool {
        self.dst == Some(ip) && self.prefix_len == host_prefix(ip)
    }
}

pub fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// A connection to the kernel's routing netlink, in the network namespace it was opened in.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn nl_err(what: impl std::fmt::Display, e: rtnetlink::Error) -> CniError {
    CniError::netlink(format!("{what}: {e}"))
}

impl Netlink {
    /// Opens a strict-checking connection (the kernel filters dumps on header fields).
    pub fn open() -> Result<Netlink> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| CniError::netlink(format!("cannot start netlink runtime: {e}")))?;
        let handle = rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection_with_strict_check()?;
            tokio::spawn(conn);
            Ok::<_, std::io::Error>(handle)
        });
        let handle = handle.map_err(|e| CniError::netlink(format!("cannot open netlink: {e}")))?;
        Ok(Netlink { rt, handle })
    }

    fn message(r: &HostReject) -> RouteMessage {
        let mut msg = match r.ip {
            IpAddr::V4(ip) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(ip, 32)
                .table_id(r.table)
                .protocol(RouteProtocol::from(r.protocol))
                .kind(r.kind.route_type())
                .build(),
            IpAddr::V6(ip) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(ip, 128)
                .table_id(r.table)
                .protocol(RouteProtocol::from(r.protocol))
                .kind(r.kind.route_type())
                .build(),
        };
        msg.header.scope = RouteScope::Universe;
        msg
    }

    /// Installs the route, replacing one with the same key (idempotent).
    pub fn replace_route(&self, r: &HostReject) -> Result<()> {
        let msg = Self::message(r);
        self.rt
            .block_on(self.handle.route().add(msg).replace().execute())
            .map_err(|e| {
                nl_err(
                    format_args!("install {} route for {}", r.kind.as_str(), r.ip),
                    e,
                )
            })
    }

    /// Deletes the route of our protocol for the address in the table, whatever its kind.
    /// Returns whether one existed. A route of another protocol is never matched: the
    /// kernel compares the protocol of a delete request when it is non-zero.
    pub fn delete_route(&self, r: &HostReject) -> Result<bool> {
        self.delete_routes(std::slice::from_ref(r)).remove(0)
    }

    /// Deletes many routes at once, pipelined on the one socket (a sweep of thousands would
    /// otherwise pay a round trip each). Same per-route semantics as [`Self::delete_route`].
    pub fn delete_routes(&self, routes: &[HostReject]) -> Vec<Result<bool>> {
        use futures::StreamExt;
        let requests = routes.iter().map(|r| {
            let mut msg = Self::message(r);
            msg.header.kind = RouteType::Unspec;
            msg.header.scope = RouteScope::NoWhere;
            let ip = r.ip;
            let req = self.handle.route().del(msg);
            async move {
                match req.execute().await {
                    Ok(()) => Ok(true),
                    Err(e) if matches!(errno(&e), Some(ESRCH) | Some(ENOENT)) => Ok(false),
                    Err(e) => Err(nl_err(format_args!("delete route for {ip}"), e)),
                }
            }
        });
        self.rt
            .block_on(futures::stream::iter(requests).buffered(128).collect())
    }

    /// Dumps the routes of one family, filtered by the kernel on table and protocol
    /// (`None`: any).
    pub fn dump_routes(
        &self,
        ipv6: bool,
        table: Option<u32>,
        protocol: Option<u8>,
    ) -> Result<Vec<RouteEntry>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        msg.header.protocol = RouteProtocol::from(protocol.unwrap_or(0));
        msg.header.kind = RouteType::Unspec;
        msg.header.scope = RouteScope::Universe;
        match table {
            Some(t) if t <= 255 => msg.header.table = t as u8,
            Some(t) => {
                msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
                msg.attributes.push(RouteAttribute::Table(t));
            }
            None => msg.header.table = RouteHeader::RT_TABLE_UNSPEC,
        }
        let routes: Vec<RouteMessage> = self
            .rt
            .block_on(self.handle.route().get(msg).execute().try_collect())
            .map_err(|e| nl_err("dump routes", e))?;
        Ok(routes
            .into_iter()
            .map(|m| {
                let mut entry = RouteEntry {
                    dst: None,
                    prefix_len: m.header.destination_prefix_length,
                    table: m.header.table as u32,
                    protocol: m.header.protocol.into(),
                    kind: m.header.kind.into(),
                };
                for a in m.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                            entry.dst = Some(ip.into())
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                            entry.dst = Some(ip.into())
                        }
                        RouteAttribute::Table(t) => entry.table = t,
                        _ => {}
                    }
                }
                entry
            })
            // Strict checking filters what it can; keep the filter honest on old kernels.
            .filter(|e| table.is_none_or(|t| e.table == t))
            .filter(|e| protocol.is_none_or(|p| e.protocol == p))
            .collect())
    }

    /// Deletes every neighbour entry (ARP or NDP) for `ip` on every device, whatever its
    /// state (PERMANENT and NOARP included, which `ip neigh flush` would skip), one
    /// RTM_DELNEIGH per entry. Returns how many were removed.
    pub fn flush_neighbours(&self, ip: IpAddr) -> Result<usize> {
        let family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let entries: Vec<NeighbourMessage> = self
            .rt
            .block_on(
                self.handle
                    .neighbours()
                    .get()
                    .set_address_family(family)
                    .execute()
                    .try_collect(),
            )
            .map_err(|e| nl_err("dump neighbours", e))?;
        let mut removed = 0;
        for entry in entries {
            let matches = entry.attributes.iter().any(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => IpAddr::V4(*a) == ip,
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => IpAddr::V6(*a) == ip,
                _ => false,
            });
            if !matches || entry.header.flags.contains(NeighbourFlags::Proxy) {
                continue;
            }
            let mut del = NeighbourMessage::default();
            del.header.family = family;
            del.header.ifindex = entry.header.ifindex;
            del.attributes
                .push(NeighbourAttribute::Destination(match ip {
                    IpAddr::V4(a) => NeighbourAddress::Inet(a),
                    IpAddr::V6(a) => NeighbourAddress::Inet6(a),
                }));
            match self
                .rt
                .block_on(self.handle.neighbours().del(del).execute())
            {
                Ok(()) => removed += 1,
                // Gone meanwhile (aged out, or its device went away): that is the goal.
                Err(e) if matches!(errno(&e), Some(ENOENT) | Some(ESRCH) | Some(19)) => {}
                Err(e) => {
                    return Err(nl_err(
                        format_args!("delete neighbour {ip} on ifindex {}", entry.header.ifindex),
                        e,
                    ));
                }
            }
        }
        Ok(removed)
    }
}
