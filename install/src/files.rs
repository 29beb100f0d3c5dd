//! The filesystem edge: paths on the node resolved under `--root` as a chroot would, reads
//! that do not follow symlinks, and atomic replacement (temporary file in the same directory,
//! fsync, rename, fsync of the directory), so a reader never sees a half-written file.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Context, InstallError, Kind, Result};

/// Symbolic links followed in one resolution before it gives up (Linux's own limit).
const MAX_LINKS: usize = 40;

/// `path` (a path on the node) under `root`, resolved component by component as the node
/// itself would see it: an absolute link target starts again at `root`, `..` stops at `root`,
/// so the result is always inside `root`. The last component is followed too when
/// `follow_last`; components that do not exist yet are kept as they are. `root` must be an
/// absolute path with no symbolic link in it.
pub fn resolve(root: &Path, path: &Path, follow_last: bool) -> Result<PathBuf> {
    let mut todo: VecDeque<OsString> = VecDeque::new();
    push_front(&mut todo, path);
    let mut at: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.to_str() {
            Some("" | "." | "/") => continue,
            Some("..") => {
                at.pop();
                continue;
            }
            _ => {}
        }
        let here = at.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let candidate = here.join(&c);
        let last = todo.is_empty();
        let meta = match fs::symlink_metadata(&candidate) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).context(format_args!("cannot resolve {}", candidate.display()));
            }
        };
        if meta.is_some_and(|m| m.file_type().is_symlink()) && (follow_last || !last) {
            links += 1;
            if links > MAX_LINKS {
                return Err(InstallError::refused(format!(
                    "more than {MAX_LINKS} symbolic links in {}",
                    path.display()
                )));
            }
            let target = fs::read_link(&candidate)
                .context(format_args!("cannot read the link {}", candidate.display()))?;
            if target.is_absolute() {
                at.clear();
            }
            push_front(&mut todo, &target);
            continue;
        }
        at.push(c);
    }
    Ok(at.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// Puts the components of `p` in front of `todo`, in order (`/` and `..` kept as markers).
fn push_front(todo: &mut VecDeque<OsString>, p: &Path) {
    for c in p.components().rev() {
        todo.push_front(match c {
            Component::RootDir | Component::Prefix(_) => continue,
            Component::CurDir => continue,
            Component::ParentDir => "..".into(),
            Component::Normal(n) => n.to_os_string(),
        });
    }
}

/// The file's bytes, or `None` when it does not exist or is a symbolic link (a link is
/// never read through: its target is outside what was resolved under the root).
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).map(|_| b)
        });
    match read {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(None),
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

/// Replaces `path` with a symbolic link to `target` atomically (a link made beside it, then
/// renamed over it).
pub fn symlink_atomic(path: &Path, target: &Path) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| InstallError::new(Kind::Io, "has no directory").context(path.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tombstone-install.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .context(format_args!("cannot create {}", tmp.display()))?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e).context(format_args!("cannot replace {}", path.display()));
    }
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
    fn resolves_like_a_chroot() {
        let d = std::env::temp_dir().join(format!("ts-install-resolve-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("real/net.d")).unwrap();
        fs::create_dir_all(d.join("etc/cni")).unwrap();
        std::os::unix::fs::symlink("/real/net.d", d.join("etc/cni/net.d")).unwrap();
        std::os::unix::fs::symlink("../../../../../../../real", d.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        let r = |p: &str, follow| resolve(&d, Path::new(p), follow).unwrap();
        assert_eq!(r("/etc/cni/net.d", true), d.join("real/net.d"));
        assert_eq!(r("/etc/cni/net.d", false), d.join("etc/cni/net.d"));
        assert_eq!(r("/etc/cni/net.d/x/../y", true), d.join("real/net.d/y"));
        assert_eq!(r("/../../../real", true), d.join("real"));
        assert_eq!(r("/up/net.d", true), d.join("real/net.d"));
        assert_eq!(r("/not/yet/there", true), d.join("not/yet/there"));
        assert_eq!(
            resolve(Path::new("/"), Path::new("/etc/../etc"), true).unwrap(),
            PathBuf::from("/etc")
        );
        let e = resolve(&d, Path::new("/loop/x"), true).unwrap_err();
        assert!(e.to_string().contains("symbolic links"), "{e}");
        fs::remove_dir_all(&d).unwrap();
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
        // A link is not read through.
        std::os::unix::fs::symlink(&p, d.join("link")).unwrap();
        assert_eq!(read_opt(&d.join("link")).unwrap(), None);
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(read_opt(&p).unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }
}
