//! The ledger of one network: which addresses each attachment holds (so a DEL without
//! `prevResult` still knows them) and which tombstones are live, until when. Pure data and
//! rules, no I/O; [`super::store`] reads and writes it.
//!
//! File format (JSON, version 1):
//! `{"version":1,"network":"pods","attachments":[{"containerID","ifname","ips":[..]}],
//!   "tombstones":[{"ip","routeType","tables":[..],"expiresAtMs","containerID","ifname"}]}`

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cni::{Attachment, CniError, Result};
use crate::netlink::RejectKind;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub version: u32,
    pub network: String,
    #[serde(default)]
    pub attachments: Vec<AttachmentRecord>,
    #[serde(default)]
    pub tombstones: Vec<Tombstone>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub ip: IpAddr,
    pub route_type: RejectKind,
    /// The tables the route was installed in (an operator's route in a table skips it).
    pub tables: Vec<u32>,
    pub expires_at_ms: u64,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl Tombstone {
    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

impl AttachmentRecord {
    fn is(&self, a: &Attachment) -> bool {
        self.container_id == a.container_id && self.ifname == a.ifname
    }
}

impl Ledger {
    pub fn new(network: &str) -> Ledger {
        Ledger {
            version: FORMAT_VERSION,
            network: network.to_string(),
            attachments: vec![],
            tombstones: vec![],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.attachments.is_empty() && self.tombstones.is_empty()
    }

    /// Records (or updates) the addresses an attachment holds. Returns whether it changed.
    pub fn record_attachment(&mut self, a: &Attachment, ips: &[IpAddr]) -> bool {
        match self.attachments.iter_mut().find(|r| r.is(a)) {
            Some(r) if r.ips == ips => false,
            Some(r) => {
                r.ips = ips.to_vec();
                true
            }
            None => {
                self.attachments.push(AttachmentRecord {
                    container_id: a.container_id.clone(),
                    ifname: a.ifname.clone(),
                    ips: ips.to_vec(),
                });
                true
            }
        }
    }

    pub fn forget_attachment(&mut self, a: &Attachment) {
        self.attachments.retain(|r| !r.is(a));
    }

    /// The addresses of an attachment when the runtime sent none: its record, or else the
    /// tombstones a crashed earlier DEL of it already wrote down.
    pub fn ips_of(&self, a: &Attachment) -> Vec<IpAddr> {
        if let Some(r) = self.attachments.iter().find(|r| r.is(a)) {
            return r.ips.clone();
        }
        self.tombstones
            .iter()
            .filter(|t| t.container_id == a.container_id && t.ifname == a.ifname)
            .map(|t| t.ip)
            .collect()
    }

    pub fn tombstone(&self, ip: IpAddr) -> Option<&Tombstone> {
        self.tombstones.iter().find(|t| t.ip == ip)
    }

    /// Writes down a tombstone (replacing one for the same address).
    pub fn bury(&mut self, t: Tombstone) {
        self.tombstones.retain(|old| old.ip != t.ip);
        self.tombstones.push(t);
    }

    /// Removes and returns the tombstones of these addresses.
    pub fn lift(&mut self, ips: &[IpAddr]) -> Vec<Tombstone> {
        let (lifted, kept) = std::mem::take(&mut self.tombstones)
            .into_iter()
            .partition(|t| ips.contains(&t.ip));
        self.tombstones = kept;
        lifted
    }

    /// The tombstones whose hold has ended at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> impl Iterator<Item = &Tombstone> {
        self.tombstones
            .iter()
            .filter(move |t| t.expires_at_ms <= now_ms)
    }

    /// Attachments with a record that are not in the runtime's valid list (GC).
    pub fn stale_attachments(&self, valid: &[Attachment]) -> Vec<Attachment> {
        self.attachments
            .iter()
            .filter(|r| !valid.iter().any(|v| r.is(v)))
            .map(|r| Attachment {
                container_id: r.container_id.clone(),
                ifname: r.ifname.clone(),
            })
            .collect()
    }

    /// Checks what serde cannot: the version we write, the network it belongs to.
    fn validate(&self, network: &str) -> std::result::Result<(), String> {
        if self.network != network {
            return Err(format!("ledger belongs to network {:?}", self.network));
        }
        Ok(())
    }
}

/// Decodes a ledger file. `Err` carries why it is unusable; a newer format version is not
/// "corrupt" but refused (code 102), so an older binary never clobbers a newer ledger.
pub fn decode(bytes: &[u8], network: &str) -> Result<std::result::Result<Ledger, String>> {
    #[derive(Deserialize)]
    struct Head {
        version: u32,
    }
    if let Ok(h) = serde_json::from_slice::<Head>(bytes)
        && h.version > FORMAT_VERSION
    {
        return Err(CniError::state(format!(
            "ledger of network {network:?} has format version {}, this binary reads up to {FORMAT_VERSION}",
            h.version
        )));
    }
    Ok(serde_json::from_slice::<Ledger>(bytes)
        .map_err(|e| e.to_string())
        .and_then(|l| l.validate(network).map(|_| l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(c: &str) -> Attachment {
        Attachment {
            container_id: c.into(),
            ifname: "eth0".into(),
        }
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn stone(a: &str, c: &str, exp: u64) -> Tombstone {
        Tombstone {
            ip: ip(a),
            route_type: RejectKind::Unreachable,
            tables: vec![254],
            expires_at_ms: exp,
            container_id: c.into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn attachment_records() {
        let mut l = Ledger::new("n");
        assert!(l.record_attachment(&att("a"), &[ip("10.0.0.5")]));
        assert!(!l.record_attachment(&att("a"), &[ip("10.0.0.5")]));
        assert!(l.record_attachment(&att("a"), &[ip("10.0.0.5"), ip("fd00::5")]));
        assert_eq!(l.ips_of(&att("a")).len(), 2);
        assert!(l.ips_of(&att("b")).is_empty());
        l.forget_attachment(&att("a"));
        assert!(l.ips_of(&att("a")).is_empty());
    }

    #[test]
    fn a_crashed_del_leaves_enough_to_finish() {
        let mut l = Ledger::new("n");
        l.bury(stone("10.0.0.5", "a", 10));
        assert_eq!(l.ips_of(&att("a")), vec![ip("10.0.0.5")]);
    }

    #[test]
    fn bury_replaces_and_lift_removes() {
        let mut l = Ledger::new("n");
        l.bury(stone("10.0.0.5", "a", 10));
        l.bury(stone("10.0.0.5", "b", 20));
        l.bury(stone("10.0.0.6", "b", 30));
        assert_eq!(l.tombstones.len(), 2);
        assert_eq!(l.tombstone(ip("10.0.0.5")).unwrap().expires_at_ms, 20);
        let lifted = l.lift(&[ip("10.0.0.5"), ip("10.0.0.9")]);
        assert_eq!(lifted.len(), 1);
        assert_eq!(l.tombstones.len(), 1);
    }

    #[test]
    fn expiry_is_inclusive() {
        let mut l = Ledger::new("n");
        l.bury(stone("10.0.0.5", "a", 100));
        l.bury(stone("10.0.0.6", "a", 200));
        assert_eq!(l.expired(99).count(), 0);
        assert_eq!(l.expired(100).count(), 1);
        assert_eq!(l.expired(1000).count(), 2);
    }

    #[test]
    fn gc_finds_attachments_not_in_the_valid_list() {
        let mut l = Ledger::new("n");
        l.record_attachment(&att("a"), &[ip("10.0.0.5")]);
        l.record_attachment(&att("b"), &[ip("10.0.0.6")]);
        assert_eq!(l.stale_attachments(&[att("a")]), vec![att("b")]);
        assert_eq!(l.stale_attachments(&[]).len(), 2);
        let other_if = Attachment {
            container_id: "a".into(),
            ifname: "net1".into(),
        };
        assert_eq!(l.stale_attachments(&[other_if, att("b")]), vec![att("a")]);
    }

    #[test]
    fn decode_round_trip_and_damage() {
        let mut l = Ledger::new("pods");
        l.record_attachment(&att("a"), &[ip("10.0.0.5")]);
        l.bury(stone("fd00::5", "b", 7));
        let bytes = serde_json::to_vec(&l).unwrap();
        assert_eq!(decode(&bytes, "pods").unwrap().unwrap(), l);
        // Truncated, garbage, wrong network: unusable (rebuilt by load).
        assert!(decode(&bytes[..bytes.len() / 2], "pods").unwrap().is_err());
        assert!(decode(b"\0\0\0", "pods").unwrap().is_err());
        assert!(decode(b"", "pods").unwrap().is_err());
        assert!(decode(&bytes, "other").unwrap().is_err());
        // A newer format is refused, not rebuilt over.
        let newer = br#"{"version":2,"network":"pods"}"#;
        assert_eq!(decode(newer, "pods").unwrap_err().code, 102);
    }
}
