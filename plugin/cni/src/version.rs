//! CNI spec versions: which we speak, how to compare them, and every rule that depends on the
//! version (which verbs exist, whether DEL carries `prevResult`, the result's format) in one
//! place, so no plugin decides such a thing by itself.

use crate::env::Command;
use crate::error::{CniError, Result};

/// The versions the main and IPAM binaries (`tombstone-ipvlan`, `tombstone-ipam`) support,
/// oldest first: every version the reference plugins accept.
pub const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];
/// The versions the chained `tombstone` supports: from 0.3.0, the first that hands a chained
/// plugin a `prevResult`. A network list `tombstone` is put into must have one of these
/// ([`supports_chained`]).
pub const CHAINED: &[&str] = SUPPORTED.split_at(2).1;
/// The newest supported version: what errors carry when the config names none we know.
pub const LATEST: &str = "1.1.0";

/// A parsed `major.minor.patch` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let mut next = || parts.next()?.parse::<u32>().ok();
        let v = Version(next()?, next()?, next()?);
        if s.split('.').count() != 3 {
            return None;
        }
        Some(v)
    }
}

/// Whether some binary of the suite speaks `v` (a main or IPAM plugin: [`SUPPORTED`]).
pub fn supports(v: &str) -> bool {
    SUPPORTED.contains(&v)
}

/// Whether the chained `tombstone` speaks `v` ([`CHAINED`]): what a network list must declare
/// for `tombstone` to be put into it.
pub fn supports_chained(v: &str) -> bool {
    CHAINED.contains(&v)
}

/// Fails with code 1 unless `v` is one of [`SUPPORTED`].
pub fn check_supported(v: &str) -> Result<()> {
    check_supported_by(v, SUPPORTED)
}

/// Fails with code 1 unless `v` is one of `versions` (a plugin's own list).
pub fn check_supported_by(v: &str, versions: &[&str]) -> Result<()> {
    if versions.contains(&v) {
        Ok(())
    } else {
        Err(CniError::version(format!(
            "incompatible CNI versions: config is {v:?}, plugin supports {versions:?}"
        )))
    }
}

/// Whether `v` is at least `min` (both well-formed; a malformed `v` is never).
pub fn at_least(v: &str, min: Version) -> bool {
    Version::parse(v).is_some_and(|v| v >= min)
}

/// Code 1 when the spec version `v` has no such verb: CHECK exists from 0.4.0, GC and STATUS
/// from 1.1.0 (libcni's skeleton answers alike: "config version does not allow CHECK").
pub fn check_allows(v: &str, command: Command) -> Result<()> {
    let since = match command {
        Command::Check => Version(0, 4, 0),
        Command::Gc | Command::Status => Version(1, 1, 0),
        Command::Add | Command::Del | Command::Version => Version(0, 0, 0),
    };
    if at_least(v, since) {
        Ok(())
    } else {
        Err(CniError::version(format!(
            "config version {v} does not allow {}",
            command.as_str()
        )))
    }
}

/// Whether a DEL of spec version `v` carries the ADD's result in `prevResult` (from 0.4.0;
/// before, a runtime sends none, and a plugin works from what it recorded at ADD).
pub fn del_has_prev_result(v: &str) -> bool {
    at_least(v, Version(0, 4, 0))
}

/// The shapes of a result across the spec versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// 0.1.0 and 0.2.0: `ip4` and `ip6` objects (one address each, with their routes), no
    /// interfaces.
    V020,
    /// 0.3.0 to 0.4.0: `interfaces`, `ips` (each with `version` "4" or "6" and an `interface`
    /// index), `routes`, `dns`.
    V040,
    /// 1.0.0 on: as 0.4.0 without `ips[].version`.
    V100,
}

/// The result format of spec version `v` (a version we do not know writes the newest).
pub fn result_format(v: &str) -> ResultFormat {
    match Version::parse(v) {
        Some(v) if v < Version(0, 3, 0) => ResultFormat::V020,
        Some(v) if v < Version(1, 0, 0) => ResultFormat::V040,
        _ => ResultFormat::V100,
    }
}

/// The body of a VERSION reply of a plugin supporting `versions`.
pub fn version_info(requested: Option<&str>, versions: &[&str]) -> serde_json::Value {
    let reply = match requested {
        Some(v) if versions.contains(&v) => v,
        _ => LATEST,
    };
    serde_json::json!({ "cniVersion": reply, "supportedVersions": versions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_compare() {
        assert_eq!(Version::parse("1.1.0"), Some(Version(1, 1, 0)));
        assert_eq!(Version::parse("1.1"), None);
        assert_eq!(Version::parse("1.1.0.1"), None);
        assert_eq!(Version::parse("a.b.c"), None);
        assert!(at_least("1.1.0", Version(1, 1, 0)));
        assert!(at_least("1.2.0", Version(1, 1, 0)));
        assert!(!at_least("1.0.0", Version(1, 1, 0)));
        assert!(!at_least("x", Version(0, 0, 0)));
    }

    #[test]
    fn every_version_the_reference_plugins_accept() {
        // containernetworking/plugins' version.All.
        for v in [
            "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
        ] {
            assert!(supports(v) && check_supported(v).is_ok(), "{v}");
        }
        for v in ["0.3.2", "2.0.0", "", "1.1", "0.3"] {
            assert!(!supports(v), "{v}");
            assert_eq!(check_supported(v).unwrap_err().code, 1, "{v}");
        }
    }

    #[test]
    fn the_chained_plugin_starts_at_0_3_0() {
        assert_eq!(CHAINED, ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
        assert!(supports_chained("0.3.1") && supports_chained("1.1.0"));
        assert!(!supports_chained("0.2.0") && !supports_chained("0.1.0"));
        let e = check_supported_by("0.2.0", CHAINED).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.msg.contains("0.3.0"), "{}", e.msg);
    }

    #[test]
    fn verbs_per_version() {
        for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
            let e = check_allows(v, Command::Check).unwrap_err();
            assert_eq!(e.code, 1, "{v}");
            assert!(e.msg.contains("CHECK"), "{}", e.msg);
            assert!(check_allows(v, Command::Add).is_ok() && check_allows(v, Command::Del).is_ok());
            assert!(!del_has_prev_result(v), "{v}");
        }
        for v in ["0.4.0", "1.0.0", "1.1.0"] {
            assert!(check_allows(v, Command::Check).is_ok(), "{v}");
            assert!(del_has_prev_result(v), "{v}");
        }
        for v in ["0.4.0", "1.0.0"] {
            assert_eq!(check_allows(v, Command::Gc).unwrap_err().code, 1);
            assert_eq!(check_allows(v, Command::Status).unwrap_err().code, 1);
        }
        assert!(check_allows("1.1.0", Command::Gc).is_ok());
        assert!(check_allows("1.1.0", Command::Status).is_ok());
    }

    #[test]
    fn result_formats() {
        for (v, f) in [
            ("0.1.0", ResultFormat::V020),
            ("0.2.0", ResultFormat::V020),
            ("0.3.0", ResultFormat::V040),
            ("0.3.1", ResultFormat::V040),
            ("0.4.0", ResultFormat::V040),
            ("1.0.0", ResultFormat::V100),
            ("1.1.0", ResultFormat::V100),
        ] {
            assert_eq!(result_format(v), f, "{v}");
        }
    }

    #[test]
    fn version_reply_echoes_a_supported_request() {
        assert_eq!(
            version_info(Some("1.0.0"), SUPPORTED)["cniVersion"],
            "1.0.0"
        );
        assert_eq!(
            version_info(Some("9.9.9"), SUPPORTED)["cniVersion"],
            "1.1.0"
        );
        assert_eq!(version_info(Some("0.2.0"), CHAINED)["cniVersion"], "1.1.0");
        assert_eq!(
            version_info(None, SUPPORTED)["supportedVersions"],
            serde_json::json!(SUPPORTED)
        );
        assert_eq!(version_info(None, CHAINED)["supportedVersions"][0], "0.3.0");
    }
}
