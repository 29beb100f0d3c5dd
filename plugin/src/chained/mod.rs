//! The chained plugin `tombstone`. Pure logic first ([`config`], [`ledger`]), then the
//! ledger's file ([`store`]) and the kernel work that both the CNI verbs and the command
//! line share ([`sweep`]), then the verbs ([`plugin`]) and the subcommands ([`cli`]).

pub mod cli;
pub mod config;
#[cfg(test)]
mod fake;
pub mod ledger;
pub mod plugin;
pub mod port;
pub mod store;
pub mod sweep;
pub mod sweeper;

pub use tombstone_cni::suite::{DEFAULT_STATE_DIR, ROUTE_PROTOCOL};

/// The route metric that marks a tombstone route as this state directory's: a stable hash
/// of its normalized path, never 0 (the kernel's default for IPv4) or 1024 (IPv6's). A
/// route's key in the kernel includes its metric, so two state directories never replace,
/// delete or sweep each other's routes; an address tombstoned by both simply has two routes.
pub fn dir_mark(state_dir: &std::path::Path) -> u32 {
    let h = tombstone_cni::state::fnv1a64(state_dir.as_os_str().as_encoded_bytes());
    let mark = 2048 + (h % (u32::MAX as u64 - 4096)) as u32;
    debug_assert!(mark > 1024);
    mark
}

/// How long the record of a released attachment is kept: a DEL of it repeated within this
/// time (containerd sends up to three per sandbox, the last possibly much later) neither
/// starts a new hold nor extends one.
pub const RELEASED_RETENTION_MS: u64 = 3_600_000;

/// Milliseconds since the Unix epoch: the ledger's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
