//! The CNI verbs of `tombstone-ipvlan`.
//!
//! ADD: validate everything first, then create the pod link under a temporary name directly
//! in the pod's netns, ask IPAM, ensure the gateway port, put the addresses on, rename the
//! link to `CNI_IFNAME`, set it up and add the routes. Any failure after the link exists deletes the link and
//! releases the IPAM allocation before the error is returned. DEL never needs the master,
//! the netns or `prevResult`, and always releases IPAM.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::config::{IpvlanConf, gateway_port_name, temp_link_name};
use super::plan::{Plan, missing_addresses, missing_routes};
use crate::cni::result::{CniResult, Interface};
use crate::cni::{CniError, Command, Invocation, Plugin, Result, code};
use crate::delegate;
use tombstone_kernel::netns::{NetNs, OpenError};
use tombstone_kernel::{IpvlanMode, IpvlanSpec, Link, LinkRoute, Netlink};

pub struct IpvlanPlugin;

const IPVLAN: &str = "ipvlan";

/// Re-codes a failure in the pod's link work as code 105.
fn link_failure(e: impl Into<CniError>) -> CniError {
    CniError {
        code: code::LINK_FAILURE,
        ..e.into()
    }
}

/// Opens the pod's namespace; failing that is code 3 (container unknown): nothing was set
/// up for it, and a runtime need not clean anything up.
fn open_netns(path: &std::path::Path) -> Result<NetNs> {
    NetNs::open(path).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("cannot open netns {}: {e}", path.display()),
        )
    })
}

fn link_error(msg: impl Into<String>) -> CniError {
    CniError::new(code::LINK_FAILURE, msg)
}

fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn is_ipvlan(l: &Link) -> bool {
    l.kind.as_deref() == Some(IPVLAN)
}

/// The config as the delegated IPAM gets it: our own stdin, whole.
fn stdin_of(inv: &Invocation) -> Vec<u8> {
    serde_json::to_vec(&Value::Object(inv.conf.raw.clone())).unwrap_or_default()
}

fn netns_path(inv: &Invocation) -> Result<&std::path::Path> {
    inv.env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::env("CNI_NETNS is required"))
}

/// The master link: the configured one, else the link of the default route.
fn resolve_master(conf: &IpvlanConf, nl: &Netlink) -> Result<Link> {
    let name = match &conf.master {
        Some(m) => m.clone(),
        None => {
            let index = nl.default_route_link()?.ok_or_else(|| {
                CniError::config("no master given and there is no default route to take it from")
            })?;
            nl.link_by_index(index)?
                .ok_or_else(|| link_error(format!("default route link #{index} is gone")))?
                .name
        }
    };
    nl.link_by_name(&name)?
        .ok_or_else(|| link_error(format!("master {name:?} not found")))
}

/// Ensures the network's gateway port: an IPvlan slave of `master` in the host netns, up,
/// holding `gateways`. Concurrent ADDs race safely: creation tolerates EEXIST, setting up and
/// adding an address are idempotent. A link of that name that is not an IPvlan slave of the
/// master is never touched.
fn ensure_gateway_port(
    host: &Netlink,
    name: &str,
    master: &Link,
    mode: IpvlanMode,
    gateways: &[IpNetwork],
) -> Result<()> {
    if host.link_by_name(name)?.is_none() {
        let made = host.create_ipvlan(&IpvlanSpec {
            name,
            master: master.index,
            mode,
            mtu: None,
            netns_fd: None,
        })?;
        if made {
            log::info!("gateway port {name} created on {}", master.name);
        }
    }
    let port = host
        .link_by_name(name)?
        .ok_or_else(|| link_error(format!("gateway port {name} vanished")))?;
    if !is_ipvlan(&port) || port.parent != Some(master.index) {
        return Err(link_error(format!(
            "{name} exists but is not an IPvlan slave of {}: left alone",
            master.name
        )));
    }
    if !port.up {
        host.set_link_up(port.index)?;
    }
    for g in gateways {
        if host.add_address(port.index, *g)? {
            log::info!("gateway port {name}: {g} added");
        }
    }
    Ok(())
}

impl IpvlanPlugin {
    /// The part of ADD that runs once the pod link exists (under its temporary name).
    #[allow(clippy::too_many_arguments)]
    fn add_on_link(
        &self,
        inv: &Invocation,
        conf: &IpvlanConf,
        host: &Netlink,
        pod: &Netlink,
        master: &Link,
        link: &Link,
        prev: Option<CniResult>,
        ipam_called: &mut bool,
    ) -> Result<Value> {
        let a = inv.attachment();
        let result = match (&conf.ipam_type, prev) {
            (Some(t), _) => {
                *ipam_called = true;
                let v =
                    delegate::run(&inv.env, t, Command::Add, &stdin_of(inv))?.ok_or_else(|| {
                        CniError::new(code::DELEGATE_FAILURE, format!("{t} ADD printed no result"))
                    })?;
                CniResult::from_value(&v).map_err(|e| {
                    CniError {
                        code: code::DELEGATE_FAILURE,
                        ..e
                    }
                    .context(t)
                })?
            }
            (None, Some(prev)) => prev,
            (None, None) => return Err(CniError::config("no ipam and no prevResult")),
        };
        let plan = Plan::from_result(&result)?;
        if conf.gateway_port && !plan.gateways.is_empty() {
            let name = gateway_port_name(&inv.conf.name);
            ensure_gateway_port(host, &name, master, conf.mode, &plan.gateways)
                .map_err(|e| e.context(format!("gateway port {name}")))?;
        }
        for addr in &plan.addresses {
            pod.add_address(link.index, *addr).map_err(link_failure)?;
        }
        // Renamed last, while still down (the kernel refuses to rename a link that is up):
        // until here a killed ADD leaves only the temporary name, which a retried ADD or a
        // DEL of the same attachment removes.
        if !pod
            .rename_link(link.index, &a.ifname)
            .map_err(link_failure)?
        {
            return Err(link_error(format!(
                "interface {:?} already exists in the pod's netns",
                a.ifname
            )));
        }
        pod.set_link_up(link.index).map_err(link_failure)?;
        for (dst, gateway) in &plan.routes {
            pod.add_link_route(&LinkRoute {
                dst: *dst,
                gateway: *gateway,
                oif: link.index,
            })
            .map_err(link_failure)?;
        }
        let now = pod
            .link_by_index(link.index)
            .map_err(link_failure)?
            .ok_or_else(|| link_error("the pod link vanished during ADD"))?;
        let mut out = result;
        out.interfaces = vec![Interface {
            name: a.ifname.clone(),
            mac: now.mac.as_deref().map(format_mac),
            mtu: Some(now.mtu),
            sandbox: Some(netns_path(inv)?.display().to_string()),
            ..Default::default()
        }];
        for ip in &mut out.ips {
            ip.interface = Some(0);
        }
        log::info!(
            "{}/{}: {} on {} ({}), {}",
            a.container_id,
            a.ifname,
            IPVLAN,
            master.name,
            conf.mode.as_str(),
            plan.addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(out.to_value(&inv.conf.cni_version))
    }
}

impl Plugin for IpvlanPlugin {
    fn name(&self) -> &str {
        "tombstone-ipvlan"
    }

    fn add(&self, inv: &Invocation) -> Result<Value> {
        let conf = IpvlanConf::from_netconf(&inv.conf)?;
        // Without IPAM the addresses come from prevResult: check it before touching anything.
        let prev = match (&conf.ipam_type, inv.conf.prev_result()) {
            (Some(_), _) => None,
            (None, None) => {
                return Err(CniError::config(
                    "no ipam configured and no prevResult to take addresses from",
                ));
            }
            (None, Some(p)) => {
                let r = CniResult::from_value(p)
                    .map_err(|e| CniError::config(e.msg).context("prevResult"))?;
                Plan::from_result(&r).map_err(|e| e.context("prevResult"))?;
                Some(r)
            }
        };
        let a = inv.attachment();
        let ns = open_netns(netns_path(inv)?)?;
        let host = Netlink::open()?;
        let pod = ns.netlink()?;
        if pod.link_by_name(&a.ifname)?.is_some() {
            return Err(link_error(format!(
                "interface {:?} already exists in the pod's netns",
                a.ifname
            )));
        }
        let master_nl = if conf.link_in_container { &pod } else { &host };
        let master = resolve_master(&conf, master_nl)?;
        let tmp = temp_link_name(a);
        // A killed earlier ADD of this attachment may have left its link under this name.
        if let Some(stale) = pod.link_by_name(&tmp)? {
            if !is_ipvlan(&stale) {
                return Err(link_error(format!(
                    "{tmp} exists in the pod's netns and is not ours"
                )));
            }
            pod.delete_link(stale.index).map_err(link_failure)?;
        }
        let spec = IpvlanSpec {
            name: &tmp,
            master: master.index,
            mode: conf.mode,
            mtu: conf.mtu,
            netns_fd: (!conf.link_in_container).then(|| ns.fd()),
        };
        if !master_nl.create_ipvlan(&spec).map_err(link_failure)? {
            return Err(link_error(format!("{tmp} already exists")));
        }
        let link = pod
            .link_by_name(&tmp)
            .map_err(link_failure)?
            .ok_or_else(|| {
                link_error(format!("{tmp} was created but is not in the pod's netns"))
            })?;
        let mut ipam_called = false;
        let outcome = self.add_on_link(
            inv,
            &conf,
            &host,
            &pod,
            &master,
            &link,
            prev,
            &mut ipam_called,
        );
        if let Err(e) = &outcome {
            // Undo, newest first: the link (with its addresses and routes), then IPAM.
            if let Err(u) = pod.delete_link(link.index) {
                log::error!("ADD failed ({e}); deleting the pod link failed too: {u}");
            }
            if ipam_called
                && let Some(t) = &conf.ipam_type
                && let Err(u) = delegate::run(&inv.env, t, Command::Del, &stdin_of(inv))
            {
                log::error!("ADD failed ({e}); releasing the IPAM allocation failed too: {u}");
            }
        }
        outcome
    }

    fn del(&self, inv: &Invocation) -> Result<()> {
        let conf = IpvlanConf::from_netconf(&inv.conf)?;
        let a = inv.attachment();
        let mut errors = Vec::new();
        match inv.env.netns.as_deref().map(NetNs::open) {
            None => log::debug!("DEL without CNI_NETNS: no link to remove"),
            Some(Err(OpenError::Gone | OpenError::NotANamespace)) => {
                log::debug!("DEL: the netns is gone, and the pod link with it")
            }
            Some(Err(OpenError::Other(e))) => {
                log::warn!("DEL: cannot open the netns ({e}); its link is left to the kernel")
            }
            Some(Ok(ns)) => match ns.netlink() {
                Err(e) => errors.push(link_failure(e)),
                Ok(pod) => {
                    for name in [a.ifname.clone(), temp_link_name(a)] {
                        match pod.link_by_name(&name) {
                            Ok(Some(l)) if is_ipvlan(&l) => {
                                if let Err(e) = pod.delete_link(l.index) {
                                    errors.push(link_failure(e));
                                }
                            }
                            Ok(Some(_)) => {
                                log::warn!("DEL: {name} is not an IPvlan link: left alone")
                            }
                            Ok(None) => {}
                            Err(e) => errors.push(link_failure(e)),
                        }
                    }
                }
            },
        }
        if let Some(t) = &conf.ipam_type
            && let Err(e) = delegate::run(&inv.env, t, Command::Del, &stdin_of(inv))
        {
            errors.push(e);
        }
        match errors.into_iter().next() {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    fn check(&self, inv: &Invocation) -> Result<()> {
        let conf = IpvlanConf::from_netconf(&inv.conf)?;
        let prev = inv
            .conf
            .prev_result()
            .ok_or_else(|| CniError::config("CHECK needs prevResult"))?;
        let prev = CniResult::from_value(prev)
            .map_err(|e| CniError::config(e.msg).context("prevResult"))?;
        let plan = Plan::from_result(&prev).map_err(|e| e.context("prevResult"))?;
        if let Some(t) = &conf.ipam_type {
            delegate::run(&inv.env, t, Command::Check, &stdin_of(inv))?;
        }
        let a = inv.attachment();
        let path = netns_path(inv)?;
        let ours = prev
            .interfaces
            .iter()
            .position(|i| {
                i.name == a.ifname
                    && i.sandbox
                        .as_deref()
                        .is_none_or(|s| std::path::Path::new(s) == path)
            })
            .ok_or_else(|| {
                link_error(format!(
                    "prevResult has no interface {:?} in this netns",
                    a.ifname
                ))
            })?;
        let ns = open_netns(path)?;
        let pod = ns.netlink()?;
        let link = pod
            .link_by_name(&a.ifname)
            .map_err(link_failure)?
            .ok_or_else(|| link_error(format!("interface {:?} not found", a.ifname)))?;
        if !is_ipvlan(&link) {
            return Err(link_error(format!("{} is not an IPvlan link", a.ifname)));
        }
        if link.ipvlan_mode != Some(conf.mode) {
            return Err(link_error(format!(
                "{} is in mode {}, the config says {}",
                a.ifname,
                link.ipvlan_mode.map_or("unknown", IpvlanMode::as_str),
                conf.mode.as_str()
            )));
        }
        let want: Vec<IpNetwork> = prev
            .ips
            .iter()
            .zip(&plan.addresses)
            .filter(|(ip, _)| ip.interface.is_none_or(|i| i == ours))
            .map(|(_, addr)| *addr)
            .collect();
        let have = pod.addresses(link.index).map_err(link_failure)?;
        let missing = missing_addresses(&want, &have);
        if !missing.is_empty() {
            return Err(link_error(format!("{} lacks {missing:?}", a.ifname)));
        }
        let have: Vec<(IpNetwork, Option<IpAddr>)> = pod
            .link_routes()
            .map_err(link_failure)?
            .into_iter()
            .filter(|r| r.oif == link.index)
            .map(|r| (r.dst, r.gateway))
            .collect();
        let missing = missing_routes(&plan.routes, &have);
        if !missing.is_empty() {
            return Err(link_error(format!(
                "routes missing in the pod: {missing:?}"
            )));
        }
        if conf.gateway_port && !plan.gateways.is_empty() {
            let name = gateway_port_name(&inv.conf.name);
            let host = Netlink::open()?;
            let port = host
                .link_by_name(&name)?
                .filter(is_ipvlan)
                .ok_or_else(|| link_error(format!("gateway port {name} not found")))?;
            if !port.up {
                return Err(link_error(format!("gateway port {name} is down")));
            }
            let missing = missing_addresses(&plan.gateways, &host.addresses(port.index)?);
            if !missing.is_empty() {
                return Err(link_error(format!("gateway port {name} lacks {missing:?}")));
            }
        }
        Ok(())
    }

    fn gc(&self, inv: &Invocation) -> Result<()> {
        let conf = IpvlanConf::from_netconf(&inv.conf)?;
        // Pod links die with their netns; the gateway port is the network's, not a pod's.
        // What GC can collect is IPAM's.
        if let Some(t) = &conf.ipam_type {
            delegate::run(&inv.env, t, Command::Gc, &stdin_of(inv))?;
        }
        Ok(())
    }

    fn status(&self, inv: &Invocation) -> Result<()> {
        let conf = IpvlanConf::from_netconf(&inv.conf)?;
        let unavailable = |msg: String| CniError::new(code::PLUGIN_NOT_AVAILABLE, msg);
        if !conf.link_in_container {
            let nl = Netlink::open().map_err(|e| unavailable(e.to_string()))?;
            let master = resolve_master(&conf, &nl).map_err(|e| unavailable(e.msg))?;
            if !master.up {
                return Err(unavailable(format!("master {} is down", master.name)));
            }
        }
        if let Some(t) = &conf.ipam_type {
            delegate::run(&inv.env, t, Command::Status, &stdin_of(inv)).map_err(|e| {
                if matches!(
                    e.code,
                    code::PLUGIN_NOT_AVAILABLE | code::PLUGIN_NOT_AVAILABLE_LIMITED
                ) {
                    e
                } else {
                    CniError {
                        code: code::PLUGIN_NOT_AVAILABLE,
                        ..e
                    }
                }
            })?;
        }
        Ok(())
    }
}
