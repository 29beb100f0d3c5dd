//! What the state was before this layout, read once to migrate it: the state file of format
//! version 1 (`<network>/tombstone-ipam.json`, format in [`crate::record`]), or, when there
//! is none, host-local's files in the same directory (contents in [`crate::import`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use tombstone_cni::state::StateDir;
use tombstone_cni::{CniError, Result};

use crate::import;
use crate::record::{self, CLOSING, Line, Record};
use crate::store::STEM;

/// Where the records came from.
#[derive(Debug)]
pub enum Source {
    /// No state and nothing to import.
    Empty,
    /// Our state file of format version 1.
    V1(Vec<Record<'static>>),
    /// host-local's files.
    HostLocal(Vec<Record<'static>>),
}

impl Source {
    pub fn records(&self) -> &[Record<'static>] {
        match self {
            Source::Empty => &[],
            Source::V1(r) | Source::HostLocal(r) => r,
        }
    }
}

/// The version 1 state file of a network directory.
pub fn v1_path(dir: &StateDir) -> PathBuf {
    dir.path().join(format!("{STEM}.json"))
}

/// The error of an unusable version 1 state file (or of a duplicate found in it).
pub fn corrupt(dir: &StateDir, line: usize, why: impl std::fmt::Display) -> CniError {
    CniError::state(format!(
        "state file {} is unusable (line {line}): {why}",
        v1_path(dir).display()
    ))
    .with_details(
        "tombstone-ipam never resets a damaged state, which could hand out addresses in \
         use; inspect or restore the file (moving it aside makes the next call start \
         over from host-local's files in that directory, if any)",
    )
}

/// Reads what there is (call with the network's lock held).
pub fn read(dir: &StateDir, network: &str) -> Result<Source> {
    if let Some(f) = dir.open_record(STEM)? {
        let mut out = Vec::new();
        stream(dir, network, f, |r| out.push(owned(r)))?;
        return Ok(Source::V1(out));
    }
    let records = host_local(dir)?;
    Ok(if records.is_empty() {
        Source::Empty
    } else {
        Source::HostLocal(records)
    })
}

fn owned(r: &Record<'_>) -> Record<'static> {
    match r {
        Record::Alloc {
            ip,
            container_id,
            ifname,
        } => Record::Alloc {
            ip: *ip,
            container_id: container_id.to_string().into(),
            ifname: ifname.to_string().into(),
        },
        Record::Released { ip, at } => Record::Released { ip: *ip, at: *at },
        Record::Cursor { set, ip } => Record::Cursor { set: *set, ip: *ip },
    }
}

/// Reads a version 1 state file line by line, checking the header (a newer version is
/// refused), every record and the trailer.
pub fn stream(
    dir: &StateDir,
    network: &str,
    f: File,
    mut each: impl FnMut(&Record<'_>),
) -> Result<()> {
    let bad = |n: usize, why: &dyn std::fmt::Display| corrupt(dir, n, why);
    let mut r = BufReader::with_capacity(64 << 10, f);
    let mut buf = Vec::with_capacity(256);
    let mut n = 0usize;
    let mut count = 0usize;
    let mut ended = false;
    loop {
        buf.clear();
        let len = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| CniError::io(format!("cannot read {}: {e}", v1_path(dir).display())))?;
        if len == 0 {
            return Err(bad(n, &"the file ends early (truncated)"));
        }
        n += 1;
        let text = std::str::from_utf8(&buf).map_err(|_| bad(n, &"not UTF-8"))?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        if n == 1 {
            record::check_header(text, network).map_err(|e| bad(n, &e))?;
            continue;
        }
        if ended {
            if text != CLOSING {
                return Err(bad(n, &"unexpected content after the end record"));
            }
            let mut rest = [0u8; 1];
            return match r.read(&mut rest) {
                Ok(0) => Ok(()),
                _ => Err(bad(n + 1, &"unexpected content after the end")),
            };
        }
        match record::parse_line(text).map_err(|e| bad(n, &e))? {
            Line::Record(rec) => {
                count += 1;
                each(&rec);
            }
            Line::End(k) if k == count => ended = true,
            Line::End(k) => {
                return Err(bad(
                    n,
                    &format!("{count} records, but the end record says {k}"),
                ));
            }
        }
    }
}

/// host-local's files for this network, under host-local's own lock.
fn host_local(dir: &StateDir) -> Result<Vec<Record<'static>>> {
    let path = dir.path();
    let _host_local_lock = match File::open(path.join("lock")) {
        Ok(f) => {
            f.lock().map_err(|e| {
                CniError::io(format!(
                    "cannot take host-local's lock in {}: {e}",
                    path.display()
                ))
            })?;
            Some(f)
        }
        Err(_) => None,
    };
    let list_err = |e: std::io::Error| CniError::io(format!("cannot list {}: {e}", path.display()));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // Regular files only: a symlink is never followed.
        if !import::is_candidate(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let mut content = String::new();
        let read = File::open(entry.path()).and_then(|f| f.take(4096).read_to_string(&mut content));
        if let Err(e) = read {
            return Err(CniError::io(format!(
                "cannot import host-local's {}: {e}",
                entry.path().display()
            )));
        }
        if let Some(r) = import::entry(&name, &content) {
            out.push(r);
        }
    }
    // Cursors last, in set order, so a later cursor record wins consistently.
    out.sort_by_key(|r| matches!(r, Record::Cursor { .. }));
    Ok(out)
}
