//! The state of one network on disk, format version 2: a directory
//! `<dataDir>/<network>/tombstone-ipam.d/` of small files, so that a call reads and writes
//! only the addresses it concerns, never the whole state:
//!
//! - `ip-<address>`: the address's record, `["a",<address>,<container id>,<ifname>]`
//!   (allocated) or `["r",<address>,<unix time>]` (released, cooling down); no file: free;
//! - `ctr-<bucket>`: one allocation line per address of the containers whose ID hashes to
//!   the bucket ([`INDEX_BUCKETS`] of them): an index to find an attachment's addresses,
//!   checked against the address's own file, which is the truth, so it may hold more (an
//!   ADD appends its lines, a DEL leaves them; rewritten when it grows too long);
//! - `cursor-<range set>`: `["c",<set>,<address>]`, the set's last allocation;
//! - `format`: `{"format":"tombstone-ipam","version":2,"network":...}`.
//!
//! Locked by `<network>/tombstone-ipam.lock` (`flock`). Every change of a file is a complete
//! temporary file that takes its name in one step, so a killed process leaves each file old
//! or new; but for an append to an index bucket (one `write`), which can leave a torn tail:
//! a bucket that is not whole lines of allocations is rebuilt from the address files.
//! Nothing is synced per call (see the README: a power loss may lose the last changes or
//! leave a file empty; an empty address file keeps its address out of use until GC). The
//! first write migrates a version 1 state file or host-local's files ([`crate::legacy`])
//! into a new directory, synced, then renamed into place: all or nothing.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tombstone_cni::state::{Lock, StateDir, fnv1a64, replace};
use tombstone_cni::{Attachment, CniError, Result};

use crate::legacy::{self, Source};
use crate::pool::{self, AddPlan, GcAction, Mem, Slot, ValidSet, View};
use crate::range::canonical;
use crate::record::{self, Line, Record};

/// The stem of our files beside host-local's (named by address, `last_reserved_ip.N`,
/// `lock`): `tombstone-ipam.lock`, `tombstone-ipam.d/`, the old `tombstone-ipam.json`.
pub const STEM: &str = "tombstone-ipam";
/// The layout's directory inside the network's.
pub const LAYOUT: &str = "tombstone-ipam.d";
/// The format version of the layout.
pub const VERSION: u64 = 2;
const MARKER: &str = "format";
/// The one temporary file (the lock is held while it exists).
const TMP: &str = "tmp";
/// Where a migration is built before it is renamed into place.
const BUILDING: &str = "tombstone-ipam.d.new";
/// The version 1 state file, once migrated (kept for inspection, never read).
const MIGRATED: &str = "tombstone-ipam.json.migrated";

pub fn ip_name(ip: IpAddr) -> String {
    format!("ip-{ip}")
}

/// Index files: a container's lines are in bucket `hash(container ID) % INDEX_BUCKETS`, so a
/// node needs at most this many files besides one per address, and one holds about
/// `addresses / INDEX_BUCKETS` lines (15 with 60 000 in use).
pub const INDEX_BUCKETS: u64 = 4096;

/// An index bucket is appended to until it would exceed this; then it is rewritten with its
/// live lines only (compacted).
pub const INDEX_COMPACT_BYTES: u64 = 8192;

pub fn ctr_name(container_id: &str) -> String {
    format!(
        "ctr-{:03x}",
        fnv1a64(container_id.as_bytes()) % INDEX_BUCKETS
    )
}

pub fn cursor_name(set: usize) -> String {
    format!("cursor-{set}")
}

/// The marker's content.
pub fn marker(network: &str) -> String {
    format!(
        "{{\"format\":\"{}\",\"version\":{VERSION},\"network\":{}}}\n",
        record::FORMAT,
        serde_json::to_string(network).expect("strings serialize")
    )
}

/// What is wrong with a marker that is not exactly ours.
fn check_marker(bytes: &[u8], network: &str) -> std::result::Result<(), String> {
    if bytes == marker(network).as_bytes() {
        return Ok(());
    }
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| "its format marker is not readable")?;
    if v["format"] != record::FORMAT {
        return Err("its format marker is not tombstone-ipam's".into());
    }
    match v["version"].as_u64() {
        Some(n) if n > VERSION => Err(format!(
            "format version {n} was written by a newer tombstone-ipam (this one reads {VERSION})"
        )),
        Some(VERSION) if v["network"] != network => Err(format!(
            "it belongs to network {}, not {network:?}",
            v["network"]
        )),
        _ => Err("unknown format version".into()),
    }
}

/// One line of a container's index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    ip: IpAddr,
    container_id: String,
    ifname: String,
}

impl Entry {
    fn line(&self) -> String {
        Record::Alloc {
            ip: self.ip,
            container_id: self.container_id.as_str().into(),
            ifname: self.ifname.as_str().into(),
        }
        .to_line()
    }
    fn parse(line: &str) -> Option<Entry> {
        match record::parse_line(line) {
            Ok(Line::Record(Record::Alloc {
                ip,
                container_id,
                ifname,
            })) => Some(Entry {
                ip,
                container_id: container_id.into_owned(),
                ifname: ifname.into_owned(),
            }),
            _ => None,
        }
    }
    fn is(&self, who: &Attachment) -> bool {
        pool::owned_by(&self.container_id, &self.ifname, who)
    }
}

fn index_text(entries: &[Entry]) -> String {
    let mut s = String::new();
    for e in entries {
        s += &e.line();
        s.push('\n');
    }
    s
}

/// The addresses an attachment holds, and its container's index bucket as read.
#[derive(Debug, Default)]
pub struct Held {
    /// Checked against each address's own record, each once.
    pub mine: Vec<IpAddr>,
    /// The bucket as read (empty when it does not exist).
    text: String,
    bucket: Bucket,
}

/// What a reader found of an index bucket.
#[derive(Debug, Default, PartialEq, Eq)]
enum Bucket {
    #[default]
    Missing,
    /// Whole lines of allocations: appended to.
    Whole,
    /// Empty, torn or not lines of allocations (a killed append, a power loss): `text` is
    /// its lines rebuilt from the address files, to be written whole.
    Rebuilt,
}

/// Whether an index bucket is whole lines, as only our writes leave it: not empty, ending
/// with a newline, no NUL byte (a power loss can leave zeros where an append had not reached
/// the disk). Each line's shape is checked as it is read ([`Disk::find_mine`]).
fn is_whole(text: &str) -> bool {
    text.ends_with('\n') && !text.as_bytes().contains(&0)
}

/// The prefix of every index line, `["a","`, before its address.
const LINE_PREFIX: &str = "[\"a\",\"";

#[derive(Debug)]
pub struct Store {
    dir: StateDir,
    network: String,
}

/// The state as CHECK and STATUS read it: the layout, or an older state in memory.
pub enum State {
    Disk(Disk),
    Mem(Mem),
}

impl State {
    pub fn held(&mut self, who: &Attachment) -> Result<Vec<IpAddr>> {
        match self {
            State::Disk(d) => Ok(d.held(who)?.mine),
            State::Mem(m) => Ok(m.held(who)),
        }
    }
    pub fn view(&mut self) -> &mut dyn View {
        match self {
            State::Disk(d) => d,
            State::Mem(m) => m,
        }
    }
}

impl Store {
    /// The network's directory under `data_dir` (created 0700 when missing).
    pub fn open(data_dir: &Path, network: &str) -> Result<Store> {
        Ok(Store {
            dir: StateDir::open(data_dir.join(network))?,
            network: network.to_string(),
        })
    }

    /// The layout's directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join(LAYOUT)
    }

    /// Serialises invocations for this network.
    pub fn lock(&self) -> Result<Lock> {
        self.dir.lock(STEM)
    }

    /// STATUS's check that a write could succeed.
    pub fn probe(&self) -> Result<()> {
        self.dir.probe()
    }

    fn corrupt(&self, why: impl std::fmt::Display) -> CniError {
        CniError::state(format!(
            "state directory {} is unusable: {why}",
            self.path().display()
        ))
        .with_details(
            "tombstone-ipam never resets a damaged state, which could hand out addresses in \
             use; inspect or restore it",
        )
    }

    /// The layout if it exists, its version checked (call with the lock held).
    fn existing(&self) -> Result<Option<Disk>> {
        let Some(dir) = StateDir::existing(self.path())? else {
            return Ok(None);
        };
        let disk = Disk {
            dir: dir.path().to_path_buf(),
        };
        match disk.read(MARKER)? {
            Some(bytes) => check_marker(&bytes, &self.network).map_err(|e| self.corrupt(e))?,
            None => return Err(self.corrupt("its format marker is missing")),
        }
        Ok(Some(disk))
    }

    /// The state to read, changing nothing (CHECK, STATUS).
    pub fn read_state(&self) -> Result<State> {
        if let Some(d) = self.existing()? {
            return Ok(State::Disk(d));
        }
        let source = legacy::read(&self.dir, &self.network)?;
        let mem =
            Mem::from_records(source.records()).map_err(|e| legacy::corrupt(&self.dir, 0, e))?;
        Ok(State::Mem(mem))
    }

    /// The state to change (ADD, DEL, GC), migrated to this layout first when needed. A
    /// temporary file a killed writer left is removed.
    pub fn write_state(&self, now: u64, reuse_after: u64) -> Result<Disk> {
        let disk = match self.existing()? {
            Some(d) => d,
            None => self.migrate(now, reuse_after)?,
        };
        disk.remove(TMP)?;
        Ok(disk)
    }

    /// Builds the layout from the older state in a new directory, syncs it and renames it
    /// into place; a crash before the rename leaves the old state, read again next time.
    fn migrate(&self, now: u64, reuse_after: u64) -> Result<Disk> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            CniError::io(format!("cannot {what} {}: {e}", p.display()))
        };
        let source = legacy::read(&self.dir, &self.network)?;
        let mem =
            Mem::from_records(source.records()).map_err(|e| legacy::corrupt(&self.dir, 0, e))?;
        let building = self.dir.path().join(BUILDING);
        match fs::remove_dir_all(&building) {
            Ok(()) => log::info!(
                "{}: left by an interrupted migration; removed",
                building.display()
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &building, e)),
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&building)
            .map_err(|e| io("create", &building, e))?;
        let new = |name: &str, text: &str, sync: bool| -> Result<()> {
            let p = building.join(name);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
                .map_err(|e| io("create", &p, e))?;
            f.write_all(text.as_bytes())
                .and_then(|_| if sync { f.sync_data() } else { Ok(()) })
                .map_err(|e| io("write", &p, e))
        };
        let mut index: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        let mut slots: Vec<(&IpAddr, &Slot)> = mem.slots.iter().collect();
        slots.sort_by_key(|(ip, _)| **ip);
        for (ip, slot) in slots {
            let line = match slot {
                Slot::Held {
                    container_id,
                    ifname,
                } => {
                    let e = Entry {
                        ip: *ip,
                        container_id: container_id.clone(),
                        ifname: ifname.clone(),
                    };
                    let line = e.line();
                    index.entry(ctr_name(container_id)).or_default().push(e);
                    line
                }
                Slot::Released(at) if pool::cooling(*at, now, reuse_after) => {
                    Record::Released { ip: *ip, at: *at }.to_line()
                }
                _ => continue,
            };
            new(&ip_name(*ip), &(line + "\n"), false)?;
        }
        for (name, entries) in &index {
            new(name, &index_text(entries), false)?;
        }
        for (set, ip) in &mem.cursors {
            let line = Record::Cursor { set: *set, ip: *ip }.to_line();
            new(&cursor_name(*set), &(line + "\n"), false)?;
        }
        new(MARKER, &marker(&self.network), true)?;
        let sync_dir = |p: &Path| {
            File::open(p)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("sync", p, e))
        };
        sync_dir(&building)?;
        let layout = self.path();
        fs::rename(&building, &layout).map_err(|e| io("rename", &building, e))?;
        sync_dir(self.dir.path())?;
        match &source {
            Source::V1(r) => {
                let (from, to) = (legacy::v1_path(&self.dir), self.dir.path().join(MIGRATED));
                fs::rename(&from, &to).map_err(|e| io("move aside", &from, e))?;
                log::info!(
                    "network {}: migrated {} records of {} to {}",
                    self.network,
                    r.len(),
                    from.display(),
                    layout.display()
                );
            }
            Source::HostLocal(r) => log::info!(
                "network {}: imported {} host-local records from {}",
                self.network,
                r.len(),
                self.dir.path().display()
            ),
            Source::Empty => {}
        }
        Ok(Disk { dir: layout })
    }
}

/// The layout's directory, read and written one small file at a time.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
}

impl Disk {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A file's bytes, `None` when it does not exist. Never follows a symlink or blocks.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let p = self.file(name);
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&p);
        let mut f = match f {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CniError::io(format!("cannot open {}: {e}", p.display()))),
        };
        let mut buf = Vec::with_capacity(256);
        f.read_to_end(&mut buf)
            .map_err(|e| CniError::io(format!("cannot read {}: {e}", p.display())))?;
        Ok(Some(buf))
    }

    /// Replaces a file: the temporary file, written whole, takes its name ([`replace`]).
    fn put(&self, name: &str, text: &str) -> Result<()> {
        let (tmp, p) = (self.file(TMP), self.file(name));
        let io = |e: std::io::Error| CniError::io(format!("cannot write {}: {e}", p.display()));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|_| replace(&tmp, &p));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<()> {
        let p = self.file(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::io(format!("cannot remove {}: {e}", p.display()))),
        }
    }

    /// The record of one address file's bytes.
    fn slot_of(ip: IpAddr, bytes: &[u8]) -> Slot {
        let text = std::str::from_utf8(bytes).unwrap_or("");
        let line = text.strip_suffix('\n').unwrap_or(text);
        match record::parse_line(line) {
            Ok(Line::Record(Record::Alloc {
                ip: i,
                container_id,
                ifname,
            })) if i == ip => Slot::Held {
                container_id: container_id.into_owned(),
                ifname: ifname.into_owned(),
            },
            Ok(Line::Record(Record::Released { ip: i, at })) if i == ip => Slot::Released(at),
            _ if bytes.is_empty() => Slot::Unreadable("empty".into()),
            _ => Slot::Unreadable(format!("{:?}", String::from_utf8_lossy(bytes))),
        }
    }

    /// The addresses `who` holds: its container's index bucket, each of its lines naming the
    /// container checked against the address's own record (the other lines are only
    /// checked for their shape), so a bucket costs little to pass. A bucket that is not
    /// whole is rebuilt from the address files (O(records), once: the next write stores it).
    pub fn held(&mut self, who: &Attachment) -> Result<Held> {
        let name = ctr_name(&who.container_id);
        let Some(bytes) = self.read(&name)? else {
            return Ok(Held::default());
        };
        let mut held = match String::from_utf8(bytes) {
            Ok(text) if is_whole(&text) => Held {
                text,
                bucket: Bucket::Whole,
                ..Held::default()
            },
            _ => self.rebuilt(&name)?,
        };
        if !self.find_mine(who, &mut held)? {
            held = self.rebuilt(&name)?;
            if !self.find_mine(who, &mut held)? {
                return Err(CniError::state(format!(
                    "{}: the index rebuilt from the address files does not parse",
                    self.file(&name).display()
                )));
            }
        }
        Ok(held)
    }

    /// A bucket's lines rebuilt from the address files.
    fn rebuilt(&mut self, name: &str) -> Result<Held> {
        let entries = self.rebuilt_index(name)?;
        Ok(Held {
            text: index_text(&entries),
            bucket: Bucket::Rebuilt,
            ..Held::default()
        })
    }

    /// Fills `held.mine` from `held.text`; false when a line is not of an allocation's shape
    /// or a line naming the container does not parse (the bucket is damaged). The other
    /// lines are parsed in full when the bucket is compacted.
    fn find_mine(&mut self, who: &Attachment, held: &mut Held) -> Result<bool> {
        let quoted = format!(
            "{},",
            serde_json::to_string(&who.container_id).expect("strings serialize")
        );
        held.mine.clear();
        for line in held.text.lines() {
            // `["a","<address>",<container ID>,...`: the address holds no quote, so the
            // container ID starts after the next one; a prefix compare, no search.
            let Some(rest) = line
                .strip_prefix(LINE_PREFIX)
                .filter(|_| line.ends_with("\"]"))
                .and_then(|r| r.split_once('"'))
            else {
                return Ok(false);
            };
            if !rest
                .1
                .strip_prefix(',')
                .is_some_and(|r| r.starts_with(&quoted))
            {
                continue;
            }
            let Some(e) = Entry::parse(line) else {
                return Ok(false);
            };
            // A line whose address was released (by a DEL) or handed out again no longer
            // counts.
            if e.is(who) && !held.mine.contains(&e.ip) && self.is_live(&e)? {
                held.mine.push(e.ip);
            }
        }
        Ok(true)
    }

    /// Every address with a file, in order, and the index files.
    fn list(&self) -> Result<(Vec<IpAddr>, Vec<String>)> {
        let list_err =
            |e: std::io::Error| CniError::io(format!("cannot list {}: {e}", self.dir.display()));
        let mut ips = Vec::new();
        let mut ctrs = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(list_err)? {
            let name = entry.map_err(list_err)?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(ip) = name
                .strip_prefix("ip-")
                .and_then(|s| s.parse::<IpAddr>().ok())
            {
                ips.push(canonical(ip));
            } else if name.starts_with("ctr-") {
                ctrs.push(name.to_string());
            }
        }
        ips.sort();
        Ok((ips, ctrs))
    }

    /// The lines of index file `bucket` as the address files say: every one read, O(records),
    /// once after a killed append or a power loss damaged the index (the next write of it
    /// stores them).
    fn rebuilt_index(&mut self, bucket: &str) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for ip in self.list()?.0 {
            if let Slot::Held {
                container_id,
                ifname,
            } = self.slot(ip)?
                && ctr_name(&container_id) == bucket
            {
                entries.push(Entry {
                    ip,
                    container_id,
                    ifname,
                });
            }
        }
        log::warn!(
            "{}: empty, torn or damaged (a killed append, a power loss); its {} lines rebuilt \
             from the address files",
            self.file(bucket).display(),
            entries.len()
        );
        Ok(entries)
    }

    /// Appends whole lines to an existing file in one `write` (a short one is an error: the
    /// torn tail is rebuilt by the next reader).
    fn append(&self, name: &str, text: &str) -> Result<()> {
        let p = self.file(name);
        let io = |e: std::io::Error| CniError::io(format!("cannot append to {}: {e}", p.display()));
        let mut f = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&p)
            .map_err(io)?;
        let n = f.write(text.as_bytes()).map_err(io)?;
        if n != text.len() {
            return Err(io(std::io::Error::new(
                ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", text.len()),
            )));
        }
        Ok(())
    }

    /// Whether an index line is true: its address's record holds it for that attachment.
    fn is_live(&mut self, e: &Entry) -> Result<bool> {
        Ok(match self.slot(e.ip)? {
            Slot::Held {
                container_id,
                ifname,
            } => container_id == e.container_id && ifname == e.ifname,
            _ => false,
        })
    }

    /// The bucket's live lines: every line checked against its address's record, each
    /// address once. `None` when a line does not parse (the bucket is damaged).
    fn compacted(&mut self, text: &str) -> Result<Option<Vec<Entry>>> {
        let mut live: Vec<Entry> = Vec::new();
        for line in text.lines() {
            let Some(e) = Entry::parse(line) else {
                return Ok(None);
            };
            if !live.iter().any(|l| l.ip == e.ip) && self.is_live(&e)? {
                live.push(e);
            }
        }
        Ok(Some(live))
    }

    /// Stores an attachment's new index lines: appended to a whole bucket, a new bucket
    /// written whole, a rebuilt one rewritten, one that would grow past
    /// [`INDEX_COMPACT_BYTES`] rewritten with its live lines only.
    fn index_add(&mut self, who: &Attachment, held: &Held, lines: &str) -> Result<()> {
        let name = ctr_name(&who.container_id);
        let grown = (held.text.len() + lines.len()) as u64 > INDEX_COMPACT_BYTES;
        match held.bucket {
            Bucket::Whole if !grown => return self.append(&name, lines),
            Bucket::Missing => return self.put(&name, lines),
            _ => {}
        }
        let kept = match held.bucket {
            Bucket::Whole => match self.compacted(&held.text)? {
                Some(live) => index_text(&live),
                None => index_text(&self.rebuilt_index(&name)?),
            },
            _ => held.text.clone(),
        };
        self.write_whole(&name, &(kept + lines))
    }

    /// An index bucket written whole; removed when it has no lines.
    fn write_whole(&self, name: &str, text: &str) -> Result<()> {
        if text.is_empty() {
            self.remove(name)
        } else {
            self.put(name, text)
        }
    }

    /// Records an ADD's new allocations: the index first (a line without its address
    /// record is ignored), then each address, then the cursors.
    pub fn allocate(&mut self, who: &Attachment, plan: &AddPlan, held: &Held) -> Result<()> {
        let new: Vec<(usize, IpAddr)> = plan.new_ones().collect();
        if new.is_empty() && held.bucket != Bucket::Rebuilt {
            return Ok(());
        }
        let entry = |ip: IpAddr| Entry {
            ip,
            container_id: who.container_id.clone(),
            ifname: who.ifname.clone(),
        };
        let mut lines = String::new();
        for (_, ip) in &new {
            lines += &entry(*ip).line();
            lines.push('\n');
        }
        self.index_add(who, held, &lines)?;
        for (_, ip) in &new {
            self.put(&ip_name(*ip), &(entry(*ip).line() + "\n"))?;
        }
        for (set, ip) in &new {
            let line = Record::Cursor { set: *set, ip: *ip }.to_line();
            self.put(&cursor_name(*set), &(line + "\n"))?;
        }
        Ok(())
    }

    /// DEL: each address the attachment holds starts its cool-down. The index keeps its
    /// lines (a line whose address is released no longer counts; compaction drops it), so
    /// a DEL rewrites no bucket, but for one it found damaged, stored as rebuilt.
    pub fn release(&mut self, who: &Attachment, held: &Held, now: u64) -> Result<()> {
        for ip in &held.mine {
            let line = Record::Released { ip: *ip, at: now }.to_line();
            self.put(&ip_name(*ip), &(line + "\n"))?;
        }
        if held.bucket != Bucket::Rebuilt {
            return Ok(());
        }
        let kept: String = held
            .text
            .lines()
            .filter(|l| Entry::parse(l).is_none_or(|e| !held.mine.contains(&e.ip)))
            .flat_map(|l| [l, "\n"])
            .collect();
        self.write_whole(&ctr_name(&who.container_id), &kept)
    }

    /// GC: every address record is read; allocations of attachments outside `valid` and
    /// unreadable records are released, cool-downs that are over dropped, and every index
    /// rebuilt from the address records. Returns the number released. O(records).
    pub fn gc(&mut self, valid: &ValidSet, now: u64, reuse_after: u64) -> Result<usize> {
        let (ips, ctrs) = self.list()?;
        let mut released = 0;
        let mut index: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for ip in ips {
            let slot = self.slot(ip)?;
            match pool::gc_action(&slot, valid, now, reuse_after) {
                GcAction::Release => {
                    if let Slot::Unreadable(why) = &slot {
                        log::warn!(
                            "{}: unreadable ({why}); released",
                            self.file(&ip_name(ip)).display()
                        );
                    }
                    let line = Record::Released { ip, at: now }.to_line();
                    self.put(&ip_name(ip), &(line + "\n"))?;
                    released += 1;
                }
                GcAction::Drop => self.remove(&ip_name(ip))?,
                GcAction::Keep => {
                    if let Slot::Held {
                        container_id,
                        ifname,
                    } = slot
                    {
                        index
                            .entry(ctr_name(&container_id))
                            .or_default()
                            .push(Entry {
                                ip,
                                container_id,
                                ifname,
                            });
                    }
                }
            }
        }
        for name in ctrs {
            if !index.contains_key(&name) {
                self.remove(&name)?;
            }
        }
        for (name, entries) in &index {
            let text = index_text(entries);
            if self.read(name)?.as_deref() != Some(text.as_bytes()) {
                self.put(name, &text)?;
            }
        }
        Ok(released)
    }
}

impl View for Disk {
    fn slot(&mut self, ip: IpAddr) -> Result<Slot> {
        Ok(match self.read(&ip_name(ip))? {
            None => Slot::Free,
            Some(bytes) => Disk::slot_of(ip, &bytes),
        })
    }

    fn cursor(&mut self, set: usize) -> Result<Option<IpAddr>> {
        let Some(bytes) = self.read(&cursor_name(set))? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&bytes).unwrap_or("");
        match record::parse_line(text.strip_suffix('\n').unwrap_or(text)) {
            Ok(Line::Record(Record::Cursor { set: s, ip })) if s == set => Ok(Some(ip)),
            // A cursor lost to a power loss only restarts the round robin.
            _ => Ok(None),
        }
    }
}
