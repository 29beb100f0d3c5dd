//! A network's ledger on disk: `<stateDir>/<encoded network name>.json`, read and written
//! under the caller's lock (see [`tombstone_cni::state`]); the format is [`super::ledger`]'s.

use super::ledger::{Ledger, decode};
use tombstone_cni::Result;
use tombstone_cni::state::{Record, StateDir, encode_stem};

/// How reading a ledger went.
#[derive(Debug)]
pub enum Loaded {
    Fresh(Ledger),
    Existing(Ledger),
    /// The file was unreadable as a ledger; it was moved aside to the given path and an
    /// empty ledger takes its place (the kernel routes it described are reclaimed by
    /// `tombstone sweep` as orphans; ADD removes any tombstone of its addresses regardless).
    Rebuilt(Ledger, std::path::PathBuf, String),
}

impl Loaded {
    pub fn into_ledger(self) -> Ledger {
        match self {
            Loaded::Fresh(l) | Loaded::Existing(l) | Loaded::Rebuilt(l, ..) => l,
        }
    }

    /// The ledger, saying when it had to be rebuilt; and whether it must be saved.
    pub fn logged(self) -> (Ledger, bool) {
        match self {
            Loaded::Fresh(l) | Loaded::Existing(l) => (l, false),
            Loaded::Rebuilt(l, aside, why) => {
                log::error!(
                    "network {}: ledger unreadable ({why}); moved to {} and rebuilt empty",
                    l.network,
                    aside.display()
                );
                (l, true)
            }
        }
    }
}

/// The record name of a network in the state directory.
pub fn stem(network: &str) -> String {
    encode_stem(network)
}

/// Reads a network's ledger (the caller holds its lock).
pub fn load(dir: &StateDir, network: &str) -> Result<Loaded> {
    load_stem(dir, &stem(network), Some(network))
}

/// Reads the ledger of record `stem`, whichever network it names (a sweep lists stems;
/// a shortened stem cannot be decoded back into its network's name). `None` when the
/// record vanished meanwhile. A file that is not a regular file of ours is treated like
/// an unreadable one: moved aside, never trusted.
pub fn load_any(dir: &StateDir, stem: &str) -> Result<Option<Loaded>> {
    match load_stem(dir, stem, None)? {
        Loaded::Fresh(_) => Ok(None),
        other => Ok(Some(other)),
    }
}

fn load_stem(dir: &StateDir, stem: &str, network: Option<&str>) -> Result<Loaded> {
    let fresh = || Ledger::new(network.unwrap_or_default());
    let bytes = match dir.read_record(stem)? {
        Record::Bytes(b) => b,
        Record::Missing => return Ok(Loaded::Fresh(fresh())),
        Record::Foreign(why) => {
            let aside = dir.quarantine(stem, &super::now_ms().to_string())?;
            return Ok(Loaded::Rebuilt(fresh(), aside, why));
        }
    };
    match decode(&bytes, stem)? {
        Ok(l) => Ok(Loaded::Existing(l)),
        Err(why) => {
            let aside = dir.quarantine(stem, &super::now_ms().to_string())?;
            Ok(Loaded::Rebuilt(fresh(), aside, why))
        }
    }
}

/// Writes a network's ledger atomically (no fsync: it lives on tmpfs, like the routes).
pub fn save(dir: &StateDir, ledger: &Ledger) -> Result<()> {
    let bytes = serde_json::to_vec(ledger).expect("a ledger always serializes");
    dir.write(&stem(&ledger.network), &bytes, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chained::ledger::Tombstone;
    use tombstone_cni::Attachment;
    use tombstone_kernel::RejectKind;

    #[test]
    fn load_rebuilds_a_corrupt_ledger_and_keeps_it_aside() {
        let d = std::env::temp_dir().join(format!("ts-ledger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let dir = StateDir::open(&d).unwrap();
        let mut other = Ledger::new("other");
        other.bury(Tombstone {
            ip: "10.0.0.9".parse().unwrap(),
            route_type: RejectKind::Unreachable,
            tables: vec![254],
            route_metric: None,
            expires_at_ms: 5,
            container_id: "z".into(),
            ifname: "eth0".into(),
        });
        save(&dir, &other).unwrap();
        assert!(matches!(load(&dir, "pods").unwrap(), Loaded::Fresh(_)));
        dir.write("pods", b"{\"version\":1,\"netw", false).unwrap();
        match load(&dir, "pods").unwrap() {
            Loaded::Rebuilt(l, aside, _) => {
                assert!(l.is_empty());
                assert!(aside.exists());
            }
            other => panic!("expected a rebuild, got {other:?}"),
        }
        // The other network's record is untouched.
        assert_eq!(load(&dir, "other").unwrap().into_ledger(), other);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stems_are_encoded_network_names() {
        assert_eq!(stem("pods"), "pods");
        assert_eq!(stem("a.b"), "a%2Eb");
        let _ = Attachment {
            container_id: String::new(),
            ifname: String::new(),
        };
    }
}
