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

// ---- Links, addresses and routes of a namespace (for the IPvlan main plugin) ----

const EEXIST: i32 = nix::libc::EEXIST;
const ENODEV: i32 = nix::libc::ENODEV;

/// IPvlan modes. The mode belongs to the master's IPvlan port: every slave of one master
/// shares it (the last slave created sets it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanMode {
    L2,
    L3,
    L3s,
}

impl IpvlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        }
    }

    fn to_kernel(self) -> rtnetlink::packet_route::link::IpVlanMode {
        use rtnetlink::packet_route::link::IpVlanMode as K;
        match self {
            IpvlanMode::L2 => K::L2,
            IpvlanMode::L3 => K::L3,
            IpvlanMode::L3s => K::L3S,
        }
    }
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    pub mtu: u32,
    pub mac: Option<Vec<u8>>,
    /// `ipvlan`, `dummy`, ...; `None` for links without a kind (physical NICs, `lo`).
    pub kind: Option<String>,
    pub ipvlan_mode: Option<IpvlanMode>,
    /// The lower link's index (`IFLA_LINK`), in the namespace the link was created in.
    pub parent: Option<u32>,
}

/// An IPvlan slave to create.
#[derive(Debug, Clone)]
pub struct IpvlanSpec<'a> {
    pub name: &'a str,
    pub master: u32,
    pub mode: IpvlanMode,
    pub mtu: Option<u32>,
    /// Create it directly inside this namespace (`IFLA_NET_NS_FD`) instead of this
    /// connection's.
    pub netns_fd: Option<std::os::fd::RawFd>,
}

/// A unicast route through one link (main table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRoute {
    pub dst: ipnetwork::IpNetwork,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
}

fn link_from(m: rtnetlink::packet_route::link::LinkMessage) -> Link {
    use rtnetlink::packet_route::link::{
        InfoData, InfoIpVlan, InfoKind, LinkAttribute, LinkFlags, LinkInfo,
    };
    let mut l = Link {
        index: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        ..Link::default()
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Mtu(v) => l.mtu = v,
            LinkAttribute::Address(mac) => l.mac = Some(mac),
            LinkAttribute::Link(p) => l.parent = Some(p),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(InfoKind::IpVlan) => l.kind = Some("ipvlan".into()),
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::IpVlan(d)) => {
                            use rtnetlink::packet_route::link::IpVlanMode as K;
                            for x in d {
                                if let InfoIpVlan::Mode(m) = x {
                                    l.ipvlan_mode = match m {
                                        K::L2 => Some(IpvlanMode::L2),
                                        K::L3 => Some(IpvlanMode::L3),
                                        K::L3S => Some(IpvlanMode::L3s),
                                        _ => None,
                                    };
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn prefix_of(ip: IpAddr, len: u8) -> Result<ipnetwork::IpNetwork> {
    ipnetwork::IpNetwork::new(ip, len)
        .map_err(|e| CniError::netlink(format!("kernel reported a bad prefix {ip}/{len}: {e}")))
}

impl Netlink {
    fn get_link(&self, req: rtnetlink::LinkGetRequest, what: &str) -> Result<Option<Link>> {
        let mut stream = req.execute();
        match self.rt.block_on(stream.try_next()) {
            Ok(Some(m)) => Ok(Some(link_from(m))),
            Ok(None) => Ok(None),
            Err(e) if matches!(errno(&e), Some(ENODEV) | Some(ENOENT)) => Ok(None),
            Err(e) => Err(nl_err(format_args!("get link {what}"), e)),
        }
    }

    /// The link of that name in this connection's namespace, if any.
    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        self.get_link(self.handle.link().get().match_name(name), name)
    }

    /// The link of that index, if any.
    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        self.get_link(
            self.handle.link().get().match_index(index),
            &format!("#{index}"),
        )
    }

    /// Creates an IPvlan slave. Returns `false` when a link of that name already exists
    /// (EEXIST), which callers that race (the gateway port) tolerate.
    pub fn create_ipvlan(&self, spec: &IpvlanSpec<'_>) -> Result<bool> {
        let mut b = rtnetlink::LinkIpVlan::new(spec.name, spec.master, spec.mode.to_kernel());
        if let Some(mtu) = spec.mtu {
            b = b.mtu(mtu);
        }
        if let Some(fd) = spec.netns_fd {
            b = b.setns_by_fd(fd);
        }
        match self
            .rt
            .block_on(self.handle.link().add(b.build()).execute())
        {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(false),
            Err(e) => Err(nl_err(format_args!("create ipvlan link {}", spec.name), e)),
        }
    }

    /// Renames a (down) link. Returns `false` when the name is taken (EEXIST).
    pub fn rename_link(&self, index: u32, name: &str) -> Result<bool> {
        let msg = rtnetlink::LinkUnspec::new_with_index(index)
            .name(name)
            .build();
        match self.rt.block_on(self.handle.link().set(msg).execute()) {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(false),
            Err(e) => Err(nl_err(format_args!("rename link #{index} to {name}"), e)),
        }
    }

    /// Sets the link administratively up (idempotent).
    pub fn set_link_up(&self, index: u32) -> Result<()> {
        let msg = rtnetlink::LinkUnspec::new_with_index(index).up().build();
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(|e| nl_err(format_args!("set link #{index} up"), e))
    }

    /// Deletes the link. Returns whether it existed.
    pub fn delete_link(&self, index: u32) -> Result<bool> {
        match self.rt.block_on(self.handle.link().del(index).execute()) {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno(&e), Some(ENODEV) | Some(ENOENT)) => Ok(false),
            Err(e) => Err(nl_err(format_args!("delete link #{index}"), e)),
        }
    }

    /// Adds an address with its prefix (IPv6 without duplicate address detection: the
    /// address is ours by IPAM, and DAD would hold it tentative). Returns `false` when the
    /// link already has it (EEXIST).
    pub fn add_address(&self, index: u32, addr: ipnetwork::IpNetwork) -> Result<bool> {
        use rtnetlink::packet_route::address::{
            AddressAttribute, AddressFlags, AddressHeaderFlags,
        };
        let mut req = self.handle.address().add(index, addr.ip(), addr.prefix());
        if addr.is_ipv6() {
            let m = req.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match self.rt.block_on(req.execute()) {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(false),
            Err(e) => Err(nl_err(
                format_args!("add address {addr} to link #{index}"),
                e,
            )),
        }
    }

    /// The addresses of a link, with their prefixes (link-local ones included).
    pub fn addresses(&self, index: u32) -> Result<Vec<ipnetwork::IpNetwork>> {
        use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
        let msgs: Vec<AddressMessage> = self
            .rt
            .block_on(
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect(),
            )
            .map_err(|e| nl_err(format_args!("dump addresses of link #{index}"), e))?;
        let mut out = Vec::new();
        for m in msgs.into_iter().filter(|m| m.header.index == index) {
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(addr) {
                out.push(prefix_of(ip, m.header.prefix_len)?);
            }
        }
        Ok(out)
    }

    /// Adds a unicast route through a link in the main table. Returns `false` when it
    /// exists (EEXIST).
    pub fn add_link_route(&self, r: &LinkRoute) -> Result<bool> {
        let msg = match (r.dst, r.gateway) {
            (ipnetwork::IpNetwork::V4(d), gw) => {
                let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .destination_prefix(d.network(), d.prefix())
                    .output_interface(r.oif);
                match gw {
                    Some(IpAddr::V4(g)) => b = b.gateway(g),
                    Some(IpAddr::V6(_)) => {
                        return Err(CniError::config(format!("route {}: IPv6 gateway", r.dst)));
                    }
                    None => b = b.scope(RouteScope::Link),
                }
                b.build()
            }
            (ipnetwork::IpNetwork::V6(d), gw) => {
                let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .destination_prefix(d.network(), d.prefix())
                    .output_interface(r.oif);
                match gw {
                    Some(IpAddr::V6(g)) => b = b.gateway(g),
                    Some(IpAddr::V4(_)) => {
                        return Err(CniError::config(format!("route {}: IPv4 gateway", r.dst)));
                    }
                    None => b = b.scope(RouteScope::Link),
                }
                b.build()
            }
        };
        match self.rt.block_on(self.handle.route().add(msg).execute()) {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(false),
            Err(e) => Err(nl_err(
                format_args!("add route {} via link #{}", r.dst, r.oif),
                e,
            )),
        }
    }

    /// The unicast routes of the main table (both families), with their output link.
    pub fn link_routes(&self) -> Result<Vec<LinkRoute>> {
        let mut out = Vec::new();
        for ipv6 in [false, true] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = if ipv6 {
                AddressFamily::Inet6
            } else {
                AddressFamily::Inet
            };
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
            let routes: Vec<RouteMessage> = self
                .rt
                .block_on(self.handle.route().get(msg).execute().try_collect())
                .map_err(|e| nl_err("dump routes", e))?;
            for m in routes {
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
                out.push(LinkRoute {
                    dst: prefix_of(
                        dst.unwrap_or(unspecified),
                        m.header.destination_prefix_length,
                    )?,
                    gateway,
                    oif,
                });
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
