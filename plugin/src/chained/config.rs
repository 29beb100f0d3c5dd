//! The plugin's config keys, validated (code 7) before anything is touched. [`KEYS`] is the
//! one list of them: any other key (beside the runtime's) is logged as unknown.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use tombstone_cni::config::warn_unknown_keys;
use tombstone_cni::suite::{DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS};
use tombstone_cni::{CniError, NetConf, Result};
use tombstone_kernel::{MAIN_TABLE, RejectKind};

const MAX_TABLES: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct TombstoneConf {
    pub hold_seconds: u64,
    pub route_type: RejectKind,
    pub tables: Vec<u32>,
    pub flush_neighbors: bool,
    pub flush_conntrack: bool,
    pub state_dir: PathBuf,
    pub sweeper: bool,
}

/// Every key of `Raw`, as the config spells it.
pub const KEYS: &[&str] = &[
    "holdSeconds",
    "routeType",
    "tables",
    "flushNeighbors",
    "flushConntrack",
    "stateDir",
    "sweeper",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    hold_seconds: Option<u64>,
    route_type: Option<String>,
    tables: Option<Vec<Value>>,
    flush_neighbors: Option<bool>,
    flush_conntrack: Option<bool>,
    state_dir: Option<PathBuf>,
    sweeper: Option<bool>,
}

impl TombstoneConf {
    pub fn from_netconf(conf: &NetConf) -> Result<TombstoneConf> {
        let raw: Raw = conf.view()?;
        warn_unknown_keys(&conf.raw, KEYS, "");
        let hold_seconds = raw.hold_seconds.unwrap_or(DEFAULT_HOLD_SECONDS);
        if !(1..=MAX_HOLD_SECONDS).contains(&hold_seconds) {
            return Err(CniError::config(format!(
                "holdSeconds must be between 1 and {MAX_HOLD_SECONDS}, not {hold_seconds}"
            )));
        }
        let mut tables = Vec::new();
        for t in raw.tables.unwrap_or_else(|| vec![Value::from(MAIN_TABLE)]) {
            let id = table_id(&t).map_err(|e| e.context("tables"))?;
            if !tables.contains(&id) {
                tables.push(id);
            }
        }
        if tables.is_empty() || tables.len() > MAX_TABLES {
            return Err(CniError::config(format!(
                "tables must list 1 to {MAX_TABLES} tables"
            )));
        }
        let route_type = match raw.route_type.as_deref() {
            None => RejectKind::Unreachable,
            Some(s) => RejectKind::parse(s).ok_or_else(|| {
                CniError::config(format!(
                    "routeType {s:?} is not one of unreachable, blackhole, prohibit"
                ))
            })?,
        };
        let state_dir = raw
            .state_dir
            .unwrap_or_else(|| PathBuf::from(super::DEFAULT_STATE_DIR));
        if !state_dir.is_absolute() {
            return Err(CniError::config(format!(
                "stateDir {state_dir:?} is not an absolute path"
            )));
        }
        Ok(TombstoneConf {
            hold_seconds,
            route_type,
            tables,
            flush_neighbors: raw.flush_neighbors.unwrap_or(true),
            flush_conntrack: raw.flush_conntrack.unwrap_or(true),
            state_dir,
            sweeper: raw.sweeper.unwrap_or(true),
        })
    }
}

/// A table as a number, or `"main"`. 0 (unspecified), 253 (default) and 255 (local) are
/// refused: a tombstone there would be ignored or would break local delivery.
fn table_id(v: &Value) -> Result<u32> {
    let id = match v {
        Value::String(s) if s == "main" => MAIN_TABLE,
        Value::String(s) => s.parse::<u32>().map_err(|_| {
            CniError::config(format!("unknown table {s:?}: give a number or \"main\""))
        })?,
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| CniError::config(format!("invalid table {n}")))?,
        other => return Err(CniError::config(format!("invalid table {other}"))),
    };
    if matches!(id, 0 | 253 | 255) {
        return Err(CniError::config(format!(
            "table {id} cannot hold tombstones"
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<TombstoneConf> {
        let s = format!(r#"{{"cniVersion":"1.1.0","name":"n","type":"tombstone"{extra}}}"#);
        TombstoneConf::from_netconf(&NetConf::parse(s.as_bytes()).unwrap())
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.hold_seconds, 60);
        assert_eq!(c.route_type, RejectKind::Unreachable);
        assert_eq!(c.tables, vec![254]);
        assert!(c.flush_neighbors);
        assert!(c.flush_conntrack);
        assert_eq!(c.state_dir, PathBuf::from("/run/cni/tombstone"));
        assert!(c.sweeper);
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#","holdSeconds":5,"routeType":"blackhole","tables":["main",100,"200",100],"flushNeighbors":false,"flushConntrack":false,"stateDir":"/tmp/x","sweeper":false"#,
        )
        .unwrap();
        assert_eq!(c.hold_seconds, 5);
        assert_eq!(c.route_type, RejectKind::Blackhole);
        assert_eq!(c.tables, vec![254, 100, 200]);
        assert!(!c.flush_neighbors);
        assert!(!c.flush_conntrack);
        assert!(!c.sweeper);
        assert_eq!(
            parse(r#","routeType":"prohibit""#).unwrap().route_type,
            RejectKind::Prohibit
        );
    }

    #[test]
    fn invalid_values_are_code_7() {
        for bad in [
            r#","holdSeconds":0"#,
            r#","holdSeconds":30.5"#,
            r#","holdSeconds":-1"#,
            r#","holdSeconds":"60""#,
            r#","holdSeconds":86401"#,
            r#","routeType":"drop""#,
            r#","tables":[]"#,
            r#","tables":[0]"#,
            r#","tables":[255]"#,
            r#","tables":["local"]"#,
            r#","tables":[4294967296]"#,
            r#","tables":100"#,
            r#","flushNeighbors":"yes""#,
            r#","flushConntrack":"yes""#,
            r#","flushConntrack":1"#,
            r#","stateDir":"relative/dir""#,
            r#","sweeper":1"#,
        ] {
            assert_eq!(parse(bad).unwrap_err().code, 7, "{bad}");
        }
    }

    #[test]
    fn a_flush_conntrack_of_another_type_is_named() {
        let e = parse(r#","flushConntrack":"yes""#).unwrap_err();
        assert!(e.msg.contains("flushConntrack"), "{}", e.msg);
        assert!(parse(r#","flushConntrack":null"#).unwrap().flush_conntrack);
    }

    #[test]
    fn every_error_names_its_key() {
        let e = parse(r#","holdSeconds":"30""#).unwrap_err();
        assert!(e.msg.contains("holdSeconds"), "{}", e.msg);
        for key in KEYS {
            for bad in [r#"{"x":1}"#, "-3", r#""/x/\u0000""#] {
                let Err(e) = parse(&format!(r#","{key}":{bad}"#)) else {
                    continue;
                };
                assert_eq!(e.code, 7);
                assert!(e.msg.contains(key), "{key}={bad}: {}", e.msg);
            }
        }
    }

    #[test]
    fn keys_is_every_key_read() {
        let every = r#"{"cniVersion":"1.1.0","name":"n","type":"tombstone","holdSeconds":5,
            "routeType":"blackhole","tables":["main"],"flushNeighbors":false,"flushConntrack":false,
            "stateDir":"/x","sweeper":false}"#;
        let c = NetConf::parse(every.as_bytes()).unwrap();
        assert!(tombstone_cni::config::unknown_keys(&c.raw, KEYS).is_empty());
        // Each key of KEYS is read: a value of the wrong type for it is refused.
        for key in KEYS {
            assert_eq!(
                parse(&format!(r#","{key}":{{}}"#)).unwrap_err().code,
                7,
                "{key}"
            );
        }
        let typo = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","holdSecond":30}"#).unwrap();
        assert_eq!(
            tombstone_cni::config::unknown_keys(&typo.raw, KEYS),
            vec![("holdSecond".to_string(), Some("holdSeconds"))]
        );
    }
}
