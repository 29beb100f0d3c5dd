//! The filesystem edge: paths under `--root`, reads that do not follow symlinks, and atomic
//! replacement (temporary file in the same directory, fsync, rename, fsync of the directory),
//! so a reader never sees a half-written file.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Context, InstallError, Kind, Result};

/// `path` (absolute, a path on the node) under `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The file's bytes, or `None` when it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context(format_args!("cannot read {}", path.display())),
    }
}

/// Permission bits of an existing file (following no symlink), or `None`.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_file())
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Replaces `path` with `bytes` (mode `mode`) atomically. `check` runs on the complete,
/// synced temporary file before the rename; its error leaves the old file in place.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    check: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let not_a_file = |why: &str| InstallError::new(Kind::Io, why).context(path.display());
    let dir = path
        .parent()
        .ok_or_else(|| not_a_file("has no directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| not_a_file("has no file name"))?
        .to_string_lossy();
    fs::create_dir_all(dir).context(format_args!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.tombstone-install.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .context(format_args!("cannot create {}", tmp.display()))?;
        let writing = format!("cannot write {}", tmp.display());
        f.write_all(bytes).context(&writing)?;
        // The umask may have narrowed the mode given at creation.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .context(&writing)?;
        f.sync_all().context(&writing)?;
        drop(f);
        check(&tmp)?;
        fs::rename(&tmp, path).context(format_args!("cannot replace {}", path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// Removes a file (absent is fine) and syncs its directory.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context(format_args!("cannot remove {}", path.display())),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(format_args!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_root() {
        assert_eq!(
            under(Path::new("/host"), Path::new("/opt/cni/bin")),
            PathBuf::from("/host/opt/cni/bin")
        );
        assert_eq!(
            under(Path::new("/"), Path::new("/etc/cni")),
            PathBuf::from("/etc/cni")
        );
    }

    #[test]
    fn atomic_write_and_failed_check() {
        let d = std::env::temp_dir().join(format!("ts-install-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let p = d.join("sub/f");
        write_atomic(&p, b"one", 0o640, |_| Ok(())).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode_of(&p), Some(0o640));
        let e = write_atomic(&p, b"two", 0o755, |_| {
            Err(InstallError::refused("refused").context("checking"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "checking: refused");
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(fs::read_dir(d.join("sub")).unwrap().count(), 1);
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(read_opt(&p).unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }
}
