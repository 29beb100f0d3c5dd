//! Network-namespace entry: open a namespace by its path (checked to be one), and open a
//! [`Netlink`] connection that lives inside it. A netlink socket belongs to the namespace it
//! was created in, so the thread enters the target, opens the socket, and goes back at once
//! (no `.await` in between: the runtime is current-thread and has no other thread).

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};

use crate::cni::{CniError, Result, code};
use crate::netlink::Netlink;

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
    /// The path exists but is not a network namespace (e.g. an unmounted bind-mount target).
    NotANamespace,
    /// Anything else (permissions, I/O).
    Other(std::io::Error),
}

impl NetNs {
    /// Opens the namespace at `path`. Errors carry code 3 (container unknown): nothing was
    /// set up for it, and a runtime need not clean anything up.
    pub fn open(path: &Path) -> Result<NetNs> {
        Self::try_open(path).map_err(|e| {
            let why = match e {
                OpenError::Gone => "no such file".to_string(),
                OpenError::NotANamespace => "not a network namespace".to_string(),
                OpenError::Other(e) => e.to_string(),
            };
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("cannot open netns {}: {why}", path.display()),
            )
        })
    }

    /// Like [`NetNs::open`], telling apart a namespace that is gone.
    pub fn try_open(path: &Path) -> std::result::Result<NetNs, OpenError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => OpenError::Gone,
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

    /// A netlink connection inside this namespace.
    pub fn netlink(&self) -> Result<Netlink> {
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(|e| CniError::io(format!("cannot open the current netns: {e}")))?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
            CniError::io(format!("cannot enter netns {}: {e}", self.path.display()))
        })?;
        let nl = Netlink::open();
        setns(home.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| CniError::io(format!("cannot return to the host netns: {e}")))?;
        nl
    }
}
