//! Throwaway network namespaces made with `ip netns add`, named uniquely per process and
//! test, removed on drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::process::sh;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A name no other test of any process uses: `prefix`, the pid, a sequence number.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh network namespace with `lo` up, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Needs root (the test fails without it, see [`crate::require_root`]).
    pub fn new(prefix: &str) -> Netns {
        crate::require_root();
        let ns = Netns {
            name: unique(prefix),
        };
        sh(&["ip", "netns", "add", &ns.name]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its file, for `CNI_NETNS`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// `ip -n NS ARGS...`, asserting success, returning stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `ARGS...` run inside the namespace, asserting success, returning stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
