//! The CNI verbs of `tombstone-ipam`: each reads the config, takes the network's lock,
//! opens the state ([`crate::store`]), lets [`crate::pool`] decide, and records the change.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tombstone_cni::result::{CniResult, IpConfig};
use tombstone_cni::{CniError, Invocation, Plugin, Result, code};

use crate::config::{IpamConfig, parse_resolv_conf};
use crate::pool::{self, ValidSet};
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
        let now = now();
        let mut disk = store.write_state(now, cfg.reuse_after)?;
        let held = disk.held(who)?;
        let plan = pool::plan_add(
            &mut disk,
            &held.mine,
            &cfg.ranges,
            &cfg.requested,
            who,
            now,
            cfg.reuse_after,
        )?;
        for w in &plan.warnings {
            log::warn!("network {}: {w}", cfg.network);
        }
        disk.allocate(who, &plan, &held)?;
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
        let who = inv.attachment();
        let store = Store::open(&cfg.data_dir, &cfg.network)?;
        let _lock = store.lock()?;
        let now = now();
        let mut disk = store.write_state(now, cfg.reuse_after)?;
        let held = disk.held(who)?;
        disk.release(who, &held, now)
    }

    fn check(&self, inv: &Invocation) -> Result<()> {
        let cfg = config(inv)?;
        let who = inv.attachment();
        let store = Store::open(&cfg.data_dir, &cfg.network)?;
        let _lock = store.lock()?;
        let mine = store.read_state()?.held(who)?;
        for (i, set) in cfg.ranges.iter().enumerate() {
            if !mine.iter().any(|ip| set.contains(*ip)) {
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
        let now = now();
        let mut disk = store.write_state(now, cfg.reuse_after)?;
        let released = disk.gc(&ValidSet::new(&valid), now, cfg.reuse_after)?;
        if released > 0 {
            log::info!("network {}: GC released {released} addresses", cfg.network);
        }
        Ok(())
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
        let mut state = store.read_state().map_err(unavailable)?;
        let now = now();
        // The search ADD would make (cooling addresses count as free: ADD would use them).
        for (i, set) in cfg.ranges.iter().enumerate() {
            let found =
                pool::pick(state.view(), set, i, &[], now, cfg.reuse_after).map_err(unavailable)?;
            if found.is_none() {
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
