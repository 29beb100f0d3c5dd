//! State files: one directory (0700), files (0600) opened without following symlinks, a lock
//! file per record serialising concurrent invocations (`flock` through `std::fs::File::lock`),
//! and atomic replacement (write a temporary file, optionally fsync, rename).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cni::{CniError, Result};

/// A directory of state records, each named by a validated file-name stem.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

/// Holds a record's lock until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl StateDir {
    /// Opens the directory, creating it (and its parents) 0700 if needed. A path that exists
    /// but is not a directory, or is a symlink, is an I/O error (code 5).
    pub fn open(path: impl Into<PathBuf>) -> Result<StateDir> {
        let path = path.into();
        if !path.is_absolute() {
            return Err(CniError::config(format!(
                "state directory {path:?} is not absolute"
            )));
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(CniError::io(format!(
                    "state directory {} is not a directory",
                    path.display()
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&path)
                    .map_err(|e| {
                        CniError::io(format!(
                            "cannot create state directory {}: {e}",
                            path.display()
                        ))
                    })?;
            }
            Err(e) => {
                return Err(CniError::io(format!(
                    "state directory {}: {e}",
                    path.display()
                )));
            }
        }
        Ok(StateDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, stem: &str, suffix: &str) -> Result<PathBuf> {
        check_stem(stem)?;
        Ok(self.path.join(format!("{stem}{suffix}")))
    }

    fn lock_file(&self, stem: &str) -> Result<(PathBuf, File)> {
        let path = self.file(stem, ".lock")?;
        let file = open_nofollow(&path, true)
            .map_err(|e| CniError::io(format!("cannot open lock {}: {e}", path.display())))?;
        Ok((path, file))
    }

    /// Takes the exclusive lock of record `stem`, waiting for other holders.
    pub fn lock(&self, stem: &str) -> Result<Lock> {
        let (path, file) = self.lock_file(stem)?;
        file.lock()
            .map_err(|e| CniError::io(format!("cannot lock {}: {e}", path.display())))?;
        Ok(Lock { _file: file })
    }

    /// Takes the exclusive lock of record `stem` if nobody holds it; `None` when held.
    pub fn try_lock(&self, stem: &str) -> Result<Option<Lock>> {
        let (path, file) = self.lock_file(stem)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(CniError::io(format!("cannot lock {}: {e}", path.display())))
            }
        }
    }

    /// The record's bytes, or `None` when it does not exist yet.
    pub fn read(&self, stem: &str) -> Result<Option<Vec<u8>>> {
        let path = self.file(stem, ".json")?;
        match open_nofollow(&path, false) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)
                    .map_err(|e| CniError::io(format!("cannot read {}: {e}", path.display())))?;
                Ok(Some(buf))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CniError::io(format!("cannot open {}: {e}", path.display()))),
        }
    }

    /// The record opened for streaming reads (no symlinks followed), or `None` when it does
    /// not exist yet. For records too large to read whole.
    pub fn open_record(&self, stem: &str) -> Result<Option<File>> {
        let path = self.file(stem, ".json")?;
        match open_nofollow(&path, false) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CniError::io(format!("cannot open {}: {e}", path.display()))),
        }
    }

    /// Replaces the record atomically. `durable` adds an fdatasync of the new file before the
    /// rename, so a power loss leaves the old record or the new one, never an empty or torn
    /// one (not needed on tmpfs). The directory is not synced: after a power loss the
    /// rename itself may be lost, leaving the previous record, which describes a node whose
    /// pods all ended with the power anyway; a state that cannot be read would stop every
    /// pod start, a state one change old stops none.
    pub fn write(&self, stem: &str, bytes: &[u8], durable: bool) -> Result<()> {
        self.write_with(stem, durable, |w| w.write_all(bytes))
    }

    /// Like [`StateDir::write`], but the content is streamed by `fill` (through a buffer),
    /// so a large record is never held in memory twice. An error from `fill` leaves the
    /// old record in place.
    pub fn write_with(
        &self,
        stem: &str,
        durable: bool,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let path = self.file(stem, ".json")?;
        let tmp = self.file(stem, &format!(".json.tmp{}", std::process::id()))?;
        let io = |what: &str, e: std::io::Error| {
            CniError::io(format!("cannot {what} {}: {e}", path.display()))
        };
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| io("create temporary file for", e))?;
        let written = {
            let mut buffered = std::io::BufWriter::with_capacity(64 << 10, &mut f);
            fill(&mut buffered).and_then(|_| buffered.flush())
        }
        .and_then(|_| if durable { f.sync_data() } else { Ok(()) });
        if let Err(e) = written.and_then(|_| fs::rename(&tmp, &path)) {
            let _ = fs::remove_file(&tmp);
            return Err(io("write", e));
        }
        Ok(())
    }

    /// Moves a record aside (kept for inspection, never read again) and returns the new name.
    pub fn quarantine(&self, stem: &str, tag: &str) -> Result<PathBuf> {
        let path = self.file(stem, ".json")?;
        let aside = self.file(stem, &format!(".json.corrupt-{tag}"))?;
        fs::rename(&path, &aside)
            .map_err(|e| CniError::io(format!("cannot move {}: {e}", path.display())))?;
        Ok(aside)
    }

    /// The stems of every record in the directory.
    pub fn records(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.path)
            .map_err(|e| CniError::io(format!("cannot list {}: {e}", self.path.display())))?;
        for entry in entries.flatten() {
            if let Some(stem) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                && check_stem(stem).is_ok()
            {
                out.push(stem.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Checks the directory is writable (STATUS): creates and removes a probe file.
    pub fn probe(&self) -> Result<()> {
        let probe = self.file("status-probe", &format!(".{}", std::process::id()))?;
        open_nofollow(&probe, true)
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|e| {
                CniError::io(format!(
                    "state directory {} is not writable: {e}",
                    self.path.display()
                ))
            })
    }
}

fn open_nofollow(path: &Path, create: bool) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    if create {
        // An existing file keeps its mode; tighten it if someone loosened it.
        let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
    }
    Ok(f)
}

/// A record stem: `[A-Za-z0-9._%-]`, not starting with `.`, at most 200 bytes.
fn check_stem(stem: &str) -> Result<()> {
    let ok = !stem.is_empty()
        && stem.len() <= 200
        && !stem.starts_with('.')
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CniError::state(format!(
            "invalid state record name {stem:?}"
        )))
    }
}

/// Encodes any string (a network name) into a record stem: bytes outside `[A-Za-z0-9_-]`
/// become `%XX`, so two names never share a file and none escapes the directory.
pub fn encode_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_stem`] (for listings).
pub fn decode_stem(stem: &str) -> String {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&stem[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ts-state-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn encoding_is_reversible_and_safe() {
        for name in ["pods", "a.b", "../etc/passwd", "x%41", "ünï", ".hidden"] {
            let stem = encode_stem(name);
            assert!(check_stem(&stem).is_ok(), "{stem}");
            assert!(!stem.contains('/') && !stem.starts_with('.'));
            assert_eq!(decode_stem(&stem), name);
        }
        assert_ne!(encode_stem("a.b"), encode_stem("a%2Eb"));
    }

    #[test]
    fn write_read_lock_and_modes() {
        let d = tmpdir();
        let s = StateDir::open(d.join("deep/er")).unwrap();
        assert_eq!(
            fs::metadata(s.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(s.read("net").unwrap(), None);
        let _l = s.lock("net").unwrap();
        // flock belongs to the open file: a second opening conflicts, even in this process.
        assert!(
            s.try_lock("net").unwrap().is_none(),
            "a held lock is reported as held"
        );
        let other = s.try_lock("other").unwrap().expect("a free lock is taken");
        drop(other);
        assert!(
            s.try_lock("other").unwrap().is_some(),
            "dropping releases it"
        );
        s.write("net", b"{}", true).unwrap();
        s.write("net", b"{\"a\":1}", false).unwrap();
        assert_eq!(s.read("net").unwrap().unwrap(), b"{\"a\":1}");
        let m = fs::metadata(s.path().join("net.json")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(s.records().unwrap(), vec!["net"]);
        assert!(s.read("../x").is_err());
        s.probe().unwrap();
        let aside = s.quarantine("net", "1").unwrap();
        assert!(aside.exists());
        assert_eq!(s.read("net").unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinks_are_not_followed() {
        let d = tmpdir();
        let s = StateDir::open(&d).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.join("evil.json")).unwrap();
        assert_eq!(s.read("evil").unwrap_err().code, 5);
        assert!(StateDir::open(d.join("evil.json")).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
