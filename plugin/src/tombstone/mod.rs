//! The `tombstone` chained plugin. Pure logic first ([`config`], [`ledger`]), then the
//! ledger's file ([`store`]) and the kernel work that both the CNI verbs and the command
//! line share ([`sweep`]), then the verbs ([`plugin`]) and the subcommands ([`cli`]).

pub mod cli;
pub mod config;
pub mod ledger;
pub mod plugin;
pub mod store;
pub mod sweep;
pub mod sweeper;

/// The route protocol number that marks a route as a tombstone (`ip route show proto 84`;
/// the installer registers the name `tombstone` for it). Free in the kernel's and iproute2's
/// lists. The plugin deletes only routes with this protocol.
pub const ROUTE_PROTOCOL: u8 = 84;

/// Where ledgers live unless `stateDir` says otherwise (tmpfs: the routes they describe do
/// not survive a reboot either).
pub const DEFAULT_STATE_DIR: &str = "/run/cni/tombstone";

/// Milliseconds since the Unix epoch: the ledger's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
