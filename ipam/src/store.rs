//! The state of one network on disk: `<dataDir>/<network>/tombstone-ipam.json` (format in
//! [`crate::record`]) beside host-local's own files, locked by `tombstone-ipam.lock`,
//! replaced atomically through the shared [`StateDir`]: write a temporary file, one
//! `fdatasync` of it, rename. The directory is not synced (see [`StateDir::write`]: a power
//! loss may lose the last change, never leave a torn or empty state). Records stream in and out: a /16 full of allocations is never held
//! in memory whole. On first use, host-local's files in the same directory are imported.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use tombstone_cni::state::{Lock, StateDir};
use tombstone_cni::{CniError, Result};

use crate::import;
use crate::pool::{Edit, Scan};
use crate::record::{self, CLOSING, Line, Record};

/// The stem of our files; host-local's are named by address, `last_reserved_ip.N`, `lock`.
pub const STEM: &str = "tombstone-ipam";

/// Where the records of this invocation came from.
#[derive(Debug)]
pub enum Source {
    /// No state and nothing to import.
    Empty,
    /// Our state file.
    File,
    /// host-local's files, imported now; written out by the next commit.
    Imported(Vec<Record<'static>>),
}

#[derive(Debug)]
pub struct Store {
    dir: StateDir,
    network: String,
}

impl Store {
    /// The network's directory under `data_dir` (created 0700 when missing).
    pub fn open(data_dir: &Path, network: &str) -> Result<Store> {
        Ok(Store {
            dir: StateDir::open(data_dir.join(network))?,
            network: network.to_string(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join(format!("{STEM}.json"))
    }

    /// Serialises invocations for this network.
    pub fn lock(&self) -> Result<Lock> {
        self.dir.lock(STEM)
    }

    /// STATUS's check that a write could succeed.
    pub fn probe(&self) -> Result<()> {
        self.dir.probe()
    }

    fn corrupt(&self, line: usize, why: impl std::fmt::Display) -> CniError {
        CniError::state(format!(
            "state file {} is unusable (line {line}): {why}",
            self.path().display()
        ))
        .with_details(
            "tombstone-ipam never resets a damaged state, which could hand out addresses in \
             use; inspect or restore the file (moving it aside makes the next call start \
             over from host-local's files in that directory, if any)",
        )
    }

    /// Feeds every record to `scan` (call with the lock held).
    pub fn load(&self, scan: &mut Scan) -> Result<Source> {
        let source = match self.dir.open_record(STEM)? {
            Some(f) => {
                self.stream(f, |r, _| scan.feed(r))?;
                Source::File
            }
            None => {
                let records = self.import()?;
                for r in &records {
                    scan.feed(r);
                }
                if records.is_empty() {
                    Source::Empty
                } else {
                    log::info!(
                        "network {}: imported {} host-local records from {}",
                        self.network,
                        records.len(),
                        self.dir.path().display()
                    );
                    Source::Imported(records)
                }
            }
        };
        scan.finish().map_err(|why| self.corrupt(0, why))?;
        Ok(source)
    }

    /// Reads a state file line by line, checking the header, every record and the trailer.
    /// `each` gets the record and its line (without separator).
    fn stream(&self, f: File, mut each: impl FnMut(&Record<'_>, &str)) -> Result<()> {
        let mut r = BufReader::with_capacity(64 << 10, f);
        let mut buf = Vec::with_capacity(256);
        let mut n = 0usize;
        let mut count = 0usize;
        let mut ended = false;
        loop {
            buf.clear();
            let len = r
                .read_until(b'\n', &mut buf)
                .map_err(|e| CniError::io(format!("cannot read {}: {e}", self.path().display())))?;
            if len == 0 {
                return Err(self.corrupt(n, "the file ends early (truncated)"));
            }
            n += 1;
            let text = std::str::from_utf8(&buf).map_err(|_| self.corrupt(n, "not UTF-8"))?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            if n == 1 {
                record::check_header(text, &self.network).map_err(|e| self.corrupt(n, e))?;
                continue;
            }
            if ended {
                if text != CLOSING {
                    return Err(self.corrupt(n, "unexpected content after the end record"));
                }
                let mut rest = [0u8; 1];
                return match r.read(&mut rest) {
                    Ok(0) => Ok(()),
                    _ => Err(self.corrupt(n + 1, "unexpected content after the end")),
                };
            }
            match record::parse_line(text).map_err(|e| self.corrupt(n, e))? {
                Line::Record(rec) => {
                    count += 1;
                    each(&rec, text.strip_suffix(',').unwrap_or(text));
                }
                Line::End(k) if k == count => ended = true,
                Line::End(k) => {
                    return Err(
                        self.corrupt(n, format!("{count} records, but the end record says {k}"))
                    );
                }
            }
        }
    }

    /// host-local's files for this network, under host-local's own lock.
    fn import(&self) -> Result<Vec<Record<'static>>> {
        let dir = self.dir.path();
        let _host_local_lock = match File::open(dir.join("lock")) {
            Ok(f) => {
                f.lock().map_err(|e| {
                    CniError::io(format!(
                        "cannot take host-local's lock in {}: {e}",
                        dir.display()
                    ))
                })?;
                Some(f)
            }
            Err(_) => None,
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| CniError::io(format!("cannot list {}: {e}", dir.display())))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| CniError::io(format!("cannot list {}: {e}", dir.display())))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            // Regular files only: a symlink is never followed.
            if !import::is_candidate(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let mut content = String::new();
            let read =
                File::open(entry.path()).and_then(|f| f.take(4096).read_to_string(&mut content));
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

    /// Writes the edited state (only when something changed, or to persist an import).
    pub fn commit(&self, source: &Source, edit: &Edit) -> Result<()> {
        if edit.is_empty() && !matches!(source, Source::Imported(_)) {
            return Ok(());
        }
        let existing = match source {
            Source::File => self.dir.open_record(STEM)?,
            _ => None,
        };
        let mut failure: Option<CniError> = None;
        let written = self.dir.write_with(STEM, true, |w| {
            writeln!(w, "{}", record::header(&self.network))?;
            let mut count = 0usize;
            let mut io_err: Option<std::io::Error> = None;
            let mut emit = |w: &mut dyn Write, line: &str| {
                if io_err.is_none()
                    && let Err(e) = w
                        .write_all(line.as_bytes())
                        .and_then(|_| w.write_all(b",\n"))
                {
                    io_err = Some(e);
                }
                count += 1;
            };
            match (source, existing) {
                (Source::File, Some(f)) => {
                    if let Err(e) = self.stream(f, |r, line| {
                        if edit.keeps(r) {
                            emit(w, line);
                        }
                    }) {
                        failure = Some(e);
                        return Err(std::io::Error::other("state changed while rewriting"));
                    }
                }
                (Source::Imported(records), _) => {
                    for r in records.iter().filter(|r| edit.keeps(r)) {
                        emit(w, &r.to_line());
                    }
                }
                _ => {}
            }
            for r in edit.appended() {
                emit(w, &r.to_line());
            }
            if let Some(e) = io_err {
                return Err(e);
            }
            writeln!(w, "{}", record::trailer(count))?;
            writeln!(w, "{CLOSING}")
        });
        match (written, failure) {
            (_, Some(e)) => Err(e),
            (r, None) => r,
        }
    }
}
