//! The network configuration on stdin, kept whole: the plugin reads the keys it knows through
//! typed views, and everything else (the runtime's keys, `prevResult` fields we do not model)
//! survives untouched.

use ipnetwork::IpNetwork;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::env::{Attachment, validate_network_name};
use crate::error::{CniError, Result};
use crate::version;

/// A plugin's network configuration as the runtime sent it.
#[derive(Debug, Clone)]
pub struct NetConf {
    /// The whole object, in the order it came.
    pub raw: Map<String, Value>,
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
}

impl NetConf {
    /// Decodes stdin: code 6 when it is not a JSON object, code 7 when `name` or `cniVersion`
    /// is missing or malformed, code 1 when `cniVersion` is one we do not speak.
    pub fn parse(bytes: &[u8]) -> Result<NetConf> {
        NetConf::from_decoded(serde_json::from_slice(bytes))
    }

    /// [`NetConf::parse`] of stdin already decoded as JSON (the skeleton decodes it once).
    pub fn from_decoded(decoded: serde_json::Result<Value>) -> Result<NetConf> {
        let value = decoded.map_err(|e| {
            CniError::decode("failed to decode network config").with_details(e.to_string())
        })?;
        let Value::Object(raw) = value else {
            return Err(CniError::decode("network config is not a JSON object"));
        };
        let cni_version = match raw.get("cniVersion") {
            Some(Value::String(v)) => v.clone(),
            None => return Err(CniError::config("network config has no cniVersion")),
            Some(_) => return Err(CniError::config("cniVersion must be a string")),
        };
        version::check_supported(&cni_version)?;
        let name = match raw.get("name") {
            Some(Value::String(n)) => n.clone(),
            None => return Err(CniError::config("network config has no name")),
            Some(_) => return Err(CniError::config("name must be a string")),
        };
        validate_network_name(&name)?;
        let plugin_type = match raw.get("type") {
            Some(Value::String(t)) => t.clone(),
            None => String::new(),
            Some(_) => return Err(CniError::config("type must be a string")),
        };
        Ok(NetConf {
            raw,
            cni_version,
            name,
            plugin_type,
        })
    }

    /// A typed view of the whole config (unknown keys ignored); a type mismatch is code 7.
    pub fn view<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(Value::Object(self.raw.clone()))
            .map_err(|e| CniError::config(format!("invalid network config: {e}")))
    }

    pub fn prev_result(&self) -> Option<&Value> {
        self.raw.get("prevResult").filter(|v| !v.is_null())
    }

    /// The addresses of `prevResult.ips[]`, without their prefix length. Code 7 when an
    /// entry is malformed, so nothing is done with half a list.
    pub fn prev_result_ips(&self) -> Result<Vec<IpNetwork>> {
        let Some(prev) = self.prev_result() else {
            return Ok(vec![]);
        };
        let Value::Object(prev) = prev else {
            return Err(CniError::config("prevResult must be an object"));
        };
        let ips = match prev.get("ips") {
            None | Some(Value::Null) => return Ok(vec![]),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(CniError::config("prevResult.ips must be a list")),
        };
        let mut out = Vec::with_capacity(ips.len());
        for (i, ip) in ips.iter().enumerate() {
            let address = ip.get("address").and_then(Value::as_str).ok_or_else(|| {
                CniError::config(format!("prevResult.ips[{i}] has no address string"))
            })?;
            out.push(parse_cidr(address).map_err(|e| e.context(format!("prevResult.ips[{i}]")))?);
        }
        Ok(out)
    }

    /// GC's list of attachments to keep: `None` when the key is absent (no list: keep all),
    /// `Some(vec![])` when it is an empty list (nothing is valid). Falls back to the legacy
    /// `cni.dev/attachments` key libcni also sends.
    pub fn valid_attachments(&self) -> Result<Option<Vec<Attachment>>> {
        let key = ["cni.dev/valid-attachments", "cni.dev/attachments"]
            .into_iter()
            .find(|k| self.raw.get(*k).is_some_and(|v| !v.is_null()));
        let Some(key) = key else { return Ok(None) };
        let Some(list) = self.raw[key].as_array() else {
            return Err(CniError::config(format!("{key} must be a list")));
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, a) in list.iter().enumerate() {
            let field = |f: &str| {
                a.get(f)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| CniError::config(format!("{key}[{i}] has no string {f}")))
            };
            out.push(Attachment {
                container_id: field("containerID")?,
                ifname: field("ifname")?,
            });
        }
        Ok(Some(out))
    }
}

/// An address with its prefix (`10.1.0.5/24`), as results carry them. A bare address is
/// taken as a host prefix.
pub fn parse_cidr(s: &str) -> Result<IpNetwork> {
    s.parse::<IpNetwork>()
        .map_err(|e| CniError::config(format!("invalid address {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(s: &str) -> Result<NetConf> {
        NetConf::parse(s.as_bytes())
    }

    #[test]
    fn decode_errors_are_code_6_and_config_errors_code_7() {
        assert_eq!(conf("{").unwrap_err().code, 6);
        assert_eq!(conf("[]").unwrap_err().code, 6);
        assert_eq!(conf("").unwrap_err().code, 6);
        assert_eq!(conf(r#"{"name":"n"}"#).unwrap_err().code, 7);
        assert_eq!(conf(r#"{"cniVersion":1,"name":"n"}"#).unwrap_err().code, 7);
        assert_eq!(conf(r#"{"cniVersion":"1.0.0"}"#).unwrap_err().code, 7);
        assert_eq!(
            conf(r#"{"cniVersion":"1.0.0","name":"a/b"}"#)
                .unwrap_err()
                .code,
            7
        );
        assert_eq!(
            conf(r#"{"cniVersion":"0.3.2","name":"n"}"#)
                .unwrap_err()
                .code,
            1
        );
        for v in version::SUPPORTED {
            assert!(conf(&format!(r#"{{"cniVersion":"{v}","name":"n"}}"#)).is_ok(), "{v}");
        }
        assert_eq!(
            conf(r#"{"cniVersion":"1.0.0","name":"n","type":3}"#)
                .unwrap_err()
                .code,
            7
        );
    }

    #[test]
    fn prev_result_ips_keep_their_order_and_reject_bad_entries() {
        let c = conf(
            r#"{"cniVersion":"1.1.0","name":"n","prevResult":{"ips":[
              {"address":"10.1.0.5/24"},{"address":"fd00::5/64","gateway":"fd00::1"}]}}"#,
        )
        .unwrap();
        let ips = c.prev_result_ips().unwrap();
        assert_eq!(ips[0].ip().to_string(), "10.1.0.5");
        assert_eq!(ips[1].ip().to_string(), "fd00::5");
        for bad in [
            r#"{"ips":[{"address":"10.1.0.500/24"}]}"#,
            r#"{"ips":[{"address":"10.1.0.5/33"}]}"#,
            r#"{"ips":[{"gateway":"10.1.0.1"}]}"#,
            r#"{"ips":"10.1.0.5"}"#,
            r#""x""#,
        ] {
            let c = conf(&format!(
                r#"{{"cniVersion":"1.1.0","name":"n","prevResult":{bad}}}"#
            ))
            .unwrap();
            assert_eq!(c.prev_result_ips().unwrap_err().code, 7, "{bad}");
        }
        let none = conf(r#"{"cniVersion":"1.1.0","name":"n"}"#).unwrap();
        assert!(none.prev_result_ips().unwrap().is_empty());
    }

    #[test]
    fn valid_attachments_absent_is_not_empty() {
        let absent = conf(r#"{"cniVersion":"1.1.0","name":"n"}"#).unwrap();
        assert_eq!(absent.valid_attachments().unwrap(), None);
        let empty =
            conf(r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[]}"#).unwrap();
        assert_eq!(empty.valid_attachments().unwrap(), Some(vec![]));
        let legacy = conf(
            r#"{"cniVersion":"1.1.0","name":"n","cni.dev/attachments":[{"containerID":"c","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            legacy.valid_attachments().unwrap().unwrap()[0].container_id,
            "c"
        );
        let bad = conf(
            r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":1}]}"#,
        )
        .unwrap();
        assert_eq!(bad.valid_attachments().unwrap_err().code, 7);
    }

    #[test]
    fn raw_keeps_unknown_keys_in_order() {
        let c = conf(r#"{"z":1,"cniVersion":"1.1.0","name":"n","a":{"b":2}}"#).unwrap();
        let keys: Vec<_> = c.raw.keys().cloned().collect();
        assert_eq!(keys, ["z", "cniVersion", "name", "a"]);
    }
}
