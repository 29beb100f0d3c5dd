//! The plugin's config keys, validated (code 7) before anything is touched, and the names
//! it gives links. The reference `ipvlan` plugin's keys mean the same here.

use serde::Deserialize;
use serde_json::Value;

use tombstone_cni::config::warn_unknown_keys;
use tombstone_cni::delegate;
use tombstone_cni::env::validate_ifname;
use tombstone_cni::{Attachment, CniError, NetConf, Result};
use tombstone_kernel::IpvlanMode;

#[derive(Debug, Clone, PartialEq)]
pub struct IpvlanConf {
    /// The master link; `None`: the link of the default route, resolved at ADD.
    pub master: Option<String>,
    pub mode: IpvlanMode,
    /// MTU of the pod link; `None`: the master's.
    pub mtu: Option<u32>,
    /// The master lives in the pod's netns (it was moved there before), not the host's.
    pub link_in_container: bool,
    /// The delegated IPAM plugin's type; `None`: addresses come from `prevResult`.
    pub ipam_type: Option<String>,
    /// Keep the node's gateway port (a host-side IPvlan slave holding the gateways).
    pub gateway_port: bool,
}

/// Every key of `Raw`, as the config spells it: any other (beside the runtime's) is logged as
/// unknown. `ipam`'s contents are the IPAM plugin's.
pub const KEYS: &[&str] = &[
    "master",
    "mode",
    "mtu",
    "linkInContainer",
    "ipam",
    "gatewayPort",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    master: Option<String>,
    mode: Option<String>,
    mtu: Option<u32>,
    link_in_container: Option<bool>,
    ipam: Option<Value>,
    gateway_port: Option<bool>,
}

impl IpvlanConf {
    pub fn from_netconf(conf: &NetConf) -> Result<IpvlanConf> {
        let raw: Raw = conf.view()?;
        warn_unknown_keys(&conf.raw, KEYS, "");
        let master = match raw.master.as_deref() {
            None | Some("") => None,
            Some(m) => {
                validate_ifname(m).map_err(|_| {
                    CniError::config(format!("master {m:?} is not a valid interface name"))
                })?;
                Some(m.to_string())
            }
        };
        let mode = match raw.mode.as_deref() {
            None | Some("") | Some("l2") => IpvlanMode::L2,
            Some("l3") => IpvlanMode::L3,
            Some("l3s") => IpvlanMode::L3s,
            Some(m) => {
                return Err(CniError::config(format!(
                    "unknown mode {m:?}: expected l2, l3 or l3s"
                )));
            }
        };
        let mtu = match raw.mtu {
            None | Some(0) => None,
            Some(m) if (68..=65535).contains(&m) => Some(m),
            Some(m) => {
                return Err(CniError::config(format!(
                    "mtu {m} is out of range (68 to 65535, or 0 for the master's)"
                )));
            }
        };
        let ipam_type = match raw.ipam {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(Value::Object(m)) => match m.get("type") {
                Some(Value::String(t)) => {
                    delegate::validate_type(t)
                        .map_err(|_| CniError::config(format!("invalid ipam type {t:?}")))?;
                    Some(t.clone())
                }
                _ => return Err(CniError::config("ipam has no type")),
            },
            Some(_) => return Err(CniError::config("ipam must be an object")),
        };
        let link_in_container = raw.link_in_container.unwrap_or(false);
        // The gateway port is a slave of the master in the host netns: there is none to make
        // when the master lives in the pod's netns.
        let gateway_port = match (raw.gateway_port, link_in_container) {
            (Some(true), true) => {
                return Err(CniError::config(
                    "gatewayPort needs the master in the host netns (linkInContainer is true)",
                ));
            }
            (Some(g), _) => g,
            (None, l) => !l,
        };
        Ok(IpvlanConf {
            master,
            mode,
            mtu,
            link_in_container,
            ipam_type,
            gateway_port,
        })
    }
}

/// FNV-1a, 32 bits: a stable, dependency-free hash for names (not for security).
pub fn fnv1a32(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // A separator no part can contain, so ("ab","c") and ("a","bc") differ.
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0193);
        }
        for b in *p {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// The gateway port's name: `gw_` and 8 hex digits derived from the network name (11 bytes,
/// within the kernel's 15).
pub fn gateway_port_name(network: &str) -> String {
    format!("gw_{:08x}", fnv1a32(&[network.as_bytes()]))
}

/// The temporary name of an attachment's pod link until it is renamed to `CNI_IFNAME`. It is
/// derived from the attachment, so a DEL after a killed ADD finds (and removes) it.
pub fn temp_link_name(a: &Attachment) -> String {
    format!(
        "tsi{:08x}",
        fnv1a32(&[a.container_id.as_bytes(), a.ifname.as_bytes()])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> Result<IpvlanConf> {
        let s =
            format!(r#"{{"cniVersion":"1.1.0","name":"pods","type":"tombstone-ipvlan"{extra}}}"#);
        IpvlanConf::from_netconf(&NetConf::parse(s.as_bytes())?)
    }

    #[test]
    fn defaults_match_the_reference_plugin_plus_the_gateway_port() {
        let c = conf("").unwrap();
        assert_eq!(
            c,
            IpvlanConf {
                master: None,
                mode: IpvlanMode::L2,
                mtu: None,
                link_in_container: false,
                ipam_type: None,
                gateway_port: true,
            }
        );
    }

    #[test]
    fn every_key_is_read() {
        let c = conf(
            r#","master":"eth1","mode":"l3s","mtu":1400,"gatewayPort":false,
               "ipam":{"type":"tombstone-ipam","ranges":[]}"#,
        )
        .unwrap();
        assert_eq!(c.master.as_deref(), Some("eth1"));
        assert_eq!(c.mode, IpvlanMode::L3s);
        assert_eq!(c.mtu, Some(1400));
        assert!(!c.gateway_port);
        assert_eq!(c.ipam_type.as_deref(), Some("tombstone-ipam"));
        assert_eq!(conf(r#","mode":"l3""#).unwrap().mode, IpvlanMode::L3);
        assert_eq!(conf(r#","mode":"""#).unwrap().mode, IpvlanMode::L2);
        assert_eq!(conf(r#","mtu":0"#).unwrap().mtu, None);
        assert_eq!(conf(r#","master":"""#).unwrap().master, None);
        assert_eq!(conf(r#","ipam":{}"#).unwrap().ipam_type, None);
    }

    #[test]
    fn link_in_container_turns_the_gateway_port_off() {
        let c = conf(r#","linkInContainer":true"#).unwrap();
        assert!(c.link_in_container && !c.gateway_port);
        let c = conf(r#","linkInContainer":true,"gatewayPort":false"#).unwrap();
        assert!(!c.gateway_port);
        assert_eq!(
            conf(r#","linkInContainer":true,"gatewayPort":true"#)
                .unwrap_err()
                .code,
            7
        );
    }

    #[test]
    fn bad_values_are_code_7() {
        for bad in [
            r#","mode":"l2e""#,
            r#","mode":"L2""#,
            r#","mode":2"#,
            r#","mtu":67"#,
            r#","mtu":65536"#,
            r#","mtu":-1"#,
            r#","mtu":"1500""#,
            r#","master":"a/b""#,
            r#","master":"0123456789abcdef""#,
            r#","master":3"#,
            r#","linkInContainer":"yes""#,
            r#","gatewayPort":1"#,
            r#","ipam":[]"#,
            r#","ipam":{"ranges":[]}"#,
            r#","ipam":{"type":"../bin/sh"}"#,
            r#","ipam":{"type":"/usr/bin/x"}"#,
            r#","ipam":{"type":""}"#,
            r#","ipam":{"type":7}"#,
        ] {
            let e = conf(bad).unwrap_err();
            assert_eq!(e.code, 7, "{bad}");
            let key = bad[2..].split('"').next().unwrap();
            assert!(e.msg.contains(key), "{bad}: {}", e.msg);
        }
    }

    #[test]
    fn keys_is_every_key_read() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"tombstone-ipvlan","master":"eth0",
                "mode":"l2","mtu":1400,"linkInContainer":false,"gatewayPort":true,
                "ipam":{"type":"host-local"},"runtimeConfig":{}}"#,
        )
        .unwrap();
        assert!(tombstone_cni::config::unknown_keys(&c.raw, KEYS).is_empty());
        for key in KEYS {
            assert_eq!(
                conf(&format!(r#","{key}":[]"#)).unwrap_err().code,
                7,
                "{key}"
            );
        }
        let typo =
            NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","gatewayPorts":true}"#).unwrap();
        assert_eq!(
            tombstone_cni::config::unknown_keys(&typo.raw, KEYS),
            vec![("gatewayPorts".to_string(), Some("gatewayPort"))]
        );
    }

    #[test]
    fn gateway_port_names_are_gw_and_8_hex_stable_per_network() {
        let a = gateway_port_name("pods");
        assert_eq!(a.len(), 11);
        assert!(a.starts_with("gw_"));
        assert!(
            a[3..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(a, gateway_port_name("pods"));
        assert_ne!(a, gateway_port_name("pods2"));
        assert!(validate_ifname(&a).is_ok());
        // FNV-1a 32 of "a" is the published test vector 0xe40c292c.
        assert_eq!(gateway_port_name("a"), "gw_e40c292c");
    }

    #[test]
    fn temp_names_differ_per_attachment_and_are_valid() {
        let at = |c: &str, i: &str| Attachment {
            container_id: c.into(),
            ifname: i.into(),
        };
        let t = temp_link_name(&at("c1", "eth0"));
        assert!(validate_ifname(&t).is_ok());
        assert_eq!(t, temp_link_name(&at("c1", "eth0")));
        assert_ne!(t, temp_link_name(&at("c1", "eth1")));
        assert_ne!(t, temp_link_name(&at("c2", "eth0")));
        assert_ne!(
            temp_link_name(&at("ab", "c")),
            temp_link_name(&at("a", "bc"))
        );
    }
}
