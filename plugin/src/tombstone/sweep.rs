//! Kernel work on ledgers that both the CNI verbs and `tombstone sweep` do: ending expired
//! tombstones, dropping ledger entries whose routes are gone, removing orphan routes.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use super::ledger::{Ledger, Tombstone};
use super::store::{self, Loaded};
use super::{ROUTE_PROTOCOL, now_ms};
use crate::cni::{Attachment, Result};
use crate::netlink::{HostReject, Netlink, RejectKind};
use crate::state::{Lock, StateDir, decode_stem};

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

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub networks: usize,
    pub ended: usize,
    pub dropped: usize,
    pub orphans: usize,
    pub live: usize,
    /// When the next live tombstone expires (ms since the epoch), if any is left.
    pub next_expiry_ms: Option<u64>,
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "networks {}  ended {}  dropped {}  orphans removed {}  live {}",
            self.networks, self.ended, self.dropped, self.orphans, self.live
        )
    }
}

struct Held {
    _lock: Lock,
    ledger: Ledger,
    dirty: bool,
}

/// Locks and loads every network's ledger not held yet (sorted, so two sweeps never
/// deadlock; a plugin holds one lock at a time).
fn hold_all(dir: &StateDir, held: &mut BTreeMap<String, Held>) -> Result<()> {
    for stem in dir.records()? {
        if held.contains_key(&stem) {
            continue;
        }
        let network = decode_stem(&stem);
        let lock = dir.lock(&stem)?;
        let (ledger, dirty) = match store::load(dir, &network)? {
            Loaded::Fresh(l) | Loaded::Existing(l) => (l, false),
            Loaded::Rebuilt(l, aside, why) => {
                log::error!(
                    "network {network}: ledger unreadable ({why}); moved to {}",
                    aside.display()
                );
                (l, true)
            }
        };
        held.insert(
            stem,
            Held {
                _lock: lock,
                ledger,
                dirty,
            },
        );
    }
    Ok(())
}

/// Sweeps every network of the state directory, under all their locks.
pub fn sweep_all_in(dir: &StateDir, keep_orphans: bool) -> Result<SweepReport> {
    let nl = Netlink::open()?;
    let mut held = BTreeMap::new();
    // The dump must be taken while every ledger that could name one of its routes is held:
    // a route exists only after its entry is written, so a ledger file that appears after
    // the dump cannot name a route in it. Repeat until the listing is stable across a dump.
    let present = loop {
        hold_all(dir, &mut held)?;
        let before = held.len();
        let present = our_routes(&nl, true, true)?;
        hold_all(dir, &mut held)?;
        if held.len() == before {
            break present;
        }
    };
    let mut report = SweepReport::default();
    let now = now_ms();
    let mut named: HashSet<(IpAddr, u32)> = HashSet::new();
    for h in held.values_mut() {
        let ended = end_expired(&nl, &mut h.ledger, now);
        let dropped = reconcile(&mut h.ledger, &present, None);
        report.ended += ended;
        report.dropped += dropped;
        h.dirty |= ended + dropped > 0;
        for t in &h.ledger.tombstones {
            named.extend(t.tables.iter().map(|table| (t.ip, *table)));
            report.next_expiry_ms = Some(
                report
                    .next_expiry_ms
                    .map_or(t.expires_at_ms, |e| e.min(t.expires_at_ms)),
            );
        }
        report.live += h.ledger.tombstones.len();
    }
    if !keep_orphans {
        let orphans: Vec<HostReject> = present
            .difference(&named)
            .map(|&(ip, table)| HostReject {
                ip,
                kind: RejectKind::Unreachable,
                table,
                protocol: ROUTE_PROTOCOL,
            })
            .collect();
        for (r, res) in orphans.iter().zip(nl.delete_routes(&orphans)) {
            match res {
                Ok(true) => {
                    log::info!(
                        "orphan tombstone route {} (table {}) removed",
                        r.ip,
                        r.table
                    );
                    report.orphans += 1;
                }
                Ok(false) => {}
                Err(e) => log::warn!("orphan route {}: {e}", r.ip),
            }
        }
    }
    report.networks = held.len();
    for h in held.values() {
        if h.dirty {
            store::save(dir, &h.ledger)?;
        }
    }
    Ok(report)
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
