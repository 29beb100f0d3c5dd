//! The one CNI error type: a spec error code, a message and details, printed by the skeleton
//! as `{cniVersion, code, msg, details}` on stdout.

use std::fmt;

/// Well-known error codes of the CNI spec (SPEC.md, "Error"). 0-99 are reserved by the spec.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADD requests.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// STATUS: cannot serve ADD, and existing containers may have limited connectivity.
    pub const PLUGIN_NOT_AVAILABLE_LIMITED: u32 = 51;

    // Plugin-specific codes (100+), documented in the README.
    /// A kernel (netlink) operation failed.
    pub const NETLINK_FAILURE: u32 = 100;
    /// CHECK found a tombstone still in place for one of the attachment's addresses.
    pub const TOMBSTONE_PRESENT: u32 = 101;
    /// The plugin's state (ledger, allocation store) is unusable.
    pub const STATE_FAILURE: u32 = 102;
    /// An address pool has no free address left.
    pub const POOL_EXHAUSTED: u32 = 103;
    /// A delegated plugin (IPAM) failed; its own error is in the details.
    pub const DELEGATE_FAILURE: u32 = 104;
    /// A link or address operation in the pod's network namespace failed.
    pub const LINK_FAILURE: u32 = 105;
    /// IPAM: a requested address cannot be given (in use, the gateway, or in no range).
    pub const ADDRESS_UNAVAILABLE: u32 = 106;
    /// An internal error (a bug): the plugin panicked. Same number libcni's skeleton uses.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: the spec's `code`, a short `msg` and longer `details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

pub type Result<T, E = CniError> = std::result::Result<T, E>;

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Adds context in front of the message, keeping the code: `what: msg`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }

    pub fn version(msg: impl Into<String>) -> Self {
        Self::new(code::INCOMPATIBLE_VERSION, msg)
    }
    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENVIRONMENT, msg)
    }
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(code::IO_FAILURE, msg)
    }
    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(code::DECODING_FAILURE, msg)
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_NETWORK_CONFIG, msg)
    }
    pub fn netlink(msg: impl Into<String>) -> Self {
        Self::new(code::NETLINK_FAILURE, msg)
    }
    pub fn state(msg: impl Into<String>) -> Self {
        Self::new(code::STATE_FAILURE, msg)
    }

    /// The error object of the spec, for stdout.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut obj = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            obj["details"] = self.details.clone().into();
        }
        obj
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// Every failure of a teardown (DEL, GC) as one error: `None` when there was none, the
/// failure itself when there was one, else an error whose `msg` counts them, whose `details`
/// list every one, and whose code is theirs when they agree (else the first one's).
pub fn collect(what: &str, failures: Vec<CniError>) -> Result<()> {
    let mut failures = failures.into_iter();
    let Some(first) = failures.next() else {
        return Ok(());
    };
    let rest: Vec<CniError> = failures.collect();
    if rest.is_empty() {
        return Err(first);
    }
    let n = rest.len() + 1;
    let details = std::iter::once(&first)
        .chain(&rest)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    Err(CniError::new(
        first.code,
        format!("{what}: {n} failures, first: {}", first.msg),
    )
    .with_details(details))
}

/// `.context(what)` on an I/O result: its error as code 5 (I/O failure), saying what was
/// being done. There is no bare `From<io::Error>`: an I/O error always says where it happened.
pub trait IoContext<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| CniError::io(format!("{what}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_keeps_every_failure() {
        assert_eq!(collect("DEL", vec![]), Ok(()));
        let one = CniError::netlink("route");
        assert_eq!(collect("DEL", vec![one.clone()]), Err(one.clone()));
        let e = collect(
            "DEL",
            vec![one, CniError::new(code::DELEGATE_FAILURE, "ipam")],
        )
        .unwrap_err();
        assert_eq!(e.code, code::NETLINK_FAILURE);
        assert_eq!(e.msg, "DEL: 2 failures, first: route");
        assert_eq!(e.details, "route (code 100); ipam (code 104)");
    }

    #[test]
    fn io_errors_say_where() {
        let r: std::io::Result<()> = Err(std::io::Error::from_raw_os_error(28));
        let e = r.context("writing /x").unwrap_err();
        assert_eq!(e.code, code::IO_FAILURE);
        assert!(e.msg.starts_with("writing /x: "), "{}", e.msg);
    }

    #[test]
    fn json_has_spec_fields_and_omits_empty_details() {
        let e = CniError::config("bad").context("ledger");
        let j = e.to_json("1.1.0");
        assert_eq!(j["cniVersion"], "1.1.0");
        assert_eq!(j["code"], 7);
        assert_eq!(j["msg"], "ledger: bad");
        assert!(j.get("details").is_none());
        let j = CniError::io("x").with_details("y").to_json("1.0.0");
        assert_eq!(j["details"], "y");
        assert_eq!(j["code"], 5);
    }
}
