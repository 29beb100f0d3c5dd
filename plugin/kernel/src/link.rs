//! Links: looking one up, creating IPvlan slaves (directly inside a target namespace),
//! renaming, setting up and deleting.

use std::os::fd::RawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, IpVlanMode as KernelMode, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};

use crate::error::{Cause, Result};
use crate::socket::Netlink;

/// IPvlan modes. The mode belongs to the master's IPvlan port: every slave of one master
/// shares it (the last slave created sets it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    fn to_kernel(self) -> KernelMode {
        match self {
            IpvlanMode::L2 => KernelMode::L2,
            IpvlanMode::L3 => KernelMode::L3,
            IpvlanMode::L3s => KernelMode::L3S,
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
    pub netns_fd: Option<RawFd>,
}

fn link_from(m: LinkMessage) -> Link {
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
                            for x in d {
                                if let InfoIpVlan::Mode(m) = x {
                                    l.ipvlan_mode = match m {
                                        KernelMode::L2 => Some(IpvlanMode::L2),
                                        KernelMode::L3 => Some(IpvlanMode::L3),
                                        KernelMode::L3S => Some(IpvlanMode::L3s),
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

impl Netlink {
    fn get_link(&self, req: LinkMessage, what: &str) -> Result<Option<Link>> {
        match self.get(RouteNetlinkMessage::GetLink(req)) {
            Ok(RouteNetlinkMessage::NewLink(m)) => Ok(Some(link_from(m))),
            Ok(_) => Err(
                Cause::Malformed("a link request answered with another object".into())
                    .on(format!("get link {what}")),
            ),
            Err(Cause::Errno(libc::ENODEV | libc::ENOENT)) => Ok(None),
            Err(c) => Err(c.on(format!("get link {what}"))),
        }
    }

    /// The link of that name in this connection's namespace, if any.
    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let mut req = LinkMessage::default();
        req.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(req, name)
    }

    /// The link of that index, if any.
    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        let mut req = LinkMessage::default();
        req.header.index = index;
        self.get_link(req, &format!("#{index}"))
    }

    /// Creates an IPvlan slave. Returns `false` when a link of that name already exists
    /// (EEXIST), which callers that race (the gateway port) tolerate.
    pub fn create_ipvlan(&self, spec: &IpvlanSpec<'_>) -> Result<bool> {
        let mut m = LinkMessage::default();
        m.attributes
            .push(LinkAttribute::IfName(spec.name.to_string()));
        m.attributes.push(LinkAttribute::Link(spec.master));
        if let Some(mtu) = spec.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(fd) = spec.netns_fd {
            m.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::IpVlan),
            LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(
                spec.mode.to_kernel(),
            )])),
        ]));
        match self.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(()) => Ok(true),
            Err(Cause::Errno(libc::EEXIST)) => Ok(false),
            Err(c) => Err(c.on(format!("create ipvlan link {}", spec.name))),
        }
    }

    /// Renames a (down) link. Returns `false` when the name is taken (EEXIST).
    pub fn rename_link(&self, index: u32, name: &str) -> Result<bool> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.ack(RouteNetlinkMessage::SetLink(m), 0) {
            Ok(()) => Ok(true),
            Err(Cause::Errno(libc::EEXIST)) => Ok(false),
            Err(c) => Err(c.on(format!("rename link #{index} to {name}"))),
        }
    }

    /// Sets the link administratively up (idempotent).
    pub fn set_link_up(&self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags |= LinkFlags::Up;
        m.header.change_mask |= LinkFlags::Up;
        self.ack(RouteNetlinkMessage::SetLink(m), 0)
            .map_err(|c| c.on(format!("set link #{index} up")))
    }

    /// Deletes the link. Returns whether it existed.
    pub fn delete_link(&self, index: u32) -> Result<bool> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.ack(RouteNetlinkMessage::DelLink(m), 0) {
            Ok(()) => Ok(true),
            Err(Cause::Errno(libc::ENODEV | libc::ENOENT)) => Ok(false),
            Err(c) => Err(c.on(format!("delete link #{index}"))),
        }
    }
}
