//! Network-namespace entry: open a namespace by its path (checked to be one, without ever
//! blocking on what the path names), and open a [`Netlink`] connection that lives inside
//! it, or write one of its sysctls. A netlink socket belongs to the namespace it was created
//! in, and `/proc/sys/net` shows the namespace of the thread that looks, so the thread enters
//! the target, does that one thing, and goes back at once.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};

use crate::error::{Cause, KernelError, Result};
use crate::socket::Netlink;

/// An open network namespace (its file kept open, so it cannot go away underneath us).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

/// Why a namespace could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// No such file: the namespace is gone (or never was).
    Gone,
    /// The path exists but is not a network namespace (an unmounted bind-mount target, a
    /// FIFO, a directory, ...).
    NotANamespace,
    /// Anything else (permissions, I/O).
    Other(std::io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Gone => f.write_str("no such file"),
            OpenError::NotANamespace => f.write_str("not a network namespace"),
            OpenError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl NetNs {
    /// Opens the namespace at `path`. The open never blocks (a FIFO or a device there is
    /// refused, not waited on) and the file must be on nsfs.
    pub fn open(path: &Path) -> std::result::Result<NetNs, OpenError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => OpenError::Gone,
                _ if e.raw_os_error() == Some(libc::ENXIO) => OpenError::NotANamespace,
                _ => OpenError::Other(e),
            })?;
        match fstatfs(file.as_fd()) {
            Ok(s) if s.filesystem_type() == NSFS_MAGIC => {}
            Ok(_) => return Err(OpenError::NotANamespace),
            Err(e) => return Err(OpenError::Other(e.into())),
        }
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor, for requests that name a namespace (`IFLA_NET_NS_FD`).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `f` with the calling thread inside this namespace, and brings it back.
    fn inside<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let io = |what: String| {
            move |e: nix::Error| KernelError::new(what, Cause::Io(e as i32, e.desc().to_string()))
        };
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(|e| Cause::io(&e).on("open the current network namespace"))?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io(format!(
            "enter network namespace {}",
            self.path.display()
        )))?;
        let out = f();
        setns(home.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(io("return to the host network namespace".to_string()))?;
        out
    }

    /// A netlink connection inside this namespace.
    pub fn netlink(&self) -> Result<Netlink> {
        self.inside(Netlink::open)
    }

    /// Writes `value` to this namespace's sysctl `key`, a path under `/proc/sys/net` such as
    /// `ipv4/conf/eth0/arp_notify` (one that climbs out of it is refused).
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let op = || format!("set net.{} to {value}", key.replace('/', "."));
        if key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Cause::Invalid(format!("{key:?} is no sysctl under net")).on(op()));
        }
        let path = Path::new("/proc/sys/net").join(key);
        self.inside(|| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
                .map_err(|e| Cause::io(&e).on(op()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sysctl_key_cannot_climb_out_of_net() {
        let ns = NetNs::open(Path::new("/proc/self/ns/net")).expect("our own netns");
        for bad in [
            "",
            "/ipv4/conf/all/arp_notify",
            "ipv4/../../kernel/x",
            "ipv4/./x",
            "a//b",
        ] {
            let e = ns.set_sysctl(bad, "1").unwrap_err();
            assert!(e.is_invalid_request(), "{bad:?}: {e}");
        }
    }
}
