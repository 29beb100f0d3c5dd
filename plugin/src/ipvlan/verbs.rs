//! The CNI verbs of `tombstone-ipvlan`.
//!
//! ADD: validate everything first, then, as a transaction ([`undo`]), create the pod link
//! under a temporary name directly in the pod's netns, ask IPAM, ensure the gateway port, put
//! the addresses on (announced when the link comes up), rename the link to `CNI_IFNAME`, set
//! it up and add the routes. DEL never
//! needs the master, the netns or `prevResult`, always releases IPAM, and reports every
//! failure.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::config::{IpvlanConf, gateway_port_name, temp_link_name};
use super::plan::{Plan, missing_addresses, missing_routes};
use super::undo;
use crate::errors::{KernelResult, cni_error};
use tombstone_cni::result::{CniResult, Interface};
use tombstone_cni::{Attachment, CniError, Command, Invocation, Plugin, Result, code};
use tombstone_cni::{delegate, error};
use tombstone_kernel::netns::{NetNs, OpenError};
use tombstone_kernel::{IpvlanMode, IpvlanSpec, KernelError, Link, LinkRoute, Netlink};

pub struct IpvlanPlugin;

const IPVLAN: &str = "ipvlan";

/// A kernel failure in the pod's link work: code 105.
fn link_failure(e: KernelError) -> CniError {
    CniError {
        code: code::LINK_FAILURE,
        ..cni_error(e)
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
            let index = nl.default_route_link().cni()?.ok_or_else(|| {
                CniError::config("no master given and there is no default route to take it from")
            })?;
            nl.link_by_index(index)
                .cni()?
                .ok_or_else(|| link_error(format!("default route link #{index} is gone")))?
                .name
        }
    };
    nl.link_by_name(&name)
        .cni()?
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
    if host.link_by_name(name).cni()?.is_none() {
        let made = host
            .create_ipvlan(&IpvlanSpec {
                name,
                master: master.index,
                mode,
                mtu: None,
                netns_fd: None,
            })
            .cni()?;
        if made {
            log::info!("gateway port {name} created on {}", master.name);
        }
    }
    let port = host
        .link_by_name(name)
        .cni()?
        .ok_or_else(|| link_error(format!("gateway port {name} vanished")))?;
    if !is_ipvlan(&port) || port.parent != Some(master.index) {
        return Err(link_error(format!(
            "{name} exists but is not an IPvlan slave of {}: left alone",
            master.name
        )));
    }
    if !port.up {
        host.set_link_up(port.index).cni()?;
    }
    for g in gateways {
        if host.add_address(port.index, *g).cni()? {
            log::info!("gateway port {name}: {g} added");
        }
    }
    Ok(())
}

/// The pod link just created under its temporary name, found in the pod's netns.
fn created_link(pod: &Netlink, tmp: &str) -> Result<Link> {
    pod.link_by_name(tmp)
        .map_err(link_failure)?
        .ok_or_else(|| link_error(format!("{tmp} was created but is not in the pod's netns")))
}

/// Removes the attachment's IPvlan links from the pod's netns, under `CNI_IFNAME` and under
/// the temporary name of a killed ADD; a link of either name that is not IPvlan is left alone.
fn remove_pod_links(pod: &Netlink, a: &Attachment) -> Vec<CniError> {
    let mut errors = Vec::new();
    for name in [a.ifname.clone(), temp_link_name(a)] {
        match pod.link_by_name(&name) {
            Ok(Some(l)) if is_ipvlan(&l) => {
                if let Err(e) = pod.delete_link(l.index) {
                    errors.push(link_failure(e).context(format!("deleting {name}")));
                }
            }
            Ok(Some(_)) => log::warn!("{name} is not an IPvlan link: left alone"),
            Ok(None) => {}
            Err(e) => errors.push(link_failure(e).context(format!("looking up {name}"))),
        }
    }
    errors
}

/// The delegated IPAM's ADD result.
fn ipam_add(inv: &Invocation, t: &str) -> Result<CniResult> {
    let v = delegate::run(&inv.env, t, Command::Add, &stdin_of(inv))?.ok_or_else(|| {
        CniError::new(code::DELEGATE_FAILURE, format!("{t} ADD printed no result"))
    })?;
    CniResult::from_value(&v).map_err(|e| {
        CniError {
            code: code::DELEGATE_FAILURE,
            ..e
        }
        .context(t)
    })
}

/// Has the kernel announce the pod's addresses when `link` (still down) comes up: a
/// gratuitous ARP for IPv4 (`arp_notify`), an unsolicited neighbour advertisement for IPv6
/// once DAD is done (`ndisc_notify`), each for a family the plan has. A neighbour that still
/// holds an old MAC for a reused address (a pod before this one, on another node) takes the
/// new one at once instead of after its entry expires; as the reference ipvlan and macvlan do.
/// A sysctl that cannot be written is a warning, not a failed ADD: the pod is reachable
/// without the announcement, and the neighbours' entries expire.
fn announce_on_up(ns: &NetNs, link: &Link, plan: &Plan) {
    let families = [
        (true, "ipv4", "arp_notify"),
        (false, "ipv6", "ndisc_notify"),
    ];
    for (v4, family, key) in families {
        if plan.addresses.iter().any(|a| a.is_ipv4() == v4)
            && let Err(e) = ns.set_sysctl(&format!("{family}/conf/{}/{key}", link.name), "1")
        {
            log::warn!("{}: its addresses will not be announced: {e}", link.name);
        }
    }
}

/// Puts the plan on the pod link in `ns`: the announcement of its addresses
/// ([`announce_on_up`]), the addresses, then the name (renamed last, while still down: the
/// kernel refuses to rename a link that is up, and until here a killed ADD leaves only the
/// temporary name, which a retried ADD or a DEL removes), up, routes. Nothing here depends on
/// the link being IPvlan.
pub fn configure_pod_link(
    ns: &NetNs,
    pod: &Netlink,
    link: &Link,
    plan: &Plan,
    ifname: &str,
) -> Result<Link> {
    announce_on_up(ns, link, plan);
    for addr in &plan.addresses {
        pod.add_address(link.index, *addr)
            .map_err(|e| link_failure(e).context(format!("adding {addr}")))?;
    }
    if !pod.rename_link(link.index, ifname).map_err(link_failure)? {
        return Err(link_error(format!(
            "interface {ifname:?} already exists in the pod's netns"
        )));
    }
    pod.set_link_up(link.index).map_err(link_failure)?;
    for (dst, gateway) in &plan.routes {
        pod.add_link_route(&LinkRoute {
            dst: *dst,
            gateway: *gateway,
            oif: link.index,
        })
        .map_err(|e| link_failure(e).context(format!("adding the route to {dst}")))?;
    }
    pod.link_by_index(link.index)
        .map_err(link_failure)?
        .ok_or_else(|| link_error("the pod link vanished during ADD"))
}

/// The ADD result: IPAM's (or prevResult's) addresses on the pod's interface.
fn add_result(inv: &Invocation, mut out: CniResult, link: &Link) -> Result<Value> {
    out.interfaces = vec![Interface {
        name: inv.attachment().ifname.clone(),
        mac: link.mac.as_deref().map(format_mac),
        mtu: Some(link.mtu),
        sandbox: Some(netns_path(inv)?.display().to_string()),
        ..Default::default()
    }];
    for ip in &mut out.ips {
        ip.interface = Some(0);
    }
    Ok(out.to_value(&inv.conf.cni_version))
}

impl Plugin for IpvlanPlugin {
    fn name(&self) -> &str {
        tombstone_cni::suite::IPVLAN_TYPE
    }

    /// Validates everything first; then, as one transaction (a failure undoes every step
    /// newest first): the pod link under a temporary name, IPAM, the gateway port, the
    /// addresses, the name, up, the routes. The gateway port is the network's, shared by its
    /// pods: a failed ADD leaves it in place.
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
        let host = Netlink::open().cni()?;
        let pod = ns.netlink().map_err(link_failure)?;
        if pod.link_by_name(&a.ifname).map_err(link_failure)?.is_some() {
            return Err(link_error(format!(
                "interface {:?} already exists in the pod's netns",
                a.ifname
            )));
        }
        let master_nl = if conf.link_in_container { &pod } else { &host };
        let master = resolve_master(&conf, master_nl)?;
        let tmp = temp_link_name(a);
        // A killed earlier ADD of this attachment may have left its link under this name.
        if let Some(stale) = pod.link_by_name(&tmp).map_err(link_failure)? {
            if !is_ipvlan(&stale) {
                return Err(link_error(format!(
                    "{tmp} exists in the pod's netns and is not ours"
                )));
            }
            pod.delete_link(stale.index).map_err(link_failure)?;
        }
        undo::transaction(|tx| {
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
            // Its addresses and routes go with it.
            tx.push("delete the pod link", || {
                error::collect("deleting the pod link", remove_pod_links(&pod, a))
            });
            let link = created_link(&pod, &tmp)?;
            let result = match (&conf.ipam_type, prev) {
                (Some(t), _) => {
                    // Pushed before the call: an IPAM that failed half-way may hold an address,
                    // and its DEL is harmless when it holds none.
                    tx.push("release the IPAM allocation", || {
                        delegate::run(&inv.env, t, Command::Del, &stdin_of(inv)).map(drop)
                    });
                    ipam_add(inv, t)?
                }
                (None, Some(prev)) => prev,
                (None, None) => return Err(CniError::config("no ipam and no prevResult")),
            };
            let plan = Plan::from_result(&result)?;
            if conf.gateway_port && !plan.gateways.is_empty() {
                let name = gateway_port_name(&inv.conf.name);
                ensure_gateway_port(&host, &name, &master, conf.mode, &plan.gateways)
                    .map_err(|e| e.context(format!("gateway port {name}")))?;
            }
            let link = configure_pod_link(&ns, &pod, &link, &plan, &a.ifname)?;
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
            add_result(inv, result, &link)
        })
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
                Ok(pod) => errors.extend(remove_pod_links(&pod, a)),
            },
        }
        if let Some(t) = &conf.ipam_type
            && let Err(e) = delegate::run(&inv.env, t, Command::Del, &stdin_of(inv))
        {
            errors.push(e);
        }
        // Every failure is reported, the IPAM's beside the link's.
        error::collect("DEL", errors)
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
        let pod = ns.netlink().cni()?;
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
            let host = Netlink::open().cni()?;
            let port = host
                .link_by_name(&name)
                .cni()?
                .filter(is_ipvlan)
                .ok_or_else(|| link_error(format!("gateway port {name} not found")))?;
            if !port.up {
                return Err(link_error(format!("gateway port {name} is down")));
            }
            let missing = missing_addresses(&plan.gateways, &host.addresses(port.index).cni()?);
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
