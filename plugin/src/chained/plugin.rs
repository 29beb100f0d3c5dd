//! The CNI verbs of `tombstone`. Every verb validates all its input first, then takes the
//! state directory's shared lock and the network's lock, ends expired tombstones, and only
//! then acts, so a bad request changes nothing and concurrent requests see one consistent
//! ledger.
//!
//! Crash safety rests on one invariant: a route of this state directory exists only while
//! some ledger entry names it. DEL writes the entry before installing the route; ADD and
//! the sweep delete the route before dropping the entry; an entry never loses a table
//! while its route may exist. ADD also records the attachment before touching the kernel,
//! so a DEL without `prevResult` after a crashed ADD still finds the addresses, and a
//! stale DEL (retried with an old `prevResult`) cannot bury an address another attachment
//! now holds.

use crate::errors::{KernelResult, cni_error};
use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::config::TombstoneConf;
use super::ledger::{Ledger, Tombstone};
use super::port::{Edges, Kernel};
use super::store::Scope;
use super::{ROUTE_PROTOCOL, dir_mark, store, sweep, sweeper};
use tombstone_cni::state::{Lock, StateDir};
use tombstone_cni::{
    Attachment, CniError, CniResult, Command, Invocation, Plugin, Result, code, version,
};
use tombstone_kernel::{HostReject, Lookup};

/// The chained plugin, over its edges (the real kernel and clock, or a test's).
pub struct TombstonePlugin {
    edges: Edges,
}

impl TombstonePlugin {
    pub fn new(edges: Edges) -> TombstonePlugin {
        TombstonePlugin { edges }
    }

    fn session(&self, conf: &TombstoneConf, network: &str, scope: Scope) -> Result<Session> {
        Session::open(&self.edges, conf, network, scope)
    }
}

/// One network's state under its lock, with the kernel connection: the entries of the
/// verb's scope (its attachment and addresses, or all for GC), and what the files say.
struct Session {
    dir: StateDir,
    _lock: Lock,
    _shared: Lock,
    ledger: Ledger,
    on_disk: Ledger,
    kernel: Box<dyn Kernel>,
    mark: u32,
    now_ms: u64,
}

impl Session {
    /// Locks and loads the network's entries of `scope`, notes the tables its config
    /// names, and ends the expired tombstones among them (the others are the sweep's: a
    /// verb's cost does not grow with the tombstones of other addresses).
    fn open(edges: &Edges, conf: &TombstoneConf, network: &str, scope: Scope) -> Result<Session> {
        let dir = StateDir::open(&conf.state_dir)?;
        let shared = dir.lock_shared()?;
        let lock = dir.lock(&store::stem(network))?;
        let (mut ledger, on_disk) = store::load(&dir, network, scope)?.logged();
        ledger.note_tables(&conf.tables);
        let kernel = (edges.kernel)().cni()?;
        let now_ms = (edges.now_ms)();
        sweep::end_expired(&*kernel, &mut ledger, now_ms);
        let mut session = Session {
            mark: dir_mark(dir.path()),
            dir,
            _lock: lock,
            _shared: shared,
            ledger,
            on_disk,
            kernel,
            now_ms,
        };
        session.save()?;
        Ok(session)
    }

    /// Writes what changed since the last save (nothing, if nothing did).
    fn save(&mut self) -> Result<()> {
        store::save(&self.dir, &mut self.on_disk, &mut self.ledger)
    }

    /// Tombstones `ips` released by attachment `a`. An address another live attachment now
    /// holds is skipped (a stale DEL); one already tombstoned keeps its hold (a repeated
    /// DEL); one whose hold has ended after this attachment's earlier DEL is not buried
    /// again. Tables holding an operator's route for the address are skipped (and logged).
    /// The ledger is written, then every route of the touched entries installed (so a
    /// retry heals a DEL that failed half-way), then the neighbour entries deleted, then
    /// the conntrack entries (whose failure is only a warning).
    fn bury(&mut self, conf: &TombstoneConf, a: &Attachment, ips: &[IpAddr]) -> Result<()> {
        let released_before = self.ledger.is_released(a);
        let mut candidates = Vec::new();
        for &ip in ips {
            if let Some(holder) = self.ledger.held_by_other(ip, a) {
                log::warn!(
                    "network {}: {ip} is held by {}/{} now; the DEL of {}/{} leaves it alone",
                    self.ledger.network,
                    holder.container_id,
                    holder.ifname,
                    a.container_id,
                    a.ifname
                );
            } else if self.ledger.tombstone(ip).is_some() || !released_before {
                candidates.push(ip);
            } else {
                log::debug!(
                    "network {}: {ip} was released by {}/{} before and its hold is over",
                    self.ledger.network,
                    a.container_id,
                    a.ifname
                );
            }
        }
        let foreign = self.foreign_routes(conf, &candidates)?;
        let expires_at_ms = self.now_ms + conf.hold_seconds * 1000;
        let mut buried = Vec::new();
        for ip in candidates {
            let tables: Vec<u32> = conf
                .tables
                .iter()
                .copied()
                .filter(|t| !foreign.contains(&(ip, *t)))
                .collect();
            for t in conf.tables.iter().filter(|t| !tables.contains(t)) {
                log::warn!(
                    "network {}: table {t} has a route for {ip} that is not ours; left alone",
                    self.ledger.network
                );
            }
            if tables.is_empty() && self.ledger.tombstone(ip).is_none() {
                continue;
            }
            buried.push(self.ledger.bury(Tombstone {
                ip,
                route_type: conf.route_type,
                tables,
                route_metric: Some(self.mark),
                expires_at_ms,
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
            }));
        }
        self.ledger.release(a, ips, self.now_ms);
        self.save()?;
        if buried.is_empty() {
            return Ok(());
        }
        let routes: Vec<HostReject> = buried.iter().flat_map(sweep::routes_of).collect();
        let failures: Vec<String> = self
            .kernel
            .replace_routes(&routes)
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        if !failures.is_empty() {
            return Err(CniError::netlink(format!(
                "{} of {} tombstone routes could not be installed",
                failures.len(),
                routes.len()
            ))
            .with_details(failures.join("; ")));
        }
        if conf.sweeper {
            sweeper::ensure_running(&self.dir);
        }
        let ips: Vec<IpAddr> = buried.iter().map(|t| t.ip).collect();
        if conf.flush_neighbors {
            let n = self.kernel.flush_neighbours(&ips).cni()?;
            if n > 0 {
                log::debug!("{n} neighbour entries deleted");
            }
        }
        if conf.flush_conntrack {
            self.flush_conntrack(&ips);
        }
        log::info!(
            "network {}: {} of {}/{} tombstoned for {}s",
            self.ledger.network,
            join(buried.iter().map(|t| t.ip)),
            a.container_id,
            a.ifname,
            conf.hold_seconds
        );
        Ok(())
    }

    /// Deletes the conntrack entries of `ips`, so that a flow to a Service address
    /// DNAT-ed to a released pod is translated anew (to a live endpoint) at its next
    /// packet. A failure is a warning, not a failed DEL: the tombstone routes are in place,
    /// so a stale entry's packets meet the reject route (no loop, no delivery to a new
    /// holder of the address); they stop once the entry times out.
    fn flush_conntrack(&self, ips: &[IpAddr]) {
        match self.kernel.flush_conntrack(ips) {
            Ok(n) => log::debug!(
                "{n} conntrack entries of {} deleted",
                join(ips.iter().copied())
            ),
            Err(e) => log::warn!(
                "network {}: conntrack entries of {} not flushed (flows keep their old translation until they time out): {e}",
                self.ledger.network,
                join(ips.iter().copied())
            ),
        }
    }

    /// The (address, table) pairs among ours where the route the kernel uses for the
    /// address is a host route of another protocol (an operator's): one FIB lookup per
    /// address, however many routes the tables hold. A lookup that meets a reject route
    /// (ours, still live, or anyone's) answers nothing: the address is unreachable already.
    fn foreign_routes(
        &self,
        conf: &TombstoneConf,
        ips: &[IpAddr],
    ) -> Result<HashSet<(IpAddr, u32)>> {
        let mut out = HashSet::new();
        for &ip in ips {
            if let Lookup::Route(r) = self.kernel.lookup_route(ip).cni()?
                && r.is_host_route_of(ip)
                && r.protocol != ROUTE_PROTOCOL
                && conf.tables.contains(&r.table)
            {
                out.insert((ip, r.table));
            }
        }
        Ok(out)
    }

    /// Every route this directory may have made for `ips`: in every table the config
    /// names or has named, and those the entries recorded, under this directory's metric
    /// and the entry's own.
    fn routes_for(&self, conf: &TombstoneConf, ips: &[IpAddr]) -> Vec<HostReject> {
        let mut routes = Vec::new();
        for &ip in ips {
            let entry = self.ledger.tombstone(ip);
            let mut tables = conf.tables.clone();
            for t in self
                .ledger
                .tables
                .iter()
                .chain(entry.into_iter().flat_map(|e| e.tables.iter()))
            {
                if !tables.contains(t) {
                    tables.push(*t);
                }
            }
            let mut metrics = vec![self.mark];
            if let Some(m) = entry.map(Tombstone::metric).filter(|m| *m != self.mark) {
                metrics.push(m);
            }
            for table in tables {
                for &metric in &metrics {
                    routes.push(HostReject {
                        ip,
                        kind: conf.route_type,
                        table,
                        protocol: ROUTE_PROTOCOL,
                        metric,
                    });
                }
            }
        }
        routes
    }
}

fn join(ips: impl Iterator<Item = IpAddr>) -> String {
    ips.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// The addresses of `prevResult`, without prefix, each once.
fn prev_ips(inv: &Invocation) -> Result<Vec<IpAddr>> {
    if inv.env.command == Command::Del && !version::del_has_prev_result(&inv.conf.cni_version) {
        // Before 0.4.0 a DEL has no prevResult (a runtime sends none; one that did would be
        // outside its version's spec): the addresses are the ones the ADD recorded.
        return Ok(vec![]);
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for net in inv.conf.prev_result_ips()? {
        if !out.contains(&net.ip()) {
            out.push(net.ip());
        }
    }
    Ok(out)
}

/// ADD's result: `prevResult` unchanged (every field, known or not) when it is in the
/// config's version, as it is when every plugin of the list speaks it, or names no version;
/// else converted to the config's version and format, as the spec asks of a result.
fn in_config_version(prev: Value, cni_version: &str) -> Result<Value> {
    match prev.get("cniVersion").and_then(Value::as_str) {
        None => return Ok(prev),
        Some(v) if v == cni_version => return Ok(prev),
        Some(_) => {}
    }
    let r =
        CniResult::from_value(&prev).map_err(|e| CniError::config(e.msg).context("prevResult"))?;
    Ok(r.to_value(cni_version))
}

impl Plugin for TombstonePlugin {
    fn name(&self) -> &str {
        "tombstone"
    }

    fn versions(&self) -> &'static [&'static str] {
        version::CHAINED
    }

    fn add(&self, inv: &Invocation) -> Result<Value> {
        let conf = TombstoneConf::from_netconf(&inv.conf)?;
        let prev = inv.conf.prev_result().cloned().ok_or_else(|| {
            CniError::config("tombstone is a chained plugin: ADD needs a prevResult")
                .with_details("list it after the main plugin in the network's plugins")
        })?;
        let ips = prev_ips(inv)?;
        let a = inv.attachment();
        let mut s = self.session(&conf, &inv.conf.name, Scope::Of(a, &ips))?;
        s.ledger.record_attachment(a, &ips);
        s.save()?;
        let routes = s.routes_for(&conf, &ips);
        let mut failures = Vec::new();
        for (route, removed) in routes.iter().zip(s.kernel.delete_routes(&routes)) {
            match removed {
                Ok(true) => log::warn!(
                    "network {}: {} was given to {}/{} while still tombstoned (table {}); tombstone removed",
                    inv.conf.name,
                    route.ip,
                    a.container_id,
                    a.ifname,
                    route.table
                ),
                Ok(false) => {}
                Err(e) => failures.push(e.to_string()),
            }
        }
        if !failures.is_empty() {
            // The entries stay: they still name the routes that may be left.
            return Err(CniError::netlink(format!(
                "{} tombstone routes of the pod's addresses could not be removed",
                failures.len()
            ))
            .with_details(failures.join("; ")));
        }
        s.ledger.lift(&ips);
        s.save()?;
        in_config_version(prev, &inv.conf.cni_version)
    }

    fn del(&self, inv: &Invocation) -> Result<()> {
        let conf = TombstoneConf::from_netconf(&inv.conf)?;
        let from_prev = prev_ips(inv)?;
        let a = inv.attachment();
        let mut s = self.session(&conf, &inv.conf.name, Scope::Of(a, &from_prev))?;
        let ips = if from_prev.is_empty() {
            s.ledger.ips_of(a)
        } else {
            from_prev
        };
        if ips.is_empty() {
            log::debug!(
                "network {}: {}/{} has no addresses to tombstone",
                inv.conf.name,
                a.container_id,
                a.ifname
            );
            return Ok(());
        }
        s.bury(&conf, a, &ips)
    }

    fn check(&self, inv: &Invocation) -> Result<()> {
        let conf = TombstoneConf::from_netconf(&inv.conf)?;
        if inv.conf.prev_result().is_none() {
            return Err(CniError::config("CHECK needs a prevResult"));
        }
        let ips = prev_ips(inv)?;
        let s = self.session(&conf, &inv.conf.name, Scope::Of(inv.attachment(), &ips))?;
        // Per address, this directory's entry, then the route the host uses: a reject
        // route there (an entry lost in a crash, another state directory's tombstone)
        // blocks the pod as surely. One lookup each, whatever the tables hold.
        let mut stuck = Vec::new();
        for &ip in &ips {
            if let Some(t) = s.ledger.tombstone(ip) {
                stuck.push(format!(
                    "{ip} (tables {:?}, metric {})",
                    t.tables,
                    t.metric()
                ));
            } else if s.kernel.lookup_route(ip).cni()? == Lookup::Rejected {
                stuck.push(format!("{ip} (the host's route for it is a reject route)"));
            }
        }
        stuck.sort();
        stuck.dedup();
        if !stuck.is_empty() {
            return Err(
                CniError::new(code::TOMBSTONE_PRESENT, "address still tombstoned")
                    .with_details(stuck.join(", ")),
            );
        }
        Ok(())
    }

    fn gc(&self, inv: &Invocation) -> Result<()> {
        let conf = TombstoneConf::from_netconf(&inv.conf)?;
        let valid = inv.conf.valid_attachments()?;
        let mut s = self.session(&conf, &inv.conf.name, Scope::All)?;
        let Some(valid) = valid else { return Ok(()) };
        let mut errors = Vec::new();
        let mut forgotten = false;
        for a in s.ledger.stale_attachments(&valid) {
            // A released one's DEL ran: burying again only reinstalls the routes of its
            // live tombstones (healing a DEL or GC that failed half-way), then the record
            // goes, as the runtime has forgotten the attachment too.
            let released = s.ledger.is_released(&a);
            let ips = s.ledger.ips_of(&a);
            match s.bury(&conf, &a, &ips) {
                Ok(()) if released => {
                    s.ledger.forget_attachment(&a);
                    forgotten = true;
                }
                Ok(()) => {}
                Err(e) => errors.push(format!("{}/{}: {e}", a.container_id, a.ifname)),
            }
        }
        if forgotten {
            s.save()?;
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(CniError::netlink(format!(
                "GC could not tombstone {} stale attachments",
                errors.len()
            ))
            .with_details(errors.join("; ")))
        }
    }

    fn status(&self, inv: &Invocation) -> Result<()> {
        let unavailable = |e: CniError| {
            CniError::new(
                code::PLUGIN_NOT_AVAILABLE,
                format!("tombstone cannot serve ADD: {}", e.msg),
            )
            .with_details(e.details)
        };
        let conf = TombstoneConf::from_netconf(&inv.conf)?;
        StateDir::usable(&conf.state_dir).map_err(unavailable)?;
        let kernel = (self.edges.kernel)().map_err(|e| unavailable(cni_error(e)))?;
        kernel
            .dump_routes(false, None, Some(ROUTE_PROTOCOL))
            .map_err(|e| unavailable(cni_error(e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
