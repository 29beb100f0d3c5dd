//! State files: one directory (0700, ours, never a symlink), files (0600, ours, regular,
//! opened without following symlinks or blocking), a lock file per record serialising
//! concurrent invocations (`flock` through `std::fs::File`), a directory-wide lock that a
//! sweep takes alone and every other writer shares, and atomic replacement (write a
//! temporary file, optionally fsync, rename; or [`replace`], which never renames over). A
//! directory of many records read or removed in one pass is pinned: opened once, its records
//! are reached from its descriptor.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::{CniError, Result};

/// A directory of state records, each named by a validated file-name stem.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
    /// The directory's descriptor when pinned ([`StateDir::pinned`]): records are read and
    /// removed relative to it, with no path walked per record.
    fd: Option<Arc<OwnedFd>>,
}

/// What a directory holds: the stems of its records and of the temporary files that
/// interrupted writes left, in the directory's order.
#[derive(Debug, Default)]
pub struct Listing {
    pub records: Vec<String>,
    pub temps: Vec<String>,
}

/// A record as found on disk.
#[derive(Debug)]
pub enum Record {
    Missing,
    Bytes(Vec<u8>),
    /// Something that is not a regular file of ours stands where the record goes.
    Foreign(String),
}

/// Holds a lock until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// The stem of the directory-wide lock. Record stems never contain `.` (it is
/// percent-encoded), so this cannot be a record's.
const DIR_LOCK: &str = "state.dir";
/// The longest text a link record takes ([`StateDir::write_link`]); longer ones are files.
pub const MAX_LINK: usize = 1024;
/// The suffix of a record's temporary file while it is being replaced.
const TMP: &str = ".json.tmp";

/// The path spelled without `.` components or a trailing slash; `..` is refused, so that
/// the checks below apply to the directory that is really used.
pub fn normalize(path: &Path) -> Result<PathBuf> {
    if !path.is_absolute() {
        return Err(CniError::config(format!(
            "state directory {path:?} is not absolute"
        )));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(CniError::config(format!(
                    "state directory {path:?} must not contain `..`"
                )));
            }
        }
    }
    Ok(out)
}

fn euid() -> u32 {
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| nix::unistd::Uid::effective().as_raw())
}

/// Checks an existing directory: a real directory (not a symlink), owned by us; a mode
/// looser than 0700 is tightened (and said), since others could otherwise plant records.
fn check_dir(path: &Path, m: &fs::Metadata) -> Result<()> {
    if !m.file_type().is_dir() {
        return Err(CniError::io(format!(
            "state directory {} is not a directory{}",
            path.display(),
            if m.file_type().is_symlink() {
                " (a symlink is not followed)"
            } else {
                ""
            }
        )));
    }
    if m.uid() != euid() {
        return Err(CniError::io(format!(
            "state directory {} belongs to uid {}, not to this process (uid {})",
            path.display(),
            m.uid(),
            euid()
        )));
    }
    if m.mode() & 0o077 != 0 {
        log::warn!(
            "state directory {} had mode {:o}; tightened to 700",
            path.display(),
            m.mode() & 0o7777
        );
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| CniError::io(format!("cannot tighten {}: {e}", path.display())))?;
    }
    Ok(())
}

impl StateDir {
    /// Opens the directory, creating it (and its parents) 0700 if needed. An existing one
    /// must be a directory of ours (see [`check_dir`]); anything else is an I/O error.
    pub fn open(path: impl AsRef<Path>) -> Result<StateDir> {
        let path = normalize(path.as_ref())?;
        match fs::symlink_metadata(&path) {
            Ok(m) => check_dir(&path, &m)?,
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
                let m = fs::symlink_metadata(&path).map_err(|e| {
                    CniError::io(format!("state directory {}: {e}", path.display()))
                })?;
                check_dir(&path, &m)?;
            }
            Err(e) => {
                return Err(CniError::io(format!(
                    "state directory {}: {e}",
                    path.display()
                )));
            }
        }
        Ok(StateDir { path, fd: None })
    }

    /// The directory if it exists (checked as [`StateDir::open`] does), `None` if it does
    /// not; never creates anything.
    pub fn existing(path: impl AsRef<Path>) -> Result<Option<StateDir>> {
        let path = normalize(path.as_ref())?;
        match fs::symlink_metadata(&path) {
            Ok(m) => {
                check_dir(&path, &m)?;
                Ok(Some(StateDir { path, fd: None }))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CniError::io(format!(
                "state directory {}: {e}",
                path.display()
            ))),
        }
    }

    /// Whether the directory could serve a request, changing nothing (STATUS): it exists
    /// and is ours and writable, or its nearest existing ancestor is a writable directory.
    pub fn usable(path: impl AsRef<Path>) -> Result<()> {
        use nix::unistd::{AccessFlags, access};
        let path = normalize(path.as_ref())?;
        let mut probe = path.as_path();
        loop {
            match fs::symlink_metadata(probe) {
                Ok(m) => {
                    if probe == path {
                        if !m.file_type().is_dir() || m.uid() != euid() {
                            return Err(CniError::io(format!(
                                "state directory {} is not a directory of this process's user",
                                path.display()
                            )));
                        }
                    } else if !m.file_type().is_dir() {
                        return Err(CniError::io(format!(
                            "cannot create state directory {}: {} is not a directory",
                            path.display(),
                            probe.display()
                        )));
                    }
                    return access(probe, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
                        CniError::io(format!(
                            "state directory {}: {} is not writable: {e}",
                            path.display(),
                            probe.display()
                        ))
                    });
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    probe = probe.parent().unwrap_or(Path::new("/"));
                }
                Err(e) => {
                    return Err(CniError::io(format!(
                        "state directory {}: {e}",
                        path.display()
                    )));
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`StateDir::usable`] for this directory (STATUS): changes nothing.
    pub fn probe(&self) -> Result<()> {
        Self::usable(&self.path)
    }

    /// The same directory, opened once (never through a symlink): for a pass that reads or
    /// removes many of its records.
    pub fn pinned(&self) -> Result<StateDir> {
        if self.fd.is_some() {
            return Ok(self.clone());
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(AT_FDCWD, &self.path, flags, Mode::empty()).map_err(|e| {
            CniError::io(format!(
                "cannot open state directory {}: {e}",
                self.path.display()
            ))
        })?;
        Ok(StateDir {
            path: self.path.clone(),
            fd: Some(Arc::new(fd)),
        })
    }

    fn file(&self, stem: &str, suffix: &str) -> Result<PathBuf> {
        Ok(self.path.join(name(stem, suffix)?))
    }

    /// Where a record's file is reached from: the pinned directory's descriptor and the
    /// file's name, or else its whole path.
    fn at(&self, stem: &str, suffix: &str) -> Result<(BorrowedFd<'_>, PathBuf)> {
        match &self.fd {
            Some(fd) => Ok((fd.as_fd(), name(stem, suffix)?.into())),
            None => Ok((AT_FDCWD, self.file(stem, suffix)?)),
        }
    }

    /// The whole path of what [`StateDir::at`] names (for messages).
    fn shown(&self, name: &Path) -> PathBuf {
        self.path.join(name)
    }

    /// Opens (creating) a lock file. One that is not a regular file of ours (a FIFO, a
    /// device, another user's) is removed and made anew: nobody can hold a lock on it.
    fn lock_file(&self, stem: &str) -> Result<(PathBuf, File)> {
        let path = self.file(stem, ".lock")?;
        for _ in 0..2 {
            let file = open_nofollow(&path, true)
                .map_err(|e| CniError::io(format!("cannot open lock {}: {e}", path.display())))?;
            if is_ours(&file).map_err(|e| CniError::io(format!("lock {}: {e}", path.display())))? {
                return Ok((path, file));
            }
            log::warn!("{} is not a regular file of ours; replaced", path.display());
            fs::remove_file(&path)
                .map_err(|e| CniError::io(format!("cannot remove {}: {e}", path.display())))?;
        }
        Err(CniError::io(format!(
            "lock {} keeps being replaced by something else",
            path.display()
        )))
    }

    /// Takes the exclusive lock of record `stem`, waiting for other holders. A temporary
    /// file a killed writer left behind is removed.
    pub fn lock(&self, stem: &str) -> Result<Lock> {
        let (path, file) = self.lock_file(stem)?;
        file.lock()
            .map_err(|e| CniError::io(format!("cannot lock {}: {e}", path.display())))?;
        self.remove_temp(stem)?;
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

    /// The directory-wide lock, shared: held by every invocation that changes records
    /// under their own locks, so that [`StateDir::lock_all`] waits for them.
    pub fn lock_shared(&self) -> Result<Lock> {
        let (path, file) = self.lock_file(DIR_LOCK)?;
        file.lock_shared()
            .map_err(|e| CniError::io(format!("cannot lock {}: {e}", path.display())))?;
        Ok(Lock { _file: file })
    }

    /// The directory-wide lock, exclusive: while it is held no other invocation holds any
    /// record lock, so every record may be read and written without taking its own (one
    /// open file at a time, however many records), and two holders can never deadlock.
    pub fn lock_all(&self) -> Result<Lock> {
        let (path, file) = self.lock_file(DIR_LOCK)?;
        file.lock()
            .map_err(|e| CniError::io(format!("cannot lock {}: {e}", path.display())))?;
        Ok(Lock { _file: file })
    }

    fn remove_temp(&self, stem: &str) -> Result<()> {
        let tmp = self.file(stem, TMP)?;
        match fs::remove_file(&tmp) {
            Ok(()) => {
                log::info!("{}: left by an interrupted write; removed", tmp.display());
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::io(format!(
                "cannot remove {}: {e}",
                tmp.display()
            ))),
        }
    }

    /// The record's bytes, or `None` when it does not exist yet. A record that is not a
    /// regular file of ours is an error that names it.
    pub fn read(&self, stem: &str) -> Result<Option<Vec<u8>>> {
        match self.read_record(stem)? {
            Record::Missing => Ok(None),
            Record::Bytes(b) => Ok(Some(b)),
            Record::Foreign(why) => {
                Err(CniError::io(why)
                    .with_details("move it away; it was not written by this plugin"))
            }
        }
    }

    /// The record, telling apart one that is not a regular file of ours (never read:
    /// a FIFO would block, another user's file may be forged).
    pub fn read_record(&self, stem: &str) -> Result<Record> {
        let (at, name) = self.at(stem, ".json")?;
        // Never wait on what the name is (a FIFO opened for reading would block). Reading
        // leaves the access time alone (one inode write less per record); a file that is
        // not ours refuses that flag, and is opened without it to be told apart below.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let opened = match openat(at, &name, flags | OFlag::O_NOATIME, Mode::empty()) {
            Err(nix::errno::Errno::EPERM) => openat(at, &name, flags, Mode::empty()),
            other => other,
        };
        let mut f = match opened {
            Ok(fd) => File::from(fd),
            Err(nix::errno::Errno::ENOENT) => return Ok(Record::Missing),
            Err(nix::errno::Errno::ELOOP) => {
                let path = self.shown(&name);
                return Ok(Record::Foreign(format!("{} is a symlink", path.display())));
            }
            Err(e) => {
                let (path, e) = (self.shown(&name), std::io::Error::from(e));
                return Err(CniError::io(format!("cannot open {}: {e}", path.display())));
            }
        };
        let path = || self.shown(&name);
        let size = match f.metadata() {
            Ok(m) if m.file_type().is_file() && m.uid() == euid() => m.len() as usize,
            Ok(_) => {
                return Ok(Record::Foreign(format!(
                    "{} is not a regular file of this process's user",
                    path().display()
                )));
            }
            Err(e) => {
                return Err(CniError::io(format!(
                    "cannot inspect {}: {e}",
                    path().display()
                )));
            }
        };
        // Records are replaced, never written in place: the size found is the size to
        // read, in one read as a rule.
        let mut buf = vec![0; size];
        let mut got = 0;
        while got < size {
            match f.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(CniError::io(format!(
                        "cannot read {}: {e}",
                        path().display()
                    )));
                }
            }
        }
        buf.truncate(got);
        Ok(Record::Bytes(buf))
    }

    /// A link record ([`StateDir::write_link`]): the target of the symbolic link at the
    /// record's name, read in one call and never followed. A regular file there (what an
    /// older format wrote) is read as [`StateDir::read_record`] reads it, and anything else
    /// is told apart as it tells it apart.
    pub fn read_link(&self, stem: &str) -> Result<Record> {
        let (at, name) = self.at(stem, ".json")?;
        match nix::fcntl::readlinkat(at, &name) {
            Ok(text) => Ok(Record::Bytes(std::os::unix::ffi::OsStringExt::into_vec(
                text,
            ))),
            Err(nix::errno::Errno::ENOENT) => Ok(Record::Missing),
            // Not a symbolic link.
            Err(nix::errno::Errno::EINVAL) => self.read_record(stem),
            Err(e) => {
                let (path, e) = (self.shown(&name), std::io::Error::from(e));
                Err(CniError::io(format!("cannot read {}: {e}", path.display())))
            }
        }
    }

    /// Replaces a record with a link record: a symbolic link whose target is `text` (short,
    /// no NUL byte), made under the temporary name and then given the record's, so a killed
    /// writer leaves the old record or the new one. A link is written, read and removed in
    /// one call each, and a short one keeps its text in its inode: no data block or page
    /// is allocated or freed, which a directory of thousands of entries read and removed at
    /// once (a sweep) pays for per file otherwise. It is never followed (its target names
    /// nothing); the directory being ours and 0700 is what vouches for it.
    pub fn write_link(&self, stem: &str, text: &[u8]) -> Result<()> {
        let path = self.file(stem, ".json")?;
        if text.is_empty() || text.len() > MAX_LINK || text.contains(&0) {
            return Err(CniError::state(format!(
                "record {} cannot be a link ({} bytes)",
                path.display(),
                text.len()
            )));
        }
        let tmp = self.file(stem, TMP)?;
        self.remove_temp(stem)?;
        let target = std::ffi::OsStr::from_bytes(text);
        if let Err(e) = std::os::unix::fs::symlink(target, &tmp).and_then(|_| replace(&tmp, &path))
        {
            let _ = fs::remove_file(&tmp);
            return Err(CniError::io(format!(
                "cannot write {}: {e}",
                path.display()
            )));
        }
        Ok(())
    }

    /// The record opened for streaming reads (no symlinks followed, never blocking), or
    /// `None` when it does not exist yet. For records too large to read whole.
    pub fn open_record(&self, stem: &str) -> Result<Option<File>> {
        let path = self.file(stem, ".json")?;
        match open_nofollow(&path, false) {
            Ok(f) => match is_ours(&f) {
                Ok(true) => Ok(Some(f)),
                Ok(false) => Err(CniError::io(format!(
                    "{} is not a regular file of this process's user",
                    path.display()
                ))
                .with_details("move it away; it was not written by this plugin")),
                Err(e) => Err(CniError::io(format!(
                    "cannot inspect {}: {e}",
                    path.display()
                ))),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CniError::io(format!("cannot open {}: {e}", path.display()))),
        }
    }

    /// Replaces the record atomically. `durable` adds an fdatasync of the new file before the
    /// rename, so a power loss leaves the old record or the new one, never an empty or torn
    /// one (not needed on tmpfs). The directory is not synced: after a power loss the
    /// rename itself may be lost, leaving the previous record, which describes a node whose
    /// pods all ended with the power anyway; a state that cannot be read would stop every
    /// pod start, a state one change old stops none. The caller holds the record's lock (or
    /// the directory's), so one temporary name per record suffices.
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
        let tmp = self.file(stem, TMP)?;
        let io = |what: &str, e: std::io::Error| {
            CniError::io(format!("cannot {what} {}: {e}", path.display()))
        };
        self.remove_temp(stem)?;
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

    /// Removes a record; `false` when there was none.
    pub fn remove(&self, stem: &str) -> Result<bool> {
        let (at, name) = self.at(stem, ".json")?;
        match unlinkat(at, &name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::ENOENT) => Ok(false),
            Err(e) => Err(CniError::io(format!(
                "cannot remove {}: {}",
                self.shown(&name).display(),
                std::io::Error::from(e)
            ))),
        }
    }

    /// Moves a record aside (kept for inspection, never read again) and returns the new name.
    pub fn quarantine(&self, stem: &str, tag: &str) -> Result<PathBuf> {
        let path = self.file(stem, ".json")?;
        let aside = self.file(stem, &format!(".json.corrupt-{tag}"))?;
        fs::rename(&path, &aside)
            .map_err(|e| CniError::io(format!("cannot move {}: {e}", path.display())))?;
        Ok(aside)
    }

    /// Removes every temporary file interrupted writes left (call with [`StateDir::lock_all`]
    /// held: no write is under way).
    pub fn remove_temps(&self) -> Result<()> {
        self.remove_listed_temps(&self.listing()?)
    }

    /// Removes the temporary files of a listing (with [`StateDir::lock_all`] held, as
    /// [`StateDir::remove_temps`]): one listing serves both the cleanup and the reading.
    pub fn remove_listed_temps(&self, listing: &Listing) -> Result<()> {
        for stem in &listing.temps {
            self.remove_temp(stem)?;
        }
        Ok(())
    }

    /// The stems of every record in the directory, sorted.
    pub fn records(&self) -> Result<Vec<String>> {
        let mut out = self.records_unsorted()?;
        out.sort();
        Ok(out)
    }

    /// The stems of every record in the directory, in the directory's order (for a
    /// directory of many records read whole, where the order does not matter).
    pub fn records_unsorted(&self) -> Result<Vec<String>> {
        Ok(self.listing()?.records)
    }

    /// The records and temporary files of the directory, in one pass over it.
    pub fn listing(&self) -> Result<Listing> {
        self.listing_where(|_| true)
    }

    /// [`StateDir::listing`] with only the records whose stem `keep` accepts (every
    /// temporary file is listed).
    pub fn listing_where(&self, keep: impl Fn(&str) -> bool) -> Result<Listing> {
        let mut out = Listing::default();
        let entries = fs::read_dir(&self.path)
            .map_err(|e| CniError::io(format!("cannot list {}: {e}", self.path.display())))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| CniError::io(format!("cannot list {}: {e}", self.path.display())))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let (list, stem) = match (name.strip_suffix(".json"), name.strip_suffix(TMP)) {
                (Some(stem), _) if keep(stem) => (&mut out.records, stem),
                (_, Some(stem)) => (&mut out.temps, stem),
                _ => continue,
            };
            if check_stem(stem).is_ok() {
                list.push(stem.to_string());
            }
        }
        Ok(out)
    }
}

/// Gives `tmp` (a complete file) the name `path` in one step, never leaving `path` missing
/// or torn: a plain rename when `path` does not exist; when it does, the two are exchanged
/// (`RENAME_EXCHANGE`) and the old file, then named `tmp`, removed. Not a rename over it:
/// ext4 (`auto_da_alloc`, its default) allocates and writes out the blocks of a file renamed
/// over another inside that call, most of the call's time on a disk; an exchange leaves them
/// to the usual write-back. A file system without the exchange gets the plain rename.
pub fn replace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::errno::Errno;
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        match renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RenameFlags::RENAME_EXCHANGE) {
            Ok(()) => return fs::remove_file(tmp),
            // `path` does not exist yet, or this file system has no exchange.
            Err(Errno::ENOENT | Errno::EINVAL | Errno::ENOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    fs::rename(tmp, path)
}

fn open_nofollow(path: &Path, create: bool) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .mode(0o600)
        // Never wait on what the name is (a FIFO opened for reading would block).
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    if create {
        // An existing file keeps its mode; tighten it if someone loosened it.
        let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
    }
    Ok(f)
}

/// Whether an open file is a regular file owned by this process's user.
fn is_ours(f: &File) -> std::io::Result<bool> {
    let m = f.metadata()?;
    Ok(m.file_type().is_file() && m.uid() == euid())
}

/// The file name of a record's stem with a suffix.
fn name(stem: &str, suffix: &str) -> Result<String> {
    check_stem(stem)?;
    let mut name = String::with_capacity(stem.len() + suffix.len());
    name.push_str(stem);
    name.push_str(suffix);
    Ok(name)
}

/// A record stem: `[A-Za-z0-9._%~-]`, not starting with `.`, at most [`MAX_STEM`] bytes.
fn check_stem(stem: &str) -> Result<()> {
    let ok = !stem.is_empty()
        && stem.len() <= MAX_STEM
        && !stem.starts_with('.')
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%~-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CniError::state(format!(
            "invalid state record name {stem:?}"
        )))
    }
}

/// The longest stem: with the longest suffix (`.json.corrupt-<ms>`) a file name stays
/// under the 255-byte limit of every Linux file system.
const MAX_STEM: usize = 200;
/// What is kept of a long name's encoding before its hash.
const KEPT: usize = 160;

/// Encodes any string (a network name) into a record stem: bytes outside `[A-Za-z0-9_-]`
/// become `%XX`, so two names never share a file and none escapes the directory. An
/// encoding longer than [`MAX_STEM`] keeps its first [`KEPT`] bytes and appends `~` and a
/// 64-bit hash of the whole name; the record itself names its network, so a collision is
/// detected, never merged.
pub fn encode_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    if out.len() > MAX_STEM {
        let mut cut = KEPT;
        // Never split a %XX escape.
        while out.as_bytes()[cut - 1] == b'%' || out.as_bytes()[cut - 2] == b'%' {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(&format!("~{:016x}", fnv1a64(name.as_bytes())));
    }
    out
}

/// FNV-1a, 64 bits: a stable hash (the same in every build, unlike std's).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The inverse of [`encode_stem`] for stems that were not shortened (for listings; a
/// record names its network itself).
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
    fn replace_exchanges_an_existing_file_and_renames_a_new_one() {
        let d = tmpdir();
        fs::create_dir_all(&d).unwrap();
        let (tmp, path) = (d.join("tmp"), d.join("file"));
        fs::write(&tmp, "one").unwrap();
        replace(&tmp, &path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one");
        assert!(!tmp.exists());
        let before = fs::metadata(&path).unwrap().ino();
        fs::write(&tmp, "two").unwrap();
        let new = fs::metadata(&tmp).unwrap().ino();
        replace(&tmp, &path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert!(!tmp.exists(), "the old file is removed");
        let after = fs::metadata(&path).unwrap().ino();
        assert_eq!(after, new, "the new file took the name");
        assert_ne!(after, before);
        assert!(replace(&tmp, &path).is_err(), "no temporary file: an error");
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
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
