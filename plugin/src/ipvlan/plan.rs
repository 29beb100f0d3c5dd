//! What an IPAM result (or `prevResult`) asks of the kernel, worked out without touching it:
//! the pod's addresses, its routes (a route without `gw` goes through the gateway of its
//! family, as the reference plugins do), the gateway port's addresses, and CHECK's
//! comparison of what is there with what should be.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use tombstone_cni::config::parse_cidr;
use tombstone_cni::result::CniResult;
use tombstone_cni::{CniError, Result};

/// The kernel work of one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Addresses of the pod link, with their prefixes.
    pub addresses: Vec<IpNetwork>,
    /// Routes in the pod: destination and gateway.
    pub routes: Vec<(IpNetwork, Option<IpAddr>)>,
    /// Addresses of the gateway port: each IP's gateway with that IP's prefix.
    pub gateways: Vec<IpNetwork>,
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| CniError::config(format!("{what}: invalid address {s:?}")))
}

impl Plan {
    pub fn from_result(r: &CniResult) -> Result<Plan> {
        let mut addresses = Vec::new();
        let mut gateways: Vec<IpNetwork> = Vec::new();
        let mut default_gw: [Option<IpAddr>; 2] = [None, None];
        for (i, ip) in r.ips.iter().enumerate() {
            let addr = parse_cidr(&ip.address).map_err(|e| e.context(format!("ips[{i}]")))?;
            addresses.push(addr);
            if let Some(gw) = &ip.gateway {
                let gw = parse_ip(gw, &format!("ips[{i}].gateway"))?;
                if gw.is_ipv4() != addr.is_ipv4() {
                    return Err(CniError::config(format!(
                        "ips[{i}]: gateway {gw} is not of the family of {addr}"
                    )));
                }
                if gw == addr.ip() {
                    return Err(CniError::config(format!(
                        "ips[{i}]: the address {addr} is its own gateway"
                    )));
                }
                let slot = usize::from(gw.is_ipv6());
                default_gw[slot].get_or_insert(gw);
                let port = IpNetwork::new(gw, addr.prefix())
                    .map_err(|e| CniError::config(format!("ips[{i}]: {e}")))?;
                if !gateways.contains(&port) {
                    gateways.push(port);
                }
            }
        }
        if addresses.is_empty() {
            return Err(CniError::config(
                "the result has no IP address to configure",
            ));
        }
        let mut routes = Vec::new();
        for (i, route) in r.routes.iter().enumerate() {
            let dst = parse_cidr(&route.dst).map_err(|e| e.context(format!("routes[{i}]")))?;
            let dst = IpNetwork::new(dst.network(), dst.prefix())
                .map_err(|e| CniError::config(format!("routes[{i}]: {e}")))?;
            let gw = match &route.gw {
                Some(g) => Some(parse_ip(g, &format!("routes[{i}].gw"))?),
                None => default_gw[usize::from(dst.is_ipv6())],
            };
            if let Some(g) = gw
                && g.is_ipv4() != dst.is_ipv4()
            {
                return Err(CniError::config(format!(
                    "routes[{i}]: gateway {g} is not of the family of {dst}"
                )));
            }
            routes.push((dst, gw));
        }
        Ok(Plan {
            addresses,
            routes,
            gateways,
        })
    }
}

/// Addresses in `want` that `have` lacks (compared with their prefixes).
pub fn missing_addresses(want: &[IpNetwork], have: &[IpNetwork]) -> Vec<IpNetwork> {
    want.iter()
        .filter(|w| {
            !have
                .iter()
                .any(|h| h.ip() == w.ip() && h.prefix() == w.prefix())
        })
        .copied()
        .collect()
}

/// Routes of `want` not in `have`. A wanted route without a gateway matches any gateway.
pub fn missing_routes(
    want: &[(IpNetwork, Option<IpAddr>)],
    have: &[(IpNetwork, Option<IpAddr>)],
) -> Vec<(IpNetwork, Option<IpAddr>)> {
    want.iter()
        .filter(|(d, g)| {
            !have
                .iter()
                .any(|(hd, hg)| hd == d && (g.is_none() || hg == g))
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(v: serde_json::Value) -> CniResult {
        CniResult::from_value(&v).unwrap()
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn routes_without_gw_take_their_familys_gateway() {
        let p = Plan::from_result(&result(serde_json::json!({
            "cniVersion": "1.1.0",
            "ips": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"},
                    {"address": "fd00:10::5/64", "gateway": "fd00:10::1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.0.254"}]
        })))
        .unwrap();
        assert_eq!(p.addresses, vec![net("10.10.0.5/24"), net("fd00:10::5/64")]);
        assert_eq!(p.gateways, vec![net("10.10.0.1/24"), net("fd00:10::1/64")]);
        assert_eq!(
            p.routes,
            vec![
                (net("0.0.0.0/0"), Some("10.10.0.1".parse().unwrap())),
                (net("::/0"), Some("fd00:10::1".parse().unwrap())),
                (net("192.168.0.0/16"), Some("10.10.0.254".parse().unwrap())),
            ]
        );
    }

    #[test]
    fn no_gateway_means_no_gateway_port_address_and_on_link_routes() {
        let p = Plan::from_result(&result(serde_json::json!({
            "cniVersion": "1.1.0",
            "ips": [{"address": "10.10.0.5/24"}],
            "routes": [{"dst": "10.20.0.0/16"}]
        })))
        .unwrap();
        assert!(p.gateways.is_empty());
        assert_eq!(p.routes, vec![(net("10.20.0.0/16"), None)]);
    }

    #[test]
    fn two_ips_of_one_subnet_give_one_gateway_address() {
        let p = Plan::from_result(&result(serde_json::json!({
            "cniVersion": "1.1.0",
            "ips": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"},
                    {"address": "10.10.0.6/24", "gateway": "10.10.0.1"}]
        })))
        .unwrap();
        assert_eq!(p.gateways, vec![net("10.10.0.1/24")]);
    }

    #[test]
    fn bad_results_are_code_7() {
        for bad in [
            serde_json::json!({"cniVersion": "1.1.0", "ips": []}),
            serde_json::json!({"cniVersion": "1.1.0", "ips": [{"address": "10.10.0.5/33"}]}),
            serde_json::json!({"cniVersion": "1.1.0", "ips": [{"address": "10.10.0.5/24", "gateway": "fd00::1"}]}),
            serde_json::json!({"cniVersion": "1.1.0", "ips": [{"address": "10.10.0.5/24", "gateway": "x"}]}),
            serde_json::json!({"cniVersion": "1.1.0", "ips": [{"address": "10.10.0.5/24", "gateway": "10.10.0.5"}]}),
            serde_json::json!({"cniVersion": "1.1.0", "ips": [{"address": "10.10.0.5/24"}], "routes": [{"dst": "nope"}]}),
            serde_json::json!({"cniVersion": "1.1.0", "ips": [{"address": "10.10.0.5/24"}], "routes": [{"dst": "::/0", "gw": "10.10.0.1"}]}),
        ] {
            assert_eq!(
                Plan::from_result(&result(bad.clone())).unwrap_err().code,
                7,
                "{bad}"
            );
        }
    }

    #[test]
    fn check_comparisons() {
        let want = [net("10.10.0.5/24")];
        assert!(missing_addresses(&want, &[net("10.10.0.5/24"), net("fe80::1/64")]).is_empty());
        assert_eq!(
            missing_addresses(&want, &[net("10.10.0.5/32")]),
            want.to_vec()
        );
        let gw: IpAddr = "10.10.0.1".parse().unwrap();
        let r = [(net("0.0.0.0/0"), Some(gw))];
        assert!(missing_routes(&r, &r).is_empty());
        assert_eq!(missing_routes(&r, &[(net("0.0.0.0/0"), None)]), r.to_vec());
        assert!(missing_routes(&[(net("0.0.0.0/0"), None)], &r).is_empty());
    }
}
