//! ADD results (spec 1.1 "Success"), typed for the plugins that build one, read from and
//! written in each spec version's format ([`ResultFormat`]). Every struct keeps the keys it
//! does not model in `extra`, so a result read and written again in its version loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CniError, Result};
use crate::version::{self, ResultFormat};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.1.0.5/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl CniResult {
    /// Reads a result of any spec version: the 0.1.0/0.2.0 form (`ip4`, `ip6`) as the spec's
    /// conversion reads it (each object one address, its routes appended to `routes`).
    pub fn from_value(v: &Value) -> Result<CniResult> {
        let invalid = |e: serde_json::Error| CniError::decode(format!("invalid result: {e}"));
        if !is_v020(v) {
            return serde_json::from_value(v.clone()).map_err(invalid);
        }
        let old: V020 = serde_json::from_value(v.clone()).map_err(invalid)?;
        let mut r = CniResult {
            cni_version: old.cni_version,
            dns: old.dns,
            extra: old.extra,
            ..Default::default()
        };
        for ip in [old.ip4, old.ip6].into_iter().flatten() {
            r.ips.push(IpConfig {
                address: ip.ip,
                gateway: ip.gateway,
                interface: None,
                extra: Map::new(),
            });
            r.routes.extend(ip.routes);
        }
        Ok(r)
    }

    /// The result as the given spec version writes it: 0.1.0 and 0.2.0 in their `ip4`/`ip6`
    /// form (the first address of each family, with the routes of its family, as the spec's
    /// conversion does); 0.3.0 to 0.4.0 with `version` ("4"/"6") on every IP; from 1.0.0 on
    /// without that key.
    pub fn to_value(&self, cni_version: &str) -> Value {
        let mut r = self.clone();
        r.cni_version = cni_version.to_string();
        let format = version::result_format(cni_version);
        for ip in &mut r.ips {
            if format == ResultFormat::V040 {
                let v = if is_v6(&ip.address) { "6" } else { "4" };
                ip.extra.insert("version".into(), v.into());
            } else {
                ip.extra.remove("version");
            }
        }
        if format == ResultFormat::V020 {
            return serde_json::to_value(r.into_v020()).expect("a result always serializes");
        }
        serde_json::to_value(r).expect("a result always serializes")
    }

    fn into_v020(self) -> V020 {
        let pick = |six: bool| {
            let ip = self.ips.iter().find(|ip| is_v6(&ip.address) == six)?;
            Some(V020Ip {
                ip: ip.address.clone(),
                gateway: ip.gateway.clone(),
                routes: (self.routes.iter())
                    .filter(|r| is_v6(&r.dst) == six)
                    .cloned()
                    .collect(),
            })
        };
        V020 {
            ip4: pick(false),
            ip6: pick(true),
            cni_version: self.cni_version.clone(),
            dns: self.dns.clone(),
            extra: self.extra,
        }
    }
}

fn is_v6(address: &str) -> bool {
    address.contains(':')
}

/// A result in the 0.1.0/0.2.0 form: its `cniVersion` says so, or (none given) it has `ip4` or
/// `ip6` and no `ips`.
fn is_v020(v: &Value) -> bool {
    match v.get("cniVersion").and_then(Value::as_str) {
        Some(cv) => version::result_format(cv) == ResultFormat::V020,
        None => v.get("ips").is_none() && (v.get("ip4").is_some() || v.get("ip6").is_some()),
    }
}

/// The 0.1.0/0.2.0 result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct V020 {
    #[serde(default)]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<V020Ip>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<V020Ip>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dns: Option<Dns>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct V020Ip {
    ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_spec_1_1_fields() {
        let v = serde_json::json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/n", "socketPath": "/s", "pciID": "0000:00:01.0"}],
            "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "mtu": 1400, "advmss": 1360, "priority": 10, "table": 100, "scope": 0}],
            "dns": {"nameservers": ["10.1.0.10"]},
            "custom": {"x": 1}
        });
        let r = CniResult::from_value(&v).unwrap();
        assert_eq!(r.to_value("1.1.0"), v);
    }

    #[test]
    fn legacy_versions_carry_ip_version() {
        let r = CniResult {
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/24".into(),
                    ..Default::default()
                },
                IpConfig {
                    address: "fd00::5/64".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let old = r.to_value("0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        let back = CniResult::from_value(&old).unwrap().to_value("1.0.0");
        assert!(back["ips"][0].get("version").is_none());
    }

    fn dual_stack() -> CniResult {
        CniResult::from_value(&serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/n"}],
            "ips": [
                {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0},
                {"address": "10.1.0.6/24", "interface": 0},
                {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 0}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
            "dns": {"nameservers": ["10.1.0.10"]}
        }))
        .unwrap()
    }

    #[test]
    fn versions_0_3_x_write_the_0_4_0_form() {
        for v in ["0.3.0", "0.3.1", "0.4.0"] {
            let out = dual_stack().to_value(v);
            assert_eq!(out["cniVersion"], v);
            assert_eq!(out["ips"][0]["version"], "4");
            assert_eq!(out["ips"][2]["version"], "6");
            assert_eq!(out["ips"][2]["interface"], 0);
            assert_eq!(out["interfaces"][0]["name"], "eth0");
        }
    }

    #[test]
    fn versions_0_1_and_0_2_write_ip4_and_ip6() {
        for v in ["0.1.0", "0.2.0"] {
            let out = dual_stack().to_value(v);
            assert_eq!(
                out,
                serde_json::json!({
                    "cniVersion": v,
                    "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                    "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
                    "dns": {"nameservers": ["10.1.0.10"]}
                }),
                "{v}"
            );
        }
    }

    #[test]
    fn a_0_2_0_result_is_read() {
        let old = serde_json::json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "ip6": {"ip": "fd00::5/64", "routes": [{"dst": "::/0"}]},
            "dns": {"nameservers": ["10.1.0.10"]}
        });
        let r = CniResult::from_value(&old).unwrap();
        let addrs: Vec<_> = r.ips.iter().map(|i| i.address.as_str()).collect();
        assert_eq!(addrs, ["10.1.0.5/24", "fd00::5/64"]);
        assert_eq!(r.ips[0].gateway.as_deref(), Some("10.1.0.1"));
        assert_eq!(r.routes.len(), 2);
        assert_eq!(r.to_value("0.2.0"), old);
        let new = r.to_value("1.0.0");
        assert_eq!(new["ips"][1]["address"], "fd00::5/64");
        assert!(new.get("ip4").is_none());
        // No cniVersion: the keys tell.
        let bare = serde_json::json!({"ip4": {"ip": "10.1.0.5/24"}});
        assert_eq!(
            CniResult::from_value(&bare).unwrap().ips[0].address,
            "10.1.0.5/24"
        );
        assert_eq!(
            CniResult::from_value(
                &serde_json::json!({"cniVersion": "0.2.0", "ip4": {"gateway": "x"}})
            )
            .unwrap_err()
            .code,
            6
        );
    }

    #[test]
    fn a_0_3_1_result_is_read_and_rewritten_without_loss() {
        let old = dual_stack().to_value("0.3.1");
        let r = CniResult::from_value(&old).unwrap();
        assert_eq!(r.to_value("0.3.1"), old);
        assert!(r.to_value("1.1.0")["ips"][0].get("version").is_none());
    }
}
