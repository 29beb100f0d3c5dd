//! What the whole-process tests of the agent share: a primary's conflist, a free loopback
//! port, one HTTP GET, the entry's presence in a file, a file replaced as a daemon replaces
//! it, and the DaemonSet manifest read as the image test runs it ([`daemonset`]).
#![allow(dead_code)] // each test crate uses its part

pub mod daemonset;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

/// The primary CNI's conflist: IPvlan, then a plugin the entry goes before.
pub const PODS: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    { "type": "ipvlan", "master": "eth0", "ipam": { "type": "host-local", "subnet": "10.10.0.0/24" } },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
"#;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: the status code and the body, or None when it cannot be
/// done (nothing listening yet, a cut connection).
pub fn try_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// Whether the file at `path` holds a `tombstone` entry.
pub fn has_entry(path: &Path) -> bool {
    fs::read_to_string(path).is_ok_and(|t| {
        t.contains("\"type\": \"tombstone\"") || t.contains("\"type\":\"tombstone\"")
    })
}

/// Writes like an editor or a daemon replacing its file: a temporary file renamed over it.
pub fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-new");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}
