//! CNI spec versions: which we speak, and how to compare them.

use crate::error::{CniError, Result};

/// The versions every binary of the suite supports, oldest first.
pub const SUPPORTED: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];
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

/// Fails with code 1 unless `v` is one of [`SUPPORTED`].
pub fn check_supported(v: &str) -> Result<()> {
    if SUPPORTED.contains(&v) {
        Ok(())
    } else {
        Err(CniError::version(format!(
            "incompatible CNI versions: config is {v:?}, plugin supports {SUPPORTED:?}"
        )))
    }
}

/// Whether `v` is at least `min` (both well-formed; a malformed `v` is never).
pub fn at_least(v: &str, min: Version) -> bool {
    Version::parse(v).is_some_and(|v| v >= min)
}

/// The body of a VERSION reply.
pub fn version_info(requested: Option<&str>) -> serde_json::Value {
    let reply = match requested {
        Some(v) if SUPPORTED.contains(&v) => v,
        _ => LATEST,
    };
    serde_json::json!({ "cniVersion": reply, "supportedVersions": SUPPORTED })
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
    fn supported_versions_and_code_1() {
        for v in SUPPORTED {
            assert!(check_supported(v).is_ok());
        }
        for v in ["0.3.1", "0.1.0", "2.0.0", "", "1.1"] {
            assert_eq!(check_supported(v).unwrap_err().code, 1, "{v}");
        }
    }

    #[test]
    fn version_reply_echoes_a_supported_request() {
        assert_eq!(version_info(Some("1.0.0"))["cniVersion"], "1.0.0");
        assert_eq!(version_info(Some("9.9.9"))["cniVersion"], "1.1.0");
        assert_eq!(version_info(None)["supportedVersions"][0], "0.4.0");
    }
}
