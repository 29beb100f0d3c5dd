//! The network configuration on stdin, kept whole: the plugin reads the keys it knows through
//! typed views, and everything else (the runtime's keys, `prevResult` fields we do not model)
//! survives untouched. A value of the wrong type is an error naming its key; a key no one
//! knows is a warning naming it and the known key it is closest to (see [`warn_unknown_keys`]).

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

    /// A typed view of the whole config (unknown keys ignored); a type mismatch is code 7,
    /// naming the key ([`view_of`]).
    pub fn view<T: DeserializeOwned>(&self) -> Result<T> {
        view_of(&self.raw, "")
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

/// The keys of a plugin's config that are the spec's or the runtime's, not a plugin's own:
/// never reported as unknown. `logLevel` is the suite's (every binary reads it).
pub const RUNTIME_KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ipam",
    "dns",
    "args",
    "runtimeConfig",
    "capabilities",
    "prevResult",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
    "logLevel",
];

/// A typed view of `obj` (the config, or an object in it that `path` names with a trailing
/// dot, e.g. `"ipam."`). A mismatch is code 7 and names the key whose value does not fit:
/// found by reading the view from that key alone (the views' fields are optional), or from
/// the object without it.
pub fn view_of<T: DeserializeOwned>(obj: &Map<String, Value>, path: &str) -> Result<T> {
    let e = match serde_json::from_value(Value::Object(obj.clone())) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let fits = |m: Map<String, Value>| serde_json::from_value::<T>(Value::Object(m)).is_ok();
    let culprit = obj
        .iter()
        .find(|(k, v)| !fits(Map::from_iter([((*k).clone(), (*v).clone())])))
        .or_else(|| {
            obj.iter().find(|(k, _)| {
                let mut rest = obj.clone();
                rest.remove(*k);
                fits(rest)
            })
        });
    Err(match culprit {
        Some((k, v)) => CniError::config(format!("invalid network config: {path}{k}: {e}"))
            .with_details(format!("{path}{k} is {v}")),
        None => CniError::config(format!("invalid network config: {path}{e}")),
    })
}

/// The keys of `obj` that are neither in `known` nor in [`RUNTIME_KEYS`], in the config's
/// order, each with the known key it most likely misspells (none when no known key is close).
pub fn unknown_keys(
    obj: &Map<String, Value>,
    known: &[&'static str],
) -> Vec<(String, Option<&'static str>)> {
    obj.keys()
        .filter(|k| !known.contains(&k.as_str()) && !RUNTIME_KEYS.contains(&k.as_str()))
        .map(|k| (k.clone(), closest(k, known)))
        .collect()
}

/// Logs a warning for each of [`unknown_keys`] (`path` names the object, as in [`view_of`]),
/// and goes on: runtimes and other plugins' configs put keys of their own into a plugin's
/// config, so an unknown key cannot be an error; the warning names a likely typo's key.
pub fn warn_unknown_keys(obj: &Map<String, Value>, known: &[&'static str], path: &str) {
    for (k, near) in unknown_keys(obj, known) {
        let k = format!("{path}{k}");
        match near {
            Some(n) => log::warn!(
                "unknown config key {k:?} (ignored): did you mean {:?}?",
                format!("{path}{n}")
            ),
            None => log::warn!("unknown config key {k:?} (ignored)"),
        }
    }
}

/// The key of `known` nearest `key` when within a typo's distance: the same but for case, or
/// at most a third of its letters (and at least one) added, dropped or changed.
fn closest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = key.to_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (diag + usize::from(ca != *cb)).min(up + 1).min(row[j] + 1);
            diag = up;
        }
    }
    row[b.len()]
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
            assert!(
                conf(&format!(r#"{{"cniVersion":"{v}","name":"n"}}"#)).is_ok(),
                "{v}"
            );
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

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct View {
        hold_seconds: Option<u64>,
        tables: Option<Vec<u32>>,
        flag: Option<bool>,
    }

    #[test]
    fn a_mistyped_value_names_its_key() {
        for (extra, key) in [
            (r#""holdSeconds":"30""#, "holdSeconds"),
            (r#""tables":[1,"x"]"#, "tables"),
            (r#""flag":1,"holdSeconds":5"#, "flag"),
        ] {
            let c = conf(&format!(r#"{{"cniVersion":"1.1.0","name":"n",{extra}}}"#)).unwrap();
            let e = c.view::<View>().unwrap_err();
            assert_eq!(e.code, 7);
            assert!(e.msg.contains(&format!("{key}:")), "{extra}: {}", e.msg);
            assert!(e.details.starts_with(key), "{extra}: {}", e.details);
        }
        let mut ipam = Map::new();
        ipam.insert("holdSeconds".into(), "x".into());
        let e = view_of::<View>(&ipam, "ipam.").unwrap_err();
        assert!(e.msg.contains("ipam.holdSeconds:"), "{}", e.msg);
        let ok = conf(r#"{"cniVersion":"1.1.0","name":"n","holdSeconds":3}"#).unwrap();
        assert_eq!(ok.view::<View>().unwrap().hold_seconds, Some(3));
    }

    #[test]
    fn unknown_keys_name_the_closest_known_key() {
        const KNOWN: &[&str] = &["holdSeconds", "routeType", "tables", "stateDir"];
        let c = conf(
            r#"{"cniVersion":"1.1.0","name":"n","type":"t","holdSecond":30,"RouteType":"x",
                "table":[1],"statedir":"/x","bandwidth":{},"runtimeConfig":{},"args":{},
                "capabilities":{},"prevResult":{},"dns":{},"ipam":{},"logLevel":"info",
                "holdSeconds":1}"#,
        )
        .unwrap();
        assert_eq!(
            unknown_keys(&c.raw, KNOWN),
            vec![
                ("holdSecond".to_string(), Some("holdSeconds")),
                ("RouteType".to_string(), Some("routeType")),
                ("table".to_string(), Some("tables")),
                ("statedir".to_string(), Some("stateDir")),
                ("bandwidth".to_string(), None),
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
