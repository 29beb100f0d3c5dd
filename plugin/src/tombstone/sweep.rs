//! Kernel work on ledgers that both the CNI verbs and `tombstone sweep` do: ending expired
//! tombstones, dropping ledger entries whose routes are gone, removing orphan routes.

use std::collections::HashSet;
use std::net::IpAddr;

use super::ROUTE_PROTOCOL;
use super::ledger::{Ledger, Tombstone};
use crate::cni::{Attachment, Result};
use crate::netlink::{HostReject, Netlink};

/// The (address, table) of every host route with our protocol, both families.
pub fn our_routes(nl: &Netlink, v4: bool, v6: bool) -> Result<HashSet<(IpAddr, u32)>> {
    let mut out = HashSet::new();
    for (wanted, ipv6) in [(v4, false), (v6, true)] {
        if !wanted {
            continue;
        }
        for r in nl.dump_routes(ipv6, None, Some(ROUTE_PROTOCOL))? {
            if let Some(dst) = r.dst
                && r.is_host_route_of(dst)
            {
                out.insert((dst, r.table));
            }
        }
    }
    Ok(out)
}

pub fn routes_of(t: &Tombstone) -> impl Iterator<Item = HostReject> + '_ {
    t.tables.iter().map(|&table| HostReject {
        ip: t.ip,
        kind: t.route_type,
        table,
        protocol: ROUTE_PROTOCOL,
    })
}

/// Deletes the routes of tombstones whose hold has ended and drops them from the ledger.
/// A tombstone whose route could not be deleted stays (and is logged) for the next sweep.
/// Returns how many ended.
pub fn end_expired(nl: &Netlink, ledger: &mut Ledger, now_ms: u64) -> usize {
    let expired: Vec<Tombstone> = ledger.expired(now_ms).cloned().collect();
    if expired.is_empty() {
        return 0;
    }
    let routes: Vec<HostReject> = expired.iter().flat_map(routes_of).collect();
    let results = nl.delete_routes(&routes);
    let mut failed = HashSet::new();
    for (r, res) in routes.iter().zip(results) {
        if let Err(e) = res {
            log::warn!(
                "network {}: tombstone of {} not ended yet: {e}",
                ledger.network,
                r.ip
            );
            failed.insert(r.ip);
        }
    }
    let done: Vec<IpAddr> = expired
        .iter()
        .map(|t| t.ip)
        .filter(|ip| !failed.contains(ip))
        .collect();
    ledger.lift(&done);
    log::debug!(
        "network {}: {} tombstones ended",
        ledger.network,
        done.len()
    );
    done.len()
}

/// Makes the ledger tell the truth about the kernel: a table whose route is gone (a crash
/// between the ledger write and the route install, or an operator's `ip route del`) leaves
/// the entry; an entry with no table left is dropped. Entries of `spare` are left as they
/// are: that attachment's DEL is running and finishes them. Returns how many were dropped.
pub fn reconcile(
    ledger: &mut Ledger,
    present: &HashSet<(IpAddr, u32)>,
    spare: Option<&Attachment>,
) -> usize {
    let before = ledger.tombstones.len();
    for t in &mut ledger.tombstones {
        if spare.is_some_and(|a| t.container_id == a.container_id && t.ifname == a.ifname) {
            continue;
        }
        t.tables.retain(|table| present.contains(&(t.ip, *table)));
    }
    ledger.tombstones.retain(|t| {
        let keep = !t.tables.is_empty();
        if !keep {
            log::warn!(
                "network {}: tombstone of {} has no route; dropped",
                ledger.network,
                t.ip
            );
        }
        keep
    });
    before - ledger.tombstones.len()
}

/// Which address families a ledger's tombstones use.
pub fn families(ledger: &Ledger) -> (bool, bool) {
    let v4 = ledger.tombstones.iter().any(|t| t.ip.is_ipv4());
    let v6 = ledger.tombstones.iter().any(|t| t.ip.is_ipv6());
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::RejectKind;

    #[test]
    fn reconcile_keeps_only_what_the_kernel_has() {
        let mut l = Ledger::new("n");
        let t = |ip: &str, tables: Vec<u32>| Tombstone {
            ip: ip.parse().unwrap(),
            route_type: RejectKind::Unreachable,
            tables,
            expires_at_ms: 1,
            container_id: "c".into(),
            ifname: "eth0".into(),
        };
        l.bury(t("10.0.0.5", vec![254, 100]));
        l.bury(t("10.0.0.6", vec![254]));
        l.bury(t("fd00::6", vec![254]));
        let present: HashSet<_> = [
            ("10.0.0.5".parse().unwrap(), 100),
            ("fd00::6".parse().unwrap(), 254),
        ]
        .into();
        assert_eq!(reconcile(&mut l, &present, None), 1);
        assert_eq!(l.tombstones.len(), 2);
        assert_eq!(
            l.tombstone("10.0.0.5".parse().unwrap()).unwrap().tables,
            vec![100]
        );
        assert_eq!(families(&l), (true, true));
        // The attachment being deleted keeps its entries for its DEL to finish.
        let a = Attachment {
            container_id: "c".into(),
            ifname: "eth0".into(),
        };
        l.bury(t("10.0.0.7", vec![254]));
        assert_eq!(reconcile(&mut l, &HashSet::new(), Some(&a)), 0);
        assert_eq!(reconcile(&mut l, &HashSet::new(), None), 3);
    }
}
