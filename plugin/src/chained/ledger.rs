//! The ledger of one network: which addresses each attachment holds (so a DEL without
//! `prevResult` still knows them, and a stale DEL cannot bury an address another attachment
//! now holds), which tombstones are live, until when, and which tables the network's config
//! has ever named (the only tables where an orphan is looked for). Pure data and rules, no
//! I/O; [`super::store`] reads and writes it.
//!
//! A ledger in memory is all of a network's entries (a sweep, GC, `tombstone list`) or only
//! those one verb touches (its attachment's record, and the tombstone and holder of each of
//! its addresses): the rules are the same, and [`changes`] says what a verb changed, so that
//! [`super::store`] writes only that.
//!
//! The head's format (JSON, version 4; the store keeps the entries in files of their own):
//! `{"version":4,"network":"pods","tables":[254],"prunedAtMs":..}`. Version 3 differs only
//! in how the store writes a tombstone entry (see [`super::store`]). Versions 1 and 2 held every entry inline,
//! `"attachments":[{"containerID","ifname","ips":[..],"releasedAtMs"}]` and
//! `"tombstones":[{"ip","routeType","tables":[..],"metric","expiresAtMs","containerID","ifname"}]`;
//! they are read, and their entries moved to files. `metric` is the route metric the
//! tombstone's routes carry (absent in version 1, whose routes carry the kernel's default:
//! 0 for IPv4, 1024 for IPv6).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use tombstone_cni::{Attachment, CniError, Result};
use tombstone_kernel::RejectKind;

/// 4: tombstone entries are link records (3: files, still read; 1 and 2: one file).
pub const FORMAT_VERSION: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub version: u32,
    pub network: String,
    /// Every table this network's config has named since the ledger began.
    #[serde(default)]
    pub tables: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tombstones: Vec<Tombstone>,
    /// When a sweep last dropped long-released attachment records (it reads every record
    /// only then; other sweeps read the tombstones alone).
    #[serde(
        default,
        rename = "prunedAtMs",
        skip_serializing_if = "Option::is_none"
    )]
    pub pruned_at_ms: Option<u64>,
    /// Which attachment holds each address now, as the store's index says (the index the
    /// store keeps so that a verb finds an address's holder without reading every record).
    /// Kept up to date by [`changes`]; not part of the head.
    #[serde(skip)]
    pub holders: BTreeMap<IpAddr, Attachment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub ips: Vec<IpAddr>,
    /// When its DEL released these addresses; `None` while the attachment lives.
    #[serde(
        default,
        rename = "releasedAtMs",
        skip_serializing_if = "Option::is_none"
    )]
    pub released_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub ip: IpAddr,
    #[serde(with = "route_type")]
    pub route_type: RejectKind,
    /// The tables the route was installed in (an operator's route in a table skips it).
    pub tables: Vec<u32>,
    /// The metric of its routes; `None` in version 1 ledgers (see [`Tombstone::metric`]).
    #[serde(default, rename = "metric", skip_serializing_if = "Option::is_none")]
    pub route_metric: Option<u32>,
    pub expires_at_ms: u64,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The ledger's spelling of a route type: the kernel's name.
mod route_type {
    use super::RejectKind;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(k: &RejectKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(k.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RejectKind, D::Error> {
        let s = String::deserialize(d)?;
        RejectKind::parse(&s).ok_or_else(|| D::Error::custom(format!("unknown route type {s:?}")))
    }
}

impl Tombstone {
    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }

    pub fn is_of(&self, a: &Attachment) -> bool {
        self.container_id == a.container_id && self.ifname == a.ifname
    }

    /// The metric its routes carry: the one recorded, or for a version 1 entry the
    /// kernel's default for routes added without one.
    pub fn metric(&self) -> u32 {
        self.route_metric
            .unwrap_or(if self.ip.is_ipv6() { 1024 } else { 0 })
    }
}

impl AttachmentRecord {
    fn is(&self, a: &Attachment) -> bool {
        self.container_id == a.container_id && self.ifname == a.ifname
    }

    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

impl Ledger {
    pub fn new(network: &str) -> Ledger {
        Ledger {
            version: FORMAT_VERSION,
            network: network.to_string(),
            tables: vec![],
            attachments: vec![],
            tombstones: vec![],
            pruned_at_ms: None,
            holders: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.attachments.is_empty() && self.tombstones.is_empty()
    }

    /// Adds tables the config names to those known. Returns whether any was new.
    pub fn note_tables(&mut self, tables: &[u32]) -> bool {
        let before = self.tables.len();
        for t in tables {
            if !self.tables.contains(t) {
                self.tables.push(*t);
            }
        }
        self.tables.len() != before
    }

    /// Records (or updates) the addresses an attachment holds; an address belongs to one
    /// attachment of the network at a time, so other records lose these addresses (a record
    /// left with none is dropped). Returns whether anything changed.
    pub fn record_attachment(&mut self, a: &Attachment, ips: &[IpAddr]) -> bool {
        let mut changed = false;
        for r in self.attachments.iter_mut().filter(|r| !r.is(a)) {
            let before = r.ips.len();
            r.ips.retain(|ip| !ips.contains(ip));
            changed |= r.ips.len() != before;
        }
        self.attachments.retain(|r| !r.ips.is_empty() || r.is(a));
        match self.attachments.iter_mut().find(|r| r.is(a)) {
            Some(r) if r.ips == ips && r.released_at_ms.is_none() => changed,
            Some(r) => {
                r.ips = ips.to_vec();
                r.released_at_ms = None;
                true
            }
            None => {
                self.attachments.push(AttachmentRecord {
                    container_id: a.container_id.clone(),
                    ifname: a.ifname.clone(),
                    ips: ips.to_vec(),
                    released_at_ms: None,
                });
                true
            }
        }
    }

    pub fn forget_attachment(&mut self, a: &Attachment) {
        self.attachments.retain(|r| !r.is(a));
    }

    /// Whether a DEL already released this attachment's addresses.
    pub fn is_released(&self, a: &Attachment) -> bool {
        self.attachments
            .iter()
            .any(|r| r.is(a) && r.released_at_ms.is_some())
    }

    /// Marks the attachment released (its DEL ran), with the addresses it released; the
    /// time of the first release is kept.
    pub fn release(&mut self, a: &Attachment, ips: &[IpAddr], now_ms: u64) {
        match self.attachments.iter_mut().find(|r| r.is(a)) {
            Some(r) => {
                r.released_at_ms.get_or_insert(now_ms);
                for ip in ips {
                    if !r.ips.contains(ip) {
                        r.ips.push(*ip);
                    }
                }
            }
            None => self.attachments.push(AttachmentRecord {
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
                ips: ips.to_vec(),
                released_at_ms: Some(now_ms),
            }),
        }
    }

    /// Drops records of attachments released longer than `retention_ms` ago. Returns how
    /// many.
    pub fn prune_released(&mut self, now_ms: u64, retention_ms: u64) -> usize {
        let before = self.attachments.len();
        self.attachments.retain(|r| {
            r.released_at_ms
                .is_none_or(|t| now_ms.saturating_sub(t) < retention_ms)
        });
        before - self.attachments.len()
    }

    /// The live attachment other than `a` that holds `ip` now, if any: `a`'s DEL must not
    /// bury it (a stale DEL retried with an old `prevResult`).
    pub fn held_by_other(&self, ip: IpAddr, a: &Attachment) -> Option<&AttachmentRecord> {
        self.attachments
            .iter()
            .find(|r| !r.is(a) && r.released_at_ms.is_none() && r.ips.contains(&ip))
    }

    /// The addresses of an attachment when the runtime sent none: its record, or else the
    /// tombstones a crashed earlier DEL of it already wrote down.
    pub fn ips_of(&self, a: &Attachment) -> Vec<IpAddr> {
        if let Some(r) = self.attachments.iter().find(|r| r.is(a)) {
            return r.ips.clone();
        }
        self.tombstones
            .iter()
            .filter(|t| t.is_of(a))
            .map(|t| t.ip)
            .collect()
    }

    pub fn tombstone(&self, ip: IpAddr) -> Option<&Tombstone> {
        self.tombstones.iter().find(|t| t.ip == ip)
    }

    /// Writes down a tombstone. A live one for the same address already there means the
    /// address is still released: it keeps its expiry (a repeated or stale DEL never
    /// extends a hold), its attachment, its metric and kind, and gains the new tables (the
    /// routes of its old tables exist or may, so they stay named until they end). Returns
    /// the entry as written.
    pub fn bury(&mut self, t: Tombstone) -> Tombstone {
        let entry = match self.tombstones.iter().position(|old| old.ip == t.ip) {
            Some(i) => {
                let mut old = self.tombstones.remove(i);
                for table in &t.tables {
                    if !old.tables.contains(table) {
                        old.tables.push(*table);
                    }
                }
                old
            }
            None => t,
        };
        self.tombstones.push(entry.clone());
        entry
    }

    /// Removes and returns the tombstones of these addresses.
    pub fn lift(&mut self, ips: &[IpAddr]) -> Vec<Tombstone> {
        let ips: std::collections::BTreeSet<&IpAddr> = ips.iter().collect();
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

    /// Attachments with a record (live or released) that are not in the runtime's valid
    /// list (GC).
    pub fn stale_attachments(&self, valid: &[Attachment]) -> Vec<Attachment> {
        let valid: std::collections::BTreeSet<&Attachment> = valid.iter().collect();
        self.attachments
            .iter()
            .map(AttachmentRecord::attachment)
            .filter(|a| !valid.contains(a))
            .collect()
    }
}

/// What a change to a ledger must write, in the order that keeps the plugin's invariant
/// (a route exists only while an entry names it; an attachment is recorded before its
/// addresses are touched): tombstones first, then records, then holders, then removals.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub tombstones: Vec<Tombstone>,
    pub records: Vec<AttachmentRecord>,
    /// The new holder of each address whose holder changed (`None`: no record holds it).
    pub holders: Vec<(IpAddr, Option<Attachment>)>,
    pub removed_tombstones: Vec<IpAddr>,
    pub removed_records: Vec<Attachment>,
    /// The head (network name, tables) changed.
    pub head: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// The holder of an address among the records listing it: a live record before a
/// released one, and among several (a crash between two writes can leave a stale one) the
/// one the index named.
fn holder_in(listing: &[&AttachmentRecord], indexed: Option<&Attachment>) -> Option<Attachment> {
    for live in [true, false] {
        let of_kind: Vec<&&AttachmentRecord> = listing
            .iter()
            .filter(|r| r.released_at_ms.is_none() == live)
            .collect();
        if let Some(r) = of_kind
            .iter()
            .find(|r| indexed.is_some_and(|i| r.is(i)))
            .or(of_kind.first())
        {
            return Some(r.attachment());
        }
    }
    None
}

fn stones(l: &Ledger) -> BTreeMap<IpAddr, &Tombstone> {
    l.tombstones.iter().map(|t| (t.ip, t)).collect()
}

fn key(r: &AttachmentRecord) -> (&str, &str) {
    (r.container_id.as_str(), r.ifname.as_str())
}

fn records(l: &Ledger) -> BTreeMap<(&str, &str), &AttachmentRecord> {
    l.attachments.iter().map(|r| (key(r), r)).collect()
}

/// What turned `before` (as loaded) into `after`, and the holder index `after` implies for
/// every address either of them mentions. Linear in the entries (a sweep passes them all).
pub fn changes(before: &Ledger, after: &Ledger) -> Changes {
    let mut c = Changes {
        head: before.network != after.network
            || before.tables != after.tables
            || before.version != after.version
            || before.pruned_at_ms != after.pruned_at_ms,
        ..Changes::default()
    };
    let (was, now) = (stones(before), stones(after));
    c.tombstones = after
        .tombstones
        .iter()
        .filter(|t| was.get(&t.ip) != Some(t))
        .cloned()
        .collect();
    c.removed_tombstones = before
        .tombstones
        .iter()
        .filter(|t| !now.contains_key(&t.ip))
        .map(|t| t.ip)
        .collect();
    let (was, now) = (records(before), records(after));
    c.records = after
        .attachments
        .iter()
        .filter(|r| was.get(&key(r)) != Some(r))
        .cloned()
        .collect();
    c.removed_records = before
        .attachments
        .iter()
        .filter(|r| !now.contains_key(&key(r)))
        .map(AttachmentRecord::attachment)
        .collect();
    let mut listing: BTreeMap<IpAddr, Vec<&AttachmentRecord>> = BTreeMap::new();
    for ip in before.holders.keys() {
        listing.entry(*ip).or_default();
    }
    for r in &before.attachments {
        for ip in &r.ips {
            listing.entry(*ip).or_default();
        }
    }
    for r in &after.attachments {
        for ip in &r.ips {
            listing.entry(*ip).or_default().push(r);
        }
    }
    for (ip, records) in listing {
        let indexed = after.holders.get(&ip).or(before.holders.get(&ip));
        let new = holder_in(&records, indexed);
        if new.as_ref() != before.holders.get(&ip) {
            c.holders.push((ip, new));
        }
    }
    c
}

/// Decodes a ledger file of a network whose record stem is `stem`. `Err` carries why it
/// is unusable; a newer format version is not "corrupt" but refused (code 102), so an
/// older binary never clobbers a newer ledger.
pub fn decode(bytes: &[u8], stem: &str) -> Result<std::result::Result<Ledger, String>> {
    // Only an object that names a newer version is refused; anything else that does not
    // decode (an array, a truncated file) is unusable, and set aside.
    #[derive(Deserialize)]
    struct Head {
        version: u64,
    }
    // (Valid JSON only: the version is read without the rest, which must not hide bytes
    // that are no UTF-8 in a field it skips.)
    if bytes.trim_ascii_start().starts_with(b"{")
        && std::str::from_utf8(bytes).is_ok()
        && let Ok(h) = serde_json::from_slice::<Head>(bytes)
        && h.version > FORMAT_VERSION as u64
    {
        return Err(CniError::state(format!(
            "ledger {stem}.json has format version {}, this binary reads up to {FORMAT_VERSION}",
            h.version
        )));
    }
    Ok(serde_json::from_slice::<Ledger>(bytes)
        .map_err(|e| e.to_string())
        .and_then(|l| {
            if tombstone_cni::state::encode_stem(&l.network) != stem {
                return Err(format!(
                    "ledger belongs to network {:?}, not to this file",
                    l.network
                ));
            }
            if l.version == 0 {
                return Err("format version 0".into());
            }
            Ok(l)
        }))
}

/// What the ledger's, the store's and the sweep's tests build their ledgers of.
#[cfg(test)]
pub mod fixtures {
    use super::*;

    pub fn att(c: &str) -> Attachment {
        Attachment {
            container_id: c.into(),
            ifname: "eth0".into(),
        }
    }

    pub fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// An unreachable tombstone of `a` in the main table, released by `c`'s eth0.
    pub fn stone(a: &str, c: &str, exp: u64) -> Tombstone {
        Tombstone {
            ip: ip(a),
            route_type: RejectKind::Unreachable,
            tables: vec![254],
            route_metric: None,
            expires_at_ms: exp,
            container_id: c.into(),
            ifname: "eth0".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn an_address_belongs_to_one_attachment_and_releases_are_remembered() {
        let mut l = Ledger::new("n");
        l.record_attachment(&att("a"), &[ip("10.0.0.5"), ip("10.0.0.6")]);
        l.release(&att("a"), &[ip("10.0.0.5"), ip("10.0.0.6")], 100);
        assert!(l.is_released(&att("a")));
        assert!(
            l.held_by_other(ip("10.0.0.5"), &att("b")).is_none(),
            "released"
        );
        l.record_attachment(&att("e"), &[ip("10.0.0.5")]);
        assert_eq!(
            l.held_by_other(ip("10.0.0.5"), &att("a"))
                .unwrap()
                .container_id,
            "e"
        );
        assert_eq!(
            l.ips_of(&att("a")),
            vec![ip("10.0.0.6")],
            "a lost the moved address"
        );
        assert_eq!(l.prune_released(100 + 999, 1000), 0);
        assert_eq!(l.prune_released(100 + 1000, 1000), 1);
        assert!(!l.is_released(&att("a")));
        assert!(l.note_tables(&[254, 100]));
        assert!(!l.note_tables(&[100]));
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
        // The address is still released: the first hold and releaser stand.
        let t = l.tombstone(ip("10.0.0.5")).unwrap();
        assert_eq!((t.expires_at_ms, t.container_id.as_str()), (10, "a"));
        // New tables join the entry, old ones stay named.
        let mut wider = stone("10.0.0.5", "a", 5);
        wider.tables = vec![100];
        assert_eq!(l.bury(wider).tables, vec![254, 100]);
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
        let newer = br#"{"version":5,"network":"pods"}"#;
        assert_eq!(decode(newer, "pods").unwrap_err().code, 102);
        // An array is damage, not a newer ledger.
        assert!(decode(b"[3]", "pods").unwrap().is_err());
        // A version 1 ledger is read; its routes carry the kernel's default metric.
        let v1 = br#"{"version":1,"network":"pods","tombstones":[{"ip":"fd00::5","routeType":"unreachable","tables":[254],"expiresAtMs":7,"containerID":"b","ifname":"eth0"}]}"#;
        let l1 = decode(v1, "pods").unwrap().unwrap();
        assert_eq!((l1.version, l1.tombstones[0].metric()), (1, 1024));
        assert!(decode(br#"{"version":1,"network":"pods","tombstones":[{"ip":"fd00::5","routeType":"drop","tables":[254],"expiresAtMs":7,"containerID":"b","ifname":"eth0"}]}"#, "pods").unwrap().is_err());
    }
}
