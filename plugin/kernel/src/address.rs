//! Interface addresses: adding one to a link, and listing a link's.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Cause, Result};
use crate::socket::Netlink;

impl Netlink {
    /// Adds an address with its prefix (IPv6 without duplicate address detection: the
    /// address is ours by IPAM, and DAD would hold it tentative). Returns `false` when the
    /// link already has it (EEXIST).
    pub fn add_address(&self, index: u32, addr: ipnetwork::IpNetwork) -> Result<bool> {
        let mut m = AddressMessage::default();
        m.header.index = index;
        m.header.prefix_len = addr.prefix();
        match addr.ip() {
            IpAddr::V4(ip) => {
                m.header.family = AddressFamily::Inet;
                m.attributes.push(AddressAttribute::Address(ip.into()));
                m.attributes.push(AddressAttribute::Local(ip.into()));
                if addr.prefix() < 31 {
                    let brd = u32::from(ip) | (u32::MAX >> addr.prefix());
                    m.attributes
                        .push(AddressAttribute::Broadcast(std::net::Ipv4Addr::from(brd)));
                }
            }
            IpAddr::V6(ip) => {
                m.header.family = AddressFamily::Inet6;
                m.header.flags |= AddressHeaderFlags::Nodad;
                m.attributes.push(AddressAttribute::Address(ip.into()));
                m.attributes.push(AddressAttribute::Local(ip.into()));
                m.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        match self.ack(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(Cause::Errno(libc::EEXIST)) => Ok(false),
            Err(c) => Err(c.on(format!("add address {addr} to link #{index}"))),
        }
    }

    /// The addresses of a link, with their prefixes (link-local ones included).
    pub fn addresses(&self, index: u32) -> Result<Vec<ipnetwork::IpNetwork>> {
        let op = || format!("dump addresses of link #{index}");
        let mut req = AddressMessage::default();
        req.header.index = index;
        let messages = self
            .dump(RouteNetlinkMessage::GetAddress(req))
            .map_err(|c| c.on(op()))?;
        let mut out = Vec::new();
        for m in messages {
            let RouteNetlinkMessage::NewAddress(m) = m else {
                continue;
            };
            if m.header.index != index {
                continue;
            }
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(addr) {
                let len = m.header.prefix_len;
                out.push(ipnetwork::IpNetwork::new(ip, len).map_err(|e| {
                    Cause::Malformed(format!("an address {ip}/{len}: {e}")).on(op())
                })?);
            }
        }
        Ok(out)
    }
}
