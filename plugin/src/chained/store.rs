//! A network's ledger on disk, one small file per entry, so that a verb reads and writes
//! only the entries of its own attachment and addresses, however many tombstones are live:
//!
//! - `<stateDir>/<stem>.json`: the head (format version, network name, tables ever named);
//! - `<stateDir>/<stem>.d/t-<address>.json`: a tombstone, a link record (see
//!   [`encode_tombstone`]; version 3 wrote a file, still read);
//! - `<stateDir>/<stem>.d/a-<attachment>.json`: an attachment's record;
//! - `<stateDir>/<stem>.d/h-<address>.json`: which attachment holds the address now.
//!
//! Read and written under the caller's lock (see [`tombstone_cni::state`]); every file is
//! replaced atomically, and a change is written in [`Changes`]'s order. The formats are
//! [`super::ledger`]'s; heads of versions 1 and 2, which held every entry inline, are read
//! and their entries moved to files.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ledger::{
    AttachmentRecord, Changes, FORMAT_VERSION, Ledger, Tombstone, changes, decode,
};
use tombstone_cni::state::{Record, StateDir, encode_stem};
use tombstone_cni::{Attachment, CniError, Result};

/// A ledger as read: the entries of the scope asked for, and what the files say (the state
/// [`save`] compares against; it differs when a version 1 or 2 head held entries inline).
#[derive(Debug)]
pub struct Loaded {
    pub ledger: Ledger,
    pub on_disk: Ledger,
    pub head: Head,
}

/// How the head was found.
#[derive(Debug, PartialEq)]
pub enum Head {
    Fresh,
    Existing,
    /// The head was unreadable; it was moved aside to the given path and a new one takes
    /// its place at the next save (the entries, in files of their own, are kept).
    Rebuilt(PathBuf, String),
}

impl Loaded {
    pub fn into_ledger(self) -> Ledger {
        self.ledger
    }

    /// Says when the head had to be rebuilt; returns the ledger and the state on disk.
    pub fn logged(self) -> (Ledger, Ledger) {
        if let Head::Rebuilt(aside, why) = &self.head {
            log::error!(
                "network {}: ledger head unreadable ({why}); moved to {} and rebuilt",
                self.ledger.network,
                aside.display()
            );
        }
        (self.ledger, self.on_disk)
    }
}

/// The version of a `before` ledger whose head is in no file.
const NO_HEAD: u32 = 0;

/// Which entries to read.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every entry (GC, a listing, a pruning sweep).
    All,
    /// Every tombstone, no record or holder (a sweep that only ends and reconciles).
    Tombstones,
    /// The record of one attachment and the tombstones and holders of these addresses
    /// (with no address given: those its record lists).
    Of(&'a Attachment, &'a [IpAddr]),
}

/// The record name of a network in the state directory.
pub fn stem(network: &str) -> String {
    encode_stem(network)
}

/// The directory of a network's entries.
fn entries_dir(dir: &StateDir, stem: &str) -> Result<StateDir> {
    StateDir::open(dir.path().join(format!("{stem}.d")))
}

/// Entries read or written beyond this many at once are reached from the directory's
/// descriptor ([`StateDir::pinned`]) rather than each by its whole path.
const PIN_ABOVE: usize = 8;

fn tombstone_stem(ip: IpAddr) -> String {
    address_stem("t-", ip)
}

fn holder_stem(ip: IpAddr) -> String {
    address_stem("h-", ip)
}

/// `prefix` and the encoded address ([`encode_stem`] of its text), an IPv4 address spelled
/// here without the formatting machinery: a sweep names thousands.
fn address_stem(prefix: &str, ip: IpAddr) -> String {
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    match ip {
        IpAddr::V4(a) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    // `.`, encoded.
                    out.push_str("%2E");
                }
                if octet >= 100 {
                    out.push((b'0' + octet / 100) as char);
                }
                if octet >= 10 {
                    out.push((b'0' + octet / 10 % 10) as char);
                }
                out.push((b'0' + octet % 10) as char);
            }
        }
        IpAddr::V6(_) => out.push_str(&encode_stem(&ip.to_string())),
    }
    out
}

fn record_stem(a: &Attachment) -> String {
    format!(
        "a-{}",
        encode_stem(&format!("{}/{}", a.container_id, a.ifname))
    )
}

/// A holder entry: the attachment that holds an address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Holder {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// One entry file's content, or `None` when it does not exist or was unusable (moved
/// aside and logged: a damaged entry never stops a verb; the route it named, if any, is
/// an orphan the sweep reclaims).
fn read_entry<T: for<'de> Deserialize<'de>>(entries: &StateDir, stem: &str) -> Result<Option<T>> {
    // Checked as UTF-8 whole, once, rather than string by string as it is parsed.
    let json = |b: &[u8]| match std::str::from_utf8(b).map(serde_json::from_str::<T>) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    decoded(entries, stem, entries.read_record(stem)?, json)
}

/// The tombstone of `ip`, whichever form its entry has ([`decode_tombstone`]); one that
/// names another address is not its entry.
fn read_tombstone(entries: &StateDir, stem: &str, ip: IpAddr) -> Result<Option<Tombstone>> {
    let t = decoded(entries, stem, entries.read_link(stem)?, |b| {
        decode_tombstone(b, ip)
    })?;
    Ok(t.filter(|t| t.ip == ip))
}

fn decoded<T>(
    entries: &StateDir,
    stem: &str,
    found: Record,
    decode: impl FnOnce(&[u8]) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    let why = match found {
        Record::Missing => return Ok(None),
        Record::Bytes(b) => match decode(&b) {
            Ok(v) => return Ok(Some(v)),
            Err(why) => why,
        },
        Record::Foreign(why) => why,
    };
    let aside = entries.quarantine(stem, &super::now_ms().to_string())?;
    log::error!(
        "ledger entry {stem} unusable ({why}); moved to {}",
        aside.display()
    );
    Ok(None)
}

/// A tombstone entry's text: a JSON array `[route type, tables, metric, expiresAtMs,
/// ifname, containerID]`, the address being the entry's name. Short enough (114 bytes with
/// a 64-character container ID) to be a link record ([`StateDir::write_link`]), which a
/// sweep reads and removes at the cost of one call each, with no page behind it.
fn encode_tombstone(t: &Tombstone) -> Vec<u8> {
    let row = (
        t.route_type.as_str(),
        &t.tables,
        t.route_metric,
        t.expires_at_ms,
        &t.ifname,
        &t.container_id,
    );
    serde_json::to_vec(&row).expect("a tombstone always serializes")
}

/// Reads what [`encode_tombstone`] wrote, or a version 3 entry's JSON object (which names
/// its address itself).
fn decode_tombstone(bytes: &[u8], ip: IpAddr) -> std::result::Result<Tombstone, String> {
    type Row = (String, Vec<u32>, Option<u32>, u64, String, String);
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    if !text.starts_with('[') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let (kind, tables, route_metric, expires_at_ms, ifname, container_id): Row =
        serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(Tombstone {
        ip,
        route_type: tombstone_kernel::RejectKind::parse(&kind)
            .ok_or_else(|| format!("unknown route type {kind:?}"))?,
        tables,
        route_metric,
        expires_at_ms,
        container_id,
        ifname,
    })
}

/// Writes a tombstone entry: a link record, or a file (the object form) when its text is
/// too long for one (a container ID of about a thousand characters).
fn write_tombstone(entries: &StateDir, t: &Tombstone) -> Result<()> {
    let stem = tombstone_stem(t.ip);
    let text = encode_tombstone(t);
    if text.len() <= tombstone_cni::state::MAX_LINK {
        entries.write_link(&stem, &text)
    } else {
        write_entry(entries, &stem, t)
    }
}

/// The address a tombstone entry's stem names, if it is one spelled as this binary spells it.
fn tombstone_ip(stem: &str) -> Option<IpAddr> {
    let ip = tombstone_cni::state::decode_stem(stem.strip_prefix("t-")?)
        .parse()
        .ok()?;
    (tombstone_stem(ip) == stem).then_some(ip)
}

fn write_entry<T: Serialize>(entries: &StateDir, stem: &str, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec(v).expect("an entry always serializes");
    entries.write(stem, &bytes, false)
}

/// Reads a network's ledger (the caller holds its lock): the head, and the entries of
/// `scope`.
pub fn load(dir: &StateDir, network: &str, scope: Scope) -> Result<Loaded> {
    let stem = stem(network);
    let (head, how) = load_head(dir, &stem, Some(network))?;
    fill(head, how, &entries_dir(dir, &stem)?, scope, false)
}

/// Reads the whole ledger of record `stem`, whichever network it names (a sweep lists
/// stems; a shortened stem cannot be decoded back into its network's name). `None` when
/// the record vanished meanwhile. A head that is not a regular file of ours is treated like
/// an unreadable one: moved aside, never trusted; its entries are still read. The caller
/// holds the directory's lock alone ([`StateDir::lock_all`]): the temporary files killed
/// writers left among the entries are removed, found by the same listing.
pub fn load_any(
    dir: &StateDir,
    stem: &str,
    scope: impl FnOnce(&Ledger) -> Scope<'static>,
) -> Result<Option<Loaded>> {
    match load_head(dir, stem, None)? {
        (_, Head::Fresh) => Ok(None),
        (head, how) => {
            let scope = scope(&head);
            let entries = entries_dir(dir, stem)?;
            // A scope of every entry or tombstone lists them; another does not.
            let listed = !matches!(scope, Scope::Of(..));
            if !listed {
                entries.remove_temps()?;
            }
            fill(head, how, &entries, scope, listed).map(Some)
        }
    }
}

fn load_head(dir: &StateDir, stem: &str, network: Option<&str>) -> Result<(Ledger, Head)> {
    let fresh = || Ledger::new(network.unwrap_or_default());
    let aside = || dir.quarantine(stem, &super::now_ms().to_string());
    let bytes = match dir.read_record(stem)? {
        Record::Bytes(b) => b,
        Record::Missing => return Ok((fresh(), Head::Fresh)),
        Record::Foreign(why) => return Ok((fresh(), Head::Rebuilt(aside()?, why))),
    };
    match decode(&bytes, stem)? {
        Ok(l) => Ok((l, Head::Existing)),
        Err(why) => Ok((fresh(), Head::Rebuilt(aside()?, why))),
    }
}

/// Adds the entries of `scope` to a head (with `remove_temps`, removing the temporary
/// files a listing of them finds). Entries a version 1 or 2 head held inline stay in the
/// ledger but not in `on_disk`: they are in no file yet, so the next save writes them, and
/// then the head.
fn fill(
    head: Ledger,
    how: Head,
    entries: &StateDir,
    scope: Scope,
    remove_temps: bool,
) -> Result<Loaded> {
    let files = read_entries(entries, scope, remove_temps)?;
    let on_disk = Ledger {
        version: if how == Head::Existing {
            head.version
        } else {
            NO_HEAD
        },
        network: head.network.clone(),
        tables: head.tables.clone(),
        pruned_at_ms: head.pruned_at_ms,
        ..files.clone()
    };
    let mut ledger = head;
    ledger.version = FORMAT_VERSION;
    // Inline entries (version 1 and 2 heads) win over files of the same key: they are
    // what an older binary wrote last.
    let inline: BTreeSet<Attachment> = ledger.attachments.iter().map(|r| r.attachment()).collect();
    ledger.attachments.extend(
        files
            .attachments
            .into_iter()
            .filter(|r| inline.is_empty() || !inline.contains(&r.attachment())),
    );
    let inline: BTreeSet<IpAddr> = ledger.tombstones.iter().map(|t| t.ip).collect();
    ledger.tombstones.extend(
        files
            .tombstones
            .into_iter()
            .filter(|t| !inline.contains(&t.ip)),
    );
    ledger.holders = files.holders;
    Ok(Loaded {
        ledger,
        on_disk,
        head: how,
    })
}

/// The entries of `scope` as they are in files (an empty ledger but for them).
fn read_entries(entries: &StateDir, scope: Scope, remove_temps: bool) -> Result<Ledger> {
    let mut l = Ledger::new("");
    match scope {
        Scope::Of(a, ips) => {
            let own: Option<AttachmentRecord> = read_record(entries, a)?;
            let ips: Vec<IpAddr> = match (&own, ips.is_empty()) {
                (Some(r), true) => r.ips.clone(),
                // No address given and no record: what a crashed DEL left is found among
                // every tombstone (the one case that reads them all).
                (None, true) => return read_entries(entries, Scope::All, remove_temps),
                _ => ips.to_vec(),
            };
            l.attachments.extend(own);
            for ip in ips {
                if let Some(t) = read_tombstone(entries, &tombstone_stem(ip), ip)? {
                    l.tombstones.push(t);
                }
                let Some(h) = read_entry::<Holder>(entries, &holder_stem(ip))? else {
                    continue;
                };
                let holder = Attachment {
                    container_id: h.container_id,
                    ifname: h.ifname,
                };
                if !l.attachments.iter().any(|r| r.attachment() == holder)
                    && let Some(r) = read_record(entries, &holder)?
                {
                    l.attachments.push(r);
                }
                l.holders.insert(ip, holder);
            }
        }
        Scope::All | Scope::Tombstones => {
            let all = matches!(scope, Scope::All);
            let listing = entries.listing_where(|stem| all || stem.starts_with("t-"))?;
            if remove_temps {
                entries.remove_listed_temps(&listing)?;
            }
            let entries = &if listing.records.len() > PIN_ABOVE {
                entries.pinned()?
            } else {
                entries.clone()
            };
            l.tombstones.reserve(
                listing
                    .records
                    .iter()
                    .filter(|s| s.starts_with("t-"))
                    .count(),
            );
            for stem in listing.records {
                if stem.starts_with("t-") {
                    if let Some(ip) = tombstone_ip(&stem)
                        && let Some(t) = read_tombstone(entries, &stem, ip)?
                    {
                        l.tombstones.push(t);
                    }
                } else if !all {
                    continue;
                } else if stem.starts_with("a-") {
                    if let Some(r) = read_entry::<AttachmentRecord>(entries, &stem)?
                        .filter(|r| record_stem(&r.attachment()) == stem)
                    {
                        l.attachments.push(r);
                    }
                } else if let Some(rest) = stem.strip_prefix("h-")
                    && let Ok(ip) = tombstone_cni::state::decode_stem(rest).parse::<IpAddr>()
                    && let Some(h) = read_entry::<Holder>(entries, &stem)?
                {
                    l.holders.insert(
                        ip,
                        Attachment {
                            container_id: h.container_id,
                            ifname: h.ifname,
                        },
                    );
                }
            }
        }
    }
    Ok(l)
}

/// An attachment's record; one whose file name does not match what it says (a shortened
/// name's hash collision) is not its record.
fn read_record(entries: &StateDir, a: &Attachment) -> Result<Option<AttachmentRecord>> {
    Ok(read_entry::<AttachmentRecord>(entries, &record_stem(a))?.filter(|r| r.attachment() == *a))
}

/// Writes what changed from `before` (the ledger as loaded or last saved) to `after`, in
/// [`Changes`]'s order, then makes `before` the new state on disk. With nothing changed,
/// nothing is written.
pub fn save(dir: &StateDir, before: &mut Ledger, after: &mut Ledger) -> Result<()> {
    let c = changes(before, after);
    if !c.is_empty() {
        write_changes(dir, before.version == NO_HEAD, after, &c)?;
        for (ip, holder) in c.holders {
            match holder {
                Some(h) => after.holders.insert(ip, h),
                None => after.holders.remove(&ip),
            };
        }
    }
    *before = after.clone();
    Ok(())
}

/// The version a saved head carries.
fn head_of(l: &Ledger) -> Ledger {
    Ledger {
        tables: l.tables.clone(),
        pruned_at_ms: l.pruned_at_ms,
        ..Ledger::new(&l.network)
    }
}

fn write_changes(dir: &StateDir, head_missing: bool, after: &Ledger, c: &Changes) -> Result<()> {
    let stem = stem(&after.network);
    // A head first, so that a network's entries are never without one.
    if head_missing {
        write_entry(dir, &stem, &head_of(after))?;
    }
    let mut entries = entries_dir(dir, &stem)?;
    let many = c.tombstones.len()
        + c.records.len()
        + c.holders.len()
        + c.removed_tombstones.len()
        + c.removed_records.len();
    if many > PIN_ABOVE {
        entries = entries.pinned()?;
    }
    for t in &c.tombstones {
        write_tombstone(&entries, t)?;
    }
    for r in &c.records {
        write_entry(&entries, &record_stem(&r.attachment()), r)?;
    }
    for (ip, holder) in &c.holders {
        match holder {
            Some(a) => write_entry(
                &entries,
                &holder_stem(*ip),
                &Holder {
                    container_id: a.container_id.clone(),
                    ifname: a.ifname.clone(),
                },
            )?,
            None => {
                entries.remove(&holder_stem(*ip))?;
            }
        }
    }
    for ip in &c.removed_tombstones {
        entries.remove(&tombstone_stem(*ip))?;
    }
    for a in &c.removed_records {
        entries.remove(&record_stem(a))?;
    }
    // Last, the head: a version 1 or 2 head loses its inline entries only once they are
    // in files.
    if c.head && !head_missing {
        write_entry(dir, &stem, &head_of(after))?;
    }
    Ok(())
}

/// When a network's entry directory last changed (an entry created, replaced or removed:
/// every write renames into it), `None` when it does not exist. Reads no entry.
pub fn entries_changed_at(dir: &StateDir, stem: &str) -> Result<Option<std::time::SystemTime>> {
    changed_at(&dir.path().join(format!("{stem}.d")))
}

/// A directory's modification time, `None` when it does not exist.
pub fn changed_at(path: &std::path::Path) -> Result<Option<std::time::SystemTime>> {
    match std::fs::symlink_metadata(path).and_then(|m| m.modified()) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::io(format!("cannot stat {}: {e}", path.display()))),
    }
}

/// Whether a network has any tombstone entry (a name is enough; nothing is read).
pub fn has_tombstones(dir: &StateDir, stem: &str) -> Result<bool> {
    let path = dir.path().join(format!("{stem}.d"));
    let entries = match std::fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(CniError::io(format!("cannot list {}: {e}", path.display()))),
    };
    for e in entries {
        let e = e.map_err(|e| CniError::io(format!("cannot list {}: {e}", path.display())))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("t-") && name.ends_with(".json") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A network's head and tombstones, read without a lock and without writing anything
/// (`tombstone list`): an unreadable head or entry is an error that names it, never moved
/// aside. `None` when the head vanished.
pub fn peek(dir: &StateDir, stem: &str) -> Result<Option<Ledger>> {
    let unreadable =
        |what: String, why: String| CniError::state(format!("{what} is unreadable: {why}"));
    let Some(bytes) = dir.read(stem)? else {
        return Ok(None);
    };
    let mut ledger =
        decode(&bytes, stem)?.map_err(|why| unreadable(format!("ledger {stem}.json"), why))?;
    let Some(entries) = StateDir::existing(dir.path().join(format!("{stem}.d")))? else {
        return Ok(Some(ledger));
    };
    for name in entries.records()? {
        let Some(ip) = tombstone_ip(&name) else {
            continue;
        };
        let what = || format!("ledger entry {stem}.d/{name}.json");
        let bytes = match entries.read_link(&name)? {
            Record::Missing => continue,
            Record::Bytes(b) => b,
            Record::Foreign(why) => return Err(unreadable(what(), why)),
        };
        let t = decode_tombstone(&bytes, ip).map_err(|why| unreadable(what(), why))?;
        if t.ip == ip && ledger.tombstone(t.ip).is_none() {
            ledger.tombstones.push(t);
        }
    }
    Ok(Some(ledger))
}

/// The whole ledger of a network, for a listing or a test: `None` when it has none.
pub fn snapshot(dir: &StateDir, network: &str) -> Result<Option<Ledger>> {
    let l = load(dir, network, Scope::All)?;
    Ok((l.head != Head::Fresh || !l.ledger.is_empty()).then_some(l.ledger))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chained::ledger::Tombstone;
    use crate::chained::ledger::fixtures::{att, ip};
    use std::os::unix::ffi::OsStrExt;
    use tombstone_kernel::RejectKind;

    fn stone(a: &str, c: &str) -> Tombstone {
        Tombstone {
            route_metric: Some(3000),
            ..crate::chained::ledger::fixtures::stone(a, c, 5)
        }
    }

    fn temp_dir(tag: &str) -> StateDir {
        let d = std::env::temp_dir().join(format!("ts-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        StateDir::open(&d).unwrap()
    }

    fn entry_files(dir: &StateDir, network: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path().join(format!("{}.d", stem(network))))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn a_verb_reads_and_writes_only_its_entries() {
        let dir = temp_dir("scope");
        let (mut l, mut before) = load(&dir, "pods", Scope::All).unwrap().logged();
        for i in 0..50 {
            let a = att(&format!("c{i}"));
            let addr = ip(&format!("10.0.0.{i}"));
            l.record_attachment(&a, &[addr]);
            l.release(&a, &[addr], 1);
            l.bury(stone(&format!("10.0.0.{i}"), &format!("c{i}")));
        }
        save(&dir, &mut before, &mut l).unwrap();
        assert_eq!(entry_files(&dir, "pods").len(), 150, "one file per entry");
        // A verb's scope loads one record, one tombstone, one holder.
        let a = att("c7");
        let addrs = [ip("10.0.0.7")];
        let part = load(&dir, "pods", Scope::Of(&a, &addrs))
            .unwrap()
            .into_ledger();
        assert_eq!((part.attachments.len(), part.tombstones.len()), (1, 1));
        assert_eq!(part.holders.get(&addrs[0]), Some(&a));
        // Reused by c99: its record, the holder, the lift; c7's record loses the address.
        let new = att("c99");
        let (mut after, mut before) = load(&dir, "pods", Scope::Of(&new, &addrs))
            .unwrap()
            .logged();
        after.record_attachment(&new, &addrs);
        after.lift(&addrs);
        let c = changes(&before, &after);
        assert_eq!(c.records.len(), 1, "c99's record ({c:?})");
        assert_eq!(c.removed_records, vec![a.clone()], "c7 held nothing else");
        assert_eq!(c.holders, vec![(addrs[0], Some(new.clone()))]);
        assert_eq!(c.removed_tombstones, addrs.to_vec());
        save(&dir, &mut before, &mut after).unwrap();
        let all = snapshot(&dir, "pods").unwrap().unwrap();
        assert_eq!(all.tombstones.len(), 49);
        assert_eq!(all.attachments.len(), 50);
        assert_eq!(all.holders.get(&addrs[0]), Some(&new));
        assert!(all.held_by_other(addrs[0], &a).is_some());
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn a_load_saved_unchanged_writes_nothing() {
        let dir = temp_dir("unchanged");
        let (mut l, mut before) = load(&dir, "pods", Scope::All).unwrap().logged();
        l.tables = vec![254];
        l.pruned_at_ms = Some(42);
        l.bury(stone("10.0.0.5", "c"));
        save(&dir, &mut before, &mut l).unwrap();
        for scope in [Scope::All, Scope::Tombstones, Scope::Of(&att("c"), &[])] {
            let (l, before) = load(&dir, "pods", scope).unwrap().logged();
            let c = changes(&before, &l);
            assert!(
                c.is_empty(),
                "a ledger as loaded differs from its files: {c:?}"
            );
        }
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn a_version_2_ledger_moves_to_entry_files() {
        let dir = temp_dir("v2");
        let v2 = br#"{"version":2,"network":"pods","tables":[254],"attachments":[{"containerID":"a","ifname":"eth0","ips":["10.0.0.5"],"releasedAtMs":1}],"tombstones":[{"ip":"10.0.0.5","routeType":"unreachable","tables":[254],"metric":3000,"expiresAtMs":9,"containerID":"a","ifname":"eth0"}]}"#;
        dir.write("pods", v2, false).unwrap();
        let (mut l, mut before) = load(&dir, "pods", Scope::Of(&att("x"), &[ip("10.0.0.9")]))
            .unwrap()
            .logged();
        assert_eq!(l.tombstones.len(), 1, "inline entries are read");
        assert!(before.tombstones.is_empty(), "but are in no file");
        save(&dir, &mut before, &mut l).unwrap();
        let head: serde_json::Value =
            serde_json::from_slice(&dir.read("pods").unwrap().unwrap()).unwrap();
        assert_eq!(head["version"], FORMAT_VERSION);
        assert!(head.get("tombstones").is_none(), "{head}");
        let all = snapshot(&dir, "pods").unwrap().unwrap();
        let mut want = stone("10.0.0.5", "a");
        want.expires_at_ms = 9;
        assert_eq!(all.tombstones, vec![want]);
        assert_eq!(all.holders.get(&ip("10.0.0.5")), Some(&att("a")));
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn a_damaged_entry_is_set_aside_and_the_rest_stands() {
        let dir = temp_dir("damage");
        let (mut l, mut before) = load(&dir, "pods", Scope::All).unwrap().logged();
        l.bury(stone("10.0.0.5", "a"));
        l.bury(stone("10.0.0.6", "a"));
        save(&dir, &mut before, &mut l).unwrap();
        let entries = entries_dir(&dir, "pods").unwrap();
        entries
            .write(&tombstone_stem(ip("10.0.0.6")), b"{\"ip\":", false)
            .unwrap();
        let all = snapshot(&dir, "pods").unwrap().unwrap();
        assert_eq!(all.tombstones.len(), 1);
        assert!(
            entry_files(&dir, "pods")
                .iter()
                .any(|f| f.contains(".json.corrupt-")),
            "{:?}",
            entry_files(&dir, "pods")
        );
        // A head damaged: moved aside, the entries kept.
        dir.write("pods", b"{\"version\":1,\"netw", false).unwrap();
        let l = load(&dir, "pods", Scope::All).unwrap();
        match &l.head {
            Head::Rebuilt(aside, _) => assert!(aside.exists()),
            other => panic!("expected a rebuild, got {other:?}"),
        }
        assert_eq!(l.ledger.tombstones.len(), 1, "the entries are kept");
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn a_sweeps_load_removes_the_temporary_files_its_listing_finds() {
        let dir = temp_dir("temps");
        let (mut l, mut before) = load(&dir, "pods", Scope::All).unwrap().logged();
        // More entries than PIN_ABOVE: read from the pinned directory.
        for i in 0..20 {
            l.bury(stone(&format!("10.0.0.{i}"), "a"));
        }
        save(&dir, &mut before, &mut l).unwrap();
        let left = dir.path().join("pods.d/t-10%2E0%2E0%2E3.json.tmp");
        std::fs::write(&left, b"{").unwrap();
        let loaded = load_any(&dir, "pods", |_| Scope::Tombstones)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.ledger.tombstones.len(), 20);
        assert!(!left.exists(), "the killed writer's temporary file is gone");
        assert!(
            !entry_files(&dir, "pods")
                .iter()
                .any(|f| f.ends_with(".tmp"))
        );
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn tombstones_are_short_link_records_and_version_3_files_are_still_read() {
        let dir = temp_dir("links");
        let (mut l, mut before) = load(&dir, "pods", Scope::All).unwrap().logged();
        let id = "0123456789abcdef".repeat(4);
        l.bury(stone("10.244.123.234", &id));
        l.bury(stone("fd00:aaaa:bbbb:cccc:dddd:eeee:ffff:1234", &id));
        save(&dir, &mut before, &mut l).unwrap();
        let entries = dir.path().join("pods.d");
        for a in ["10.244.123.234", "fd00:aaaa:bbbb:cccc:dddd:eeee:ffff:1234"] {
            let path = entries.join(format!("{}.json", tombstone_stem(ip(a))));
            let m = std::fs::symlink_metadata(&path).unwrap();
            assert!(m.file_type().is_symlink(), "{a}: {m:?}");
            // tmpfs keeps a link's text of under 128 bytes in its inode.
            let text = std::fs::read_link(&path).unwrap();
            assert!(text.as_os_str().len() < 128, "{a}: {text:?}");
        }
        // A version 3 entry, a file naming its address, is read as it is.
        let v3 = br#"{"ip":"10.0.0.7","routeType":"prohibit","tables":[254,100],"metric":3000,"expiresAtMs":9,"containerID":"old","ifname":"net1"}"#;
        entries_dir(&dir, "pods")
            .unwrap()
            .write(&tombstone_stem(ip("10.0.0.7")), v3, false)
            .unwrap();
        // One too long to be a link is a file.
        let long = "x".repeat(2000);
        let (mut l, mut before) = load(&dir, "pods", Scope::All).unwrap().logged();
        l.bury(stone("10.0.0.8", &long));
        save(&dir, &mut before, &mut l).unwrap();
        let long_path = entries.join(format!("{}.json", tombstone_stem(ip("10.0.0.8"))));
        assert!(std::fs::symlink_metadata(&long_path).unwrap().is_file());
        let all = snapshot(&dir, "pods").unwrap().unwrap();
        let mut want = vec![
            stone("10.244.123.234", &id),
            stone("fd00:aaaa:bbbb:cccc:dddd:eeee:ffff:1234", &id),
            stone("10.0.0.8", &long),
            Tombstone {
                route_type: RejectKind::Prohibit,
                tables: vec![254, 100],
                expires_at_ms: 9,
                ifname: "net1".into(),
                ..stone("10.0.0.7", "old")
            },
        ];
        let mut got = all.tombstones.clone();
        got.sort_by_key(|t| t.ip);
        want.sort_by_key(|t| t.ip);
        assert_eq!(got, want);
        let mut peeked = peek(&dir, "pods").unwrap().unwrap().tombstones;
        peeked.sort_by_key(|t| t.ip);
        assert_eq!(peeked, want, "a listing reads both forms");
        // A damaged link is set aside like a damaged file.
        let bad = entries.join(format!("{}.json", tombstone_stem(ip("10.244.123.234"))));
        std::fs::remove_file(&bad).unwrap();
        std::os::unix::fs::symlink("[\"unreachable\",[254]", &bad).unwrap();
        assert!(
            peek(&dir, "pods").is_err(),
            "a listing names what it cannot read"
        );
        assert_eq!(snapshot(&dir, "pods").unwrap().unwrap().tombstones.len(), 3);
        assert!(
            entry_files(&dir, "pods")
                .iter()
                .any(|f| f.starts_with("t-10%2E244") && f.contains(".json.corrupt-")),
            "{:?}",
            entry_files(&dir, "pods")
        );
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Any tombstone's entry text reads back as itself.
        #[test]
        fn a_tombstone_entry_reads_back_as_itself(
            v4 in proptest::prelude::any::<u32>(),
            kind in 0..3usize,
            tables in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..4),
            metric in proptest::prelude::any::<Option<u32>>(),
            expires in proptest::prelude::any::<u64>(),
            ifname in "\\PC{0,16}",
            id in "\\PC{0,80}",
        ) {
            let t = Tombstone {
                ip: IpAddr::V4(v4.into()),
                route_type: [RejectKind::Unreachable, RejectKind::Prohibit, RejectKind::Blackhole][kind],
                tables,
                route_metric: metric,
                expires_at_ms: expires,
                container_id: id,
                ifname,
            };
            let text = encode_tombstone(&t);
            proptest::prop_assert!(!text.contains(&0), "a link's text has no NUL byte");
            proptest::prop_assert_eq!(decode_tombstone(&text, t.ip), Ok(t));
        }

        /// Whatever text a tombstone's link holds, a load reads it or sets it aside, and a
        /// listing names it; nothing panics.
        #[test]
        fn a_tombstone_link_of_any_text_is_read_or_set_aside(
            text in proptest::prop_oneof![
                proptest::collection::vec(1..=255u8, 1..160),
                // A valid entry's text cut anywhere (the whole of it included).
                (1..=43usize).prop_map(|n| br#"["prohibit",[254,7],null,99,"eth0","pod-1"]"#[..n].to_vec()),
            ],
        ) {
            let dir = temp_dir("anylink");
            let entries = entries_dir(&dir, "pods").unwrap();
            dir.write("pods", br#"{"version":4,"network":"pods","tables":[254]}"#, false).unwrap();
            let path = entries.path().join(format!("{}.json", tombstone_stem(ip("10.0.0.5"))));
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&text), &path).unwrap();
            let peeked = peek(&dir, "pods");
            let read = decode_tombstone(&text, ip("10.0.0.5"));
            let all = snapshot(&dir, "pods").unwrap().unwrap();
            match read {
                Ok(t) => {
                    proptest::prop_assert_eq!(&all.tombstones, &vec![t.clone()]);
                    proptest::prop_assert_eq!(peeked.unwrap().unwrap().tombstones, vec![t]);
                }
                Err(_) => {
                    proptest::prop_assert!(all.tombstones.is_empty());
                    proptest::prop_assert!(peeked.is_err());
                    proptest::prop_assert!(
                        entry_files(&dir, "pods").iter().any(|f| f.contains(".json.corrupt-")),
                        "set aside: {:?}", entry_files(&dir, "pods")
                    );
                }
            }
            std::fs::remove_dir_all(dir.path()).unwrap();
        }
    }

    #[test]
    fn address_stems_are_the_encoded_addresses() {
        for a in [
            "0.0.0.0",
            "10.0.0.5",
            "100.64.9.99",
            "255.255.255.255",
            "1.20.203.4",
            "fd00::5",
            "::ffff:10.0.0.1",
        ] {
            let want = encode_stem(a);
            assert_eq!(tombstone_stem(ip(a)), format!("t-{want}"));
            assert_eq!(holder_stem(ip(a)), format!("h-{want}"));
        }
        for i in 0..=255u8 {
            let a = std::net::Ipv4Addr::new(i, 255 - i, i / 3, 7).to_string();
            assert_eq!(tombstone_stem(ip(&a)), format!("t-{}", encode_stem(&a)));
        }
    }

    #[test]
    fn stems_are_encoded_names() {
        assert_eq!(stem("pods"), "pods");
        assert_eq!(stem("a.b"), "a%2Eb");
        assert_eq!(tombstone_stem(ip("fd00::5")), "t-fd00%3A%3A5");
        assert_eq!(record_stem(&att("c")), "a-c%2Feth0");
    }
}
