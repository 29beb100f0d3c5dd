//! The CNI verbs of `tombstone-ipam`: each reads the config, takes the network's lock,
//! scans the state, lets [`crate::pool`] decide, and commits the edit.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tombstone_cni::result::{CniResult, IpConfig};
use tombstone_cni::{CniError, Invocation, Plugin, Result, code};

use crate::config::{IpamConfig, parse_resolv_conf};
use crate::pool::{self, Scan, ValidSet};
use crate::store::Store;

/// The plugin, for [`tombstone_cni::skel::run`].
pub struct Ipam;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn config(inv: &Invocation) -> Result<IpamConfig> {
    IpamConfig::from_conf(&inv.conf, inv.env.arg("IP"))
}

impl Plugin for Ipam {
    fn name(&self) -> &str {
        "tombstone-ipam"
    }

    fn add(&self, inv: &Invocation) -> Result<Value> {
        let cfg = config(inv)?;
        let who = inv.attachment();
        let dns = match &cfg.resolv_conf {
            Some(p) => parse_resolv_conf(&std::fs::read_to_string(p).map_err(|e| {
                CniError::io(format!("cannot read resolvConf {}: {e}", p.display()))
            })?),
            None => Default::default(),
        };
        let store = Store::open(&cfg.data_dir, &cfg.network)?;
        let _lock = store.lock()?;
        let mut scan = Scan::new(Some(who.clone()), None);
        let source = store.load(&mut scan)?;
        let now = now();
        let plan = pool::plan_add(
            &scan,
            &cfg.ranges,
            &cfg.requested,
            who,
            now,
            cfg.reuse_after,
        )?;
        for w in &plan.warnings {
            log::warn!("network {}: {w}", cfg.network);
        }
        store.commit(&source, &plan.edit)?;
        let result = CniResult {
            ips: plan
                .assigned
                .iter()
                .map(|a| IpConfig {
                    address: format!("{}/{}", a.ip, a.range.subnet.prefix()),
                    gateway: Some(a.range.gateway.to_string()),
                    ..Default::default()
                })
                .collect(),
            routes: cfg
                .routes
                .iter()
                .map(|r| r.to_route(&inv.conf.cni_version))
                .collect(),
            dns: Some(dns),
            ..Default::default()
        };
        Ok(result.to_value(&inv.conf.cni_version))
    }

    fn del(&self, inv: &Invocation) -> Result<()> {
        let cfg = config(inv)?;
        let store = Store::open(&cfg.data_dir, &cfg.network)?;
        let _lock = store.lock()?;
        let mut scan = Scan::new(Some(inv.attachment().clone()), None);
        let source = store.load(&mut scan)?;
        let edit = pool::plan_del(&scan, now(), cfg.reuse_after);
        store.commit(&source, &edit)
    }

    fn check(&self, inv: &Invocation) -> Result<()> {
        let cfg = config(inv)?;
        let who = inv.attachment();
        let store = Store::open(&cfg.data_dir, &cfg.network)?;
        let _lock = store.lock()?;
        let mut scan = Scan::new(Some(who.clone()), None);
        store.load(&mut scan)?;
        for (i, set) in cfg.ranges.iter().enumerate() {
            if !scan.mine.iter().any(|ip| set.contains(*ip)) {
                return Err(CniError::new(
                    code::UNKNOWN_CONTAINER,
                    format!(
                        "no address of range set {i} ({set}) is allocated to container {} interface {}",
                        who.container_id, who.ifname
                    ),
                ));
            }
        }
        Ok(())
    }

    fn gc(&self, inv: &Invocation) -> Result<()> {
        let cfg = config(inv)?;
        // No list at all means "keep everything", not "nothing is valid".
        let Some(valid) = inv.conf.valid_attachments()? else {
            return Ok(());
        };
        let store = Store::open(&cfg.data_dir, &cfg.network)?;
        let _lock = store.lock()?;
        let mut scan = Scan::new(None, Some(ValidSet::new(&valid)));
        let source = store.load(&mut scan)?;
        let edit = pool::plan_gc(&scan, now(), cfg.reuse_after);
        if !edit.release.is_empty() {
            log::info!(
                "network {}: GC releases {} addresses",
                cfg.network,
                edit.release.len()
            );
        }
        store.commit(&source, &edit)
    }

    fn status(&self, inv: &Invocation) -> Result<()> {
        let cfg = config(inv)?;
        let unavailable = |e: CniError| {
            CniError::new(
                code::PLUGIN_NOT_AVAILABLE,
                format!("tombstone-ipam cannot serve ADD: {}", e.msg),
            )
            .with_details(e.details)
        };
        let store = Store::open(&cfg.data_dir, &cfg.network).map_err(unavailable)?;
        store.probe().map_err(unavailable)?;
        let _lock = store.lock().map_err(unavailable)?;
        let mut scan = Scan::new(None, None);
        store.load(&mut scan).map_err(unavailable)?;
        for (i, set) in cfg.ranges.iter().enumerate() {
            if scan.free_in(set) == 0 {
                return Err(CniError::new(
                    code::PLUGIN_NOT_AVAILABLE,
                    format!(
                        "tombstone-ipam cannot serve ADD: address pool exhausted: range set {i} ({set}) has no free address"
                    ),
                )
                .with_details(format!("{} addresses, all allocated", set.size())));
            }
        }
        Ok(())
    }
}
