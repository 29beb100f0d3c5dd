//! Kernel work on ledgers that both the CNI verbs and `tombstone sweep` do: ending expired
//! tombstones, dropping ledger entries whose routes are gone, and removing this state
//! directory's orphan routes. A route is ever an orphan only with this directory's full
//! signature: our protocol, this directory's metric ([`super::dir_mark`]), a reject type,
//! a host prefix, and a table some ledger of the directory configured.

use crate::errors::KernelResult;
use std::collections::HashSet;
use std::net::IpAddr;

use super::ROUTE_PROTOCOL;
use super::ledger::{Ledger, Tombstone};
use super::port::Kernel;
use super::store::{self, Head, Scope};
use tombstone_cni::Result;
use tombstone_cni::state::StateDir;
use tombstone_kernel::HostReject;

/// How often a sweep reads every attachment record to drop those released longer than
/// [`super::RELEASED_RETENTION_MS`] ago (a tenth of it).
pub const PRUNE_EVERY_MS: u64 = super::RELEASED_RETENTION_MS / 10;

/// A tombstone route's key in the kernel: (address, table, metric).
pub type RouteKey = (IpAddr, u32, u32);

/// Every reject host route with our protocol, both families asked for, whatever its metric.
pub fn our_routes(k: &dyn Kernel, v4: bool, v6: bool) -> Result<Vec<HostReject>> {
    let mut out = Vec::new();
    for (wanted, ipv6) in [(v4, false), (v6, true)] {
        if !wanted {
            continue;
        }
        out.extend(
            k.dump_routes(ipv6, None, Some(ROUTE_PROTOCOL))
                .cni()?
                .iter()
                .filter_map(|r| r.as_host_reject()),
        );
    }
    Ok(out)
}

fn key(r: &HostReject) -> RouteKey {
    (r.ip, r.table, r.metric)
}

pub fn routes_of(t: &Tombstone) -> impl Iterator<Item = HostReject> + '_ {
    t.tables.iter().map(|&table| HostReject {
        ip: t.ip,
        kind: t.route_type,
        table,
        protocol: ROUTE_PROTOCOL,
        metric: t.metric(),
    })
}

/// Deletes the routes of tombstones whose hold has ended and drops them from the ledger
/// (route first, then entry). A tombstone whose route could not be deleted stays (and is
/// logged) for the next sweep: the ledger still tells the truth. Also drops records of
/// attachments released long ago.
pub fn end_expired(k: &dyn Kernel, ledger: &mut Ledger, now_ms: u64) -> Expiry {
    let pruned = ledger.prune_released(now_ms, super::RELEASED_RETENTION_MS);
    let expired: Vec<IpAddr> = ledger.expired(now_ms).map(|t| t.ip).collect();
    if expired.is_empty() {
        return Expiry {
            pruned,
            ..Expiry::default()
        };
    }
    let routes: Vec<HostReject> = ledger.expired(now_ms).flat_map(routes_of).collect();
    let results = k.delete_routes(&routes);
    let mut failed = HashSet::new();
    let mut errors = Vec::new();
    for (r, res) in routes.iter().zip(results) {
        if let Err(e) = res {
            log::warn!(
                "network {}: tombstone of {} not ended yet: {e}",
                ledger.network,
                r.ip
            );
            failed.insert(r.ip);
            errors.push(format!("network {}: {e}", ledger.network));
        }
    }
    let done: Vec<IpAddr> = expired
        .into_iter()
        .filter(|ip| !failed.contains(ip))
        .collect();
    ledger.lift(&done);
    log::debug!(
        "network {}: {} tombstones ended",
        ledger.network,
        done.len()
    );
    Expiry {
        ended: done.len(),
        pruned,
        errors,
    }
}

/// What [`end_expired`] did.
#[derive(Debug, Default)]
pub struct Expiry {
    /// Tombstones ended.
    pub ended: usize,
    /// Records of long-released attachments dropped.
    pub pruned: usize,
    /// Routes that could not be deleted (their entries stay).
    pub errors: Vec<String>,
}

impl Expiry {
    /// Whether the ledger changed.
    pub fn changed(&self) -> bool {
        self.ended + self.pruned > 0
    }
}

/// Makes the ledger tell the truth about the kernel: a table whose route is gone (a crash
/// between the ledger write and the route install, or an operator's `ip route del`) leaves
/// the entry; an entry with no table left is dropped. Returns how many were dropped.
pub fn reconcile(ledger: &mut Ledger, present: &HashSet<RouteKey>) -> usize {
    let before = ledger.tombstones.len();
    for t in &mut ledger.tombstones {
        let (ip, metric) = (t.ip, t.metric());
        t.tables
            .retain(|table| present.contains(&(ip, *table, metric)));
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

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub networks: usize,
    pub ended: usize,
    pub dropped: usize,
    pub orphans: usize,
    /// Routes of our protocol this directory does not own (another state directory's
    /// metric, an unconfigured table, not a reject host route): left alone.
    pub foreign: usize,
    /// Ledgers that could not be read and were moved aside.
    pub rebuilt: usize,
    /// What could not be done (the sweep went on): a route that could not be deleted.
    pub errors: Vec<String>,
    pub live: usize,
    /// When the next live tombstone expires (ms since the epoch), if any is left.
    pub next_expiry_ms: Option<u64>,
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "networks {}  ended {}  dropped {}  orphans removed {}  others' left alone {}  live {}",
            self.networks, self.ended, self.dropped, self.orphans, self.foreign, self.live
        )
    }
}

/// Sweeps every network of the state directory. It holds the directory's lock
/// (`state.dir.lock`) exclusively while it runs, and takes no network lock. Every verb holds
/// that lock shared for its whole run, so while a sweep runs no verb is half-way through a
/// change (a route exists only after its entry is written, and leaves before its entry
/// does), and two sweeps never interleave; ledgers are read one at a time, however many.
///
/// What the locking guarantees, precisely: the locks have one order, `sweeper.bg` (the
/// background sweeper's, held for its lifetime) → `state.dir` → a network's, and every
/// process that *waits* for a lock waits in that order. The one acquisition against it, a
/// DEL taking `sweeper.bg` while it holds the other two, is a `try_lock` that never waits.
/// So sweeps and verbs wait for each other but cannot deadlock, two sweeps never
/// interleave, and a killed holder's `flock`s are released by the kernel. It is not a
/// fairness guarantee: `flock` gives an exclusive waiter no priority over new shared
/// holders, so a sweep waits until no verb of the directory is running.
pub fn sweep_all_in(
    dir: &StateDir,
    k: &dyn Kernel,
    now_ms: u64,
    keep_orphans: bool,
) -> Result<SweepReport> {
    let _all = dir.lock_all()?;
    let listing = dir.listing()?;
    dir.remove_listed_temps(&listing)?;
    let mut stems = listing.records;
    stems.sort();
    let mark = super::dir_mark(dir.path());
    let routes = our_routes(k, true, true)?;
    let present: HashSet<RouteKey> = routes.iter().map(key).collect();
    let mut report = SweepReport::default();
    let mut named: HashSet<RouteKey> = HashSet::new();
    let mut tables: HashSet<u32> = HashSet::new();
    for stem in stems {
        // Long-released attachment records are dropped every PRUNE_EVERY_MS; only then
        // does the sweep read every record, other times the tombstones alone.
        let mut prune = false;
        let Some(loaded) = store::load_any(dir, &stem, |head| {
            prune = head
                .pruned_at_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= PRUNE_EVERY_MS);
            if prune { Scope::All } else { Scope::Tombstones }
        })?
        else {
            continue;
        };
        let rebuilt = loaded.head != Head::Existing;
        let (mut ledger, mut on_disk) = loaded.logged();
        // What the ledger named when the routes were dumped: the routes of tombstones that
        // end now were deleted by their entries, not orphans.
        for t in &ledger.tombstones {
            named.extend(routes_of(t).map(|r| key(&r)));
        }
        if rebuilt {
            // Its head is gone, and with it the network's name: its entries stand (their
            // routes are no orphans) until the network's next verb writes a new head.
            report.rebuilt += 1;
            tables.extend(ledger.tables.iter().copied());
            for t in &ledger.tombstones {
                tables.extend(t.tables.iter().copied());
            }
            continue;
        }
        if prune {
            ledger.pruned_at_ms = Some(now_ms);
        }
        let expiry = end_expired(k, &mut ledger, now_ms);
        let dropped = reconcile(&mut ledger, &present);
        report.ended += expiry.ended;
        report.dropped += dropped;
        tables.extend(ledger.tables.iter().copied());
        for t in &ledger.tombstones {
            tables.extend(t.tables.iter().copied());
            report.next_expiry_ms = Some(
                report
                    .next_expiry_ms
                    .map_or(t.expires_at_ms, |e| e.min(t.expires_at_ms)),
            );
        }
        report.live += ledger.tombstones.len();
        report.networks += 1;
        store::save(dir, &mut on_disk, &mut ledger)?;
        report.errors.extend(expiry.errors);
    }
    let (orphans, foreign): (Vec<HostReject>, Vec<HostReject>) = routes
        .into_iter()
        .filter(|r| !named.contains(&key(r)))
        .partition(|r| r.metric == mark && tables.contains(&r.table));
    report.foreign = foreign.len();
    if !foreign.is_empty() {
        log::info!(
            "{} routes of protocol {ROUTE_PROTOCOL} belong to no ledger of {} (another state directory's, or a table none configured): left alone",
            foreign.len(),
            dir.path().display()
        );
    }
    if !keep_orphans {
        for (r, res) in orphans.iter().zip(k.delete_routes(&orphans)) {
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
                Err(e) => {
                    log::warn!("orphan route {}: {e}", r.ip);
                    report.errors.push(e.to_string());
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chained::ledger::Tombstone;
    use tombstone_kernel::RejectKind;

    #[test]
    fn reconcile_keeps_only_what_the_kernel_has() {
        let mut l = Ledger::new("n");
        let t = |ip: &str, tables: Vec<u32>| Tombstone {
            ip: ip.parse().unwrap(),
            route_type: RejectKind::Unreachable,
            tables,
            route_metric: Some(7),
            expires_at_ms: 1,
            container_id: "c".into(),
            ifname: "eth0".into(),
        };
        l.bury(t("10.0.0.5", vec![254, 100]));
        l.bury(t("10.0.0.6", vec![254]));
        l.bury(t("fd00::6", vec![254]));
        let present: HashSet<RouteKey> = [
            ("10.0.0.5".parse().unwrap(), 100, 7),
            ("fd00::6".parse().unwrap(), 254, 7),
            // Another metric's route does not back an entry.
            ("10.0.0.6".parse().unwrap(), 254, 8),
        ]
        .into();
        assert_eq!(reconcile(&mut l, &present), 1);
        assert_eq!(l.tombstones.len(), 2);
        assert_eq!(
            l.tombstone("10.0.0.5".parse().unwrap()).unwrap().tables,
            vec![100]
        );
        assert_eq!(reconcile(&mut l, &HashSet::new()), 2);
    }
}
