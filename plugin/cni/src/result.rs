//! ADD results (spec 1.1 "Success"), typed for the plugins that build one. Every struct keeps
//! the keys it does not model in `extra`, so a result read and written again loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CniError, Result};
use crate::version::{self, Version};

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
    pub fn from_value(v: &Value) -> Result<CniResult> {
        serde_json::from_value(v.clone())
            .map_err(|e| CniError::decode(format!("invalid result: {e}")))
    }

    /// The result as the given spec version writes it: before 1.0.0 every IP carries
    /// `version` ("4"/"6"); from 1.0.0 on that key is gone.
    pub fn to_value(&self, cni_version: &str) -> Value {
        let mut r = self.clone();
        r.cni_version = cni_version.to_string();
        let legacy = !version::at_least(cni_version, Version(1, 0, 0));
        for ip in &mut r.ips {
            if legacy {
                let v = if ip.address.contains(':') { "6" } else { "4" };
                ip.extra.insert("version".into(), v.into());
            } else {
                ip.extra.remove("version");
            }
        }
        serde_json::to_value(r).expect("a result always serializes")
    }
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
}
