//! The IPAM section of the network config, read exactly where host-local reads it
//! (`ipam.ranges`, the legacy single range at `ipam.subnet`, `routes`, `dataDir`,
//! `resolvConf`), plus `reuseAfterSeconds`, and the requested addresses from `CNI_ARGS`
//! `IP=`, `args.cni.ips` and the `ips` runtime capability. No I/O. [`KEYS`] lists the keys of
//! `ipam` it reads: any other is logged as unknown (the config's other keys are the main
//! plugin's).

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde::Deserialize;
use serde_json::{Map, Value};
use tombstone_cni::config::{view_of, warn_unknown_keys};
use tombstone_cni::result::Route;
use tombstone_cni::version::{self, Version};
use tombstone_cni::{CniError, NetConf, Result};

use crate::range::{RangeSet, RangeSpec, canonical};

pub use tombstone_cni::suite::{
    DEFAULT_IPAM_DATA_DIR as DEFAULT_DATA_DIR, DEFAULT_REUSE_AFTER_SECONDS,
};

/// The validated IPAM configuration of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct IpamConfig {
    pub network: String,
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<RouteConf>,
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    pub reuse_after: u64,
    /// Requested addresses, in host-local's order: `CNI_ARGS`, `args.cni.ips`,
    /// `runtimeConfig.ips`.
    pub requested: Vec<IpAddr>,
}

/// A route of the result: `dst`, optional `gw`, and the spec 1.1 attributes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteConf {
    pub dst: String,
    #[serde(default)]
    pub gw: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub advmss: Option<u32>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub table: Option<u32>,
    #[serde(default)]
    pub scope: Option<u32>,
}

impl RouteConf {
    /// The route as the given result version writes it: the 1.1 attributes only from 1.1.0.
    pub fn to_route(&self, cni_version: &str) -> Route {
        let mut extra = Map::new();
        if version::at_least(cni_version, Version(1, 1, 0)) {
            for (k, v) in [
                ("mtu", self.mtu),
                ("advmss", self.advmss),
                ("priority", self.priority),
                ("table", self.table),
                ("scope", self.scope),
            ] {
                if let Some(v) = v {
                    extra.insert(k.into(), v.into());
                }
            }
        }
        Route {
            dst: self.dst.clone(),
            gw: self.gw.clone(),
            extra,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangeView {
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    range_start: Option<String>,
    #[serde(default)]
    range_end: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
}

impl RangeView {
    fn spec(&self) -> RangeSpec {
        RangeSpec {
            subnet: self.subnet.clone().unwrap_or_default(),
            range_start: self.range_start.clone(),
            range_end: self.range_end.clone(),
            gateway: self.gateway.clone(),
        }
    }
}

/// Every key of `ipam` that `IpamView` reads, as the config spells it.
pub const KEYS: &[&str] = &[
    "type",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "ranges",
    "routes",
    "dataDir",
    "resolvConf",
    "reuseAfterSeconds",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpamView {
    #[serde(flatten)]
    legacy: RangeView,
    #[serde(default)]
    ranges: Option<Vec<Vec<RangeView>>>,
    #[serde(default)]
    routes: Option<Vec<RouteConf>>,
    #[serde(default)]
    data_dir: Option<String>,
    #[serde(default)]
    resolv_conf: Option<String>,
    #[serde(default)]
    reuse_after_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeView {
    #[serde(default)]
    ips: Option<Vec<String>>,
    #[serde(default)]
    ip_ranges: Option<Vec<Vec<RangeView>>>,
}

#[derive(Debug, Default, Deserialize)]
struct CniArgsView {
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct ArgsView {
    #[serde(default)]
    cni: Option<CniArgsView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetView {
    #[serde(default)]
    ipam: Option<Value>,
    #[serde(default)]
    runtime_config: Option<RuntimeView>,
    #[serde(default)]
    args: Option<ArgsView>,
}

/// A requested address: a bare address, or one with a prefix as the `ips` capability
/// may carry (`10.1.0.5/24`).
fn parse_requested(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<IpNetwork>().ok().map(|n| n.ip()))
        .map(canonical)
}

impl IpamConfig {
    /// Reads the config; `env_ip` is `CNI_ARGS`'s `IP` (code 4 when malformed), every
    /// other mistake is code 7.
    pub fn from_conf(conf: &NetConf, env_ip: Option<&str>) -> Result<IpamConfig> {
        let view: NetView = conf.view()?;
        let ipam = match view.ipam {
            None | Some(Value::Null) => {
                return Err(CniError::config("IPAM config missing 'ipam' key"));
            }
            Some(Value::Object(m)) => m,
            Some(_) => return Err(CniError::config("ipam must be an object")),
        };
        let ipam: IpamView = view_of(&ipam, "ipam.").inspect(|_| {
            warn_unknown_keys(&ipam, KEYS, "ipam.");
        })?;

        let mut requested = Vec::new();
        if let Some(ip) = env_ip {
            requested.push(parse_requested(ip).ok_or_else(|| {
                CniError::env(format!("CNI_ARGS: invalid IP address {ip:?} in IP={ip}"))
            })?);
        }
        let arg_ips = view.args.and_then(|a| a.cni).and_then(|c| c.ips);
        let runtime = view.runtime_config.unwrap_or_default();
        for (what, list) in [
            ("args.cni.ips", arg_ips),
            ("runtimeConfig.ips", runtime.ips),
        ] {
            for s in list.unwrap_or_default() {
                requested.push(parse_requested(&s).ok_or_else(|| {
                    CniError::config(format!("{what}: invalid IP address {s:?}"))
                })?);
            }
        }

        let mut sets: Vec<Vec<RangeSpec>> = Vec::new();
        for set in runtime.ip_ranges.unwrap_or_default() {
            sets.push(set.iter().map(RangeView::spec).collect());
        }
        if ipam.legacy.subnet.is_some() {
            sets.push(vec![ipam.legacy.spec()]);
        }
        for set in ipam.ranges.unwrap_or_default() {
            sets.push(set.iter().map(RangeView::spec).collect());
        }
        if sets.is_empty() {
            return Err(CniError::config("no IP ranges specified"));
        }
        let ranges = sets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                RangeSet::canonicalize(s)
                    .map_err(|e| CniError::config(format!("invalid range set {i}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        for (i, a) in ranges.iter().enumerate() {
            for (j, b) in ranges.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(CniError::config(format!("range set {i} overlaps with {j}")));
                }
            }
        }

        let routes = ipam.routes.unwrap_or_default();
        for (i, r) in routes.iter().enumerate() {
            if r.dst.parse::<IpNetwork>().is_err() {
                return Err(CniError::config(format!(
                    "routes[{i}]: invalid dst {:?}",
                    r.dst
                )));
            }
            if let Some(gw) = &r.gw
                && gw.parse::<IpAddr>().is_err()
            {
                return Err(CniError::config(format!("routes[{i}]: invalid gw {gw:?}")));
            }
        }

        let data_dir = PathBuf::from(
            ipam.data_dir
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        );
        if !data_dir.is_absolute() {
            return Err(CniError::config(format!(
                "dataDir {} is not an absolute path",
                data_dir.display()
            )));
        }
        Ok(IpamConfig {
            network: conf.name.clone(),
            ranges,
            routes,
            data_dir,
            resolv_conf: ipam
                .resolv_conf
                .filter(|r| !r.is_empty())
                .map(PathBuf::from),
            reuse_after: ipam
                .reuse_after_seconds
                .unwrap_or(DEFAULT_REUSE_AFTER_SECONDS),
            requested,
        })
    }
}

/// A resolv.conf's content as the result's `dns`, parsed as host-local parses it.
pub fn parse_resolv_conf(text: &str) -> tombstone_cni::result::Dns {
    let mut dns = tombstone_cni::result::Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        let rest = || fields[1..].iter().map(|s| s.to_string());
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].into()),
            "domain" => dns.domain = Some(fields[1].into()),
            "search" => dns.search.extend(rest()),
            "options" => dns.options.extend(rest()),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(ipam: &str, extra: &str) -> Result<IpamConfig> {
        let c = NetConf::parse(
            format!(r#"{{"cniVersion":"1.0.0","name":"pods","ipam":{ipam}{extra}}}"#).as_bytes(),
        )
        .unwrap();
        IpamConfig::from_conf(&c, None)
    }

    #[test]
    fn host_local_configs_read() {
        let c = conf(
            r#"{"type":"tombstone-ipam","ranges":[[{"subnet":"10.1.0.0/24","gateway":"10.1.0.254"}],[{"subnet":"fd00::/64"}]],
                "routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.0.0/16","gw":"10.1.0.254","mtu":1400}],"dataDir":"/run/x"}"#,
            "",
        )
        .unwrap();
        assert_eq!(c.ranges.len(), 2);
        assert_eq!(c.ranges[0].0[0].gateway.to_string(), "10.1.0.254");
        assert_eq!(c.data_dir, PathBuf::from("/run/x"));
        assert_eq!(c.reuse_after, 60);
        assert_eq!(c.routes[1].mtu, Some(1400));
        assert!(c.routes[1].to_route("1.0.0").extra.is_empty());
        assert_eq!(c.routes[1].to_route("1.1.0").extra["mtu"], 1400);
        let legacy = conf(
            r#"{"subnet":"10.2.0.0/16","rangeStart":"10.2.1.0","reuseAfterSeconds":0}"#,
            "",
        )
        .unwrap();
        assert_eq!(legacy.ranges[0].0[0].start.to_string(), "10.2.1.0");
        assert_eq!(legacy.reuse_after, 0);
        assert_eq!(legacy.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn requested_addresses_come_from_all_three_places() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"pods","ipam":{"ranges":[[{"subnet":"10.1.0.0/24"}]]},
                "args":{"cni":{"ips":["10.1.0.7"]}},"runtimeConfig":{"ips":["10.1.0.8/24"]}}"#,
        )
        .unwrap();
        let ipam = IpamConfig::from_conf(&c, Some("10.1.0.6")).unwrap();
        let got: Vec<String> = ipam.requested.iter().map(|i| i.to_string()).collect();
        assert_eq!(got, ["10.1.0.6", "10.1.0.7", "10.1.0.8"]);
        assert_eq!(
            IpamConfig::from_conf(&c, Some("10.1.0.300"))
                .unwrap_err()
                .code,
            4
        );
    }

    #[test]
    fn mistakes_are_code_7() {
        for (ipam, extra) in [
            ("null", ""),
            (r#"{"type":"x"}"#, ""),
            (r#"{"ranges":[[{"subnet":"10.1.0.5/24"}]]}"#, ""),
            (r#"{"ranges":[[]]}"#, ""),
            (r#"{"ranges":"10.1.0.0/24"}"#, ""),
            (
                r#"{"ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"10.1.0.0/25"}]]}"#,
                "",
            ),
            (
                r#"{"ranges":[[{"subnet":"10.1.0.0/24"}]],"reuseAfterSeconds":-1}"#,
                "",
            ),
            (
                r#"{"ranges":[[{"subnet":"10.1.0.0/24"}]],"dataDir":"rel/dir"}"#,
                "",
            ),
            (
                r#"{"ranges":[[{"subnet":"10.1.0.0/24"}]],"routes":[{"dst":"x"}]}"#,
                "",
            ),
            (
                r#"{"ranges":[[{"subnet":"10.1.0.0/24"}]]}"#,
                r#","runtimeConfig":{"ips":["nope"]}"#,
            ),
        ] {
            assert_eq!(conf(ipam, extra).unwrap_err().code, 7, "{ipam} {extra}");
        }
    }

    #[test]
    fn resolv_conf_like_host_local() {
        let d = parse_resolv_conf(
            "# c\nnameserver 10.0.0.10\nnameserver 10.0.0.11\ndomain x.local\nsearch a b\noptions ndots:5\nbogus\n",
        );
        assert_eq!(d.nameservers, ["10.0.0.10", "10.0.0.11"]);
        assert_eq!(d.domain.as_deref(), Some("x.local"));
        assert_eq!(d.search, ["a", "b"]);
        assert_eq!(d.options, ["ndots:5"]);
    }

    #[test]
    fn a_mistyped_value_names_its_key_and_keys_is_every_key_read() {
        for (ipam, key) in [
            (
                r#"{"reuseAfterSeconds":"30","subnet":"10.1.0.0/24"}"#,
                "ipam.reuseAfterSeconds",
            ),
            (r#"{"dataDir":5,"subnet":"10.1.0.0/24"}"#, "ipam.dataDir"),
            (
                r#"{"subnet":"10.1.0.0/24","routes":[{"dst":1}]}"#,
                "ipam.routes",
            ),
            (r#"{"ranges":{"subnet":"10.1.0.0/24"}}"#, "ipam.ranges"),
        ] {
            let e = conf(ipam, "").unwrap_err();
            assert_eq!(e.code, 7, "{ipam}");
            assert!(e.msg.contains(key), "{ipam}: {}", e.msg);
        }
        assert_eq!(conf(r#""x""#, "").unwrap_err().code, 7);
        let every: Map<String, Value> = serde_json::from_str(
            r#"{"type":"tombstone-ipam","subnet":"10.1.0.0/24","rangeStart":"10.1.0.2",
                "rangeEnd":"10.1.0.9","gateway":"10.1.0.1","ranges":[],"routes":[],
                "dataDir":"/x","resolvConf":"/etc/resolv.conf","reuseAfterSeconds":1}"#,
        )
        .unwrap();
        assert!(tombstone_cni::config::unknown_keys(&every, KEYS).is_empty());
        for key in KEYS.iter().filter(|k| **k != "type") {
            let e = conf(
                &format!(r#"{{"subnet":"10.1.0.0/24","{key}":{{"x":1}}}}"#),
                "",
            );
            assert_eq!(e.unwrap_err().code, 7, "{key}");
        }
        let typo: Map<String, Value> =
            serde_json::from_str(r#"{"reuseAfterSecond":30,"subnet":"10.1.0.0/24"}"#).unwrap();
        assert_eq!(
            tombstone_cni::config::unknown_keys(&typo, KEYS),
            vec![("reuseAfterSecond".to_string(), Some("reuseAfterSeconds"))]
        );
    }
}
