//! Reading host-local's data directory for a network: one file per address (named by the
//! address, holding `containerID\r\nifname`, or just the container ID before host-local
//! 0.7) and `last_reserved_ip.<range set>` cursors. No I/O: the store hands in names and
//! contents.

use std::net::IpAddr;

use crate::range::canonical;
use crate::record::Record;

/// What one directory entry of host-local contributes, if anything.
pub fn entry(name: &str, content: &str) -> Option<Record<'static>> {
    if let Some(set) = name.strip_prefix("last_reserved_ip.") {
        let set = set.parse::<usize>().ok()?;
        let ip = content.trim().parse::<IpAddr>().ok().map(canonical)?;
        return Some(Record::Cursor { set, ip });
    }
    let ip = name.parse::<IpAddr>().ok().map(canonical)?;
    let text = content.trim();
    let (cid, ifname) = match text.split_once("\r\n").or_else(|| text.split_once('\n')) {
        Some((c, i)) => (c.trim(), i.trim()),
        None => (text, ""),
    };
    Some(Record::Alloc {
        ip,
        container_id: cid.to_string().into(),
        ifname: ifname.to_string().into(),
    })
}

/// Whether a directory entry could be host-local's (so it is worth reading).
pub fn is_candidate(name: &str) -> bool {
    name.starts_with("last_reserved_ip.") || name.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_local_files_become_records() {
        assert_eq!(
            entry("10.1.0.5", "abc\r\neth0"),
            Some(Record::Alloc {
                ip: "10.1.0.5".parse().unwrap(),
                container_id: "abc".into(),
                ifname: "eth0".into()
            })
        );
        assert_eq!(
            entry("fd00::5", "abc\n"),
            Some(Record::Alloc {
                ip: "fd00::5".parse().unwrap(),
                container_id: "abc".into(),
                ifname: "".into()
            })
        );
        assert_eq!(
            entry("last_reserved_ip.1", "10.1.0.9"),
            Some(Record::Cursor {
                set: 1,
                ip: "10.1.0.9".parse().unwrap()
            })
        );
        for (name, content) in [
            ("lock", ""),
            ("tombstone-ipam.json", "{}"),
            ("last_reserved_ip.x", "10.1.0.9"),
            ("last_reserved_ip.0", "garbage"),
        ] {
            assert_eq!(entry(name, content), None, "{name}");
        }
        assert!(is_candidate("10.1.0.5") && !is_candidate("lock"));
    }
}
