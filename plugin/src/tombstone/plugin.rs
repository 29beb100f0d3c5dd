//! The CNI verbs of `tombstone`. Every verb validates all its input first, then takes the
//! network's lock, ends expired tombstones, and only then acts, so a bad request changes
//! nothing and concurrent requests see one consistent ledger.
//!
//! Crash safety rests on one invariant: a route with our protocol exists only while some
//! ledger entry names it. DEL writes the entry before installing the route; ADD and the
//! sweep delete the route before dropping the entry. ADD also records the attachment before
//! touching the kernel, so a DEL without `prevResult` after a crashed ADD still finds the
//! addresses.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::config::TombstoneConf;
use super::ledger::{Ledger, Tombstone};
use super::store::{self, Loaded};
use super::{ROUTE_PROTOCOL, now_ms};
use super::{sweep, sweeper};
use crate::cni::{Attachment, CniError, Invocation, Plugin, Result, code};
use crate::netlink::{HostReject, Netlink};
use crate::state::{Lock, StateDir};

pub struct TombstonePlugin;

/// One network's state under its lock, with the kernel connection.
struct Session {
    dir: StateDir,
    _lock: Lock,
    ledger: Ledger,
    nl: Netlink,
}

impl Session {
    /// Locks and loads the network's ledger, then ends expired tombstones and drops
    /// entries the kernel no longer backs (except those of `deleting`, whose DEL finishes
    /// what a crashed earlier DEL of it began).
    fn open(conf: &TombstoneConf, network: &str, deleting: Option<&Attachment>) -> Result<Session> {
        let dir = StateDir::open(&conf.state_dir)?;
        let lock = dir.lock(&store::stem(network))?;
        let (mut ledger, mut dirty) = match store::load(&dir, network)? {
            Loaded::Fresh(l) => (l, false),
            Loaded::Existing(l) => (l, false),
            Loaded::Rebuilt(l, aside, why) => {
                log::error!(
                    "network {network}: ledger unreadable ({why}); moved to {} and rebuilt empty",
                    aside.display()
                );
                (l, true)
            }
        };
        let nl = Netlink::open()?;
        if !ledger.tombstones.is_empty() {
            dirty |= sweep::end_expired(&nl, &mut ledger, now_ms()) > 0;
            let (v4, v6) = sweep::families(&ledger);
            if v4 || v6 {
                let present = sweep::our_routes(&nl, v4, v6)?;
                dirty |= sweep::reconcile(&mut ledger, &present, deleting) > 0;
            }
        }
        let session = Session {
            dir,
            _lock: lock,
            ledger,
            nl,
        };
        if dirty {
            session.save()?;
        }
        Ok(session)
    }

    fn save(&self) -> Result<()> {
        store::save(&self.dir, &self.ledger)
    }

    /// Tombstones `ips` of attachment `a`: tables holding an operator's route for the
    /// address are skipped (and logged), the ledger is written, then the routes installed
    /// and the neighbour entries deleted.
    fn bury(&mut self, conf: &TombstoneConf, a: &Attachment, ips: &[IpAddr]) -> Result<()> {
        let foreign = self.foreign_routes(conf, ips)?;
        let expires_at_ms = now_ms() + conf.hold_seconds * 1000;
        let mut buried = Vec::new();
        for &ip in ips {
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
            if tables.is_empty() {
                continue;
            }
            let t = Tombstone {
                ip,
                route_type: conf.route_type,
                tables,
                expires_at_ms,
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
            };
            self.ledger.bury(t.clone());
            buried.push(t);
        }
        self.ledger.forget_attachment(a);
        self.save()?;
        if buried.is_empty() {
            return Ok(());
        }
        for t in &buried {
            for route in sweep::routes_of(t) {
                self.nl.replace_route(&route)?;
            }
        }
        if conf.sweeper {
            sweeper::ensure_running(&self.dir);
        }
        if conf.flush_neighbors {
            for &ip in ips {
                let n = self.nl.flush_neighbours(ip)?;
                if n > 0 {
                    log::debug!("{ip}: {n} neighbour entries deleted");
                }
            }
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

    /// The (address, table) pairs among ours where a host route of another protocol exists.
    fn foreign_routes(
        &self,
        conf: &TombstoneConf,
        ips: &[IpAddr],
    ) -> Result<HashSet<(IpAddr, u32)>> {
        let mut out = HashSet::new();
        for ipv6 in [false, true] {
            let wanted: Vec<IpAddr> = ips
                .iter()
                .copied()
                .filter(|ip| ip.is_ipv6() == ipv6)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            for &table in &conf.tables {
                for r in self.nl.dump_routes(ipv6, Some(table), None)? {
                    if r.protocol == ROUTE_PROTOCOL {
                        continue;
                    }
                    if let Some(ip) = wanted.iter().find(|ip| r.is_host_route_of(**ip)) {
                        out.insert((*ip, table));
                    }
                }
            }
        }
        Ok(out)
    }
}

fn join(ips: impl Iterator<Item = IpAddr>) -> String {
    ips.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// The addresses of `prevResult`, without prefix, each once.
fn prev_ips(inv: &Invocation) -> Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    for net in inv.conf.prev_result_ips()? {
        if !out.contains(&net.ip()) {
            out.push(net.ip());
        }
    }
    Ok(out)
}

impl Plugin for TombstonePlugin {
    fn name(&self) -> &str {
        "tombstone"
    }

    fn add(&self, inv: &Invocation) -> Result<Value> {
        let conf = TombstoneConf::from_netconf(&inv.conf)?;
        let prev = inv.conf.prev_result().cloned().ok_or_else(|| {
            CniError::config("tombstone is a chained plugin: ADD needs a prevResult")
                .with_details("list it after the main plugin in the network's plugins")
        })?;
        let ips = prev_ips(inv)?;
        let a = inv.attachment();
        let mut s = Session::open(&conf, &inv.conf.name, None)?;
        if s.ledger.record_attachment(a, &ips) {
            s.save()?;
        }
        // Every table this plugin may have used for the address: the configured ones and
        // those the ledger recorded (the config may have changed since the DEL).
        let mut routes = Vec::new();
        for &ip in &ips {
            let mut tables = conf.tables.clone();
            if let Some(t) = s.ledger.tombstone(ip) {
                tables.extend(t.tables.iter().filter(|t| !conf.tables.contains(t)));
            }
            routes.extend(tables.into_iter().map(|table| HostReject {
                ip,
                kind: conf.route_type,
                table,
                protocol: ROUTE_PROTOCOL,
            }));
        }
        for (route, removed) in routes.iter().zip(s.nl.delete_routes(&routes)) {
            if removed? {
                log::warn!(
                    "network {}: {} was given to {}/{} while still tombstoned (table {}); tombstone removed",
                    inv.conf.name,
                    route.ip,
                    a.container_id,
                    a.ifname,
                    route.table
                );
            }
        }
        if !s.ledger.lift(&ips).is_empty() {
            s.save()?;
        }
        Ok(prev)
    }

    fn del(&self, inv: &Invocation) -> Result<()> {
        let conf = TombstoneConf::from_netconf(&inv.conf)?;
        let from_prev = prev_ips(inv)?;
        let a = inv.attachment();
        let mut s = Session::open(&conf, &inv.conf.name, Some(a))?;
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
        let s = Session::open(&conf, &inv.conf.name, None)?;
        let present = sweep::our_routes(
            &s.nl,
            ips.iter().any(|i| i.is_ipv4()),
            ips.iter().any(|i| i.is_ipv6()),
        )?;
        let mut stuck: Vec<String> = present
            .iter()
            .filter(|(ip, _)| ips.contains(ip))
            .map(|(ip, table)| format!("{ip} (table {table})"))
            .collect();
        stuck.sort();
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
        let mut s = Session::open(&conf, &inv.conf.name, None)?;
        let Some(valid) = valid else { return Ok(()) };
        let mut errors = Vec::new();
        for a in s.ledger.stale_attachments(&valid) {
            let ips = s.ledger.ips_of(&a);
            if let Err(e) = s.bury(&conf, &a, &ips) {
                errors.push(format!("{}/{}: {e}", a.container_id, a.ifname));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(
                CniError::netlink("GC could not tombstone every stale attachment")
                    .with_details(errors.join("; ")),
            )
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
        let dir = StateDir::open(&conf.state_dir).map_err(unavailable)?;
        dir.probe().map_err(unavailable)?;
        let nl = Netlink::open().map_err(unavailable)?;
        nl.dump_routes(false, None, Some(ROUTE_PROTOCOL))
            .map_err(unavailable)?;
        Ok(())
    }
}
