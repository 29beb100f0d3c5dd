//! Neighbour entries (ARP and NDP): deleting every entry of an address, on every device,
//! whatever its state.

use std::net::IpAddr;

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Cause, Result};
use crate::socket::Netlink;

fn family(ipv6: bool) -> AddressFamily {
    if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

impl Netlink {
    /// Deletes every neighbour entry for each of `ips` on every device, whatever its state
    /// (PERMANENT and NOARP included, which `ip neigh flush` would skip): one dump per
    /// family, then one RTM_DELNEIGH per entry, pipelined. Returns how many were removed.
    pub fn flush_neighbours(&self, ips: &[IpAddr]) -> Result<usize> {
        let mut removed = 0;
        for ipv6 in [false, true] {
            let wanted = crate::route::of_family(ips, ipv6);
            if wanted.is_empty() {
                continue;
            }
            let op = format!("dump IPv{} neighbours", if ipv6 { 6 } else { 4 });
            let mut req = NeighbourMessage::default();
            req.header.family = family(ipv6);
            let entries = self
                .dump(RouteNetlinkMessage::GetNeighbour(req))
                .map_err(|c| c.on(op))?;
            let mut doomed = Vec::new();
            for m in entries {
                let RouteNetlinkMessage::NewNeighbour(entry) = m else {
                    continue;
                };
                if entry.header.flags.contains(NeighbourFlags::Proxy) {
                    continue;
                }
                let Some(ip) = entry.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        Some(IpAddr::V4(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        Some(IpAddr::V6(*a))
                    }
                    _ => None,
                }) else {
                    continue;
                };
                if wanted.contains(&ip) {
                    doomed.push((ip, entry.header.ifindex));
                }
            }
            let requests = doomed
                .iter()
                .map(|&(ip, ifindex)| {
                    let mut del = NeighbourMessage::default();
                    del.header.family = family(ipv6);
                    del.header.ifindex = ifindex;
                    del.attributes
                        .push(NeighbourAttribute::Destination(neighbour_address(ip)));
                    (RouteNetlinkMessage::DelNeighbour(del), 0)
                })
                .collect();
            let answers = self
                .acked(requests)
                .map_err(|c| c.on(format!("delete {} neighbour entries", doomed.len())))?;
            for ((ip, ifindex), e) in doomed.iter().zip(answers) {
                match e {
                    0 => removed += 1,
                    // Gone meanwhile (aged out, or its device went away): that is the goal.
                    libc::ENOENT | libc::ESRCH | libc::ENODEV => {}
                    e => {
                        return Err(Cause::Errno(e)
                            .on(format!("delete neighbour {ip} on ifindex {ifindex}")));
                    }
                }
            }
        }
        Ok(removed)
    }
}
